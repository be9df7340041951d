//! The networking flags of `run`/`create` as docker CLI 28 parses them: `-p` (go-connections'
//! ParsePortSpec), `--expose`, `--network` (repeatable, with the `name=..,alias=..` form),
//! `--network-alias`, `--ip`/`--ip6`, `--mac-address`, `--link`, `--dns*`, `--add-host`,
//! into the create body's PortBindings, ExposedPorts, NetworkMode and EndpointsConfig.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::opts::CreateOpts;

/// Go's strconv.ParseUint(s, 10, 16) with its error text.
fn parse_u16(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseUint: parsing \"{s}\": invalid syntax"
        ));
    }
    match s.parse::<u64>() {
        Ok(n) if n <= 65535 => Ok(n),
        _ => Err(format!(
            "strconv.ParseUint: parsing \"{s}\": value out of range"
        )),
    }
}

/// go-connections nat.ParsePortRange.
fn port_range(s: &str) -> Result<(u64, u64), String> {
    if s.is_empty() {
        return Err("empty string specified for ports".into());
    }
    let Some((a, b)) = s.split_once('-') else {
        let n = parse_u16(s)?;
        return Ok((n, n));
    };
    // Go splits on every '-' and reads the first two parts.
    let b = b.split('-').next().unwrap_or("");
    let (start, end) = (parse_u16(a)?, parse_u16(b)?);
    if end < start {
        return Err(format!("invalid range specified for port: {s}"));
    }
    Ok((start, end))
}

/// nat.SplitProtoPort: "80/udp" -> ("udp", "80"); no protocol is tcp.
fn split_proto_port(raw: &str) -> (String, String) {
    let parts: Vec<&str> = raw.split('/').collect();
    if raw.is_empty() || parts[0].is_empty() {
        return (String::new(), String::new());
    }
    match parts.as_slice() {
        [p] => ("tcp".into(), (*p).to_string()),
        [p, "", ..] => ("tcp".into(), (*p).to_string()),
        [p, proto, ..] => ((*proto).to_string(), (*p).to_string()),
        [] => (String::new(), String::new()),
    }
}

/// nat.ParsePortSpec: "[ip:][hostPort:]containerPort[/proto]" -> ("80/tcp", binding) pairs.
pub fn parse_publish(raw: &str) -> Result<Vec<(String, Value)>, String> {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let (mut ip, host, cport) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        3 => (parts[0].to_string(), parts[1], parts[2]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (proto, cport) = split_proto_port(cport);
    if ip.starts_with('[') {
        match ip.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(inner) if !inner.contains(['[', ']']) => ip = inner.to_string(),
            _ => {
                return Err(format!(
                    "invalid IP address {ip}: address {ip}:: missing port in address"
                ));
            }
        }
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if cport.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let (start, end) = port_range(&cport).map_err(|_| format!("invalid containerPort: {cport}"))?;
    let (hstart, hend) = if host.is_empty() {
        (0, 0)
    } else {
        port_range(host).map_err(|_| format!("invalid hostPort: {host}"))?
    };
    if !host.is_empty() && end - start != hend - hstart && end != start {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {cport} and {host}"
        ));
    }
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let mut out = Vec::new();
    for i in 0..=(end - start) {
        let mut hp = if host.is_empty() {
            String::new()
        } else {
            (hstart + i).to_string()
        };
        // A single container port with a host range: the daemon picks within the range.
        if start == end && hstart != hend {
            hp = format!("{hp}-{hend}");
        }
        out.push((
            format!("{}/{proto}", start + i),
            json!({"HostIp": ip, "HostPort": hp}),
        ));
    }
    Ok(out)
}

/// `--expose 80`, `--expose 4000-4001/udp` -> "80/tcp", ...
pub fn parse_expose(e: &str) -> Result<Vec<String>, String> {
    if e.contains(':') {
        return Err(format!("invalid port format for --expose: {e}"));
    }
    let (proto, port) = split_proto_port(e);
    let (start, end) = port_range(&port)
        .map_err(|err| format!("invalid range format for --expose: {e}, error: {err}"))?;
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Go's net.ParseMAC: 6, 8 or 20 bytes, ':' or '-' separated pairs, or '.' separated quads.
fn valid_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let ok_len = |bytes: usize| matches!(bytes, 6 | 8 | 20);
    if s.contains('.') {
        let parts: Vec<&str> = s.split('.').collect();
        return ok_len(parts.len() * 2) && parts.iter().all(|p| hex(p, 4));
    }
    for sep in [':', '-'] {
        if s.contains(sep) {
            let parts: Vec<&str> = s.split(sep).collect();
            return ok_len(parts.len()) && parts.iter().all(|p| hex(p, 2));
        }
    }
    false
}

