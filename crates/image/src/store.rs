//! The public face of the image store. (Contract shared with the engine: change signatures only
//! together with the engine crate.)

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_types::image_config::ImageConfig;
use berth_types::{Digest, Reference};
use serde::Serialize;

use crate::Result;

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
    _root: PathBuf,
}

impl ImageStore {
    /// Open (creating if needed) the store under `data_root` (it uses `image/` and `overlay2/`
    /// below it), and clean up whatever a crash left half-written.
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        let _ = data_root;
        todo!()
    }

    /// Every image, intermediate ones included (callers filter).
    pub fn list(&self) -> Result<Vec<Image>> {
        todo!()
    }

    /// Resolve what a user typed, as Docker does: a full or short (prefix) ID with or without
    /// `sha256:`, a reference (normalized: `busybox` -> `docker.io/library/busybox:latest`), or
    /// `name@sha256:...` matched against repo digests. Unknown -> `Error::NotFound(input)`.
    pub fn lookup(&self, name_or_id: &str) -> Result<Image> {
        let _ = name_or_id;
        todo!()
    }

    /// By exact ID.
    pub fn get(&self, id: &Digest) -> Result<Image> {
        let _ = id;
        todo!()
    }

    /// The config blob exactly as stored (its sha256 is the image ID).
    pub fn config_bytes(&self, id: &Digest) -> Result<Vec<u8>> {
        let _ = id;
        todo!()
    }

    /// Point `reference` at `id`; returns the image it pointed at before, if any (which may have
    /// become dangling).
    pub fn tag(&self, id: &Digest, reference: &Reference) -> Result<Option<Digest>> {
        let _ = (id, reference);
        todo!()
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
        let _ = (name_or_id, opts, usage);
        todo!()
    }

    /// `docker load`: a docker-archive (Docker 1.10..28: manifest.json, with or without the OCI
    /// layout Docker 25+ adds) or an OCI image layout tar, plain, gzip or zstd compressed.
    /// All or nothing: on any error nothing of this load stays in the store.
    pub fn load(
        &self,
        input: &mut dyn Read,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Vec<LoadedImage>> {
        let _ = (input, progress);
        todo!()
    }

    /// `docker save`: the tar Docker 25+ writes (docker-archive v1.2 `manifest.json` + `repositories`
    /// + OCI layout `index.json`/`oci-layout`/`blobs/sha256`). `names` as in `lookup`; a name that
    /// is a reference tags the saved image with it, an ID saves it untagged.
    pub fn save(&self, names: &[String], out: &mut dyn Write) -> Result<()> {
        let _ = (names, out);
        todo!()
    }

    /// `docker import`: one layer from a (possibly compressed) tar of a root filesystem.
    pub fn import(
        &self,
        input: &mut dyn Read,
        opts: ImportOptions,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Digest> {
        let _ = (input, opts, progress);
        todo!()
    }

    /// `docker history`, newest first.
    pub fn history(&self, id: &Digest) -> Result<Vec<HistoryItem>> {
        let _ = id;
        todo!()
    }

    /// `docker image prune`.
    pub fn prune(&self, opts: &PruneOptions, usage: &dyn ImageUsage) -> Result<PruneReport> {
        let _ = (opts, usage);
        todo!()
    }

    /// For `system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        todo!()
    }

    /// The unpacked layer directories of an image, bottom to top, for an overlay mount (used by
    /// the container subsystem).
    pub fn layer_dirs(&self, id: &Digest) -> Result<Vec<PathBuf>> {
        let _ = id;
        todo!()
    }

    /// Images whose `parent` is `id` (for `rmi` and `images --filter since/before`).
    pub fn children(&self, id: &Digest) -> Result<Vec<Digest>> {
        let _ = id;
        todo!()
    }
}
