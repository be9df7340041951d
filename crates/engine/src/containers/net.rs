//! The container's networks. With `--network none` the container's own namespace has only
//! `lo`, which the shim brings up (libcontainer creates the namespace with `lo` down).

// ------------------------------------------------------------------ the container's networks

use std::net::Ipv4Addr;
use std::path::Path;

use berth_network::{Networks, SandboxInfo, UpRequest};
use berth_runtime::NetworkMode;
use serde_json::Value;

use super::record::Record;
use crate::error::{Error, Result};

pub fn net_error(e: berth_network::Error) -> Error {
    use berth_network::Error as E;
    match e {
        E::NotFound(m) => Error::not_found(m),
        E::Conflict(m) => Error::conflict(m),
        E::Invalid(m) => Error::invalid(m),
        E::Forbidden(m) => Error::new(crate::error::ErrorKind::Forbidden, m),
        E::Kernel(m) => Error::internal(m),
    }
}

/// What start needs from the network layer: the namespace to join and the /etc contents.
pub(super) struct StartNet {
    pub mode: NetworkMode,
    pub sandbox: Option<SandboxInfo>,
}

fn hc_list(hc: &Value, key: &str) -> Vec<String> {
    hc.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Before the shim runs: `none` keeps the runtime's fresh namespace (fast path), `host` the
/// host's, `container:<id>` joins that container's, the rest get a sandbox from the network
/// layer.
pub(super) async fn setup(
    nets: &Networks,
    rec: &Record,
    joined: Option<std::path::PathBuf>,
) -> Result<StartNet> {
    let mode = rec.network_mode();
    if mode == "host" {
        return Ok(StartNet {
            mode: NetworkMode::Host,
            sandbox: None,
        });
    }
    if mode == "none" {
        return Ok(StartNet {
            mode: NetworkMode::New,
            sandbox: None,
        });
    }
    if mode.starts_with("container:") {
        let p = joined.ok_or_else(|| {
            Error::conflict(format!(
                "cannot join network namespace of container {}: it is not running",
                mode.trim_start_matches("container:")
            ))
        })?;
        return Ok(StartNet {
            mode: NetworkMode::Path(p),
            sandbox: None,
        });
    }
    let req = UpRequest {
        dns: hc_list(&rec.host_config, "Dns"),
        port_bindings: rec.host_config.get("PortBindings").cloned(),
        exposed_ports: rec.config.get("ExposedPorts").cloned(),
        publish_all: rec.host_bool("PublishAllPorts"),
    };
    let sb = nets.up(&rec.id, &req).await.map_err(net_error)?;
    Ok(StartNet {
        mode: NetworkMode::Path(sb.netns.clone()),
        sandbox: Some(sb),
    })
}

const HOSTS_BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// /etc/hosts and /etc/resolv.conf of a container with its own namespace, as Docker writes
/// them at start: --add-host entries, links, then the container's own addresses.
pub(super) fn write_etc(
    dir: &Path,
    rec: &Record,
    sb: Option<&SandboxInfo>,
    links: &[(String, Ipv4Addr, Vec<String>)],
) -> std::io::Result<()> {
    let hc = &rec.host_config;
    let mut hosts = HOSTS_BASE.to_owned();
    for h in hc_list(hc, "ExtraHosts") {
        // "name:ip" (docker CLI) or "name=ip"
        let Some((name, ip)) = h.split_once([':', '=']) else {
            continue;
        };
        let ip = if ip == "host-gateway" {
            match sb.and_then(|s| s.gateway) {
                Some(g) => g.to_string(),
                None => continue,
            }
        } else {
            ip.to_owned()
        };
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    for (alias, ip, names) in links {
        let mut all = vec![alias.clone()];
        all.extend(names.iter().filter(|n| *n != alias).cloned());
        hosts.push_str(&format!("{ip}\t{}\n", all.join(" ")));
    }
    let hostname = rec.cfg_str("Hostname");
    let domain = rec.cfg_str("Domainname");
    if let Some(sb) = sb {
        let v4 = sb.addresses.iter().take(1).map(|(_, ip)| ip.to_string());
        // and the IPv6 one (networks made with --ipv6), as dockerd writes it
        for ip in v4.chain(sb.address6.map(|ip| ip.to_string())) {
            if domain.is_empty() {
                hosts.push_str(&format!("{ip}\t{hostname}\n"));
            } else {
                hosts.push_str(&format!("{ip}\t{hostname}.{domain} {hostname}\n"));
            }
        }
    }
    std::fs::write(dir.join("hosts"), hosts)?;

    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    // user-defined networks: the embedded DNS server at 127.0.0.11 (it forwards to --dns or
    // the host's resolvers); the default bridge: the resolvers themselves
    let user_net = sb.map(|s| s.user_defined).unwrap_or(false);
    let resolv = berth_dns::container_resolv_conf(
        &host_resolv,
        &hc_list(hc, "Dns"),
        &hc_list(hc, "DnsSearch"),
        &hc_list(hc, "DnsOptions"),
        user_net,
    )
    .content;
    std::fs::write(dir.join("resolv.conf"), resolv)
}

impl super::Containers {
    /// `--link name:alias` on the default bridge: (alias, address, [id12, name]) of each
    /// running target, for /etc/hosts.
    pub(super) fn link_hosts(&self, rec: &Record) -> Vec<(String, Ipv4Addr, Vec<String>)> {
        let mut out = Vec::new();
        for l in hc_list(&rec.host_config, "Links") {
            let (name, alias) = split_link(&l);
            let alias = alias.to_owned();
            let Ok(target) = self.get(name) else { continue };
            let Some(m) = self.0.nets.member(&target.id) else {
                continue;
            };
            let Some(ip) = m.endpoints.iter().find_map(|e| e.ip) else {
                continue;
            };
            let tn = target.record().name.trim_start_matches('/').to_owned();
            out.push((alias, ip, vec![target.id[..12].to_owned(), tn]));
        }
        out
    }
}

/// Config.MacAddress (deprecated since API 1.44) is the MAC of the main network's endpoint:
/// moved into EndpointsConfig as dockerd does, refused where it cannot apply.
pub(super) fn endpoints_with_mac(rec: &Record, eps: Option<&Value>) -> Result<Option<Value>> {
    let mac = rec.cfg_str("MacAddress");
    if mac.is_empty() {
        return Ok(eps.cloned());
    }
    let mode = rec.network_mode();
    if mode == "host" || mode.starts_with("container:") {
        return Err(Error::invalid(
            "conflicting options: mac-address and the network mode",
        ));
    }
    if mode == "none" {
        return Ok(eps.cloned());
    }
    let mut eps = eps
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    let key = eps
        .as_object()
        .and_then(|o| {
            o.keys()
                .find(|k| *k == &mode || (mode == "bridge" && *k == "default"))
                .cloned()
        })
        .unwrap_or_else(|| mode.clone());
    let ep = &mut eps[key.as_str()];
    if !ep.is_object() {
        *ep = serde_json::json!({});
    }
    match ep.get("MacAddress").and_then(Value::as_str) {
        Some(m) if !m.is_empty() && !m.eq_ignore_ascii_case(&mac) => {
            return Err(Error::invalid(
                "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
            ));
        }
        _ => ep["MacAddress"] = Value::String(mac),
    }
    Ok(Some(eps))
}

const HOST_AND_LINKS: &str = "conflicting options: host type networking can't be used with links. This would result in undefined behavior";

/// Network modes where dockerd keeps links as parent/child pairs (`/etc/hosts`, variables,
/// checked at create and start); on user-defined networks they are DNS aliases.
fn legacy_links(mode: &str) -> bool {
    matches!(mode, "bridge" | "default" | "none")
}

/// One `--link` as written ("name:alias", "/name:/me/alias" or "name"): (target, alias).
fn split_link(l: &str) -> (&str, &str) {
    let (name, alias) = l.split_once(':').unwrap_or((l, l));
    let name = name.trim_start_matches('/');
    (name, alias.rsplit('/').next().unwrap_or(alias))
}

/// Docker's legacy link variables of one link (daemon/links ToEnv): the lowest exposed port
/// (tcp first) as `ALIAS_PORT`, for each run of 3 or more consecutive ports
/// `ALIAS_PORT_<first>_<PROTO>_START|_END|_ADDR|_PROTO|_PORT_START|_PORT_END`, each port's
/// `ALIAS_PORT_<n>_<PROTO>[_ADDR|_PORT|_PROTO]`, `ALIAS_NAME=/me/alias`, and the target's env
/// (but HOME and PATH) as `ALIAS_ENV_<X>`.
fn link_env_of(
    alias: &str,
    me: &str,
    ip: Ipv4Addr,
    exposed: &[String],
    env: &[String],
) -> Vec<String> {
    let a = alias.to_ascii_uppercase().replace('-', "_");
    let mut ports: Vec<(u16, String)> = exposed
        .iter()
        .filter_map(|p| {
            let (n, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            Some((n.parse().ok()?, proto.to_ascii_lowercase()))
        })
        .collect();
    ports.sort_by(|x, y| x.0.cmp(&y.0).then((x.1 != "tcp").cmp(&(y.1 != "tcp"))));
    let mut out = Vec::new();
    if let Some((n, proto)) = ports.first() {
        out.push(format!("{a}_PORT={proto}://{ip}:{n}"));
    }
    let mut i = 0;
    while i < ports.len() {
        let (n, proto) = &ports[i];
        let j = next_contiguous(&ports, i);
        if j > i + 1 {
            // as dockerd: the run is keyed by its first port and protocol (the numbers alone
            // decide what is consecutive), its end named by the last port's own protocol
            let up = proto.to_ascii_uppercase();
            let (m, mproto) = &ports[j];
            let k = format!("{a}_PORT_{n}_{up}");
            out.push(format!("{k}_START={proto}://{ip}:{n}"));
            out.push(format!("{k}_ADDR={ip}"));
            out.push(format!("{k}_PROTO={proto}"));
            out.push(format!("{k}_PORT_START={n}"));
            let kend = format!("{a}_PORT_{n}_{}", mproto.to_ascii_uppercase());
            out.push(format!("{kend}_END={mproto}://{ip}:{m}"));
            out.push(format!("{kend}_PORT_END={m}"));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    for (n, proto) in &ports {
        let up = proto.to_ascii_uppercase();
        out.push(format!("{a}_PORT_{n}_{up}={proto}://{ip}:{n}"));
        out.push(format!("{a}_PORT_{n}_{up}_ADDR={ip}"));
        out.push(format!("{a}_PORT_{n}_{up}_PORT={n}"));
        out.push(format!("{a}_PORT_{n}_{up}_PROTO={proto}"));
    }
    out.push(format!("{a}_NAME=/{}/{alias}", me.trim_start_matches('/')));
    for kv in env {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if k != "HOME" && k != "PATH" {
            out.push(format!("{a}_ENV_{k}={v}"));
        }
    }
    out
}

/// The last index of the run of consecutive port numbers that starts at `i` (dockerd's
/// nextContiguous: protocols are not compared).
fn next_contiguous(ports: &[(u16, String)], i: usize) -> usize {
    let first = u32::from(ports[i].0);
    // the k-th port after the first must be at most first + k (+ 1 for the step to it)
    for (step, (k, (n, _))) in ports.iter().enumerate().skip(i + 1).enumerate() {
        if u32::from(*n) > first + step as u32 + 1 {
            return k - 1;
        }
    }
    ports.len() - 1
}

/// The link variables first, the container's own env after; a variable the container sets
/// itself wins (it is left out of the link set: getenv takes the first match).
pub(super) fn merge_env(links: Vec<String>, own: Vec<String>) -> Vec<String> {
    let key = |kv: &str| kv.split('=').next().unwrap_or("").to_owned();
    let mine: std::collections::HashSet<String> = own.iter().map(|kv| key(kv)).collect();
    links
        .into_iter()
        .filter(|kv| !mine.contains(&key(kv)))
        .chain(own)
        .collect()
}

impl super::Containers {
    /// Docker's legacy link environment of a container on the default bridge (on user
    /// networks links are only DNS aliases).
    pub(super) fn link_env(&self, rec: &Record) -> Vec<String> {
        let mode = rec.network_mode();
        if mode != "default" && mode != "bridge" {
            return Vec::new();
        }
        let mut out = Vec::new();
        for l in hc_list(&rec.host_config, "Links") {
            let (name, alias) = split_link(&l);
            let Ok(target) = self.get(name) else { continue };
            let Some(ip) = self
                .0
                .nets
                .member(&target.id)
                .and_then(|m| m.endpoints.iter().find_map(|e| e.ip))
            else {
                continue;
            };
            let t = target.record();
            let exposed: Vec<String> = t
                .config
                .get("ExposedPorts")
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let env = hc_list(&t.config, "Env");
            out.extend(link_env_of(alias, &rec.name, ip, &exposed, &env));
        }
        out
    }

    /// At create, as dockerd's registerLinks: no links with the host's or another container's
    /// namespace; outside user-defined networks (where a link is only a DNS alias) every
    /// target must exist and must not use the host's network.
    pub(super) fn check_links(&self, rec: &Record) -> Result<()> {
        let links = hc_list(&rec.host_config, "Links");
        if links.is_empty() {
            return Ok(());
        }
        let mode = rec.network_mode();
        if mode == "host" {
            return Err(Error::invalid(HOST_AND_LINKS));
        }
        if mode.starts_with("container:") {
            return Err(Error::invalid(
                "conflicting options: container type network can't be used with links. This would result in undefined behavior",
            ));
        }
        if !legacy_links(&mode) {
            return Ok(());
        }
        for l in &links {
            if l.is_empty() {
                return Err(Error::invalid("empty string specified for links"));
            }
            if l.split(':').count() > 2 {
                return Err(Error::invalid(format!("bad format for links: {l}")));
            }
            let (name, _) = split_link(l);
            let mut target = self.get(name).map_err(|e| {
                // dockerd: invalid parameter, not "not found" (which the docker CLI would
                // take for a missing image)
                Error::invalid(format!("could not get container for {name}: {}", e.message))
            })?;
            // a target in another container's namespace links through that container
            for _ in 0..16 {
                let r = target.record();
                let m = r.network_mode();
                let Some(other) = m.strip_prefix("container:") else {
                    break;
                };
                target = self.get(other).map_err(|e| {
                    Error::invalid(format!(
                        "Could not get container for {other}: {}",
                        e.message
                    ))
                })?;
            }
            if target.record().network_mode() == "host" {
                return Err(Error::invalid(HOST_AND_LINKS));
            }
        }
        Ok(())
    }

    /// At start, as dockerd's setupLinkedContainers: every linked container must run.
    pub(super) fn check_links_running(&self, rec: &Record) -> Result<()> {
        if !legacy_links(&rec.network_mode()) {
            return Ok(());
        }
        let me = rec.name.trim_start_matches('/');
        for l in hc_list(&rec.host_config, "Links") {
            let (name, alias) = split_link(&l);
            // a target removed since is dropped, as dockerd drops it from its link index
            let Ok(target) = self.get(name) else { continue };
            let t = target.record();
            if !(t.running() || t.state.status == "restarting") {
                return Err(Error::internal(format!(
                    "Cannot link to a non running container: {} AS /{me}/{alias}",
                    t.name
                )));
            }
        }
        Ok(())
    }

    /// The `network` filter of `ps`: joined to the network of that name or (prefix of) id.
    pub(super) fn on_network(&self, id: &str, net: &str) -> bool {
        let Ok(n) = self.0.nets.get(net) else {
            return false;
        };
        self.0
            .nets
            .member(id)
            .is_some_and(|m| m.endpoints.iter().any(|e| e.network == n.id))
    }

    /// HostConfig.Links as dockerd's inspect shows them: "/target:/me/alias".
    pub(super) fn links_json(&self, rec: &Record) -> Value {
        let links = hc_list(&rec.host_config, "Links");
        if links.is_empty() {
            return Value::Null;
        }
        let me = rec.name.trim_start_matches('/');
        Value::Array(
            links
                .iter()
                .map(|l| {
                    let (name, alias) = split_link(l);
                    let target = self
                        .get(name)
                        .map(|t| t.record().name.trim_start_matches('/').to_owned())
                        .unwrap_or_else(|_| name.to_owned());
                    Value::String(format!("/{target}:/{me}/{alias}"))
                })
                .collect(),
        )
    }
}

impl super::Containers {
    /// `network connect`: recorded for a stopped container, wired at once for a running one.
    pub async fn connect(
        &self,
        id: &str,
        n: &berth_network::Network,
        endpoint: Option<&Value>,
    ) -> Result<()> {
        let ctr = self.get(id)?;
        let _op = ctr.op.lock().await;
        let rec = ctr.record();
        let mode = rec.network_mode();
        if mode == "host" || mode == "none" || mode.starts_with("container:") {
            return Err(Error::new(
                crate::error::ErrorKind::Forbidden,
                "container sharing network namespace with another container or host cannot be connected to any other network",
            ));
        }
        self.0
            .nets
            .connect(id, &n.id, endpoint)
            .await
            .map_err(net_error)?;
        if rec.running() {
            let sb = self.0.nets.sandbox_info(id);
            let dir = self.dir(id);
            let links = self.link_hosts(&rec);
            let _ = write_etc(&dir, &rec, sb.as_ref(), &links);
        }
        Ok(())
    }

    /// `network disconnect`.
    pub async fn disconnect(
        &self,
        id: &str,
        n: &berth_network::Network,
        _force: bool,
    ) -> Result<()> {
        let ctr = self.get(id)?;
        let _op = ctr.op.lock().await;
        self.0.nets.disconnect(id, &n.id).await.map_err(net_error)
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn legacy_link_env_like_docker() {
        let ip: Ipv4Addr = "172.17.0.2".parse().unwrap();
        let e = link_env_of(
            "my-db",
            "/web",
            ip,
            &["5432/tcp".into(), "80/udp".into(), "80/tcp".into()],
            &["PATH=/bin".into(), "PASSWORD=x=y".into()],
        );
        assert_eq!(
            e,
            [
                "MY_DB_PORT=tcp://172.17.0.2:80",
                "MY_DB_PORT_80_TCP=tcp://172.17.0.2:80",
                "MY_DB_PORT_80_TCP_ADDR=172.17.0.2",
                "MY_DB_PORT_80_TCP_PORT=80",
                "MY_DB_PORT_80_TCP_PROTO=tcp",
                "MY_DB_PORT_80_UDP=udp://172.17.0.2:80",
                "MY_DB_PORT_80_UDP_ADDR=172.17.0.2",
                "MY_DB_PORT_80_UDP_PORT=80",
                "MY_DB_PORT_80_UDP_PROTO=udp",
                "MY_DB_PORT_5432_TCP=tcp://172.17.0.2:5432",
                "MY_DB_PORT_5432_TCP_ADDR=172.17.0.2",
                "MY_DB_PORT_5432_TCP_PORT=5432",
                "MY_DB_PORT_5432_TCP_PROTO=tcp",
                "MY_DB_NAME=/web/my-db",
                "MY_DB_ENV_PASSWORD=x=y",
            ]
        );
        let m = merge_env(vec!["A=1".into(), "B=2".into()], vec!["B=3".into()]);
        assert_eq!(m, ["A=1", "B=3"]);
    }

    #[test]
    fn link_env_names_runs_of_ports_like_docker() {
        let ip: Ipv4Addr = "10.0.0.2".parse().unwrap();
        let ports = ["8002/tcp", "9000/udp", "8000/tcp", "8001/tcp"].map(String::from);
        let e = link_env_of("db", "/web", ip, &ports, &[]);
        let mut want: Vec<String> = [
            "DB_PORT=tcp://10.0.0.2:8000",
            "DB_PORT_8000_TCP_START=tcp://10.0.0.2:8000",
            "DB_PORT_8000_TCP_ADDR=10.0.0.2",
            "DB_PORT_8000_TCP_PROTO=tcp",
            "DB_PORT_8000_TCP_PORT_START=8000",
            "DB_PORT_8000_TCP_END=tcp://10.0.0.2:8002",
            "DB_PORT_8000_TCP_PORT_END=8002",
        ]
        .map(String::from)
        .to_vec();
        for (n, p) in [(8000, "tcp"), (8001, "tcp"), (8002, "tcp"), (9000, "udp")] {
            let up = p.to_uppercase();
            want.push(format!("DB_PORT_{n}_{up}={p}://10.0.0.2:{n}"));
            want.push(format!("DB_PORT_{n}_{up}_ADDR=10.0.0.2"));
            want.push(format!("DB_PORT_{n}_{up}_PORT={n}"));
            want.push(format!("DB_PORT_{n}_{up}_PROTO={p}"));
        }
        want.push("DB_NAME=/web/db".into());
        assert_eq!(e, want);
        // two in a row are no run
        let e = link_env_of("db", "/web", ip, &["80/tcp".into(), "81/tcp".into()], &[]);
        assert!(!e.iter().any(|v| v.contains("_START")), "{e:?}");
    }
}
