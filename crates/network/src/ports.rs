//! Published ports: Docker's `PortBindings` / `-P` turned into concrete host ports, each
//! reserved by a socket bound (not listening) on the host so nothing else can take it, and
//! answered through DNAT rules (no userland proxy).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// A requested publication, before host ports are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub port: u16,
    pub proto: String,
    pub host_ip: Option<Ipv4Addr>,
    /// (lo, hi) host port range; (0, 0) = any ephemeral port.
    pub host_ports: (u16, u16),
}

/// A publication as it is in force (persisted; NetworkSettings.Ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    pub port: u16,
    pub proto: String,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
}

fn parse_key(k: &str) -> Option<(u16, String)> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" && proto != "sctp" {
        return None;
    }
    Some((p.parse().ok()?, proto))
}

fn parse_range(s: &str) -> Result<(u16, u16)> {
    let s = s.trim();
    if s.is_empty() || s == "0" {
        return Ok((0, 0));
    }
    let bad = || Error::Invalid(format!("invalid port specification: \"{s}\""));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// From HostConfig.PortBindings, plus every Config.ExposedPorts key when PublishAllPorts.
pub fn requests(
    port_bindings: Option<&Value>,
    exposed: Option<&Value>,
    publish_all: bool,
) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    if let Some(Value::Object(pb)) = port_bindings {
        for (k, v) in pb {
            let (port, proto) = parse_key(k)
                .ok_or_else(|| Error::Invalid(format!("invalid port specification: \"{k}\"")))?;
            seen.insert((port, proto.clone()), ());
            let list = v.as_array().cloned().unwrap_or_default();
            let list = if list.is_empty() {
                vec![Value::Null]
            } else {
                list
            };
            for b in list {
                let hip = b.get("HostIp").and_then(Value::as_str).unwrap_or("");
                let host_ip = match hip {
                    "" | "0.0.0.0" => None,
                    // IPv4 only: an IPv6 binding has nothing to bind to
                    h if h.contains(':') => continue,
                    h => Some(
                        h.parse::<Ipv4Addr>()
                            .map_err(|_| Error::Invalid(format!("invalid IP address: {h}")))?,
                    ),
                };
                let hp = b.get("HostPort").and_then(Value::as_str).unwrap_or("");
                out.push(PortRequest {
                    port,
                    proto: proto.clone(),
                    host_ip,
                    host_ports: parse_range(hp)?,
                });
            }
        }
    }
    if publish_all && let Some(Value::Object(ex)) = exposed {
        for k in ex.keys() {
            if let Some((port, proto)) = parse_key(k)
                && !seen.contains_key(&(port, proto.clone()))
            {
                out.push(PortRequest {
                    port,
                    proto,
                    host_ip: None,
                    host_ports: (0, 0),
                });
            }
        }
    }
    Ok(out)
}

/// Bind (without listening) a socket on `ip:port`; port 0 lets the kernel pick.
pub fn reserve(proto: &str, ip: Option<Ipv4Addr>, port: u16) -> std::io::Result<(OwnedFd, u16)> {
    let ty = if proto == "udp" {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: plain socket calls on an fd we own; sockaddr_in is fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from(ip.unwrap_or(Ipv4Addr::UNSPECIFIED)).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        use std::os::fd::AsRawFd;
        if libc::bind(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            len,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let mut out: libc::sockaddr_in = std::mem::zeroed();
        let mut olen = len;
        if libc::getsockname(
            fd.as_raw_fd(),
            &mut out as *mut _ as *mut libc::sockaddr,
            &mut olen,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok((fd, u16::from_be(out.sin_port)))
    }
}

/// Docker's `NetworkSettings.Ports`: every exposed/published port, with its host bindings.
pub fn settings_json(maps: &[PortMap], exposed: Option<&Value>, bindings: Option<&Value>) -> Value {
    let mut out = serde_json::Map::new();
    let mut add_key = |k: &str| {
        if let Some((p, proto)) = parse_key(k) {
            out.entry(format!("{p}/{proto}")).or_insert(Value::Null);
        }
    };
    if let Some(Value::Object(e)) = exposed {
        e.keys().for_each(|k| add_key(k));
    }
    if let Some(Value::Object(b)) = bindings {
        b.keys().for_each(|k| add_key(k));
    }
    for m in maps {
        let k = format!("{}/{}", m.port, m.proto);
        let e = out.entry(k).or_insert(Value::Null);
        if !e.is_array() {
            *e = Value::Array(Vec::new());
        }
        if let Value::Array(a) = e {
            a.push(serde_json::json!({
                "HostIp": m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                "HostPort": m.host_port.to_string(),
            }));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_bindings_and_publish_all() {
        let pb = json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{"HostIp": "", "HostPort": ""}], "90/tcp": [{"HostIp": "::", "HostPort": "9"}]});
        let ex = json!({"80/tcp": {}, "443/tcp": {}});
        let r = requests(Some(&pb), Some(&ex), true).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r.contains(&PortRequest {
            port: 80,
            proto: "tcp".into(),
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_ports: (8080, 8080)
        }));
        assert!(r.contains(&PortRequest {
            port: 443,
            proto: "tcp".into(),
            host_ip: None,
            host_ports: (0, 0)
        }));
        assert!(requests(Some(&json!({"80/tcp": [{"HostPort": "x"}]})), None, false).is_err());
        assert_eq!(parse_range("8000-8010").unwrap(), (8000, 8010));
    }

    #[test]
    fn reserve_ephemeral_port() {
        let (_fd, p) = reserve("tcp", Some(Ipv4Addr::LOCALHOST), 0).unwrap();
        assert!(p > 0);
        // held: a second bind on the same port fails
        assert!(reserve("tcp", Some(Ipv4Addr::LOCALHOST), p).is_err());
    }
}
