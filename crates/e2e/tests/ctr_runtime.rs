//! The runtime side of containers end to end: daemon shutdown and start (stop on shutdown,
//! live-restore, restart policies at boot), rootfs mounted only while running and sizes,
//! `--init`, `--device`, and external OCI runtimes (runc). Real docker CLI, real kernel.
//! Needs root, busybox-static and the docker CLI; skipped otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_e2e::{Fixture, OutputExt, can_run_containers as can_run, mounted};

fn merged(f: &Fixture, name: &str) -> String {
    f.out(&["inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", name])
        .trim()
        .to_owned()
}

/// A container that exits promptly on SIGTERM.
const LOOP: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; while true; do sleep 0.2; done",
];

fn run_d(f: &Fixture, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.push("busybox");
    args.extend_from_slice(LOOP);
    f.out(&args);
}

#[test]
fn shutdown_stops_containers_and_restart_policies_apply_at_start() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::with_args(&[]);
    run_d(&f, "always", &["--restart", "always"]);
    run_d(&f, "unless", &["--restart", "unless-stopped"]);
    run_d(
        &f,
        "unless-stopped-by-user",
        &["--restart", "unless-stopped"],
    );
    f.out(&["stop", "unless-stopped-by-user"]);
    run_d(&f, "plain", &[]);
    run_d(&f, "autorm", &["--rm"]);
    let merged = merged(&f, "plain");
    assert!(mounted(&merged), "a running container's rootfs is mounted");

    f.d.stop();
    // the shutdown stopped every container (no shim is left)
    assert!(!mounted(&merged), "rootfs still mounted after shutdown");
    f.d.restart();

    assert_eq!(f.wait_status("always", "running"), "running");
    assert_eq!(f.wait_status("unless", "running"), "running");
    assert_eq!(f.status("unless-stopped-by-user"), "exited");
    assert_eq!(f.status("plain"), "exited");
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.d.docker(&["inspect", "autorm"]).status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!f.d.docker(&["inspect", "autorm"]).status.success());
    assert!(!mounted(&merged));
    assert_eq!(f.out(&["exec", "always", "echo", "ok"]), "ok\n");
}

/// `stat -f` of a directory says tmpfs.
fn is_tmpfs(dir: &Path) -> bool {
    let o = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .expect("stat");
    String::from_utf8_lossy(&o.stdout).trim() == "tmpfs"
}

/// What a container's run leaves on the disk: its upper dir holds only what its process
/// wrote (the mount points are in the shared init layer, as in Docker's `<id>-init`, and so
/// in `export` but not in `diff`); the shim's files and the bundle are on the exec root's
/// tmpfs, which berthd mounted (this host's /tmp is a disk) and unmounts at a clean shutdown.
#[test]
fn runtime_state_is_on_a_tmpfs_and_the_upper_dir_holds_only_changes() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::with_args(&[]);
    assert!(is_tmpfs(&f.d.exec_root), "exec root not on a tmpfs");
    f.out(&[
        "run",
        "--name",
        "up",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let upper = f.out(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "up"]);
    let left: Vec<_> = std::fs::read_dir(upper.trim())
        .expect("upper dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "upper dir of a container that wrote nothing: {left:?}"
    );
    assert_eq!(f.out(&["diff", "up"]), "");
    // dockerd's init layer entries, in the exported filesystem
    let tar = f.docker(&["export", "up"]);
    tar.ok();
    let mut names = std::collections::BTreeSet::new();
    let mut ar = tar::Archive::new(&tar.stdout[..]);
    for e in ar.entries().expect("tar") {
        let e = e.expect("tar entry");
        names.insert(e.path().expect("path").display().to_string());
    }
    for want in [
        ".dockerenv",
        "dev/console",
        "dev/pts/",
        "dev/shm/",
        "etc/hostname",
        "etc/hosts",
        "etc/mtab",
        "etc/resolv.conf",
        "proc/",
        "sys/",
    ] {
        assert!(names.contains(want), "{want} not exported: {names:?}");
    }
    // a restart of a stopped container, and a write that shows in diff
    f.out(&["start", "-a", "up"]);
    f.out(&[
        "run",
        "--name",
        "wr",
        "busybox",
        "sh",
        "-c",
        "echo x > /etc/hosts2",
    ]);
    assert_eq!(f.out(&["diff", "wr"]), "C /etc\nA /etc/hosts2\n");
    f.d.stop();
    assert!(!mounted(&f.d.exec_root.display().to_string()));
}

