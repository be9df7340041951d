//! berth-registry: a container registry (`berth registry serve`), the `registry` image of
//! `docker run -d -p 5000:5000 registry` in one process.
//!
//! Owns: the registry side of the OCI distribution spec / Docker registry API v2 — pull, push
//! (monolithic, chunked, resumable, cross-repository mount), manifests (Docker schema2 and OCI
//! manifests/indexes, validated against the blobs and manifests of the repository the way
//! distribution does), tags list, catalog, the referrers API, deletion (when enabled),
//! read-only mode, htpasswd (bcrypt) Basic auth, token auth (JWTs from a configured issuer),
//! TLS, and garbage collection of unreferenced blobs and stale uploads ([`gc`]).
//! Storage is a plain directory ([`storage`]): content-addressed blobs, repositories made of
//! link files, upload sessions whose data survives a restart; every publish is a rename, so a
//! crash (kill -9) never leaves a half-written blob, manifest or tag visible.
//!
//! Must not: know about the image store, the daemon or the Docker Engine API (it serves bytes,
//! it does not unpack them), or touch anything outside its root directory: repository names,
//! tags, upload ids and digests are checked against the spec's grammar ([`names`]) before they
//! become paths.

pub mod auth;
pub mod error;
pub mod gc;
pub mod manifest;
pub mod names;
mod server;
pub mod storage;
#[cfg(feature = "token-server")]
pub mod token_server;

pub use error::{Error, Result};
pub use gc::{DEFAULT_UPLOAD_MAX_AGE, GcOptions, GcReport, gc};
pub use server::{Config, Server, TlsConfig, TokenConfig};
