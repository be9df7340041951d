//! Runs the built `berth` and the real `docker` CLI against the same reference dockerd (own
//! socket, data root and exec root in a temp dir) and requires identical stdout, stderr
//! (with "docker" read as "berth") and exit codes. Skips with a message when dockerd/docker
//! are missing or we are not root; always stops the daemon it started.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn berth_matches_docker_cli() {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: /bin/busybox (busybox-static) not installed");
        return;
    }
    let d = match RefDocker::start() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIP: reference dockerd unavailable: {e}");
            return;
        }
    };
    let tar = rootfs_tar(d.path());
    let tar_s = tar.to_string_lossy().to_string();
    let start = chrono_like_now();
    // Distinct creation seconds: the daemon orders same-second images arbitrarily.
    let tick = || std::thread::sleep(Duration::from_millis(1100));
    ok(
        &d.docker(&["import", &tar_s, "busybox:latest"]),
        "docker import",
    );
    tick();
    ok(
        &d.docker(&["tag", "busybox:latest", "busybox:v2"]),
        "docker tag",
    );
    // Made with berth: import with changes and a message.
    let id = ok(
        &d.berth(&[
            "import",
            "-c",
            "ENV A=1",
            "-c",
            "CMD [\"sh\"]",
            "-m",
            "from berth",
            &tar_s,
            "imp:1",
        ]),
        "berth import",
    );
    assert!(
        id.starts_with("sha256:") && id.trim().len() == 71,
        "import printed {id:?}"
    );
    let cfg = ok(
        &d.docker(&[
            "inspect",
            "-f",
            "{{.Config.Env}} {{.Config.Cmd}} {{.Comment}}",
            "imp:1",
        ]),
        "inspect",
    );
    assert_eq!(cfg, "[A=1] [sh] from berth\n");
    tick();
    // A dangling image: re-import under a tag in use.
    ok(&d.docker(&["import", &tar_s, "dang:1"]), "import");
    tick();
    ok(
        &d.docker(&["import", "-m", "x", &tar_s, "dang:1"]),
        "import",
    );

    let mut f = Vec::new();
    for args in [
        &["images"][..],
        &["images", "-a"],
        &["images", "-q"],
        &["images", "--digests"],
        &["images", "--no-trunc"],
        &["images", "--format", "json"],
        &[
            "images",
            "--format",
            "table {{.ID}}\\t{{.Tag}}\\t{{.CreatedAt}}",
        ],
        &[
            "images",
            "--format",
            "{{.Repository}} {{upper .Tag}} {{pad .ID 1 1}}|{{truncate .Repository 3}}",
        ],
        &["images", "busybox"],
        &[
            "images",
            "--format",
            "{{printf \"%-12s|%5s|%q|%d\" .Repository .Tag .Tag .Tag}}",
        ],
        &["images", "--format", "table {{.Repository}}\t{{json .}}"],
        &[
            "images",
            "--format",
            "{{range $i, $e := split .ID \"\"}}{{if lt $i 3}}{{$e}}{{end}}{{end}} {{len .Tag}} {{title .Tag}}",
        ],
        &["images", "-f", "dangling=true"],
        &["images", "-f", "bad=1"],
        &["images", "a", "b"],
        &["images", "--bogus"],
        &["image", "ls"],
        &["image", "list", "-q"],
        &["inspect", "busybox"],
        &["image", "inspect", "busybox", "imp:1"],
        &["inspect", "nosuch"],
        &["image", "inspect", "nosuch"],
        &["inspect", "--type", "image", "busybox", "nosuch"],
        &[
            "inspect",
            "-f",
            "{{.Id}} {{json .RepoTags}} {{.Config.Cmd}} {{json .Config}}",
            "imp:1",
        ],
        &["inspect", "--type", "foo", "x"],
        &["inspect", "-f", "x{{.Nope.X}}", "busybox", "nosuch"],
        &["inspect", "-f", "{{.Id}}", "nosuch"],
        &["images", "--format", "ab\ncd{{.Bogus}}"],
        &["history", "--format", "{{.Nope}}", "busybox"],
        &["version", "-f", "{{.Bogus}}"],
        &["info", "-f", "{{.Bogus}}"],
        &[
            "version",
            "-f",
            "{{.Server.Version}} {{.Server.APIVersion}} {{.Client.APIVersion}}",
        ],
        &[
            "info",
            "-f",
            "{{.ServerVersion}} {{json .Plugins}} {{.Swarm.LocalNodeState}}",
        ],
        &["history", "busybox"],
        &["history", "--no-trunc", "imp:1"],
        &["history", "-H=false", "busybox"],
        &["history", "-q", "busybox"],
        &["history", "--format", "json", "busybox"],
        &["history", "nosuch"],
        &["tag", "a"],
        &["tag", "busybox", "Bad:x"],
        &["tag", "nosuch", "x:y"],
        &["rmi"],
        &["rmi", "nosuch"],
        &["nosuch"],
        &["image", "nosuch"],
        &["version", "x"],
        &["images", "--filter", "nope"],
        &["image", "prune", "--filter", "nope"],
        &["save", "-o", "/nonexistent/x.tar", "busybox"],
        &["save", "-o", "/tmp/x.tar", "nosuch"],
        &["rmi", "-f", "nosuch", "busybox:nope"],
        &["events", "--since", "yesterday"],
        &["import", "/nonexistent.tar"],
        &["history", "-H=maybe", "busybox"],
        &["history", "--platform", "linux/amd64", "busybox"],
        &["image", "inspect", "--platform", "linux/amd64", "busybox"],
        &["system", "df"],
        &["system", "df", "-v"],
        &["system", "df", "--format", "json"],
        &["events", "--since", &start, "--until", "0s"],
        &[
            "events",
            "--since",
            &start,
            "--until",
            "0s",
            "--format",
            "{{json .}}",
        ],
        &[
            "events",
            "--since",
            &start,
            "--until",
            "0s",
            "--filter",
            "event=tag",
            "--format",
            "{{.Status}} {{.Actor.Attributes.name}}",
        ],
    ] {
        same(&d, args, &mut f);
    }

    // Server sections of version/info are the daemon's; the client sections are ours.
    for cmd in [&["version"][..], &["info"]] {
        let want = text(&d.docker(cmd).stdout);
        let got = text(&d.berth(cmd).stdout);
        // docker lists runtimes in Go map order (random); berth sorts them.
        let server = |s: &str| {
            s.split("\nServer:").nth(1).map(|srv| {
                srv.lines()
                    .map(|l| match l.strip_prefix(" Runtimes: ") {
                        Some(r) => {
                            let mut v: Vec<&str> = r.split(' ').collect();
                            v.sort();
                            format!(" Runtimes: {}", v.join(" "))
                        }
                        None => l.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        };
        if server(&want) != server(&got) || server(&got).is_none() {
            f.push(format!(
                "`{}` server section differs:\n{want}\n---\n{got}",
                cmd.join(" ")
            ));
        }
    }

    // Mutations produce docker's messages.
    ok(&d.docker(&["tag", "busybox", "t:1"]), "tag");
    let want = d.docker(&["rmi", "t:1"]);
    ok(&d.berth(&["tag", "busybox", "t:1"]), "berth tag");
    let got = d.berth(&["rmi", "t:1"]);
    if want.stdout != got.stdout || text(&got.stdout) != "Untagged: t:1\n" {
        f.push(format!(
            "rmi: {:?} vs {:?}",
            text(&want.stdout),
            text(&got.stdout)
        ));
    }

    // save of one image is byte-identical (several: the daemon's entry order varies).
    let f1 = d.path().join("b.tar");
    ok(
        &d.berth(&["save", "-o", &f1.to_string_lossy(), "imp:1"]),
        "berth save",
    );
    let f2 = d.path().join("d.tar");
    ok(
        &d.docker(&["save", "-o", &f2.to_string_lossy(), "imp:1"]),
        "docker save",
    );
    if std::fs::read(&f1).ok() != std::fs::read(&f2).ok() {
        f.push("save -o output differs from docker's".into());
    }
    let piped = d.berth(&["save", "imp:1"]);
    if Some(piped.stdout) != std::fs::read(&f2).ok() {
        f.push("save to stdout differs from docker's".into());
    }
    let both = d.berth(&["save", "busybox", "imp:1"]);
    if !both.status.success() || both.stdout.len() <= tar_len(&f2) {
        f.push("save of two images failed".into());
    }
    ok(&d.docker(&["rmi", "imp:1"]), "rmi");
    let loaded = ok(
        &d.berth(&["load", "-i", &f1.to_string_lossy()]),
        "berth load",
    );
    let tar_bytes = std::fs::read(&f1).unwrap_or_default();
    let loaded_stdin = d.run(env!("CARGO_BIN_EXE_berth"), &["load"], Some(&tar_bytes));
    let want = d.run("docker", &["load"], Some(&tar_bytes));
    if text(&loaded_stdin.stdout) != text(&want.stdout) || loaded != text(&want.stdout) {
        f.push(format!(
            "load: {loaded:?} / {:?} vs {:?}",
            text(&loaded_stdin.stdout),
            text(&want.stdout)
        ));
    }
    same(&d, &["load", "-i", "/nonexistent.tar"], &mut f);

    // prune: the question without -f (answered "n": nothing happens), then -f.
    let asked = d.run(
        env!("CARGO_BIN_EXE_berth"),
        &["image", "prune"],
        Some(b"n\n"),
    );
    let want = d.run("docker", &["image", "prune"], Some(b"n\n"));
    if asked.stdout != want.stdout || asked.status.code() != want.status.code() {
        f.push(format!(
            "prune prompt: {:?} vs {:?}",
            text(&asked.stdout),
            text(&want.stdout)
        ));
    }
    let pruned = ok(&d.berth(&["image", "prune", "-f"]), "prune -f");
    if !pruned.starts_with("Deleted Images:\ndeleted: sha256:")
        || !pruned.contains("\n\nTotal reclaimed space: ")
    {
        f.push(format!("prune -f printed {pruned:?}"));
    }
    same(&d, &["images", "-a"], &mut f);

    assert!(
        f.is_empty(),
        "{} differences:\n\n{}",
        f.len(),
        f.join("\n\n")
    );
}

fn tar_len(p: &Path) -> usize {
    std::fs::metadata(p).map(|m| m.len() as usize).unwrap_or(0)
}

/// An RFC3339 timestamp a little in the past, for a stable `events --since`.
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs - 1).to_string()
}

#[test]
fn usage_errors_need_no_daemon() {
    let berth = env!("CARGO_BIN_EXE_berth");
    let o = Command::new(berth)
        .args(["-H", "unix:///nonexistent/berth.sock", "images", "--bogus"])
        .output()
        .expect("run berth");
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).starts_with("unknown flag: --bogus\n\nUsage:  berth images"));
    let o = Command::new(berth)
        .args(["-H", "unix:///nonexistent/berth.sock", "images"])
        .output()
        .expect("run berth");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "Cannot connect to the berth daemon at unix:///nonexistent/berth.sock. Is the berth daemon running?\n"
    );
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA, a server cert for 127.0.0.1 and a client cert, as `docker --tlsverify` uses them.
fn make_certs(dir: &Path) -> bool {
    std::fs::write(
        dir.join("s.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .is_ok()
        && std::fs::write(dir.join("c.ext"), "extendedKeyUsage=clientAuth\n").is_ok()
        && openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=ca",
            ],
        )
        && openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server-key.pem",
                "-out",
                "s.csr",
                "-subj",
                "/CN=localhost",
            ],
        )
        && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "s.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                "server-cert.pem",
                "-days",
                "2",
                "-extfile",
                "s.ext",
            ],
        )
        && openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "c.csr",
                "-subj",
                "/CN=client",
            ],
        )
        && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "c.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-extfile",
                "c.ext",
            ],
        )
}

