//! Health checks (`HEALTHCHECK` / `--health-*`): run the test through the shim as an exec at
//! each interval, keep Docker's `State.Health` and publish `health_status` events.

use std::sync::Arc;
use std::time::Duration;

use berth_shim_proto::{ExecSpec, FRAME_EXIT, Reply, Request, parse_frame_header};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::{Container, Containers, lock, now_rfc3339, shim, str_list};

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<Value>,
}

impl Health {
    pub fn to_json(&self) -> Value {
        json!({ "Status": self.status, "FailingStreak": self.failing_streak, "Log": self.log })
    }
}

const DEFAULT_INTERVAL: i64 = 30_000_000_000;
const DEFAULT_TIMEOUT: i64 = 30_000_000_000;
const MAX_LOG: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// The probe's argv, or None when the container has no (or a disabled) health check.
fn probe_args(cfg: &Value) -> Option<Vec<String>> {
    let test = str_list(cfg.pointer("/Healthcheck/Test"))?;
    match test.first().map(String::as_str) {
        Some("CMD") => Some(test[1..].to_vec()).filter(|a| !a.is_empty()),
        Some("CMD-SHELL") => Some(vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")]),
        _ => None,
    }
}

impl Containers {
    /// Start the health monitor of a just-started container (no-op without a health check).
    pub(super) fn spawn_health(&self, ctr: Arc<Container>) {
        let rec = ctr.record();
        let Some(args) = probe_args(&rec.config) else {
            *lock(&ctr.health) = None;
            return;
        };
        let ns = |k: &str, d: i64| {
            rec.config
                .pointer(&format!("/Healthcheck/{k}"))
                .and_then(Value::as_i64)
                .filter(|v| *v > 0)
                .unwrap_or(d)
        };
        let interval = Duration::from_nanos(ns("Interval", DEFAULT_INTERVAL) as u64);
        let timeout = Duration::from_nanos(ns("Timeout", DEFAULT_TIMEOUT) as u64);
        let retries = ns("Retries", 3);
        let start_period = Duration::from_nanos(ns("StartPeriod", 0) as u64);
        *lock(&ctr.health) = Some(Health {
            status: "starting".into(),
            ..Default::default()
        });
        let this = self.clone();
        let mut exits = ctr.exits.subscribe();
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = exits.changed() => return,
                }
                n += 1;
                let start = now_rfc3339();
                let (code, output) = this.probe(&ctr, &args, n, timeout).await;
                let rec = ctr.record();
                if !rec.running() {
                    return;
                }
                let changed = {
                    let mut g = lock(&ctr.health);
                    let Some(h) = g.as_mut() else { return };
                    let before = h.status.clone();
                    h.log.push(json!({
                        "Start": start, "End": now_rfc3339(), "ExitCode": code, "Output": output,
                    }));
                    if h.log.len() > MAX_LOG {
                        h.log.remove(0);
                    }
                    if code == 0 {
                        h.failing_streak = 0;
                        h.status = "healthy".into();
                    } else if started.elapsed() >= start_period {
                        h.failing_streak += 1;
                        if h.failing_streak >= retries {
                            h.status = "unhealthy".into();
                        }
                    }
                    (h.status != before).then(|| h.status.clone())
                };
                if let Some(st) = changed {
                    this.log_event(&rec, &format!("health_status: {st}"), &[]);
                }
            }
        });
    }

    /// One probe: (exit code, output). A timeout or failure to run counts as exit code -1.
    async fn probe(
        &self,
        ctr: &Container,
        args: &[String],
        n: u64,
        timeout: Duration,
    ) -> (i32, String) {
        let sd = self.state_dir(&ctr.id);
        let spec = ExecSpec {
            id: format!("health-{}-{n}", &ctr.id[..12]),
            args: args.to_vec(),
            ..Default::default()
        };
        let run = async {
            let (reply, mut conn) = shim::connect(&sd, &Request::Exec(spec)).await.ok()?;
            if let Reply::Error { message, .. } = reply {
                return Some((-1, message));
            }
            let mut out = Vec::new();
            loop {
                let mut h = [0u8; 8];
                conn.read_exact(&mut h).await.ok()?;
                let (kind, len) = parse_frame_header(&h)?;
                let mut body = vec![0u8; len];
                conn.read_exact(&mut body).await.ok()?;
                if kind == FRAME_EXIT {
                    let code = serde_json::from_slice::<berth_shim_proto::ExecExit>(&body)
                        .map(|e| e.exit_code)
                        .unwrap_or(-1);
                    out.truncate(MAX_OUTPUT);
                    return Some((code, String::from_utf8_lossy(&out).into_owned()));
                }
                out.extend_from_slice(&body);
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Some(r)) => r,
            Ok(None) => (-1, "health check failed to run".into()),
            Err(_) => (
                -1,
                format!("Health check exceeded timeout ({}s)", timeout.as_secs()),
            ),
        }
    }
}
