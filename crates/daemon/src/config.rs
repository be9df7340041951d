//! dockerd-compatible flags and `daemon.json`: same names, same defaults (berth paths), same
//! errors for unknown keys and for a setting given both as a flag and in the file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use serde_json::Value;

pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "berthd",
    about = "A self-sufficient runtime for containers (Docker-compatible daemon)",
    disable_version_flag = true
)]
pub struct Flags {
    /// Daemon socket(s) to connect to (unix://, tcp://, fd://)
    #[arg(short = 'H', long = "host", value_name = "list")]
    pub host: Vec<String>,
    /// Use TLS; implied by --tlsverify
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "bool")]
    pub tls: Option<bool>,
    /// Use TLS and verify the remote
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "bool")]
    pub tlsverify: Option<bool>,
    /// Trust certs signed only by this CA
    #[arg(long, value_name = "string")]
    pub tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file
    #[arg(long, value_name = "string")]
    pub tlscert: Option<PathBuf>,
    /// Path to TLS key file
    #[arg(long, value_name = "string")]
    pub tlskey: Option<PathBuf>,
    /// Root directory of persistent berth state
    #[arg(
        long = "data-root",
        default_value = "/var/lib/berth",
        value_name = "string"
    )]
    pub data_root: PathBuf,
    /// Root directory for execution state files
    #[arg(
        long = "exec-root",
        default_value = "/run/berth",
        value_name = "string"
    )]
    pub exec_root: PathBuf,
    /// Path to use for daemon PID file
    #[arg(
        short = 'p',
        long,
        default_value = "/run/berth/berthd.pid",
        value_name = "string"
    )]
    pub pidfile: PathBuf,
    /// Enable debug mode
    #[arg(short = 'D', long, action = ArgAction::SetTrue)]
    pub debug: bool,
    /// Set the logging level ("debug"|"info"|"warn"|"error"|"fatal")
    #[arg(
        short = 'l',
        long = "log-level",
        default_value = "info",
        value_name = "string"
    )]
    pub log_level: String,
    /// Specify network bridge IP
    #[arg(long, value_name = "string")]
    pub bip: Option<String>,
    /// Attach containers to a network bridge
    #[arg(short = 'b', long, value_name = "string")]
    pub bridge: Option<String>,
    /// IPv4 subnet for fixed IPs
    #[arg(long = "fixed-cidr", value_name = "string")]
    pub fixed_cidr: Option<String>,
    /// Set the containers network MTU
    #[arg(long, value_name = "int")]
    pub mtu: Option<u32>,
    /// Enable net.ipv4.ip_forward (default true)
    #[arg(long = "ip-forward", num_args = 0..=1, default_missing_value = "true", value_name = "bool")]
    pub ip_forward: Option<bool>,
    /// Enable IP masquerading (default true)
    #[arg(long = "ip-masq", num_args = 0..=1, default_missing_value = "true", value_name = "bool")]
    pub ip_masq: Option<bool>,
    /// Enable inter-container communication (default true)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "bool")]
    pub icc: Option<bool>,
    /// Enable live restore of berthd when containers are still running
    #[arg(long = "live-restore", action = ArgAction::SetTrue)]
    pub live_restore: bool,
    /// Turn on the kernel's favordynmods cgroup option (faster container starts) (default true)
    #[arg(long = "cgroup-favordynmods", num_args = 0..=1, default_missing_value = "true", value_name = "bool")]
    pub cgroup_favordynmods: Option<bool>,
    /// Run an init in the container to forward signals and reap processes
    #[arg(long, action = ArgAction::SetTrue)]
    pub init: bool,
    /// Path to the docker-init binary
    #[arg(long = "init-path", value_name = "string")]
    pub init_path: Option<PathBuf>,
    /// Default shutdown timeout in seconds
    #[arg(
        long = "shutdown-timeout",
        default_value_t = 15,
        value_name = "int",
        allow_negative_numbers = true
    )]
    pub shutdown_timeout: i64,
    /// Storage driver to use (only overlay2)
    #[arg(short = 's', long = "storage-driver", value_name = "string")]
    pub storage_driver: Option<String>,
    /// Default OCI runtime for containers
    #[arg(
        long = "default-runtime",
        default_value = "runc",
        value_name = "string"
    )]
    pub default_runtime: String,
    /// Register an additional OCI compatible runtime (name=path)
    #[arg(long = "add-runtime", value_name = "runtime")]
    pub add_runtime: Vec<String>,
    /// Enable insecure registry communication
    #[arg(long = "insecure-registry", value_name = "list")]
    pub insecure_registry: Vec<String>,
    /// Preferred registry mirror
    #[arg(long = "registry-mirror", value_name = "list")]
    pub registry_mirror: Vec<String>,
    /// Set the max concurrent downloads (default 16)
    #[arg(
        long = "max-concurrent-downloads",
        value_name = "int",
        allow_negative_numbers = true
    )]
    pub max_concurrent_downloads: Option<i64>,
    /// Set the max concurrent uploads (default 8)
    #[arg(
        long = "max-concurrent-uploads",
        value_name = "int",
        allow_negative_numbers = true
    )]
    pub max_concurrent_uploads: Option<i64>,
    /// Group for the unix socket
    #[arg(short = 'G', long, default_value = "docker", value_name = "string")]
    pub group: String,
    /// Daemon configuration file
    #[arg(long = "config-file", default_value = DEFAULT_CONFIG_FILE, value_name = "string")]
    pub config_file: PathBuf,
    /// Print version information and quit
    #[arg(short = 'v', long, action = ArgAction::SetTrue)]
    pub version: bool,
}

