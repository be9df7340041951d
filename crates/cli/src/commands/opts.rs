//! `create`/`run` flags and their translation into the Engine API's create body
//! (Config + HostConfig + NetworkingConfig), with docker's value syntaxes (sizes, durations,
//! ports, mounts, ulimits, devices, restart policies).

use clap::Args;
use serde_json::{Map, Value, json};

use crate::error::{CliError, EXIT_USAGE};

#[derive(Args, Debug, Default, Clone)]
pub struct CreateOpts {
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "list")]
    pub add_host: Vec<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach", value_name = "list")]
    pub attach: Vec<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight", value_name = "uint16", default_value = "0")]
    pub blkio_weight: u16,
    /// Block IO weight (relative device weight) (default [])
    #[arg(long = "blkio-weight-device", value_name = "list")]
    pub blkio_weight_device: Vec<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "list")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "list")]
    pub cap_drop: Vec<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent", value_name = "string")]
    pub cgroup_parent: Option<String>,
    #[arg(long, value_name = "string", help = CGROUPNS_HELP)]
    pub cgroupns: Option<String>,
    /// Write the container ID to the file
    #[arg(long, value_name = "string")]
    pub cidfile: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "int")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", value_name = "int", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Limit CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period", value_name = "int")]
    pub cpu_rt_period: Option<i64>,
    /// Limit CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime", value_name = "int")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "int")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long, value_name = "decimal")]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "string")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "string")]
    pub cpuset_mems: Option<String>,
    /// Add a host device to the container
    #[arg(long, value_name = "list")]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule", value_name = "list")]
    pub device_cgroup_rule: Vec<String>,
    /// Limit read rate (bytes per second) from a device (default [])
    #[arg(long = "device-read-bps", value_name = "list")]
    pub device_read_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device (default [])
    #[arg(long = "device-read-iops", value_name = "list")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (bytes per second) to a device (default [])
    #[arg(long = "device-write-bps", value_name = "list")]
    pub device_write_bps: Vec<String>,
    /// Limit write rate (IO per second) to a device (default [])
    #[arg(long = "device-write-iops", value_name = "list")]
    pub device_write_iops: Vec<String>,
    /// Skip image verification
    #[arg(long = "disable-content-trust", value_name = "bool", num_args = 0..=1,
          require_equals = true, default_value = "true", default_missing_value = "true")]
    pub disable_content_trust: String,
    /// Set custom DNS servers
    #[arg(long, value_name = "list")]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", value_name = "list")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "list")]
    pub dns_search: Vec<String>,
    /// Container NIS domain name
    #[arg(long, value_name = "string")]
    pub domainname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, value_name = "string")]
    pub entrypoint: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<String>,
    /// Expose a port or a range of ports
    #[arg(long, value_name = "list")]
    pub expose: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add", value_name = "list")]
    pub group_add: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd", value_name = "string")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", value_name = "duration")]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", value_name = "int")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_name = "duration")]
    pub health_start_period: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", value_name = "duration")]
    pub health_timeout: Option<String>,
    /// Container host name
    #[arg(short = 'h', long, value_name = "string")]
    pub hostname: Option<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long, value_name = "string")]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long, value_name = "string")]
    pub ip6: Option<String>,
    /// IPC mode to use
    #[arg(long, value_name = "string")]
    pub ipc: Option<String>,
    /// Container isolation technology
    #[arg(long, value_name = "string")]
    pub isolation: Option<String>,
    /// Kernel memory limit
    #[arg(long = "kernel-memory", value_name = "bytes")]
    pub kernel_memory: Option<String>,
    /// Add link to another container
    #[arg(long, value_name = "list")]
    pub link: Vec<String>,
    /// Container IPv4/IPv6 link-local addresses
    #[arg(long = "link-local-ip", value_name = "list")]
    pub link_local_ip: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address", value_name = "string")]
    pub mac_address: Option<String>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(
        long = "memory-swappiness",
        value_name = "int",
        default_value = "-1",
        allow_hyphen_values = true
    )]
    pub memory_swappiness: i64,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", value_name = "list")]
    pub network_alias: Vec<String>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", value_name = "int", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// PID namespace to use
    #[arg(long, value_name = "string")]
    pub pid: Option<String>,
    /// Runtime to use for this container
    #[arg(long, value_name = "string")]
    pub runtime: Option<String>,
    /// Storage driver options for the container
    #[arg(long = "storage-opt", value_name = "list")]
    pub storage_opt: Vec<String>,
    /// User namespace to use
    #[arg(long, value_name = "string")]
    pub userns: Option<String>,
    /// UTS namespace to use
    #[arg(long, value_name = "string")]
    pub uts: Option<String>,
    /// Optional volume driver for the container
    #[arg(long = "volume-driver", value_name = "string")]
    pub volume_driver: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label", value_name = "list")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file", value_name = "list")]
    pub label_file: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver", value_name = "string")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt", value_name = "list")]
    pub log_opt: Vec<String>,
    /// Memory limit
    #[arg(short = 'm', long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "bytes")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Attach a filesystem mount to the container
    #[arg(long, value_name = "mount")]
    pub mount: Vec<String>,
    /// Assign a name to the container
    #[arg(long, value_name = "string")]
    pub name: Option<String>,
    /// Connect a container to a network
    #[arg(long, visible_alias = "net", value_name = "network")]
    pub network: Vec<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "int", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long, value_name = "list")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, value_name = "string", default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Restart policy to apply when a container exits
    #[arg(long, value_name = "string", default_value = "no")]
    pub restart: String,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Security Options
    #[arg(long = "security-opt", value_name = "list")]
    pub security_opt: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size", value_name = "bytes")]
    pub shm_size: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal", value_name = "string")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", value_name = "int")]
    pub stop_timeout: Option<i64>,
    /// Sysctl options (default map[])
    #[arg(long, value_name = "map")]
    pub sysctl: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long, value_name = "list")]
    pub tmpfs: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Ulimit options (default [])
    #[arg(long, value_name = "ulimit")]
    pub ulimit: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long, value_name = "string")]
    pub user: Option<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long, value_name = "list")]
    pub volume: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from", value_name = "list")]
    pub volumes_from: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "string")]
    pub workdir: Option<String>,
    /// Print usage
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(hide = true, trailing_var_arg = true)]
    pub args: Vec<String>,
}

