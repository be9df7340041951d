//! berth-runtime: turns a container's configuration into an OCI runtime spec (`config.json`)
//! with Docker's defaults — capabilities, seccomp profile, masked/readonly paths, default mounts
//! and devices, env, user, rlimits, resources, namespaces, and always a `cgroupsPath` of
//! `/berth/<id>`.
//!
//! It owns only the *what* of a container. It must not start processes, touch cgroups, mount
//! anything or depend on tokio: the engine calls [`container_spec`], writes the bundle, and hands
//! it to a `berth-shim` (crates/shim), which is the only place libcontainer runs.

pub mod caps;
mod devices;
pub mod seccomp;
pub mod user;
mod workdir;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};
use serde::{Deserialize, Serialize};

pub use devices::{DeviceMapping, parse_cgroup_rule};
pub use workdir::ensure_workdir;

/// Errors from spec generation; `InvalidInput`/`User` are the caller's fault (Docker answers
/// those with 400 / 500-with-message respectively).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    User(String),
    #[error("{0}")]
    Io(String),
    #[error("building OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Docker's default PATH for containers whose image does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `/proc` and `/sys` paths hidden from containers (moby `oci/defaults.go`).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths mounted read-only inside containers.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `--shm-size` default.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Where the container's network namespace comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A fresh, empty namespace (only `lo`) — `--network none`.
    #[default]
    New,
    /// Join a namespace prepared by the network layer (bind-mounted netns file).
    Path(PathBuf),
    /// `--network host`.
    Host,
}

/// `--security-opt seccomp=...`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompMode {
    /// Docker's default profile.
    #[default]
    Default,
    /// `seccomp=unconfined`.
    Unconfined,
    /// A profile file on the daemon's host.
    ProfilePath(PathBuf),
    /// Profile JSON text (what the docker CLI sends after reading the file client-side).
    ProfileJson(String),
}

/// `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Docker's name: `nofile`, `nproc`, `core`, `memlock`, `stack`, ...
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Resource limits; Docker's HostConfig fields, with Docker's units (bytes, nano-CPUs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// `-m`, bytes; 0 = unlimited.
    pub memory: i64,
    /// `--memory-swap`, bytes of memory+swap; -1 = unlimited swap; 0 = default (2x memory).
    pub memory_swap: i64,
    pub memory_reservation: i64,
    /// `--cpus` × 1e9.
    pub nano_cpus: i64,
    pub cpu_shares: u64,
    pub cpu_period: u64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// `--pids-limit`; 0 or None = unlimited.
    pub pids_limit: Option<i64>,
    pub oom_kill_disable: bool,
}

/// Everything [`container_spec`] needs. The engine fills it from the container's stored
/// config (image config merged with the create request).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpecInput {
    /// Full container ID; also names the cgroup `/berth/<id>`.
    pub id: String,
    /// The prepared (overlay-mounted) root filesystem.
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    /// Process args, already combined with [`entrypoint_cmd`].
    pub args: Vec<String>,
    /// Image env merged with the user's `-e`/`--env-file` (user wins), `KEY=VALUE`.
    pub env: Vec<String>,
    /// `-w`; empty = "/".
    pub cwd: String,
    /// `-u`: `uid[:gid]` or names; empty = root.
    pub user: String,
    pub group_add: Vec<String>,
    pub hostname: String,
    pub domainname: String,
    pub tty: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: SeccompMode,
    pub no_new_privileges: bool,
    /// `--shm-size`; None = 64 MiB.
    pub shm_size: Option<u64>,
    pub hosts_path: Option<PathBuf>,
    pub hostname_path: Option<PathBuf>,
    pub resolv_conf_path: Option<PathBuf>,
    /// Volumes and binds (already resolved by the volume layer), added after the defaults.
    pub extra_mounts: Vec<Mount>,
    pub network: NetworkMode,
    /// `--pid host`, `--ipc host`, `--uts host`.
    pub pid_host: bool,
    pub ipc_host: bool,
    pub uts_host: bool,
    pub ulimits: Vec<Ulimit>,
    pub resources: Resources,
    pub sysctls: HashMap<String, String>,
    pub devices: Vec<DeviceMapping>,
    /// `--device-cgroup-rule`: `TYPE MAJOR:MINOR ACCESS` (`c 1:3 rwm`, `a *:* m`).
    pub device_cgroup_rules: Vec<String>,
    /// None = detect from /sys/fs/cgroup.
    pub cgroup_v2: Option<bool>,
    pub oom_score_adj: Option<i32>,
}

