//! The public face of the image store. (Contract shared with the engine: change signatures only
//! together with the engine crate.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use berth_types::image_config::{History, ImageConfig, RootFs};
use berth_types::{Digest, Reference};
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

// Registry pull/push support; a child module so it can reuse the private commit machinery.
#[path = "pull.rs"]
mod pull;
pub use pull::{LayerTar, PullLayer, PullSession, PushLayer};

use crate::archive::{self, Descriptor, ManifestItem, OciIndex, OciManifest, SpooledFile};
use crate::layer::{self, Compression, HashReader};
use crate::{Error, Result};

/// Statements through the connection's prepared-statement cache: parsing the SQL again on
/// every call cost more CPU than running it (`sqlite3RunParser` was a third of the store's
/// time on the path of `docker run`: the image lookup, the layer hold and its release).
trait Cached {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
    fn cached_exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
    fn cached_exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

/// `synchronous=NORMAL` for one transaction of the store (see [`ImageStore::hold_layers`]);
/// FULL again when dropped, however the transaction ended.
struct Relaxed<'a>(&'a Connection);

impl<'a> Relaxed<'a> {
    fn unless(conn: &'a Connection, durable: bool) -> Result<Option<Relaxed<'a>>> {
        if durable {
            return Ok(None);
        }
        conn.cached_exec("PRAGMA synchronous = NORMAL", [])?;
        Ok(Some(Relaxed(conn)))
    }
}

impl Drop for Relaxed<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.cached_exec("PRAGMA synchronous = FULL", []) {
            tracing::error!("image store: restoring synchronous=FULL: {e}");
        }
    }
}

/// Statements kept prepared (rusqlite's default is 16; the store has about 40).
const STATEMENT_CACHE: usize = 64;

/// An image as the store knows it.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    /// sha256 of the config blob: Docker's image ID.
    pub id: Digest,
    /// Tagged references pointing at this image (normalized, e.g. docker.io/library/busybox:latest).
    pub repo_tags: Vec<Reference>,
    /// `name@sha256:<manifest digest>` for images that came from (or went to) a registry, or whose
    /// OCI layout carried a manifest digest.
    pub repo_digests: Vec<Reference>,
    /// Local parent image (set by commit/build), Docker's `Parent`.
    pub parent: Option<Digest>,
    /// The parsed config (the raw bytes are kept as the blob `id`).
    pub config: ImageConfig,
    /// Layer diff IDs, bottom to top.
    pub layers: Vec<Digest>,
    /// Sum of the unpacked sizes of all layers (Docker's `Size`).
    pub size: u64,
    /// When the image entered this store (unix seconds). `created` is in `config`.
    pub added_at: i64,
}

impl Image {
    /// No tags (images that only have repo digests count as dangling, as `docker image prune`
    /// and `docker images -f dangling=true` treat them).
    pub fn is_dangling(&self) -> bool {
        self.repo_tags.is_empty()
    }
}

/// One line of `docker image rm` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RemoveEvent {
    /// A reference removed, in Docker's familiar form ("busybox:latest", "busybox@sha256:...").
    Untagged(String),
    /// An image (and with it the layers only it used) deleted.
    Deleted(Digest),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RemoveOptions {
    /// `rmi -f`
    pub force: bool,
    /// `!--no-prune`: also delete untagged parents
    pub prune_parents: bool,
}

/// How the caller (the engine) tells the store which containers use an image.
pub trait ImageUsage {
    /// Containers (id, running?) created from this image.
    fn containers_using(&self, image: &Digest) -> Vec<(String, bool)>;
}

/// No container uses anything (tests, or before the container subsystem exists).
pub struct NoUsage;
impl ImageUsage for NoUsage {
    fn containers_using(&self, _image: &Digest) -> Vec<(String, bool)> {
        Vec::new()
    }
}

/// Progress of `load`/`import`, one item per layer or image handled.
#[derive(Debug, Clone, Serialize)]
pub enum LoadProgress {
    /// A layer is being unpacked ("Loading layer"), with bytes done/total when known.
    Layer {
        diff_id: Digest,
        current: u64,
        total: Option<u64>,
    },
    /// A layer that already existed in the store.
    LayerExists { diff_id: Digest },
}

/// One image that `load` brought in.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedImage {
    pub id: Digest,
    /// References tagged by this load (docker prints "Loaded image: busybox:latest" for each).
    pub tags: Vec<Reference>,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `--change` lines already applied by the caller, or the base config to start from.
    pub config: ImageConfig,
    /// `-m`: the history comment.
    pub message: Option<String>,
    /// Tag the result with this reference.
    pub reference: Option<Reference>,
}

/// One row of `docker history`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    /// The image this step produced if it is in the store, else None ("<missing>").
    pub id: Option<Digest>,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub comment: String,
}

#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// `-a`: all images not used by a container, not only dangling ones.
    pub all: bool,
    /// `--filter until=<unix seconds>`: only images created before this.
    pub until: Option<i64>,
    /// `--filter label=k[=v]` / `label!=k[=v]`: (key, value, negate).
    pub labels: Vec<(String, Option<String>, bool)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub deleted: Vec<RemoveEvent>,
    pub space_reclaimed: u64,
}

/// For `system df`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskUsage {
    /// Total bytes of all unpacked layers (each stored once).
    pub layers_size: u64,
    /// Per image: (id, size, shared size = bytes in layers also used by another image).
    pub images: Vec<(Digest, u64, u64)>,
}

/// The image store. Cheap to share behind an `Arc`; methods take `&self` and are thread-safe.
pub struct ImageStore {
    blobs: PathBuf,
    tmp: PathBuf,
    overlay: PathBuf,
    db: Mutex<Connection>,
    /// Held by commits (from placing blobs to the end of the transaction) and by deletions
    /// (from the transaction to removing the files), so a deletion never removes a blob or
    /// directory a concurrent commit has just decided to reuse.
    files: Mutex<()>,
    /// An exclusive flock on `image/lock` for the store's lifetime: `open` cleans up whatever
    /// it does not know, so a second process on the same data root would destroy the first
    /// one's work in progress.
    _lock: std::fs::File,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT REFERENCES layers(chain_id),
    cache_id TEXT NOT NULL UNIQUE,
    link TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    tar_blob TEXT,
    tar_compression TEXT NOT NULL DEFAULT 'none',
    tar_size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    parent TEXT,
    top_layer TEXT REFERENCES layers(chain_id),
    size INTEGER NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_top ON images(top_layer);
CREATE INDEX IF NOT EXISTS images_parent ON images(parent);
CREATE TABLE IF NOT EXISTS refs (
    name TEXT PRIMARY KEY,
    image TEXT NOT NULL REFERENCES images(id),
    is_digest INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image);
CREATE TABLE IF NOT EXISTS layer_holders (
    holder TEXT PRIMARY KEY,
    chain_id TEXT NOT NULL REFERENCES layers(chain_id)
);
";

// The engine shares one store between threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ImageStore>();
};

#[derive(Debug, Clone)]
struct LayerRow {
    chain_id: Digest,
    diff_id: Digest,
    parent: Option<Digest>,
    cache_id: String,
    link: String,
    size: u64,
    tar_blob: Option<String>,
    tar_size: u64,
}

/// One image of a `save`: the image, the references to write, its layers, its config bytes.
type SaveItem = (Image, Vec<Reference>, Vec<LayerRow>, Vec<u8>);

/// A layer unpacked by the current operation but not yet committed.
struct NewLayer {
    chain_id: Digest,
    diff_id: Digest,
    parent: Option<Digest>,
    cache_id: String,
    link: String,
    size: u64,
    tar_size: u64,
    compression: Compression,
    /// The tar as received, to become a blob.
    raw: SpooledFile,
}

/// An image ready to be committed.
struct NewImage {
    id: Digest,
    config_bytes: Vec<u8>,
    top_layer: Option<Digest>,
    parent: Option<Digest>,
    tags: Vec<Reference>,
}

/// Files to delete once a transaction that dropped their rows has committed.
#[derive(Default)]
struct Garbage {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    freed: u64,
}

/// Removes a private temp directory however the operation ends.
struct TempDir(PathBuf);

/// A layer directory being filled: `<overlay>/<cache_id>.tmp-XXXX/diff`. Renamed to
/// `<overlay>/<cache_id>` when complete; `guard` removes it otherwise, and `open` removes any
/// `.tmp-` leftover of a crash.
struct PendingLayerDir {
    cache_id: String,
    link: String,
    tmp: PathBuf,
    guard: TempDir,
    diff: PathBuf,
}

