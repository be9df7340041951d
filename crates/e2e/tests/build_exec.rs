//! The builder's executor against a throwaway berthd, through the real docker CLI
//! (`DOCKER_BUILDKIT=0`) and the API: a failed RUN's exit code, a RUN that changes nothing
//! (an empty layer, as dockerd records it), metadata work without containers (WORKDIR,
//! COPY/ADD, `COPY --from`), bzip2/xz contexts and ADD archives, `RUN --mount=...,from=`,
//! `COPY --link` and the refused `--parents`. Compared with the reference dockerd 20.10 where
//! it defines the behaviour. Needs root, busybox-static and the docker CLI.

use std::path::Path;
use std::process::{Command, Stdio};

use berth_e2e::docker_build_at as build_at;
use berth_e2e::{Fixture, OutputExt, ScratchDir, can_run_containers as can_run};

fn reference() -> Option<berth_e2e::RefDocker> {
    let r = berth_e2e::RefDocker::start()?;
    r.docker_stdin(
        &["import", "-", "busybox:latest"],
        &berth_e2e::archive::busybox_rootfs(),
    )
    .ok();
    Some(r)
}

fn layers(host_out: String) -> Vec<String> {
    serde_json::from_str(&host_out).expect("RootFS.Layers json")
}

#[test]
fn failed_run_exits_with_its_code_like_docker() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let ctx = ScratchDir::with_files(
        "bexec-fail",
        &[("Dockerfile", "FROM busybox\nRUN echo before\nRUN exit 3\n")],
    );
    let ours = f.docker_build(&ctx, &["--force-rm"]);
    assert_eq!(ours.code(), 3, "{}", ours.stderr_str());
    let msg = "The command '/bin/sh -c exit 3' returned a non-zero code: 3";
    assert!(ours.stderr_str().contains(msg), "{}", ours.stderr_str());
    // the stream carries dockerd's JSONError with the code
    let tar = tar_of(&ctx);
    let resp = f.d.api("POST", "/build?forcerm=1", Some(&tar));
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let err: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("errorDetail").is_some())
        .unwrap_or_else(|| panic!("no error line in {text}"));
    assert_eq!(err["errorDetail"]["code"], 3, "{text}");
    assert_eq!(err["errorDetail"]["message"], msg, "{text}");
    assert_eq!(err["error"], msg, "{text}");
    if let Some(r) = reference() {
        let theirs = build_at(&r.host(), &r.dir, &ctx, &["--force-rm"]);
        assert_eq!(theirs.code(), ours.code(), "{}", theirs.stderr_str());
        assert_eq!(theirs.stderr_str().trim(), ours.stderr_str().trim());
    }
}

/// The context directory as a tar.
fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).expect("tar context");
    b.into_inner().expect("tar context")
}

#[test]
fn run_that_changes_nothing_is_an_empty_layer() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let df = "FROM busybox\n\
              RUN true\n\
              RUN --mount=type=cache,target=/root/.cache --mount=type=tmpfs,target=/run/t true\n\
              RUN echo changed > /changed\n";
    let ctx = ScratchDir::with_files("bexec-empty", &[("Dockerfile", df)]);
    f.docker_build(&ctx, &["-t", "empty:1"]).ok();
    let base = layers(f.out(&[
        "image",
        "inspect",
        "-f",
        "{{json .RootFS.Layers}}",
        "busybox",
    ]));
    let ours = layers(f.out(&[
        "image",
        "inspect",
        "-f",
        "{{json .RootFS.Layers}}",
        "empty:1",
    ]));
    // two RUNs without changes add no layer; the third adds one
    assert_eq!(ours.len(), base.len() + 1, "{ours:?}");
    let sizes = f.out(&["history", "--format", "{{.Size}}", "empty:1"]);
    let sizes: Vec<&str> = sizes.lines().collect();
    assert_eq!(&sizes[1..3], &["0B", "0B"], "{sizes:?}");
    let got = f.out(&["run", "--rm", "empty:1", "cat", "/changed"]);
    assert_eq!(got, "changed\n");
    if let Some(r) = reference() {
        let df = "FROM busybox\nRUN true\nRUN echo changed > /changed\n";
        let ctx = ScratchDir::with_files("bexec-empty-ref", &[("Dockerfile", df)]);
        build_at(&r.host(), &r.dir, &ctx, &["-t", "empty:1"]).ok();
        let inspect = |img: &str| {
            layers(
                r.docker(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", img])
                    .ok()
                    .stdout_str(),
            )
        };
        assert_eq!(inspect("empty:1").len(), inspect("busybox").len() + 1);
    }
}

