//! The exec root (`--exec-root`, default `/run/berth`): state that lives exactly as long as
//! the processes it describes — the shims' state dirs with their sockets and the containers'
//! OCI bundles (`c/`), libcontainer's state (`rt/`), network namespace files (`netns/`),
//! build secrets. dockerd's exec root is `/var/run/docker`, a tmpfs on any usual host; when
//! ours is not on a tmpfs (a host whose /run is a disk filesystem), berthd mounts one there
//! before anything else uses it, so each container start does not create and delete a dozen
//! inodes on the disk.
//!
//! The tmpfs (source `berth`, `size=10%` of RAM, the directory's own mode and owner) is reused
//! when it is already mounted (a restart, live-restore), never mounted over a directory that
//! holds live state of an earlier daemon (a mount below it, a shim that still runs, a pidfile
//! someone holds) nor over one that is a mount point already (the admin's choice), and
//! unmounted at a clean shutdown when no container is left running. Like /run, it does not
//! survive a reboot, and neither does anything it describes. Two daemons never share an exec
//! root (the pidfile), so each has its own.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

/// `statfs.f_type` of tmpfs (linux/magic.h).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The mount's source name: how [`release`] recognizes a tmpfs it may unmount.
const SOURCE: &str = "berth";

/// What [`prepare`] found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum ExecRoot {
    /// Already on a tmpfs (ours from an earlier start, or the host's /run).
    Tmpfs,
    /// A tmpfs was mounted on it now.
    Mounted,
    /// Left on its filesystem; the reason.
    OnDisk(String),
}

fn is_tmpfs(dir: &Path) -> std::io::Result<bool> {
    let st = rustix::fs::statfs(dir)?;
    Ok(st.f_type as i64 == TMPFS_MAGIC)
}

/// Mount points strictly below `dir`, and what is mounted on `dir` itself: whether it is a
/// tmpfs of ours (None: nothing).
fn mounts_at_and_below(dir: &Path) -> (Vec<PathBuf>, Option<bool>) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return (Vec::new(), None);
    };
    let mut below = Vec::new();
    let mut ours = None;
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(mp) = f
            .get(4)
            .map(|p| PathBuf::from(berth_volume::unescape_mountinfo(p)))
        else {
            continue;
        };
        if mp == dir {
            // after the optional fields: "- fstype source superopts"
            let tail = f.iter().skip_while(|x| **x != "-").collect::<Vec<_>>();
            ours = Some(
                tail.get(1).is_some_and(|t| **t == "tmpfs")
                    && tail.get(2).is_some_and(|s| **s == SOURCE),
            );
        } else if mp.starts_with(dir) {
            below.push(mp);
        }
    }
    (below, ours)
}

/// A shim that still runs, by the pid files in the shims' state dirs (and the process's
/// name: after a reboot a stale pid file may name some other process).
fn live_shim(exec_root: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(exec_root.join("c")).ok()?;
    rd.flatten().map(|e| e.path()).find(|d| {
        std::fs::read_to_string(d.join(berth_shim_proto::SHIM_PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
            .is_some_and(|comm| comm.trim_end() == "berth-shim")
    })
}

/// Whether another process holds the lock of the pidfile (a daemon that runs).
fn pidfile_locked(pidfile: &Path) -> bool {
    let Ok(f) = std::fs::File::open(pidfile) else {
        return false;
    };
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(&f, rustix::fs::FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}

/// Makes sure the exec root exists and, unless it already is one or holds live state, mounts
/// a tmpfs on it. Call before anything is created in it (the pidfile may live there).
pub fn prepare(exec_root: &Path, pidfile: &Path) -> std::io::Result<ExecRoot> {
    std::fs::create_dir_all(exec_root)?;
    if is_tmpfs(exec_root)? {
        return Ok(ExecRoot::Tmpfs);
    }
    let (below, at) = mounts_at_and_below(exec_root);
    if at.is_some() {
        return Ok(ExecRoot::OnDisk("it is a mount point of its own".into()));
    }
    if let Some(m) = below.first() {
        return Ok(ExecRoot::OnDisk(format!(
            "{} is mounted below it (an earlier daemon's)",
            m.display()
        )));
    }
    if let Some(d) = live_shim(exec_root) {
        return Ok(ExecRoot::OnDisk(format!(
            "the shim of {} still runs",
            d.display()
        )));
    }
    // (wherever the pidfile is: a daemon that runs on this exec root keeps its files there)
    if pidfile_locked(pidfile) {
        return Ok(ExecRoot::OnDisk(format!(
            "{} is held by a running daemon",
            pidfile.display()
        )));
    }
    let md = std::fs::metadata(exec_root)?;
    let opts = format!(
        "mode={:o},uid={},gid={},size=10%",
        md.mode() & 0o7777,
        md.uid(),
        md.gid()
    );
    let opts = std::ffi::CString::new(opts).map_err(std::io::Error::other)?;
    rustix::mount::mount(
        SOURCE,
        exec_root,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(opts.as_c_str()),
    )?;
    Ok(ExecRoot::Mounted)
}

/// At a clean shutdown: unmounts the tmpfs [`prepare`] mounted, unless a container (or its
/// network namespace) is left running — live-restore reconnects to those through it.
pub fn release(exec_root: &Path) {
    // shims of just-stopped containers exit right after their last request
    for _ in 0..20 {
        if live_shim(exec_root).is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (below, ours) = mounts_at_and_below(exec_root);
    if ours != Some(true) || !below.is_empty() || live_shim(exec_root).is_some() {
        return;
    }
    if let Err(e) = rustix::mount::unmount(exec_root, UnmountFlags::DETACH) {
        tracing::warn!("unmounting the exec root {}: {e}", exec_root.display());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tmpfs_is_mounted_reused_and_released() {
        // needs root (mount); skipped otherwise
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let er = d.path().join("exec");
        let pid = er.join("berthd.pid");
        assert_eq!(super::prepare(&er, &pid).unwrap(), super::ExecRoot::Mounted);
        assert_eq!(super::prepare(&er, &pid).unwrap(), super::ExecRoot::Tmpfs);
        super::release(&er);
        assert!(!super::is_tmpfs(&er).unwrap());
        // live state of an earlier daemon (a namespace mount below it): left on disk
        let below = er.join("netns");
        std::fs::create_dir_all(&below).unwrap();
        rustix::mount::mount_bind(&below, &below).unwrap();
        let res = super::prepare(&er, &pid);
        rustix::mount::unmount(&below, rustix::mount::UnmountFlags::DETACH).unwrap();
        assert!(matches!(res.unwrap(), super::ExecRoot::OnDisk(_)));
    }
}
