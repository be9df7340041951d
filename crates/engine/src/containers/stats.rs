//! `GET /containers/{id}/stats`: Docker's stats JSON from the container's cgroup (v1 or v2)
//! and its network namespace's /proc/net/dev.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Containers, Record, now_rfc3339};
use crate::error::Result;

fn read_u64(p: &PathBuf) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn kv(p: &PathBuf) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if let Ok(s) = std::fs::read_to_string(p) {
        for l in s.lines() {
            if let Some((k, v)) = l.split_once(' ')
                && let Ok(n) = v.trim().parse::<u64>()
            {
                m.insert(k.to_owned(), json!(n));
            }
        }
    }
    m
}

/// Host CPU time in ns (/proc/stat's first line, in USER_HZ ticks of 10 ms).
fn system_cpu() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let l = s.lines().next()?.to_owned();
            Some(
                l.split_whitespace()
                    .skip(1)
                    .take(7)
                    .filter_map(|x| x.parse::<u64>().ok())
                    .sum::<u64>()
                    * 10_000_000,
            )
        })
        .unwrap_or(0)
}

fn online_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

fn networks(pid: i32) -> Value {
    let mut m = serde_json::Map::new();
    if pid <= 0 {
        return Value::Object(m);
    }
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) {
        for l in s.lines().skip(2) {
            let Some((name, rest)) = l.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name == "lo" {
                continue;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() < 16 {
                continue;
            }
            m.insert(
                name.to_owned(),
                json!({
                    "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                    "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
                }),
            );
        }
    }
    Value::Object(m)
}

