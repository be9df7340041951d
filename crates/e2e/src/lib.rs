//! berth-e2e: the harness of the end-to-end tests.
//!
//! Owns: starting a throwaway berthd per test (its own data root, exec root, socket, pidfile,
//! bridge name and subnet under a fresh directory), talking to it (our `berth`, the real `docker`
//! CLI, raw HTTP for hostile input), a reference Docker daemon for compatibility checks, and
//! builders for test images made locally (no registry is reachable).
//! Must not: link daemon crates — like any client, it sees berthd only through its socket.
//! Cleanup happens in `Drop`, so it runs when a test fails too.

pub mod archive;
mod fixture;
pub mod http;
pub mod registry;

pub use fixture::{Fixture, can_run_containers, mount_points, mounted};

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The directory holding the built `berthd` and `berth` (BERTH_BIN_DIR, else the workspace's
/// target/debug).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug")
}

/// A fresh, unique scratch directory for one test.
pub fn scratch(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(format!("/tmp/berth-e2e/{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A scratch directory that is removed (mounts below it detached first) when the test ends,
/// however it ends.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        ScratchDir(scratch(tag))
    }
}

impl ScratchDir {
    /// A scratch directory holding these files (path relative to it, content); parents made.
    pub fn with_files(tag: &str, files: &[(&str, &str)]) -> ScratchDir {
        let dir = ScratchDir::new(tag);
        for (p, c) in files {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, c).expect("write");
        }
        dir
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        cleanup_dir(&self.0);
    }
}

/// A berthd of its own for one test. Stopped and wiped on drop.
pub struct Daemon {
    pub dir: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub sock: PathBuf,
    pub pidfile: PathBuf,
    pub bridge: String,
    pub bip: String,
    /// /24s claimed for this daemon (the default bridge's first), released on drop.
    subnets: Vec<Subnet>,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Daemon {
        let dir = scratch("d");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // Unique per process and test: bridge names are at most 15 bytes.
        let bridge = format!("bt{}x{}", pid % 100_000, n % 1000);
        let subnet = Subnet::claim();
        let bip = format!("{}.1/24", subnet.prefix3());
        let mut d = Daemon {
            subnets: vec![subnet],
            data_root: dir.join("data"),
            exec_root: dir.join("exec"),
            sock: dir.join("berth.sock"),
            pidfile: dir.join("berthd.pid"),
            dir,
            bridge,
            bip,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        // like dockerd, berthd takes a -b bridge other than its default as given: it must
        // exist, and it is not removed at shutdown (Drop removes it)
        let _ = Command::new("ip")
            .args(["link", "add", &d.bridge, "type", "bridge"])
            .stderr(Stdio::null())
            .status();
        d.spawn();
        d
    }

    /// Arguments berthd is started with.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-root".to_owned(),
            self.data_root.display().to_string(),
            "--exec-root".to_owned(),
            self.exec_root.display().to_string(),
            "--pidfile".to_owned(),
            self.pidfile.display().to_string(),
            "-H".to_owned(),
            self.host(),
            "--bip".to_owned(),
            self.bip.clone(),
            "--bridge".to_owned(),
            self.bridge.clone(),
            "--config-file".to_owned(),
            self.dir.join("daemon.json").display().to_string(),
        ];
        a.extend(self.extra_args.iter().cloned());
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("berthd.log"))
            .expect("open daemon log");
        let err = log.try_clone().expect("clone log fd");
        if !self.dir.join("daemon.json").exists() {
            std::fs::write(self.dir.join("daemon.json"), "{}").expect("write daemon.json");
        }
        let child = Command::new(bin_dir().join("berthd"))
            .args(self.args())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn berthd from {}: {e}", bin_dir().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http::request(&self.sock, "GET", "/_ping", &[], None)
                && r.status == 200
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("berthd exited early ({status}):\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!("berthd did not answer /_ping in 20 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berthd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Is the daemon process still alive (not exited, not a zombie)?
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `kill -9` the daemon, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the daemon again on the same directories (after `kill9` or `stop`).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Graceful stop: SIGTERM (berthd stops its running containers, unless `--live-restore`,
    /// within its 15 s shutdown timeout), then SIGKILL after 20 s.
    pub fn stop(&mut self) {
        self.stop_graceful();
    }

    /// `stop`, telling whether berthd exited by itself within the 20 s.
    fn stop_graceful(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let pid = rustix::process::Pid::from_raw(c.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Run our CLI against this daemon.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_stdin(args, None)
    }

    pub fn berth_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = Command::new(bin_dir().join("berth"));
        c.args(args)
            .env("BERTH_HOST", self.host())
            .env_remove("DOCKER_HOST");
        run(c, stdin)
    }

    /// Run the real docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        docker_cli(&self.host(), &self.dir, args, stdin)
    }

    /// One raw HTTP request over the socket.
    pub fn api(&self, method: &str, path: &str, body: Option<&[u8]>) -> http::Response {
        http::request(&self.sock, method, path, &[], body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.log()))
    }
}

