//! `-H` hosts -> bound listeners: `unix://path` (parents created, mode 0660, group `docker`
//! when it exists), `tcp://host:port` (TLS per the tls flags), and `fd://` / `fd://N` from
//! systemd socket activation (LISTEN_PID/LISTEN_FDS).

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_api::Listener;
use berth_api::tls::TlsAcceptor;

/// What `-H` asked for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
    /// `fd://` (None: all passed sockets) or `fd://N`
    Fd(Option<RawFd>),
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("invalid host {0:?}: {1}")]
    Parse(String, String),
    #[error("{0}")]
    Io(String),
}

pub fn parse_host(s: &str, tls: bool) -> Result<Host, ListenError> {
    let bad = |why: &str| ListenError::Parse(s.to_owned(), why.to_owned());
    let s_trim = s.trim();
    if let Some(p) = s_trim.strip_prefix("unix://") {
        let p = if p.is_empty() {
            "/run/berth/berth.sock"
        } else {
            p
        };
        return Ok(Host::Unix(PathBuf::from(p)));
    }
    if let Some(rest) = s_trim.strip_prefix("fd://") {
        if rest.is_empty() {
            return Ok(Host::Fd(None));
        }
        return rest
            .parse::<RawFd>()
            .map(|n| Host::Fd(Some(n)))
            .map_err(|_| bad("fd:// takes a file descriptor number"));
    }
    let rest = s_trim
        .strip_prefix("tcp://")
        .ok_or_else(|| bad("unsupported protocol; use unix://, tcp:// or fd://"))?;
    let rest = rest.trim_end_matches('/');
    let default_port = if tls { 2376 } else { 2375 };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => {
            // bare IPv6 without brackets: no port given
            (rest.to_owned(), default_port)
        }
        Some((h, p)) => {
            let port = if p.is_empty() {
                default_port
            } else {
                p.parse::<u16>().map_err(|_| bad("invalid port"))?
            };
            (h.to_owned(), port)
        }
        None => (rest.to_owned(), default_port),
    };
    let host = if host.is_empty() {
        "0.0.0.0".to_owned()
    } else {
        host
    };
    Ok(Host::Tcp(format!("{host}:{port}")))
}

fn io_err(what: String, e: std::io::Error) -> ListenError {
    ListenError::Io(format!("{what}: {e}"))
}

/// gid of `name` from /etc/group, if such a group exists.
fn group_gid(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Bind a unix socket the way dockerd does. Returns the listener; the caller removes the path
/// at shutdown.
pub fn bind_unix(path: &Path, group: &str) -> Result<tokio::net::UnixListener, ListenError> {
    let p = path.display().to_string();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_err(format!("creating {}", dir.display()), e))?;
    }
    if path.exists() {
        // A live daemon answers on it: refuse rather than steal its socket.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ListenError::Io(format!(
                "listen unix {p}: address already in use (another daemon is serving it)"
            )));
        }
        std::fs::remove_file(path).map_err(|e| io_err(format!("removing stale socket {p}"), e))?;
    }
    let l =
        tokio::net::UnixListener::bind(path).map_err(|e| io_err(format!("listen unix {p}"), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| io_err(format!("chmod {p}"), e))?;
    if let Some(gid) = group_gid(group)
        && let Err(e) = std::os::unix::fs::chown(path, None, Some(gid))
    {
        tracing::warn!("could not change group of {p} to {group}: {e}");
    }
    Ok(l)
}

/// Sockets systemd passed us (fds 3..3+LISTEN_FDS) when LISTEN_PID is our pid.
fn activation_fds() -> Vec<RawFd> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<RawFd>().ok())
        .unwrap_or(0);
    if !pid_ok || n <= 0 {
        return Vec::new();
    }
    (3..3 + n).collect()
}

fn socket_family(fd: RawFd) -> Option<libc::sa_family_t> {
    // SAFETY: getsockname writes at most `len` bytes into the storage we own.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(addr.ss_family)
}

