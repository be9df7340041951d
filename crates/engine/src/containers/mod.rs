//! The containers service: Docker's container lifecycle over per-container shims.
//!
//! State: one `config.v2.json` per container under `<data-root>/containers/<id>/` (the truth),
//! mirrored in memory, with its hosts/hostname/resolv.conf and its log; a removed container's
//! directories pass through `containers/.trash` (renamed there, deleted after the reply).
//! Filesystem: an overlay mount at `<data-root>/overlay2/<id>-rw/merged` over the shared init
//! layer and the image's layers (held with `hold_layers` until removal), mounted while the
//! container runs or someone needs its files (mount.rs, rootfs.rs). Process: a `berth-shim`
//! per started container, state dir `<exec-root>/c/<id[..16]>` (short: unix socket paths are
//! limited to 108 bytes), which is also the OCI bundle (`config.json`, written at each
//! start); libcontainer state under `<exec-root>/rt`. The exec root is a tmpfs (execroot.rs).
//! The engine never runs libcontainer itself; each running container has a monitor task
//! blocked on the shim's `wait`, which records the exit.
//!
//! Networking (net.rs over berth-network): `host` shares the host's namespace, `none` gets a
//! fresh one with only `lo`, `container:<id>` joins another's; bridge and user networks get a
//! sandbox (namespace + veths + addresses + ports) set up before the process runs and dropped
//! when it exits.

mod archive;
mod cgroupfs;
mod commit;
mod exec;
mod features;
mod fsview;
mod health;
mod lifecycle;
mod logs;
mod mount;
mod mounts;
mod names;
mod net;
mod record;
mod rootfs;
mod shim;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_image::{ImageStore, ImageUsage};
use berth_runtime::{ContainerSpecInput, NetworkMode, Resources, SeccompMode, Ulimit};
use berth_shim_proto::{self as proto, ExitInfo, Reply, Request, StartResult};
use berth_types::Digest;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use crate::error::{Error, Result};
use crate::events::{Actor, EventBus};

pub use archive::{PathStat, RootView};
pub use commit::CommitOptions;
pub use exec::ExecOptions;
pub use lifecycle::{BUILTIN_RUNTIME, Options};
pub use logs::{LogOptions, Message as LogMessage};
pub use mount::RootfsGuard;
pub use mounts::{HostMount, MountPoint, resolve_host_path};
pub use net::net_error;
pub use record::Record;
pub use shim::pool_start as start_shim_pool;

/// `--cgroup-favordynmods` at start-up (cgroupfs.rs): logged, never fatal. Blocking.
pub fn favor_cgroup_dynmods() {
    match cgroupfs::favor_dynmods() {
        Ok(cgroupfs::Outcome::Set(p)) => {
            tracing::info!("cgroup option favordynmods turned on for {}", p.display())
        }
        Ok(cgroupfs::Outcome::AlreadySet(p)) => {
            tracing::debug!("cgroup option favordynmods already on for {}", p.display())
        }
        Ok(cgroupfs::Outcome::NoCgroupfs) => tracing::warn!("no cgroup filesystem is mounted"),
        Err(e) => tracing::warn!(
            "container starts will be slower: {e} (--cgroup-favordynmods=false silences this)"
        ),
    }
}

/// A hijacked client stream (attach/exec), as the API hands it over.
pub trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> ClientIo for T {}
pub type BoxIo = Box<dyn ClientIo>;

#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Replay the log first (`logs=1`).
    pub logs: bool,
    /// Then stream live output (`stream=1`).
    pub stream: bool,
}

struct PendingAttach {
    opts: AttachOptions,
    io: oneshot::Receiver<BoxIo>,
}

pub struct Container {
    pub id: String,
    rec: Mutex<Record>,
    /// Bumped on every recorded exit.
    exits: watch::Sender<u64>,
    /// Some(exit code) once removed.
    removed: watch::Sender<Option<i32>>,
    pending: Mutex<Vec<PendingAttach>>,
    /// Current restart back-off in ms (0 = none yet).
    backoff: Mutex<u64>,
    /// `State.Health` while a health check runs.
    health: Mutex<Option<health::Health>>,
    /// Serializes start/stop/remove of this container.
    op: tokio::sync::Mutex<()>,
    /// Who holds the rootfs mount (mount.rs).
    rootfs: Mutex<mount::RootfsState>,
    /// A `restart` is stopping it: its exit does not auto-remove it (dockerd turns AutoRemove
    /// off around the stop of a restart).
    restarting: std::sync::atomic::AtomicBool,
}

impl Container {
    fn new(rec: Record) -> Arc<Container> {
        Arc::new(Container {
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            exits: watch::channel(0).0,
            removed: watch::channel(None).0,
            pending: Mutex::new(Vec::new()),
            backoff: Mutex::new(0),
            health: Mutex::new(None),
            op: tokio::sync::Mutex::new(()),
            rootfs: Mutex::new(mount::RootfsState::default()),
            restarting: std::sync::atomic::AtomicBool::new(false),
        })
    }
    pub fn record(&self) -> Record {
        lock(&self.rec).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // a panic elsewhere must not wedge every later request
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_rfc3339() -> String {
    proto::rfc3339_nanos(std::time::SystemTime::now())
}

fn io_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

struct Inner {
    root: PathBuf,
    exec_root: PathBuf,
    images: Arc<ImageStore>,
    volumes: crate::volumes::Volumes,
    events: Arc<EventBus>,
    nets: Arc<berth_network::Networks>,
    map: Mutex<HashMap<String, Arc<Container>>>,
    execs: Mutex<HashMap<String, Arc<exec::Exec>>>,
    opts: Options,
    /// The daemon is shutting down: exits restart nothing.
    shutting_down: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct Containers(Arc<Inner>);

/// `POST /containers/{id}/wait?condition=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub all: bool,
    pub limit: Option<usize>,
    pub size: bool,
    pub filters: BTreeMap<String, Vec<String>>,
}

/// Docker's signal names (with or without `SIG`) or numbers.
pub fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (n > 0 && n < 65).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => return None,
    })
}

/// `busybox` -> `busybox:latest`, for Docker's "No such image" message.
fn with_latest(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') || berth_types::reference::is_full_hex_id(image) {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

fn str_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_owned())
                .collect(),
        ),
        Some(Value::String(s)) => Some(vec![s.clone()]),
        _ => None,
    }
}

fn env_key(kv: &str) -> &str {
    kv.split_once('=').map(|(k, _)| k).unwrap_or(kv)
}

impl Containers {
    /// Load every container record and reconcile with the shims that are (or are not) there.
    pub async fn open(
        data_root: &Path,
        exec_root: &Path,
        images: Arc<ImageStore>,
        volumes: crate::volumes::Volumes,
        events: Arc<EventBus>,
        nets: Arc<berth_network::Networks>,
        opts: Options,
    ) -> Result<Containers> {
        let root = data_root.join("containers");
        let r = root.clone();
        let store = images.clone();
        let recs = blocking(move || {
            std::fs::create_dir_all(&r).map_err(|e| io_err("creating containers dir", e))?;
            rootfs::ensure_init_layer(store.overlay_root())
                .map_err(|e| io_err("creating the init layer", e))?;
            empty_trash(&store, &r.join(TRASH));
            let mut out = Vec::new();
            for ent in std::fs::read_dir(&r)
                .map_err(|e| io_err("reading containers dir", e))?
                .flatten()
            {
                if ent.file_name() == TRASH {
                    continue;
                }
                match record::load(&ent.path()) {
                    Ok(rec) if rec.id.len() == 64 => out.push(rec),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("skipping container {}: {e}", ent.path().display()),
                }
            }
            // holds whose release a crash lost (releases of `--rm` containers are not synced)
            let ids: std::collections::HashSet<&str> = out.iter().map(|r| r.id.as_str()).collect();
            if let Err(e) = store.forget_holders(&|h| ids.contains(h)) {
                tracing::warn!("dropping stale layer holds: {e}");
            }
            Ok(out)
        })
        .await?;
        let c = Containers(Arc::new(Inner {
            root,
            exec_root: exec_root.to_path_buf(),
            images,
            volumes,
            events,
            nets,
            map: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            opts,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        }));
        let known: std::collections::BTreeSet<String> = recs.iter().map(|r| r.id.clone()).collect();
        c.0.nets.forget_unknown(&known);
        for rec in recs {
            c.restore_mounts(&rec);
            let running = rec.running();
            let ctr = Container::new(rec);
            lock(&c.0.map).insert(ctr.id.clone(), ctr.clone());
            if running {
                // its rootfs is still mounted, held by the run (released at its exit)
                *lock(&ctr.rootfs) = mount::RootfsState::running();
                c.reconnect(ctr).await;
            }
        }
        let running = c
            .all()
            .iter()
            .filter(|x| x.record().running())
            .map(|x| x.id.clone())
            .collect();
        c.0.nets.reconcile(&running).await;
        // restart policies and leftovers: `autostart`, once the daemon options are set
        Ok(c)
    }

