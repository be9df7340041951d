//! `berth build`: the docker CLI's legacy (`DOCKER_BUILDKIT=0`) build client. The context is
//! tarred here with `.dockerignore` applied (berth-build's rules), a Dockerfile from stdin or
//! from outside the context is added under a generated name as docker does, and the daemon's
//! JSON stream is printed as it arrives (`Step 1/4 : ...`, ` ---> id`, `Successfully built`).
//!
//! `--output` is done client-side through the API: a container is created from the built image,
//! exported and removed (the legacy API has no exporter channel). `--secret` travels in the
//! berth-specific `X-Berth-Build-Secrets` header (base64 of `{"id": "<base64 data>"}`); docker's
//! legacy API has no secrets channel, and a header stays out of URLs and logs.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::client::{Client, urlencode};
use crate::commands::build_progress::LiveView;
use crate::commands::out;
use crate::commands::registry::Display;
use crate::error::{CliError, EXIT_FAILURE, EXIT_USAGE};

#[derive(Args, Debug, Default)]
pub struct BuildArgs {
    /// Add a custom host-to-IP mapping ("host:ip")
    #[arg(long = "add-host", value_name = "list")]
    pub add_host: Vec<String>,
    /// Set build-time variables
    #[arg(long = "build-arg", value_name = "list")]
    pub build_arg: Vec<String>,
    /// Images to consider as cache sources
    #[arg(long = "cache-from", value_name = "strings")]
    pub cache_from: Vec<String>,
    /// Set the parent cgroup for the "RUN" instructions during build
    #[arg(long = "cgroup-parent", value_name = "string")]
    pub cgroup_parent: Option<String>,
    /// Compress the build context using gzip (accepted; the context is sent uncompressed)
    #[arg(long)]
    pub compress: bool,
    /// Limit the CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "int")]
    pub cpu_period: Option<i64>,
    /// Limit the CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", value_name = "int")]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "int")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "string")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "string")]
    pub cpuset_mems: Option<String>,
    /// Skip image verification (accepted for compatibility)
    #[arg(long = "disable-content-trust", value_name = "bool", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub disable_content_trust: Option<String>,
    /// Name of the Dockerfile (Default is 'PATH/Dockerfile')
    #[arg(
        short = 'f',
        long = "file",
        value_name = "string",
        allow_hyphen_values = true
    )]
    pub file: Option<String>,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Write the image ID to the file
    #[arg(long, value_name = "string")]
    pub iidfile: Option<String>,
    /// Container isolation technology
    #[arg(long, value_name = "string")]
    pub isolation: Option<String>,
    /// Set metadata for an image
    #[arg(long, value_name = "list")]
    pub label: Vec<String>,
    /// Memory limit
    #[arg(short = 'm', long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes")]
    pub memory_swap: Option<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, value_name = "string")]
    pub network: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Output destination (format: "type=local,dest=path" or "type=tar,dest=file")
    #[arg(short = 'o', long, value_name = "stringArray")]
    pub output: Vec<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// Set type of progress output ("auto", "quiet", "plain", "tty", "rawjson"). Use plain to show container output
    #[arg(long, value_name = "string", default_value = "auto")]
    pub progress: Option<String>,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Remove intermediate containers after a successful build
    #[arg(long, value_name = "bool", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub rm: Option<String>,
    /// Secret file to expose to the build: id=mysecret,src=/local/secret
    #[arg(long, value_name = "stringArray")]
    pub secret: Vec<String>,
    /// Security options
    #[arg(long = "security-opt", value_name = "strings")]
    pub security_opt: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size", value_name = "bytes")]
    pub shm_size: Option<String>,
    /// Squash newly built layers into a single new layer
    #[arg(long)]
    pub squash: bool,
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long, value_name = "list")]
    pub tag: Vec<String>,
    /// Set the target build stage to build
    #[arg(long, value_name = "string")]
    pub target: Option<String>,
    /// Ulimit options
    #[arg(long, value_name = "ulimit")]
    pub ulimit: Vec<String>,
    #[arg(hide = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Local refusals before connecting (flag values), as docker's flag parsing does.
