//! `berth build` (our CLI) against a throwaway berthd: the legacy builder's output and exit
//! codes, which files of the context reach the daemon (`.dockerignore`), contexts and
//! Dockerfiles from stdin or from outside the context, `-q`/`--iidfile`, `--output`, and the
//! cache shared with uploads by the real docker CLI. Needs root, busybox-static and the docker
//! CLI (for the fixture's import).

use std::path::Path;
use std::process::Output;

use berth_e2e::{Fixture, OutputExt, ScratchDir, can_run_containers as can_run};

fn berth_build(f: &Fixture, args: &[&str], ctx: &Path) -> Output {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    let ctx = ctx.display().to_string();
    a.push(&ctx);
    f.d.berth(&a)
}

/// The image ID in `Successfully built <id>`.
fn built_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("no 'Successfully built' in:\n{stdout}"))
        .trim()
        .to_owned()
}

#[test]
fn output_tags_dockerignore_quiet_and_cache_shared_with_docker() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ctx = ScratchDir::with_files(
        "bcli-basic",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /ctx/\nRUN find /ctx | sort\n",
            ),
            (".dockerignore", "*.log\nsecret\n!secret/keep\n"),
            ("app.txt", "app"),
            ("debug.log", "noise"),
            ("secret/key", "k"),
            ("secret/keep", "kept"),
        ],
    );
    let out = berth_build(&f, &["-t", "bcli:1", "-t", "bcli-two"], &ctx);
    let so = out.ok().stdout_str();
    assert!(
        so.starts_with("Sending build context to Docker daemon "),
        "{so}"
    );
    assert!(so.contains("Step 1/3 : FROM busybox\n ---> "), "{so}");
    assert!(so.contains("Step 2/3 : COPY . /ctx/\n"), "{so}");
    assert!(so.contains("Step 3/3 : RUN find /ctx | sort\n"), "{so}");
    // What reached the daemon: excluded files are gone, the exception and the build files stay.
    for want in [
        "/ctx/app.txt",
        "/ctx/secret/keep",
        "/ctx/Dockerfile",
        "/ctx/.dockerignore",
    ] {
        assert!(so.lines().any(|l| l == want), "{want} missing:\n{so}");
    }
    for gone in ["/ctx/debug.log", "/ctx/secret/key"] {
        assert!(!so.lines().any(|l| l == gone), "{gone} was sent:\n{so}");
    }
    let id = built_id(&so);
    assert_eq!(id.len(), 12, "{so}");
    assert!(so.contains("Successfully tagged bcli:1\n"), "{so}");
    assert!(so.contains("Successfully tagged bcli-two:latest\n"), "{so}");
    assert!(out.stderr_str().is_empty(), "{}", out.stderr_str());

    // Rebuilt: every step from the cache, same image; -q prints the ID only; --iidfile too.
    let iid_dir = ScratchDir::new("bcli-iid");
    let iid = iid_dir.join("iid");
    let iid_s = iid.display().to_string();
    let q = berth_build(&f, &["-q", "--iidfile", &iid_s], &ctx);
    let qs = q.ok().stdout_str();
    assert!(qs.starts_with(&format!("sha256:{id}")), "{qs}");
    assert_eq!(qs.lines().count(), 1, "{qs}");
    assert_eq!(std::fs::read_to_string(&iid).expect("iidfile"), qs.trim());
    let again = berth_build(&f, &[], &ctx).ok().stdout_str();
    assert_eq!(again.matches(" ---> Using cache").count(), 2, "{again}");
    assert_eq!(built_id(&again), id);

    // The real docker CLI's upload of the same context hits the same cache entries.
    let docker =
        f.d.docker(&["build", &ctx.display().to_string()])
            .ok()
            .stdout_str();
    assert_eq!(docker.matches(" ---> Using cache").count(), 2, "{docker}");
    // An edit of an excluded file changes nothing; an edit of a sent file misses from COPY on.
    std::fs::write(ctx.join("debug.log"), "more noise").expect("write");
    let so = berth_build(&f, &[], &ctx).ok().stdout_str();
    assert_eq!(so.matches(" ---> Using cache").count(), 2, "{so}");
    std::fs::write(ctx.join("app.txt"), "app v2").expect("write");
    let so = berth_build(&f, &[], &ctx).ok().stdout_str();
    assert_eq!(so.matches(" ---> Using cache").count(), 0, "{so}");
}

