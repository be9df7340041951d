//! `/networks*`: list, inspect, create, remove, connect, disconnect, prune.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;

async fn body_json(req: Request) -> ApiResult<Value> {
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::invalid(format!("reading request body: {e}")))?;
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string()))
}

/// `GET /networks`.
pub async fn list(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    Ok(Json(s.engine.network_service.list(&p.filters()?)?).into_response())
}

/// `POST /networks/create`.
pub async fn create(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let body = body_json(req).await?;
    let (id, warning) = s.engine.network_service.create(&body).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": id, "Warning": warning })),
    )
        .into_response())
}

/// `POST /networks/prune`.
pub async fn prune(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let names = s.engine.network_service.prune(&p.filters()?).await?;
    Ok(Json(json!({ "NetworksDeleted": names })).into_response())
}

/// `GET /networks/{id}`.
pub async fn inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.engine.network_service.inspect(&id)?).into_response())
}

/// `DELETE /networks/{id}`.
pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    s.engine.network_service.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /networks/{id}/connect` and `/disconnect`.
pub async fn post_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    let body = body_json(req).await?;
    let ctr = body
        .get("Container")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if ctr.is_empty() {
        return Err(ApiError::invalid("no container specified"));
    }
    match action.as_str() {
        "connect" => {
            s.engine
                .network_service
                .connect(&id, &ctr, body.get("EndpointConfig"))
                .await?
        }
        "disconnect" => {
            let force = body.get("Force").and_then(Value::as_bool).unwrap_or(false);
            s.engine
                .network_service
                .disconnect(&id, &ctr, force)
                .await?
        }
        _ => return Ok(super::not_found().await),
    }
    Ok(StatusCode::OK.into_response())
}
