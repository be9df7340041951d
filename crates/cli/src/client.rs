//! Connection to the daemon: host selection (-H / BERTH_HOST / DOCKER_HOST / default socket),
//! starting `berthd` when the default socket is dead, API version negotiation, and two ways to
//! talk: bollard for typed calls and streams, raw HTTP for the daemon's bytes (inspect must
//! re-indent them exactly as docker does, and /_ping headers carry the API version).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody as BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{CliError, cannot_connect};
use crate::format::json::Ordered;

pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
/// The newest API we speak (the spec we implement).
pub const CLIENT_API_VERSION: &str = "1.50";
/// What docker assumes when a daemon's ping carries no version.
const FALLBACK_API_VERSION: &str = "1.24";

/// TLS settings from the global flags.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    pub enabled: bool,
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
}

impl Host {
    pub fn parse(s: &str) -> Result<Host, CliError> {
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(Host::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            let a = a.trim_end_matches('/');
            let a = if a.contains(':') {
                a.to_string()
            } else {
                format!("{a}:2375")
            };
            return Ok(Host::Tcp(a));
        }
        if s.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(s)));
        }
        Err(CliError::msg(format!(
            "Failed to initialize: unable to resolve docker endpoint: invalid bind address format: {s}"
        )))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to open one connection to the daemon.
