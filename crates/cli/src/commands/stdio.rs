//! The hijacked streams of attach/run/start/exec: Docker's 8-byte stream frames without a
//! tty, the raw stream with one; the local terminal in raw mode (restored by a guard on every
//! path), resize on start and SIGWINCH, detach keys, stdin EOF as a half-close, and signal
//! proxying through the kill API.

use std::io::{Read, Write};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Client, Hijacked, path_escape};
use crate::error::CliError;

/// ctrl-p ctrl-q, docker's default.
pub const DEFAULT_DETACH: &[u8] = &[16, 17];

/// The keys that detach, client-side: `--detach-keys` when readable, else docker's default.
/// Keys we cannot read are left to the daemon to refuse, as docker does.
pub fn detach_keys_or_default(opt: Option<&str>) -> Vec<u8> {
    opt.and_then(|k| parse_detach_keys(k).ok())
        .unwrap_or_else(|| DEFAULT_DETACH.to_vec())
}

/// Attach to a container's stdout/stderr (and stdin when asked), as `start -a` and `attach` do.
pub async fn attach_output(
    client: &Client,
    id: &str,
    stdin: bool,
    detach_keys: Option<&str>,
) -> Result<Hijacked, CliError> {
    let mut q = format!(
        "/containers/{}/attach?stream=1&stdout=1&stderr=1",
        path_escape(id)
    );
    if stdin {
        q.push_str("&stdin=1");
    }
    if let Some(k) = detach_keys {
        q.push_str(&format!("&detachKeys={}", crate::client::urlencode(k)));
    }
    client.hijack("POST", &q, None).await
}

/// Parse docker's --detach-keys ("ctrl-p,ctrl-q", "a,ctrl-@").
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, CliError> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let k = key.trim().to_ascii_lowercase();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(CliError::msg(format!("Unknown character: '{c}'"))),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(key.trim().as_bytes()[0]);
        } else {
            return Err(CliError::msg(format!("Unknown character: '{key}'")));
        }
    }
    Ok(out)
}

/// Local terminal in raw mode until dropped.
pub struct RawTerm {
    fd: i32,
    saved: libc::termios,
}

impl RawTerm {
    pub fn enable(fd: i32) -> Option<RawTerm> {
        // SAFETY: termios is plain data; tcgetattr/tcsetattr only read/write it for `fd`.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            // Keep output post-processing so our own messages still start at column 0.
            t.c_oflag = saved.c_oflag;
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return None;
            }
            restore_on_signals(fd, saved);
            Some(RawTerm { fd, saved })
        }
    }
}

/// A terminating signal must not leave the user's terminal raw: restore it, then die of the
/// signal's usual status (128 + n). Only when a runtime is there to listen (always, in berth).
fn restore_on_signals(fd: i32, saved: libc::termios) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    for n in [libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        let Ok(mut sig) = signal(SignalKind::from_raw(n)) else {
            continue;
        };
        rt.spawn(async move {
            if sig.recv().await.is_some() {
                // SAFETY: restores attributes read by tcgetattr for the same fd.
                unsafe {
                    libc::tcsetattr(fd, libc::TCSANOW, &saved);
                }
                std::process::exit(128 + n);
            }
        });
    }
}

impl Drop for RawTerm {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved in enable().
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Terminal size of stdout (rows, cols).
pub fn term_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        for fd in [1, 0] {
            if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 {
                return Some((ws.ws_row, ws.ws_col));
            }
        }
        None
    }
}

/// Send our terminal size to `/containers/{id}/resize` or `/exec/{id}/resize`.
pub async fn resize(client: &Client, kind: &str, id: &str) {
    if let Some((h, w)) = term_size() {
        let _ = client
            .raw(
                hyper::Method::POST,
                &format!("/{kind}/{}/resize?h={h}&w={w}", path_escape(id)),
                None,
            )
            .await;
    }
}

/// Resize now and on every SIGWINCH, until the returned task is aborted.
pub fn monitor_resize(
    client: std::sync::Arc<Client>,
    kind: &'static str,
    id: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        resize(&client, kind, &id).await;
        let Ok(mut sig) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while sig.recv().await.is_some() {
            resize(&client, kind, &id).await;
        }
    })
}

/// Forward the usual signals to the container through the kill API (docker's sig-proxy).
pub fn proxy_signals(client: std::sync::Arc<Client>, id: String) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
        for n in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            if let Ok(mut s) = signal(SignalKind::from_raw(n)) {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        if tx.send(n).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        drop(tx);
        while let Some(n) = rx.recv().await {
            let _ = client
                .raw(
                    hyper::Method::POST,
                    &format!("/containers/{}/kill?signal={n}", path_escape(&id)),
                    None,
                )
                .await;
        }
    })
}