#[test]
fn stdin_outside_dockerfile_outputs_and_failures() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();

    // A bare Dockerfile on stdin: no context at all.
    let out = f.d.berth_stdin(
        &["build", "-t", "bcli-stdin", "-"],
        Some(b"FROM busybox\nRUN echo from-stdin > /s\n"),
    );
    let so = out.ok().stdout_str();
    assert!(so.contains("Step 2/2 : RUN echo from-stdin > /s"), "{so}");
    assert!(so.contains("Successfully tagged bcli-stdin:latest"), "{so}");

    // A context tar on stdin.
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", &b"FROM busybox\nCOPY a.txt /a.txt\n"[..]),
        ("a.txt", b"from-tar"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).expect("tar");
    }
    let tar = tar.into_inner().expect("tar");
    let out =
        f.d.berth_stdin(&["build", "-t", "bcli-tar", "-"], Some(&tar));
    out.ok();

    // A Dockerfile outside the context (sent under a generated name) and one from stdin (-f -).
    let ctx = ScratchDir::with_files("bcli-ctx", &[("data.txt", "data\n")]);
    let outside = ScratchDir::with_files(
        "bcli-outside",
        &[("Dockerfile.out", "FROM busybox\nCOPY . /c/\nRUN ls -A /c\n")],
    );
    let df = outside.join("Dockerfile.out").display().to_string();
    let so = berth_build(&f, &["-f", &df], &ctx).ok().stdout_str();
    // The generated Dockerfile name is ignored by COPY ., as with the docker CLI.
    assert!(so.contains("\ndata.txt\n"), "{so}");
    assert!(!so.contains(".dockerfile."), "{so}");
    let ctx_s = ctx.display().to_string();
    let out = f.d.berth_stdin(
        &["build", "-f", "-", &ctx_s],
        Some(b"FROM busybox\nCOPY data.txt /d\nRUN cat /d\n"),
    );
    let so = out.ok().stdout_str();
    assert!(so.contains("\ndata\n"), "{so}");

    // --output: the image's filesystem into a directory, or a tar.
    let dest = ScratchDir::new("bcli-out");
    let local = format!("type=local,dest={}", dest.join("fs").display());
    let tarfile = dest.join("fs.tar");
    let tar_out = format!("type=tar,dest={}", tarfile.display());
    let out = f.d.berth_stdin(
        &[
            "build", "--output", &local, "--output", &tar_out, "-f", "-", &ctx_s,
        ],
        Some(b"FROM busybox\nCOPY data.txt /out/data.txt\n"),
    );
    out.ok();
    assert_eq!(
        std::fs::read_to_string(dest.join("fs/out/data.txt")).expect("exported file"),
        "data\n"
    );
    let mut ar = tar::Archive::new(std::fs::File::open(&tarfile).expect("tar output"));
    let names: Vec<String> = ar
        .entries()
        .expect("entries")
        .filter_map(|e| Some(e.ok()?.path().ok()?.display().to_string()))
        .collect();
    assert!(names.iter().any(|n| n == "out/data.txt"), "{names:?}");
    // No container is left behind by the export.
    assert_eq!(f.ids(), Vec::<String>::new());

    // A failing RUN: docker's message on stderr, and the RUN's status as the exit code
    // (dockerd sends it as errorDetail.code; docker build exits with it).
    let out =
        f.d.berth_stdin(&["build", "-"], Some(b"FROM busybox\nRUN exit 3\n"));
    assert_eq!(out.code(), 3, "{}", out.stderr_str());
    assert!(
        out.stderr_str()
            .contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{}",
        out.stderr_str()
    );
    f.d.remove_all_containers();
    // A malformed Dockerfile: exit 1, the line named.
    let out =
        f.d.berth_stdin(&["build", "-"], Some(b"FROM busybox\nRUNN x\n"));
    assert_eq!(out.code(), 1);
    let se = out.stderr_str();
    assert!(
        se.contains("Error response from daemon:")
            && se.contains("line 2: unknown instruction: RUNN"),
        "{se}"
    );
    // Local refusals: a missing context, a missing -f, stdin twice, a bad tag (125).
    let out = f.d.berth(&["build", "/nonexistent/bcli"]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr_str()
            .contains("unable to prepare context: path \"/nonexistent/bcli\" not found")
    );
    let out = f.d.berth(&["build", "-f", "nope.Dockerfile", &ctx_s]);
    assert!(
        out.stderr_str()
            .contains("Cannot locate specified Dockerfile: nope.Dockerfile")
    );
    let out = f.d.berth_stdin(&["build", "-f", "-", "-"], Some(b""));
    assert!(
        out.stderr_str()
            .contains("can't use stdin for both build context and dockerfile")
    );
    let out = f.d.berth(&["build", "-t", "Bad:Tag", &ctx_s]);
    assert_eq!(out.code(), 125, "{}", out.stderr_str());
}

/// `berth` with its own client config dir (credentials).
fn berth_cfg(f: &Fixture, cfg: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut c = Command::new(berth_e2e::bin_dir().join("berth"));
    c.args(args)
        .env("BERTH_HOST", f.d.host())
        .env("DOCKER_CONFIG", cfg)
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn berth");
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(stdin.unwrap_or_default());
    }
    child.wait_with_output().expect("wait berth")
}