pub fn precheck(a: &BuildArgs, path: &str) -> Result<(), CliError> {
    let flag_err = |v: &str, flag: &str, e: &str| {
        CliError::new(
            format!(
                "invalid argument \"{v}\" for \"{flag}\" flag: {e}\n\nUsage:  {}\n\nRun 'berth {path} --help' for more information",
                crate::cli::usage(path)
            ),
            EXIT_USAGE,
        )
    };
    for t in &a.tag {
        berth_types::Reference::parse_normalized(t)
            .map_err(|e| flag_err(t, "-t, --tag", &e.to_string()))?;
    }
    if let Some(v) = &a.rm {
        crate::commands::image::parse_bool_flag(v, "--rm", path)?;
    }
    for (v, flag) in [(&a.memory, "-m, --memory"), (&a.shm_size, "--shm-size")] {
        if let Some(v) = v {
            crate::commands::opts::ram_in_bytes(v).map_err(|e| flag_err(v, flag, &e))?;
        }
    }
    if let Some(p) = &a.progress
        && !matches!(p.as_str(), "auto" | "plain" | "tty" | "quiet" | "rawjson")
    {
        return Err(CliError::msg(format!("invalid progress mode {p:?}")));
    }
    for o in &a.output {
        parse_output(o)?;
    }
    Ok(())
}

/// `--output`: `type=local,dest=dir`, `type=tar,dest=file`, or a bare path (local).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Local(PathBuf),
    Tar(Option<PathBuf>),
}

fn parse_output(s: &str) -> Result<Output, CliError> {
    if !s.contains('=') {
        return Ok(if s == "-" {
            Output::Tar(None)
        } else {
            Output::Local(PathBuf::from(s))
        });
    }
    let mut typ = None;
    let mut dest = None;
    for field in s.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => typ = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(v.to_string()),
            _ => return Err(CliError::msg(format!("invalid output option: {field}"))),
        }
    }
    match (typ.as_deref(), dest) {
        (Some("local"), Some(d)) => Ok(Output::Local(PathBuf::from(d))),
        (Some("local"), None) => Err(CliError::msg("dest is required for local output")),
        (Some("tar"), d) => Ok(Output::Tar(d.filter(|d| d != "-").map(PathBuf::from))),
        (Some(t), _) => Err(CliError::msg(format!(
            "output type {t:?} is not supported by the legacy builder (local, tar)"
        ))),
        (None, _) => Err(CliError::msg(format!(
            "invalid output {s:?}: type is required"
        ))),
    }
}

/// What goes to the daemon: a context tar (or nothing for a remote context), and the
/// Dockerfile's name inside it.
struct Context {
    body: Bytes,
    dockerfile: Option<String>,
    remote: Option<String>,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn is_git_url(s: &str) -> bool {
    s.starts_with("git://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || (is_url(s) && s.split('#').next().is_some_and(|u| u.ends_with(".git")))
}

/// Tar, gzip, bzip2, xz or zstd (the docker CLI's `IsArchive`).
fn is_archive(head: &[u8]) -> bool {
    let magic: [&[u8]; 4] = [
        &[0x1f, 0x8b, 0x08],
        b"BZh",
        &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
        &[0x28, 0xb5, 0x2f, 0xfd],
    ];
    magic.iter().any(|m| head.starts_with(m)) || head.get(257..262) == Some(b"ustar")
}

fn read_stdin() -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| CliError::msg(format!("failed to read from stdin: {e}")))?;
    Ok(buf)
}

/// A tar of one file named `name` (the Dockerfile-only context from stdin).
fn single_file_tar(name: &str, data: &[u8]) -> Result<Vec<u8>, CliError> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = new_header(data.len());
    b.append_data(&mut h, name, data)?;
    Ok(b.into_inner()?)
}

/// A fresh header for a file we generate: root-owned, 0600, now.
fn new_header(size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(now_secs());
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Go's `filepath.Rel` for the case that matters: `path` under `base`.
fn rel_under(base: &Path, path: &Path) -> Option<String> {
    let r = path.strip_prefix(base).ok()?;
    let s = r.to_str()?.to_string();
    (!s.is_empty()).then_some(s)
}

fn lexical_abs(p: &Path) -> Result<PathBuf, CliError> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    Ok(PathBuf::from(berth_build::ignore::clean(
        &abs.to_string_lossy(),
    )))
}

