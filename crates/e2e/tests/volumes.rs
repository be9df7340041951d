//! Volumes and mounts end to end: the real docker CLI (and berth) against a throwaway berthd:
//! named, anonymous, `-o` (tmpfs) volumes, binds, tmpfs, --volumes-from, --read-only, copy-up,
//! `rm -v`, in-use refusal, prune, `system df -v`, and data surviving a kill -9 of berthd.
//! Needs root, busybox-static and the docker CLI; skipped otherwise.

use std::path::Path;

use berth_e2e::{OutputExt, archive, can_run_containers as can_run, mount_points, scratch};

/// A daemon with busybox (and busybox with `VOLUME /etc`) imported, and a host directory for
/// binds removed on drop.
struct Fixture {
    f: berth_e2e::Fixture,
    host: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let f = berth_e2e::Fixture::new();
        f.docker_stdin(
            &["import", "-c", "VOLUME /etc", "-", "withvol:latest"],
            Some(&archive::busybox_rootfs()),
        )
        .ok();
        let host = scratch("volhost");
        Fixture { f, host }
    }
    fn mounts_under(&self, p: &Path) -> Vec<String> {
        let p = p.to_string_lossy();
        mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&*p))
            .collect()
    }
}

impl std::ops::Deref for Fixture {
    type Target = berth_e2e::Fixture;
    fn deref(&self) -> &berth_e2e::Fixture {
        &self.f
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut berth_e2e::Fixture {
        &mut self.f
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.f.remove_all_containers();
        berth_e2e::cleanup_dir(&self.host);
    }
}

#[test]
fn volumes_with_the_docker_cli() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let root = f.d.data_root.clone();

