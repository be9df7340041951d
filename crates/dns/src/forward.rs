//! Forwarding to the host's resolvers. Sockets are made here, on the daemon's runtime threads,
//! so they live in the daemon's namespace: a resolver on the host's loopback is reachable.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// Per upstream; a container's resolver (glibc: 5 s) must still get our SERVFAIL in time.
const UDP_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_TIMEOUT: Duration = Duration::from_secs(4);

const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// Asks each upstream in turn (over TCP if the client came over TCP, else UDP with a TCP retry
/// on truncation) and returns the first good answer with the client's id, or the last
/// SERVFAIL/REFUSED, or `None` when nobody answered.
pub(crate) async fn forward(query: &[u8], upstream: &[SocketAddr], tcp: bool) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let client_id = [query[0], query[1]];
    let mut last_failure = None;
    for &up in upstream {
        // A fresh random id and a fresh socket (random port) per question: spoofed answers must
        // guess both, and a stray late answer to an earlier question is never taken.
        let id: u16 = rand::random();
        let mut packet = query.to_vec();
        packet[..2].copy_from_slice(&id.to_be_bytes());

        let answer = if tcp {
            with_timeout(TCP_TIMEOUT, tcp_once(&packet, up, id)).await
        } else {
            match with_timeout(UDP_TIMEOUT, udp_once(&packet, up, id)).await {
                Some(a) if a[2] & 0x02 != 0 => {
                    // Truncated: the whole answer over TCP, or the truncated one if TCP fails
                    // (the client can still retry over TCP itself).
                    Some(
                        with_timeout(TCP_TIMEOUT, tcp_once(&packet, up, id))
                            .await
                            .unwrap_or(a),
                    )
                }
                other => other,
            }
        };
        let Some(mut answer) = answer else { continue };
        answer[..2].copy_from_slice(&client_id);
        let rcode = answer[3] & 0x0f;
        if rcode == RCODE_SERVFAIL || rcode == RCODE_REFUSED {
            last_failure = Some(answer);
            continue;
        }
        return Some(answer);
    }
    last_failure
}

async fn with_timeout(
    limit: Duration,
    f: impl Future<Output = io::Result<Vec<u8>>>,
) -> Option<Vec<u8>> {
    match timeout(limit, f).await {
        Ok(Ok(a)) => Some(a),
        Ok(Err(e)) => {
            tracing::debug!("dns upstream: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("dns upstream: timed out");
            None
        }
    }
}

/// An answer to our question: at least a header, QR set, our id.
fn is_answer(buf: &[u8], id: u16) -> bool {
    buf.len() >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id && buf[2] & 0x80 != 0
}

async fn udp_once(packet: &[u8], up: SocketAddr, id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone but the upstream.
    sock.connect(up).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        if is_answer(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_once(packet: &[u8], up: SocketAddr, id: u16) -> io::Result<Vec<u8>> {
    let len = u16::try_from(packet.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut stream = TcpStream::connect(up).await?;
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    stream.write_all(&out).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    if !is_answer(&buf, id) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "answer does not match the question",
        ));
    }
    Ok(buf)
}
