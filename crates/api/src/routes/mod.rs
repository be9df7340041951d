//! The route table. Image names contain `/` and `:`, so image routes take the whole rest of the
//! path and split off the action suffix, as dockerd's `{name:.*}` routes do.

mod build;
mod containers;
mod files;
mod images;
mod networks;
mod registry;
mod system;
mod volumes;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};

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
        .route("/commit", post(files::commit))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/prune", post(containers::prune))
        .route(
            "/containers/{*rest}",
            get(containers::get_dispatch)
                .post(containers::post_dispatch)
                .put(files::put_dispatch)
                .delete(containers::remove),
        )
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/{action}", post(networks::post_action))
        .route(
            "/exec/{*rest}",
            get(containers::exec_get).post(containers::exec_post),
        )
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).merge(delete(volumes::remove)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

/// dockerd's answer for unknown routes.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "page not found")
}