    pub fn networks(&self) -> &Arc<berth_network::Networks> {
        &self.0.nets
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.0.root.join(id)
    }
    fn state_dir(&self, id: &str) -> PathBuf {
        self.0.exec_root.join("c").join(&id[..16])
    }
    fn trash_dir(&self) -> PathBuf {
        self.0.root.join(TRASH)
    }
    fn runtime_root(&self) -> PathBuf {
        self.0.exec_root.join("rt")
    }
    fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(format!("{id}-json.log"))
    }

    /// After a daemon restart: a live shim gets a new monitor; an exit recorded by the shim
    /// while we were down is applied; no shim at all means it died with its container.
    async fn reconnect(&self, ctr: Arc<Container>) {
        let sd = self.state_dir(&ctr.id);
        match shim::request(&sd, &Request::State).await {
            Ok(_) => {
                self.spawn_monitor(ctr.clone());
                self.spawn_health(ctr);
            }
            Err(_) => {
                let exit = std::fs::read(sd.join(proto::EXIT_FILE))
                    .ok()
                    .and_then(|d| serde_json::from_slice::<ExitInfo>(&d).ok());
                let info = exit.unwrap_or_else(|| {
                    // the shim is gone without an exit record: clean its cgroup leftovers
                    remove_cgroups(&ctr.id);
                    ExitInfo {
                        exit_code: 255,
                        oom_killed: false,
                        finished_at: now_rfc3339(),
                        pid: 0,
                    }
                });
                self.record_exit(&ctr, info).await;
            }
        }
    }

    /// Find a container by full ID, name (with or without `/`) or unique ID prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Arc<Container>> {
        let map = lock(&self.0.map);
        if let Some(c) = map.get(name_or_id) {
            return Ok(c.clone());
        }
        let want = format!("/{}", name_or_id.trim_start_matches('/'));
        if let Some(c) = map.values().find(|c| lock(&c.rec).name == want) {
            return Ok(c.clone());
        }
        let mut found = map
            .values()
            .filter(|c| !name_or_id.is_empty() && c.id.starts_with(name_or_id));
        match (found.next(), found.next()) {
            (Some(c), None) => Ok(c.clone()),
            (Some(_), Some(_)) => Err(Error::invalid(format!(
                "multiple IDs found with provided prefix: {name_or_id}"
            ))),
            _ => Err(Error::not_found(format!("No such container: {name_or_id}"))),
        }
    }

    pub fn all(&self) -> Vec<Arc<Container>> {
        lock(&self.0.map).values().cloned().collect()
    }

    fn log_event(&self, rec: &Record, action: &str, extra: &[(&str, String)]) {
        let mut attributes = rec.labels();
        attributes.insert("image".into(), rec.image_ref.clone());
        attributes.insert("name".into(), rec.name.trim_start_matches('/').to_owned());
        for (k, v) in extra {
            attributes.insert((*k).to_owned(), v.clone());
        }
        self.0.events.log(
            "container",
            action,
            Actor {
                id: rec.id.clone(),
                attributes,
            },
        );
    }

    async fn save(&self, ctr: &Container) -> Result<()> {
        let rec = ctr.record();
        let dir = self.dir(&rec.id);
        blocking(move || record::save(&dir, &rec).map_err(|e| io_err("saving container", e))).await
    }

    // ---------------------------------------------------------------- create

    /// `POST /containers/create?name=`: Docker's body (Config + HostConfig +
    /// NetworkingConfig). Returns the ID and warnings.
    pub async fn create(&self, name: Option<String>, body: Value) -> Result<(String, Vec<String>)> {
        let t0 = std::time::Instant::now();
        let phase = |what: &str| {
            tracing::debug!(
                "create: {what} at {:.2} ms",
                t0.elapsed().as_secs_f64() * 1e3
            )
        };
        let image = body
            .get("Image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if image.is_empty() {
            return Err(Error::invalid(
                "config cannot be empty in order to create a container",
            ));
        }
        let store = self.0.images.clone();
        let im = image.clone();
        let (img_id, img_config) = blocking(move || match store.lookup_config(&im) {
            Ok(i) => Ok(i),
            Err(berth_image::Error::NotFound(_)) => Err(Error::not_found(format!(
                "No such image: {}",
                with_latest(&im)
            ))),
            Err(e) => Err(e.into()),
        })
        .await?;
        phase("image found");

        let mut host_config = body.get("HostConfig").cloned().unwrap_or(json!({}));
        if !host_config.is_object() {
            host_config = json!({});
        }
        features::validate_create(&mut host_config, &self.options())?;
        let net = host_config
            .get("NetworkMode")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if net.is_empty() {
            host_config["NetworkMode"] = json!("bridge");
        }
        // dockerd fills these defaults in at create (clients such as docker-py read them)
        let defaults = json!({
            "LogConfig": { "Type": "json-file", "Config": {} },
            "RestartPolicy": { "Name": "no", "MaximumRetryCount": 0 },
            "Binds": null, "ContainerIDFile": "", "PortBindings": {}, "AutoRemove": false,
            "VolumeDriver": "", "VolumesFrom": null, "CapAdd": null, "CapDrop": null,
            "CgroupnsMode": "private", "Dns": [], "DnsOptions": [], "DnsSearch": [],
            "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private", "Cgroup": "",
            "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false,
            "PublishAllPorts": false, "ReadonlyRootfs": false, "SecurityOpt": null,
            "UTSMode": "", "UsernsMode": "", "ShmSize": berth_runtime::DEFAULT_SHM_SIZE,
            "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
            "CgroupParent": "", "BlkioWeight": 0, "CpuPeriod": 0, "CpuQuota": 0,
            "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
            "Devices": [], "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": null,
            "OomKillDisable": null, "PidsLimit": null, "Ulimits": [], "MaskedPaths": berth_runtime::MASKED_PATHS,
            "ReadonlyPaths": berth_runtime::READONLY_PATHS,
        });
        if let (Some(hc), Value::Object(d)) = (host_config.as_object_mut(), defaults) {
            for (k, v) in d {
                match hc.get(k.as_str()) {
                    None => {
                        hc.insert(k, v);
                    }
                    // an empty log driver means the daemon's default
                    Some(cur)
                        if k == "LogConfig"
                            && cur
                                .get("Type")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .is_empty() =>
                    {
                        hc.insert(k, v);
                    }
                    Some(cur)
                        if k == "RestartPolicy"
                            && cur
                                .get("Name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .is_empty() =>
                    {
                        hc.insert(k, v);
                    }
                    _ => {}
                }
            }
        }
        if let Some(other) = net.strip_prefix("container:") {
            self.get(other)?;
        }

        let id = loop {
            let b: [u8; 32] = rand::random();
            let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
            // Docker avoids all-numeric short IDs (ambiguous with numbers)
            if !id[..12].bytes().all(|c| c.is_ascii_digit()) {
                break id;
            }
        };

        // merge the image config the way dockerd does
        let ic = img_config.config.unwrap_or_default();
        let user_cfg = |k: &str| body.get(k).filter(|v| !v.is_null());
        let user_ep = str_list(user_cfg("Entrypoint"));
        let user_cmd = str_list(user_cfg("Cmd")).filter(|c| !c.is_empty());
        let img_ep = ic.entrypoint.clone().unwrap_or_default();
        let img_cmd = ic.cmd.clone().unwrap_or_default();
        let args = berth_runtime::entrypoint_cmd(
            &img_ep,
            &img_cmd,
            user_ep.as_deref(),
            user_cmd.as_deref(),
        );
        let Some((path, rest)) = args.split_first() else {
            return Err(Error::invalid("no command specified"));
        };
        let (cfg_ep, cfg_cmd) = match &user_ep {
            Some(ep) if !(ep.is_empty() || ep.len() == 1 && ep[0].is_empty()) => {
                (json!(ep), json!(user_cmd))
            }
            Some(_) => (Value::Null, json!(user_cmd.clone().unwrap_or(img_cmd))),
            None => (
                if img_ep.is_empty() {
                    Value::Null
                } else {
                    json!(img_ep)
                },
                json!(user_cmd.clone().unwrap_or(img_cmd)),
            ),
        };
        let mut env: Vec<String> = ic.env.clone().unwrap_or_default();
        for kv in str_list(user_cfg("Env")).unwrap_or_default() {
            env.retain(|e| env_key(e) != env_key(&kv));
            env.push(kv);
        }
        if !env.iter().any(|e| env_key(e) == "PATH") {
            env.insert(0, format!("PATH={}", berth_runtime::DEFAULT_PATH));
        }
        let mut labels: BTreeMap<String, String> = ic.labels.clone().unwrap_or_default();
        if let Some(Value::Object(l)) = user_cfg("Labels") {
            for (k, v) in l {
                labels.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
        }
        let s = |k: &str| user_cfg(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let b = |k: &str| user_cfg(k).and_then(Value::as_bool).unwrap_or(false);
        let host_net = net == "host";
        let hostname = match s("Hostname") {
            h if !h.is_empty() => h,
            _ if host_net => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            _ => id[..12].to_owned(),
        };
        let or_img = |v: String, i: Option<String>| {
            if v.is_empty() {
                i.unwrap_or_default()
            } else {
                v
            }
        };
        let mut config = json!({
            "Hostname": hostname,
            "Domainname": s("Domainname"),
            "User": or_img(s("User"), ic.user.clone()),
            "AttachStdin": b("AttachStdin"),
            "AttachStdout": b("AttachStdout"),
            "AttachStderr": b("AttachStderr"),
            "Tty": b("Tty"),
            "OpenStdin": b("OpenStdin"),
            "StdinOnce": b("StdinOnce"),
            "Env": env,
            "Cmd": cfg_cmd,
            "Image": image,
            "Volumes": user_cfg("Volumes").cloned().or_else(|| ic.volumes.clone().map(|v| json!(v))),
            "WorkingDir": or_img(s("WorkingDir"), ic.working_dir.clone()),
            "Entrypoint": cfg_ep,
            "OnBuild": ic.on_build.clone(),
            "Labels": labels,
        });
        if let Some(p) = user_cfg("ExposedPorts")
            .cloned()
            .or_else(|| ic.exposed_ports.clone().map(|v| json!(v)))
        {
            config["ExposedPorts"] = p;
        }
        let stop_signal = or_img(s("StopSignal"), ic.stop_signal.clone());
        if !stop_signal.is_empty() {
            config["StopSignal"] = json!(stop_signal);
        }
        if let Some(t) = user_cfg("StopTimeout") {
            config["StopTimeout"] = t.clone();
        }
        if let Some(h) = user_cfg("Healthcheck") {
            config["Healthcheck"] = h.clone();
        }
        let mac = s("MacAddress");
        if !mac.is_empty() {
            // deprecated in API 1.44, still sent by older clients: applied to the main network
            config["MacAddress"] = json!(mac);
        }

        // the name, reserved under the map lock
        let rec = {
            let mut map = lock(&self.0.map);
            let name = match name.filter(|n| !n.is_empty()) {
                Some(n) => {
                    if !names::valid(&n) {
                        return Err(Error::invalid(format!(
                            "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                        )));
                    }
                    let n = format!("/{}", n.trim_start_matches('/'));
                    if let Some(c) = map.values().find(|c| lock(&c.rec).name == n) {
                        return Err(Error::conflict(format!(
                            "Conflict. The container name \"{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                            c.id
                        )));
                    }
                    n
                }
                None => {
                    let mut i = 0;
                    loop {
                        let n = format!("/{}", names::random_name(i));
                        if !map.values().any(|c| lock(&c.rec).name == n) {
                            break n;
                        }
                        i += 1;
                    }
                }
            };
            let rec = Record {
                id: id.clone(),
                name,
                created: now_rfc3339(),
                image_id: img_id.to_string(),
                image_ref: image.clone(),
                path: path.clone(),
                args: rest.to_vec(),
                config,
                host_config,
                state: record::State {
                    status: "created".into(),
                    started_at: record::ZERO_TIME.into(),
                    finished_at: record::ZERO_TIME.into(),
                    ..Default::default()
                },
                restart_count: 0,
                manually_stopped: false,
                mount_points: Vec::new(),
            };
            map.insert(id.clone(), Container::new(rec.clone()));
            rec
        };
        let registered = self
            .check_links(&rec)
            .and_then(|()| {
                net::endpoints_with_mac(&rec, body.pointer("/NetworkingConfig/EndpointsConfig"))
            })
            .and_then(|eps| {
                self.0
                    .nets
                    .register(
                        &id,
                        &rec.name,
                        &rec.network_mode(),
                        eps.as_ref(),
                        &hc_strs(&rec.host_config, "Links"),
                    )
                    .map_err(net::net_error)
            });
        if let Err(e) = registered {
            lock(&self.0.map).remove(&id);
            return Err(e);
        }
        phase("config merged, network registered");
        let image_volumes: Vec<String> =
            ic.volumes.clone().unwrap_or_default().into_keys().collect();
        let rec = match self.setup_mounts(&rec, image_volumes).await {
            Ok(mps) => {
                let ctr = self.get(&id)?;
                lock(&ctr.rec).mount_points = mps;
                ctr.record()
            }
            Err(e) => {
                lock(&self.0.map).remove(&id);
                self.0.nets.unregister(&id).await;
                return Err(e);
            }
        };

        let store = self.0.images.clone();
        let dir = self.dir(&id);
        let r2 = rec.clone();
        let image_id = img_id.clone();
        let res = blocking(move || prepare(&store, &dir, &r2, &image_id)).await;
        if let Err(e) = res {
            lock(&self.0.map).remove(&id);
            self.0.nets.unregister(&id).await;
            self.release_volumes(&rec, true).await;
            let store = self.0.images.clone();
            let dir = self.dir(&id);
            let i2 = id.clone();
            let _ = blocking(move || {
                cleanup_fs(&store, &dir, &i2, true);
                Ok(())
            })
            .await;
            return Err(e);
        }
        phase("layers held, files and record written");
        if let Ok(ctr) = self.get(&id) {
            self.premount(ctr);
        }
        self.log_event(&rec, "create", &[]);
        // `bridge` and user networks behave like `none` until networking exists (no warning:
        // the docker CLI would print it on every run)
        let warnings = Vec::new();
        Ok((id, warnings))
    }

    // ---------------------------------------------------------------- start

    /// `POST /containers/{id}/start`. Ok(false): it was already running (304).
    pub async fn start(&self, name: &str) -> Result<bool> {
        let ctr = self.get(name)?;
        let _op = ctr.op.lock().await;
        let rec = ctr.record();
        if rec.state.status == "paused" {
            return Err(Error::conflict(
                "cannot start a paused container, try unpause instead",
            ));
        }
        if rec.running() {
            return Ok(false);
        }
        if rec.state.status == "removing" || rec.state.status == "dead" {
            return Err(Error::conflict(
                "container is marked for removal and cannot be started",
            ));
        }
        let res = self.start_locked(&ctr, &rec).await;
        if let Err(e) = &res {
            self.0.nets.down(&rec.id).await;
            self.rootfs_release_run(&ctr).await;
            // Docker records the failure on the container and closes waiting attachers
            {
                let mut r = lock(&ctr.rec);
                r.state.error = e.message.clone();
                if r.state.exit_code == 0 {
                    r.state.exit_code = if e.message.contains("executable file not found")
                        || e.message.contains("no such file or directory")
                    {
                        127
                    } else if e.message.contains("permission denied") {
                        126
                    } else {
                        128
                    };
                }
            }
            let _ = self.save(&ctr).await;
            self.unmount_volumes(&rec).await;
            lock(&ctr.pending).clear();
            let _ = tokio::fs::remove_dir_all(self.state_dir(&rec.id)).await;
            if rec.host_bool("AutoRemove") {
                // dockerd removes an auto-remove container whose start failed (the CLI waits
                // for that removal)
                let this = self.clone();
                let id = rec.id.clone();
                tokio::spawn(async move {
                    let _ = this.remove(&id, true, true).await;
                });
            }
        }
        res.map(|()| true)
    }

    async fn start_locked(&self, ctr: &Arc<Container>, rec: &Record) -> Result<()> {
        let id = rec.id.clone();
        let t0 = std::time::Instant::now();
        let phase = |what: &str| tracing::debug!(container = %id, "start: {what} at {:.2} ms", t0.elapsed().as_secs_f64() * 1e3);
        let dir = self.dir(&id);
        let r2 = rec.clone();
        let state_dir = self.state_dir(&id);
        let sd = state_dir.clone();
        let opts = self.options();
        let external = features::external_runtime(rec, &opts)?;
        // an external runtime keeps its state apart from libcontainer's
        let rt_root = match &external {
            Some((name, _)) => self.0.exec_root.join("runtimes").join(name),
            None => self.runtime_root(),
        };
        let rt = rt_root.clone();
        let joined = rec.network_mode().strip_prefix("container:").and_then(|o| {
            let other = self.get(o).ok()?;
            let r = other.record();
            (r.running() && r.state.pid > 0).then(|| {
                let p = self.0.nets.netns_of(&r.id);
                (
                    p.unwrap_or_else(|| format!("/proc/{}/ns/net", r.state.pid).into()),
                    self.dir(&r.id),
                )
            })
        });
        self.check_links_running(rec)?;
        let sn = net::setup(&self.0.nets, rec, joined.as_ref().map(|j| j.0.clone())).await?;
        phase("network set up");
        let links = self.link_hosts(rec);
        let link_env = self.link_env(rec);
        let this = self.clone();
        let c2 = ctr.clone();
        let vols = self.0.volumes.clone();
        blocking(move || {
            // held until the exit is recorded (or the start fails: see `start`); writes the
            // /etc files if no premount did
            let rootfs = this.rootfs_acquire(&c2, true)?;
            this.premount_release(&c2);
            if sn.sandbox.is_some() {
                net::write_etc(&dir, &r2, sn.sandbox.as_ref(), &links)
                    .map_err(|e| io_err("writing /etc files", e))?;
            }
            let mut input = spec_input(&r2, &rootfs, &dir);
            input.env = net::merge_env(link_env, std::mem::take(&mut input.env));
            input.network = sn.mode;
            if let Some((_, odir)) = &joined {
                // Docker shares the other container's /etc files with its namespace
                input.hosts_path = Some(odir.join("hosts"));
                input.resolv_conf_path = Some(odir.join("resolv.conf"));
            }
            features::apply(&mut input, &r2, &opts)?;
            mounts::apply(&vols, &r2, &rootfs, &mut input)?;
            if !input.cwd.is_empty() {
                berth_runtime::ensure_workdir(&rootfs, &input.cwd)
                    .map_err(|e| Error::invalid(e.to_string()))?;
            }
            let spec = berth_runtime::container_spec(&input).map_err(|e| match e {
                berth_runtime::Error::InvalidInput(m) => Error::invalid(m),
                e => Error::internal(e.to_string()),
            })?;
            let data = serde_json::to_vec(&spec).map_err(|e| io_err("writing spec", e))?;
            // a previous run's state dir (its shim is gone: the container is not running)
            let _ = std::fs::remove_dir_all(&sd);
            std::fs::create_dir_all(&sd).map_err(|e| io_err("creating shim state dir", e))?;
            // The OCI bundle is the shim's state dir, in the exec root (a tmpfs), as
            // containerd keeps its bundles under /run: the spec is regenerated at every start
            // and read only by the shim spawned next, so it never needs to outlive the host.
            std::fs::write(sd.join("config.json"), &data).map_err(|e| io_err("writing spec", e))?;
            std::fs::create_dir_all(&rt).map_err(|e| io_err("creating runtime root", e))?;
            Ok(())
        })
        .await?;
        phase("rootfs mounted, bundle written");

        let log_driver = rec
            .host_config
            .pointer("/LogConfig/Type")
            .and_then(Value::as_str)
            .unwrap_or("json-file")
            .to_owned();
        let log_opt = |k: &str| {
            rec.host_config
                .pointer(&format!("/LogConfig/Config/{k}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let log_path = self.log_path(&id);
        let args = shim::StartArgs {
            id: &id,
            bundle: &state_dir,
            state_dir: &state_dir,
            runtime_root: &rt_root,
            runtime: external.as_ref().map(|(_, r)| r),
            log_path: (log_driver != "none").then_some(log_path.as_path()),
            log_max_size: log_opt("max-size").and_then(|s| parse_size(&s)),
            log_max_file: log_opt("max-file").and_then(|s| s.parse().ok()),
            tty: rec.tty(),
            stdin: rec.cfg_bool("OpenStdin"),
            loopback_up: rec.network_mode() == "none",
        };
        let spawned = shim::spawn(&args).await?;
        phase("shim created the container");
        match spawned {
            StartResult::Started { init_pid, .. } => {
                // attachers that were waiting for this start connect before the process runs
                let pending: Vec<PendingAttach> = std::mem::take(&mut *lock(&ctr.pending));
                for p in pending {
                    if let Ok(Ok(io)) = tokio::time::timeout(Duration::from_secs(5), p.io).await {
                        self.connect_attach(
                            &state_dir,
                            rec.tty(),
                            p.opts,
                            io,
                            rec.cfg_bool("StdinOnce"),
                        )
                        .await;
                    }
                }
                phase("lo up, attachers connected");
                if let Err(e) = shim::request(&state_dir, &Request::Start).await {
                    let _ = shim::request(
                        &state_dir,
                        &Request::Kill {
                            signal: 9,
                            all: true,
                        },
                    )
                    .await;
                    return Err(e);
                }
                {
                    let mut r = lock(&ctr.rec);
                    r.state = record::State {
                        status: "running".into(),
                        pid: init_pid,
                        exit_code: 0,
                        error: String::new(),
                        oom_killed: false,
                        started_at: now_rfc3339(),
                        finished_at: r.state.finished_at.clone(),
                    };
                    r.manually_stopped = false;
                }
                phase("shim started the process");
                self.save(ctr).await?;
                phase("record saved");
                self.log_event(rec, "start", &[]);
                self.spawn_monitor(ctr.clone());
                self.spawn_health(ctr.clone());
                Ok(())
            }
            StartResult::Failed { kind, message } => {
                let msg = format!(
                    "failed to create task for container: failed to create shim task: OCI runtime create failed: unable to start container process: error during container init: {message}: unknown"
                );
                {
                    let mut r = lock(&ctr.rec);
                    r.state.exit_code = kind.exit_code();
                }
                Err(match kind {
                    proto::StartErrorKind::Other => Error::internal(msg),
                    _ => Error::invalid(msg),
                })
            }
        }
    }

    fn spawn_monitor(&self, ctr: Arc<Container>) {
        let this = self.clone();
        tokio::spawn(async move {
            let sd = this.state_dir(&ctr.id);
            let info = loop {
                match shim::connect(&sd, &Request::Wait).await {
                    Ok((Reply::Exit(info), _)) => break info,
                    _ => {
                        // the shim went away: its exit file (if any) is the truth
                        if let Some(x) = std::fs::read(sd.join(proto::EXIT_FILE))
                            .ok()
                            .and_then(|d| serde_json::from_slice::<ExitInfo>(&d).ok())
                        {
                            break x;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if shim::request(&sd, &Request::State).await.is_err()
                            && !sd.join(proto::EXIT_FILE).exists()
                        {
                            remove_cgroups(&ctr.id);
                            break ExitInfo {
                                exit_code: 255,
                                oom_killed: false,
                                finished_at: now_rfc3339(),
                                pid: 0,
                            };
                        }
                    }
                }
            };
            this.record_exit(&ctr, info).await;
        });
    }

    async fn record_exit(&self, ctr: &Arc<Container>, info: ExitInfo) {
        let t0 = std::time::Instant::now();
        let phase = |what: &str| tracing::debug!(container = %ctr.id, "exit: {what} at {:.2} ms", t0.elapsed().as_secs_f64() * 1e3);
        // Everything of this run is released before the status says "exited": from then on
        // a start (a restart's, say) may make the next run's sandbox (same container, same
        // namespace file), which a later down would tear down, take the rootfs, which a later
        // release would unmount under it, and spawn a shim, which the Release below would hit.
        self.0.nets.down(&ctr.id).await;
        let mut rec = ctr.record();
        rec.state.status = "exited".into();
        rec.state.pid = 0;
        rec.state.exit_code = info.exit_code;
        rec.state.oom_killed = info.oom_killed;
        rec.state.finished_at = info.finished_at.clone();
        // read before waking the waiters: a restart clears the flag once it sees this exit
        let auto_remove = rec.host_bool("AutoRemove") && !ctr.restarting.load(Ordering::SeqCst);
        // like Docker: a stopped container's rootfs is not mounted. One blocking task for
        // the unmount and the record: each hop to the blocking pool costs a wake-up on the
        // path `run --rm` waits on.
        let this = self.clone();
        let c = ctr.clone();
        let dir = self.dir(&ctr.id);
        let r2 = rec.clone();
        let saved = blocking(move || {
            this.rootfs_release(&c, true);
            if auto_remove {
                // removed next (below), so this record is not written: until the removal,
                // the one on disk says "running", which a restart after a kill -9 resolves
                // the same way (the shim's exit file, or none: exit 255; then the removal)
                return Ok(());
            }
            record::save(&dir, &r2).map_err(|e| io_err("saving container", e))
        })
        .await;
        if let Err(e) = saved {
            tracing::error!("recording exit of {}: {e}", ctr.id);
        }
        phase("rootfs released, record saved");
        self.unmount_volumes(&rec).await;
        // its reply is not awaited: the shim may still be deleting the container's cgroups
        let _ = shim::send(&self.state_dir(&ctr.id), &Request::Release).await;
        phase("volumes unmounted, shim released");
        lock(&ctr.rec).state = rec.state.clone();
        if info.oom_killed {
            self.log_event(&rec, "oom", &[]);
        }
        self.log_event(&rec, "die", &[("exitCode", info.exit_code.to_string())]);
        ctr.exits.send_modify(|n| *n += 1);
        if auto_remove {
            let this = self.clone();
            let id = ctr.id.clone();
            tokio::spawn(async move {
                if let Err(e) = this.remove(&id, true, true).await {
                    tracing::warn!("auto-removing {id}: {e}");
                }
            });
        } else if should_restart(&rec) && !self.shutting_down() {
            self.schedule_restart(ctr.clone(), &rec).await;
        }
    }

    /// Docker's back-off: 100 ms doubling up to a minute, reset after 10 s of running.
    async fn schedule_restart(&self, ctr: Arc<Container>, rec: &Record) {
        let ran = match (
            chrono::DateTime::parse_from_rfc3339(&rec.state.started_at),
            chrono::DateTime::parse_from_rfc3339(&rec.state.finished_at),
        ) {
            (Ok(a), Ok(b)) => (b - a).num_seconds(),
            _ => 0,
        };
        let delay = {
            let mut b = lock(&ctr.backoff);
            *b = if ran >= 10 || *b == 0 {
                100
            } else {
                (*b * 2).min(60_000)
            };
            *b
        };
        lock(&ctr.rec).state.status = "restarting".into();
        let _ = self.save(&ctr).await;
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            {
                let r = ctr.record();
                // stopped, removed or started by someone else meanwhile
                if r.state.status != "restarting" || r.manually_stopped {
                    return;
                }
                lock(&ctr.rec).restart_count += 1;
            }
            lock(&ctr.rec).state.status = "exited".into();
            if let Err(e) = this.start(&ctr.id).await {
                tracing::warn!("restarting {}: {e}", ctr.id);
            }
        });
    }

    // ---------------------------------------------------------------- attach

    async fn connect_attach(
        &self,
        state_dir: &Path,
        tty: bool,
        o: AttachOptions,
        io: BoxIo,
        stdin_once: bool,
    ) {
        // StdinOnce is applied here, not by the shim: a detach (ctrl-p ctrl-q) also ends the
        // connection but must leave the container's stdin open
        let req = Request::Attach {
            stdin: o.stdin,
            stdout: o.stdout,
            stderr: o.stderr,
            stdin_once: false,
        };
        // (dockerd closes it on the attacher's EOF only without a tty)
        let close = (stdin_once && o.stdin && !tty).then(|| state_dir.to_path_buf());
        match shim::connect(state_dir, &req).await {
            Ok((Reply::Ok, conn)) => {
                tokio::spawn(shim::pump(
                    conn,
                    io,
                    tty,
                    o.stdin,
                    close,
                    tty && o.stdin,
                    |_| (),
                ));
            }
            other => {
                tracing::debug!("attach failed: {:?}", other.map(|r| r.0));
            }
        }
    }

    /// `POST /containers/{id}/attach`: call before answering the request (so a `start` that
    /// follows finds the attacher); `io` delivers the hijacked stream. Returns the tty flag.
    pub fn attach(&self, name: &str, o: AttachOptions) -> Result<(bool, oneshot::Sender<BoxIo>)> {
        let ctr = self.get(name)?;
        let rec = ctr.record();
        if rec.state.status == "paused" {
            return Err(Error::conflict(format!(
                "container {} is paused, unpause the container before attach",
                name
            )));
        }
        let (tx, rx) = oneshot::channel::<BoxIo>();
        if o.logs && (!o.stream || rec.running()) {
            let this = self.clone();
            let sd = self.state_dir(&rec.id);
            let tty = rec.tty();
            let once = rec.cfg_bool("StdinOnce");
            let path = self.log_path(&rec.id);
            let lo = LogOptions {
                stdout: o.stdout,
                stderr: o.stderr,
                ..Default::default()
            };
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let Ok(mut io) = rx.await else { return };
                let msgs = tokio::task::spawn_blocking(move || logs::read_all(&path, &lo).0)
                    .await
                    .unwrap_or_default();
                for m in msgs {
                    if !tty {
                        let _ = io
                            .write_all(&proto::frame_header(m.stream, m.data.len()))
                            .await;
                    }
                    if io.write_all(&m.data).await.is_err() {
                        return;
                    }
                }
                if o.stream {
                    this.connect_attach(&sd, tty, o, io, once).await;
                } else {
                    let _ = io.shutdown().await;
                }
            });
        } else if rec.running() {
            let this = self.clone();
            let sd = self.state_dir(&rec.id);
            let tty = rec.tty();
            let once = rec.cfg_bool("StdinOnce");
            tokio::spawn(async move {
                if let Ok(io) = rx.await {
                    this.connect_attach(&sd, tty, o, io, once).await;
                }
            });
        } else {
            lock(&ctr.pending).push(PendingAttach { opts: o, io: rx });
        }
        self.log_event(&rec, "attach", &[]);
        Ok((rec.tty(), tx))
    }

    // ---------------------------------------------------------------- wait / stop / kill

    /// Registers now; the future resolves with (exit code, error) when the condition holds.
    pub fn wait(
        &self,
        name: &str,
        cond: WaitCondition,
    ) -> Result<impl std::future::Future<Output = i32> + Send + 'static> {
        let ctr = self.get(name)?;
        let mut exits = ctr.exits.subscribe();
        let mut removed = ctr.removed.subscribe();
        let running = ctr.record().running();
        Ok(async move {
            match cond {
                WaitCondition::NotRunning if !running => {}
                WaitCondition::NotRunning | WaitCondition::NextExit => {
                    let _ = exits.changed().await;
                }
                WaitCondition::Removed => {
                    let _ = removed.wait_for(Option::is_some).await;
                    if let Some(code) = *removed.borrow() {
                        return code;
                    }
                }
            }
            ctr.record().state.exit_code
        })
    }

    async fn wait_exit(&self, ctr: &Container, timeout: Option<Duration>) -> bool {
        let mut exits = ctr.exits.subscribe();
        if !ctr.record().running() {
            return true;
        }
        match timeout {
            Some(t) => tokio::time::timeout(t, exits.changed()).await.is_ok(),
            None => exits.changed().await.is_ok(),
        }
    }

    async fn signal(&self, ctr: &Container, sig: i32) -> Result<()> {
        let sd = self.state_dir(&ctr.id);
        shim::request(
            &sd,
            &Request::Kill {
                signal: sig,
                all: false,
            },
        )
        .await
        .map(|_| ())
    }

    /// `POST /containers/{id}/kill?signal=`.
    pub async fn kill(&self, name: &str, signal: Option<&str>) -> Result<()> {
        let ctr = self.get(name)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => {
                parse_signal(s).ok_or_else(|| Error::invalid(format!("Invalid signal: {s}")))?
            }
            None => 9,
        };
        let rec = ctr.record();
        if !rec.running() {
            return Err(Error::conflict(format!(
                "Cannot kill container: {name}: Container {} is not running",
                rec.id
            )));
        }
        if sig == 9 || sig == 15 {
            // a kill by the user is not a reason to restart (unless-stopped)
            lock(&ctr.rec).manually_stopped = true;
        }
        self.signal(&ctr, sig).await?;
        self.log_event(&rec, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    /// `POST /containers/{id}/stop?t=&signal=`. Ok(false): it was not running (304).
    pub async fn stop(&self, name: &str, t: Option<i64>, signal: Option<&str>) -> Result<bool> {
        let ctr = self.get(name)?;
        let _op = ctr.op.lock().await;
        self.stop_locked(&ctr, t, signal).await
    }

    async fn stop_locked(
        &self,
        ctr: &Arc<Container>,
        t: Option<i64>,
        signal: Option<&str>,
    ) -> Result<bool> {
        let rec = ctr.record();
        if rec.state.status == "restarting" {
            {
                let mut r = lock(&ctr.rec);
                r.manually_stopped = true;
                r.state.status = "exited".into();
            }
            self.save(ctr).await?;
            return Ok(true);
        }
        if !rec.running() {
            return Ok(false);
        }
        let sig_name = signal
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| rec.cfg_str("StopSignal"));
        let sig = if sig_name.is_empty() {
            15
        } else {
            parse_signal(&sig_name)
                .ok_or_else(|| Error::invalid(format!("Invalid signal: {sig_name}")))?
        };
        let t = t
            .or_else(|| rec.config.get("StopTimeout").and_then(Value::as_i64))
            .unwrap_or(10);
        lock(&ctr.rec).manually_stopped = true;
        if rec.state.status == "paused" {
            let _ = shim::request(&self.state_dir(&rec.id), &Request::Resume).await;
        }
        if self.signal(ctr, sig).await.is_ok() {
            self.log_event(&rec, "kill", &[("signal", sig.to_string())]);
        }
        let timeout = (t >= 0).then(|| Duration::from_secs(t as u64));
        if !self.wait_exit(ctr, timeout).await {
            let _ = self.signal(ctr, 9).await;
            self.log_event(&rec, "kill", &[("signal", "9".into())]);
            if !self.wait_exit(ctr, Some(Duration::from_secs(30))).await {
                return Err(Error::internal(format!(
                    "cannot stop container: {}: tried to kill container, but did not receive an exit event",
                    rec.id
                )));
            }
        }
        self.log_event(&rec, "stop", &[]);
        Ok(true)
    }

    /// `POST /containers/{id}/restart?t=&signal=`.
    pub async fn restart(&self, name: &str, t: Option<i64>, signal: Option<&str>) -> Result<()> {
        let ctr = self.get(name)?;
        {
            let _op = ctr.op.lock().await;
            ctr.restarting.store(true, Ordering::SeqCst);
            let stopped = self.stop_locked(&ctr, t, signal).await;
            ctr.restarting.store(false, Ordering::SeqCst);
            stopped?;
        }
        self.start(&ctr.id).await?;
        let rec = ctr.record();
        self.log_event(&rec, "restart", &[]);
        Ok(())
    }

    // ---------------------------------------------------------------- remove

    /// `DELETE /containers/{id}?force=&v=`.
    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let ctr = self.get(name)?;
        let _op = ctr.op.lock().await;
        let t0 = std::time::Instant::now();
        let phase = |what: &str| tracing::debug!(container = %ctr.id, "remove: {what} at {:.2} ms", t0.elapsed().as_secs_f64() * 1e3);
        let rec = ctr.record();
        if rec.state.status == "removing" {
            return Err(Error::conflict(format!(
                "removal of container {} is already in progress",
                rec.short_id()
            )));
        }
        if rec.running() {
            if !force {
                return Err(Error::conflict(format!(
                    "cannot remove container \"{}\": container is running: stop the container before removing or force remove",
                    rec.name
                )));
            }
            if rec.state.status == "paused" {
                let _ = shim::request(&self.state_dir(&rec.id), &Request::Resume).await;
            }
            let _ = self.signal(&ctr, 9).await;
            self.log_event(&rec, "kill", &[("signal", "9".into())]);
            if !self.wait_exit(&ctr, Some(Duration::from_secs(30))).await {
                return Err(Error::internal(format!(
                    "cannot remove container \"{}\": could not kill it",
                    rec.name
                )));
            }
        }
        lock(&ctr.rec).state.status = "removing".into();
        lock(&ctr.pending).clear();
        self.0.nets.unregister(&rec.id).await;
        let store = self.0.images.clone();
        let dir = self.dir(&rec.id);
        let sd = self.state_dir(&rec.id);
        let trash = self.trash_dir();
        let id = rec.id.clone();
        // The container's directories are renamed aside (two renames) and deleted after the
        // reply: `run --rm` waits for this removal, and the deletion (~20 unlinks, the layer
        // hold's SQLite commit) is not something it needs to wait for. A crash before the
        // deletion ends leaves them in the trash, which `open` empties.
        let this = self.clone();
        let c = ctr.clone();
        let moved = blocking(move || {
            this.no_premount(&c);
            Ok(move_to_trash(&store, &dir, &trash, &id))
        })
        .await?;
        phase("files moved aside");
        self.release_volumes(&rec, volumes).await;
        lock(&self.0.map).remove(&rec.id);
        let code = ctr.record().state.exit_code;
        ctr.removed.send_replace(Some(code));
        self.log_event(&rec, "destroy", &[]);
        let store = self.0.images.clone();
        let trash = self.trash_dir();
        let id = rec.id.clone();
        // an auto-remove container's hold was not synced either (`prepare`)
        let durable = !rec.host_bool("AutoRemove");
        tokio::task::spawn_blocking(move || {
            // the shim's state dir (on the exec root's tmpfs; its shim is gone or going)
            let _ = std::fs::remove_dir_all(&sd);
            if moved {
                empty_trash_of(&store, &trash, &id, durable);
            }
        });
        Ok(())
    }

    // ---------------------------------------------------------------- logs

    /// `GET /containers/{id}/logs`: (tty, stream of messages).
    pub fn logs(
        &self,
        name: &str,
        o: LogOptions,
    ) -> Result<(bool, tokio::sync::mpsc::Receiver<LogMessage>)> {
        let ctr = self.get(name)?;
        let rec = ctr.record();
        let driver = rec
            .host_config
            .pointer("/LogConfig/Type")
            .and_then(Value::as_str)
            .unwrap_or("json-file");
        if driver != "json-file" && !driver.is_empty() {
            return Err(Error::invalid(
                "configured logging driver does not support reading",
            ));
        }
        let path = self.log_path(&rec.id);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut exits = ctr.exits.subscribe();
        let mut removed = ctr.removed.subscribe();
        tokio::spawn(async move {
            let p = path.clone();
            let o2 = o.clone();
            let Ok((msgs, mut off)) =
                tokio::task::spawn_blocking(move || logs::read_all(&p, &o2)).await
            else {
                return;
            };
            for m in msgs {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            if !o.follow || !ctr.record().running() {
                return;
            }
            loop {
                let stopped = tokio::select! {
                    _ = exits.changed() => true,
                    _ = removed.changed() => true,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => false,
                    _ = tx.closed() => return,
                };
                // a last read after the exit picks up what the shim flushed at the end; one
                // right away first: a removal that follows the exit (docker-py's
                // `run(remove=True)` sends it once its wait returns) moves the file away
                if stopped {
                    let p = path.clone();
                    let o2 = o.clone();
                    if let Ok((msgs, n)) =
                        tokio::task::spawn_blocking(move || logs::read_from(&p, off, &o2)).await
                    {
                        off = n;
                        for m in msgs {
                            if tx.send(m).await.is_err() {
                                return;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let p = path.clone();
                let o2 = o.clone();
                let Ok((msgs, n)) =
                    tokio::task::spawn_blocking(move || logs::read_from(&p, off, &o2)).await
                else {
                    return;
                };
                off = n;
                for m in msgs {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
                if stopped || !ctr.record().running() {
                    return;
                }
            }
        });
        Ok((rec.tty(), rx))
    }

    // ---------------------------------------------------------------- inspect / list

    pub fn inspect(&self, name: &str) -> Result<Value> {
        let ctr = self.get(name)?;
        let mut v = self.inspect_json(&ctr.record());
        if let Some(h) = lock(&ctr.health).as_ref() {
            v["State"]["Health"] = h.to_json();
        }
        Ok(v)
    }

    fn health_status(&self, id: &str) -> Option<String> {
        let ctr = self.get(id).ok()?;
        lock(&ctr.health).as_ref().map(|h| h.status.clone())
    }

    fn inspect_json(&self, r: &Record) -> Value {
        let mut v = self.inspect_json_raw(r);
        if v["HostConfig"].is_object() {
            v["HostConfig"]["Links"] = self.links_json(r);
        }
        v
    }

    fn inspect_json_raw(&self, r: &Record) -> Value {
        let s = &r.state;
        let store = &self.0.images;
        let rw = rootfs::rw_dir(store.overlay_root(), &r.id);
        json!({
            "Id": r.id,
            "Created": r.created,
            "Path": r.path,
            "Args": r.args,
            "State": {
                "Status": s.status,
                "Running": r.running(),
                "Paused": s.status == "paused",
                "Restarting": s.status == "restarting",
                "OOMKilled": s.oom_killed,
                "Dead": s.status == "dead",
                "Pid": s.pid,
                "ExitCode": s.exit_code,
                "Error": s.error,
                "StartedAt": s.started_at,
                "FinishedAt": s.finished_at,
            },
            "Image": r.image_id,
            "ResolvConfPath": self.dir(&r.id).join("resolv.conf"),
            "HostnamePath": self.dir(&r.id).join("hostname"),
            "HostsPath": self.dir(&r.id).join("hosts"),
            "LogPath": self.log_path(&r.id),
            "Name": r.name,
            "RestartCount": r.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": Value::Null,
            "HostConfig": r.host_config,
            "GraphDriver": {
                "Data": {
                    "LowerDir": "",
                    "MergedDir": rw.join("merged"),
                    "UpperDir": rw.join("diff"),
                    "WorkDir": rw.join("work"),
                },
                "Name": "overlay2",
            },
            "Mounts": mounts::mounts_json(&self.0.volumes, r),
            "Config": r.config,
            "NetworkSettings": self.0.nets.settings_json(&r.id, r.config.get("ExposedPorts"), r.host_config.get("PortBindings")),
        })
    }

    fn summary(&self, r: &Record) -> Value {
        let s = &r.state;
        let status = match s.status.as_str() {
            "created" => "Created".to_owned(),
            "running" => match self.health_status(&r.id) {
                Some(h) if h == "starting" => {
                    format!("Up {} (health: starting)", human_since(&s.started_at))
                }
                Some(h) => format!("Up {} ({h})", human_since(&s.started_at)),
                None => format!("Up {}", human_since(&s.started_at)),
            },
            "paused" => format!("Up {} (Paused)", human_since(&s.started_at)),
            "restarting" => format!(
                "Restarting ({}) {} ago",
                s.exit_code,
                human_since(&s.finished_at)
            ),
            "removing" => "Removal In Progress".to_owned(),
            "dead" => "Dead".to_owned(),
            _ => format!(
                "Exited ({}) {} ago",
                s.exit_code,
                human_since(&s.finished_at)
            ),
        };
        let mut command = vec![r.path.clone()];
        command.extend(r.args.iter().cloned());
        json!({
            "Id": r.id,
            "Names": [r.name],
            "Image": r.image_ref,
            "ImageID": r.image_id,
            "Command": command.join(" "),
            "Created": chrono::DateTime::parse_from_rfc3339(&r.created).map(|d| d.timestamp()).unwrap_or(0),
            "Ports": self.0.nets.ports_summary(&r.id, r.config.get("ExposedPorts")),
            "Labels": r.labels(),
            "State": s.status,
            "Status": status,
            "HostConfig": { "NetworkMode": r.network_mode() },
            "NetworkSettings": { "Networks": self.0.nets.networks_summary(&r.id) },
            "Mounts": mounts::mounts_json(&self.0.volumes, r),
        })
    }

    /// `GET /containers/json`.
    pub async fn list(&self, o: ListOptions) -> Result<Vec<Value>> {
        let mut recs: Vec<Record> = self.all().iter().map(|c| c.record()).collect();
        recs.sort_by(|a, b| b.created.cmp(&a.created));
        let f = &o.filters;
        for k in f.keys() {
            if !matches!(
                k.as_str(),
                "status"
                    | "name"
                    | "id"
                    | "label"
                    | "ancestor"
                    | "exited"
                    | "before"
                    | "since"
                    | "health"
                    | "network"
                    | "volume"
                    | "publish"
                    | "expose"
                    | "isolation"
                    | "is-task"
            ) {
                return Err(Error::invalid(format!("invalid filter '{k}'")));
            }
        }
        if let Some(st) = f.get("status") {
            for s in st {
                if !matches!(
                    s.as_str(),
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                ) {
                    return Err(Error::invalid(format!("invalid filter 'status={s}'")));
                }
            }
        }
        let created_of = |name: &str| -> Result<String> { Ok(self.get(name)?.record().created) };
        let before = match f.get("before").and_then(|v| v.first()) {
            Some(b) => Some(created_of(b)?),
            None => None,
        };
        let since = match f.get("since").and_then(|v| v.first()) {
            Some(b) => Some(created_of(b)?),
            None => None,
        };
        let any = |key: &str, pred: &dyn Fn(&str) -> bool| match f.get(key) {
            None => true,
            Some(v) if v.is_empty() => true,
            Some(v) => v.iter().any(|x| pred(x)),
        };
        // `all` is implied by filters that only make sense for stopped containers
        let all = o.all || f.contains_key("status") || f.contains_key("exited");
        let store = self.0.images.clone();
        let ancestors: Option<Vec<String>> = match f.get("ancestor") {
            Some(v) if !v.is_empty() => {
                let v = v.clone();
                Some(
                    blocking(move || {
                        Ok(v.iter()
                            .filter_map(|a| store.lookup(a).ok().map(|i| i.id.to_string()))
                            .collect())
                    })
                    .await?,
                )
            }
            _ => None,
        };
        let mut out = Vec::new();
        for r in &recs {
            if !all && !r.running() {
                continue;
            }
            let labels = r.labels();
            let keep = any("status", &|s| s == r.state.status)
                && any("name", &|n| {
                    r.name
                        .trim_start_matches('/')
                        .contains(n.trim_start_matches('/'))
                })
                && any("id", &|i| r.id.starts_with(i))
                && any("health", &|h| {
                    let st = self.health_status(&r.id).unwrap_or_else(|| "none".into());
                    h == st
                })
                // labels: every one given must match (dockerd; docker-compose relies on it)
                && f.get("label").is_none_or(|ls| {
                    ls.iter().all(|l| match l.split_once('=') {
                        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
                        None => labels.contains_key(l.as_str()),
                    })
                })
                && any("network", &|n| self.on_network(&r.id, n))
                && any("volume", &|v| mounts::uses_volume(r, v))
                && any("exited", &|e| {
                    r.state.status == "exited" && e.parse::<i32>().ok() == Some(r.state.exit_code)
                })
                && ancestors.as_ref().is_none_or(|a| {
                    a.contains(&r.image_id) || f["ancestor"].contains(&r.image_ref)
                })
                && before.as_ref().is_none_or(|b| &r.created < b)
                && since.as_ref().is_none_or(|s| &r.created > s);
            if keep {
                out.push(self.summary(r));
            }
        }
        if let Some(n) = o.limit.filter(|n| *n > 0) {
            out.truncate(n);
        }
        if o.size {
            for v in &mut out {
                let id = v["Id"].as_str().unwrap_or_default().to_owned();
                let (rw, root) = self.sizes(&id).await.unwrap_or((0, 0));
                v["SizeRw"] = json!(rw);
                v["SizeRootFs"] = json!(root);
            }
        }
        Ok(out)
    }
}

impl Containers {
    /// (container id, image id, running) of every container, for rmi/prune.
    pub fn usage(&self) -> Vec<(String, String, bool)> {
        self.all()
            .iter()
            .map(|c| c.record())
            .map(|r| (r.id.clone(), r.image_id.clone(), r.running()))
            .collect()
    }
}

impl ImageUsage for Containers {
    fn containers_using(&self, image: &Digest) -> Vec<(String, bool)> {
        let want = image.to_string();
        self.usage()
            .into_iter()
            .filter(|(_, img, _)| *img == want)
            .map(|(id, _, running)| (id, running))
            .collect()
    }
}

fn human_since(t: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(t) else {
        return "Less than a second".into();
    };
    let secs = (chrono::Utc::now().timestamp() - then.timestamp()).max(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

/// HostConfig.RestartPolicy after an exit the user did not ask for.
fn should_restart(r: &Record) -> bool {
    let p = r.host_config.get("RestartPolicy");
    let name = p
        .and_then(|p| p.get("Name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let max = p
        .and_then(|p| p.get("MaximumRetryCount"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if r.manually_stopped {
        return false;
    }
    match name {
        "always" | "unless-stopped" => true,
        "on-failure" => r.state.exit_code != 0 && (max == 0 || r.restart_count < max),
        _ => false,
    }
}

/// `10m`, `1g`, `512k`, bytes.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mul) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mul)
}

/// The filesystem part of create: layer hold, rw dirs, overlay mount, /etc files, record.
fn prepare(store: &ImageStore, dir: &Path, rec: &Record, image_id: &Digest) -> Result<()> {
    // an auto-remove container does not outlive a host crash (removed at the next start), so
    // its hold need not be on disk before the reply
    store.hold_layers(&rec.id, image_id, !rec.host_bool("AutoRemove"))?;
    std::fs::create_dir_all(dir).map_err(|e| io_err("creating container dir", e))?;
    // The /etc files and the writable layer's dirs come with the first mount (the premount
    // right after this reply, or the start; `ensure_etc`, `rootfs::mount`), as dockerd writes
    // the /etc files at the start: seven fewer files made on the reply's path.
    // -w is created at create time, like Docker does: the only reason to mount here (the
    // rootfs is mounted while the container runs)
    let wd = rec.cfg_str("WorkingDir");
    if !wd.is_empty() {
        let lower = store.lowerdir(image_id)?;
        let rootfs = rootfs::mount(store.overlay_root(), &rec.id, &lower, false)
            .map_err(|e| io_err("mounting rootfs", e))?;
        let res = berth_runtime::ensure_workdir(&rootfs, &wd);
        if let Err(e) = rootfs::unmount(&rootfs) {
            tracing::warn!("unmounting {}: {e}", rootfs.display());
        }
        res.map_err(|e| Error::invalid(e.to_string()))?;
    }
    record::save(dir, rec).map_err(|e| io_err("saving container", e))
}

/// The container's hosts, hostname and resolv.conf, unless a start or premount wrote them
/// already (`hostname` is written after `hosts`: its presence means both are there). A
/// sandbox's start rewrites hosts and resolv.conf (net.rs).
fn ensure_etc(dir: &Path, rec: &Record) -> std::io::Result<()> {
    if dir.join("hostname").exists() {
        return Ok(());
    }
    rootfs::write_etc(dir, &rec.cfg_str("Hostname"), rec.network_mode() == "host")
}

/// Removed containers' directories waiting to be deleted: `<data-root>/containers/.trash`
/// (`<id>` the container's dir, `<id>-rw` its writable layer). Same filesystem as both, so
/// moving them there is a rename.
const TRASH: &str = ".trash";

/// The first half of a removal: unmount, then rename the container's directories into the
/// trash. Returns false when they could not be moved (another filesystem, say) and were
/// deleted here instead (`cleanup_fs`).
fn move_to_trash(store: &ImageStore, dir: &Path, trash: &Path, id: &str) -> bool {
    let rw = rootfs::rw_dir(store.overlay_root(), id);
    if let Err(e) = rootfs::unmount(&rw.join("merged")) {
        tracing::warn!("unmounting {}: {e}", rw.display());
    }
    let moved = std::fs::create_dir_all(trash).is_ok()
        && match std::fs::rename(&rw, trash.join(format!("{id}-rw"))) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
        // the container's dir last: while it is in the trash, its layer hold may still be
        // held (see `empty_trash_of`)
        && std::fs::rename(dir, trash.join(id)).is_ok();
    if !moved {
        cleanup_fs(store, dir, id, true);
        let _ = std::fs::remove_dir_all(trash.join(format!("{id}-rw")));
    }
    moved
}

/// The second half of a removal, after the reply: delete what `move_to_trash` moved and
/// drop the layer hold. The container's dir goes last, so a crash in between leaves it for
/// [`empty_trash`] to finish.
fn empty_trash_of(store: &ImageStore, trash: &Path, id: &str, durable: bool) {
    let rw = trash.join(format!("{id}-rw"));
    if let Err(e) = std::fs::remove_dir_all(&rw)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("removing {}: {e}", rw.display());
    }
    if let Err(e) = store.release_layers(id, durable) {
        tracing::warn!("releasing layers of {id}: {e}");
    }
    let _ = std::fs::remove_dir_all(trash.join(id));
    // the shim's runtime delete normally removed them; it gives up after ~100 ms of EBUSY
    // (libcgroups), and a shim killed meanwhile never finishes it
    remove_cgroups(id);
}

/// At daemon start: finish the removals a crash interrupted.
fn empty_trash(store: &ImageStore, trash: &Path) {
    let Ok(rd) = std::fs::read_dir(trash) else {
        return;
    };
    let mut ids: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .map(|n| n.strip_suffix("-rw").map(str::to_owned).unwrap_or(n))
        .collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        empty_trash_of(store, trash, &id, true);
    }
}

/// Undo `prepare`: unmount, drop the layer hold, delete the container's directories.
fn cleanup_fs(store: &ImageStore, dir: &Path, id: &str, durable: bool) {
    let rw = rootfs::rw_dir(store.overlay_root(), id);
    if let Err(e) = rootfs::unmount(&rw.join("merged")) {
        tracing::warn!("unmounting {}: {e}", rw.display());
    }
    if let Err(e) = std::fs::remove_dir_all(&rw)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("removing {}: {e}", rw.display());
    }
    if let Err(e) = store.release_layers(id, durable) {
        tracing::warn!("releasing layers of {id}: {e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Remove `/sys/fs/cgroup/*/berth/<id>` left by a shim that died with its container.
/// Called after every removal too, when the shim has usually removed them already: one
/// `rmdir` per hierarchy (ENOENT then), no listing or stat of the cgroup filesystem each time.
fn remove_cgroups(id: &str) {
    for root in cgroup_roots() {
        let d = root.join("berth").join(id);
        match std::fs::remove_dir(&d) {
            // a frozen cgroup's tasks cannot die (v1): thaw, and try again
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                let _ = std::fs::remove_dir(&d);
            }
            _ => {}
        }
    }
}

/// The directories that hold berth's cgroups: `/sys/fs/cgroup` itself (v2), or every
/// hierarchy under it (v1, and the top as before). Listed once per daemon (hierarchies are not mounted or
/// unmounted under running containers).
fn cgroup_roots() -> &'static [PathBuf] {
    static ROOTS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let top = PathBuf::from("/sys/fs/cgroup");
        if top.join("cgroup.controllers").exists() {
            return vec![top];
        }
        let mut roots: Vec<PathBuf> = std::fs::read_dir(&top)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        roots.push(top);
        roots
    })
}

fn hc_strs(hc: &Value, key: &str) -> Vec<String> {
    str_list(hc.get(key)).unwrap_or_default()
}

/// The runtime's input from a container record.
fn spec_input(r: &Record, rootfs: &Path, dir: &Path) -> ContainerSpecInput {
    let hc = &r.host_config;
    let i = |k: &str| hc.get(k).and_then(Value::as_i64).unwrap_or(0);
    let sec = hc_strs(hc, "SecurityOpt");
    let mut seccomp = SeccompMode::Default;
    let mut nnp = false;
    for o in &sec {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), "true"));
        match k {
            "seccomp" if v == "unconfined" => seccomp = SeccompMode::Unconfined,
            "seccomp" if v.trim_start().starts_with('{') => {
                seccomp = SeccompMode::ProfileJson(v.to_owned())
            }
            "seccomp" => seccomp = SeccompMode::ProfilePath(PathBuf::from(v)),
            "no-new-privileges" => nnp = v != "false",
            _ => {}
        }
    }
    let ulimits = hc
        .get("Ulimits")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|u| {
                    Some(Ulimit {
                        name: u.get("Name")?.as_str()?.to_owned(),
                        soft: u.get("Soft")?.as_i64()?,
                        hard: u.get("Hard")?.as_i64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let sysctls = hc
        .get("Sysctls")
        .and_then(|v| serde_json::from_value::<HashMap<String, String>>(v.clone()).ok())
        .unwrap_or_default();
    let shm = i("ShmSize");
    ContainerSpecInput {
        id: r.id.clone(),
        rootfs: rootfs.to_path_buf(),
        readonly_rootfs: r.host_bool("ReadonlyRootfs"),
        args: std::iter::once(r.path.clone())
            .chain(r.args.iter().cloned())
            .collect(),
        env: str_list(r.config.get("Env")).unwrap_or_default(),
        cwd: r.cfg_str("WorkingDir"),
        user: r.cfg_str("User"),
        group_add: hc_strs(hc, "GroupAdd"),
        hostname: r.cfg_str("Hostname"),
        domainname: r.cfg_str("Domainname"),
        tty: r.tty(),
        privileged: r.host_bool("Privileged"),
        cap_add: hc_strs(hc, "CapAdd"),
        cap_drop: hc_strs(hc, "CapDrop"),
        seccomp,
        no_new_privileges: nnp,
        shm_size: (shm > 0).then_some(shm as u64),
        hosts_path: Some(dir.join("hosts")),
        hostname_path: Some(dir.join("hostname")),
        resolv_conf_path: Some(dir.join("resolv.conf")),
        extra_mounts: Vec::new(),
        network: if r.network_mode() == "host" {
            NetworkMode::Host
        } else {
            NetworkMode::New
        },
        pid_host: r.host_str("PidMode") == "host",
        ipc_host: r.host_str("IpcMode") == "host",
        uts_host: r.host_str("UTSMode") == "host",
        ulimits,
        resources: Resources {
            memory: i("Memory"),
            memory_swap: i("MemorySwap"),
            memory_reservation: i("MemoryReservation"),
            nano_cpus: i("NanoCpus"),
            cpu_shares: i("CpuShares").max(0) as u64,
            cpu_period: i("CpuPeriod").max(0) as u64,
            cpu_quota: i("CpuQuota"),
            cpuset_cpus: r.host_str("CpusetCpus"),
            cpuset_mems: r.host_str("CpusetMems"),
            pids_limit: hc.get("PidsLimit").and_then(Value::as_i64),
            oom_kill_disable: r.host_bool("OomKillDisable"),
        },
        sysctls,
        devices: Vec::new(),
        device_cgroup_rules: Vec::new(),
        cgroup_v2: None,
        oom_score_adj: hc
            .get("OomScoreAdj")
            .and_then(Value::as_i64)
            .filter(|v| *v != 0)
            .map(|v| v as i32),
    }
}

#[cfg(test)]
mod tests {
    /// A removal that a crash interrupted (directories renamed into the trash, not yet
    /// deleted) is finished by the next start's `empty_trash`.
    #[test]
    fn trash_left_by_a_crash_is_emptied() {
        let d = tempfile::tempdir().unwrap();
        let store = berth_image::ImageStore::open(d.path()).unwrap();
        let id = "a".repeat(64);
        let ctr = d.path().join("containers").join(&id);
        std::fs::create_dir_all(ctr.join("bundle")).unwrap();
        std::fs::write(ctr.join(super::record::CONFIG_FILE), "{}").unwrap();
        super::rootfs::create_dirs(store.overlay_root(), &id).unwrap();
        let trash = d.path().join("containers").join(super::TRASH);
        // the first half of a removal, then "the crash"
        assert!(super::move_to_trash(&store, &ctr, &trash, &id));
        assert!(!ctr.exists());
        assert!(!super::rootfs::rw_dir(store.overlay_root(), &id).exists());
        assert!(trash.join(&id).exists() && trash.join(format!("{id}-rw")).exists());
        super::empty_trash(&store, &trash);
        assert_eq!(std::fs::read_dir(&trash).unwrap().count(), 0);
    }

    #[test]
    fn signals_and_sizes() {
        assert_eq!(super::parse_signal("SIGTERM"), Some(15));
        assert_eq!(super::parse_signal("kill"), Some(9));
        assert_eq!(super::parse_signal("10"), Some(10));
        assert_eq!(super::parse_signal("NOPE"), None);
        assert_eq!(super::parse_size("10m"), Some(10 << 20));
        assert_eq!(super::with_latest("busybox"), "busybox:latest");
        assert_eq!(
            super::with_latest("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(super::with_latest("x:1"), "x:1");
    }
}
