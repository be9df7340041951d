//! The berthd binary: start on a unix socket, refuse a second instance on the same pidfile,
//! clean up socket and pidfile on SIGTERM, exit 125 on an unknown flag.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_berthd")
}

fn ping(sock: &std::path::Path) -> Option<String> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn unknown_flag_exits_125() {
    let out = Command::new(bin()).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("run/berth.sock");
    let pid = d.join("run/berthd.pid");
    let args = |data: &str| {
        vec![
            "--data-root".to_owned(),
            d.join(data).display().to_string(),
            "--exec-root".to_owned(),
            d.join("exec").display().to_string(),
            "--pidfile".to_owned(),
            pid.display().to_string(),
            "-H".to_owned(),
            format!("unix://{}", sock.display()),
            "--config-file".to_owned(),
            d.join("none.json").display().to_string(),
            // no default bridge: parallel tests must not share (and remove) the host's berth0
            "--bridge".to_owned(),
            "none".to_owned(),
        ]
    };
    std::fs::write(d.join("none.json"), "{}").unwrap();
    let mut child = Command::new(bin())
        .args(args("data"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let resp = loop {
        if let Some(r) = ping(&sock) {
            break r;
        }
        assert!(Instant::now() < deadline, "berthd did not come up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("Api-Version: 1.50"), "{resp}");
    assert_eq!(
        std::fs::read_to_string(&pid).unwrap().trim(),
        child.id().to_string()
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);

    let second = Command::new(bin()).args(args("data2")).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("pid file found"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!sock.exists(), "socket left behind");
    assert!(!pid.exists(), "pidfile left behind");
}
