//! berth-network: container networking on the host — the default bridge (`berth0`, like
//! docker0) and user-defined bridge networks, IPAM, one network namespace per container with
//! veths created directly inside it, NAT/filtering and published ports in one nftables table of
//! our own, and the persistent state of all that under `<data-root>/network/`.
//!
//! Must not: know HTTP or container lifecycles (the engine calls `up`/`down` around a
//! container's process), shell out to `ip` (links, addresses and routes go over rtnetlink), or
//! touch rules outside its own nftables table. Every daemon instance has its own bridge names,
//! subnets and table, so several can run side by side.

pub mod ipam;
pub mod netlink;
pub mod nft;
pub mod ports;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub use ipam::{Cidr, Cidr6};
pub use ports::PortMap;
pub use store::{EndpointSpec, Member, Network};

use netlink::Netlink;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Docker's 403 (pre-defined networks, networks in use).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Kernel(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The daemon's network flags (dockerd's names).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// `-b/--bridge`: the default network's bridge; "none" disables the default network.
    pub bridge: Option<String>,
    /// `--bip`: the default bridge's address and prefix.
    pub bip: Option<String>,
    /// `--fixed-cidr`: containers on the default bridge get addresses from this range.
    pub fixed_cidr: Option<String>,
    pub mtu: Option<u32>,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub icc: bool,
}

impl Config {
    pub fn new(data_root: impl Into<PathBuf>, exec_root: impl Into<PathBuf>) -> Config {
        Config {
            data_root: data_root.into(),
            exec_root: exec_root.into(),
            bridge: None,
            bip: None,
            fixed_cidr: None,
            mtu: None,
            ip_forward: true,
            ip_masq: true,
            icc: true,
        }
    }

    /// Our nftables table: `berth` for the default data root, else one per data root.
    pub fn table(&self) -> String {
        if self.data_root == Path::new("/var/lib/berth") {
            return "berth".into();
        }
        use sha2::Digest;
        let h = sha2::Sha256::digest(self.data_root.as_os_str().as_encoded_bytes());
        format!("berth_{}", &hex::encode(h)[..10])
    }
}

pub const DEFAULT_BRIDGE: &str = "berth0";

/// Docker's name for the default network, whatever our bridge is called.
pub const BRIDGE_NET: &str = "bridge";

/// What a started container's networking looks like (for /etc/hosts and inspect).
#[derive(Debug, Clone)]
pub struct SandboxInfo {
    pub netns: PathBuf,
    /// (network name, address) in attach order.
    pub addresses: Vec<(String, Ipv4Addr)>,
    /// Whether any network is user-defined (embedded DNS at 127.0.0.11).
    pub user_defined: bool,
    /// The default bridge's gateway (`host-gateway` in --add-host), if attached to one.
    pub gateway: Option<Ipv4Addr>,
    /// The first IPv6 address (networks made with `--ipv6`), for /etc/hosts.
    pub address6: Option<Ipv6Addr>,
}

/// What `up` needs beyond the registered endpoints.
#[derive(Debug, Clone, Default)]
pub struct UpRequest {
    /// HostConfig.Dns: the embedded DNS server forwards there (else to the host's resolvers).
    pub dns: Vec<String>,
    pub port_bindings: Option<Value>,
    pub exposed_ports: Option<Value>,
    pub publish_all: bool,
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub ipam_options: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub enable_ipv6: bool,
    /// The IPv6 pool of IPAM.Config (with `enable_ipv6`).
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
}

pub struct Networks {
    cfg: Config,
    table: String,
    saver: Arc<Saver>,
    netns_dir: PathBuf,
    nl: Netlink,
    st: Arc<Mutex<State>>,
    /// Serializes nft table swaps so the last render wins.
    nft_lock: tokio::sync::Mutex<()>,
    /// The netns directory is made a shared mount on first use (not for daemons that never
    /// start a networked container).
    netns_ready: std::sync::OnceLock<()>,
}

struct State {
    s: store::State,
    /// Bumped by every change of `s` that the state file must get (see [`Saver`]).
    version: u64,
    /// Sockets reserving published host ports, per container.
    held: HashMap<String, Vec<OwnedFd>>,
    /// Embedded DNS servers (containers on user-defined networks); dropping one stops it.
    dns: HashMap<String, berth_dns::Handle>,
    /// Upstream resolvers per container (HostConfig.Dns or the host's).
    upstreams: HashMap<String, Vec<std::net::SocketAddr>>,
}

/// Writes of the state file, made outside the state lock so that starts, lookups and inspects
/// never wait for the disk. A writer snapshots the newest state (serialised under the lock, no
/// I/O there) and writes it whole; a caller whose change an earlier write already covered
/// returns at once, so concurrent starts share one write. Every change bumps
/// `State::version` under the lock before its caller persists.
struct Saver {
    file: PathBuf,
    st: Arc<Mutex<State>>,
    /// The versions last written, and last written with fsync. Held while writing: writers
    /// queue here, not on the state lock.
    done: Mutex<(u64, u64)>,
}

