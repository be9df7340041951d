//! Archive formats: docker-archive (manifest.json, repositories), OCI image layout (index.json),
//! compression sniffing (gzip, zstd, plain).
//!
//! Loading is two steps: [`spool`] copies every file of the (unseekable) archive stream into a
//! private temp directory, hashing as it goes; [`plan`] then reads manifest.json or index.json
//! from the spool and says which config and layer files make up each image, verifying OCI blob
//! digests and sizes. The store does the unpacking and the commit.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use berth_types::digest::Hasher;
use berth_types::image_config::ImageConfig;
use berth_types::{Digest, Reference};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Largest JSON document (manifest, index, config) we agree to parse from an archive.
const MAX_JSON: u64 = 64 << 20;

/// One item of docker-archive's manifest.json. Field order is Docker's (it is serialized too).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestItem {
    #[serde(rename = "Config")]
    pub config: String,
    /// `null` when the image was saved untagged, as Docker writes it.
    #[serde(rename = "RepoTags")]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
    #[serde(rename = "Parent", default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(
        rename = "LayerSources",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub layer_sources: Option<BTreeMap<String, Descriptor>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// OCI content descriptor (field order as Go's ocispec.Descriptor).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: i64,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: i64,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// A file of the archive, copied to disk.
#[derive(Debug, Clone)]
pub struct SpooledFile {
    pub path: PathBuf,
    /// sha256 of the bytes as stored in the archive.
    pub digest: Digest,
    pub size: u64,
}

/// Every regular file of an archive, by its cleaned path inside the archive.
#[derive(Debug, Default)]
pub struct Spool {
    pub files: HashMap<String, SpooledFile>,
    /// Symlinks and hardlinks between archive members (old docker save links repeated layers).
    pub links: HashMap<String, String>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArchive(msg.into())
}

fn tar_err(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad("unexpected EOF")
    } else {
        bad(format!("invalid tar: {e}"))
    }
}

/// Lexically clean an archive member path ("./a/../b" -> "b"); None if it climbs above the top.
fn clean(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Spool {
    /// Find a member, following archive-internal links (bounded, so cycles end).
    pub fn get(&self, path: &str) -> Result<&SpooledFile> {
        let mut p = clean(path).ok_or_else(|| bad(format!("invalid path {path:?} in archive")))?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Ok(f);
            }
            match self.links.get(&p) {
                Some(next) => p = next.clone(),
                None => break,
            }
        }
        Err(bad(format!("file {path:?} not found in archive")))
    }

    pub fn read_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let bytes = self.read_small(path)?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid {path}: {e}")))
    }

    pub fn read_small(&self, path: &str) -> Result<Vec<u8>> {
        let f = self.get(path)?;
        if f.size > MAX_JSON {
            return Err(bad(format!("{path} is too large")));
        }
        std::fs::read(&f.path).map_err(|e| Error::io(format!("reading spooled {path}"), e))
    }
}

/// Copy every member of the tar `input` (already decompressed) into `dir`.
pub fn spool(input: &mut dyn Read, dir: &Path) -> Result<Spool> {
    let mut spool = Spool::default();
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(tar_err)?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(tar_err)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = clean(&raw) else {
            return Err(bad(format!("invalid path {raw:?} in archive")));
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let path = dir.join(format!("f{n}"));
                let mut out = File::create(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                let mut hasher = Hasher::new();
                let expected = entry.size();
                let mut buf = vec![0u8; 256 * 1024];
                let mut size = 0u64;
                loop {
                    let k = entry.read(&mut buf).map_err(tar_err)?;
                    if k == 0 {
                        break;
                    }
                    hasher.update(&buf[..k]);
                    out.write_all(&buf[..k])
                        .map_err(|e| Error::io("writing spool file", e))?;
                    size += k as u64;
                }
                if size != expected {
                    return Err(bad("unexpected EOF"));
                }
                spool.files.insert(
                    name,
                    SpooledFile {
                        path,
                        digest: hasher.finish(),
                        size,
                    },
                );
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                // Symlink targets are relative to the link's directory, hardlinks to the top.
                let joined = if entry.header().entry_type() == tar::EntryType::Symlink
                    && !target.starts_with('/')
                {
                    match name.rsplit_once('/') {
                        Some((d, _)) => format!("{d}/{target}"),
                        None => target,
                    }
                } else {
                    target
                };
                if let Some(t) = clean(&joined) {
                    spool.links.insert(name, t);
                }
            }
            _ => {}
        }
    }
    // The outer stream must also be complete; drain trailing padding for compressed inputs.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(tar_err)?;
    Ok(spool)
}

/// One image of an archive, as the archive describes it.
#[derive(Debug)]
pub struct PlannedImage {
    pub config_path: String,
    pub config_bytes: Vec<u8>,
    pub id: Digest,
    pub config: ImageConfig,
    /// Archive paths of the layer files, bottom to top (same length as diff_ids).
    pub layer_paths: Vec<String>,
    pub tags: Vec<Reference>,
    /// `Parent` from manifest.json (kept only if the store validates it).
    pub parent: Option<Digest>,
}

fn parse_digest(s: &str, what: &str) -> Result<Digest> {
    s.parse()
        .map_err(|_| bad(format!("invalid digest {s:?} in {what}")))
}