#[test]
fn live_restore_keeps_containers_running() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::with_args(&["--live-restore"]);
    run_d(&f, "lr", &[]);
    let pid = f.out(&["inspect", "-f", "{{.State.Pid}}", "lr"]);
    f.d.restart();
    // the exec root's tmpfs (the shim's socket, the bundle) stayed for the running container
    assert!(is_tmpfs(&f.d.exec_root));
    assert_eq!(f.status("lr"), "running");
    assert_eq!(f.out(&["inspect", "-f", "{{.State.Pid}}", "lr"]), pid);
    assert_eq!(f.out(&["exec", "lr", "echo", "ok"]), "ok\n");
    f.out(&["stop", "lr"]);
    assert!(!mounted(&merged(&f, "lr")));
}

#[test]
fn rootfs_is_mounted_while_running_and_sizes_are_reported() {
    if !can_run() {
        return;
    }
    let f = Fixture::with_args(&[]);
    f.out(&[
        "run",
        "--name",
        "sz",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big",
    ]);
    assert!(!mounted(&merged(&f, "sz")), "stopped: not mounted");
    let v: serde_json::Value = serde_json::from_str(&f.out(&["inspect", "--size", "sz"])).unwrap();
    let rw = v[0]["SizeRw"].as_i64().unwrap();
    let root = v[0]["SizeRootFs"].as_i64().unwrap();
    assert!((300_000..400_000).contains(&rw), "SizeRw {rw}");
    assert!(root > rw + 500_000, "SizeRootFs {root} (busybox + rw)");
    let ps = f.out(&["ps", "-a", "-s", "--format", "{{.Size}}"]);
    assert!(ps.starts_with("300kB (virtual "), "{ps}");
    // a stopped container starts again with its files
    f.out(&["start", "sz"]);
    f.wait_status("sz", "exited");
    assert!(!mounted(&merged(&f, "sz")));
}

/// A created container's rootfs is mounted ahead of its start for a moment (the start then
/// has no mount to wait for) and unmounted when no start comes; a removal meanwhile leaves
/// nothing behind.
#[test]
fn premounted_rootfs_is_released_without_a_start() {
    if !can_run() {
        return;
    }
    let f = Fixture::with_args(&[]);
    f.out(&["create", "--name", "pm", "busybox", "true"]);
    let m = merged(&f, "pm");
    let gone = |p: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while mounted(p) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        !mounted(p)
    };
    assert!(gone(&m), "a created container stays mounted");
    f.out(&["create", "--name", "pm2", "busybox", "true"]);
    let m2 = merged(&f, "pm2");
    f.out(&["rm", "pm2"]);
    assert!(gone(&m2));
    assert!(!Path::new(&m2).exists(), "{m2} left behind");
    // create + start: unmounted once it exited
    f.out(&["create", "--name", "pm3", "busybox", "true"]);
    f.out(&["start", "-a", "pm3"]);
    f.wait_status("pm3", "exited");
    assert!(gone(&merged(&f, "pm3")));
}

#[test]
fn init_runs_docker_init_as_pid1_and_reaps() {
    if !can_run() {
        return;
    }
    let f = Fixture::with_args(&[]);
    let ps = f.out(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "sh -c 'sleep 0.1 &'; sleep 1; ps -o pid,stat,comm",
    ]);
    let pid1 = ps
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or("");
    assert!(pid1.contains("docker-init"), "{ps}");
    assert!(
        !ps.lines().any(|l| l.split_whitespace().nth(1) == Some("Z")),
        "zombie left: {ps}"
    );
    f.out(&["create", "--name", "withinit", "--init", "busybox", "true"]);
    assert_eq!(
        f.out(&["inspect", "-f", "{{.HostConfig.Init}}", "withinit"])
            .trim(),
        "true"
    );
}

#[test]
fn devices_are_added_with_their_cgroup_rule() {
    if !can_run() {
        return;
    }
    let f = Fixture::with_args(&[]);
    let out = f.out(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/mynull:rw",
        "--device-cgroup-rule",
        "c 1:5 r",
        "busybox",
        "sh",
        "-c",
        "stat -c '%t:%T' /dev/mynull && echo x > /dev/mynull && echo written",
    ]);
    assert_eq!(out, "1:3\nwritten\n");
    // a directory: every device node below it, at the same place under the target (dockerd)
    if Path::new("/dev/net/tun").exists() {
        let out = f.out(&[
            "run",
            "--rm",
            "--device",
            "/dev/net:/dev/mynet",
            "busybox",
            "sh",
            "-c",
            "stat -c '%n %t:%T' /dev/mynet/*",
        ]);
        assert_eq!(out, "/dev/mynet/tun a:c8\n");
    }
    let o =
        f.d.docker(&["run", "--rm", "--device", "/dev/nosuch", "busybox", "true"]);
    assert_ne!(o.code(), 0);
    assert!(
        o.stderr_str()
            .contains("error gathering device information"),
        "{}",
        o.stderr_str()
    );
}