/// One sample (cpu_stats etc.; precpu_stats is filled by the caller).
pub fn sample(r: &Record) -> Value {
    let id = &r.id;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (cpu_total, cpu_user, cpu_sys, mem_usage, mem_limit, mem_stats, pids) = if v2 {
        let d = PathBuf::from(format!("/sys/fs/cgroup/berth/{id}"));
        let st = kv(&d.join("cpu.stat"));
        let g = |k: &str| st.get(k).and_then(Value::as_u64).unwrap_or(0) * 1000;
        let limit = std::fs::read_to_string(d.join("memory.max"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        (
            g("usage_usec"),
            g("user_usec"),
            g("system_usec"),
            read_u64(&d.join("memory.current")).unwrap_or(0),
            limit,
            kv(&d.join("memory.stat")),
            read_u64(&d.join("pids.current")).unwrap_or(0),
        )
    } else {
        let c = |ctl: &str, f: &str| PathBuf::from(format!("/sys/fs/cgroup/{ctl}/berth/{id}/{f}"));
        let ua = kv(&c("cpuacct", "cpuacct.stat"));
        let tick = |k: &str| ua.get(k).and_then(Value::as_u64).unwrap_or(0) * 10_000_000;
        (
            read_u64(&c("cpuacct", "cpuacct.usage")).unwrap_or(0),
            tick("user"),
            tick("system"),
            read_u64(&c("memory", "memory.usage_in_bytes")).unwrap_or(0),
            read_u64(&c("memory", "memory.limit_in_bytes")),
            kv(&c("memory", "memory.stat")),
            read_u64(&c("pids", "pids.current")).unwrap_or(0),
        )
    };
    // "unlimited" is the host's memory, as docker reports it
    let host_mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let limit = mem_limit.filter(|l| *l < host_mem).unwrap_or(host_mem);
    json!({
        "read": now_rfc3339(),
        "name": r.name,
        "id": r.id,
        "num_procs": 0,
        "pids_stats": { "current": pids },
        "blkio_stats": {
            "io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": cpu_total,
                "usage_in_kernelmode": cpu_sys,
                "usage_in_usermode": cpu_user,
            },
            "system_cpu_usage": system_cpu(),
            "online_cpus": online_cpus(),
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        },
        "memory_stats": { "usage": mem_usage, "limit": limit, "stats": mem_stats },
        "networks": networks(r.state.pid),
    })
}

/// A sample of a stopped container: zeros, like dockerd.
fn empty(r: &Record) -> Value {
    json!({
        "read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z",
        "name": r.name, "id": r.id, "num_procs": 0,
        "pids_stats": {}, "blkio_stats": {}, "storage_stats": {},
        "cpu_stats": { "cpu_usage": { "total_usage": 0 }, "throttling_data": {} },
        "precpu_stats": { "cpu_usage": { "total_usage": 0 }, "throttling_data": {} },
        "memory_stats": {},
    })
}

impl Containers {
    /// `GET /containers/{id}/stats?stream=&one-shot=`: samples a second apart.
    pub fn stats(
        &self,
        name: &str,
        stream: bool,
        one_shot: bool,
    ) -> Result<tokio::sync::mpsc::Receiver<Value>> {
        let ctr = self.get(name)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut prev: Option<Value> = None;
            let mut first = true;
            loop {
                let rec = ctr.record();
                if !rec.running() {
                    let _ = tx.send(empty(&rec)).await;
                    return;
                }
                let r2 = rec.clone();
                let Ok(mut s) = tokio::task::spawn_blocking(move || sample(&r2)).await else {
                    return;
                };
                let cur = s.clone();
                match &prev {
                    Some(p) => {
                        s["precpu_stats"] = p["cpu_stats"].clone();
                        s["preread"] = p["read"].clone();
                    }
                    None => {
                        s["precpu_stats"] =
                            json!({ "cpu_usage": { "total_usage": 0 }, "throttling_data": {} });
                        s["preread"] = json!("0001-01-01T00:00:00Z");
                    }
                }
                prev = Some(cur);
                // a non-streaming answer waits for the second sample (CPU % needs two)
                let send = stream || one_shot || !first;
                if send && tx.send(s).await.is_err() {
                    return;
                }
                if !stream && send {
                    return;
                }
                first = false;
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }
}

/// Write a cgroup file of a running container (v1: `<controller>/berth/<id>/<file>`).
fn cg_write(v2: bool, id: &str, v1_ctl: &str, file: &str, value: &str) -> std::io::Result<()> {
    let p = if v2 {
        PathBuf::from(format!("/sys/fs/cgroup/berth/{id}/{file}"))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/{v1_ctl}/berth/{id}/{file}"))
    };
    std::fs::write(p, value)
}

/// Apply `docker update` resources to a running container's cgroup (the shim owns creating
/// and deleting the cgroup; limits are plain file writes).
pub fn apply_resources(id: &str, u: &Value) -> std::io::Result<()> {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let i = |k: &str| u.get(k).and_then(Value::as_i64).filter(|v| *v != 0);
    if let Some(m) = i("Memory") {
        if v2 {
            cg_write(v2, id, "memory", "memory.max", &m.to_string())?;
        } else {
            // raising memory above memsw fails: widen memsw first when it is set too
            if let Some(sw) = i("MemorySwap") {
                let _ = cg_write(
                    v2,
                    id,
                    "memory",
                    "memory.memsw.limit_in_bytes",
                    &sw.to_string(),
                );
            }
            cg_write(v2, id, "memory", "memory.limit_in_bytes", &m.to_string())?;
        }
    }
    if let Some(sw) = i("MemorySwap") {
        let val = if sw < 0 {
            "-1".to_owned()
        } else {
            sw.to_string()
        };
        if v2 {
            let m = i("Memory").unwrap_or(0);
            let swap = if sw < 0 {
                "max".to_owned()
            } else {
                (sw - m).max(0).to_string()
            };
            cg_write(v2, id, "memory", "memory.swap.max", &swap)?;
        } else {
            cg_write(v2, id, "memory", "memory.memsw.limit_in_bytes", &val)?;
        }
    }
    if let Some(s) = i("CpuShares") {
        if v2 {
            // Docker's shares -> weight conversion
            let w = 1 + ((s.max(2) - 2) * 9999) / 262142;
            cg_write(v2, id, "cpu", "cpu.weight", &w.to_string())?;
        } else {
            cg_write(v2, id, "cpu", "cpu.shares", &s.to_string())?;
        }
    }
    if let Some(n) = i("NanoCpus") {
        let period = 100_000i64;
        let quota = n * period / 1_000_000_000;
        if v2 {
            cg_write(v2, id, "cpu", "cpu.max", &format!("{quota} {period}"))?;
        } else {
            cg_write(v2, id, "cpu", "cpu.cfs_period_us", &period.to_string())?;
            cg_write(v2, id, "cpu", "cpu.cfs_quota_us", &quota.to_string())?;
        }
    }
    if let Some(p) = i("PidsLimit") {
        let v = if p < 0 {
            "max".to_owned()
        } else {
            p.to_string()
        };
        cg_write(v2, id, "pids", "pids.max", &v)?;
    }
    if let Some(c) = u
        .get("CpusetCpus")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        cg_write(v2, id, "cpuset", "cpuset.cpus", c)?;
    }
    Ok(())
}

impl Containers {
    /// `POST /containers/{id}/update`: resources and restart policy.
    pub async fn update(&self, name: &str, body: Value) -> Result<Vec<String>> {
        let ctr = self.get(name)?;
        let _op = ctr.op.lock().await;
        let rec = ctr.record();
        if let Some(rp) = body.get("RestartPolicy").filter(|v| !v.is_null())
            && rec.host_bool("AutoRemove")
            && rp
                .get("Name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty() && n != "no")
        {
            return Err(crate::Error::invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            ));
        }
        if rec.running() {
            let id = rec.id.clone();
            let b = body.clone();
            tokio::task::spawn_blocking(move || apply_resources(&id, &b))
                .await?
                .map_err(|e| {
                    crate::Error::invalid(format!("Cannot update container {}: {e}", rec.id))
                })?;
        }
        {
            let mut r = super::lock(&ctr.rec);
            let keys = [
                "Memory",
                "MemorySwap",
                "MemoryReservation",
                "CpuShares",
                "NanoCpus",
                "CpuPeriod",
                "CpuQuota",
                "CpusetCpus",
                "CpusetMems",
                "PidsLimit",
                "BlkioWeight",
            ];
            for k in keys {
                if let Some(v) = body
                    .get(k)
                    .filter(|v| !v.is_null() && *v != &json!(0) && *v != &json!(""))
                {
                    r.host_config[k] = v.clone();
                }
            }
            if let Some(rp) = body.get("RestartPolicy").filter(|v| {
                v.get("Name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty())
            }) {
                r.host_config["RestartPolicy"] = rp.clone();
            }
        }
        self.save(&ctr).await?;
        let rec = ctr.record();
        self.log_event(&rec, "update", &[]);
        Ok(Vec::new())
    }
}
