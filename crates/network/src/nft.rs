//! NAT and filtering: one nftables table of our own (`ip <table>`), rendered whole from the
//! networks and published ports and swapped in one `nft -f` transaction, plus a `bridge
//! <table>` of the same name when a bridge has inter-container communication off (bridged
//! frames never reach the ip family's hooks unless br_netfilter is loaded, which would change
//! the whole host's behaviour). Nothing of ours lives outside those tables, so deleting them
//! removes every rule we made.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::ipam::{Cidr, Cidr6};
use crate::{Error, Result};

/// A bridge network as the rules see it.
#[derive(Debug, Clone)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Cidr,
    pub masquerade: bool,
    pub icc: bool,
    pub internal: bool,
    /// The IPv6 subnet of an `--ipv6` network (only icc=false has IPv6 rules: berth does not
    /// turn on the host's IPv6 forwarding, so nothing is routed between networks or out).
    pub subnet6: Option<Cidr6>,
}

/// One published port: `host_ip:host_port -> ip:port/proto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    pub proto: String,
    /// None: every local address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub ip: Ipv4Addr,
    pub port: u16,
}

fn q(s: &str) -> String {
    // interface names are [A-Za-z0-9_.-] (checked at network create); quote for nft
    format!("\"{s}\"")
}

/// The whole table as `nft -f` input: created if missing, emptied and refilled atomically.
pub fn render(table: &str, bridges: &[BridgeRules], dnats: &[Dnat]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{"
    );
    // published ports: DNAT for traffic from outside (prerouting) and from the host (output)
    s.push_str("  chain ports {\n");
    for d in dnats {
        let daddr = match d.host_ip {
            Some(ip) => format!("ip daddr {ip} "),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "    {daddr}{} dport {} dnat to {}:{}",
            d.proto, d.host_port, d.ip, d.port
        );
    }
    s.push_str("  }\n");
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump ports\n  }\n");
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }\n");
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    let subnets: Vec<String> = bridges
        .iter()
        .map(|b| b.subnet.network().to_string())
        .collect();
    for b in bridges {
        // published ports reached from the host's loopback or from containers (hairpin):
        // the reply must come back through us
        let mut from = subnets.clone();
        from.push("127.0.0.0/8".into());
        let _ = writeln!(
            s,
            "    oifname {} ct status dnat ip saddr {{ {} }} masquerade",
            q(&b.bridge),
            from.join(", ")
        );
        if b.masquerade && !b.internal {
            let _ = writeln!(
                s,
                "    ip saddr {} oifname != {} masquerade",
                b.subnet.network(),
                q(&b.bridge)
            );
        }
    }
    s.push_str("  }\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ct status dnat accept\n");
    for b in bridges {
        let br = q(&b.bridge);
        if b.internal {
            let _ = writeln!(s, "    iifname {br} oifname != {br} drop");
            let _ = writeln!(s, "    oifname {br} iifname != {br} drop");
        }
        let others: Vec<String> = bridges
            .iter()
            .filter(|o| o.bridge != b.bridge)
            .map(|o| q(&o.bridge))
            .collect();
        if !others.is_empty() {
            // isolation between networks, as Docker's DOCKER-ISOLATION chains
            let _ = writeln!(
                s,
                "    iifname {br} oifname {{ {} }} drop",
                others.join(", ")
            );
        }
    }
    s.push_str("  }\n}\n");
    // icc=false: IPv4 between two containers of the bridge's subnet is dropped where the
    // bridge forwards it (ARP still passes; traffic to the gateway, outbound and NAT'd traffic
    // is routed, not bridge-forwarded). By subnet: `meta ibrname` needs nft_meta_bridge, which
    // kernels do not always have.
    let _ = writeln!(s, "table bridge {table} {{}}\ndelete table bridge {table}");
    let closed: Vec<String> = bridges
        .iter()
        .filter(|b| !b.icc)
        .map(|b| {
            let n = b.subnet.network();
            let mut r = format!("    ip saddr {n} ip daddr {n} drop\n");
            if let Some(n6) = b.subnet6 {
                let n6 = n6.network();
                r.push_str(&format!("    ip6 saddr {n6} ip6 daddr {n6} drop\n"));
            }
            r
        })
        .collect();
    if !closed.is_empty() {
        let _ = writeln!(
            s,
            "table bridge {table} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{}  }}\n}}",
            closed.concat()
        );
    }
    s
}

/// Apply a rendered table.
pub fn apply(script: &str) -> Result<()> {
    run_nft(script)
}

/// Delete the table (daemon shutdown with nothing running).
pub fn delete(table: &str) -> Result<()> {
    run_nft(&delete_script(table))
}

pub fn delete_script(table: &str) -> String {
    format!(
        "table ip {table} {{}}\ndelete table ip {table}\ntable bridge {table} {{}}\ndelete table bridge {table}\n"
    )
}

fn run_nft(script: &str) -> Result<()> {
    let mut child = Command::new(nft_path())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Kernel(format!("running nft (install the nftables package): {e}")))?;
    if let Some(mut w) = child.stdin.take() {
        w.write_all(script.as_bytes())
            .map_err(|e| Error::Kernel(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Kernel(format!("running nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Kernel(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn nft_path() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nat_isolation_and_ports() {
        let b = |n: &str, s: &str, internal| BridgeRules {
            bridge: n.into(),
            subnet: s.parse().unwrap(),
            masquerade: true,
            icc: true,
            internal,
            subnet6: None,
        };
        let t = render(
            "berth",
            &[
                b("berth0", "172.17.0.1/16", false),
                b("br-x", "172.18.0.1/16", true),
            ],
            &[Dnat {
                proto: "tcp".into(),
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8080,
                ip: "172.17.0.2".parse().unwrap(),
                port: 80,
            }],
        );
        assert!(t.contains("ip daddr 127.0.0.1 tcp dport 8080 dnat to 172.17.0.2:80"));
        assert!(t.contains("ip saddr 172.17.0.0/16 oifname != \"berth0\" masquerade"));
        assert!(!t.contains("ip saddr 172.18.0.0/16 oifname"));
        assert!(t.contains("iifname \"br-x\" oifname != \"br-x\" drop"));
        assert!(t.contains("iifname \"berth0\" oifname { \"br-x\" } drop"));
        // every bridge talks within itself: no bridge-family rules
        assert!(!t.contains("table bridge berth {\n"));
        let mut closed = b("br-y", "172.19.0.1/16", false);
        closed.icc = false;
        closed.subnet6 = Some("fd99:1::/64".parse().unwrap());
        let t = render("berth", &[closed], &[]);
        assert!(t.contains("ip saddr 172.19.0.0/16 ip daddr 172.19.0.0/16 drop"));
        assert!(t.contains("ip6 saddr fd99:1::/64 ip6 daddr fd99:1::/64 drop"));
        assert!(t.contains("table bridge berth {\n"));
    }
}
