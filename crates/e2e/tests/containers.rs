//! Containers end to end: the real docker CLI against a throwaway berthd running busybox
//! containers on the real kernel (overlay, namespaces, cgroups, berth-shim). Needs root,
//! busybox-static and the docker CLI; skipped otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_e2e::{Fixture, OutputExt, can_run_containers as can_run, have};

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn run_exit_codes() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let since = chrono_now();
    let o = f.docker(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(o.ok().stdout_str(), "hi\n");
    let until = chrono_now() + 1;
    let ev = f.out(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = ev.lines().collect();
    assert_eq!(
        actions,
        ["create", "attach", "start", "die", "destroy"],
        "{ev}"
    );
    assert_eq!(
        f.docker(&["run", "busybox", "sh", "-c", "exit 3"]).code(),
        3
    );
    let o = f.docker(&["run", "--rm", "busybox", "nosuch"]);
    assert_eq!(o.code(), 127, "{}", o.stderr_str());
    assert!(
        o.stderr_str().contains("executable file not found"),
        "{}",
        o.stderr_str()
    );
    let o = f.docker(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(o.code(), 126, "{}", o.stderr_str());
    let o = f.docker(&["run", "--rm", "--pull", "never", "nosuchimage"]);
    assert_eq!(o.code(), 125, "{}", o.stderr_str());
    // --network none (and, until networking exists, bridge): a namespace with lo up
    let o = f.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ping",
        "-c1",
        "127.0.0.1",
    ]);
    assert!(
        o.ok().stdout_str().contains("1 packets received"),
        "{}",
        o.stdout_str()
    );
    // a tty gives a raw stream
    let o = f.docker(&["run", "--rm", "-t", "busybox", "tty"]);
    assert_eq!(o.ok().stdout_str(), "/dev/pts/0\r\n");
    f.out(&["run", "--name", "short", "busybox", "true"]);
    // stdin reaches the container and its EOF ends it
    let o =
        f.d.docker_stdin(&["run", "--rm", "-i", "busybox", "cat"], Some(b"piped\n"));
    assert_eq!(o.ok().stdout_str(), "piped\n");
    f.out(&["container", "prune", "-f"]);
    // prune removed every stopped container; one more to see --rm ones are gone
    assert_eq!(
        f.docker(&["run", "--name", "exit3", "busybox", "sh", "-c", "exit 3"])
            .code(),
        3
    );
    // --rm containers are gone; the `exit 3` one stays, exited
    let ps = f.out(&["ps", "-a", "--format", "{{.Status}}"]);
    assert_eq!(ps.lines().count(), 1, "{ps}");
    assert!(ps.starts_with("Exited (3)"), "{ps}");
    let ids = f.ids();
    f.out(&["rm", &ids[0]]);
    f.assert_no_leaks(&ids);
}

#[test]
fn detached_lifecycle() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let id = f.out(&["run", "-d", "--name", "web", "busybox", "httpd", "-f"]);
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64);
    let ps = f.out(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up"), "{ps}");
    // names are unique
    let o = f.docker(&["run", "--name", "web", "busybox", "true"]);
    assert_eq!(o.code(), 125);
    assert!(
        o.stderr_str().contains("is already in use"),
        "{}",
        o.stderr_str()
    );
    // an image in use is not removed
    let o = f.docker(&["rmi", "busybox"]);
    assert_ne!(o.code(), 0, "{}", o.stdout_str());
    let st = f.out(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "web",
    ]);
    assert_eq!(st.trim(), "web 1");
    f.out(&[
        "update",
        "-m",
        "48m",
        "--memory-swap",
        "96m",
        "--restart",
        "on-failure",
        "web",
    ]);
    let st = f.out(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "web"]);
    assert!(st.trim().ends_with("/ 48MiB"), "{st}");
    let top = f.out(&["top", "web"]);
    assert!(top.contains("httpd -f"), "{top}");
    // exec, with exit codes
    assert_eq!(f.out(&["exec", "web", "echo", "in"]), "in\n");
    assert_eq!(f.docker(&["exec", "web", "sh", "-c", "exit 7"]).code(), 7);
    let o = f.docker(&["exec", "web", "nosuch"]);
    assert_eq!(o.code(), 127, "{}", o.stderr_str());
    assert_eq!(f.docker(&["exec", "web", "/etc/passwd"]).code(), 126);
    // inspect
    let st = f.out(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}} {{.Name}}",
        "web",
    ]);
    assert_eq!(st.trim(), "running true /web");
    // a running container is not removed without -f
    let o = f.docker(&["rm", "web"]);
    assert_ne!(o.code(), 0);
    assert!(
        o.stderr_str().contains("container is running"),
        "{}",
        o.stderr_str()
    );
    // logs -f follows until the container exits
    f.out(&[
        "run",
        "-d",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.3; done; echo err >&2",
    ]);
    let o = f.docker(&["logs", "-f", "talk"]);
    assert_eq!(o.ok().stdout_str(), "line1\nline2\nline3\n");
    assert_eq!(o.stderr_str(), "err\n");
    // --tail counts lines of both streams
    let o = f.docker(&["logs", "--tail", "2", "talk"]);
    assert_eq!(o.ok().stdout_str(), "line3\n");
    assert_eq!(o.stderr_str(), "err\n");
    // stop: httpd as pid 1 ignores SIGTERM, so -t 1 ends in SIGKILL
    f.out(&["stop", "-t", "1", "web"]);
    let st = f.out(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "web",
    ]);
    assert_eq!(st.trim(), "exited 137");
    f.out(&["start", "web"]);
    f.out(&["pause", "web"]);
    f.out(&["unpause", "web"]);
    f.out(&["rename", "web", "web2"]);
    let ids = f.ids();
    f.out(&["rm", "-f", "web2", "talk"]);
    assert!(f.ids().is_empty());
    f.assert_no_leaks(&ids);
}

