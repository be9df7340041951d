//! berthd: parses dockerd-compatible flags and daemon.json, opens the engine, serves the API.
//! Must not: contain API or engine logic; this file only wires the pieces together.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth_engine::execroot::ExecRoot;
use berth_engine::{Engine, EngineConfig, Runtime};
use berthd::config::{self, ConfigError, DaemonConfig};
use berthd::listen::{self, Host};
use berthd::pidfile::Pidfile;
use tokio_util::sync::CancellationToken;

/// dockerd exits 125 on bad flags, 1 on start-up failures.
const EXIT_USAGE: u8 = 125;
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    // before any thread or dlopen: the mappings the idle trim may touch
    berth_mem::init();
    let cfg = match config::resolve(std::env::args_os()) {
        Ok(c) => c,
        Err(ConfigError::Usage(e)) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if cfg.show_version {
        println!(
            "berthd version {} (Docker Engine API {}, compatible with Docker {})",
            berth_engine::info::BERTH_VERSION,
            berth_engine::info::API_VERSION,
            berth_engine::info::DOCKER_VERSION
        );
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg);

    // Small and predictable: two workers are plenty for an API server; blocking store work
    // goes to the blocking pool.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(32)
        .thread_keep_alive(Duration::from_secs(10))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: starting the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Give memory back (berth_mem::trim_rss) once the API has been quiet this long: code run once
/// at start-up or per request (image import, a build, a pull) otherwise stays mapped for the
/// daemon's whole life. Short enough that an idle daemon is small, long enough that a burst of
/// requests (a compose up, a CI job) is never interrupted; the next request refaults what it
/// needs from the page cache (minor faults, about a millisecond in all).
const TRIM_AFTER_QUIET: Duration = Duration::from_secs(2);

async fn trim_when_idle() {
    let tick = Duration::from_secs(1);
    let mut seen = berth_api::server::requests_received();
    let mut quiet = Duration::ZERO;
    let mut trimmed = false;
    loop {
        tokio::time::sleep(tick).await;
        let now = berth_api::server::requests_received();
        if now != seen {
            (seen, quiet, trimmed) = (now, Duration::ZERO, false);
            continue;
        }
        quiet += tick;
        if !trimmed && quiet >= TRIM_AFTER_QUIET {
            trimmed = true;
            // a few ms of /proc/self/smaps and madvise, on an idle daemon
            berth_mem::trim_rss();
            tracing::debug!("idle: memory trimmed");
        }
    }
}

fn init_logging(cfg: &DaemonConfig) {
    let level = match cfg.log_level.as_str() {
        "fatal" | "panic" => "error",
        l => l,
    };
    // RUST_LOG refines per module when set; the flag decides the default.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(cfg: DaemonConfig) -> Result<(), String> {
    let hosts = cfg
        .hosts
        .iter()
        .map(|h| listen::parse_host(h, cfg.tls))
        .collect::<Result<Vec<Host>, _>>()
        .map_err(|e| e.to_string())?;
    let tls = if cfg.tls && hosts.iter().any(|h| !matches!(h, Host::Unix(_))) {
        let ca = cfg.tlsverify.then_some(cfg.tlscacert.as_path());
        Some(berth_api::tls::acceptor(&cfg.tlscert, &cfg.tlskey, ca).map_err(|e| e.to_string())?)
    } else {
        None
    };

    // before the pidfile, which may live in the exec root
    match berth_engine::execroot::prepare(&cfg.exec_root, &cfg.pidfile) {
        Ok(ExecRoot::Mounted) => tracing::info!(
            "exec root {}: mounted a tmpfs on it (it was on a disk filesystem)",
            cfg.exec_root.display()
        ),
        Ok(ExecRoot::Tmpfs) => {}
        Ok(ExecRoot::OnDisk(why)) => tracing::warn!(
            "exec root {} stays on a disk filesystem: {why}",
            cfg.exec_root.display()
        ),
        Err(e) => tracing::warn!(
            "exec root {}: cannot mount a tmpfs on it: {e}",
            cfg.exec_root.display()
        ),
    }
    let pidfile = Pidfile::acquire(&cfg.pidfile).map_err(|e| e.to_string())?;
    let res = serve(&cfg, hosts, tls).await;
    // while the pidfile is ours: a tmpfs we mounted goes, unless containers still run on it
    // (live-restore reconnects through it)
    berth_engine::execroot::release(&cfg.exec_root);
    drop(pidfile);
    res
}

async fn serve(
    cfg: &DaemonConfig,
    hosts: Vec<Host>,
    tls: Option<berth_api::tls::TlsAcceptor>,
) -> Result<(), String> {
    let mut ecfg = EngineConfig::new(&cfg.data_root, &cfg.exec_root);
    ecfg.debug = cfg.debug;
    ecfg.live_restore = cfg.live_restore;
    ecfg.cgroup_favordynmods = cfg.cgroup_favordynmods;
    ecfg.init = cfg.init;
    ecfg.init_path = cfg.init_path.clone();
    ecfg.default_runtime = cfg.default_runtime.clone();
    ecfg.runtimes = cfg
        .runtimes
        .iter()
        .map(|(n, (path, args))| {
            (
                n.clone(),
                Runtime {
                    path: path.clone(),
                    args: args.clone(),
                },
            )
        })
        .collect();
    ecfg.insecure_registries = cfg.insecure_registries.clone();
    ecfg.registry_mirrors = cfg.registry_mirrors.clone();
    ecfg.max_concurrent_downloads = cfg.max_concurrent_downloads;
    ecfg.max_concurrent_uploads = cfg.max_concurrent_uploads;
    ecfg.bip = cfg.bip.clone();
    ecfg.bridge = cfg.bridge.clone();
    ecfg.fixed_cidr = cfg.fixed_cidr.clone();
    ecfg.mtu = cfg.mtu;
    ecfg.ip_forward = cfg.ip_forward;
    ecfg.ip_masq = cfg.ip_masq;
    ecfg.icc = cfg.icc;
    let engine: Arc<Engine> = Engine::open(ecfg).await.map_err(|e| e.to_string())?;
    // a pre-started shim for the first create (it exits when we do: EOF on its stdin)
    berth_engine::containers::start_shim_pool(&cfg.exec_root);

    let bound = match listen::bind_all(&hosts, &cfg.group, tls).await {
        Ok(b) => b,
        Err(e) => {
            // the engine already set up bridges and our nftables table: a start that fails
            // here must take them down again, as a normal shutdown does
            let limit = u64::try_from(cfg.shutdown_timeout).unwrap_or(365 * 86400);
            engine.shutdown(Duration::from_secs(limit)).await;
            return Err(e.to_string());
        }
    };
    let shutdown = CancellationToken::new();
    let app = berth_api::app(engine.clone(), shutdown.clone());

    let signals = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        signals.cancel();
    });

    tokio::spawn(trim_when_idle());

    tracing::info!(
        "berthd {} serving the Docker API on {}",
        berth_engine::info::BERTH_VERSION,
        cfg.hosts.join(", ")
    );
    berth_api::serve(bound.listeners, app, shutdown, Duration::from_secs(5)).await;
    // like dockerd: stop the containers (unless --live-restore), bounded by --shutdown-timeout
    let limit = u64::try_from(cfg.shutdown_timeout).unwrap_or(365 * 86400);
    engine.shutdown(Duration::from_secs(limit)).await;

    for p in &bound.unix_paths {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("daemon shut down");
    Ok(())
}
