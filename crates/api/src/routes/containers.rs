//! Container routes: create, list, inspect, start/stop/kill/restart, attach (hijacked), wait,
//! logs, remove. Each translates HTTP to one call of the engine's containers service.

use std::convert::Infallible;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::Error;
use berth_engine::containers::{
    AttachOptions, ExecOptions, ListOptions, LogOptions, WaitCondition,
};
use bytes::Bytes;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::hijack::{MULTIPLEXED_STREAM, RAW_STREAM, hijack};
use crate::params::Params;

/// `GET /containers/json`.
pub async fn list(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let opts = ListOptions {
        all: p.bool("all"),
        limit: p.get("limit").and_then(|l| l.parse().ok()),
        size: p.bool("size"),
        filters: p.filters()?,
    };
    Ok(Json(s.engine.containers.list(opts).await?).into_response())
}

/// `POST /containers/prune`.
pub async fn prune(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(s.engine.containers.prune().await?).into_response())
}

/// `POST /containers/create?name=`.
pub async fn create(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let name = p.get("name").map(str::to_owned);
    let body = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .map_err(|e| ApiError::invalid(format!("reading request body: {e}")))?;
    let body: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string()))?
    };
    let (id, warnings) = s.engine.containers.create(name, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": id, "Warnings": warnings })),
    )
        .into_response())
}

/// Split `<name>/<action>`; a bare `<name>` has an empty action.
fn split(rest: &str) -> (&str, &str) {
    match rest.rsplit_once('/') {
        Some((n, a)) => (n, a),
        None => (rest, ""),
    }
}

