//! `berth registry serve|gc`: run a registry in this process (crates/registry), the way
//! `docker run -d -p 5000:5000 registry` runs distribution. The one command group that does
//! not talk to berthd: it is a server of its own, with its own storage directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::error::CliError;

#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Run a registry (OCI distribution API) on a directory
    Serve(Box<ServeArgs>),
    /// Delete blobs no manifest references (stop the registry or run it --read-only first)
    Gc(GcArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, value_name = "host:port", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,
    /// Storage directory
    #[arg(long, value_name = "dir", default_value = "/var/lib/berth-registry")]
    pub root: PathBuf,
    /// htpasswd file (bcrypt entries) for Basic auth
    #[arg(long, value_name = "file")]
    pub htpasswd: Option<PathBuf>,
    /// Realm of the Basic auth challenge
    #[arg(long, value_name = "string", default_value = "Registry Realm")]
    pub realm: String,
    /// Token auth: URL of the token server
    #[arg(long, value_name = "url", requires_all = ["token_service", "token_issuer", "token_rootcertbundle"])]
    pub token_realm: Option<String>,
    /// Token auth: service name tokens are issued for (their audience)
    #[arg(long, value_name = "string", requires = "token_realm")]
    pub token_service: Option<String>,
    /// Token auth: issuer tokens must name
    #[arg(long, value_name = "string", requires = "token_realm")]
    pub token_issuer: Option<String>,
    /// Token auth: PEM certificates whose keys sign the tokens
    #[arg(long, value_name = "file", requires = "token_realm")]
    pub token_rootcertbundle: Option<PathBuf>,
    /// TLS certificate (PEM)
    #[arg(long, value_name = "file", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "file", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse all writes
    #[arg(long)]
    pub read_only: bool,
    /// Allow deleting manifests, tags and blobs
    #[arg(long)]
    pub delete: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Storage directory
    #[arg(long, value_name = "dir", default_value = "/var/lib/berth-registry")]
    pub root: PathBuf,
    /// Only print what would be deleted
    #[arg(long)]
    pub dry_run: bool,
    /// Remove upload sessions untouched for this long (0: keep them all)
    #[arg(long, value_name = "duration", default_value = "168h", value_parser = max_age)]
    pub upload_max_age: std::time::Duration,
}

/// A Go duration ("168h", "30m"), not negative.
fn max_age(s: &str) -> Result<std::time::Duration, String> {
    let ns = berth_types::duration::parse(s)?;
    u64::try_from(ns)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("invalid duration {s:?}: negative"))
}

pub async fn run(cmd: RegistryCmd) -> Result<(), CliError> {
    match cmd {
        RegistryCmd::Serve(a) => serve(*a).await,
        RegistryCmd::Gc(a) => gc(a).await,
    }
}

async fn serve(a: ServeArgs) -> Result<(), CliError> {
    let mut cfg = berth_registry::Config::new(a.root);
    cfg.addr = a.addr;
    cfg.htpasswd = a.htpasswd;
    cfg.realm = a.realm;
    cfg.read_only = a.read_only;
    cfg.delete = a.delete;
    if let (Some(realm), Some(service), Some(issuer), Some(bundle)) = (
        a.token_realm,
        a.token_service,
        a.token_issuer,
        a.token_rootcertbundle,
    ) {
        cfg.token = Some(berth_registry::TokenConfig {
            realm,
            service,
            issuer,
            rootcertbundle: bundle,
        });
    }
    if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
        cfg.tls = Some(berth_registry::TlsConfig { cert, key });
    }
    let server = berth_registry::Server::start(cfg)
        .await
        .map_err(|e| CliError::msg(format!("registry: {e}")))?;
    println!("listening on {}", server.url());
    tokio::select! {
        _ = server.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated() => {}
    }
    Ok(())
}

async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn gc(a: GcArgs) -> Result<(), CliError> {
    let opts = berth_registry::GcOptions {
        dry_run: a.dry_run,
        upload_max_age: (!a.upload_max_age.is_zero()).then_some(a.upload_max_age),
    };
    let r = tokio::task::spawn_blocking(move || berth_registry::gc(&a.root, &opts))
        .await
        .map_err(|e| CliError::msg(format!("gc: {e}")))?
        .map_err(|e| CliError::msg(format!("gc: {e}")))?;
    let mut out = String::new();
    for d in &r.deleted {
        out.push_str(&format!("blob eligible for deletion: {d}\n"));
    }
    for u in &r.stale_uploads {
        out.push_str(&format!("upload eligible for deletion: {u}\n"));
    }
    out.push_str(&format!(
        "{} blobs marked, {} blobs {}\n",
        r.marked,
        r.deleted.len(),
        if r.dry_run {
            "eligible for deletion"
        } else {
            "deleted"
        }
    ));
    super::out(&out)
}