impl Saver {
    fn persist(&self, durable: bool) -> Result<()> {
        let want = lock(&self.st).version;
        let mut done = lock(&self.done);
        if done.0 >= want && (!durable || done.1 >= want) {
            return Ok(());
        }
        let (v, data) = {
            let st = lock(&self.st);
            (st.version, serde_json::to_vec(&st.s))
        };
        let err =
            |e: std::io::Error| Error::Kernel(format!("writing {}: {e}", self.file.display()));
        let data = data.map_err(|e| err(std::io::Error::other(e)))?;
        store::write(&self.file, &data, durable).map_err(err)?;
        done.0 = v;
        if durable {
            done.1 = v;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_id() -> String {
    let b: [u8; 32] = rand::random();
    hex::encode(b)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

fn opt_bool(o: &BTreeMap<String, String>, k: &str, def: bool) -> Result<bool> {
    match o.get(k).map(String::as_str) {
        None | Some("") => Ok(def),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(Error::Invalid(format!("invalid value for {k}: {v}"))),
    }
}

impl Networks {
    /// Load the state, make sure the pre-defined networks and every bridge exist, swap our
    /// table in. Needs a tokio runtime (netlink).
    pub async fn open(cfg: Config) -> Result<Arc<Networks>> {
        let table = cfg.table();
        let state_file = store::path(&cfg.data_root);
        let mut s = store::load(&state_file)
            .map_err(|e| Error::Kernel(format!("reading {}: {e}", state_file.display())))?;
        let nl = Netlink::host()?;
        let netns_dir = cfg.exec_root.join("netns");
        if cfg.ip_forward {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| Error::Kernel(format!("enabling ip_forward: {e}")))?;
        }

        // pre-defined networks: host and none always, the default bridge unless -b none
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !s.networks.iter().any(|n| n.name == name && n.predefined) {
                s.networks.push(Network {
                    id: new_id(),
                    name: name.into(),
                    driver: driver.into(),
                    created: now(),
                    subnet: None,
                    gateway: None,
                    ip_range: None,
                    internal: false,
                    attachable: false,
                    labels: BTreeMap::new(),
                    options: BTreeMap::new(),
                    ipam_options: BTreeMap::new(),
                    bridge: String::new(),
                    icc: true,
                    masquerade: true,
                    mtu: None,
                    user_ipam: false,
                    gateway_given: false,
                    predefined: true,
                    subnet6: None,
                    gateway6: None,
                    gateway6_given: false,
                });
            }
        }
        let br_name = cfg
            .bridge
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_BRIDGE.into());
        let old = s
            .networks
            .iter()
            .position(|n| n.name == BRIDGE_NET && n.predefined);
        if br_name == "none" {
            if let Some(i) = old {
                let n = s.networks.remove(i);
                let _ = nl.delete_link(&n.bridge).await;
            }
        } else {
            if !valid_ifname(&br_name) {
                return Err(Error::Invalid(format!("invalid bridge name: {br_name}")));
            }
            // like dockerd: only the default name is ours to create (and to remove again)
            if br_name != DEFAULT_BRIDGE && nl.index(&br_name).await?.is_none() {
                return Err(Error::Invalid(format!(
                    "bridge device with non default name {br_name} must be created manually"
                )));
            }
            let others: Vec<Cidr> = s
                .networks
                .iter()
                .filter(|n| !(n.name == BRIDGE_NET && n.predefined))
                .filter_map(|n| n.subnet)
                .collect();
            let (subnet, gateway) = match &cfg.bip {
                Some(b) => {
                    let c: Cidr = b
                        .parse()
                        .map_err(|e: String| Error::Invalid(format!("invalid bip: {e}")))?;
                    (c.network(), c.addr)
                }
                None => match old.and_then(|i| s.networks[i].subnet.zip(s.networks[i].gateway)) {
                    // the subnet chosen before, kept across restarts (IPAM is persistent)
                    Some((sub, gw)) if s.networks[old.unwrap_or(0)].bridge == br_name => (sub, gw),
                    _ => {
                        let mut taken = ipam::host_routes();
                        taken.extend(others.iter().copied());
                        let sub = ipam::pick_subnet(&taken).ok_or_else(|| {
                            Error::Kernel("no free subnet for the default bridge: use --bip".into())
                        })?;
                        (sub, Ipv4Addr::from(sub.first() + 1))
                    }
                },
            };
            let fixed = match &cfg.fixed_cidr {
                Some(f) => {
                    let c: Cidr = f
                        .parse()
                        .map_err(|e: String| Error::Invalid(format!("invalid fixed-cidr: {e}")))?;
                    if !subnet.overlaps(&c) {
                        return Err(Error::Invalid(format!(
                            "fixed-cidr {f} is not within the bridge subnet {subnet}"
                        )));
                    }
                    Some(c.network())
                }
                None => None,
            };
            let mut options = BTreeMap::new();
            options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
            options.insert(
                "com.docker.network.bridge.enable_icc".into(),
                cfg.icc.to_string(),
            );
            options.insert(
                "com.docker.network.bridge.enable_ip_masquerade".into(),
                cfg.ip_masq.to_string(),
            );
            options.insert(
                "com.docker.network.bridge.host_binding_ipv4".into(),
                "0.0.0.0".into(),
            );
            options.insert("com.docker.network.bridge.name".into(), br_name.clone());
            options.insert(
                "com.docker.network.driver.mtu".into(),
                cfg.mtu.unwrap_or(1500).to_string(),
            );
            let (id, created) = match old {
                Some(i) => (s.networks[i].id.clone(), s.networks[i].created.clone()),
                None => (new_id(), now()),
            };
            if let Some(i) = old
                && s.networks[i].bridge != br_name
            {
                let _ = nl.delete_link(&s.networks[i].bridge).await;
            }
            let net = Network {
                id,
                name: BRIDGE_NET.into(),
                driver: "bridge".into(),
                created,
                subnet: Some(subnet),
                gateway: Some(gateway),
                ip_range: fixed,
                internal: false,
                attachable: false,
                labels: BTreeMap::new(),
                options,
                ipam_options: BTreeMap::new(),
                bridge: br_name,
                icc: cfg.icc,
                masquerade: cfg.ip_masq,
                mtu: cfg.mtu,
                user_ipam: false,
                gateway_given: false,
                predefined: true,
                subnet6: None,
                gateway6: None,
                gateway6_given: false,
            };
            match old {
                Some(i) => s.networks[i] = net,
                None => s.networks.insert(0, net),
            }
        }
        for n in s.networks.iter().filter(|n| n.is_bridge()) {
            if let (Some(sub), Some(gw)) = (n.subnet, n.gateway) {
                let gw6 = n.subnet6.zip(n.gateway6);
                nl.ensure_bridge(&n.bridge, Cidr::new(gw, sub.prefix), gw6, n.mtu)
                    .await?;
            }
        }
        store::save(&state_file, &s, true)
            .map_err(|e| Error::Kernel(format!("writing {}: {e}", state_file.display())))?;
        let st = Arc::new(Mutex::new(State {
            s,
            version: 0,
            held: HashMap::new(),
            dns: HashMap::new(),
            upstreams: HashMap::new(),
        }));
        let me = Arc::new(Networks {
            cfg,
            table,
            saver: Arc::new(Saver {
                file: state_file,
                st: st.clone(),
                done: Mutex::new((0, 0)),
            }),
            netns_dir,
            nl,
            st,
            nft_lock: tokio::sync::Mutex::new(()),
            netns_ready: std::sync::OnceLock::new(),
        });
        if let Err(e) = me.apply_rules().await {
            // no half set-up: the bridges made above go again (kept while sandboxes exist)
            me.shutdown().await;
            return Err(e);
        }
        Ok(me)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Write the state file with every change made so far (see [`Saver`]).
    fn persist(&self, durable: bool) -> Result<()> {
        self.saver.persist(durable)
    }

    /// The same off the caller's path: for changes a kill -9 may lose because the next start
    /// repairs them (a sandbox released, a container forgotten; see `reconcile`).
    fn persist_soon(&self) {
        let s = self.saver.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = s.persist(false) {
                tracing::warn!("{e}");
            }
        });
    }

    /// Render and swap in our nftables table.
    async fn apply_rules(&self) -> Result<()> {
        let _g = self.nft_lock.lock().await;
        let script = {
            let st = lock(&self.st);
            let bridges: Vec<nft::BridgeRules> =
                st.s.networks
                    .iter()
                    .filter(|n| n.is_bridge())
                    .filter_map(|n| {
                        Some(nft::BridgeRules {
                            bridge: n.bridge.clone(),
                            subnet: n.subnet?,
                            masquerade: n.masquerade,
                            icc: n.icc,
                            internal: n.internal,
                            subnet6: n.subnet6,
                        })
                    })
                    .collect();
            let mut dnats = Vec::new();
            for m in st.s.members.values() {
                let Some(sb) = &m.sandbox else { continue };
                // published ports go to the first bridge endpoint with an address
                let Some(ip) = m.endpoints.iter().find_map(|e| e.ip) else {
                    continue;
                };
                for p in &sb.ports {
                    dnats.push(nft::Dnat {
                        proto: p.proto.clone(),
                        host_ip: p.host_ip,
                        host_port: p.host_port,
                        ip,
                        port: p.port,
                    });
                }
            }
            if bridges.is_empty() {
                // nothing to filter or translate: no table at all (e.g. -b none)
                nft::delete_script(&self.table)
            } else {
                nft::render(&self.table, &bridges, &dnats)
            }
        };
        tokio::task::spawn_blocking(move || nft::apply(&script))
            .await
            .map_err(|e| Error::Kernel(format!("nft task: {e}")))?
    }

    // ------------------------------------------------------------------ networks

    /// Find a network by full name, full ID or unique ID prefix (Docker's order).
    pub fn get(&self, name_or_id: &str) -> Result<Network> {
        let st = lock(&self.st);
        find(&st.s.networks, name_or_id).cloned()
    }

    pub fn list(&self) -> Vec<Network> {
        lock(&self.st).s.networks.clone()
    }

