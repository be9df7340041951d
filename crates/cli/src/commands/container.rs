//! Container commands: run/create/start (docker's create -> attach -> start -> wait flow),
//! ps, stop/kill/restart/rm/pause/unpause/wait/rename, logs, attach, exec, top, port,
//! update, container prune, stats.

use std::sync::Arc;

use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::{Client, filters_json, path_escape, urlencode};
use crate::commands::opts::CreateOpts;
use crate::commands::out;
use crate::commands::stdio::{self, Ended};
use crate::error::{CliError, EXIT_USAGE};
use crate::format::{Format, Row, short_id, units};

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", value_name = "bool", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    pub sig_proxy: String,
    #[command(flatten)]
    pub opts: CreateOpts,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: CreateOpts,
}

#[derive(Args, Debug, Default)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    #[arg(long, value_name = "string", default_value = "", help = FORMAT_HELP)]
    pub format: String,
    /// Show n last created containers (includes all states)
    #[arg(
        short = 'n',
        long = "last",
        value_name = "int",
        default_value = "-1",
        allow_hyphen_values = true
    )]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, value_name = "string")]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "timeout",
        alias = "time",
        value_name = "int",
        allow_hyphen_values = true
    )]
    pub time: Option<i64>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, value_name = "string")]
    pub signal: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    pub link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct NamesArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, value_name = "string", default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", value_name = "bool", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    pub sig_proxy: String,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long, value_name = "string")]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "string")]
    pub workdir: Option<String>,
    #[arg(hide = true, trailing_var_arg = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct TopArgs {
    #[arg(hide = true, trailing_var_arg = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PortArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight", value_name = "uint16", default_value = "0")]
    pub blkio_weight: u16,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "int")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", value_name = "int", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Limit the CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period", value_name = "int")]
    pub cpu_rt_period: Option<i64>,
    /// Limit the CPU real-time runtime in microseconds
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
    /// Memory limit
    #[arg(short = 'm', long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "bytes")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "int", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long, value_name = "string")]
    pub restart: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct ContainerPruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(long, value_name = "string", default_value = "", help = FORMAT_HELP)]
    pub format: String,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// docker's multi-line --format help of list commands.
pub const FORMAT_HELP: &str = "Format output using a custom template:\n'table':            Print output in table format with column headers (default)\n'table TEMPLATE':   Print output in table format using the given Go template\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template.\nRefer to https://docs.docker.com/go/formatting/ for more information about formatting output with templates";

fn bool_flag(v: &str, flag: &str, path: &str) -> Result<bool, CliError> {
    crate::commands::image::parse_bool_flag(v, flag, path)
}

/// docker's `docker: <msg>\n\nRun 'docker run --help' for more information`, exit 125.
fn run_error(path: &str, msg: &str, code: i32) -> CliError {
    CliError::new(
        format!("berth: {msg}\n\nRun 'berth {path} --help' for more information"),
        code,
    )
}

/// A daemon-side failure while creating: `run` words it as a run error (125), `create` plainly
/// (exit 1), as docker 28 does.
fn engine_err(path: &str, msg: &str) -> CliError {
    if path.ends_with("create") {
        CliError::msg(msg)
    } else {
        run_error(path, msg, 125)
    }
}

/// Exit status docker derives from a failed start (126 cannot invoke, 127 not found).
fn start_error_code(msg: &str) -> i32 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        125
    }
}

