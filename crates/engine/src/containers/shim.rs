//! Talking to `berth-shim`: spawning `berth-shim start`, one-request connections to
//! `<state-dir>/shim.sock`, and streams (attach/exec) forwarded to hijacked clients.

use std::path::{Path, PathBuf};

use berth_shim_proto::{self as proto, Reply, Request, StartResult};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::{Error, Result};

/// `BERTH_SHIM`, else `berth-shim` next to the running executable.
pub fn shim_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_SHIM") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("berth-shim")))
        .unwrap_or_else(|| PathBuf::from("berth-shim"))
}

pub struct StartArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub state_dir: &'a Path,
    pub runtime_root: &'a Path,
    /// An external OCI runtime (`--runtime`); None = the shim's built-in libcontainer.
    pub runtime: Option<&'a crate::Runtime>,
    pub log_path: Option<&'a Path>,
    pub log_max_size: Option<u64>,
    pub log_max_file: Option<u32>,
    pub tty: bool,
    pub stdin: bool,
    /// `--network none`: the shim brings `lo` up in the container's new netns.
    pub loopback_up: bool,
}

/// The `berth-shim start` flags for `a` (`--create-only`: the container then waits for a
/// `start` request).
fn start_flags(a: &StartArgs<'_>) -> Vec<String> {
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let mut v: Vec<String> = vec![
        "--id".into(),
        a.id.into(),
        "--bundle".into(),
        p(a.bundle),
        "--state-dir".into(),
        p(a.state_dir),
        "--runtime-root".into(),
        p(a.runtime_root),
        "--create-only".into(),
    ];
    if let Some(rt) = a.runtime {
        v.push("--runtime".into());
        v.push(rt.path.clone());
        for arg in &rt.args {
            v.push("--runtime-arg".into());
            v.push(arg.clone());
        }
    }
    match a.log_path {
        Some(lp) => {
            v.extend([
                "--log-driver".into(),
                "json-file".into(),
                "--log-path".into(),
                p(lp),
            ]);
            if let Some(s) = a.log_max_size {
                v.extend(["--log-max-size".into(), s.to_string()]);
            }
            if let Some(n) = a.log_max_file {
                v.extend(["--log-max-file".into(), n.to_string()]);
            }
        }
        None => v.extend(["--log-driver".into(), "none".into()]),
    }
    for (on, flag) in [
        (a.tty, "--tty"),
        (a.stdin, "--stdin"),
        (a.loopback_up, "--loopback-up"),
    ] {
        if on {
            v.push(flag.into());
        }
    }
    v
}

/// A pre-started `berth-shim pool` (issue #3: its exec and start-up, ~1.3 ms wall and ~0.7 ms
/// CPU, are off the path of a create). It sits in its own session like any shim (our child
/// until it ends: started without a detach fork, which cost every run CPU), blocked on
/// its stdin; our end of that pipe is close-on-exec and owned only by this process, so when
/// berthd exits (stop, crash, kill -9) the shim reads EOF and exits too.
struct Pooled {
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
}

/// How many shims wait in the pool (each ~0.4 MiB PSS while idle).
const POOL_SIZE: usize = 1;

static POOL: std::sync::Mutex<Vec<Pooled>> = std::sync::Mutex::new(Vec::new());

/// The daemon's exec root, named on each pooled shim's command line (`ps`, bench/ count them).
static POOL_EXEC_ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn pool_take() -> Option<Pooled> {
    POOL.lock().ok()?.pop()
}

/// Starts the pool (at daemon start-up); `BERTH_SHIM_POOL=0` turns it off (for A/B runs).
pub fn pool_start(exec_root: &Path) {
    if std::env::var_os("BERTH_SHIM_POOL").is_some_and(|v| v == "0") {
        return;
    }
    let _ = POOL_EXEC_ROOT.set(exec_root.to_path_buf());
    pool_fill();
}

