//! Test archive builders: raw tar headers (so hostile paths can be written), layer tars,
//! configs and docker-archive / OCI layout tars.
#![allow(dead_code)]

use std::io::Write;

use berth_types::Digest;
use serde_json::json;

pub const MTIME: u64 = 1_700_000_000;

/// One tar entry, written with raw header fields (the tar crate refuses `..` in set_path).
pub struct E<'a> {
    pub path: &'a str,
    pub kind: tar::EntryType,
    pub data: &'a [u8],
    pub link: Option<&'a str>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub pax: Vec<(&'a str, &'a [u8])>,
    pub dev: (u32, u32),
}

impl<'a> E<'a> {
    pub fn file(path: &'a str, data: &'a [u8]) -> E<'a> {
        E {
            path,
            kind: tar::EntryType::Regular,
            data,
            link: None,
            mode: 0o644,
            uid: 0,
            gid: 0,
            pax: Vec::new(),
            dev: (0, 0),
        }
    }
    pub fn dir(path: &'a str) -> E<'a> {
        E {
            kind: tar::EntryType::Directory,
            mode: 0o755,
            ..E::file(path, b"")
        }
    }
    pub fn symlink(path: &'a str, target: &'a str) -> E<'a> {
        E {
            kind: tar::EntryType::Symlink,
            link: Some(target),
            mode: 0o777,
            ..E::file(path, b"")
        }
    }
    pub fn hardlink(path: &'a str, target: &'a str) -> E<'a> {
        E {
            kind: tar::EntryType::Link,
            link: Some(target),
            ..E::file(path, b"")
        }
    }
}

pub fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if !e.pax.is_empty() {
            b.append_pax_extensions(e.pax.iter().map(|(k, v)| (*k, *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
            if let Some(l) = e.link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(MTIME);
        if e.dev != (0, 0) || matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// A config for the given uncompressed layer tars.
pub fn config(layers: &[&[u8]], label: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let mut history: Vec<serde_json::Value> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"created": "2024-01-02T03:04:05Z", "created_by": format!("step {i}")}))
        .collect();
    history.push(json!({"created": "2024-01-02T03:04:06Z", "created_by": "CMD [\"sh\"]", "empty_layer": true}));
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:06Z",
        "config": {"Cmd": ["sh"], "Labels": {"test": label}},
        "history": history,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

pub struct Img<'a> {
    pub config: Vec<u8>,
    pub tags: Vec<&'a str>,
    /// Layer files as stored in the archive (may be compressed).
    pub layers: Vec<Vec<u8>>,
}

/// Old-style docker-archive: `<n>/layer.tar`, `<id>.json`, manifest.json.
pub fn docker_archive(images: &[Img<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut manifest = Vec::new();
    let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    for (n, img) in images.iter().enumerate() {
        let id = Digest::of(&img.config);
        add(&mut b, &format!("{}.json", id.hex()), &img.config);
        let mut layers = Vec::new();
        for (i, l) in img.layers.iter().enumerate() {
            let p = format!("layer{n}_{i}/layer.tar");
            add(&mut b, &p, l);
            layers.push(p);
        }
        manifest.push(json!({
            "Config": format!("{}.json", id.hex()),
            "RepoTags": img.tags,
            "Layers": layers,
        }));
    }
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

/// A pure OCI layout tar with a nested index (arm64 + amd64), layers gzip-compressed.
pub fn oci_layout(img: &Img<'_>, name: &str) -> Vec<u8> {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut put = |data: Vec<u8>| -> (String, usize) {
        let d = Digest::of(&data);
        let len = data.len();
        blobs.push((d.hex().to_owned(), data));
        (d.to_string(), len)
    };
    let (cd, cl) = put(img.config.clone());
    let mut layers = Vec::new();
    for l in &img.layers {
        let (d, len) = put(l.clone());
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len}));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
        "layers": layers,
    });
    let (md, ml) = put(serde_json::to_vec(&manifest).unwrap());
    // An arm64 manifest that is not in the archive: must never be touched.
    let nested = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 1, "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ml, "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    });
    let (nd, nl) = put(serde_json::to_vec(&nested).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nd, "size": nl,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}}],
    });
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(&mut b, "index.json", &serde_json::to_vec(&index).unwrap());
    for (hex, data) in &blobs {
        add(&mut b, &format!("blobs/sha256/{hex}"), data);
    }
    b.into_inner().unwrap()
}

/// Names of the entries of a tar, with their contents.
pub fn read_tar(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut a = tar::Archive::new(data);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        out.push((name, v));
    }
    out
}

/// Every path under `dir` (relative), sorted.
pub fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, d: &std::path::Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                if p.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false) {
                    walk(base, &p, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