async fn post(client: &Client, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
    let b = body.map(|b| bytes::Bytes::from(b.to_string()));
    let r = client.raw(Method::POST, path, b).await?;
    // 304: already in the asked-for state (stop of a stopped container); docker says nothing.
    if r.status == hyper::StatusCode::NOT_MODIFIED {
        return Ok(Value::Null);
    }
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

async fn get(client: &Client, path: &str) -> Result<Value, CliError> {
    let b = client.get_raw(path).await?;
    serde_json::from_slice(&b).map_err(|e| CliError::msg(format!("invalid JSON from daemon: {e}")))
}

/// Create the container, pulling the image first when missing (per --pull).
async fn create_container(
    client: &Client,
    opts: &CreateOpts,
    path: &str,
    detach: bool,
) -> Result<String, CliError> {
    let built = opts.build(path, detach)?;
    if opts.mac_address.is_some() && crate::client::parse_version(&client.api_version) < (1, 44) {
        return Err(CliError::msg(format!(
            "\"specify mac-address per network\" requires API version 1.44, but the Docker daemon API version is {}",
            client.api_version
        )));
    }
    if let Some(f) = &opts.cidfile
        && std::path::Path::new(f).exists()
    {
        return Err(engine_err(
            path,
            &format!(
                "container ID file found, make sure the other container isn't running or delete {f}"
            ),
        ));
    }
    let mut q = Vec::new();
    if let Some(n) = &built.name {
        q.push(format!("name={}", urlencode(n)));
    }
    if let Some(p) = &opts.platform {
        q.push(format!("platform={}", urlencode(p)));
    }
    let qs = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    let body = bytes::Bytes::from(built.body.to_string());
    let image = &built.image;
    let tagged = reference_with_tag(image);
    if opts.pull == "always" {
        pull(client, &tagged, opts.platform.as_deref(), path, opts.quiet).await?;
    }
    let r = client
        .raw(
            Method::POST,
            &format!("/containers/create{qs}"),
            Some(body.clone()),
        )
        .await;
    if client.refused_unverified(&r).await {
        // Nothing happened yet: the caller negotiates and runs the command again.
        return Err(CliError {
            renegotiate: true,
            ..CliError::msg("")
        });
    }
    let mut r = r?;
    if r.status == hyper::StatusCode::NOT_FOUND && r.message().contains("No such image") {
        if opts.pull == "never" {
            return Err(engine_err(
                path,
                &format!("Error response from daemon: {}", r.message()),
            ));
        }
        if !opts.quiet {
            eprintln!("Unable to find image '{tagged}' locally");
        }
        pull(client, &tagged, opts.platform.as_deref(), path, opts.quiet).await?;
        r = client
            .raw(Method::POST, &format!("/containers/create{qs}"), Some(body))
            .await?;
    }
    if !r.status.is_success() {
        return Err(engine_err(
            path,
            &format!("Error response from daemon: {}", r.message()),
        ));
    }
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if let Some(w) = v["Warnings"].as_array() {
        for w in w.iter().filter_map(Value::as_str) {
            eprintln!("WARNING: {w}");
        }
    }
    let id = v["Id"].as_str().unwrap_or_default().to_string();
    if let Some(f) = &opts.cidfile {
        std::fs::write(f, &id).map_err(|e| {
            engine_err(
                path,
                &format!("failed to write the container ID to the file: {e}"),
            )
        })?;
    }
    Ok(id)
}

/// "busybox" -> "busybox:latest" (digests and tags kept).
fn reference_with_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// POST /images/create (live progress on stderr, as docker run), errors as docker's run errors.
async fn pull(
    client: &Client,
    image: &str,
    platform: Option<&str>,
    path: &str,
    quiet: bool,
) -> Result<(), CliError> {
    let r = berth_types::Reference::parse_normalized(image)
        .map_err(|e| engine_err(path, &e.to_string()))?;
    super::registry::pull_image(client, &r, platform, quiet, true)
        .await
        .map_err(|e| engine_err(path, &e.message))
}

pub async fn create(client: &Client, path: &str, a: CreateArgs) -> Result<(), CliError> {
    let id = create_container(client, &a.opts, path, false).await?;
    out(&format!("{id}\n"))
}

/// What to wait for after start: "removed" with --rm so the name is free when we exit.
/// Returns once the daemon has registered the wait (its answer's head is in, as docker's
/// client waits for it), so a container that exits and is removed right after the start
/// cannot be missed; the handle resolves with the exit code.
async fn wait_task(
    client: Arc<Client>,
    id: String,
    condition: &'static str,
) -> tokio::task::JoinHandle<Result<i64, CliError>> {
    let path = format!(
        "/containers/{}/wait?condition={condition}",
        path_escape(&id)
    );
    let head = client.request_stream(Method::POST, &path, &[], None).await;
    tokio::spawn(async move {
        let body = match head? {
            Ok(body) => body
                .collect()
                .await
                .map_err(|_| crate::error::cannot_connect(&client.host_str))?
                .to_bytes(),
            Err(r) => return Err(CliError::daemon(r.message())),
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(m) = v["Error"]["Message"].as_str()
            && !m.is_empty()
        {
            return Err(CliError::msg(m.to_string()));
        }
        Ok(v["StatusCode"].as_i64().unwrap_or(0))
    })
}

pub async fn run(client: Client, path: &str, a: RunArgs) -> Result<(), CliError> {
    let sig_proxy = bool_flag(&a.sig_proxy, "--sig-proxy", path)?;
    let o = &a.opts;
    if a.detach && o.rm {
        // Allowed since API 1.25; the daemon removes it.
    }
    let keys = stdio::detach_keys_or_default(a.detach_keys.as_deref());
    let attach_stdin = !a.detach
        && (o.interactive
            && (o.attach.is_empty() || o.attach.iter().any(|s| s.eq_ignore_ascii_case("stdin"))));
    if o.tty && attach_stdin && !stdio::is_tty(0) {
        return Err(CliError::msg("the input device is not a TTY"));
    }
    let client = Arc::new(client);
    let id = create_container(&client, o, path, a.detach).await?;
    if a.detach {
        // docker prints the ID before starting, so it shows even when start fails.
        out(&format!("{id}\n"))?;
        post(
            &client,
            &format!("/containers/{}/start", path_escape(&id)),
            None,
        )
        .await
        .map_err(|e| run_error(path, &e.message, start_error_code(&e.message)))?;
        return Ok(());
    }
    let mut q = format!("/containers/{}/attach?stream=1", path_escape(&id));
    let (want_out, want_err) = if o.attach.is_empty() {
        (true, true)
    } else {
        (
            o.attach.iter().any(|s| s.eq_ignore_ascii_case("stdout")),
            o.attach.iter().any(|s| s.eq_ignore_ascii_case("stderr")),
        )
    };
    if attach_stdin {
        q.push_str("&stdin=1");
    }
    if want_out {
        q.push_str("&stdout=1");
    }
    if want_err {
        q.push_str("&stderr=1");
    }
    if let Some(k) = &a.detach_keys {
        q.push_str(&format!("&detachKeys={}", urlencode(k)));
    }
    // Attach and register the wait before start, so no output and no exit is missed
    // (docker's order); the two do not depend on each other.
    let (hijacked, waiter) = tokio::join!(
        client.hijack("POST", &q, None),
        wait_task(
            client.clone(),
            id.clone(),
            if o.rm { "removed" } else { "next-exit" },
        )
    );
    let hijacked = hijacked?;
    let raw = if o.tty && attach_stdin {
        stdio::RawTerm::enable(0)
    } else {
        None
    };
    if let Err(e) = post(
        &client,
        &format!("/containers/{}/start", path_escape(&id)),
        None,
    )
    .await
    {
        drop(raw);
        let code = start_error_code(&e.message);
        if o.rm {
            let _ = waiter.await;
        }
        return Err(run_error(path, &e.message, code));
    }
    let ended = stdio::container_session(
        &client,
        &id,
        hijacked,
        o.tty,
        attach_stdin,
        sig_proxy,
        &keys,
    )
    .await;
    drop(raw);
    match ended? {
        // docker 28 detaches silently.
        Ended::Detached => Ok(()),
        Ended::Eof => match waiter.await {
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(code)) => Err(CliError::silent(code as i32)),
            Ok(Err(e)) => Err(CliError::new(e.message, 125)),
            Err(e) => Err(CliError::msg(e.to_string())),
        },
    }
}

pub async fn start(client: Client, _path: &str, a: StartArgs) -> Result<(), CliError> {
    if !(a.attach || a.interactive) {
        let mut errs = Vec::new();
        let mut failed = Vec::new();
        for n in &a.args {
            let p = format!("/containers/{}/start", path_escape(n));
            match post(&client, &p, None).await {
                Ok(_) => out(&format!("{n}\n"))?,
                Err(e) => {
                    errs.push(e.message);
                    failed.push(n.as_str());
                }
            }
        }
        if !errs.is_empty() {
            // docker 28 prints each daemon error, then the ones that failed.
            errs.push(format!(
                "Error: failed to start containers: {}",
                failed.join(", ")
            ));
            return Err(CliError::msg(errs.join("\n")));
        }
        return Ok(());
    }
    if a.args.len() > 1 {
        return Err(CliError::msg(
            "you cannot start and attach multiple containers at once",
        ));
    }
    let client = Arc::new(client);
    let name = &a.args[0];
    let info = get(&client, &format!("/containers/{}/json", path_escape(name))).await?;
    let id = info["Id"].as_str().unwrap_or(name).to_string();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = a.interactive && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let keys = stdio::detach_keys_or_default(a.detach_keys.as_deref());
    let (h, waiter) = tokio::join!(
        stdio::attach_output(&client, &id, stdin, a.detach_keys.as_deref()),
        wait_task(client.clone(), id.clone(), "next-exit")
    );
    let h = h?;
    let raw = if tty && stdin {
        stdio::RawTerm::enable(0)
    } else {
        None
    };
    if let Err(e) = post(
        &client,
        &format!("/containers/{}/start", path_escape(&id)),
        None,
    )
    .await
    {
        drop(raw);
        return Err(e);
    }
    let ended = stdio::container_session(&client, &id, h, tty, stdin, true, &keys).await;
    drop(raw);
    match ended? {
        // docker 28 detaches silently.
        Ended::Detached => Ok(()),
        Ended::Eof => match waiter.await {
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(c)) => Err(CliError::silent(c as i32)),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(CliError::msg(e.to_string())),
        },
    }
}

