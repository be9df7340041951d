//! One registry endpoint: TLS setup (system roots, certs.d, insecure), the `/v2/` ping, auth
//! (Basic, or Bearer tokens from the WWW-Authenticate challenge) and the few requests pull and
//! push need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::auth::{self, Challenge, Credentials};
use crate::{Error, Result};

/// The registry side of the daemon's configuration (`--insecure-registry`, `--registry-mirror`).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `host[:port]` or CIDR (`10.0.0.0/8`) entries: plain HTTP allowed, TLS not verified.
    /// localhost and 127.0.0.0/8 are always insecure, as in Docker.
    pub insecure_registries: Vec<String>,
    /// Mirrors of Docker Hub (`https://mirror.example`), tried in order before it for pulls.
    pub mirrors: Vec<String>,
    /// Where `<host[:port]>/{ca.crt,client.cert,client.key}` are looked up, in order.
    pub certs_dirs: Vec<PathBuf>,
    /// docker's client config with `auths`/`credsStore`/`credHelpers`; None: no stored creds.
    pub docker_config: Option<PathBuf>,
    /// `--max-concurrent-downloads`: layers downloaded (and unpacked) at the same time.
    pub max_concurrent_downloads: usize,
    /// `--max-concurrent-uploads`: layers uploaded at the same time by a push.
    pub max_concurrent_uploads: usize,
}

/// dockerd's defaults are 3 and 5: sized for slow links. Layers here are hashed, inflated and
/// unpacked while they download, so more at once keeps every core busy on a fast registry;
/// 16 covers the layers of nearly every image.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 16;
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 8;

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: Vec::new(),
            mirrors: Vec::new(),
            certs_dirs: vec![
                PathBuf::from("/etc/berth/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ],
            docker_config: auth::default_docker_config(),
            max_concurrent_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
            max_concurrent_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
        }
    }
}

/// Docker Hub's API endpoint for the `docker.io` domain.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// The host[:port] to talk to for a reference domain.
pub fn api_host(domain: &str) -> &str {
    if domain == berth_types::reference::DEFAULT_DOMAIN {
        DOCKER_HUB_HOST
    } else {
        domain
    }
}

impl RegistryConfig {
    /// Plain HTTP / unverified TLS allowed for `host` (host[:port])?
    pub fn is_insecure(&self, hostport: &str) -> bool {
        let host = split_host(hostport);
        if host == "localhost" {
            return true;
        }
        let ip: Option<IpAddr> = host.parse().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.insecure_registries.iter().any(|e| {
            if e == hostport || e == host {
                return true;
            }
            match (e.split_once('/'), ip) {
                (Some((net, bits)), Some(IpAddr::V4(ip))) => {
                    let (Ok(net), Ok(bits)) =
                        (net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>())
                    else {
                        return false;
                    };
                    if bits > 32 {
                        return false;
                    }
                    let mask = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                    u32::from(ip) & mask == u32::from(net) & mask
                }
                _ => false,
            }
        })
    }

    /// Credentials for a reference domain from the docker config (None if no config).
    pub fn credentials_for(&self, domain: &str) -> Result<Option<Credentials>> {
        match &self.docker_config {
            Some(p) => auth::lookup(p, domain),
            None => Ok(None),
        }
    }
}

/// The host part of host[:port] (IPv6 in brackets kept without them).
fn split_host(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => hostport,
    }
}

/// A reqwest client for one host: system roots plus certs.d CAs and client certificate.
pub(crate) fn http_client(
    cfg: &RegistryConfig,
    hostport: &str,
    skip_verify: bool,
) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        // A stalled transfer fails (and is resumed) instead of hanging the pull forever.
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        // Several layers share one HTTP/2 connection: let its window grow with the bandwidth.
        .http2_adaptive_window(true)
        .danger_accept_invalid_certs(skip_verify);
    for dir in &cfg.certs_dirs {
        let d = dir.join(hostport.replace(['[', ']'], ""));
        b = add_certs_dir(b, &d)?;
    }
    b.build()
        .map_err(|e| Error::http(format!("setting up the HTTP client for {hostport}"), e))
}