/// Not one of docker's built-in network modes.
pub fn user_defined(mode: &str) -> bool {
    !matches!(mode, "default" | "bridge" | "host" | "none") && !mode.starts_with("container:")
}

/// One `--network` value: a name, or docker's long form "name=n1,alias=a,ip=..".
#[derive(Default, Debug, Clone)]
struct Attach {
    target: String,
    aliases: Vec<String>,
    links: Vec<String>,
    ipv4: String,
    ipv6: String,
    mac: String,
    link_local: Vec<String>,
    driver_opts: Map<String, Value>,
    gw_priority: i64,
}

/// docker's regexp `\w+=\w+(,\w+=\w+)*`, unanchored: any "word=word" marks the long form.
fn long_syntax(v: &str) -> bool {
    let b = v.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (1..b.len().saturating_sub(1)).any(|i| b[i] == b'=' && word(b[i - 1]) && word(b[i + 1]))
}

fn parse_network(value: &str) -> Result<Attach, String> {
    if !long_syntax(value) {
        return Ok(Attach {
            target: value.to_string(),
            ..Default::default()
        });
    }
    let mut a = Attach::default();
    for field in value.split(',') {
        // docker lower-cases the whole field (values too).
        let lower = field.to_lowercase();
        let Some((k, v)) = lower.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("invalid field {field}"));
        };
        let (k, v) = (k.trim(), v.trim().to_string());
        match k {
            "name" => a.target = v,
            "alias" => a.aliases.push(v),
            "ip" => a.ipv4 = v,
            "ip6" => a.ipv6 = v,
            "mac-address" => a.mac = v,
            "link-local-ip" => a.link_local.push(v),
            "driver-opt" => {
                let (dk, dv) = v
                    .split_once('=')
                    .ok_or_else(|| "invalid key value pair format in driver options".to_string())?;
                a.driver_opts
                    .insert(dk.trim().to_string(), dv.trim().into());
            }
            "gw-priority" => {
                a.gw_priority = v
                    .parse()
                    .map_err(|_| format!("strconv.Atoi: parsing \"{v}\": invalid syntax"))?;
            }
            _ => return Err(format!("invalid field key {k}")),
        }
    }
    if a.target.is_empty() {
        return Err("network name not specified".into());
    }
    Ok(a)
}

/// docker's applyContainerOptions: the legacy flags go to the first network.
fn apply_legacy(n: &mut Attach, o: &CreateOpts) -> Result<(), String> {
    let conflict = |what: &str| Err(format!("conflicting options: cannot specify both {what}"));
    if !n.aliases.is_empty() && !o.network_alias.is_empty() {
        return conflict("--network-alias and per-network alias");
    }
    if !n.ipv4.is_empty() && o.ip.as_deref().is_some_and(|s| !s.is_empty()) {
        return conflict("--ip and per-network IPv4 address");
    }
    if !n.ipv6.is_empty() && o.ip6.as_deref().is_some_and(|s| !s.is_empty()) {
        return conflict("--ip6 and per-network IPv6 address");
    }
    if !n.mac.is_empty() && o.mac_address.as_deref().is_some_and(|s| !s.is_empty()) {
        return conflict("--mac-address and per-network MAC address");
    }
    if !n.link_local.is_empty() && !o.link_local_ip.is_empty() {
        return conflict("--link-local-ip and per-network link-local IP addresses");
    }
    if !o.network_alias.is_empty() {
        n.aliases = o.network_alias.clone();
    }
    // On a user network --link is an endpoint alias; on the default bridge a legacy link.
    if user_defined(&n.target) && !o.link.is_empty() {
        n.links = o.link.clone();
    }
    if let Some(ip) = o.ip.as_ref().filter(|s| !s.is_empty()) {
        n.ipv4 = ip.clone();
    }
    if let Some(ip) = o.ip6.as_ref().filter(|s| !s.is_empty()) {
        n.ipv6 = ip.clone();
    }
    if let Some(m) = o.mac_address.as_ref().filter(|s| !s.is_empty()) {
        n.mac = m.clone();
    }
    if !o.link_local_ip.is_empty() {
        n.link_local = o.link_local_ip.clone();
    }
    Ok(())
}

