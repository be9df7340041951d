//! The spec's grammar for what becomes a path: repository names, tags, upload ids, digests.
//! Nothing from a request touches the filesystem before it passed one of these checks, which is
//! what keeps every path inside the storage root (no `..`, no `/` in a component, no `_`-prefixed
//! component that could alias the storage's own `_layers`/`_manifests` directories).

use berth_types::Digest;

use crate::error::{Error, Result};

/// Longest repository name: clients limit `host/name` to 255 characters.
pub const MAX_NAME: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.split('/').all(is_valid_component)
}

fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false; // empty, leading separator, or two separators in a row
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Upload session ids are the 32 lowercase hex characters we hand out.
pub fn is_valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn check_name(name: &str) -> Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::NameInvalid)
    }
}

/// A digest from a request. Only sha256 is stored; anything else is a 400 DIGEST_INVALID, as
/// the spec asks for unsupported algorithms.
pub fn parse_digest(s: &str) -> Result<Digest> {
    s.parse::<Digest>()
        .map_err(|_| Error::DigestInvalid(format!("invalid or unsupported digest {s:?}")))
}

/// What a manifest URL names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    pub fn parse(s: &str) -> Result<ManifestRef> {
        if s.contains(':') {
            parse_digest(s).map(ManifestRef::Digest)
        } else if is_valid_tag(s) {
            Ok(ManifestRef::Tag(s.to_owned()))
        } else {
            Err(Error::TagInvalid(s.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/busybox",
            "a.b_c__d---e/f0",
            "x/y/z",
            "0",
            "a-b",
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "_layers",
            "a/_manifests",
            "a___b",
            "a-",
            "-a",
            "a.",
            "a..b",
            "a b",
            "a%2fb",
            &"a".repeat(256),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags_and_refs() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x.Y-1"));
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag(".."));
        assert!(!is_valid_tag("-a"));
        assert!(!is_valid_tag("a/b"));
        assert!(matches!(ManifestRef::parse("v1"), Ok(ManifestRef::Tag(_))));
        assert!(matches!(
            ManifestRef::parse(&Digest::of(b"").to_string()),
            Ok(ManifestRef::Digest(_))
        ));
        assert!(matches!(
            ManifestRef::parse("sha512:00"),
            Err(Error::DigestInvalid(_))
        ));
        assert!(!is_valid_upload_id("../../etc/passwd00000000000000000"));
    }
}
