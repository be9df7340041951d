//! berth-api: the Docker Engine API over HTTP: listeners, routing, version negotiation,
//! streaming, connection hijacking, and mapping engine errors to Docker status codes/messages.
//! Must not: hold state or do the work itself; every route translates HTTP <-> one engine call.

pub mod error;
pub mod hijack;
pub mod params;
pub mod rawconn;
pub mod routes;
pub mod server;
pub mod stream;
pub mod tls;
pub mod version;

use std::sync::Arc;

use axum::Router;
use berth_engine::Engine;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use server::{Listener, serve};
pub use version::ApiVersion;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Cancelled on daemon shutdown: long streams (events) end so connections can close.
    pub shutdown: CancellationToken,
}

/// The whole API as one service: version negotiation and the panic guard wrap the routes.
pub fn app(engine: Arc<Engine>, shutdown: CancellationToken) -> Router {
    let routes = routes::router(AppState { engine, shutdown });
    // The version middleware must run before routing (it rewrites `/v1.50/x` to `/x`), so the
    // routes sit in a fallback service of an outer router that carries the layer.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(version::negotiate))
}
