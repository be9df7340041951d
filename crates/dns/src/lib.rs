//! The embedded DNS server of user-defined networks: what a container finds at `127.0.0.11:53`,
//! as with Docker.
//!
//! Owns: the UDP and TCP sockets on 127.0.0.11:53 inside one container's network namespace, the
//! answers for the names the daemon knows (container names, `--network-alias`, several
//! addresses rotated per query), PTR for those addresses, and forwarding of every other
//! question to the host's resolvers, queried from the daemon's own namespace (so a host
//! resolver on 127.0.0.53 works) with a UDP → TCP fallback on truncation; and the
//! resolv.conf a container gets ([`container_resolv_conf`]), as Docker writes it.
//!
//! Must not: know about networks or containers (the [`Resolve`] given by the caller decides which
//! names are ours), leak a name of ours upstream, panic or stall on a malformed packet, or cost a
//! thread per container: each server is two tasks on the caller's tokio runtime and two sockets.

mod answer;
mod forward;
mod netns;
mod resolv;
mod serve;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use resolv::{ContainerResolv, container_resolv_conf};
pub use serve::Handle;

/// The address every container's resolv.conf points at, as with Docker.
pub const DNS_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 11)), 53);

/// The names of one container's view: the daemon implements it from its network state.
pub trait Resolve: Send + Sync + 'static {
    /// Addresses of `name` (as asked, without the trailing dot); empty means "not ours" and
    /// the question is forwarded upstream.
    fn lookup(&self, name: &str) -> Vec<IpAddr>;

    /// The name of one of our addresses (for PTR), `None` when it is not ours (forwarded).
    fn reverse(&self, _addr: IpAddr) -> Option<String> {
        None
    }
}

/// The embedded DNS server of one container.
pub struct Server;

impl Server {
    /// Binds UDP and TCP on 127.0.0.11:53 inside the network namespace `netns` (e.g. an open
    /// `/proc/<pid>/ns/net`; `lo` is brought up there if it is down) and serves them on the
    /// current tokio runtime until the returned [`Handle`] is dropped. `upstream` are the
    /// resolvers for names that are not ours (see [`host_upstreams`]); none → SERVFAIL.
    pub fn start(
        netns: &std::fs::File,
        resolver: Arc<dyn Resolve>,
        upstream: Vec<SocketAddr>,
    ) -> std::io::Result<Handle> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| std::io::Error::other(format!("berth-dns needs a tokio runtime: {e}")))?;
        let (udp, tcp) = netns::bind_in(netns, DNS_ADDR)?;
        serve::spawn(&runtime, udp, tcp, resolver, upstream)
    }
}

/// The nameservers of a resolv.conf (the host's), on port 53, in order, without duplicates.
/// Loopback resolvers are kept: the server queries them from the daemon's namespace. Returns
/// nothing when there is no `nameserver` line; choosing a fallback is the caller's business.
pub fn host_upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in resolv_conf.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let Some(sa) = parse_nameserver(addr) else {
            continue;
        };
        if !out.contains(&sa) {
            out.push(sa);
        }
    }
    out
}

fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    let (ip, zone) = match s.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (s, None),
    };
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(SocketAddr::new(IpAddr::V4(v4), 53)),
        IpAddr::V6(v6) => {
            let scope = match zone {
                None => 0,
                Some(z) => match z.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => netns::if_index(z)?,
                },
            };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                v6, 53, 0, scope,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolv_conf() {
        let conf = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver  10.0.0.2 # office\n\
                    nameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%1\nnameserver bogus\n\
                    ;nameserver 9.9.9.9\nnameserver\noptions edns0\n";
        let got = host_upstreams(conf);
        let want: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().unwrap(),
            "10.0.0.2:53".parse().unwrap(),
            "[::1]:53".parse().unwrap(),
            "[fe80::1%1]:53".parse().unwrap(),
        ];
        assert_eq!(got, want);
        assert!(host_upstreams("").is_empty());
    }
}