/// Tops the pool up (after each create). Failing to start one only costs the next create the
/// plain spawn.
fn pool_fill() {
    let Some(exec_root) = POOL_EXEC_ROOT.get() else {
        return;
    };
    loop {
        match POOL.lock() {
            Ok(p) if p.len() < POOL_SIZE => {}
            _ => return,
        }
        let mut cmd = tokio::process::Command::new(shim_binary());
        cmd.arg("pool")
            .arg("--exec-root")
            .arg(exec_root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("starting a pooled berth-shim: {e}");
                return;
            }
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return;
        };
        // the pooled shim is this child itself (it makes its own session without forking,
        // since it is not a process group leader): reaped when it ends, on a pidfd; after our
        // own end it is reparented like any detached shim
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        match POOL.lock() {
            Ok(mut p) => p.push(Pooled { stdin, stdout }),
            Err(_) => return,
        }
    }
}

/// Create a container through `berth-shim`: a pooled shim when one is waiting, else a fresh
/// `berth-shim start`.
pub async fn spawn(a: &StartArgs<'_>) -> Result<StartResult> {
    let flags = start_flags(a);
    if let Some(mut p) = pool_take() {
        let mut req = serde_json::to_vec(&flags)
            .map_err(|e| Error::internal(format!("shim request: {e}")))?;
        req.push(b'\n');
        // a failed write means the pooled shim is gone (killed): it did nothing, so the
        // plain spawn below is safe
        if p.stdin.write_all(&req).await.is_ok() {
            drop(p.stdin);
            let mut line = String::new();
            let _ = BufReader::new(p.stdout).read_line(&mut line).await;
            tokio::spawn(async { pool_fill() });
            return proto::decode_line(line.trim_end().as_bytes())
                .map_err(|_| Error::internal(format!("berth-shim start failed: {}", line.trim())));
        }
    }
    let r = spawn_fresh(&flags).await;
    tokio::spawn(async { pool_fill() });
    r
}