/// Docker's certs.d layout: `*.crt` are CAs, `X.cert` + `X.key` a client key pair.
fn add_certs_dir(mut b: reqwest::ClientBuilder, dir: &Path) -> Result<reqwest::ClientBuilder> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(b);
    };
    let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    names.sort();
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e));
    for p in &names {
        match p.extension().and_then(|e| e.to_str()) {
            Some("crt") => {
                let pem = read(p)?;
                for c in reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| Error::Config(format!("invalid CA {}: {e}", p.display())))?
                {
                    b = b.add_root_certificate(c);
                }
            }
            Some("cert") => {
                let key = p.with_extension("key");
                if !key.exists() {
                    return Err(Error::Config(format!(
                        "missing key {} for client certificate {}",
                        key.display(),
                        p.display()
                    )));
                }
                let mut pem = read(p)?;
                pem.push(b'\n');
                pem.extend(read(&key)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    Error::Config(format!("invalid client certificate {}: {e}", p.display()))
                })?;
                b = b.identity(id);
            }
            Some("key") if !p.with_extension("cert").exists() => {
                return Err(Error::Config(format!(
                    "missing client certificate {} for key {}",
                    p.with_extension("cert").display(),
                    p.display()
                )));
            }
            _ => {}
        }
    }
    Ok(b)
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by the scopes they were issued for.
    tokens: HashMap<String, String>,
}

/// A connected registry endpoint (after a successful `/v2/` ping).
pub struct Client {
    http: reqwest::Client,
    /// `https://host:port` (no trailing slash)
    base: String,
    creds: Option<Credentials>,
    auth: tokio::sync::Mutex<AuthState>,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    /// Sent when asked for offline access: `docker login`'s IdentityToken.
    #[serde(default)]
    refresh_token: Option<String>,
}

/// A token server's answer: (token, refresh token), or why not.
async fn token_reply(realm: &str, resp: Response) -> Result<(String, Option<String>)> {
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(Error::Unauthorized(format!(
            "unauthorized: {}",
            error_text(resp).await
        )));
    }
    if !status.is_success() {
        return Err(Error::Registry(format!(
            "fetching a token from {realm}: {}",
            error_text(resp).await
        )));
    }
    let body = read_limited(resp, 1 << 20, "token reply").await?;
    let reply: TokenReply = serde_json::from_slice(&body)
        .map_err(|e| Error::Registry(format!("invalid token reply from {realm}: {e}")))?;
    let token = reply
        .token
        .filter(|t| !t.is_empty())
        .or(reply.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Registry(format!("no token in the reply of {realm}")))?;
    Ok((token, reply.refresh_token.filter(|t| !t.is_empty())))
}

/// The user name Docker puts with an identity token (the password is the token).
pub(crate) const IDENTITY_TOKEN_USER: &str = "<token>";