impl Daemon {
    /// Another /24 of our own (for `network create --subnet`), e.g. "10.231.7.0/24".
    pub fn subnet(&mut self) -> String {
        let s = Subnet::claim();
        let out = format!("{}.0/24", s.prefix3());
        self.subnets.push(s);
        out
    }

    /// The nftables table this daemon uses (berth-network derives it from the data root).
    pub fn nft_table(&self) -> String {
        use sha2::Digest;
        let h = sha2::Sha256::digest(self.data_root.as_os_str().as_encoded_bytes());
        format!("berth_{}", &hex::encode(h)[..10])
    }

    /// Bridges the daemon's network state lists (default and user networks).
    pub fn bridges(&self) -> Vec<String> {
        let mut out = vec![self.bridge.clone()];
        if let Ok(d) = std::fs::read(self.data_root.join("network/state.json"))
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&d)
            && let Some(nets) = v.get("networks").and_then(|n| n.as_array())
        {
            for n in nets {
                if let Some(b) = n.get("bridge").and_then(|b| b.as_str())
                    && !b.is_empty()
                    && !out.iter().any(|x| x == b)
                {
                    out.push(b.to_owned());
                }
            }
        }
        out
    }

    /// Force-remove every container (no shim or mount outlives the test, and the shutdown
    /// has nothing to wait for).
    pub fn remove_all_containers(&self) {
        let Ok(r) = http::request(&self.sock, "GET", "/containers/json?all=1", &[], None) else {
            return;
        };
        let list: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        for c in list.as_array().into_iter().flatten() {
            if let Some(id) = c["Id"].as_str() {
                let path = format!("/containers/{id}?force=1");
                let _ = http::request(&self.sock, "DELETE", &path, &[], None);
            }
        }
    }
}

impl Daemon {
    /// Host-side veths plugged into this daemon's bridges.
    fn veths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for b in self.bridges() {
            let dir = Path::new("/sys/class/net").join(&b).join("brif");
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out
    }

    /// What a stopped daemon left of its networking: nftables table, bridges, veths, netns
    /// mounts. Empty after a graceful stop, or berthd leaks.
    fn network_leftovers(&self, veths: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        for family in ["ip", "bridge"] {
            if nft_table_exists(family, &self.nft_table()) {
                left.push(format!("nftables table {family} {}", self.nft_table()));
            }
        }
        // (the default network's bridge is the harness's, given with -b: it stays)
        for b in self.bridges().into_iter().filter(|b| *b != self.bridge) {
            if Path::new("/sys/class/net").join(&b).exists() {
                left.push(format!("bridge {b}"));
            }
        }
        // the kernel removes a veth when its netns dies, asynchronously: give it a moment
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut veths: Vec<&String> = veths.iter().collect();
        while !veths.is_empty() && Instant::now() < deadline {
            veths.retain(|v| Path::new("/sys/class/net").join(v).exists());
            std::thread::sleep(Duration::from_millis(20));
        }
        left.extend(veths.iter().map(|v| format!("veth {v}")));
        let netns = self.exec_root.join("netns").display().to_string();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in info.lines().filter_map(|l| l.split(' ').nth(4)) {
            if m.starts_with(&netns) {
                left.push(format!("mount {m}"));
            }
        }
        left
    }
}