/// Tars a context directory with `.dockerignore` applied (uid/gid 0, as the CLI's ChownOpts).
pub fn tar_context_dir(dir: &Path, dockerfile: Option<&str>) -> Result<Vec<u8>, CliError> {
    let ignore_text = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(CliError::msg(format!("error reading .dockerignore: {e}"))),
    };
    let ignore = berth_build::ignore::Ignore::parse(&ignore_text);
    ignore
        .check()
        .map_err(|e| CliError::msg(format!("error checking context: {e}")))?;
    let ignore = ignore.keep_build_files(dockerfile);
    let entries = berth_build::ignore::walk_context(dir, &ignore)
        .map_err(|e| CliError::msg(format!("error checking context: {e}")))?;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    for e in entries {
        let full = dir.join(&e.path);
        let md = std::fs::symlink_metadata(&full).map_err(|err| {
            CliError::msg(format!(
                "error checking context: can't stat '{}': {err}",
                full.display()
            ))
        })?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        // Permission bits only, as Go's tar.FileInfoHeader writes them: the file type bits
        // tar-rs adds would make the daemon's COPY checksums differ from a docker CLI upload.
        h.set_mode(std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777);
        h.set_uid(0);
        h.set_gid(0);
        let _ = h.set_username("");
        let _ = h.set_groupname("");
        use berth_build::ignore::EntryKind;
        match e.kind {
            EntryKind::File => {
                let f = std::fs::File::open(&full).map_err(|err| {
                    CliError::msg(format!(
                        "error checking context: no permission to read from '{}': {err}",
                        full.display()
                    ))
                })?;
                b.append_data(&mut h, &e.path, f)?;
            }
            EntryKind::Dir => {
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", e.path), std::io::empty())?;
            }
            EntryKind::Symlink => {
                let target = std::fs::read_link(&full)?;
                h.set_size(0);
                b.append_link(&mut h, &e.path, target)?;
            }
            EntryKind::Other => {
                h.set_size(0);
                b.append_data(&mut h, &e.path, std::io::empty())?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// The docker CLI's `AddDockerfileToBuildContext`: the Dockerfile goes in under a random name,
/// and that name is appended to `.dockerignore` so `COPY .` doesn't pick it up.
fn add_dockerfile(ctx: &[u8], dockerfile: &[u8]) -> Result<(Vec<u8>, String), CliError> {
    let mut rnd = [0u8; 10];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut rnd);
    }
    let name = format!(
        ".dockerfile.{}",
        rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut ar = tar::Archive::new(ctx);
    let mut b = tar::Builder::new(Vec::new());
    let mut ignore: Option<(tar::Header, Vec<u8>)> = None;
    for entry in ar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        let mut h = entry.header().clone();
        if path.trim_start_matches("./") == ".dockerignore" {
            ignore = Some((h, data));
            continue;
        }
        b.append_data(&mut h, &path, data.as_slice())?;
    }
    let mut h = new_header(dockerfile.len());
    b.append_data(&mut h, &name, dockerfile)?;
    let (mut h, mut data) = ignore.unwrap_or_else(|| (new_header(0), Vec::new()));
    data.extend_from_slice(format!("\n{name}\n").as_bytes());
    h.set_size(data.len() as u64);
    b.append_data(&mut h, ".dockerignore", data.as_slice())?;
    Ok((b.into_inner()?, name))
}

fn prepare_context(a: &BuildArgs) -> Result<Context, CliError> {
    let spec = a.args[0].as_str();
    let df_stdin = a.file.as_deref() == Some("-");
    if spec == "-" {
        if df_stdin {
            return Err(CliError::msg(
                "invalid argument: can't use stdin for both build context and dockerfile",
            ));
        }
        let data = read_stdin()?;
        if is_archive(&data) {
            return Ok(Context {
                body: data.into(),
                dockerfile: a.file.clone(),
                remote: None,
            });
        }
        return Ok(Context {
            body: single_file_tar("Dockerfile", &data)?.into(),
            dockerfile: Some("Dockerfile".into()),
            remote: None,
        });
    }
    if is_git_url(spec) || is_url(spec) {
        // The daemon fetches remote contexts (the API's `remote`).
        return Ok(Context {
            body: Bytes::new(),
            dockerfile: a.file.clone(),
            remote: Some(spec.to_string()),
        });
    }
    let md = std::fs::metadata(spec).map_err(|_| {
        CliError::msg(format!(
            "unable to prepare context: path {spec:?} not found"
        ))
    })?;
    if md.is_file() {
        // berth also takes a context tar by path (docker wants it on stdin).
        let data = std::fs::read(spec)?;
        if !is_archive(&data) {
            return Err(CliError::msg(format!(
                "unable to prepare context: context must be a directory: {spec}"
            )));
        }
        return Ok(Context {
            body: data.into(),
            dockerfile: a.file.clone(),
            remote: None,
        });
    }
    let dir = lexical_abs(Path::new(spec))?;
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    // -f is relative to the current directory, not to the context.
    let (df_path, given) = match a.file.as_deref() {
        Some("-") => (None, "-".to_string()),
        Some(f) => (Some(lexical_abs(Path::new(f))?), f.to_string()),
        None => {
            let d = dir.join("Dockerfile");
            let lower = dir.join("dockerfile");
            let p = if !d.exists() && lower.exists() {
                lower
            } else {
                d
            };
            (Some(p), String::new())
        }
    };
    let dockerfile_data: Option<Vec<u8>>;
    let rel: Option<String>;
    match &df_path {
        None => {
            dockerfile_data = Some(read_stdin()?);
            rel = None;
        }
        Some(p) => {
            if std::fs::symlink_metadata(p).is_err() {
                // docker's two wordings: the default Dockerfile vs one given with -f.
                return Err(CliError::msg(if given.is_empty() {
                    format!(
                        "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: no such file or directory",
                        p.display()
                    )
                } else {
                    format!(
                        "unable to prepare context: Cannot locate specified Dockerfile: {given}"
                    )
                }));
            }
            let real = std::fs::canonicalize(p).unwrap_or(p.clone());
            match rel_under(&dir, &real) {
                Some(r) => {
                    dockerfile_data = None;
                    rel = Some(r);
                }
                None => {
                    dockerfile_data = Some(std::fs::read(p)?);
                    rel = None;
                }
            }
        }
    }
    let tar = tar_context_dir(&dir, rel.as_deref())?;
    match dockerfile_data {
        Some(df) => {
            let (tar, name) = add_dockerfile(&tar, &df)?;
            Ok(Context {
                body: tar.into(),
                dockerfile: Some(name),
                remote: None,
            })
        }
        None => Ok(Context {
            body: tar.into(),
            dockerfile: rel,
            remote: None,
        }),
    }
}

/// `KEY=VALUE` → value; `KEY` alone → the environment's value, or null when unset.
fn build_args(list: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for kv in list {
        match kv.split_once('=') {
            Some((k, v)) => m.insert(k.to_string(), Value::String(v.to_string())),
            None => m.insert(
                kv.clone(),
                std::env::var(kv).map_or(Value::Null, Value::String),
            ),
        };
    }
    Value::Object(m)
}

fn labels(list: &[String]) -> Value {
    let m: BTreeMap<&str, &str> = list
        .iter()
        .map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), "")))
        .collect();
    json!(m)
}

