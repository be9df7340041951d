//! Registries end to end: berthd against Debian's docker-registry (distribution 2.8) on
//! 127.0.0.1, driven by the real docker CLI, our berth CLI, raw HTTP, skopeo and a reference
//! dockerd. Push one way, pull the other, same digests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_e2e::archive;
use berth_e2e::registry::{BerthServe, Registry, have_registry, skopeo_output};
use berth_e2e::{Daemon, OutputExt, RefDocker, bin_dir, have};

/// Load a two-layer image (busybox + `extra` bytes of noise) under `tag`; returns its ID.
fn load_image(d: &Daemon, tag: &str, extra: usize, seed: u64) -> String {
    let mut layers = vec![archive::busybox_rootfs()];
    if extra > 0 {
        layers.push(archive::layer(&[archive::Entry::File(
            "data.bin",
            &archive::noise(extra, seed),
        )]));
    }
    let config = archive::config(&layers, &["sh"], "2024-01-01T00:00:00Z");
    let tar = archive::docker_archive(&layers, &config, &[tag]);
    let r = d.api("POST", "/images/load?quiet=1", Some(&tar));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("errorDetail"), "{}", r.text());
    format!("sha256:{}", archive::sha256_hex(&config))
}

/// berth with a docker config dir of its own (credentials never leak between tests).
fn berth_cfg(d: &Daemon, cfg: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = Command::new(bin_dir().join("berth"));
    c.args(args)
        .env("BERTH_HOST", d.host())
        .env("DOCKER_CONFIG", cfg)
        .env_remove("DOCKER_HOST")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn berth");
    if let Some(data) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(data).expect("write stdin");
    }
    child.wait_with_output().expect("berth")
}

/// "v1: digest: sha256:... size: N" -> the digest.
fn pushed_digest(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split(": digest: ").nth(1))
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no digest line in:\n{out}"))
        .to_owned()
}