/// docker's parseNetworkAttachmentOpt: the endpoint settings, or None when all are empty.
fn endpoint(n: &Attach) -> Result<Value, String> {
    if n.target.trim().is_empty() {
        return Err("no name set for network".into());
    }
    if !user_defined(&n.target) {
        if !n.aliases.is_empty() {
            return Err(
                "network-scoped aliases are only supported for user-defined networks".into(),
            );
        }
        if !n.links.is_empty() {
            return Err("links are only supported for user-defined networks".into());
        }
    }
    let ipam = if n.ipv4.is_empty() && n.ipv6.is_empty() && n.link_local.is_empty() {
        Value::Null
    } else {
        let mut m = Map::new();
        if !n.ipv4.is_empty() {
            m.insert("IPv4Address".into(), n.ipv4.clone().into());
        }
        if !n.ipv6.is_empty() {
            m.insert("IPv6Address".into(), n.ipv6.clone().into());
        }
        if !n.link_local.is_empty() {
            m.insert("LinkLocalIPs".into(), n.link_local.clone().into());
        }
        Value::Object(m)
    };
    if !n.mac.is_empty() && !valid_mac(n.mac.trim()) {
        return Err(format!("{} is not a valid mac address", n.mac));
    }
    let list = |v: &Vec<String>| {
        if v.is_empty() {
            Value::Null
        } else {
            v.clone().into()
        }
    };
    Ok(json!({
        "IPAMConfig": ipam,
        "Links": list(&n.links),
        "Aliases": list(&n.aliases),
        "MacAddress": n.mac,
        "DriverOpts": if n.driver_opts.is_empty() { Value::Null } else { n.driver_opts.clone().into() },
        "GwPriority": n.gw_priority,
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": null,
    }))
}

/// An endpoint with nothing set (docker then leaves a lone network's endpoint out).
fn is_empty_endpoint(ep: &Value) -> bool {
    ep["IPAMConfig"].is_null()
        && ep["Links"].is_null()
        && ep["Aliases"].is_null()
        && ep["MacAddress"] == ""
        && ep["DriverOpts"].is_null()
        && ep["GwPriority"] == 0
}

/// docker's parseNetworkOpts: HostConfig.NetworkMode and NetworkingConfig.EndpointsConfig.
/// Errors are docker's messages (reported as run errors, exit 125).
pub fn networks(o: &CreateOpts) -> Result<(String, Map<String, Value>), String> {
    let mut endpoints = Map::new();
    let mut attaches = Vec::new();
    for v in &o.network {
        attaches.push(parse_network(v)?);
    }
    if attaches.is_empty() {
        let mut n = Attach {
            target: "default".into(),
            ..Default::default()
        };
        apply_legacy(&mut n, o)?;
        endpoints.insert("default".into(), endpoint(&n)?);
        return Ok(("default".into(), endpoints));
    }
    let (mut user, mut builtin) = (false, false);
    let count = attaches.len();
    for (i, mut n) in attaches.clone().into_iter().enumerate() {
        if user_defined(&n.target) {
            user = true;
        } else {
            builtin = true;
        }
        if i == 0 {
            apply_legacy(&mut n, o)?;
        }
        let ep = endpoint(&n)?;
        if endpoints.contains_key(&n.target) {
            return Err(format!(
                "network \"{}\" is specified multiple times",
                n.target
            ));
        }
        if i == 0 && count == 1 && is_empty_endpoint(&ep) {
            continue;
        }
        endpoints.insert(n.target.clone(), ep);
    }
    if user && builtin {
        return Err(
            "conflicting options: cannot attach both user-defined and non-user-defined network-modes"
                .into(),
        );
    }
    Ok((attaches[0].target.clone(), endpoints))
}

/// Flag validators docker runs while parsing (errors are flag errors: exit 125 with usage):
/// (flag, value, why). Returns the values as docker passes them on.
pub struct Checked {
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub extra_hosts: Vec<String>,
}

