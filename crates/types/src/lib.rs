//! berth-types: the small shared vocabulary of berth.
//!
//! Owns: image reference parsing/normalization (exactly as Docker's `distribution/reference`),
//! content digests, Docker/OCI image config and manifest models, platform matching.
//! Must not: do I/O, know about HTTP, the daemon or any store. Every other crate may depend on it,
//! including the shim, so keep it dependency-light.

pub mod digest;
pub mod duration;
pub mod image_config;
pub mod reference;

pub use digest::{Digest, DigestError};
pub use reference::{Reference, ReferenceError};
