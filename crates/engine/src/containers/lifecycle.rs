//! The daemon's side of the containers' lifecycle: what happens to them when berthd starts
//! (restart policies, auto-remove leftovers) and when it shuts down (stop them, unless
//! live-restore), and the daemon options containers are run with (`--init`, runtimes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use super::{Container, Containers, lock, rootfs};

/// Name of the built-in runtime (youki's libcontainer in berth-shim). Docker clients know it
/// as `runc`: `HostConfig.Runtime` and `docker info` show this name.
pub const BUILTIN_RUNTIME: &str = "runc";

/// Daemon-wide settings that decide how containers are run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--init`: run docker-init as PID 1 when `HostConfig.Init` is not set.
    pub init: bool,
    /// `--init-path`; None = `docker-init`, then `tini-static` on PATH.
    pub init_path: Option<PathBuf>,
    /// `--default-runtime`.
    pub default_runtime: String,
    /// `--add-runtime` / daemon.json `runtimes`: external OCI runtimes by name.
    pub runtimes: BTreeMap<String, crate::Runtime>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            init: false,
            init_path: None,
            default_runtime: BUILTIN_RUNTIME.to_owned(),
            runtimes: BTreeMap::new(),
        }
    }
}

/// Finds `name` in the directories of $PATH.
fn look_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Options {
    /// The init binary to bind-mount at /sbin/docker-init.
    pub fn init_binary(&self) -> Option<PathBuf> {
        match &self.init_path {
            Some(p) => Some(p.clone()),
            None => look_path("docker-init").or_else(|| look_path("tini-static")),
        }
    }
}

/// dockerd's restart manager, at daemon start: `always` comes back even if it was stopped by
/// the user; `unless-stopped` only if it was not.
fn restart_at_boot(hc: &Value, manually_stopped: bool) -> bool {
    match hc
        .pointer("/RestartPolicy/Name")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "always" => true,
        "unless-stopped" => !manually_stopped,
        _ => false,
    }
}

impl Containers {
    pub(super) fn options(&self) -> Options {
        self.0.opts.clone()
    }

    /// At daemon start, after `open`: unmount the rootfs of stopped containers, remove the
    /// auto-remove containers that exited while we were down, and start the containers their
    /// restart policy brings back (as dockerd's restore does).
    pub async fn autostart(&self) {
        let overlay = self.0.images.overlay_root().to_path_buf();
        let stopped: Vec<Arc<Container>> = self
            .all()
            .into_iter()
            .filter(|c| !c.record().running())
            .collect();
        let ids: Vec<String> = stopped.iter().map(|c| c.id.clone()).collect();
        let _ = super::blocking(move || {
            for id in ids {
                let merged = rootfs::rw_dir(&overlay, &id).join("merged");
                if let Err(e) = rootfs::unmount(&merged) {
                    tracing::warn!("unmounting {}: {e}", merged.display());
                }
            }
            Ok(())
        })
        .await;
        for ctr in stopped {
            let rec = ctr.record();
            if rec.host_bool("AutoRemove") {
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = this.remove(&ctr.id, true, false).await {
                        tracing::warn!("auto-removing {}: {e}", ctr.id);
                    }
                });
                continue;
            }
            let restarting = rec.state.status == "restarting";
            if restarting || restart_at_boot(&rec.host_config, rec.manually_stopped) {
                let this = self.clone();
                tokio::spawn(async move {
                    if restarting {
                        // the daemon died during a restart back-off: carry on with it
                        lock(&ctr.rec).state.status = "exited".into();
                    }
                    if let Err(e) = this.start(&ctr.id).await {
                        tracing::warn!("restarting {}: {e}", ctr.id);
                    }
                });
            }
        }
    }

    /// Daemon shutdown (SIGTERM/SIGINT). With live-restore the containers keep running and
    /// are reconnected at the next start; otherwise each running container gets its stop
    /// signal, then SIGKILL after its stop timeout, all in parallel, bounded by `timeout`
    /// (dockerd's `--shutdown-timeout`). A container stopped this way does not count as
    /// stopped by the user: `unless-stopped` brings it back at the next start.
    pub async fn shutdown(&self, live_restore: bool, timeout: Duration) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
        if live_restore {
            return;
        }
        let running: Vec<Arc<Container>> = self
            .all()
            .into_iter()
            .filter(|c| c.record().running())
            .collect();
        if running.is_empty() {
            return;
        }
        tracing::info!("stopping {} running container(s)", running.len());
        let limit = timeout.as_secs() as i64;
        let mut set = tokio::task::JoinSet::new();
        for ctr in running {
            let this = self.clone();
            set.spawn(async move {
                let rec = ctr.record();
                let t = rec
                    .config
                    .get("StopTimeout")
                    .and_then(Value::as_i64)
                    .unwrap_or(10);
                // leave a moment for the SIGKILL within the daemon's bound
                let t = if t < 0 {
                    limit
                } else {
                    t.min(limit - 1).max(0)
                };
                let manual = rec.manually_stopped;
                {
                    let _op = ctr.op.lock().await;
                    if let Err(e) = this.stop_locked(&ctr, Some(t), None).await {
                        tracing::warn!("stopping {}: {e}", ctr.id);
                    }
                }
                lock(&ctr.rec).manually_stopped = manual;
                let _ = this.save(&ctr).await;
            });
        }
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("containers did not stop within the shutdown timeout");
        }
    }

    pub(super) fn shutting_down(&self) -> bool {
        self.0.shutting_down.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn boot_restart_policy() {
        let hc = |n: &str| json!({"RestartPolicy": {"Name": n}});
        assert!(super::restart_at_boot(&hc("always"), true));
        assert!(super::restart_at_boot(&hc("unless-stopped"), false));
        assert!(!super::restart_at_boot(&hc("unless-stopped"), true));
        assert!(!super::restart_at_boot(&hc("on-failure"), false));
        assert!(!super::restart_at_boot(&hc("no"), false));
    }
}