pub async fn attach(client: Client, path: &str, a: AttachArgs) -> Result<(), CliError> {
    let sig_proxy = bool_flag(&a.sig_proxy, "--sig-proxy", path)?;
    let client = Arc::new(client);
    let name = &a.args[0];
    let info = get(&client, &format!("/containers/{}/json", path_escape(name))).await?;
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        return Err(CliError::msg(
            "You cannot attach to a stopped container, start it first",
        ));
    }
    if info["State"]["Paused"].as_bool().unwrap_or(false) {
        return Err(CliError::msg(
            "You cannot attach to a paused container, unpause it first",
        ));
    }
    let id = info["Id"].as_str().unwrap_or(name).to_string();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    if tty && stdin && !stdio::is_tty(0) {
        return Err(CliError::msg("the input device is not a TTY"));
    }
    let keys = stdio::detach_keys_or_default(a.detach_keys.as_deref());
    let h = stdio::attach_output(&client, &id, stdin, a.detach_keys.as_deref()).await?;
    let raw = if tty && stdin {
        stdio::RawTerm::enable(0)
    } else {
        None
    };
    if tty && let Some((h, w)) = stdio::term_size() {
        // Like docker: a size one larger first, so a shell redraws its prompt on reattach;
        // the monitor then sets the real size.
        let _ = client
            .raw(
                Method::POST,
                &format!(
                    "/containers/{}/resize?h={}&w={}",
                    path_escape(&id),
                    h + 1,
                    w + 1
                ),
                None,
            )
            .await;
    }
    let ended = stdio::container_session(&client, &id, h, tty, stdin, sig_proxy, &keys).await;
    drop(raw);
    match ended? {
        // `attach` (unlike `run`) reports the detach and exits 1, as docker 28 does.
        Ended::Detached => Err(CliError::msg("read escape sequence")),
        Ended::Eof => {
            // The exit code of the container becomes ours, as docker attach does.
            let v = get(&client, &format!("/containers/{}/json", path_escape(&id))).await?;
            match v["State"]["ExitCode"].as_i64().unwrap_or(0) {
                0 => Ok(()),
                c => Err(CliError::silent(c as i32)),
            }
        }
    }
}

