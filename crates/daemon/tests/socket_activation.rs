//! `-H fd://`: systemd socket activation (LISTEN_PID/LISTEN_FDS, sockets from fd 3 on).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serves_on_inherited_socket() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("activated.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let fd = listener.as_raw_fd();
    std::fs::write(d.join("daemon.json"), "{}").unwrap();
    let p = |n: &str| d.join(n).display().to_string();
    // `sh` sets LISTEN_PID to its own pid and execs berthd, which keeps that pid — what
    // systemd does between fork and exec.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=1 exec {} \"$@\"",
            env!("CARGO_BIN_EXE_berthd")
        ))
        .arg("berthd")
        .args(["--data-root", &p("data"), "--exec-root", &p("exec")])
        // no default bridge: this test is about sockets, and must not touch the host's berth0
        .args(["--bridge", "none"])
        .args([
            "--pidfile",
            &p("pid"),
            "-H",
            "fd://",
            "--config-file",
            &p("daemon.json"),
        ])
        .stderr(Stdio::null());
    // SAFETY: dup2 and fcntl are async-signal-safe; the fd stays valid until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::fcntl(3, libc::F_GETFD);
            libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Ok(mut s) = UnixStream::connect(&sock) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if !out.is_empty() {
                break out;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answer on the activated socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("OK"), "{answer}");
    // SIGTERM, not SIGKILL: a daemon killed -9 and never restarted leaves its state behind
    // (as dockerd leaves its iptables rules)
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let _ = child.wait();
}
