//! Test harness: a berth registry in-process on a free port of 127.0.0.1 with its own storage
//! directory (removed on drop, also when the test fails), a plain HTTP client, and builders for
//! blobs, images and artifacts.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use berth_registry::{Config, Server};
use berth_types::Digest;
use reqwest::{Method, StatusCode};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
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

pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn skopeo_fails(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo");
    assert!(!out.status.success(), "skopeo {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (ca.crt/ca.key) and a server certificate for 127.0.0.1 (server.crt/server.key).
pub fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=berth-test-ca",
        ],
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A self-signed signing certificate for a token issuer (token.crt/token.key).
pub fn make_token_cert(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-days",
            "2",
            "-subj",
            "/CN=berth-token-issuer",
        ],
    );
}

/// A docker-registry (distribution 2.8) with its own storage, killed on drop.
pub struct Distribution {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: std::process::Child,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Distribution {
    /// `auth` is a YAML fragment under `auth:` (indented by 2), or empty.
    pub fn start(auth: &str) -> Distribution {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed (apt-get install docker-registry)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let auth = if auth.is_empty() {
            String::new()
        } else {
            format!("auth:\n{auth}")
        };
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), cfg).expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry");
        let d = Distribution { dir, port, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not come up: {}",
                std::fs::read_to_string(d.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        d
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `berth registry serve` as a process of its own (the CLI as users run it), killed on drop.
pub struct BerthServe {
    pub port: u16,
    pub root: std::path::PathBuf,
    args: Vec<String>,
    child: Option<std::process::Child>,
    log: std::path::PathBuf,
}

pub fn berth_bin() -> std::path::PathBuf {
    let b = berth_e2e::bin_dir().join("berth");
    assert!(
        b.exists(),
        "{} is missing: cargo build --bins first",
        b.display()
    );
    b
}

impl BerthServe {
    pub fn start(root: &Path, extra: &[&str]) -> BerthServe {
        let mut s = BerthServe {
            port: free_port(),
            root: root.to_owned(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: root.with_extension("log"),
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(berth_bin())
            .args(["registry", "serve", "--addr"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--root")
            .arg(&self.root)
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn berth registry serve");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!(
                    "berth registry serve exited ({st}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "berth registry serve did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for BerthServe {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tar builder for image layers.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    pub fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    pub fn dir(mut self, path: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Directory, 0o755, 0);
        self.0
            .append_data(&mut h, path, std::io::empty())
            .expect("tar");
        self
    }
    pub fn file(mut self, path: &str, data: &[u8]) -> Tar {
        let mut h = Tar::header(tar::EntryType::Regular, 0o755, data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("tar");
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).expect("tar");
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

/// A busybox rootfs (Debian's busybox-static) as one layer tar.
pub fn busybox_layer() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let mut t = Tar::new().dir("bin/").dir("etc/").file("bin/busybox", &bb);
    for app in ["sh", "echo", "true"] {
        t = t.symlink(&format!("bin/{app}"), "busybox");
    }
    t.file("etc/hostname", b"busybox\n").finish()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gz");
    gz.finish().expect("gz")
}

/// An OCI image layout in `dir` with one image tagged `latest` (gzipped `layers`, a config
/// with their diff_ids); returns the manifest digest.
pub fn write_oci_layout(dir: &Path, layers: &[Vec<u8>]) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |data: &[u8]| -> (Digest, usize) {
        let d = Digest::of(data);
        std::fs::write(blobs.join(d.hex()), data).expect("blob");
        (d, data.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(Digest::of(l).to_string());
        let (d, n) = put(&gzip(l));
        descs.push(serde_json::json!({"mediaType": OCI_LAYER, "digest": d.to_string(), "size": n}));
    }
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = put(&serde_json::to_vec(&cfg).expect("cfg"));
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cd.to_string(), "size": cs},
        "layers": descs,
    });
    let (md, ms) = put(&serde_json::to_vec(&m).expect("manifest"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    md
}

/// The manifest digest skopeo sees at `image` (a `docker://` reference).
pub fn skopeo_digest(image: &str, extra: &[&str]) -> String {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(image);
    let raw = skopeo(&args);
    Digest::of(raw.as_bytes()).to_string()
}