/// Container create events between two points in time.
fn creates(f: &Fixture, since: &str, until: &str) -> usize {
    let out = f.out(&[
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--format",
        "{{.ID}}",
    ]);
    out.lines().count()
}

fn now_unix() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
fn metadata_steps_need_no_container_and_keep_docker_semantics() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let df = "FROM busybox AS src\n\
              RUN mkdir -p /out/sub && echo one > /out/sub/one && echo two > /out/two && ln -s /tmp /linkdir\n\
              FROM src\n\
              WORKDIR /app/deep\n\
              COPY f.txt ./\n\
              COPY --chown=nobody:nogroup f.txt /home/owned.txt\n\
              COPY f.txt /tmp/in-tmp.txt\n\
              COPY --from=src /out/ /copied/\n\
              COPY --from=src /out/two /single\n\
              WORKDIR /linkdir/via-link\n\
              COPY f.txt /linkdir/through.txt\n\
              CMD [\"sh\", \"-c\", \"stat -c '%n %a %U' /app/deep /tmp /home/owned.txt /tmp/via-link /tmp/through.txt; cat /copied/sub/one /copied/two /single /app/deep/f.txt\"]\n";
    let ctx = ScratchDir::with_files(
        "bexec-meta",
        &[("Dockerfile", df), ("f.txt", "from the context\n")],
    );
    let since = now_unix();
    f.docker_build(&ctx, &["-t", "meta:1"]).ok();
    let until = now_unix();
    let want = "/app/deep 755 root\n/tmp 1777 root\n/home/owned.txt 644 nobody\n\
                /tmp/via-link 755 root\n/tmp/through.txt 644 root\n\
                one\ntwo\ntwo\nfrom the context\n";
    let got = f.out(&["run", "--rm", "meta:1"]);
    assert_eq!(got, want);
    // one container for the RUN; the two steps whose paths go through a symlink (/linkdir)
    // take the container route, as dockerd's extraction follows the link there
    assert_eq!(creates(&f, &since, &until), 3);
    if let Some(r) = reference() {
        build_at(&r.host(), &r.dir, &ctx, &["-t", "meta:1"]).ok();
        let theirs = r
            .docker(&["run", "--rm", "--network", "none", "meta:1"])
            .ok()
            .stdout_str();
        assert_eq!(theirs, want, "dockerd");
    }
}

