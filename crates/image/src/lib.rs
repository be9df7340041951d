//! berth-image: everything about images on this host.
//!
//! Owns: the content-addressed blob store (`<root>/image/blobs/sha256/<hex>`), layers unpacked
//! once per chain ID into overlay2 directories (whiteouts translated OCI <-> overlay both ways),
//! layer reference counting, image metadata and tags (SQLite, WAL, one transaction per change),
//! and the archive formats: `docker save`/`load` (docker-archive v1.2 + OCI layout) and `import`.
//! Crash safety: every write is temp + fsync + rename or a transaction; `open` removes
//! half-written leftovers.
//!
//! On disk: `image/image.db` (tables `layers`, `images`, `refs`, `layer_holders`),
//! `image/blobs/sha256/<hex>` (configs and every layer tar exactly as received, so `save` writes
//! the original bytes), `image/tmp/` (spool, always emptied), `overlay2/<cache-id>/{diff,link}`
//! and `overlay2/l/<26 chars>` -> `../<cache-id>/diff` (short lowerdir names, as Docker's
//! overlay2 driver). Layer tars are unpacked only through `layer::unpack_layer`, which resolves
//! every path with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) under the layer root.
//!
//! Must not: know about HTTP, containers or the daemon. The API is synchronous and blocking;
//! async callers use `spawn_blocking`. Policy that needs container knowledge (is this image in
//! use?) comes in as arguments.

mod changes;
mod error;
mod store;

pub mod archive;
pub mod layer;

pub use changes::apply_changes;
pub use error::{Error, Result};
pub use store::*;