    pub async fn create(&self, req: CreateRequest) -> Result<Network> {
        let driver = if req.driver.is_empty() {
            "bridge".to_owned()
        } else {
            req.driver.clone()
        };
        if driver != "bridge" {
            if driver == "host" || driver == "null" {
                return Err(Error::Forbidden(format!(
                    "only one instance of \"{driver}\" network is allowed"
                )));
            }
            return Err(Error::NotFound(format!("plugin \"{driver}\" not found")));
        }
        if req.name.is_empty() {
            return Err(Error::Invalid("network name cannot be empty".into()));
        }
        let o = &req.options;
        let icc = opt_bool(o, "com.docker.network.bridge.enable_icc", true)?;
        let masquerade = opt_bool(o, "com.docker.network.bridge.enable_ip_masquerade", true)?;
        let mtu = match o.get("com.docker.network.driver.mtu") {
            Some(m) if !m.is_empty() => Some(
                m.parse::<u32>()
                    .map_err(|_| Error::Invalid(format!("invalid mtu: {m}")))?,
            ),
            _ => None,
        };
        let id = new_id();
        let bridge = match o.get("com.docker.network.bridge.name") {
            Some(b) if !b.is_empty() => {
                if !valid_ifname(b) {
                    return Err(Error::Invalid(format!("invalid bridge name: {b}")));
                }
                b.clone()
            }
            _ => format!("br-{}", &id[..12]),
        };
        let subnet_s = req
            .subnet
            .as_ref()
            .filter(|x| !x.is_empty())
            .map(|x| x.trim().to_owned());
        let net = {
            let mut st = lock(&self.st);
            if st.s.networks.iter().any(|n| n.name == req.name) {
                return Err(Error::Conflict(format!(
                    "network with name {} already exists",
                    req.name
                )));
            }
            if st
                .s
                .networks
                .iter()
                .any(|n| n.is_bridge() && n.bridge == bridge)
            {
                return Err(Error::Conflict(format!(
                    "bridge name {bridge} is already in use"
                )));
            }
            let ours: Vec<Cidr> = st.s.networks.iter().filter_map(|n| n.subnet).collect();
            let (subnet, user_ipam) = match &subnet_s {
                Some(s) => {
                    let c: Cidr = s.parse().map_err(|e: String| Error::Invalid(e))?;
                    if let Some(o) = ours.iter().find(|o| o.overlaps(&c)) {
                        return Err(Error::Forbidden(format!(
                            "Pool overlaps with other one on this address space ({} and {})",
                            c.network(),
                            o.network()
                        )));
                    }
                    (c.network(), true)
                }
                None => {
                    let mut taken = ipam::host_routes();
                    taken.extend(ours.iter().copied());
                    let c = ipam::pick_subnet(&taken).ok_or_else(|| {
                        Error::Forbidden(
                            "all predefined address pools have been fully subnetted".into(),
                        )
                    })?;
                    (c, false)
                }
            };
            let gateway =
                match req.gateway.as_deref().filter(|g| !g.is_empty()) {
                    Some(g) => {
                        let ip: Ipv4Addr =
                            g.split('/').next().unwrap_or("").parse().map_err(|_| {
                                Error::Invalid(format!("invalid gateway address: {g}"))
                            })?;
                        if !subnet.contains(ip) {
                            return Err(Error::Invalid(format!(
                                "no matching subnet for gateway {g}"
                            )));
                        }
                        ip
                    }
                    None => Ipv4Addr::from(subnet.first() + 1),
                };
            let ip_range = match req.ip_range.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => {
                    let c: Cidr = r.parse().map_err(|e: String| Error::Invalid(e))?;
                    if !subnet.contains(c.network().addr) || c.prefix < subnet.prefix {
                        return Err(Error::Invalid(format!("no matching subnet for range {r}")));
                    }
                    Some(c.network())
                }
                None => None,
            };
            if subnet.prefix > 30 {
                return Err(Error::Invalid(format!("subnet {subnet} is too small")));
            }
            let v6 = match req.enable_ipv6 {
                true => Some(ipv6_pool(&st.s.networks, &req)?),
                false => None,
            };
            let net = Network {
                id,
                name: req.name.clone(),
                driver,
                created: now(),
                subnet: Some(subnet),
                gateway: Some(gateway),
                ip_range,
                internal: req.internal,
                attachable: req.attachable,
                labels: req.labels.clone(),
                options: req.options.clone(),
                ipam_options: req.ipam_options.clone(),
                bridge: bridge.clone(),
                icc,
                masquerade,
                mtu,
                user_ipam,
                gateway_given: req.gateway.as_deref().is_some_and(|g| !g.is_empty()),
                predefined: false,
                subnet6: v6.map(|v| v.0),
                gateway6: v6.map(|v| v.1),
                gateway6_given: v6.is_some_and(|v| v.2),
            };
            st.s.networks.push(net.clone());
            net
        };
        let undo = |this: &Networks| {
            let mut st = lock(&this.st);
            st.s.networks.retain(|n| n.id != net.id);
        };
        let gw = Cidr::new(
            net.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
            net.subnet.map(|s| s.prefix).unwrap_or(24),
        );
        let gw6 = net.subnet6.zip(net.gateway6);
        if let Err(e) = self.nl.ensure_bridge(&bridge, gw, gw6, mtu).await {
            undo(self);
            let _ = self.nl.delete_link(&bridge).await;
            return Err(e);
        }
        if let Err(e) = self.apply_rules().await {
            undo(self);
            let _ = self.nl.delete_link(&bridge).await;
            return Err(e);
        }
        lock(&self.st).version += 1;
        self.persist(true)?;
        Ok(net)
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove(&self, name_or_id: &str) -> Result<Network> {
        let net = {
            let mut st = lock(&self.st);
            let net = find(&st.s.networks, name_or_id)?.clone();
            if net.predefined {
                return Err(Error::Forbidden(format!(
                    "{} is a pre-defined network and cannot be removed",
                    net.name
                )));
            }
            if st
                .s
                .members
                .values()
                .any(|m| m.sandbox.is_some() && m.endpoints.iter().any(|e| e.network == net.id))
            {
                return Err(Error::Forbidden(format!(
                    "error while removing network: network {} id {} has active endpoints",
                    net.name, net.id
                )));
            }
            st.s.networks.retain(|n| n.id != net.id);
            st.version += 1;
            net
        };
        self.persist(true)?;
        self.nl.delete_link(&net.bridge).await?;
        self.apply_rules().await?;
        Ok(net)
    }

    /// Networks with no running container, user-defined only.
    pub fn unused(&self) -> Vec<Network> {
        let st = lock(&self.st);
        st.s.networks
            .iter()
            .filter(|n| !n.predefined)
            .filter(|n| {
                !st.s
                    .members
                    .values()
                    .any(|m| m.sandbox.is_some() && m.endpoints.iter().any(|e| e.network == n.id))
            })
            .cloned()
            .collect()
    }