impl ImageStore {
    fn pending_layer_dir(&self) -> Result<PendingLayerDir> {
        use std::os::unix::fs::PermissionsExt;
        let cache_id = random_hex(32);
        let tmp = self
            .overlay
            .join(format!("{cache_id}.tmp-{}", random_hex(4)));
        let guard = TempDir(tmp.clone());
        let diff = tmp.join("diff");
        std::fs::create_dir_all(&diff).map_err(io_err("creating layer directory"))?;
        // The layer root is the container's `/` when nothing above changes it: 0755, not umask.
        std::fs::set_permissions(&diff, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod layer directory"))?;
        Ok(PendingLayerDir {
            cache_id,
            link: random_link(),
            tmp,
            guard,
            diff,
        })
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Until `disarm`, removes the layer directories (and links) this operation created.
struct LayerGuard<'a> {
    store: &'a ImageStore,
    layers: Vec<(String, String)>,
}
impl Drop for LayerGuard<'_> {
    fn drop(&mut self) {
        for (cache, link) in &self.layers {
            self.store.remove_layer_files(cache, link);
        }
    }
}

fn io_err(ctx: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let ctx = ctx.into();
    move |e| Error::io(ctx, e)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

/// Docker's overlay2 short link names: 26 characters of base32.
fn random_link() -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..26)
        .map(|_| ALPHA[(rand::random::<u8>() % 32) as usize] as char)
        .collect()
}

/// The diff ID of a tar with no entry (two zero blocks): moby's `layer.DigestSHA256EmptyTar`.
pub const EMPTY_TAR_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Chain IDs of a stack of diff IDs (image spec: ChainID(L0..n) = sha256(ChainID(n-1) + " " + DiffID(n))).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

fn parse_digest_col(s: &str) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e: berth_types::DigestError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn layer_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LayerRow> {
    let parent: Option<String> = r.get(2)?;
    Ok(LayerRow {
        chain_id: parse_digest_col(&r.get::<_, String>(0)?)?,
        diff_id: parse_digest_col(&r.get::<_, String>(1)?)?,
        parent: parent.as_deref().map(parse_digest_col).transpose()?,
        cache_id: r.get(3)?,
        link: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
        tar_blob: r.get(6)?,
        tar_size: r.get::<_, i64>(8)? as u64,
    })
}

const LAYER_COLS: &str =
    "chain_id, diff_id, parent, cache_id, link, size, tar_blob, tar_compression, tar_size";

fn get_layer(conn: &Connection, chain: &Digest) -> Result<Option<LayerRow>> {
    Ok(conn
        .cached_row(
            &format!("SELECT {LAYER_COLS} FROM layers WHERE chain_id = ?1"),
            [chain.to_string()],
            layer_from_row,
        )
        .optional()?)
}

/// All layers of a chain, bottom to top.
/// The top layer `holder` holds ([`ImageStore::hold_layers`]), if any.
fn held_chain(conn: &Connection, holder: &str) -> Result<Option<Digest>> {
    let chain: Option<String> = conn
        .cached_row(
            "SELECT chain_id FROM layer_holders WHERE holder = ?1",
            [holder],
            |r| r.get(0),
        )
        .optional()?;
    Ok(chain.map(|c| parse_digest_col(&c)).transpose()?)
}

/// `l/<link>` of each layer of a stack, bottom first.
fn links_of(stack: &[LayerRow]) -> Vec<String> {
    stack.iter().map(|l| format!("l/{}", l.link)).collect()
}

/// overlay's `lowerdir=` for a stack (bottom first): `l/TOP:...:l/BOTTOM`.
fn lowerdir_of(stack: &[LayerRow]) -> String {
    let mut links = links_of(stack);
    links.reverse();
    links.join(":")
}

fn layer_stack(conn: &Connection, top: Option<&Digest>) -> Result<Vec<LayerRow>> {
    let mut out = Vec::new();
    let mut cur = top.cloned();
    while let Some(c) = cur {
        let row = get_layer(conn, &c)?.ok_or_else(|| {
            Error::NotFound(format!("layer {c} (store metadata is inconsistent)"))
        })?;
        cur = row.parent.clone();
        out.push(row);
        if out.len() > 10_000 {
            return Err(Error::InvalidArgument("layer chain too long".into()));
        }
    }
    out.reverse();
    Ok(out)
}

