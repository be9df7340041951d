//! berth-volume: Docker's `local` volume driver.
//!
//! Owns `<data-root>/volumes/`: one directory per volume, `<name>/_data` holding the data (the
//! path Docker uses, so `Mountpoint` is what users expect) and `<name>/berth.json` holding the
//! metadata (labels, `-o` options, creation time), written temp + fsync + rename + fsync of the
//! directory so a kill -9 of berthd loses nothing. A volume directory whose metadata never made
//! it to disk is still a volume (created at the directory's mtime): data is never hidden.
//!
//! Also owns, in memory: which containers reference a volume (`volume rm` refuses while any
//! does), which containers have it mounted (`-o type/device/o` volumes are mounted on `_data`
//! when the first user starts and unmounted when the last one stops), copy-up of image content
//! into an empty volume, and sizes for `system df`.
//!
//! Must not: know about containers beyond their IDs, speak HTTP, or depend on tokio (callers
//! run it on blocking threads). Removal never deletes through a mount: anything still mounted
//! under a volume makes `remove` fail instead.

mod copy;
mod mount;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use copy::copy_up;
pub use mount::unescape as unescape_mountinfo;

/// The label dockerd (23+) puts on anonymous volumes; `volume prune` only removes those unless
/// asked for `all`.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

const META_FILE: &str = "berth.json";
const DATA_DIR: &str = "_data";
const TRASH_PREFIX: &str = ".trash-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 400
    #[error("{0}")]
    Invalid(String),
    /// 409
    #[error("{0}")]
    InUse(String),
    /// 500
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{what}: {e}"))
}

/// What is persisted per volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Meta {
    name: String,
    driver: String,
    created_at: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

/// A volume as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    /// RFC 3339, seconds (dockerd's format).
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl Volume {
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// Docker's `Volume` object (empty labels and options are `null`, as dockerd sends them).
    pub fn to_json(&self) -> Value {
        let map_or_null = |m: &BTreeMap<String, String>| {
            if m.is_empty() { Value::Null } else { json!(m) }
        };
        json!({
            "CreatedAt": self.created_at,
            "Driver": self.driver,
            "Labels": map_or_null(&self.labels),
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": map_or_null(&self.options),
            "Scope": "local",
        })
    }
}

#[derive(Default)]
struct State {
    vols: BTreeMap<String, Meta>,
    /// name -> containers whose config uses it (create .. rm)
    refs: HashMap<String, BTreeSet<String>>,
    /// name -> containers running with it mounted
    mounts: HashMap<String, BTreeSet<String>>,
}

pub struct VolumeStore {
    root: PathBuf,
    state: Mutex<State>,
}

