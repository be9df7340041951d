//! Builds (`POST /build`, `docker build` with the legacy builder): the engine's side of
//! [`berth_build::Backend`]. RUN steps are real containers made, started, waited for and
//! committed through the containers service (bridge network unless `--network`); a RUN that
//! changed nothing commits no layer (`empty_layer`, as dockerd). ADD/COPY/WORKDIR write their
//! layer straight from the entries, with the parent image's filesystem opened read-only
//! (`ImageRoot`: its one layer directory or a lower-only overlay) to check what exists, and
//! fall back to extracting into a created (never started) container, as dockerd's builder
//! does, only where a path goes through a symlink or changes type. `COPY --from` exports and
//! `RUN --mount=...,from=` read the same read-only view; metadata steps make an empty-layer
//! image. Contexts may be plain, gzip, zstd, bzip2 or xz tars.
//!
//! The step cache is a small SQLite table in `<data-root>/builder/cache.db` (WAL, so it
//! survives a crash or restart); `RUN --mount=type=cache` directories live under
//! `<data-root>/builder/cache-mounts/`. Both are emptied by `builder prune`.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_build::context::{self, Context};
use berth_build::{BaseImage, BuildError, FilesRequest, MountSpec, RunRequest};
use berth_types::image_config::{History, ImageConfig};
use berth_types::{Digest, Reference};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};

use crate::containers::{LogOptions, RootView, WaitCondition};
use crate::error::{Error, Result};
use crate::{Engine, io_err};

/// What `POST /build` asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildParams {
    /// `dockerfile`: path inside the context (default `Dockerfile`).
    pub dockerfile: String,
    /// `t` (repeatable)
    pub tags: Vec<String>,
    /// `q`
    pub quiet: bool,
    pub no_cache: bool,
    pub cache_from: Vec<String>,
    pub pull: bool,
    /// `rm` (default true) / `forcerm`
    pub rm: bool,
    pub force_rm: bool,
    /// Resource limits of RUN containers: Memory, MemorySwap, CpuShares, CpusetCpus, ShmSize,
    /// ExtraHosts, as HostConfig fields.
    pub host_config: serde_json::Map<String, Value>,
    pub build_args: BTreeMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    /// `networkmode`
    pub network_mode: String,
    pub target: String,
    /// `X-Registry-Config`: credentials by registry, for pulling bases.
    pub auth: BTreeMap<String, berth_distribution::Credentials>,
    /// `remote`: the context (a tar) or the Dockerfile itself at an http(s) URL.
    pub remote: String,
    /// `RUN --mount=type=secret` data by id (berth's `X-Berth-Build-Secrets` header).
    pub secrets: BTreeMap<String, Vec<u8>>,
}

/// One line of the build's JSON stream.
#[derive(Debug, Clone)]
pub enum BuildEvent {
    Stream(String),
    Aux(Value),
}

pub type Sink = Arc<dyn Fn(BuildEvent) + Send + Sync>;

/// The builder's persistent state.
pub struct Builds {
    root: PathBuf,
    db: Mutex<Connection>,
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::internal(format!("build cache: {e}"))
}

impl Builds {
    pub fn open(data_root: &Path) -> Result<Builds> {
        let root = data_root.join("builder");
        std::fs::create_dir_all(root.join("tmp")).map_err(|e| io_err("creating builder dir", e))?;
        // contexts and image views of builds that a crash interrupted (a view may still be
        // mounted: unmounted first, never removed through)
        if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("view-") {
                    let _ = rustix::mount::unmount(e.path(), rustix::mount::UnmountFlags::DETACH);
                    let _ = std::fs::remove_dir(e.path());
                    continue;
                }
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let conn = Connection::open(root.join("cache.db")).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, image TEXT NOT NULL, created INTEGER NOT NULL);",
        )
        .map_err(db_err)?;
        Ok(Builds {
            root,
            db: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_get(&self, key: &str) -> Option<String> {
        self.conn()
            .query_row("SELECT image FROM cache WHERE key = ?1", [key], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .ok()
            .flatten()
    }

    fn cache_put(&self, key: &str, image: &str) {
        let now = chrono::Utc::now().timestamp();
        if let Err(e) = self.conn().execute(
            "INSERT OR REPLACE INTO cache (key, image, created) VALUES (?1, ?2, ?3)",
            rusqlite::params![key, image, now],
        ) {
            tracing::warn!("build cache: {e}");
        }
    }

    fn cache_mount_dir(&self, id: &str) -> PathBuf {
        let h = Digest::of(id.as_bytes());
        self.root.join("cache-mounts").join(&h.hex()[..32])
    }

    /// `POST /build/prune`: forgets every cached step and deletes the cache mounts. Returns the
    /// bytes reclaimed and the IDs of the cache records removed.
    pub fn prune(&self) -> Result<(u64, Vec<String>)> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT key FROM cache").map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err)?;
            rows.flatten().collect()
        };
        self.conn()
            .execute("DELETE FROM cache", [])
            .map_err(db_err)?;
        let _ = std::fs::remove_dir_all(self.root.join("ctx-cache"));
        let mounts = self.root.join("cache-mounts");
        let size = berth_image::layer::dir_size(&mounts);
        if mounts.exists() {
            std::fs::remove_dir_all(&mounts).map_err(|e| io_err("removing cache mounts", e))?;
        }
        Ok((size, ids))
    }

    /// The `BuildCache` part of `/system/df`: one record per cached step (its image's layers
    /// are counted with the images) and one per `RUN --mount=type=cache` directory.
    pub fn df(&self) -> Vec<Value> {
        let fmt = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        let rows: Vec<(String, String, i64)> = {
            let conn = self.conn();
            let Ok(mut stmt) = conn.prepare("SELECT key, image, created FROM cache") else {
                return out;
            };
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map(|rows| rows.flatten().collect())
                .unwrap_or_default()
        };
        for (key, image, created) in rows {
            out.push(json!({
                "ID": &key[..key.len().min(25)],
                "Parents": null,
                "Type": "regular",
                "Description": format!("step cached as {}", &image[..image.len().min(19)]),
                "InUse": false,
                "Shared": true,
                "Size": 0,
                "CreatedAt": fmt(created),
                "LastUsedAt": fmt(created),
                "UsageCount": 1,
            }));
        }
        if let Ok(rd) = std::fs::read_dir(self.root.join("cache-mounts")) {
            for e in rd.flatten() {
                let created = e
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                out.push(json!({
                    "ID": e.file_name().to_string_lossy(),
                    "Parents": null,
                    "Type": "exec.cachemount",
                    "Description": "cached mount (RUN --mount=type=cache)",
                    "InUse": false,
                    "Shared": false,
                    "Size": berth_image::layer::dir_size(&e.path()),
                    "CreatedAt": fmt(created),
                    "LastUsedAt": fmt(created),
                    "UsageCount": 1,
                }));
            }
        }
        out
    }
}