    /// Docker's network JSON (`GET /networks/{id}`); `containers` adds the running ones.
    pub fn inspect_json(&self, n: &Network, containers: bool) -> Value {
        let st = lock(&self.st);
        let mut ctrs = serde_json::Map::new();
        if containers {
            for m in st.s.members.values() {
                if m.sandbox.is_none() {
                    continue;
                }
                for e in m.endpoints.iter().filter(|e| e.network == n.id) {
                    ctrs.insert(
                        m.id.clone(),
                        json!({
                            "Name": m.name,
                            "EndpointID": e.endpoint_id,
                            "MacAddress": e.mac.map(|m| ipam::mac_string(&m)).unwrap_or_default(),
                            "IPv4Address": match (e.ip, n.subnet) {
                                (Some(ip), Some(s)) => format!("{ip}/{}", s.prefix),
                                _ => String::new(),
                            },
                            "IPv6Address": match (e.ip6, n.subnet6) {
                                (Some(ip), Some(s)) => format!("{ip}/{}", s.prefix),
                                _ => String::new(),
                            },
                        }),
                    );
                }
            }
        }
        let config = match (n.subnet, n.gateway) {
            (Some(s), Some(g)) => {
                let mut c = json!({ "Subnet": s.to_string() });
                // as dockerd: a given subnet's gateway only when it was given too
                if !n.user_ipam || n.gateway_given {
                    c["Gateway"] = json!(g.to_string());
                }
                if let Some(r) = n.ip_range {
                    c["IPRange"] = json!(r.to_string());
                }
                json!([c])
            }
            _ => json!([]),
        };
        let mut config = config;
        if let (Some(s), Some(g), Value::Array(a)) = (n.subnet6, n.gateway6, &mut config) {
            let mut c = json!({ "Subnet": s.to_string() });
            // as dockerd: the gateway of a given subnet only when it was given too
            if n.gateway6_given {
                c["Gateway"] = json!(g.to_string());
            }
            a.push(c);
        }
        json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv4": true,
            "EnableIPv6": n.subnet6.is_some(),
            "IPAM": {
                "Driver": "default",
                "Options": if n.ipam_options.is_empty() { Value::Null } else { json!(n.ipam_options) },
                "Config": config,
            },
            "Internal": n.internal,
            "Attachable": n.attachable,
            "Ingress": false,
            "ConfigFrom": { "Network": "" },
            "ConfigOnly": false,
            "Containers": ctrs,
            "Options": n.options,
            "Labels": n.labels,
        })
    }

    // ------------------------------------------------------------------ containers

    /// At container create: record which networks it joins. `mode` is HostConfig.NetworkMode;
    /// `endpoints` is NetworkingConfig.EndpointsConfig; `links` is HostConfig.Links.
    pub fn register(
        &self,
        id: &str,
        name: &str,
        mode: &str,
        endpoints: Option<&Value>,
        links: &[String],
    ) -> Result<()> {
        let mut st = lock(&self.st);
        let mut eps = Vec::new();
        let mode_net = match mode {
            "" | "default" => BRIDGE_NET,
            m => m,
        };
        let is_special = matches!(mode_net, "host" | "none") || mode_net.starts_with("container:");
        let mut want: Vec<(String, EndpointSpec)> = Vec::new();
        if !is_special {
            want.push((mode_net.to_owned(), EndpointSpec::default()));
        }
        if let Some(Value::Object(ec)) = endpoints {
            for (k, v) in ec {
                let spec = endpoint_spec(v)?;
                let k = if k == "default" {
                    BRIDGE_NET
                } else {
                    k.as_str()
                };
                if let Some(w) = want.iter_mut().find(|(n, _)| n == k) {
                    w.1 = spec;
                } else if !is_special {
                    want.push((k.to_owned(), spec));
                }
            }
        }
        for (n, mut spec) in want {
            let net = find(&st.s.networks, &n)
                .map_err(|_| Error::NotFound(format!("network {n} not found")))?
                .clone();
            if !net.is_bridge() {
                return Err(Error::Invalid(format!(
                    "container cannot be connected to network {} and another network",
                    net.name
                )));
            }
            check_spec(&net, &spec)?;
            if !net.predefined && spec.links.is_empty() {
                // on user networks a --link is a DNS alias seen by this container only
                spec.links = links.to_vec();
            }
            if net.predefined {
                spec.links = links.to_vec();
                if !spec.aliases.is_empty() {
                    return Err(Error::Invalid("network-scoped alias is supported only for containers in user defined networks".into()));
                }
            }
            eps.push(store::Endpoint {
                network: net.id.clone(),
                spec,
                endpoint_id: String::new(),
                ip: None,
                ip6: None,
                mac: None,
                veth: None,
                ifname: None,
            });
        }
        st.s.members.insert(
            id.to_owned(),
            Member {
                id: id.to_owned(),
                name: name.trim_start_matches('/').to_owned(),
                mode: mode_net.to_owned(),
                endpoints: eps,
                sandbox: None,
            },
        );
        st.version += 1;
        drop(st);
        self.persist(false)
    }

    /// At container remove. Written off the caller's path: a registration that outlives a
    /// kill -9 is dropped at the next start (`forget_unknown`).
    pub async fn unregister(&self, id: &str) {
        self.down(id).await;
        let mut st = lock(&self.st);
        if st.s.members.remove(id).is_some() {
            st.version += 1;
            drop(st);
            self.persist_soon();
        }
    }

    /// Rename (Docker keeps endpoints, DNS follows the new name).
    pub fn rename(&self, id: &str, name: &str) {
        let mut st = lock(&self.st);
        if let Some(m) = st.s.members.get_mut(id) {
            m.name = name.trim_start_matches('/').to_owned();
            st.version += 1;
            drop(st);
            let _ = self.persist(false);
        }
    }

    pub fn member(&self, id: &str) -> Option<Member> {
        lock(&self.st).s.members.get(id).cloned()
    }

    /// The namespace file of a running container (for `--network container:<id>`).
    pub fn netns_of(&self, id: &str) -> Option<PathBuf> {
        lock(&self.st)
            .s
            .members
            .get(id)?
            .sandbox
            .as_ref()
            .map(|s| s.netns.clone())
    }

    /// Before the container's process exists: the namespace, one veth per network, addresses,
    /// routes, published ports. On error nothing stays behind.
    pub async fn up(&self, id: &str, req: &UpRequest) -> Result<SandboxInfo> {
        let t0 = std::time::Instant::now();
        // a sandbox left by an earlier run (e.g. a crash between up and start) goes first
        self.down(id).await;
        let preqs = ports::requests(
            req.port_bindings.as_ref(),
            req.exposed_ports.as_ref(),
            req.publish_all,
        )?;
        if self.netns_ready.get().is_none() {
            let d = self.netns_dir.clone();
            tokio::task::spawn_blocking(move || netlink::prepare_netns_dir(&d))
                .await
                .map_err(|e| Error::Kernel(format!("netns task: {e}")))??;
            let _ = self.netns_ready.set(());
        }
        let path = self.netns_dir.join(&id[..id.len().min(12)]);
        let had_ports = !preqs.is_empty();
        let res = self.up_inner(id, &path, preqs).await;
        let t_links = t0.elapsed();
        let res = match res {
            Ok((info, ns)) => {
                let ups = upstreams(&req.dns);
                lock(&self.st).upstreams.insert(id.to_owned(), ups);
                match info.user_defined {
                    true => self.start_dns(id, &ns).map(|()| info),
                    false => Ok(info),
                }
            }
            Err(e) => Err(e),
        };
        if res.is_err() {
            self.release(id, &path);
            // rules may have been swapped in with the new ports
            if had_ports {
                let _ = self.apply_rules().await;
            }
        }
        // what the network costs a start (RUST_LOG=berth_network=debug)
        tracing::debug!(
            "network up {}: sandbox {:?}, total {:?}",
            &id[..id.len().min(12)],
            t_links,
            t0.elapsed()
        );
        res
    }

    async fn up_inner(
        &self,
        id: &str,
        path: &Path,
        preqs: Vec<ports::PortRequest>,
    ) -> Result<(SandboxInfo, File)> {
        struct Plan {
            ip: Ipv4Addr,
            mac: [u8; 6],
            prefix: u8,
            gw: Option<Ipv4Addr>,
            br: String,
            veth: String,
            ifname: String,
            mtu: Option<u32>,
            net_name: String,
            user: bool,
            default_bridge: bool,
            v6: Option<V6>,
        }
        // allocate everything under the lock, then talk to the kernel without it
        let (plans, maps) = {
            let mut st = lock(&self.st);
            let State {
                s, held, version, ..
            } = &mut *st;
            let member = s.members.get(id).cloned().ok_or_else(|| {
                Error::NotFound(format!("no network configuration for container {id}"))
            })?;
            let mut used: HashMap<String, BTreeSet<Ipv4Addr>> = HashMap::new();
            let mut used6: HashMap<String, BTreeSet<Ipv6Addr>> = HashMap::new();
            for m in s.members.values() {
                for e in &m.endpoints {
                    if let Some(ip) = e.ip {
                        used.entry(e.network.clone()).or_default().insert(ip);
                    }
                    if let Some(ip) = e.ip6 {
                        used6.entry(e.network.clone()).or_default().insert(ip);
                    }
                }
            }
            let mut plans = Vec::new();
            let mut have_gw = false;
            let mut have_gw6 = false;
            for (i, e) in member.endpoints.iter().enumerate() {
                let net = s
                    .networks
                    .iter()
                    .find(|n| n.id == e.network)
                    .ok_or_else(|| Error::NotFound(format!("network {} not found", e.network)))?
                    .clone();
                let (Some(subnet), Some(gw)) = (net.subnet, net.gateway) else {
                    continue;
                };
                let u = used.entry(net.id.clone()).or_default();
                u.insert(gw);
                let ip = match e.spec.ipv4 {
                    Some(ip) => {
                        if u.contains(&ip) {
                            return Err(Error::Forbidden("Address already in use".into()));
                        }
                        ip
                    }
                    None => ipam::allocate(&subnet, net.ip_range.as_ref(), u).ok_or_else(|| {
                        Error::Forbidden(format!(
                            "no available IPv4 addresses on this network's address pools: {} ({})",
                            net.name, net.id
                        ))
                    })?,
                };
                u.insert(ip);
                let mac = e
                    .spec
                    .mac
                    .as_deref()
                    .and_then(ipam::parse_mac)
                    .unwrap_or_else(|| ipam::mac_for(ip));
                let route = !net.internal && !have_gw;
                have_gw |= route;
                let v6 = match (net.subnet6, net.gateway6) {
                    (Some(sub6), Some(gw6)) => {
                        let u6 = used6.entry(net.id.clone()).or_default();
                        u6.insert(gw6);
                        let ip6 = match e.spec.ipv6 {
                            Some(ip) if u6.contains(&ip) => {
                                return Err(Error::Forbidden("Address already in use".into()));
                            }
                            Some(ip) => ip,
                            None => ipam::allocate6(&sub6, u6).ok_or_else(|| {
                                Error::Forbidden(format!(
                                    "no available IPv6 addresses on this network's address pools: {} ({})",
                                    net.name, net.id
                                ))
                            })?,
                        };
                        u6.insert(ip6);
                        let route6 = !net.internal && !have_gw6;
                        have_gw6 |= route6;
                        Some(V6 {
                            ip: ip6,
                            prefix: sub6.prefix,
                            gw: route6.then_some(gw6),
                        })
                    }
                    _ => None,
                };
                let r: [u8; 4] = rand::random();
                plans.push(Plan {
                    ip,
                    mac,
                    prefix: subnet.prefix,
                    gw: route.then_some(gw),
                    br: net.bridge.clone(),
                    veth: format!("veth{}", &hex::encode(r)[..7]),
                    ifname: format!("eth{i}"),
                    mtu: net.mtu,
                    net_name: net.name.clone(),
                    user: !net.predefined,
                    default_bridge: net.predefined,
                    v6,
                });
            }
            // published ports: reserve host ports now so a clash fails before anything runs
            let mut fds = Vec::new();
            let mut maps = Vec::new();
            if !preqs.is_empty() && plans.is_empty() {
                // Docker ignores -p with --network none/host (with a warning at create)
            } else {
                for r in &preqs {
                    let (fd, port) = reserve_range(r)?;
                    fds.push(fd);
                    maps.push(PortMap {
                        port: r.port,
                        proto: r.proto.clone(),
                        host_ip: r.host_ip,
                        host_port: port,
                    });
                }
            }
            // record the allocation so concurrent starts do not take the same addresses
            let m = s
                .members
                .get_mut(id)
                .ok_or_else(|| Error::NotFound(format!("container {id} is gone")))?;
            for (e, p) in m.endpoints.iter_mut().zip(plans.iter()) {
                e.ip = Some(p.ip);
                e.ip6 = p.v6.map(|v| v.ip);
                e.mac = Some(p.mac);
                e.veth = Some(p.veth.clone());
                e.ifname = Some(p.ifname.clone());
                e.endpoint_id = new_id();
            }
            m.sandbox = Some(store::Sandbox {
                netns: path.to_path_buf(),
                ports: maps.clone(),
            });
            held.insert(id.to_owned(), fds);
            *version += 1;
            (plans, maps)
        };
        let t0 = std::time::Instant::now();
        let mut marks = Vec::new();
        // the bridges' indexes are asked while the namespace is made
        let indexes = async {
            let mut out = Vec::new();
            for p in &plans {
                out.push(
                    self.nl
                        .index(&p.br)
                        .await?
                        .ok_or_else(|| Error::Kernel(format!("bridge {} is missing", p.br)))?,
                );
            }
            Ok::<_, Error>(out)
        };
        let (made, indexes) = tokio::join!(netlink::create_netns(path), indexes);
        let (ns, inner) = made?;
        let indexes = indexes?;
        marks.push(("netns", t0.elapsed()));
        if plans.is_empty() {
            inner.lo_up().await?;
        }
        for (i, (p, br)) in plans.iter().zip(indexes).enumerate() {
            self.nl
                .add_veth(&p.veth, br, &ns, &p.ifname, p.mac, p.mtu)
                .await?;
            marks.push(("veth", t0.elapsed()));
            if p.v6.is_some() {
                // lo too, as dockerd: ::1 in a container with IPv6
                netlink::enable_ipv6(&ns, &["lo", &p.ifname]).await?;
            }
            inner
                .configure(&p.ifname, Cidr::new(p.ip, p.prefix), p.gw, i == 0, p.v6)
                .await?;
            marks.push(("address+route", t0.elapsed()));
        }
        drop(inner);
        if !maps.is_empty() {
            self.apply_rules().await?;
            marks.push(("nft", t0.elapsed()));
        }
        // the sandbox is on disk before its container runs: a daemon killed from here on finds
        // it at restart (live-restore, addresses not given twice)
        self.persist(false)?;
        marks.push(("save", t0.elapsed()));
        tracing::debug!("network up {}: {marks:?}", &id[..id.len().min(12)]);
        let info = SandboxInfo {
            netns: path.to_path_buf(),
            addresses: plans.iter().map(|p| (p.net_name.clone(), p.ip)).collect(),
            user_defined: plans.iter().any(|p| p.user),
            address6: plans.iter().find_map(|p| p.v6.map(|v| v.ip)),
            gateway: plans.iter().find(|p| p.default_bridge).and_then(|_| {
                let st = lock(&self.st);
                st.s.networks
                    .iter()
                    .find(|n| n.predefined && n.is_bridge())
                    .and_then(|n| n.gateway)
            }),
        };
        Ok((info, ns))
    }

    /// Serve 127.0.0.11 inside the container's namespace, answering from our state.
    fn start_dns(&self, id: &str, ns: &File) -> Result<()> {
        if lock(&self.st).dns.contains_key(id) {
            return Ok(());
        }
        let ups = lock(&self.st)
            .upstreams
            .get(id)
            .cloned()
            .unwrap_or_default();
        let r = Arc::new(Resolver {
            st: Arc::downgrade(&self.st),
            id: id.to_owned(),
        });
        let h = berth_dns::Server::start(ns, r, ups)
            .map_err(|e| Error::Kernel(format!("starting the embedded DNS server: {e}")))?;
        lock(&self.st).dns.insert(id.to_owned(), h);
        Ok(())
    }

    /// Forget a sandbox's runtime state (addresses, ports, namespace).
    fn release(&self, id: &str, path: &Path) {
        let dns = {
            let mut st = lock(&self.st);
            st.upstreams.remove(id);
            st.dns.remove(id)
        };
        drop(dns);
        netlink::remove_netns(path);
        let mut st = lock(&self.st);
        st.held.remove(id);
        if let Some(m) = st.s.members.get_mut(id) {
            m.sandbox = None;
            for e in &mut m.endpoints {
                e.ip = None;
                e.ip6 = None;
                e.mac = None;
                e.veth = None;
                e.ifname = None;
                e.endpoint_id.clear();
            }
        }
        st.version += 1;
        drop(st);
        // a sandbox still on disk after a kill -9 is released again by `reconcile`
        self.persist_soon();
    }

    /// After the container's process is gone: drop the namespace (the kernel removes the
    /// veths), free the addresses and ports.
    pub async fn down(&self, id: &str) {
        let Some((path, had_ports)) = ({
            let st = lock(&self.st);
            st.s.members
                .get(id)
                .and_then(|m| m.sandbox.as_ref())
                .map(|s| (s.netns.clone(), !s.ports.is_empty()))
        }) else {
            return;
        };
        let t0 = std::time::Instant::now();
        self.release(id, &path);
        tracing::debug!(
            "network down {}: {:?}",
            &id[..id.len().min(12)],
            t0.elapsed()
        );
        if had_ports && let Err(e) = self.apply_rules().await {
            tracing::warn!("updating nftables after {id} stopped: {e}");
        }
    }

    /// At daemon start: containers no longer running lose their sandbox; running ones get
    /// their host ports reserved again.
    pub async fn reconcile(&self, running: &BTreeSet<String>) {
        let stale: Vec<String> = {
            let st = lock(&self.st);
            st.s.members
                .values()
                .filter(|m| m.sandbox.is_some() && !running.contains(&m.id))
                .map(|m| m.id.clone())
                .collect()
        };
        for id in stale {
            self.down(&id).await;
        }
        let dns_wanted = {
            let mut st = lock(&self.st);
            let State {
                s, held, version, ..
            } = &mut *st;
            for m in s.members.values() {
                let Some(sb) = &m.sandbox else { continue };
                let mut fds = Vec::new();
                for p in &sb.ports {
                    match ports::reserve(&p.proto, p.host_ip, p.host_port) {
                        Ok((fd, _)) => fds.push(fd),
                        Err(e) => {
                            tracing::warn!("re-reserving port {} of {}: {e}", p.host_port, m.id)
                        }
                    }
                }
                held.insert(m.id.clone(), fds);
            }
            // members of containers that no longer exist
            s.members
                .retain(|id, m| running.contains(id) || m.sandbox.is_none());
            *version += 1;
            let dns_wanted: Vec<(String, PathBuf)> = s
                .members
                .values()
                .filter_map(|m| {
                    let sb = m.sandbox.as_ref()?;
                    m.endpoints
                        .iter()
                        .any(|e| {
                            s.networks
                                .iter()
                                .any(|n| n.id == e.network && !n.predefined)
                        })
                        .then(|| (m.id.clone(), sb.netns.clone()))
                })
                .collect();
            for (id, _) in &dns_wanted {
                let dns: Vec<String> = Vec::new();
                st.upstreams.insert(id.clone(), upstreams(&dns));
            }
            dns_wanted
        };
        for (id, ns) in dns_wanted {
            let res = File::open(&ns)
                .map_err(|e| Error::Kernel(format!("opening {}: {e}", ns.display())))
                .and_then(|f| self.start_dns(&id, &f));
            if let Err(e) = res {
                tracing::warn!("embedded DNS of {id}: {e}");
            }
        }
        // the table was rendered at open from the state as found: without the ports of
        // sandboxes released or forgotten since
        if let Err(e) = self.apply_rules().await {
            tracing::warn!("updating nftables after restart: {e}");
        }
    }

    /// Drop registrations of containers the engine does not know: removed while we were down,
    /// or removed before a kill -9 took the background write of that (see `persist_soon`).
    /// A namespace such a registration still names goes too (`reconcile` then renders the
    /// rules without its ports).
    pub fn forget_unknown(&self, known: &BTreeSet<String>) {
        let mut st = lock(&self.st);
        let gone: Vec<String> =
            st.s.members
                .keys()
                .filter(|id| !known.contains(*id))
                .cloned()
                .collect();
        if gone.is_empty() {
            return;
        }
        for id in &gone {
            if let Some(sb) = st.s.members.remove(id).and_then(|m| m.sandbox) {
                netlink::remove_netns(&sb.netns);
            }
            st.held.remove(id);
        }
        st.version += 1;
        drop(st);
        let _ = self.persist(false);
    }

    /// At daemon shutdown: with no sandbox left, remove our bridges, table and netns mount.
    pub async fn shutdown(&self) {
        // what was left to a background write
        if let Err(e) = self.persist(false) {
            tracing::warn!("{e}");
        }
        let (bridges, busy) = {
            let st = lock(&self.st);
            (
                st.s.networks
                    .iter()
                    .filter(|n| n.is_bridge())
                    // a bridge given with -b is the admin's: it stays, as with dockerd
                    .filter(|n| !(n.predefined && n.bridge != DEFAULT_BRIDGE))
                    .map(|n| n.bridge.clone())
                    .collect::<Vec<_>>(),
                st.s.members.values().any(|m| m.sandbox.is_some()),
            )
        };
        if busy {
            return;
        }
        for b in bridges {
            if let Err(e) = self.nl.delete_link(&b).await {
                tracing::warn!("removing bridge {b}: {e}");
            }
        }
        let t = self.table.clone();
        let _ = tokio::task::spawn_blocking(move || nft::delete(&t)).await;
        // also when an earlier process of this daemon made the mount (a restart with
        // live-restore): umount2 of a directory that is no mount point just fails
        netlink::unmount_netns_dir(&self.netns_dir);
    }

    /// A running container's addresses (for /etc/hosts after connect).
    pub fn sandbox_info(&self, id: &str) -> Option<SandboxInfo> {
        let st = lock(&self.st);
        let m = st.s.members.get(id)?;
        let sb = m.sandbox.as_ref()?;
        let mut addresses = Vec::new();
        let mut user_defined = false;
        let mut gateway = None;
        let address6 = m.endpoints.iter().find_map(|e| e.ip6);
        for e in &m.endpoints {
            let Some(n) = st.s.networks.iter().find(|n| n.id == e.network) else {
                continue;
            };
            if let Some(ip) = e.ip {
                addresses.push((n.name.clone(), ip));
            }
            user_defined |= !n.predefined;
            if n.predefined {
                gateway = n.gateway;
            }
        }
        Some(SandboxInfo {
            netns: sb.netns.clone(),
            addresses,
            user_defined,
            gateway,
            address6,
        })
    }

    /// `network connect`: add the endpoint; with a running sandbox, wire it now.
    pub async fn connect(&self, id: &str, net_id: &str, endpoint: Option<&Value>) -> Result<()> {
        let spec = match endpoint {
            Some(v) if !v.is_null() => endpoint_spec(v)?,
            _ => EndpointSpec::default(),
        };
        struct Wire {
            netns: PathBuf,
            ip: Ipv4Addr,
            mac: [u8; 6],
            prefix: u8,
            gw: Option<Ipv4Addr>,
            br: String,
            veth: String,
            ifname: String,
            mtu: Option<u32>,
            v6: Option<V6>,
        }
        let wire = {
            let mut st = lock(&self.st);
            let net =
                st.s.networks
                    .iter()
                    .find(|n| n.id == net_id)
                    .cloned()
                    .ok_or_else(|| Error::NotFound(format!("network {net_id} not found")))?;
            if !net.is_bridge() {
                return Err(Error::Forbidden(
                    "container cannot be disconnected from host network or connected to host network".into(),
                ));
            }
            check_spec(&net, &spec)?;
            if net.predefined && !spec.aliases.is_empty() {
                return Err(Error::Invalid("network-scoped alias is supported only for containers in user defined networks".into()));
            }
            let mut used: BTreeSet<Ipv4Addr> =
                st.s.members
                    .values()
                    .flat_map(|m| m.endpoints.iter())
                    .filter(|e| e.network == net.id)
                    .filter_map(|e| e.ip)
                    .collect();
            let mut used6: BTreeSet<Ipv6Addr> =
                st.s.members
                    .values()
                    .flat_map(|m| m.endpoints.iter())
                    .filter(|e| e.network == net.id)
                    .filter_map(|e| e.ip6)
                    .collect();
            let nets = st.s.networks.clone();
            let m = st.s.members.get_mut(id).ok_or_else(|| {
                Error::NotFound(format!("no network configuration for container {id}"))
            })?;
            if m.endpoints.iter().any(|e| e.network == net.id) {
                return Err(Error::Forbidden(format!(
                    "endpoint with name {} already exists in network {}",
                    m.name, net.name
                )));
            }
            let mut ep = store::Endpoint {
                network: net.id.clone(),
                spec: spec.clone(),
                endpoint_id: String::new(),
                ip: None,
                ip6: None,
                mac: None,
                veth: None,
                ifname: None,
            };
            let wire = match (&m.sandbox, net.subnet, net.gateway) {
                (Some(sb), Some(subnet), Some(gw)) => {
                    used.insert(gw);
                    let ip = match spec.ipv4 {
                        Some(ip) if used.contains(&ip) => return Err(Error::Forbidden("Address already in use".into())),
                        Some(ip) => ip,
                        None => ipam::allocate(&subnet, net.ip_range.as_ref(), &used).ok_or_else(|| {
                            Error::Forbidden(format!("no available IPv4 addresses on this network's address pools: {} ({})", net.name, net.id))
                        })?,
                    };
                    let mac = spec
                        .mac
                        .as_deref()
                        .and_then(ipam::parse_mac)
                        .unwrap_or_else(|| ipam::mac_for(ip));
                    let has_route = m.endpoints.iter().any(|e| {
                        e.ip.is_some() && nets.iter().any(|n| n.id == e.network && !n.internal)
                    });
                    let taken: BTreeSet<String> = m
                        .endpoints
                        .iter()
                        .filter_map(|e| e.ifname.clone())
                        .collect();
                    let ifname = (0..)
                        .map(|i| format!("eth{i}"))
                        .find(|n| !taken.contains(n))
                        .unwrap_or_default();
                    let v6 = match (net.subnet6, net.gateway6) {
                        (Some(sub6), Some(gw6)) => {
                            used6.insert(gw6);
                            let ip6 = match spec.ipv6 {
                                Some(ip) if used6.contains(&ip) => return Err(Error::Forbidden("Address already in use".into())),
                                Some(ip) => ip,
                                None => ipam::allocate6(&sub6, &used6).ok_or_else(|| {
                                    Error::Forbidden(format!("no available IPv6 addresses on this network's address pools: {} ({})", net.name, net.id))
                                })?,
                            };
                            let has_route6 = m.endpoints.iter().any(|e| {
                                e.ip6.is_some()
                                    && nets.iter().any(|n| n.id == e.network && !n.internal)
                            });
                            Some(V6 {
                                ip: ip6,
                                prefix: sub6.prefix,
                                gw: (!has_route6 && !net.internal).then_some(gw6),
                            })
                        }
                        _ => None,
                    };
                    let r: [u8; 4] = rand::random();
                    let veth = format!("veth{}", &hex::encode(r)[..7]);
                    ep.ip = Some(ip);
                    ep.ip6 = v6.map(|v| v.ip);
                    ep.mac = Some(mac);
                    ep.veth = Some(veth.clone());
                    ep.ifname = Some(ifname.clone());
                    ep.endpoint_id = new_id();
                    Some(Wire {
                        netns: sb.netns.clone(),
                        ip,
                        mac,
                        prefix: subnet.prefix,
                        gw: (!has_route && !net.internal).then_some(gw),
                        br: net.bridge.clone(),
                        veth,
                        ifname,
                        mtu: net.mtu,
                        v6,
                    })
                }
                _ => None,
            };
            m.endpoints.push(ep);
            wire
        };
        if let Some(w) = wire {
            let res = async {
                let ns = File::open(&w.netns)
                    .map_err(|e| Error::Kernel(format!("opening {}: {e}", w.netns.display())))?;
                let br = self
                    .nl
                    .index(&w.br)
                    .await?
                    .ok_or_else(|| Error::Kernel(format!("bridge {} is missing", w.br)))?;
                self.nl
                    .add_veth(&w.veth, br, &ns, &w.ifname, w.mac, w.mtu)
                    .await?;
                if w.v6.is_some() {
                    netlink::enable_ipv6(&ns, &["lo", &w.ifname]).await?;
                }
                let inner = Netlink::inside(&ns)?;
                inner
                    .configure(&w.ifname, Cidr::new(w.ip, w.prefix), w.gw, false, w.v6)
                    .await?;
                let user = lock(&self.st)
                    .s
                    .networks
                    .iter()
                    .any(|n| n.id == net_id && !n.predefined);
                if user {
                    if !lock(&self.st).upstreams.contains_key(id) {
                        lock(&self.st)
                            .upstreams
                            .insert(id.to_owned(), upstreams(&[]));
                    }
                    self.start_dns(id, &ns)?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = res {
                let mut st = lock(&self.st);
                if let Some(m) = st.s.members.get_mut(id) {
                    m.endpoints.retain(|e| e.network != net_id);
                }
                return Err(e);
            }
        }
        lock(&self.st).version += 1;
        self.persist(false)
    }

    /// `network disconnect`.
    pub async fn disconnect(&self, id: &str, net_id: &str) -> Result<()> {
        let (ep, netns, had_ports) = {
            let mut st = lock(&self.st);
            let net_name =
                st.s.networks
                    .iter()
                    .find(|n| n.id == net_id)
                    .map(|n| n.name.clone())
                    .unwrap_or_default();
            let m = st.s.members.get_mut(id).ok_or_else(|| {
                Error::NotFound(format!("no network configuration for container {id}"))
            })?;
            let Some(i) = m.endpoints.iter().position(|e| e.network == net_id) else {
                return Err(Error::Forbidden(format!(
                    "container {id} is not connected to network {net_name}"
                )));
            };
            let ep = m.endpoints.remove(i);
            let netns = m.sandbox.as_ref().map(|s| s.netns.clone());
            let had_ports = m
                .sandbox
                .as_ref()
                .map(|s| !s.ports.is_empty())
                .unwrap_or(false);
            st.version += 1;
            (ep, netns, had_ports)
        };
        self.persist(false)?;
        if let (Some(ns), Some(ifname)) = (netns, ep.ifname) {
            let ns = File::open(&ns)
                .map_err(|e| Error::Kernel(format!("opening {}: {e}", ns.display())))?;
            Netlink::inside(&ns)?.remove_if(&ifname).await?;
            if had_ports {
                self.apply_rules().await?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ inspect

    /// Docker's `NetworkSettings` for a container.
    pub fn settings_json(
        &self,
        id: &str,
        exposed: Option<&Value>,
        bindings: Option<&Value>,
    ) -> Value {
        let st = lock(&self.st);
        let m = st.s.members.get(id);
        let sb = m.and_then(|m| m.sandbox.as_ref());
        let mut nets = serde_json::Map::new();
        let mut top = json!({
            "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        });
        if let Some(m) = m {
            if matches!(m.mode.as_str(), "host" | "none") {
                nets.insert(m.mode.clone(), endpoint_json(&st.s, m, None));
            }
            for e in &m.endpoints {
                let Some(n) = st.s.networks.iter().find(|n| n.id == e.network) else {
                    continue;
                };
                let j = endpoint_json(&st.s, m, Some(e));
                if n.predefined && n.is_bridge() {
                    for k in [
                        "EndpointID",
                        "Gateway",
                        "IPAddress",
                        "IPPrefixLen",
                        "MacAddress",
                    ] {
                        top[k] = j[k].clone();
                    }
                }
                nets.insert(n.name.clone(), j);
            }
        }
        let ports = match sb {
            Some(s) => ports::settings_json(&s.ports, exposed, bindings),
            None => json!({}),
        };
        let mut v = json!({
            "Bridge": "",
            "SandboxID": if sb.is_some() { json!(m.map(|m| sandbox_id(&m.id))) } else { json!("") },
            "SandboxKey": sb.map(|s| s.netns.display().to_string()).unwrap_or_default(),
            "Ports": ports,
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": Value::Null,
            "SecondaryIPv6Addresses": Value::Null,
            "Networks": nets,
        });
        if let (Value::Object(a), Value::Object(b)) = (&mut v, top) {
            a.extend(b);
        }
        v
    }

    /// `Ports` of `GET /containers/json`.
    pub fn ports_summary(&self, id: &str, exposed: Option<&Value>) -> Value {
        let st = lock(&self.st);
        let mut out = Vec::new();
        let mut published = BTreeSet::new();
        if let Some(sb) = st.s.members.get(id).and_then(|m| m.sandbox.as_ref()) {
            for p in &sb.ports {
                published.insert((p.port, p.proto.clone()));
                out.push(json!({
                    "IP": p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                    "PrivatePort": p.port,
                    "PublicPort": p.host_port,
                    "Type": p.proto,
                }));
            }
        }
        if let Some(Value::Object(e)) = exposed {
            for k in e.keys() {
                let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
                if let Ok(p) = p.parse::<u16>()
                    && !published.contains(&(p, proto.to_owned()))
                {
                    out.push(json!({ "PrivatePort": p, "Type": proto }));
                }
            }
        }
        Value::Array(out)
    }

    /// `NetworkSettings.Networks` of `GET /containers/json`.
    pub fn networks_summary(&self, id: &str) -> Value {
        let v = self.settings_json(id, None, None);
        v.get("Networks").cloned().unwrap_or(json!({}))
    }
}

fn sandbox_id(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("sandbox-{id}").as_bytes()))
}

fn endpoint_json(s: &store::State, m: &Member, e: Option<&store::Endpoint>) -> Value {
    let net = e.and_then(|e| s.networks.iter().find(|n| n.id == e.network));
    let net_id = match (net, m.mode.as_str()) {
        (Some(n), _) => n.id.clone(),
        (None, mode) => s
            .networks
            .iter()
            .find(|n| n.name == mode && n.predefined)
            .map(|n| n.id.clone())
            .unwrap_or_default(),
    };
    let ip = e.and_then(|e| e.ip);
    let running = m.sandbox.is_some();
    let user = net.map(|n| !n.predefined).unwrap_or(false);
    let aliases = e.map(|e| e.spec.aliases.clone()).unwrap_or_default();
    let mut dns = Vec::new();
    if user {
        dns.push(m.name.clone());
        dns.push(m.id[..12.min(m.id.len())].to_owned());
        dns.extend(aliases.iter().cloned());
    }
    let ipam = e
        .filter(|e| e.spec.ipv4.is_some() || e.spec.ipv6.is_some())
        .map(|e| {
            let mut c = serde_json::Map::new();
            if let Some(ip) = e.spec.ipv4 {
                c.insert("IPv4Address".into(), json!(ip.to_string()));
            }
            if let Some(ip) = e.spec.ipv6 {
                c.insert("IPv6Address".into(), json!(ip.to_string()));
            }
            Value::Object(c)
        });
    json!({
        "IPAMConfig": ipam,
        "Links": e.filter(|e| !e.spec.links.is_empty()).map(|e| json!(e.spec.links)),
        "Aliases": if aliases.is_empty() { Value::Null } else { json!(aliases) },
        "MacAddress": if running { e.and_then(|e| e.mac).map(|m| ipam::mac_string(&m)).unwrap_or_default() } else { String::new() },
        "DriverOpts": Value::Null,
        "GwPriority": 0,
        "NetworkID": net_id,
        "EndpointID": if running { e.map(|e| e.endpoint_id.clone()).unwrap_or_default() } else { String::new() },
        "Gateway": match (running && ip.is_some(), net.and_then(|n| n.gateway)) { (true, Some(g)) => g.to_string(), _ => String::new() },
        "IPAddress": if running { ip.map(|i| i.to_string()).unwrap_or_default() } else { String::new() },
        "IPPrefixLen": if running && ip.is_some() { net.and_then(|n| n.subnet).map(|s| s.prefix).unwrap_or(0) } else { 0 },
        "IPv6Gateway": match (running, e.and_then(|e| e.ip6), net.and_then(|n| n.gateway6)) { (true, Some(_), Some(g)) => g.to_string(), _ => String::new() },
        "GlobalIPv6Address": match (running, e.and_then(|e| e.ip6)) { (true, Some(ip)) => ip.to_string(), _ => String::new() },
        "GlobalIPv6PrefixLen": match (running, e.and_then(|e| e.ip6), net.and_then(|n| n.subnet6)) { (true, Some(_), Some(s)) => s.prefix, _ => 0 },
        "DNSNames": if dns.is_empty() { Value::Null } else { json!(dns) },
    })
}

fn find<'a>(nets: &'a [Network], key: &str) -> Result<&'a Network> {
    if let Some(n) = nets.iter().find(|n| n.name == key || n.id == key) {
        return Ok(n);
    }
    let hits: Vec<&Network> = nets
        .iter()
        .filter(|n| !key.is_empty() && n.id.starts_with(key))
        .collect();
    match hits.len() {
        1 => Ok(hits[0]),
        0 => Err(Error::NotFound(format!("network {key} not found"))),
        _ => Err(Error::Invalid(format!(
            "network {key} is ambiguous ({} matches found based on ID prefix)",
            hits.len()
        ))),
    }
}

fn endpoint_spec(v: &Value) -> Result<EndpointSpec> {
    let strs = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let ipv4 = match v.pointer("/IPAMConfig/IPv4Address").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| Error::Invalid(format!("invalid IPv4 address: {s}")))?,
        ),
        _ => None,
    };
    let mac = match v.get("MacAddress").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => {
            ipam::parse_mac(s)
                .ok_or_else(|| Error::Invalid(format!("invalid MAC address: {s}")))?;
            Some(s.to_owned())
        }
        _ => None,
    };
    let ipv6 = match v.pointer("/IPAMConfig/IPv6Address").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Some(
            s.parse::<Ipv6Addr>()
                .map_err(|_| Error::Invalid(format!("invalid IPv6 address: {s}")))?,
        ),
        _ => None,
    };
    Ok(EndpointSpec {
        aliases: strs("Aliases"),
        ipv4,
        ipv6,
        mac,
        links: strs("Links"),
    })
}

