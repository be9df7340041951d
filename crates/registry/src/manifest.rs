//! Manifests the registry accepts — Docker schema2 manifests and manifest lists, OCI image
//! manifests and indexes — and what it needs from them: the media type to serve them with, the
//! blobs and manifests they reference (checked on push, marked by `gc`), and their `subject`
//! with the descriptor the referrers API lists.

use berth_types::Digest;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::names::parse_digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Largest manifest accepted (the spec asks registries to take at least 4 MB).
pub const MAX_MANIFEST: usize = 4 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A manifest as the registry sees it.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub media_type: String,
    /// Config and layers (foreign layers with `urls` excluded: they live elsewhere).
    pub blobs: Vec<Digest>,
    /// Children of an index / manifest list.
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
    /// The referrers API's `artifactType`: the manifest's own, else its config's media type
    /// (image manifests only).
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Parsed {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// The descriptor of this manifest in a referrers list.
    pub fn referrer_descriptor(&self, digest: &Digest, size: usize) -> serde_json::Value {
        let mut d = serde_json::json!({
            "mediaType": self.media_type,
            "digest": digest.to_string(),
            "size": size,
        });
        if let Some(at) = &self.artifact_type {
            d["artifactType"] = at.clone().into();
        }
        if let Some(a) = &self.annotations {
            d["annotations"] = a.clone().into();
        }
        d
    }
}

/// Strip parameters and whitespace; generic types say nothing about the manifest.
fn meaningful_content_type(ct: Option<&str>) -> Option<&str> {
    let ct = ct?.split(';').next()?.trim();
    match ct {
        "" | "application/octet-stream" | "application/json" | "text/plain" => None,
        other => Some(other),
    }
}

fn descriptor_digest(d: &RawDescriptor) -> Result<Digest> {
    parse_digest(&d.digest)
        .map_err(|_| Error::ManifestInvalid(format!("invalid descriptor digest {:?}", d.digest)))
}

/// Parse and check a pushed manifest; `content_type` is the request's Content-Type.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Parsed> {
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| Error::ManifestInvalid(format!("not a manifest: {e}")))?;
    let ct = meaningful_content_type(content_type);
    if let (Some(ct), Some(mt)) = (ct, raw.media_type.as_deref())
        && ct != mt
    {
        return Err(Error::ManifestInvalid(format!(
            "mediaType {mt:?} does not match Content-Type {ct:?}"
        )));
    }
    let media_type = match (ct, raw.media_type.as_deref()) {
        (Some(t), _) | (None, Some(t)) => t.to_owned(),
        // OCI allows leaving mediaType out: tell manifest from index by shape.
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        (None, None) if raw.config.is_some() => OCI_MANIFEST.to_owned(),
        (None, None) => {
            return Err(Error::ManifestInvalid("unknown manifest type".into()));
        }
    };
    match media_type.as_str() {
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => {
            return Err(Error::ManifestInvalid(
                "schema1 manifests are not supported".into(),
            ));
        }
        DOCKER_MANIFEST | OCI_MANIFEST | DOCKER_LIST | OCI_INDEX => {}
        other => {
            return Err(Error::ManifestInvalid(format!(
                "unsupported manifest media type {other:?}"
            )));
        }
    }
    if raw.schema_version != Some(2) {
        return Err(Error::ManifestInvalid("schemaVersion must be 2".into()));
    }
    let subject = raw.subject.as_ref().map(descriptor_digest).transpose()?;
    let mut p = Parsed {
        media_type,
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject,
        artifact_type: raw.artifact_type.clone().filter(|a| !a.is_empty()),
        annotations: raw.annotations,
    };
    if p.is_index() {
        let children = raw
            .manifests
            .ok_or_else(|| Error::ManifestInvalid("index without manifests".into()))?;
        for c in &children {
            p.manifests.push(descriptor_digest(c)?);
        }
    } else {
        let config = raw
            .config
            .ok_or_else(|| Error::ManifestInvalid("manifest without config".into()))?;
        p.blobs.push(descriptor_digest(&config)?);
        if p.artifact_type.is_none() {
            p.artifact_type = config.media_type.clone();
        }
        for l in raw.layers.unwrap_or_default() {
            let d = descriptor_digest(&l)?;
            if l.urls.is_empty() {
                p.blobs.push(d);
            }
        }
    }
    Ok(p)
}

/// Everything a stored manifest keeps alive, for `gc`; garbage in, nothing out.
pub fn references(body: &[u8]) -> Vec<Digest> {
    match parse(None, body) {
        Ok(p) => p.blobs.into_iter().chain(p.manifests).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::of(&[n]).to_string()
    }

    #[test]
    fn image_manifest() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.example+json", "digest": d(1), "size": 1},
            "layers": [
                {"mediaType": "x", "digest": d(2), "size": 1},
                {"mediaType": "x", "digest": d(3), "size": 1, "urls": ["http://x"]},
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d(4), "size": 1},
            "annotations": {"a": "b"},
        });
        let p = parse(Some(OCI_MANIFEST), &serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.subject.unwrap().to_string(), d(4));
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.example+json")
        );
        // Content-Type disagreeing with mediaType is invalid.
        assert!(matches!(
            parse(Some(DOCKER_MANIFEST), &serde_json::to_vec(&m).unwrap()),
            Err(Error::ManifestInvalid(_))
        ));
        // Parameters on Content-Type are ignored.
        assert!(
            parse(
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                &serde_json::to_vec(&m).unwrap()
            )
            .is_ok()
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            &b"not json"[..],
            br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
            br#"{"schemaVersion":2,"config":{"digest":"sha256:zz"}}"#,
            br#"{"schemaVersion":2,"mediaType":"text/html","config":{"digest":"sha256:zz"}}"#,
        ] {
            assert!(matches!(parse(None, bad), Err(Error::ManifestInvalid(_))), "{}", String::from_utf8_lossy(bad));
        }
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}"}}]}}"#,
            d(9)
        );
        let p = parse(None, idx.as_bytes()).unwrap();
        assert_eq!(p.media_type, OCI_INDEX);
        assert_eq!(p.manifests.len(), 1);
        assert!(p.artifact_type.is_none());
    }
}