/// `--secret id=x,src=path` (also `source=`, `type=file`, `env=`): `{id: base64(data)}`.
fn secrets(list: &[String]) -> Result<Option<String>, CliError> {
    if list.is_empty() {
        return Ok(None);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut m = serde_json::Map::new();
    for s in list {
        let (mut id, mut src, mut env) = (None, None, None);
        for field in s.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => {
                    return Err(CliError::msg(format!(
                        "invalid secret {s:?}: unexpected key in {field:?}"
                    )));
                }
            }
        }
        let Some(id) = id.or_else(|| src.clone()).or_else(|| env.clone()) else {
            return Err(CliError::msg(format!(
                "invalid secret {s:?}: id is required"
            )));
        };
        let data = match (src, env) {
            (Some(p), _) => std::fs::read(&p)
                .map_err(|e| CliError::msg(format!("failed to read secret {id} from {p}: {e}")))?,
            (None, Some(v)) => std::env::var(&v).unwrap_or_default().into_bytes(),
            (None, None) => std::env::var(&id).unwrap_or_default().into_bytes(),
        };
        m.insert(id, Value::String(b64.encode(data)));
    }
    Ok(Some(b64.encode(Value::Object(m).to_string())))
}

fn query(a: &BuildArgs, ctx: &Context) -> Result<String, CliError> {
    let mut q: Vec<String> = Vec::new();
    let mut p = |k: &str, v: &str| q.push(format!("{k}={}", urlencode(v)));
    if let Some(d) = &ctx.dockerfile {
        p("dockerfile", d);
    }
    for t in &a.tag {
        p("t", t);
    }
    if let Some(r) = &ctx.remote {
        p("remote", r);
    }
    if !a.add_host.is_empty() {
        p("extrahosts", &a.add_host.join(","));
    }
    if a.quiet || a.progress.as_deref() == Some("quiet") {
        p("q", "1");
    }
    if a.no_cache {
        p("nocache", "1");
    }
    if !a.cache_from.is_empty() {
        p("cachefrom", &json!(a.cache_from).to_string());
    }
    if a.pull {
        p("pull", "1");
    }
    let rm =
        a.rm.as_deref()
            .is_none_or(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"));
    // rm defaults to true on the API; docker sends it only to turn it off.
    if !rm {
        p("rm", "0");
    }
    if a.force_rm {
        p("forcerm", "1");
    }
    let bytes_of = |v: &Option<String>| -> Result<Option<i64>, CliError> {
        v.as_deref()
            .map(|s| {
                if s == "-1" {
                    return Ok(-1);
                }
                crate::commands::opts::ram_in_bytes(s).map_err(CliError::msg)
            })
            .transpose()
    };
    if let Some(m) = bytes_of(&a.memory)? {
        p("memory", &m.to_string());
    }
    if let Some(m) = bytes_of(&a.memory_swap)? {
        p("memswap", &m.to_string());
    }
    if let Some(m) = bytes_of(&a.shm_size)? {
        p("shmsize", &m.to_string());
    }
    for (k, v) in [
        ("cpushares", a.cpu_shares),
        ("cpuperiod", a.cpu_period),
        ("cpuquota", a.cpu_quota),
    ] {
        if let Some(v) = v {
            p(k, &v.to_string());
        }
    }
    for (k, v) in [
        ("cpusetcpus", &a.cpuset_cpus),
        ("cpusetmems", &a.cpuset_mems),
        ("cgroupparent", &a.cgroup_parent),
        ("isolation", &a.isolation),
        ("networkmode", &a.network),
        ("platform", &a.platform),
        ("target", &a.target),
    ] {
        if let Some(v) = v {
            p(k, v);
        }
    }
    if !a.build_arg.is_empty() {
        p("buildargs", &build_args(&a.build_arg).to_string());
    }
    if !a.label.is_empty() {
        p("labels", &labels(&a.label).to_string());
    }
    if a.squash {
        p("squash", "1");
    }
    if !a.ulimit.is_empty() {
        let mut ul = Vec::new();
        for u in &a.ulimit {
            let (name, vals) = u
                .split_once('=')
                .ok_or_else(|| CliError::msg(format!("invalid ulimit argument: {u}")))?;
            let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
            let num = |s: &str| {
                s.parse::<i64>()
                    .map_err(|_| CliError::msg(format!("invalid ulimit argument: {u}")))
            };
            ul.push(json!({"Name": name, "Soft": num(soft)?, "Hard": num(hard)?}));
        }
        p("ulimits", &Value::Array(ul).to_string());
    }
    // The legacy builder, as the docker CLI asks for it with DOCKER_BUILDKIT=0.
    p("version", "1");
    Ok(format!("/build?{}", q.join("&")))
}

/// The stream's outcome: the image ID from `aux`, or the build error with its exit code.
struct Streamed {
    id: Option<String>,
}

/// How the daemon's stream is shown.
enum View<'a> {
    /// As `docker build` prints it (with docker's in-place pull progress on a tty).
    Plain(Display<&'a mut dyn Write>),
    /// The compact live view (`--progress=auto` on a tty, `tty`).
    Live(LiveView),
    /// `--progress=rawjson`: the daemon's JSON lines as they come.
    Raw(&'a mut dyn Write),
}

/// `--progress`: the view for this build (`-q`/`quiet` hold the stream back elsewhere).
fn wants_live(progress: Option<&str>, stdout_tty: bool) -> bool {
    match progress.unwrap_or("auto") {
        "tty" => true,
        "auto" => stdout_tty,
        _ => false,
    }
}

async fn show_build_stream(
    mut body: hyper::body::Incoming,
    mut view: View<'_>,
) -> Result<Streamed, CliError> {
    let mut id = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut handle = |view: &mut View<'_>, line: &[u8]| -> Result<(), CliError> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| CliError::msg(format!("invalid build output from daemon: {e}")))?;
        if let Some(i) = v["aux"]["ID"].as_str() {
            id = Some(i.to_string());
        }
        let error = v["errorDetail"]["message"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .map(str::to_owned);
        let shown = match view {
            View::Plain(d) => d.message(&v),
            View::Raw(w) => {
                let _ = w.write_all(line);
                let _ = w.write_all(b"\n");
                error.map_or(Ok(()), Err)
            }
            View::Live(l) => {
                if let Some(s) = v["stream"].as_str() {
                    l.text(s);
                } else if let Some(st) = v["status"].as_str() {
                    // a FROM that pulls: its status lines go to the step's tail
                    let layer = v["id"]
                        .as_str()
                        .map(|i| format!("{i}: "))
                        .unwrap_or_default();
                    l.text(&format!(
                        "{layer}{st} {}\n",
                        v["progress"].as_str().unwrap_or("")
                    ));
                }
                error.map_or(Ok(()), Err)
            }
        };
        shown.map_err(|msg| {
            // The daemon sends the failing RUN's exit status as the error code; docker exits
            // with it (1 when there is none).
            let code = v["errorDetail"]["code"]
                .as_i64()
                .filter(|c| *c > 0 && *c < 256)
                .map_or(EXIT_FAILURE, |c| c as i32);
            CliError::new(msg, code)
        })
    };
    let mut res = Ok(());
    'read: while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                res = Err(CliError::msg(format!("reading build output: {e}")));
                break;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            res = handle(&mut view, &line);
            if res.is_err() {
                break 'read;
            }
        }
    }
    if res.is_ok() {
        res = handle(&mut view, &buf);
    }
    if let View::Live(l) = view {
        l.end(res.is_err());
    }
    res.map(|()| Streamed { id })
}

