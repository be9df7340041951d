//! berth-hello: the `hello-world:latest` image that ships inside berthd, so
//! `berth run --rm hello-world` works offline.
//!
//! Owns: the greeting program (a 200-byte static x86-64 ELF assembled here from bytes: two
//! syscalls, write and exit, no toolchain or libc involved) and its packing as a docker-archive
//! tar. Everything is deterministic (fixed mtimes, owners, creation date), so the image ID is the
//! same in every build and on every host.
//! Must not: touch the image store; the engine loads `archive()` through the normal `load` path.

use serde_json::json;
use sha2::{Digest, Sha256};

/// What the program prints.
pub const GREETING: &str = "\
Hello from berth!
This message shows that your installation appears to be working correctly.

To generate this message, berth took the following steps:
 1. The berth client contacted the berth daemon.
 2. The berth daemon found the \"hello-world\" image embedded in itself,
    so it worked without any network access.
 3. The berth daemon created a new container from that image which runs the
    executable that produced the output you are currently reading.
 4. The berth daemon streamed that output to the berth client, which sent it
    to your terminal.

To try something more ambitious, you can run a shell in a busybox container with:
 $ berth run -it busybox sh

berth speaks the Docker Engine API: the docker CLI, docker-py and compose work with it too.
";

/// The reference this image is tagged with.
pub const REFERENCE: &str = "hello-world:latest";

/// Fixed creation time so the config (and with it the image ID) never changes.
const CREATED: &str = "2026-01-01T00:00:00Z";
const MTIME: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// A static x86-64 ELF executable: write(1, GREETING, len); exit(0).
pub fn program() -> Vec<u8> {
    let msg = GREETING.as_bytes();
    let mut code: Vec<u8> = Vec::new();
    code.extend([0xb8, 1, 0, 0, 0]); // mov eax, 1 (write)
    code.extend([0xbf, 1, 0, 0, 0]); // mov edi, 1 (stdout)
    code.extend([0x48, 0x8d, 0x35]); // lea rsi, [rip + disp32] -> msg
    let disp_at = code.len();
    code.extend([0; 4]);
    let after_lea = code.len();
    code.push(0xba); // mov edx, len
    code.extend((msg.len() as u32).to_le_bytes());
    code.extend([0x0f, 0x05]); // syscall
    code.extend([0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
    code.extend([0x31, 0xff]); // xor edi, edi
    code.extend([0x0f, 0x05]); // syscall
    let disp = (code.len() - after_lea) as u32;
    code[disp_at..disp_at + 4].copy_from_slice(&disp.to_le_bytes());
    code.extend(msg);

    let total = (EHDR + PHDR + code.len()) as u64;
    let mut elf = Vec::with_capacity(total as usize);
    // ELF header
    elf.extend([0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, little endian, v1, SysV
    elf.extend([0; 8]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend(1u32.to_le_bytes()); // EV_CURRENT
    elf.extend((BASE + (EHDR + PHDR) as u64).to_le_bytes()); // e_entry
    elf.extend((EHDR as u64).to_le_bytes()); // e_phoff
    elf.extend(0u64.to_le_bytes()); // e_shoff
    elf.extend(0u32.to_le_bytes()); // e_flags
    elf.extend((EHDR as u16).to_le_bytes());
    elf.extend((PHDR as u16).to_le_bytes());
    elf.extend(1u16.to_le_bytes()); // e_phnum
    elf.extend([0; 6]); // no section headers
    // One PT_LOAD segment mapping the whole file read+execute.
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // PF_R | PF_X
    elf.extend(0u64.to_le_bytes()); // p_offset
    elf.extend(BASE.to_le_bytes()); // p_vaddr
    elf.extend(BASE.to_le_bytes()); // p_paddr
    elf.extend(total.to_le_bytes()); // p_filesz
    elf.extend(total.to_le_bytes()); // p_memsz
    elf.extend(0x1000u64.to_le_bytes()); // p_align
    elf.extend(code);
    elf
}

fn header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    // set_path cannot fail for these short ASCII constants
    let _ = h.set_path(path);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let h = header(path, data.len() as u64, mode, tar::EntryType::Regular);
    // Writing into a Vec cannot fail.
    let _ = b.append(&h, data);
}

fn finish(b: tar::Builder<Vec<u8>>) -> Vec<u8> {
    b.into_inner().unwrap_or_default()
}

/// The single layer: `/hello`.
pub fn layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "hello", &program(), 0o755);
    finish(b)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The image config blob; its sha256 is the image ID.
pub fn config() -> Vec<u8> {
    let layer = layer();
    let cfg = json!({
        "architecture": "amd64",
        "config": {
            "Cmd": ["/hello"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "created": CREATED,
        "history": [
            {"created": CREATED, "created_by": "COPY hello / # berth embedded hello-world"},
            {"created": CREATED, "created_by": "CMD [\"/hello\"]", "empty_layer": true},
        ],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer))]},
    });
    serde_json::to_vec(&cfg).unwrap_or_default()
}

/// The image ID (`sha256:<hex>`).
pub fn image_id() -> String {
    format!("sha256:{}", sha256_hex(&config()))
}

/// A docker-archive (`docker save` format, v1.2 manifest.json) holding the image tagged
/// `hello-world:latest`.
pub fn archive() -> Vec<u8> {
    let layer = layer();
    let config = config();
    let config_hex = sha256_hex(&config);
    let layer_hex = sha256_hex(&layer);
    let manifest = json!([{
        "Config": format!("blobs/sha256/{config_hex}"),
        "RepoTags": [REFERENCE],
        "Layers": [format!("blobs/sha256/{layer_hex}")],
    }]);
    let repositories = json!({"hello-world": {"latest": layer_hex}});
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str| {
        let _ = b.append(&header(p, 0, 0o755, tar::EntryType::Directory), &[][..]);
    };
    dir(&mut b, "blobs/");
    dir(&mut b, "blobs/sha256/");
    append(
        &mut b,
        &format!("blobs/sha256/{config_hex}"),
        &config,
        0o444,
    );
    append(&mut b, &format!("blobs/sha256/{layer_hex}"), &layer, 0o444);
    append(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap_or_default(),
        0o444,
    );
    append(
        &mut b,
        "repositories",
        &serde_json::to_vec(&repositories).unwrap_or_default(),
        0o444,
    );
    finish(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn deterministic() {
        assert_eq!(archive(), archive());
        assert_eq!(image_id().len(), 71);
    }

    #[test]
    fn program_is_small() {
        assert!(program().len() < 1200, "{}", program().len());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn program_prints_the_greeting() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("berth-hello-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("hello");
        std::fs::write(&p, program()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&p).output().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), GREETING);
    }

    #[test]
    fn archive_lists_manifest_and_blobs() {
        let a = archive();
        let mut t = tar::Archive::new(&a[..]);
        let mut names = Vec::new();
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name == "manifest.json" {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                assert!(s.contains("hello-world:latest"));
            }
            names.push(name);
        }
        assert!(names.contains(&"manifest.json".to_owned()));
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("blobs/sha256/"))
                .count(),
            3
        );
    }
}
