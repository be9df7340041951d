//! `POST /build` (the legacy builder's JSON stream) and `POST /build/prune`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_engine::Error;
use berth_engine::builds::{BuildEvent, BuildParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream::{self, Item, error_line, json_line};

/// A JSON-object query parameter (`buildargs`, `labels`); absent or empty is empty.
fn json_param(p: &Params, key: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    match p.get(key).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(Default::default()),
        Some(v) => match serde_json::from_str::<Value>(v) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(Value::Null) => Ok(Default::default()),
            _ => Err(ApiError::invalid(format!(
                "invalid {key} parameter: expected a JSON object"
            ))),
        },
    }
}

fn int_param(p: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    match p.get(key).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("invalid {key} parameter: {v}"))),
    }
}

/// `X-Registry-Config`: base64url JSON `{registry: AuthConfig}`.
fn registry_config(
    header: Option<&str>,
) -> Result<BTreeMap<String, berth_distribution::Credentials>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(out);
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h))
        .map_err(|_| ApiError::invalid("invalid X-Registry-Config header"))?;
    let map: BTreeMap<String, Value> = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::invalid(format!("invalid X-Registry-Config header: {e}")))?;
    for (reg, cfg) in map {
        // each value is an X-Registry-Auth document
        let enc = base64::engine::general_purpose::URL_SAFE.encode(cfg.to_string());
        if let Ok(Some(c)) = berth_distribution::Credentials::from_registry_auth_header(&enc) {
            let key = reg
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned();
            let key = if key == "index.docker.io" {
                "docker.io".to_owned()
            } else {
                key
            };
            out.insert(key, c);
        }
    }
    Ok(out)
}

/// `X-Berth-Build-Secrets` (berth's CLI; the legacy API has no secrets channel): base64 of
/// `{"id": "<base64 data>"}`.
fn build_secrets(header: Option<&str>) -> Result<BTreeMap<String, Vec<u8>>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(out);
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = || ApiError::invalid("invalid X-Berth-Build-Secrets header");
    let raw = b64.decode(h).map_err(|_| bad())?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&raw).map_err(|_| bad())?;
    for (id, data) in map {
        out.insert(id, b64.decode(data).map_err(|_| bad())?);
    }
    Ok(out)
}

