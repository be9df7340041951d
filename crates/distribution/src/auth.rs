//! Credentials (docker's config.json and credential helpers) and WWW-Authenticate challenges.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::client::IDENTITY_TOKEN_USER;
use crate::{Error, Result};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print secrets in logs or test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The JSON inside Docker's `X-Registry-Auth` header (an AuthConfig).
#[derive(Debug, Default, Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    serveraddress: String,
}

impl Credentials {
    /// Decode the API's `X-Registry-Auth` header (base64url JSON; padding optional; callers name
    /// the header in their errors). An empty or `{}` header means anonymous (None). Identity
    /// tokens are passed as the password, which token servers accept for the `<token>` user as
    /// Docker's OAuth flow would.
    pub fn from_registry_auth_header(h: &str) -> Result<Option<Credentials>> {
        let h = h.trim();
        if h.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h))
            .map_err(|_| Error::Config("not base64".into()))?;
        Credentials::from_auth_config(&raw).map(|(c, _)| c)
    }

    /// Decode Docker's AuthConfig JSON (the body of `POST /auth`, the inside of
    /// X-Registry-Auth): (credentials, `serveraddress`). An identity token wins over a
    /// password (it is sent as the `<token>` user's password); no credentials at all is None.
    pub fn from_auth_config(json: &[u8]) -> Result<(Option<Credentials>, String)> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Ok((None, String::new()));
        }
        let cfg: AuthConfig = serde_json::from_slice(json)
            .map_err(|e| Error::Config(format!("invalid auth config: {e}")))?;
        let server = cfg.serveraddress.clone();
        if !cfg.identitytoken.is_empty() {
            return Ok((
                Some(Credentials::new(IDENTITY_TOKEN_USER, cfg.identitytoken)),
                server,
            ));
        }
        if !cfg.username.is_empty() || !cfg.password.is_empty() {
            return Ok((Some(Credentials::new(cfg.username, cfg.password)), server));
        }
        if !cfg.auth.is_empty() {
            let dec = base64::engine::general_purpose::STANDARD
                .decode(cfg.auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Error::Config("invalid auth in auth config".into()))?;
            if let Some((u, p)) = dec.split_once(':') {
                return Ok((Some(Credentials::new(u, p)), server));
            }
        }
        Ok((None, server))
    }

    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The key docker's config.json uses for a registry domain (Docker Hub keeps its v1 URL).
pub fn config_key(domain: &str) -> String {
    if domain == berth_types::reference::DEFAULT_DOMAIN {
        "https://index.docker.io/v1/".to_owned()
    } else {
        domain.to_owned()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Where docker keeps its client config: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn default_docker_config() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker").join("config.json"))
}

/// Look up credentials for `domain` in a docker config file: `credHelpers[domain]`, else
/// `credsStore`, else `auths` (base64 `user:password`, or `username`/`password`). A missing file
/// means no credentials; a malformed one is an error (silently pulling anonymously would hide it).
pub fn lookup(config: &Path, domain: &str) -> Result<Option<Credentials>> {
    let bytes = match std::fs::read(config) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", config.display()), e)),
    };
    let cfg: ConfigFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Config(format!("invalid {}: {e}", config.display())))?;
    let key = config_key(domain);
    let helper = cfg
        .cred_helpers
        .get(domain)
        .or_else(|| cfg.cred_helpers.get(&key))
        .or(cfg.creds_store.as_ref())
        .filter(|h| !h.is_empty());
    if let Some(h) = helper {
        return run_helper(h, &key);
    }
    // Entries may be written as a bare host or as a URL (`https://host/v1/`).
    let entry = cfg.auths.get(&key).or_else(|| {
        cfg.auths
            .iter()
            .find(|(k, _)| host_of_key(k) == domain)
            .map(|(_, v)| v)
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    if let Some(a) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|e| Error::Config(format!("invalid auth for {key} in config file: {e}")))?;
        let s = String::from_utf8(raw)
            .map_err(|_| Error::Config(format!("invalid auth for {key} in config file")))?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| Error::Config(format!("invalid auth for {key} in config file")))?;
        return Ok(Some(Credentials::new(u, p)));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials::new(u.clone(), p.clone()))),
        _ => Ok(None),
    }
}

fn host_of_key(k: &str) -> &str {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    k.split('/').next().unwrap_or(k)
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// `docker-credential-<name> get` with the server URL on stdin (the docker credential helper
/// protocol). "credentials not found" is not an error: the pull goes on anonymously.
fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>> {
    let prog = format!("docker-credential-{name}");
    let mut child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Config(format!("error getting credentials - {prog}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE here; its exit status tells more.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Config(format!("error getting credentials - {prog}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::Config(format!(
            "error getting credentials - err: {}, out: `{}`",
            out.status,
            stdout.trim()
        )));
    }
    let reply: HelperReply = serde_json::from_str(&stdout).map_err(|e| {
        Error::Config(format!(
            "error getting credentials - {prog}: bad reply: {e}"
        ))
    })?;
    if reply.username.is_empty() && reply.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(reply.username, reply.secret)))
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parse `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
        }),
        _ => None,
    }
}

/// key=value or key="quoted, value" pairs separated by commas.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn registry_auth_header() {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
        assert_eq!(
            Credentials::from_registry_auth_header(&enc(
                r#"{"username":"u","password":"p","serveraddress":"x"}"#
            ))
            .unwrap(),
            Some(Credentials::new("u", "p"))
        );
        assert_eq!(
            Credentials::from_registry_auth_header(&enc("{}")).unwrap(),
            None
        );
        assert_eq!(Credentials::from_registry_auth_header("").unwrap(), None);
        assert!(Credentials::from_registry_auth_header("!!!").is_err());
    }

    #[test]
    fn config_file_auths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"localhost:5000":{"auth":"YTpiOmM="},"https://other.io/v1/":{"username":"x","password":"y"}}}"#,
        )
        .unwrap();
        assert_eq!(
            lookup(&p, "docker.io").unwrap(),
            Some(Credentials::new("user", "pass"))
        );
        assert_eq!(
            lookup(&p, "localhost:5000").unwrap(),
            Some(Credentials::new("a", "b:c"))
        );
        assert_eq!(
            lookup(&p, "other.io").unwrap(),
            Some(Credentials::new("x", "y"))
        );
        assert_eq!(lookup(&p, "nowhere.io").unwrap(), None);
        assert_eq!(lookup(&dir.path().join("missing"), "x").unwrap(), None);
    }

    #[test]
    fn credential_helper() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-berthtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\nif [ \"$server\" = reg.example:5000 ]; then echo '{\"ServerURL\":\"reg.example:5000\",\"Username\":\"hu\",\"Secret\":\"hs\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"credHelpers":{"reg.example:5000":"berthtest"}}"#).unwrap();
        // The helper is found on PATH, like docker does.
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.path().to_path_buf()];
        paths.extend(std::env::split_paths(&old));
        let joined = std::env::join_paths(paths).unwrap();
        // SAFETY: this test module's only env mutation; other tests do not read PATH concurrently
        // in a way that matters (they would still find their programs).
        unsafe { std::env::set_var("PATH", &joined) };
        assert_eq!(
            lookup(&p, "reg.example:5000").unwrap(),
            Some(Credentials::new("hu", "hs"))
        );
        std::fs::write(&p, r#"{"credsStore":"berthtest"}"#).unwrap();
        assert_eq!(lookup(&p, "other:5000").unwrap(), None);
    }
}
