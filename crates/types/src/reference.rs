//! Image references, parsed and normalized exactly as Docker's `distribution/reference` does:
//! `busybox` -> `docker.io/library/busybox:latest`, `host:5000/a/b:tag`, `name@sha256:...`.

use std::fmt;

use crate::Digest;

/// Errors carry Docker's messages, e.g. `invalid reference format`,
/// `invalid reference format: repository name (library/Busybox) must be lowercase`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReferenceError(pub String);

/// A normalized reference: always has a domain; `tag` and/or `digest` may be absent
/// (a bare name is a repository, e.g. for `images busybox` filters or `push -a`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// e.g. `docker.io`, `localhost:5000`
    pub domain: String,
    /// e.g. `library/busybox`
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse what a user typed (Docker's ParseNormalizedNamed). Does not add `:latest`.
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if is_full_hex_id(s) {
            return Err(ReferenceError(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (domain, remainder) = split_docker_domain(s);
        // Docker checks case on the part before the first ':' (tag or digest separator).
        let remote_name = remainder.split(':').next().unwrap_or_default();
        if remote_name.to_lowercase() != remote_name {
            return Err(ReferenceError(format!(
                "invalid reference format: repository name ({remote_name}) must be lowercase"
            )));
        }
        parse_full(&domain, &remainder)
    }

    /// Parse and add `:latest` when neither tag nor digest is given (Docker's TagNameOnly).
    pub fn parse_tagged(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse_normalized(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(r)
    }

    /// Neither tag nor digest: a bare repository name.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// Same repository, no tag, no digest.
    pub fn repository(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// Same repository, pinned to `digest`, tag dropped (a repo digest reference).
    pub fn with_digest(&self, digest: &Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.clone()),
        }
    }

    /// `docker.io/library/busybox`
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Docker's FamiliarName: `busybox`, `user/app`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                // Only single-component official names drop the prefix (library/a/b keeps it).
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// Docker's FamiliarString: `busybox:latest`, `busybox@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(&d.to_string());
        }
        out
    }

    /// Same repository, tag replaced, digest dropped.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        }
    }
}

/// The fully qualified string form: `docker.io/library/busybox:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
/// Docker's NameTotalLengthMax.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

fn invalid() -> ReferenceError {
    ReferenceError("invalid reference format".to_owned())
}

/// Docker's splitDockerDomain: the first component is a domain only if it looks like one
/// (has '.' or ':', is `localhost`, or has uppercase letters).
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i)
            if name[..i].contains(['.', ':'])
                || &name[..i] == "localhost"
                || name[..i].to_lowercase() != name[..i] =>
        {
            (name[..i].to_owned(), name[i + 1..].to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// Docker's `Parse` of `domain/remainder` where the domain is already split off.
fn parse_full(domain: &str, remainder: &str) -> Result<Reference, ReferenceError> {
    // The digest is everything after the first '@' (no other part may contain '@').
    let (rest, digest) = match remainder.split_once('@') {
        Some((r, d)) => (r, Some(parse_digest(d)?)),
        None => (remainder, None),
    };
    // A tag is after the last ':' of the path (the domain's port colon is not in `remainder`).
    let (path, tag) = match rest.rsplit_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (rest, None),
    };
    if tag.is_some_and(|t| !valid_tag(t)) {
        return Err(invalid());
    }
    if !valid_domain(domain) || !valid_path(path) {
        // Docker reports uppercase separately when the lowercased string would have parsed.
        if valid_domain(domain) && valid_path(&path.to_lowercase()) {
            return Err(ReferenceError(
                "invalid reference format: repository name must be lowercase".to_owned(),
            ));
        }
        return Err(invalid());
    }
    if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError(format!(
            "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )));
    }
    Ok(Reference {
        domain: domain.to_owned(),
        path: path.to_owned(),
        tag: tag.map(str::to_owned),
        digest,
    })
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// host[:port] where host is a dotted domain name or a bracketed IPv6 address.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let ip = &rest[..end];
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (None, Some(p)),
            None if after.is_empty() => (None, None),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    match host {
        None => true,
        Some(h) => h.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        }),
    }
}

/// path-component ('/' path-component)*, each `[a-z0-9]+((?:[._]|__|[-]+)[a-z0-9]+)*`.
fn valid_path(p: &str) -> bool {
    p.split('/').all(valid_path_component)
}

fn valid_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `algorithm:hex` as Docker validates it (only sha256 is supported here).
fn parse_digest(d: &str) -> Result<Digest, ReferenceError> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(invalid());
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|x| x.is_ascii_alphanumeric())
    });
    if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    if alg != "sha256" {
        return Err(ReferenceError("unsupported digest algorithm".to_owned()));
    }
    if hex.len() != 64 {
        return Err(ReferenceError("invalid checksum digest length".to_owned()));
    }
    Digest::from_hex(hex).map_err(|_| ReferenceError("invalid checksum digest format".to_owned()))
}

