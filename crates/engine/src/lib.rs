//! berth-engine: the services behind the API routes (images, containers, networks, volumes,
//! builds, events) and their orchestration. Owns engine state and startup reconciliation.
//! Must not: know HTTP (routes live in berth-api) or parse CLI flags.
//!
//! Today: the images service over `berth_image::ImageStore`, the events bus, and host info.

#![recursion_limit = "256"]

pub mod builds;
pub mod containers;
pub mod error;
pub mod events;
pub mod execroot;
pub mod fetch;
pub mod images;
pub mod info;
pub mod models;
pub mod networks;
pub mod registry;
pub mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_image::ImageStore;

pub use containers::Containers;
pub use error::{Error, ErrorKind, Result};
pub use events::{Event, EventBus, EventFilter};
pub use images::Images;
pub use volumes::Volumes;

/// An extra OCI runtime (`--add-runtime name=path`, daemon.json `runtimes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    pub path: String,
    pub args: Vec<String>,
}

/// What the daemon's flags and daemon.json decided, as far as the engine cares.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub debug: bool,
    pub live_restore: bool,
    /// `--init`: docker-init in every container unless `HostConfig.Init` says otherwise.
    pub init: bool,
    /// `--init-path`.
    pub init_path: Option<PathBuf>,
    pub default_runtime: String,
    pub runtimes: BTreeMap<String, Runtime>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    /// `--max-concurrent-downloads` / `--max-concurrent-uploads` (None: the distribution
    /// crate's defaults).
    pub max_concurrent_downloads: Option<usize>,
    pub max_concurrent_uploads: Option<usize>,
    /// `--bip`: the default bridge's address (used once networks exist)
    pub bip: Option<String>,
    /// `-b/--bridge`: attach the default network to this bridge ("none" disables it)
    pub bridge: Option<String>,
    /// `--fixed-cidr`, `--mtu`, `--ip-forward`, `--ip-masq`, `--icc`
    pub fixed_cidr: Option<String>,
    pub mtu: Option<u32>,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub icc: bool,
    /// Load the embedded hello-world image at startup when missing.
    pub load_hello_world: bool,
    /// `--cgroup-favordynmods`: turn the kernel's `favordynmods` cgroup option on at start-up
    /// (containers::cgroupfs says why).
    pub cgroup_favordynmods: bool,
}

impl EngineConfig {
    pub fn new(data_root: impl Into<PathBuf>, exec_root: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_root: data_root.into(),
            exec_root: exec_root.into(),
            debug: false,
            live_restore: false,
            init: false,
            init_path: None,
            default_runtime: "runc".to_owned(),
            runtimes: BTreeMap::new(),
            insecure_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            max_concurrent_downloads: None,
            max_concurrent_uploads: None,
            bip: None,
            bridge: None,
            fixed_cidr: None,
            mtu: None,
            ip_forward: true,
            ip_masq: true,
            icc: true,
            load_hello_world: true,
            cgroup_favordynmods: true,
        }
    }
}

pub struct Engine {
    /// Stable daemon ID (`docker info` ID), kept in `<data-root>/engine-id`.
    pub id: String,
    pub config: EngineConfig,
    pub events: Arc<EventBus>,
    pub images: Images,
    pub containers: Containers,
    pub networks: Arc<berth_network::Networks>,
    /// The /networks API (events, filters) over `networks`.
    pub network_service: networks::NetworkService,
    pub volumes: Volumes,
    /// The builder's step cache and cache mounts.
    pub builds: builds::Builds,
}

/// The embedded hello-world docker-archive (offline `berth run hello-world`).
fn hello_world_archive() -> Option<Vec<u8>> {
    Some(berth_hello::archive())
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::internal(format!("{what}: {e}"))
}

/// Read or create the engine ID (UUID v4 text, like dockerd's `engine-id`).
fn engine_id(data_root: &std::path::Path) -> Result<String> {
    let path = data_root.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_owned());
        }
    }
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    let id = format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    );
    berth_atomicfile::write(&path, id.as_bytes(), true)
        .map_err(|e| io_err("writing engine-id", e))?;
    Ok(id)
}

