//! Test harness: a real `docker-registry` (distribution 2.8) on 127.0.0.1 and the rest of the
//! registry test support from `berth_e2e::registry`; images built locally.
#![allow(dead_code, unused_imports)]

pub use berth_e2e::registry::{
    Registry, Tar, busybox_layer, free_port, gzip, make_certs, random_bytes, skopeo,
    write_oci_layout,
};

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

/// References into a test registry.
pub trait RegistryExt {
    fn reference(&self, name: &str) -> Reference;
}

impl RegistryExt for Registry {
    fn reference(&self, name: &str) -> Reference {
        Reference::parse_tagged(&format!("{}/{name}", self.host())).expect("reference")
    }
}
