//! The HTTP side: routes of the distribution API on hyper (HTTP/1.1, optionally over rustls),
//! auth and read-only/delete policy in front, [`Storage`] behind.
//!
//! Small metadata operations (links, tags) are plain file system calls on the runtime threads —
//! they are a stat or a rename on a local disk; blob bodies stream through tokio files, and the
//! two slow ones (re-hashing an upload after a restart, fsync on commit) go to blocking threads.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_types::Digest;
use berth_types::digest::Hasher;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::auth::{Auth, Grant, Htpasswd, Need, TokenAuth};
use crate::error::{Error, Result};
use crate::manifest::{self, MAX_MANIFEST, OCI_INDEX};
use crate::names::{ManifestRef, check_name, is_valid_name, is_valid_tag, parse_digest};
use crate::storage::Storage;

type Body = BoxBody<Bytes, io::Error>;

const API_VERSION: &str = "registry/2.0";

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// distribution's `auth.token`: where clients get tokens and whom the registry trusts.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub root: PathBuf,
    /// htpasswd file (bcrypt entries): Basic auth for every request.
    pub htpasswd: Option<PathBuf>,
    pub realm: String,
    pub token: Option<TokenConfig>,
    pub tls: Option<TlsConfig>,
    /// Refuse every write with 405 UNSUPPORTED (e.g. while `gc` runs).
    pub read_only: bool,
    /// Allow DELETE of manifests, tags and blobs (off by default, as in distribution).
    pub delete: bool,
}

impl Config {
    pub fn new(root: impl Into<PathBuf>) -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            root: root.into(),
            htpasswd: None,
            realm: "Registry Realm".to_owned(),
            token: None,
            tls: None,
            read_only: false,
            delete: false,
        }
    }
}

/// Per-session hashing state, so finishing an upload does not read it back. Lost on restart:
/// then the file is hashed again when the upload completes.
struct UploadState {
    hashed: Option<(u64, Hasher)>,
}

struct State {
    store: Storage,
    auth: Auth,
    read_only: bool,
    delete: bool,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadState>>>>,
}

/// A running registry. Dropping it stops it (listener and open connections).
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Open the storage, bind, and serve in the background.
    pub async fn start(cfg: Config) -> Result<Server> {
        if cfg.htpasswd.is_some() && cfg.token.is_some() {
            return Err(Error::Config(
                "htpasswd and token auth are exclusive".to_owned(),
            ));
        }
        let auth = match (&cfg.htpasswd, &cfg.token) {
            (Some(p), _) => Auth::Htpasswd(Htpasswd::load(p, &cfg.realm)?),
            (None, Some(t)) => Auth::Token(TokenAuth::load(
                &t.realm,
                &t.service,
                &t.issuer,
                &t.rootcertbundle,
            )?),
            (None, None) => Auth::None,
        };
        let acceptor = cfg.tls.as_ref().map(tls_acceptor).transpose()?;
        let state = Arc::new(State {
            store: Storage::open(&cfg.root)?,
            auth,
            read_only: cfg.read_only,
            delete: cfg.delete,
            uploads: Mutex::new(HashMap::new()),
        });
        let listener = TcpListener::bind(cfg.addr)
            .await
            .map_err(|e| Error::Config(format!("listen on {}: {e}", cfg.addr)))?;
        let addr = listener.local_addr()?;
        let tls = acceptor.is_some();
        let task = tokio::spawn(accept_loop(listener, acceptor, state));
        Ok(Server { addr, tls, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:5000` or `https://...`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serve until the task ends (it does not, short of a panic or abort).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tls_acceptor(t: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor> {
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())));
    let cert_pem = read(&t.cert)?;
    let key_pem = read(&t.key)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("{}: {e}", t.cert.display())))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::Config(format!("{}: {e}", t.key.display())))?
        .ok_or_else(|| Error::Config(format!("{}: no private key", t.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("tls: {e}")))?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) {
    // Connections live in the set, so aborting this task (Server dropped) closes them too.
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next() => continue,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let tls = tls.clone();
        conns.spawn(async move {
            match tls {
                Some(acc) => match acc.accept(stream).await {
                    Ok(s) => serve_conn(s, state).await,
                    Err(e) => tracing::debug!("tls handshake: {e}"),
                },
                None => serve_conn(stream, state).await,
            }
        });
    }
}

