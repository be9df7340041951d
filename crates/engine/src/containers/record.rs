//! What is persisted per container: `<data-root>/containers/<id>/config.v2.json`, written
//! temp + rename so a kill -9 of berthd loses nothing, and fsync'd (file and directory) so a
//! host crash does not either (see `save` for the one exception).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const CONFIG_FILE: &str = "config.v2.json";

/// Docker's `State` object, kept as dockerd reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// created | running | paused | restarting | removing | exited | dead
    pub status: String,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// With the leading `/`, like dockerd.
    pub name: String,
    pub created: String,
    /// `sha256:...`
    pub image_id: String,
    /// The image as the user named it (`busybox`), Docker's `Config.Image`.
    pub image_ref: String,
    pub path: String,
    pub args: Vec<String>,
    /// Docker's `Config`, merged with the image's (Env, Cmd, Entrypoint, WorkingDir, ...).
    pub config: Value,
    /// Docker's `HostConfig` as sent.
    pub host_config: Value,
    pub state: State,
    pub restart_count: i64,
    /// Whether the user ran it since the daemon knew it (unless-stopped bookkeeping).
    #[serde(default)]
    pub manually_stopped: bool,
    /// Binds, volumes and tmpfs mounts, resolved at create (dockerd's `MountPoints`).
    #[serde(default)]
    pub mount_points: Vec<super::mounts::MountPoint>,
}

impl Record {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
    pub fn cfg_str(&self, key: &str) -> String {
        self.config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    }
    pub fn cfg_bool(&self, key: &str) -> bool {
        self.config
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    pub fn host_str(&self, key: &str) -> String {
        self.host_config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    }
    pub fn host_bool(&self, key: &str) -> bool {
        self.host_config
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    pub fn host_i64(&self, key: &str) -> i64 {
        self.host_config
            .get(key)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }
    pub fn tty(&self) -> bool {
        self.cfg_bool("Tty")
    }
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        self.config
            .get("Labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default()
    }
    pub fn running(&self) -> bool {
        matches!(self.state.status.as_str(), "running" | "paused")
    }
    /// `--network` as given; "default" means bridge.
    pub fn network_mode(&self) -> String {
        match self.host_str("NetworkMode").as_str() {
            "" | "default" => "bridge".to_owned(),
            m => m.to_owned(),
        }
    }
}

/// Saves the record; always atomic, so a kill -9 of the daemon never loses or tears it.
/// Durable against a host crash too, except for auto-remove (`--rm`) containers: the next
/// daemon start removes those anyway unless they run, and none runs after a host crash, so
/// their fsyncs (4 per `run --rm`, up to tens of ms each on a busy disk) would buy nothing.
///
/// Swapped with `config.v2.tmp` (`berth_atomicfile::swap`): a container saves at create,
/// start and exit, and two reused inodes spare the filesystem an allocation per save.
pub fn save(dir: &Path, rec: &Record) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
    berth_atomicfile::swap(&dir.join(CONFIG_FILE), &data, !rec.host_bool("AutoRemove"))
}

pub fn load(dir: &Path) -> std::io::Result<Record> {
    let data = std::fs::read(dir.join(CONFIG_FILE))?;
    serde_json::from_slice(&data).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(status: &str) -> Record {
        Record {
            id: "a".repeat(64),
            name: "/x".into(),
            created: ZERO_TIME.into(),
            image_id: String::new(),
            image_ref: String::new(),
            path: "true".into(),
            args: Vec::new(),
            config: serde_json::json!({}),
            host_config: serde_json::json!({"AutoRemove": true}),
            state: State {
                status: status.into(),
                ..Default::default()
            },
            restart_count: 0,
            manually_stopped: false,
            mount_points: Vec::new(),
        }
    }

    /// Saves swap the record with the temp file: both inodes are reused, the newest record is
    /// always the one `load` reads.
    #[test]
    fn saves_reuse_their_two_files() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        save(d.path(), &rec("created")).unwrap();
        save(d.path(), &rec("running")).unwrap();
        let inodes = |d: &Path| {
            let mut v: Vec<u64> = std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.metadata().unwrap().ino())
                .collect();
            v.sort();
            v
        };
        let before = inodes(d.path());
        assert_eq!(before.len(), 2);
        save(d.path(), &rec("exited")).unwrap();
        assert_eq!(inodes(d.path()), before);
        assert_eq!(load(d.path()).unwrap().state.status, "exited");
    }
}