/// How a stream session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The container's output ended.
    Eof,
    /// The user typed the detach keys.
    Detached,
}

/// Stdin as a channel fed by a plain thread, which never holds up process exit.
fn stdin_channel() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// One attached session with a container (`run`, `start -a`, `attach`): keep its tty size in
/// step, or forward our signals to it when there is no tty and `sig_proxy` is set, pump the
/// streams until EOF or detach, then stop both helpers.
pub async fn container_session(
    client: &std::sync::Arc<Client>,
    id: &str,
    h: Hijacked,
    tty: bool,
    stdin: bool,
    sig_proxy: bool,
    detach_keys: &[u8],
) -> Result<Ended, CliError> {
    let resize = tty.then(|| monitor_resize(client.clone(), "containers", id.to_owned()));
    let proxy = (sig_proxy && !tty).then(|| proxy_signals(client.clone(), id.to_owned()));
    let ended = pump(h, tty, stdin, detach_keys).await;
    if let Some(t) = resize {
        t.abort();
    }
    if let Some(t) = proxy {
        t.abort();
    }
    ended
}

/// Pump a hijacked connection: stdin to it (if `stdin`), its output to stdout/stderr
/// (raw when `tty`, demultiplexed otherwise).
pub async fn pump(
    h: Hijacked,
    tty: bool,
    stdin: bool,
    detach_keys: &[u8],
) -> Result<Ended, CliError> {
    let Hijacked { io, rest } = h;
    let (mut rd, mut wr) = tokio::io::split(io);
    let keys = detach_keys.to_vec();
    let input = async move {
        if !stdin {
            return std::future::pending::<Ended>().await;
        }
        let mut rx = stdin_channel();
        let mut matched = 0usize;
        let mut held: Vec<u8> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            let mut send = Vec::with_capacity(chunk.len());
            for b in chunk {
                // Detach keys are watched only with a tty, as docker's escape proxy does.
                if tty && !keys.is_empty() {
                    if b == keys[matched] {
                        matched += 1;
                        held.push(b);
                        if matched == keys.len() {
                            return Ended::Detached;
                        }
                        continue;
                    }
                    send.append(&mut held);
                    matched = 0;
                }
                send.push(b);
            }
            if !send.is_empty() && wr.write_all(&send).await.is_err() {
                break;
            }
            let _ = wr.flush().await;
        }
        // stdin EOF: half-close so the container sees EOF on its stdin.
        let _ = wr.shutdown().await;
        std::future::pending::<Ended>().await
    };
    let output = async move {
        let mut buf = rest;
        let mut chunk = vec![0u8; 32 * 1024];
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        loop {
            if tty {
                if !buf.is_empty() {
                    stdout.write_all(&buf)?;
                    stdout.flush()?;
                    buf.clear();
                }
            } else {
                // Docker's frame: [stream, 0, 0, 0, size(4, big endian)] payload.
                while buf.len() >= 8 {
                    let size = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
                    if buf.len() < 8 + size {
                        break;
                    }
                    let payload = &buf[8..8 + size];
                    if buf[0] == 2 {
                        stderr.write_all(payload)?;
                        stderr.flush()?;
                    } else {
                        stdout.write_all(payload)?;
                        stdout.flush()?;
                    }
                    buf.drain(..8 + size);
                }
            }
            let n = rd.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<Ended, std::io::Error>(Ended::Eof);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::select! {
        r = output => match r {
            Ok(e) => Ok(e),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Ended::Eof),
            Err(e) => Err(CliError::msg(e.to_string())),
        },
        d = input => Ok(d),
    }
}

/// Demultiplex a finished (or streaming) logs body.
pub struct Demux {
    buf: Vec<u8>,
    tty: bool,
}

impl Demux {
    pub fn new(tty: bool) -> Demux {
        Demux {
            buf: Vec::new(),
            tty,
        }
    }

    pub fn feed(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut stdout = std::io::stdout();
        if self.tty {
            stdout.write_all(data)?;
            return stdout.flush();
        }
        self.buf.extend_from_slice(data);
        let mut stderr = std::io::stderr();
        while self.buf.len() >= 8 {
            let b = &self.buf;
            let size = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
            if b.len() < 8 + size {
                break;
            }
            if b[0] == 2 {
                stdout.flush()?;
                stderr.write_all(&b[8..8 + size])?;
            } else {
                stdout.write_all(&b[8..8 + size])?;
            }
            self.buf.drain(..8 + size);
        }
        stdout.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), DEFAULT_DETACH);
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse_detach_keys("ctrl-1").is_err());
    }
}
