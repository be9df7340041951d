//! `docker build` with the legacy builder (`DOCKER_BUILDKIT=0`, the real docker CLI) against a
//! throwaway berthd: realistic Dockerfiles on a locally imported busybox whose images then run,
//! the cache over a series of edits, errors (malformed Dockerfile, COPY outside the context),
//! the cache across a daemon restart and `builder prune`. Needs root, busybox-static and the
//! docker CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_e2e::{Fixture, OutputExt, can_run_containers as can_run, scratch};

/// `DOCKER_BUILDKIT=0 docker build ...` against the fixture's daemon.
fn build(f: &Fixture, ctx: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("docker");
    c.arg("build")
        .args(args)
        .arg(ctx)
        .env("DOCKER_HOST", f.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", f.dir.join("docker-config"))
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .stdin(Stdio::null());
    c.output().expect("run docker build")
}

/// A context directory with these files (path, content).
fn context(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = scratch(tag);
    for (p, c) in files {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, c).expect("write");
    }
    dir
}

fn run(f: &Fixture, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    f.out(&a)
}

#[test]
fn basic_build_runs_and_writes_config_and_history() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ctx = context(
        "build-basic",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 LABEL org.example.name=\"basic app\"\n\
                 ENV APP=/app GREETING=hello\n\
                 WORKDIR $APP\n\
                 COPY hello.txt .\n\
                 RUN echo \"$GREETING from run\" > run.txt && cat run.txt\n\
                 EXPOSE 8080 53/udp\n\
                 USER nobody\n\
                 STOPSIGNAL SIGTERM\n\
                 VOLUME /data\n\
                 HEALTHCHECK --interval=30s --timeout=5s CMD true\n\
                 CMD [\"cat\", \"hello.txt\", \"run.txt\"]\n",
            ),
            ("hello.txt", "hello from the context\n"),
        ],
    );
    let out = build(&f, &ctx, &["-t", "basic:1"]);
    let so = out.ok().stdout_str();
    assert!(so.contains("Step 1/12 : FROM busybox"), "{so}");
    assert!(so.contains("hello from run"), "{so}");
    assert!(so.contains("Successfully tagged basic:1"), "{so}");

    let got = run(&f, &["basic:1"]);
    assert_eq!(got, "hello from the context\nhello from run\n");
    let cfg = f.out(&["image", "inspect", "-f", "{{json .Config}}", "basic:1"]);
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("config json");
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["User"], "nobody");
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(cfg["Labels"]["org.example.name"], "basic app");
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object());
    assert!(cfg["ExposedPorts"]["53/udp"].is_object());
    assert!(cfg["Volumes"]["/data"].is_object());
    assert_eq!(cfg["Healthcheck"]["Test"][0], "CMD-SHELL");
    assert_eq!(cfg["Healthcheck"]["Interval"], 30_000_000_000i64);
    assert_eq!(cfg["Cmd"][0], "cat");
    let env: Vec<String> = serde_json::from_value(cfg["Env"].clone()).expect("env");
    assert!(env.contains(&"APP=/app".to_owned()), "{env:?}");

    let hist = f.out(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "basic:1",
    ]);
    assert!(
        hist.contains("/bin/sh -c #(nop)  CMD [\"cat\" \"hello.txt\" \"run.txt\"]"),
        "{hist}"
    );
    assert!(
        hist.contains("/bin/sh -c echo \"$GREETING from run\" > run.txt && cat run.txt"),
        "{hist}"
    );
    assert!(hist.contains("/bin/sh -c #(nop) WORKDIR /app"), "{hist}");
    // no intermediate container is left behind
    assert_eq!(f.ids(), Vec::<String>::new());
}
