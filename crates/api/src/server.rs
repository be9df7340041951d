//! Serving the API on listeners: HTTP/1.1 per connection with upgrades enabled (hijacking),
//! TLS on tcp when configured, and graceful shutdown (stop accepting, let requests finish, then
//! drop what is left after a grace period).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::rawconn::{self, RawConn};

/// A bound socket to serve on.
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener, Option<TlsAcceptor>),
}

/// Requests received since start-up, on every listener: the daemon's measure of activity (it
/// gives memory back after a quiet spell).
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// How many API requests this process has received so far.
pub fn requests_received() -> u64 {
    REQUESTS.load(Ordering::Relaxed)
}

/// The per-connection service: the router, with the connection's `RawConn` in every request
/// so the legacy hijack can claim the stream.
fn service(
    app: Router,
    raw: RawConn,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        req.extensions_mut().insert(raw.clone());
        app.clone().oneshot(req.map(axum::body::Body::new))
    })
}

/// Serve one connection until it closes.
pub async fn serve_connection<IO>(io: IO, app: Router)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (io, raw) = rawconn::wrap(io);
    let conn = http1::Builder::new()
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), service(app, raw))
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("connection: {e}");
    }
}

async fn serve_graceful<IO>(io: IO, app: Router, shutdown: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (io, raw) = rawconn::wrap(io);
    let conn = http1::Builder::new()
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), service(app, raw))
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r { tracing::debug!("connection: {e}"); }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await { tracing::debug!("connection: {e}"); }
        }
    }
}

/// Accept and serve on every listener until `shutdown` is cancelled; then wait up to `grace`
/// for open requests to finish.
pub async fn serve(
    listeners: Vec<Listener>,
    app: Router,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let tracker = TaskTracker::new();
    for l in listeners {
        let app = app.clone();
        let shutdown = shutdown.clone();
        let conns = tracker.clone();
        tracker.spawn(async move {
            loop {
                match &l {
                    Listener::Unix(u) => {
                        let accepted = tokio::select! {
                            a = u.accept() => a,
                            _ = shutdown.cancelled() => break,
                        };
                        match accepted {
                            Ok((s, _)) => {
                                conns.spawn(serve_graceful(s, app.clone(), shutdown.clone()));
                            }
                            Err(e) => accept_error(e).await,
                        }
                    }
                    Listener::Tcp(t, tls) => {
                        let accepted = tokio::select! {
                            a = t.accept() => a,
                            _ = shutdown.cancelled() => break,
                        };
                        match accepted {
                            Ok((s, peer)) => {
                                let _ = s.set_nodelay(true);
                                match tls.clone() {
                                    None => {
                                        conns.spawn(serve_graceful(
                                            s,
                                            app.clone(),
                                            shutdown.clone(),
                                        ));
                                    }
                                    Some(acc) => {
                                        let (app, shutdown) = (app.clone(), shutdown.clone());
                                        conns.spawn(async move {
                                            let hs = tokio::time::timeout(
                                                Duration::from_secs(10),
                                                acc.accept(s),
                                            )
                                            .await;
                                            match hs {
                                                Ok(Ok(s)) => serve_graceful(s, app, shutdown).await,
                                                Ok(Err(e)) => {
                                                    tracing::info!("TLS handshake with {peer}: {e}")
                                                }
                                                Err(_) => tracing::info!(
                                                    "TLS handshake with {peer} timed out"
                                                ),
                                            }
                                        });
                                    }
                                }
                            }
                            Err(e) => accept_error(e).await,
                        }
                    }
                }
            }
        });
    }
    tracker.close();
    shutdown.cancelled().await;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::info!(
            "shutdown: {} connection(s) still open after {grace:?}, closing",
            tracker.len()
        );
    }
}

/// EMFILE and friends: log and back off instead of spinning.
async fn accept_error(e: std::io::Error) {
    tracing::warn!("accept: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