const CGROUPNS_HELP: &str = "Cgroup namespace to use (host|private)\n'host':    Run the container in the Docker host's cgroup namespace\n'private': Run the container in its own private cgroup namespace\n'':        Use the cgroup namespace as configured by the\n           default-cgroupns-mode option on the daemon (default)";

/// docker's `berth: <msg>` + "Run '... --help'" for values it rejects after parsing (125).
fn run_err(path: &str, msg: &str) -> CliError {
    CliError::new(
        format!("berth: {msg}\n\nRun 'berth {path} --help' for more information"),
        EXIT_USAGE,
    )
}

fn bad(flag: &str, value: &str, why: &str, path: &str) -> CliError {
    CliError::new(
        format!(
            "invalid argument \"{value}\" for \"{flag}\" flag: {why}\n\nUsage:  {}\n\nRun 'berth {path} --help' for more information",
            crate::cli::usage(path)
        ),
        EXIT_USAGE,
    )
}

/// go-units RAMInBytes: "32m", "1.5g", "512", "64MiB" -> bytes (binary units).
pub fn ram_in_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid size: '{s}'"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return Err(format!("invalid size: '{s}'")),
    };
    Ok((n * mult) as i64)
}

fn kv_list(items: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i, ""));
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    m
}

/// Lines of an env/label file: comments and blanks skipped; a bare NAME takes our env value.
fn read_kv_file(path: &str, env_style: bool) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("open {path}: {}", io_text(&e)), EXIT_USAGE))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if env_style && !l.contains('=') {
            if let Ok(v) = std::env::var(l.trim()) {
                out.push(format!("{}={v}", l.trim()));
            }
            continue;
        }
        out.push(l.to_string());
    }
    Ok(out)
}