fn skopeo_digest(reference: &str) -> String {
    let out = skopeo_output(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    assert!(out.status.success(), "{}", out.stderr_str());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["Digest"].as_str().expect("Digest").to_owned()
}

fn repo_digests(d: &Daemon, name: &str) -> Vec<String> {
    let r = d.api("GET", &format!("/images/{name}/json"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["RepoDigests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn push_and_pull_with_docker_cli_berth_skopeo_and_docker() {
    if !have_registry() || !have("docker") || !have("skopeo") {
        return;
    }
    let reg = Registry::start();
    push_and_pull_roundtrip(&reg.host());
}

/// The same with berth's own registry (`berth registry serve`) in the middle.
#[test]
fn push_and_pull_through_berth_registry_serve() {
    if !have("docker") || !have("skopeo") {
        return;
    }
    let reg = BerthServe::start_scratch(&[]);
    push_and_pull_roundtrip(&reg.host());
}

/// berth push → docker CLI (through berthd) pull, run/create pulls, search, distribution
/// inspect, a real Docker pulling what berth pushed and pushing for berth to pull, skopeo
/// copying for berth to pull: same digests everywhere.
fn push_and_pull_roundtrip(host: &str) {
    let d = Daemon::start();
    let host = host.to_owned();
    load_image(&d, "bb:latest", 300_000, 1);
    let name = format!("{host}/e2e/bb:v1");
    d.berth(&["tag", "bb:latest", &name]).ok();

    // berth push: docker's lines, and the registry has what we say we pushed.
    let out = d.berth(&["push", &name]);
    out.ok();
    let text = out.stdout_str();
    assert!(
        text.contains(&format!("The push refers to repository [{host}/e2e/bb]")),
        "{text}"
    );
    assert!(text.contains(": Pushed"), "{text}");
    let digest = pushed_digest(&text);
    assert_eq!(skopeo_digest(&name), digest);
    assert!(repo_digests(&d, &name).contains(&format!("{host}/e2e/bb@{digest}")));
    // Pushing again: every layer already exists.
    let again = d.berth(&["push", &name]);
    again.ok();
    assert!(
        again.stdout_str().contains("Layer already exists"),
        "{}",
        again.stdout_str()
    );

    // docker pull (the real CLI against berthd) after removing the local copy.
    d.berth(&["rmi", &name, "bb:latest"]).ok();
    let out = d.docker(&["pull", &name]);
    out.ok();
    let text = out.stdout_str();
    assert!(text.contains("v1: Pulling from e2e/bb"), "{text}");
    assert!(text.contains("Pull complete"), "{text}");
    assert!(text.contains(&format!("Digest: {digest}")), "{text}");
    assert!(
        text.contains(&format!("Status: Downloaded newer image for {name}")),
        "{text}"
    );
    assert!(text.trim_end().ends_with(&name), "{text}");
    let again = d.docker(&["pull", &name]);
    again.ok();
    assert!(
        again
            .stdout_str()
            .contains(&format!("Status: Image is up to date for {name}")),
        "{}",
        again.stdout_str()
    );

    // Unknown tags and repositories: dockerd's errors.
    let out = d.docker(&["pull", &format!("{host}/e2e/bb:nope")]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr_str().contains(&format!(
            "manifest for {host}/e2e/bb:nope not found: manifest unknown"
        )),
        "{}",
        out.stderr_str()
    );

    // docker run of a missing image pulls it (the CLI does, on "No such image").
    d.berth(&["rmi", &name]).ok();
    let out = d.docker(&["create", &name, "true"]);
    out.ok();
    assert!(
        out.stderr_str()
            .contains(&format!("Unable to find image '{name}' locally")),
        "{}",
        out.stderr_str()
    );
    // berth create --pull never refuses; --pull always pulls even when present.
    let out = d.berth(&[
        "create",
        "--pull",
        "never",
        &format!("{host}/e2e/bb:absent"),
        "true",
    ]);
    assert_ne!(out.code(), 0);
    let out = d.berth(&["create", "--pull", "always", &name, "true"]);
    out.ok();
    assert!(
        out.stderr_str().contains("Status: Image is up to date"),
        "{}",
        out.stderr_str()
    );

    // berth pull -q prints only the reference; by digest works too.
    let out = d.berth(&["pull", "-q", &format!("{host}/e2e/bb@{digest}")]);
    out.ok();
    assert_eq!(out.stdout_str().trim(), format!("{host}/e2e/bb@{digest}"));

    // Search over the registry's catalog, and distribution inspect.
    let out = d.berth(&["search", &format!("{host}/e2e")]);
    out.ok();
    assert!(
        out.stdout_str().contains(&format!("{host}/e2e/bb")),
        "{}",
        out.stdout_str()
    );
    let out = d.docker(&["search", "--format", "{{.Name}}", &format!("{host}/bb")]);
    out.ok();
    assert_eq!(out.stdout_str().trim(), format!("{host}/e2e/bb"));
    let r = d.api("GET", &format!("/distribution/{name}/json"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Descriptor"]["digest"], digest.as_str());
    assert_eq!(r.json()["Platforms"][0]["architecture"], "amd64");

    // A real Docker pulls what berth pushed (same digest), and berth pulls what Docker pushed.
    if let Some(rd) = RefDocker::start() {
        let out = rd.docker(&["pull", &name]);
        out.ok();
        assert!(
            out.stdout_str().contains(&format!("Digest: {digest}")),
            "{}",
            out.stdout_str()
        );
        let other = format!("{host}/e2e/from-docker:v2");
        rd.docker(&["tag", &name, &other]).ok();
        rd.docker(&["rmi", &name]).ok();
        let out = rd.docker(&["push", &other]);
        out.ok();
        let docker_digest = pushed_digest(&out.stdout_str());
        assert!(
            out.stdout_str().contains("Mounted from e2e/bb")
                || out.stdout_str().contains("Layer already exists"),
            "{}",
            out.stdout_str()
        );
        let out = d.berth(&["pull", &other]);
        out.ok();
        assert!(
            out.stdout_str()
                .contains(&format!("Digest: {docker_digest}")),
            "{}",
            out.stdout_str()
        );
        assert!(
            repo_digests(&d, &other).contains(&format!("{host}/e2e/from-docker@{docker_digest}"))
        );
    }

    // skopeo pushes, berth pulls (a single-layer OCI image copied from the registry itself).
    let copy = format!("{host}/e2e/copied:oci");
    let out = skopeo_output(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--format",
        "oci",
        &format!("docker://{name}"),
        &format!("docker://{copy}"),
    ]);
    assert!(out.status.success(), "{}", out.stderr_str());
    let sd = skopeo_digest(&copy);
    let out = d.berth(&["pull", &copy]);
    out.ok();
    assert!(
        out.stdout_str().contains(&format!("Digest: {sd}")),
        "{}",
        out.stdout_str()
    );
}

#[test]
fn htpasswd_login_then_pull_and_push() {
    if !have_registry() || !have("docker") {
        return;
    }
    let reg = Registry::start_with(Some(("alice", "s3cret")));
    let d = Daemon::start();
    let host = reg.host();
    let cfg = d.dir.join("berth-config");
    load_image(&d, "auth:latest", 0, 2);
    let name = format!("{host}/private/auth:latest");
    d.berth(&["tag", "auth:latest", &name]).ok();

    // Without credentials the push is refused.
    let out = berth_cfg(&d, &cfg, &["push", &name], None);
    assert_ne!(out.code(), 0, "{}", out.stdout_str());

    // Wrong password: POST /auth answers 401 with the registry's reason.
    let out = berth_cfg(
        &d,
        &cfg,
        &["login", "-u", "alice", "--password-stdin", &host],
        Some(b"wrong\n"),
    );
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr_str().contains("Error response from daemon"),
        "{}",
        out.stderr_str()
    );

    let out = berth_cfg(
        &d,
        &cfg,
        &["login", "-u", "alice", "--password-stdin", &host],
        Some(b"s3cret\n"),
    );
    out.ok();
    assert_eq!(out.stdout_str().trim(), "Login Succeeded");
    let saved = std::fs::read_to_string(cfg.join("config.json")).expect("config.json");
    assert!(saved.contains(&host), "{saved}");

    let out = berth_cfg(&d, &cfg, &["push", &name], None);
    out.ok();
    let digest = pushed_digest(&out.stdout_str());
    d.berth(&["rmi", &name]).ok();
    let out = berth_cfg(&d, &cfg, &["pull", &name], None);
    out.ok();
    assert!(
        out.stdout_str().contains(&format!("Digest: {digest}")),
        "{}",
        out.stdout_str()
    );

    // The docker CLI logs in through berthd too and pulls with what it stored.
    let out = d.docker_stdin(
        &["login", "-u", "alice", "--password-stdin", &host],
        Some(b"s3cret"),
    );
    out.ok();
    assert!(
        out.stdout_str().contains("Login Succeeded"),
        "{}",
        out.stdout_str()
    );
    d.berth(&["rmi", &name]).ok();
    d.docker(&["pull", &name]).ok();

    // logout forgets; pulls are then refused again.
    let out = berth_cfg(&d, &cfg, &["logout", &host], None);
    out.ok();
    assert_eq!(
        out.stdout_str().trim(),
        format!("Removing login credentials for {host}")
    );
    d.berth(&["rmi", &name]).ok();
    let out = berth_cfg(&d, &cfg, &["pull", &name], None);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr_str().contains("no basic auth credentials")
            || out.stderr_str().contains("unauthorized")
            || out.stderr_str().contains("denied"),
        "{}",
        out.stderr_str()
    );
}

#[test]
fn corrupted_blob_fails_with_digest_error_and_stores_nothing() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let d = Daemon::start();
    let host = reg.host();
    load_image(&d, "bad:latest", 2_000_000, 3);
    let name = format!("{host}/e2e/bad:latest");
    d.berth(&["tag", "bad:latest", &name]).ok();
    d.berth(&["push", &name]).ok();
    d.berth(&["rmi", &name, "bad:latest"]).ok();

    // Flip bytes in the middle of the largest blob (same size: only the digest can tell).
    let (path, len) = reg.blobs().into_iter().next().expect("a blob");
    let mut data = std::fs::read(&path).expect("blob");
    let mid = (len / 2) as usize;
    for b in &mut data[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &data).expect("corrupt");

    let before = d.api("GET", "/images/json?all=1", None).json();
    let r = d.api(
        "POST",
        &format!("/images/create?fromImage={host}/e2e/bad&tag=latest"),
        None,
    );
    let text = r.text();
    assert!(
        text.contains("errorDetail") && text.contains("digest"),
        "{text}"
    );
    assert_eq!(d.api("GET", "/images/json?all=1", None).json(), before);
    let r = d.api("GET", &format!("/images/{name}/json"), None);
    assert_eq!(r.status, 404);
}

#[test]
fn registry_killed_mid_pull_resumes_and_completes() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let d = Daemon::start();
    let host = reg.host();
    let id = load_image(&d, "big:latest", 48_000_000, 4);
    let name = format!("{host}/e2e/big:latest");
    d.berth(&["tag", "big:latest", &name]).ok();
    d.berth(&["push", &name]).ok();
    d.berth(&["rmi", &name, "big:latest"]).ok();

    let reg = Arc::new(Mutex::new(reg));
    let pull = |on_progress: &mut dyn FnMut(&serde_json::Value)| -> String {
        let mut s = UnixStream::connect(&d.sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        // HTTP/1.0: the body is the rest of the connection, read line by line as it comes.
        write!(
            s,
            "POST /images/create?fromImage={host}/e2e/big&tag=latest HTTP/1.0\r\nHost: berth\r\n\r\n"
        )
        .expect("request");
        let mut all = String::new();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                on_progress(&v);
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    };
    let mut killed = false;
    let killer = Arc::clone(&reg);
    let first = pull(&mut |v| {
        if !killed
            && v["status"] == "Downloading"
            && v["progressDetail"]["current"].as_u64().unwrap_or(0) > 2_000_000
        {
            killed = true;
            killer.lock().expect("lock").kill();
            let k = Arc::clone(&killer);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(700));
                k.lock().expect("lock").restart();
            });
        }
    });
    assert!(killed, "the pull should have been interrupted:\n{first}");
    std::thread::sleep(Duration::from_millis(1500));
    if first.contains("errorDetail") {
        // Gave up before the registry came back: nothing stored, and a rerun completes.
        assert_eq!(
            d.api("GET", &format!("/images/{name}/json"), None).status,
            404
        );
        let second = pull(&mut |_| {});
        assert!(second.contains("Downloaded newer image"), "{second}");
    } else {
        assert!(first.contains("Downloaded newer image"), "{first}");
    }
    let r = d.api("GET", &format!("/images/{name}/json"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Id"], id.as_str());
}

#[test]
fn token_auth_anonymous_pull_and_authenticated_push() {
    if !have_registry() || !have("openssl") || !have("docker") {
        return;
    }
    let ts = berth_e2e::registry::TokenServer::start("bob", "pw");
    let reg = Registry::start_token(&ts.realm(), &ts.service, &ts.issuer, &ts.cert());
    let d = Daemon::start();
    let host = reg.host();
    let cfg = d.dir.join("berth-config");
    load_image(&d, "tok:latest", 0, 5);
    let name = format!("{host}/team/tok:1");
    d.berth(&["tag", "tok:latest", &name]).ok();

    // Anonymous tokens carry pull only: the push is denied.
    let out = berth_cfg(&d, &cfg, &["push", &name], None);
    assert_ne!(out.code(), 0, "{}", out.stdout_str());

    let out = berth_cfg(
        &d,
        &cfg,
        &["login", "-u", "bob", "--password-stdin", &host],
        Some(b"nope\n"),
    );
    assert_eq!(out.code(), 1, "{}", out.stdout_str());
    let out = berth_cfg(&d, &cfg, &["login", "-u", "bob", "-p", "pw", &host], None);
    out.ok();
    assert!(
        out.stderr_str()
            .contains("WARNING! Using --password via the CLI is insecure")
    );
    let out = berth_cfg(&d, &cfg, &["push", &name], None);
    out.ok();
    let digest = pushed_digest(&out.stdout_str());

    // Anonymous pull (docker CLI, no login) gets a pull token.
    d.berth(&["rmi", &name]).ok();
    let out = d.docker(&["pull", &name]);
    out.ok();
    assert!(
        out.stdout_str().contains(&format!("Digest: {digest}")),
        "{}",
        out.stdout_str()
    );
}
