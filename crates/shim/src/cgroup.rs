//! Reading the container's cgroup for OOM kills (before the cgroup is deleted).

use std::path::{Path, PathBuf};

/// Whether /sys/fs/cgroup is the unified (v2) hierarchy.
pub fn is_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

fn memory_dir(cgroups_path: &Path, v2: bool) -> PathBuf {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    if v2 {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup/memory").join(rel)
    }
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// OOM kills recorded for the cgroup: v2 `memory.events` oom_kill, v1 `memory.oom_control`
/// oom_kill (kernel >= 4.13).
pub fn oom_kills(cgroups_path: &Path) -> u64 {
    let v2 = is_v2();
    let dir = memory_dir(cgroups_path, v2);
    let file = if v2 {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|t| field(&t, "oom_kill"))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_fields() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(field(t, "oom_kill"), Some(2));
        assert_eq!(field("low 0\noom 1\noom_kill 1\n", "oom_kill"), Some(1));
        assert_eq!(
            memory_dir(Path::new("/berth/x"), false),
            Path::new("/sys/fs/cgroup/memory/berth/x")
        );
    }
}