async fn serve_conn<S>(stream: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

#[derive(Debug)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    /// Start an upload (POST .../blobs/uploads/).
    Uploads(String),
    Upload(String, String),
    Referrers(String, String),
}

impl Route {
    fn parse(rest: &str) -> Option<Route> {
        if rest.is_empty() {
            return Some(Route::Base);
        }
        if rest == "_catalog" {
            return Some(Route::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name = |k: usize| segs[..n - k].join("/");
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Some(Route::Tags(name(2)));
        }
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            return Some(if segs[n - 1].is_empty() {
                Route::Uploads(name(3))
            } else {
                Route::Upload(name(3), segs[n - 1].to_owned())
            });
        }
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Some(Route::Uploads(name(2)));
        }
        if n >= 3 {
            let last = segs[n - 1].to_owned();
            match segs[n - 2] {
                "manifests" => return Some(Route::Manifest(name(2), last)),
                "blobs" => return Some(Route::Blob(name(2), last)),
                "referrers" => return Some(Route::Referrers(name(2), last)),
                _ => {}
            }
        }
        None
    }

    fn repo(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::Uploads(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }

    /// What token scope the request needs (distribution's access model).
    fn needs(&self, method: &Method) -> Vec<Need> {
        let repo = |name: &str, actions: &[&'static str]| -> Vec<Need> {
            actions
                .iter()
                .map(|a| Need {
                    kind: "repository",
                    name: name.to_owned(),
                    action: a,
                })
                .collect()
        };
        match self {
            Route::Base => Vec::new(),
            Route::Catalog => vec![Need {
                kind: "registry",
                name: "catalog".to_owned(),
                action: "*",
            }],
            Route::Manifest(n, _) | Route::Blob(n, _) if *method == Method::DELETE => {
                repo(n, &["delete"])
            }
            r => {
                let n = r.repo().unwrap_or_default();
                if *method == Method::GET || *method == Method::HEAD {
                    repo(n, &["pull"])
                } else {
                    repo(n, &["pull", "push"])
                }
            }
        }
    }
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn empty_body() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

fn full_body(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A response builder with the API version header every response carries.
fn builder(status: StatusCode) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header("Docker-Distribution-API-Version", API_VERSION)
}

/// Finish a response; a header that does not encode (it cannot: names, tags and digests are
/// validated) turns into a 500 rather than a panic.
fn finish(b: http::response::Builder, body: Body) -> Response<Body> {
    b.body(body).unwrap_or_else(|e| {
        tracing::error!("building response: {e}");
        let mut r = Response::new(empty_body());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn json_response(b: http::response::Builder, v: &serde_json::Value) -> Response<Body> {
    let data = serde_json::to_vec(v).unwrap_or_default();
    finish(
        b.header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, data.len()),
        full_body(data),
    )
}

fn error_response(e: &Error) -> Response<Body> {
    let (status, _) = e.status_code();
    if status.is_server_error() {
        tracing::error!("{e}");
    }
    json_response(builder(status), &e.body())
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let rest = match path.as_str() {
        "/v2" | "/v2/" => Some(""),
        p => p.strip_prefix("/v2/"),
    };
    let Some(route) = rest.and_then(Route::parse) else {
        return json_response(
            builder(StatusCode::NOT_FOUND),
            &serde_json::json!({"errors": [{"code": "NOT_FOUND", "message": "not found"}]}),
        );
    };
    if let Some(name) = route.repo()
        && let Err(e) = check_name(name)
    {
        return error_response(&e);
    }
    let method = req.method().clone();
    let authz = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let grant = match state.auth.authorize(authz, &route.needs(&method)) {
        Ok(g) => g,
        Err(refusal) => {
            let body = serde_json::json!({"errors": [{
                "code": "UNAUTHORIZED", "message": refusal.message, "detail": null,
            }]});
            return json_response(
                builder(StatusCode::UNAUTHORIZED)
                    .header(header::WWW_AUTHENTICATE, refusal.challenge),
                &body,
            );
        }
    };
    let read = method == Method::GET || method == Method::HEAD;
    if !read && state.read_only {
        return error_response(&Error::Unsupported);
    }
    if method == Method::DELETE
        && !state.delete
        && matches!(route, Route::Manifest(..) | Route::Blob(..))
    {
        return error_response(&Error::Unsupported);
    }
    let q = Query::parse(req.uri().query());
    let r = match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(json_response(
            builder(StatusCode::OK),
            &serde_json::json!({}),
        )),
        (Route::Catalog, Method::GET) => catalog(&state, &q),
        (Route::Tags(name), Method::GET) => tags_list(&state, &name, &q),
        (Route::Manifest(name, r), m @ (Method::GET | Method::HEAD)) => {
            get_manifest(&state, &name, &r, m == Method::HEAD)
        }
        (Route::Manifest(name, r), Method::PUT) => put_manifest(&state, &name, &r, &q, req).await,
        (Route::Manifest(name, r), Method::DELETE) => delete_manifest(&state, &name, &r),
        (Route::Blob(name, d), m @ (Method::GET | Method::HEAD)) => {
            get_blob(&state, &name, &d, m == Method::HEAD, req.headers()).await
        }
        (Route::Blob(name, d), Method::DELETE) => delete_blob(&state, &name, &d),
        (Route::Uploads(name), Method::POST) => start_upload(&state, &name, &q, &grant, req).await,
        (Route::Upload(name, id), Method::PATCH) => patch_upload(&state, &name, &id, req).await,
        (Route::Upload(name, id), Method::PUT) => put_upload(&state, &name, &id, &q, req).await,
        (Route::Upload(name, id), Method::GET) => upload_status(&state, &name, &id),
        (Route::Upload(name, id), Method::DELETE) => cancel_upload(&state, &name, &id).await,
        (Route::Referrers(name, d), Method::GET) => referrers(&state, &name, &d, &q),
        _ => Err(Error::Unsupported),
    };
    r.unwrap_or_else(|e| error_response(&e))
}

/// `n` and where the next page starts (its `last`), for the `Link` header.
type NextPage = Option<(usize, String)>;

/// `n` and `last` pagination over a sorted list; returns the page and the next page's link
/// parameters when there is one.
fn paginate(items: Vec<String>, q: &Query) -> Result<(Vec<String>, NextPage)> {
    let mut items = items;
    if let Some(last) = q.get("last") {
        items.retain(|t| t.as_str() > last);
    }
    let n = match q.get("n") {
        None => return Ok((items, None)),
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| Error::Pagination(format!("n={s:?}")))?,
    };
    if n == 0 {
        return Ok((Vec::new(), None));
    }
    if items.len() > n {
        items.truncate(n);
        let last = items.last().cloned().unwrap_or_default();
        return Ok((items, Some((n, last))));
    }
    Ok((items, None))
}

fn link_header(path: &str, n: usize, last: &str) -> String {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    format!("<{path}?n={n}&last={last}>; rel=\"next\"")
}

fn catalog(state: &State, q: &Query) -> Result<Response<Body>> {
    let (repos, next) = paginate(state.store.repositories()?, q)?;
    let mut b = builder(StatusCode::OK);
    if let Some((n, last)) = next {
        b = b.header(header::LINK, link_header("/v2/_catalog", n, &last));
    }
    Ok(json_response(
        b,
        &serde_json::json!({ "repositories": repos }),
    ))
}

fn tags_list(state: &State, name: &str, q: &Query) -> Result<Response<Body>> {
    let tags = state.store.tags(name)?.ok_or(Error::NameUnknown)?;
    let (tags, next) = paginate(tags, q)?;
    let mut b = builder(StatusCode::OK);
    if let Some((n, last)) = next {
        b = b.header(
            header::LINK,
            link_header(&format!("/v2/{name}/tags/list"), n, &last),
        );
    }
    Ok(json_response(
        b,
        &serde_json::json!({ "name": name, "tags": tags }),
    ))
}

fn resolve(state: &State, name: &str, reference: &str) -> Result<Digest> {
    match ManifestRef::parse(reference)? {
        ManifestRef::Digest(d) => Ok(d),
        ManifestRef::Tag(t) => state
            .store
            .resolve_tag(name, &t)?
            .ok_or(Error::ManifestUnknown),
    }
}

fn get_manifest(state: &State, name: &str, reference: &str, head: bool) -> Result<Response<Body>> {
    let d = resolve(state, name, reference)?;
    let (mt, data) = state
        .store
        .read_manifest(name, &d)?
        .ok_or(Error::ManifestUnknown)?;
    let b = builder(StatusCode::OK)
        .header(header::CONTENT_TYPE, mt)
        .header(header::CONTENT_LENGTH, data.len())
        .header("Docker-Content-Digest", d.to_string())
        .header(header::ETAG, format!("\"{d}\""));
    Ok(finish(b, if head { empty_body() } else { full_body(data) }))
}

async fn read_body_limited(body: Incoming, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::ManifestInvalid(format!("reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Error::TooLarge("manifest"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

async fn put_manifest(
    state: &State,
    name: &str,
    reference: &str,
    q: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let r = ManifestRef::parse(reference)?;
    let extra_tags = q.all("tag");
    for t in &extra_tags {
        if !is_valid_tag(t) {
            return Err(Error::TagInvalid((*t).to_owned()));
        }
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_body_limited(req.into_body(), MAX_MANIFEST).await?;
    let parsed = manifest::parse(ct.as_deref(), &body)?;
    let digest = Digest::of(&body);
    if let ManifestRef::Digest(want) = &r
        && *want != digest
    {
        return Err(Error::DigestInvalid(format!(
            "manifest digest is {digest}, not {want}"
        )));
    }
    // Everything referenced must be in this repository (a `subject` need not be).
    for b in &parsed.blobs {
        if state.store.repo_blob(name, b)?.is_none() {
            return Err(Error::ManifestBlobUnknown(b.to_string()));
        }
    }
    for m in &parsed.manifests {
        if state.store.manifest_media_type(name, m)?.is_none() {
            return Err(Error::ManifestBlobUnknown(m.to_string()));
        }
    }
    state.store.put_blob_bytes(&body)?;
    state
        .store
        .link_manifest(name, &digest, &parsed.media_type)?;
    if let Some(subject) = &parsed.subject {
        let desc = parsed.referrer_descriptor(&digest, body.len());
        state.store.add_referrer(name, subject, &digest, &desc)?;
    }
    let mut b = builder(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::CONTENT_LENGTH, 0);
    match &r {
        ManifestRef::Tag(t) => state.store.set_tag(name, t, &digest)?,
        ManifestRef::Digest(_) => {
            for t in &extra_tags {
                state.store.set_tag(name, t, &digest)?;
            }
            if !extra_tags.is_empty() {
                b = b.header("OCI-Tag", extra_tags.join(", "));
            }
        }
    }
    if let Some(s) = &parsed.subject {
        b = b.header("OCI-Subject", s.to_string());
    }
    Ok(finish(b, empty_body()))
}

fn delete_manifest(state: &State, name: &str, reference: &str) -> Result<Response<Body>> {
    match ManifestRef::parse(reference)? {
        ManifestRef::Tag(t) => {
            if !state.store.delete_tag(name, &t)? {
                return Err(Error::ManifestUnknown);
            }
        }
        ManifestRef::Digest(d) => {
            let (_, data) = state
                .store
                .read_manifest(name, &d)?
                .ok_or(Error::ManifestUnknown)?;
            if let Ok(p) = manifest::parse(None, &data)
                && let Some(s) = p.subject
            {
                state.store.remove_referrer(name, &s, &d)?;
            }
            state.store.delete_manifest(name, &d)?;
        }
    }
    Ok(finish(
        builder(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0),
        empty_body(),
    ))
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against `size` -> inclusive (start, end).
fn parse_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multipart ranges: not served
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && end < size).then_some((start, end))
}

async fn get_blob(
    state: &State,
    name: &str,
    digest: &str,
    head: bool,
    headers: &http::HeaderMap,
) -> Result<Response<Body>> {
    let d = parse_digest(digest)?;
    let size = state.store.repo_blob(name, &d)?.ok_or(Error::BlobUnknown)?;
    let mut b = builder(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", d.to_string())
        .header(header::ETAG, format!("\"{d}\""))
        .header(header::ACCEPT_RANGES, "bytes");
    let (start, len) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if !head => match parse_range(r, size) {
            Some((s, e)) => {
                b = b
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{size}"));
                (s, e - s + 1)
            }
            None => {
                return Ok(finish(
                    builder(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                        .header(header::CONTENT_LENGTH, 0),
                    empty_body(),
                ));
            }
        },
        _ => (0, size),
    };
    b = b.header(header::CONTENT_LENGTH, len);
    if head {
        return Ok(finish(b, empty_body()));
    }
    let mut f = match tokio::fs::File::open(state.store.blob_path(&d)).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::BlobUnknown),
        Err(e) => return Err(e.into()),
    };
    if start > 0 {
        f.seek(io::SeekFrom::Start(start)).await?;
    }
    let stream =
        tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10).map_ok(Frame::data);
    Ok(finish(b, BodyExt::boxed(StreamBody::new(stream))))
}

fn delete_blob(state: &State, name: &str, digest: &str) -> Result<Response<Body>> {
    let d = parse_digest(digest)?;
    if !state.store.unlink_blob(name, &d)? {
        return Err(Error::BlobUnknown);
    }
    Ok(finish(
        builder(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0),
        empty_body(),
    ))
}

impl State {
    fn session(&self, id: &str) -> Arc<tokio::sync::Mutex<UploadState>> {
        let mut m = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            m.entry(id.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(UploadState { hashed: None }))),
        )
    }

    fn forget_session(&self, id: &str) {
        let mut m = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(id);
    }
}

