//! berth-shim-proto: what berthd and a `berth-shim` say to each other, and the files a shim
//! leaves in its state directory. Shared by both sides; it must stay tiny and free of
//! libcontainer, tokio and any I/O policy.
//!
//! # Starting a shim
//! The daemon runs `berth-shim start --id ID --bundle DIR --state-dir DIR [--tty] [--stdin]
//! [--create-only] --log-driver json-file|none --log-path FILE [--log-max-size BYTES
//! --log-max-file N] --runtime-root DIR [--runtime PATH [--runtime-arg ARG]...]` and waits for
//! that process to exit. Without `--runtime` the shim runs the container through libcontainer;
//! with it, through that OCI runtime binary's command line (runc's), with `--root` = the
//! runtime root. With
//! `--create-only` the container is created (namespaces, cgroup, rootfs, command validated) but
//! its process waits for a [`Request::Start`]: `docker run`/`start -a` attach first, then start,
//! so no output is missed. The command is checked at create time, so 127/126 come from here. It prints one [`StartResult`] JSON
//! line on stdout and exits 0 when the container runs, or [`StartErrorKind::exit_code`]
//! (127 / 126 / 125) otherwise. The shim itself has detached (new session, reparented away
//! from the daemon) and keeps running when the daemon dies.
//!
//! # State directory (`--state-dir`)
//! - `shim.sock`: the control socket (below).
//! - `shim.pid`, `init.pid`: decimal pids of the shim and of the container's init.
//! - `exit.json`: an [`ExitInfo`], written atomically (temp + rename) once the init exited and
//!   before any waiter is told. Present = the container is stopped, whether or not the shim is
//!   still alive. A daemon restarting finds live shims by connecting to `shim.sock`.
//!
//! # Control socket protocol (`<state-dir>/shim.sock`, SOCK_STREAM)
//! One connection per request. The client writes one [`Request`] as a JSON line (`\n`
//! terminated); the shim answers one [`Reply`] JSON line. Then:
//! - `attach` (reply `ok`) and `exec` (reply `exec_started`) turn the connection into a stream.
//!   Shim → client: frames with an 8-byte header `[kind, 0, 0, 0, len as u32 big-endian]` then
//!   `len` bytes. Kinds 1 (stdout) and 2 (stderr) are byte-for-byte Docker's multiplexed stream
//!   framing, so a daemon can forward them unchanged to a non-tty client (with a tty, strip the
//!   headers and send the payloads raw). Kind [`FRAME_EXIT`] ends an exec stream: its payload is
//!   an [`ExecExit`] JSON object. Client → shim: raw stdin bytes (if stdin was requested);
//!   shutting down the write side means stdin EOF (closes the container's stdin when
//!   `stdin_once`, always for exec). Attach streams end when the container's output ends.
//! - `wait`: the reply (an `exit`) comes when the container has exited (at once if it has).
//! - every other request: one reply, then the shim closes the connection.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Name of the control socket inside the state directory.
pub const SOCKET_NAME: &str = "shim.sock";
/// Exit record inside the state directory.
pub const EXIT_FILE: &str = "exit.json";
pub const SHIM_PID_FILE: &str = "shim.pid";
pub const INIT_PID_FILE: &str = "init.pid";

/// Stream frame kinds (shim → client).
pub const FRAME_STDOUT: u8 = 1;
pub const FRAME_STDERR: u8 = 2;
pub const FRAME_EXIT: u8 = 4;

/// Largest payload the shim puts in one frame.
pub const MAX_FRAME: usize = 32 * 1024;

/// A frame header: Docker's `[stream, 0, 0, 0, size BE]`.
pub fn frame_header(kind: u8, len: usize) -> [u8; 8] {
    let l = (len as u32).to_be_bytes();
    [kind, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// One request or reply as a JSON line, ready to write.
pub fn encode_line<T: Serialize>(msg: &T) -> Vec<u8> {
    // serializing these plain enums cannot fail; an empty object is a safe fallback
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

/// Parses one line (with or without its `\n`).
pub fn decode_line<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, serde_json::Error> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    serde_json::from_slice(line)
}

/// Parses a frame header; None if it is not one.
pub fn parse_frame_header(h: &[u8; 8]) -> Option<(u8, usize)> {
    if h[1] != 0 || h[2] != 0 || h[3] != 0 {
        return None;
    }
    Some((h[0], u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize))
}

/// What `berth-shim start` prints (one JSON line) before it exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StartResult {
    Started {
        shim_pid: i32,
        init_pid: i32,
    },
    Failed {
        kind: StartErrorKind,
        /// Docker-style message, e.g. `exec: "nosuch": executable file not found in $PATH`.
        message: String,
    },
}

/// Why a process could not be started; maps to Docker's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartErrorKind {
    /// The command does not exist (Docker: 127).
    NotFound,
    /// The command exists but cannot be executed (Docker: 126).
    PermissionDenied,
    /// Anything else (Docker: 125 / 500).
    Other,
}

impl StartErrorKind {
    /// The exit status `berth-shim start` uses (and `docker run` reports).
    pub fn exit_code(self) -> i32 {
        match self {
            StartErrorKind::NotFound => 127,
            StartErrorKind::PermissionDenied => 126,
            StartErrorKind::Other => 125,
        }
    }
}

/// Container status as the shim sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created with `--create-only`, waiting for a `start` request.
    Created,
    Running,
    Paused,
    Stopped,
}

/// `exit.json` and the answer to `wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit status, or 128 + signal number when killed by a signal.
    pub exit_code: i32,
    /// The kernel OOM killer killed a process of the container's cgroup.
    pub oom_killed: bool,
    /// RFC 3339 UTC with nanoseconds, e.g. `2024-01-01T00:00:00.123456789Z`.
    pub finished_at: String,
    /// Init pid it had.
    pub pid: i32,
}