pub async fn exec(client: Client, _path: &str, a: ExecArgs) -> Result<(), CliError> {
    let client = Arc::new(client);
    let name = &a.args[0];
    let cmd: Vec<String> = a.args[1..].to_vec();
    let mut env: Vec<String> = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            CliError::new(
                format!("open {f}: {}", crate::commands::opts::io_text(&e)),
                EXIT_USAGE,
            )
        })?;
        env.extend(
            text.lines()
                .map(str::trim_start)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    env.extend(a.env.iter().cloned());
    let stdin = a.interactive && !a.detach;
    // docker looks the container up before checking the terminal.
    get(&client, &format!("/containers/{}/json", path_escape(name))).await?;
    if a.tty && stdin && !stdio::is_tty(0) {
        return Err(CliError::msg("the input device is not a TTY"));
    }
    let body = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": stdin,
        "AttachStderr": !a.detach,
        "AttachStdout": !a.detach,
        "Detach": a.detach,
        "DetachKeys": a.detach_keys.clone().unwrap_or_default(),
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": cmd,
    });
    let v = post(
        &client,
        &format!("/containers/{}/exec", path_escape(name)),
        Some(&body),
    )
    .await?;
    let exec_id = v["Id"].as_str().unwrap_or_default().to_string();
    if a.detach {
        post(
            &client,
            &format!("/exec/{exec_id}/start"),
            Some(&json!({"Detach": true, "Tty": a.tty})),
        )
        .await?;
        return Ok(());
    }
    let keys = stdio::detach_keys_or_default(a.detach_keys.as_deref());
    let start_body = json!({"Detach": false, "Tty": a.tty}).to_string();
    let h = client
        .hijack("POST", &format!("/exec/{exec_id}/start"), Some(&start_body))
        .await?;
    let raw = if a.tty && stdin {
        stdio::RawTerm::enable(0)
    } else {
        None
    };
    let resize = a
        .tty
        .then(|| stdio::monitor_resize(client.clone(), "exec", exec_id.clone()));
    let ended = stdio::pump(h, a.tty, stdin, &keys).await;
    drop(raw);
    if let Some(t) = resize {
        t.abort();
    }
    if ended? == Ended::Detached {
        return Err(CliError::msg("read escape sequence"));
    }
    let v = get(&client, &format!("/exec/{exec_id}/json")).await?;
    match v["ExitCode"].as_i64().unwrap_or(0) {
        0 => Ok(()),
        c => Err(CliError::silent(c as i32)),
    }
}

/// Apply `f` to each named container; print the name on success, collect daemon errors.
async fn each<F, Fut>(names: &[String], f: F) -> Result<(), CliError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, CliError>>,
{
    let mut errs = Vec::new();
    for n in names {
        match f(n.clone()).await {
            Ok(Some(line)) => out(&format!("{line}\n"))?,
            Ok(None) => {}
            Err(e) => errs.push(e.message),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(CliError::msg(errs.join("\n")))
    }
}

pub async fn stop(client: &Client, a: StopArgs, restart: bool) -> Result<(), CliError> {
    let mut q = Vec::new();
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", urlencode(s)));
    }
    if let Some(t) = a.time {
        q.push(format!("t={t}"));
    }
    let qs = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    let verb = if restart { "restart" } else { "stop" };
    each(&a.args, |n| {
        let p = format!("/containers/{}/{verb}{qs}", path_escape(&n));
        async move { post(client, &p, None).await.map(|_| Some(n)) }
    })
    .await
}

pub async fn kill(client: &Client, a: KillArgs) -> Result<(), CliError> {
    let qs = a
        .signal
        .as_ref()
        .map(|s| format!("?signal={}", urlencode(s)))
        .unwrap_or_default();
    each(&a.args, |n| {
        let p = format!("/containers/{}/kill{qs}", path_escape(&n));
        async move { post(client, &p, None).await.map(|_| Some(n)) }
    })
    .await
}

pub async fn simple(client: &Client, verb: &str, names: &[String]) -> Result<(), CliError> {
    each(names, |n| {
        let p = format!("/containers/{}/{verb}", path_escape(&n));
        async move { post(client, &p, None).await.map(|_| Some(n)) }
    })
    .await
}

pub async fn rm(client: &Client, a: RmArgs) -> Result<(), CliError> {
    let q = format!(
        "?v={}&link={}&force={}",
        a.volumes as u8, a.link as u8, a.force as u8
    );
    each(&a.args, |n| {
        let p = format!("/containers/{}{q}", path_escape(&n));
        async move {
            let r = client.raw(Method::DELETE, &p, None).await?;
            if r.status.is_success() {
                return Ok(Some(n));
            }
            // rm -f of a missing container is reported but not a failure (docker 28).
            if a.force && r.status == hyper::StatusCode::NOT_FOUND {
                eprintln!("Error response from daemon: {}", r.message());
                return Ok(None);
            }
            Err(CliError::daemon(r.message()))
        }
    })
    .await
}

pub async fn wait(client: &Client, names: &[String]) -> Result<(), CliError> {
    each(names, |n| {
        let p = format!("/containers/{}/wait", path_escape(&n));
        async move {
            let v = post(client, &p, None).await?;
            Ok(Some(v["StatusCode"].as_i64().unwrap_or(0).to_string()))
        }
    })
    .await
}

pub async fn rename(client: &Client, args: &[String]) -> Result<(), CliError> {
    let (old, new) = (&args[0], &args[1]);
    if new.trim().is_empty() || old.trim().is_empty() {
        return Err(CliError::msg(
            "Error: neither old nor new names may be empty",
        ));
    }
    post(
        client,
        &format!(
            "/containers/{}/rename?name={}",
            path_escape(old),
            urlencode(new)
        ),
        None,
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        CliError::msg(format!(
            "{}\nError: failed to rename container named {old}",
            e.message
        ))
    })
}