fn berr(e: Error) -> BuildError {
    BuildError::new(e.message)
}

/// Removes the context directory however the build ends.
struct TmpDir(PathBuf);
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An image's filesystem, read-only, for the builder's work that needs no process (is a path
/// a directory, `COPY --from`, a WORKDIR/COPY layer, `RUN --mount=from=`): the directory of
/// its one layer as it is, or a read-only overlay of its layers mounted under `builder/tmp`
/// (no upper dir: nothing to sync at unmount). No container record, rw layer, layer hold or
/// shim, which a short-lived container costs.
struct ImageRoot {
    path: PathBuf,
    /// A mount (or an empty directory) of ours, removed on drop.
    owned: Option<PathBuf>,
    mounted: bool,
}

impl ImageRoot {
    /// Blocking.
    fn open(store: &berth_image::ImageStore, tmp: &Path, id: &str) -> Result<ImageRoot> {
        let d: Digest = id
            .parse()
            .map_err(|_| Error::invalid(format!("bad image id {id}")))?;
        let links = store.layer_links(&d)?;
        if links.len() == 1 {
            let dirs = store.layer_dirs(&d)?;
            if let Some(dir) = dirs.into_iter().next() {
                return Ok(ImageRoot {
                    path: dir,
                    owned: None,
                    mounted: false,
                });
            }
        }
        let dir = tmp.join(format!("view-{}", hex_rand()));
        std::fs::create_dir_all(&dir).map_err(|e| io_err("creating image view", e))?;
        let mut root = ImageRoot {
            path: dir.clone(),
            owned: Some(dir.clone()),
            mounted: false,
        };
        if links.is_empty() {
            return Ok(root);
        }
        // lowerdir is top first; the short `l/` links relative to the overlay root keep the
        // options within mount(2)'s one page for any layer count overlay takes, so the mount
        // runs in a thread with its own working directory (the daemon's is never touched)
        let lower: Vec<String> = links.into_iter().rev().collect();
        let opts = std::ffi::CString::new(format!("lowerdir={}", lower.join(":")))
            .map_err(|_| Error::internal("layer link with a NUL byte"))?;
        let overlay_root = store.overlay_root().to_path_buf();
        let target = dir.clone();
        std::thread::spawn(move || -> std::io::Result<()> {
            // SAFETY: plain syscalls on this thread only; CLONE_FS gives it a private cwd.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::env::set_current_dir(&overlay_root)?;
            rustix::mount::mount(
                "overlay",
                &target,
                "overlay",
                rustix::mount::MountFlags::RDONLY,
                opts.as_c_str(),
            )?;
            Ok(())
        })
        .join()
        .map_err(|_| Error::internal("image view mount thread panicked"))?
        .map_err(|e| io_err("mounting image view", e))?;
        root.mounted = true;
        Ok(root)
    }
}

impl Drop for ImageRoot {
    fn drop(&mut self) {
        if self.mounted
            && let Err(e) = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH)
        {
            tracing::warn!("unmounting image view {}: {e}", self.path.display());
        }
        if let Some(d) = &self.owned {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The engine as the executor sees it during one build.
struct Backend {
    engine: Arc<Engine>,
    rm: bool,
    force_rm: bool,
    host_config: serde_json::Map<String, Value>,
    auth: BTreeMap<String, berth_distribution::Credentials>,
    secrets: BTreeMap<String, Vec<u8>>,
    /// `--cache-from` images and their local parents.
    cache_from: Vec<berth_image::Image>,
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl Backend {
    fn store(&self) -> &Arc<berth_image::ImageStore> {
        self.engine.images.store()
    }

    /// `path` in the image as a host path (the image's view, held open by the returned
    /// root), for `RUN --mount=type=bind,from=`.
    async fn image_path(
        &self,
        image: &str,
        path: &str,
    ) -> std::result::Result<(ImageRoot, PathBuf), BuildError> {
        let store = self.store().clone();
        let tmp = self.engine.builds.root.join("tmp");
        let (image, path) = (image.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || {
            let root = ImageRoot::open(&store, &tmp, &image).map_err(berr)?;
            let view = RootView::open(&root.path).map_err(berr)?;
            let canonical = view.canonical(&path).map_err(|e| {
                BuildError::new(format!("failed to mount {path} from {image}: {e}"))
            })?;
            let host = root.path.join(canonical.trim_start_matches('/'));
            Ok((root, host))
        })
        .await
        .map_err(|e| BuildError::new(e.to_string()))?
    }

    /// A new `--mount=type=cache,from=` directory starts as a copy of `src` in the image.
    async fn seed_cache(
        &self,
        image: &str,
        src: &str,
        dir: &Path,
    ) -> std::result::Result<(), BuildError> {
        let (src, dir) = (src.to_owned(), dir.to_path_buf());
        self.with_image(image, move |_, v| {
            let mut data = Vec::new();
            let from = format!("{}/.", src.trim_end_matches('/'));
            v.archive(&from, &mut data).map_err(berr)?;
            let mut ar = tar::Archive::new(&data[..]);
            ar.set_preserve_permissions(true);
            // tar's unpack refuses `..` members and writes through no symlink outside `dir`
            ar.unpack(&dir)
                .map_err(|e| BuildError::new(format!("seeding cache mount from {src}: {e}")))
        })
        .await
    }

    /// Runs `f` on the blocking pool with the image's filesystem open read-only.
    async fn with_image<T, F>(&self, image: &str, f: F) -> std::result::Result<T, BuildError>
    where
        T: Send + 'static,
        F: FnOnce(&Path, &RootView) -> std::result::Result<T, BuildError> + Send + 'static,
    {
        let store = self.store().clone();
        let tmp = self.engine.builds.root.join("tmp");
        let image = image.to_owned();
        tokio::task::spawn_blocking(move || {
            let root = ImageRoot::open(&store, &tmp, &image).map_err(berr)?;
            let view = RootView::open(&root.path).map_err(berr)?;
            f(&root.path, &view)
        })
        .await
        .map_err(|e| BuildError::new(e.to_string()))?
    }

    /// A container from `image` that is never started: a rootfs for archive operations.
    async fn scratch_container(&self, image: &str, user: Option<&str>) -> Result<String> {
        let body = json!({
            "Image": image,
            "Cmd": ["#(nop) "],
            "Entrypoint": [""],
            "User": user.unwrap_or(""),
            "HostConfig": { "NetworkMode": "none" },
        });
        let (id, _) = self.engine.containers.create(None, body).await?;
        Ok(id)
    }

    async fn remove(&self, id: &str) {
        if let Err(e) = self.engine.containers.remove(id, true, true).await {
            tracing::warn!("removing build container {id}: {e}");
        }
    }

    async fn run_inner(
        &self,
        req: &RunRequest,
        id: &str,
        out: &berth_build::Output,
    ) -> Result<i32> {
        let exit = self.engine.containers.wait(id, WaitCondition::NextExit)?;
        self.engine.containers.start(id).await?;
        let (_, mut logs) = self.engine.containers.logs(
            id,
            LogOptions {
                stdout: true,
                stderr: true,
                follow: true,
                ..Default::default()
            },
        )?;
        while let Some(m) = logs.recv().await {
            out(String::from_utf8_lossy(&m.data).into_owned());
        }
        let _ = req;
        Ok(exit.await)
    }
}

impl berth_build::Backend for Backend {
    async fn base_image(
        &self,
        name: &str,
        pull: bool,
        out: &berth_build::Output,
    ) -> std::result::Result<BaseImage, BuildError> {
        // one indexed query and a small config read: inline, as a trip through the blocking
        // pool costs more than that on a loaded machine (the cached build's critical path)
        let local = self.store().lookup(name);
        let img = match local {
            Ok(img) if !pull => img,
            other => {
                let r = Reference::parse_normalized(name)
                    .map_err(|e| BuildError::new(e.to_string()))?;
                let r = if r.tag.is_none() && r.digest.is_none() {
                    r.with_tag("latest")
                } else {
                    r
                };
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
                let req = crate::registry::PullRequest {
                    from_image: r.to_string(),
                    tag: String::new(),
                    platform: String::new(),
                    auth: self.auth.get(&r.domain).cloned().or_else(|| {
                        (r.domain == "docker.io")
                            .then(|| self.auth.get("https://index.docker.io/v1/").cloned())
                            .flatten()
                    }),
                };
                let o = out.clone();
                let fwd = tokio::spawn(async move {
                    while let Some(v) = rx.recv().await {
                        if let Some(s) = v.get("status").and_then(Value::as_str) {
                            match v.get("id").and_then(Value::as_str) {
                                Some(id) if v.get("progressDetail").is_none() => {
                                    o(format!("{id}: {s}\n"))
                                }
                                None => o(format!("{s}\n")),
                                _ => {}
                            }
                        }
                    }
                });
                let res = self.engine.images.pull(req, tx).await;
                let _ = fwd.await;
                if let Err(e) = res {
                    // a local image is good enough when --pull could not refresh it
                    match other {
                        Ok(img) => img,
                        Err(_) => return Err(berr(e)),
                    }
                } else {
                    let store = self.store().clone();
                    let n = r.to_string();
                    tokio::task::spawn_blocking(move || store.lookup(&n))
                        .await
                        .map_err(|e| BuildError::new(e.to_string()))?
                        .map_err(|e| BuildError::new(e.to_string()))?
                }
            }
        };
        Ok(BaseImage {
            id: img.id.to_string(),
            config: img.config,
        })
    }

    async fn run(
        &self,
        req: RunRequest,
        out: &berth_build::Output,
    ) -> std::result::Result<String, BuildError> {
        let mut hc = self.host_config.clone();
        hc.insert(
            "NetworkMode".into(),
            json!(req.network.clone().unwrap_or_else(|| "bridge".into())),
        );
        let mut binds = Vec::new();
        // image views bound into the step (`--mount=from=`), unmounted when it ends
        let mut views: Vec<ImageRoot> = Vec::new();
        let mut tmpfs = serde_json::Map::new();
        // secrets are files in the exec root (tmpfs on a usual host), removed after the step
        let secret_dir = TmpDir(
            self.engine
                .config
                .exec_root
                .join("build-secrets")
                .join(hex_rand()),
        );
        for m in &req.mounts {
            match m {
                MountSpec::Secret {
                    id,
                    target,
                    mode,
                    uid,
                    gid,
                } => {
                    let data = self.secrets.get(id).cloned().unwrap_or_default();
                    let path = secret_dir.0.join(hex_rand());
                    write_secret(&path, &data, *mode, *uid, *gid)
                        .map_err(|e| BuildError::new(format!("secret {id}: {e}")))?;
                    binds.push(format!("{}:{target}:ro", path.display()));
                }
                MountSpec::Bind {
                    source,
                    image: None,
                    target,
                    readonly,
                } => binds.push(format!(
                    "{}:{target}{}",
                    source.display(),
                    if *readonly { ":ro" } else { "" }
                )),
                MountSpec::Bind {
                    source,
                    image: Some(image),
                    target,
                    ..
                } => {
                    // always read-only: the source is an image's own layer or view
                    let (root, host) = self.image_path(image, &source.to_string_lossy()).await?;
                    views.push(root);
                    binds.push(format!("{}:{target}:ro", host.display()));
                }
                MountSpec::Cache {
                    id,
                    target,
                    readonly,
                    image,
                } => {
                    let dir = self.engine.builds.cache_mount_dir(id);
                    let fresh = !dir.exists();
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| BuildError::new(format!("creating cache mount: {e}")))?;
                    if fresh && let Some((img, src)) = image {
                        self.seed_cache(img, src, &dir).await?;
                    }
                    binds.push(format!(
                        "{}:{target}{}",
                        dir.display(),
                        if *readonly { ":ro" } else { "" }
                    ));
                }
                MountSpec::Tmpfs { target, size } => {
                    tmpfs.insert(
                        target.clone(),
                        json!(size.map(|s| format!("size={s}")).unwrap_or_default()),
                    );
                }
            }
        }
        if !binds.is_empty() {
            hc.insert("Binds".into(), json!(binds));
        }
        if !tmpfs.is_empty() {
            hc.insert("Tmpfs".into(), Value::Object(tmpfs));
        }
        let body = json!({
            "Image": req.image,
            "Cmd": req.cmd,
            "Entrypoint": [""],
            "Env": req.env,
            "User": req.user,
            "WorkingDir": req.workdir,
            "HostConfig": hc,
        });
        let (id, _) = self
            .engine
            .containers
            .create(None, body)
            .await
            .map_err(berr)?;
        out(format!(" ---> Running in {}\n", short(&id)));
        let res = self.run_inner(&req, &id, out).await;
        let code = match res {
            Ok(c) => c,
            Err(e) => {
                if self.force_rm || self.rm {
                    self.remove(&id).await;
                }
                return Err(berr(e));
            }
        };
        if code != 0 {
            if self.force_rm {
                out(format!("Removing intermediate container {}\n", short(&id)));
                self.remove(&id).await;
            }
            return Err(BuildError::new(format!(
                "The command '{}' returned a non-zero code: {code}",
                req.cmd.join(" ")
            ))
            .with_code(code));
        }
        // mount points the runtime made are not the step's changes (nor is a secret's name)
        let targets: Vec<String> = req
            .mounts
            .iter()
            .map(|m| match m {
                MountSpec::Bind { target, .. }
                | MountSpec::Cache { target, .. }
                | MountSpec::Tmpfs { target, .. }
                | MountSpec::Secret { target, .. } => target.clone(),
            })
            .collect();
        let img = self
            .engine
            .containers
            .commit_build(&id, req.config, req.history, &targets)
            .await;
        drop(secret_dir);
        drop(views);
        if self.rm || self.force_rm {
            out(format!("Removing intermediate container {}\n", short(&id)));
            self.remove(&id).await;
        }
        Ok(img.map_err(berr)?.to_string())
    }

    async fn add_files(
        &self,
        req: FilesRequest,
        _out: &berth_build::Output,
    ) -> std::result::Result<String, BuildError> {
        let FilesRequest {
            image,
            entries,
            chown,
            config,
            history,
        } = req;
        let Some(image) = image else {
            // FROM scratch: the layer is exactly the entries
            let (uid, gid) = match &chown {
                Some(c) => numeric_owner(c)?,
                None => (None, None),
            };
            let entries: Vec<_> = entries
                .into_iter()
                .map(|mut e| {
                    if let Some(u) = uid {
                        e.uid = u;
                    }
                    if let Some(g) = gid {
                        e.gid = g;
                    }
                    e
                })
                .collect();
            let store = self.store().clone();
            let id =
                tokio::task::spawn_blocking(move || -> std::result::Result<Digest, BuildError> {
                    let mut tar = Vec::new();
                    context::write_tar(&entries, &HashSet::new(), &mut tar)?;
                    store
                        .create_image(
                            None,
                            Some(&mut &tar[..]),
                            config,
                            history,
                            None,
                            &mut |_| {},
                        )
                        .map_err(|e| BuildError::new(e.to_string()))
                })
                .await
                .map_err(|e| BuildError::new(e.to_string()))??;
            return Ok(id.to_string());
        };
        // the common case needs no container: the layer is the entries themselves
        let c2 = chown.clone();
        let entries = match self
            .with_image(&image, move |root, v| {
                direct_layer(root, v, entries, c2.as_deref())
            })
            .await?
        {
            Ok(tar) => {
                let parent: Digest = image
                    .parse()
                    .map_err(|_| BuildError::new(format!("bad image id {image}")))?;
                let store = self.store().clone();
                let id = tokio::task::spawn_blocking(move || {
                    store.create_child_image(Some(&parent), &mut &tar[..], config, history)
                })
                .await
                .map_err(|e| BuildError::new(e.to_string()))?
                .map_err(|e| BuildError::new(e.to_string()))?;
                return Ok(id.to_string());
            }
            Err(entries) => entries,
        };
        let ctr = self
            .scratch_container(&image, chown.as_deref())
            .await
            .map_err(berr)?;
        let res = async {
            // implicit directories the image already has keep their mode and owner
            let mut skip = HashSet::new();
            for e in entries.iter().filter(|e| e.implicit) {
                if self
                    .engine
                    .containers
                    .archive_stat(&ctr, &e.path)
                    .await
                    .is_ok()
                {
                    skip.insert(e.path.clone());
                }
            }
            let tar = tokio::task::spawn_blocking(move || {
                let mut tar = Vec::new();
                context::write_tar(&entries, &skip, &mut tar).map(|_| tar)
            })
            .await
            .map_err(|e| BuildError::new(e.to_string()))??;
            self.engine
                .containers
                .archive_put(
                    &ctr,
                    "/",
                    false,
                    chown.is_some(),
                    Box::new(std::io::Cursor::new(tar)),
                )
                .await
                .map_err(|e| match &chown {
                    Some(c) if e.message.contains("user") || e.message.contains("group") => {
                        BuildError::new(format!(
                            "unable to convert uid/gid chown string to host mapping: {}: {c}",
                            e.message
                        ))
                    }
                    _ => berr(e),
                })?;
            self.engine
                .containers
                .commit_build(&ctr, config, history, &[])
                .await
                .map_err(berr)
        }
        .await;
        self.remove(&ctr).await;
        Ok(res?.to_string())
    }

    async fn commit_config(
        &self,
        parent: Option<&str>,
        config: ImageConfig,
        history: History,
    ) -> std::result::Result<String, BuildError> {
        let parent: Option<Digest> = match parent {
            Some(p) => Some(
                p.parse()
                    .map_err(|_| BuildError::new(format!("bad image id {p}")))?,
            ),
            None => None,
        };
        let store = self.store().clone();
        let id = tokio::task::spawn_blocking(move || {
            store.create_image(parent.as_ref(), None, config, history, None, &mut |_| {})
        })
        .await
        .map_err(|e| BuildError::new(e.to_string()))?
        .map_err(|e| BuildError::new(e.to_string()))?;
        Ok(id.to_string())
    }

    async fn is_dir(&self, image: &str, path: &str) -> bool {
        let path = path.to_owned();
        self.with_image(image, move |_, v| Ok(v.is_dir(&path)))
            .await
            .unwrap_or(false)
    }

    async fn export(&self, image: &str, path: &str) -> std::result::Result<Vec<u8>, BuildError> {
        let path = path.to_owned();
        self.with_image(image, move |_, v| {
            let mut data = Vec::new();
            v.archive(&path, &mut data).map_err(|e| {
                if e.kind == crate::ErrorKind::NotFound {
                    BuildError::new(format!("COPY failed: stat {path}: file does not exist"))
                } else {
                    berr(e)
                }
            })?;
            Ok(data)
        })
        .await
    }

    async fn download(&self, url: &str) -> std::result::Result<Vec<u8>, BuildError> {
        let r = crate::fetch::get_reader(url).await.map_err(berr)?;
        tokio::task::spawn_blocking(move || {
            let mut r = r;
            let mut d = Vec::new();
            r.read_to_end(&mut d).map(|_| d)
        })
        .await
        .map_err(|e| BuildError::new(e.to_string()))?
        .map_err(|e| BuildError::new(format!("downloading {url}: {e}")))
    }

    async fn cache_get(&self, key: &str) -> Option<String> {
        let id = self.engine.builds.cache_get(key)?;
        let d: Digest = id.parse().ok()?;
        // a cached image that was removed is a miss
        self.store().exists(&d).ok().filter(|e| *e).map(|_| id)
    }

    async fn cache_put(&self, key: &str, image: &str) {
        self.engine.builds.cache_put(key, image);
    }

    async fn cache_from_hit(
        &self,
        parent: Option<&str>,
        created_by: &str,
        config: &ImageConfig,
    ) -> Option<String> {
        self.cache_from
            .iter()
            .find(|img| {
                img.parent.as_ref().map(|p| p.to_string()).as_deref() == parent
                    && img
                        .config
                        .history
                        .last()
                        .and_then(|h| h.created_by.as_deref())
                        == Some(created_by)
                    && img.config.config == config.config
            })
            .map(|img| img.id.to_string())
    }
}

/// The layer of an ADD/COPY/WORKDIR step written straight from its entries, when extracting
/// them into a container would give the same changes: no existing path on the way is a
/// symlink and nothing changes type (a file over a directory or the reverse); otherwise the
/// entries come back and the caller extracts them into a container as dockerd does.
/// Directories the image already has keep their mode and owner, as overlay's copy-up keeps
/// them; `--chown` names are resolved in the image's /etc/passwd and /etc/group.
fn direct_layer(
    root: &Path,
    view: &RootView,
    mut entries: Vec<context::FileEntry>,
    chown: Option<&str>,
) -> std::result::Result<std::result::Result<Vec<u8>, Vec<context::FileEntry>>, BuildError> {
    let owner = match chown {
        None => None,
        Some(c) => {
            let u = berth_runtime::user::resolve(root, c, &[]).map_err(|e| {
                BuildError::new(format!(
                    "unable to convert uid/gid chown string to host mapping: {e}: {c}"
                ))
            })?;
            Some((u.uid, u.gid))
        }
    };
    let mut fits = true;
    for e in entries.iter_mut() {
        let want_dir = matches!(e.source, context::Source::Dir);
        match view.lstat(&e.path) {
            Err(rustix::io::Errno::NOENT) => {}
            Err(_) => fits = false,
            Ok((canonical, is_dir)) => {
                if canonical != e.path || is_dir != want_dir {
                    fits = false;
                } else if e.implicit {
                    match view.meta(&e.path) {
                        Ok((mode, uid, gid, _)) => {
                            e.mode = mode;
                            e.uid = uid;
                            e.gid = gid;
                            continue;
                        }
                        Err(_) => fits = false,
                    }
                }
            }
        }
        if !fits {
            break;
        }
        if let Some((uid, gid)) = owner {
            e.uid = uid;
            e.gid = gid;
        }
    }
    if !fits {
        return Ok(Err(entries));
    }
    let mut tar = Vec::new();
    context::write_tar(&entries, &HashSet::new(), &mut tar)?;
    Ok(Ok(tar))
}

fn numeric_owner(c: &str) -> std::result::Result<(Option<u32>, Option<u32>), BuildError> {
    let (u, g) = c.split_once(':').unwrap_or((c, c));
    let p = |s: &str| {
        s.parse::<u32>().map_err(|_| {
            BuildError::new(format!(
                "unable to convert uid/gid chown string to host mapping: can't find uid for user {s}: no such user: {s}"
            ))
        })
    };
    Ok((Some(p(u)?), Some(p(g)?)))
}

/// Bodies up to this size are hashed before they are unpacked, and their unpacked tree is kept
/// for the next build of the same body (the usual edit-and-rebuild loop sends the same small
/// context again and again).
const CONTEXT_CACHE_MAX: u64 = 8 << 20;
/// Unpacked contexts kept in `builder/ctx-cache`.
const CONTEXT_CACHE_KEEP: usize = 4;

/// The build's context directory: removed after the build, or given back to its cache slot.
struct ContextDir {
    dir: PathBuf,
    slot: Option<PathBuf>,
}

impl Drop for ContextDir {
    fn drop(&mut self) {
        // the build never writes into its context (binds are read-only), so the tree is what
        // the body unpacked to; a slot some other build of the same body filled meanwhile
        // makes this one go
        if let Some(slot) = &self.slot
            && std::fs::rename(&self.dir, slot).is_ok()
        {
            if let Ok(f) = std::fs::File::open(slot) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            if let Some(cache) = slot.parent() {
                evict_contexts(cache);
            }
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Keeps the [`CONTEXT_CACHE_KEEP`] most recently used trees.
fn evict_contexts(cache: &Path) {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return;
    };
    let mut trees: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if trees.len() <= CONTEXT_CACHE_KEEP {
        return;
    }
    trees.sort();
    for (_, p) in &trees[..trees.len() - CONTEXT_CACHE_KEEP] {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// Fills `dir` with the context: a small body is hashed first and, when an earlier build left
/// the tree of the same body (and Dockerfile name), that tree is taken over (a rename: this
/// build's alone) instead of unpacking again. Returns the cache slot to give the tree back to.
fn prepare_context(
    input: Box<dyn Read + Send>,
    dir: &Path,
    cache: &Path,
    extra: &str,
) -> Result<Option<PathBuf>> {
    let mut input = input;
    let mut head = Vec::new();
    if let Err(e) = (&mut input)
        .take(CONTEXT_CACHE_MAX + 1)
        .read_to_end(&mut head)
    {
        return Err(Error::invalid(format!("failed to read build context: {e}")));
    }
    if head.len() as u64 > CONTEXT_CACHE_MAX {
        unpack_context(Box::new(std::io::Cursor::new(head).chain(input)), dir)?;
        return Ok(None);
    }
    let mut keyed = head.clone();
    keyed.push(0);
    keyed.extend_from_slice(extra.as_bytes());
    let slot = cache.join(&Digest::of(&keyed).hex()[..32]);
    drop(keyed);
    // `dir` is empty: a directory renames over an empty one
    if std::fs::rename(&slot, dir).is_ok() {
        return Ok(Some(slot));
    }
    std::fs::create_dir_all(cache).map_err(|e| io_err("creating context cache", e))?;
    unpack_context(Box::new(std::io::Cursor::new(head)), dir)?;
    Ok(Some(slot))
}

/// Unpacks the context tar (plain, gzip, zstd, bzip2 or xz) into `dir`; a malformed tar or
/// compressed stream is a 400.
fn unpack_context(input: Box<dyn Read + Send>, dir: &Path) -> Result<()> {
    let mut input = input;
    let res = unpack_context_from(&mut input, dir);
    // read the body to its end (padding after the end-of-archive blocks, or the rest of a
    // malformed body): answering an error while the client is still sending would make it
    // see a broken pipe instead
    let drained = std::io::copy(&mut input, &mut std::io::sink());
    res?;
    drained.map_err(|e| Error::invalid(format!("failed to read build context: {e}")))?;
    Ok(())
}

fn unpack_context_from(input: &mut dyn Read, dir: &Path) -> Result<()> {
    let bad =
        |e: &dyn std::fmt::Display| Error::invalid(format!("failed to read build context: {e}"));
    let input = context::unpack_bz_xz(input).map_err(|e| bad(&e))?;
    let (_, reader) = berth_image::layer::decompress(input).map_err(|e| bad(&e))?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    // tar's unpack refuses `..` members and writes through no symlink outside `dir`
    ar.unpack(dir).map_err(|e| bad(&e))?;
    let mut rest = ar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| bad(&e))?;
    Ok(())
}

/// Why a build failed, with a failed RUN's exit status (dockerd's `errorDetail.code`, which
/// `docker build` exits with).
#[derive(Debug)]
pub struct BuildFailure {
    pub error: Error,
    pub code: Option<i32>,
}

/// `POST /build`: the whole build; events go to `sink`. Errors before any output (bad tar,
/// Dockerfile missing or malformed, bad tag) are returned plainly; later ones too, and the
/// caller writes them in-band.
pub async fn build(
    engine: Arc<Engine>,
    input: Box<dyn Read + Send>,
    p: BuildParams,
    sink: Sink,
) -> std::result::Result<String, BuildFailure> {
    match build_inner(engine, input, p, sink).await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(e)) => Err(BuildFailure {
            error: Error::invalid(e.message),
            code: e.code,
        }),
        Err(error) => Err(BuildFailure { error, code: None }),
    }
}

/// The build; the outer error is the engine's, the inner one the executor's.
async fn build_inner(
    engine: Arc<Engine>,
    input: Box<dyn Read + Send>,
    p: BuildParams,
    sink: Sink,
) -> Result<std::result::Result<String, BuildError>> {
    let mut tags = Vec::new();
    for t in &p.tags {
        let r = Reference::parse_normalized(t).map_err(|_| {
            Error::invalid(format!(
                "invalid reference format: repository name ({t}) must be lowercase"
            ))
        })?;
        if r.digest.is_some() {
            return Err(Error::invalid(
                "refusing to create a tag with a digest reference",
            ));
        }
        tags.push(if r.tag.is_none() {
            r.with_tag("latest")
        } else {
            r
        });
    }
    let dir = engine
        .builds
        .root
        .join("tmp")
        .join(format!("ctx-{}", hex_rand()));
    std::fs::create_dir_all(&dir).map_err(|e| io_err("creating build context dir", e))?;
    let mut tmp = ContextDir {
        dir: dir.clone(),
        slot: None,
    };
    let dockerfile = if p.dockerfile.is_empty() {
        "Dockerfile".to_owned()
    } else {
        p.dockerfile.clone()
    };
    let remote = p.remote.trim();
    let input: Box<dyn Read + Send> = if remote.is_empty() {
        input
    } else if remote.starts_with("http://") || remote.starts_with("https://") {
        let mut r = crate::fetch::get_reader(remote).await?;
        let data = tokio::task::spawn_blocking(move || {
            let mut d = Vec::new();
            r.read_to_end(&mut d).map(|_| d)
        })
        .await?
        .map_err(|e| Error::invalid(format!("downloading {remote}: {e}")))?;
        if is_tar(&data) {
            Box::new(std::io::Cursor::new(data))
        } else {
            // a URL to a Dockerfile: the context is that file alone
            let name = context::clean_rel(&dockerfile)
                .map(|c| c.join("/"))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "Dockerfile".into());
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..])
                .map_err(|e| io_err("packing the remote Dockerfile", e))?;
            let tar = b
                .into_inner()
                .map_err(|e| io_err("packing the remote Dockerfile", e))?;
            Box::new(std::io::Cursor::new(tar))
        }
    } else {
        return Err(Error::invalid(format!(
            "unable to prepare context: git contexts are not supported by berthd ({remote}): clone it and build the directory"
        )));
    };
    let d2 = dir.clone();
    let cache = engine.builds.root.join("ctx-cache");
    let key_extra = dockerfile.clone();
    tmp.slot = tokio::task::spawn_blocking(move || prepare_context(input, &d2, &cache, &key_extra))
        .await??;
    let ignore_text = std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default();
    let ctx = Arc::new(Context::new(
        &dir,
        berth_build::ignore::Ignore::parse(&ignore_text),
    ));
    let df_path = match Context::new(&dir, Default::default()).resolve(&dockerfile) {
        Ok(r) if !r.is_dir => r.host,
        // dockerd also accepts a lower-case `dockerfile` when the default is missing
        _ if p.dockerfile.is_empty() && dir.join("dockerfile").is_file() => dir.join("dockerfile"),
        _ => {
            return Err(Error::invalid(format!(
                "Cannot locate specified Dockerfile: {dockerfile}"
            )));
        }
    };
    let text = std::fs::read_to_string(&df_path)
        .map_err(|e| Error::invalid(format!("reading Dockerfile: {e}")))?;
    let df =
        berth_build::parse_named(&text, &dockerfile).map_err(|e| Error::invalid(e.to_string()))?;
    // dockerd's removeDockerfile: once read, the Dockerfile and .dockerignore leave the context
    // when .dockerignore excludes them — the docker CLI's `-f` from outside the context or stdin
    // arrives as `.dockerfile.<random>` listed there, and `COPY .` must not pick it up.
    // (a tree that lost a file this way is not kept for the next build: its .dockerignore or
    // Dockerfile would be missing there)
    if ctx.excluded(".dockerignore") {
        let _ = std::fs::remove_file(dir.join(".dockerignore"));
        tmp.slot = None;
    }
    if df_path
        .strip_prefix(&dir)
        .ok()
        .and_then(|r| r.to_str())
        .is_some_and(|r| ctx.excluded(r))
    {
        let _ = std::fs::remove_file(&df_path);
        tmp.slot = None;
    }

    let quiet = p.quiet;
    let s2 = sink.clone();
    let out: berth_build::Output = Arc::new(move |s: String| {
        if !quiet {
            s2(BuildEvent::Stream(s));
        }
    });
    let store = engine.images.store().clone();
    let names = p.cache_from.clone();
    let cache_from = if names.is_empty() {
        Vec::new()
    } else {
        tokio::task::spawn_blocking(move || {
            let mut out: Vec<berth_image::Image> = Vec::new();
            for n in names {
                // a --cache-from image that is not here is skipped, as dockerd does
                let mut next = store.lookup(&n).ok();
                while let Some(img) = next.take() {
                    if out.iter().any(|i| i.id == img.id) {
                        break;
                    }
                    next = img.parent.as_ref().and_then(|p| store.get(p).ok());
                    out.push(img);
                }
            }
            out
        })
        .await?
    };
    let backend = Arc::new(Backend {
        cache_from,
        engine: engine.clone(),
        rm: p.rm,
        force_rm: p.force_rm,
        host_config: p.host_config.clone(),
        auth: p.auth.clone(),
        secrets: p.secrets.clone(),
    });
    let opts = berth_build::Options {
        build_args: p.build_args.clone(),
        labels: p.labels.clone(),
        target: Some(p.target.clone()).filter(|t| !t.is_empty()),
        no_cache: p.no_cache,
        pull: p.pull,
        network: Some(p.network_mode.clone()).filter(|n| !n.is_empty() && n != "default"),
        quiet,
        cache_from: p.cache_from.clone(),
        secrets: p.secrets.keys().cloned().collect(),
    };
    let built = match berth_build::exec::build(backend, ctx, df, opts, out).await {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    drop(tmp);
    sink(BuildEvent::Aux(json!({ "ID": built.id })));
    let short_id = built
        .id
        .strip_prefix("sha256:")
        .unwrap_or(&built.id)
        .chars()
        .take(12)
        .collect::<String>();
    if quiet {
        sink(BuildEvent::Stream(format!("{}\n", built.id)));
    } else {
        sink(BuildEvent::Stream(format!(
            "Successfully built {short_id}\n"
        )));
    }
    for t in &tags {
        let id: Digest = built
            .id
            .parse()
            .map_err(|_| Error::internal(format!("bad image id {}", built.id)))?;
        engine.images.tag_built(&id, t)?;
        if !quiet {
            sink(BuildEvent::Stream(format!(
                "Successfully tagged {}\n",
                t.familiar()
            )));
        }
    }
    Ok(Ok(built.id))
}

/// A tar, plain or compressed (gzip/zstd/bzip2/xz), judged by its first header.
fn is_tar(data: &[u8]) -> bool {
    let mut head = Vec::new();
    if let Ok(r) = context::unpack_bz_xz(data)
        && let Ok((_, r)) = berth_image::layer::decompress(r)
    {
        let _ = r.take(512).read_to_end(&mut head);
    }
    head.len() >= 262 && &head[257..262] == b"ustar"
}

fn write_secret(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, data)?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    Ok(())
}

fn hex_rand() -> String {
    let b: [u8; 8] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}