/// Final frame of an exec stream and the answer to `exec_state` once finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecExit {
    pub exit_code: i32,
}

/// The identity a process runs as (the daemon resolves names inside the rootfs with
/// berth-runtime's `user::resolve`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// A process to run inside the running container (`docker exec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Daemon's exec ID; names the exec for `resize`/`exec_state`.
    pub id: String,
    pub args: Vec<String>,
    /// `KEY=VALUE`, added to / replacing the container's env.
    #[serde(default)]
    pub env: Vec<String>,
    /// Empty = the container's working directory.
    #[serde(default)]
    pub cwd: String,
    /// None = the container's user.
    #[serde(default)]
    pub user: Option<ExecUser>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
    /// `exec --privileged`: all capabilities.
    #[serde(default)]
    pub privileged: bool,
    /// `exec -d`: output discarded, the reply comes and the connection closes at once.
    #[serde(default)]
    pub detach: bool,
    /// Initial tty size (rows, columns), if known.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

/// Client → shim, one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Stream the container's stdio. Several attachers may be connected at once.
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdout: bool,
        #[serde(default)]
        stderr: bool,
        /// Close the container's stdin when this client's stdin ends (Docker's StdinOnce).
        #[serde(default)]
        stdin_once: bool,
    },
    /// Set the tty size of the container (`exec` None) or of an exec.
    Resize {
        #[serde(default)]
        exec: Option<String>,
        height: u16,
        width: u16,
    },
    /// Send a signal to the init (`all`: to every process of the container).
    Kill {
        signal: i32,
        #[serde(default)]
        all: bool,
    },
    /// Start a container created with `--create-only` (after attachers connected).
    Start,
    State,
    Wait,
    Pause,
    Resume,
    Exec(ExecSpec),
    /// State of an exec by ID.
    ExecState {
        id: String,
    },
    CloseStdin,
    /// The daemon has recorded the exit: the shim may go away once it has exited.
    Release,
}

/// Shim → client, one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Ok,
    Error {
        kind: StartErrorKind,
        message: String,
    },
    State {
        status: Status,
        /// Init pid (as seen from the host).
        pid: i32,
        shim_pid: i32,
        exit: Option<ExitInfo>,
    },
    Exit(ExitInfo),
    ExecStarted {
        pid: i32,
    },
    ExecState {
        running: bool,
        pid: i32,
        exit_code: Option<i32>,
    },
}

/// Classifies an exec failure message the way Docker maps runc's errors to 127 / 126.
pub fn classify_exec_error(msg: &str) -> StartErrorKind {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        StartErrorKind::NotFound
    } else if msg.contains("permission denied") || msg.contains("is a directory") {
        StartErrorKind::PermissionDenied
    } else {
        StartErrorKind::Other
    }
}

fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    // Howard Hinnant's days-from-civil inverse; valid for all dates after 1970.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2024-01-01T00:00:00.123456789Z` (always 9 fraction digits).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, da, h, mi, s) = civil(d.as_secs());
    format!(
        "{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}.{:09}Z",
        d.subsec_nanos()
    )
}

/// Go's `time.RFC3339Nano` (trailing fraction zeros trimmed), as Docker's json-file log uses.
pub fn rfc3339_nanos_go(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, da, h, mi, s) = civil(d.as_secs());
    let mut out = format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}");
    let ns = d.subsec_nanos();
    if ns != 0 {
        let frac = format!("{ns:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::new(1_704_067_200, 123_456_789);
        assert_eq!(rfc3339_nanos(t), "2024-01-01T00:00:00.123456789Z");
        assert_eq!(rfc3339_nanos_go(t), "2024-01-01T00:00:00.123456789Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 86_399, 500_000_000);
        assert_eq!(rfc3339_nanos(t), "2000-02-29T23:59:59.500000000Z");
        assert_eq!(rfc3339_nanos_go(t), "2000-02-29T23:59:59.5Z");
        assert_eq!(rfc3339_nanos_go(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn wire_shapes() {
        let r: Request =
            serde_json::from_str(r#"{"op":"attach","stdout":true,"stderr":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Attach {
                stdin: false,
                stdout: true,
                stderr: true,
                stdin_once: false
            }
        );
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":9}"#).unwrap();
        assert_eq!(
            r,
            Request::Kill {
                signal: 9,
                all: false
            }
        );
        let e = serde_json::to_string(&Request::Exec(ExecSpec {
            id: "e1".into(),
            args: vec!["ls".into()],
            ..Default::default()
        }))
        .unwrap();
        assert!(
            e.starts_with(r#"{"op":"exec","id":"e1","args":["ls"]"#),
            "{e}"
        );
        let s = serde_json::to_string(&StartResult::Started {
            shim_pid: 1,
            init_pid: 2,
        })
        .unwrap();
        assert_eq!(s, r#"{"result":"started","shim_pid":1,"init_pid":2}"#);
        assert_eq!(frame_header(1, 258), [1, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            parse_frame_header(&[2, 0, 0, 0, 0, 0, 1, 2]),
            Some((2, 258))
        );
        assert_eq!(
            classify_exec_error(r#"exec: "nosuch": executable file not found in $PATH"#),
            StartErrorKind::NotFound
        );
        assert_eq!(StartErrorKind::PermissionDenied.exit_code(), 126);
        let line = encode_line(&Request::Wait);
        assert_eq!(line, b"{\"op\":\"wait\"}\n");
        assert_eq!(decode_line::<Request>(&line).unwrap(), Request::Wait);
    }
}