fn upload_headers(
    b: http::response::Builder,
    name: &str,
    id: &str,
    size: u64,
) -> http::response::Builder {
    b.header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}"))
        .header(header::RANGE, format!("0-{}", size.saturating_sub(1)))
        .header("Docker-Upload-UUID", id)
        .header(header::CONTENT_LENGTH, 0)
}

fn blob_created(name: &str, d: &Digest) -> Response<Body> {
    finish(
        builder(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/blobs/{d}"))
            .header("Docker-Content-Digest", d.to_string())
            .header(header::CONTENT_LENGTH, 0),
        empty_body(),
    )
}

async fn start_upload(
    state: &State,
    name: &str,
    q: &Query,
    grant: &Grant,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    if let Some(mount) = q.get("mount") {
        let d = parse_digest(mount)?;
        // Mount only what the client may read; otherwise fall back to a plain upload (202).
        if let Some(from) = q.get("from")
            && is_valid_name(from)
            && grant.allows("repository", from, "pull")
            && state.store.repo_blob(from, &d)?.is_some()
        {
            state.store.link_blob(name, &d)?;
            return Ok(blob_created(name, &d));
        }
    }
    let id = state.store.new_upload(name)?;
    let sess = state.session(&id);
    let mut sess = sess.lock().await;
    sess.hashed = Some((0, Hasher::new()));
    if let Some(digest) = q.get("digest") {
        // Single-POST monolithic upload.
        let want = parse_digest(digest)?;
        let r = async {
            write_chunk(state, name, &id, req.into_body(), &mut sess, None).await?;
            complete(state, name, &id, &mut sess, &want).await
        }
        .await;
        if r.is_err() {
            let _ = state.store.delete_upload(name, &id);
            state.forget_session(&id);
        }
        return r;
    }
    Ok(finish(
        upload_headers(builder(StatusCode::ACCEPTED), name, &id, 0),
        empty_body(),
    ))
}

/// `<start>-<end>` (inclusive) of a chunk.
fn parse_content_range(h: &str) -> Result<(u64, u64)> {
    let h = h.trim();
    let h = h.strip_prefix("bytes ").unwrap_or(h);
    let bad = || Error::RangeInvalid(format!("bad Content-Range {h:?}"));
    let (a, b) = h.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Append a request body to upload `id`, checking `range` (start must be the current offset).
/// Returns the new size.
async fn write_chunk(
    state: &State,
    name: &str,
    id: &str,
    body: Incoming,
    sess: &mut UploadState,
    range: Option<(u64, u64)>,
) -> Result<u64> {
    let size = state
        .store
        .upload_size(name, id)?
        .ok_or(Error::BlobUploadUnknown)?;
    if let Some((start, _)) = range
        && start != size
    {
        return Err(Error::RangeInvalid(format!(
            "chunk starts at {start}, upload is at {size}"
        )));
    }
    if sess.hashed.as_ref().is_some_and(|(off, _)| *off != size) {
        sess.hashed = None;
    }
    let mut f = tokio::fs::OpenOptions::new()
        .append(true)
        .open(state.store.upload_path(name, id)?)
        .await?;
    let mut written = 0u64;
    let mut body = body;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Err(e) => {
                // Client went away: what arrived stays, the session can resume from it.
                failure = Some(Error::BlobUploadInvalid(format!("reading body: {e}")));
                break;
            }
        };
        if let Err(e) = f.write_all(&data).await {
            sess.hashed = None;
            return Err(e.into());
        }
        written += data.len() as u64;
        if let Some((off, h)) = sess.hashed.as_mut() {
            h.update(&data);
            *off += data.len() as u64;
        }
    }
    f.flush().await?;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some((start, end)) = range
        && end - start + 1 != written
    {
        // Roll back a chunk that does not match its range.
        f.set_len(size).await?;
        sess.hashed = None;
        return Err(Error::SizeInvalid(format!(
            "Content-Range {start}-{end} but {written} bytes sent"
        )));
    }
    Ok(size + written)
}

