//! Link berth-shim as a non-PIE executable: with PIE, the loader relocates ~400 KiB of
//! .data.rel.ro at startup, which become private dirty pages in every shim. Non-PIE keeps them
//! clean and shared between all shims (one per container), cutting per-container memory.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