/// Issue 3's acceptance: `kill -9` of berthd while 10 containers run loses none of them. After
/// the restart the running ones are listed Up and logs/exec/stop work, the ones that exited
/// while the daemon was down show their exit codes, and restart policies resume.
#[test]
fn kill9_of_the_daemon_keeps_containers() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new();
    let forever = "echo up; while true; do sleep 1; done";
    for n in ["k1", "k2", "k3", "k4", "k5", "k6"] {
        f.out(&["run", "-d", "--name", n, "busybox", "sh", "-c", forever]);
    }
    // k7..k9 end while the daemon is down: on SIGTERM from the host, with these codes
    let on_term =
        |code: u8| format!("trap 'exit {code}' TERM; echo run; while true; do sleep 0.1; done");
    f.out(&[
        "run",
        "-d",
        "--name",
        "k7",
        "busybox",
        "sh",
        "-c",
        &on_term(5),
    ]);
    f.out(&[
        "run",
        "-d",
        "--name",
        "k8",
        "busybox",
        "sh",
        "-c",
        &on_term(0),
    ]);
    f.out(&[
        "run",
        "-d",
        "--name",
        "k9",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        &on_term(1),
    ]);
    // running through the restart, with a policy the restored daemon must still apply
    f.out(&[
        "run",
        "-d",
        "--name",
        "k10",
        "--restart",
        "on-failure:1",
        "busybox",
        "sh",
        "-c",
        "while [ ! -f /tmp/stop ]; do sleep 0.1; done; exit 3",
    ]);
    assert_eq!(f.shim_pids().len(), 10, "one shim per container");
    let pids: Vec<i32> = ["k7", "k8", "k9"]
        .iter()
        .map(|n| {
            f.out(&["inspect", "-f", "{{.State.Pid}}", n])
                .trim()
                .parse()
                .expect("pid")
        })
        .collect();

    f.d.kill9();
    for &pid in &pids {
        let p = rustix::process::Pid::from_raw(pid).expect("a container pid");
        rustix::process::kill_process(p, rustix::process::Signal::TERM).expect("signal k7..k9");
    }
    // their shims reap them and record the exits, with nobody listening
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(Instant::now() < deadline, "k7..k9 did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    f.d.restart();

    let ps = f.out(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    for n in ["k1", "k2", "k3", "k4", "k5", "k6", "k10"] {
        assert!(ps.contains(&format!("{n} Up")), "{n}: {ps}");
    }
    assert!(ps.contains("k7 Exited (5)"), "{ps}");
    assert!(ps.contains("k8 Exited (0)"), "{ps}");
    assert_eq!(f.out(&["logs", "k1"]), "up\n");
    assert_eq!(f.out(&["exec", "k2", "echo", "ok"]), "ok\n");
    f.out(&["stop", "-t", "1", "k3"]);
    let st = f.out(&["inspect", "-f", "{{.State.Status}}", "k3"]);
    assert_eq!(st.trim(), "exited");
    // `always` brings k9 back; on-failure:1 restarts k10 once when it fails now
    f.out(&["exec", "k10", "touch", "/tmp/stop"]);
    let until = |name: &str, want: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut st = String::new();
        while Instant::now() < deadline {
            st = f.out(&[
                "inspect",
                "-f",
                "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
                name,
            ]);
            if want(st.trim()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{name}: {st}");
    };
    // back up: by the restore's autostart (RestartCount stays 0, as dockerd's restore) or by
    // the policy on an exit seen after the restart
    until("k9", &|s| s.contains(" running "));
    until("k10", &|s| s == "1 exited 3");
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.out(&["logs", "k9"]) != "run\nrun\n" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.out(&["logs", "k9"]), "run\nrun\n");
    let ids = f.ids();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    f.out(&args);
    f.assert_no_leaks(&ids);
}

#[test]
fn restart_policies() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    f.out(&[
        "run",
        "-d",
        "--name",
        "rp",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 2",
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut st = String::new();
    while Instant::now() < deadline {
        st = f.out(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "rp"]);
        if st.trim() == "2 exited" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(st.trim(), "2 exited");
    // a stopped `always` container stays stopped
    f.out(&[
        "run",
        "-d",
        "--name",
        "ra",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "100",
    ]);
    f.out(&["stop", "-t", "0", "ra"]);
    std::thread::sleep(Duration::from_millis(500));
    let st = f.out(&["inspect", "-f", "{{.State.Status}}", "ra"]);
    assert_eq!(st.trim(), "exited");
    let ids = f.ids();
    f.out(&["rm", "-f", "rp", "ra"]);
    f.assert_no_leaks(&ids);
}

/// Runs `tmux` with the given args (a private server socket per test).
fn tmux(sock: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .output()
        .expect("run tmux");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_pane(sock: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pane = String::new();
    while Instant::now() < deadline {
        pane = tmux(sock, &["capture-pane", "-t", "t", "-p"]);
        if pane.contains(needle) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pane
}

#[test]
fn interactive_tty_detach_and_reattach() {
    if !can_run() || !have("tmux") {
        return;
    }
    let f = Fixture::new();
    let sock = f.d.dir.join("tmux.sock");
    let run = format!(
        "DOCKER_HOST={} docker run -it --name itc busybox sh; echo EXITED=$?; sleep 60",
        f.d.host()
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            &run,
        ],
    );
    wait_pane(&sock, "/ #");
    tmux(&sock, &["send-keys", "-t", "t", "echo $((40+2))", "Enter"]);
    assert!(wait_pane(&sock, "42").contains("42"));
    tmux(&sock, &["send-keys", "-t", "t", "C-p", "C-q"]);
    let pane = wait_pane(&sock, "EXITED=");
    assert!(pane.contains("EXITED=0"), "{pane}");
    tmux(&sock, &["kill-server"]);
    let ps = f.out(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("itc Up"), "{ps}");
    // reattach: stdin still reaches the shell
    let attach = format!(
        "DOCKER_HOST={} docker attach itc; echo EXITED=$?; sleep 60",
        f.d.host()
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            &attach,
        ],
    );
    std::thread::sleep(Duration::from_millis(1000));
    tmux(&sock, &["send-keys", "-t", "t", "exit 4", "Enter"]);
    let pane = wait_pane(&sock, "EXITED=");
    tmux(&sock, &["kill-server"]);
    assert!(pane.contains("EXITED=4"), "{pane}");
    let ids = f.ids();
    f.out(&["rm", "itc"]);
    f.assert_no_leaks(&ids);
}

#[test]
fn health_checks() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    f.out(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "100",
    ]);
    let status = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut st = String::new();
        while Instant::now() < deadline {
            st = f.out(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]);
            if st.trim() == want {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        st.trim().to_owned()
    };
    assert_eq!(status("unhealthy"), "unhealthy");
    f.out(&["exec", "hc", "touch", "/tmp/ok"]);
    assert_eq!(status("healthy"), "healthy");
    let ps = f.out(&[
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Status}}",
    ]);
    assert!(ps.contains("(healthy)"), "{ps}");
    let ids = f.ids();
    f.out(&["rm", "-f", "hc"]);
    f.assert_no_leaks(&ids);
}