#[derive(Deserialize)]
struct ErrorsReply {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}
#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// distribution's errcode text: `manifest unknown: manifest unknown`.
pub(crate) async fn error_text(resp: Response) -> String {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if let Ok(r) = serde_json::from_slice::<ErrorsReply>(&body)
        && !r.errors.is_empty()
    {
        return r
            .errors
            .iter()
            .map(|e| {
                let code = e.code.to_ascii_lowercase().replace('_', " ");
                if e.message.is_empty() {
                    code
                } else {
                    format!("{code}: {}", e.message)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() || text.len() > 300 {
        format!("unexpected status from the registry: {status}")
    } else {
        format!("unexpected status from the registry: {status}: {text}")
    }
}

impl Client {
    /// Connect to one endpoint. `base` without scheme tries HTTPS, then (insecure hosts only)
    /// HTTPS without verification and plain HTTP; with a scheme (mirrors) exactly that.
    pub async fn connect(
        cfg: &RegistryConfig,
        endpoint: &str,
        creds: Option<Credentials>,
    ) -> Result<Client> {
        let (candidates, hostport): (Vec<(String, bool)>, &str) =
            if let Some(h) = endpoint.strip_prefix("http://") {
                let h = h.trim_end_matches('/');
                (vec![(format!("http://{h}"), false)], h)
            } else if let Some(h) = endpoint.strip_prefix("https://") {
                let h = h.trim_end_matches('/');
                (vec![(format!("https://{h}"), cfg.is_insecure(h))], h)
            } else if cfg.is_insecure(endpoint) {
                (
                    vec![
                        (format!("https://{endpoint}"), true),
                        (format!("http://{endpoint}"), false),
                    ],
                    endpoint,
                )
            } else {
                (vec![(format!("https://{endpoint}"), false)], endpoint)
            };
        // When every candidate fails, the HTTPS error explains more than the plain-HTTP one.
        let mut first: Option<Error> = None;
        for (base, skip_verify) in candidates {
            let http = http_client(cfg, hostport, skip_verify)?;
            match http.get(format!("{base}/v2/")).send().await {
                Ok(resp) => {
                    let challenge = resp
                        .headers()
                        .get_all(header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .filter_map(auth::parse_challenge)
                        // Prefer Bearer when a registry offers both.
                        .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
                    let status = resp.status();
                    if !(status.is_success() || status == StatusCode::UNAUTHORIZED) {
                        let e = Error::Registry(format!(
                            "{base}/v2/ is not a registry API endpoint: {}",
                            error_text(resp).await
                        ));
                        first.get_or_insert(e);
                        continue;
                    }
                    return Ok(Client {
                        http,
                        base,
                        creds,
                        auth: tokio::sync::Mutex::new(AuthState {
                            challenge,
                            tokens: HashMap::new(),
                        }),
                    });
                }
                Err(e) => {
                    tracing::debug!(%base, error = %e, "registry ping failed");
                    first.get_or_insert(Error::http(format!("Get \"{base}/v2/\""), e));
                }
            }
        }
        Err(first.unwrap_or_else(|| Error::Registry(format!("no endpoint for {endpoint}"))))
    }

    /// The Authorization header for these scopes, fetching a token when needed.
    async fn authorization(&self, scopes: &[String], renew: bool) -> Result<Option<String>> {
        let mut st = self.auth.lock().await;
        match st.challenge.clone() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.creds.as_ref().map(|c| c.basic_header())),
            Some(Challenge::Bearer { realm, service }) => {
                let key = scopes.join(" ");
                if !renew && let Some(t) = st.tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, _) = self
                    .fetch_token(&realm, service.as_deref(), scopes, false)
                    .await?;
                st.tokens.insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// The Authorization header for requests not made through [`Client::send`] (streamed
    /// uploads, which cannot be replayed after a 401).
    pub async fn authorization_header(&self, scopes: &[String]) -> Result<Option<String>> {
        self.authorization(scopes, false).await
    }

    /// The token flow of the distribution spec: GET realm?service=&scope=, with Basic
    /// credentials when we have them, anonymous otherwise. An identity token (from an earlier
    /// login) is exchanged by OAuth2 POST (grant_type=refresh_token) as Docker does, falling
    /// back to GET with it as the password if the server has no OAuth endpoint. `offline`
    /// (login) asks for a refresh token. Returns (token, refresh token).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        offline: bool,
    ) -> Result<(String, Option<String>)> {
        if let Some(c) = &self.creds
            && c.username == IDENTITY_TOKEN_USER
        {
            let joined = scopes.join(" ");
            let mut form: Vec<(&str, &str)> = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", &c.password),
                ("client_id", "docker"),
            ];
            if let Some(s) = service {
                form.push(("service", s));
            }
            if !joined.is_empty() {
                form.push(("scope", &joined));
            }
            if offline {
                form.push(("access_type", "offline"));
            }
            let resp = self
                .http
                .post(realm)
                .form(&form)
                .send()
                .await
                .map_err(|e| Error::http(format!("fetching a token from {realm}"), e))?;
            // distribution's token servers without OAuth answer 404/405: Docker retries by GET.
            if !matches!(
                resp.status(),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) {
                return token_reply(realm, resp).await;
            }
        }
        let mut q: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            q.push(("service", s));
        }
        for s in scopes {
            q.push(("scope", s));
        }
        if let Some(c) = &self.creds {
            q.push(("account", &c.username));
            if offline {
                q.push(("offline_token", "true"));
                q.push(("client_id", "docker"));
            }
        }
        let mut req = self.http.get(realm).query(&q);
        if let Some(c) = &self.creds {
            req = req.header(header::AUTHORIZATION, c.basic_header());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::http(format!("fetching a token from {realm}"), e))?;
        token_reply(realm, resp).await
    }

    /// `docker login`: are these credentials accepted? (Basic: `/v2/` answers 200 with them;
    /// Bearer: the token server issues a token for them.) Returns the identity token (the
    /// token server's refresh token) when there is one.
    pub async fn check_login(&self) -> Result<Option<String>> {
        let ch = self.auth.lock().await.challenge.clone();
        match ch {
            None => Ok(None),
            Some(Challenge::Bearer { realm, service }) => self
                .fetch_token(&realm, service.as_deref(), &[], true)
                .await
                .map(|(_, refresh)| refresh),
            Some(Challenge::Basic) => {
                let resp = self
                    .send(&[], |c, base| c.get(format!("{base}/v2/")))
                    .await?;
                if resp.status().is_success() {
                    Ok(None)
                } else {
                    Err(Error::Unauthorized(format!(
                        "unauthorized: {}",
                        error_text(resp).await
                    )))
                }
            }
        }
    }

    /// Send a request built by `build` (called again for the retry after a 401, so bodies must
    /// be re-creatable), authorized for `scopes`. Returns any status: callers decide.
    pub async fn send<F>(&self, scopes: &[String], build: F) -> Result<Response>
    where
        F: Fn(&reqwest::Client, &str) -> RequestBuilder,
    {
        let mut renew = false;
        loop {
            let mut req = build(&self.http, &self.base);
            if let Some(a) = self.authorization(scopes, renew).await? {
                req = req.header(header::AUTHORIZATION, a);
            }
            let resp = req.send().await.map_err(|e| {
                let what = e
                    .url()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| self.base.clone());
                Error::http(format!("request to {what}"), e)
            })?;
            if resp.status() != StatusCode::UNAUTHORIZED || renew {
                return Ok(resp);
            }
            // A 401 may carry a different challenge (e.g. the ping was anonymous-OK but this
            // repository needs auth): learn it and retry once.
            let ch = resp
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(auth::parse_challenge)
                .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
            let mut st = self.auth.lock().await;
            let changed = ch.is_some() && ch != st.challenge;
            if changed {
                st.challenge = ch;
            }
            // Bearer: the token may lack a scope or have expired; a new challenge: try it.
            let retry = changed || matches!(st.challenge, Some(Challenge::Bearer { .. }));
            drop(st);
            if !retry {
                return Ok(resp);
            }
            renew = true;
        }
    }

    /// GET a manifest; returns (content type, body) after checking the size limit.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        scopes: &[String],
    ) -> Result<(StatusCode, Option<String>, bytes::Bytes)> {
        let url_path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self
            .send(scopes, |c, base| {
                c.get(format!("{base}{url_path}"))
                    .header(header::ACCEPT, crate::manifest::ACCEPT)
            })
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Ok((status, None, bytes::Bytes::from(error_text(resp).await)));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > crate::manifest::MAX_MANIFEST as u64)
        {
            return Err(Error::Unsupported(format!(
                "manifest {repo}:{reference} is larger than {} bytes",
                crate::manifest::MAX_MANIFEST
            )));
        }
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(resp, crate::manifest::MAX_MANIFEST, "manifest").await?;
        Ok((status, ct, body))
    }

    /// GET a blob from `offset` (a Range request when > 0).
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
        scopes: &[String],
    ) -> Result<Response> {
        let url_path = format!("/v2/{repo}/blobs/{digest}");
        self.send(scopes, |c, base| {
            let mut r = c.get(format!("{base}{url_path}"));
            if offset > 0 {
                r = r.header(header::RANGE, format!("bytes={offset}-"));
            }
            r
        })
        .await
    }

    /// HEAD a blob: does the repository have it?
    pub async fn blob_exists(&self, repo: &str, digest: &str, scopes: &[String]) -> Result<bool> {
        let url_path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self
            .send(scopes, |c, base| c.head(format!("{base}{url_path}")))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Unauthorized(format!(
                "denied: requested access to the resource is denied ({repo})"
            ))),
            s => Err(Error::Registry(format!(
                "checking blob {digest} in {repo}: unexpected status {s}"
            ))),
        }
    }

    /// Resolve an upload `Location` (may be relative) to an absolute URL.
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url)
    }
}

