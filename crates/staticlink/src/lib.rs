//! For build scripts only (a `[build-dependencies]` entry): links one binary of a crate
//! statically against glibc's archives on stable cargo, which cannot set
//! `-C target-feature=+crt-static` for a single binary (as a workspace-wide flag it breaks
//! proc-macro crates). rustc then still asks for the libraries by their dynamic names
//! (`-lgcc_s -lc ...`): [`static_lib_dir`] makes a directory of links to the static archives
//! that answer those names, to be searched first on the binary's link line.
//!
//! It must not be a run-time dependency, and it decides nothing about PIE or non-PIE: the
//! calling build script says which (`-static` or `-static-pie`) and why.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The archives behind the names rustc passes for a glibc binary (libgcc_s's unwinder is
/// libgcc_eh's in a static link).
const GLIBC: &[(&str, &str)] = &[
    ("gcc_s", "libgcc_eh.a"),
    ("c", "libc.a"),
    ("m", "libm.a"),
    ("pthread", "libpthread.a"),
    ("rt", "librt.a"),
    ("dl", "libdl.a"),
    ("util", "libutil.a"),
];

/// Whether the target is linux-gnu (the only one this applies to).
pub fn applies() -> bool {
    std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
}

/// `$OUT_DIR/static` with `lib<name>.a` links to the archives of glibc and libgcc, plus
/// `extra` (`(name, archive)`, e.g. `("seccomp", "libseccomp.a")`), found through the C
/// compiler (`$CC`, else `cc`). An error names the first archive not found.
pub fn static_lib_dir(extra: &[(&str, &str)]) -> Result<PathBuf, String> {
    if !applies() {
        return Err("not a linux-gnu target".into());
    }
    let out = std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?;
    let dir = Path::new(&out).join("static");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    for (name, archive) in GLIBC.iter().chain(extra) {
        let found = Command::new(&cc)
            .arg(format!("-print-file-name={archive}"))
            .output()
            .map_err(|e| format!("{cc}: {e}"))?;
        let path = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
        // cc prints the bare name when it finds nothing
        if !path.is_absolute() || !path.exists() {
            return Err(format!("{archive} not found (a static library)"));
        }
        let link = dir.join(format!("lib{name}.a"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    }
    Ok(dir)
}
