//! A container's filesystem on the host: the overlay mount over the image layers and the
//! per-container /etc/hosts, /etc/hostname, /etc/resolv.conf. Blocking; call from
//! `spawn_blocking`.
//!
//! Every container's overlay has the shared init layer ([`INIT_LAYER`]) as its topmost lower
//! layer: the mount points and empty files the runtime needs, so the runtime does not create
//! them in the container's upper dir (which stays empty until the container writes, and so
//! out of `diff`, `commit` and the ext4 inode allocator on every start).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

fn cstr(p: &[u8]) -> std::io::Result<CString> {
    CString::new(p).map_err(|_| std::io::Error::other("path contains a NUL byte"))
}

/// `<overlay-root>/<id>-rw`: never a bare 64-hex name, which the image store owns.
pub fn rw_dir(overlay_root: &Path, id: &str) -> PathBuf {
    overlay_root.join(format!("{id}-rw"))
}

/// The container's writable layer and mount point directories; returns the `-rw` dir.
pub fn create_dirs(overlay_root: &Path, id: &str) -> std::io::Result<PathBuf> {
    let rw = rw_dir(overlay_root, id);
    for d in ["diff", "work", "merged"] {
        std::fs::create_dir_all(rw.join(d))?;
    }
    Ok(rw)
}

/// `<overlay-root>/init-1`: dockerd's init layer (`<id>-init`, made per container there), made
/// once per data root here, since its content depends on nothing (dockerd's
/// `initlayer.Setup`). Read-only for everyone: it is only ever a lower layer. The number
/// changes with the content, so an old daemon's layer is never used with another content.
pub const INIT_LAYER: &str = "init-1";

enum InitEntry {
    Dir,
    File,
    Symlink(&'static str),
}

/// dockerd's list (`daemon/initlayer/setup_unix.go`), parents made as directories.
const INIT_ENTRIES: &[(&str, InitEntry)] = &[
    ("dev/pts", InitEntry::Dir),
    ("dev/shm", InitEntry::Dir),
    ("proc", InitEntry::Dir),
    ("sys", InitEntry::Dir),
    (".dockerenv", InitEntry::File),
    ("etc/resolv.conf", InitEntry::File),
    ("etc/hosts", InitEntry::File),
    ("etc/hostname", InitEntry::File),
    ("dev/console", InitEntry::File),
    ("etc/mtab", InitEntry::Symlink("/proc/mounts")),
];

/// Makes the init layer if it is not there yet (built aside and renamed into place, so a
/// crash never leaves half of it); returns its path.
pub fn ensure_init_layer(overlay_root: &Path) -> std::io::Result<PathBuf> {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = overlay_root.join(INIT_LAYER);
    if dir.is_dir() {
        return Ok(dir);
    }
    let _making = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = overlay_root.join(format!("{INIT_LAYER}.tmp"));
    match std::fs::remove_dir_all(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // explicit modes: the daemon's umask must not decide what containers see
    let mkdir = |p: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
            .and_then(|()| {
                std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            })
    };
    mkdir(&tmp)?;
    for (rel, kind) in INIT_ENTRIES {
        let p = tmp.join(rel);
        if let Some(parent) = p.parent()
            && !parent.exists()
        {
            mkdir(parent)?;
        }
        match kind {
            InitEntry::Dir => mkdir(&p)?,
            InitEntry::File => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o755)
                    .open(&p)?;
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            }
            InitEntry::Symlink(target) => std::os::unix::fs::symlink(target, &p)?,
        }
    }
    std::fs::rename(&tmp, &dir)?;
    Ok(dir)
}

/// Whether `target` is a mount point: `statx`'s mount-root attribute (Linux >= 5.8), one
/// syscall where reading /proc/self/mountinfo costs a walk of every mount of the host (twice
/// per container run: at the start and at the exit); the mount table where statx cannot say.
pub fn is_mounted(target: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    let root = StatxAttributes::MOUNT_ROOT;
    match rustix::fs::statx(
        rustix::fs::CWD,
        target,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    ) {
        Ok(st) if st.stx_attributes_mask.contains(root) => st.stx_attributes.contains(root),
        Err(rustix::io::Errno::NOENT) => false,
        _ => in_mount_table(target),
    }
}

