//! Test harness: a berth registry in-process on a free port of 127.0.0.1 with its own storage
//! directory (removed on drop, also when the test fails), a plain HTTP client, and builders for
//! blobs, images and artifacts. Processes (docker-registry, `berth registry serve`, skopeo,
//! openssl) and layer builders come from the shared `berth_e2e::registry`.
#![allow(dead_code, unused_imports)]

pub use berth_e2e::registry::{
    BerthServe, OCI_CONFIG, OCI_LAYER_GZIP as OCI_LAYER, OCI_MANIFEST, Registry, Tar, berth_bin,
    busybox_layer, free_port, gzip, make_certs, make_token_cert, skopeo, skopeo_digest,
    skopeo_fails, write_oci_layout_gz as write_oci_layout,
};

use berth_registry::{Config, Server};
use berth_types::Digest;
use reqwest::{Method, StatusCode};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub struct Reg {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub http: reqwest::Client,
}

impl Reg {
    pub async fn start() -> Reg {
        Reg::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Reg {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::new(dir.path().join("storage"));
        cfg.addr = "127.0.0.1:0".parse().expect("addr");
        f(&mut cfg);
        let server = Server::start(cfg).await.expect("start registry");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Reg { dir, server, http }
    }

    pub fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("storage")
    }

    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.server.url())
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.req(Method::GET, path).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> reqwest::Response {
        self.req(Method::HEAD, path).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.req(Method::DELETE, path).send().await.expect("DELETE")
    }

    /// POST then PUT; returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let r = self
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let loc = location(&r);
        let r = self
            .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("PUT");
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        d
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest")
    }

    /// An OCI image (config + one layer with `seed` in it) pushed as `repo:tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> Image {
        let layer = format!("layer {seed}").into_bytes();
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#).into_bytes();
        let layer_d = self.push_blob(repo, &layer).await;
        let config_d = self.push_blob(repo, &config).await;
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_d.to_string(), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_d.to_string(), "size": layer.len()}],
        });
        let manifest = serde_json::to_vec(&m).expect("json");
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        Image {
            digest: Digest::of(&manifest),
            manifest,
            config: config_d,
            layer: layer_d,
        }
    }
}

pub struct Image {
    pub digest: Digest,
    pub manifest: Vec<u8>,
    pub config: Digest,
    pub layer: Digest,
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_owned()
}

pub fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') {
        format!("{url}&{q}")
    } else {
        format!("{url}?{q}")
    }
}

/// The first error code of a spec error body.
pub async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("error body is JSON");
    v["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_owned()
}