/// GET /containers/{id}/json | /logs
pub async fn get_dispatch(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let (name, action) = split(&rest);
    match action {
        "archive" => super::files::archive_get(&s, name, req).await,
        "export" => super::files::export(&s, name).await,
        "changes" => Ok(Json(s.engine.containers.changes(name).await?).into_response()),
        "json" => {
            let mut v = s.engine.containers.inspect(name)?;
            if p.bool("size") {
                let (rw, root) = s.engine.containers.sizes(name).await?;
                v["SizeRw"] = json!(rw);
                v["SizeRootFs"] = json!(root);
            }
            Ok(Json(v).into_response())
        }
        "logs" => logs(&s, name, &p),
        "stats" => {
            let stream = p
                .get("stream")
                .is_none_or(|v| p.bool("stream") || v.is_empty());
            let mut rx = s
                .engine
                .containers
                .stats(name, stream, p.bool("one-shot"))?;
            let body = async_stream(move |tx| async move {
                while let Some(v) = rx.recv().await {
                    if tx.send(Ok(Bytes::from(format!("{v}\n")))).await.is_err() {
                        return;
                    }
                }
            });
            let mut resp = Response::new(body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        "top" => Ok(Json(
            s.engine
                .containers
                .top(name, p.get("ps_args").unwrap_or(""))
                .await?,
        )
        .into_response()),
        _ => Ok(super::not_found().await),
    }
}

/// POST /containers/{id}/<action>
pub async fn post_dispatch(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let (name, action) = split(&rest);
    let c = &s.engine.containers;
    let t = p.get("t").and_then(|t| t.parse::<i64>().ok());
    let signal = p.get("signal");
    let status = |changed: bool| {
        if changed {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::NOT_MODIFIED
        }
        .into_response()
    };
    match action {
        "start" => Ok(status(c.start(name).await?)),
        "stop" => Ok(status(c.stop(name, t, signal).await?)),
        "restart" => {
            c.restart(name, t, signal).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        "kill" => {
            c.kill(name, signal).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        "wait" => wait(&s, name, &p),
        "exec" => {
            let body = json_body(req).await?;
            let id = c.exec_create(name, &body)?;
            Ok((StatusCode::CREATED, Json(json!({ "Id": id }))).into_response())
        }
        "resize" => {
            let (h, w) = size(&p);
            c.resize(name, false, h, w).await?;
            Ok(StatusCode::OK.into_response())
        }
        "pause" | "unpause" => {
            c.pause(name, action == "pause").await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        "update" => {
            let body = json_body(req).await?;
            let warnings = c.update(name, body).await?;
            Ok(Json(json!({ "Warnings": warnings })).into_response())
        }
        "rename" => {
            c.rename(name, p.get("name").unwrap_or("")).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        "attach" => attach(&s, name.to_owned(), &p, req),
        _ => Ok(super::not_found().await),
    }
}

async fn json_body(req: Request) -> ApiResult<serde_json::Value> {
    let body = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .map_err(|e| ApiError::invalid(format!("reading request body: {e}")))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string()))
}

fn size(p: &Params) -> (u16, u16) {
    let n = |k: &str| p.get(k).and_then(|v| v.parse::<u16>().ok()).unwrap_or(0);
    (n("h"), n("w"))
}

/// GET /exec/{id}/json
pub async fn exec_get(State(s): State<AppState>, Path(rest): Path<String>) -> ApiResult<Response> {
    match split(&rest) {
        (id, "json") => Ok(Json(s.engine.containers.exec_inspect(id).await?).into_response()),
        _ => Ok(super::not_found().await),
    }
}

/// POST /exec/{id}/start | /resize
pub async fn exec_post(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let (id, action) = split(&rest);
    let id = id.to_owned();
    match action {
        "resize" => {
            let (h, w) = size(&p);
            s.engine.containers.resize(&id, true, h, w).await?;
            Ok(StatusCode::OK.into_response())
        }
        "start" => {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .map_err(|e| ApiError::invalid(format!("reading request body: {e}")))?;
            let v: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(e.to_string()))?
            };
            let console_size = v
                .get("ConsoleSize")
                .and_then(|c| c.as_array())
                .and_then(|a| Some((a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16)));
            let o = ExecOptions {
                detach: v.get("Detach").and_then(|d| d.as_bool()).unwrap_or(false),
                tty: v.get("Tty").and_then(|d| d.as_bool()).unwrap_or(false),
                console_size,
            };
            let (tty, tx) = s.engine.containers.exec_start(&id, o).await?;
            let Some(tx) = tx else {
                return Ok(StatusCode::OK.into_response());
            };
            let req = Request::from_parts(parts, Body::empty());
            let (resp, fut) = hijack(req, if tty { RAW_STREAM } else { MULTIPLEXED_STREAM });
            tokio::spawn(async move {
                if let Ok(io) = fut.await {
                    let _ = tx.send(Box::new(io));
                }
            });
            Ok(resp)
        }
        _ => Ok(super::not_found().await),
    }
}

/// DELETE /containers/{id}?force=&v=
pub async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    s.engine
        .containers
        .remove(&name, p.bool("force"), p.bool("v"))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn wait(s: &AppState, name: &str, p: &Params) -> ApiResult<Response> {
    let cond = match p.get("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return Err(ApiError::invalid(format!("invalid condition: \"{other}\"")));
        }
    };
    // registered before answering, so an exit right after cannot be missed
    let fut = s.engine.containers.wait(name, cond)?;
    // headers go out now (the docker CLI waits for them before starting the container)
    let body = futures_util::stream::once(async move {
        let code = fut.await;
        Ok::<_, Infallible>(Bytes::from(format!(
            "{}\n",
            json!({ "StatusCode": code, "Error": null })
        )))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn attach(s: &AppState, name: String, p: &Params, req: Request) -> ApiResult<Response> {
    if !p.bool("stream") && !p.bool("logs") {
        return Err(ApiError::invalid(
            "at least one of stream or logs must be set",
        ));
    }
    let o = AttachOptions {
        stdin: p.bool("stdin"),
        stdout: p.bool("stdout"),
        stderr: p.bool("stderr"),
        logs: p.bool("logs"),
        stream: p.bool("stream"),
    };
    let (tty, tx) = s.engine.containers.attach(&name, o)?;
    let (resp, fut) = hijack(req, if tty { RAW_STREAM } else { MULTIPLEXED_STREAM });
    tokio::spawn(async move {
        if let Ok(io) = fut.await {
            let _ = tx.send(Box::new(io));
        }
    });
    Ok(resp)
}

/// `since`/`until` are unix seconds with an optional fraction.
fn unix_nanos(s: Option<&str>) -> ApiResult<i64> {
    let Some(s) = s.filter(|s| !s.is_empty() && *s != "0") else {
        return Ok(0);
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs
        .parse()
        .map_err(|_| ApiError::invalid(format!("invalid timestamp: {s}")))?;
    let mut f = frac.to_owned();
    f.truncate(9);
    while f.len() < 9 {
        f.push('0');
    }
    let nanos: i64 = f.parse().unwrap_or(0);
    Ok(secs * 1_000_000_000 + nanos)
}

fn logs(s: &AppState, name: &str, p: &Params) -> ApiResult<Response> {
    let o = LogOptions {
        stdout: p.bool("stdout"),
        stderr: p.bool("stderr"),
        follow: p.bool("follow"),
        tail: match p.get("tail") {
            None | Some("") | Some("all") => None,
            Some(n) => n.parse::<i64>().ok().map(|n| n.max(0) as usize),
        },
        timestamps: p.bool("timestamps"),
        since: unix_nanos(p.get("since"))?,
        until: unix_nanos(p.get("until"))?,
    };
    if !o.stdout && !o.stderr {
        return Err(ApiError(Error::invalid(
            "Bad parameters: you must choose at least one stream",
        )));
    }
    let (tty, mut rx) = s.engine.containers.logs(name, o)?;
    let body = async_stream(move |tx| async move {
        while let Some(m) = rx.recv().await {
            let mut out = Vec::with_capacity(m.data.len() + 8);
            if !tty {
                let l = (m.data.len() as u32).to_be_bytes();
                out.extend_from_slice(&[m.stream, 0, 0, 0, l[0], l[1], l[2], l[3]]);
            }
            out.extend_from_slice(&m.data);
            if tx.send(Ok(Bytes::from(out))).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if tty { RAW_STREAM } else { MULTIPLEXED_STREAM }),
    );
    Ok(resp)
}

/// A body fed by a task through a channel.
fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|x| (x, rx))
    }))
}