#[test]
fn external_runtime_runc() {
    if !can_run() || !Path::new("/usr/sbin/runc").exists() {
        eprintln!("skipping: needs /usr/sbin/runc");
        return;
    }
    let f = Fixture::with_args(&["--add-runtime", "xrunc=/usr/sbin/runc"]);
    let o =
        f.d.docker(&["run", "--rm", "--runtime", "nope", "busybox", "true"]);
    assert_eq!(o.code(), 125);
    assert!(
        o.stderr_str()
            .contains("unknown or invalid runtime name: nope"),
        "{}",
        o.stderr_str()
    );
    let info = f.out(&["info", "--format", "{{json .Runtimes}}"]);
    assert!(info.contains("xrunc"), "{info}");

    assert_eq!(
        f.out(&["run", "--rm", "--runtime", "xrunc", "busybox", "echo", "hi"]),
        "hi\n"
    );
    let o =
        f.d.docker(&["run", "--rm", "--runtime", "xrunc", "busybox", "nosuch"]);
    assert_eq!(o.code(), 127, "{}", o.stderr_str());
    assert_eq!(
        f.out(&["run", "--rm", "-t", "--runtime", "xrunc", "busybox", "tty"])
            .trim(),
        "/dev/pts/0"
    );
    run_d(&f, "rc", &["--runtime", "xrunc"]);
    assert_eq!(
        f.out(&["inspect", "-f", "{{.HostConfig.Runtime}}", "rc"])
            .trim(),
        "xrunc"
    );
    // runc (not libcontainer) knows it
    let list = std::process::Command::new("/usr/sbin/runc")
        .args(["--root"])
        .arg(f.d.exec_root.join("runtimes/xrunc"))
        .arg("list")
        .output()
        .unwrap()
        .stdout_str();
    assert!(list.contains("running"), "{list}");
    assert_eq!(f.out(&["exec", "rc", "echo", "in"]), "in\n");
    assert_eq!(f.out(&["exec", "-t", "rc", "tty"]).trim(), "/dev/pts/0");
    assert_eq!(f.d.docker(&["exec", "rc", "nosuch"]).code(), 127);
    f.out(&["pause", "rc"]);
    assert_eq!(f.status("rc"), "paused");
    f.out(&["unpause", "rc"]);
    f.out(&["stop", "rc"]);
    assert_eq!(f.status("rc"), "exited");
    f.out(&["start", "rc"]);
    f.out(&["kill", "rc"]);
    assert_eq!(f.wait_status("rc", "exited"), "exited");
    let logs = f.d.docker(&[
        "run",
        "--name",
        "lg",
        "--runtime",
        "xrunc",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(logs.code(), 3);
    assert_eq!(f.out(&["logs", "lg"]), "out\n");
}

#[test]
fn restart_keeps_an_auto_remove_container() {
    if !can_run() {
        return;
    }
    // dockerd: `restart` does not auto-remove a --rm container; its next exit does. The
    // volatile overlay of a --rm container is mounted again with its data.
    let f = Fixture::new();
    f.out(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "rr",
        "busybox",
        "sh",
        "-c",
        "echo x >> /f; sleep 600",
    ]);
    f.out(&["restart", "-t", "0", "rr"]);
    assert_eq!(f.wait_status("rr", "running"), "running");
    assert_eq!(f.out(&["exec", "rr", "cat", "/f"]), "x\nx\n");
    f.out(&["stop", "-t", "0", "rr"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.d.docker(&["inspect", "rr"]).status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!f.d.docker(&["inspect", "rr"]).status.success());
}

/// `rmi -f` of the image a created container uses: as with dockerd, the image goes but the
/// container still starts on its layers (they are held), also after a daemon restart dropped
/// the rootfs mounted at create.
#[test]
fn a_force_removed_image_still_starts_its_containers() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::with_args(&[]);
    f.out(&["create", "--name", "held", "busybox", "cat", "/bin/echo"]);
    f.out(&["rmi", "-f", "busybox"]);
    assert!(
        !f.d.docker(&["image", "inspect", "busybox"])
            .status
            .success()
    );
    f.d.restart();
    let o = f.d.docker(&["start", "-a", "held"]);
    assert!(o.status.success(), "{}", o.stderr_str());
    assert!(
        !o.stdout.is_empty(),
        "the container's rootfs has no /bin/echo"
    );
}
