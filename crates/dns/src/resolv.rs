//! The /etc/resolv.conf a container gets, as Docker writes it (20.10 layout: search,
//! nameserver, options), and the upstreams its embedded server forwards to.

use std::net::SocketAddr;

/// What a container's resolv.conf holds, and where its embedded server forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerResolv {
    /// The file's content.
    pub content: String,
    /// For [`crate::Server::start`]: the nameservers (the host's or `--dns`), loopback ones
    /// included, since the server queries them from the daemon's namespace. Empty when the
    /// container has no embedded server.
    pub upstream: Vec<SocketAddr>,
}

/// Words after the last `key` line ("search", "options"), as Docker's resolvconf reads them.
fn last_line_words(conf: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in conf.lines() {
        let mut w = line.split_whitespace();
        if w.next() == Some(key) {
            out = w.map(str::to_string).collect();
        }
    }
    out
}

fn nameservers(conf: &str) -> Vec<String> {
    conf.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next().map(str::to_string))?
        })
        .collect()
}

fn is_loopback_ns(ns: &str) -> bool {
    ns == "::1"
        || ns
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 127)
}

/// Docker's resolvconf.Build: search, nameserver and options lines.
fn build(servers: &[String], search: &[String], options: &[String]) -> String {
    let mut s = String::new();
    let joined = search.join(" ");
    if !search.is_empty() && joined.trim() != "." {
        s.push_str(&format!("search {joined}\n"));
    }
    for ns in servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    let opts = options.join(" ");
    if !opts.trim().is_empty() {
        s.push_str(&format!("options {opts}\n"));
    }
    s
}

/// The container's resolv.conf from the host's (`host`) and the `--dns`, `--dns-search`,
/// `--dns-option` values. `embedded`: the container is on a user-defined network and gets
/// `nameserver 127.0.0.11` (plus `ndots:0` unless it asked for ndots itself); otherwise
/// (default bridge) it gets the nameservers themselves, loopback ones left out (unreachable
/// from its namespace), Google's when none remain, as Docker does.
pub fn container_resolv_conf(
    host: &str,
    dns: &[String],
    dns_search: &[String],
    dns_options: &[String],
    embedded: bool,
) -> ContainerResolv {
    let flags = !dns.is_empty() || !dns_search.is_empty() || !dns_options.is_empty();
    let servers = if dns.is_empty() {
        nameservers(host)
    } else {
        dns.to_vec()
    };
    let search = if dns_search.is_empty() {
        last_line_words(host, "search")
    } else {
        dns_search.to_vec()
    };
    let mut options = if dns_options.is_empty() {
        last_line_words(host, "options")
    } else {
        dns_options.to_vec()
    };
    if embedded {
        let upstream = crate::host_upstreams(
            &servers
                .iter()
                .map(|s| format!("nameserver {s}\n"))
                .collect::<String>(),
        );
        let user_ndots = options.iter().any(|o| {
            o.strip_prefix("ndots:")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n > 0)
        });
        if !user_ndots {
            // Short names go to the embedded server first.
            options.push("ndots:0".into());
        }
        let content = build(&["127.0.0.11".to_string()], &search, &options);
        return ContainerResolv { content, upstream };
    }
    let content = if flags {
        build(&servers, &search, &options)
    } else {
        // The host's file, its loopback nameservers dropped.
        let mut kept = String::new();
        for line in host.lines() {
            let mut w = line.split_whitespace();
            let loopback = w.next() == Some("nameserver")
                && w.next().is_some_and(is_loopback_ns)
                && w.next().is_none();
            if !loopback {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        if nameservers(&kept).is_empty() {
            kept.push_str("\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        }
        kept
    };
    ContainerResolv {
        content,
        upstream: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn user_network_gets_the_embedded_server() {
        // What docker 20.10 wrote on this host (nameserver 10.255.255.53).
        let host = "nameserver 10.255.255.53\n";
        let r = container_resolv_conf(host, &[], &[], &[], true);
        assert_eq!(r.content, "nameserver 127.0.0.11\noptions ndots:0\n");
        assert_eq!(r.upstream, vec!["10.255.255.53:53".parse().unwrap()]);
        let r = container_resolv_conf(
            host,
            &v(&["9.9.9.9"]),
            &v(&["a.com"]),
            &v(&["timeout:2"]),
            true,
        );
        assert_eq!(
            r.content,
            "search a.com\nnameserver 127.0.0.11\noptions timeout:2 ndots:0\n"
        );
        assert_eq!(r.upstream, vec!["9.9.9.9:53".parse().unwrap()]);
        // A loopback host resolver stays an upstream (queried from the daemon's namespace).
        let r = container_resolv_conf(
            "nameserver 127.0.0.53\nsearch lan\noptions ndots:2 edns0\n",
            &[],
            &[],
            &[],
            true,
        );
        assert_eq!(
            r.content,
            "search lan\nnameserver 127.0.0.11\noptions ndots:2 edns0\n"
        );
        assert_eq!(r.upstream, vec!["127.0.0.53:53".parse().unwrap()]);
    }

    #[test]
    fn default_bridge_gets_the_host_servers() {
        let host = "# host\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\n";
        let r = container_resolv_conf(host, &[], &[], &[], false);
        assert_eq!(r.content, "# host\nnameserver 10.0.0.2\nsearch lan\n");
        assert!(r.upstream.is_empty());
        let r = container_resolv_conf("nameserver 127.0.0.53\n", &[], &[], &[], false);
        assert_eq!(r.content, "\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        let r = container_resolv_conf(host, &v(&["1.1.1.1"]), &v(&["."]), &[], false);
        assert_eq!(r.content, "nameserver 1.1.1.1\n");
    }
}