/// Verify the upload's digest and publish it as a blob of `name`.
async fn complete(
    state: &State,
    name: &str,
    id: &str,
    sess: &mut UploadState,
    want: &Digest,
) -> Result<Response<Body>> {
    let size = state
        .store
        .upload_size(name, id)?
        .ok_or(Error::BlobUploadUnknown)?;
    let got = match sess.hashed.take() {
        Some((off, h)) if off == size => h.finish(),
        _ => {
            let path = state.store.upload_path(name, id)?;
            tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .map_err(io::Error::other)??
        }
    };
    if got != *want {
        state.store.delete_upload(name, id)?;
        state.forget_session(id);
        return Err(Error::DigestInvalid(format!("upload is {got}, not {want}")));
    }
    let store = state.store.clone();
    let (n, i, d) = (name.to_owned(), id.to_owned(), want.clone());
    tokio::task::spawn_blocking(move || store.commit_upload(&n, &i, &d))
        .await
        .map_err(io::Error::other)??;
    state.forget_session(id);
    Ok(blob_created(name, want))
}

fn hash_file(path: &std::path::Path) -> io::Result<Digest> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

fn content_range(req: &Request<Incoming>) -> Result<Option<(u64, u64)>> {
    req.headers()
        .get(header::CONTENT_RANGE)
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::RangeInvalid("bad Content-Range".into()))
                .and_then(parse_content_range)
        })
        .transpose()
}

