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
//! How, on stable cargo: `-C target-feature=+crt-static` cannot be set for one binary (as a
//! workspace-wide flag it breaks proc-macro crates), so rustc still asks for the libraries by
//! their dynamic names (`-lgcc_s -lc ... -lseccomp`). A directory of links to the static
//! archives, searched first (`-L` of the binary's link only), answers those names with the
//! archives, and `-static` makes the executable static. When an archive is missing the shim
//! is linked dynamically as before, with a warning.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-no-pie");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        return;
    }
    match static_lib_dir() {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
            println!("cargo:rustc-link-arg-bins=-static");
        }
        Err(e) => println!("cargo:warning=berth-shim is linked dynamically: {e}"),
    }
}

/// `$OUT_DIR/static`: `lib<name>.a` links to the archives that answer the `-l<name>` rustc
/// and libseccomp-sys pass (libgcc_s's unwinder is libgcc_eh's in a static link).
fn static_lib_dir() -> Result<PathBuf, String> {
    let out = std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?;
    let dir = Path::new(&out).join("static");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    for (name, archive) in [
        ("gcc_s", "libgcc_eh.a"),
        ("c", "libc.a"),
        ("m", "libm.a"),
        ("pthread", "libpthread.a"),
        ("rt", "librt.a"),
        ("dl", "libdl.a"),
        ("util", "libutil.a"),
        ("seccomp", "libseccomp.a"),
    ] {
        let found = Command::new(&cc)
            .arg(format!("-print-file-name={archive}"))
            .output()
            .map_err(|e| format!("{cc}: {e}"))?;
        let path = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
        // cc prints the bare name when it finds nothing
        if !path.is_absolute() || !path.exists() {
            return Err(format!(
                "{archive} not found (static libraries of glibc, libgcc, libseccomp)"
            ));
        }
        let link = dir.join(format!("lib{name}.a"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    }
    Ok(dir)
}