fn listener_from_fd(fd: RawFd, tls: Option<TlsAcceptor>) -> Result<Listener, ListenError> {
    let family =
        socket_family(fd).ok_or_else(|| ListenError::Io(format!("fd://{fd}: not a socket")))?;
    let fam = i32::from(family);
    if fam == libc::AF_UNIX {
        // SAFETY: systemd handed us this fd as a listening unix socket; we own it from here on.
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        l.set_nonblocking(true)
            .map_err(|e| io_err(format!("fd://{fd}"), e))?;
        let l =
            tokio::net::UnixListener::from_std(l).map_err(|e| io_err(format!("fd://{fd}"), e))?;
        Ok(Listener::Unix(l))
    } else if fam == libc::AF_INET || fam == libc::AF_INET6 {
        // SAFETY: as above, a listening TCP socket.
        let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        l.set_nonblocking(true)
            .map_err(|e| io_err(format!("fd://{fd}"), e))?;
        let l =
            tokio::net::TcpListener::from_std(l).map_err(|e| io_err(format!("fd://{fd}"), e))?;
        Ok(Listener::Tcp(l, tls))
    } else {
        Err(ListenError::Io(format!(
            "fd://{fd}: unsupported socket family {fam}"
        )))
    }
}

/// Bound listeners plus the unix socket paths to remove at shutdown.
pub struct Bound {
    pub listeners: Vec<Listener>,
    pub unix_paths: Vec<PathBuf>,
}

pub async fn bind_all(
    hosts: &[Host],
    group: &str,
    tls: Option<TlsAcceptor>,
) -> Result<Bound, ListenError> {
    let mut out = Bound {
        listeners: Vec::new(),
        unix_paths: Vec::new(),
    };
    let fds = activation_fds();
    let mut used_fds = Vec::new();
    for h in hosts {
        match h {
            Host::Unix(p) => {
                out.listeners.push(Listener::Unix(bind_unix(p, group)?));
                out.unix_paths.push(p.clone());
            }
            Host::Tcp(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| io_err(format!("listen tcp {addr}"), e))?;
                if tls.is_none() {
                    tracing::warn!(
                        "binding to {addr} without TLS: anyone who can reach it has root on this host"
                    );
                }
                out.listeners.push(Listener::Tcp(l, tls.clone()));
            }
            Host::Fd(which) => {
                if fds.is_empty() {
                    return Err(ListenError::Io(
                        "no sockets found via socket activation: make sure the service was started by systemd".to_owned(),
                    ));
                }
                let chosen: Vec<RawFd> = match which {
                    None => fds.clone(),
                    Some(n) if fds.contains(n) => vec![*n],
                    Some(n) => {
                        return Err(ListenError::Io(format!(
                            "too few socket activated files passed in by systemd: fd {n} not among {fds:?}"
                        )));
                    }
                };
                for fd in chosen {
                    if used_fds.contains(&fd) {
                        continue;
                    }
                    used_fds.push(fd);
                    out.listeners.push(listener_from_fd(fd, tls.clone())?);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("unix:///tmp/x.sock", false).unwrap(),
            Host::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:1234", false).unwrap(),
            Host::Tcp("127.0.0.1:1234".into())
        );
        assert_eq!(
            parse_host("tcp://:2375", false).unwrap(),
            Host::Tcp("0.0.0.0:2375".into())
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1", true).unwrap(),
            Host::Tcp("127.0.0.1:2376".into())
        );
        assert_eq!(
            parse_host("tcp://[::1]:99", false).unwrap(),
            Host::Tcp("[::1]:99".into())
        );
        assert_eq!(parse_host("fd://", false).unwrap(), Host::Fd(None));
        assert_eq!(parse_host("fd://3", false).unwrap(), Host::Fd(Some(3)));
        assert!(parse_host("http://x", false).is_err());
        assert!(parse_host("tcp://x:notaport", false).is_err());
    }

    #[tokio::test]
    async fn unix_socket_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/berth.sock");
        let _l = bind_unix(&p, "no-such-group-here").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // a live socket is not stolen
        assert!(bind_unix(&p, "x").is_err());
    }

    #[tokio::test]
    async fn systemd_activation_fd() {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(std_l);
        match listener_from_fd(fd, None).unwrap() {
            Listener::Tcp(..) => {}
            Listener::Unix(_) => panic!("expected tcp"),
        }
    }
}
