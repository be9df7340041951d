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
    println!("cargo:rerun-if-changed=build.rs");
    // Re-stamp when a commit lands (HEAD or the current branch's ref moves), not on every build.
    let git = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.git");
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
        println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed={}", git.join(r).display());
        }
    }
}
