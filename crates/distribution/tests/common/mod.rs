//! Test harness: a real `docker-registry` (distribution 2.8) on 127.0.0.1, images built locally.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_distribution::{PullOptions, PushOptions, RegistryConfig};
use berth_image::ImageStore;
use berth_types::image_config::{History, ImageConfig};
use berth_types::{Digest, Reference};

/// A docker-registry process with its own storage; killed on drop (even when a test panics).
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With `htpasswd` = Some((user, password)): distribution's htpasswd basic auth.
    pub fn start_with(htpasswd: Option<(&str, &str)>) -> Registry {
        Registry::start_full(htpasswd, None)
    }

    /// With `tls` = a dir holding server.crt/server.key/ca.crt: HTTPS that requires a client
    /// certificate signed by ca.crt.
    pub fn start_full(htpasswd: Option<(&str, &str)>, tls: Option<&Path>) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed (apt-get install docker-registry)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut auth = String::new();
        if let Some((u, p)) = htpasswd {
            let hash = bcrypt::hash(p, 5).expect("bcrypt");
            let hp = dir.path().join("htpasswd");
            std::fs::write(&hp, format!("{u}:{hash}\n")).expect("htpasswd");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                hp.display()
            );
        }
        let tls = tls
            .map(|d| {
                format!(
                    "  tls:\n    certificate: {0}/server.crt\n    key: {0}/server.key\n    clientcas:\n      - {0}/ca.crt\n",
                    d.display()
                )
            })
            .unwrap_or_default();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls}{auth}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), cfg).expect("config");
        let mut r = Registry {
            dir,
            port,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not come up: {}",
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn reference(&self, name: &str) -> Reference {
        Reference::parse_tagged(&format!("{}/{name}", self.host())).expect("reference")
    }

    /// The file a blob lives in, in distribution's filesystem layout.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options that use no docker config of the machine running the tests.
pub fn registry_config() -> RegistryConfig {
    RegistryConfig {
        docker_config: None,
        certs_dirs: Vec::new(),
        ..Default::default()
    }
}

pub fn pull_opts() -> PullOptions {
    PullOptions {
        registry: registry_config(),
        ..Default::default()
    }
}

pub fn push_opts() -> PushOptions {
    PushOptions {
        registry: registry_config(),
        credentials: None,
    }
}

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Arc<ImageStore>,
}

pub fn new_store() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ImageStore::open(dir.path()).expect("open store"));
    TestStore { dir, store }
}

impl TestStore {
    /// Blob files and layer directories on disk (the "nothing stored" check).
    pub fn contents(&self) -> (usize, usize) {
        let blobs = std::fs::read_dir(self.dir.path().join("image/blobs/sha256"))
            .map(|r| r.count())
            .unwrap_or(0);
        let layers = std::fs::read_dir(self.dir.path().join("overlay2"))
            .map(|r| r.flatten().filter(|e| e.file_name() != "l").count())
            .unwrap_or(0);
        (blobs, layers)
    }
}

/// A tar builder for layers.
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

/// A busybox rootfs (Debian's busybox-static) as one layer.
pub fn busybox_layer() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let mut t = Tar::new()
        .dir("bin/")
        .dir("etc/")
        .dir("tmp/")
        .file("bin/busybox", &bb);
    for app in ["sh", "ls", "cat", "echo", "true"] {
        t = t.symlink(&format!("bin/{app}"), "busybox");
    }
    t.file("etc/hostname", b"busybox\n").finish()
}