pub async fn logs(client: &Client, a: LogsArgs) -> Result<(), CliError> {
    let name = &a.args[0];
    let info = get(client, &format!("/containers/{}/json", path_escape(name))).await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = format!(
        "/containers/{}/logs?stdout=1&stderr=1&tail={}",
        path_escape(name),
        urlencode(&a.tail)
    );
    for (on, k) in [
        (a.follow, "follow"),
        (a.timestamps, "timestamps"),
        (a.details, "details"),
    ] {
        if on {
            q.push_str(&format!("&{k}=1"));
        }
    }
    for (v, k) in [(&a.since, "since"), (&a.until, "until")] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", urlencode(&timestamp_arg(v, k)?)));
        }
    }
    let mut body = client.get_stream(&q).await?;
    let mut demux = stdio::Demux::new(tty);
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            match demux.feed(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// docker's GetTimestamp: durations ("42m") are relative to now, RFC 3339 and shorter local
/// dates are converted, "seconds[.nanos]" pass as they are; anything else is refused.
fn timestamp_arg(v: &str, flag: &str) -> Result<String, CliError> {
    use chrono::TimeZone;
    let fmt = |t: chrono::DateTime<chrono::Utc>| {
        format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
    };
    if let Ok(ns) = berth_types::duration::parse(v) {
        return Ok(fmt(chrono::Utc::now() - chrono::Duration::nanoseconds(ns)));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(fmt(t.with_timezone(&chrono::Utc)));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(v, f)
            && let Some(t) = chrono::Local.from_local_datetime(&n).single()
        {
            return Ok(fmt(t.with_timezone(&chrono::Utc)));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        && let Some(n) = d.and_hms_opt(0, 0, 0)
        && let Some(t) = chrono::Local.from_local_datetime(&n).single()
    {
        return Ok(fmt(t.with_timezone(&chrono::Utc)));
    }
    let (sec, frac) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(sec) && digits(frac) {
        return Ok(v.to_string());
    }
    Err(CliError::msg(format!(
        "invalid value for \"{flag}\": failed to parse value as time or duration: \"{v}\""
    )))
}

pub async fn top(client: &Client, a: TopArgs) -> Result<(), CliError> {
    let name = &a.args[0];
    let mut p = format!("/containers/{}/top", path_escape(name));
    if a.args.len() > 1 {
        p.push_str(&format!("?ps_args={}", urlencode(&a.args[1..].join(" "))));
    }
    let v = get(client, &p).await?;
    let mut tw = crate::format::tabwriter::TabWriter::new(20, 1);
    let titles: Vec<&str> = v["Titles"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    tw.write_str(&format!("{}\n", titles.join("\t")));
    for p in v["Processes"].as_array().into_iter().flatten() {
        let cells: Vec<&str> = p
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        tw.write_str(&format!("{}\n", cells.join("\t")));
    }
    out(&tw.flush())
}

pub async fn port(client: &Client, a: PortArgs) -> Result<(), CliError> {
    let name = &a.args[0];
    let v = get(client, &format!("/containers/{}/json", path_escape(name))).await?;
    let ports = v["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut lines = Vec::new();
    if let Some(want) = a.args.get(1) {
        let key = if want.contains('/') {
            want.clone()
        } else {
            format!("{want}/tcp")
        };
        match ports.get(&key).and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                for b in list {
                    lines.push(host_port(b));
                }
            }
            _ => {
                return Err(CliError::msg(format!(
                    "Error: No public port '{want}' published for {name}"
                )));
            }
        }
    } else {
        let mut keys: Vec<&String> = ports.keys().collect();
        keys.sort_by_key(|k| {
            let (n, p) = k.split_once('/').unwrap_or((k, ""));
            (n.parse::<u32>().unwrap_or(0), p.to_string())
        });
        for k in keys {
            for b in ports[k].as_array().into_iter().flatten() {
                lines.push(format!("{k} -> {}", host_port(b)));
            }
        }
    }
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    out(&s)
}

fn host_port(b: &Value) -> String {
    let ip = b["HostIp"].as_str().unwrap_or("");
    let port = b["HostPort"].as_str().unwrap_or("");
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub async fn update(client: &Client, path: &str, a: UpdateArgs) -> Result<(), CliError> {
    let mut body = serde_json::Map::new();
    let size = |flag: &str, v: &Option<String>| -> Result<Option<i64>, CliError> {
        match v {
            None => Ok(None),
            Some(s) if s == "-1" => Ok(Some(-1)),
            Some(s) => crate::commands::opts::ram_in_bytes(s).map(Some).map_err(|e| {
                CliError::new(
                    format!("invalid argument \"{s}\" for \"{flag}\" flag: {e}\n\nUsage:  {}\n\nRun 'berth {path} --help' for more information", crate::cli::usage(path)),
                    EXIT_USAGE,
                )
            }),
        }
    };
    if let Some(n) = size("-m, --memory", &a.memory)? {
        body.insert("Memory".into(), n.into());
    }
    if let Some(n) = size("--memory-swap", &a.memory_swap)? {
        body.insert("MemorySwap".into(), n.into());
    }
    if let Some(n) = size("--memory-reservation", &a.memory_reservation)? {
        body.insert("MemoryReservation".into(), n.into());
    }
    if let Some(c) = a.cpu_shares {
        body.insert("CpuShares".into(), c.into());
    }
    if let Some(c) = &a.cpus {
        let f: f64 = c.parse().map_err(|_| {
            CliError::new(
                format!(
                    "invalid argument \"{c}\" for \"--cpus\" flag: failed to parse {c} as a rational number\n\nUsage:  {}\n\nRun 'berth {path} --help' for more information",
                    crate::cli::usage(path)
                ),
                EXIT_USAGE,
            )
        })?;
        body.insert("NanoCpus".into(), ((f * 1e9).round() as i64).into());
    }
    if let Some(c) = &a.cpuset_cpus {
        body.insert("CpusetCpus".into(), c.clone().into());
    }
    if let Some(p) = a.pids_limit {
        body.insert("PidsLimit".into(), p.into());
    }
    if a.blkio_weight != 0 {
        body.insert("BlkioWeight".into(), a.blkio_weight.into());
    }
    for (k, v) in [
        ("CpuPeriod", a.cpu_period),
        ("CpuQuota", a.cpu_quota),
        ("CpuRealtimePeriod", a.cpu_rt_period),
        ("CpuRealtimeRuntime", a.cpu_rt_runtime),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), v.into());
        }
    }
    if let Some(m) = &a.cpuset_mems {
        body.insert("CpusetMems".into(), m.clone().into());
    }
    if let Some(r) = &a.restart {
        let p = crate::commands::opts::parse_restart(r).map_err(CliError::msg)?;
        body.insert("RestartPolicy".into(), p);
    }
    if body.is_empty() {
        return Err(CliError::msg(
            "you must provide one or more flags when using this command",
        ));
    }
    let body = Value::Object(body);
    let mut errs = Vec::new();
    for n in &a.args {
        match post(
            client,
            &format!("/containers/{}/update", path_escape(n)),
            Some(&body),
        )
        .await
        {
            Ok(v) => {
                for w in v["Warnings"].as_array().into_iter().flatten() {
                    if let Some(w) = w.as_str() {
                        eprintln!("{w}");
                    }
                }
                out(&format!("{n}\n"))?;
            }
            Err(e) => errs.push(e.message),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(CliError::msg(errs.join("\n")))
    }
}

pub async fn prune(client: &Client, a: ContainerPruneArgs) -> Result<(), CliError> {
    if !a.force {
        // docker asks on stdout.
        print!(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        if !matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(());
        }
    }
    let q = if a.filter.is_empty() {
        String::new()
    } else {
        format!("?filters={}", urlencode(&filters_json(&a.filter)?))
    };
    let v = post(client, &format!("/containers/prune{q}"), None).await?;
    let mut s = String::new();
    if let Some(ids) = v["ContainersDeleted"].as_array().filter(|a| !a.is_empty()) {
        s.push_str("Deleted Containers:\n");
        for id in ids.iter().filter_map(Value::as_str) {
            s.push_str(id);
            s.push('\n');
        }
        s.push('\n');
    }
    let space = v["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    s.push_str(&format!(
        "Total reclaimed space: {}\n",
        units::human_size(space)
    ));
    out(&s)
}

/// docker's Ellipsis: cut to `max` runes, the last one being "…".
fn ellipsis(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Go's strconv.Quote for the printable text docker shows.
fn go_quote(s: &str) -> String {
    crate::format::json::quote(s, false)
}

/// docker's DisplayablePorts: sorted by private port, IP, public port, type; consecutive
/// ports with the same IP and type (and public == private) fold into ranges; other host
/// mappings are listed last.
fn display_ports(ports: &[Value]) -> String {
    struct P {
        ip: String,
        private: i64,
        public: i64,
        kind: String,
    }
    let mut ps: Vec<P> = ports
        .iter()
        .map(|p| P {
            ip: p["IP"].as_str().unwrap_or("").to_string(),
            private: p["PrivatePort"].as_i64().unwrap_or(0),
            public: p["PublicPort"].as_i64().unwrap_or(0),
            kind: p["Type"].as_str().unwrap_or("tcp").to_string(),
        })
        .collect();
    ps.sort_by(|a, b| {
        (a.private, &a.ip, a.public, &a.kind).cmp(&(b.private, &b.ip, b.public, &b.kind))
    });
    let form = |key: &str, first: i64, last: i64| {
        let (ip, kind) = match key.rsplit_once('/') {
            Some((ip, k)) => (ip, k),
            None => ("", key),
        };
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if !ip.is_empty() {
            g = format!("{ip}:{g}->{g}");
        }
        format!("{g}/{kind}")
    };
    let mut groups: Vec<(String, i64, i64)> = Vec::new();
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    for p in &ps {
        let mut key = p.kind.clone();
        if !p.ip.is_empty() {
            if p.public != p.private {
                let host = if p.ip.contains(':') {
                    format!("[{}]:{}", p.ip, p.public)
                } else {
                    format!("{}:{}", p.ip, p.public)
                };
                mappings.push(format!("{host}->{}/{}", p.private, p.kind));
                continue;
            }
            key = format!("{}/{}", p.ip, p.kind);
        }
        match groups.iter_mut().find(|g| g.0 == key) {
            None => groups.push((key, p.private, p.private)),
            Some(g) if p.private == g.2 + 1 => g.2 = p.private,
            Some(g) => {
                result.push(form(&g.0, g.1, g.2));
                g.1 = p.private;
                g.2 = p.private;
            }
        }
    }
    for g in &groups {
        result.push(form(&g.0, g.1, g.2));
    }
    result.extend(mappings);
    result.join(", ")
}

fn ps_row(c: &Value, trunc: bool) -> Row {
    let id = c["Id"].as_str().unwrap_or("");
    let image = c["Image"].as_str().unwrap_or("");
    let image = if trunc {
        let image_id = c["ImageID"].as_str().unwrap_or("");
        if short_id(image_id) == short_id(image) && image.starts_with("sha256:") {
            short_id(image)
        } else {
            image.split('@').next().unwrap_or(image).to_string()
        }
    } else {
        image.to_string()
    };
    let command = c["Command"].as_str().unwrap_or("");
    let command = if trunc {
        ellipsis(command, 20)
    } else {
        command.to_string()
    };
    let names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !trunc || !n.contains('/'))
        .collect();
    let created = c["Created"].as_i64().unwrap_or(0);
    // docker's Size(): "0B" without sizes; "(virtual ...)" only when the root fs size is known.
    let rw = c["SizeRw"].as_f64().unwrap_or(0.0);
    let root = c["SizeRootFs"].as_f64().unwrap_or(0.0);
    let size = if root > 0.0 {
        format!(
            "{} (virtual {})",
            units::human_size_with_precision(rw, 3),
            units::human_size_with_precision(root, 3)
        )
    } else {
        units::human_size_with_precision(rw, 3)
    };
    let mut labels: Vec<String> = c["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let networks: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let n = m["Name"].as_str().unwrap_or("");
            let n = if n.is_empty() {
                m["Source"].as_str().unwrap_or("")
            } else {
                n
            };
            if trunc {
                ellipsis(n, 15)
            } else {
                n.to_string()
            }
        })
        .collect();
    Row::new()
        .with(
            "ID",
            "CONTAINER ID",
            if trunc { short_id(id) } else { id.to_string() },
        )
        .with("Image", "IMAGE", image)
        .with("Command", "COMMAND", go_quote(&command))
        .with("CreatedAt", "CREATED AT", units::go_time_string(created))
        .with("RunningFor", "CREATED", units::since_unix(created))
        .with("Platform", "PLATFORM", gtmpl::Value::Nil)
        .with(
            "Ports",
            "PORTS",
            display_ports(c["Ports"].as_array().map_or(&[][..], |v| v)),
        )
        .with(
            "State",
            "STATE",
            c["State"].as_str().unwrap_or("").to_string(),
        )
        .with(
            "Status",
            "STATUS",
            c["Status"].as_str().unwrap_or("").to_string(),
        )
        .with("Size", "SIZE", size)
        .with("Names", "NAMES", names.join(","))
        .with("Labels", "LABELS", labels.join(","))
        .with("Mounts", "MOUNTS", mounts.join(","))
        .with("Networks", "NETWORKS", networks.join(","))
        .with("LocalVolumes", "LOCAL VOLUMES", mounts.len().to_string())
}

