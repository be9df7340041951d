//! Container commands: `berth` against the real `docker` CLI 28 on the same reference dockerd
//! (Debian's docker.io with runc): run/create/start flows and exit codes, stdin piping and
//! stream demultiplexing, ps/logs/exec/top/port/stop/kill/rm/..., the create body (compared
//! through `inspect` of containers each CLI created with the same flags), and the tty paths
//! in a real pty (tmux): line editing, ctrl-p ctrl-q, attach. Skips with a message when
//! dockerd/docker/root/busybox are missing; removes its containers and stops its daemon.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A busybox image with every applet linked and PATH set, like the official one.
fn busybox_image(d: &RefDocker) {
    let root = d.path().join("bbroot");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for a in text(&list.stdout).lines() {
        if a != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
        }
    }
    let tar = d.path().join("bb.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    ok(
        &d.docker(&[
            "import",
            "-c",
            "CMD [\"sh\"]",
            "-c",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &tar.to_string_lossy(),
            "busybox:latest",
        ]),
        "import busybox",
    );
}

/// Compare a command on a pair of containers: `{}` becomes `d-<name>` for docker and
/// `b-<name>` for berth; docker's output is read with the names swapped.
fn pair(d: &RefDocker, name: &str, args: &[&str], f: &mut Vec<String>) {
    let dn = format!("d-{name}");
    let bn = format!("b-{name}");
    let da: Vec<String> = args.iter().map(|a| a.replace("{}", &dn)).collect();
    let ba: Vec<String> = args.iter().map(|a| a.replace("{}", &bn)).collect();
    let da: Vec<&str> = da.iter().map(String::as_str).collect();
    let ba: Vec<&str> = ba.iter().map(String::as_str).collect();
    let want = d.docker(&da);
    let got = d.berth(&ba);
    let fix = |s: &[u8]| text(s).replace(&dn, &bn).replace("docker", "berth");
    if fix(&want.stdout) != text(&got.stdout)
        || fix(&want.stderr) != text(&got.stderr)
        || want.status.code() != got.status.code()
    {
        f.push(format!(
            "`{}`\n--- docker (exit {:?})\n{}{}\n--- berth (exit {:?})\n{}{}",
            ba.join(" "),
            want.status.code(),
            fix(&want.stdout),
            fix(&want.stderr),
            got.status.code(),
            text(&got.stdout),
            text(&got.stderr)
        ));
    }
}

/// Both CLIs run the same command with stdin data; outputs must match.
fn same_stdin(d: &RefDocker, args: &[&str], input: &[u8], f: &mut Vec<String>) {
    let want = d.run("docker", args, Some(input));
    let got = d.run(env!("CARGO_BIN_EXE_berth"), args, Some(input));
    if want.stdout != got.stdout
        || text(&want.stderr).replace("docker", "berth") != text(&got.stderr)
        || want.status.code() != got.status.code()
    {
        f.push(format!(
            "`{}` with stdin\n--- docker (exit {:?})\n{}{}\n--- berth (exit {:?})\n{}{}",
            args.join(" "),
            want.status.code(),
            text(&want.stdout),
            text(&want.stderr),
            got.status.code(),
            text(&got.stdout),
            text(&got.stderr)
        ));
    }
}

/// Removes every container of the daemon when the test ends, even on panic.
struct Cleanup<'a>(&'a RefDocker);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ids = text(&self.0.docker(&["ps", "-aq"]).stdout);
        for id in ids.split_whitespace() {
            let _ = self.0.docker(&["rm", "-f", id]);
        }
    }
}

fn start() -> Option<RefDocker> {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: /bin/busybox (busybox-static) not installed");
        return None;
    }
    match RefDocker::start() {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("SKIP: reference dockerd unavailable: {e}");
            None
        }
    }
}

