//! The local driver's mounts: `-o type=… -o device=… -o o=…` applied with mount(2) on the
//! volume's `_data`, and mount table checks from /proc/self/mountinfo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// Mount points from /proc/self/mountinfo (field 5, octal escapes undone).
fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// A path field of /proc/self/mountinfo, whose blanks, tabs, newlines and backslashes are
/// escaped as `\ooo`.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn is_mountpoint(path: &Path) -> bool {
    mount_points().iter().any(|p| p == path)
}

/// Mount points at or below `dir`.
pub fn mounted_under(dir: &Path) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}

pub fn unmount(path: &Path) -> std::io::Result<()> {
    match rustix::mount::unmount(path, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        // busy (a process still has it open): detach it, as dockerd's mount.Unmount does
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(path, UnmountFlags::DETACH).map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    }
}

/// moby/sys/mount's `o=` flags; everything else is filesystem data.
fn parse_o(o: &str) -> (MountFlags, Option<MountPropagationFlags>, bool, String) {
    let mut flags = MountFlags::empty();
    let mut prop = None;
    let mut bind = false;
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "defaults" | "rw" | "suid" | "dev" | "exec" | "async" | "atime" | "diratime"
            | "mand" | "nomand" | "norelatime" | "nostrictatime" => {}
            "ro" => flags |= MountFlags::RDONLY,
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "sync" => flags |= MountFlags::SYNCHRONOUS,
            "dirsync" => flags |= MountFlags::DIRSYNC,
            "noatime" => flags |= MountFlags::NOATIME,
            "nodiratime" => flags |= MountFlags::NODIRATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "bind" => bind = true,
            "rbind" => {
                bind = true;
                flags |= MountFlags::REC;
            }
            "private" => prop = Some(MountPropagationFlags::PRIVATE),
            "rprivate" => prop = Some(MountPropagationFlags::PRIVATE | MountPropagationFlags::REC),
            "shared" => prop = Some(MountPropagationFlags::SHARED),
            "rshared" => prop = Some(MountPropagationFlags::SHARED | MountPropagationFlags::REC),
            "slave" => prop = Some(MountPropagationFlags::DOWNSTREAM),
            "rslave" => prop = Some(MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC),
            "unbindable" => prop = Some(MountPropagationFlags::UNBINDABLE),
            "runbindable" => {
                prop = Some(MountPropagationFlags::UNBINDABLE | MountPropagationFlags::REC)
            }
            other => data.push(other),
        }
    }
    (flags, prop, bind, data.join(","))
}

/// Mount a volume created with `-o` options on its `_data`.
pub fn mount_local(opts: &BTreeMap<String, String>, target: &Path) -> std::io::Result<()> {
    let typ = opts.get("type").map(String::as_str).unwrap_or("");
    let device = opts.get("device").map(String::as_str).unwrap_or("");
    let (flags, prop, bind, data) = parse_o(opts.get("o").map(String::as_str).unwrap_or(""));
    if bind {
        let r = flags.contains(MountFlags::REC);
        if r {
            rustix::mount::mount_bind_recursive(device, target)?;
        } else {
            rustix::mount::mount_bind(device, target)?;
        }
        let rest = flags & !MountFlags::REC;
        if !rest.is_empty()
            && let Err(e) = rustix::mount::mount_remount(target, rest | MountFlags::BIND, "")
        {
            let _ = unmount(target);
            return Err(e.into());
        }
    } else {
        let cdata = std::ffi::CString::new(data.as_str()).map_err(std::io::Error::other)?;
        let data = (!data.is_empty()).then_some(cdata.as_c_str());
        rustix::mount::mount(device, target, typ, flags, data)?;
    }
    if let Some(p) = prop
        && let Err(e) = rustix::mount::mount_change(target, p)
    {
        let _ = unmount(target);
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn o_options() {
        let (f, p, b, d) = super::parse_o("size=1m,uid=1000,ro,bind,rshared");
        assert!(b);
        assert!(f.contains(rustix::mount::MountFlags::RDONLY));
        assert!(p.is_some());
        assert_eq!(d, "size=1m,uid=1000");
        assert_eq!(super::unescape("/a\\040b"), "/a b");
    }
}