fn refs_of(conn: &Connection, id: &Digest) -> Result<Vec<Reference>> {
    let mut st = conn.prepare_cached("SELECT name FROM refs WHERE image = ?1 ORDER BY seq")?;
    let names: Vec<String> = st
        .query_map([id.to_string()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    names
        .iter()
        .map(|n| Reference::parse_normalized(n).map_err(Error::from))
        .collect()
}

fn children_of(conn: &Connection, id: &Digest) -> Result<Vec<Digest>> {
    let mut st = conn.prepare_cached("SELECT id FROM images WHERE parent = ?1 ORDER BY id")?;
    let ids: Vec<String> = st
        .query_map([id.to_string()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
}

fn image_exists(conn: &Connection, id: &Digest) -> Result<bool> {
    Ok(conn
        .cached_row(
            "SELECT 1 FROM images WHERE id = ?1",
            [id.to_string()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn next_seq(conn: &Connection) -> Result<i64> {
    Ok(
        conn.cached_row("SELECT coalesce(max(seq), 0) + 1 FROM refs", [], |r| {
            r.get(0)
        })?,
    )
}

/// Is the reference `s` a prefix of the image ID (Docker's isImageIDPrefix)?
fn is_id_prefix(id: &Digest, s: &str) -> bool {
    let full = id.to_string();
    !s.is_empty() && (full.starts_with(s) || id.hex().starts_with(s))
}

/// Docker's ParseAnyReference + GetImage: returns the image and the named reference that
/// matched (None when found by ID).
fn resolve(conn: &Connection, input: &str) -> Result<(Digest, Option<Reference>)> {
    // A full ID, with or without sha256:
    let as_id = input
        .parse::<Digest>()
        .ok()
        .or_else(|| Digest::from_hex(input).ok());
    if let Some(id) = as_id {
        if image_exists(conn, &id)? {
            return Ok((id, None));
        }
        return Err(Error::NotFound(id.to_string()));
    }
    let named = Reference::parse_normalized(input)?;
    let tagged = if named.is_name_only() {
        named.with_tag(berth_types::reference::DEFAULT_TAG)
    } else {
        named.clone()
    };
    let found: Option<String> = conn
        .cached_row(
            "SELECT image FROM refs WHERE name = ?1",
            [tagged.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = found {
        return Ok((parse_digest_col(&id)?, Some(tagged)));
    }
    // Short ID prefix (only hex, at least one character).
    let prefix = input.strip_prefix("sha256:").unwrap_or(input);
    if !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        let mut st =
            conn.prepare_cached("SELECT id FROM images WHERE id >= ?1 AND id < ?2 LIMIT 2")?;
        let lo = format!("sha256:{prefix}");
        let hi = format!("sha256:{prefix}\u{7f}");
        let ids: Vec<String> = st
            .query_map([lo, hi], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if ids.len() == 1 {
            return Ok((parse_digest_col(&ids[0])?, None));
        }
    }
    Err(Error::NotFound(tagged.familiar()))
}

/// Docker's isSingleReference: one tag (plus digests of that same repository), or only digests
/// of one repository.
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let mut single: Option<&Reference> = None;
    let mut canonical = std::collections::BTreeSet::new();
    for r in refs {
        if r.digest.is_some() {
            canonical.insert(r.name());
        } else if single.is_none() {
            single = Some(r);
        } else {
            return false;
        }
    }
    let single = single.unwrap_or(&refs[0]);
    canonical.len() == 1 && canonical.contains(&single.name())
}

fn parse_created(s: Option<&str>) -> i64 {
    s.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

impl ImageStore {
    /// Open (creating if needed) the store under `data_root` (it uses `image/` and `overlay2/`
    /// below it), and clean up whatever a crash left half-written.
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        let image_dir = data_root.join("image");
        let blobs = image_dir.join("blobs").join("sha256");
        let tmp = image_dir.join("tmp");
        let overlay = data_root.join("overlay2");
        for d in [&blobs, &tmp, &overlay.join("l")] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let lock = lock_data_root(&image_dir.join("lock"), data_root)?;
        let conn = Connection::open(image_dir.join("image.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let store = ImageStore {
            blobs,
            tmp,
            overlay,
            db: Mutex::new(conn),
            files: Mutex::new(()),
            _lock: lock,
        };
        store.cleanup()?;
        Ok(store)
    }

    fn files_lock(&self) -> MutexGuard<'_, ()> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so a poisoned lock is still usable.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the overlay2 layer directories live (`<data-root>/overlay2`): mount with this as
    /// the working directory and [`ImageStore::layer_links`] as lowerdir to keep options short.
    /// Other subsystems may add their own entries here (e.g. container `<id>-rw` dirs and
    /// `l/` links to them) as long as the names are not bare 64-hex strings: `open` only cleans
    /// up names it creates.
    pub fn overlay_root(&self) -> &Path {
        &self.overlay
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.blobs.join(hex)
    }

    /// Remove leftovers of a crash: temp files, layer dirs without a row, links without a
    /// layer, blobs nothing references.
    fn cleanup(&self) -> Result<()> {
        if let Ok(rd) = std::fs::read_dir(&self.tmp) {
            for e in rd.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        let conn = self.conn();
        let set = |sql: &str| -> Result<HashSet<String>> {
            let mut st = conn.prepare(sql)?;
            let v = st
                .query_map([], |r| r.get::<_, Option<String>>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(v.into_iter().flatten().collect())
        };
        let caches = set("SELECT cache_id FROM layers")?;
        let links = set("SELECT link FROM layers")?;
        let mut blobs = set("SELECT tar_blob FROM layers")?;
        for id in set("SELECT id FROM images")? {
            if let Some(h) = id.strip_prefix("sha256:") {
                blobs.insert(h.to_owned());
            }
        }
        drop(conn);
        // Only names this store creates are touched (64-hex cache IDs and their `.tmp-`
        // siblings): other subsystems may keep their own directories under overlay2/.
        let ours = |name: &str| {
            let base = name.split(".tmp-").next().unwrap_or(name);
            berth_types::reference::is_full_hex_id(base)
        };
        if let Ok(rd) = std::fs::read_dir(&self.overlay) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !ours(&name) || (caches.contains(&name) && !name.contains(".tmp-")) {
                    continue;
                }
                tracing::info!(dir = %name, "removing unreferenced layer directory");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.overlay.join("l")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if links.contains(&name) {
                    continue;
                }
                // A link is ours if it points at a layer directory of ours (or at nothing).
                let target = std::fs::read_link(e.path()).unwrap_or_default();
                let dir = target
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if ours(&dir) || !e.path().exists() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.blobs) {
            for e in rd.flatten() {
                if !blobs.contains(&*e.file_name().to_string_lossy()) {
                    tracing::info!(blob = %e.file_name().to_string_lossy(), "removing unreferenced blob");
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    fn new_tmp_dir(&self, what: &str) -> Result<TempDir> {
        let p = self.tmp.join(format!("{what}-{}", random_hex(8)));
        std::fs::create_dir(&p).map_err(io_err(format!("creating {}", p.display())))?;
        Ok(TempDir(p))
    }

    fn remove_layer_files(&self, cache_id: &str, link: &str) {
        let _ = std::fs::remove_file(self.overlay.join("l").join(link));
        let _ = std::fs::remove_dir_all(self.overlay.join(cache_id));
    }

    fn image_from_conn(&self, conn: &Connection, id: &Digest) -> Result<Image> {
        let row: Option<(Option<String>, i64, i64)> = conn
            .cached_row(
                "SELECT parent, size, added_at FROM images WHERE id = ?1",
                [id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((parent, size, added_at)) = row else {
            return Err(Error::NotFound(id.to_string()));
        };
        let config = self.read_config(id)?;
        let refs = refs_of(conn, id)?;
        let (repo_digests, repo_tags) = refs.into_iter().partition(|r| r.digest.is_some());
        Ok(Image {
            id: id.clone(),
            repo_tags,
            repo_digests,
            parent: parent.as_deref().and_then(|p| p.parse().ok()),
            layers: config.rootfs.diff_ids.clone(),
            config,
            size: size as u64,
            added_at,
        })
    }

    fn read_config(&self, id: &Digest) -> Result<ImageConfig> {
        let bytes = self.config_bytes(id)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidArchive(format!("stored config of {id} is invalid: {e}")))
    }

    /// Every image, intermediate ones included (callers filter).
    pub fn list(&self) -> Result<Vec<Image>> {
        let conn = self.conn();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM images ORDER BY added_at DESC, id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.iter()
            .map(|s| self.image_from_conn(&conn, &parse_digest_col(s)?))
            .collect()
    }

    /// Resolve what a user typed, as Docker does: a full or short (prefix) ID with or without
    /// `sha256:`, a reference (normalized: `busybox` -> `docker.io/library/busybox:latest`), or
    /// `name@sha256:...` matched against repo digests. Unknown -> `Error::NotFound(input)`.
    pub fn lookup(&self, name_or_id: &str) -> Result<Image> {
        let conn = self.conn();
        let (id, _) = resolve(&conn, name_or_id)?;
        self.image_from_conn(&conn, &id)
    }

    /// [`ImageStore::lookup`] without the image's references: its ID and config, all that a
    /// container create needs (parsing the image's tags was a third of the lookup's CPU).
    pub fn lookup_config(&self, name_or_id: &str) -> Result<(Digest, ImageConfig)> {
        let (id, _) = resolve(&self.conn(), name_or_id)?;
        let config = self.read_config(&id)?;
        Ok((id, config))
    }

    /// Whether an image with this exact ID is stored (one indexed query; no config read).
    pub fn exists(&self, id: &Digest) -> Result<bool> {
        image_exists(&self.conn(), id)
    }

    /// By exact ID.
    pub fn get(&self, id: &Digest) -> Result<Image> {
        let conn = self.conn();
        self.image_from_conn(&conn, id)
    }

    /// The config blob exactly as stored (its sha256 is the image ID).
    pub fn config_bytes(&self, id: &Digest) -> Result<Vec<u8>> {
        match std::fs::read(self.blob_path(id.hex())) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(id.to_string())),
            Err(e) => Err(Error::io(format!("reading config of {id}"), e)),
        }
    }

    /// Point `reference` at `id`; returns the image it pointed at before, if any (which may have
    /// become dangling).
    pub fn tag(&self, id: &Digest, reference: &Reference) -> Result<Option<Digest>> {
        if reference.digest.is_some() {
            return Err(Error::InvalidArgument(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let reference = if reference.is_name_only() {
            reference.with_tag(berth_types::reference::DEFAULT_TAG)
        } else {
            reference.clone()
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if !image_exists(&tx, id)? {
            return Err(Error::NotFound(id.to_string()));
        }
        let prev = set_ref(&tx, &reference, id)?;
        tx.commit()?;
        Ok(prev.filter(|p| p != id))
    }

    /// Record `name@sha256:<manifest digest>` for an image (pull/push).
    pub fn add_repo_digest(&self, id: &Digest, reference: &Reference) -> Result<()> {
        if reference.digest.is_none() {
            return Err(Error::InvalidArgument("not a digest reference".into()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if !image_exists(&tx, id)? {
            return Err(Error::NotFound(id.to_string()));
        }
        set_ref(
            &tx,
            &reference.repository().with_digest(
                reference
                    .digest
                    .as_ref()
                    .ok_or_else(|| Error::InvalidArgument("not a digest reference".into()))?,
            ),
            id,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// `docker rmi` with Docker's rules (daemon/images/image_delete.go): removing a reference of an
    /// image with several references only untags; removing by ID an image with several
    /// references needs force; images used by a container are refused unless forced (and a
    /// running container's image is refused even when forced); images with children are refused.
    pub fn remove(
        &self,
        name_or_id: &str,
        opts: RemoveOptions,
        usage: &dyn ImageUsage,
    ) -> Result<Vec<RemoveEvent>> {
        let _files = self.files_lock();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut garbage = Garbage::default();
        let events = self.remove_in(&tx, name_or_id, opts, usage, &mut garbage)?;
        tx.commit()?;
        drop(conn);
        self.collect(garbage);
        Ok(events)
    }

    fn collect(&self, g: Garbage) {
        for d in g.dirs {
            let _ = std::fs::remove_dir_all(&d);
        }
        for f in g.files {
            let _ = std::fs::remove_file(&f);
        }
    }

    /// `docker load`: a docker-archive (Docker 1.10..28: manifest.json, with or without the OCI
    /// layout Docker 25+ adds) or an OCI image layout tar, plain, gzip or zstd compressed.
    /// All or nothing: on any error nothing of this load stays in the store.
    pub fn load(
        &self,
        input: &mut dyn Read,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Vec<LoadedImage>> {
        let work = self.new_tmp_dir("load")?;
        let (_, mut reader) = layer::decompress(input)?;
        let spool = archive::spool(&mut reader, &work.0)?;
        let plans = archive::plan(&spool)?;

        let mut guard = LayerGuard {
            store: self,
            layers: Vec::new(),
        };
        let mut new_layers: Vec<NewLayer> = Vec::new();
        let mut images = Vec::new();
        for p in &plans {
            let chains = chain_ids(&p.config.rootfs.diff_ids);
            for (i, path) in p.layer_paths.iter().enumerate() {
                let diff = &p.config.rootfs.diff_ids[i];
                let chain = &chains[i];
                let file = spool.get(path)?.clone();
                let known = new_layers.iter().any(|l| &l.chain_id == chain)
                    || get_layer(&self.conn(), chain)?.is_some();
                if known {
                    // Still verify what the archive claims, even though nothing gets stored.
                    let f = File::open(&file.path).map_err(io_err("opening spooled layer"))?;
                    let (_, r) = layer::decompress(f)?;
                    let (actual, _) = HashReader::new(r)
                        .finish()
                        .map_err(|e| Error::InvalidArchive(format!("layer {path}: {e}")))?;
                    if &actual != diff {
                        return Err(Error::DigestMismatch {
                            what: format!("layer {path}"),
                            expected: diff.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                    progress(LoadProgress::LayerExists {
                        diff_id: diff.clone(),
                    });
                    continue;
                }
                let parent = (i > 0).then(|| chains[i - 1].clone());
                let nl = self.unpack_new(file, Some(diff), chain, parent, &mut guard, progress)?;
                new_layers.push(nl);
            }
            // Docker keeps a saved parent link only when the parent is here and its history is
            // a strict prefix of the child's.
            let parent = p
                .parent
                .as_ref()
                .filter(|pid| {
                    plans
                        .iter()
                        .find(|x| &x.id == *pid)
                        .map(|x| x.config.clone())
                        .or_else(|| self.read_config(pid).ok())
                        .is_some_and(|pc| valid_parent(&p.config, &pc))
                })
                .cloned();
            images.push(NewImage {
                id: p.id.clone(),
                config_bytes: p.config_bytes.clone(),
                top_layer: chains.last().cloned(),
                parent,
                tags: p.tags.clone(),
            });
        }
        self.commit(new_layers, &images, guard)?;
        Ok(images
            .into_iter()
            .map(|i| LoadedImage {
                id: i.id,
                tags: i.tags,
            })
            .collect())
    }

    /// Unpack a spooled layer tar into a fresh overlay2 directory, renamed into place when
    /// complete (the DB row comes later, in `commit`).
    fn unpack_new(
        &self,
        raw: SpooledFile,
        expected: Option<&Digest>,
        chain: &Digest,
        parent: Option<Digest>,
        guard: &mut LayerGuard<'_>,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<NewLayer> {
        let PendingLayerDir {
            cache_id,
            link,
            tmp,
            guard: tmp_guard,
            diff: diff_dir,
        } = self.pending_layer_dir()?;
        let total = raw.size;
        // Import learns the diff ID only after unpacking: then only the final event is sent.
        if let Some(exp) = expected {
            progress(LoadProgress::Layer {
                diff_id: exp.clone(),
                current: 0,
                total: Some(total),
            });
        }
        let mut f = File::open(&raw.path).map_err(io_err("opening spooled layer"))?;
        let stats = layer::unpack_layer(&mut f, &diff_dir, &mut |_| {})?;
        if let Some(exp) = expected
            && &stats.diff_id != exp
        {
            return Err(Error::DigestMismatch {
                what: format!("layer {exp}"),
                expected: exp.to_string(),
                actual: stats.diff_id.to_string(),
            });
        }
        progress(LoadProgress::Layer {
            diff_id: stats.diff_id.clone(),
            current: total,
            total: Some(total),
        });
        std::fs::write(tmp.join("link"), &link).map_err(io_err("writing layer link"))?;
        let final_dir = self.overlay.join(&cache_id);
        std::fs::rename(&tmp, &final_dir).map_err(io_err("renaming layer directory"))?;
        std::mem::forget(tmp_guard);
        guard.layers.push((cache_id.clone(), link.clone()));
        std::os::unix::fs::symlink(
            Path::new("..").join(&cache_id).join("diff"),
            self.overlay.join("l").join(&link),
        )
        .map_err(io_err("creating layer link"))?;
        Ok(NewLayer {
            chain_id: chain.clone(),
            diff_id: stats.diff_id,
            parent,
            cache_id,
            link,
            size: stats.size,
            tar_size: stats.tar_size,
            compression: stats.compression,
            raw,
        })
    }

    /// Write a blob from bytes (temp + fsync + rename).
    fn put_blob_bytes(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        let dst = self.blob_path(d.hex());
        if dst.exists() {
            return Ok(d);
        }
        let tmp = self.tmp.join(format!("blob-{}", random_hex(8)));
        let mut f = File::create(&tmp).map_err(io_err("creating blob"))?;
        f.write_all(data).map_err(io_err("writing blob"))?;
        f.sync_all().map_err(io_err("syncing blob"))?;
        std::fs::rename(&tmp, &dst).map_err(io_err("storing blob"))?;
        Ok(d)
    }

    /// Move a spooled file (already hashed) into the blob store.
    fn put_blob_file(&self, f: &SpooledFile) -> Result<()> {
        let dst = self.blob_path(f.digest.hex());
        if dst.exists() {
            return Ok(());
        }
        File::open(&f.path)
            .and_then(|h| h.sync_all())
            .map_err(io_err("syncing blob"))?;
        std::fs::rename(&f.path, &dst).map_err(io_err("storing blob"))?;
        Ok(())
    }

    /// Blobs first, then one transaction with every row; the layer guard is disarmed only when
    /// the rows are committed.
    fn commit(
        &self,
        layers: Vec<NewLayer>,
        images: &[NewImage],
        mut guard: LayerGuard<'_>,
    ) -> Result<()> {
        let _files = self.files_lock();
        for l in &layers {
            self.put_blob_file(&l.raw)?;
        }
        for i in images {
            self.put_blob_bytes(&i.config_bytes)?;
        }
        // Make the unpacked files and blobs durable before the rows that point at them.
        if let Ok(d) = File::open(&self.overlay) {
            let _ = rustix::fs::syncfs(&d);
        }
        let mut duplicates = Vec::new();
        {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            for l in &layers {
                let n = tx.cached_exec(
                    &format!("INSERT OR IGNORE INTO layers ({LAYER_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"),
                    rusqlite::params![
                        l.chain_id.to_string(),
                        l.diff_id.to_string(),
                        l.parent.as_ref().map(|p| p.to_string()),
                        l.cache_id,
                        l.link,
                        l.size as i64,
                        l.raw.digest.hex(),
                        l.compression.as_str(),
                        l.tar_size as i64,
                    ],
                )?;
                if n == 0 {
                    // Another load committed the same layer first: ours is redundant.
                    duplicates.push((l.cache_id.clone(), l.link.clone()));
                }
            }
            for img in images {
                let size: i64 = layer_stack(&tx, img.top_layer.as_ref())
                    .map_err(|e| match e {
                        Error::NotFound(_) => Error::Conflict(
                            "a layer of this image was removed while it was being added; retry"
                                .into(),
                        ),
                        other => other,
                    })?
                    .iter()
                    .map(|l| l.size as i64)
                    .sum();
                tx.cached_exec(
                    "INSERT OR IGNORE INTO images (id, parent, top_layer, size, added_at) VALUES (?1,?2,?3,?4,?5)",
                    rusqlite::params![
                        img.id.to_string(),
                        img.parent.as_ref().map(|p| p.to_string()),
                        img.top_layer.as_ref().map(|p| p.to_string()),
                        size,
                        now(),
                    ],
                )?;
                for t in &img.tags {
                    set_ref(&tx, t, &img.id)?;
                }
            }
            tx.commit()?;
        }
        guard.layers.clear();
        for (c, l) in duplicates {
            self.remove_layer_files(&c, &l);
        }
        Ok(())
    }

    /// `docker save`: the tar Docker 25+ writes (docker-archive v1.2 `manifest.json` + `repositories`
    /// + OCI layout `index.json`/`oci-layout`/`blobs/sha256`). `names` as in `lookup`; a name that
    ///   is a reference tags the saved image with it, an ID saves it untagged.
    pub fn save(&self, names: &[String], out: &mut dyn Write) -> Result<()> {
        // (image, refs) in first-mention order.
        let mut wanted: Vec<(Digest, Vec<Reference>)> = Vec::new();
        let mut add = |id: Digest, r: Option<Reference>| {
            let pos = match wanted.iter().position(|(i, _)| *i == id) {
                Some(p) => p,
                None => {
                    wanted.push((id, Vec::new()));
                    wanted.len() - 1
                }
            };
            if let Some(r) = r
                && r.digest.is_none()
                && !wanted[pos].1.contains(&r)
            {
                wanted[pos].1.push(r);
            }
        };
        let conn = self.conn();
        for name in names {
            let named = Reference::parse_normalized(name).ok();
            // A bare repository name saves every tag of it, as docker does.
            if let Some(n) = named.as_ref().filter(|n| n.is_name_only()) {
                let prefix = format!("{}:", n.name());
                let mut st =
                    conn.prepare("SELECT name, image FROM refs WHERE is_digest = 0 ORDER BY seq")?;
                let rows: Vec<(String, String)> = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut any = false;
                for (rn, img) in rows {
                    if rn.starts_with(&prefix) && !rn[prefix.len()..].contains('/') {
                        add(
                            parse_digest_col(&img)?,
                            Some(Reference::parse_normalized(&rn)?),
                        );
                        any = true;
                    }
                }
                if any {
                    continue;
                }
                // No such repository: maybe a short ID; Docker's error names the input as typed.
                let (id, matched) = resolve(&conn, name).map_err(|e| match e {
                    Error::NotFound(_) => Error::NotFound(name.clone()),
                    other => other,
                })?;
                add(id, matched);
                continue;
            }
            let (id, matched) = resolve(&conn, name)?;
            add(id, matched);
        }
        let mut items = Vec::new();
        for (id, refs) in &wanted {
            let img = self.image_from_conn(&conn, id)?;
            let top = conn
                .cached_row(
                    "SELECT top_layer FROM images WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get::<_, Option<String>>(0),
                )?
                .map(|s| parse_digest_col(&s))
                .transpose()?;
            let stack = layer_stack(&conn, top.as_ref())?;
            let cfg = self.config_bytes(id)?;
            items.push((img, refs.clone(), stack, cfg));
        }
        // Hold the layers while streaming (the lock is released): a concurrent rmi must not
        // delete the blobs being written.
        let holders: Vec<String> = items
            .iter()
            .filter_map(|(_, _, stack, _)| stack.last())
            .enumerate()
            .map(|(i, top)| {
                let h = format!("save:{}:{i}", random_hex(8));
                conn.cached_exec(
                    "INSERT INTO layer_holders (holder, chain_id) VALUES (?1, ?2)",
                    [&h, &top.chain_id.to_string()],
                )
                .map(|_| h)
            })
            .collect::<rusqlite::Result<_>>()?;
        drop(conn);
        let res = self.write_save(&items, out);
        for h in holders {
            if let Err(e) = self.release_layers(&h, true) {
                tracing::warn!(error = %e, "releasing save hold");
            }
        }
        res
    }

    fn write_save(&self, items: &[SaveItem], out: &mut dyn Write) -> Result<()> {
        enum Src<'a> {
            Bytes(Vec<u8>),
            Layer(&'a LayerRow),
        }
        let mut blobs: BTreeMap<String, (Src<'_>, u64)> = BTreeMap::new();
        let mut manifest_items = Vec::new();
        let mut index_manifests = Vec::new();
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (img, refs, stack, cfg) in items {
            let created = parse_created(img.config.created.as_deref()).max(0) as u64;
            let cfg_len = cfg.len();
            blobs.insert(img.id.hex().to_owned(), (Src::Bytes(cfg.clone()), created));
            let mut layer_descs = Vec::new();
            let mut layer_paths = Vec::new();
            for l in stack {
                layer_descs.push(Descriptor {
                    media_type: archive::MEDIA_OCI_LAYER.into(),
                    digest: l.diff_id.to_string(),
                    size: l.tar_size as i64,
                    annotations: None,
                    platform: None,
                });
                layer_paths.push(format!("blobs/sha256/{}", l.diff_id.hex()));
                blobs.insert(l.diff_id.hex().to_owned(), (Src::Layer(l), created));
            }
            let manifest = OciManifest {
                schema_version: 2,
                media_type: archive::MEDIA_OCI_MANIFEST.into(),
                config: Descriptor {
                    media_type: archive::MEDIA_OCI_CONFIG.into(),
                    digest: img.id.to_string(),
                    size: cfg_len as i64,
                    annotations: None,
                    platform: None,
                },
                layers: layer_descs,
            };
            let mbytes = to_json(&manifest)?;
            let mdigest = Digest::of(&mbytes);
            let mlen = mbytes.len();
            blobs.insert(mdigest.hex().to_owned(), (Src::Bytes(mbytes), created));
            let untagged = Descriptor {
                media_type: archive::MEDIA_OCI_MANIFEST.into(),
                digest: mdigest.to_string(),
                size: mlen as i64,
                annotations: None,
                platform: None,
            };
            let mut tags = Vec::new();
            for r in refs {
                let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
                if let Some(top) = stack.last() {
                    repos
                        .entry(r.familiar_name())
                        .or_default()
                        .insert(tag.clone(), top.diff_id.hex().to_owned());
                }
                tags.push(r.familiar());
                let mut d = untagged.clone();
                d.annotations = Some(BTreeMap::from([
                    (archive::ANNOTATION_IMAGE_NAME.to_owned(), r.to_string()),
                    (archive::ANNOTATION_REF_NAME.to_owned(), tag),
                ]));
                index_manifests.push(d);
            }
            if refs.is_empty() {
                index_manifests.push(untagged);
            }
            manifest_items.push(ManifestItem {
                config: format!("blobs/sha256/{}", img.id.hex()),
                repo_tags: (!tags.is_empty()).then_some(tags),
                layers: layer_paths,
                parent: img
                    .parent
                    .as_ref()
                    .filter(|p| items.iter().any(|(i, _, _, _)| &i.id == *p))
                    .map(|p| p.to_string()),
                layer_sources: None,
            });
        }
        let index = OciIndex {
            schema_version: 2,
            media_type: archive::MEDIA_OCI_INDEX.into(),
            manifests: index_manifests,
        };
        let index_bytes = to_json(&index)?;
        let mut manifest_bytes = to_json(&manifest_items)?;
        manifest_bytes.push(b'\n');
        let mut repos_bytes = to_json(&repos)?;
        repos_bytes.push(b'\n');

        let mut b = tar::Builder::new(out);
        let werr = |e: io::Error| Error::io("writing image archive", e);
        let dir = |b: &mut tar::Builder<&mut dyn Write>, name: &str| -> Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(0);
            h.set_size(0);
            b.append_data(&mut h, name, io::empty()).map_err(werr)
        };
        let file = |b: &mut tar::Builder<&mut dyn Write>,
                    name: &str,
                    size: u64,
                    mtime: u64,
                    r: &mut dyn Read|
         -> Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_size(size);
            b.append_data(&mut h, name, r).map_err(werr)
        };
        dir(&mut b, "blobs/")?;
        dir(&mut b, "blobs/sha256/")?;
        for (hex, (src, mtime)) in &blobs {
            let name = format!("blobs/sha256/{hex}");
            match src {
                Src::Bytes(bytes) => {
                    file(&mut b, &name, bytes.len() as u64, *mtime, &mut &bytes[..])?
                }
                Src::Layer(l) => {
                    let (mut reader, _keep) = self.layer_tar_reader(l)?;
                    let mut hr = HashReader::new((&mut reader).take(l.tar_size));
                    file(&mut b, &name, l.tar_size, *mtime, &mut hr)?;
                    if hr.count() != l.tar_size || hr.finish().map_err(werr)?.0 != l.diff_id {
                        return Err(Error::InvalidArchive(format!(
                            "stored tar of layer {} is corrupt (does not match its diff ID)",
                            l.diff_id
                        )));
                    }
                }
            }
        }
        file(
            &mut b,
            "index.json",
            index_bytes.len() as u64,
            0,
            &mut &index_bytes[..],
        )?;
        file(
            &mut b,
            "manifest.json",
            manifest_bytes.len() as u64,
            0,
            &mut &manifest_bytes[..],
        )?;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        file(
            &mut b,
            "oci-layout",
            layout.len() as u64,
            0,
            &mut &layout[..],
        )?;
        if !repos.is_empty() {
            file(
                &mut b,
                "repositories",
                repos_bytes.len() as u64,
                0,
                &mut &repos_bytes[..],
            )?;
        }
        b.finish().map_err(werr)?;
        Ok(())
    }

    /// The uncompressed tar of a layer: the stored blob (decompressed), or, when the blob is
    /// gone, regenerated from the unpacked directory if that reproduces the diff ID exactly.
    fn layer_tar_reader(&self, l: &LayerRow) -> Result<(Box<dyn Read>, Option<TempDir>)> {
        if let Some(hex) = &l.tar_blob
            && let Ok(f) = File::open(self.blob_path(hex))
        {
            let (_, r) = layer::decompress(f)?;
            return Ok((r, None));
        }
        let work = self.new_tmp_dir("regen")?;
        let path = work.0.join("layer.tar");
        let mut f = File::create(&path).map_err(io_err("creating temp layer tar"))?;
        let (digest, _) =
            layer::write_layer_tar(&self.overlay.join(&l.cache_id).join("diff"), &mut f)?;
        if digest != l.diff_id {
            return Err(Error::InvalidArchive(format!(
                "cannot save layer {}: its original tar is gone and the unpacked files do not reproduce it (got {digest})",
                l.diff_id
            )));
        }
        let f = File::open(&path).map_err(io_err("opening temp layer tar"))?;
        Ok((Box::new(f), Some(work)))
    }

    /// `docker import`: one layer from a (possibly compressed) tar of a root filesystem.
    pub fn import(
        &self,
        input: &mut dyn Read,
        opts: ImportOptions,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Digest> {
        let mut config = opts.config;
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let comment = opts
            .message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "Imported from -".to_owned());
        config.architecture = "amd64".into();
        config.os = "linux".into();
        config.created = Some(created.clone());
        config.comment = Some(comment.clone());
        let history = History {
            created: Some(created),
            comment: Some(comment),
            ..Default::default()
        };
        self.create_image(
            None,
            Some(input),
            config,
            history,
            opts.reference.as_ref(),
            progress,
        )
    }

    /// Create an image from an optional new layer on top of `parent` (import, and later commit
    /// and build). `config` is completed here: its rootfs gets the parent's diff IDs plus the
    /// new layer's, its history the parent's entries plus `history` (marked `empty_layer` when
    /// there is no layer). The new image's Parent is `parent`. The layer tar may be plain, gzip
    /// or zstd (for a container's changes: [`crate::layer::write_layer_tar`] of its upper dir).
    pub fn create_image(
        &self,
        parent: Option<&Digest>,
        layer: Option<&mut dyn Read>,
        config: ImageConfig,
        history: History,
        reference: Option<&Reference>,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Digest> {
        self.create_image_inner(parent, layer, config, history, reference, progress, false)
    }

    /// [`ImageStore::create_image`] for a build step's changes: a layer that is the empty tar
    /// is no layer (`empty_layer` history, no diff ID), as moby's `NewChildImage` decides for
    /// a RUN that changed nothing.
    pub fn create_child_image(
        &self,
        parent: Option<&Digest>,
        layer: &mut dyn Read,
        config: ImageConfig,
        history: History,
    ) -> Result<Digest> {
        self.create_image_inner(
            parent,
            Some(layer),
            config,
            history,
            None,
            &mut |_| {},
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn create_image_inner(
        &self,
        parent: Option<&Digest>,
        layer: Option<&mut dyn Read>,
        mut config: ImageConfig,
        mut history: History,
        reference: Option<&Reference>,
        progress: &mut dyn FnMut(LoadProgress),
        empty_is_none: bool,
    ) -> Result<Digest> {
        let (mut diffs, mut all_history, base_top) = match parent {
            Some(p) => {
                let img = self.get(p)?;
                let top = self.layer_rows(p)?.last().map(|l| l.chain_id.clone());
                (img.config.rootfs.diff_ids, img.config.history, top)
            }
            None => (Vec::new(), Vec::new(), None),
        };
        let work = self.new_tmp_dir("create")?;
        let mut guard = LayerGuard {
            store: self,
            layers: Vec::new(),
        };
        let mut new_layers = Vec::new();
        let mut top = base_top.clone();
        match layer {
            Some(input) => {
                let raw_path = work.0.join("layer");
                let mut f = File::create(&raw_path).map_err(io_err("creating temp file"))?;
                let mut hr = HashReader::new(input);
                io::copy(&mut hr, &mut f).map_err(io_err("reading layer stream"))?;
                drop(f);
                let (digest, size) = hr.finish().map_err(io_err("reading layer stream"))?;
                let raw = SpooledFile {
                    path: raw_path,
                    digest,
                    size,
                };
                // The chain ID needs the diff ID, known only after unpacking: unpack under a
                // placeholder and set the row's key below.
                let mut nl = self.unpack_new(
                    raw,
                    None,
                    &Digest::of(b""),
                    base_top.clone(),
                    &mut guard,
                    progress,
                )?;
                nl.chain_id = match &base_top {
                    None => nl.diff_id.clone(),
                    Some(t) => Digest::of(format!("{t} {}", nl.diff_id).as_bytes()),
                };
                if empty_is_none && nl.diff_id.to_string() == EMPTY_TAR_DIFF_ID {
                    guard.layers.clear();
                    self.remove_layer_files(&nl.cache_id, &nl.link);
                    history.empty_layer = true;
                } else {
                    diffs.push(nl.diff_id.clone());
                    top = Some(nl.chain_id.clone());
                    if get_layer(&self.conn(), &nl.chain_id)?.is_some() {
                        // Identical layer already stored: drop the one just unpacked.
                        guard.layers.clear();
                        self.remove_layer_files(&nl.cache_id, &nl.link);
                    } else {
                        new_layers.push(nl);
                    }
                }
            }
            None => history.empty_layer = true,
        }
        all_history.push(history);
        config.rootfs = RootFs {
            kind: "layers".into(),
            diff_ids: diffs,
        };
        config.history = all_history;
        let bytes = config_json(&config)?;
        let id = Digest::of(&bytes);
        let img = NewImage {
            id: id.clone(),
            config_bytes: bytes,
            top_layer: top,
            parent: parent.cloned(),
            tags: reference.into_iter().cloned().collect(),
        };
        self.commit(new_layers, &[img], guard)?;
        drop(work);
        Ok(id)
    }

    /// `docker history`, newest first.
    pub fn history(&self, id: &Digest) -> Result<Vec<HistoryItem>> {
        let conn = self.conn();
        let img = self.image_from_conn(&conn, id)?;
        let chains = chain_ids(&img.config.rootfs.diff_ids);
        let mut out: Vec<HistoryItem> = Vec::new();
        let mut n = 0usize;
        for h in &img.config.history {
            let mut size = 0;
            if !h.empty_layer {
                let Some(c) = chains.get(n) else {
                    return Err(Error::InvalidArgument(
                        "too many non-empty layers in History section".into(),
                    ));
                };
                size = get_layer(&conn, c)?.map(|l| l.size).unwrap_or(0);
                n += 1;
            }
            out.push(HistoryItem {
                id: None,
                created: parse_created(h.created.as_deref()),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        out.reverse();
        // Newest entry is this image, the next its local parent, and so on.
        let mut cur = Some(id.clone());
        for item in out.iter_mut() {
            let Some(cid) = cur.take() else { break };
            if !image_exists(&conn, &cid)? {
                break;
            }
            item.tags = refs_of(&conn, &cid)?
                .into_iter()
                .filter(|r| r.digest.is_none())
                .map(|r| r.familiar())
                .collect();
            cur = conn
                .cached_row(
                    "SELECT parent FROM images WHERE id = ?1",
                    [cid.to_string()],
                    |r| r.get::<_, Option<String>>(0),
                )?
                .and_then(|p| p.parse().ok());
            item.id = Some(cid);
        }
        Ok(out)
    }

    /// `docker image prune`.
    pub fn prune(&self, opts: &PruneOptions, usage: &dyn ImageUsage) -> Result<PruneReport> {
        let _files = self.files_lock();
        let mut conn = self.conn();
        let mut tx = conn.transaction()?;
        let ids: Vec<String> = tx
            .prepare("SELECT id FROM images ORDER BY added_at, id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut candidates = Vec::new();
        for s in &ids {
            let id = parse_digest_col(s)?;
            let has_children = !children_of(&tx, &id)?.is_empty();
            let refs = refs_of(&tx, &id)?;
            // Docker: dangling-only looks at heads (images without children); -a at every
            // image except untagged intermediates (they go with their last child).
            if has_children && (!opts.all || refs.is_empty()) {
                continue;
            }
            let cfg = self.read_config(&id)?;
            if let Some(until) = opts.until {
                match cfg.created.as_deref() {
                    Some(c) if parse_created(Some(c)) < until => {}
                    _ => continue,
                }
            }
            if !labels_match(&cfg.labels(), &opts.labels) {
                continue;
            }
            candidates.push((id, refs));
        }
        let mut report = PruneReport::default();
        let mut garbage = Garbage::default();
        for (id, refs) in candidates {
            let tagged = refs.iter().any(|r| r.tag.is_some() && r.digest.is_none());
            let targets: Vec<String> = if refs.is_empty() {
                vec![id.hex().to_owned()]
            } else if !opts.all && tagged {
                continue;
            } else {
                refs.iter().map(|r| r.to_string()).collect()
            };
            for t in targets {
                let opts = RemoveOptions {
                    force: false,
                    prune_parents: true,
                };
                // Docker skips images that fail (in use, conflicts) and goes on.
                let sp = tx.savepoint()?;
                // Files of a removal that gets rolled back must stay: collect per target.
                let mut g = Garbage::default();
                match self.remove_in(&sp, &t, opts, usage, &mut g) {
                    Ok(ev) => {
                        sp.commit()?;
                        report.deleted.extend(ev);
                        garbage.dirs.extend(g.dirs);
                        garbage.files.extend(g.files);
                        garbage.freed += g.freed;
                    }
                    Err(Error::Conflict(_)) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        tx.commit()?;
        drop(conn);
        report.space_reclaimed = garbage.freed;
        self.collect(garbage);
        Ok(report)
    }

    /// For `system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let conn = self.conn();
        let layers_size: i64 =
            conn.cached_row("SELECT coalesce(sum(size), 0) FROM layers", [], |r| {
                r.get(0)
            })?;
        let rows: Vec<(String, Option<String>)> = conn
            .prepare("SELECT id, top_layer FROM images ORDER BY added_at DESC, id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut stacks = Vec::new();
        let mut count: HashMap<Digest, usize> = HashMap::new();
        for (id, top) in rows {
            let top = top.as_deref().map(parse_digest_col).transpose()?;
            let stack = layer_stack(&conn, top.as_ref())?;
            for l in &stack {
                *count.entry(l.chain_id.clone()).or_default() += 1;
            }
            stacks.push((parse_digest_col(&id)?, stack));
        }
        let images = stacks
            .into_iter()
            .map(|(id, stack)| {
                let size = stack.iter().map(|l| l.size).sum();
                let shared = stack
                    .iter()
                    .filter(|l| count.get(&l.chain_id).copied().unwrap_or(0) > 1)
                    .map(|l| l.size)
                    .sum();
                (id, size, shared)
            })
            .collect();
        Ok(DiskUsage {
            layers_size: layers_size as u64,
            images,
        })
    }

    /// The unpacked layer directories of an image, bottom to top, for an overlay mount (used by
    /// the container subsystem).
    pub fn layer_dirs(&self, id: &Digest) -> Result<Vec<PathBuf>> {
        Ok(self
            .layer_rows(id)?
            .iter()
            .map(|l| self.overlay.join(&l.cache_id).join("diff"))
            .collect())
    }

    /// The same layers as short links relative to [`ImageStore::overlay_root`] (`l/<26 chars>`),
    /// bottom to top: overlay's lowerdir is top first, so reverse and join with ':' and mount
    /// from `overlay_root` as the working directory, like Docker's overlay2 driver.
    pub fn layer_links(&self, id: &Digest) -> Result<Vec<String>> {
        Ok(links_of(&self.layer_rows(id)?))
    }

    /// overlay's `lowerdir=` value for an image, relative to [`ImageStore::overlay_root`]:
    /// `l/TOP:...:l/BOTTOM`. Empty for an image without layers.
    pub fn lowerdir(&self, id: &Digest) -> Result<String> {
        Ok(lowerdir_of(&self.layer_rows(id)?))
    }

    /// `lowerdir=` of the layers `holder` holds ([`ImageStore::hold_layers`]), whether or not
    /// the image is still there (`rmi -f` of a stopped container's image, as dockerd allows:
    /// the container still starts). `None` when it holds nothing (an image without layers).
    pub fn held_lowerdir(&self, holder: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let Some(top) = held_chain(&conn, holder)? else {
            return Ok(None);
        };
        Ok(Some(lowerdir_of(&layer_stack(&conn, Some(&top))?)))
    }

    fn layer_rows(&self, id: &Digest) -> Result<Vec<LayerRow>> {
        let conn = self.conn();
        let top: Option<Option<String>> = conn
            .cached_row(
                "SELECT top_layer FROM images WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(top) = top else {
            return Err(Error::NotFound(id.to_string()));
        };
        let top = top.as_deref().map(parse_digest_col).transpose()?;
        layer_stack(&conn, top.as_ref())
    }

    /// Keep an image's layers alive for `holder` (e.g. a container ID) even if the image is
    /// deleted (`rmi -f` of an image a stopped container uses). Replaces an earlier hold.
    ///
    /// `durable: false` commits without waiting for the disk (SQLite `synchronous=NORMAL`
    /// for this one transaction): the hold survives a kill -9 of the daemon (the WAL is in
    /// the page cache) but a power loss may forget it. For holders that do not outlive a
    /// host crash anyway (`--rm` containers, removed at the next start); it saves an fsync on
    /// the path of `run --rm`. Later FULL commits sync the WAL file, this frame included.
    pub fn hold_layers(&self, holder: &str, id: &Digest, durable: bool) -> Result<()> {
        let conn = self.conn();
        let _relaxed = Relaxed::unless(&conn, durable)?;
        let top: Option<String> = conn
            .cached_row(
                "SELECT top_layer FROM images WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        match top {
            Some(t) => {
                conn.cached_exec(
                    "INSERT OR REPLACE INTO layer_holders (holder, chain_id) VALUES (?1, ?2)",
                    [holder, &t],
                )?;
            }
            None => {
                conn.cached_exec("DELETE FROM layer_holders WHERE holder = ?1", [holder])?;
            }
        }
        Ok(())
    }

    /// Drop a hold; layers no image or holder uses any more are deleted. `durable` as for
    /// [`ImageStore::hold_layers`]: a relaxed release that a power loss forgets leaves a
    /// hold without its holder, which [`ImageStore::forget_holders`] drops at the next start.
    pub fn release_layers(&self, holder: &str, durable: bool) -> Result<()> {
        let _files = self.files_lock();
        let conn = self.conn();
        let relaxed = Relaxed::unless(&conn, durable)?;
        // `unchecked`: `relaxed` borrows the connection too; nothing else can use it meanwhile
        // (the lock is held)
        let tx = conn.unchecked_transaction()?;
        let chain = held_chain(&tx, holder)?;
        tx.cached_exec("DELETE FROM layer_holders WHERE holder = ?1", [holder])?;
        let mut garbage = Garbage::default();
        if let Some(c) = chain {
            gc_layers(&tx, Some(c), &mut Vec::new(), &mut garbage, self)?;
        }
        tx.commit()?;
        drop(relaxed);
        drop(conn);
        self.collect(garbage);
        Ok(())
    }

    /// Drops the layer holds of container holders (64-hex IDs) that `keep` does not know:
    /// releases a crash or power loss forgot (see [`ImageStore::release_layers`]). The
    /// layers only they held are deleted with them.
    pub fn forget_holders(&self, keep: &dyn Fn(&str) -> bool) -> Result<()> {
        let holders: Vec<String> = {
            let conn = self.conn();
            let mut st = conn.prepare("SELECT holder FROM layer_holders")?;
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for h in holders {
            if berth_types::reference::is_full_hex_id(&h) && !keep(&h) {
                tracing::info!(holder = %h, "dropping the layer hold of a removed container");
                self.release_layers(&h, true)?;
            }
        }
        Ok(())
    }

    /// Images whose `parent` is `id` (for `rmi` and `images --filter since/before`).
    pub fn children(&self, id: &Digest) -> Result<Vec<Digest>> {
        children_of(&self.conn(), id)
    }

    fn garbage_for(&self, l: &LayerRow, g: &mut Garbage) {
        g.dirs.push(self.overlay.join(&l.cache_id));
        g.files.push(self.overlay.join("l").join(&l.link));
        g.freed += l.size;
    }
}

/// Docker's checkValidParent: the parent's history is a strict prefix of the child's.
fn valid_parent(child: &ImageConfig, parent: &ImageConfig) -> bool {
    if child.history.is_empty() && parent.history.is_empty() {
        return true;
    }
    parent.history.len() < child.history.len()
        && parent
            .history
            .iter()
            .zip(&child.history)
            .all(|(a, b)| a == b)
}

/// `label=k`, `label=k=v`, `label!=k[=v]` as Docker's prune filter.
fn labels_match(
    labels: &BTreeMap<String, String>,
    filters: &[(String, Option<String>, bool)],
) -> bool {
    filters.iter().all(|(k, v, negate)| {
        let m = match v {
            None => labels.contains_key(k),
            Some(v) => labels.get(k) == Some(v),
        };
        m != *negate
    })
}

/// Point a reference at an image (replacing where it pointed); returns the previous image.
fn set_ref(conn: &Connection, r: &Reference, id: &Digest) -> Result<Option<Digest>> {
    let name = r.to_string();
    let prev: Option<String> = conn
        .cached_row("SELECT image FROM refs WHERE name = ?1", [&name], |r| {
            r.get(0)
        })
        .optional()?;
    if prev.as_deref() == Some(&id.to_string()) {
        return Ok(prev.map(|p| parse_digest_col(&p)).transpose()?);
    }
    let seq = next_seq(conn)?;
    conn.cached_exec(
        "INSERT OR REPLACE INTO refs (name, image, is_digest, seq) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![name, id.to_string(), r.digest.is_some() as i64, seq],
    )?;
    Ok(prev.map(|p| parse_digest_col(&p)).transpose()?)
}

fn delete_ref(conn: &Connection, r: &Reference) -> Result<()> {
    conn.cached_exec("DELETE FROM refs WHERE name = ?1", [r.to_string()])?;
    Ok(())
}

/// Delete layers from `top` down while nothing (image, child layer, holder) uses them.
fn gc_layers(
    conn: &Connection,
    top: Option<Digest>,
    events: &mut Vec<RemoveEvent>,
    garbage: &mut Garbage,
    store: &ImageStore,
) -> Result<()> {
    let mut cur = top;
    while let Some(c) = cur {
        let cs = c.to_string();
        let used: bool = conn.cached_row(
            "SELECT EXISTS(SELECT 1 FROM images WHERE top_layer = ?1)
                 OR EXISTS(SELECT 1 FROM layers WHERE parent = ?1)
                 OR EXISTS(SELECT 1 FROM layer_holders WHERE chain_id = ?1)",
            [&cs],
            |r| r.get(0),
        )?;
        if used {
            break;
        }
        let Some(row) = get_layer(conn, &c)? else {
            break;
        };
        conn.cached_exec("DELETE FROM layers WHERE chain_id = ?1", [&cs])?;
        if let Some(blob) = &row.tar_blob {
            let still: bool = conn.cached_row(
                "SELECT EXISTS(SELECT 1 FROM layers WHERE tar_blob = ?1)",
                [blob],
                |r| r.get(0),
            )?;
            if !still {
                garbage.files.push(store.blob_path(blob));
            }
        }
        store.garbage_for(&row, garbage);
        events.push(RemoveEvent::Deleted(c.clone()));
        cur = row.parent;
    }
    Ok(())
}

/// A new config blob the way Docker writes one: compact, fields in Docker's order (the
/// `ImageConfig` model declares them that way).
pub fn config_json(config: &ImageConfig) -> Result<Vec<u8>> {
    to_json(config)
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::InvalidArgument(format!("encoding JSON: {e}")))
}

const CONFLICT_CHILD: u8 = 1;
const CONFLICT_RUNNING: u8 = 2;
const CONFLICT_ACTIVE_REF: u8 = 4;
const CONFLICT_STOPPED: u8 = 8;
const CONFLICT_HARD: u8 = CONFLICT_CHILD | CONFLICT_RUNNING;
const CONFLICT_SOFT: u8 = CONFLICT_ACTIVE_REF | CONFLICT_STOPPED;

struct DeleteConflict {
    message: String,
    used: bool,
}

fn short_id(s: &str) -> String {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    s.chars().take(12).collect()
}

/// Docker's checkImageDeleteConflict.
fn check_conflict(
    conn: &Connection,
    id: &Digest,
    mask: u8,
    usage: &dyn ImageUsage,
) -> Result<Option<DeleteConflict>> {
    let msg = |hard: bool, what: String| {
        format!(
            "conflict: unable to delete {} ({}) - {}",
            id.short(),
            if hard {
                "cannot be forced"
            } else {
                "must be forced"
            },
            what
        )
    };
    if mask & CONFLICT_CHILD != 0 && !children_of(conn, id)?.is_empty() {
        return Ok(Some(DeleteConflict {
            message: msg(true, "image has dependent child images".into()),
            used: false,
        }));
    }
    let users = usage.containers_using(id);
    if mask & CONFLICT_RUNNING != 0
        && let Some((c, _)) = users.iter().find(|(_, running)| *running)
    {
        return Ok(Some(DeleteConflict {
            message: msg(
                true,
                format!("image is being used by running container {}", short_id(c)),
            ),
            used: true,
        }));
    }
    if mask & CONFLICT_ACTIVE_REF != 0 && !refs_of(conn, id)?.is_empty() {
        return Ok(Some(DeleteConflict {
            message: msg(false, "image is referenced in multiple repositories".into()),
            used: false,
        }));
    }
    if mask & CONFLICT_STOPPED != 0
        && let Some((c, _)) = users.iter().find(|(_, running)| !*running)
    {
        return Ok(Some(DeleteConflict {
            message: msg(
                false,
                format!("image is being used by stopped container {}", short_id(c)),
            ),
            used: true,
        }));
    }
    Ok(None)
}

fn is_dangling(conn: &Connection, id: &Digest) -> Result<bool> {
    Ok(refs_of(conn, id)?.is_empty() && children_of(conn, id)?.is_empty())
}

impl ImageStore {
    /// Docker's ImageDelete, inside the caller's transaction.
    fn remove_in(
        &self,
        conn: &Connection,
        input: &str,
        opts: RemoveOptions,
        usage: &dyn ImageUsage,
        g: &mut Garbage,
    ) -> Result<Vec<RemoveEvent>> {
        let (id, _) = resolve(conn, input)?;
        let mut records = Vec::new();
        let mut refs = refs_of(conn, &id)?;
        let mut removed_repo_ref = false;
        if !is_id_prefix(&id, input) {
            // A reference was given: untag it first.
            if !opts.force
                && is_single_reference(&refs)
                && let Some((c, _)) = usage.containers_using(&id).first()
            {
                return Err(Error::Conflict(format!(
                    "conflict: unable to remove repository reference {input:?} (must force) - container {} is using its referenced image {}",
                    short_id(c),
                    id.short()
                )));
            }
            let parsed = Reference::parse_normalized(input)?;
            let parsed = if parsed.is_name_only() {
                parsed.with_tag(berth_types::reference::DEFAULT_TAG)
            } else {
                parsed
            };
            delete_ref(conn, &parsed)?;
            records.push(RemoveEvent::Untagged(parsed.familiar()));
            refs = refs_of(conn, &id)?;
            // Last tag of a repository gone: its digest references go too.
            if parsed.digest.is_none()
                && !refs
                    .iter()
                    .any(|r| r.digest.is_none() && r.name() == parsed.name())
            {
                let mut remaining = Vec::new();
                for r in refs {
                    if r.digest.is_some() && r.name() == parsed.name() {
                        delete_ref(conn, &r)?;
                        records.push(RemoveEvent::Untagged(r.familiar()));
                    } else {
                        remaining.push(r);
                    }
                }
                refs = remaining;
            }
            if !refs.is_empty() {
                return Ok(records);
            }
            removed_repo_ref = true;
        } else if is_single_reference(&refs) {
            let mut mask = CONFLICT_HARD;
            if !opts.force {
                mask |= CONFLICT_SOFT & !CONFLICT_ACTIVE_REF;
            }
            if let Some(c) = check_conflict(conn, &id, mask, usage)? {
                return Err(Error::Conflict(c.message));
            }
            for r in &refs {
                delete_ref(conn, r)?;
                records.push(RemoveEvent::Untagged(r.familiar()));
            }
        }
        self.delete_helper(
            conn,
            &id,
            &mut records,
            opts.force,
            opts.prune_parents,
            removed_repo_ref,
            usage,
            g,
        )?;
        Ok(records)
    }

    /// Docker's imageDeleteHelper.
    #[allow(clippy::too_many_arguments)]
    fn delete_helper(
        &self,
        conn: &Connection,
        id: &Digest,
        records: &mut Vec<RemoveEvent>,
        force: bool,
        prune: bool,
        quiet: bool,
        usage: &dyn ImageUsage,
        g: &mut Garbage,
    ) -> Result<()> {
        let mut mask = CONFLICT_HARD;
        if !force {
            mask |= CONFLICT_SOFT;
        }
        if let Some(c) = check_conflict(conn, id, mask, usage)? {
            if quiet && (!is_dangling(conn, id)? || c.used) {
                return Ok(());
            }
            return Err(Error::Conflict(c.message));
        }
        let row: (Option<String>, Option<String>) = conn.cached_row(
            "SELECT parent, top_layer FROM images WHERE id = ?1",
            [id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let parent = row.0.as_deref().and_then(|p| p.parse::<Digest>().ok());
        let top = row.1.as_deref().map(parse_digest_col).transpose()?;
        for r in refs_of(conn, id)? {
            delete_ref(conn, &r)?;
            records.push(RemoveEvent::Untagged(r.familiar()));
        }
        conn.cached_exec("DELETE FROM images WHERE id = ?1", [id.to_string()])?;
        g.files.push(self.blob_path(id.hex()));
        records.push(RemoveEvent::Deleted(id.clone()));
        gc_layers(conn, top, records, g, self)?;
        match parent {
            Some(p) if prune && image_exists(conn, &p)? => {
                self.delete_helper(conn, &p, records, false, true, true, usage, g)
            }
            _ => Ok(()),
        }
    }
}

/// Take the store's exclusive lock, or say which data root is busy.
fn lock_data_root(path: &Path, data_root: &Path) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Conflict(format!(
            "data root {} is in use by another berthd",
            data_root.display()
        ))),
        Err(e) => Err(Error::io(format!("locking {}", path.display()), e.into())),
    }
}
