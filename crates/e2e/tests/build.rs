//! `docker build` with the legacy builder (`DOCKER_BUILDKIT=0`, the real docker CLI) against a
//! throwaway berthd: realistic Dockerfiles on a locally imported busybox whose images then run,
//! the cache over a series of edits, errors (malformed Dockerfile, COPY outside the context),
//! the cache across a daemon restart and `builder prune`. Needs root, busybox-static and the
//! docker CLI.

use std::path::Path;
use std::process::{Command, Output};

use berth_e2e::docker_build_at as build_at;
use berth_e2e::{Fixture, OutputExt, ScratchDir, can_run_containers as can_run};

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
    let ctx = ScratchDir::with_files(
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
    let out = f.docker_build(&ctx, &["-t", "basic:1"]);
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

#[test]
fn multi_stage_target_args_onbuild_heredoc() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ctx = ScratchDir::with_files(
        "build-multi",
        &[
            (
                "Dockerfile",
                "ARG BASE=busybox\n\
                 ARG VERSION=1.0\n\
                 FROM $BASE AS builder\n\
                 ARG VERSION\n\
                 RUN mkdir -p /out && echo \"v$VERSION\" > /out/version\n\
                 RUN <<EOF\n\
                 echo from heredoc > /out/heredoc\n\
                 EOF\n\
                 \n\
                 FROM busybox AS unused\n\
                 RUN echo THIS-STAGE-MUST-NOT-RUN && exit 1\n\
                 \n\
                 FROM busybox AS base\n\
                 ONBUILD RUN echo onbuild-ran > /onbuild\n\
                 \n\
                 FROM base AS final\n\
                 COPY --from=builder /out/ /app/\n\
                 COPY --from=0 /out/version /app/v2\n\
                 COPY <<EOF /app/note\n\
                 note $VERSION\n\
                 EOF\n\
                 ENTRYPOINT [\"cat\"]\n\
                 CMD [\"/app/version\"]\n",
            ),
            ("dummy", "x"),
        ],
    );
    let out = f.docker_build(
        &ctx,
        &[
            "-t",
            "multi:1",
            "--build-arg",
            "VERSION=2.5",
            "--build-arg",
            "NOT_DECLARED=1",
        ],
    );
    let so = out.ok().stdout_str();
    assert!(!so.contains("THIS-STAGE-MUST-NOT-RUN"), "{so}");
    assert!(
        so.contains("[Warning] One or more build-args [NOT_DECLARED] were not consumed"),
        "{so}"
    );
    assert!(so.contains("# Executing 1 build trigger"), "{so}");
    assert_eq!(run(&f, &["multi:1"]), "v2.5\n");
    assert_eq!(run(&f, &["multi:1", "/app/heredoc"]), "from heredoc\n");
    assert_eq!(run(&f, &["multi:1", "/app/v2"]), "v2.5\n");
    assert_eq!(run(&f, &["multi:1", "/onbuild"]), "onbuild-ran\n");
    // an ARG declared only globally is not visible in a stage
    assert_eq!(run(&f, &["multi:1", "/app/note"]), "note \n");

    // --target stops at the named stage
    let out = f.docker_build(&ctx, &["-t", "multi:builder", "--target", "builder"]);
    out.ok();
    assert_eq!(
        run(
            &f,
            &["--entrypoint", "cat", "multi:builder", "/out/version"]
        ),
        "v1.0\n"
    );
}

#[test]
fn add_tar_chown_chmod_and_wildcards() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ctx = ScratchDir::with_files(
        "build-add",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 ADD files.tar.gz /opt/\n\
                 COPY --chown=nobody:nogroup --chmod=600 secret.conf /etc/app/\n\
                 COPY *.txt /txt/\n\
                 COPY dir /copied\n\
                 RUN stat -c '%U:%G %a' /etc/app/secret.conf && ls /txt && cat /opt/inner/a /copied/sub/b\n",
            ),
            ("secret.conf", "s=1\n"),
            ("one.txt", "1"),
            ("two.txt", "2"),
            ("dir/sub/b", "from dir\n"),
        ],
    );
    // a gzip tar made with the host's tar
    let src = ScratchDir::new("build-add-src");
    std::fs::create_dir_all(src.join("inner")).expect("mkdir");
    std::fs::write(src.join("inner/a"), "from tar\n").expect("write");
    let st = Command::new("tar")
        .args(["-czf"])
        .arg(ctx.join("files.tar.gz"))
        .arg("-C")
        .arg(&*src)
        .arg("inner")
        .status()
        .expect("tar");
    assert!(st.success());
    let out = f.docker_build(&ctx, &["-t", "add:1"]);
    let so = out.ok().stdout_str();
    assert!(so.contains("nobody:nogroup 600"), "{so}");
    assert!(so.contains("one.txt\ntwo.txt"), "{so}");
    assert!(so.contains("from tar\nfrom dir\n"), "{so}");
}