/// Everything the daemon decided, after flags and daemon.json.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub hosts: Vec<String>,
    pub tls: bool,
    pub tlsverify: bool,
    pub tlscacert: PathBuf,
    pub tlscert: PathBuf,
    pub tlskey: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub debug: bool,
    pub log_level: String,
    pub bip: Option<String>,
    pub bridge: Option<String>,
    pub fixed_cidr: Option<String>,
    pub mtu: Option<u32>,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub icc: bool,
    pub live_restore: bool,
    pub cgroup_favordynmods: bool,
    pub init: bool,
    pub init_path: Option<PathBuf>,
    /// Seconds to stop the containers in at shutdown (negative: no limit).
    pub shutdown_timeout: i64,
    pub default_runtime: String,
    /// name -> (path, args)
    pub runtimes: BTreeMap<String, (String, Vec<String>)>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    /// Layers pulled / pushed at the same time (None: berth's defaults).
    pub max_concurrent_downloads: Option<usize>,
    pub max_concurrent_uploads: Option<usize>,
    pub group: String,
    pub show_version: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad command line (clap's own message, help and version included)
    #[error("{0}")]
    Usage(#[from] clap::Error),
    #[error("unable to configure the berth daemon with file {file}: {msg}")]
    File { file: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

/// daemon.json key -> the flag that sets the same thing (clap arg id).
const KEYS: &[(&str, &str)] = &[
    ("hosts", "host"),
    ("tls", "tls"),
    ("tlsverify", "tlsverify"),
    ("tlscacert", "tlscacert"),
    ("tlscert", "tlscert"),
    ("tlskey", "tlskey"),
    ("data-root", "data_root"),
    ("exec-root", "exec_root"),
    ("pidfile", "pidfile"),
    ("debug", "debug"),
    ("log-level", "log_level"),
    ("bip", "bip"),
    ("bridge", "bridge"),
    ("fixed-cidr", "fixed_cidr"),
    ("mtu", "mtu"),
    ("ip-forward", "ip_forward"),
    ("ip-masq", "ip_masq"),
    ("icc", "icc"),
    ("live-restore", "live_restore"),
    ("cgroup-favordynmods", "cgroup_favordynmods"),
    ("init", "init"),
    ("init-path", "init_path"),
    ("shutdown-timeout", "shutdown_timeout"),
    ("storage-driver", "storage_driver"),
    ("default-runtime", "default_runtime"),
    ("runtimes", "add_runtime"),
    ("insecure-registries", "insecure_registry"),
    ("registry-mirrors", "registry_mirror"),
    ("max-concurrent-downloads", "max_concurrent_downloads"),
    ("max-concurrent-uploads", "max_concurrent_uploads"),
    ("group", "group"),
];

/// Where TLS files are looked for when not given (dockerd: $DOCKER_CERT_PATH or ~/.docker).
fn cert_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".docker")
}

fn flag_value_text(m: &clap::ArgMatches, id: &str) -> String {
    m.get_raw(id)
        .map(|vs| {
            vs.map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "true".to_owned())
}

fn str_of(file: &str, key: &str, v: &Value) -> Result<String, ConfigError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::File {
            file: file.to_owned(),
            msg: format!("{key}: expected a string, got {v}"),
        })
}