/// Docker's rule for local volume names.
pub fn valid_name(name: &str) -> Result<()> {
    if name.len() < 2 {
        return Err(Error::Invalid(
            "volume name is too short, names should be at least two alphanumeric characters"
                .to_owned(),
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
        return Err(Error::Invalid(format!(
            "\"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn random_name() -> String {
    let b: [u8; 32] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The local driver's `-o` keys (moby `volume/local`).
fn validate_options(opts: &BTreeMap<String, String>) -> Result<()> {
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o" | "size") {
            return Err(Error::Invalid(format!("invalid option: \"{k}\"")));
        }
    }
    if opts.contains_key("size") {
        return Err(Error::Invalid(
            "quota size requested but no quota support".into(),
        ));
    }
    if opts.contains_key("type") && !opts.contains_key("device") {
        return Err(Error::Invalid("missing required option: \"device\"".into()));
    }
    if opts.contains_key("device") && !opts.contains_key("type") {
        return Err(Error::Invalid("missing required option: \"type\"".into()));
    }
    Ok(())
}

impl VolumeStore {
    /// Open (creating if needed) `<data_root>/volumes`, load every volume and finish removals a
    /// crash interrupted.
    pub fn open(data_root: &Path) -> Result<VolumeStore> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root).map_err(|e| io("creating volumes dir", e))?;
        let mut vols = BTreeMap::new();
        for ent in std::fs::read_dir(&root)
            .map_err(|e| io("reading volumes dir", e))?
            .flatten()
        {
            let name = ent.file_name().to_string_lossy().into_owned();
            let path = ent.path();
            if name.starts_with(TRASH_PREFIX) {
                // renamed away by a remove that did not finish
                if mount::mounted_under(&path).is_empty() {
                    let _ = std::fs::remove_dir_all(&path);
                }
                continue;
            }
            if valid_name(&name).is_err() || !path.join(DATA_DIR).is_dir() {
                continue;
            }
            let meta = std::fs::read(path.join(META_FILE))
                .ok()
                .and_then(|d| serde_json::from_slice::<Meta>(&d).ok())
                .filter(|m| m.name == name)
                .unwrap_or_else(|| {
                    // created, but the daemon died before the metadata was written
                    let created = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .map(|t| {
                            chrono::DateTime::<chrono::Utc>::from(t)
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        })
                        .unwrap_or_else(|_| now_rfc3339());
                    Meta {
                        name: name.clone(),
                        driver: "local".into(),
                        created_at: created,
                        labels: BTreeMap::new(),
                        options: BTreeMap::new(),
                    }
                });
            vols.insert(name, meta);
        }
        Ok(VolumeStore {
            root,
            state: Mutex::new(State {
                vols,
                ..Default::default()
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn data_path(&self, name: &str) -> PathBuf {
        self.root.join(name).join(DATA_DIR)
    }

    fn volume(&self, m: &Meta) -> Volume {
        Volume {
            name: m.name.clone(),
            driver: m.driver.clone(),
            mountpoint: self.data_path(&m.name),
            created_at: m.created_at.clone(),
            labels: m.labels.clone(),
            options: m.options.clone(),
        }
    }

    /// `POST /volumes/create`. `name` None (or empty) creates an anonymous volume. An existing
    /// volume of that name is returned as it is (dockerd does the same). Returns (volume,
    /// whether it was created now).
    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let driver = if driver.is_empty() { "local" } else { driver };
        if driver != "local" {
            return Err(Error::NotFound(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let mut labels = labels;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                valid_name(n)?;
                n.to_owned()
            }
            None => {
                labels.entry(ANONYMOUS_LABEL.into()).or_default();
                random_name()
            }
        };
        let mut st = lock(&self.state);
        if let Some(m) = st.vols.get(&name) {
            return Ok((self.volume(m), false));
        }
        validate_options(&options)?;
        let meta = Meta {
            name: name.clone(),
            driver: driver.into(),
            created_at: now_rfc3339(),
            labels,
            options,
        };
        let dir = self.root.join(&name);
        let res = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(dir.join(DATA_DIR))?;
            let data = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
            berth_atomicfile::write(&dir.join(META_FILE), &data, true)?;
            fsync_dir(&self.root)
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io(format!("create {name}"), e));
        }
        st.vols.insert(name, meta.clone());
        Ok((self.volume(&meta), true))
    }

    /// `GET /volumes/{name}`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        lock(&self.state)
            .vols
            .get(name)
            .map(|m| self.volume(m))
            .ok_or_else(|| Error::NotFound(format!("get {name}: no such volume")))
    }

    pub fn list(&self) -> Vec<Volume> {
        lock(&self.state)
            .vols
            .values()
            .map(|m| self.volume(m))
            .collect()
    }

    /// Containers referencing `name` (sorted).
    pub fn users(&self, name: &str) -> Vec<String> {
        lock(&self.state)
            .refs
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Record that container `ctr` uses `name` (at create, and at daemon start for every
    /// container record).
    pub fn acquire(&self, name: &str, ctr: &str) -> Result<()> {
        let mut st = lock(&self.state);
        if !st.vols.contains_key(name) {
            return Err(Error::NotFound(format!("get {name}: no such volume")));
        }
        st.refs
            .entry(name.to_owned())
            .or_default()
            .insert(ctr.to_owned());
        Ok(())
    }

    pub fn release(&self, name: &str, ctr: &str) {
        let mut st = lock(&self.state);
        if let Some(s) = st.refs.get_mut(name) {
            s.remove(ctr);
            if s.is_empty() {
                st.refs.remove(name);
            }
        }
    }

    /// Forget every reference and mount of container `ctr` (a create that failed).
    pub fn release_all(&self, ctr: &str) {
        let mut st = lock(&self.state);
        st.refs.retain(|_, s| {
            s.remove(ctr);
            !s.is_empty()
        });
        st.mounts.retain(|_, s| {
            s.remove(ctr);
            !s.is_empty()
        });
    }

    /// `DELETE /volumes/{name}`: refused while a container references it. `force` ignores a
    /// missing volume.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let mut st = lock(&self.state);
        let Some(meta) = st.vols.get(name).cloned() else {
            if force {
                return Ok(());
            }
            return Err(Error::NotFound(format!("get {name}: no such volume")));
        };
        if let Some(users) = st.refs.get(name).filter(|s| !s.is_empty()) {
            let list: Vec<&str> = users.iter().map(String::as_str).collect();
            return Err(Error::InUse(format!(
                "remove {name}: volume is in use - [{}]",
                list.join(", ")
            )));
        }
        let dir = self.root.join(name);
        let data = dir.join(DATA_DIR);
        if !meta.options.is_empty() && mount::is_mountpoint(&data) {
            mount::unmount(&data).map_err(|e| io(format!("remove {name}"), e))?;
        }
        // never delete through a mount (a bind-type volume would take the host's data with it)
        let busy = mount::mounted_under(&dir);
        if !busy.is_empty() {
            return Err(Error::InUse(format!(
                "remove {name}: volume is in use - still mounted at {}",
                busy[0].display()
            )));
        }
        // rename first: a crash mid-delete leaves trash (finished at open), not half a volume
        let trash = self
            .root
            .join(format!("{TRASH_PREFIX}{name}-{}", &random_name()[..8]));
        std::fs::rename(&dir, &trash).map_err(|e| io(format!("remove {name}"), e))?;
        let _ = fsync_dir(&self.root);
        st.vols.remove(name);
        st.mounts.remove(name);
        drop(st);
        if let Err(e) = std::fs::remove_dir_all(&trash) {
            tracing::warn!("removing {}: {e}", trash.display());
        }
        Ok(())
    }

    /// A container starts with `name` mounted: mount `-o type/device/o` volumes for the first
    /// user. Returns the host path to bind into the container. Idempotent per container (and
    /// after a daemon restart, when the mount is still there).
    pub fn mount(&self, name: &str, ctr: &str) -> Result<PathBuf> {
        let mut st = lock(&self.state);
        let meta = st
            .vols
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("get {name}: no such volume")))?;
        let data = self.data_path(name);
        if !meta.options.is_empty() && !mount::is_mountpoint(&data) {
            mount::mount_local(&meta.options, &data).map_err(|e| {
                Error::Io(format!(
                    "error while mounting volume '{}': failed to mount local volume: {e}",
                    data.display()
                ))
            })?;
        }
        st.mounts
            .entry(name.to_owned())
            .or_default()
            .insert(ctr.to_owned());
        Ok(data)
    }

    /// The container stopped: unmount an `-o` volume when it was the last one using it.
    pub fn unmount(&self, name: &str, ctr: &str) {
        let mut st = lock(&self.state);
        let last = match st.mounts.get_mut(name) {
            Some(s) => {
                s.remove(ctr);
                s.is_empty()
            }
            None => true,
        };
        if last {
            st.mounts.remove(name);
        }
        let Some(meta) = st.vols.get(name) else {
            return;
        };
        let data = self.data_path(name);
        if last
            && !meta.options.is_empty()
            && mount::is_mountpoint(&data)
            && let Err(e) = mount::unmount(&data)
        {
            tracing::warn!("unmounting volume {name}: {e}");
        }
    }

    /// Bytes used under `_data` (apparent sizes, hard links counted once, symlinks not
    /// followed, other filesystems mounted inside not crossed). -1 when it cannot be read.
    pub fn size(&self, name: &str) -> i64 {
        dir_size(&self.data_path(name)).map_or(-1, |s| s as i64)
    }

    /// Copy what the image has at `dest` into the volume `name` if the volume is empty
    /// (dockerd's copy-up). The rootfs side is resolved inside `rootfs`.
    pub fn populate(&self, name: &str, rootfs: &Path, dest: &str) -> Result<()> {
        let data = self.data_path(name);
        copy::copy_up(rootfs, dest, &data)
            .map_err(|e| io(format!("copying {dest} into volume {name}"), e))
    }
}

fn dir_size(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::symlink_metadata(path)?;
    let dev = top.dev();
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for ent in rd.flatten() {
            let Ok(md) = ent.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.nlink() > 1 && !md.is_dir() && !seen.insert(md.ino()) {
                continue;
            }
            if md.is_dir() {
                stack.push(ent.path());
            } else {
                total += md.size();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