pub async fn ps(client: &Client, a: PsArgs) -> Result<(), CliError> {
    let mut q = Vec::new();
    let all = a.all || a.latest || a.last > 0;
    if all {
        q.push("all=1".to_string());
    }
    if a.latest {
        q.push("limit=1".into());
    } else if a.last > 0 {
        q.push(format!("limit={}", a.last));
    }
    let size = a.size || (a.format.contains(".Size") && !a.quiet);
    if size {
        q.push("size=1".into());
    }
    if !a.filter.is_empty() {
        q.push(format!("filters={}", urlencode(&filters_json(&a.filter)?)));
    }
    let qs = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    let v = get(client, &format!("/containers/json{qs}")).await?;
    let list = v.as_array().cloned().unwrap_or_default();
    let mut default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_string();
    if a.size {
        default.push_str("\t{{.Size}}");
    }
    let user = if a.quiet && a.format.is_empty() {
        "{{.ID}}"
    } else {
        a.format.as_str()
    };
    let fmt = Format::new(user, &default).typed("*formatter.ContainerContext");
    let rows: Vec<Row> = list.iter().map(|c| ps_row(c, !a.no_trunc)).collect();
    let header = ps_row(&json!({}), true);
    out(&fmt.render_rows(&rows, &header).map_err(CliError::msg)?)
}

