//! Pull and push against a real docker-registry (distribution 2.8) on 127.0.0.1.

mod common;

use std::time::Instant;

use berth_distribution::{Credentials, Error, Platform, PullProgress, PushProgress, pull, push};
use berth_types::Reference;
use common::*;

fn statuses(events: &[PullProgress]) -> Vec<String> {
    events.iter().map(|e| e.to_message().status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_by_tag_and_digest() {
    let reg = Registry::start();
    let src = new_store();
    let r = reg.reference("busybox:latest");
    let id = make_image(&src.store, &[busybox_layer()], &r);

    let mut pushed = Vec::new();
    let digest = push(&src.store, &r, &push_opts(), |p| pushed.push(p))
        .await
        .expect("push");
    let msgs: Vec<String> = pushed.iter().map(|p| p.to_message().status).collect();
    assert_eq!(
        msgs.first().map(String::as_str),
        Some(format!("The push refers to repository [{}/busybox]", reg.host()).as_str())
    );
    assert!(msgs.contains(&"Pushed".to_owned()), "{msgs:?}");
    assert!(
        msgs.last()
            .is_some_and(|m| m.starts_with(&format!("latest: digest: {digest} size: "))),
        "{msgs:?}"
    );
    // The repo digest is recorded on the pushed image.
    let img = src.store.get(&id).expect("image");
    assert!(img.repo_digests.contains(&r.with_digest(&digest)));

    // skopeo sees the same manifest digest.
    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/busybox:latest", reg.host()),
    ]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("skopeo json");
    assert_eq!(v["Digest"], digest.to_string());

    // Pull by tag into a fresh store: same image ID, tag and repo digest.
    let dst = new_store();
    let mut events = Vec::new();
    let res = pull(&dst.store, &r, &pull_opts(), |p| events.push(p))
        .await
        .expect("pull");
    assert_eq!(res.id, id);
    assert_eq!(res.manifest_digest, digest);
    assert!(res.updated);
    let s = statuses(&events);
    assert_eq!(s[0], "Pulling from busybox");
    for want in [
        "Pulling fs layer",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
    ] {
        assert!(s.contains(&want.to_owned()), "{want} missing in {s:?}");
    }
    assert_eq!(s[s.len() - 2], format!("Digest: {digest}"));
    assert_eq!(
        s[s.len() - 1],
        format!(
            "Status: Downloaded newer image for {}/busybox:latest",
            reg.host()
        )
    );
    let img = dst.store.lookup(&r.to_string()).expect("tagged");
    assert_eq!(img.id, id);
    assert!(img.repo_digests.contains(&r.with_digest(&digest)));
    // The unpacked layer is a usable rootfs, the same as `load` would make.
    let dirs = dst.store.layer_dirs(&id).expect("layer dirs");
    assert_eq!(dirs.len(), 1);
    assert_eq!(
        std::fs::read(dirs[0].join("bin/busybox")).expect("busybox"),
        std::fs::read("/bin/busybox").expect("busybox")
    );
    assert_eq!(
        std::fs::read_link(dirs[0].join("bin/sh")).expect("sh"),
        std::path::Path::new("busybox")
    );

    // Again: up to date, layer already there.
    let mut again = Vec::new();
    let res2 = pull(&dst.store, &r, &pull_opts(), |p| again.push(p))
        .await
        .expect("pull again");
    assert!(!res2.updated);
    let s = statuses(&again);
    assert!(s.contains(&"Already exists".to_owned()), "{s:?}");
    assert_eq!(
        s.last().map(String::as_str),
        Some(
            format!(
                "Status: Image is up to date for {}/busybox:latest",
                reg.host()
            )
            .as_str()
        )
    );

    // By digest into another store: no tag, only the repo digest.
    let third = new_store();
    let by_digest = r.with_digest(&digest);
    let res3 = pull(&third.store, &by_digest, &pull_opts(), |_| {})
        .await
        .expect("pull by digest");
    assert_eq!(res3.id, id);
    let img = third.store.get(&id).expect("image");
    assert!(img.repo_tags.is_empty());
    assert_eq!(img.repo_digests, vec![by_digest.clone()]);

    // Push the pulled image (stored gzip blob reused) to a sibling repository: identical
    // manifest digest, and its layer is mounted from the first repository.
    let other = reg.reference("other:v1");
    dst.store.tag(&id, &other).expect("tag");
    let mut pushed2 = Vec::new();
    let d2 = push(&dst.store, &other, &push_opts(), |p| pushed2.push(p))
        .await
        .expect("push pulled image");
    assert_eq!(d2, digest);
    assert!(
        pushed2
            .iter()
            .any(|p| matches!(p, PushProgress::MountedFrom { from, .. } if from == "busybox")),
        "{pushed2:?}"
    );
    // Pushing again: everything exists.
    let mut pushed3 = Vec::new();
    push(&dst.store, &other, &push_opts(), |p| pushed3.push(p))
        .await
        .expect("push again");
    assert!(
        pushed3
            .iter()
            .any(|p| matches!(p, PushProgress::LayerAlreadyExists { .. })),
        "{pushed3:?}"
    );

    // Unknown tag: Docker's not-found message.
    let err = pull(
        &third.store,
        &reg.reference("busybox:nope"),
        &pull_opts(),
        |_| {},
    )
    .await
    .expect_err("unknown tag");
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(err.to_string().contains("manifest unknown"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_layer_image_pushed_by_skopeo() {
    let reg = Registry::start();
    let src = new_store();
    let r = reg.reference("multi:1.0");
    let l1 = busybox_layer();
    let l2 = Tar::new()
        .dir("data/")
        .file("data/a.txt", b"hello\n")
        .file("etc/hostname", b"changed\n")
        .finish();
    let l3 = Tar::new()
        .dir("data/")
        .file("data/.wh.a.txt", b"")
        .file("data/b.bin", &random_bytes(300_000, 7))
        .finish();
    let id = make_image(&src.store, &[l1, l2, l3], &r);
    let archive = src.dir.path().join("multi.tar");
    save_to(&src.store, &r.to_string(), &archive);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{}/multi:1.0", reg.host()),
    ]);

    let dst = new_store();
    let res = pull(&dst.store, &r, &pull_opts(), |_| {})
        .await
        .expect("pull");
    assert_eq!(res.id, id);
    let src_img = src.store.get(&id).expect("src");
    let dst_img = dst.store.get(&id).expect("dst");
    assert_eq!(src_img.layers, dst_img.layers);
    assert_eq!(src_img.size, dst_img.size);
    let dirs = dst.store.layer_dirs(&id).expect("dirs");
    assert_eq!(dirs.len(), 3);
    // The whiteout became overlay's 0/0 character device in the top layer's own dir.
    use std::os::unix::fs::FileTypeExt;
    let wh = std::fs::symlink_metadata(dirs[2].join("data/a.txt")).expect("whiteout");
    assert!(wh.file_type().is_char_device());
    assert_eq!(
        std::fs::read(dirs[1].join("etc/hostname")).expect("hostname"),
        b"changed\n"
    );

    // skopeo's manifest digest is the repo digest we recorded.
    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/multi:1.0", reg.host()),
    ]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    assert_eq!(v["Digest"], res.manifest_digest.to_string());
    // And save of the pulled image reproduces the same layers (docker save compatibility).
    let mut out = Vec::new();
    dst.store
        .save(&[r.to_string()], &mut out)
        .expect("save pulled image");
    assert!(!out.is_empty());
}

/// An OCI layout with an index of two platforms, copied with `skopeo copy --all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_index_picks_platform() {
    use berth_types::Digest;
    let reg = Registry::start();
    let dir = tempfile::tempdir().expect("tmp");
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |data: &[u8]| -> (Digest, usize) {
        let d = Digest::of(data);
        std::fs::write(blobs.join(d.hex()), data).expect("blob");
        (d, data.len())
    };
    let mut manifests = Vec::new();
    for (arch, content) in [
        ("amd64", b"amd64\n".as_slice()),
        ("arm64", b"arm64\n".as_slice()),
    ] {
        let tar = Tar::new().file("arch", content).finish();
        let diff = Digest::of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).expect("gz");
        let gz = gz.finish().expect("gz");
        let (ld, ls) = put(&gz);
        let mut cfg = base_config(arch);
        cfg.rootfs.diff_ids = vec![diff];
        let cfg = serde_json::to_vec(&cfg).expect("cfg");
        let (cd, cs) = put(&cfg);
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld.to_string(), "size": ls}],
        });
        let mb = serde_json::to_vec(&m).expect("m");
        let (md, ms) = put(&mb);
        let mut plat = serde_json::json!({"architecture": arch, "os": "linux"});
        if arch == "arm64" {
            plat["variant"] = "v8".into();
        }
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md.to_string(), "size": ms, "platform": plat,
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let ib = serde_json::to_vec(&index).expect("index");
    let (idx_digest, idx_size) = put(&ib);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": idx_digest.to_string(), "size": idx_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&top).expect("top"),
    )
    .expect("index.json");
    std::fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", dir.path().display()),
        &format!("docker://{}/multiarch:latest", reg.host()),
    ]);

    let r = reg.reference("multiarch:latest");
    let st = new_store();
    let res = pull(&st.store, &r, &pull_opts(), |_| {})
        .await
        .expect("pull amd64");
    // The repo digest is the index's, as with Docker.
    assert_eq!(res.manifest_digest, idx_digest);
    let img = st.store.get(&res.id).expect("img");
    assert_eq!(img.config.architecture, "amd64");
    let dirs = st.store.layer_dirs(&res.id).expect("dirs");
    assert_eq!(
        std::fs::read(dirs[0].join("arch")).expect("arch"),
        b"amd64\n"
    );

    let st2 = new_store();
    let mut o = pull_opts();
    o.platform = Some(Platform::parse("linux/arm64").expect("platform"));
    let res2 = pull(&st2.store, &r, &o, |_| {}).await.expect("pull arm64");
    assert_eq!(
        st2.store.get(&res2.id).expect("img").config.architecture,
        "arm64"
    );

    o.platform = Some(Platform::parse("linux/s390x").expect("platform"));
    let err = pull(&st2.store, &r, &o, |_| {})
        .await
        .expect_err("no s390x");
    assert!(
        err.to_string()
            .contains("no matching manifest for linux/s390x"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_basic_auth() {
    let reg = Registry::start_with(Some(("berth", "s3cret")));
    let src = new_store();
    let r = reg.reference("private:latest");
    let id = make_image(&src.store, &[busybox_layer()], &r);

    // Anonymous push is refused.
    let err = push(&src.store, &r, &push_opts(), |_| {})
        .await
        .expect_err("anonymous push");
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");

    let mut po = push_opts();
    po.credentials = Some(Credentials::new("berth", "s3cret"));
    push(&src.store, &r, &po, |_| {})
        .await
        .expect("push with credentials");

    // Pull: anonymous and wrong password refused, nothing stored.
    let dst = new_store();
    let err = pull(&dst.store, &r, &pull_opts(), |_| {})
        .await
        .expect_err("anonymous pull");
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert!(err.to_string().contains("pull access denied"), "{err}");
    let mut o = pull_opts();
    o.credentials = Some(Credentials::new("berth", "wrong"));
    let err = pull(&dst.store, &r, &o, |_| {})
        .await
        .expect_err("bad password");
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert_eq!(dst.contents(), (0, 0));

    // Credentials from a docker config.json (`auths`, base64 user:password).
    let cfg_dir = tempfile::tempdir().expect("tmp");
    let cfg = cfg_dir.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YmVydGg6czNjcmV0"}}}}}}"#,
            reg.host()
        ),
    )
    .expect("config.json");
    let mut o = pull_opts();
    o.registry.docker_config = Some(cfg);
    let res = pull(&dst.store, &r, &o, |_| {})
        .await
        .expect("pull with config.json");
    assert_eq!(res.id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blob_is_a_digest_error_and_stores_nothing() {
    let reg = Registry::start();
    let src = new_store();
    let r = reg.reference("corrupt:latest");
    let big = Tar::new()
        .file("big.bin", &random_bytes(2_000_000, 3))
        .finish();
    let id = make_image(&src.store, &[busybox_layer(), big], &r);
    push(&src.store, &r, &push_opts(), |_| {})
        .await
        .expect("push");

    // Flip bytes in the middle of the big layer's blob in the registry's storage (same size,
    // so only the digest can tell).
    let layers = src.store.push_layers(&id).expect("layers");
    assert_eq!(layers.len(), 2);
    let (path, len) = reg.blobs().into_iter().next().expect("a blob");
    let mut data = std::fs::read(&path).expect("blob");
    let mid = (len / 2) as usize;
    for b in &mut data[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &data).expect("corrupt");

    let dst = new_store();
    let err = pull(&dst.store, &r, &pull_opts(), |_| {})
        .await
        .expect_err("corrupt blob must fail");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(dst.store.list().expect("list").is_empty());
    assert_eq!(dst.contents(), (0, 0), "nothing may stay in the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_download_resumes_with_range() {
    let reg = Registry::start();
    let src = new_store();
    let r = reg.reference("resume:latest");
    let big = Tar::new()
        .file("big.bin", &random_bytes(8_000_000, 11))
        .finish();
    let id = make_image(&src.store, &[big], &r);
    push(&src.store, &r, &push_opts(), |_| {})
        .await
        .expect("push");

    // Through a proxy that cuts the connection 3 MB into the layer download.
    let proxy = cutting_proxy(reg.port, 3_000_000);
    let via =
        Reference::parse_tagged(&format!("127.0.0.1:{}/resume:latest", proxy.port)).expect("ref");
    let dst = new_store();
    let res = pull(&dst.store, &via, &pull_opts(), |_| {})
        .await
        .expect("pull resumes");
    assert_eq!(res.id, id);
    assert!(
        proxy.saw_range.load(std::sync::atomic::Ordering::SeqCst),
        "the retry should have asked for a Range"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_killed_mid_pull_then_completes() {
    let reg = Registry::start();
    let src = new_store();
    let r = reg.reference("killed:latest");
    let layers: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            Tar::new()
                .file("big.bin", &random_bytes(40_000_000, 100 + i))
                .finish()
        })
        .collect();
    let id = make_image(&src.store, &layers, &r);
    push(&src.store, &r, &push_opts(), |_| {})
        .await
        .expect("push");

    let dst = new_store();
    let reg = std::sync::Arc::new(std::sync::Mutex::new(reg));
    let killer = std::sync::Arc::clone(&reg);
    let mut killed = false;
    let first = pull(&dst.store, &r, &pull_opts(), |p| {
        if !killed
            && let PullProgress::Downloading { current, .. } = p
            && current > 2_000_000
        {
            killed = true;
            killer.lock().expect("lock").kill();
            // Back after a moment, as after a restart by systemd.
            let k = std::sync::Arc::clone(&killer);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(700));
                k.lock().expect("lock").restart();
            });
        }
    })
    .await;
    assert!(killed, "the pull should have been interrupted");
    // Wait for the registry to be back in case the pull gave up before the restart.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    match first {
        Ok(res) => {
            println!("pull survived the registry restart (resumed in the same pull)");
            assert_eq!(res.id, id);
        }
        Err(e) => {
            println!("first pull failed ({e}); rerunning");
            assert!(dst.store.list().expect("list").is_empty());
            let res = pull(&dst.store, &r, &pull_opts(), |_| {})
                .await
                .expect("rerun completes");
            assert_eq!(res.id, id);
        }
    }
    drop(reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_200mb_four_incompressible_layers() {
    let reg = Registry::start();
    let src = new_store();
    let r = reg.reference("big:latest");
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            Tar::new()
                .file("blob.bin", &random_bytes(50_000_000, 1000 + i))
                .finish()
        })
        .collect();
    let id = make_image(&src.store, &layers, &r);
    let t = Instant::now();
    push(&src.store, &r, &push_opts(), |_| {})
        .await
        .expect("push");
    let push_time = t.elapsed();
    let dst = new_store();
    let t = Instant::now();
    let res = pull(&dst.store, &r, &pull_opts(), |_| {})
        .await
        .expect("pull");
    let pull_time = t.elapsed();
    assert_eq!(res.id, id);
    println!(
        "TIMING: push of 4 x 50 MB incompressible layers (gzip on the fly): {push_time:?}; pull (download + verify + gunzip + unpack, 4 in parallel): {pull_time:?}"
    );
    // For scale: skopeo only downloading the same image (no unpack) to a dir.
    let out = tempfile::tempdir().expect("tmp");
    let t = Instant::now();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/big:latest", reg.host()),
        &format!("dir:{}", out.path().join("img").display()),
    ]);
    println!(
        "TIMING: skopeo copy to dir (download only): {:?}",
        t.elapsed()
    );
    // ... and skopeo uploading those (already compressed) blobs to an empty registry: the
    // registry's ingest floor.
    let reg2 = Registry::start();
    let t = Instant::now();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("dir:{}", out.path().join("img").display()),
        &format!("docker://{}/big:latest", reg2.host()),
    ]);
    println!(
        "TIMING: skopeo push of the compressed blobs: {:?}",
        t.elapsed()
    );
    // And a second push of the pulled image (stored gzip blobs reused, all present): fast path.
    let t = Instant::now();
    push(&dst.store, &r, &push_opts(), |_| {})
        .await
        .expect("push again");
    println!("TIMING: re-push with every blob present: {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_auth_anonymous_and_with_credentials() {
    let reg = Registry::start();
    // Anonymous tokens.
    let front = token_front(reg.port, None).await;
    let src = new_store();
    let r = Reference::parse_tagged(&format!("127.0.0.1:{}/tok/app:1", front.port)).expect("ref");
    let id = make_image(&src.store, &[busybox_layer()], &r);
    push(&src.store, &r, &push_opts(), |_| {})
        .await
        .expect("push with anonymous token");
    let dst = new_store();
    let res = pull(&dst.store, &r, &pull_opts(), |_| {})
        .await
        .expect("pull with anonymous token");
    assert_eq!(res.id, id);
    let seen = front.token_requests.lock().expect("lock").clone();
    assert!(
        seen.iter()
            .any(|(s, _)| s.contains(&"repository:tok/app:pull,push".to_owned())),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(s, a)| s == &vec!["repository:tok/app:pull".to_owned()] && a.is_none()),
        "{seen:?}"
    );

    // A token server that wants credentials.
    let front = token_front(reg.port, Some(("alice", "pw"))).await;
    let r2 = Reference::parse_tagged(&format!("127.0.0.1:{}/tok/app:1", front.port)).expect("ref");
    let other = new_store();
    let err = pull(&other.store, &r2, &pull_opts(), |_| {})
        .await
        .expect_err("anonymous token refused");
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    let mut o = pull_opts();
    o.credentials = Some(Credentials::new("alice", "pw"));
    let res = pull(&other.store, &r2, &o, |_| {})
        .await
        .expect("pull with credentials");
    assert_eq!(res.id, id);
    let seen = front.token_requests.lock().expect("lock").clone();
    assert!(
        seen.iter().any(|(_, a)| a.as_deref() == Some("alice")),
        "{seen:?}"
    );
}

