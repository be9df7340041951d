//! tcp:// with mutual TLS (--tlsverify): a client certificate signed by the CA is required.
//! Uses the openssl and curl CLIs to make certificates and act as client; skipped without them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn sh(dir: &Path, script: &str) {
    let st = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}

fn curl(dir: &Path, port: u16, client_cert: bool) -> Option<String> {
    let mut c = Command::new("curl");
    c.current_dir(dir)
        .args(["-s", "--max-time", "5", "--cacert", "ca.pem"]);
    if client_cert {
        c.args(["--cert", "cert.pem", "--key", "ckey.pem"]);
    }
    let out = c
        .arg(format!("https://127.0.0.1:{port}/_ping"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn mutual_tls() {
    if !have("openssl") || !have("curl") {
        eprintln!("SKIP: openssl or curl missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh(
        d,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=ca
         openssl req -newkey rsa:2048 -nodes -keyout key.pem -out s.csr -subj /CN=localhost
         printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > s.ext
         openssl x509 -req -in s.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server.pem -days 2 -extfile s.ext
         openssl req -newkey rsa:2048 -nodes -keyout ckey.pem -out c.csr -subj /CN=client
         printf 'extendedKeyUsage=clientAuth\\n' > c.ext
         openssl x509 -req -in c.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile c.ext",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(d.join("daemon.json"), "{}").unwrap();
    let p = |n: &str| d.join(n).display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berthd"))
        .args([
            "--data-root",
            &p("data"),
            "--exec-root",
            &p("exec"),
            "--pidfile",
            &p("pid"),
            // no default bridge: this test is about TLS, and must not touch the host's berth0
            "--bridge",
            "none",
        ])
        .args([
            "-H",
            &format!("tcp://127.0.0.1:{port}"),
            "--config-file",
            &p("daemon.json"),
        ])
        .args([
            "--tlsverify",
            "--tlscacert",
            &p("ca.pem"),
            "--tlscert",
            &p("server.pem"),
        ])
        .args(["--tlskey", &p("key.pem")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        if let Some(body) = curl(d, port, true) {
            break body;
        }
        assert!(Instant::now() < deadline, "berthd did not answer over TLS");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ok, "OK");
    assert!(
        curl(d, port, false).is_none(),
        "served a client without certificate"
    );
    // SIGTERM, not SIGKILL: a daemon killed -9 and never restarted leaves its state behind
    // (as dockerd leaves its iptables rules)
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let _ = child.wait();
}