/// `berth-shim start`; its result line.
async fn spawn_fresh(flags: &[String]) -> Result<StartResult> {
    let mut cmd = tokio::process::Command::new(shim_binary());
    cmd.arg("start").args(flags);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::internal(format!("starting berth-shim: {e}")))?;
    // `berth-shim start` writes one result line, then exits: take the line as soon as it is
    // there instead of waiting for the process to exit and be reaped (~0.5-1 ms of a
    // container start); the exit is collected in the background.
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line).await;
    }
    if let Ok(res) = proto::decode_line(line.trim_end().as_bytes()) {
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        return Ok(res);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::internal(format!("starting berth-shim: {e}")))?;
    Err(Error::internal(format!(
        "berth-shim start failed: {}{}{}",
        line.trim(),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Connect and send one request; return the reply and the connection (for streams).
pub async fn connect(state_dir: &Path, req: &Request) -> Result<(Reply, BufReader<UnixStream>)> {
    let sock = state_dir.join(proto::SOCKET_NAME);
    let mut s = UnixStream::connect(&sock)
        .await
        .map_err(|e| Error::internal(format!("connecting to shim: {e}")))?;
    s.write_all(&proto::encode_line(req))
        .await
        .map_err(|e| Error::internal(format!("shim request: {e}")))?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)
        .await
        .map_err(|e| Error::internal(format!("shim reply: {e}")))?;
    let reply: Reply = proto::decode_line(line.as_bytes())
        .map_err(|e| Error::internal(format!("bad shim reply {line:?}: {e}")))?;
    Ok((reply, r))
}

/// Sends one request without waiting for the reply (the shim handles it all the same).
pub async fn send(state_dir: &Path, req: &Request) -> Result<()> {
    let mut s = UnixStream::connect(state_dir.join(proto::SOCKET_NAME))
        .await
        .map_err(|e| Error::internal(format!("connecting to shim: {e}")))?;
    s.write_all(&proto::encode_line(req))
        .await
        .map_err(|e| Error::internal(format!("shim request: {e}")))
}

/// One request, one reply; shim-side errors become engine errors.
pub async fn request(state_dir: &Path, req: &Request) -> Result<Reply> {
    match connect(state_dir, req).await?.0 {
        Reply::Error { message, .. } => Err(Error::internal(message)),
        r => Ok(r),
    }
}

/// ctrl-p ctrl-q, Docker's default detach sequence.
const DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// Forward a shim stream (frames) to a client, and the client's input to the shim.
/// `tty`: the client gets raw payloads instead of Docker's multiplexed frames.
/// Returns the exec exit code when the stream carried one.
/// `on_exit` runs before the client's stream is closed (so an exec's exit code is recorded
/// before the client, which inspects it next, sees EOF).
pub async fn pump<C, F>(
    shim: BufReader<UnixStream>,
    client: C,
    tty: bool,
    forward_stdin: bool,
    close_stdin_on_eof: Option<PathBuf>,
    eof_ends_attach: bool,
    on_exit: F,
) where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: FnOnce(Option<i32>) + Send,
{
    let (mut sr, mut sw) = {
        let buffered = shim.buffer().to_vec();
        let s = shim.into_inner();
        let (r, w) = s.into_split();
        (std::io::Cursor::new(buffered).chain(r), w)
    };
    let (mut cr, mut cw) = tokio::io::split(client);
    // Docker's detach keys (ctrl-p ctrl-q) end the attach without closing the container's stdin
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        if !forward_stdin {
            // drain until the client goes away, never forwarding
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut cr, &mut sink).await;
            return Some(detached_tx);
        }
        let keys = DETACH_KEYS;
        let mut matched = 0usize;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if b == keys[matched] {
                    matched += 1;
                    if matched == keys.len() {
                        let _ = sw.write_all(&out).await;
                        let _ = detached_tx.send(());
                        return None;
                    }
                    continue;
                }
                // a partial match that did not complete is ordinary input
                out.extend_from_slice(&keys[..matched]);
                matched = 0;
                if b == keys[0] {
                    matched = 1;
                } else {
                    out.push(b);
                }
            }
            if sw.write_all(&out).await.is_err() {
                return Some(detached_tx);
            }
        }
        // dockerd: with a tty, the end of an attacher's input ends only its attach (the
        // docker CLI detaches by closing); the container's stdin stays open
        if eof_ends_attach {
            let _ = detached_tx.send(());
            return None;
        }
        // half-close: an exec's stdin sees EOF
        let _ = sw.shutdown().await;
        // an attach with StdinOnce closes the container's stdin on EOF (not on a detach)
        if let Some(sd) = close_stdin_on_eof {
            let _ = request(&sd, &Request::CloseStdin).await;
        }
        Some(detached_tx)
    });
    let mut exit = None;
    let mut buf = vec![0u8; proto::MAX_FRAME];
    loop {
        let mut h = [0u8; 8];
        // the input task keeps the sender alive when its input just ends, so this fires
        // only on a real detach
        let got = tokio::select! {
            r = sr.read_exact(&mut h) => r.is_ok(),
            _ = &mut detached => false,
        };
        if !got {
            break;
        }
        let Some((kind, len)) = proto::parse_frame_header(&h) else {
            break;
        };
        if len > buf.len() {
            buf.resize(len, 0);
        }
        if sr.read_exact(&mut buf[..len]).await.is_err() {
            break;
        }
        if kind == proto::FRAME_EXIT {
            exit = serde_json::from_slice::<proto::ExecExit>(&buf[..len])
                .ok()
                .map(|e| e.exit_code);
            break;
        }
        let ok = if tty {
            cw.write_all(&buf[..len]).await
        } else {
            match cw.write_all(&h).await {
                Ok(()) => cw.write_all(&buf[..len]).await,
                Err(e) => Err(e),
            }
        };
        if ok.is_err() || cw.flush().await.is_err() {
            break;
        }
    }
    on_exit(exit);
    let _ = cw.shutdown().await;
    input.abort();
}
