//! Volume routes: list, create, inspect, remove, prune. Each translates HTTP to one call of the
//! engine's volumes service.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::version::ApiVersion;

/// `GET /volumes?filters=`.
pub async fn list(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    Ok(Json(s.engine.volumes.list(&p.filters()?).await?).into_response())
}

/// `POST /volumes/create`.
pub async fn create(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::invalid(format!("reading request body: {e}")))?;
    let body: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string()))?
    };
    if !body.is_object() {
        return Err(ApiError::invalid("invalid JSON: expected an object"));
    }
    let v = s.engine.volumes.create(body).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.engine.volumes.inspect(&name).await?).into_response())
}

/// `DELETE /volumes/{name}?force=`.
pub async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    s.engine.volumes.remove(&name, p.bool("force")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune?filters=`: API 1.42+ prunes only anonymous volumes unless `all=true`.
pub async fn prune(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let old_client = req
        .extensions()
        .get::<ApiVersion>()
        .is_some_and(|v| !v.at_least("1.42"));
    Ok(Json(s.engine.volumes.prune(&p.filters()?, old_client).await?).into_response())
}
