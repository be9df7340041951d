//! `/_ping`, `/version`, `/info`, `/system/df`, `/events`.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::images::parse_timestamp;
use berth_engine::{Event, EventFilter};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::version::ApiVersion;

pub async fn ping() -> Response {
    let mut r = Response::new(Body::from("OK"));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

pub async fn version() -> Response {
    Json(berth_engine::info::version()).into_response()
}

pub async fn info(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(s.engine.info().await?).into_response())
}

pub async fn df(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let v = req.extensions().get::<ApiVersion>().cloned();
    let du = s.engine.images.disk_usage().await?;
    let mut out = serde_json::to_value(&du)
        .map_err(|e| ApiError(berth_engine::Error::internal(e.to_string())))?;
    out["Volumes"] = serde_json::Value::Array(s.engine.volumes.disk_usage().await?);
    let engine = s.engine.clone();
    out["BuildCache"] = serde_json::Value::Array(
        tokio::task::spawn_blocking(move || engine.builds.df())
            .await
            .unwrap_or_default(),
    );
    if let (Some(v), Some(images)) = (v, out.get_mut("Images").and_then(|i| i.as_array_mut()))
        && !v.at_least("1.44")
    {
        for img in images {
            img["VirtualSize"] = img["Size"].clone();
        }
    }
    Ok(Json(out).into_response())
}

/// `since`/`until` as the CLI sends them ("1700000000.000000000"), or any Docker timestamp.
fn parse_nanos(s: &str, now: i64) -> Result<i64, ApiError> {
    let s = s.trim();
    if let Some((secs, frac)) = s.split_once('.')
        && let Ok(secs) = secs.parse::<i64>()
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let mut f = frac.to_owned();
        f.truncate(9);
        while f.len() < 9 {
            f.push('0');
        }
        let nanos: i64 = f.parse().unwrap_or(0);
        return Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos));
    }
    Ok(parse_timestamp(s, now)?.saturating_mul(1_000_000_000))
}

pub async fn events(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let filters = p.filters()?;
    for k in filters.keys() {
        if !EventFilter::KEYS.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!("invalid filter '{k}'")));
        }
    }
    let filter = EventFilter { filters };
    let now = chrono::Utc::now();
    let now_nano = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let since = p
        .get("since")
        .filter(|v| !v.is_empty())
        .map(|v| parse_nanos(v, now.timestamp()))
        .transpose()?;
    let until = p
        .get("until")
        .filter(|v| !v.is_empty())
        .map(|v| parse_nanos(v, now.timestamp()))
        .transpose()?;
    if let (Some(a), Some(b)) = (since, until)
        && a > b
    {
        return Err(ApiError::invalid("`since` time is after `until` time"));
    }
    let (past, mut rx) = s.engine.events.subscribe(since);
    let encode = |e: &Event| -> Bytes {
        let mut v = serde_json::to_vec(e).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    };
    let in_window = move |e: &Event| until.is_none_or(|u| e.time_nano <= u);
    let history: Vec<Bytes> = past
        .iter()
        .filter(|e| in_window(e) && filter.matches(e))
        .map(encode)
        .collect();
    let shutdown = s.shutdown.clone();
    let live_until = until.filter(|&u| u > now_nano);
    let ended = until.is_some() && live_until.is_none();
    let live = async_stream(move |tx| async move {
        if ended {
            return;
        }
        let deadline = live_until.map(|u| {
            tokio::time::Instant::now()
                + Duration::from_nanos(u.saturating_sub(now_nano).max(0) as u64)
        });
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            let got = tokio::select! {
                g = next => g,
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return, // client went away
            };
            match got {
                None => return, // until reached
                Some(Ok(e)) => {
                    if in_window(&e) && filter.matches(&e) && tx.send(encode(&e)).await.is_err() {
                        return;
                    }
                }
                Some(Err(RecvError::Lagged(n))) => {
                    tracing::warn!("events listener lagged, {n} events dropped")
                }
                Some(Err(RecvError::Closed)) => return,
            }
        }
    });
    let stream = futures_util::stream::iter(history).chain(live);
    let mut r = Response::new(crate::stream::infallible_body(stream));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// A stream fed by a producer task through a small channel (ends when the task returns or the
/// client goes away).
fn async_stream<F, Fut>(f: F) -> impl futures_util::Stream<Item = Bytes> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}