/// berthd turns on the kernel's favordynmods cgroup option at start-up (faster cgroup
/// migrations on every container start); the option shows on the hierarchy it picked.
#[test]
fn cgroup_favordynmods_on_after_start() {
    if !can_run() {
        return;
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let major: u32 = release
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    // the option exists since Linux 6.0; a cgroup-less host has nothing to set it on
    if major < 6 || !info.contains(" - cgroup") {
        return;
    }
    let f = Fixture::new();
    f.docker(&["run", "--rm", "--network", "none", "busybox", "true"])
        .ok();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let cgroup_lines: Vec<&str> = info.lines().filter(|l| l.contains(" - cgroup")).collect();
    let v2 = cgroup_lines.iter().find(|l| l.contains(" - cgroup2 "));
    let picked = v2.or(cgroup_lines.first()).unwrap();
    assert!(
        picked
            .rsplit(' ')
            .next()
            .is_some_and(|o| o.split(',').any(|o| o == "favordynmods")),
        "{picked}"
    );
}

/// A field of /proc/<pid>/status (`pid` may be `self`), its value trimmed.
fn proc_status(pid: &str, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}

/// A quiet daemon gives its clean text pages and free heap back (berth-mem), and works on as
/// before when the next request comes.
#[test]
fn idle_daemon_gives_memory_back() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let pid = f.pid().expect("daemon pid");
    let rss_file = || -> u64 {
        proc_status(&pid.to_string(), "RssFile")
            .and_then(|v| v.trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(f.out(&["run", "--rm", "busybox", "echo", "busy"]), "busy\n");
    let busy = rss_file();
    // no request for a while (the daemon trims after 2 s of quiet)
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut idle = busy;
    while Instant::now() < deadline && idle * 2 > busy {
        std::thread::sleep(Duration::from_millis(500));
        idle = rss_file();
    }
    assert!(
        idle * 2 <= busy,
        "file-backed RSS {busy} kB busy, {idle} kB idle"
    );
    assert_eq!(
        f.out(&["run", "--rm", "busybox", "echo", "again"]),
        "again\n"
    );
}

/// `--privileged` grants every capability the host's bounding set has (this machine's sandbox
/// lacks CAP_SYS_RESOURCE: asking for it failed every privileged start and exec with EPERM)
/// and the host's device nodes, each once (/dev/tty is also a default device).
#[test]
fn privileged_run_and_exec() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let bounding = proc_status("self", "CapBnd").expect("CapBnd");
    let cap_eff = "grep CapEff /proc/self/status | cut -f2";
    let o = f.docker(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        cap_eff,
    ]);
    assert_eq!(o.ok().stdout_str().trim(), bounding);
    let o = f.docker(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "ls",
        "/dev/tty",
        "/dev/null",
    ]);
    o.ok();
    f.docker(&["run", "-d", "--name", "p1", "busybox", "sleep", "300"])
        .ok();
    let o = f.docker(&["exec", "--privileged", "p1", "sh", "-c", cap_eff]);
    assert_eq!(o.ok().stdout_str().trim(), bounding);
    // without --privileged, Docker's 14 defaults
    let o = f.docker(&["exec", "p1", "sh", "-c", cap_eff]);
    assert_eq!(o.ok().stdout_str().trim(), "00000000a80425fb");
    f.docker(&["rm", "-f", "p1"]).ok();
}