/// docker.io pulls go to a configured mirror first (the mirror here is a local registry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_mirror() {
    let reg = Registry::start();
    let src = new_store();
    let local = reg.reference("library/busybox:latest");
    let id = make_image(&src.store, &[busybox_layer()], &local);
    push(&src.store, &local, &push_opts(), |_| {})
        .await
        .expect("push");
    let dst = new_store();
    let mut o = pull_opts();
    o.registry.mirrors = vec![format!("http://{}", reg.host())];
    let hub = Reference::parse_tagged("busybox").expect("ref");
    let mut events = Vec::new();
    let res = pull(&dst.store, &hub, &o, |p| events.push(p))
        .await
        .expect("pull through the mirror");
    assert_eq!(res.id, id);
    let img = dst
        .store
        .lookup("busybox:latest")
        .expect("tagged as docker.io");
    assert_eq!(img.id, id);
    assert_eq!(
        statuses(&events).last().map(String::as_str),
        Some("Status: Downloaded newer image for busybox:latest")
    );
}

/// HTTPS registry that demands a client certificate: found in certs.d/<host:port>/ like Docker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_from_certs_d() {
    let pki = tempfile::tempdir().expect("tmp");
    make_certs(pki.path());
    let reg = Registry::start_full(None, Some(pki.path()));
    let src = new_store();
    let r = reg.reference("tls/app:1");
    let id = make_image(&src.store, &[busybox_layer()], &r);

    // Without the client certificate the TLS handshake is refused (and loopback's plain-HTTP
    // fallback finds no HTTP server either).
    let err = push(&src.store, &r, &push_opts(), |_| {})
        .await
        .expect_err("no client cert");
    assert!(matches!(err, Error::Http { .. }), "{err:?}");

    let certs_d = tempfile::tempdir().expect("tmp");
    let host_dir = certs_d.path().join(reg.host());
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    std::fs::copy(pki.path().join("ca.crt"), host_dir.join("ca.crt")).expect("ca");
    std::fs::copy(pki.path().join("client.crt"), host_dir.join("client.cert")).expect("cert");
    std::fs::copy(pki.path().join("client.key"), host_dir.join("client.key")).expect("key");
    let mut po = push_opts();
    po.registry.certs_dirs = vec![certs_d.path().to_path_buf()];
    push(&src.store, &r, &po, |_| {})
        .await
        .expect("push over mTLS");
    let dst = new_store();
    let mut o = pull_opts();
    o.registry.certs_dirs = vec![certs_d.path().to_path_buf()];
    let res = pull(&dst.store, &r, &o, |_| {})
        .await
        .expect("pull over mTLS");
    assert_eq!(res.id, id);

    // A key without its certificate is a configuration error, not a silent anonymous TLS.
    std::fs::remove_file(host_dir.join("client.cert")).expect("rm");
    let err = pull(&new_store().store, &r, &o, |_| {})
        .await
        .expect_err("dangling key");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_checks_credentials() {
    let reg = Registry::start_with(Some(("berth", "s3cret")));
    let cfg = registry_config();
    berth_distribution::login(&cfg, &reg.host(), &Credentials::new("berth", "s3cret"))
        .await
        .expect("good login");
    let err = berth_distribution::login(&cfg, &reg.host(), &Credentials::new("berth", "nope"))
        .await
        .expect_err("bad login");
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");

    let open = Registry::start();
    let front = token_front(open.port, Some(("alice", "pw"))).await;
    let host = format!("127.0.0.1:{}", front.port);
    berth_distribution::login(&cfg, &host, &Credentials::new("alice", "pw"))
        .await
        .expect("token login");
    assert!(
        berth_distribution::login(&cfg, &host, &Credentials::new("alice", "x"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_and_futures_are_send() {
    let reg = Registry::start();
    let src = new_store();
    let r = reg.reference("tagged:a");
    let id = make_image(&src.store, &[busybox_layer()], &r);
    for t in ["a", "b", "c"] {
        let rt = reg.reference(&format!("tagged:{t}"));
        src.store.tag(&id, &rt).expect("tag");
        push(&src.store, &rt, &push_opts(), |_| {})
            .await
            .expect("push");
    }
    let mut tags = berth_distribution::list_tags(&registry_config(), &r.repository(), None)
        .await
        .expect("tags");
    tags.sort();
    assert_eq!(tags, ["a", "b", "c"]);

    // The engine spawns these on its runtime: they must be Send.
    fn assert_send<T: Send>(_: &T) {}
    let o = pull_opts();
    let f = pull(&src.store, &r, &o, |_| {});
    assert_send(&f);
    drop(f);
    let po = push_opts();
    let f = push(&src.store, &r, &po, |_| {});
    assert_send(&f);
    drop(f);
}

/// gzip, zstd and uncompressed layers in one OCI image; pushed back unchanged (zstd keeps the
/// manifest OCI); a config whose diff ID does not match a layer fails and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_zstd_and_plain_layers_and_diff_id_check() {
    use berth_types::Digest;
    let reg = Registry::start();
    let l1 = busybox_layer();
    let l2 = Tar::new().file("zstd.txt", b"zstd layer\n").finish();
    let l3 = Tar::new().file("plain.txt", b"plain layer\n").finish();
    let z2 = zstd::encode_all(&l2[..], 3).expect("zstd");
    let dir = tempfile::tempdir().expect("tmp");
    let md = write_oci_layout(
        dir.path(),
        &[
            ("application/vnd.oci.image.layer.v1.tar+gzip", gzip(&l1)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", z2.clone()),
            ("application/vnd.oci.image.layer.v1.tar", l3.clone()),
        ],
        &[Digest::of(&l1), Digest::of(&l2), Digest::of(&l3)],
    );
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", dir.path().display()),
        &format!("docker://{}/mixed:latest", reg.host()),
    ]);
    let r = reg.reference("mixed:latest");
    let st = new_store();
    let res = pull(&st.store, &r, &pull_opts(), |_| {})
        .await
        .expect("pull mixed");
    assert_eq!(res.manifest_digest, md);
    let dirs = st.store.layer_dirs(&res.id).expect("dirs");
    assert_eq!(
        std::fs::read(dirs[1].join("zstd.txt")).expect("zstd"),
        b"zstd layer\n"
    );
    assert_eq!(
        std::fs::read(dirs[2].join("plain.txt")).expect("plain"),
        b"plain layer\n"
    );
    // The zstd blob was kept as received, so a push reuses it byte for byte.
    let layers = st.store.push_layers(&res.id).expect("layers");
    assert_eq!(
        layers[1].blob.as_ref().map(|b| b.0.clone()),
        Some(Digest::of(&z2))
    );
    let again = reg.reference("mixed-copy:latest");
    st.store.tag(&res.id, &again).expect("tag");
    push(&st.store, &again, &push_opts(), |_| {})
        .await
        .expect("push mixed");
    let st2 = new_store();
    let res2 = pull(&st2.store, &again, &pull_opts(), |_| {})
        .await
        .expect("pull copy");
    assert_eq!(res2.id, res.id);

    // Wrong diff ID in the config.
    let bad = tempfile::tempdir().expect("tmp");
    write_oci_layout(
        bad.path(),
        &[("application/vnd.oci.image.layer.v1.tar+gzip", gzip(&l1))],
        &[Digest::of(b"not this layer")],
    );
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", bad.path().display()),
        &format!("docker://{}/baddiff:latest", reg.host()),
    ]);
    let st3 = new_store();
    let err = pull(
        &st3.store,
        &reg.reference("baddiff:latest"),
        &pull_opts(),
        |_| {},
    )
    .await
    .expect_err("diff ID mismatch");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert_eq!(st3.contents(), (0, 0));
}
