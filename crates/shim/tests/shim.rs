//! Real-kernel tests of berth-shim: a busybox bundle, a spec from berth-runtime, `berth-shim
//! start`, then the control socket. Needs root (namespaces, cgroups) and busybox-static.
//! Each test has its own tempdir, container id and runtime root, and cleans up on failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_runtime::{ContainerSpecInput, Resources, container_spec};
use berth_shim_proto::{
    ExecExit, ExecSpec, ExitInfo, FRAME_EXIT, Reply, Request, StartErrorKind, StartResult, Status,
    parse_frame_header,
};

const BUSYBOX: &str = "/bin/busybox";

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() || !Path::new(BUSYBOX).exists() {
        eprintln!("skipping: needs root and busybox-static");
        return false;
    }
    true
}

/// A busybox rootfs: /bin/busybox plus one symlink per applet.
fn make_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for name in String::from_utf8_lossy(&list.stdout).lines() {
        if name != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(name));
        }
    }
    for d in ["etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    id: String,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_rootfs(&dir.path().join("rootfs"));
        for d in ["bundle", "state", "rt"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(dir.path().join("hostname"), "testhost\n").unwrap();
        std::fs::write(dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        Fixture {
            id: format!("shimtest-{name}-{}", std::process::id()),
            dir,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn input(&self, args: &[&str]) -> ContainerSpecInput {
        ContainerSpecInput {
            id: self.id.clone(),
            rootfs: self.p("rootfs"),
            args: args.iter().map(|s| s.to_string()).collect(),
            hostname: "testhost".into(),
            hosts_path: Some(self.p("hosts")),
            hostname_path: Some(self.p("hostname")),
            resolv_conf_path: Some(self.p("resolv.conf")),
            ..Default::default()
        }
    }

    fn write_spec(&self, cfg: &ContainerSpecInput) {
        let spec = container_spec(cfg).unwrap();
        std::fs::write(
            self.p("bundle/config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
    }

    /// Runs `berth-shim start`; returns its exit status and result.
    fn start(&self, extra: &[&str]) -> (i32, StartResult) {
        // BERTH_SHIM_BIN: measure another build (e.g. target/release/berth-shim)
        let bin = std::env::var("BERTH_SHIM_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_berth-shim").to_string());
        let out = Command::new(bin)
            .arg("start")
            .args(["--id", &self.id])
            .arg("--bundle")
            .arg(self.p("bundle"))
            .arg("--state-dir")
            .arg(self.p("state"))
            .arg("--runtime-root")
            .arg(self.p("rt"))
            .args(["--log-driver", "json-file", "--log-path"])
            .arg(self.p("log.json"))
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let res: StartResult = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "bad start output {stdout:?} ({e}); stderr {:?}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), res)
    }

    fn started(&self, extra: &[&str]) -> i32 {
        match self.start(extra) {
            (0, StartResult::Started { init_pid, .. }) => init_pid,
            other => panic!("start failed: {other:?}; shim.log: {}", self.shim_log()),
        }
    }

    fn shim_log(&self) -> String {
        std::fs::read_to_string(self.p("state/shim.log")).unwrap_or_default()
    }

    fn connect(&self, req: &Request) -> (BufReader<UnixStream>, Reply) {
        let mut s = UnixStream::connect(self.p("state/shim.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        s.write_all(&line).unwrap();
        let mut r = BufReader::new(s);
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        let reply: Reply = serde_json::from_str(reply.trim())
            .unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"));
        (r, reply)
    }

    fn request(&self, req: &Request) -> Reply {
        self.connect(req).1
    }

    fn wait(&self) -> ExitInfo {
        match self.request(&Request::Wait) {
            Reply::Exit(x) => x,
            other => panic!("wait: {other:?}"),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // kill whatever is left, then remove the cgroups and libcontainer state
        for f in ["state/init.pid", "state/shim.pid"] {
            if let Ok(p) = std::fs::read_to_string(self.p(f))
                && let Ok(pid) = p.trim().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in rd.flatten() {
                let d = c.path().join("berth").join(&self.id);
                if d.exists() {
                    let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                    let _ = std::fs::remove_dir(&d);
                }
            }
        }
    }
}

/// Reads frames until EOF; returns (stdout, stderr, exec exit).
fn read_frames(r: &mut impl Read) -> (String, String, Option<ExecExit>) {
    let (mut out, mut err, mut exit) = (Vec::new(), Vec::new(), None);
    loop {
        let mut h = [0u8; 8];
        if r.read_exact(&mut h).is_err() {
            break;
        }
        let (kind, len) = parse_frame_header(&h).expect("frame header");
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).unwrap();
        match kind {
            1 => out.extend(body),
            2 => err.extend(body),
            FRAME_EXIT => exit = Some(serde_json::from_slice(&body).unwrap()),
            k => panic!("unexpected frame kind {k}"),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        exit,
    )
}

#[test]
fn attach_reads_echo_and_logs_json_file() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("echo");
    f.write_spec(&f.input(&["sh", "-c", "echo hi; echo oops >&2"]));
    f.started(&["--create-only"]);
    let (mut a, reply) = f.connect(&Request::Attach {
        stdin: false,
        stdout: true,
        stderr: true,
        stdin_once: false,
    });
    assert_eq!(reply, Reply::Ok);
    // a second attacher at the same time
    let (mut b, _) = f.connect(&Request::Attach {
        stdin: false,
        stdout: true,
        stderr: false,
        stdin_once: false,
    });
    assert_eq!(f.request(&Request::Start), Reply::Ok);
    let (out, err, _) = read_frames(&mut a);
    assert_eq!(out, "hi\n");
    assert_eq!(err, "oops\n");
    let (out2, err2, _) = read_frames(&mut b);
    assert_eq!((out2.as_str(), err2.as_str()), ("hi\n", ""));
    let x = f.wait();
    assert_eq!(x.exit_code, 0);
    assert!(!x.oom_killed);
    assert!(
        x.finished_at.ends_with('Z') && x.finished_at.len() == 30,
        "{x:?}"
    );
    // exit.json was written before the waiter was told
    let on_disk: ExitInfo =
        serde_json::from_slice(&std::fs::read(f.p("state/exit.json")).unwrap()).unwrap();
    assert_eq!(on_disk, x);

    let log = std::fs::read_to_string(f.p("log.json")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let hi = lines
        .iter()
        .find(|l| l.contains("stdout"))
        .expect("stdout line");
    assert!(
        hi.starts_with(r#"{"log":"hi\n","stream":"stdout","time":"20"#),
        "{hi}"
    );
    assert!(hi.ends_with("Z\"}"));
    let v: serde_json::Value = serde_json::from_str(hi).unwrap();
    assert_eq!(v["log"], "hi\n");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(r#"{"log":"oops\n","stream":"stderr""#))
    );
    // the libcontainer state and the cgroup are gone (the shim deletes them after the
    // replies already asked for, so shortly after the exit, not before it)
    let cg = Path::new("/sys/fs/cgroup/memory/berth").join(&f.id);
    let deadline = Instant::now() + Duration::from_secs(5);
    while (f.p("rt").join(&f.id).exists() || cg.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!f.p("rt").join(&f.id).exists());
    assert!(!cg.exists());
}

#[test]
fn exit_code_and_timing() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("exit3");
    f.write_spec(&f.input(&["sh", "-c", "exit 3"]));
    f.started(&[]);
    assert_eq!(f.wait().exit_code, 3);

    // create+start+wait for `true`, measured (printed, not asserted)
    let mut times = Vec::new();
    for i in 0..5 {
        let g = Fixture::new(&format!("true{i}"));
        g.write_spec(&g.input(&["true"]));
        let t0 = Instant::now();
        g.started(&[]);
        let started = t0.elapsed();
        let x = match UnixStream::connect(g.p("state/shim.sock")) {
            Ok(_) => g.wait(),
            // already gone: the exit file is the record
            Err(_) => {
                serde_json::from_slice(&std::fs::read(g.p("state/exit.json")).unwrap()).unwrap()
            }
        };
        let total = t0.elapsed();
        assert_eq!(x.exit_code, 0);
        times.push((started, total));
    }
    for (s, t) in &times {
        println!(
            "berth-shim `true`: start returned after {:.1} ms, exit known after {:.1} ms",
            s.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3
        );
    }
}

#[test]
fn missing_and_non_executable_commands_are_distinguishable() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("nosuch");
    f.write_spec(&f.input(&["nosuch"]));
    let (code, res) = f.start(&[]);
    assert_eq!(code, 127, "{res:?}");
    match res {
        StartResult::Failed { kind, message } => {
            assert_eq!(kind, StartErrorKind::NotFound);
            assert_eq!(
                message,
                r#"exec: "nosuch": executable file not found in $PATH"#
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.p("rt").join(&f.id).exists());

    let g = Fixture::new("noexec");
    g.write_spec(&g.input(&["/etc/passwd"]));
    let (code, res) = g.start(&[]);
    assert_eq!(code, 126, "{res:?}");
    assert!(matches!(
        res,
        StartResult::Failed {
            kind: StartErrorKind::PermissionDenied,
            ..
        }
    ));
}

#[test]
fn tty_echoes_input() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("tty");
    let mut cfg = f.input(&["cat"]);
    cfg.tty = true;
    f.write_spec(&cfg);
    f.started(&["--tty", "--stdin"]);
    let (mut a, reply) = f.connect(&Request::Attach {
        stdin: true,
        stdout: true,
        stderr: true,
        stdin_once: true,
    });
    assert_eq!(reply, Reply::Ok);
    assert_eq!(
        f.request(&Request::Resize {
            exec: None,
            height: 40,
            width: 100
        }),
        Reply::Ok
    );
    a.get_mut().write_all(b"hello\n").unwrap();
    // the tty echoes the line, then cat prints it: two "hello\r\n"
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut h = [0u8; 8];
        a.read_exact(&mut h).unwrap();
        let (kind, len) = parse_frame_header(&h).unwrap();
        assert_eq!(kind, 1);
        let mut body = vec![0u8; len];
        a.read_exact(&mut body).unwrap();
        seen.extend(body);
        if String::from_utf8_lossy(&seen).matches("hello\r\n").count() >= 2 {
            break;
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&seen).matches("hello\r\n").count(),
        2,
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    // ^D ends cat
    a.get_mut().write_all(b"\x04").unwrap();
    let _ = read_frames(&mut a);
    assert_eq!(f.wait().exit_code, 0);
    let log = std::fs::read_to_string(f.p("log.json")).unwrap();
    assert!(
        log.contains(r#"{"log":"hello\r\n","stream":"stdout""#),
        "{log}"
    );
}

#[test]
fn exec_pause_kill_in_running_container() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("exec");
    f.write_spec(&f.input(&["sleep", "1000"]));
    let init = f.started(&[]);
    match f.request(&Request::State) {
        Reply::State {
            status,
            pid,
            shim_pid,
            ..
        } => {
            assert_eq!(status, Status::Running);
            assert_eq!(pid, init);
            let status = std::fs::read_to_string(format!("/proc/{shim_pid}/status")).unwrap();
            let rss = status
                .lines()
                .find(|l| l.starts_with("VmRSS"))
                .unwrap_or("")
                .to_string();
            let pss = std::fs::read_to_string(format!("/proc/{shim_pid}/smaps_rollup"))
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("Pss:"))
                .unwrap_or("")
                .to_string();
            println!("berth-shim memory: {rss} / {pss}");
        }
        other => panic!("{other:?}"),
    }

    // a second start on the same state dir must not hijack the running shim
    let (code, res) = f.start(&[]);
    assert_eq!(code, 125, "{res:?}");
    assert!(matches!(
        f.request(&Request::State),
        Reply::State {
            status: Status::Running,
            ..
        }
    ));

    let exec = |id: &str, args: &[&str]| {
        f.connect(&Request::Exec(ExecSpec {
            id: id.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["FOO=bar".into()],
            ..Default::default()
        }))
    };
    let (mut r, reply) = exec(
        "e1",
        &[
            "sh",
            "-c",
            "echo out $FOO $(hostname); echo err >&2; exit 7",
        ],
    );
    assert!(matches!(reply, Reply::ExecStarted { .. }), "{reply:?}");
    let (out, err, exit) = read_frames(&mut r);
    assert_eq!(out, "out bar testhost\n");
    assert_eq!(err, "err\n");
    assert_eq!(exit, Some(ExecExit { exit_code: 7 }));
    match f.request(&Request::ExecState { id: "e1".into() }) {
        Reply::ExecState {
            running, exit_code, ..
        } => assert_eq!((running, exit_code), (false, Some(7))),
        other => panic!("{other:?}"),
    }
    // exec'd processes are confined by the container's seccomp filter like the init
    let (mut r, _) = exec("e-sc", &["grep", "Seccomp:", "/proc/self/status"]);
    let (out, _, exit) = read_frames(&mut r);
    assert_eq!(out, "Seccomp:\t2\n");
    assert_eq!(exit, Some(ExecExit { exit_code: 0 }));
    let (_, reply) = exec("e2", &["nosuch"]);
    assert!(
        matches!(&reply, Reply::Error { kind: StartErrorKind::NotFound, message } if message.contains("executable file not found")),
        "{reply:?}"
    );

    // exec with stdin
    let (mut r, reply) = f.connect(&Request::Exec(ExecSpec {
        id: "e3".into(),
        args: vec!["cat".into()],
        stdin: true,
        ..Default::default()
    }));
    assert!(matches!(reply, Reply::ExecStarted { .. }));
    r.get_mut().write_all(b"piped\n").unwrap();
    r.get_mut().shutdown(std::net::Shutdown::Write).unwrap();
    let (out, _, exit) = read_frames(&mut r);
    assert_eq!(out, "piped\n");
    assert_eq!(exit, Some(ExecExit { exit_code: 0 }));

    assert_eq!(f.request(&Request::Pause), Reply::Ok);
    assert!(matches!(
        f.request(&Request::State),
        Reply::State {
            status: Status::Paused,
            ..
        }
    ));
    assert_eq!(f.request(&Request::Resume), Reply::Ok);

    // a waiter parked before the exit gets it
    let mut s = UnixStream::connect(f.p("state/shim.sock")).unwrap();
    s.write_all(b"{\"op\":\"wait\"}\n").unwrap();
    assert_eq!(
        f.request(&Request::Kill {
            signal: 9,
            all: false
        }),
        Reply::Ok
    );
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    match serde_json::from_str::<Reply>(line.trim()).unwrap() {
        Reply::Exit(x) => assert_eq!(x.exit_code, 137),
        other => panic!("{other:?}"),
    }
}

/// A failed exec leaves libcontainer helper processes behind; unreaped, they would keep the
/// container's init from dying, so a kill right after it must still end the container.
#[test]
fn kill_after_a_failed_exec_ends_the_container() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("execfail");
    f.write_spec(&f.input(&["sleep", "1000"]));
    f.started(&[]);
    let reply = f.request(&Request::Exec(ExecSpec {
        id: "bad".into(),
        args: vec!["nosuch".into()],
        ..Default::default()
    }));
    assert!(matches!(reply, Reply::Error { .. }), "{reply:?}");
    let mut s = UnixStream::connect(f.p("state/shim.sock")).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"{\"op\":\"wait\"}\n").unwrap();
    assert_eq!(
        f.request(&Request::Kill {
            signal: 9,
            all: false
        }),
        Reply::Ok
    );
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .expect("the container must exit within 10 s of the kill");
    match serde_json::from_str::<Reply>(line.trim()).unwrap() {
        Reply::Exit(x) => assert_eq!(x.exit_code, 137),
        other => panic!("{other:?}"),
    }
}

#[test]
fn oom_is_recorded() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("oom");
    let mut cfg = f.input(&[
        "sh",
        "-c",
        "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived",
    ]);
    cfg.resources = Resources {
        memory: 32 << 20,
        memory_swap: 32 << 20,
        ..Default::default()
    };
    f.write_spec(&cfg);
    f.started(&[]);
    let x = f.wait();
    assert!(x.oom_killed, "{x:?}");
    assert_eq!(x.exit_code, 137);
}

/// Writes a busybox `true` bundle to $BERTH_BENCH_DIR for manual profiling
/// (`cargo test -p berth-shim --test shim -- --ignored write_bench_bundle`).
#[test]
#[ignore]
fn write_bench_bundle() {
    let Ok(dir) = std::env::var("BERTH_BENCH_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    make_rootfs(&dir.join("rootfs"));
    std::fs::create_dir_all(dir.join("bundle")).unwrap();
    let cfg = ContainerSpecInput {
        id: "bench".into(),
        rootfs: dir.join("rootfs"),
        args: vec!["true".into()],
        hostname: "bench".into(),
        ..Default::default()
    };
    let spec = container_spec(&cfg).unwrap();
    std::fs::write(
        dir.join("bundle/config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
}

#[test]
fn survives_its_caller_and_records_unobserved_exits() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("orphan");
    f.write_spec(&f.input(&["sh", "-c", "sleep 0.3; exit 5"]));
    // start through a shell in its own process group, then kill that whole group like a
    // daemon dying with kill -9: the shim has its own session and must not care
    let mut sh = Command::new("setsid")
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "BERTH_SHIM_TIMING=1 '{}' start --id {} --bundle {} --state-dir {} --runtime-root {} \
             --log-driver none; sleep 30",
            std::env::var("BERTH_SHIM_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_berth-shim").to_string()),
            f.id,
            f.p("bundle").display(),
            f.p("state").display(),
            f.p("rt").display()
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f.p("state/init.pid").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(sh.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = sh.wait();
    let shim_pid: i32 = std::fs::read_to_string(f.p("state/shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // nobody connected: the exit is recorded anyway, and the shim goes away after lingering
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{shim_pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{shim_pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let x: ExitInfo =
        serde_json::from_slice(&std::fs::read(f.p("state/exit.json")).unwrap()).unwrap();
    assert_eq!(x.exit_code, 5);
    assert!(!f.p("state/shim.sock").exists());
    // BERTH_SHIM_TIMING's timeline (timing.rs): the shim's phases and libcontainer's steps
    let timing = f.shim_log();
    assert!(
        timing
            .lines()
            .any(|l| l.starts_with("timing ") && l.ends_with(" reported")),
        "{timing}"
    );
    assert!(timing.contains("libcontainer::"), "{timing}");
}

#[test]
fn exec_with_tty_user_and_cwd() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("exectty");
    f.write_spec(&f.input(&["sleep", "1000"]));
    f.started(&[]);
    let (mut r, reply) = f.connect(&Request::Exec(ExecSpec {
        id: "t1".into(),
        args: vec![
            "sh".into(),
            "-c".into(),
            "tty; id -u; pwd; read x; stty size".into(),
        ],
        cwd: "/tmp".into(),
        tty: true,
        stdin: true,
        user: Some(berth_shim_proto::ExecUser {
            uid: 65534,
            gid: 65534,
            additional_gids: vec![],
        }),
        console_size: Some((30, 90)),
        ..Default::default()
    }));
    assert!(matches!(reply, Reply::ExecStarted { .. }), "{reply:?}");
    // the size is set when the shim gets the pty; a resize is deterministic: do one, then
    // let the process go on
    assert_eq!(
        f.request(&Request::Resize {
            exec: Some("t1".into()),
            height: 30,
            width: 90
        }),
        Reply::Ok
    );
    r.get_mut().write_all(b"\n").unwrap();
    let (out, err, exit) = read_frames(&mut r);
    assert_eq!(err, "");
    assert_eq!(exit, Some(ExecExit { exit_code: 0 }));
    // (the tty echoes our newline wherever it lands)
    let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(&lines[1..3], &["65534", "/tmp"], "{out:?}");
    assert!(lines.contains(&"30 90"), "{out:?}");
    assert_eq!(
        f.request(&Request::Kill {
            signal: 9,
            all: true
        }),
        Reply::Ok
    );
    assert_eq!(f.wait().exit_code, 137);
}

/// Runs `args` to completion (create-only, attach, start) and returns (stdout, exit code).
fn run_capture(f: &Fixture, cfg: &ContainerSpecInput) -> (String, String, i32) {
    f.write_spec(cfg);
    f.started(&["--create-only"]);
    let (mut a, _) = f.connect(&Request::Attach {
        stdin: false,
        stdout: true,
        stderr: true,
        stdin_once: false,
    });
    assert_eq!(f.request(&Request::Start), Reply::Ok);
    let (out, err, _) = read_frames(&mut a);
    (out, err, f.wait().exit_code)
}

#[test]
fn docker_security_defaults_hold_in_a_real_container() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("secdef");
    let script = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; \
        echo timer_list=$(wc -c < /proc/timer_list) $(stat -c %t:%T /proc/timer_list); \
        (echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo sys=rw || echo sys=ro; \
        echo shm=$(df -k /dev/shm | tail -1 | awk '{print $2}'); \
        echo host=$(hostname) etc=$(cat /etc/hostname); \
        echo asound=$(ls /proc/asound | wc -l); \
        touch /rootfile && echo root=rw; \
        echo nofile=$(ulimit -n); \
        mknod /tmp/sda b 8 0 && (head -c1 /tmp/sda >/dev/null 2>&1 && echo blk=read || echo blk=denied); \
        echo uid=$(id -u)";
    let mut cfg = f.input(&["sh", "-c", script]);
    cfg.ulimits = vec![berth_runtime::Ulimit {
        name: "nofile".into(),
        soft: 1024,
        hard: 2048,
    }];
    let (out, err, code) = run_capture(&f, &cfg);
    assert_eq!(code, 0, "{out}\n{err}");
    let has = |l: &str| out.lines().any(|x| x.trim() == l);
    assert!(has("CapEff:\t00000000a80425fb"), "{out}");
    assert!(has("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(has("Seccomp:\t2"), "{out}");
    assert!(has("NoNewPrivs:\t0"), "{out}");
    assert!(has("timer_list=0 1:3"), "{out}\n{err}"); // masked by /dev/null
    assert!(has("sys=ro"), "{out}");
    assert!(has("shm=65536"), "{out}");
    assert!(has("host=testhost etc=testhost"), "{out}");
    assert!(has("asound=0"), "{out}");
    assert!(has("root=rw"), "{out}");
    assert!(has("nofile=1024"), "{out}");
    assert!(has("blk=denied"), "{out}");
    assert!(has("uid=0"), "{out}");

    // read-only rootfs, a non-root user, no-new-privileges and a dropped cap
    let g = Fixture::new("secopt");
    let mut cfg = g.input(&[
        "sh",
        "-c",
        "touch /x 2>/dev/null && echo root=rw || echo root=ro; echo uid=$(id -u):$(id -g); \
         grep -E '^(NoNewPrivs|CapEff):' /proc/self/status",
    ]);
    cfg.readonly_rootfs = true;
    cfg.user = "nobody".into();
    cfg.no_new_privileges = true;
    let (out, err, code) = run_capture(&g, &cfg);
    assert_eq!(code, 0, "{out}\n{err}");
    let has = |l: &str| out.lines().any(|x| x.trim() == l);
    assert!(has("root=ro"), "{out}");
    assert!(has("uid=65534:65534"), "{out}");
    assert!(has("NoNewPrivs:\t1"), "{out}");
    // a non-root user has no effective caps (like Docker)
    assert!(has("CapEff:\t0000000000000000"), "{out}");
}

#[test]
fn stdin_once_closes_container_stdin_and_created_containers_can_be_killed() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("stdin");
    f.write_spec(&f.input(&["sh", "-c", "cat; echo done"]));
    f.started(&["--create-only", "--stdin"]);
    assert!(matches!(
        f.request(&Request::State),
        Reply::State {
            status: Status::Created,
            ..
        }
    ));
    let (mut a, _) = f.connect(&Request::Attach {
        stdin: true,
        stdout: true,
        stderr: true,
        stdin_once: true,
    });
    assert_eq!(f.request(&Request::Start), Reply::Ok);
    assert!(matches!(f.request(&Request::Start), Reply::Error { .. }));
    a.get_mut().write_all(b"abc\n").unwrap();
    a.get_mut().shutdown(std::net::Shutdown::Write).unwrap();
    let (out, _, _) = read_frames(&mut a);
    assert_eq!(out, "abc\ndone\n");
    assert_eq!(f.wait().exit_code, 0);

    let g = Fixture::new("created-kill");
    g.write_spec(&g.input(&["true"]));
    g.started(&["--create-only"]);
    assert_eq!(
        g.request(&Request::Kill {
            signal: 9,
            all: false
        }),
        Reply::Ok
    );
    assert_eq!(g.wait().exit_code, 137);
    // the shim deletes the container right after it has sent the exit, not before
    let gone = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while g.p("rt").join(&g.id).exists() && std::time::Instant::now() < gone {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!g.p("rt").join(&g.id).exists());
}

/// Pids of the `berth-shim pool` processes whose command line names `tag`.
fn pooled_pids(tag: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&c).contains(tag)
            && !String::from_utf8_lossy(
                &std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default(),
            )
            .contains(") Z")
        {
            out.push(pid);
        }
    }
    out
}

fn wait_gone(tag: &str) -> bool {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while Instant::now() < deadline {
        if pooled_pids(tag).is_empty() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// `berth-shim pool`: the waiting shim makes its own session without forking (it is the
/// spawned process itself, as berthd spawns it), exits on EOF, and, given the `start` flags on stdin, creates and starts the container like `start`
/// without leaking the pool's pipes into the container or keeping them itself.
#[test]
fn pooled_shim_exits_on_eof_and_serves_a_container() {
    if !can_run() {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_berth-shim");
    let f = Fixture::new("pool");
    let tag = f.p("pool-tag").display().to_string();
    let pool = |tag: &str| {
        Command::new(bin)
            .args(["pool", "--exec-root", tag])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };

    // nobody ever asks: EOF ends it
    let idle_tag = format!("{tag}-idle");
    // (take stdin first: Child::wait closes it)
    let mut c = pool(&idle_tag);
    let idle_stdin = c.stdin.take();
    // (its command line shows once the exec is through: poll)
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while pooled_pids(&idle_tag).is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        pooled_pids(&idle_tag),
        [c.id() as i32],
        "the spawned shim waits, no fork"
    );
    let session = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.id())).unwrap();
        // after "(comm) ": state ppid pgrp session
        stat.rsplit_once(") ")
            .unwrap()
            .1
            .split(' ')
            .nth(3)
            .unwrap()
            .to_string()
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while session() != c.id().to_string() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(session(), c.id().to_string(), "it leads its own session");
    drop(idle_stdin);
    assert!(c.wait().unwrap().success(), "EOF ends it");
    assert!(wait_gone(&idle_tag), "the pooled shim outlived its pipe");

    // a container through the pool
    f.write_spec(&f.input(&["sh", "-c", "ls /proc/1/fd; sleep 0.5; exit 4"]));
    let mut c = pool(&tag);
    let mut stdin = c.stdin.take().unwrap();
    let flags: Vec<String> = [
        "--id",
        &f.id,
        "--bundle",
        &f.p("bundle").display().to_string(),
        "--state-dir",
        &f.p("state").display().to_string(),
        "--runtime-root",
        &f.p("rt").display().to_string(),
        "--log-driver",
        "json-file",
        "--log-path",
        &f.p("log.json").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    stdin
        .write_all(format!("{}\n", serde_json::to_string(&flags).unwrap()).as_bytes())
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let res: StartResult = serde_json::from_str(line.trim()).unwrap();
    let StartResult::Started { shim_pid, .. } = res else {
        panic!("pooled start failed: {res:?}; shim.log: {}", f.shim_log());
    };
    // the shim keeps neither of the pool's pipes: its stdio is /dev/null and shim.log
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{shim_pid}/fd")) {
        for e in rd.flatten() {
            let fd: i32 = e.file_name().to_string_lossy().parse().unwrap_or(-1);
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            if fd <= 2 {
                assert!(
                    !target.to_string_lossy().starts_with("pipe:"),
                    "fd {fd} of the shim is still a pipe: {target:?}"
                );
            }
        }
    }
    drop(stdin);
    let x = f.wait();
    assert_eq!(x.exit_code, 4);
    // the container's init holds its stdio only
    let log = std::fs::read_to_string(f.p("log.json")).unwrap();
    let fds: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["log"].as_str().map(|s| s.trim().to_string()))
        .collect();
    assert_eq!(fds, ["0", "1", "2"], "fds of the container: {log}");
    // the shim is our child here (no detach fork): the fixture kills it, we reap it
    drop(f);
    let _ = c.wait();
}