fn calc_stats(v: &Value) -> (f64, f64, f64, f64, f64, f64, f64, f64, i64) {
    let cpu = &v["cpu_stats"];
    let pre = &v["precpu_stats"];
    let cpu_delta = cpu["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0)
        - pre["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0);
    let sys_delta = cpu["system_cpu_usage"].as_f64().unwrap_or(0.0)
        - pre["system_cpu_usage"].as_f64().unwrap_or(0.0);
    let online = cpu["online_cpus"]
        .as_f64()
        .filter(|n| *n > 0.0)
        .unwrap_or_else(|| {
            cpu["cpu_usage"]["percpu_usage"]
                .as_array()
                .map_or(1.0, |a| a.len().max(1) as f64)
        });
    let cpu_pct = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mem = &v["memory_stats"];
    let usage = mem["usage"].as_f64().unwrap_or(0.0);
    // docker subtracts page cache: total_inactive_file (v1) or inactive_file (v2).
    let cache = mem["stats"]["total_inactive_file"]
        .as_f64()
        .filter(|c| *c < usage)
        .or_else(|| {
            mem["stats"]["inactive_file"]
                .as_f64()
                .filter(|c| *c < usage)
        })
        .unwrap_or(0.0);
    let used = usage - cache;
    let limit = mem["limit"].as_f64().unwrap_or(0.0);
    let mem_pct = if limit > 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in v["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        rx += n["rx_bytes"].as_f64().unwrap_or(0.0);
        tx += n["tx_bytes"].as_f64().unwrap_or(0.0);
    }
    let (mut br, mut bw) = (0.0, 0.0);
    for e in v["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().unwrap_or("").to_ascii_lowercase().as_str() {
            "read" => br += e["value"].as_f64().unwrap_or(0.0),
            "write" => bw += e["value"].as_f64().unwrap_or(0.0),
            _ => {}
        }
    }
    let pids = v["pids_stats"]["current"].as_i64().unwrap_or(0);
    (cpu_pct, used, limit, mem_pct, rx, tx, br, bw, pids)
}

/// `label` is what `{{.Container}}` shows: the name or ID as the user gave it.
fn stats_row(id: &str, name: &str, v: Option<&Value>, trunc: bool, label: &str) -> Row {
    let id = if trunc { short_id(id) } else { id.to_string() };
    let name = name.trim_start_matches('/').to_string();
    let label = label.to_string();
    let Some(v) = v else {
        return Row::new()
            .with("Container", "CONTAINER", label)
            .with("ID", "CONTAINER ID", id)
            .with("Name", "NAME", name)
            .with("CPUPerc", "CPU %", "--")
            .with("MemUsage", "MEM USAGE / LIMIT", "-- / --")
            .with("MemPerc", "MEM %", "--")
            .with("NetIO", "NET I/O", "--")
            .with("BlockIO", "BLOCK I/O", "--")
            .with("PIDs", "PIDS", "--");
    };
    let (cpu, used, limit, memp, rx, tx, br, bw, pids) = calc_stats(v);
    Row::new()
        .with("Container", "CONTAINER", label)
        .with("ID", "CONTAINER ID", id)
        .with("Name", "NAME", name)
        .with("CPUPerc", "CPU %", format!("{cpu:.2}%"))
        .with(
            "MemUsage",
            "MEM USAGE / LIMIT",
            format!("{} / {}", units::bytes_size(used), units::bytes_size(limit)),
        )
        .with("MemPerc", "MEM %", format!("{memp:.2}%"))
        .with(
            "NetIO",
            "NET I/O",
            format!(
                "{} / {}",
                units::human_size_with_precision(rx, 3),
                units::human_size_with_precision(tx, 3)
            ),
        )
        .with(
            "BlockIO",
            "BLOCK I/O",
            format!(
                "{} / {}",
                units::human_size_with_precision(br, 3),
                units::human_size_with_precision(bw, 3)
            ),
        )
        .with("PIDs", "PIDS", pids.to_string())
}

/// The containers `stats` shows: (id, name, what `{{.Container}}` prints).
async fn stats_targets(
    client: &Client,
    a: &StatsArgs,
) -> Result<Vec<(String, String, String)>, CliError> {
    if a.args.is_empty() {
        let q = if a.all { "?all=1" } else { "" };
        let v = get(client, &format!("/containers/json{q}")).await?;
        return Ok(v
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let id = c["Id"].as_str().unwrap_or("").to_string();
                // docker labels listed containers by their short ID.
                let label = short_id(&id);
                (id, c["Names"][0].as_str().unwrap_or("").to_string(), label)
            })
            .collect());
    }
    let mut t = Vec::new();
    for n in &a.args {
        let v = get(client, &format!("/containers/{}/json", path_escape(n))).await?;
        t.push((
            v["Id"].as_str().unwrap_or("").to_string(),
            v["Name"].as_str().unwrap_or("").to_string(),
            n.clone(),
        ));
    }
    Ok(t)
}