pub async fn build(client: &Client, a: Box<BuildArgs>) -> Result<(), CliError> {
    if let Some(f) = &a.iidfile
        && let Err(e) = std::fs::remove_file(f)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(CliError::msg(format!("Removing image ID file: {e}")));
    }
    let outputs = a
        .output
        .iter()
        .map(|o| parse_output(o))
        .collect::<Result<Vec<_>, _>>()?;
    let secret_header = secrets(&a.secret)?;
    let ctx = prepare_context(&a)?;
    let path = query(&a, &ctx)?;

    // -q: everything but the ID is held back and shown only if the build fails.
    let mut held: Vec<u8> = Vec::new();
    let mut stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let quiet = a.quiet || a.progress.as_deref() == Some("quiet");
    let live = !quiet && wants_live(a.progress.as_deref(), tty);
    let sending = format!(
        "Sending build context to Docker daemon {:>8}\n",
        crate::format::units::human_size(ctx.body.len() as f64)
    );
    let rawjson = a.progress.as_deref() == Some("rawjson");
    // (rawjson is the daemon's JSON lines only)
    if ctx.remote.is_none() && !rawjson {
        if quiet {
            held.extend_from_slice(sending.as_bytes());
        } else {
            out(&sending)?;
        }
    }

    let mut headers: Vec<(&str, String)> =
        vec![("X-Registry-Config", crate::credentials::registry_config()?)];
    if let Some(s) = secret_header {
        headers.push(("X-Berth-Build-Secrets", s));
    }
    let resp = client
        .request_stream_body(Method::POST, &path, &headers, ctx.body, "application/x-tar")
        .await?;
    let body = match resp {
        Ok(b) => b,
        Err(r) => {
            if quiet {
                let _ = std::io::stderr().write_all(&held);
            }
            return Err(CliError::daemon(r.message()));
        }
    };
    // With -q the daemon's stream is just the ID; it is printed only once the build succeeded.
    let mut held_stream: Vec<u8> = Vec::new();
    let streamed = if quiet {
        show_build_stream(
            body,
            View::Plain(Display::new(&mut held_stream as &mut dyn Write, false)),
        )
        .await
    } else if live {
        show_build_stream(body, View::Live(LiveView::new())).await
    } else if rawjson {
        show_build_stream(body, View::Raw(&mut stdout)).await
    } else {
        show_build_stream(
            body,
            View::Plain(Display::new(&mut stdout as &mut dyn Write, tty)),
        )
        .await
    };
    let streamed = match streamed {
        Ok(s) => s,
        Err(e) => {
            if quiet {
                let _ = std::io::stderr().write_all(&held);
                let _ = std::io::stderr().write_all(&held_stream);
            }
            return Err(e);
        }
    };
    let quiet_text = String::from_utf8_lossy(&held_stream).to_string();
    let id = streamed
        .id
        .or_else(|| {
            let t = quiet_text.trim();
            t.starts_with("sha256:").then(|| t.to_string())
        })
        .unwrap_or_default();
    if quiet {
        if quiet_text.is_empty() {
            out(&format!("{id}\n"))?;
        } else {
            out(&quiet_text)?;
        }
    }
    if let Some(f) = &a.iidfile {
        if id.is_empty() {
            return Err(CliError::msg(format!(
                "Server did not provide an image ID. Cannot write {f}"
            )));
        }
        std::fs::write(f, &id)?;
    }
    for o in outputs {
        export_image(client, &id, &o).await?;
    }
    Ok(())
}

