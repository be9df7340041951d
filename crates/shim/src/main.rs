//! berth-shim: one small process per container. It creates and starts the container through
//! youki's libcontainer (or an external OCI runtime binary such as runc: runtime.rs), owns the container's stdio (pipes or the pty master), writes the logs,
//! serves attach/exec/kill/wait/pause over `<state-dir>/shim.sock`, reaps the init and records
//! its exit in `<state-dir>/exit.json`.
//!
//! Why a separate process: libcontainer clones with raw clone3 and must run in a
//! single-threaded process, and a container must outlive a daemon restart (live-restore).
//! So this binary is single-threaded, uses no async runtime, allocates little, and depends on
//! nothing of the daemon: not its process, not its stdio, not its crates beyond the protocol
//! (crates/shim-proto, which documents the wire format and the state directory).
//!
//! Where a create goes (issue #3; `BERTH_SHIM_TIMING=1` in berthd's environment writes the
//! timeline, with each process's CPU time, to `shim.log`: timing.rs): exec and start-up of
//! this binary (~1 ms), the config and libcontainer's builder (~1 ms CPU), libcontainer's
//! intermediate process (cgroups in every v1 hierarchy, ~1.7 ms CPU) and the container's init
//! (namespaces, the rootfs mounts, the cgroup v1 emulation, masked and read-only paths,
//! seccomp, capabilities: ~4.5 ms CPU), then the report. The vendored libcontainer, libcgroups
//! and pathrs carry the cuts made inside them (vendor/libcontainer/BERTH-PATCH.md); start-up
//! work that can wait (berth-mem's smaps scan) runs when the shim is idle.
//!
//! `berth-shim pool`: berthd keeps one shim exec'd and detached ahead of time, waiting on its
//! stdin for the `start` flags, so the exec and start-up above are off the path of a create
//! (start.rs: `pool`). It has no state directory until it gets them, and exits on EOF.

mod cgroup;
mod executor;
mod logs;
mod runtime;
mod seccomp_cache;
mod server;
mod start;
mod timing;

use std::path::PathBuf;
use std::process::ExitCode;

/// Parsed `berth-shim start` options.
#[derive(Debug, Clone)]
pub struct StartOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_root: PathBuf,
    /// An external OCI runtime binary (runc's CLI); None = libcontainer in this process.
    pub runtime: Option<PathBuf>,
    /// Its global options (daemon.json `runtimeArgs`).
    pub runtime_args: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    /// Create only; start on a `start` request (so attachers can connect first).
    pub create_only: bool,
    /// Bring `lo` up in the container's new network namespace (`--network none`) before
    /// reporting it created.
    pub loopback_up: bool,
    pub log_driver: LogDriver,
    pub log_path: Option<PathBuf>,
    pub log_max_size: Option<u64>,
    pub log_max_file: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDriver {
    JsonFile,
    None,
}

/// Every capability our bounding set still has (for `exec --privileged`): the others cannot
/// be granted (capset fails with EPERM).
pub fn all_caps() -> libcontainer::oci_spec::runtime::Capabilities {
    use std::str::FromStr;
    caps::read(None, caps::CapSet::Bounding)
        .unwrap_or_else(|_| caps::all())
        .iter()
        .filter_map(|c| {
            let name = c.to_string();
            libcontainer::oci_spec::runtime::Capability::from_str(
                name.strip_prefix("CAP_").unwrap_or(&name),
            )
            .ok()
        })
        .collect()
}

const USAGE: &str = "usage: berth-shim pool --exec-root DIR | berth-shim start --id ID --bundle DIR --state-dir DIR --runtime-root DIR \
[--runtime PATH [--runtime-arg ARG]...] [--tty] [--stdin] [--create-only] [--loopback-up] --log-driver json-file|none [--log-path FILE] \
[--log-max-size BYTES] [--log-max-file N]";

fn parse(args: &[String]) -> Result<StartOpts, String> {
    let mut o = StartOpts {
        id: String::new(),
        bundle: PathBuf::new(),
        state_dir: PathBuf::new(),
        runtime_root: PathBuf::from("/run/berth/runtime"),
        runtime: None,
        runtime_args: Vec::new(),
        tty: false,
        stdin: false,
        create_only: false,
        loopback_up: false,
        log_driver: LogDriver::JsonFile,
        log_path: None,
        log_max_size: None,
        log_max_file: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: {name}"))
        };
        match a.as_str() {
            "--id" => o.id = val(a)?,
            "--bundle" => o.bundle = val(a)?.into(),
            "--state-dir" => o.state_dir = val(a)?.into(),
            "--runtime-root" => o.runtime_root = val(a)?.into(),
            "--runtime" => o.runtime = Some(val(a)?.into()),
            "--runtime-arg" => o.runtime_args.push(val(a)?),
            "--tty" => o.tty = true,
            "--stdin" => o.stdin = true,
            "--create-only" => o.create_only = true,
            "--loopback-up" => o.loopback_up = true,
            "--log-driver" => {
                o.log_driver = match val(a)?.as_str() {
                    "json-file" => LogDriver::JsonFile,
                    "none" => LogDriver::None,
                    d => return Err(format!("unsupported log driver: {d}")),
                }
            }
            "--log-path" => o.log_path = Some(val(a)?.into()),
            "--log-max-size" => {
                o.log_max_size = Some(
                    val(a)?
                        .parse()
                        .map_err(|_| "--log-max-size: not a number of bytes".to_string())?,
                )
            }
            "--log-max-file" => {
                o.log_max_file = val(a)?
                    .parse()
                    .map_err(|_| "--log-max-file: not a number".to_string())?
            }
            other => return Err(format!("unknown flag: {other}")),
        }
    }
    if o.id.is_empty() || o.bundle.as_os_str().is_empty() || o.state_dir.as_os_str().is_empty() {
        return Err("--id, --bundle and --state-dir are required".into());
    }
    if o.log_driver == LogDriver::JsonFile && o.log_path.is_none() {
        return Err("--log-path is required with the json-file log driver".into());
    }
    // paths are used after chdir(state dir): make them absolute now
    let abs = |p: &PathBuf| -> Result<PathBuf, String> {
        std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    o.bundle = abs(&o.bundle)?;
    o.state_dir = abs(&o.state_dir)?;
    o.runtime_root = abs(&o.runtime_root)?;
    if let Some(p) = &o.log_path {
        o.log_path = Some(abs(p)?);
    }
    Ok(o)
}

fn main() -> ExitCode {
    timing::mark_main();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("start") => match parse(&args[1..]) {
            Ok(o) => {
                executor::remember_own_binary();
                ExitCode::from(start::run(o) as u8)
            }
            Err(e) => {
                eprintln!("berth-shim: {e}\n{USAGE}");
                ExitCode::from(125)
            }
        },
        // a pre-started shim for berthd's pool: the `start` flags come on stdin (start.rs)
        // (`--exec-root` only names the daemon it waits for, in `ps` and for bench/)
        Some("pool") if args.len() == 3 && args[1] == "--exec-root" => {
            ExitCode::from(start::pool() as u8)
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(125)
        }
    }
}