    // create / ls / inspect
    assert_eq!(f.out(&["volume", "create", "data"]), "data\n");
    assert_eq!(
        f.out(&[
            "volume",
            "create",
            "--label",
            "a=b",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "-o",
            "o=size=2m",
            "tv"
        ]),
        "tv\n"
    );
    assert_eq!(
        f.out(&["volume", "ls"]),
        "DRIVER    VOLUME NAME\nlocal     data\nlocal     tv\n"
    );
    assert_eq!(f.out(&["volume", "ls", "-q", "-f", "label=a=b"]), "tv\n");
    let v: serde_json::Value =
        serde_json::from_str(&f.out(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["Name"], "data");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Scope"], "local");
    let mp = root.join("volumes/data/_data");
    assert_eq!(v[0]["Mountpoint"], mp.display().to_string());
    assert_eq!(
        f.out(&["volume", "inspect", "-f", "{{.Options.type}}", "tv"]),
        "tmpfs\n"
    );

    // data written by one container is seen by the next
    f.out(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo hello > /data/f",
    ]);
    f.out(&["rm", "writer"]);
    assert_eq!(std::fs::read_to_string(mp.join("f")).unwrap(), "hello\n");
    assert_eq!(
        f.out(&["run", "--rm", "-v", "data:/d:ro", "busybox", "cat", "/d/f"]),
        "hello\n"
    );
    let o = f.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/d:ro",
        "busybox",
        "touch",
        "/d/x",
    ]);
    assert_ne!(o.code(), 0, "read-only volume was writable");

    // a tmpfs volume is mounted while used, and only then
    let t = f.out(&[
        "run",
        "--rm",
        "-v",
        "tv:/t",
        "busybox",
        "grep",
        " /t ",
        "/proc/mounts",
    ]);
    assert!(t.starts_with("tmpfs /t tmpfs"), "{t}");
    assert!(f.mounts_under(&root.join("volumes")).is_empty());

    // binds, --mount, --tmpfs
    let host = f.host.display().to_string();
    let m = f.out(&[
        "run",
        "--rm",
        "-v",
        &format!("{host}:/h"),
        "--mount",
        &format!("type=bind,src={host},dst=/h2,readonly"),
        "--mount",
        "type=tmpfs,dst=/t2,tmpfs-size=1m",
        "--tmpfs",
        "/t3:size=2m",
        "busybox",
        "sh",
        "-c",
        "echo b > /h/g && cat /h2/g && grep -E ' /(h2|t2|t3) ' /proc/mounts | cut -d' ' -f2,4",
    ]);
    assert_eq!(std::fs::read_to_string(f.host.join("g")).unwrap(), "b\n");
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(lines[0], "b");
    assert!(m.contains("/h2 ro"), "{m}");
    assert!(
        m.contains("/t2 rw,nosuid,nodev,noexec,relatime,size=1024k"),
        "{m}"
    );
    assert!(
        m.contains("/t3 rw,nosuid,nodev,noexec,relatime,size=2048k"),
        "{m}"
    );
    let o = f.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/nonexistent-berth,dst=/x",
        "busybox",
        "true",
    ]);
    assert_eq!(o.code(), 125);
    assert!(
        o.stderr_str()
            .contains("bind source path does not exist: /nonexistent-berth"),
        "{}",
        o.stderr_str()
    );

    // copy-up into a new named volume, not with nocopy
    assert_eq!(
        f.out(&["run", "--rm", "-v", "cu:/bin", "busybox", "ls", "/bin/sh"]),
        "/bin/sh\n"
    );
    assert!(root.join("volumes/cu/_data/busybox").exists());
    let o = f.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=nc,dst=/bin,volume-nocopy",
        "busybox",
        "true",
    ]);
    assert_ne!(o.code(), 0);
    assert!(
        std::fs::read_dir(root.join("volumes/nc/_data"))
            .unwrap()
            .next()
            .is_none()
    );

    // image VOLUME: an anonymous volume with the image's content, removed by rm -v
    f.out(&["run", "--name", "anon", "withvol", "ls", "/etc"]);
    let mounts: serde_json::Value =
        serde_json::from_str(&f.out(&["inspect", "-f", "{{json .Mounts}}", "anon"])).unwrap();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/etc");
    assert_eq!(mounts[0]["RW"], true);
    let anon = mounts[0]["Name"].as_str().unwrap().to_owned();
    assert_eq!(anon.len(), 64);
    assert!(f.out(&["volume", "ls", "-q"]).contains(&anon));
    f.out(&["rm", "-v", "anon"]);
    assert!(!f.out(&["volume", "ls", "-q"]).contains(&anon));

    // in use: refused with dockerd's message; --volumes-from shares it
    let id = f.out(&[
        "create",
        "--name",
        "holder",
        "-v",
        "data:/data",
        "busybox",
        "true",
    ]);
    let o = f.docker(&["volume", "rm", "data"]);
    assert_eq!(o.code(), 1);
    assert_eq!(
        o.stderr_str(),
        format!(
            "Error response from daemon: remove data: volume is in use - [{}]\n",
            id.trim()
        )
    );
    assert_eq!(
        f.out(&[
            "run",
            "--rm",
            "--volumes-from",
            "holder:ro",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "hello\n"
    );
    assert_eq!(
        f.out(&[
            "ps",
            "-a",
            "--filter",
            "volume=data",
            "--format",
            "{{.Names}}"
        ]),
        "holder\n"
    );

    // --read-only root filesystem
    let o = f.docker(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(o.code(), 0);
    f.out(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "busybox",
        "touch",
        "/tmp/x",
    ]);

    // system df -v lists volumes with their sizes and links
    let df = f.out(&["system", "df", "-v"]);
    let line = df
        .lines()
        .find(|l| l.starts_with("data "))
        .unwrap_or_else(|| panic!("{df}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["data", "1", "6B"]
    );

    // prune: anonymous only by default, unused named ones with -a
    f.out(&["volume", "create", "unused"]);
    let p = f.out(&["volume", "prune", "-f"]);
    assert!(!p.contains("unused"), "{p}");
    let p = f.out(&["volume", "prune", "-a", "-f"]);
    assert!(p.contains("unused") && !p.contains("data\n"), "{p}");

    // kill -9 of berthd: the volume, its data and its users are all still there
    let mut d = f;
    d.d.kill9();
    d.d.restart();
    assert_eq!(
        d.out(&[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "hello\n"
    );
    assert_eq!(d.docker(&["volume", "rm", "data"]).code(), 1);
    d.out(&["rm", "holder"]);
    assert_eq!(d.out(&["volume", "rm", "data"]), "data\n");
    assert!(!root.join("volumes/data").exists());
    assert!(d.mounts_under(&root.join("volumes")).is_empty());
}

#[test]
fn volumes_with_berth() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let b = |args: &[&str]| f.d.berth(args).ok().stdout_str();
    assert_eq!(b(&["volume", "create", "--name", "bv"]), "bv\n");
    assert_eq!(b(&["volume", "ls"]), f.out(&["volume", "ls"]));
    assert_eq!(
        b(&["volume", "inspect", "bv"]),
        f.out(&["volume", "inspect", "bv"])
    );
    assert_eq!(
        b(&[
            "run",
            "--rm",
            "-v",
            "bv:/v",
            "--mount",
            "type=tmpfs,dst=/t",
            "busybox",
            "sh",
            "-c",
            "echo x > /v/f; grep -c ' /t ' /proc/mounts"
        ]),
        "1\n"
    );
    let o = f.d.berth(&["volume", "rm", "nosuch"]);
    assert_eq!(o.code(), 1);
    assert_eq!(
        o.stderr_str(),
        "Error response from daemon: get nosuch: no such volume\n"
    );
    assert_eq!(b(&["volume", "rm", "bv"]), "bv\n");
}