#[test]
fn container_commands_match_docker() {
    let Some(d) = start() else { return };
    let _clean = Cleanup(&d);
    busybox_image(&d);
    let mut f = Vec::new();
    let net = "--network=none";
    // Exit codes and errors of the run flow.
    for args in [
        &["run", "--rm", net, "busybox", "echo", "hi"][..],
        &[
            "run",
            "--rm",
            net,
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        &["run", "--rm", net, "busybox", "nosuchcmd"],
        &["run", "--rm", net, "busybox", "/etc"],
        &["run", "--rm", net, "--pull", "never", "nosuchimage"],
        &["run", "--rm", net, "-t", "busybox", "echo", "tty"],
        &["run", "--rm", net, "-it", "busybox", "true"],
        &[
            "run",
            "--rm",
            net,
            "-e",
            "A=1",
            "-w",
            "/tmp",
            "-u",
            "1000:1000",
            "-h",
            "hn",
            "busybox",
            "sh",
            "-c",
            "echo $A; pwd; id; hostname",
        ],
        &[
            "run",
            "--rm",
            net,
            "--entrypoint",
            "echo",
            "busybox",
            "a",
            "b",
        ],
        &[
            "run",
            "--rm",
            net,
            "-a",
            "stderr",
            "busybox",
            "sh",
            "-c",
            "echo o; echo e >&2",
        ],
        &["run"],
        &["run", "-d", "-a", "stdout", "busybox"],
        &["run", "--rm", "--restart", "always", "busybox"],
        &["run", "--bogus", "busybox"],
        &["create"],
    ] {
        same(&d, args, &mut f);
    }
    same_stdin(
        &d,
        &["run", "--rm", "-i", net, "busybox", "cat"],
        b"piped\n",
        &mut f,
    );
    same_stdin(
        &d,
        &[
            "run",
            "--rm",
            "-i",
            net,
            "busybox",
            "sh",
            "-c",
            "cat; echo done; exit 4",
        ],
        b"a\nb\n",
        &mut f,
    );

    // A pair of long-running containers, one made by each CLI.
    let script = "echo start; echo more; while true; do sleep 0.2; done";
    for (bin, n) in [("docker", "d-c1"), ("berth", "b-c1")] {
        let args = [
            "run", "-d", "--name", n, net, "-l", "k=v", "busybox", "sh", "-c", script,
        ];
        let o = if bin == "docker" {
            d.docker(&args)
        } else {
            d.berth(&args)
        };
        let id = ok(&o, "run -d");
        assert_eq!(id.trim().len(), 64, "run -d printed {id:?}");
    }
    std::thread::sleep(Duration::from_millis(800));
    for args in [
        &[
            "ps",
            "--filter",
            "name={}",
            "--format",
            "{{.Names}} {{.Image}} {{.Command}} {{.Labels}} {{.State}}",
        ][..],
        &[
            "ps",
            "-a",
            "--filter",
            "name={}",
            "--format",
            "table {{.Names}}\t{{.State}}\t{{.Ports}}",
        ],
        &["logs", "{}"],
        &["logs", "--tail", "1", "{}"],
        &["exec", "{}", "echo", "hi"],
        &["exec", "{}", "sh", "-c", "exit 5"],
        &[
            "exec",
            "-w",
            "/tmp",
            "-e",
            "X=2",
            "{}",
            "sh",
            "-c",
            "pwd; echo $X",
        ],
        &["exec", "{}", "nosuch"],
        &["port", "{}"],
        &[
            "inspect",
            "-f",
            "{{.State.Running}} {{.Config.Labels}}",
            "{}",
        ],
        &["container", "inspect", "-f", "{{.Name}}", "{}"],
        &["pause", "{}"],
        &["ps", "--filter", "name={}", "--format", "{{.State}}"],
        &["unpause", "{}"],
        &[
            "update",
            "-m",
            "64m",
            "--memory-swap",
            "128m",
            "--restart",
            "on-failure:2",
            "{}",
        ],
        &[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
            "{}",
        ],
        &["rename", "{}", "{}x"],
        &["kill", "-s", "KILL", "{}x"],
        &["wait", "{}x"],
        &["rm", "{}x"],
        &["rm", "{}x"],
        &["rm", "-f", "{}x"],
    ] {
        pair(&d, "c1", args, &mut f);
    }
    // Errors for missing containers and bad argument counts.
    for args in [
        &["stop", "nosuch"][..],
        &["kill", "nosuch"],
        &["rm", "nosuch", "nosuch2"],
        &["wait", "nosuch"],
        &["pause", "nosuch"],
        &["rename", "nosuch", "x"],
        &["logs", "nosuch"],
        &["exec", "nosuch", "ls"],
        &["attach", "nosuch"],
        &["top", "nosuch"],
        &["port", "nosuch"],
        &["start", "nosuch"],
        &["restart", "nosuch"],
        &["update", "-m", "10m", "nosuch"],
        &["stop"],
        &["exec", "x"],
        &["logs"],
        &["rename", "x"],
        &["ps", "-f", "bad"],
        &["container", "ls", "--bogus"],
        &["container", "prune", "--filter", "bad"],
    ] {
        same(&d, args, &mut f);
    }
    // Containers in known states, for idempotent commands and daemon refusals.
    ok(
        &d.docker(&["create", "--name", "stopped", net, "busybox"]),
        "create",
    );
    ok(
        &d.docker(&["run", "-d", "--name", "runn", net, "busybox", "sleep", "60"]),
        "run -d",
    );
    for args in [
        &["attach", "stopped"][..],
        &["port", "runn", "80"],
        &["port", "runn", "80/udp"],
        &["kill", "stopped"],
        &["rm", "runn"],
        &["pause", "stopped"],
        &["unpause", "runn"],
        &["stop", "stopped", "nosuch"],
        &["exec", "stopped", "ls"],
        &["exec", "-it", "nosuch", "sh"],
        &["top", "stopped"],
        &["rename", "runn", "runn"],
        &["update", "runn"],
        &["update", "--cpus", "x", "runn"],
        &["update", "--restart", "bad", "runn"],
        &["wait", "stopped"],
        &["logs", "-n", "1", "stopped"],
        &["logs", "--since", "bad", "runn"],
        &["run", "--cpus", "abc", "busybox"],
        &["run", "-m", "abc", "busybox"],
        &["run", "--restart", "on-failure:x", "busybox"],
        &["run", "-p", "bad:x", "busybox"],
        &["run", "--pull", "bad", "busybox"],
        &["run", "--pids-limit", "x", "busybox"],
        &["run", "--network-alias", "x", "busybox"],
        &["run", "--sig-proxy=maybe", "busybox"],
        &["run", "-a", "bogus", "busybox"],
        &["create", "--pull", "never", "nosuchimage"],
        &["stop", "-t", "x", "runn"],
        &["ps", "-n", "x"],
        &[
            "container",
            "ls",
            "-a",
            "--filter",
            "name=stopped",
            "--format",
            "{{.Names}} {{.State}}",
        ],
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.Container}}",
            "runn",
        ],
    ] {
        same(&d, args, &mut f);
    }
    ok(&d.docker(&["rm", "-f", "runn", "stopped"]), "rm -f");

    // create + start -a, stop, restart, container prune.
    for (bin, n) in [("docker", "d-c2"), ("berth", "b-c2")] {
        let args = [
            "create",
            "--name",
            n,
            net,
            "busybox",
            "sh",
            "-c",
            "echo created; exit 2",
        ];
        let o = if bin == "docker" {
            d.docker(&args)
        } else {
            d.berth(&args)
        };
        ok(&o, "create");
    }
    for args in [
        &["start", "-a", "{}"][..],
        &["start", "{}"],
        &["wait", "{}"],
        &["logs", "{}"],
        &["ps", "-a", "--filter", "name={}", "--format", "{{.Status}}"],
        &["rm", "-v", "{}"],
    ] {
        pair(&d, "c2", args, &mut f);
    }
    for (bin, n) in [("docker", "d-c3"), ("berth", "b-c3")] {
        let args = [
            "run", "-d", "--name", n, net, "-p", "8080", "busybox", "sleep", "60",
        ];
        let o = if bin == "docker" {
            d.docker(&args)
        } else {
            d.berth(&args)
        };
        ok(&o, "run -d");
    }
    for args in [
        &["top", "{}", "-o", "user,comm"][..],
        &["top", "{}", "-o", "comm,args"],
        &["stop", "-t", "1", "{}"],
        &["restart", "-t", "0", "{}"],
        &["stop", "-s", "KILL", "{}"],
        &["inspect", "-f", "{{.State.ExitCode}}", "{}"],
    ] {
        pair(&d, "c3", args, &mut f);
    }
    // prune removes both stopped c3s; the output lists ids, so compare shapes only.
    let p = d.berth(&["container", "prune", "-f"]);
    let out = text(&p.stdout);
    if !(p.status.success()
        && out.starts_with("Deleted Containers:\n")
        && out.ends_with("\nTotal reclaimed space: 0B\n"))
    {
        f.push(format!(
            "container prune -f printed {out:?} {}",
            text(&p.stderr)
        ));
    }

    // Same flags through each CLI: the daemon must have received the same create body.
    let env_file = d.path().join("env");
    std::fs::write(&env_file, "A=1\n# comment\n\nB=2\n").expect("env file");
    let env_file = env_file.to_string_lossy().to_string();
    let flags: Vec<&str> = vec![
        "-i",
        "-t",
        "-e",
        "X=1",
        "-e",
        "UNSET_VAR",
        "--env-file",
        &env_file,
        "-w",
        "/tmp",
        "-u",
        "1000",
        "--entrypoint",
        "/bin/sh",
        "-h",
        "hname",
        "--label",
        "a=b",
        "-l",
        "c",
        "--restart",
        "on-failure:3",
        "--init",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--memory-reservation",
        "32m",
        "--cpus",
        "1.5",
        "-c",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "100",
        "--ulimit",
        "nofile=1024:2048",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "MKNOD",
        "--device",
        "/dev/null:/dev/xnull:r",
        "--read-only",
        "--security-opt",
        "no-new-privileges",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "5",
        "--health-cmd",
        "true",
        "--health-interval",
        "5s",
        "--health-timeout",
        "2s",
        "--health-retries",
        "2",
        "--health-start-period",
        "1s",
        "--oom-kill-disable",
        "--group-add",
        "10",
        "--shm-size",
        "128m",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--network",
        "none",
        "--dns",
        "1.1.1.1",
        "--dns-search",
        "x.com",
        "--dns-option",
        "ndots:2",
        "--add-host",
        "h:1.2.3.4",
        "-v",
        "/tmp:/hosttmp:ro",
        "-v",
        "/anon",
        "--mount",
        "type=tmpfs,target=/t2,tmpfs-size=1m",
        "--tmpfs",
        "/run:size=1m",
        "--expose",
        "80",
        "-a",
        "stdout",
    ];
    let variants: Vec<Vec<&str>> = vec![
        [&["create"][..], &flags, &["busybox", "-c", "echo hi"]].concat(),
        vec!["create", "busybox"],
        vec![
            "create",
            "-P",
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1:9000-9001:90-91/udp",
            "--privileged",
            "--rm",
            "busybox",
        ],
        vec![
            "create",
            "--mount",
            "type=bind,source=/tmp,target=/x,readonly",
            "--network",
            "host",
            "--no-healthcheck",
            "--restart",
            "always",
            "busybox",
        ],
        vec![
            "create",
            "--net",
            "none",
            "-it",
            "--log-driver",
            "none",
            "busybox",
        ],
    ];
    for (i, v) in variants.iter().enumerate() {
        let dn = format!("d-body{i}");
        let bn = format!("b-body{i}");
        let with_name = |n: &str| -> Vec<String> {
            let mut a: Vec<String> = vec![v[0].to_string(), "--name".into(), n.to_string()];
            a.extend(v[1..].iter().map(|s| s.to_string()));
            a
        };
        let da = with_name(&dn);
        let ba = with_name(&bn);
        ok(
            &d.docker(&da.iter().map(String::as_str).collect::<Vec<_>>()),
            "docker create",
        );
        ok(
            &d.berth(&ba.iter().map(String::as_str).collect::<Vec<_>>()),
            "berth create",
        );
        let fmt = "{{json .Config.Env}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.Labels}} {{.Config.AttachStdin}} {{.Config.AttachStdout}} {{.Config.AttachStderr}} {{.Config.StdinOnce}} {{.Config.Tty}} {{.Config.OpenStdin}} {{json .Config.Healthcheck}} {{json .Config.ExposedPorts}} {{json .Config.Volumes}} {{.Config.StopSignal}} {{json .HostConfig}}";
        let want = ok(&d.docker(&["inspect", "-f", fmt, &dn]), "inspect");
        let got = ok(&d.docker(&["inspect", "-f", fmt, &bn]), "inspect");
        let want = want.replace(&dn, &bn);
        if want != got {
            f.push(format!(
                "create body #{i} differs:\ndocker: {want}\nberth:  {got}"
            ));
        }
    }

    assert!(
        f.is_empty(),
        "{} differences:\n\n{}",
        f.len(),
        f.join("\n\n")
    );
}