/// Whether `target` is listed in /proc/self/mountinfo.
fn in_mount_table(target: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = target.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

/// Mount the overlay for container `id` (idempotent). `lowerdir` is relative to
/// `overlay_root` (`l/TOP:...`): made absolute when that fits in the one page mount(2) takes,
/// else the mount happens in a short-lived thread that has its own working directory
/// (unshare(CLONE_FS)); the daemon's cwd is never touched.
///
/// `volatile` (for `--rm` containers, as Podman does): overlayfs skips syncing the upper
/// filesystem. Without it, the last unmount syncs the *whole* host filesystem under the upper
/// dir (ovl_sync_fs), which costs up to hundreds of ms on a busy host. A crash can leave a
/// volatile layer inconsistent; an auto-remove container is removed at the next daemon start
/// anyway, so nothing of value is at risk.
pub fn mount(
    overlay_root: &Path,
    id: &str,
    lowerdir: &str,
    volatile: bool,
) -> std::io::Result<PathBuf> {
    let rw = create_dirs(overlay_root, id)?;
    let target = rw.join("merged");
    if is_mounted(&target) {
        return Ok(target);
    }
    ensure_init_layer(overlay_root)?;
    // the init layer on top of the image's (and the only one of an image without layers)
    let lower = if lowerdir.is_empty() {
        INIT_LAYER.to_owned()
    } else {
        format!("{INIT_LAYER}:{lowerdir}")
    };
    // the options after the paths, the same for both forms below
    let mut flags = String::new();
    if index_param() {
        flags.push_str(",index=off");
    }
    if volatile {
        // overlayfs leaves this marker and refuses to mount again while it exists; our own
        // clean unmount (no crash in between: the page cache still holds the data) makes a
        // remount safe, e.g. for `cp` after the container stopped and before it is removed
        match std::fs::remove_dir_all(rw.join("work/work/incompat/volatile")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        flags.push_str(",volatile");
    }
    let opts = format!("lowerdir={lower},upperdir={id}-rw/diff,workdir={id}-rw/work{flags}");
    // The same options with absolute paths, when they fit in mount(2)'s one page and the
    // root has no character the option syntax would misread: then no thread (and no wake-up
    // on the start path) is needed for a private working directory.
    if let Some(root_str) = overlay_root.to_str()
        && overlay_root.is_absolute()
        && !root_str.contains([',', ':', '=', '\\'])
    {
        let abs = |p: &str| format!("{root_str}/{p}");
        let lower_abs: Vec<String> = lower.split(':').map(abs).collect();
        let o = format!(
            "lowerdir={},upperdir={},workdir={}{flags}",
            lower_abs.join(":"),
            abs(&format!("{id}-rw/diff")),
            abs(&format!("{id}-rw/work"))
        );
        if o.len() < 4000 {
            mount_overlay(&target, &o)?;
            return Ok(target);
        }
    }
    let root = overlay_root.to_path_buf();
    let tgt = target.clone();
    let res = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: plain syscalls on this thread only; CLONE_FS gives it a private cwd.
        if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::env::set_current_dir(&root)?;
        mount_overlay(&tgt, &opts)
    })
    .join()
    .map_err(|_| std::io::Error::other("overlay mount thread panicked"))?;
    res.map(|()| target)
}

/// Whether this kernel's overlayfs knows `index=` (dockerd then mounts with `index=off` too):
/// with the index on, a second mount of an upper dir whose previous mount is still being
/// torn down fails with EBUSY; the shim drops a container's mount namespace (the last
/// reference to its overlay) only after it reported the exit, so a restart can be that
/// quick.
fn index_param() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| Path::new("/sys/module/overlay/parameters/index").exists())
}

fn mount_overlay(target: &Path, opts: &str) -> std::io::Result<()> {
    let src = cstr(b"overlay")?;
    let t = cstr(target.as_os_str().as_bytes())?;
    let o = cstr(opts.as_bytes())?;
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            t.as_ptr(),
            src.as_ptr(),
            0,
            o.as_ptr() as *const libc::c_void,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn unmount(target: &Path) -> std::io::Result<()> {
    if !is_mounted(target) {
        return Ok(());
    }
    let t = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// Docker's resolv.conf for a container with its own network namespace: the host's, minus
/// loopback nameservers (unreachable from inside); Google's DNS if none remain.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut ns = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            ns += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if ns == 0 {
        out.push_str("\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// Write hosts, hostname and resolv.conf into the container's directory.
pub fn write_etc(dir: &Path, hostname: &str, host_network: bool) -> std::io::Result<()> {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (hosts, resolv) = if host_network {
        (
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| HOSTS.to_owned()),
            host_resolv,
        )
    } else {
        (HOSTS.to_owned(), resolv_conf(&host_resolv))
    };
    std::fs::write(dir.join("hosts"), hosts)?;
    std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    std::fs::write(dir.join("resolv.conf"), resolv)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mount_points_are_recognized() {
        assert!(super::is_mounted(std::path::Path::new("/proc")));
        assert!(!super::is_mounted(std::path::Path::new("/proc/self")));
        assert!(!super::is_mounted(std::path::Path::new("/nonexistent-dir")));
        let d = tempfile::tempdir().unwrap();
        assert!(!super::is_mounted(d.path()));
    }

    #[test]
    fn resolv_filters_loopback() {
        let r = super::resolv_conf("search x\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n");
        assert_eq!(r, "search x\nnameserver 10.0.0.1\n");
        let r = super::resolv_conf("nameserver 127.0.0.1\n");
        assert!(r.contains("8.8.8.8"));
    }
}
