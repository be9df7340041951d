//! The two tasks of one server: a UDP loop and a TCP accept loop, each owning the work it
//! started (in a JoinSet), so aborting them stops everything and closes every socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::timeout;

use crate::answer::{self, Decision};
use crate::{Resolve, forward};

/// Questions being forwarded at once per server; more are dropped (the client retries), so a
/// flood costs bounded memory.
const MAX_INFLIGHT: usize = 256;
/// TCP connections at once per server.
const MAX_CONNS: usize = 32;
/// A TCP client that says nothing for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A running server; dropping it stops the server and closes its sockets.
pub struct Handle {
    tasks: [AbortHandle; 2],
}

impl Drop for Handle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("berth_dns::Handle").finish_non_exhaustive()
    }
}

struct Shared {
    resolver: Arc<dyn Resolve>,
    upstream: Vec<SocketAddr>,
    /// Round-robin position, advanced on every answered name.
    turn: AtomicUsize,
}

pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    resolver: Arc<dyn Resolve>,
    upstream: Vec<SocketAddr>,
) -> std::io::Result<Handle> {
    // from_std registers with the reactor of the current runtime.
    let _guard = runtime.enter();
    let udp = UdpSocket::from_std(udp)?;
    let tcp = TcpListener::from_std(tcp)?;
    let shared = Arc::new(Shared {
        resolver,
        upstream,
        turn: AtomicUsize::new(0),
    });
    let u = runtime.spawn(serve_udp(udp, shared.clone()));
    let t = runtime.spawn(serve_tcp(tcp, shared));
    Ok(Handle {
        tasks: [u.abort_handle(), t.abort_handle()],
    })
}

async fn serve_udp(sock: UdpSocket, shared: Arc<Shared>) {
    let sock = Arc::new(sock);
    let mut inflight = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("dns udp: {e}");
                        // Never spin on a persistent error.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let packet = &buf[..n];
                match answer::decide(packet, &*shared.resolver, &shared.turn, true) {
                    Decision::Reply(bytes) => {
                        let _ = sock.send_to(&bytes, peer).await;
                    }
                    Decision::Drop => {}
                    Decision::Forward(query) => {
                        if inflight.len() >= MAX_INFLIGHT {
                            continue;
                        }
                        let raw = packet.to_vec();
                        let (sock, shared) = (sock.clone(), shared.clone());
                        inflight.spawn(async move {
                            let answer = forward::forward(&raw, &shared.upstream, false).await;
                            let bytes = match answer {
                                Some(a) if a.len() <= answer::udp_limit(&query) => Some(a),
                                Some(_) => answer::truncated(&query),
                                None => servfail(&query),
                            };
                            if let Some(bytes) = bytes {
                                let _ = sock.send_to(&bytes, peer).await;
                            }
                        });
                    }
                }
            }
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let stream = match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!("dns tcp accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if conns.len() >= MAX_CONNS {
                    continue; // dropped: closed at once
                }
                conns.spawn(serve_conn(stream, shared.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One TCP client: length-prefixed questions, answered in order, until it goes quiet.
async fn serve_conn(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut packet)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let bytes = match answer::decide(&packet, &*shared.resolver, &shared.turn, false) {
            Decision::Reply(bytes) => bytes,
            Decision::Drop => continue,
            Decision::Forward(query) => {
                match forward::forward(&packet, &shared.upstream, true).await {
                    Some(a) => a,
                    None => match servfail(&query) {
                        Some(b) => b,
                        None => return,
                    },
                }
            }
        };
        let Ok(n) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&bytes);
        if !matches!(timeout(TCP_IDLE, stream.write_all(&out)).await, Ok(Ok(_))) {
            return;
        }
    }
}

fn servfail(query: &Message) -> Option<Vec<u8>> {
    answer::encode(&answer::error(query, ResponseCode::ServFail))
}