/// Docker's ENTRYPOINT/CMD merge (moby `daemon/commit.go` merge + `getEntrypointAndArgs`):
/// a user entrypoint replaces the image's and drops the image CMD; an empty user entrypoint
/// (`--entrypoint ""`) clears the image entrypoint but keeps its CMD; a user CMD replaces the
/// image CMD.
pub fn entrypoint_cmd(
    image_entrypoint: &[String],
    image_cmd: &[String],
    user_entrypoint: Option<&[String]>,
    user_cmd: Option<&[String]>,
) -> Vec<String> {
    // the CLI sends [""] for `--entrypoint ""`
    let user_ep: Option<Vec<String>> = user_entrypoint.map(|e| {
        if e.len() == 1 && e[0].is_empty() {
            Vec::new()
        } else {
            e.to_vec()
        }
    });
    let user_cmd: Vec<String> = user_cmd.map(|c| c.to_vec()).unwrap_or_default();
    let (ep, cmd) = match user_ep {
        Some(ep) if !ep.is_empty() => (ep, user_cmd),
        other => {
            let cmd = if user_cmd.is_empty() {
                image_cmd.to_vec()
            } else {
                user_cmd
            };
            let ep = if other.is_none() {
                image_entrypoint.to_vec()
            } else {
                Vec::new()
            };
            (ep, cmd)
        }
    };
    let mut out = ep;
    out.extend(cmd);
    out
}

/// Whether the host uses the unified cgroup v2 hierarchy at /sys/fs/cgroup.
pub fn host_cgroup_v2() -> bool {
    rustix::fs::statfs("/sys/fs/cgroup")
        .map(|s| s.f_type == 0x6367_7270) // CGROUP2_SUPER_MAGIC
        .unwrap_or(false)
}

/// The cgroup path every container gets (cgroupfs driver; same string on v1 and v2).
pub fn cgroups_path(id: &str) -> String {
    format!("/berth/{id}")
}

fn mount(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn env_key(kv: &str) -> &str {
    kv.split_once('=').map(|(k, _)| k).unwrap_or(kv)
}

/// Docker's env assembly: PATH, HOSTNAME, TERM (tty) first, then the container's env replaces
/// or appends (`ReplaceOrAppendEnvValues`).
fn build_env(cfg: &ContainerSpecInput) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={}", cfg.hostname),
    ];
    if cfg.tty {
        env.push("TERM=xterm".to_string());
    }
    for kv in &cfg.env {
        let k = env_key(kv);
        if let Some(slot) = env.iter_mut().find(|e| env_key(e) == k) {
            *slot = kv.clone();
        } else {
            env.push(kv.clone());
        }
    }
    env
}

fn rlimit_type(name: &str) -> Result<PosixRlimitType> {
    use PosixRlimitType::*;
    Ok(match name {
        "core" => RlimitCore,
        "cpu" => RlimitCpu,
        "data" => RlimitData,
        "fsize" => RlimitFsize,
        "locks" => RlimitLocks,
        "memlock" => RlimitMemlock,
        "msgqueue" => RlimitMsgqueue,
        "nice" => RlimitNice,
        "nofile" => RlimitNofile,
        "nproc" => RlimitNproc,
        "rss" => RlimitRss,
        "rtprio" => RlimitRtprio,
        "rttime" => RlimitRttime,
        "sigpending" => RlimitSigpending,
        "stack" => RlimitStack,
        "as" => RlimitAs,
        _ => return Err(Error::InvalidInput(format!("invalid ulimit type: {name}"))),
    })
}

/// This process's hard limit for `name` (None = unlimited or unknown).
fn own_hard_limit(name: &str) -> Option<u64> {
    use rustix::process::Resource as R;
    let r = match name {
        "core" => R::Core,
        "cpu" => R::Cpu,
        "data" => R::Data,
        "fsize" => R::Fsize,
        "locks" => R::Locks,
        "memlock" => R::Memlock,
        "msgqueue" => R::Msgqueue,
        "nice" => R::Nice,
        "nofile" => R::Nofile,
        "nproc" => R::Nproc,
        "rss" => R::Rss,
        "rtprio" => R::Rtprio,
        "rttime" => R::Rttime,
        "sigpending" => R::Sigpending,
        "stack" => R::Stack,
        "as" => R::As,
        _ => return None,
    };
    rustix::process::getrlimit(r).maximum
}

