//! Layer unpacking (including hostile tars) and the reverse conversion. Run as root.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_image::Error;
use berth_image::layer::{self, Compression};
use berth_types::Digest;
use common::*;

fn unpack(dest: &Path, tar: &[u8]) -> berth_image::Result<layer::UnpackStats> {
    layer::unpack_layer(&mut &tar[..], dest, &mut |_| {})
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    rustix::fs::lgetxattr(p, name, &mut buf[..]).ok().map(|n| {
        buf.truncate(n);
        buf
    })
}

/// A scratch dir with `layer/` (the unpack root) and `outside/` (must stay empty).
struct Scratch {
    _t: tempfile::TempDir,
    layer: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn scratch() -> Scratch {
    let t = tempfile::tempdir().unwrap();
    let layer = t.path().join("layer");
    let outside = t.path().join("outside");
    std::fs::create_dir(&layer).unwrap();
    std::fs::create_dir(&outside).unwrap();
    Scratch {
        _t: t,
        layer,
        outside,
    }
}

#[test]
fn unpacks_metadata_links_devices_and_xattrs() {
    let s = scratch();
    let mut suid = E::file("bin/su", b"#!");
    suid.mode = 0o4755;
    suid.uid = 1000;
    suid.gid = 1001;
    let mut capfile = E::file("bin/ping", b"ping");
    capfile.pax = vec![("SCHILY.xattr.user.test", b"hello")];
    let mut dev = E::file("dev/null", b"");
    dev.kind = tar::EntryType::Char;
    dev.dev = (1, 3);
    dev.mode = 0o666;
    let mut fifo = E::file("run/fifo", b"");
    fifo.kind = tar::EntryType::Fifo;
    let mut private = E::dir("root/");
    private.mode = 0o700;
    let tar = tar_of(&[
        E::dir("bin/"),
        suid,
        capfile,
        E::hardlink("bin/su2", "bin/su"),
        E::symlink("bin/sh", "/bin/busybox"),
        E::symlink("bin/rel", "../bin/su"),
        dev,
        fifo,
        private,
        E::file("./deep/er/file", b"x"),
    ]);
    let stats = unpack(&s.layer, &tar).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&tar));
    assert_eq!(stats.tar_size, tar.len() as u64);
    assert_eq!(stats.compression, Compression::None);
    // Docker's size: file contents (the hardlink once) plus the symlinks' target lengths.
    assert_eq!(
        stats.size,
        2 + 4 + 1 + "/bin/busybox".len() as u64 + "../bin/su".len() as u64
    );

    let md = std::fs::metadata(s.layer.join("bin/su")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4755);
    assert_eq!((md.uid(), md.gid()), (1000, 1001));
    assert_eq!(md.mtime(), MTIME as i64);
    assert_eq!(md.nlink(), 2);
    assert_eq!(
        std::fs::read_link(s.layer.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        xattr(&s.layer.join("bin/ping"), "user.test").as_deref(),
        Some(&b"hello"[..])
    );
    let d = std::fs::metadata(s.layer.join("dev/null")).unwrap();
    assert!(d.file_type().is_char_device());
    assert_eq!(d.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(d.mode() & 0o777, 0o666);
    assert!(
        std::fs::metadata(s.layer.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let r = std::fs::metadata(s.layer.join("root")).unwrap();
    assert_eq!(r.mode() & 0o777, 0o700);
    assert_eq!(r.mtime(), MTIME as i64);
    assert_eq!(std::fs::read(s.layer.join("deep/er/file")).unwrap(), b"x");
}

#[test]
fn compressed_layers_have_the_uncompressed_diff_id() {
    let tar = tar_of(&[E::file("a", b"hello")]);
    for (data, kind) in [
        (gzip(&tar), Compression::Gzip),
        (zstd(&tar), Compression::Zstd),
    ] {
        let s = scratch();
        let st = unpack(&s.layer, &data).unwrap();
        assert_eq!(st.compression, kind);
        assert_eq!(st.diff_id, Digest::of(&tar));
        assert_eq!(std::fs::read(s.layer.join("a")).unwrap(), b"hello");
    }
}

#[test]
fn whiteouts_become_overlay_form() {
    let s = scratch();
    let tar = tar_of(&[
        E::dir("etc/"),
        E::file("etc/.wh.passwd", b""),
        E::dir("opt/"),
        E::file("opt/.wh..wh..opq", b""),
        E::file("opt/new", b"n"),
        E::file(".wh..wh.plnk", b""),
    ]);
    unpack(&s.layer, &tar).unwrap();
    let w = std::fs::symlink_metadata(s.layer.join("etc/passwd")).unwrap();
    assert!(w.file_type().is_char_device());
    assert_eq!(w.rdev(), 0);
    assert_eq!(
        xattr(&s.layer.join("opt"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!s.layer.join(".wh..wh.plnk").exists());
    assert!(!s.layer.join("etc/.wh.passwd").exists());
}

fn assert_rejected(tar: &[u8], needle: &str) {
    let s = scratch();
    let err = unpack(&s.layer, tar).expect_err("hostile tar must be rejected");
    assert!(
        matches!(err, Error::InvalidArchive(_)),
        "wrong error kind: {err:?}"
    );
    assert!(
        err.to_string().contains(needle),
        "error {err} does not mention {needle:?}"
    );
    assert!(
        tree(&s.outside).is_empty(),
        "something was written outside: {:?}",
        tree(&s.outside)
    );
}

#[test]
fn rejects_dotdot_escapes() {
    assert_rejected(
        &tar_of(&[E::file("../evil", b"x")]),
        "escapes the layer root",
    );
    assert_rejected(
        &tar_of(&[E::file("a/../../outside/evil", b"x")]),
        "escapes the layer root",
    );
    assert_rejected(
        &tar_of(&[E::file("/../../outside/evil", b"x")]),
        "escapes the layer root",
    );
    // `..` that stays inside is fine.
    let s = scratch();
    unpack(&s.layer, &tar_of(&[E::file("a/../b", b"x")])).unwrap();
    assert!(s.layer.join("b").exists());
}

#[test]
fn rejects_writing_through_symlinks() {
    let s = scratch();
    let abs = s.outside.to_str().unwrap().to_owned();
    // An absolute symlink is legal (it resolves inside the container), but nothing may be
    // written through it while unpacking.
    let tar = tar_of(&[E::symlink("evil", &abs), E::file("evil/passwd", b"pwn")]);
    assert_rejected(&tar, "symlink");
    let tar = tar_of(&[E::symlink("etc", "/etc"), E::file("etc/passwd", b"pwn")]);
    assert_rejected(&tar, "symlink");
    // Directory replaced by a symlink, then written into.
    let tar = tar_of(&[E::dir("a/"), E::symlink("a", &abs), E::file("a/x", b"pwn")]);
    assert_rejected(&tar, "symlink");
    assert!(tree(&s.outside).is_empty());
}

#[test]
fn rejects_escaping_symlinks_and_hardlinks() {
    assert_rejected(&tar_of(&[E::symlink("up", "../../..")]), "invalid symlink");
    assert_rejected(
        &tar_of(&[E::symlink("d/up", "../../outside")]),
        "invalid symlink",
    );
    assert_rejected(
        &tar_of(&[E::hardlink("h", "../outside/file")]),
        "invalid hardlink",
    );
    let s = scratch();
    std::fs::write(s.outside.join("secret"), b"s").unwrap();
    let abs = s.outside.to_str().unwrap().to_owned();
    let tar = tar_of(&[E::symlink("s", &abs), E::hardlink("h", "s/secret")]);
    let err = unpack(&s.layer, &tar).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(!s.layer.join("h").exists());
    // Absolute hardlink targets are inside the layer: /etc/passwd of the host is never linked.
    let s = scratch();
    let err = unpack(&s.layer, &tar_of(&[E::hardlink("h", "/etc/passwd")])).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    // Relative symlinks that stay inside are fine.
    let s = scratch();
    unpack(&s.layer, &tar_of(&[E::symlink("a/b/c", "../../x")])).unwrap();
}

#[test]
fn truncated_tar_is_unexpected_eof() {
    let big = vec![7u8; 20_000];
    let tar = tar_of(&[E::file("big", &big), E::file("after", b"x")]);
    for cut in [512 + 10_000, 700, 512 + 20_000 + 100] {
        let s = scratch();
        let err = unpack(&s.layer, &tar[..cut]).unwrap_err();
        assert!(
            err.to_string().contains("unexpected EOF"),
            "cut {cut}: {err}"
        );
    }
    // Truncated inside a gzip stream as well.
    let gz = gzip(&tar);
    let s = scratch();
    assert!(unpack(&s.layer, &gz[..gz.len() / 2]).is_err());
}

#[test]
fn later_entries_replace_earlier_ones() {
    let s = scratch();
    let tar = tar_of(&[
        E::file("x", b"one"),
        E::file("x", b"two"),
        E::dir("d/"),
        E::file("d/inner", b"i"),
        E::file("d", b"now a file"),
    ]);
    unpack(&s.layer, &tar).unwrap();
    assert_eq!(std::fs::read(s.layer.join("x")).unwrap(), b"two");
    assert_eq!(std::fs::read(s.layer.join("d")).unwrap(), b"now a file");
}

#[test]
fn upper_dir_to_tar_and_back() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upper");
    std::fs::create_dir_all(up.join("etc")).unwrap();
    std::fs::create_dir_all(up.join("opt/sub")).unwrap();
    std::fs::write(up.join("etc/hosts"), b"127.0.0.1 x").unwrap();
    std::fs::write(up.join("opt/sub/f"), b"f").unwrap();
    std::fs::hard_link(up.join("etc/hosts"), up.join("etc/hosts2")).unwrap();
    std::os::unix::fs::symlink("hosts", up.join("etc/link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        up.join("etc/gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    // An mtime far from "now": the unpacked copy must carry it over, not the unpack time.
    rustix::fs::utimensat(
        rustix::fs::CWD,
        up.join("etc/gone"),
        &rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_000_000_000,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_000_000_000,
                tv_nsec: 0,
            },
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    rustix::fs::lsetxattr(
        up.join("opt"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();

    let mut a = Vec::new();
    let (d1, n1) = layer::write_layer_tar(&up, &mut a).unwrap();
    let mut b = Vec::new();
    let (d2, _) = layer::write_layer_tar(&up, &mut b).unwrap();
    assert_eq!(a, b, "same directory must give the same bytes");
    assert_eq!(d1, d2);
    assert_eq!(d1, Digest::of(&a));
    assert_eq!(n1, a.len() as u64);

    let names: Vec<String> = read_tar(&a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "etc/",
            "etc/.wh.gone",
            "etc/hosts",
            "etc/hosts2",
            "etc/link",
            "opt/",
            "opt/.wh..wh..opq",
            "opt/sub/",
            "opt/sub/f",
        ]
    );

    // And back: the whiteouts return to overlay's form.
    let back = t.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let st = layer::unpack_layer(&mut &a[..], &back, &mut |_| {}).unwrap();
    assert_eq!(st.diff_id, d1);
    let w = std::fs::symlink_metadata(back.join("etc/gone")).unwrap();
    assert!(w.file_type().is_char_device() && w.rdev() == 0);
    assert_eq!(
        xattr(&back.join("opt"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        std::fs::metadata(back.join("etc/hosts2")).unwrap().nlink(),
        2
    );
    // Re-taring the unpacked copy reproduces the same diff ID.
    let mut c = Vec::new();
    let (d3, _) = layer::write_layer_tar(&back, &mut c).unwrap();
    assert_eq!(d3, d1);
}

#[test]
fn overlay_xattrs_from_tar_are_dropped_and_dir_hardlinks_rejected() {
    let s = scratch();
    let mut f = E::file("f", b"x");
    f.pax = vec![
        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ("SCHILY.xattr.user.keep", b"1"),
    ];
    unpack(&s.layer, &tar_of(&[f])).unwrap();
    assert_eq!(xattr(&s.layer.join("f"), "trusted.overlay.redirect"), None);
    assert_eq!(
        xattr(&s.layer.join("f"), "user.keep").as_deref(),
        Some(&b"1"[..])
    );
    assert_rejected(
        &tar_of(&[E::dir("d/"), E::hardlink("h", "d")]),
        "invalid hardlink",
    );
}