/// A container's IPv6 address on a network, and the default route's gateway if this network
/// gives it.
#[derive(Debug, Clone, Copy)]
pub struct V6 {
    pub ip: Ipv6Addr,
    pub prefix: u8,
    pub gw: Option<Ipv6Addr>,
}

/// The IPv6 subnet and gateway of a new `--ipv6` network. dockerd 20.10 has no default IPv6
/// pools: the subnet must be given.
fn ipv6_pool(nets: &[Network], req: &CreateRequest) -> Result<(Cidr6, Ipv6Addr, bool)> {
    let Some(s) = req
        .subnet6
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        // dockerd's status too
        return Err(Error::NotFound(
            "could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network".into(),
        ));
    };
    let c: Cidr6 = s.parse().map_err(Error::Invalid)?;
    let c = c.network();
    if c.prefix > 126 {
        return Err(Error::Invalid(format!("subnet {c} is too small")));
    }
    if let Some(o) = nets
        .iter()
        .filter_map(|n| n.subnet6)
        .find(|o| o.overlaps(&c))
    {
        return Err(Error::Forbidden(format!(
            "Pool overlaps with other one on this address space ({c} and {})",
            o.network()
        )));
    }
    let given = req.gateway6.as_deref().is_some_and(|g| !g.is_empty());
    let gw = match req.gateway6.as_deref().filter(|g| !g.is_empty()) {
        Some(g) => {
            let ip: Ipv6Addr = g
                .split('/')
                .next()
                .unwrap_or("")
                .parse()
                .map_err(|_| Error::Invalid(format!("invalid gateway address: {g}")))?;
            if !c.contains(ip) {
                return Err(Error::Invalid(format!(
                    "no matching subnet for gateway {g}"
                )));
            }
            ip
        }
        None => Ipv6Addr::from(c.first() + 1),
    };
    Ok((c, gw, given))
}

