//! Conformance with the OCI distribution spec (../shared/specs/oci-distribution/spec.md).
//!
//! The official conformance suite (Go, opencontainers/distribution-spec/conformance) cannot be
//! fetched here; this suite mirrors its four workflow categories, test by test:
//! - pull: manifests and blobs by tag and digest, HEAD, ranges, 404s with error codes;
//! - push: monolithic POST+PUT and single POST, chunked PATCH with Content-Range (416 out of
//!   order, status GET, resume), cancel, cross-repository mount (201, or the 202 fallback),
//!   manifest PUT checks (blobs known, digest, size), `subject` -> `OCI-Subject`, `tag` params;
//! - content discovery: tags/list with `n`/`last` and `Link`, catalog, referrers with the
//!   `artifactType` filter and `OCI-Filters-Applied`;
//! - content management: DELETE of tags, manifests and blobs, and 405 when deletion is
//!   disabled or the registry is read-only.
//!
//! Each test runs its own registry in-process with its own storage directory.

mod common;

use berth_types::Digest;
use common::*;
use reqwest::{Method, StatusCode};

// ---- pull ----

#[tokio::test]
async fn base_endpoint_and_api_version() {
    let reg = Reg::start().await;
    let r = reg.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    assert_eq!(reg.get("/v2").await.status(), StatusCode::OK);
    assert_eq!(reg.get("/nope").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pull_manifest_by_tag_and_digest() {
    let reg = Reg::start().await;
    let img = reg.push_image("library/app", "v1", "a").await;
    for reference in ["v1".to_owned(), img.digest.to_string()] {
        let r = reg
            .req(
                Method::GET,
                &format!("/v2/library/app/manifests/{reference}"),
            )
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(
            header(&r, "docker-content-digest"),
            Some(img.digest.to_string())
        );
        assert_eq!(r.bytes().await.expect("body").as_ref(), &img.manifest[..]);
    }
}

#[tokio::test]
async fn head_manifest_and_blob() {
    let reg = Reg::start().await;
    let img = reg.push_image("app", "v1", "a").await;
    let r = reg.head("/v2/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(img.digest.to_string())
    );
    assert_eq!(
        header(&r, "content-length"),
        Some(img.manifest.len().to_string())
    );
    let r = reg.head(&format!("/v2/app/blobs/{}", img.layer)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(img.layer.to_string())
    );
    assert_eq!(header(&r, "content-length").as_deref(), Some("7"));
    assert!(r.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn pull_blob_whole_and_ranges() {
    let reg = Reg::start().await;
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let d = reg.push_blob("app", &data).await;
    let r = reg.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), Some(d.to_string()));
    assert_eq!(r.bytes().await.expect("body").as_ref(), &data[..]);
    let r = reg
        .req(Method::GET, &format!("/v2/app/blobs/{d}"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&r, "content-range").as_deref(),
        Some("bytes 1000-1999/100000")
    );
    assert_eq!(r.bytes().await.expect("body").as_ref(), &data[1000..2000]);
    let r = reg
        .req(Method::GET, &format!("/v2/app/blobs/{d}"))
        .header("range", "bytes=200000-")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn missing_content_is_404_with_codes() {
    let reg = Reg::start().await;
    reg.push_image("app", "v1", "a").await;
    let unknown = Digest::of(b"nothing");
    let r = reg.get("/v2/app/manifests/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = reg.get(&format!("/v2/app/manifests/{unknown}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = reg.get(&format!("/v2/app/blobs/{unknown}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    assert_eq!(
        reg.head(&format!("/v2/app/blobs/{unknown}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reg.head("/v2/app/manifests/nope").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = reg.get("/v2/other/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = reg.get("/v2/other/tags/list").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn blobs_are_per_repository() {
    let reg = Reg::start().await;
    let d = reg.push_blob("one", b"private to one").await;
    assert_eq!(
        reg.get(&format!("/v2/one/blobs/{d}")).await.status(),
        StatusCode::OK
    );
    let r = reg.get(&format!("/v2/two/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn invalid_names_references_and_digests_are_400() {
    let reg = Reg::start().await;
    for (path, code) in [
        ("/v2/Upper/manifests/v1", "NAME_INVALID"),
        ("/v2/a%2f..%2fb/manifests/v1", "NAME_INVALID"),
        ("/v2/a%2F%2e%2e%2Fb/tags/list", "NAME_INVALID"),
        ("/v2/a/_layers/manifests/v1", "NAME_INVALID"),
        ("/v2/app/blobs/sha256:zz", "DIGEST_INVALID"),
        ("/v2/app/blobs/sha512:00", "DIGEST_INVALID"),
        ("/v2/app/blobs/sha256:..%2f..%2fetc", "DIGEST_INVALID"),
        ("/v2/app/manifests/-bad-tag", "MANIFEST_INVALID"),
        ("/v2/app/referrers/nodigest", "DIGEST_INVALID"),
    ] {
        let r = reg.get(path).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(r).await, code, "{path}");
    }
    // Upload ids we did not hand out are unknown, whatever they look like.
    for id in ["..%2f..%2fx", "0123", "../../etc/passwd"] {
        let r = reg.get(&format!("/v2/app/blobs/uploads/{id}")).await;
        assert!(r.status().is_client_error(), "{id}: {}", r.status());
    }
}

// ---- push ----

#[tokio::test]
async fn push_monolithic_post_put_and_single_post() {
    let reg = Reg::start().await;
    let r = reg
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "docker-upload-uuid").is_some());
    let loc = location(&r);
    assert!(loc.starts_with("/v2/app/blobs/uploads/"), "{loc}");
    let data = b"monolithic".to_vec();
    let d = Digest::of(&data);
    let r = reg
        .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
        .body(data.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/app/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), Some(d.to_string()));
    assert_eq!(
        reg.get(&location(&r))
            .await
            .bytes()
            .await
            .expect("body")
            .as_ref(),
        &data[..]
    );
    // The session is gone once completed.
    assert_eq!(reg.get(&loc).await.status(), StatusCode::NOT_FOUND);

    let data = b"single post".to_vec();
    let d = Digest::of(&data);
    let r = reg
        .req(Method::POST, &format!("/v2/app/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/app/blobs/{d}"));
    assert_eq!(
        reg.get(&location(&r))
            .await
            .bytes()
            .await
            .expect("body")
            .as_ref(),
        &data[..]
    );
}

#[tokio::test]
async fn push_with_wrong_digest_is_rejected_and_stores_nothing() {
    let reg = Reg::start().await;
    let r = reg
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    let loc = location(&r);
    let claimed = Digest::of(b"something else");
    let r = reg
        .req(Method::PUT, &with_query(&loc, &format!("digest={claimed}")))
        .body(b"actual bytes".to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    for d in [claimed, Digest::of(b"actual bytes")] {
        assert_eq!(
            reg.head(&format!("/v2/app/blobs/{d}")).await.status(),
            StatusCode::NOT_FOUND
        );
        assert!(!reg.root().join("blobs/sha256").join(d.hex()).exists());
    }
    // A PUT without digest, or with an unsupported one, is a 400 too.
    let r = reg
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    let loc = location(&r);
    let r = reg.req(Method::PUT, &loc).send().await.expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = reg
        .req(Method::PUT, &with_query(&loc, "digest=sha512:abcd"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn push_chunked_with_ranges_416_and_status() {
    let reg = Reg::start().await;
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::of(&data);
    let r = reg
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .header("content-length", "0")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut loc = location(&r);
    let patch = |loc: String, range: String, chunk: Vec<u8>| {
        reg.req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", range)
            .body(chunk)
            .send()
    };
    let r = patch(loc.clone(), "0-9999".into(), data[..10_000].to_vec())
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range").as_deref(), Some("0-9999"));
    loc = location(&r);
    // Out of order: a gap, then a replay of the first chunk.
    for range in ["20000-29999", "0-9999"] {
        let (a, b) = range.split_once('-').expect("range");
        let (a, b): (usize, usize) = (a.parse().expect("a"), b.parse().expect("b"));
        let r = patch(loc.clone(), range.into(), data[a..=b].to_vec())
            .await
            .expect("PATCH");
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
    }
    // The status says where to go on.
    let r = reg.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range").as_deref(), Some("0-9999"));
    loc = location(&r);
    let r = patch(
        loc.clone(),
        "10000-19999".into(),
        data[10_000..20_000].to_vec(),
    )
    .await
    .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range").as_deref(), Some("0-19999"));
    loc = location(&r);
    // Last chunk in the closing PUT, with its range.
    let r = reg
        .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
        .header("content-range", "20000-29999")
        .body(data[20_000..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{d}"))
            .await
            .bytes()
            .await
            .expect("body")
            .as_ref(),
        &data[..]
    );
}

#[tokio::test]
async fn push_streamed_patch_without_range_like_docker() {
    let reg = Reg::start().await;
    let data = vec![7u8; 3 << 20];
    let d = Digest::of(&data);
    let r = reg
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    let stream = futures_util::stream::iter(
        data.chunks(64 << 10)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let r = reg
        .req(Method::PATCH, &location(&r))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), Some(format!("0-{}", data.len() - 1)));
    let r = reg
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={d}")),
        )
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = reg.head(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(header(&r, "content-length"), Some(data.len().to_string()));
}

#[tokio::test]
async fn cancel_upload() {
    let reg = Reg::start().await;
    let r = reg
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    let loc = location(&r);
    let r = reg
        .req(Method::PATCH, &loc)
        .body(b"partial".to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(reg.delete(&loc).await.status(), StatusCode::NO_CONTENT);
    let r = reg.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = reg
        .req(Method::PATCH, &loc)
        .body(b"more".to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(reg.delete(&loc).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cross_repository_mount_and_fallback() {
    let reg = Reg::start().await;
    let d = reg.push_blob("src/repo", b"shared layer").await;
    let r = reg
        .req(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/dst/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), Some(d.to_string()));
    assert_eq!(
        reg.get(&format!("/v2/dst/blobs/{d}")).await.status(),
        StatusCode::OK
    );
    // Not in `from`: an upload session instead (202), usable as usual.
    let missing = Digest::of(b"not there");
    let r = reg
        .req(
            Method::POST,
            &format!("/v2/dst2/blobs/uploads/?mount={missing}&from=src/repo"),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={missing}")),
        )
        .body(b"not there".to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    // A blob of another repository is not mountable from one that lacks it.
    let r = reg
        .req(
            Method::POST,
            &format!("/v2/dst3/blobs/uploads/?mount={d}&from=dst2"),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn manifest_push_checks_references_digest_and_size() {
    let reg = Reg::start().await;
    let config = reg.push_blob("app", b"{}").await;
    let missing = Digest::of(b"missing layer");
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": OCI_LAYER, "digest": missing.to_string(), "size": 13}],
    });
    let body = serde_json::to_vec(&m).expect("json");
    let r = reg.put_manifest("app", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    // Not JSON / wrong schema / mediaType disagreeing with Content-Type.
    for (ct, bad) in [
        (OCI_MANIFEST, b"{not json".to_vec()),
        (
            OCI_MANIFEST,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                .to_vec(),
        ),
        (DOCKER_MANIFEST, body.clone()),
    ] {
        let r = reg.put_manifest("app", "v1", ct, &bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    }
    // By digest: the digest must be the body's.
    reg.push_blob("app", b"missing layer").await;
    let wrong = Digest::of(b"other");
    let r = reg
        .put_manifest("app", &wrong.to_string(), OCI_MANIFEST, &body)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let d = Digest::of(&body);
    let r = reg
        .put_manifest("app", &format!("{d}?tag=a&tag=b"), OCI_MANIFEST, &body)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/app/manifests/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), Some(d.to_string()));
    assert_eq!(header(&r, "oci-tag").as_deref(), Some("a, b"));
    for t in ["a", "b"] {
        assert_eq!(
            reg.get(&format!("/v2/app/manifests/{t}")).await.status(),
            StatusCode::OK
        );
    }
    // Too large: 413.
    let big = vec![b' '; (4 << 20) + 1];
    let r = reg.put_manifest("app", "big", OCI_MANIFEST, &big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn index_needs_its_manifests() {
    let reg = Reg::start().await;
    let img = reg.push_image("app", "amd64", "a").await;
    let absent = Digest::of(b"absent");
    let idx = |children: &[&Digest]| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": children.iter().map(|d| serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": 1,
                "platform": {"architecture": "amd64", "os": "linux"},
            })).collect::<Vec<_>>(),
        }))
        .expect("json")
    };
    let r = reg
        .put_manifest("app", "multi", OCI_INDEX, &idx(&[&img.digest, &absent]))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    let body = idx(&[&img.digest]);
    let r = reg.put_manifest("app", "multi", OCI_INDEX, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = reg.get("/v2/app/manifests/multi").await;
    assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));
    assert_eq!(r.bytes().await.expect("body").as_ref(), &body[..]);
}

/// An artifact manifest pointing at `subject` (the empty config, one blob).
async fn push_artifact(
    reg: &Reg,
    repo: &str,
    subject: &Image,
    artifact_type: Option<&str>,
    config_type: &str,
    note: &str,
) -> (Digest, reqwest::Response) {
    let empty = reg.push_blob(repo, b"{}").await;
    let blob = reg.push_blob(repo, note.as_bytes()).await;
    let mut m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": empty.to_string(), "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": blob.to_string(), "size": note.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest.to_string(), "size": subject.manifest.len()},
        "annotations": {"org.example.note": note},
    });
    if let Some(at) = artifact_type {
        m["artifactType"] = at.into();
    }
    let body = serde_json::to_vec(&m).expect("json");
    let d = Digest::of(&body);
    let r = reg
        .put_manifest(repo, &d.to_string(), OCI_MANIFEST, &body)
        .await;
    (d, r)
}

#[tokio::test]
async fn manifest_with_subject_and_referrers() {
    let reg = Reg::start().await;
    let img = reg.push_image("app", "v1", "a").await;
    let (sbom, r) = push_artifact(
        &reg,
        "app",
        &img,
        Some("application/vnd.example.sbom.v1"),
        OCI_EMPTY,
        "sbom",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), Some(img.digest.to_string()));
    // No artifactType: the config media type stands in.
    let (sig, r) = push_artifact(
        &reg,
        "app",
        &img,
        None,
        "application/vnd.example.signature.v1",
        "sig",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let r = reg.get(&format!("/v2/app/referrers/{}", img.digest)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));
    assert!(header(&r, "oci-filters-applied").is_none());
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let list = v["manifests"].as_array().expect("manifests");
    assert_eq!(list.len(), 2);
    let find = |d: &Digest| {
        list.iter()
            .find(|x| x["digest"] == d.to_string())
            .expect("referrer listed")
            .clone()
    };
    let s = find(&sbom);
    assert_eq!(s["artifactType"], "application/vnd.example.sbom.v1");
    assert_eq!(s["mediaType"], OCI_MANIFEST);
    assert_eq!(s["annotations"]["org.example.note"], "sbom");
    assert!(s["size"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(
        find(&sig)["artifactType"],
        "application/vnd.example.signature.v1"
    );

    let r = reg
        .get(&format!(
            "/v2/app/referrers/{}?artifactType=application/vnd.example.sbom.v1",
            img.digest
        ))
        .await;
    assert_eq!(
        header(&r, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["manifests"][0]["digest"], sbom.to_string());

    // A subject that does not exist (yet) is accepted; its referrers list is empty, not 404.
    let r = reg
        .get(&format!("/v2/app/referrers/{}", Digest::of(b"none")))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["manifests"], serde_json::json!([]));
}

// ---- content discovery ----

#[tokio::test]
async fn tags_list_with_pagination_and_link() {
    let reg = Reg::start().await;
    let img = reg.push_image("app", "v1", "a").await;
    for t in ["b", "a", "C", "v2", "latest"] {
        let r = reg
            .put_manifest("app", t, OCI_MANIFEST, &img.manifest)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let all = ["C", "a", "b", "latest", "v1", "v2"];
    let r = reg.get("/v2/app/tags/list").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "link").is_none());
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["name"], "app");
    assert_eq!(v["tags"], serde_json::json!(all));

    // Walk with n=4 following Link.
    let r = reg.get("/v2/app/tags/list?n=4").await;
    let link = header(&r, "link").expect("Link header");
    assert_eq!(link, "</v2/app/tags/list?n=4&last=latest>; rel=\"next\"");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["tags"], serde_json::json!(&all[..4]));
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("link target");
    let r = reg.get(next).await;
    assert!(header(&r, "link").is_none());
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["tags"], serde_json::json!(&all[4..]));

    let v: serde_json::Value = reg
        .get("/v2/app/tags/list?last=b")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["tags"], serde_json::json!(["latest", "v1", "v2"]));
    let r = reg.get("/v2/app/tags/list?n=0").await;
    assert!(header(&r, "link").is_none());
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["tags"], serde_json::json!([]));
    let r = reg.get("/v2/app/tags/list?n=6").await;
    assert!(header(&r, "link").is_none());
    let r = reg.get("/v2/app/tags/list?n=x").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn catalog_with_pagination() {
    let reg = Reg::start().await;
    for repo in ["b/x", "a", "b", "c/d/e"] {
        reg.push_image(repo, "v1", repo).await;
    }
    let v: serde_json::Value = reg.get("/v2/_catalog").await.json().await.expect("json");
    assert_eq!(
        v["repositories"],
        serde_json::json!(["a", "b", "b/x", "c/d/e"])
    );
    let r = reg.get("/v2/_catalog?n=2").await;
    assert_eq!(
        header(&r, "link").as_deref(),
        Some("</v2/_catalog?n=2&last=b>; rel=\"next\"")
    );
    let v: serde_json::Value = reg
        .get("/v2/_catalog?n=2&last=b")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["repositories"], serde_json::json!(["b/x", "c/d/e"]));
}

// ---- content management ----

#[tokio::test]
async fn delete_is_405_unless_enabled() {
    let reg = Reg::start().await;
    let img = reg.push_image("app", "v1", "a").await;
    for path in [
        "/v2/app/manifests/v1".to_owned(),
        format!("/v2/app/manifests/{}", img.digest),
        format!("/v2/app/blobs/{}", img.layer),
    ] {
        let r = reg.delete(&path).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(error_code(r).await, "UNSUPPORTED");
    }
    assert_eq!(
        reg.get("/v2/app/manifests/v1").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn delete_tag_manifest_and_blob() {
    let reg = Reg::start_with(|c| c.delete = true).await;
    let img = reg.push_image("app", "v1", "a").await;
    reg.put_manifest("app", "v2", OCI_MANIFEST, &img.manifest)
        .await;
    reg.put_manifest("app", "v3", OCI_MANIFEST, &img.manifest)
        .await;
    // Tag: only the tag goes.
    assert_eq!(
        reg.delete("/v2/app/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        reg.get("/v2/app/manifests/v1").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reg.get(&format!("/v2/app/manifests/{}", img.digest))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        reg.delete("/v2/app/manifests/v1").await.status(),
        StatusCode::NOT_FOUND
    );
    // Manifest: it and every tag pointing at it.
    let (art, _) = push_artifact(&reg, "app", &img, Some("x/y"), OCI_EMPTY, "n").await;
    assert_eq!(
        reg.delete(&format!("/v2/app/manifests/{art}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let v: serde_json::Value = reg
        .get(&format!("/v2/app/referrers/{}", img.digest))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["manifests"], serde_json::json!([]));
    assert_eq!(
        reg.delete(&format!("/v2/app/manifests/{}", img.digest))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    for r in ["v2", "v3", &img.digest.to_string()] {
        let resp = reg.get(&format!("/v2/app/manifests/{r}")).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{r}");
        assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");
    }
    let v: serde_json::Value = reg
        .get("/v2/app/tags/list")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["tags"], serde_json::json!([]));
    let r = reg
        .delete(&format!("/v2/nosuchrepo/manifests/{}", img.digest))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Blob.
    let path = format!("/v2/app/blobs/{}", img.layer);
    assert_eq!(reg.delete(&path).await.status(), StatusCode::ACCEPTED);
    assert_eq!(reg.get(&path).await.status(), StatusCode::NOT_FOUND);
    let r = reg.delete(&path).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn read_only_refuses_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("storage");
    let img = {
        let reg = Reg::start_with(|c| c.root = root.clone()).await;
        reg.push_image("app", "v1", "a").await
    };
    let reg = Reg::start_with(|c| {
        c.root = root.clone();
        c.read_only = true;
        c.delete = true;
    })
    .await;
    assert_eq!(
        reg.get("/v2/app/manifests/v1").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{}", img.layer))
            .await
            .status(),
        StatusCode::OK
    );
    for (m, path) in [
        (Method::POST, "/v2/app/blobs/uploads/".to_owned()),
        (Method::PUT, "/v2/app/manifests/v2".to_owned()),
        (Method::DELETE, "/v2/app/manifests/v1".to_owned()),
        (Method::DELETE, format!("/v2/app/blobs/{}", img.layer)),
    ] {
        let r = reg
            .req(m.clone(), &path)
            .body(img.manifest.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
        assert_eq!(error_code(r).await, "UNSUPPORTED");
    }
}
