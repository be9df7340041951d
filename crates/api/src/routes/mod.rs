//! The route table. Image names contain `/` and `:`, so image routes take the whole rest of the
//! path and split off the action suffix, as dockerd's `{name:.*}` routes do.

mod containers;
mod images;
mod registry;
mod system;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use crate::AppState;
use crate::error::error_response;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/system/df", get(system::df))
        .route("/events", get(system::events))
        .route("/images/json", get(images::list))
        .route("/images/load", post(images::load))
        .route("/images/create", post(images::create))
        .route("/images/prune", post(images::prune))
        .route("/images/get", get(images::save_many))
        .route("/images/search", get(registry::search))
        .route("/auth", post(registry::auth))
        .route("/distribution/{*rest}", get(registry::distribution))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::remove),
        )
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/prune", post(containers::prune))
        .route(
            "/containers/{*rest}",
            get(containers::get_dispatch)
                .post(containers::post_dispatch)
                .delete(containers::remove),
        )
        .route(
            "/exec/{*rest}",
            get(containers::exec_get).post(containers::exec_post),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

/// dockerd's answer for unknown routes.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "page not found")
}