fn params(p: &Params, req: &Request) -> Result<BuildParams, ApiError> {
    if p.get("version").is_some_and(|v| v.trim() == "2") {
        return Err(ApiError::invalid(
            "BuildKit (version=2) is not supported by berthd: build with the legacy builder (DOCKER_BUILDKIT=0) or `berth build`",
        ));
    }
    if p.get("outputs")
        .is_some_and(|v| !v.trim().is_empty() && v.trim() != "[]")
    {
        return Err(ApiError::invalid(
            "outputs are a BuildKit feature; the legacy builder makes an image",
        ));
    }
    if let Some(pl) = p.get("platform").map(str::trim).filter(|v| !v.is_empty())
        && pl != "linux/amd64"
        && pl != "linux"
        && pl != "amd64"
    {
        return Err(ApiError::invalid(format!(
            "\"{pl}\": unsupported platform: this daemon builds linux/amd64"
        )));
    }
    if p.bool("squash") {
        return Err(ApiError::invalid(
            "squash is only supported with experimental mode",
        ));
    }
    let mut build_args = BTreeMap::new();
    for (k, v) in json_param(p, "buildargs")? {
        build_args.insert(k, v.as_str().map(str::to_owned));
    }
    let mut labels = BTreeMap::new();
    for (k, v) in json_param(p, "labels")? {
        labels.insert(k, v.as_str().unwrap_or_default().to_owned());
    }
    let cache_from = match p.get("cachefrom").map(str::trim).filter(|v| !v.is_empty()) {
        None => Vec::new(),
        Some(v) => serde_json::from_str::<Vec<String>>(v)
            .map_err(|e| ApiError::invalid(format!("invalid cachefrom parameter: {e}")))?,
    };
    let mut hc = serde_json::Map::new();
    for (q, field) in [
        ("memory", "Memory"),
        ("memswap", "MemorySwap"),
        ("cpushares", "CpuShares"),
        ("cpuperiod", "CpuPeriod"),
        ("cpuquota", "CpuQuota"),
        ("shmsize", "ShmSize"),
    ] {
        if let Some(n) = int_param(p, q)?.filter(|n| *n != 0) {
            hc.insert(field.into(), json!(n));
        }
    }
    for (q, field) in [("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems")] {
        if let Some(v) = p.get(q).filter(|v| !v.is_empty()) {
            hc.insert(field.into(), json!(v));
        }
    }
    let extra_hosts: Vec<String> = p
        .get_all("extrahosts")
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    if !extra_hosts.is_empty() {
        hc.insert("ExtraHosts".into(), json!(extra_hosts));
    }
    let header = req
        .headers()
        .get("X-Registry-Config")
        .and_then(|h| h.to_str().ok());
    let secrets = build_secrets(
        req.headers()
            .get("X-Berth-Build-Secrets")
            .and_then(|h| h.to_str().ok()),
    )?;
    Ok(BuildParams {
        dockerfile: p.get("dockerfile").unwrap_or("").to_owned(),
        tags: p
            .get_all("t")
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect(),
        quiet: p.bool("q"),
        no_cache: p.bool("nocache"),
        cache_from,
        pull: p.bool("pull"),
        rm: if p.get("rm").is_some() {
            p.bool("rm")
        } else {
            true
        },
        force_rm: p.bool("forcerm"),
        host_config: hc,
        build_args,
        labels,
        network_mode: p.get("networkmode").unwrap_or("").to_owned(),
        target: p.get("target").unwrap_or("").to_owned(),
        auth: registry_config(header)?,
        remote: p.get("remote").unwrap_or("").to_owned(),
        secrets,
    })
}

pub async fn build(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let params = params(&p, &req)?;
    let input = stream::body_reader(req.into_body());
    let (tx, rx) = mpsc::channel::<Item>(16);
    let (etx, mut erx) = mpsc::unbounded_channel::<Value>();
    let engine = s.engine.clone();
    let done = etx.clone();
    let sink: berth_engine::builds::Sink = Arc::new(move |ev| {
        let v = match ev {
            BuildEvent::Stream(s) => json!({ "stream": s }),
            BuildEvent::Aux(a) => json!({ "aux": a }),
        };
        let _ = etx.send(v);
    });
    tokio::spawn(async move {
        let fwd_tx = tx.clone();
        let fwd = tokio::spawn(async move {
            // Null marks the end of the build's output
            while let Some(v) = erx.recv().await {
                if v.is_null() || fwd_tx.send(Ok(json_line(&v))).await.is_err() {
                    break;
                }
            }
        });
        let res = berth_engine::builds::build(engine, input, params, sink).await;
        let _ = done.send(Value::Null);
        let _ = fwd.await;
        if let Err(f) = res {
            // a failed RUN: dockerd's JSONError with the exit status as its code
            let item = match f.code {
                Some(code) => Ok(json_line(&json!({
                    "errorDetail": {"code": code, "message": &f.error.message},
                    "error": &f.error.message,
                }))),
                None => Err(f.error),
            };
            let _ = tx.send(item).await;
        }
    });
    Ok(stream::first_or_error(rx, "application/json", Some(error_line)).await)
}

pub async fn prune(State(s): State<AppState>) -> ApiResult<Response> {
    let engine = s.engine.clone();
    let (size, ids) = tokio::task::spawn_blocking(move || engine.builds.prune())
        .await
        .map_err(|e| ApiError(Error::internal(e.to_string())))??;
    Ok(Json(json!({ "CachesDeleted": ids, "SpaceReclaimed": size })).into_response())
}
