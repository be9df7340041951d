//! Stamp the binary with what `berth version` reports: git commit, build time, rustc.
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit =
        run("git", &["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let date = run("date", &["-u", "+%a %b %e %H:%M:%S %Y"]).unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_v = run(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(|s| format!("rust{s}")))
        .unwrap_or_else(|| "rust".into());
    println!("cargo:rustc-env=BERTH_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=BERTH_BUILD_TIME={date}");
    println!("cargo:rustc-env=BERTH_RUSTC_VERSION={rustc_v}");
    // DT_RELR (glibc >= 2.36, binutils >= 2.38): the ~23k relative relocations of this PIE
    // take 8 bytes per page instead of 24 bytes each, so start-up reads 0.5 MB less.
    if linker_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // Static PIE (glibc, libgcc_eh): the dynamic loader (mapping libc, libm and libgcc_s,
    // symbol lookups, their relocations) was ~0.45 ms of the ~2.8 ms of CPU of a `berth run
    // --rm` (perf stat, 3 x 60 runs); still position-independent, so the binary keeps ASLR.
    // Name resolution of `tcp://` hosts works: glibc >= 2.34 has its `files` and `dns` NSS
    // modules built in (other modules in nsswitch.conf are not loaded by a static binary).
    // How, on stable cargo: `berth-staticlink`'s directory of links to the static archives,
    // searched first on the binary's link line only, and `-static-pie`.
    match berth_staticlink::static_lib_dir(&[]) {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
            println!("cargo:rustc-link-arg-bins=-static-pie");
        }
        Err(e) => println!("cargo:warning=berth is linked dynamically: {e}"),
    }
    println!("cargo:rerun-if-changed=build.rs");
    // Re-stamp when a commit lands (HEAD or the current branch's ref moves), not on every build.
    // Asked of git, so a linked worktree (whose .git is a file) is followed too.
    if let Some(head) = run("git", &["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
        if let Some(r) = run("git", &["symbolic-ref", "-q", "HEAD"])
            .and_then(|r| run("git", &["rev-parse", "--git-path", &r]))
        {
            println!("cargo:rerun-if-changed={r}");
        }
    }
}

/// Does the system's linker take `-z pack-relative-relocs`, and does the libc we link
/// against support it (it then provides the GLIBC_ABI_DT_RELR version the linker asks for)?
fn linker_has_relr() -> bool {
    if !berth_staticlink::applies() {
        return false;
    }
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return false;
    };
    let dir = std::path::Path::new(&out);
    let src = dir.join("relr_probe.c");
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    Command::new(cc)
        .arg("-Wl,-z,pack-relative-relocs")
        .arg("-o")
        .arg(dir.join("relr_probe"))
        .arg(&src)
        .output()
        .is_ok_and(|o| o.status.success())
}
