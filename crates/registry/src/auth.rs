//! Who may do what: htpasswd Basic auth (bcrypt entries, as distribution) and token auth (JWTs
//! from a token server, validated against the issuer's certificates as distribution's `token`
//! auth does: `realm`, `service`, `issuer`, `rootcertbundle`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;

use crate::error::{Error, Result};

/// One thing a request needs, e.g. `repository:library/busybox:push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub kind: &'static str,
    pub name: String,
    pub action: &'static str,
}

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

/// What an authenticated request may do.
#[derive(Debug, Clone)]
pub enum Grant {
    /// No auth configured, or a valid htpasswd user: everything.
    All,
    Token(Vec<AccessEntry>),
}

impl Grant {
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        match self {
            Grant::All => true,
            Grant::Token(access) => access.iter().any(|a| {
                a.kind == kind
                    && a.name == name
                    && a.actions.iter().any(|x| x == action || x == "*")
            }),
        }
    }
}

/// Why a request was refused: the `WWW-Authenticate` challenge to send with the 401.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub challenge: String,
    pub message: String,
}

pub enum Auth {
    None,
    Htpasswd(Htpasswd),
    Token(TokenAuth),
}

impl Auth {
    /// Check the `Authorization` header against what the request needs.
    pub fn authorize(
        &self,
        header: Option<&str>,
        needs: &[Need],
    ) -> std::result::Result<Grant, Refusal> {
        match self {
            Auth::None => Ok(Grant::All),
            Auth::Htpasswd(h) => {
                if h.check(header) {
                    Ok(Grant::All)
                } else {
                    Err(Refusal {
                        challenge: format!("Basic realm={}", quote(&h.realm)),
                        message: "authentication required".into(),
                    })
                }
            }
            Auth::Token(t) => t.authorize(header, needs),
        }
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// htpasswd users; bcrypt only (`$2a$`, `$2b$`, `$2y$`), like distribution.
pub struct Htpasswd {
    pub realm: String,
    users: HashMap<String, String>,
    /// sha256(user, password) of credentials that verified: bcrypt is deliberately slow, and a
    /// pull makes dozens of requests with the same credentials.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub fn load(path: &Path, realm: &str) -> Result<Htpasswd> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("htpasswd {}: {e}", path.display())))?;
        Ok(Htpasswd::parse(&text, realm))
    }

    pub fn parse(text: &str, realm: &str) -> Htpasswd {
        let mut users = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((u, h)) = line.split_once(':') {
                if !h.starts_with("$2") {
                    tracing::warn!(
                        user = u,
                        "htpasswd entry is not bcrypt; it will never match"
                    );
                }
                users.insert(u.to_owned(), h.to_owned());
            }
        }
        Htpasswd {
            realm: realm.to_owned(),
            users,
            verified: Mutex::new(HashSet::new()),
        }
    }

    pub fn check(&self, header: Option<&str>) -> bool {
        let Some((user, pass)) = header.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let mut h = sha2::Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(pass.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        if let Ok(v) = self.verified.lock()
            && v.contains(&key)
        {
            return true;
        }
        let ok = hash.starts_with("$2") && bcrypt::verify(&pass, hash).unwrap_or(false);
        if ok && let Ok(mut v) = self.verified.lock() {
            v.insert(key);
        }
        ok
    }
}

/// `Basic base64(user:password)` -> (user, password).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    access: Vec<AccessEntry>,
}

struct TrustedKey {
    kid: String,
    key: jsonwebtoken::DecodingKey,
    rsa: bool,
}

/// Token auth: the registry trusts JWTs signed by a key of `rootcertbundle`, issued by
/// `issuer` for `service`, and sends clients to `realm` to get one.
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    keys: Vec<TrustedKey>,
}