/// The next page of a paginated listing: `Link: </v2/x/tags/list?last=a&n=1000>; rel="next"`.
pub(crate) fn next_link(resp: &Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.split(';').next())
        .map(|l| {
            l.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
        .filter(|l| l.starts_with("/v2/"))
}

/// Read a body, refusing more than `limit` bytes.
pub async fn read_limited(mut resp: Response, limit: usize, what: &str) -> Result<bytes::Bytes> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Error::http(format!("reading {what}"), e))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(Error::Unsupported(format!(
                "{what} is larger than {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(bytes::Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_hosts() {
        let cfg = RegistryConfig {
            insecure_registries: vec!["myreg:5000".into(), "10.1.0.0/16".into()],
            ..Default::default()
        };
        assert!(cfg.is_insecure("localhost:5000"));
        assert!(cfg.is_insecure("127.0.0.1:41234"));
        assert!(cfg.is_insecure("127.3.2.1"));
        assert!(cfg.is_insecure("[::1]:5000"));
        assert!(cfg.is_insecure("myreg:5000"));
        assert!(!cfg.is_insecure("myreg:5001"));
        assert!(cfg.is_insecure("10.1.2.3:443"));
        assert!(!cfg.is_insecure("10.2.0.1"));
        assert!(!cfg.is_insecure("registry-1.docker.io"));
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    }
}