fn check_spec(net: &Network, spec: &EndpointSpec) -> Result<()> {
    if let Some(ip) = spec.ipv4 {
        if net.predefined || !net.user_ipam {
            return Err(Error::Invalid("user specified IP address is supported only when connecting to networks with user configured subnets".into()));
        }
        if !net.subnet.map(|s| s.contains(ip)).unwrap_or(false) {
            return Err(Error::Invalid(format!(
                "no configured subnet or ip-range contain the IP address {ip}"
            )));
        }
    }
    if let Some(ip) = spec.ipv6 {
        if net.predefined || net.subnet6.is_none() {
            return Err(Error::Invalid("user specified IP address is supported only when connecting to networks with user configured subnets".into()));
        }
        if !net.subnet6.is_some_and(|s| s.contains(ip)) {
            return Err(Error::Invalid(format!(
                "no configured subnet or ip-range contain the IP address {ip}"
            )));
        }
    }
    Ok(())
}

/// Reserve a host port from a request's range (or an ephemeral one).
fn reserve_range(r: &ports::PortRequest) -> Result<(OwnedFd, u16)> {
    let ip = r
        .host_ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "0.0.0.0".into());
    let (lo, hi) = r.host_ports;
    if lo == 0 {
        return ports::reserve(&r.proto, r.host_ip, 0).map_err(|e| {
            Error::Kernel(format!(
                "failed to allocate a host port for {ip}:{}/{}: {e}",
                r.port, r.proto
            ))
        });
    }
    let mut last = None;
    for p in lo..=hi {
        match ports::reserve(&r.proto, r.host_ip, p) {
            Ok(x) => return Ok(x),
            Err(e) => last = Some(e),
        }
    }
    let e = last.map(|e| e.to_string()).unwrap_or_default();
    let port = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    };
    Err(Error::Kernel(format!(
        "driver failed programming external connectivity: Bind for {ip}:{port} failed: port is already allocated ({e})"
    )))
}