fn nft_table_exists(family: &str, t: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", family, t])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Leak guard: a daemon still running here gets its containers removed and a SIGTERM;
        // after that berthd itself must have removed everything of its networking. Only a
        // daemon the test killed for good (kill9, no restart) is cleaned up silently below;
        // a shim still running after a clean stop with no container is a leak too.
        let mut leaks = Vec::new();
        let mut stopped_clean = false;
        if self.alive() {
            self.remove_all_containers();
            let veths = self.veths();
            if self.stop_graceful() {
                stopped_clean = true;
                leaks = self.network_leftovers(&veths);
            }
        }
        self.stop();
        // a daemon killed for good (or a test that panicked mid-way) leaves its shims and
        // their containers running, and their cgroups behind
        let shims = kill_shims_under(&self.dir);
        if stopped_clean {
            leaks.extend(shims.iter().map(|id| format!("shim of {id}")));
        }
        // a daemon killed with containers running leaves its bridges and table: remove them
        for b in self.bridges() {
            if Path::new("/sys/class/net").join(&b).exists() {
                let _ = Command::new("ip").args(["link", "del", &b]).status();
            }
        }
        let t = self.nft_table();
        for family in ["ip", "bridge"] {
            let _ = Command::new("nft")
                .args(["delete", "table", family, &t])
                .stderr(Stdio::null())
                .status();
        }
        let log = if leaks.is_empty() {
            String::new()
        } else {
            self.log()
        };
        cleanup_dir(&self.dir);
        if !leaks.is_empty() && !std::thread::panicking() {
            panic!(
                "berthd left behind after SIGTERM with no container: {}\nlog:\n{log}",
                leaks.join(", ")
            );
        }
    }
}

/// A /24 in 10.200.0.0-10.254.255.0 claimed machine-wide through a lock file under
/// /tmp/berth-e2e/subnets (test processes run in parallel), skipping the host's routes.
pub struct Subnet {
    a: u8,
    b: u8,
    lock: PathBuf,
}

impl Subnet {
    pub fn claim() -> Subnet {
        let dir = Path::new("/tmp/berth-e2e/subnets");
        let _ = std::fs::create_dir_all(dir);
        let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let taken: Vec<(u32, u32)> = routes
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let d = u32::from_be(u32::from_str_radix(f.get(1)?, 16).ok()?);
                let m = u32::from_be(u32::from_str_radix(f.get(7)?, 16).ok()?);
                (m != 0).then_some((d, m))
            })
            .collect();
        let start = (std::process::id() as usize * 131
            + COUNTER.fetch_add(1, Ordering::SeqCst) as usize * 17)
            % (55 * 256);
        for k in 0..55 * 256 {
            let i = (start + k) % (55 * 256);
            let (a, b) = (200 + (i / 256) as u8, (i % 256) as u8);
            let net = u32::from_be_bytes([10, a, b, 0]);
            if taken
                .iter()
                .any(|(d, m)| (net & m) == (d & m) || (d & 0xffffff00) == net)
            {
                continue;
            }
            let lock = dir.join(format!("10.{a}.{b}.0"));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Subnet { a, b, lock };
                }
                Err(_) => {
                    // stale: its owner is gone
                    let owner = std::fs::read_to_string(&lock).unwrap_or_default();
                    if !owner.is_empty() && !Path::new("/proc").join(owner.trim()).exists() {
                        let _ = std::fs::remove_file(&lock);
                    }
                }
            }
        }
        panic!("no free /24 for a test daemon");
    }

    /// "10.a.b"
    pub fn prefix3(&self) -> String {
        format!("10.{}.{}", self.a, self.b)
    }
}

impl Drop for Subnet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Is the real docker CLI on PATH?
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run the docker CLI with its own config dir (no user config leaks in).
pub fn docker_cli(host: &str, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = Command::new("docker");
    c.args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION");
    run(c, stdin)
}

