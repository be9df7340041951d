//! The host's cgroup filesystems, as far as the daemon changes them: the `favordynmods` mount
//! option, switched on at start-up (`--cgroup-favordynmods`, default true).
//!
//! Why: moving a process into a cgroup (each shim puts its container's init into ~9 v1
//! hierarchies, or one v2 cgroup) takes the kernel's global `cgroup_threadgroup_rwsem` for
//! writing, which waits for an RCU grace period: 5–25 ms per container start, the largest
//! single cost of `run` measured here. With `favordynmods` the kernel keeps that lock in its
//! slow-reader mode, so migrations cost ~0.3 ms; the kernel's documentation names the price:
//! forks and exits on the host become slightly more expensive. It is a host-wide setting (one
//! flag on the cgroup root, effective for all hierarchies), like the `ip_forward` sysctl the
//! daemon turns on for bridges; failing to set it is a warning, never fatal.
//!
//! Must not: change any other mount option. A remount replaces the superblock's options and
//! the mount's flags with the ones given, so both are copied from `/proc/self/mountinfo`.

use std::ffi::CString;
use std::path::PathBuf;

const OPTION: &str = "favordynmods";

/// One cgroup mount of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    target: String,
    v2: bool,
    /// Per-mount options (`rw,nosuid,nodev,noexec,relatime`).
    mount_opts: String,
    /// Superblock options (`rw,nsdelegate,memory_recursiveprot`; v1: `rw,cpu,cpuacct`).
    super_opts: String,
}

use berth_volume::unescape_mountinfo as unescape;

fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        // id parent maj:min root target mount-opts [optional...] - fstype source super-opts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        let v2 = match r[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        out.push(CgroupMount {
            target: unescape(l[4]),
            v2,
            mount_opts: l[5].to_owned(),
            super_opts: r[2].to_owned(),
        });
    }
    out
}

/// The hierarchy to set the option on: the v2 one (hybrid: `/sys/fs/cgroup/unified`), else
/// the first v1 hierarchy.
fn pick(mounts: &[CgroupMount]) -> Option<&CgroupMount> {
    mounts.iter().find(|m| m.v2).or_else(|| mounts.first())
}

fn has_option(m: &CgroupMount) -> bool {
    m.super_opts.split(',').any(|o| o == OPTION)
}

/// mount(2) flags that keep the mount's own options as they are.
fn mount_flags(opts: &str) -> libc::c_ulong {
    let mut f = libc::MS_REMOUNT;
    for o in opts.split(',') {
        f |= match o {
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "relatime" => libc::MS_RELATIME,
            "strictatime" => libc::MS_STRICTATIME,
            "nosymfollow" => libc::MS_NOSYMFOLLOW,
            _ => 0,
        };
    }
    f
}

/// The superblock options to remount with: the current ones (without `rw`/`ro`, which the
/// flags carry) plus ours.
fn remount_data(super_opts: &str) -> String {
    let mut v: Vec<&str> = super_opts
        .split(',')
        .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
        .collect();
    v.push(OPTION);
    v.join(",")
}

/// What [`favor_dynmods`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Set now on this hierarchy.
    Set(PathBuf),
    /// It was already set.
    AlreadySet(PathBuf),
    /// No cgroup filesystem is mounted.
    NoCgroupfs,
}

/// Turns `favordynmods` on for the host's cgroup hierarchy (see the module doc). Blocking.
pub fn favor_dynmods() -> Result<Outcome, String> {
    let read = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))
    };
    let mounts = parse_mountinfo(&read()?);
    let Some(m) = pick(&mounts) else {
        return Ok(Outcome::NoCgroupfs);
    };
    if has_option(m) {
        return Ok(Outcome::AlreadySet(PathBuf::from(&m.target)));
    }
    let target = CString::new(m.target.as_bytes()).map_err(|_| "bad mount point".to_string())?;
    let data = CString::new(remount_data(&m.super_opts)).map_err(|_| "bad options".to_string())?;
    // SAFETY: valid NUL-terminated strings for the call's duration; a null source and type
    // are what a remount takes.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            mount_flags(&m.mount_opts),
            data.as_ptr() as *const libc::c_void,
        )
    };
    if r != 0 {
        return Err(format!(
            "remounting {} with {OPTION}: {}",
            m.target,
            std::io::Error::last_os_error()
        ));
    }
    // a kernel older than 6.0 ignores an option it does not know on some paths
    let after = parse_mountinfo(&read()?);
    match after.iter().find(|a| a.target == m.target) {
        Some(a) if has_option(a) => Ok(Outcome::Set(PathBuf::from(&m.target))),
        _ => Err(format!(
            "the kernel did not take {OPTION} on {} (needs Linux 6.0)",
            m.target
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,nosuid,relatime shared:9 - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn picks_the_v2_hierarchy_and_keeps_its_options() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.len(), 3);
        let p = pick(&m).unwrap();
        assert_eq!(p.target, "/sys/fs/cgroup/unified");
        assert!(!has_option(p));
        assert_eq!(remount_data(&p.super_opts), "nsdelegate,favordynmods");
        let f = mount_flags(&p.mount_opts);
        assert_eq!(
            f,
            libc::MS_REMOUNT
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC
                | libc::MS_RELATIME
        );
    }

    #[test]
    fn v1_only_and_already_set() {
        let v1: String = HYBRID.lines().take(3).map(|l| format!("{l}\n")).collect();
        let m = parse_mountinfo(&v1);
        let p = pick(&m).unwrap();
        assert_eq!(p.target, "/sys/fs/cgroup/cpu");
        assert_eq!(remount_data(&p.super_opts), "cpu,favordynmods");
        let set = parse_mountinfo(
            "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,favordynmods,nsdelegate\n",
        );
        assert!(has_option(&set[0]));
        assert!(parse_mountinfo("1 0 8:1 / / rw - ext4 /dev/vda rw\n").is_empty());
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
