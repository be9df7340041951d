//! Streaming plumbing between blocking engine work and HTTP bodies: a `Write` that feeds a
//! channel (so `save` never buffers a whole tar), a `Read` over a request body (so `load` reads
//! as the client sends), and the "error before the first byte is a plain JSON error, after it an
//! in-band error" response pattern dockerd follows.

use std::convert::Infallible;
use std::io::{self, Write};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::Error;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::ApiError;

/// What producers send: data, or the error that ended the work.
pub type Item = Result<Bytes, Error>;

const CHUNK: usize = 64 * 1024;

/// A blocking `Write` into a bounded channel; backpressure blocks the writer thread.
pub struct ChannelWriter {
    tx: mpsc::Sender<Item>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Item>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(data))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send_buf();
    }
}

/// A blocking `Read` over a request body, for `spawn_blocking` consumers. Must be created
/// inside the runtime (it captures the handle).
pub fn body_reader(body: Body) -> Box<dyn io::Read + Send> {
    let stream = body.into_data_stream().map_err(io::Error::other);
    Box::new(SyncIoBridge::new(StreamReader::new(stream)))
}

/// Wait for the producer's first item: an error before any data becomes a normal JSON error
/// response; otherwise stream everything, turning a later error into `in_band(err)` bytes (or,
/// when `None`, into an aborted body so the client sees a truncated transfer).
pub async fn first_or_error(
    mut rx: mpsc::Receiver<Item>,
    content_type: &'static str,
    in_band: Option<fn(&Error) -> Bytes>,
) -> Response {
    let first = match rx.recv().await {
        Some(Err(e)) => return ApiError(e).into_response(),
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let stream =
        futures_util::stream::iter(first.map(Ok))
            .chain(rest)
            .map(move |item| match item {
                Ok(b) => Ok(b),
                Err(e) => match in_band {
                    Some(f) => Ok(f(&e)),
                    None => {
                        tracing::warn!("stream aborted: {e}");
                        Err(io::Error::other(e.message))
                    }
                },
            });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// One jsonmessage line: `{"errorDetail":{"message":..},"error":..}`.
pub fn error_line(e: &Error) -> Bytes {
    json_line(&serde_json::json!({
        "errorDetail": {"message": e.message},
        "error": e.message,
    }))
}

pub fn json_line(v: &serde_json::Value) -> Bytes {
    let mut s = v.to_string();
    s.push_str("\r\n");
    Bytes::from(s)
}

/// Docker's progress bar text: `[=====>      ]  1.2MB/4.5MB`.
pub fn progress_bar(current: u64, total: Option<u64>) -> String {
    let size = |n: u64| -> String {
        let units = ["B", "kB", "MB", "GB", "TB"];
        let mut v = n as f64;
        let mut i = 0;
        while v >= 1000.0 && i < units.len() - 1 {
            v /= 1000.0;
            i += 1;
        }
        if i == 0 {
            return format!("{n}B");
        }
        // Go's %.4g, as docker's HumanSize prints: 4 significant digits, no trailing zeros.
        let digits = if v >= 100.0 {
            1
        } else if v >= 10.0 {
            2
        } else {
            3
        };
        let num = format!("{v:.digits$}");
        let num = num.trim_end_matches('0').trim_end_matches('.');
        format!("{num}{}", units[i])
    };
    match total {
        Some(t) if t > 0 => {
            let width = 50u64;
            let filled = (current.min(t) * width / t) as usize;
            let bar = if filled >= width as usize {
                "=".repeat(width as usize)
            } else {
                format!(
                    "{}>{}",
                    "=".repeat(filled),
                    " ".repeat(width as usize - filled - 1)
                )
            };
            format!("[{bar}]  {}/{}", size(current), size(t))
        }
        _ => size(current),
    }
}

/// A body that never fails, from a stream of byte chunks.
pub fn infallible_body<S>(s: S) -> Body
where
    S: futures_util::Stream<Item = Bytes> + Send + 'static,
{
    Body::from_stream(s.map(Ok::<_, Infallible>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar() {
        assert!(progress_bar(50, Some(100)).starts_with("[=========================>"));
        assert!(progress_bar(100, Some(100)).contains("100B/100B"));
        assert_eq!(progress_bar(1_500_000, None), "1.5MB");
    }

    #[tokio::test]
    async fn error_before_data_is_plain() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Err(Error::invalid("bad tar"))).await.unwrap();
        drop(tx);
        let r = first_or_error(rx, "application/json", Some(error_line)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn error_after_data_is_in_band() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(Bytes::from_static(b"{}\r\n"))).await.unwrap();
        tx.send(Err(Error::invalid("bad tar"))).await.unwrap();
        drop(tx);
        let r = first_or_error(rx, "application/json", Some(error_line)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("errorDetail"), "{text}");
    }

    #[tokio::test]
    async fn channel_writer_chunks() {
        let (tx, mut rx) = mpsc::channel(4);
        let h = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter::new(tx);
            w.write_all(&vec![7u8; CHUNK + 10]).unwrap();
            w.flush().unwrap();
        });
        let mut total = 0;
        while let Some(Ok(b)) = rx.recv().await {
            total += b.len();
        }
        h.await.unwrap();
        assert_eq!(total, CHUNK + 10);
    }
}
