//! Taking a connection away from hyper for dockerd's legacy (non-upgrade) hijack: the server
//! wraps every connection's IO so that a handler can claim the raw stream. Once claimed, hyper's
//! reads stay pending and its writes are swallowed (the handler writes its own response head,
//! as Go's `http.Hijacker` users do); when the handler drops the stream, hyper sees EOF and
//! finishes the connection.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::hijack::HijackedIo;

struct Shared<IO> {
    io: IO,
    hijacked: bool,
    /// The hijacker is done: hyper reads EOF.
    closed: bool,
    hyper_waker: Option<Waker>,
}

fn lock<IO>(s: &Mutex<Shared<IO>>) -> MutexGuard<'_, Shared<IO>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The side of the connection hyper serves.
pub struct HyperSide<IO> {
    s: Arc<Mutex<Shared<IO>>>,
}

/// The claimed raw stream.
struct Raw<IO> {
    s: Arc<Mutex<Shared<IO>>>,
}

/// Put into every request's extensions by the server: `take()` claims the connection.
#[derive(Clone)]
pub struct RawConn(Arc<dyn Fn() -> Option<HijackedIo> + Send + Sync>);

impl RawConn {
    /// Claim the connection (once). From now on hyper's output is discarded.
    pub fn take(&self) -> Option<HijackedIo> {
        (self.0)()
    }
}

/// Wrap `io`: hyper gets the first value, requests get the second as an extension.
pub fn wrap<IO>(io: IO) -> (HyperSide<IO>, RawConn)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let s = Arc::new(Mutex::new(Shared {
        io,
        hijacked: false,
        closed: false,
        hyper_waker: None,
    }));
    let s2 = s.clone();
    let take = move || -> Option<HijackedIo> {
        let mut g = lock(&s2);
        if g.hijacked {
            return None;
        }
        g.hijacked = true;
        drop(g);
        Some(Box::new(Raw { s: s2.clone() }) as HijackedIo)
    };
    (HyperSide { s }, RawConn(Arc::new(take)))
}

impl<IO: AsyncRead + Unpin> AsyncRead for HyperSide<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut g = lock(&self.s);
        if g.closed {
            return Poll::Ready(Ok(()));
        }
        // Remember who to wake when the hijacker lets go (it may have stolen the socket's
        // read registration from hyper).
        if !g
            .hyper_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            g.hyper_waker = Some(cx.waker().clone());
        }
        if g.hijacked {
            return Poll::Pending;
        }
        Pin::new(&mut g.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HyperSide<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut g = lock(&self.s);
        if g.hijacked {
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut g.io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut g = lock(&self.s);
        if g.hijacked {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut g.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut g = lock(&self.s);
        if g.hijacked {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut g.io).poll_shutdown(cx)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Raw<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.s).io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Raw<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.s).io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.s).io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.s).io).poll_shutdown(cx)
    }
}

impl<IO> Drop for Raw<IO> {
    fn drop(&mut self) {
        let mut g = lock(&self.s);
        g.closed = true;
        if let Some(w) = g.hyper_waker.take() {
            w.wake();
        }
    }
}