/// Is this a 64-hex image ID (what Docker refuses as a repository name)?
pub fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse_normalized(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn full(s: &str) -> String {
        Reference::parse_tagged(s).unwrap().to_string()
    }

    fn err(s: &str) -> String {
        Reference::parse_normalized(s).unwrap_err().0
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(full("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            full("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full("index.docker.io/user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/a/b:tag"), "localhost:5000/a/b:tag");
        assert_eq!(full("quay.io/a/b/c"), "quay.io/a/b/c:latest");
        assert_eq!(full("[::1]:5000/app:x"), "[::1]:5000/app:x");
        assert_eq!(
            full("a_b/c__d/e-f--g.h"),
            "docker.io/a_b/c__d/e-f--g.h:latest"
        );
        let r = Reference::parse_tagged(&format!("busybox@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().hex(), HEX);
        assert_eq!(r.familiar(), format!("busybox@sha256:{HEX}"));
        let r = Reference::parse_tagged(&format!("busybox:1@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox:1@sha256:{HEX}")
        );
        assert!(
            Reference::parse_normalized("busybox")
                .unwrap()
                .is_name_only()
        );
        // Cases from distribution/reference's normalize tests.
        assert_eq!(full("test_com"), "docker.io/library/test_com:latest");
        assert_eq!(full("test.com:tag"), "docker.io/library/test.com:tag");
        assert_eq!(full("test.com:5000"), "docker.io/library/test.com:5000");
        assert_eq!(full("test.com/repo:tag"), "test.com/repo:tag");
        assert_eq!(full("test:5000/repo"), "test:5000/repo:latest");
        assert_eq!(
            full("lowercase:Uppercase"),
            "docker.io/library/lowercase:Uppercase"
        );
        assert_eq!(
            full("sub-dom1.foo.com/bar/baz/quux"),
            "sub-dom1.foo.com/bar/baz/quux:latest"
        );
        assert_eq!(
            full("foo_bar.com:8080"),
            "docker.io/library/foo_bar.com:8080"
        );
        assert_eq!(
            full("foo/foo_bar.com:8080"),
            "docker.io/foo/foo_bar.com:8080"
        );
        assert_eq!(full("192.168.1.1:5000/a"), "192.168.1.1:5000/a:latest");
        // Uppercase first component is a domain (Docker: "Foo" can't be a path component).
        assert_eq!(full("Foo/bar"), "Foo/bar:latest");
    }

    #[test]
    fn familiar_forms() {
        let f = |s: &str| Reference::parse_tagged(s).unwrap();
        assert_eq!(f("busybox").familiar(), "busybox:latest");
        assert_eq!(f("busybox").familiar_name(), "busybox");
        assert_eq!(f("docker.io/library/busybox:1").familiar(), "busybox:1");
        assert_eq!(f("library/a/b").familiar_name(), "library/a/b");
        assert_eq!(f("user/app:v").familiar(), "user/app:v");
        assert_eq!(
            f("localhost:5000/app").familiar(),
            "localhost:5000/app:latest"
        );
        assert_eq!(f("busybox").name(), "docker.io/library/busybox");
    }

    #[test]
    fn errors_like_docker() {
        assert_eq!(
            err("Busybox"),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert_eq!(
            err("user/App:v1"),
            "invalid reference format: repository name (user/App) must be lowercase"
        );
        assert_eq!(
            err(HEX),
            format!("invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings")
        );
        assert_eq!(
            err("test:5000/Uppercase/lowercase:tag"),
            "invalid reference format: repository name (Uppercase/lowercase) must be lowercase"
        );
        for bad in [
            "aa/asdf$$^/aa",
            "[fe80::1%eth0]:5000/repo",
            "a/a:tag@",
            "",
            ":",
            "busybox:",
            "busybox:ta g",
            "busybox:-x",
            "bu sy",
            "busybox/",
            "/busybox",
            "a//b",
            "a..b",
            "-a",
            "a-",
            "a___b",
            "busybox@",
            "busybox@sha256:abc",
            "localhost:port/a",
            "example.com:/a",
            "ex_ample.com/a",
            "[::1/a",
            "a:b:c",
            "busybox@sha256:xyz",
        ] {
            assert_eq!(err(bad), "invalid reference format", "input {bad:?}");
        }
        assert_eq!(
            err(&format!("busybox:{}", "a".repeat(129))),
            "invalid reference format"
        );
        assert!(Reference::parse_normalized(&format!("busybox:{}", "a".repeat(128))).is_ok());
        assert_eq!(
            err(&format!("busybox@sha256:{}", "a".repeat(63))),
            "invalid checksum digest length"
        );
        assert_eq!(
            err(&format!("busybox@sha512:{}", "a".repeat(128))),
            "unsupported digest algorithm"
        );
        let long = format!("a/{}", "b".repeat(260));
        assert!(err(&long).contains("must not be more than 255"));
    }

    #[test]
    fn serde_round_trip() {
        let r = Reference::parse_tagged("busybox").unwrap();
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, "\"docker.io/library/busybox:latest\"");
        let back: Reference = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
    }
}
