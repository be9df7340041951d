//! Device nodes and device-cgroup rules: runc's default set, `--device`, `--privileged`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// `--device PATH_ON_HOST[:PATH_IN_CONTAINER[:PERMISSIONS]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub path_on_host: PathBuf,
    /// Empty = same as on the host.
    pub path_in_container: String,
    /// Subset of "rwm"; empty = "rwm".
    pub cgroup_permissions: String,
}

fn dev(path: &str, typ: LinuxDeviceType, major: i64, minor: i64) -> Result<LinuxDevice, Error> {
    Ok(LinuxDeviceBuilder::default()
        .path(path)
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(0o666u32)
        .uid(0u32)
        .gid(0u32)
        .build()?)
}

/// The nodes runc creates in every container's /dev.
pub fn default_devices() -> Result<Vec<LinuxDevice>, Error> {
    use LinuxDeviceType::C;
    Ok(vec![
        dev("/dev/null", C, 1, 3)?,
        dev("/dev/zero", C, 1, 5)?,
        dev("/dev/full", C, 1, 7)?,
        dev("/dev/random", C, 1, 8)?,
        dev("/dev/urandom", C, 1, 9)?,
        dev("/dev/tty", C, 5, 0)?,
    ])
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, Error> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    Ok(b.build()?)
}

/// Docker's device cgroup: deny everything, then allow mknod of any node and rw of the
/// default devices, ptys, /dev/console and /dev/net/tun. Privileged: allow all.
pub fn default_cgroup_rules(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>, Error> {
    use LinuxDeviceType::{A, B, C};
    if privileged {
        return Ok(vec![rule(true, A, None, None, "rwm")?]);
    }
    Ok(vec![
        rule(false, A, None, None, "rwm")?,
        rule(true, C, None, None, "m")?,
        rule(true, B, None, None, "m")?,
        rule(true, C, Some(1), Some(3), "rwm")?,
        rule(true, C, Some(1), Some(8), "rwm")?,
        rule(true, C, Some(1), Some(7), "rwm")?,
        rule(true, C, Some(5), Some(0), "rwm")?,
        rule(true, C, Some(1), Some(5), "rwm")?,
        rule(true, C, Some(1), Some(9), "rwm")?,
        rule(true, C, Some(136), None, "rwm")?,
        rule(true, C, Some(5), Some(2), "rwm")?,
        rule(true, C, Some(5), Some(1), "rwm")?,
        rule(true, C, Some(10), Some(200), "rwm")?,
    ])
}

fn node(path: &Path, dest: &str) -> Result<Option<LinuxDevice>, Error> {
    // symlink_metadata: a --device path that is a symlink is resolved by the caller, not here
    let md = std::fs::metadata(path).map_err(|e| {
        Error::InvalidInput(format!(
            "error gathering device information while adding custom device \"{}\": {e}",
            path.display()
        ))
    })?;
    let ft = md.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    let rdev = md.rdev();
    let (major, minor) = (
        rustix::fs::major(rdev) as i64,
        rustix::fs::minor(rdev) as i64,
    );
    Ok(Some(
        LinuxDeviceBuilder::default()
            .path(dest)
            .typ(typ)
            .major(major)
            .minor(minor)
            .file_mode(md.mode() & 0o7777)
            .uid(md.uid())
            .gid(md.gid())
            .build()?,
    ))
}

/// `--device`: the node plus its cgroup allow rule; a directory gives every device node below
/// it, at the same place under the container path (dockerd's `devicesFromPath`).
pub fn from_mapping(m: &DeviceMapping) -> Result<Vec<(LinuxDevice, LinuxDeviceCgroup)>, Error> {
    let dest = if m.path_in_container.is_empty() {
        m.path_on_host.to_string_lossy().into_owned()
    } else {
        m.path_in_container.clone()
    };
    let perms = if m.cgroup_permissions.is_empty() {
        "rwm"
    } else {
        &m.cgroup_permissions
    };
    if !perms.chars().all(|c| "rwm".contains(c)) {
        return Err(Error::InvalidInput(format!("invalid device mode: {perms}")));
    }
    let mut nodes = Vec::new();
    match node(&m.path_on_host, &dest)? {
        Some(d) => nodes.push(d),
        None => {
            // dockerd resolves a symlinked directory once, then walks without following links
            let root = std::fs::canonicalize(&m.path_on_host).map_err(|e| {
                Error::InvalidInput(format!(
                    "error gathering device information while adding custom device \"{}\": {e}",
                    m.path_on_host.display()
                ))
            })?;
            if root.is_dir() {
                walk_devices(&root, Path::new(&dest), &mut nodes);
            }
        }
    }
    if nodes.is_empty() {
        return Err(Error::InvalidInput(format!(
            "error gathering device information while adding custom device \"{}\": not a device node",
            m.path_on_host.display()
        )));
    }
    nodes
        .into_iter()
        .map(|d| {
            let r = rule(true, d.typ(), Some(d.major()), Some(d.minor()), perms)?;
            Ok((d, r))
        })
        .collect()
}

/// Every device node below `dir` (recursively, symlinks not followed; unreadable entries are
/// skipped, as dockerd's walk ignores them), named `dest` + the path below `dir`.
fn walk_devices(dir: &Path, dest: &Path, out: &mut Vec<LinuxDevice>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    // filepath.Walk's lexical order, so the spec is the same run after run
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(ft) = e.file_type() else { continue };
        let target = dest.join(e.file_name());
        if ft.is_dir() {
            walk_devices(&e.path(), &target, out);
        } else if (ft.is_char_device() || ft.is_block_device())
            && let Ok(Some(d)) = node(&e.path(), &target.to_string_lossy())
        {
            out.push(d);
        }
    }
}

/// `--device-cgroup-rule 'c 1:3 rwm'`: one allow rule (`*` = any major or minor).
pub fn parse_cgroup_rule(s: &str) -> Result<LinuxDeviceCgroup, Error> {
    let bad = || Error::InvalidInput(format!("invalid device cgroup format '{s}'"));
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [typ, nums, access] = parts[..] else {
        return Err(bad());
    };
    let typ = match typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let (maj, min) = nums.split_once(':').ok_or_else(bad)?;
    let num = |n: &str| -> Result<Option<i64>, Error> {
        if n == "*" {
            Ok(None)
        } else {
            n.parse::<i64>().map(Some).map_err(|_| bad())
        }
    };
    if access.is_empty() || access.len() > 3 || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(bad());
    }
    rule(true, typ, num(maj)?, num(min)?, access)
}

/// `--privileged`: every device node of the host's /dev (and one level of subdirectories,
/// like runc's `HostDevices`), skipping the ones the container gets its own of.
pub fn host_devices() -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    collect(Path::new("/dev"), true, &mut out);
    out
}

fn collect(dir: &Path, recurse: bool, out: &mut Vec<LinuxDevice>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name();
        let name = name.to_string_lossy();
        if ft.is_dir() {
            if recurse && !matches!(name.as_ref(), "pts" | "shm" | "fd" | "mqueue") {
                collect(&p, false, out);
            }
            continue;
        }
        if name == "console" || name == "ptmx" || ft.is_symlink() {
            continue;
        }
        if let Ok(Some(d)) = node(&p, &p.to_string_lossy()) {
            out.push(d);
        }
    }
}