/// Go's wording of common io errors.
pub fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `--mount type=bind,source=/a,target=/b,readonly`.
fn parse_mount(spec: &str) -> Result<Value, String> {
    let mut m = Map::new();
    let mut kind = "volume".to_string();
    let mut ro = false;
    let mut bind = Map::new();
    let mut tmpfs = Map::new();
    let mut volume = Map::new();
    let mut driver = Map::new();
    let mut driver_opts = Map::new();
    let mut volume_labels = Map::new();
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k.to_ascii_lowercase().as_str() {
            "type" => kind = v.to_string(),
            "source" | "src" => {
                m.insert("Source".into(), v.into());
            }
            "target" | "destination" | "dst" => {
                m.insert("Target".into(), v.into());
            }
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "bind-propagation" => {
                bind.insert("Propagation".into(), v.into());
            }
            "tmpfs-size" => {
                let n = ram_in_bytes(v)?;
                tmpfs.insert("SizeBytes".into(), n.into());
            }
            "tmpfs-mode" => {
                let n =
                    i64::from_str_radix(v, 8).map_err(|_| format!("invalid value for {k}: {v}"))?;
                tmpfs.insert("Mode".into(), n.into());
            }
            "volume-nocopy" => {
                let b = v.is_empty() || v == "true" || v == "1";
                volume.insert("NoCopy".into(), b.into());
            }
            "volume-driver" => {
                driver.insert("Name".into(), v.into());
            }
            "volume-opt" => {
                let (ok, ov) = v.split_once('=').unwrap_or((v, ""));
                driver_opts.insert(ok.into(), ov.into());
            }
            "volume-label" => {
                let (lk, lv) = v.split_once('=').unwrap_or((v, ""));
                volume_labels.insert(lk.into(), lv.into());
            }
            "volume-subpath" => {
                volume.insert("Subpath".into(), v.into());
            }
            "bind-nonrecursive" => {
                let b = v.is_empty() || v == "true" || v == "1";
                bind.insert("NonRecursive".into(), b.into());
            }
            "bind-create-src" => {
                let b = v.is_empty() || v == "true" || v == "1";
                bind.insert("CreateMountpoint".into(), b.into());
            }
            "consistency" => {}
            _ => return Err(format!("unexpected key '{k}' in '{field}'")),
        }
    }
    if !m.contains_key("Target") {
        return Err("target is required".into());
    }
    if !volume_labels.is_empty() {
        volume.insert("Labels".into(), volume_labels.into());
    }
    if !driver_opts.is_empty() {
        driver.insert("Options".into(), driver_opts.into());
    }
    // docker sends an (empty) DriverConfig with any volume option
    if !volume.is_empty() || !driver.is_empty() {
        volume.insert("DriverConfig".into(), driver.into());
    }
    m.insert("Type".into(), kind.clone().into());
    if ro {
        m.insert("ReadOnly".into(), true.into());
    }
    match kind.as_str() {
        "bind" if !bind.is_empty() => {
            m.insert("BindOptions".into(), bind.into());
        }
        "tmpfs" if !tmpfs.is_empty() => {
            m.insert("TmpfsOptions".into(), tmpfs.into());
        }
        "volume" if !volume.is_empty() => {
            m.insert("VolumeOptions".into(), volume.into());
        }
        _ => {}
    }
    Ok(Value::Object(m))
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<Value, String> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    let max: i64 = if count.is_empty() {
        0
    } else {
        count.parse().map_err(|_| {
            "invalid restart policy format: maximum retry count must be an integer".to_string()
        })?
    };
    if !count.is_empty() && name != "on-failure" {
        return Err(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'"
                .to_string(),
        );
    }
    let name = if name == "no" { "no" } else { name };
    Ok(json!({"Name": name, "MaximumRetryCount": max}))
}

fn parse_ulimit(s: &str) -> Result<Value, String> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let soft: i64 = soft
        .parse()
        .map_err(|_| format!("invalid ulimit soft value {soft}"))?;
    let hard: i64 = hard
        .parse()
        .map_err(|_| format!("invalid ulimit hard value {hard}"))?;
    Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
}

fn parse_device(s: &str) -> Value {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, cont, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if p.chars().all(|c| "rwm".contains(c)) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p, ..] => (*h, *c, *p),
        [] => (s, s, "rwm"),
    };
    json!({"PathOnHost": host, "PathInContainer": cont, "CgroupPermissions": perms})
}

