//! Engine errors -> Docker's JSON error responses (`{"message": "..."}` with dockerd's codes).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::{Error, ErrorKind};

#[derive(Debug)]
pub struct ApiError(pub Error);

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> ApiError {
        ApiError(Error::invalid(msg))
    }
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError(Error::not_found(msg))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON error response the way dockerd writes them.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "message": message }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        if status.is_server_error() {
            tracing::error!("{}", self.0.message);
        } else {
            tracing::debug!("{}: {}", status, self.0.message);
        }
        error_response(status, &self.0.message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
