//! Persistent state: `<data-root>/network/state.json` (networks, each container's endpoints
//! and the sandbox in force). Written whole, temp + exchange, outside the state lock (the crate's
//! `Saver`): a kill -9 of berthd loses nothing that was written (the page cache survives the
//! process); network create/remove also fsync. Releases of sandboxes and removals of
//! containers are written in the background: what a kill -9 loses of them the next start
//! repairs.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ipam::{Cidr, Cidr6};
use crate::ports::PortMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// bridge | host | null
    pub driver: String,
    pub created: String,
    pub subnet: Option<Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Cidr>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
    /// The Linux bridge (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    #[serde(default = "yes")]
    pub icc: bool,
    #[serde(default = "yes")]
    pub masquerade: bool,
    pub mtu: Option<u32>,
    /// IPAM.Config was given by the user (shown as such in inspect).
    #[serde(default)]
    pub user_ipam: bool,
    /// So was its gateway (inspect shows a given subnet's gateway only then, as dockerd).
    #[serde(default)]
    pub gateway_given: bool,
    /// bridge, host, none: cannot be removed.
    #[serde(default)]
    pub predefined: bool,
    /// `--ipv6`: the IPv6 subnet and the bridge's address in it.
    #[serde(default)]
    pub subnet6: Option<Cidr6>,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// The IPv6 gateway was given (inspect shows it only then, as dockerd).
    #[serde(default)]
    pub gateway6_given: bool,
}

fn yes() -> bool {
    true
}

impl Network {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
}

/// What a container asked of one network (`NetworkingConfig.EndpointsConfig`, connect).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointSpec {
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    /// `--ip6`
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    pub mac: Option<String>,
    /// `--link name:alias` (default bridge)
    #[serde(default)]
    pub links: Vec<String>,
}

/// A container on one network: its request and, while it runs, what it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub spec: EndpointSpec,
    #[serde(default)]
    pub endpoint_id: String,
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<[u8; 6]>,
    pub veth: Option<String>,
    pub ifname: Option<String>,
}

/// The running part: the namespace file and the ports in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    pub netns: PathBuf,
    #[serde(default)]
    pub ports: Vec<PortMap>,
}

/// One container's networking.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// NetworkMode as given (`bridge`, `host`, `none`, `container:<id>`, a network name).
    pub mode: String,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    pub sandbox: Option<Sandbox>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub members: BTreeMap<String, Member>,
}

pub fn path(data_root: &Path) -> PathBuf {
    data_root.join("network").join("state.json")
}

pub fn load(file: &Path) -> std::io::Result<State> {
    match std::fs::read(file) {
        Ok(d) => serde_json::from_slice(&d).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e),
    }
}

pub fn save(file: &Path, st: &State, durable: bool) -> std::io::Result<()> {
    let data = serde_json::to_vec(st).map_err(std::io::Error::other)?;
    write(file, &data, durable)
}

/// Replace the state file with `data` (serialised state), swapped with its temp file
/// (`berth_atomicfile::swap`: a container's run saves at least twice, and two reused inodes
/// spare the filesystem an allocation per save).
pub fn write(file: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d)?;
    }
    berth_atomicfile::swap(file, data, durable)
}
