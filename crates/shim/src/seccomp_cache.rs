//! Compiled seccomp filters, cached across shims: compiling Docker's default profile (three
//! architectures) cost 3–11 ms of CPU in every container's init. The first shim that meets a
//! filter compiles it (libcontainer's own code: vendor/libcontainer/BERTH-PATCH.md) and saves
//! the program under `<runtime-root>/.seccomp/`; later shims read it and hand it to
//! libcontainer, which loads it instead of compiling again.
//!
//! A cache file holds the filter (JSON) it was compiled from and how (libcontainer's
//! `PROGRAM_FORMAT`), and is used only for an equal filter built the same way, so a hash collision or a stale file can cost a compile, never a wrong filter.
//! The directory lives in the exec root (tmpfs, root only): it starts empty at every boot, so a
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
    // The key is the filter and how its program is built (libseccomp's optimize level): a
    // program built another way by an earlier shim of this boot is not reused.
    let Ok(mut json) = serde_json::to_vec(sc) else {
        return;
    };
    json.extend_from_slice(libcontainer::seccomp::PROGRAM_FORMAT.as_bytes());
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

    /// A classic-BPF interpreter for seccomp programs: (the return value, whether a syscall
    /// argument was loaded on the way).
    fn run(prog: &[u8], data: &[u8; 64]) -> (u32, bool) {
        let ins: Vec<(u16, u8, u8, u32)> = prog
            .chunks_exact(8)
            .map(|c| {
                (
                    u16::from_ne_bytes([c[0], c[1]]),
                    c[2],
                    c[3],
                    u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let (mut a, mut x, mut mem, mut pc, mut args) = (0u32, 0u32, [0u32; 16], 0usize, false);
        loop {
            let (code, jt, jf, k) = ins[pc];
            pc += 1;
            let src = if code & 0x08 != 0 { x } else { k };
            match code & 0x07 {
                0x00 => match code & 0xe0 {
                    0x00 => a = k,
                    0x20 => {
                        assert_eq!(code & 0x18, 0, "only 32-bit loads");
                        let o = k as usize;
                        args |= o >= 16;
                        a = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
                    }
                    0x60 => a = mem[k as usize],
                    0x80 => a = 64,
                    m => panic!("ld mode {m:#x}"),
                },
                0x01 => match code & 0xe0 {
                    0x00 => x = k,
                    0x60 => x = mem[k as usize],
                    0x80 => x = 64,
                    m => panic!("ldx mode {m:#x}"),
                },
                0x02 => mem[k as usize] = a,
                0x03 => mem[k as usize] = x,
                0x04 => {
                    a = match code & 0xf0 {
                        0x00 => a.wrapping_add(src),
                        0x10 => a.wrapping_sub(src),
                        0x20 => a.wrapping_mul(src),
                        0x40 => a | src,
                        0x50 => a & src,
                        0x60 => a.wrapping_shl(src),
                        0x70 => a.wrapping_shr(src),
                        0x80 => a.wrapping_neg(),
                        0xa0 => a ^ src,
                        op => panic!("alu op {op:#x}"),
                    }
                }
                0x05 => {
                    let taken = match code & 0xf0 {
                        0x00 => {
                            pc += k as usize;
                            continue;
                        }
                        0x10 => a == src,
                        0x20 => a > src,
                        0x30 => a >= src,
                        0x40 => a & src != 0,
                        op => panic!("jmp op {op:#x}"),
                    };
                    pc += if taken { jt } else { jf } as usize;
                }
                0x06 => {
                    return (
                        match code & 0x18 {
                            0x00 => k,
                            0x10 => a,
                            _ => x,
                        },
                        args,
                    );
                }
                _ => {
                    if code & 0xf8 == 0 {
                        x = a
                    } else {
                        a = x
                    }
                }
            }
        }
    }

    fn data(arch: u32, nr: u32, args: &[u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_ne_bytes());
        d[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, v) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
        d
    }

    /// The binary-tree program (libseccomp's optimize level 2, what berth loads) decides every
    /// syscall as the linear chain (level 1, libseccomp's default, what runc loads) does:
    /// Docker's default profile with the default capabilities and with all of them, every
    /// syscall number of x86-64, i386, x32 and an unknown architecture, and, where a program
    /// looks at arguments, each argument set to each value the profile compares with (and
    /// its neighbours).
    #[test]
    fn binary_tree_program_decides_as_the_linear_chain() {
        use berth_runtime::caps::{ALL_CAPS, DEFAULT_CAPS};
        use berth_runtime::seccomp::{DEFAULT_PROFILE, convert};
        for caps in [&DEFAULT_CAPS[..], &ALL_CAPS[..]] {
            let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
            let sc = convert(DEFAULT_PROFILE, &caps).unwrap();
            let tree = libcontainer::seccomp::compile_bpf(&sc).unwrap();
            let chain = libcontainer::seccomp::compile_bpf_at(&sc, 1).unwrap();
            assert_ne!(tree, chain, "optimize level 2 changed nothing");
            assert_eq!(tree, libcontainer::seccomp::compile_bpf_at(&sc, 2).unwrap());
            let mut values = vec![0u64, u64::MAX, 1 << 32, u32::MAX as u64];
            for rule in sc.syscalls().iter().flatten() {
                for arg in rule.args().iter().flatten() {
                    for v in [arg.value(), arg.value_two().unwrap_or(0)] {
                        for w in [v, v.wrapping_add(1), v.wrapping_sub(1), !v, v | 1 << 32] {
                            values.push(w);
                        }
                    }
                }
            }
            values.sort_unstable();
            values.dedup();
            let (mut checked, mut with_args) = (0, 0);
            // x86-64, i386, aarch64 (not in the filter)
            for arch in [0xc000_003e_u32, 0x4000_0003, 0xc000_00b7] {
                let nrs = (0..1200u32)
                    .chain(0x4000_0000..0x4000_0000 + 1200)
                    .chain([0x7fff_ffff, u32::MAX]);
                for nr in nrs {
                    let zero = data(arch, nr, &[0; 6]);
                    let (t, ta) = run(&tree, &zero);
                    let (c, ca) = run(&chain, &zero);
                    assert_eq!(t, c, "arch {arch:#x} nr {nr:#x}");
                    checked += 1;
                    if !(ta || ca) {
                        continue;
                    }
                    with_args += 1;
                    for &v in &values {
                        let mut sets = vec![[v; 6]];
                        for i in 0..6 {
                            let mut a = [0u64; 6];
                            a[i] = v;
                            sets.push(a);
                        }
                        for a in sets {
                            let d = data(arch, nr, &a);
                            assert_eq!(
                                run(&tree, &d).0,
                                run(&chain, &d).0,
                                "arch {arch:#x} nr {nr:#x} args {a:x?}"
                            );
                        }
                    }
                }
            }
            assert!(checked > 7000 && with_args > 5, "{checked} {with_args}");
        }
    }
}
