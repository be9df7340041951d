//! Connection hijacking for attach/exec: the client asks `Connection: Upgrade, Upgrade: tcp`
//! and gets `101 UPGRADED` followed by the raw bidirectional stream (hyper's upgrade, served with
//! `.with_upgrades()`); an old client that does not ask to upgrade gets dockerd's legacy answer,
//! `200 OK` with a raw-stream content type, output in the response body and input from the
//! request body.

use std::io;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::{Future, TryStreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::rawconn::RawConn;

/// Both directions of a hijacked connection.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

pub type HijackedIo = Box<dyn Duplex>;

/// Resolves once the response head went out and the stream is ours.
pub type HijackFuture = Pin<Box<dyn Future<Output = io::Result<HijackedIo>> + Send>>;

/// `application/vnd.docker.raw-stream` (tty) or `application/vnd.docker.multiplexed-stream`.
pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

fn wants_upgrade(req: &Request) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
                .unwrap_or(false)
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "tcp")
}

/// Take over the connection of `req`. Return the response to the client and spawn a task that
/// awaits the future to get the stream.
pub fn hijack(mut req: Request, content_type: &'static str) -> (Response, HijackFuture) {
    if wants_upgrade(&req) {
        let on = hyper::upgrade::on(&mut req);
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        let fut = async move {
            let up = on.await.map_err(io::Error::other)?;
            Ok(Box::new(TokioIo::new(up)) as HijackedIo)
        };
        return (resp, Box::pin(fut));
    }
    // Legacy: answer `200 OK` with the raw-stream type and hand over the raw connection, as
    // dockerd does. Claimed now, before hyper writes its own (then discarded) response head.
    if let Some(raw) = req.extensions().get::<RawConn>().and_then(RawConn::take) {
        let fut = async move {
            let mut raw = raw;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nServer: {}\r\n\r\n",
                crate::version::SERVER
            );
            raw.write_all(head.as_bytes()).await?;
            raw.flush().await?;
            Ok(raw)
        };
        return (Response::new(Body::empty()), Box::pin(fut));
    }
    // No raw connection to claim (in-process use, e.g. tests driving the router directly):
    // splice a duplex pipe between the request body (input), the response body (output) and
    // the handler's end.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (their_read, mut their_write) = tokio::io::split(theirs);
    let input = req.into_body().into_data_stream().map_err(io::Error::other);
    tokio::spawn(async move {
        let mut input = StreamReader::new(input);
        let _ = tokio::io::copy(&mut input, &mut their_write).await;
        // End of request body = end of the handler's input.
        let _ = their_write.shutdown().await;
    });
    let mut resp = Response::new(Body::from_stream(ReaderStream::new(their_read)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (
        resp,
        Box::pin(async move { Ok(Box::new(ours) as HijackedIo) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo endpoint over a hijacked connection, served by hyper with upgrades on a pipe.
    async fn echo(req: Request) -> Response {
        let (resp, fut) = hijack(req, RAW_STREAM);
        tokio::spawn(async move {
            if let Ok(io) = fut.await {
                let (mut r, mut w) = tokio::io::split(io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            }
        });
        resp
    }

    async fn read_until(s: &mut (impl AsyncRead + Unpin), needle: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.windows(needle.len()).any(|w| w == needle) {
            if s.read(&mut b).await.unwrap() == 0 {
                break;
            }
            got.push(b[0]);
        }
        got
    }

    #[tokio::test]
    async fn upgrade_tcp_gives_raw_stream() {
        let app = Router::new().route("/echo", post(echo));
        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(crate::server::serve_connection(server, app));
        let mut client = client;
        client
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let head = read_until(&mut client, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.to_ascii_lowercase().contains("upgrade: tcp"), "{head}");
        client.write_all(b"ping!").await.unwrap();
        let echoed = read_until(&mut client, b"ping!").await;
        assert_eq!(echoed, b"ping!");
    }

    #[tokio::test]
    async fn legacy_without_upgrade_gets_the_raw_connection() {
        let app = Router::new().route("/echo", post(echo));
        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(crate::server::serve_connection(server, app));
        let mut client = client;
        client
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_until(&mut client, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(RAW_STREAM), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "{head}"
        );
        // raw bytes both ways, no HTTP framing
        client.write_all(b"ping!").await.unwrap();
        let echoed = read_until(&mut client, b"ping!").await;
        assert_eq!(echoed, b"ping!");
        // closing our write side ends the echo, which ends the connection
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut rest),
        )
        .await
        .expect("connection closes after the hijacker is done")
        .unwrap();
        assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest));
    }

    #[tokio::test]
    async fn in_process_fallback_streams_in_body() {
        use tower::ServiceExt;
        let app = Router::new().route("/echo", post(echo));
        let req = axum::http::Request::post("/echo")
            .body(Body::from("hello"))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"hello");
    }
}