/// Go's net.IP String() of a parsed address (canonical form).
fn canonical_ip(s: &str) -> Option<String> {
    s.trim().parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

fn valid_domain(v: &str) -> Option<String> {
    if !v.bytes().any(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    // docker's domainRegexp: labels of [a-zA-Z0-9-] not starting/ending with '-', dot
    // separated, optional trailing dot and whitespace; the match must stay under 255.
    let body = v.trim_end();
    let body = body.strip_suffix('.').unwrap_or(body);
    let ok = !body.is_empty()
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    (ok && body.len() < 255).then(|| body.to_string())
}

pub fn check_flags(o: &CreateOpts) -> Result<Checked, (&'static str, String, String)> {
    let mut dns = Vec::new();
    for d in &o.dns {
        match canonical_ip(d) {
            Some(ip) => dns.push(ip),
            None => {
                return Err((
                    "--dns",
                    d.clone(),
                    format!("IP address is not correctly formatted: {d}"),
                ));
            }
        }
    }
    let mut dns_search = Vec::new();
    for s in &o.dns_search {
        let t = s.trim_matches(' ');
        if t == "." {
            dns_search.push(t.to_string());
            continue;
        }
        match valid_domain(t) {
            Some(d) => dns_search.push(d),
            None => {
                return Err((
                    "--dns-search",
                    s.clone(),
                    format!("{t} is not a valid domain"),
                ));
            }
        }
    }
    let mut extra_hosts = Vec::new();
    for h in &o.add_host {
        let split = h.split_once('=').or_else(|| h.split_once(':'));
        let Some((k, v)) = split.filter(|(k, _)| !k.is_empty() && !k.contains(':')) else {
            return Err((
                "--add-host",
                h.clone(),
                format!("bad format for add-host: \"{h}\""),
            ));
        };
        if v != "host-gateway" {
            let inner = if v.len() > 2 && v.starts_with('[') && v.ends_with(']') {
                &v[1..v.len() - 1]
            } else {
                v
            };
            if canonical_ip(inner).is_none() {
                return Err((
                    "--add-host",
                    h.clone(),
                    format!("invalid IP address in add-host: \"{inner}\""),
                ));
            }
        }
        extra_hosts.push(format!("{k}:{v}"));
    }
    for l in &o.link {
        let parts: Vec<&str> = l.split(':').collect();
        if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(("--link", l.clone(), format!("bad format for links: {l}")));
        }
    }
    Ok(Checked {
        dns,
        dns_search,
        extra_hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_like_go_connections() {
        let p = parse_publish("127.0.0.1:9000-9002:7000-7002/udp").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].0, "7002/udp");
        assert_eq!(p[2].1, json!({"HostIp": "127.0.0.1", "HostPort": "9002"}));
        let p = parse_publish("9000-9001:80").unwrap();
        assert_eq!(p[0].1["HostPort"], "9000-9001");
        let p = parse_publish("[::1]:8443:443").unwrap();
        assert_eq!(p[0].1["HostIp"], "::1");
        assert_eq!(
            parse_publish("bad:x").unwrap_err(),
            "invalid containerPort: x"
        );
        assert_eq!(
            parse_publish("80:80:80:80").unwrap_err(),
            "invalid IP address: 80:80"
        );
        assert_eq!(
            parse_publish("70000").unwrap_err(),
            "invalid containerPort: 70000"
        );
        assert_eq!(parse_publish("80/foo").unwrap_err(), "invalid proto: foo");
        assert_eq!(
            parse_publish("1-2:3-5").unwrap_err(),
            "invalid ranges specified for container and host Ports: 3-5 and 1-2"
        );
        assert_eq!(
            parse_expose("4000-4001/udp").unwrap(),
            ["4000/udp", "4001/udp"]
        );
        assert_eq!(
            parse_expose("bad").unwrap_err(),
            "invalid range format for --expose: bad, error: strconv.ParseUint: parsing \"bad\": invalid syntax"
        );
    }

    #[test]
    fn network_modes_and_endpoints() {
        let o = |nets: &[&str]| CreateOpts {
            network: nets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let (mode, eps) = networks(&o(&[])).unwrap();
        assert_eq!(mode, "default");
        assert!(eps.contains_key("default"));
        let (mode, eps) = networks(&o(&["mynet"])).unwrap();
        assert_eq!(mode, "mynet");
        assert!(eps.is_empty());
        let (mode, eps) = networks(&o(&["name=n1,alias=x,ip=10.0.0.5", "n2"])).unwrap();
        assert_eq!(mode, "n1");
        assert_eq!(eps["n1"]["Aliases"], json!(["x"]));
        assert_eq!(eps["n1"]["IPAMConfig"]["IPv4Address"], "10.0.0.5");
        assert!(eps["n2"]["Aliases"].is_null());
        assert!(
            networks(&o(&["n1", "host"]))
                .unwrap_err()
                .contains("cannot attach both")
        );
        assert!(
            networks(&o(&["n1", "n1"]))
                .unwrap_err()
                .contains("specified multiple times")
        );
        let mut with_alias = o(&[]);
        with_alias.network_alias = vec!["a".into()];
        assert_eq!(
            networks(&with_alias).unwrap_err(),
            "network-scoped aliases are only supported for user-defined networks"
        );
        assert!(valid_mac("02:42:ac:11:00:02"));
        assert!(!valid_mac("zz"));
    }
}