/// The resolvers the embedded DNS forwards to: `--dns` if given, else the host's.
fn upstreams(dns: &[String]) -> Vec<std::net::SocketAddr> {
    let given: Vec<std::net::SocketAddr> = dns
        .iter()
        .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect();
    if !given.is_empty() {
        return given;
    }
    berth_dns::host_upstreams(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// One container's view of names: the containers sharing a user-defined network with it, by
/// name, short ID, `--network-alias`, and `name.network`.
struct Resolver {
    st: std::sync::Weak<Mutex<State>>,
    id: String,
}

impl Resolver {
    fn each(&self, mut f: impl FnMut(&Member, &store::Endpoint, &Network)) {
        let Some(st) = self.st.upgrade() else { return };
        let st = lock(&st);
        let Some(me) = st.s.members.get(&self.id) else {
            return;
        };
        let mine: Vec<&String> = me.endpoints.iter().map(|e| &e.network).collect();
        for m in st.s.members.values().filter(|m| m.sandbox.is_some()) {
            for e in &m.endpoints {
                if !mine.contains(&&e.network) || e.ip.is_none() {
                    continue;
                }
                if let Some(n) =
                    st.s.networks
                        .iter()
                        .find(|n| n.id == e.network && !n.predefined)
                {
                    f(m, e, n);
                }
            }
        }
    }
}

impl Resolver {
    /// `--link target:alias` of this container on user networks: (network id, target) of
    /// the links whose alias is `q`.
    fn link_targets(&self, q: &str) -> Vec<(String, String)> {
        let Some(st) = self.st.upgrade() else {
            return Vec::new();
        };
        let st = lock(&st);
        let Some(me) = st.s.members.get(&self.id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in &me.endpoints {
            for l in &e.spec.links {
                let (target, alias) = l.split_once(':').unwrap_or((l, l));
                let alias = alias.rsplit('/').next().unwrap_or(alias);
                if alias.eq_ignore_ascii_case(q) {
                    out.push((
                        e.network.clone(),
                        target.trim_start_matches('/').to_ascii_lowercase(),
                    ));
                }
            }
        }
        out
    }
}

impl berth_dns::Resolve for Resolver {
    fn lookup(&self, name: &str) -> Vec<std::net::IpAddr> {
        let q = name.trim_end_matches('.').to_ascii_lowercase();
        let links = self.link_targets(&q);
        let mut out = Vec::new();
        self.each(|m, e, n| {
            let linked = links.iter().any(|(net, t)| {
                *net == e.network && (m.name.eq_ignore_ascii_case(t) || m.id == *t)
            });
            let hit = linked
                || m.name.eq_ignore_ascii_case(&q)
                || (q.len() == 12 && m.id.starts_with(&q))
                || e.spec.aliases.iter().any(|a| a.eq_ignore_ascii_case(&q))
                || format!("{}.{}", m.name, n.name).eq_ignore_ascii_case(&q);
            if hit {
                let v4 = e.ip.map(std::net::IpAddr::V4);
                let v6 = e.ip6.map(std::net::IpAddr::V6);
                for ip in v4.into_iter().chain(v6) {
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
        });
        out
    }

    fn reverse(&self, addr: std::net::IpAddr) -> Option<String> {
        let mut out = None;
        self.each(|m, e, n| {
            if out.is_none()
                && (e.ip.map(std::net::IpAddr::V4) == Some(addr)
                    || e.ip6.map(std::net::IpAddr::V6) == Some(addr))
            {
                out = Some(format!("{}.{}", m.name, n.name));
            }
        });
        out
    }
}