#[derive(Clone)]
struct Conn {
    host: Host,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl Conn {
    async fn stream(&self) -> Result<Box<dyn Io>, std::io::Error> {
        match &self.host {
            Host::Unix(p) => Ok(Box::new(tokio::net::UnixStream::connect(p).await?)),
            Host::Tcp(a) => {
                let tcp = tokio::net::TcpStream::connect(a).await?;
                match &self.tls {
                    None => Ok(Box::new(tcp)),
                    Some(cfg) => {
                        let hostname = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                        let hostname = hostname.trim_start_matches('[').trim_end_matches(']');
                        let name = rustls::pki_types::ServerName::try_from(hostname.to_string())
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        let conn = tokio_rustls::TlsConnector::from(cfg.clone());
                        Ok(Box::new(conn.connect(name, tcp).await?))
                    }
                }
            }
        }
    }
}

/// A connected, version-negotiated client.
pub struct Client {
    pub host_str: String,
    conn: Conn,
    pub api_version: String,
    pub docker: bollard::Docker,
    /// `api_version` is a guess nobody confirmed yet (see [`Client::unverified`]).
    unverified: bool,
}

/// The raw answer of the daemon.
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    /// The daemon's error message (`{"message": "..."}`) or the body text.
    pub fn message(&self) -> String {
        if let Ok(Ordered::Object(o)) = Ordered::parse(&self.body)
            && let Some((_, Ordered::String(m))) = o.iter().find(|(k, _)| k == "message")
        {
            return m.clone();
        }
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

impl Client {
    /// Pick the host, start berthd if needed, negotiate the API version, build bollard.
    pub async fn connect(host_flag: Option<&str>, tls: &TlsOptions) -> Result<Client, CliError> {
        let (mut client, explicit) = Client::new(host_flag, tls)?;
        let host_str = client.host_str.clone();
        let ping = match client.ping().await {
            Ok(p) => p,
            Err(_) if !explicit => {
                // A daemon we may not talk to is not a missing daemon: don't start another.
                let denied = match &client.conn.host {
                    Host::Unix(p) => std::os::unix::net::UnixStream::connect(p)
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied),
                    Host::Tcp(_) => false,
                };
                if denied {
                    return Err(CliError::msg(format!(
                        "permission denied while trying to connect to the berth daemon socket at {host_str}: connect: permission denied"
                    )));
                }
                autostart_berthd(&client).await?;
                client.ping().await.map_err(|_| cannot_connect(&host_str))?
            }
            Err(_) => return Err(cannot_connect(&host_str)),
        };
        let server = ping
            .headers
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(FALLBACK_API_VERSION)
            .to_string();
        // A pinned version (DOCKER_API_VERSION, as the docker CLI honours) skips negotiation.
        client.api_version =
            pinned_version().unwrap_or_else(|| min_version(&server, CLIENT_API_VERSION));
        client.docker = client.bollard()?;
        Ok(client)
    }

    /// A client that skips the version ping: requests carry the newest version we speak (or
    /// the pinned one). A daemon at least that new (berthd, docker >= 28.2) answers them as
    /// the negotiated version would be min(its, ours) = ours anyway; an older one refuses
    /// with 400 "client version .. is too new", and no daemon means no answer. Both cases
    /// are for [`Client::refused_unverified`] to spot on the command's first request, which
    /// must be one that can be sent again; the command then starts over after `connect`.
    /// Saves a connection and a round trip (`run`'s create goes out first).
    pub fn unverified(host_flag: Option<&str>, tls: &TlsOptions) -> Result<Client, CliError> {
        let (mut client, _) = Client::new(host_flag, tls)?;
        client.api_version = pinned_version().unwrap_or_else(|| CLIENT_API_VERSION.to_string());
        client.docker = client.bollard()?;
        client.unverified = true;
        Ok(client)
    }

    /// The host and TLS settings, no I/O; whether the host was given (flag or environment).
    fn new(host_flag: Option<&str>, tls: &TlsOptions) -> Result<(Client, bool), CliError> {
        let explicit = host_flag
            .map(str::to_string)
            .or_else(|| env("BERTH_HOST"))
            .or_else(|| env("DOCKER_HOST"));
        let host_str = explicit.clone().unwrap_or_else(|| DEFAULT_HOST.to_string());
        let host = Host::parse(&host_str)?;
        let tls_cfg = if tls.enabled || tls.verify {
            Some(Arc::new(tls_config(tls)?))
        } else {
            None
        };
        let client = Client {
            host_str,
            conn: Conn { host, tls: tls_cfg },
            api_version: CLIENT_API_VERSION.to_string(),
            docker: placeholder_docker()?,
            unverified: false,
        };
        Ok((client, explicit.is_some()))
    }

    /// The answer to an unverified client's first request says "negotiate and start over":
    /// no daemon to connect to, or one older than the version we guessed. A connection that
    /// broke after the request went out is not repeated (the daemon may have acted on it).
    pub async fn refused_unverified(&self, r: &Result<RawResponse, CliError>) -> bool {
        if !self.unverified {
            return false;
        }
        match r {
            Err(_) => self.conn.stream().await.is_err(),
            Ok(r) => r.status == StatusCode::BAD_REQUEST && r.message().contains("is too new"),
        }
    }

    /// bollard on top of our own connections, so every transport we support (unix, tcp,
    /// TLS with or without verification) serves typed calls and raw calls alike.
    fn bollard(&self) -> Result<bollard::Docker, CliError> {
        let v = parse_version(&self.api_version);
        let cv = bollard::ClientVersion {
            major_version: v.0 as usize,
            minor_version: v.1 as usize,
        };
        // No client-side timeout: docker has none (events, load of big archives...).
        const NO_TIMEOUT: u64 = 60 * 60 * 24 * 365;
        let conn = self.conn.clone();
        let transport = move |mut req: bollard::BollardRequest| {
            let conn = conn.clone();
            async move {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.as_str().to_string());
                *req.uri_mut() = pq
                    .parse()
                    .map_err(|e| std::io::Error::other(format!("bad request URI: {e}")))?;
                req.headers_mut()
                    .insert(http::header::HOST, http::HeaderValue::from_static("berth"));
                let io = TokioIo::new(conn.stream().await?);
                let (mut sender, c) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(async move {
                    // Upgrades keep hijacked connections (attach/exec) usable later.
                    let _ = c.with_upgrades().await;
                });
                Ok(sender.send_request(req).await?)
            }
        };
        bollard::Docker::connect_with_custom_transport(
            transport,
            Some("http://berth"),
            NO_TIMEOUT,
            &cv,
        )
        .map_err(|e| CliError::msg(e.to_string()))
    }

    /// One raw request on a fresh connection; `path` is unversioned ("/images/json?...").
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<RawResponse, CliError> {
        let full = format!("/v{}{}", self.api_version, path);
        let body = body.map(|b| (full_body(b), "application/json"));
        self.raw_unversioned(method, &full, body)
            .await
            .map_err(|_| cannot_connect(&self.host_str))
    }