/// Docker's default seccomp profile is loaded in the container and in exec'd processes (mode 2,
/// one filter) and decides as Docker's: creating a user namespace needs no capability, so
/// `unshare -U` is refused by the filter alone (EPERM) and allowed with
/// `--security-opt seccomp=unconfined`.
#[test]
fn default_seccomp_profile_blocks_what_dockers_does() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let probe = "grep -E '^Seccomp(_filters)?:' /proc/self/status; unshare -U true; echo rc=$?";
    let confined = "Seccomp:\t2\nSeccomp_filters:\t1\nrc=1\n";
    let o = f.docker(&["run", "--rm", "busybox", "sh", "-c", probe]);
    assert_eq!(o.ok().stdout_str(), confined);
    assert!(
        o.stderr_str().contains("Operation not permitted"),
        "{}",
        o.stderr_str()
    );
    let o = f.docker(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(
        o.ok().stdout_str(),
        "Seccomp:\t0\nSeccomp_filters:\t0\nrc=0\n"
    );
    f.docker(&["run", "-d", "--name", "sc1", "busybox", "sleep", "300"])
        .ok();
    let o = f.docker(&["exec", "sc1", "sh", "-c", probe]);
    assert_eq!(o.ok().stdout_str(), confined);
    f.docker(&["rm", "-f", "sc1"]).ok();
}