#[test]
fn bzip2_and_xz_contexts_and_add_archives() {
    if !can_run() {
        return;
    }
    let have = |t: &str| berth_e2e::have(t);
    if !have("bzip2") || !have("xz") {
        eprintln!("skipping: needs bzip2 and xz");
        return;
    }
    let f = Fixture::new();
    let payload = ScratchDir::with_files("bexec-payload", &[("inner/hello.txt", "hello\n")]);
    let ctx = ScratchDir::with_files(
        "bexec-bz",
        &[(
            "Dockerfile",
            "FROM busybox\nADD p.tar.bz2 /bz/\nADD p.tar.xz /xz/\nCMD [\"cat\", \"/bz/inner/hello.txt\", \"/xz/inner/hello.txt\"]\n",
        )],
    );
    let ptar = tar_of(&payload);
    std::fs::write(ctx.join("p.tar.bz2"), compress("bzip2", &ptar)).expect("write");
    std::fs::write(ctx.join("p.tar.xz"), compress("xz", &ptar)).expect("write");
    let tar = tar_of(&ctx);
    for (tool, tag) in [("bzip2", "bz:1"), ("xz", "xz:1")] {
        let body = compress(tool, &tar);
        let resp = f.d.api("POST", &format!("/build?t={tag}"), Some(&body));
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert!(!resp.text().contains("errorDetail"), "{}", resp.text());
        assert_eq!(f.out(&["run", "--rm", tag]), "hello\nhello\n");
    }
    // a malformed compressed body is a 400 with a message, and the daemon stays up
    for junk in [
        &b"BZh91AY&SYgarbage-garbage-garbage"[..],
        &[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3],
    ] {
        let resp = f.d.api("POST", "/build", Some(junk));
        assert_eq!(resp.status, 400, "{}", resp.text());
        assert!(
            resp.text().contains("failed to read build context"),
            "{}",
            resp.text()
        );
    }
    assert_eq!(f.d.api("GET", "/_ping", None).status, 200);
}

fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    let mut c = Command::new(tool)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn compressor");
    let mut w = c.stdin.take().expect("stdin");
    let data = data.to_vec();
    let t = std::thread::spawn(move || std::io::Write::write_all(&mut w, &data));
    let out = c.wait_with_output().expect("compress");
    t.join().expect("writer").expect("write");
    out.stdout
}

#[test]
fn run_mounts_from_stages_and_images_copy_link_and_parents() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let df = "FROM busybox AS tools\n\
              RUN mkdir /data && echo from-stage > /data/msg\n\
              FROM busybox\n\
              RUN --mount=type=bind,from=tools,source=/data,target=/mnt cat /mnt/msg > /got-stage\n\
              RUN --mount=type=bind,from=busybox,target=/img ls /img/etc/passwd > /got-image\n\
              RUN --mount=type=cache,from=tools,source=/data,target=/c,id=seeded cat /c/msg > /got-cache\n\
              RUN --mount=type=bind,from=tools,source=/data,target=/mnt touch /mnt/x 2>/dev/null || echo read-only > /got-ro\n\
              COPY --link f.txt /linked/\n\
              CMD [\"cat\", \"/got-stage\", \"/got-image\", \"/got-cache\", \"/got-ro\", \"/linked/f.txt\"]\n";
    let ctx = ScratchDir::with_files("bexec-mount", &[("Dockerfile", df), ("f.txt", "linked\n")]);
    let out = f.docker_build(&ctx, &["-t", "mnt:1"]);
    out.ok();
    assert_eq!(
        f.out(&["run", "--rm", "mnt:1"]),
        "from-stage\n/img/etc/passwd\nfrom-stage\nread-only\nlinked\n"
    );
    // the mount targets are no part of the layers
    let ls = f.out(&["run", "--rm", "mnt:1", "ls", "/"]);
    assert!(!ls.contains("mnt") && !ls.contains("img\n"), "{ls}");
    // fully cached the second time
    let again = f.docker_build(&ctx, &["-t", "mnt:1"]);
    assert_eq!(again.ok().stdout_str().matches("Using cache").count(), 7);

    let ctx = ScratchDir::with_files(
        "bexec-parents",
        &[
            ("Dockerfile", "FROM busybox\nCOPY --parents f.txt /x/\n"),
            ("f.txt", "x\n"),
        ],
    );
    let out = f.docker_build(&ctx, &[]);
    assert_ne!(out.code(), 0);
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(all.contains("Unknown flag: parents"), "{all}");
    if let Some(r) = reference() {
        let theirs = build_at(&r.host(), &r.dir, &ctx, &[]);
        assert_ne!(theirs.code(), 0);
        let all = format!("{}{}", theirs.stdout_str(), theirs.stderr_str());
        assert!(all.contains("Unknown flag: parents"), "dockerd: {all}");
    }
}