fn bool_of(file: &str, key: &str, v: &Value) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| ConfigError::File {
        file: file.to_owned(),
        msg: format!("{key}: expected a boolean, got {v}"),
    })
}

fn list_of(file: &str, key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| ConfigError::File {
            file: file.to_owned(),
            msg: format!("{key}: expected a list of strings, got {v}"),
        })
}

/// dockerd refuses negative limits with this message; 0 is taken as 1 (one at a time).
fn concurrency(what: &str, n: i64) -> Result<usize, ConfigError> {
    usize::try_from(n)
        .map(|n| n.max(1))
        .map_err(|_| ConfigError::Invalid(format!("invalid max concurrent {what}: {n}")))
}

/// Parse `args` (program name first) and the config file, as dockerd does.
pub fn resolve<I, T>(args: I) -> Result<DaemonConfig, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Flags::command().try_get_matches_from(args)?;
    let flags = Flags::from_arg_matches(&matches)?;
    let from_cli = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);

    let mut cfg = DaemonConfig {
        hosts: flags.host.clone(),
        tls: flags.tls.unwrap_or(false),
        tlsverify: flags.tlsverify.unwrap_or(false),
        tlscacert: flags
            .tlscacert
            .clone()
            .unwrap_or_else(|| cert_dir().join("ca.pem")),
        tlscert: flags
            .tlscert
            .clone()
            .unwrap_or_else(|| cert_dir().join("cert.pem")),
        tlskey: flags
            .tlskey
            .clone()
            .unwrap_or_else(|| cert_dir().join("key.pem")),
        data_root: flags.data_root.clone(),
        exec_root: flags.exec_root.clone(),
        pidfile: flags.pidfile.clone(),
        debug: flags.debug,
        log_level: flags.log_level.clone(),
        bip: flags.bip.clone(),
        bridge: flags.bridge.clone(),
        fixed_cidr: flags.fixed_cidr.clone(),
        mtu: flags.mtu,
        ip_forward: flags.ip_forward.unwrap_or(true),
        ip_masq: flags.ip_masq.unwrap_or(true),
        icc: flags.icc.unwrap_or(true),
        live_restore: flags.live_restore,
        cgroup_favordynmods: flags.cgroup_favordynmods.unwrap_or(true),
        init: flags.init,
        init_path: flags.init_path.clone(),
        shutdown_timeout: flags.shutdown_timeout,
        default_runtime: flags.default_runtime.clone(),
        runtimes: BTreeMap::new(),
        insecure_registries: flags.insecure_registry.clone(),
        registry_mirrors: flags.registry_mirror.clone(),
        max_concurrent_downloads: flags
            .max_concurrent_downloads
            .map(|n| concurrency("downloads", n))
            .transpose()?,
        max_concurrent_uploads: flags
            .max_concurrent_uploads
            .map(|n| concurrency("uploads", n))
            .transpose()?,
        group: flags.group.clone(),
        show_version: flags.version,
    };
    let mut storage_driver = flags.storage_driver.clone();
    for r in &flags.add_runtime {
        let (name, path) = r
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            .ok_or_else(|| {
                ConfigError::Invalid(format!("invalid runtime {r:?}: expected name=path"))
            })?;
        cfg.runtimes
            .insert(name.to_owned(), (path.to_owned(), Vec::new()));
    }

    // daemon.json: a missing default file is fine; a missing file named on the command line
    // is an error, as with dockerd.
    let file = flags.config_file.clone();
    let fname = file.display().to_string();
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !from_cli("config_file") => None,
        Err(e) => {
            return Err(ConfigError::File {
                file: fname,
                msg: e.to_string(),
            });
        }
    };
    if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
        apply_file(&mut cfg, &mut storage_driver, &fname, &text, &matches)?;
    }

    if let Some(d) = storage_driver.filter(|d| !d.is_empty())
        && d != "overlay2"
    {
        return Err(ConfigError::Invalid(format!(
            "error initializing graphdriver: driver not supported: {d} (berthd supports only overlay2)"
        )));
    }
    if cfg.tlsverify {
        cfg.tls = true;
    }
    if cfg.debug {
        cfg.log_level = "debug".to_owned();
    }
    if !["debug", "info", "warn", "error", "fatal", "panic", "trace"]
        .contains(&cfg.log_level.as_str())
    {
        return Err(ConfigError::Invalid(format!(
            "unable to parse logging level: {}",
            cfg.log_level
        )));
    }
    for name in cfg.runtimes.keys() {
        if name == "runc" || name == "io.containerd.runc.v2" {
            return Err(ConfigError::Invalid(format!(
                "runtime name '{name}' is reserved"
            )));
        }
    }
    if cfg.default_runtime != "runc" && !cfg.runtimes.contains_key(&cfg.default_runtime) {
        return Err(ConfigError::Invalid(format!(
            "specified default runtime '{}' does not exist",
            cfg.default_runtime
        )));
    }
    if let Some(bip) = &cfg.bip {
        validate_cidr(bip).map_err(|_| ConfigError::Invalid(format!("invalid bip: {bip}")))?;
    }
    if cfg.hosts.is_empty() {
        cfg.hosts.push(DEFAULT_HOST.to_owned());
    }
    Ok(cfg)
}

