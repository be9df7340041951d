//! The fixture most container tests start from: a throwaway daemon with busybox imported, and
//! the checks those tests share (status polling, shims, leaks). One copy here instead of one per
//! test file.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Daemon, OutputExt, archive, have};

/// Whether container tests can run here: root, the docker CLI and busybox-static. Prints why
/// not; the callers then return early (skipped, not failed).
pub fn can_run_containers() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root || !have("docker") || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root, the docker CLI and busybox-static");
        return false;
    }
    true
}

/// Mount points of this mount namespace (the fifth field of /proc/self/mountinfo).
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(str::to_owned)
        .collect()
}

/// Whether `path` is a mount point right now.
pub fn mounted(path: &str) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// A throwaway daemon with `busybox:latest` imported (Debian's busybox-static). Derefs to the
/// [`Daemon`], whose drop force-removes every container; this drop also kills any shim still
/// recorded, so a failing test leaks nothing.
pub struct Fixture {
    pub d: Daemon,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_args(&[])
    }

    /// With extra berthd flags.
    pub fn with_args(args: &[&str]) -> Fixture {
        let d = Daemon::start_with(args);
        d.docker_stdin(
            &["import", "-", "busybox:latest"],
            Some(&archive::busybox_rootfs()),
        )
        .ok();
        Fixture { d }
    }

    /// `DOCKER_BUILDKIT=0 docker build ARGS CTX` against this daemon.
    pub fn docker_build(&self, ctx: &Path, args: &[&str]) -> std::process::Output {
        crate::docker_build_at(&self.host(), &self.dir, ctx, args)
    }

    /// stdout of a docker CLI command that must succeed.
    pub fn out(&self, args: &[&str]) -> String {
        self.d.docker(args).ok().stdout_str()
    }

    /// Full IDs of all containers.
    pub fn ids(&self) -> Vec<String> {
        self.d
            .docker(&["ps", "-aq", "--no-trunc"])
            .stdout_str()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `.State.Status` of a container.
    pub fn status(&self, name: &str) -> String {
        self.out(&["inspect", "-f", "{{.State.Status}}", name])
            .trim()
            .to_owned()
    }

    /// Polls the status until it is `want` (15 s at most); returns the last one seen.
    pub fn wait_status(&self, name: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut st = self.status(name);
        while st != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            st = self.status(name);
        }
        st
    }

    /// Live shim pids recorded under this daemon's exec root.
    pub fn shim_pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.d.exec_root.join("c")) {
            for e in rd.flatten() {
                if let Ok(p) = std::fs::read_to_string(e.path().join("shim.pid"))
                    && let Ok(pid) = p.trim().parse::<i32>()
                    && Path::new(&format!("/proc/{pid}")).exists()
                {
                    out.push(pid);
                }
            }
        }
        out
    }

    /// No mount under the data root, no cgroup of `ids`, and (within 10 s) no shim is left.
    pub fn assert_no_leaks(&self, ids: &[String]) {
        let root = self.d.data_root.display().to_string();
        let mounts: Vec<String> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&root))
            .collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        for id in ids {
            if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
                for c in rd.flatten() {
                    let p = c.path().join("berth").join(id);
                    assert!(!p.exists(), "cgroup left: {}", p.display());
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.shim_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = self.shim_pids();
        assert!(left.is_empty(), "shims left: {left:?}");
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

impl Deref for Fixture {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.d
    }
}

impl DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.d
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.d.alive() {
            self.d.remove_all_containers();
        }
        for pid in self.shim_pids() {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    }
}
