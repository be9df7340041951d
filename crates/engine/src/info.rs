//! Host facts for `GET /info` and `GET /version`: kernel, OS, cgroup version, CPUs, memory.
//! Read from /proc, /sys and /etc on each call (cheap, nothing cached).

use std::path::Path;

use serde_json::{Value, json};

use crate::{Engine, Result};

/// What the daemon claims to be: the Docker version whose API we serve, so clients behave as
/// with that dockerd. berth's own version goes into `Components`.
pub const DOCKER_VERSION: &str = "28.2.2";
pub const API_VERSION: &str = "1.50";
pub const MIN_API_VERSION: &str = "1.24";
pub const BERTH_VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `PRETTY_NAME` of /etc/os-release.
pub fn operating_system() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    os_release_field(&text, "PRETTY_NAME").unwrap_or_else(|| "Linux".to_owned())
}

fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

/// "2" on a unified hierarchy (cgroup2 mounted at /sys/fs/cgroup), else "1".
pub fn cgroup_version() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

/// Docker's `Architecture` is the kernel's machine name (x86_64, aarch64).
pub fn architecture() -> String {
    rustix_uname_machine().unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

fn rustix_uname_machine() -> Option<String> {
    // SAFETY: uname only writes into the struct we pass.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = u
        .machine
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

/// GOARCH-style name for /version (`amd64`, `arm64`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

pub fn ncpu() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

const BUILD_TIME: &str = "2026-01-01T00:00:00.000000000+00:00";

/// `GET /version`.
pub fn version() -> Value {
    let kernel = kernel_version();
    json!({
        "Platform": {"Name": "berth"},
        "Components": [
            {
                "Name": "Engine",
                "Version": DOCKER_VERSION,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "Arch": go_arch(),
                    "BuildTime": BUILD_TIME,
                    "Experimental": "false",
                    "GitCommit": "berth",
                    "GoVersion": "n/a (rust)",
                    "KernelVersion": kernel,
                    "MinAPIVersion": MIN_API_VERSION,
                    "Os": "linux",
                }
            },
            {
                "Name": "berth",
                "Version": BERTH_VERSION,
                "Details": {"GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown")}
            }
        ],
        "Version": DOCKER_VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "berth",
        "GoVersion": "n/a (rust)",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": BUILD_TIME,
    })
}

impl Engine {
    /// `GET /info`, with every field the docker CLI 28 reads for `docker info`.
    pub async fn info(&self) -> Result<Value> {
        let images = self.images.count().await?;
        let cfg = &self.config;
        let mut runtimes = serde_json::Map::new();
        runtimes.insert("runc".to_owned(), json!({"path": "runc"}));
        for (name, rt) in &cfg.runtimes {
            let mut v = json!({"path": rt.path});
            if !rt.args.is_empty() {
                v["runtimeArgs"] = json!(rt.args);
            }
            runtimes.insert(name.clone(), v);
        }
        let cgroup_v = cgroup_version();
        let mut security = vec!["name=seccomp,profile=builtin".to_owned()];
        if cgroup_v == "2" {
            security.push("name=cgroupns".to_owned());
        }
        let mut index_configs = serde_json::Map::new();
        index_configs.insert(
            "docker.io".to_owned(),
            json!({"Name": "docker.io", "Mirrors": cfg.registry_mirrors, "Secure": true, "Official": true}),
        );
        let mut cidrs = vec!["::1/128".to_owned(), "127.0.0.0/8".to_owned()];
        for r in &cfg.insecure_registries {
            if r.contains('/') && r.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                cidrs.push(r.clone());
            } else {
                index_configs.insert(
                    r.clone(),
                    json!({"Name": r, "Mirrors": [], "Secure": false, "Official": false}),
                );
            }
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let kernel = kernel_version();
        Ok(json!({
            "ID": self.id,
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [
                ["Backing Filesystem", backing_fs(&cfg.data_root)],
                ["Supports d_type", "true"],
                ["Using metacopy", "false"],
                ["Native Overlay Diff", "true"],
                ["userxattr", "false"]
            ],
            "Plugins": {
                "Volume": ["local"],
                "Network": ["bridge", "host", "ipvlan", "macvlan", "null", "overlay"],
                "Authorization": null,
                "Log": ["awslogs", "fluentd", "gcplogs", "gelf", "journald", "json-file", "local", "splunk", "syslog"]
            },
            "MemoryLimit": true,
            "SwapLimit": true,
            "KernelMemoryTCP": false,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "IPv4Forwarding": true,
            "Debug": cfg.debug,
            "NFd": count_dir("/proc/self/fd"),
            "OomKillDisable": cgroup_v == "1",
            "NGoroutines": count_dir("/proc/self/task"),
            "SystemTime": now,
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_v,
            "NEventsListener": self.events_listeners(),
            "KernelVersion": kernel,
            "OperatingSystem": operating_system(),
            "OSVersion": os_release_field(&std::fs::read_to_string("/etc/os-release").unwrap_or_default(), "VERSION_ID").unwrap_or_default(),
            "OSType": "linux",
            "Architecture": architecture(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "AllowNondistributableArtifactsCIDRs": null,
                "AllowNondistributableArtifactsHostnames": null,
                "InsecureRegistryCIDRs": cidrs,
                "IndexConfigs": index_configs,
                "Mirrors": cfg.registry_mirrors,
            },
            "NCPU": ncpu(),
            "MemTotal": mem_total(),
            "GenericResources": null,
            "DockerRootDir": cfg.data_root.display().to_string(),
            "HttpProxy": std::env::var("HTTP_PROXY").or_else(|_| std::env::var("http_proxy")).unwrap_or_default(),
            "HttpsProxy": std::env::var("HTTPS_PROXY").or_else(|_| std::env::var("https_proxy")).unwrap_or_default(),
            "NoProxy": std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default(),
            "Name": hostname(),
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": DOCKER_VERSION,
            "Runtimes": runtimes,
            "DefaultRuntime": cfg.default_runtime,
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": false,
                "Error": "",
                "RemoteManagers": null
            },
            "LiveRestoreEnabled": cfg.live_restore,
            "Isolation": "",
            "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": ""},
            "RuncCommit": {"ID": ""},
            "InitCommit": {"ID": ""},
            "SecurityOptions": security,
            "CDISpecDirs": [],
            "Containerd": null,
            "Warnings": []
        }))
    }
}

fn count_dir(p: &str) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

/// The filesystem type the data root lives on, as `docker info` shows it ("extfs", "xfs"...).
fn backing_fs(root: &Path) -> &'static str {
    let Ok(st) = rustix_statfs(root) else {
        return "<unknown>";
    };
    match st {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        _ => "<unknown>",
    }
}

fn rustix_statfs(p: &Path) -> std::io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statfs only writes into the struct we pass; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        let t = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\n";
        assert_eq!(
            os_release_field(t, "PRETTY_NAME").unwrap(),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_release_field(t, "VERSION_ID").unwrap(), "12");
    }

    #[test]
    fn version_fields() {
        let v = version();
        assert_eq!(v["ApiVersion"], "1.50");
        assert_eq!(v["MinAPIVersion"], "1.24");
        assert_eq!(v["Components"][0]["Name"], "Engine");
        assert!(!architecture().is_empty());
    }
}
