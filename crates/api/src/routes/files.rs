//! Container filesystem routes: `HEAD`/`GET`/`PUT /containers/{id}/archive` (docker cp),
//! `GET /containers/{id}/export`, `GET /containers/{id}/changes` (docker diff) and
//! `POST /commit`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_engine::containers::CommitOptions;
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream::{self, ChannelWriter, Item};

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

fn stat_header(st: &berth_engine::containers::PathStat) -> Option<HeaderValue> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(st.to_json().to_string());
    HeaderValue::from_str(&b64).ok()
}

fn path_param(p: &Params) -> ApiResult<String> {
    match p.get("path") {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(ApiError::invalid("path is required")),
    }
}

/// `HEAD` and `GET /containers/{id}/archive?path=`.
pub async fn archive_get(s: &AppState, name: &str, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let path = path_param(&p)?;
    let c = &s.engine.containers;
    let st = c.archive_stat(name, &path).await?;
    let hv = stat_header(&st);
    if req.method() == Method::HEAD {
        let mut resp = StatusCode::OK.into_response();
        if let Some(hv) = hv {
            resp.headers_mut().insert(STAT_HEADER, hv);
        }
        return Ok(resp);
    }
    let (tx, rx) = mpsc::channel::<Item>(8);
    let engine = s.engine.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        let w = Box::new(ChannelWriter::new(tx.clone()));
        if let Err(e) = engine.containers.archive_get(&name, &path, w).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    let mut resp = stream::first_or_error(rx, "application/x-tar", None).await;
    if resp.status() == StatusCode::OK
        && let Some(hv) = hv
    {
        resp.headers_mut().insert(STAT_HEADER, hv);
    }
    Ok(resp)
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`.
pub async fn archive_put(s: &AppState, name: &str, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let path = path_param(&p)?;
    let input = stream::body_reader(req.into_body());
    s.engine
        .containers
        .archive_put(
            name,
            &path,
            p.bool("noOverwriteDirNonDir"),
            p.bool("copyUIDGID"),
            input,
        )
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /containers/{id}/export`.
pub async fn export(s: &AppState, name: &str) -> ApiResult<Response> {
    // an unknown container is a plain 404 before any byte
    s.engine.containers.get(name)?;
    let (tx, rx) = mpsc::channel::<Item>(8);
    let engine = s.engine.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        let w = Box::new(ChannelWriter::new(tx.clone()));
        if let Err(e) = engine.containers.export(&name, w).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(stream::first_or_error(rx, "application/x-tar", None).await)
}

/// `PUT /containers/{id}/<action>`.
pub async fn put_dispatch(
    State(s): State<AppState>,
    axum::extract::Path(rest): axum::extract::Path<String>,
    req: Request,
) -> ApiResult<Response> {
    match rest.rsplit_once('/') {
        Some((name, "archive")) => archive_put(&s, name, req).await,
        _ => Ok(super::not_found().await),
    }
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`, body: a Config.
pub async fn commit(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let container = p.get("container").unwrap_or("").to_owned();
    let opt = |k: &str| p.get(k).map(str::to_owned);
    // pause defaults to true (old clients send nothing)
    let pause = p
        .get("pause")
        .is_none_or(|v| v.is_empty() || p.bool("pause"));
    let body = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .map_err(|e| ApiError::invalid(format!("reading request body: {e}")))?;
    let config = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice::<serde_json::Value>(&body)
                .map_err(|e| ApiError::invalid(e.to_string()))?,
        )
    };
    let o = CommitOptions {
        container,
        repo: opt("repo"),
        tag: opt("tag"),
        comment: opt("comment"),
        author: opt("author"),
        pause,
        changes: p.get_all("changes"),
        config,
    };
    let id = s.engine.containers.commit(o).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "Id": id.to_string() })),
    )
        .into_response())
}