#[test]
fn errors_name_the_line_and_copy_stays_in_the_context() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ctx = ScratchDir::with_files(
        "build-err",
        &[("Dockerfile", "FROM busybox\nRUNN echo hi\n")],
    );
    let out = f.docker_build(&ctx, &[]);
    assert_ne!(out.code(), 0);
    let se = out.stderr_str();
    assert!(se.contains("line 2"), "{se}");
    assert!(se.to_lowercase().contains("unknown instruction"), "{se}");

    let ctx = ScratchDir::with_files(
        "build-escape",
        &[("Dockerfile", "FROM busybox\nCOPY ../secret /x\n")],
    );
    let out = f.docker_build(&ctx, &[]);
    assert_ne!(out.code(), 0);
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(all.contains("outside the build context"), "{all}");

    // a symlink pointing out of the context resolves inside it (here: to nothing)
    let ctx = ScratchDir::with_files(
        "build-link",
        &[("Dockerfile", "FROM busybox\nCOPY link /x\n")],
    );
    std::os::unix::fs::symlink("/etc/shadow", ctx.join("link")).expect("symlink");
    let out = f.docker_build(&ctx, &[]);
    assert_ne!(out.code(), 0);

    // a failing RUN reports its command and code
    let ctx = ScratchDir::with_files(
        "build-fail",
        &[("Dockerfile", "FROM busybox\nRUN exit 3\n")],
    );
    let out = f.docker_build(&ctx, &[]);
    assert_ne!(out.code(), 0);
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        all.contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{all}"
    );
    // as with dockerd, the failed step's container stays (for debugging) unless --force-rm
    assert_eq!(f.ids().len(), 1);
    f.d.remove_all_containers();
    let out = f.docker_build(&ctx, &["--force-rm"]);
    assert_ne!(out.code(), 0);
    assert_eq!(f.ids(), Vec::<String>::new());
}

fn cache_hits(out: &Output) -> usize {
    out.stdout_str().matches("Using cache").count()
}

const CACHE_DF: &str = "FROM busybox\n\
                        ARG FLAVOR=plain\n\
                        COPY a.txt /a.txt\n\
                        RUN cat /a.txt > /copy\n\
                        COPY . /ctx\n\
                        RUN echo $FLAVOR > /flavor\n\
                        CMD [\"cat\", \"/flavor\"]\n";

/// The cache over a series of edits, as counts of "Using cache" per build.
fn edit_series(host: &str, dir: &Path, tag: &str) -> Vec<usize> {
    let ctx = ScratchDir::with_files(
        tag,
        &[
            ("Dockerfile", CACHE_DF),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            (".dockerignore", "ignored.txt\n"),
        ],
    );
    let b = |args: &[&str]| {
        let mut a = vec!["--network", "none"];
        a.extend_from_slice(args);
        let o = build_at(host, dir, &ctx, &a);
        o.ok();
        cache_hits(&o)
    };
    let mut hits = vec![b(&[]), b(&[])];
    // an ignored file changes nothing
    std::fs::write(ctx.join("ignored.txt"), "x").expect("write");
    hits.push(b(&[]));
    // a file only `COPY .` sees
    std::fs::write(ctx.join("b.txt"), "b2\n").expect("write");
    hits.push(b(&[]));
    // the first COPY's file: everything after it misses
    std::fs::write(ctx.join("a.txt"), "a2\n").expect("write");
    hits.push(b(&[]));
    // a build arg used by the RUN
    hits.push(b(&["--build-arg", "FLAVOR=spicy"]));
    hits.push(b(&["--build-arg", "FLAVOR=spicy"]));
    // .dockerignore now lets ignored.txt in
    std::fs::write(ctx.join(".dockerignore"), "").expect("write");
    hits.push(b(&["--build-arg", "FLAVOR=spicy"]));
    // a RUN line changes
    std::fs::write(
        ctx.join("Dockerfile"),
        CACHE_DF.replace("cat /a.txt > /copy", "cat /a.txt > /copy2"),
    )
    .expect("write");
    hits.push(b(&["--build-arg", "FLAVOR=spicy"]));
    hits.push(b(&["--no-cache", "--build-arg", "FLAVOR=spicy"]));
    hits
}

