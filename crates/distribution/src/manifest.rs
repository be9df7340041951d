//! Manifest and index models (Docker schema2 and OCI), media types, platform selection.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_NONDIST_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// What we ask for, in preference order (schema1 deliberately absent: we refuse it).
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;
/// Configs larger than this are refused before download.
pub const MAX_CONFIG: u64 = 32 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// linux/amd64, what pulls default to on this (amd64) host.
    pub fn host() -> Platform {
        Platform {
            architecture: normalize_arch(std::env::consts::ARCH).0,
            os: "linux".into(),
            variant: None,
            os_version: None,
        }
    }

    /// `--platform os/arch[/variant]`, normalized like containerd's platforms package.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::Unsupported(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ))
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(v.to_string())),
            _ => return Err(bad()),
        };
        let (architecture, default_variant) = normalize_arch(&arch.to_ascii_lowercase());
        Ok(Platform {
            architecture,
            os: os.to_ascii_lowercase(),
            variant: variant.or(default_variant),
            os_version: None,
        })
    }

    /// Does a manifest list entry for `other` run here? Variants: an unspecified wanted
    /// variant matches any; arm64's v8 is its default.
    pub fn matches(&self, other: &Platform) -> bool {
        let (arch, default_variant) = normalize_arch(&other.architecture);
        let variant = other.variant.clone().or(default_variant);
        self.os == other.os
            && self.architecture == arch
            && (self.variant.is_none() || self.variant == variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// (architecture, default variant) as containerd normalizes them.
fn normalize_arch(a: &str) -> (String, Option<String>) {
    match a {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), None),
        "aarch64" | "arm64" => ("arm64".into(), Some("v8".into())),
        "armhf" | "arm" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "i386" | "386" => ("386".into(), None),
        other => (other.to_owned(), None),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// A single-image manifest (Docker schema2 or OCI; same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest list or OCI index.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// What a manifest GET returned.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
}

/// Docker's message for schema1 images, which it no longer pulls either.
pub fn schema1_message(name: &str) -> String {
    format!(
        "[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. Suggest the author of {name} to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/"
    )
}

/// Classify and parse a manifest body by its Content-Type, falling back on its `mediaType`
/// and shape (some registries answer `application/json`).
pub fn parse(content_type: Option<&str>, body: &[u8], name: &str) -> Result<Manifest> {
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| Error::Unsupported(format!("invalid manifest for {name}: {e}")))?;
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned())
        .filter(|c| c.starts_with("application/vnd."))
        .or(probe.media_type.clone())
        .unwrap_or_default();
    if ct == DOCKER_SCHEMA1
        || ct == DOCKER_SCHEMA1_SIGNED
        || probe.schema_version == Some(1)
        || probe.fs_layers.is_some()
    {
        return Err(Error::Unsupported(schema1_message(name)));
    }
    let bad =
        |e: serde_json::Error| Error::Unsupported(format!("invalid manifest for {name}: {e}"));
    match ct.as_str() {
        DOCKER_LIST | OCI_INDEX => Ok(Manifest::Index(serde_json::from_slice(body).map_err(bad)?)),
        DOCKER_MANIFEST | OCI_MANIFEST => Ok(Manifest::Image(Box::new(
            serde_json::from_slice(body).map_err(bad)?,
        ))),
        "" if probe.manifests.is_some() => {
            Ok(Manifest::Index(serde_json::from_slice(body).map_err(bad)?))
        }
        "" => Ok(Manifest::Image(Box::new(
            serde_json::from_slice(body).map_err(bad)?,
        ))),
        other => Err(Error::Unsupported(format!(
            "unsupported manifest media type for {name}: {other}"
        ))),
    }
}

/// Pick the entry of an index for `want`; attestation entries (`unknown/unknown`) never match.
pub fn select<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| want.matches(p))
            && matches!(d.media_type.as_str(), DOCKER_MANIFEST | OCI_MANIFEST | "")
    })
}

/// Is this layer media type something we can unpack? (compression itself is sniffed)
pub fn is_layer_type(mt: &str) -> bool {
    matches!(
        mt,
        DOCKER_LAYER_GZIP
            | DOCKER_LAYER_TAR
            | DOCKER_FOREIGN_LAYER
            | OCI_LAYER_TAR
            | OCI_LAYER_GZIP
            | OCI_LAYER_ZSTD
            | OCI_NONDIST_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert!(p.matches(&Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: None,
            os_version: None
        }));
        let amd = Platform::parse("linux/amd64").unwrap();
        assert!(!amd.matches(&Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: None,
            os_version: None
        }));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert_eq!(
            Platform::parse("linux/arm/v6").unwrap().to_string(),
            "linux/arm/v6"
        );
    }

    #[test]
    fn schema1_refused() {
        let body = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let e = parse(Some("application/json"), body, "x").unwrap_err();
        assert!(
            e.to_string().contains("schema 1 support has been removed"),
            "{e}"
        );
    }

    #[test]
    fn classify_by_shape() {
        let idx = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:00","platform":{"architecture":"amd64","os":"linux"}}]}"#;
        match parse(None, idx, "x").unwrap() {
            Manifest::Index(i) => {
                assert!(select(&i, &Platform::parse("linux/amd64").unwrap()).is_some());
                assert!(select(&i, &Platform::parse("linux/arm64").unwrap()).is_none());
            }
            other => panic!("{other:?}"),
        }
    }
}
