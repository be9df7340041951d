//! Crash safety and garbage collection, with `berth registry serve|gc` as users run them: a
//! kill -9 in the middle of an upload publishes nothing and the upload resumes after a
//! restart; `gc` keeps everything a manifest references and removes the rest.

mod common;

use berth_types::Digest;
use common::*;
use reqwest::StatusCode;

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_upload_publishes_nothing_and_the_upload_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("storage");
    let mut srv = BerthServe::start(&root, &[]);
    let http = reqwest::Client::new();
    let data: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let d = Digest::of(&data);
    let first = 1usize << 20;

    let r = http
        .post(srv.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = location(&r);
    // Stream the first MiB, then stall: the registry is killed with the PATCH in flight.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
    let patch = tokio::spawn(http.patch(srv.url(&loc)).body(body).send());
    for c in data[..first].chunks(64 << 10) {
        tx.send(Ok(bytes::Bytes::copy_from_slice(c)))
            .await
            .expect("send");
    }
    let uploads = root.join("repositories/app/_uploads");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let size: u64 = files_in(&uploads)
            .iter()
            .filter_map(|f| std::fs::metadata(uploads.join(f)).ok())
            .map(|m| m.len())
            .sum();
        if size >= first as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upload did not reach the disk"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    srv.kill9();
    drop(tx);
    let _ = patch.await;

    // Nothing half-written is visible: no blob, nothing staged.
    assert!(files_in(&root.join("blobs/sha256")).is_empty());
    assert!(files_in(&root.join("tmp")).is_empty());

    srv.spawn();
    let r = http
        .head(srv.url(&format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The session survived with what reached the disk; go on from there.
    let r = http.get(srv.url(&loc)).send().await.expect("GET status");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), Some(format!("0-{}", first - 1)));
    let r = http
        .patch(srv.url(&location(&r)))
        .header("content-range", format!("{first}-{}", data.len() - 1))
        .body(data[first..].to_vec())
        .send()
        .await
        .expect("PATCH rest");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = http
        .put(srv.url(&with_query(&location(&r), &format!("digest={d}"))))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let got = http
        .get(srv.url(&format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert!(got.as_ref() == &data[..], "blob differs after resume");
    assert!(files_in(&uploads).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_referenced_and_removes_unreferenced_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("storage");
    let (keep, drop_img, stray, index) = {
        let reg = Reg::start_with(|c| {
            c.root = root.clone();
            c.delete = true;
        })
        .await;
        let keep = reg.push_image("keep", "v1", "keep").await;
        let drop_img = reg.push_image("drop/me", "v1", "drop").await;
        let stray = reg.push_blob("keep", b"nobody references me").await;
        let idx = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": keep.digest.to_string(), "size": keep.manifest.len()}],
        }))
        .expect("json");
        let r = reg.put_manifest("keep", "multi", OCI_INDEX, &idx).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = reg
            .delete(&format!("/v2/drop/me/manifests/{}", drop_img.digest))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        (keep, drop_img, stray, Digest::of(&idx))
    };
    let garbage = [
        drop_img.digest.clone(),
        drop_img.config.clone(),
        drop_img.layer.clone(),
        stray.clone(),
    ];
    let kept = [
        keep.digest.clone(),
        keep.config.clone(),
        keep.layer.clone(),
        index.clone(),
    ];
    let gc = |dry: bool| {
        let mut c = std::process::Command::new(berth_bin());
        c.args(["registry", "gc", "--root"]).arg(&root);
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().expect("berth registry gc");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = gc(true);
    for g in &garbage {
        assert!(
            out.contains(&format!("blob eligible for deletion: {g}")),
            "{out}"
        );
    }
    assert!(
        out.ends_with("4 blobs marked, 4 blobs eligible for deletion\n"),
        "{out}"
    );
    for d in garbage.iter().chain(&kept) {
        assert!(
            root.join("blobs/sha256").join(d.hex()).exists(),
            "dry run removed {d}"
        );
    }
    let out = gc(false);
    assert!(out.ends_with("4 blobs marked, 4 blobs deleted\n"), "{out}");
    for d in &garbage {
        assert!(
            !root.join("blobs/sha256").join(d.hex()).exists(),
            "{d} kept"
        );
    }

    let srv = BerthServe::start(&root, &[]);
    let http = reqwest::Client::new();
    let get = |p: String| {
        let http = http.clone();
        let url = srv.url(&p);
        async move { http.get(url).send().await.expect("GET").status() }
    };
    assert_eq!(get("/v2/keep/manifests/v1".into()).await, StatusCode::OK);
    assert_eq!(get("/v2/keep/manifests/multi".into()).await, StatusCode::OK);
    assert_eq!(
        get(format!("/v2/keep/blobs/{}", keep.layer)).await,
        StatusCode::OK
    );
    assert_eq!(
        get(format!("/v2/keep/blobs/{}", keep.config)).await,
        StatusCode::OK
    );
    assert_eq!(
        get(format!("/v2/keep/blobs/{stray}")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(format!("/v2/drop/me/blobs/{}", drop_img.layer)).await,
        StatusCode::NOT_FOUND
    );
    // The repository links to collected blobs are gone too: a push uploads them again.
    assert!(
        !root
            .join("repositories/drop/me/_layers/sha256")
            .join(drop_img.layer.hex())
            .exists()
    );
    // Nothing left to collect.
    assert!(gc(true).ends_with("4 blobs marked, 0 blobs eligible for deletion\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_upload_sessions_older_than_the_max_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("storage");
    {
        let reg = Reg::start_with(|c| c.root = root.clone()).await;
        // Two abandoned uploads (one in a repository that never got a blob) and a fresh one.
        for repo in ["old/one", "old/two", "fresh"] {
            let r = reg
                .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
        reg.push_blob("old/one", b"a blob").await;
    }
    let week_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 24 * 3600);
    for repo in ["old/one", "old/two"] {
        let uploads = root.join("repositories").join(repo).join("_uploads");
        for f in files_in(&uploads) {
            std::fs::File::options()
                .write(true)
                .open(uploads.join(f))
                .and_then(|f| f.set_modified(week_ago))
                .expect("age the upload");
        }
    }
    let gc = |args: &[&str]| {
        let out = std::process::Command::new(berth_bin())
            .args(["registry", "gc", "--root"])
            .arg(&root)
            .args(args)
            .output()
            .expect("berth registry gc");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stale = |repo: &str| files_in(&root.join("repositories").join(repo).join("_uploads"));
    // 0 disables purging (the unreferenced blob goes as ever); the dry run only reports.
    let out = gc(&["--upload-max-age", "0"]);
    assert!(!out.contains("upload eligible"), "{out}");
    assert!(out.ends_with("0 blobs marked, 1 blobs deleted\n"), "{out}");
    let out = gc(&["--dry-run"]);
    assert_eq!(
        out.matches("upload eligible for deletion: old/").count(),
        2,
        "{out}"
    );
    assert_eq!(stale("old/one").len(), 1);
    // The default age is a week, as distribution's upload purging.
    let out = gc(&[]);
    assert!(
        out.contains("upload eligible for deletion: old/two/"),
        "{out}"
    );
    assert!(stale("old/one").is_empty() && stale("old/two").is_empty());
    assert_eq!(stale("fresh").len(), 1, "a fresh upload was removed");
    assert!(out.ends_with("0 blobs marked, 0 blobs deleted\n"), "{out}");
    let out = gc(&["--upload-max-age", "1ns"]);
    assert!(
        out.contains("upload eligible for deletion: fresh/"),
        "{out}"
    );
}
