//! Link berth-shim as a static, non-PIE executable.
//!
//! Non-PIE: with PIE, the loader relocates ~400 KiB of .data.rel.ro at startup, which become
//! private dirty pages in every shim. Non-PIE keeps them clean and shared between all shims
//! (one per container), cutting per-container memory.
//!
//! Static (glibc, libseccomp, libgcc_eh): a shim is exec'd for every container, and the
//! dynamic loader was ~0.9 ms of its CPU per `run` (mapping libc, libseccomp and libgcc_s,
//! symbol lookups, their relocations); fewer mappings also make the clones of libcontainer's
//! intermediate and init cheaper (issue #3). The shim uses nothing of glibc that needs a
//! shared object at run time (no NSS lookups, no iconv, no dlopen).
//!
//! How, on stable cargo: `berth-staticlink`'s directory of links to the static archives
//! (libseccomp's too), searched first on the binary's link line only, and `-static`. When an
//! archive is missing the shim is linked dynamically as before, with a warning.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-no-pie");
    if !berth_staticlink::applies() {
        return;
    }
    match berth_staticlink::static_lib_dir(&[("seccomp", "libseccomp.a")]) {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
            println!("cargo:rustc-link-arg-bins=-static");
        }
        Err(e) => println!("cargo:warning=berth-shim is linked dynamically: {e}"),
    }
}