type Latest = Arc<std::sync::Mutex<std::collections::HashMap<String, Value>>>;

/// Follow one container's stats stream, keeping its newest sample.
fn collect_stats(client: Arc<Client>, id: String, latest: Latest) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let Ok(mut body) = client
            .get_stream(&format!("/containers/{}/stats?stream=1", path_escape(&id)))
            .await
        else {
            return;
        };
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Some(d) = frame.data_ref() else { continue };
            buf.extend_from_slice(d);
            while let Some(p) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=p).collect();
                if let Ok(v) = serde_json::from_slice::<Value>(&line)
                    && let Ok(mut m) = latest.lock()
                {
                    m.insert(id.clone(), v);
                }
            }
        }
    })
}

/// `stats`: one sample per container (`--no-stream`), or docker's redraw every 500ms: cursor
/// home, the table, each line again with erase-to-end-of-line, then erase-below.
pub async fn stats(client: Client, a: StatsArgs) -> Result<(), CliError> {
    let default = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
    let fmt = Format::new(&a.format, default).typed("*formatter.statsContext");
    let header = stats_row("", "", None, true, "");
    let client = Arc::new(client);
    let targets = stats_targets(&client, &a).await?;
    if a.no_stream {
        // One sample each, fetched concurrently (each takes the daemon about a second).
        let samples = futures_util::future::join_all(targets.iter().map(|(id, _, _)| {
            let c = client.clone();
            let p = format!("/containers/{}/stats?stream=0", path_escape(id));
            async move { get(&c, &p).await.ok() }
        }))
        .await;
        let rows: Vec<Row> = targets
            .iter()
            .zip(samples.iter())
            .map(|((id, name, label), s)| stats_row(id, name, s.as_ref(), !a.no_trunc, label))
            .collect();
        return out(&fmt.render_rows(&rows, &header).map_err(CliError::msg)?);
    }
    let latest: Latest = Default::default();
    let mut tasks: std::collections::HashMap<String, tokio::task::JoinHandle<()>> =
        Default::default();
    let mut targets = targets;
    loop {
        for (id, _, _) in &targets {
            tasks
                .entry(id.clone())
                .or_insert_with(|| collect_stats(client.clone(), id.clone(), latest.clone()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let rows: Vec<Row> = {
            let m = latest
                .lock()
                .map_err(|_| CliError::msg("stats collector failed"))?;
            targets
                .iter()
                .map(|(id, name, label)| stats_row(id, name, m.get(id), !a.no_trunc, label))
                .collect()
        };
        let text = format!(
            "\x1b[H{}",
            fmt.render_rows(&rows, &header).map_err(CliError::msg)?
        );
        let mut frame = text.clone();
        for line in text.split('\n') {
            frame.push_str(line);
            frame.push_str(" \x1b[K\n");
        }
        frame.push_str("\x1b[J");
        out(&frame)?;
        if a.args.is_empty() {
            // Follow containers that start or go away, as docker does through events.
            if let Ok(t) = stats_targets(&client, &a).await {
                tasks.retain(|id, task| {
                    let keep = t.iter().any(|(i, _, _)| i == id);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                targets = t;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_display_like_docker() {
        let ports = json!([
            {"PrivatePort": 80, "Type": "tcp"},
            {"PrivatePort": 81, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 90, "PublicPort": 9000, "Type": "udp"},
            {"IP": "0.0.0.0", "PrivatePort": 443, "PublicPort": 443, "Type": "tcp"},
        ]);
        assert_eq!(
            display_ports(ports.as_array().unwrap()),
            "80-81/tcp, 0.0.0.0:443->443/tcp, 0.0.0.0:9000->90/udp"
        );
        assert_eq!(
            ellipsis("sh -c 'echo start; sleep'", 20),
            "sh -c 'echo start; …"
        );
    }
}