impl Engine {
    /// Open the engine's state under `config.data_root` (created if needed).
    pub async fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        let root = config.data_root.clone();
        let exec_root = config.exec_root.clone();
        let favor = config.cgroup_favordynmods;
        let (store, id, builds) = tokio::task::spawn_blocking(move || -> Result<_> {
            if favor {
                containers::favor_cgroup_dynmods();
            }
            std::fs::create_dir_all(&root)
                .map_err(|e| io_err(&format!("creating data root {}", root.display()), e))?;
            std::fs::create_dir_all(&exec_root)
                .map_err(|e| io_err(&format!("creating exec root {}", exec_root.display()), e))?;
            let store = ImageStore::open(&root)?;
            let builds = builds::Builds::open(&root)?;
            Ok((store, engine_id(&root)?, builds))
        })
        .await??;
        let events = Arc::new(EventBus::new());
        let store = Arc::new(store);
        let mut ncfg = berth_network::Config::new(&config.data_root, &config.exec_root);
        ncfg.bridge = config.bridge.clone();
        ncfg.bip = config.bip.clone();
        ncfg.fixed_cidr = config.fixed_cidr.clone();
        ncfg.mtu = config.mtu;
        ncfg.ip_forward = config.ip_forward;
        ncfg.ip_masq = config.ip_masq;
        ncfg.icc = config.icc;
        let networks = berth_network::Networks::open(ncfg)
            .await
            .map_err(|e| Error::internal(format!("setting up networking: {e}")))?;
        let data_root = config.data_root.clone();
        let ev = events.clone();
        let opened = async {
            let volumes =
                tokio::task::spawn_blocking(move || Volumes::open(&data_root, ev)).await??;
            // loads the container records and reconciles them with the shims still running
            let containers = Containers::open(
                &config.data_root,
                &config.exec_root,
                store.clone(),
                volumes.clone(),
                events.clone(),
                networks.clone(),
                containers::Options {
                    init: config.init,
                    init_path: config.init_path.clone(),
                    default_runtime: config.default_runtime.clone(),
                    runtimes: config.runtimes.clone(),
                },
            )
            .await?;
            Ok::<_, Error>((volumes, containers))
        }
        .await;
        let (volumes, containers) = match opened {
            Ok(v) => v,
            Err(e) => {
                // a start failing half-way must not leave our bridges and nftables table
                // behind (kept if a container still runs: live-restore)
                networks.shutdown().await;
                return Err(e);
            }
        };
        let images = Images::new(store, events.clone());
        images.set_containers(containers.clone());
        let network_service =
            networks::NetworkService::new(networks.clone(), events.clone(), containers.clone());
        let mut rc =
            registry::registry_config(&config.insecure_registries, &config.registry_mirrors);
        if let Some(n) = config.max_concurrent_downloads {
            rc.max_concurrent_downloads = n;
        }
        if let Some(n) = config.max_concurrent_uploads {
            rc.max_concurrent_uploads = n;
        }
        images.set_registry(rc);
        let engine = Arc::new(Engine {
            id,
            config,
            events,
            images,
            network_service,
            containers,
            networks,
            volumes,
            builds,
        });
        if engine.config.load_hello_world
            && let Some(archive) = hello_world_archive()
            && let Err(e) = engine
                .images
                .ensure_loaded("hello-world:latest", archive)
                .await
        {
            // Not fatal: the daemon is useful without it.
            tracing::warn!("loading the embedded hello-world image: {e}");
        }
        // restart policies, auto-remove leftovers (after the images are there)
        engine.containers.autostart().await;
        Ok(engine)
    }

    /// Daemon shutdown: stop the running containers (unless live-restore), each within its
    /// stop timeout, all within `timeout` (`--shutdown-timeout`); then, with no container
    /// running, remove our bridges and nftables table.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        self.containers
            .shutdown(self.config.live_restore, timeout)
            .await;
        self.networks.shutdown().await;
    }

    /// Number of `GET /events` streams open now (`docker info` NEventsListener).
    pub fn events_listeners(&self) -> usize {
        self.events.listeners()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn engine_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::engine_id(dir.path()).unwrap();
        let b = super::engine_id(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