fn validate_cidr(s: &str) -> Result<(), ()> {
    let (ip, len) = s.split_once('/').ok_or(())?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| ())?;
    let len: u8 = len.parse().map_err(|_| ())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max { Err(()) } else { Ok(()) }
}

fn apply_file(
    cfg: &mut DaemonConfig,
    storage_driver: &mut Option<String>,
    fname: &str,
    text: &str,
    matches: &clap::ArgMatches,
) -> Result<(), ConfigError> {
    let ferr = |msg: String| ConfigError::File {
        file: fname.to_owned(),
        msg,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| ferr(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ferr("the configuration must be a JSON object".to_owned()))?;

    let unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !KEYS.iter().any(|(key, _)| key == k))
        .collect();
    if !unknown.is_empty() {
        return Err(ferr(format!(
            "the following directives don't match any configuration option: {}",
            unknown.join(", ")
        )));
    }
    let conflicts: Vec<String> = KEYS
        .iter()
        .filter(|(key, id)| {
            obj.contains_key(*key) && matches.value_source(id) == Some(ValueSource::CommandLine)
        })
        .map(|(key, id)| {
            format!(
                "{key}: (from flag: {}, from file: {})",
                flag_value_text(matches, id),
                file_value_text(&obj[*key])
            )
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(ferr(format!(
            "the following directives are specified both as a flag and in the configuration file: {}",
            conflicts.join(", ")
        )));
    }

    for (key, val) in obj {
        match key.as_str() {
            "hosts" => cfg.hosts = list_of(fname, key, val)?,
            "tls" => cfg.tls = bool_of(fname, key, val)?,
            "tlsverify" => cfg.tlsverify = bool_of(fname, key, val)?,
            "tlscacert" => cfg.tlscacert = str_of(fname, key, val)?.into(),
            "tlscert" => cfg.tlscert = str_of(fname, key, val)?.into(),
            "tlskey" => cfg.tlskey = str_of(fname, key, val)?.into(),
            "data-root" => cfg.data_root = str_of(fname, key, val)?.into(),
            "exec-root" => cfg.exec_root = str_of(fname, key, val)?.into(),
            "pidfile" => cfg.pidfile = str_of(fname, key, val)?.into(),
            "debug" => cfg.debug = bool_of(fname, key, val)?,
            "log-level" => cfg.log_level = str_of(fname, key, val)?,
            "bip" => cfg.bip = Some(str_of(fname, key, val)?),
            "bridge" => cfg.bridge = Some(str_of(fname, key, val)?),
            "fixed-cidr" => cfg.fixed_cidr = Some(str_of(fname, key, val)?),
            "mtu" => {
                cfg.mtu = Some(
                    val.as_u64()
                        .and_then(|m| u32::try_from(m).ok())
                        .ok_or_else(|| ferr(format!("mtu: expected a number, got {val}")))?,
                )
            }
            "ip-forward" => cfg.ip_forward = bool_of(fname, key, val)?,
            "ip-masq" => cfg.ip_masq = bool_of(fname, key, val)?,
            "icc" => cfg.icc = bool_of(fname, key, val)?,
            "live-restore" => cfg.live_restore = bool_of(fname, key, val)?,
            "cgroup-favordynmods" => cfg.cgroup_favordynmods = bool_of(fname, key, val)?,
            "init" => cfg.init = bool_of(fname, key, val)?,
            "init-path" => cfg.init_path = Some(str_of(fname, key, val)?.into()),
            "shutdown-timeout" => {
                cfg.shutdown_timeout = val.as_i64().ok_or_else(|| {
                    ferr(format!("shutdown-timeout: expected an integer, got {val}"))
                })?
            }
            "storage-driver" => *storage_driver = Some(str_of(fname, key, val)?),
            "default-runtime" => cfg.default_runtime = str_of(fname, key, val)?,
            "insecure-registries" => cfg.insecure_registries = list_of(fname, key, val)?,
            "registry-mirrors" => cfg.registry_mirrors = list_of(fname, key, val)?,
            "max-concurrent-downloads" | "max-concurrent-uploads" => {
                let n = val
                    .as_i64()
                    .ok_or_else(|| ferr(format!("{key}: expected an integer, got {val}")))?;
                if key == "max-concurrent-downloads" {
                    cfg.max_concurrent_downloads = Some(concurrency("downloads", n)?);
                } else {
                    cfg.max_concurrent_uploads = Some(concurrency("uploads", n)?);
                }
            }
            "group" => cfg.group = str_of(fname, key, val)?,
            "runtimes" => {
                let rts = val
                    .as_object()
                    .ok_or_else(|| ferr(format!("runtimes: expected an object, got {val}")))?;
                for (name, rt) in rts {
                    let path = rt
                        .get("path")
                        .and_then(Value::as_str)
                        .ok_or_else(|| ferr(format!("runtimes: {name}: a path is required")))?;
                    let args = match rt.get("runtimeArgs") {
                        Some(a) => list_of(fname, "runtimeArgs", a)?,
                        None => Vec::new(),
                    };
                    cfg.runtimes.insert(name.clone(), (path.to_owned(), args));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn file_value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// Is `p` the default config file path (for messages)?
pub fn is_default_config(p: &Path) -> bool {
    p == Path::new(DEFAULT_CONFIG_FILE)
}
