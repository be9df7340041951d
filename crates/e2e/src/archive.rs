//! Test images made locally: a busybox root filesystem from Debian's busybox-static, docker-archive
//! tars built in code, and hostile layers (raw tar headers, so paths like `../x` are possible).

use std::io::Read;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// One tar entry written with raw header bytes: no path sanitizing, for hostile input.
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    /// A regular file with the given mode (e.g. 0o755 for executables).
    FileMode(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn raw_header(path: &str, kind: tar::EntryType, size: u64, mode: u32, link: &str) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let name = &mut h.as_old_mut().name;
        let b = path.as_bytes();
        assert!(b.len() < name.len(), "test path too long");
        name[..b.len()].copy_from_slice(b);
        let l = &mut h.as_old_mut().linkname;
        let lb = link.as_bytes();
        assert!(lb.len() < l.len(), "test link too long");
        l[..lb.len()].copy_from_slice(lb);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// A layer tar from raw entries.
pub fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (h, data): (tar::Header, &[u8]) = match e {
            Entry::File(p, d) => (
                raw_header(p, tar::EntryType::Regular, d.len() as u64, 0o644, ""),
                d,
            ),
            Entry::FileMode(p, d, mode) => (
                raw_header(p, tar::EntryType::Regular, d.len() as u64, *mode, ""),
                d,
            ),
            Entry::Dir(p) => (raw_header(p, tar::EntryType::Directory, 0, 0o755, ""), &[]),
            Entry::Symlink(p, t) => (raw_header(p, tar::EntryType::Symlink, 0, 0o777, t), &[]),
            Entry::Hardlink(p, t) => (raw_header(p, tar::EntryType::Link, 0, 0o644, t), &[]),
        };
        b.append(&h, data).expect("append to in-memory tar");
    }
    b.into_inner().expect("finish in-memory tar")
}

/// A minimal root filesystem: /bin/busybox (static) with a symlink per applet, /etc basics.
pub fn busybox_rootfs() -> Vec<u8> {
    let busybox_path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed (apt-get install busybox-static)");
    let mut busybox = Vec::new();
    std::fs::File::open(busybox_path)
        .and_then(|mut f| f.read_to_end(&mut busybox))
        .expect("read busybox");
    let list = std::process::Command::new(busybox_path)
        .arg("--list")
        .output()
        .expect("busybox --list");
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: &str| {
        let h = raw_header(path, kind, data.len() as u64, mode, link);
        b.append(&h, data).expect("append");
    };
    for d in [
        "bin/", "etc/", "tmp/", "root/", "home/", "var/", "proc/", "sys/", "dev/", "usr/",
        "usr/bin/",
    ] {
        add(
            d,
            tar::EntryType::Directory,
            if d == "tmp/" { 0o1777 } else { 0o755 },
            &[],
            "",
        );
    }
    add("bin/busybox", tar::EntryType::Regular, 0o755, &busybox, "");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        add(
            &format!("bin/{applet}"),
            tar::EntryType::Symlink,
            0o777,
            &[],
            "busybox",
        );
    }
    add(
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        "",
    );
    add(
        "etc/group",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n",
        "",
    );
    b.into_inner().expect("finish tar")
}

/// An image config JSON for the given layers.
pub fn config(layers: &[Vec<u8>], cmd: &[&str], created: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"created": created, "created_by": format!("/bin/sh -c #(nop) layer {i}")}))
        .collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "history": history,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("serialize config")
}

/// A docker-archive as Docker 1.10–24 writes it: `<id>/layer.tar`, `<config hex>.json`,
/// manifest.json, repositories. `config` may be anything (e.g. with a wrong diff ID).
pub fn docker_archive(layers: &[Vec<u8>], config: &[u8], tags: &[&str]) -> Vec<u8> {
    let config_hex = sha256_hex(config);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let h = raw_header(path, tar::EntryType::Regular, data.len() as u64, 0o644, "");
        b.append(&h, data).expect("append");
    };
    let mut layer_paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        // Docker used v1 layer IDs as directory names; any unique name works.
        let dir = sha256_hex(format!("{i}{}", sha256_hex(l)).as_bytes());
        add(&format!("{dir}/VERSION"), b"1.0");
        add(&format!("{dir}/layer.tar"), l);
        add(&format!("{dir}/json"), b"{}");
        layer_paths.push(format!("{dir}/layer.tar"));
    }
    add(&format!("{config_hex}.json"), config);
    let manifest =
        json!([{"Config": format!("{config_hex}.json"), "RepoTags": tags, "Layers": layer_paths}]);
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    b.into_inner().expect("finish tar")
}

/// `n` bytes that do not compress (xorshift), for large test layers.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Gzip-compress (for compressed-archive tests).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip finish")
}