/// Pseudo-random bytes (xorshift): incompressible for gzip, cheap to make.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // Distinct odd states for distinct seeds.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn base_config(arch: &str) -> ImageConfig {
    ImageConfig {
        architecture: arch.into(),
        os: "linux".into(),
        config: Some(berth_types::image_config::ContainerConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Build an image from layer tars (one `create_image` per layer), tagged `reference`.
pub fn make_image(store: &ImageStore, layers: &[Vec<u8>], reference: &Reference) -> Digest {
    let mut parent: Option<Digest> = None;
    for (i, l) in layers.iter().enumerate() {
        let last = i + 1 == layers.len();
        let mut input: &[u8] = l;
        let id = store
            .create_image(
                parent.as_ref(),
                Some(&mut input),
                base_config("amd64"),
                History {
                    created_by: Some(format!("layer {i}")),
                    ..Default::default()
                },
                last.then_some(reference),
                &mut |_| {},
            )
            .expect("create_image");
        parent = Some(id);
    }
    parent.expect("at least one layer")
}

/// `docker save` of the store to a file, for skopeo's docker-archive transport.
pub fn save_to(store: &ImageStore, name: &str, path: &Path) {
    let mut f = std::fs::File::create(path).expect("archive");
    store.save(&[name.to_owned()], &mut f).expect("save");
    f.flush().expect("flush");
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

/// A TCP proxy in front of the registry that cuts the first connection whose response passes
/// `cut_after` bytes, and records whether any request asked for a Range.
pub struct CuttingProxy {
    pub port: u16,
    pub saw_range: Arc<std::sync::atomic::AtomicBool>,
}

pub fn cutting_proxy(upstream: u16, cut_after: u64) -> CuttingProxy {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cut_done = Arc::new(AtomicBool::new(false));
    let saw_range = Arc::new(AtomicBool::new(false));
    let saw = Arc::clone(&saw_range);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c_r, mut s_w) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let saw = Arc::clone(&saw);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = c_r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if String::from_utf8_lossy(&buf[..n])
                        .to_ascii_lowercase()
                        .contains("range: bytes=")
                    {
                        saw.store(true, Ordering::SeqCst);
                    }
                    if s_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_w.shutdown(std::net::Shutdown::Write);
            });
            let cut = Arc::clone(&cut_done);
            let (mut s_r, mut c_w) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut total = 0u64;
                while let Ok(n) = s_r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    if total > cut_after && !cut.swap(true, Ordering::SeqCst) {
                        // Forward part, then drop both sides mid-body.
                        let _ = c_w.write_all(&buf[..n / 2]);
                        let _ = c_w.shutdown(std::net::Shutdown::Both);
                        let _ = s_r.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if c_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_w.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    CuttingProxy { port, saw_range }
}

/// A Bearer-token front for a registry: `/token` issues tokens that list the scopes asked for
/// (requiring Basic `creds` when given); `/v2/...` needs a token with the right scope, else 401
/// with a `WWW-Authenticate: Bearer` challenge. Authorized requests are forwarded.
/// (scope params, account) of a token request.
pub type TokenRequest = (Vec<String>, Option<String>);

pub struct TokenFront {
    pub port: u16,
    /// (scope params, account) of every token request.
    pub token_requests: Arc<std::sync::Mutex<Vec<TokenRequest>>>,
}

pub async fn token_front(upstream: u16, creds: Option<(&str, &str)>) -> TokenFront {
    use base64::Engine as _;
    use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
    use hyper::body::Frame;
    use hyper::{Request, Response, StatusCode};
    type Body = BoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let basic = creds.map(|(u, p)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let reqs = Arc::clone(&requests);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (reqs, basic, http) = (Arc::clone(&reqs), basic.clone(), http.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (reqs, basic, http) = (Arc::clone(&reqs), basic.clone(), http.clone());
                    async move {
                        let empty = |status: StatusCode| -> Response<Body> {
                            let mut r = Response::new(
                                http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
                            );
                            *r.status_mut() = status;
                            r
                        };
                        let path = req.uri().path().to_owned();
                        let query = req.uri().query().unwrap_or("").to_owned();
                        if path == "/token" {
                            let given = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            if basic.is_some() && given != basic {
                                return Ok::<_, std::convert::Infallible>(empty(
                                    StatusCode::UNAUTHORIZED,
                                ));
                            }
                            let mut scopes = Vec::new();
                            let mut account = None;
                            for kv in query.split('&') {
                                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                                let v = percent_decode(v);
                                match k {
                                    "scope" => scopes.push(v),
                                    "account" => account = Some(v),
                                    _ => {}
                                }
                            }
                            reqs.lock().expect("lock").push((scopes.clone(), account));
                            let token = format!("tok {}", scopes.join(" ")).replace(' ', "+");
                            let body = serde_json::json!({ "token": token }).to_string();
                            return Ok(Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body))
                                    .map_err(|e| match e {})
                                    .boxed(),
                            ));
                        }
                        // Which scope does this request need?
                        let need = path
                            .strip_prefix("/v2/")
                            .and_then(|rest| {
                                ["/manifests/", "/blobs/", "/tags/"]
                                    .iter()
                                    .find_map(|m| rest.find(m).map(|i| rest[..i].to_owned()))
                            })
                            .map(|repo| {
                                let action = match *req.method() {
                                    hyper::Method::GET | hyper::Method::HEAD => "pull",
                                    _ => "push",
                                };
                                (repo, action)
                            });
                        let token = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer "))
                            .map(|t| t.replace('+', " "));
                        let ok = match (&token, &need) {
                            (None, _) => false,
                            (Some(_), None) => true,
                            (Some(t), Some((repo, action))) => t.split(' ').any(|s| {
                                s.strip_prefix(&format!("repository:{repo}:"))
                                    .is_some_and(|acts| acts.split(',').any(|a| a == *action))
                            }),
                        };
                        if !ok {
                            let mut r = empty(StatusCode::UNAUTHORIZED);
                            let scope = need
                                .map(|(repo, a)| format!(",scope=\"repository:{repo}:{a}\""))
                                .unwrap_or_default();
                            let ch = format!(
                                "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"berth-test\"{scope}"
                            );
                            r.headers_mut()
                                .insert("www-authenticate", ch.parse().expect("header"));
                            return Ok(r);
                        }
                        // Forward.
                        let url = format!(
                            "http://127.0.0.1:{upstream}{}",
                            req.uri()
                                .path_and_query()
                                .map(|p| p.as_str())
                                .unwrap_or("/")
                        );
                        let mut fwd = http.request(req.method().clone(), &url);
                        for (k, v) in req.headers() {
                            if k != "host" && k != "authorization" {
                                fwd = fwd.header(k, v);
                            }
                        }
                        let body = req.into_body().into_data_stream();
                        let resp = match fwd.body(reqwest::Body::wrap_stream(body)).send().await {
                            Ok(r) => r,
                            Err(_) => return Ok(empty(StatusCode::BAD_GATEWAY)),
                        };
                        let mut out = Response::builder().status(resp.status());
                        for (k, v) in resp.headers() {
                            if k == "location" {
                                let l = v.to_str().unwrap_or("").replace(
                                    &format!("127.0.0.1:{upstream}"),
                                    &format!("127.0.0.1:{port}"),
                                );
                                out = out.header(k, l);
                            } else {
                                out = out.header(k, v);
                            }
                        }
                        use futures_util::StreamExt;
                        let stream = resp.bytes_stream().map(|r| {
                            r.map(Frame::data).map_err(|e| {
                                Box::new(e) as Box<dyn std::error::Error + Send + Sync>
                            })
                        });
                        Ok(out
                            .body(BodyExt::boxed(StreamBody::new(stream)))
                            .expect("response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TokenFront {
        port,
        token_requests: requests,
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
pub fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
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
    };
    run(&[
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
    ]);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, cn) in [("server", "127.0.0.1"), ("client", "berth-client")] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
}

/// Write an OCI image layout with one image (tag `latest`) made of `layers` (media type, blob
/// bytes) and a config listing `diff_ids`; returns the manifest digest.
pub fn write_oci_layout(dir: &Path, layers: &[(&str, Vec<u8>)], diff_ids: Vec<Digest>) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |data: &[u8]| -> (Digest, usize) {
        let d = Digest::of(data);
        std::fs::write(blobs.join(d.hex()), data).expect("blob");
        (d, data.len())
    };
    let mut descs = Vec::new();
    for (mt, blob) in layers {
        let (d, n) = put(blob);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": n}));
    }
    let mut cfg = base_config("amd64");
    cfg.rootfs.diff_ids = diff_ids;
    let (cd, cs) = put(&serde_json::to_vec(&cfg).expect("cfg"));
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs},
        "layers": descs,
    });
    let (md, ms) = put(&serde_json::to_vec(&m).expect("manifest"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md.to_string(), "size": ms,
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

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("gz");
    gz.finish().expect("gz")
}
