//! Images end to end: the real docker CLI and raw HTTP against a throwaway berthd, and a reference
//! Docker for archives that a real `docker save` wrote.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use berth_e2e::archive::{self, Entry};
use berth_e2e::{Daemon, OutputExt, RefDocker, have};

fn image_ids(d: &Daemon) -> BTreeSet<String> {
    let r = d.api("GET", "/images/json?all=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["Id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Load a busybox image built here and return its ID.
fn load_busybox(d: &Daemon, tag: &str) -> String {
    let layer = archive::busybox_rootfs();
    let config = archive::config(
        std::slice::from_ref(&layer),
        &["sh"],
        "2024-01-01T00:00:00Z",
    );
    let tar = archive::docker_archive(&[layer], &config, &[tag]);
    let r = d.api("POST", "/images/load?quiet=1", Some(&tar));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("errorDetail"), "{}", r.text());
    format!("sha256:{}", archive::sha256_hex(&config))
}

#[test]
fn hello_world_is_embedded() {
    let d = Daemon::start();
    let out = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    out.ok();
    assert!(
        out.stdout_str().contains("hello-world:latest"),
        "{}",
        out.stdout_str()
    );
}

#[test]
fn docker_cli_version_info_ping() {
    if !have("docker") {
        eprintln!("SKIP: docker CLI not installed");
        return;
    }
    let d = Daemon::start();
    let v = d.docker(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(v.ok().stdout_str().trim(), "1.50 1.24 linux");
    let info = d.docker(&[
        "info",
        "--format",
        "{{.Driver}} {{.DockerRootDir}} {{.OSType}}",
    ]);
    assert_eq!(
        info.ok().stdout_str().trim(),
        format!("overlay2 {} linux", d.data_root.display())
    );
    // Plain `docker info` must print cleanly (no template errors, no server errors section).
    let info = d.docker(&["info"]);
    info.ok();
    assert!(
        !info.stdout_str().contains("ERROR"),
        "{}",
        info.stdout_str()
    );

    let ping = d.api("HEAD", "/_ping", None);
    assert_eq!(ping.status, 200);
    assert_eq!(ping.header("API-Version"), Some("1.50"));
    let old = d.api("GET", "/v1.23/version", None);
    assert_eq!(old.status, 400);
    assert!(
        old.error_message().unwrap_or_default().contains("too old"),
        "{}",
        old.text()
    );
    let new = d.api("GET", "/v1.24/version", None);
    assert_eq!(new.status, 200);
    let missing = d.api("GET", "/v1.50/nonsense", None);
    assert_eq!(missing.status, 404);
}

#[test]
fn docker_cli_image_commands() {
    if !have("docker") {
        eprintln!("SKIP: docker CLI not installed");
        return;
    }
    let d = Daemon::start();
    let id = load_busybox(&d, "busybox:latest");
    let short = &id[7..19];

    let ls = d.docker(&["images"]);
    let out = ls.ok().stdout_str();
    assert!(out.starts_with("REPOSITORY"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("busybox ") && l.contains(short)),
        "{out}"
    );

    d.docker(&["tag", "busybox", "example.com:5000/team/bb:v1"])
        .ok();
    let q = d.docker(&["images", "-q", "--no-trunc", "example.com:5000/team/bb"]);
    assert_eq!(q.ok().stdout_str().trim(), id);

    let insp = d.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Os}} {{index .RepoTags 0}}",
        "busybox",
    ]);
    assert_eq!(
        insp.ok().stdout_str().trim(),
        format!("{id} linux busybox:latest")
    );

    let hist = d.docker(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}",
        "busybox",
    ]);
    let hist = hist.ok().stdout_str();
    assert!(
        hist.lines().next().unwrap_or_default().starts_with(&id),
        "{hist}"
    );

    // Removing one of two tags only untags.
    let rmi = d.docker(&["rmi", "example.com:5000/team/bb:v1"]);
    assert_eq!(
        rmi.ok().stdout_str().trim(),
        "Untagged: example.com:5000/team/bb:v1"
    );

    // save | load through the docker CLI keeps the ID.
    let tar = d.docker(&["save", "busybox"]);
    let tar = tar.ok().stdout.clone();
    d.docker(&["rmi", "busybox"]).ok();
    assert!(!image_ids(&d).contains(&id));
    let load = d.docker_stdin(&["load"], Some(&tar));
    assert_eq!(
        load.ok().stdout_str().trim(),
        "Loaded image: busybox:latest"
    );
    assert!(image_ids(&d).contains(&id));

    let df = d.docker(&["system", "df"]);
    assert!(
        df.ok().stdout_str().starts_with("TYPE"),
        "{}",
        df.stdout_str()
    );

    // A bad reference is a 400 with Docker's message, and docker exits non-zero.
    let bad = d.docker(&["tag", "busybox", "Bad/Name"]);
    assert_ne!(bad.code(), 0);
    assert!(
        bad.stderr_str().contains("invalid reference format"),
        "{}",
        bad.stderr_str()
    );
    let none = d.docker(&["image", "inspect", "nosuchimage"]);
    assert_ne!(none.code(), 0);
    assert!(
        none.stderr_str().contains("No such image"),
        "{}",
        none.stderr_str()
    );
}