async fn patch_upload(
    state: &State,
    name: &str,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let range = content_range(&req)?;
    let sess = state.session(id);
    let mut sess = sess.lock().await;
    let r = write_chunk(state, name, id, req.into_body(), &mut sess, range).await;
    if matches!(r, Err(Error::BlobUploadUnknown)) {
        state.forget_session(id);
    }
    let size = r?;
    Ok(finish(
        upload_headers(builder(StatusCode::ACCEPTED), name, id, size),
        empty_body(),
    ))
}

async fn put_upload(
    state: &State,
    name: &str,
    id: &str,
    q: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let want = parse_digest(
        q.get("digest")
            .ok_or_else(|| Error::DigestInvalid("digest parameter missing".into()))?,
    )?;
    let range = content_range(&req)?;
    let sess = state.session(id);
    let mut sess = sess.lock().await;
    let r = write_chunk(state, name, id, req.into_body(), &mut sess, range).await;
    if matches!(r, Err(Error::BlobUploadUnknown)) {
        state.forget_session(id);
    }
    r?;
    complete(state, name, id, &mut sess, &want).await
}

fn upload_status(state: &State, name: &str, id: &str) -> Result<Response<Body>> {
    let size = state
        .store
        .upload_size(name, id)?
        .ok_or(Error::BlobUploadUnknown)?;
    Ok(finish(
        upload_headers(builder(StatusCode::NO_CONTENT), name, id, size),
        empty_body(),
    ))
}