/// Empty lists travel as null for these fields, as docker sends them.
fn or_null(v: Vec<String>) -> Value {
    if v.is_empty() { Value::Null } else { v.into() }
}

/// docker normalizes capability names: upper case, "CAP_" prefixed, "ALL" kept.
fn caps(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|c| {
            let u = c.to_ascii_uppercase();
            if u == "ALL" || u.starts_with("CAP_") {
                u
            } else {
                format!("CAP_{u}")
            }
        })
        .collect()
}

/// Split a shell-free entrypoint/command the way docker does (`--entrypoint` is one word).
pub struct Built {
    pub body: Value,
    pub image: String,
    pub name: Option<String>,
}

impl CreateOpts {
    /// The create request body, as the docker CLI builds it.
    pub fn build(&self, path: &str, detach: bool) -> Result<Built, CliError> {
        let image = self.args.first().cloned().unwrap_or_default();
        if !matches!(self.pull.as_str(), "always" | "missing" | "never") {
            return Err(run_err(
                path,
                &format!(
                    "invalid pull option: '{}': must be one of \"always\", \"missing\" or \"never\"",
                    self.pull
                ),
            ));
        }
        let cmd: Vec<String> = self.args.iter().skip(1).cloned().collect();
        let mut env: Vec<String> = Vec::new();
        for f in &self.env_file {
            env.extend(read_kv_file(f, true)?);
        }
        for e in &self.env {
            // `-e NAME` takes the value from our environment, or is passed bare.
            if e.contains('=') {
                env.push(e.clone());
            } else if let Ok(v) = std::env::var(e) {
                env.push(format!("{e}={v}"));
            } else {
                env.push(e.clone());
            }
        }
        let mut labels_in: Vec<String> = Vec::new();
        for f in &self.label_file {
            labels_in.extend(read_kv_file(f, false)?);
        }
        labels_in.extend(self.label.iter().cloned());
        let labels = kv_list(&labels_in);

        let (mut a_in, mut a_out, mut a_err) = (false, false, false);
        for a in &self.attach {
            match a.to_ascii_lowercase().as_str() {
                "stdin" => a_in = true,
                "stdout" => a_out = true,
                "stderr" => a_err = true,
                _ => {
                    return Err(bad(
                        "-a, --attach",
                        a,
                        "valid streams are STDIN, STDOUT and STDERR",
                        path,
                    ));
                }
            }
        }
        // docker's parse: -i attaches stdin; no -a means stdout+stderr. `run -d` clears all.
        if self.interactive {
            a_in = true;
        }
        if self.attach.is_empty() {
            a_out = true;
            a_err = true;
        }
        let stdin_once = self.interactive && a_in && !detach;
        if detach {
            if !self.attach.is_empty() {
                return Err(CliError::msg(
                    "conflicting options: cannot specify both --attach and --detach",
                ));
            }
            (a_in, a_out, a_err) = (false, false, false);
        }

        let mut config = Map::new();
        let mut host = Map::new();
        let set = |m: &mut Map<String, Value>, k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        set(
            &mut config,
            "Hostname",
            self.hostname.clone().unwrap_or_default().into(),
        );
        set(
            &mut config,
            "Domainname",
            self.domainname.clone().unwrap_or_default().into(),
        );
        set(
            &mut config,
            "User",
            self.user.clone().unwrap_or_default().into(),
        );
        set(&mut config, "AttachStdin", a_in.into());
        set(&mut config, "AttachStdout", a_out.into());
        set(&mut config, "AttachStderr", a_err.into());
        let net_flags = super::netopts::check_flags(self)
            .map_err(|(flag, value, why)| bad(flag, &value, &why, path))?;
        let mut exposed = Map::new();
        let mut bindings: Map<String, Value> = Map::new();
        for p in &self.publish {
            let list = super::netopts::parse_publish(p).map_err(|e| run_err(path, &e))?;
            for (port, b) in list {
                exposed.insert(port.clone(), json!({}));
                if let Some(Value::Array(a)) = bindings.get_mut(&port) {
                    a.push(b);
                } else {
                    bindings.insert(port, Value::Array(vec![b]));
                }
            }
        }
        for e in &self.expose {
            for p in super::netopts::parse_expose(e).map_err(|e| run_err(path, &e))? {
                exposed.entry(p).or_insert(json!({}));
            }
        }
        if !exposed.is_empty() {
            set(&mut config, "ExposedPorts", exposed.into());
        }
        set(&mut config, "Tty", self.tty.into());
        set(&mut config, "OpenStdin", self.interactive.into());
        set(&mut config, "StdinOnce", stdin_once.into());
        set(&mut config, "Env", env.into());
        if !cmd.is_empty() {
            set(&mut config, "Cmd", cmd.into());
        }
        let dur = |flag: &str, v: &Option<String>| -> Result<i64, CliError> {
            match v {
                None => Ok(0),
                Some(s) => berth_types::duration::parse(s).map_err(|e| bad(flag, s, &e, path)),
            }
        };
        let hc_interval = dur("--health-interval", &self.health_interval)?;
        let hc_timeout = dur("--health-timeout", &self.health_timeout)?;
        let hc_start = dur("--health-start-period", &self.health_start_period)?;
        if self.no_healthcheck {
            if self.health_cmd.is_some() {
                return Err(CliError::new(
                    "--no-healthcheck conflicts with --health-* options",
                    EXIT_USAGE,
                ));
            }
            set(&mut config, "Healthcheck", json!({"Test": ["NONE"]}));
        } else if self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
        {
            let mut hc = Map::new();
            if let Some(c) = &self.health_cmd {
                hc.insert("Test".into(), json!(["CMD-SHELL", c]));
            }
            hc.insert("Interval".into(), hc_interval.into());
            hc.insert("Timeout".into(), hc_timeout.into());
            hc.insert("StartPeriod".into(), hc_start.into());
            hc.insert("Retries".into(), self.health_retries.unwrap_or(0).into());
            set(&mut config, "Healthcheck", hc.into());
        }
        set(&mut config, "Image", image.clone().into());
        let mut volumes = Map::new();
        let mut binds = Vec::new();
        for v in &self.volume {
            // A single path is an anonymous volume; "src:dst[:opts]" is a bind or named volume.
            if let Some((src, rest)) = v.split_once(':') {
                // docker 23+ resolves a relative host path against the current directory
                let src = if src == "." || src.starts_with("./") || src.starts_with("../") {
                    std::env::current_dir()
                        .map(|d| d.join(src).display().to_string())
                        .unwrap_or_else(|_| src.to_owned())
                } else {
                    src.to_owned()
                };
                binds.push(Value::String(format!("{src}:{rest}")));
            } else {
                volumes.insert(v.clone(), json!({}));
            }
        }
        if !volumes.is_empty() {
            set(&mut config, "Volumes", volumes.into());
        }
        set(
            &mut config,
            "WorkingDir",
            self.workdir.clone().unwrap_or_default().into(),
        );
        if let Some(ep) = &self.entrypoint {
            set(&mut config, "Entrypoint", json!([ep]));
        }
        set(&mut config, "OnBuild", Value::Null);
        set(&mut config, "Labels", labels.into());
        if let Some(s) = &self.stop_signal {
            set(&mut config, "StopSignal", s.clone().into());
        }
        if let Some(t) = self.stop_timeout {
            set(&mut config, "StopTimeout", t.into());
        }

        set(
            &mut host,
            "Binds",
            if binds.is_empty() {
                Value::Null
            } else {
                binds.into()
            },
        );
        set(
            &mut host,
            "ContainerIDFile",
            self.cidfile.clone().unwrap_or_default().into(),
        );
        let mut log = json!({"Type": self.log_driver.clone().unwrap_or_default(), "Config": {}});
        if !self.log_opt.is_empty() {
            log["Config"] = kv_list(&self.log_opt).into();
        }
        set(&mut host, "LogConfig", log);
        let (network_mode, endpoints) =
            super::netopts::networks(self).map_err(|e| run_err(path, &e))?;
        set(&mut host, "NetworkMode", network_mode.into());
        set(&mut host, "PortBindings", bindings.into());
        let restart = parse_restart(&self.restart).map_err(|e| run_err(path, &e))?;
        if self.rm && restart["Name"] != "no" {
            return Err(CliError::new(
                format!(
                    "berth: conflicting options: cannot specify both --restart and --rm\n\nRun 'berth {path} --help' for more information"
                ),
                EXIT_USAGE,
            ));
        }
        set(&mut host, "RestartPolicy", restart);
        set(&mut host, "AutoRemove", self.rm.into());
        set(
            &mut host,
            "VolumesFrom",
            if self.volumes_from.is_empty() {
                Value::Null
            } else {
                self.volumes_from.clone().into()
            },
        );
        set(&mut host, "CapAdd", or_null(caps(&self.cap_add)));
        set(&mut host, "CapDrop", or_null(caps(&self.cap_drop)));
        set(&mut host, "Dns", net_flags.dns.into());
        set(&mut host, "DnsOptions", self.dns_option.clone().into());
        set(&mut host, "DnsSearch", net_flags.dns_search.into());
        set(&mut host, "ExtraHosts", or_null(net_flags.extra_hosts));
        set(&mut host, "GroupAdd", or_null(self.group_add.clone()));
        set(&mut host, "Privileged", self.privileged.into());
        set(&mut host, "PublishAllPorts", self.publish_all.into());
        set(&mut host, "ReadonlyRootfs", self.read_only.into());
        set(&mut host, "SecurityOpt", or_null(self.security_opt.clone()));
        if !self.tmpfs.is_empty() {
            let mut t = Map::new();
            for s in &self.tmpfs {
                let (p, o) = s.split_once(':').unwrap_or((s, ""));
                t.insert(p.to_string(), o.into());
            }
            set(&mut host, "Tmpfs", t.into());
        }
        if !self.sysctl.is_empty() {
            set(&mut host, "Sysctls", kv_list(&self.sysctl).into());
        }
        let size = |flag: &str, v: &Option<String>| -> Result<Option<i64>, CliError> {
            match v {
                None => Ok(None),
                Some(s) if s == "-1" => Ok(Some(-1)),
                Some(s) => ram_in_bytes(s)
                    .map(Some)
                    .map_err(|e| bad(flag, s, &e, path)),
            }
        };
        if let Some(n) = size("--shm-size", &self.shm_size)? {
            set(&mut host, "ShmSize", n.into());
        }
        if self.init {
            set(&mut host, "Init", true.into());
        }
        set(
            &mut host,
            "Memory",
            size("-m, --memory", &self.memory)?.unwrap_or(0).into(),
        );
        set(
            &mut host,
            "MemorySwap",
            size("--memory-swap", &self.memory_swap)?
                .unwrap_or(0)
                .into(),
        );
        set(
            &mut host,
            "MemoryReservation",
            size("--memory-reservation", &self.memory_reservation)?
                .unwrap_or(0)
                .into(),
        );
        if let Some(c) = &self.cpus {
            let f: f64 = c.parse().map_err(|_| {
                bad(
                    "--cpus",
                    c,
                    &format!("failed to parse {c} as a rational number"),
                    path,
                )
            })?;
            set(&mut host, "NanoCpus", ((f * 1e9).round() as i64).into());
        }
        set(&mut host, "CpuShares", self.cpu_shares.unwrap_or(0).into());
        set(
            &mut host,
            "CpusetCpus",
            self.cpuset_cpus.clone().unwrap_or_default().into(),
        );
        if let Some(p) = self.pids_limit {
            set(&mut host, "PidsLimit", p.into());
        }
        let mut ulimits = Vec::new();
        for u in &self.ulimit {
            ulimits.push(parse_ulimit(u).map_err(|e| bad("--ulimit", u, &e, path))?);
        }
        set(&mut host, "Ulimits", ulimits.into());
        let devices: Vec<Value> = self.device.iter().map(|d| parse_device(d)).collect();
        set(&mut host, "Devices", devices.into());
        if self.oom_kill_disable {
            set(&mut host, "OomKillDisable", true.into());
        }
        let mut mounts = Vec::new();
        for m in &self.mount {
            mounts.push(parse_mount(m).map_err(|e| bad("--mount", m, &e, path))?);
        }
        if !mounts.is_empty() {
            set(&mut host, "Mounts", mounts.into());
        }
        for (k, v) in [
            ("IpcMode", &self.ipc),
            ("PidMode", &self.pid),
            ("UTSMode", &self.uts),
            ("UsernsMode", &self.userns),
            ("Runtime", &self.runtime),
            ("CgroupParent", &self.cgroup_parent),
            ("CgroupnsMode", &self.cgroupns),
            ("CpusetMems", &self.cpuset_mems),
            ("Isolation", &self.isolation),
            ("VolumeDriver", &self.volume_driver),
        ] {
            if let Some(v) = v {
                set(&mut host, k, v.clone().into());
            }
        }
        for (k, v) in [
            ("CpuPeriod", self.cpu_period),
            ("CpuQuota", self.cpu_quota),
            ("CpuRealtimePeriod", self.cpu_rt_period),
            ("CpuRealtimeRuntime", self.cpu_rt_runtime),
            ("OomScoreAdj", self.oom_score_adj),
        ] {
            if let Some(v) = v {
                set(&mut host, k, v.into());
            }
        }
        if self.blkio_weight != 0 {
            set(&mut host, "BlkioWeight", self.blkio_weight.into());
        }
        if self.memory_swappiness != -1 {
            set(&mut host, "MemorySwappiness", self.memory_swappiness.into());
        }
        if !self.link.is_empty() {
            set(&mut host, "Links", self.link.clone().into());
        }
        if !self.device_cgroup_rule.is_empty() {
            set(
                &mut host,
                "DeviceCgroupRules",
                self.device_cgroup_rule.clone().into(),
            );
        }
        if !self.storage_opt.is_empty() {
            set(&mut host, "StorageOpt", kv_list(&self.storage_opt).into());
        }
        if let Some(n) = size("--kernel-memory", &self.kernel_memory)? {
            set(&mut host, "KernelMemory", n.into());
        }
        // "path:value" device throttles, as docker's ValidateThrottle*Device.
        let throttle = |flag: &str, list: &[String], key: &str, bytes: bool| {
            let mut out = Vec::new();
            for item in list {
                let (dev, v) = item
                    .rsplit_once(':')
                    .ok_or_else(|| bad(flag, item, &format!("bad format: {item}"), path))?;
                let n = if bytes {
                    ram_in_bytes(v).map_err(|e| bad(flag, item, &e, path))?
                } else {
                    v.parse::<i64>().map_err(|_| {
                        bad(flag, item, &format!("invalid rate for device: {item}. The correct format is <device-path>:<number>. Number must be a positive integer"), path)
                    })?
                };
                out.push(json!({"Path": dev, key: n}));
            }
            Ok::<Vec<Value>, CliError>(out)
        };
        for (k, flag, list, key, bytes) in [
            (
                "BlkioWeightDevice",
                "--blkio-weight-device",
                &self.blkio_weight_device,
                "Weight",
                false,
            ),
            (
                "BlkioDeviceReadBps",
                "--device-read-bps",
                &self.device_read_bps,
                "Rate",
                true,
            ),
            (
                "BlkioDeviceReadIOps",
                "--device-read-iops",
                &self.device_read_iops,
                "Rate",
                false,
            ),
            (
                "BlkioDeviceWriteBps",
                "--device-write-bps",
                &self.device_write_bps,
                "Rate",
                true,
            ),
            (
                "BlkioDeviceWriteIOps",
                "--device-write-iops",
                &self.device_write_iops,
                "Rate",
                false,
            ),
        ] {
            // Sent even when empty, so inspect shows [] rather than null (as with docker).
            set(&mut host, k, throttle(flag, list, key, bytes)?.into());
        }
        config.insert("HostConfig".into(), host.into());
        let mut body = Value::Object(config);
        // The MAC address travels per endpoint (API >= 1.44), as docker 28 sends it.
        body["NetworkingConfig"] = json!({"EndpointsConfig": endpoints});
        Ok(Built {
            body,
            image,
            name: self.name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(ram_in_bytes("32m").unwrap(), 32 << 20);
        assert_eq!(ram_in_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("512").unwrap(), 512);
        assert!(ram_in_bytes("x").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            parse_restart("on-failure:3").unwrap()["MaximumRetryCount"],
            3
        );
        assert!(parse_restart("always:3").is_err());
    }
}