fn tmux(args: &[&str]) -> String {
    Command::new("tmux")
        .args(args)
        .output()
        .map(|o| text(&o.stdout))
        .unwrap_or_default()
}

/// Drive `run -it`, line editing, ctrl-p ctrl-q, attach, exec -it and exit in a tmux pane.
fn tty_session(d: &RefDocker, bin: &str, session: &str, name: &str) -> String {
    let sock = d.path().join("tmux.sock").to_string_lossy().to_string();
    let t = |args: &[&str]| {
        let mut a = vec!["-S", &sock];
        a.extend_from_slice(args);
        tmux(&a)
    };
    let host = format!("{} {}", d.client_args.join(" "), d.host);
    let shell = "env -i PATH=/usr/bin:/bin TERM=xterm HOME=/tmp PS1='$ ' bash --norc --noprofile"
        .to_string();
    t(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "100",
        "-y",
        "50",
        &shell,
    ]);
    let pause = |ms: u64| std::thread::sleep(Duration::from_millis(ms));
    pause(300);
    let keys = |k: &[&str]| {
        let mut a = vec!["send-keys", "-t", session];
        a.extend_from_slice(k);
        t(&a);
    };
    keys(&["alias c='", bin, " -H ", host.trim(), "'; clear", "Enter"]);
    pause(500);
    let steps: Vec<(Vec<String>, u64)> = vec![
        (
            vec![
                format!("c run -it --name {name} --network none busybox sh"),
                "Enter".into(),
            ],
            2500,
        ),
        (
            vec![
                "echo hello wrold".into(),
                "BSpace".into(),
                "BSpace".into(),
                "BSpace".into(),
                "BSpace".into(),
                "orld".into(),
                "Enter".into(),
            ],
            500,
        ),
        (vec!["stty size".into(), "Enter".into()], 500),
        (vec!["C-p".into(), "C-q".into()], 1000),
        (vec!["echo rc=$?".into(), "Enter".into()], 500),
        (vec![format!("c attach {name}"), "Enter".into()], 1500),
        (vec!["echo back".into(), "Enter".into()], 500),
        (vec!["C-p".into(), "C-q".into()], 1000),
        (vec!["echo rc=$?".into(), "Enter".into()], 500),
        (vec![format!("c exec -it {name} sh"), "Enter".into()], 1500),
        (vec!["tty; exit 3".into(), "Enter".into()], 1000),
        (vec!["echo rc=$?".into(), "Enter".into()], 500),
        (vec![format!("c attach {name}"), "Enter".into()], 1500),
        (vec!["exit 7".into(), "Enter".into()], 1500),
        (
            vec!["echo rc=$?; stty -a | head -1".into(), "Enter".into()],
            500,
        ),
    ];
    for (k, ms) in steps {
        let k: Vec<&str> = k.iter().map(String::as_str).collect();
        keys(&k);
        pause(ms);
    }
    let pane = t(&["capture-pane", "-p", "-t", session]);
    t(&["kill-session", "-t", session]);
    pane.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