#[test]
fn docker_events_report_image_actions() {
    if !have("docker") {
        eprintln!("SKIP: docker CLI not installed");
        return;
    }
    let d = Daemon::start();
    let since = d.api("GET", "/info", None).json()["SystemTime"]
        .as_str()
        .map(str::to_owned);
    load_busybox(&d, "busybox:latest");
    d.docker(&["tag", "busybox", "bb:two"]).ok();
    d.docker(&["rmi", "bb:two"]).ok();
    let since = since.unwrap_or_else(|| "1".to_owned());
    let ev = d.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &format!("{}", unix_now() + 1),
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let ev = ev.ok().stdout_str();
    assert!(ev.contains("image load busybox:latest"), "{ev}");
    assert!(ev.contains("image tag bb:two"), "{ev}");
    assert!(ev.contains("image untag"), "{ev}");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a real Docker saved loads into berth with the same ID; what berth saves loads back into
/// the real Docker with the same ID; berth save -> berth load keeps the layer bytes.
#[test]
fn save_load_interop_with_real_docker() {
    let Some(refd) = RefDocker::start() else {
        return;
    };
    let rootfs = archive::busybox_rootfs();
    let imp = refd.docker_stdin(
        &["import", "-c", "CMD [\"sh\"]", "-", "interop:v1"],
        &rootfs,
    );
    let docker_id = imp.ok().stdout_str().trim().to_owned();
    let saved = refd.docker(&["save", "interop:v1"]);
    let saved = saved.ok().stdout.clone();

    let d = Daemon::start();
    let load = d.berth_stdin(&["load"], Some(&saved));
    assert!(
        load.ok().stdout_str().contains("Loaded image: interop:v1"),
        "{}",
        load.stdout_str()
    );
    let id = d.docker(&["image", "inspect", "--format", "{{.Id}}", "interop:v1"]);
    assert_eq!(id.ok().stdout_str().trim(), docker_id);
    // Sizes are measured as Docker measures them (symlinks count, hardlinks once).
    let size = |out: std::process::Output| out.ok().stdout_str().trim().to_owned();
    assert_eq!(
        size(d.docker(&["image", "inspect", "--format", "{{.Size}}", "interop:v1"])),
        size(refd.docker(&["image", "inspect", "--format", "{{.Size}}", "interop:v1"]))
    );

    let ours = d.berth(&["save", "interop:v1"]);
    let ours = ours.ok().stdout.clone();
    refd.docker(&["rmi", "interop:v1"]).ok();
    refd.docker_stdin(&["load"], &ours).ok();
    let back = refd.docker(&["image", "inspect", "--format", "{{.Id}}", "interop:v1"]);
    assert_eq!(back.ok().stdout_str().trim(), docker_id);

    // berth save -> berth load (another daemon) -> berth save: identical layer blobs.
    let d2 = Daemon::start();
    d2.berth_stdin(&["load"], Some(&ours)).ok();
    let again = d2.berth(&["save", "interop:v1"]);
    assert_eq!(layer_blobs(&ours), layer_blobs(&again.ok().stdout));
}

/// sha256 of every blob in a saved archive, by path.
fn layer_blobs(tar: &[u8]) -> BTreeSet<(String, String)> {
    use std::io::Read;
    let mut a = tar::Archive::new(tar);
    let mut out = BTreeSet::new();
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let p = e.path().expect("path").display().to_string();
        if p.starts_with("blobs/sha256/") && e.header().entry_type().is_file() {
            let mut b = Vec::new();
            e.read_to_end(&mut b).expect("read");
            out.insert((p, archive::sha256_hex(&b)));
        }
    }
    out
}

fn assert_refused(d: &mut Daemon, what: &str, tar: &[u8], expect: &str) {
    let before = image_ids(d);
    let r = d.api("POST", "/images/load?quiet=1", Some(tar));
    let msg = r.error_message().unwrap_or_default();
    // Either a 4xx up front, or (once streaming started) an errorDetail line: both must explain.
    assert!(
        (400..500).contains(&r.status) || (r.status == 200 && r.text().contains("errorDetail")),
        "{what}: status {} body {}",
        r.status,
        r.text()
    );
    assert!(
        msg.to_lowercase().contains(expect),
        "{what}: message {msg:?} should mention {expect:?}"
    );
    assert!(d.alive(), "{what}: daemon died\n{}", d.log());
    assert_eq!(image_ids(d), before, "{what}: store changed");
}

