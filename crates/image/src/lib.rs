//! berth-image: everything about images on this host.
//!
//! Owns: the content-addressed blob store (`<root>/image/blobs/sha256/<hex>`), layers unpacked
//! once per chain ID into overlay2 directories (whiteouts translated OCI <-> overlay both ways),
//! layer reference counting, image metadata and tags (SQLite, WAL, one transaction per change),
//! and the archive formats: `docker save`/`load` (docker-archive v1.2 + OCI layout) and `import`.
//! Crash safety: every write is temp + fsync + rename or a transaction; `open` removes
//! half-written leftovers.
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