#[test]
fn from_a_private_registry_uses_the_stored_login() {
    if !can_run() || !berth_e2e::registry::have_registry() {
        return;
    }
    let reg = berth_e2e::registry::Registry::start_with(Some(("alice", "s3cret")));
    let f = Fixture::new();
    let host = reg.host();
    let cfg = f.d.dir.join("berth-config");
    let name = format!("{host}/private/bb:1");
    f.d.berth(&["tag", "busybox:latest", &name]).ok();
    berth_cfg(
        &f,
        &cfg,
        &["login", "-u", "alice", "--password-stdin", &host],
        Some(b"s3cret\n"),
    )
    .ok();
    berth_cfg(&f, &cfg, &["push", &name], None).ok();
    f.d.berth(&["rmi", &name]).ok();
    let df = format!("FROM {name}\nRUN echo private-base\n");
    let ctx = ScratchDir::with_files("bcli-private", &[("Dockerfile", df.as_str())]);
    let ctx_s = ctx.display().to_string();
    // Without credentials the base can't be pulled; with the stored login (sent as
    // X-Registry-Config) it can.
    let none = ScratchDir::new("bcli-nocreds");
    let out = berth_cfg(&f, &none, &["build", &ctx_s], None);
    assert_ne!(out.code(), 0, "{}", out.stdout_str());
    let out = berth_cfg(&f, &cfg, &["build", &ctx_s], None);
    let so = out.ok().stdout_str();
    assert!(so.contains("\nprivate-base\n"), "{so}");
}

#[test]
fn secret_reaches_run_but_no_layer() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let dir = ScratchDir::new("bcli-secret");
    std::fs::write(dir.join("tok"), "hunter2").expect("write");
    let ctx = ScratchDir::with_files(
        "bcli-secret-ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /seen-len && cat /seen-len\n",
        )],
    );
    let secret = format!("id=tok,src={}", dir.join("tok").display());
    let out = berth_build(&f, &["--secret", &secret, "-t", "bcli-secret"], &ctx);
    let so = out.ok().stdout_str();
    assert!(so.lines().any(|l| l.trim() == "7"), "{so}");
    // The RUN saw it, the image holds no trace of it, nor does its history.
    let hist = f.out(&["history", "--no-trunc", "bcli-secret"]);
    assert!(!hist.contains("hunter2"), "{hist}");
    let saved = f.d.docker(&["save", "bcli-secret"]).ok().stdout.clone();
    assert!(
        !saved.windows(7).any(|w| w == b"hunter2"),
        "the secret is in a layer"
    );
}

#[test]
fn progress_modes() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ctx = ScratchDir::with_files(
        "bcli-progress",
        &[(
            "Dockerfile",
            "FROM busybox\nENV A=1\nRUN for i in 1 2 3; do echo out-$i; done\n",
        )],
    );
    // tty: the compact view; on a pipe only its lasting lines show: one per step, no
    // bookkeeping lines (the in-place tail needs a terminal).
    let so = berth_build(&f, &["--progress=tty", "-t", "bcli-p"], &ctx)
        .ok()
        .stdout_str();
    let steps: Vec<&str> = so.lines().filter(|l| l.starts_with("Step ")).collect();
    assert_eq!(steps.len(), 3, "{so}");
    assert!(
        steps[2].starts_with("Step 3/3 : RUN for i in 1 2 3; do echo out-$i; done  "),
        "{so}"
    );
    assert!(!so.contains(" ---> ") && !so.contains("out-1"), "{so}");
    assert!(so.contains("Successfully tagged bcli-p:latest"), "{so}");
    // cached the second time
    let so = berth_build(&f, &["--progress=tty"], &ctx).ok().stdout_str();
    assert!(
        so.contains("Step 3/3 : RUN for i in 1 2 3; do echo out-$i; done  CACHED"),
        "{so}"
    );
    // plain (and auto on a pipe): docker's full stream
    for mode in ["--progress=plain", "--progress=auto"] {
        let so = berth_build(&f, &[mode, "--no-cache"], &ctx)
            .ok()
            .stdout_str();
        assert!(
            so.contains("\n ---> Running in ") && so.contains("\nout-3\n"),
            "{so}"
        );
    }
    // quiet: the ID only
    let so = berth_build(&f, &["--progress=quiet"], &ctx)
        .ok()
        .stdout_str();
    assert!(
        so.trim().starts_with("sha256:") && so.lines().count() == 1,
        "{so}"
    );
    // rawjson: the daemon's messages
    let so = berth_build(&f, &["--progress=rawjson"], &ctx)
        .ok()
        .stdout_str();
    assert!(so.lines().all(|l| l.starts_with('{')), "{so}");
    // a failed step in the compact view: its whole output, then docker's error and status
    let bad = ScratchDir::with_files(
        "bcli-progress-bad",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN for i in $(seq 1 10); do echo line-$i; done; exit 7\n",
        )],
    );
    let out = berth_build(&f, &["--progress=tty"], &bad);
    assert_eq!(out.code(), 7, "{}", out.stderr_str());
    let so = out.stdout_str();
    assert!(
        so.contains("  ERROR\n") && so.contains("    line-1\n") && so.contains("    line-10\n"),
        "{so}"
    );
    assert!(
        out.stderr_str().contains("returned a non-zero code: 7"),
        "{}",
        out.stderr_str()
    );
    // an unknown mode is refused before anything is sent
    let out = berth_build(&f, &["--progress=fancy"], &ctx);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr_str().contains("invalid progress mode"),
        "{}",
        out.stderr_str()
    );
}