#[test]
fn cache_hits_follow_edits_like_docker() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ours = edit_series(&f.host(), &f.dir, "build-cache");
    // a RUN after an ARG misses when the arg's value changes, even if it does not use it
    assert_eq!(ours, vec![0, 6, 6, 3, 1, 2, 6, 3, 2, 0], "berth's hits");
    if let Some(r) = berth_e2e::RefDocker::start() {
        r.docker_stdin(
            &["import", "-", "busybox:latest"],
            &berth_e2e::archive::busybox_rootfs(),
        )
        .ok();
        let theirs = edit_series(&r.host(), &r.dir, "build-cache-ref");
        assert_eq!(ours, theirs, "berth vs dockerd");
    }
}

#[test]
fn cache_survives_restart_and_prune_empties_it() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new();
    let ctx = ScratchDir::with_files(
        "build-restart",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log\nRUN echo done\n",
        )],
    );
    f.docker_build(&ctx, &["-t", "r:1"]).ok();
    f.restart();
    let out = f.docker_build(&ctx, &["-t", "r:1"]);
    assert_eq!(cache_hits(out.ok()), 2, "{}", out.stdout_str());
    let df = f.out(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.contains("Build Cache 3"), "{df}");
    let pr = f.out(&["builder", "prune", "-f"]);
    assert!(pr.contains("Total"), "{pr}");
    let out = f.docker_build(&ctx, &["-t", "r:1"]);
    let so = out.ok().stdout_str();
    assert_eq!(cache_hits(&out), 0, "{so}");
    // the cache mount was emptied too: one line again
    assert!(so.contains("\n1\n"), "{so}");
}

/// A one-file HTTP server on loopback: answers every request with `body`; returns the port.
fn serve_once_per_request(body: &'static [u8]) -> u16 {
    berth_e2e::http::serve(move |_| ("200 OK", body.to_vec()))
}

#[test]
fn add_url_with_checksum() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let port = serve_once_per_request(b"downloaded\n");
    // not the sha256 of "downloaded\n"
    let sum = format!("sha256:{}", "0".repeat(64));
    let real = {
        use sha2::Digest as _;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(b"downloaded\n"))
        )
    };
    let df = format!(
        "FROM busybox\nADD --checksum={real} http://127.0.0.1:{port}/files/data.txt /dl/\nRUN cat /dl/data.txt && stat -c %a /dl/data.txt\n"
    );
    let ctx = ScratchDir::with_files("build-url", &[("Dockerfile", df.as_str())]);
    let so = f.docker_build(&ctx, &[]).ok().stdout_str();
    assert!(so.contains("downloaded\n600\n"), "{so}");
    let df = format!("FROM busybox\nADD --checksum={sum} http://127.0.0.1:{port}/x /x\n");
    let ctx = ScratchDir::with_files("build-url-bad", &[("Dockerfile", df.as_str())]);
    let out = f.docker_build(&ctx, &[]);
    assert_ne!(out.code(), 0);
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(all.contains("digest mismatch"), "{all}");
}

#[test]
fn remote_dockerfile_url() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let port = serve_once_per_request(
        b"FROM busybox\nRUN echo remote-built > /r\nCMD [\"cat\", \"/r\"]\n",
    );
    let url = format!("http://127.0.0.1:{port}/Dockerfile");
    f.docker_build(Path::new(&url), &["-t", "remote:1"]).ok();
    assert_eq!(run(&f, &["remote:1"]), "remote-built\n");
}

#[test]
fn cache_from_an_image() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ctx = ScratchDir::with_files(
        "build-cachefrom",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY f /f\nRUN cat /f > /g\nCMD [\"cat\", \"/g\"]\n",
            ),
            ("f", "content\n"),
        ],
    );
    f.docker_build(&ctx, &["-t", "cf:1"]).ok();
    f.out(&["builder", "prune", "-f"]);
    // the local cache is gone; the image given with --cache-from is the cache now
    let out = f.docker_build(&ctx, &["-t", "cf:2", "--cache-from", "cf:1"]);
    assert_eq!(cache_hits(out.ok()), 3, "{}", out.stdout_str());
    let id1 = f.out(&["image", "inspect", "-f", "{{.Id}}", "cf:1"]);
    let id2 = f.out(&["image", "inspect", "-f", "{{.Id}}", "cf:2"]);
    assert_eq!(id1, id2);
    std::fs::write(ctx.join("f"), "changed\n").expect("write");
    let out = f.docker_build(&ctx, &["-t", "cf:3", "--cache-from", "cf:1"]);
    assert_eq!(cache_hits(out.ok()), 0, "{}", out.stdout_str());
}
