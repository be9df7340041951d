//! Container routes the docker CLI touches before containers exist here (`docker ps`,
//! `docker inspect` falling back to images).

use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn list() -> Response {
    Json(serde_json::json!([])).into_response()
}

pub async fn get_dispatch(Path(rest): Path<String>) -> Response {
    match rest.strip_suffix("/json") {
        Some(name) => ApiError::not_found(format!("No such container: {name}")).into_response(),
        None => super::not_found().await,
    }
}
