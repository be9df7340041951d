use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::OnceLock;

use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};
use procfs::process::MountInfo;
use procfs::{FromRead, ProcError, ProcessCGroups};

use super::ControllerType;
use super::controller_type::CONTROLLERS;

#[derive(thiserror::Error, Debug)]
pub enum V1MountPointError {
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("failed to get mountinfo: {0}")]
    MountInfo(ProcError),
    #[error("could not find mountpoint for {subsystem}")]
    NotFound { subsystem: ControllerType },
    #[error(transparent)]
    Pathrs(#[from] pathrs::error::Error),
}

/// List all cgroup v1 subsystem mount points on the system. This can include unsupported
/// subsystems, comounted controllers and named hierarchies.
pub fn list_subsystem_mount_points() -> Result<Vec<PathBuf>, V1MountPointError> {
    // berth patch: through `cgroup_mounts` (read once per process when primed)
    Ok(cgroup_mounts()?
        .iter()
        .map(|m| m.mount_point.clone())
        .collect())
}

/// List the mount points of all currently supported cgroup subsystems.
pub fn list_supported_mount_points() -> Result<HashMap<ControllerType, PathBuf>, V1MountPointError>
{
    let mut mount_paths = HashMap::with_capacity(CONTROLLERS.len());

    // berth patch: mountinfo read once (see cgroup_mounts)
    let mounts = cgroup_mounts()?;
    for controller in CONTROLLERS {
        if let Ok(mount_point) = subsystem_mount_point_in(&mounts, controller) {
            mount_paths.insert(controller.to_owned(), mount_point);
        }
    }

    Ok(mount_paths)
}

pub fn get_subsystem_mount_point(subsystem: &ControllerType) -> Result<PathBuf, V1MountPointError> {
    subsystem_mount_point_in(&cgroup_mounts()?, subsystem)
}

// berth patch begin: read /proc/self/mountinfo once for all subsystems
// (vendor/libcontainer/BERTH-PATCH.md)
/// The mounts and own cgroups `prime` read (`common::prime_host_cgroups`).
static PRIMED: OnceLock<(Vec<MountInfo>, ProcessCGroups)> = OnceLock::new();

/// Reads the cgroup mounts and this process's cgroups once for the rest of the process (and
/// its clones); false if either cannot be read.
pub(crate) fn prime() -> bool {
    let read = || -> Result<ProcessCGroups, V1MountPointError> {
        ProcessCGroups::from_read(ProcfsHandle::new()?.open(
            ProcfsBase::ProcSelf,
            "cgroup",
            OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
        )?)
        .map_err(V1MountPointError::MountInfo)
    };
    match (read_cgroup_mounts(), read()) {
        (Ok(mounts), Ok(own)) => {
            let _ = PRIMED.set((mounts, own));
            true
        }
        _ => false,
    }
}

/// This process's cgroups as `prime` read them, if it did (they only tell which hierarchy has
/// which controllers, which does not change; a process's own path in them may).
pub(crate) fn primed_own_cgroups() -> Option<&'static ProcessCGroups> {
    PRIMED.get().map(|(_, own)| own)
}

/// The `cgroup` (v1) mounts of /proc/self/mountinfo, in order (as `prime` read them, if it
/// did).
pub fn cgroup_mounts() -> Result<Cow<'static, [MountInfo]>, V1MountPointError> {
    match PRIMED.get() {
        Some((mounts, _)) => Ok(Cow::Borrowed(mounts)),
        None => Ok(Cow::Owned(read_cgroup_mounts()?)),
    }
}

fn read_cgroup_mounts() -> Result<Vec<MountInfo>, V1MountPointError> {
    let reader = BufReader::new(ProcfsHandle::new()?.open(
        ProcfsBase::ProcSelf,
        "mountinfo",
        OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
    )?);
    let mut out = Vec::new();
    for line in reader.lines() {
        let m = MountInfo::from_line(&line?).map_err(V1MountPointError::MountInfo)?;
        if m.fs_type == "cgroup" {
            out.push(m);
        }
    }
    Ok(out)
}

/// [`get_subsystem_mount_point`] on mounts read once by [`cgroup_mounts`].
pub fn subsystem_mount_point_in(
    mounts: &[MountInfo],
    subsystem: &ControllerType,
) -> Result<PathBuf, V1MountPointError> {
    let subsystem_name = subsystem.to_string();
    mounts
        .iter()
        .find(|m| {
            // Some systems mount net_prio and net_cls in the same directory
            // other systems mount them in their own directories. This
            // should handle both cases.
            match subsystem_name.as_str() {
                "net_cls" => ["net_cls,net_prio", "net_prio,net_cls", "net_cls"]
                    .iter()
                    .any(|s| m.mount_point.ends_with(s)),
                "net_prio" => ["net_cls,net_prio", "net_prio,net_cls", "net_prio"]
                    .iter()
                    .any(|s| m.mount_point.ends_with(s)),
                "cpu" => ["cpu,cpuacct", "cpu"]
                    .iter()
                    .any(|s| m.mount_point.ends_with(s)),
                "cpuacct" => ["cpu,cpuacct", "cpuacct"]
                    .iter()
                    .any(|s| m.mount_point.ends_with(s)),
                _ => m.mount_point.ends_with(&subsystem_name),
            }
        })
        .map(|m| m.mount_point.clone())
        .ok_or(V1MountPointError::NotFound {
            subsystem: *subsystem,
        })
}
// berth patch end

// berth patch: the primed copy is what a fresh read gives
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primed_mounts_equal_a_fresh_read() {
        let Ok(fresh) = read_cgroup_mounts() else {
            return;
        };
        crate::common::prime_host_cgroups();
        let primed = cgroup_mounts().expect("cgroup mounts");
        let points =
            |m: &[MountInfo]| -> Vec<PathBuf> { m.iter().map(|m| m.mount_point.clone()).collect() };
        assert_eq!(points(&primed), points(&fresh));
        assert_eq!(list_subsystem_mount_points().expect("list"), points(&fresh));
    }
}
