//! A minimal token server (feature `token-server`): the other half of token auth, for tests and
//! for trying token auth locally. `GET /token?service=..&scope=..` answers
//! `{"token": <JWT>}` signed RS256 by a PEM key, with distribution's claims (`iss`, `aud`,
//! `exp`, `access`) and the libtrust `kid` of the key's certificate, so distribution's
//! `docker-registry` accepts its tokens as well as ours.
//!
//! Policy: with `credentials` set, Basic auth with them grants every action asked for and no
//! Authorization grants `pull` only (anonymous); wrong credentials are a 401. Without
//! `credentials`, everyone gets everything.
//!
//! Docker's identity tokens: an authenticated GET with `offline_token=true` (what `docker
//! login` sends) also gets a `refresh_token`; `POST /token` with the OAuth2 form
//! `grant_type=refresh_token&refresh_token=..` exchanges it for an access token with full
//! rights, as `grant_type=password` does with the credentials.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::auth::{cert_spkis, libtrust_key_id, parse_basic};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct TokenServerConfig {
    /// PEM private key (PKCS#1 or PKCS#8, RSA).
    pub key_pem: Vec<u8>,
    /// PEM certificate of that key (for the `kid`).
    pub cert_pem: Vec<u8>,
    pub issuer: String,
    pub service: String,
    pub credentials: Option<(String, String)>,
}

pub struct TokenServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Serialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

#[derive(Serialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

struct Inner {
    cfg: TokenServerConfig,
    key: jsonwebtoken::EncodingKey,
    kid: String,
    /// Refresh tokens handed out (token -> subject); in memory: a test server.
    refresh: Mutex<HashMap<String, String>>,
}

impl TokenServer {
    /// Listen on a free port of 127.0.0.1.
    pub async fn start(cfg: TokenServerConfig) -> Result<TokenServer> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&cfg.key_pem)
            .map_err(|e| Error::Config(format!("token key: {e}")))?;
        let spki = cert_spkis(&cfg.cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Config("token certificate: none".into()))?;
        let inner = Arc::new(Inner {
            kid: libtrust_key_id(&spki),
            cfg,
            key,
            refresh: Mutex::new(HashMap::new()),
        });
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    Some(_) = conns.join_next() => continue,
                };
                let inner = Arc::clone(&inner);
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let inner = Arc::clone(&inner);
                        async move { Ok::<_, Infallible>(issue(&inner, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(TokenServer { addr, task })
    }

    /// The `realm` to configure the registry with.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn unauthorized(details: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"details": details}).to_string(),
    )
}

async fn issue(inner: &Inner, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/token" {
        return reply(StatusCode::NOT_FOUND, "{}".into());
    }
    let creds_ok = |u: &str, p: &str| match &inner.cfg.credentials {
        None => true,
        Some((cu, cp)) => cu == u && cp == p,
    };
    // (full rights, subject, parameters, may get a refresh token)
    let (full, sub, params, offline) = if req.method() == http::Method::POST {
        // OAuth2 form: identity tokens (refresh_token) or a password grant.
        let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(StatusCode::BAD_REQUEST, "{}".into()),
        };
        let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let get = |k: &str| {
            params
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let sub = match get("grant_type").as_str() {
            "refresh_token" => {
                let known = inner
                    .refresh
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&get("refresh_token"))
                    .cloned();
                match known {
                    Some(sub) => sub,
                    None => return unauthorized("invalid refresh token"),
                }
            }
            "password" if creds_ok(&get("username"), &get("password")) => get("username"),
            "password" => return unauthorized("invalid credentials"),
            _ => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"unsupported_grant_type"}"#.into(),
                );
            }
        };
        let offline = get("access_type") == "offline";
        (true, sub, params, offline)
    } else {
        let params: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let basic = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic);
        let (full, sub, authed) = match basic {
            Some((u, p)) if creds_ok(&u, &p) => (true, u, true),
            Some(_) => return unauthorized("invalid credentials"),
            None => (inner.cfg.credentials.is_none(), String::new(), false),
        };
        let offline = authed
            && params
                .iter()
                .any(|(k, v)| k == "offline_token" && v == "true");
        (full, sub, params, offline)
    };
    let mut access = Vec::new();
    for (k, v) in &params {
        if k != "scope" {
            continue;
        }
        for scope in v.split(' ') {
            let (Some((kind, rest)), true) = (scope.split_once(':'), !scope.is_empty()) else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let actions: Vec<String> = actions
                .split(',')
                .filter(|a| full || *a == "pull")
                .map(str::to_owned)
                .collect();
            access.push(Access {
                kind: kind.to_owned(),
                name: name.to_owned(),
                actions,
            });
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = Claims {
        iss: inner.cfg.issuer.clone(),
        sub,
        aud: inner.cfg.service.clone(),
        exp: now + 300,
        nbf: now.saturating_sub(10),
        iat: now,
        jti: crate::storage::random_id(),
        access,
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(inner.kid.clone());
    match jsonwebtoken::encode(&header, &claims, &inner.key) {
        Ok(t) => {
            let mut body = serde_json::json!({"token": t, "access_token": t, "expires_in": 300});
            if offline {
                let r = crate::storage::random_id();
                inner
                    .refresh
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(r.clone(), claims.sub.clone());
                body["refresh_token"] = r.into();
            }
            reply(StatusCode::OK, body.to_string())
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"details": e.to_string()}).to_string(),
        ),
    }
}
