//! API version negotiation (`/v1.43/...` prefix stripping), the headers dockerd puts on every
//! response, and the guard that turns a panicking handler into a 500.

use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use berth_engine::info::{API_VERSION, MIN_API_VERSION};
use futures_util::FutureExt;

use crate::error::error_response;

/// The API version a request asked for (the default when it had no `/vX.Y` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersion(pub String);

impl ApiVersion {
    /// Is this version >= `v` ("1.44")?
    pub fn at_least(&self, v: &str) -> bool {
        compare(&self.0, v) != std::cmp::Ordering::Less
    }
}

/// Compare dotted versions numerically ("1.9" < "1.24").
pub fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (a, b) = (parse(a), parse(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x.cmp(&y);
        }
    }
    std::cmp::Ordering::Equal
}

/// Split `/v1.43/rest` into ("1.43", "/rest").
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let ver = &rest[..end];
    if ver.is_empty() || !ver.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((ver, &rest[end..]))
}

fn add_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert("Server", HeaderValue::from_static(concat_server()));
    h.insert("API-Version", HeaderValue::from_static(API_VERSION));
    h.insert("OSType", HeaderValue::from_static("linux"));
}

/// The `Server` header dockerd sends. Kept in step with info::DOCKER_VERSION (unit test).
pub const SERVER: &str = "Docker/28.2.2 (linux)";

const fn concat_server() -> &'static str {
    SERVER
}

pub async fn negotiate(mut req: Request, next: Next) -> Response {
    let mut version = API_VERSION.to_owned();
    if let Some((ver, rest)) = split_version(req.uri().path()) {
        if compare(ver, MIN_API_VERSION).is_lt() {
            let mut r = error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                ),
            );
            add_headers(&mut r);
            return r;
        }
        if compare(ver, API_VERSION).is_gt() {
            let mut r = error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
                ),
            );
            add_headers(&mut r);
            return r;
        }
        version = ver.to_owned();
        let rest = if rest.is_empty() { "/" } else { rest };
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        match pq.parse() {
            Ok(pq) => parts.path_and_query = Some(pq),
            Err(_) => return error_response(StatusCode::BAD_REQUEST, "invalid request path"),
        }
        match Uri::from_parts(parts) {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return error_response(StatusCode::BAD_REQUEST, "invalid request path"),
        }
    }
    req.extensions_mut().insert(ApiVersion(version));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            tracing::error!("handler for {method} {path} panicked: {what}");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("internal error: {what}"),
            )
        }
    };
    tracing::debug!("{method} {path} -> {}", resp.status());
    add_headers(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::info::DOCKER_VERSION;

    #[test]
    fn versions() {
        assert!(compare("1.9", "1.24").is_lt());
        assert!(compare("1.50", "1.50").is_eq());
        assert!(compare("1.51", "1.50").is_gt());
        assert!(ApiVersion("1.44".into()).at_least("1.44"));
        assert!(!ApiVersion("1.43".into()).at_least("1.44"));
        assert_eq!(
            split_version("/v1.43/images/json"),
            Some(("1.43", "/images/json"))
        );
        assert_eq!(split_version("/v1.43"), Some(("1.43", "")));
        assert_eq!(split_version("/volumes"), None);
        assert_eq!(split_version("/version"), None);
        assert_eq!(concat_server(), format!("Docker/{DOCKER_VERSION} (linux)"));
    }
}
