//! Compiled seccomp filters, cached across shims: compiling Docker's default profile (three
//! architectures) cost 3–11 ms of CPU in every container's init. The first shim that meets a
//! filter compiles it (libcontainer's own code: vendor/libcontainer/BERTH-PATCH.md) and saves
//! the program under `<runtime-root>/.seccomp/`; later shims read it and hand it to
//! libcontainer, which loads it instead of compiling again.
//!
//! A cache file holds the filter (JSON) it was compiled from, and is used only for an equal
//! filter, so a hash collision or a stale file can cost a compile, never a wrong filter. The
//! directory lives in the exec root (tmpfs, root only): it starts empty at every boot, so a
//! program never outlives the kernel and libseccomp it was made for.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::LinuxSeccomp;

const DIR: &str = ".seccomp";

fn file_for(runtime_root: &Path, json: &[u8]) -> PathBuf {
    // not a security boundary (the content is compared in full): any stable hash will do
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    runtime_root
        .join(DIR)
        .join(format!("{:016x}.bpf", h.finish()))
}

/// `[u32 LE: filter JSON length][filter JSON][program]`.
fn encode(json: &[u8], bpf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + json.len() + bpf.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(bpf);
    out
}

/// The program stored in `data` if it was compiled from `json`.
fn decode<'a>(data: &'a [u8], json: &[u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let stored = data.get(4..4 + len)?;
    (stored == json).then(|| &data[4 + len..])
}

/// Makes the precompiled program for `sc` available to the container's init and to exec'd
/// processes (they are clones of this process). Best effort: on any failure libcontainer
/// compiles the filter itself, as before.
pub fn prepare(runtime_root: &Path, sc: &LinuxSeccomp) {
    if !libcontainer::seccomp::precompilable(sc) {
        return;
    }
    let Ok(json) = serde_json::to_vec(sc) else {
        return;
    };
    let path = file_for(runtime_root, &json);
    if let Ok(data) = std::fs::read(&path)
        && let Some(bpf) = decode(&data, &json)
    {
        libcontainer::seccomp::set_precompiled(sc.clone(), bpf);
        return;
    }
    let bpf = match libcontainer::seccomp::compile_bpf(sc) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("berth-shim: compiling the seccomp filter ahead: {e}");
            return;
        }
    };
    libcontainer::seccomp::set_precompiled(sc.clone(), &bpf);
    if let Err(e) = store(&path, &encode(&json, &bpf)) {
        eprintln!("berth-shim: caching the seccomp filter: {e}");
    }
}

/// temp + rename, so a concurrent shim reads a whole file or none.
fn store(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_only_their_filter() {
        let e = encode(b"{\"a\":1}", &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            decode(&e, b"{\"a\":1}"),
            Some(&[1u8, 2, 3, 4, 5, 6, 7, 8][..])
        );
        assert_eq!(decode(&e, b"{\"a\":2}"), None);
        assert_eq!(decode(&e[..3], b"{\"a\":1}"), None);
        assert_eq!(decode(&e[..6], b"{\"a\":1}"), None);
        let root = Path::new("/x");
        assert_eq!(file_for(root, b"a"), file_for(root, b"a"));
        assert_ne!(file_for(root, b"a"), file_for(root, b"b"));
    }
}