/// `--ulimit` entries, clamped so neither value exceeds the hard limit this process has: the
/// machine forbids raising hard limits (and a container asking for more than the daemon has
/// would otherwise fail at start).
fn rlimits(cfg: &ContainerSpecInput) -> Result<Vec<oci_spec::runtime::PosixRlimit>> {
    let mut out = Vec::new();
    for u in &cfg.ulimits {
        let typ = rlimit_type(&u.name)?;
        // Docker: -1 means unlimited
        let as_u = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
        let (mut soft, mut hard) = (as_u(u.soft), as_u(u.hard));
        if soft > hard {
            return Err(Error::InvalidInput(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
        if let Some(max) = own_hard_limit(&u.name) {
            hard = hard.min(max);
            soft = soft.min(hard);
        }
        out.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()?,
        );
    }
    Ok(out)
}

fn resources(cfg: &ContainerSpecInput) -> Result<oci_spec::runtime::LinuxResources> {
    let r = &cfg.resources;
    let mut b = LinuxResourcesBuilder::default();

    let mut dev_rules: Vec<LinuxDeviceCgroup> = devices::default_cgroup_rules(cfg.privileged)?;
    let mut devs = Vec::new();
    for d in &cfg.devices {
        for (dev, rule) in devices::from_mapping(d)? {
            devs.push(dev);
            dev_rules.push(rule);
        }
    }
    for r in &cfg.device_cgroup_rules {
        dev_rules.push(devices::parse_cgroup_rule(r)?);
    }
    b = b.devices(dev_rules);

    let mut m = LinuxMemoryBuilder::default();
    let mut any_mem = false;
    if r.memory > 0 {
        m = m.limit(r.memory);
        any_mem = true;
        // Docker: swap unset (0) = twice the memory; -1 = unlimited.
        let swap = match r.memory_swap {
            0 => r.memory * 2,
            s => s,
        };
        m = m.swap(swap);
    } else if r.memory_swap != 0 {
        return Err(Error::InvalidInput(
            "You should always set the Memory limit when using Memoryswap limit".into(),
        ));
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        return Err(Error::InvalidInput(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        ));
    }
    if r.memory_reservation > 0 {
        m = m.reservation(r.memory_reservation);
        any_mem = true;
    }
    if r.oom_kill_disable {
        m = m.disable_oom_killer(true);
        any_mem = true;
    }
    if any_mem {
        b = b.memory(m.build()?);
    }

    let mut c = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if r.nano_cpus > 0 {
        if r.cpu_quota > 0 || r.cpu_period > 0 {
            return Err(Error::InvalidInput(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set".into(),
            ));
        }
        // Docker: period 100ms, quota = cpus * period
        let period: u64 = 100_000;
        c = c
            .period(period)
            .quota(r.nano_cpus * period as i64 / 1_000_000_000);
        any_cpu = true;
    } else {
        if r.cpu_period > 0 {
            c = c.period(r.cpu_period);
            any_cpu = true;
        }
        if r.cpu_quota > 0 {
            c = c.quota(r.cpu_quota);
            any_cpu = true;
        }
    }
    if r.cpu_shares > 0 {
        c = c.shares(r.cpu_shares);
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        c = c.cpus(r.cpuset_cpus.clone());
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        c = c.mems(r.cpuset_mems.clone());
        any_cpu = true;
    }
    if any_cpu {
        b = b.cpu(c.build()?);
    }
    if let Some(p) = r.pids_limit
        && p > 0
    {
        b = b.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }
    Ok(b.build()?)
}

fn default_mounts(cfg: &ContainerSpecInput) -> Result<Vec<Mount>> {
    let shm = format!("size={}", cfg.shm_size.unwrap_or(DEFAULT_SHM_SIZE));
    let ro = if cfg.privileged { "rw" } else { "ro" };
    let mut v = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        )?,
    ];
    // Docker bind-mounts these per container (rprivate so nothing propagates back).
    for (dest, src) in [
        ("/etc/resolv.conf", &cfg.resolv_conf_path),
        ("/etc/hostname", &cfg.hostname_path),
        ("/etc/hosts", &cfg.hosts_path),
    ] {
        if let Some(src) = src {
            v.push(bind(dest, src)?);
        }
    }
    Ok(v)
}

/// A read-only bind mount of a host file or directory (e.g. docker-init for `--init`).
pub fn readonly_bind(dest: &str, src: &Path) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(src)
        .options(vec![
            "rbind".to_string(),
            "ro".to_string(),
            "rprivate".to_string(),
        ])
        .build()?)
}

fn bind(dest: &str, src: &Path) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(src)
        .options(vec!["rbind".to_string(), "rprivate".to_string()])
        .build()?)
}

