//! Image routes: list, inspect, history, tag, remove, prune, save, load, import.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::Error;
use berth_engine::images::{ImportParams, ListOptions};
use berth_image::LoadProgress;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream::{self, ChannelWriter, Item, error_line, json_line};
use crate::version::ApiVersion;

fn version_of(req: &Request) -> ApiVersion {
    req.extensions()
        .get::<ApiVersion>()
        .cloned()
        .unwrap_or_else(|| ApiVersion(berth_engine::info::API_VERSION.to_owned()))
}

pub async fn list(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let v = version_of(&req);
    let mut filters = p.filters()?;
    // Pre-1.25 clients filter by name with `filter=`.
    if let Some(f) = p.get("filter").filter(|f| !f.is_empty()) {
        filters
            .entry("reference".to_owned())
            .or_default()
            .push(f.to_owned());
    }
    let opts = ListOptions {
        all: p.bool("all"),
        filters,
        shared_size: p.bool("shared-size"),
    };
    let images = s.engine.images.list(opts).await?;
    let mut out = serde_json::to_value(&images).map_err(internal)?;
    if !v.at_least("1.44")
        && let Some(arr) = out.as_array_mut()
    {
        for img in arr {
            img["VirtualSize"] = img["Size"].clone();
        }
    }
    Ok(Json(out).into_response())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(Error::internal(e.to_string()))
}

/// GET /images/{name}/json | /history | /get
pub async fn get_dispatch(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        let img = s.engine.images.inspect(name.to_owned()).await?;
        let mut v = serde_json::to_value(&img).map_err(internal)?;
        if !version_of(&req).at_least("1.44") {
            v["VirtualSize"] = v["Size"].clone();
        }
        return Ok(Json(v).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let h = s.engine.images.history(name.to_owned()).await?;
        return Ok(Json(h).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return Ok(save(s, vec![name.to_owned()]).await);
    }
    Ok(super::not_found().await)
}

/// POST /images/{name}/tag | /push
pub async fn post_dispatch(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    if let Some(name) = rest.strip_suffix("/tag") {
        s.engine
            .images
            .tag(
                name.to_owned(),
                p.get("repo").unwrap_or("").to_owned(),
                p.get("tag").unwrap_or("").to_owned(),
            )
            .await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let name = name.to_owned();
        return Ok(super::registry::push(s, name, req).await);
    }
    Ok(super::not_found().await)
}

pub async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let items = s
        .engine
        .images
        .remove(name, p.bool("force"), p.bool("noprune"))
        .await?;
    Ok(Json(items).into_response())
}

pub async fn prune(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let report = s.engine.images.prune(p.filters()?).await?;
    Ok(Json(report).into_response())
}

/// GET /images/get?names=a&names=b
pub async fn save_many(State(s): State<AppState>, req: Request) -> Response {
    let p = Params::from_uri(req.uri());
    // docker-py and old clients send one comma-less `names` per image.
    save(s, p.get_all("names")).await
}

/// Stream the archive as the blocking save writes it; an unknown name is a clean 404 first.
async fn save(s: AppState, names: Vec<String>) -> Response {
    if let Err(e) = s.engine.images.check_names(names.clone()).await {
        return ApiError(e).into_response();
    }
    let (tx, rx) = mpsc::channel::<Item>(8);
    let engine = s.engine.clone();
    tokio::spawn(async move {
        let writer = Box::new(ChannelWriter::new(tx.clone()));
        if let Err(e) = engine.images.save(names, writer).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    stream::first_or_error(rx, "application/x-tar", None).await
}

fn progress_line(p: &LoadProgress) -> Bytes {
    match p {
        LoadProgress::Layer {
            diff_id,
            current,
            total,
        } => json_line(&json!({
            "status": "Loading layer",
            "progressDetail": {"current": current, "total": total},
            "progress": stream::progress_bar(*current, *total),
            "id": diff_id.short(),
        })),
        LoadProgress::LayerExists { diff_id } => json_line(&json!({
            "status": "Layer already exists",
            "progressDetail": {},
            "id": diff_id.short(),
        })),
    }
}

/// POST /images/load?quiet=
pub async fn load(State(s): State<AppState>, req: Request) -> Response {
    let p = Params::from_uri(req.uri());
    let quiet = p.bool("quiet");
    let input = stream::body_reader(req.into_body());
    let (tx, rx) = mpsc::channel::<Item>(16);
    let progress_tx = tx.clone();
    let progress = Box::new(move |pr: LoadProgress| {
        if !quiet {
            let _ = progress_tx.blocking_send(Ok(progress_line(&pr)));
        }
    });
    let engine = s.engine.clone();
    tokio::spawn(async move {
        match engine.images.load(input, progress).await {
            Ok(loaded) => {
                for img in loaded {
                    if img.tags.is_empty() {
                        let line = format!("Loaded image ID: {}\n", img.id);
                        let _ = tx.send(Ok(json_line(&json!({ "stream": line })))).await;
                    }
                    for t in img.tags {
                        let line = format!("Loaded image: {}\n", t.familiar());
                        let _ = tx.send(Ok(json_line(&json!({ "stream": line })))).await;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    stream::first_or_error(rx, "application/json", Some(error_line)).await
}

/// POST /images/create: pull (fromImage, in `registry`) or import (fromSrc).
pub async fn create(State(s): State<AppState>, req: Request) -> Response {
    let p = Params::from_uri(req.uri());
    if p.get("fromImage").is_some_and(|v| !v.is_empty()) {
        return super::registry::pull(s, req).await;
    }
    let Some(src) = p
        .get("fromSrc")
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
    else {
        return ApiError::invalid("fromImage or fromSrc is required").into_response();
    };
    let params = ImportParams {
        repo: p.get("repo").map(str::to_owned),
        tag: p.get("tag").map(str::to_owned),
        message: p.get("message").map(str::to_owned),
        changes: p.get_all("changes"),
    };
    let input: Box<dyn std::io::Read + Send> = if src == "-" {
        stream::body_reader(req.into_body())
    } else {
        match s.engine.images.download(&src).await {
            Ok(r) => r,
            Err(e) => return ApiError(e).into_response(),
        }
    };
    let (tx, rx) = mpsc::channel::<Item>(4);
    let engine = s.engine.clone();
    tokio::spawn(async move {
        match engine.images.import(input, params, Box::new(|_| {})).await {
            Ok(id) => {
                let _ = tx
                    .send(Ok(json_line(&json!({ "status": id.to_string() }))))
                    .await;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    stream::first_or_error(rx, "application/json", Some(error_line)).await
}
