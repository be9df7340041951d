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
        let _ = s;
        todo!()
    }

    /// Parse and add `:latest` when neither tag nor digest is given (Docker's TagNameOnly).
    pub fn parse_tagged(s: &str) -> Result<Reference, ReferenceError> {
        let _ = s;
        todo!()
    }

    /// `docker.io/library/busybox`
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Docker's FamiliarName: `busybox`, `user/app`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        todo!()
    }

    /// Docker's FamiliarString: `busybox:latest`, `busybox@sha256:...`.
    pub fn familiar(&self) -> String {
        todo!()
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