#[test]
fn tty_in_a_real_pty_matches_docker() {
    if which("tmux").is_none() {
        eprintln!("SKIP: tmux not installed");
        return;
    }
    let Some(d) = start() else { return };
    let _clean = Cleanup(&d);
    busybox_image(&d);
    let want = tty_session(&d, "docker", "dk", "tty1");
    let got = tty_session(&d, env!("CARGO_BIN_EXE_berth"), "bt", "tty2");
    let sock = d.path().join("tmux.sock").to_string_lossy().to_string();
    tmux(&["-S", &sock, "kill-server"]);
    let want = want.replace("tty1", "tty2");
    assert!(
        want.contains("hello world\n") && want.contains("rc=7\n"),
        "docker session unexpected:\n{want}"
    );
    assert_eq!(got, want, "berth's tty session differs from docker's");
}

/// A local registry (Debian's docker-registry) on loopback, killed on drop.
struct Registry(std::process::Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_pulls_a_missing_image_like_docker() {
    let Some(reg_bin) = which("docker-registry") else {
        eprintln!("SKIP: docker-registry not installed");
        return;
    };
    let Some(d) = start() else { return };
    let _clean = Cleanup(&d);
    busybox_image(&d);
    // A free loopback port: bind, read it, release it for the registry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let cfg = d.path().join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            d.path().join("registry").display()
        ),
    )
    .expect("registry config");
    let child = Command::new(reg_bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start registry");
    let _reg = Registry(child);
    let image = format!("127.0.0.1:{port}/bb:1");
    let mut pushed = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        ok(&d.docker(&["tag", "busybox", &image]), "tag");
        if d.docker(&["push", &image]).status.success() {
            pushed = true;
            break;
        }
    }
    assert!(pushed, "could not push to the local registry");
    let mut f = Vec::new();
    for args in [
        &["run", "--rm", "--network=none", &image, "echo", "pulled"][..],
        &["create", "-q", &image],
        &[
            "run",
            "--rm",
            "--network=none",
            &format!("127.0.0.1:{port}/nosuch:1"),
        ],
    ] {
        // Each CLI starts without the image, so both pull it.
        let _ = d.docker(&["rmi", "-f", &image]);
        let want = d.docker(args);
        let _ = d.docker(&["rmi", "-f", &image]);
        let got = d.berth(args);
        let id_free = |s: &[u8]| -> String {
            // create prints a fresh container ID; compare its shape only.
            let t = text(s);
            if t.len() == 65 && t.ends_with('\n') {
                "<id>\n".into()
            } else {
                t
            }
        };
        if id_free(&want.stdout) != id_free(&got.stdout)
            || text(&want.stderr).replace("docker", "berth") != text(&got.stderr)
            || want.status.code() != got.status.code()
        {
            f.push(format!(
                "`{}`\n--- docker (exit {:?})\n{}{}\n--- berth (exit {:?})\n{}{}",
                args.join(" "),
                want.status.code(),
                text(&want.stdout),
                text(&want.stderr),
                got.status.code(),
                text(&got.stdout),
                text(&got.stderr)
            ));
        }
    }
    assert!(
        f.is_empty(),
        "{} differences:\n\n{}",
        f.len(),
        f.join("\n\n")
    );
}