fn run(mut c: Command, stdin: Option<&[u8]>) -> Output {
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
    if let Some(data) = stdin {
        let mut w = child.stdin.take().expect("stdin piped");
        let data = data.to_vec();
        // Write from a thread so a child that prints a lot before reading cannot deadlock us.
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    child.wait_with_output().expect("wait for child")
}

/// The container of a pooled shim that serves one: the last part of its cgroupsPath.
fn pooled_shim_container(proc_dir: &Path) -> Option<String> {
    let cfg = std::fs::read(proc_dir.join("cwd/config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&cfg).ok()?;
    let cg = v["linux"]["cgroupsPath"].as_str()?;
    Some(cg.rsplit('/').next()?.to_string())
}

/// SIGKILLs every berth-shim whose command line names a path under `dir` (and so its
/// container: the shim holds the pid namespace's init), then removes the containers'
/// `berth/<id>` cgroups in every hierarchy once they are empty.
pub fn kill_shims_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut ids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = args.first().is_some_and(|a| a.ends_with("berth-shim"));
        if !is_shim || !args.iter().any(|a| a.starts_with(&prefix)) {
            continue;
        }
        if let Some(i) = args.iter().position(|a| a == "--id")
            && let Some(id) = args.get(i + 1)
        {
            ids.push(id.clone());
        } else if let Some(id) = pooled_shim_container(&e.path()) {
            // a pooled shim (`berth-shim pool`) got its container's flags on stdin: its
            // cwd is the state dir, whose config.json names the container's cgroup
            ids.push(id);
        }
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    if ids.is_empty() {
        return ids;
    }
    // the containers die with their shims' SIGKILL only once each pid 1 is gone: give them
    // a moment before the cgroups can be removed
    let hierarchies: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([PathBuf::from("/sys/fs/cgroup")])
        .collect();
    for _ in 0..50 {
        let mut left = false;
        for id in &ids {
            for h in &hierarchies {
                let d = h.join("berth").join(id);
                if d.exists() {
                    let procs = d.join("cgroup.procs");
                    for p in std::fs::read_to_string(&procs).unwrap_or_default().lines() {
                        if let Some(pid) = p.parse().ok().and_then(rustix::process::Pid::from_raw) {
                            let _ =
                                rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        }
                    }
                    let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                    if std::fs::remove_dir(&d).is_err() {
                        left = true;
                    }
                }
            }
        }
        if !left {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ids
}

/// Unmount whatever is still mounted below `dir`, deepest first, then remove it.
pub fn cleanup_dir(dir: &Path) {
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let prefix = dir.display().to_string();
        let mut mounts: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Helpers for asserting on `Output`.
pub trait OutputExt {
    fn stdout_str(&self) -> String;
    fn stderr_str(&self) -> String;
    /// Panic with both streams when the command failed.
    fn ok(&self) -> &Self;
    fn code(&self) -> i32;
}

impl OutputExt for Output {
    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout_str(),
            self.stderr_str()
        );
        self
    }
    fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// A reference Docker daemon (Debian's docker.io) with its own directories, for comparing
/// behaviour and for producing archives that a real `docker save` wrote. `None` when dockerd is
/// not installed.
pub struct RefDocker {
    pub dir: PathBuf,
    child: Child,
}

impl RefDocker {
    pub fn start() -> Option<RefDocker> {
        if !have("dockerd") {
            eprintln!("SKIP: dockerd (Debian's docker.io) is not installed");
            return None;
        }
        let dir = scratch("ref");
        let log = std::fs::File::create(dir.join("dockerd.log")).ok()?;
        let err = log.try_clone().ok()?;
        let child = Command::new("dockerd")
            .args([
                "--data-root",
                &dir.join("data").display().to_string(),
                "--exec-root",
                &dir.join("exec").display().to_string(),
                "--pidfile",
                &dir.join("dockerd.pid").display().to_string(),
                "-H",
                &format!("unix://{}", dir.join("docker.sock").display()),
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
                "--containerd-namespace",
                &format!("berth-e2e-{}", std::process::id()),
                "--config-file",
                &dir.join("daemon.json").display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .ok()?;
        let _ = std::fs::write(dir.join("daemon.json"), "{}");
        let r = RefDocker { dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(resp) = http::request(&r.sock(), "GET", "/_ping", &[], None)
                && resp.status == 200
            {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "reference dockerd did not start:\n{}",
            std::fs::read_to_string(r.dir.join("dockerd.log")).unwrap_or_default()
        );
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock().display())
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        docker_cli(&self.host(), &self.dir, args, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        docker_cli(&self.host(), &self.dir, args, Some(stdin))
    }
}

impl Drop for RefDocker {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        cleanup_dir(&self.dir);
    }
}

/// `docker build` (the docker 28 CLI, legacy builder: `DOCKER_BUILDKIT=0`) against `host`, with
/// a config dir of its own under `dir`; the caller adds flags and the context.
pub fn docker_build_command(host: &str, dir: &Path) -> Command {
    let mut c = Command::new("docker");
    c.arg("build")
        .env("DOCKER_HOST", host)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .stdin(Stdio::null());
    c
}

/// `DOCKER_BUILDKIT=0 docker build ARGS CTX` against `host`.
pub fn docker_build_at(host: &str, dir: &Path, ctx: &Path, args: &[&str]) -> Output {
    docker_build_command(host, dir)
        .args(args)
        .arg(ctx)
        .output()
        .expect("run docker build")
}