/// `--output`: the built image's filesystem, through a created (never started) container.
async fn export_image(client: &Client, id: &str, o: &Output) -> Result<(), CliError> {
    if id.is_empty() {
        return Err(CliError::msg(
            "Server did not provide an image ID. Cannot export",
        ));
    }
    let body = json!({"Image": id, "Cmd": ["/berth-export"], "Entrypoint": null});
    let r = client
        .raw(
            Method::POST,
            "/containers/create",
            Some(Bytes::from(body.to_string())),
        )
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|e| CliError::msg(format!("invalid create response: {e}")))?;
    let cid = v["Id"].as_str().unwrap_or_default().to_string();
    let res = async {
        let mut stream = client
            .get_stream(&format!("/containers/{cid}/export"))
            .await?;
        let mut data = Vec::new();
        while let Some(frame) = stream.frame().await {
            let frame = frame.map_err(|e| CliError::msg(format!("reading export: {e}")))?;
            if let Ok(d) = frame.into_data() {
                data.extend_from_slice(&d);
            }
        }
        match o {
            Output::Tar(Some(p)) => std::fs::write(p, &data)?,
            Output::Tar(None) => {
                let mut so = std::io::stdout().lock();
                so.write_all(&data)?;
                so.flush()?;
            }
            Output::Local(dir) => {
                std::fs::create_dir_all(dir)?;
                let mut ar = tar::Archive::new(data.as_slice());
                ar.set_preserve_permissions(true);
                ar.set_overwrite(true);
                // unpack refuses entries that would land outside `dir`.
                ar.unpack(dir).map_err(|e| {
                    CliError::msg(format!("writing output to {}: {e}", dir.display()))
                })?;
            }
        }
        Ok::<(), CliError>(())
    }
    .await;
    let _ = client
        .raw(Method::DELETE, &format!("/containers/{cid}?force=1"), None)
        .await;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut ar = tar::Archive::new(tar);
        ar.entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                assert_eq!(
                    (e.header().uid().ok(), e.header().gid().ok()),
                    (Some(0), Some(0))
                );
                e.path().expect("path").to_string_lossy().to_string()
            })
            .collect()
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (p, c) in files {
            let p = dir.join(p);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(p, c).expect("write");
        }
    }

    #[test]
    fn context_tar_applies_dockerignore_and_keeps_build_files() {
        let t = tempfile::tempdir().expect("tempdir");
        write(
            t.path(),
            &[
                ("Dockerfile", "FROM scratch\n"),
                (".dockerignore", "*\n!src\nsrc/**/*.tmp\n"),
                ("src/main.c", "int main;"),
                ("src/x/y.tmp", "tmp"),
                ("secret.key", "k"),
            ],
        );
        let tar = tar_context_dir(t.path(), Some("Dockerfile")).expect("tar");
        assert_eq!(
            names(&tar),
            vec![
                ".dockerignore",
                "Dockerfile",
                "src/",
                "src/main.c",
                "src/x/"
            ]
        );
    }

    #[test]
    fn dockerfile_outside_the_context_goes_in_under_a_generated_name() {
        let t = tempfile::tempdir().expect("tempdir");
        write(
            t.path(),
            &[
                ("ctx/a", "a"),
                ("Dockerfile.out", "FROM scratch\nCOPY a /\n"),
            ],
        );
        let a = BuildArgs {
            file: Some(t.path().join("Dockerfile.out").display().to_string()),
            args: vec![t.path().join("ctx").display().to_string()],
            ..BuildArgs::default()
        };
        let ctx = prepare_context(&a).expect("context");
        let name = ctx.dockerfile.expect("dockerfile name");
        assert!(name.starts_with(".dockerfile.") && name.len() == ".dockerfile.".len() + 20);
        assert_eq!(
            names(&ctx.body),
            vec!["a".to_string(), name.clone(), ".dockerignore".into()]
        );
        let mut ar = tar::Archive::new(&ctx.body[..]);
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let p = e.path().expect("path").to_string_lossy().to_string();
            let mut s = String::new();
            e.read_to_string(&mut s).expect("read");
            if p == name {
                assert_eq!(s, "FROM scratch\nCOPY a /\n");
            } else if p == ".dockerignore" {
                assert_eq!(s, format!("\n{name}\n"));
            }
        }
    }

    #[test]
    fn dockerfile_inside_the_context_is_named_relative_to_it() {
        let t = tempfile::tempdir().expect("tempdir");
        write(
            t.path(),
            &[
                ("sub/Dockerfile.dev", "FROM scratch\n"),
                (".dockerignore", "sub\n"),
            ],
        );
        let a = BuildArgs {
            file: Some(t.path().join("sub/Dockerfile.dev").display().to_string()),
            args: vec![t.path().display().to_string()],
            ..BuildArgs::default()
        };
        let ctx = prepare_context(&a).expect("context");
        assert_eq!(ctx.dockerfile.as_deref(), Some("sub/Dockerfile.dev"));
        assert_eq!(
            names(&ctx.body),
            vec![".dockerignore", "sub/Dockerfile.dev"]
        );
        let missing = BuildArgs {
            file: Some("nope/Dockerfile".into()),
            args: vec![t.path().display().to_string()],
            ..BuildArgs::default()
        };
        let e = prepare_context(&missing).err().expect("missing dockerfile");
        assert_eq!(
            e.message,
            "unable to prepare context: Cannot locate specified Dockerfile: nope/Dockerfile"
        );
        let nodir = BuildArgs {
            args: vec!["/nonexistent/ctx".into()],
            ..BuildArgs::default()
        };
        assert_eq!(
            prepare_context(&nodir).err().expect("no dir").message,
            "unable to prepare context: path \"/nonexistent/ctx\" not found"
        );
    }

    #[test]
    fn archives_are_detected() {
        let tar = single_file_tar("Dockerfile", b"FROM scratch\n").expect("tar");
        assert!(is_archive(&tar));
        assert!(is_archive(&[0x1f, 0x8b, 0x08, 0]));
        assert!(!is_archive(b"FROM busybox\nRUN true\n"));
    }

    #[test]
    fn query_parameters() {
        // SAFETY: test-local variable name, set before any thread reads it.
        unsafe { std::env::set_var("BERTH_TEST_BUILD_ARG", "from-env") };
        let a = BuildArgs {
            tag: vec!["a:1".into(), "b".into()],
            build_arg: vec![
                "X=1".into(),
                "BERTH_TEST_BUILD_ARG".into(),
                "BERTH_UNSET_ARG".into(),
            ],
            label: vec!["k=v".into(), "bare".into()],
            no_cache: true,
            rm: Some("false".into()),
            memory: Some("64m".into()),
            target: Some("final".into()),
            ulimit: vec!["nofile=10:20".into()],
            ..BuildArgs::default()
        };
        let ctx = Context {
            body: Bytes::new(),
            dockerfile: Some("sub/Dockerfile".into()),
            remote: None,
        };
        let q = query(&a, &ctx).expect("query");
        let want = [
            "dockerfile=sub%2FDockerfile",
            "t=a%3A1",
            "t=b",
            "nocache=1",
            "rm=0",
            "memory=67108864",
            "target=final",
        ];
        for w in want {
            assert!(q.contains(w), "{w} in {q}");
        }
        let params: Vec<&str> = q.trim_start_matches("/build?").split('&').collect();
        let get = |k: &str| {
            params
                .iter()
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .map(decode)
        };
        let args: Value =
            serde_json::from_str(&get("buildargs").expect("buildargs")).expect("json");
        assert_eq!(
            args,
            json!({"X": "1", "BERTH_TEST_BUILD_ARG": "from-env", "BERTH_UNSET_ARG": null})
        );
        let labels: Value = serde_json::from_str(&get("labels").expect("labels")).expect("json");
        assert_eq!(labels, json!({"k": "v", "bare": ""}));
        let ul: Value = serde_json::from_str(&get("ulimits").expect("ulimits")).expect("json");
        assert_eq!(ul, json!([{"Name": "nofile", "Soft": 10, "Hard": 20}]));
    }

    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() + 1 {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(h, 16).expect("hex"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn outputs_and_secrets() {
        assert_eq!(
            parse_output("type=local,dest=out").ok(),
            Some(Output::Local("out".into()))
        );
        assert_eq!(
            parse_output("type=tar,dest=o.tar").ok(),
            Some(Output::Tar(Some("o.tar".into())))
        );
        assert_eq!(parse_output("dir").ok(), Some(Output::Local("dir".into())));
        assert!(parse_output("type=image").is_err());
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("s");
        std::fs::write(&p, "hunter2").expect("write");
        let h = secrets(&[format!("id=tok,src={}", p.display())])
            .expect("secrets")
            .expect("header");
        let b64 = base64::engine::general_purpose::STANDARD;
        let v: Value = serde_json::from_slice(&b64.decode(h).expect("b64")).expect("json");
        assert_eq!(v, json!({"tok": b64.encode("hunter2")}));
    }
}