#[test]
fn tls_verify_over_tcp() {
    if which("openssl").is_none() {
        eprintln!("SKIP: openssl not installed");
        return;
    }
    let certs = match tempfile::tempdir() {
        Ok(c) => c,
        Err(e) => panic!("tempdir: {e}"),
    };
    assert!(make_certs(certs.path()), "could not make test certificates");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let p = |f: &str| certs.path().join(f).to_string_lossy().to_string();
    let daemon_args = vec![
        "--tlsverify".to_string(),
        "--tlscacert".into(),
        p("ca.pem"),
        "--tlscert".into(),
        p("server-cert.pem"),
        "--tlskey".into(),
        p("server-key.pem"),
    ];
    let client_args = vec![
        "--tlsverify".to_string(),
        "--tlscacert".into(),
        p("ca.pem"),
        "--tlscert".into(),
        p("cert.pem"),
        "--tlskey".into(),
        p("key.pem"),
    ];
    let addr = format!("127.0.0.1:{port}");
    let d = match RefDocker::start_with(Some(&addr), &daemon_args, &client_args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIP: reference dockerd unavailable: {e}");
            return;
        }
    };
    let tar = rootfs_tar(d.path());
    // Raw calls (import, inspect) and bollard calls (tag, rmi, save) both go over TLS.
    ok(
        &d.berth(&["import", &tar.to_string_lossy(), "tls:1"]),
        "import over TLS",
    );
    ok(&d.berth(&["tag", "tls:1", "tls:2"]), "tag over TLS");
    let mut f = Vec::new();
    for args in [
        &["images"][..],
        &["inspect", "tls:1"],
        &["rmi", "tls:2"],
        &["images", "-q"],
    ] {
        same(&d, args, &mut f);
    }
    let saved = d.berth(&["save", "tls:1"]);
    if !saved.status.success() || saved.stdout.len() < 1000 {
        f.push("save over TLS failed".into());
    }
    // Without the client certificate the daemon refuses us.
    let o = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "--tlsverify",
            "--tlscacert",
            &p("ca.pem"),
            "-H",
            &d.host,
            "images",
        ])
        .env("DOCKER_CERT_PATH", "/nonexistent")
        .output()
        .expect("run berth");
    if o.status.success() {
        f.push("a client without certificate was accepted".into());
    }
    assert!(f.is_empty(), "{}", f.join("\n\n"));
}