    /// Stream `input` as the request body (tar uploads of any size).
    pub async fn upload(
        &self,
        method: Method,
        path: &str,
        input: Box<dyn AsyncRead + Send + Unpin>,
        content_type: &'static str,
    ) -> Result<RawResponse, CliError> {
        let full = format!("/v{}{}", self.api_version, path);
        let frames = futures_util::StreamExt::map(
            tokio_util::io::ReaderStream::with_capacity(input, 256 * 1024),
            |r| r.map(hyper::body::Frame::data),
        );
        let body = BoxBody::new(StreamBody::new(frames));
        self.raw_unversioned(method, &full, Some((body, content_type)))
            .await
            .map_err(|e| {
                // A local read error is ours to report; anything else is the connection.
                match e.downcast_ref::<std::io::Error>() {
                    Some(io) if io.kind() != std::io::ErrorKind::ConnectionRefused => {
                        CliError::msg(io.to_string())
                    }
                    _ => cannot_connect(&self.host_str),
                }
            })
    }

    async fn raw_unversioned(
        &self,
        method: Method,
        full: &str,
        body: Option<(BoxBody<Bytes, std::io::Error>, &'static str)>,
    ) -> Result<RawResponse, Box<dyn std::error::Error + Send + Sync>> {
        let io = TokioIo::new(self.conn.stream().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(full)
            .header("Host", "berth")
            .header(
                "User-Agent",
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            );
        let body = match body {
            Some((b, ct)) => {
                req = req.header("Content-Type", ct);
                b
            }
            None => full_body(Bytes::new()),
        };
        let req = req.body(body)?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// A request whose answer is a stream read as it comes (pull/push progress), with extra
    /// headers (X-Registry-Auth). Non-2xx answers come back whole as `Err(RawResponse)`.
    pub async fn request_stream(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Result<hyper::body::Incoming, RawResponse>, CliError> {
        let ct = body.is_some().then_some("application/json");
        self.request_stream_body(method, path, headers, body.unwrap_or_default(), ct)
            .await
    }

    /// `request_stream` with a body of any type (build: the context tar).
    pub async fn request_stream_body(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
        content_type: impl Into<Option<&'static str>>,
    ) -> Result<Result<hyper::body::Incoming, RawResponse>, CliError> {
        let r = self
            .send_streaming(method, path, headers, body, content_type.into())
            .await?;
        Ok(r.map(|(_, body)| body))
    }

    /// GET whose body is a long-lived stream (events); non-2xx becomes a daemon error.
    pub async fn get_stream(&self, path: &str) -> Result<hyper::body::Incoming, CliError> {
        self.get_stream_headers(path).await.map(|(_, b)| b)
    }

    /// `get_stream`, with the response headers (archive's path stat).
    pub async fn get_stream_headers(
        &self,
        path: &str,
    ) -> Result<(http::HeaderMap, hyper::body::Incoming), CliError> {
        self.send_streaming(Method::GET, path, &[], Bytes::new(), None)
            .await?
            .map_err(|r| CliError::daemon(r.message()))
    }

    /// Sends one request on a fresh connection and hands back a 2xx answer's headers and body
    /// unread; any other answer is read whole into a `RawResponse`.
    async fn send_streaming(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
        content_type: Option<&'static str>,
    ) -> Result<Result<(http::HeaderMap, hyper::body::Incoming), RawResponse>, CliError> {
        let full = format!("/v{}{}", self.api_version, path);
        let io = TokioIo::new(
            self.conn
                .stream()
                .await
                .map_err(|_| cannot_connect(&self.host_str))?,
        );
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|_| cannot_connect(&self.host_str))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(full)
            .header("Host", "berth")
            .header(
                "User-Agent",
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| CliError::msg(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| cannot_connect(&self.host_str))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if status.is_success() {
            return Ok(Ok((headers, resp.into_body())));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(Err(RawResponse {
            status,
            headers,
            body,
        }))
    }

    /// Hijack a connection (attach, exec start): send the request with `Upgrade: tcp`, read the
    /// response head ourselves and hand back the socket plus any bytes read past the head, so
    /// the caller owns both directions (including half-closing the write side on stdin EOF).
    pub async fn hijack(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Hijacked, CliError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let full = format!("/v{}{}", self.api_version, path);
        let mut io = self
            .conn
            .stream()
            .await
            .map_err(|_| cannot_connect(&self.host_str))?;
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {full} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth-cli/{}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n{body}",
            env!("CARGO_PKG_VERSION"),
            if body.is_empty() {
                "text/plain"
            } else {
                "application/json"
            },
            body.len()
        );
        io.write_all(head.as_bytes())
            .await
            .map_err(|_| cannot_connect(&self.host_str))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = io
                .read(&mut chunk)
                .await
                .map_err(|_| cannot_connect(&self.host_str))?;
            if n == 0 {
                return Err(cannot_connect(&self.host_str));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let rest = buf[end..].to_vec();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status == 101 || status == 200 {
            return Ok(Hijacked {
                io: Box::new(io),
                rest,
            });
        }
        // docker's client reports a refused upgrade by status only.
        if status >= 400 {
            return Err(CliError::msg(format!(
                "unable to upgrade to tcp, received {status}"
            )));
        }
        // An error answer: read its body (small JSON) until the daemon closes or it is whole.
        let lower = head.to_ascii_lowercase();
        let len = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let mut body = rest;
        loop {
            if len.is_some_and(|l| body.len() >= l) {
                break;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut chunk))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        if lower.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        let r = RawResponse {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: http::HeaderMap::new(),
            body: Bytes::from(body),
        };
        Err(CliError::daemon(r.message()))
    }

    async fn ping(&self) -> Result<RawResponse, CliError> {
        self.raw_unversioned(Method::GET, "/_ping", None)
            .await
            .map_err(|_| cannot_connect(&self.host_str))
    }

    /// GET returning the raw body; non-2xx becomes "Error response from daemon: ...".
    pub async fn get_raw(&self, path: &str) -> Result<Bytes, CliError> {
        let r = self.raw(Method::GET, path, None).await?;
        if !r.status.is_success() {
            return Err(CliError::daemon(r.message()));
        }
        Ok(r.body)
    }

    /// GET and parse, keeping the daemon's key order.
    pub async fn get_json(&self, path: &str) -> Result<Ordered, CliError> {
        let body = self.get_raw(path).await?;
        Ordered::parse(&body).map_err(|e| CliError::msg(format!("invalid JSON from daemon: {e}")))
    }

    pub fn bollard_err(&self, e: bollard::errors::Error) -> CliError {
        crate::error::from_bollard(e, &self.host_str)
    }
}

/// A hijacked connection: the raw socket and bytes already read past the response head.
pub struct Hijacked {
    pub io: Box<dyn HijackIo>,
    pub rest: Vec<u8>,
}

pub trait HijackIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> HijackIo for T {}

/// Undo HTTP/1.1 chunked encoding of a small, complete body.
fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = b[i..].windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[i..i + p])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        i += p + 2;
        if size == 0 || i + size > b.len() {
            break;
        }
        out.extend_from_slice(&b[i..i + size]);
        i += size + 2;
        if i >= b.len() {
            break;
        }
    }
    out
}

fn full_body(b: Bytes) -> BoxBody<Bytes, std::io::Error> {
    BoxBody::new(Full::new(b).map_err(|never| match never {}))
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// DOCKER_API_VERSION (or ours, BERTH_API_VERSION): the docker CLI then skips negotiation.
fn pinned_version() -> Option<String> {
    env("BERTH_API_VERSION").or_else(|| env("DOCKER_API_VERSION"))
}

/// Only a stand-in until negotiation is done; never used for requests.
fn placeholder_docker() -> Result<bollard::Docker, CliError> {
    bollard::Docker::connect_with_http("127.0.0.1:1", 1, bollard::API_DEFAULT_VERSION)
        .map_err(|e| CliError::msg(e.to_string()))
}

pub fn parse_version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// min(server, ours), as docker's client negotiation does.
pub fn min_version(a: &str, b: &str) -> String {
    if parse_version(a) <= parse_version(b) {
        a.to_string()
    } else {
        b.to_string()
    }
}

fn cert_paths(t: &TlsOptions) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::var("DOCKER_CERT_PATH")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| Path::new(&h).join(".docker"))
        })
        .unwrap_or_default();
    (
        t.ca.clone().unwrap_or_else(|| dir.join("ca.pem")),
        t.cert.clone().unwrap_or_else(|| dir.join("cert.pem")),
        t.key.clone().unwrap_or_else(|| dir.join("key.pem")),
    )
}

