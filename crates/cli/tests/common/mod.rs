//! Shared by the compatibility tests: a reference dockerd of their own (temp dirs, own
//! socket), running the real `docker` CLI and the built `berth` against it, and comparing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub struct RefDocker {
    pub dir: tempfile::TempDir,
    pub child: std::process::Child,
    pub host: String,
    pub client_args: Vec<String>,
}

impl RefDocker {
    pub fn start() -> Result<RefDocker, String> {
        RefDocker::start_with(None, &[], &[])
    }

    /// `tcp`: listen there instead of a unix socket; `client_args` are what a CLI needs to
    /// reach it (TLS flags); `daemon_args` go to dockerd.
    pub fn start_with(
        tcp: Option<&str>,
        daemon_args: &[String],
        client_args: &[String],
    ) -> Result<RefDocker, String> {
        let dockerd = which("dockerd").ok_or("dockerd not installed")?;
        which("docker").ok_or("docker CLI not installed")?;
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("berthcli")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        let sock = d.join("d.sock");
        let host = match tcp {
            Some(t) => format!("tcp://{t}"),
            None => format!("unix://{}", sock.display()),
        };
        let log = std::fs::File::create(d.join("dockerd.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .args(["-H", &host, "--bridge", "none", "--iptables=false"])
            .args(daemon_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut me = RefDocker {
            dir,
            child,
            host,
            client_args: client_args.to_vec(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("docker")
                .args(&me.client_args)
                .args(["-H", &me.host, "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(me);
            }
            if Instant::now() > deadline || me.child.try_wait().ok().flatten().is_some() {
                let log =
                    std::fs::read_to_string(me.dir.path().join("dockerd.log")).unwrap_or_default();
                return Err(format!("dockerd did not come up:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn run(&self, bin: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(bin);
        cmd.args(&self.client_args)
            .args(["-H", &self.host])
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("BERTH_HOST")
            .env("TZ", "UTC")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn CLI");
        if let Some(data) = stdin {
            use std::io::Write;
            let mut si = child.stdin.take().expect("stdin");
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = si.write_all(&data);
            });
        }
        child.wait_with_output().expect("wait CLI")
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.run("docker", args, None)
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.run(env!("CARGO_BIN_EXE_berth"), args, None)
    }
}

impl Drop for RefDocker {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd and unmount; then make sure it is gone.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Compare one command; retried because "N seconds ago" may tick between the two runs.
pub fn same(d: &RefDocker, args: &[&str], failures: &mut Vec<String>) {
    let mut last = String::new();
    for _ in 0..3 {
        let want = d.docker(args);
        let got = d.berth(args);
        let want_err = text(&want.stderr).replace("docker", "berth");
        if want.stdout == got.stdout
            && want_err == text(&got.stderr)
            && want.status.code() == got.status.code()
        {
            return;
        }
        last = format!(
            "`{}`\n--- docker (exit {:?})\n{}{}\n--- berth (exit {:?})\n{}{}",
            args.join(" "),
            want.status.code(),
            text(&want.stdout),
            want_err,
            got.status.code(),
            text(&got.stdout),
            text(&got.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    failures.push(last);
}

pub fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

pub fn rootfs_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    for l in ["sh", "ls", "echo", "true"] {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(l));
    }
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    tar
}