async fn cancel_upload(state: &State, name: &str, id: &str) -> Result<Response<Body>> {
    let sess = state.session(id);
    let _guard = sess.lock().await;
    let removed = state.store.delete_upload(name, id)?;
    state.forget_session(id);
    if !removed {
        return Err(Error::BlobUploadUnknown);
    }
    Ok(finish(
        builder(StatusCode::NO_CONTENT).header(header::CONTENT_LENGTH, 0),
        empty_body(),
    ))
}

fn referrers(state: &State, name: &str, digest: &str, q: &Query) -> Result<Response<Body>> {
    let d = parse_digest(digest)?;
    let mut list = state.store.referrers(name, &d)?;
    let mut b = builder(StatusCode::OK);
    if let Some(at) = q.get("artifactType") {
        list.retain(|desc| desc["artifactType"].as_str() == Some(at));
        b = b.header("OCI-Filters-Applied", "artifactType");
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": list,
    });
    let data = serde_json::to_vec(&index).unwrap_or_default();
    Ok(finish(
        b.header(header::CONTENT_TYPE, OCI_INDEX)
            .header(header::CONTENT_LENGTH, data.len()),
        full_body(data),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |s: &str| format!("{:?}", Route::parse(s));
        assert_eq!(r(""), "Some(Base)");
        assert_eq!(r("a/b/tags/list"), "Some(Tags(\"a/b\"))");
        assert_eq!(r("a/manifests/latest"), "Some(Manifest(\"a\", \"latest\"))");
        assert_eq!(
            r("x/manifests/y/manifests/v1"),
            "Some(Manifest(\"x/manifests/y\", \"v1\"))"
        );
        assert_eq!(r("a/blobs/uploads/"), "Some(Uploads(\"a\"))");
        assert_eq!(r("a/blobs/uploads"), "Some(Uploads(\"a\"))");
        assert_eq!(r("a/b/blobs/uploads/abc"), "Some(Upload(\"a/b\", \"abc\"))");
        assert_eq!(r("a/blobs/sha256:x"), "Some(Blob(\"a\", \"sha256:x\"))");
        assert_eq!(
            r("a/referrers/sha256:x"),
            "Some(Referrers(\"a\", \"sha256:x\"))"
        );
        assert_eq!(r("a"), "None");
        assert_eq!(r("manifests/x"), "None");
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("bytes=0-", 0), None);
        assert!(parse_content_range("0-9").is_ok());
        assert!(parse_content_range("9-0").is_err());
        assert!(parse_content_range("x").is_err());
    }
}