fn tls_config(t: &TlsOptions) -> Result<tokio_rustls::rustls::ClientConfig, CliError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (ca, cert, key) = cert_paths(t);
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| CliError::msg(format!("could not read {}: {e}", p.display())))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::msg(e.to_string()))?;
    let builder = if t.verify {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut read(&ca)?.as_slice()).flatten() {
            roots
                .add(c)
                .map_err(|e| CliError::msg(format!("invalid CA certificate: {e}")))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    // A client certificate is sent when one is present, as docker does.
    if cert.exists() && key.exists() {
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut read(&cert)?.as_slice())
                .flatten()
                .collect();
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut read(&key)?.as_slice())
            .ok()
            .flatten()
            .ok_or_else(|| CliError::msg("no private key found in the TLS key file"))?;
        builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| CliError::msg(e.to_string()))
    } else {
        Ok(builder.with_no_client_auth())
    }
}

/// `--tls` without `--tlsverify`: encrypt but accept any server certificate, like docker.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Start `berthd` detached (own session, output to /run/berth/berthd.log) and wait for /_ping.
async fn autostart_berthd(client: &Client) -> Result<(), CliError> {
    use std::os::unix::process::CommandExt;
    let host = client.host_str.clone();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berthd")))
        .filter(|p| p.is_file())
        .or_else(|| find_on_path("berthd"))
        .ok_or_else(|| cannot_connect(&host))?;
    let log_dir = Path::new("/run/berth");
    std::fs::create_dir_all(log_dir).map_err(|_| cannot_connect(&host))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join("berthd.log"))
        .map_err(|_| cannot_connect(&host))?;
    let log2 = log.try_clone().map_err(|_| cannot_connect(&host))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid() is async-signal-safe; it detaches berthd from our terminal and
    // process group so it survives this CLI and the user's Ctrl-C.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|_| cannot_connect(&host))?;
    let failed = |why: String| {
        let mut e = cannot_connect(&host);
        e.message.push_str(&format!(
            "\n{} {why}; see /run/berth/berthd.log",
            exe.display()
        ));
        e
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if client.ping().await.is_ok() {
            return Ok(());
        }
        // Stop waiting as soon as berthd has given up.
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!("exited ({status})")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(failed("did not answer within 10s".into()))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Percent-encode a query value (filters JSON, references).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encode a path segment (image names carry '/' and ':' which the daemon routes).
pub fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'/'
            | b':'
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Build the API's filters JSON from repeated `--filter key=value` flags.
pub fn filters_json(filters: &[String]) -> Result<String, CliError> {
    let mut map: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>> =
        Default::default();
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            return Err(CliError::new(
                format!(
                    "invalid argument \"{f}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth --help'."
                ),
                crate::error::EXIT_USAGE,
            ));
        };
        map.entry(k.trim().to_lowercase())
            .or_default()
            .insert(v.trim().to_string(), true);
    }
    serde_json::to_string(&map).map_err(|e| CliError::msg(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse() {
        assert_eq!(
            Host::parse("unix:///run/berth/berth.sock").unwrap(),
            Host::Unix("/run/berth/berth.sock".into())
        );
        assert_eq!(
            Host::parse("tcp://127.0.0.1").unwrap(),
            Host::Tcp("127.0.0.1:2375".into())
        );
        assert!(Host::parse("ftp://x").is_err());
    }

    #[test]
    fn version_negotiation_takes_the_lower() {
        assert_eq!(min_version("1.41", CLIENT_API_VERSION), "1.41");
        assert_eq!(min_version("1.51", CLIENT_API_VERSION), "1.50");
        assert_eq!(min_version("1.9", "1.10"), "1.9");
    }

    #[test]
    fn filters_become_api_json() {
        let f =
            filters_json(&["dangling=true".into(), "label=a=b".into(), "label=c".into()]).unwrap();
        assert_eq!(
            f,
            r#"{"dangling":{"true":true},"label":{"a=b":true,"c":true}}"#
        );
        assert!(filters_json(&["nope".into()]).is_err());
    }
}