/// Check that the spooled blob at `blobs/sha256/<hex>` matches its descriptor.
fn check_blob(spool: &Spool, d: &Descriptor) -> Result<String> {
    let dg = parse_digest(&d.digest, "descriptor")?;
    let path = format!("blobs/sha256/{}", dg.hex());
    let f = spool.get(&path)?;
    if f.digest != dg {
        return Err(Error::DigestMismatch {
            what: path,
            expected: dg.to_string(),
            actual: f.digest.to_string(),
        });
    }
    if d.size >= 0 && f.size != d.size as u64 {
        return Err(bad(format!(
            "size mismatch for {path}: descriptor says {}, blob has {}",
            d.size, f.size
        )));
    }
    Ok(path)
}

/// What the archive says to load: manifest.json when present (docker-archive, including the
/// Docker 25+ combined form), else the OCI layout's index.json.
pub fn plan(spool: &Spool) -> Result<Vec<PlannedImage>> {
    let mut out = Vec::new();
    if spool.get("manifest.json").is_ok() {
        let items: Vec<ManifestItem> = spool.read_json("manifest.json")?;
        for item in items {
            let tags = item
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse_tagged(t))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let mut p = planned(spool, &item.config, item.layers, tags)?;
            p.parent = item.parent.as_deref().and_then(|s| s.parse().ok());
            out.push(p);
        }
    } else if spool.get("index.json").is_ok() {
        if let Ok(layout) = spool.read_json::<serde_json::Value>("oci-layout")
            && layout["imageLayoutVersion"] != "1.0.0"
        {
            return Err(bad("unsupported OCI layout version"));
        }
        let index: OciIndex = spool.read_json("index.json")?;
        for desc in &index.manifests {
            let tags = tags_from_annotations(desc);
            let (manifest_path, _) = resolve_manifest(spool, desc, 0)?;
            let m: OciManifest = spool.read_json(&manifest_path)?;
            let cfg = check_blob(spool, &m.config)?;
            let mut layers = Vec::new();
            for l in &m.layers {
                layers.push(check_blob(spool, l)?);
            }
            // The same manifest listed twice (two tags): merge into one image.
            let p = planned(spool, &cfg, layers, tags)?;
            match out.iter_mut().find(|x: &&mut PlannedImage| x.id == p.id) {
                Some(existing) => existing.tags.extend(p.tags),
                None => out.push(p),
            }
        }
    } else {
        return Err(bad(
            "invalid archive: neither manifest.json nor index.json found (not a docker save or OCI layout tar)",
        ));
    }
    Ok(out)
}

fn tags_from_annotations(desc: &Descriptor) -> Vec<Reference> {
    let Some(a) = &desc.annotations else {
        return Vec::new();
    };
    if let Some(r) = a
        .get(ANNOTATION_IMAGE_NAME)
        .and_then(|n| Reference::parse_tagged(n).ok())
    {
        return vec![r];
    }
    // A bare tag ("latest") names no repository; only a full reference can tag the image.
    match a.get(ANNOTATION_REF_NAME) {
        Some(n) if n.contains('/') || n.contains(':') => {
            Reference::parse_tagged(n).ok().into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// Follow a descriptor through nested indexes to an image manifest (linux/amd64 preferred).
fn resolve_manifest(spool: &Spool, desc: &Descriptor, depth: u32) -> Result<(String, Descriptor)> {
    if depth > 4 {
        return Err(bad("OCI index nesting too deep"));
    }
    let path = check_blob(spool, desc)?;
    let is_index = desc.media_type == MEDIA_OCI_INDEX || desc.media_type == MEDIA_DOCKER_LIST || {
        // mediaType is optional in a descriptor: look inside.
        desc.media_type.is_empty()
            && spool
                .read_json::<serde_json::Value>(&path)
                .map(|v| v.get("manifests").is_some())
                .unwrap_or(false)
    };
    if !is_index {
        return Ok((path, desc.clone()));
    }
    let idx: OciIndex = spool.read_json(&path)?;
    let pick = idx
        .manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .or_else(|| {
            // Only one manifest without a platform: take it.
            (idx.manifests.len() == 1).then(|| &idx.manifests[0])
        })
        .ok_or_else(|| bad("no linux/amd64 image in the OCI index"))?;
    resolve_manifest(spool, pick, depth + 1)
}

fn planned(
    spool: &Spool,
    config_path: &str,
    layer_paths: Vec<String>,
    tags: Vec<Reference>,
) -> Result<PlannedImage> {
    let config_bytes = spool.read_small(config_path)?;
    let id = Digest::of(&config_bytes);
    // A config stored under its digest must match it (docker-archive names it <id>.json or
    // blobs/sha256/<id>).
    let stem = config_path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".json");
    if berth_types::reference::is_full_hex_id(stem) && stem != id.hex() {
        return Err(Error::DigestMismatch {
            what: format!("config {config_path}"),
            expected: format!("sha256:{stem}"),
            actual: id.to_string(),
        });
    }
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| bad(format!("invalid image config {config_path}: {e}")))?;
    if config.rootfs.diff_ids.len() != layer_paths.len() {
        return Err(bad(format!(
            "invalid manifest, layers length mismatch: expected {}, got {}",
            config.rootfs.diff_ids.len(),
            layer_paths.len()
        )));
    }
    Ok(PlannedImage {
        config_path: config_path.to_owned(),
        config_bytes,
        id,
        config,
        layer_paths,
        tags,
        parent: None,
    })
}