impl TokenAuth {
    pub fn load(realm: &str, service: &str, issuer: &str, rootcertbundle: &Path) -> Result<Self> {
        let pem = std::fs::read(rootcertbundle).map_err(|e| {
            Error::Config(format!("rootcertbundle {}: {e}", rootcertbundle.display()))
        })?;
        let mut keys = Vec::new();
        for spki in cert_spkis(&pem)? {
            let pem = spki_pem(&spki);
            let (key, rsa) = match jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()) {
                Ok(k) => (k, true),
                Err(_) => match jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()) {
                    Ok(k) => (k, false),
                    Err(e) => {
                        return Err(Error::Config(format!(
                            "rootcertbundle: unsupported public key: {e}"
                        )));
                    }
                },
            };
            keys.push(TrustedKey {
                kid: libtrust_key_id(&spki),
                key,
                rsa,
            });
        }
        if keys.is_empty() {
            return Err(Error::Config(format!(
                "rootcertbundle {}: no certificates",
                rootcertbundle.display()
            )));
        }
        Ok(TokenAuth {
            realm: realm.to_owned(),
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            keys,
        })
    }

    fn challenge(&self, needs: &[Need], error: Option<&str>) -> String {
        let mut c = format!(
            "Bearer realm={},service={}",
            quote(&self.realm),
            quote(&self.service)
        );
        // One scope per resource, actions joined: `repository:a:pull,push`.
        let mut scopes: Vec<(String, Vec<&str>)> = Vec::new();
        for n in needs {
            let res = format!("{}:{}", n.kind, n.name);
            match scopes.iter_mut().find(|(r, _)| *r == res) {
                Some((_, acts)) => acts.push(n.action),
                None => scopes.push((res, vec![n.action])),
            }
        }
        if !scopes.is_empty() {
            let s: Vec<String> = scopes
                .iter()
                .map(|(r, a)| format!("{r}:{}", a.join(",")))
                .collect();
            c.push_str(&format!(",scope={}", quote(&s.join(" "))));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error={}", quote(e)));
        }
        c
    }

    fn authorize(
        &self,
        header: Option<&str>,
        needs: &[Need],
    ) -> std::result::Result<Grant, Refusal> {
        let token = header.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let Some(token) = token else {
            return Err(Refusal {
                challenge: self.challenge(needs, None),
                message: "authentication required".into(),
            });
        };
        let access = match self.verify(token) {
            Ok(a) => a,
            Err(msg) => {
                return Err(Refusal {
                    challenge: self.challenge(needs, Some("invalid_token")),
                    message: msg,
                });
            }
        };
        let grant = Grant::Token(access);
        if needs
            .iter()
            .all(|n| grant.allows(n.kind, &n.name, n.action))
        {
            Ok(grant)
        } else {
            Err(Refusal {
                challenge: self.challenge(needs, Some("insufficient_scope")),
                message: "insufficient scope".into(),
            })
        }
    }

    /// Signature, issuer, audience, expiry; returns the `access` claim.
    pub fn verify(&self, token: &str) -> std::result::Result<Vec<AccessEntry>, String> {
        use jsonwebtoken::Algorithm::*;
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("bad token: {e}"))?;
        let rsa = match header.alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => true,
            ES256 | ES384 => false,
            other => return Err(format!("token algorithm {other:?} not accepted")),
        };
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.service]);
        v.leeway = 60;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let candidates = self
            .keys
            .iter()
            .filter(|k| k.rsa == rsa && header.kid.as_ref().is_none_or(|kid| *kid == k.kid));
        let mut last = "token signed by an unknown key".to_owned();
        for k in candidates {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(data) => return Ok(data.claims.access),
                Err(e) => last = format!("invalid token: {e}"),
            }
        }
        Err(last)
    }
}

/// SubjectPublicKeyInfo (DER) of every certificate in a PEM bundle.
pub fn cert_spkis(pem: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut rd = pem;
    for cert in rustls_pemfile::certs(&mut rd) {
        let cert = cert.map_err(|e| Error::Config(format!("certificate bundle: {e}")))?;
        let ee = webpki::EndEntityCert::try_from(&cert)
            .map_err(|e| Error::Config(format!("certificate bundle: {e:?}")))?;
        out.push(ee.subject_public_key_info().as_ref().to_vec());
    }
    Ok(out)
}

/// `-----BEGIN PUBLIC KEY-----` PEM of an SPKI.
pub fn spki_pem(spki: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// The key id docker's libtrust gives a public key (what distribution matches a token's `kid`
/// against): base32 of the first 240 bits of sha256(SPKI DER), in groups of four joined by `:`.
pub fn libtrust_key_id(spki: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let sum = sha2::Sha256::digest(spki);
    let bytes = &sum[..30];
    let mut s = String::new();
    // 30 bytes = 240 bits = 48 base32 characters, no padding.
    let mut acc: u64 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            s.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    let groups: Vec<&str> = s
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    groups.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header() {
        assert_eq!(
            parse_basic("Basic dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn htpasswd_bcrypt_only() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# c\nalice:{hash}\nbob:{{SHA}}xyz\n"), "r");
        let hdr = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(h.check(Some(&hdr("alice", "secret"))));
        assert!(h.check(Some(&hdr("alice", "secret")))); // cached
        assert!(!h.check(Some(&hdr("alice", "wrong"))));
        assert!(!h.check(Some(&hdr("bob", "xyz"))));
        assert!(!h.check(None));
    }

    #[test]
    fn key_id_shape() {
        let id = libtrust_key_id(b"anything");
        assert_eq!(id.len(), 48 + 11);
        assert_eq!(id.split(':').count(), 12);
    }
}
