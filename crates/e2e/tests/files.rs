//! Container filesystems end to end: `cp` both ways (docker CLI and berth), the archive API,
//! `diff`, `commit`, `export | import`, and the symlink-swap race (CVE-2018-15664 class)
//! against a throwaway berthd on the real kernel. Needs root, busybox-static and the docker CLI.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_e2e::{Fixture, OutputExt, ScratchDir, archive, can_run_containers as can_run};

fn set_mtime(p: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

/// A host tree: dir/{file (0640, 1234:5678, mtime 1000000000), link -> file, sub/deep}.
fn host_tree(base: &Path) -> std::path::PathBuf {
    let dir = base.join("dir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("file"), b"hello file\n").unwrap();
    std::fs::write(dir.join("sub/deep"), b"deep\n").unwrap();
    std::os::unix::fs::symlink("file", dir.join("link")).unwrap();
    std::fs::set_permissions(dir.join("file"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::lchown(dir.join("file"), Some(1234), Some(5678)).unwrap();
    set_mtime(&dir.join("file"), 1_000_000_000);
    set_mtime(&dir.join("sub"), 1_100_000_000);
    dir
}

#[test]
fn cp_round_trip_with_docker_cli_and_berth() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let work = ScratchDir::new("cp");
    let dir = host_tree(&work);
    f.out(&["run", "-d", "--name", "c1", "busybox", "sleep", "300"]);

    // into the container: a directory into an existing directory
    f.docker(&["cp", dir.to_str().unwrap(), "c1:/tmp/"]).ok();
    let st = f.out(&["exec", "c1", "stat", "-c", "%a %u %g %Y", "/tmp/dir/file"]);
    assert_eq!(st.trim(), "640 1234 5678 1000000000");
    assert_eq!(
        f.out(&["exec", "c1", "readlink", "/tmp/dir/link"]).trim(),
        "file"
    );
    assert_eq!(f.out(&["exec", "c1", "cat", "/tmp/dir/sub/deep"]), "deep\n");
    // a file to a new name
    f.docker(&["cp", dir.join("file").to_str().unwrap(), "c1:/tmp/renamed"])
        .ok();
    assert_eq!(
        f.out(&["exec", "c1", "cat", "/tmp/renamed"]),
        "hello file\n"
    );
    // berth does the same; -a without a container USER keeps the tar's owners, as dockerd
    let o = f.berth(&["cp", "-a", dir.to_str().unwrap(), "c1:/tmp/viaberth"]);
    o.ok();
    let st = f.out(&["exec", "c1", "stat", "-c", "%a %u", "/tmp/viaberth/file"]);
    assert_eq!(st.trim(), "640 1234");

    // out again, both clients: mode, mtime, symlinks survive
    for (who, cli) in [("docker", true), ("berth", false)] {
        let dest = work.join(format!("back-{who}"));
        let args = ["cp", "c1:/tmp/dir", dest.to_str().unwrap()];
        if cli {
            f.docker(&args).ok();
        } else {
            f.berth(&args).ok();
        }
        let md = std::fs::metadata(dest.join("file")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o640, "{who}");
        assert_eq!(md.mtime(), 1_000_000_000, "{who}");
        assert_eq!(
            std::fs::read_link(dest.join("link")).unwrap(),
            Path::new("file"),
            "{who}"
        );
        assert_eq!(
            std::fs::metadata(dest.join("sub")).unwrap().mtime(),
            1_100_000_000,
            "{who}"
        );
        // trailing /. copies the contents
        let dot = work.join(format!("dot-{who}"));
        let args = ["cp", "c1:/tmp/dir/.", dot.to_str().unwrap()];
        if cli {
            f.docker(&args).ok();
        } else {
            f.berth(&args).ok();
        }
        assert_eq!(std::fs::read(dot.join("sub/deep")).unwrap(), b"deep\n");
    }

    // `-` streams a tar on stdout, named after the path's last element
    let o = f.docker(&["cp", "c1:/tmp/renamed", "-"]);
    o.ok();
    let mut a = tar::Archive::new(&o.stdout[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, vec!["renamed"]);
    // and a tar on stdin goes into a directory
    let o = f.d.docker_stdin(&["cp", "-", "c1:/tmp"], Some(&o.stdout));
    o.ok();

    // a missing path: dockerd's message
    let o = f.docker(&["cp", "c1:/nope", work.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        o.stderr_str()
            .contains("Could not find the file /nope in container c1"),
        "{}",
        o.stderr_str()
    );
    let o = f.berth(&["cp", "c1:/nope", work.to_str().unwrap()]);
    assert!(
        o.stderr_str()
            .contains("Could not find the file /nope in container c1"),
        "{}",
        o.stderr_str()
    );

    // the stat header of the archive API
    let r =
        f.d.api("HEAD", "/containers/c1/archive?path=/tmp/dir/link", None);
    assert_eq!(r.status, 200);
    let stat = r.header("X-Docker-Container-Path-Stat").unwrap().to_owned();
    let o = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(stat.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "link");
    assert_eq!(v["linkTarget"], "/tmp/dir/file");
    assert_eq!(v["mode"].as_u64().unwrap(), (1 << 27) | 0o777);

    // a path under a volume goes to the volume, as the container sees it
    f.out(&[
        "run",
        "-d",
        "--name",
        "cv",
        "-v",
        "cpvol:/data",
        "busybox",
        "sleep",
        "300",
    ]);
    f.docker(&[
        "cp",
        dir.join("file").to_str().unwrap(),
        "cv:/data/fromhost",
    ])
    .ok();
    assert_eq!(
        f.out(&["exec", "cv", "cat", "/data/fromhost"]),
        "hello file\n"
    );
    f.out(&["exec", "cv", "sh", "-c", "echo vol > /data/inside"]);
    let o = f.docker(&["cp", "cv:/data/inside", "-"]);
    o.ok();
    assert!(o.stdout.windows(4).any(|w| w == b"vol\n"));

    // a stopped container still copies both ways
    f.out(&["stop", "-t", "0", "c1"]);
    let back = work.join("stopped");
    f.docker(&["cp", "c1:/tmp/renamed", back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(&back).unwrap(), b"hello file\n");
    f.docker(&["cp", back.to_str().unwrap(), "c1:/tmp/again"])
        .ok();
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn diff_commit_export_import() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    f.out(&[
        "run",
        "--name",
        "c2",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo made > /data/sub/f && rm /etc/group && echo x >> /etc/passwd",
    ]);
    // dockerd's walk order (lexical), parents of added/deleted entries marked changed
    let diff = f.out(&["diff", "c2"]);
    assert_eq!(
        diff,
        "A /data\nA /data/sub\nA /data/sub/f\nC /etc\nD /etc/group\nC /etc/passwd\n"
    );
    assert_eq!(f.berth(&["diff", "c2"]).ok().stdout_str(), diff);

    // commit with a change: the image runs with the change and the files
    let id = f.out(&[
        "commit",
        "-m",
        "msg",
        "-a",
        "me",
        "-c",
        "ENV COMMITTED=yes",
        "c2",
        "committed:v1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    let o = f.out(&[
        "run",
        "--rm",
        "committed:v1",
        "sh",
        "-c",
        "cat /data/sub/f; echo $COMMITTED; test -e /etc/group || echo gone",
    ]);
    assert_eq!(o, "made\nyes\ngone\n");
    let insp = f.out(&[
        "image",
        "inspect",
        "-f",
        "{{.Author}}|{{.Comment}}",
        "committed:v1",
    ]);
    assert_eq!(insp.trim(), "me|msg");
    // berth commit, no pause flag semantics change for a stopped container
    let o = f.berth(&["commit", "--pause=false", "c2", "committed:v2"]);
    o.ok();

    // export | import gives a runnable image with the changes
    let o = f.docker(&["export", "c2"]);
    o.ok();
    assert!(o.stdout.len() > 100_000);
    f.d.docker_stdin(&["import", "-", "exported:v1"], Some(&o.stdout))
        .ok();
    let out = f.out(&["run", "--rm", "exported:v1", "cat", "/data/sub/f"]);
    assert_eq!(out, "made\n");
    let dir = ScratchDir::new("export");
    let file = dir.join("c2.tar");
    f.berth(&["export", "-o", file.to_str().unwrap(), "c2"])
        .ok();
    assert!(std::fs::metadata(&file).unwrap().len() > 100_000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A container swaps a directory for a symlink to a host directory (and to `/`) as fast as it
/// can while the host copies into and out of that path: berth must never write into the
/// host directory nor read the host file.
#[test]
fn symlink_swap_race_never_escapes() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let canary = ScratchDir::new("canary");
    let secret = b"HOST-SECRET-do-not-read\n";
    std::fs::write(canary.join("secret"), secret).unwrap();
    let target = canary.display().to_string();
    let script = format!(
        "mkdir -p /w; while :; do rm -rf /w/d; mkdir /w/d; echo inside > /w/d/secret; \
         rm -rf /w/d; ln -s {target} /w/d; rm -f /w/d; ln -s / /w/d; rm -f /w/d; done"
    );
    f.out(&[
        "run", "-d", "--name", "race", "busybox", "sh", "-c", &script,
    ]);
    let payload = archive::layer(&[archive::Entry::File("planted", b"pwned\n")]);
    let deadline = Instant::now() + Duration::from_secs(4);
    let (mut gets, mut puts) = (0, 0);
    while Instant::now() < deadline {
        let r =
            f.d.api("PUT", "/containers/race/archive?path=/w/d", Some(&payload));
        // refusals (404, 400) are fine while the path flips; only escapes are not
        let _ = r.status;
        puts += 1;
        for p in ["/w/d/secret", "/w/d/", "/w/d"] {
            let r =
                f.d.api("GET", &format!("/containers/race/archive?path={p}"), None);
            gets += 1;
            assert!(
                !r.body.windows(secret.len()).any(|w| w == secret),
                "read the host's secret through {p}"
            );
        }
    }
    assert!(
        gets > 10 && puts > 3,
        "too few copies: {gets} gets, {puts} puts"
    );
    let after: Vec<String> = std::fs::read_dir(&canary)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        after,
        vec!["secret".to_string()],
        "host dir written: {after:?}"
    );
    assert_eq!(std::fs::read(canary.join("secret")).unwrap(), secret);
    // the host root was not written either
    assert!(!Path::new("/planted").exists());
    let _ = std::fs::remove_dir_all(&canary);
}