#[test]
fn hostile_archives_are_refused() {
    let mut d = Daemon::start();
    let outside = d.dir.join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let outside_s = outside.display().to_string();
    let cmd = ["sh"];
    let created = "2024-01-01T00:00:00Z";
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();

    let dotdot = archive::layer(&[Entry::File(
        "../../../../../../../../tmp/berth-escape",
        b"x",
    )]);
    let cfg = archive::config(std::slice::from_ref(&dotdot), &cmd, created);
    cases.push((
        "dot-dot path",
        archive::docker_archive(&[dotdot], &cfg, &["evil:1"]),
        "",
    ));

    let symlink = archive::layer(&[
        Entry::Symlink("evil", &outside_s),
        Entry::File("evil/pwned", b"x"),
    ]);
    let cfg = archive::config(std::slice::from_ref(&symlink), &cmd, created);
    cases.push((
        "write through absolute symlink",
        archive::docker_archive(&[symlink], &cfg, &["evil:2"]),
        "",
    ));

    let rel = archive::layer(&[
        Entry::Symlink("up", "../../../../../../../../../.."),
        Entry::File("up/tmp/berth-escape2", b"x"),
    ]);
    let cfg = archive::config(std::slice::from_ref(&rel), &cmd, created);
    cases.push((
        "write through relative symlink",
        archive::docker_archive(&[rel], &cfg, &["evil:3"]),
        "",
    ));

    let hard = archive::layer(&[Entry::Hardlink(
        "passwd",
        "../../../../../../../../etc/passwd",
    )]);
    let cfg = archive::config(std::slice::from_ref(&hard), &cmd, created);
    cases.push((
        "hardlink out of root",
        archive::docker_archive(&[hard], &cfg, &["evil:4"]),
        "",
    ));

    let good = archive::layer(&[Entry::Dir("etc/"), Entry::File("etc/hostname", b"x\n")]);
    let wrong_cfg = archive::config(
        &[archive::layer(&[Entry::File("other", b"y")])],
        &cmd,
        created,
    );
    cases.push((
        "diff id mismatch",
        archive::docker_archive(std::slice::from_ref(&good), &wrong_cfg, &["evil:5"]),
        "digest",
    ));

    // A config whose name (its digest) does not match its content.
    let cfg = archive::config(std::slice::from_ref(&good), &cmd, created);
    let mut tampered = archive::docker_archive(std::slice::from_ref(&good), &cfg, &["evil:6"]);
    let pos = find(&tampered, b"2024-01-01T00:00:00Z").expect("created in config");
    tampered[pos] = b'1';
    cases.push(("config digest mismatch", tampered, "digest"));

    let full = archive::docker_archive(std::slice::from_ref(&good), &cfg, &["evil:7"]);
    cases.push(("truncated tar", full[..full.len() / 2].to_vec(), ""));
    cases.push(("not a tar", b"this is not an archive at all".repeat(40), ""));

    for (what, tar, expect) in &cases {
        assert_refused(&mut d, what, tar, expect);
    }
    assert!(!Path::new("/tmp/berth-escape").exists(), "dot-dot escaped");
    assert!(
        !Path::new("/tmp/berth-escape2").exists(),
        "relative symlink escaped"
    );
    assert_eq!(
        std::fs::read_dir(&outside).map(|r| r.count()).unwrap_or(0),
        0,
        "absolute symlink escaped"
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// kill -9 in the middle of a large load: after restart the image is there whole or not at all,
/// and `image prune` leaves no layer directory that no image uses.
#[test]
fn crash_during_load_is_all_or_nothing() {
    let mut d = Daemon::start();
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let blob = archive::noise(48 << 20, i + 1);
            archive::layer(&[Entry::File(&format!("blob{i}"), &blob)])
        })
        .collect();
    let cfg = archive::config(&layers, &["sh"], "2024-01-01T00:00:00Z");
    let tar = archive::docker_archive(&layers, &cfg, &["big:1"]);
    let id = format!("sha256:{}", archive::sha256_hex(&cfg));

    // The body goes out in two parts with a pause between them, and the kill lands in the
    // pause: at 20% and 60% of the upload the load is certainly unfinished (timing a full load
    // and killing at a fraction of it flaked once the unpack got faster); at 100% it is anywhere
    // between unpacking the rest and committing, or done — all or nothing either way.
    for fraction in [0.2f64, 0.6, 1.0] {
        let cut = (tar.len() as f64 * fraction) as usize;
        let mut conn = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
        let head = format!(
            "POST /images/load?quiet=1 HTTP/1.1\r\nHost: berth\r\n\
             Content-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            tar.len()
        );
        conn.write_all(head.as_bytes()).expect("head");
        conn.write_all(&tar[..cut]).expect("body");
        std::thread::sleep(Duration::from_millis(300));
        d.kill9();
        drop(conn);
        d.restart();
        let ids = image_ids(&d);
        let loaded = ids.contains(&id);
        let tags = d.api("GET", "/images/json", None).text();
        assert_eq!(loaded, tags.contains("big:1"), "half an image: {tags}");
        assert!(
            fraction == 1.0 || !loaded,
            "loaded from {fraction} of the archive"
        );
        if loaded {
            d.docker(&["rmi", "big:1"]).ok();
        }
        d.api(
            "POST",
            "/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D",
            None,
        );
        let layer_dirs = std::fs::read_dir(d.data_root.join("overlay2"))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter(|e| e.file_name() != "l")
                    .count()
            })
            .unwrap_or(0);
        // Only hello-world's layer may remain.
        assert!(
            layer_dirs <= 1,
            "orphaned layers after a crash at {fraction} of the upload: {layer_dirs}"
        );
    }
}