/// Builds the OCI spec for one container with Docker's defaults.
pub fn container_spec(cfg: &ContainerSpecInput) -> Result<Spec> {
    if cfg.id.is_empty() {
        return Err(Error::InvalidInput("container id is empty".into()));
    }
    if cfg.args.is_empty() {
        return Err(Error::InvalidInput("no command specified".into()));
    }
    let cwd = if cfg.cwd.is_empty() { "/" } else { &cfg.cwd };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidInput(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }

    let cap_names = caps::effective(cfg.privileged, &cfg.cap_add, &cfg.cap_drop)?;
    let capset = caps::to_set(&cap_names)?;
    let mut caps = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(capset.clone())
        .effective(capset.clone())
        .permitted(capset)
        .build()?;
    // Docker sets no inheritable/ambient caps; oci-spec's defaults would fill them in.
    caps.set_inheritable(None).set_ambient(None);

    let who = user::resolve(&cfg.rootfs, &cfg.user, &cfg.group_add)?;
    let mut env = build_env(cfg);
    if let Some(home) = &who.home
        && !env.iter().any(|e| env_key(e) == "HOME")
        && !home.is_empty()
    {
        env.push(format!("HOME={home}"));
    }
    let mut ub = UserBuilder::default().uid(who.uid).gid(who.gid);
    if !who.additional_gids.is_empty() {
        ub = ub.additional_gids(who.additional_gids.clone());
    }

    let mut pb = ProcessBuilder::default()
        .terminal(cfg.tty)
        .user(ub.build()?)
        .args(cfg.args.clone())
        .env(env)
        .cwd(cwd)
        .capabilities(caps)
        .rlimits(rlimits(cfg)?);
    if let Some(adj) = cfg.oom_score_adj {
        pb = pb.oom_score_adj(adj);
    }
    let mut process = pb.build()?;
    // Absent, not false, when not asked for: oci-spec defaults it to true, and libcontainer
    // loads seccomp before dropping capabilities only when the field is absent.
    process.set_no_new_privileges(cfg.no_new_privileges.then_some(true));

    let v2 = cfg.cgroup_v2.unwrap_or_else(host_cgroup_v2);
    let mut ns = Vec::new();
    let mut push_ns = |typ, path: Option<&Path>| -> Result<()> {
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(p) = path {
            b = b.path(p);
        }
        ns.push(b.build()?);
        Ok(())
    };
    if !cfg.pid_host {
        push_ns(LinuxNamespaceType::Pid, None)?;
    }
    if !cfg.ipc_host {
        push_ns(LinuxNamespaceType::Ipc, None)?;
    }
    if !cfg.uts_host {
        push_ns(LinuxNamespaceType::Uts, None)?;
    }
    push_ns(LinuxNamespaceType::Mount, None)?;
    match &cfg.network {
        NetworkMode::New => push_ns(LinuxNamespaceType::Network, None)?,
        NetworkMode::Path(p) => push_ns(LinuxNamespaceType::Network, Some(p))?,
        NetworkMode::Host => {}
    }
    // Docker's default cgroupns mode is "private" on v2 and "host" on v1.
    if v2 {
        push_ns(LinuxNamespaceType::Cgroup, None)?;
    }

    let mut lb = LinuxBuilder::default()
        .namespaces(ns)
        .cgroups_path(cgroups_path(&cfg.id))
        .resources(resources(cfg)?)
        .devices({
            let mut d = devices::default_devices()?;
            if cfg.privileged {
                d.extend(devices::host_devices());
            }
            for m in &cfg.devices {
                d.extend(devices::from_mapping(m)?.into_iter().map(|(dev, _)| dev));
            }
            // one node per path, the last given winning (as runc merges its defaults with
            // the spec's): --privileged's host /dev has /dev/tty, /dev/null... too, and a
            // second mknod of the same path fails the container's start
            let mut seen = std::collections::HashSet::new();
            let mut unique: Vec<_> = d
                .into_iter()
                .rev()
                .filter(|dev| seen.insert(dev.path().clone()))
                .collect();
            unique.reverse();
            unique
        });
    if !cfg.sysctls.is_empty() {
        lb = lb.sysctl(cfg.sysctls.clone());
    }
    if cfg.privileged {
        // oci-spec's builder defaults would otherwise mask runc's list
        lb = lb
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        lb = lb
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
        let profile = match &cfg.seccomp {
            SeccompMode::Default => Some(seccomp::DEFAULT_PROFILE.to_string()),
            SeccompMode::Unconfined => None,
            SeccompMode::ProfileJson(j) => Some(j.clone()),
            SeccompMode::ProfilePath(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                Error::InvalidInput(format!(
                    "opening seccomp profile ({}) failed: {e}",
                    p.display()
                ))
            })?),
        };
        if let Some(p) = profile {
            lb = lb.seccomp(seccomp::convert(&p, &cap_names)?);
        }
    }

    let mut mounts = default_mounts(cfg)?;
    mounts.extend(cfg.extra_mounts.iter().cloned());

    let mut sb = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(&cfg.rootfs)
                .readonly(cfg.readonly_rootfs)
                .build()?,
        )
        .mounts(mounts)
        .process(process)
        .linux(lb.build()?);
    if !cfg.domainname.is_empty() && !cfg.uts_host {
        sb = sb.domainname(cfg.domainname.clone());
    }
    let mut spec = sb.build()?;
    // oci-spec defaults the hostname to "youki"
    spec.set_hostname((!cfg.hostname.is_empty() && !cfg.uts_host).then(|| cfg.hostname.clone()));
    spec.set_annotations(None);
    Ok(spec)
}

#[cfg(test)]
mod tests;
