//! The shim's event loop: one poll(2) over the control socket, its clients, the container's
//! stdio and pidfds of the init and of exec'd processes. Single-threaded by design.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use berth_shim_proto::{
    self as proto, ExecExit, ExecSpec, ExitInfo, FRAME_EXIT, MAX_FRAME, Reply, Request,
    StartErrorKind, Status,
};
use libcontainer::oci_spec::runtime::{Process, Spec};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::StartOpts;
use crate::logs::JsonFileLog;
use crate::runtime::{ProcIo, Runtime};
use crate::start::{self, StartError};

/// Stop reading the container's output while an attacher has this much unsent.
const BACKLOG: usize = 256 * 1024;
/// Stop reading a client's stdin while this much is queued for the container.
const STDIN_BACKLOG: usize = 64 * 1024;
/// After the init is reaped, wait this long at most for its stdio to reach EOF.
const DRAIN: Duration = Duration::from_secs(2);
/// How long to keep reaping unknown children after a failed exec.
const STRAY_SWEEP: Duration = Duration::from_secs(10);
/// After the exit is recorded, stay at least this long for late waiters (unless released)...
const LINGER: Duration = Duration::from_secs(1);
/// ...and at most this long for slow attachers.
const LINGER_MAX: Duration = Duration::from_secs(10);
const MAX_REQUEST: usize = 1 << 20;
/// Give pages back (berth_mem::trim_rss) only after this long without any event, so the trim (a few
/// ms reading /proc/self/smaps) never delays a reply or an exit on the start/exit path.
const TRIM_IDLE_MS: i32 = 200;

#[derive(Default)]
pub struct ContainerIo {
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    pub stdin: Option<File>,
    pub pty: Option<File>,
}

enum Role {
    Request,
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        stdin_once: bool,
    },
    Waiting,
    Exec(String),
}

struct Client {
    id: u64,
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    role: Role,
    read_eof: bool,
    close_when_flushed: bool,
    dead: bool,
}

struct Exec {
    id: String,
    pid: Pid,
    pidfd: Option<OwnedFd>,
    out: [Option<File>; 2],
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    /// The pty master (for resize); also `out[0]`'s source when tty.
    pty: Option<RawFd>,
    client: Option<u64>,
    exit_code: Option<i32>,
    exited_at: Option<Instant>,
    finished: bool,
}

pub struct Shim {
    id: String,
    state_dir: PathBuf,
    process: Process,
    cgroups_path: PathBuf,
    rt: Runtime,
    init_pid: Pid,
    init_pidfd: Option<OwnedFd>,
    /// The container's mount namespace, held until the exit is reported: when the init's
    /// exit dropped the last reference, the kernel tore the namespace down (its ~30 mounts
    /// and an RCU grace period, 0.3-1 ms, more under load) before the exit became visible;
    /// dropped here, after the replies are out, the teardown is off the exit's path.
    mnt_ns: Option<File>,
    started: bool,
    paused: bool,
    /// stdout (or the pty master), stderr
    out: [Option<File>; 2],
    pty_fd: Option<RawFd>,
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    log: Option<JsonFileLog>,
    listener: UnixListener,
    clients: Vec<Client>,
    next_client: u64,
    execs: Vec<Exec>,
    exec_seq: u32,
    init_status: Option<i32>,
    reaped_at: Option<Instant>,
    exit: Option<ExitInfo>,
    finalized_at: Option<Instant>,
    released: bool,
    /// libcontainer code ran (exec, pause, ...): drop its pages again when idle
    trim_pending: bool,
    /// The exit is reported; the runtime's delete (cgroups, state) runs once the replies are
    /// on their way and no request is waiting to be read (a poll that finds nothing).
    delete_pending: bool,
    /// Until when to sweep for children nobody holds a pidfd for: a failed exec leaves
    /// libcontainer's helper processes behind, and while they are unreaped zombies in the
    /// container's pid namespace its init cannot finish dying.
    stray_sweep_until: Option<Instant>,
}

#[derive(Clone, Copy)]
enum Tag {
    Listener,
    InitPidfd,
    Out(usize),
    Stdin,
    Client(usize),
    ExecPidfd,
    ExecOut(usize, usize),
    ExecStdin(usize),
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        None
    } else {
        // SAFETY: fd is a fresh pidfd (close-on-exec by default).
        Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

fn exit_code(ws: WaitStatus) -> Option<(Pid, i32)> {
    match ws {
        WaitStatus::Exited(p, c) => Some((p, c)),
        WaitStatus::Signaled(p, s, _) => Some((p, 128 + s as i32)),
        _ => None,
    }
}

fn reply_line(r: &Reply) -> Vec<u8> {
    let mut v = serde_json::to_vec(r).unwrap_or_else(|_| b"{\"reply\":\"ok\"}".to_vec());
    v.push(b'\n');
    v
}

fn err_reply(kind: StartErrorKind, message: impl Into<String>) -> Reply {
    Reply::Error {
        kind,
        message: message.into(),
    }
}

fn push_frame(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    for chunk in data.chunks(MAX_FRAME) {
        out.extend_from_slice(&proto::frame_header(kind, chunk.len()));
        out.extend_from_slice(chunk);
    }
}

fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct we own for the duration of the call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads what is available; Ok(None) = would block, Ok(Some(0)) = EOF. A pty master reports
/// EIO once the last slave is closed: that is EOF too.
fn read_some(f: &mut File, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    match f.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            Ok(None)
        }
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// Writes as much of `buf` as the fd takes, draining it; Err on a broken peer.
fn flush_to(w: &mut impl Write, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match w.write(&buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        }
    }
    buf.drain(..done);
    Ok(())
}

impl Shim {
    pub fn new(
        o: &StartOpts,
        spec: Spec,
        rt: Runtime,
        init_pid: Pid,
        io: ContainerIo,
        log: Option<JsonFileLog>,
        listener: UnixListener,
    ) -> Result<Self, StartError> {
        listener
            .set_nonblocking(true)
            .map_err(|e| StartError::Io(format!("socket: {e}")))?;
        let process = spec.process().clone().unwrap_or_default();
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_else(|| PathBuf::from(format!("/berth/{}", o.id)));
        let pty_fd = io.pty.as_ref().map(|p| p.as_raw_fd());
        let out = match io.pty {
            Some(p) => [Some(p), None],
            None => [io.stdout, io.stderr],
        };
        Ok(Self {
            id: o.id.clone(),
            state_dir: o.state_dir.clone(),
            process,
            cgroups_path,
            rt,
            init_pid,
            init_pidfd: pidfd_open(init_pid),
            mnt_ns: File::open(format!("/proc/{init_pid}/ns/mnt")).ok(),
            started: !o.create_only,
            paused: false,
            out,
            pty_fd,
            stdin: io.stdin,
            stdin_buf: Vec::new(),
            stdin_close: false,
            log,
            listener,
            clients: Vec::new(),
            next_client: 1,
            execs: Vec::new(),
            exec_seq: 0,
            init_status: None,
            reaped_at: None,
            exit: None,
            finalized_at: None,
            released: false,
            // creating the container ran a lot of code once: give it back when idle
            trim_pending: true,
            delete_pending: false,
            stray_sweep_until: None,
        })
    }

    fn backlogged(&self) -> bool {
        self.clients
            .iter()
            .any(|c| matches!(c.role, Role::Attach { .. }) && c.out.len() > BACKLOG)
    }

    /// Runs until the container has exited and everyone who cares has been told.
    pub fn serve(&mut self) {
        let mut buf = [0u8; 32 * 1024];
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(16);
        let mut tags: Vec<Tag> = Vec::with_capacity(16);
        loop {
            if let Some(t) = self.finalized_at {
                let idle = self.clients.is_empty() && (self.released || t.elapsed() >= LINGER);
                if idle || t.elapsed() >= LINGER_MAX {
                    self.finish_delete();
                    let _ = std::fs::remove_file(self.state_dir.join(proto::SOCKET_NAME));
                    return;
                }
            }
            fds.clear();
            tags.clear();
            let mut add = |fd: RawFd, ev: i16, tag: Tag| {
                fds.push(libc::pollfd {
                    fd,
                    events: ev,
                    revents: 0,
                });
                tags.push(tag);
            };
            add(self.listener.as_raw_fd(), libc::POLLIN, Tag::Listener);
            if let Some(p) = &self.init_pidfd {
                add(p.as_raw_fd(), libc::POLLIN, Tag::InitPidfd);
            }
            if !self.backlogged() {
                for (i, f) in self.out.iter().enumerate() {
                    if let Some(f) = f {
                        add(f.as_raw_fd(), libc::POLLIN, Tag::Out(i));
                    }
                }
            }
            if let Some(s) = &self.stdin
                && !self.stdin_buf.is_empty()
            {
                add(s.as_raw_fd(), libc::POLLOUT, Tag::Stdin);
            }
            for (i, c) in self.clients.iter().enumerate() {
                let mut ev = 0;
                let wants_input = match &c.role {
                    Role::Attach { .. } => self.stdin_buf.len() < STDIN_BACKLOG,
                    Role::Exec(id) => self
                        .execs
                        .iter()
                        .find(|e| &e.id == id)
                        .is_none_or(|e| e.stdin_buf.len() < STDIN_BACKLOG),
                    _ => true,
                };
                if !c.read_eof && wants_input {
                    ev |= libc::POLLIN;
                }
                if !c.out.is_empty() {
                    ev |= libc::POLLOUT;
                }
                add(c.sock.as_raw_fd(), ev, Tag::Client(i));
            }
            for (i, e) in self.execs.iter().enumerate() {
                if let Some(p) = &e.pidfd {
                    add(p.as_raw_fd(), libc::POLLIN, Tag::ExecPidfd);
                }
                let backlogged = e.client.is_some_and(|id| {
                    self.clients
                        .iter()
                        .any(|c| c.id == id && c.out.len() > BACKLOG)
                });
                if !backlogged {
                    for (k, f) in e.out.iter().enumerate() {
                        if let Some(f) = f {
                            add(f.as_raw_fd(), libc::POLLIN, Tag::ExecOut(i, k));
                        }
                    }
                }
                if let (Some(s), false) = (&e.stdin, e.stdin_buf.is_empty()) {
                    add(s.as_raw_fd(), libc::POLLOUT, Tag::ExecStdin(i));
                }
            }
            let sweeping = self.stray_sweep_until.is_some_and(|t| Instant::now() < t);
            // a pending delete first lets everything already sent be answered (poll with
            // no wait): the daemon's Wait is usually in the socket by then, and the delete's
            // cgroup removal (with libcgroups' EBUSY retries) must not hold its answer
            let timeout = if self.delete_pending {
                0
            } else if sweeping
                || self.init_status.is_some()
                || self
                    .execs
                    .iter()
                    .any(|e| e.exit_code.is_some() && !e.finished)
            {
                100
            } else if self.trim_pending && self.exit.is_none() {
                TRIM_IDLE_MS
            } else {
                -1
            };
            // SAFETY: fds is a valid array of pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n == 0 && self.trim_pending && self.exit.is_none() {
                self.trim_pending = false;
                // not at start-up: reading /proc/self/smaps there cost the create path
                // ~0.3 ms; this process is single-threaded, so no dlopen is half done now
                berth_mem::init();
                berth_mem::trim_rss();
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("berth-shim {}: poll: {e}", self.id);
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let mut reap = false;
            let events: Vec<(Tag, i16)> = fds
                .iter()
                .zip(tags.iter())
                .filter(|(f, _)| f.revents != 0)
                .map(|(f, t)| (*t, f.revents))
                .collect();
            for (tag, rev) in events {
                match tag {
                    Tag::Listener => self.accept(),
                    Tag::InitPidfd | Tag::ExecPidfd => reap = true,
                    Tag::Out(i) => self.read_output(i, &mut buf),
                    Tag::Stdin => self.write_stdin(),
                    Tag::Client(i) => self.client_io(i, rev, &mut buf),
                    Tag::ExecOut(i, k) => self.read_exec_output(i, k, &mut buf),
                    Tag::ExecStdin(i) => {
                        let e = &mut self.execs[i];
                        if let Some(s) = &mut e.stdin
                            && flush_to(s, &mut e.stdin_buf).is_err()
                        {
                            e.stdin = None;
                        }
                        if e.stdin_buf.is_empty() && e.stdin_close {
                            e.stdin = None;
                        }
                    }
                }
            }
            if reap || sweeping {
                self.reap();
            }
            self.progress();
            // replies go out now rather than after another poll round
            for c in &mut self.clients {
                if !c.out.is_empty() && !c.dead && flush_to(&mut c.sock, &mut c.out).is_err() {
                    c.dead = true;
                }
            }
            // attachers' connections close before the runtime's delete: their EOF ends the
            // client's attach stream, which `run` waits for as much as for the exit
            self.clients
                .retain(|c| !(c.dead || (c.close_when_flushed && c.out.is_empty())));
            if n == 0 {
                self.finish_delete();
            }
            let live: Vec<u64> = self.clients.iter().map(|c| c.id).collect();
            for e in &mut self.execs {
                if e.client.is_some_and(|id| !live.contains(&id)) {
                    e.client = None;
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next_client;
                    self.next_client += 1;
                    self.clients.push(Client {
                        id,
                        sock,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        role: Role::Request,
                        read_eof: false,
                        close_when_flushed: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn read_output(&mut self, stream: usize, buf: &mut [u8]) {
        let Some(f) = &mut self.out[stream] else {
            return;
        };
        match read_some(f, buf) {
            Ok(None) => {}
            Ok(Some(0)) | Err(_) => {
                self.out[stream] = None;
                if stream == 0 {
                    self.pty_fd = None;
                }
            }
            Ok(Some(n)) => {
                let data = &buf[..n];
                if let Some(l) = &mut self.log {
                    l.write(stream, data);
                }
                let kind = if stream == 0 {
                    proto::FRAME_STDOUT
                } else {
                    proto::FRAME_STDERR
                };
                for c in &mut self.clients {
                    if let Role::Attach { stdout, stderr, .. } = c.role
                        && ((stream == 0 && stdout) || (stream == 1 && stderr))
                    {
                        push_frame(&mut c.out, kind, data);
                    }
                }
            }
        }
    }

    fn write_stdin(&mut self) {
        if let Some(s) = &mut self.stdin
            && flush_to(s, &mut self.stdin_buf).is_err()
        {
            self.stdin = None;
        }
        if self.stdin_buf.is_empty() && self.stdin_close {
            self.stdin = None;
        }
    }

    fn read_exec_output(&mut self, i: usize, k: usize, buf: &mut [u8]) {
        let e = &mut self.execs[i];
        let Some(f) = &mut e.out[k] else {
            return;
        };
        match read_some(f, buf) {
            Ok(None) => {}
            Ok(Some(0)) | Err(_) => {
                e.out[k] = None;
                if k == 0 {
                    e.pty = None;
                }
            }
            Ok(Some(n)) => {
                if let Some(cid) = e.client
                    && let Some(c) = self.clients.iter_mut().find(|c| c.id == cid)
                {
                    let kind = if k == 0 {
                        proto::FRAME_STDOUT
                    } else {
                        proto::FRAME_STDERR
                    };
                    push_frame(&mut c.out, kind, &buf[..n]);
                }
            }
        }
    }

    fn client_io(&mut self, i: usize, rev: i16, buf: &mut [u8]) {
        if rev & libc::POLLOUT != 0 {
            let c = &mut self.clients[i];
            if flush_to(&mut c.sock, &mut c.out).is_err() {
                c.dead = true;
                return;
            }
        }
        if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            return;
        }
        if self.clients[i].read_eof {
            if rev & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.clients[i].dead = true;
            }
            return;
        }
        let n = match self.clients[i].sock.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return;
            }
            Err(_) => {
                self.clients[i].dead = true;
                return;
            }
        };
        if n == 0 {
            self.client_eof(i);
            return;
        }
        let data = buf[..n].to_vec();
        self.client_data(i, &data);
    }

    fn client_eof(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.read_eof = true;
        match &c.role {
            Role::Request => c.dead = true,
            Role::Attach {
                stdin, stdin_once, ..
            } => {
                if *stdin && *stdin_once {
                    self.stdin_close = true;
                    if self.stdin_buf.is_empty() {
                        self.stdin = None;
                    }
                }
                if c.out.is_empty() && self.exit.is_some() {
                    c.dead = true;
                }
            }
            Role::Waiting => c.dead = true,
            Role::Exec(id) => {
                if let Some(e) = self.execs.iter_mut().find(|e| &e.id == id) {
                    e.stdin_close = true;
                    if e.stdin_buf.is_empty() {
                        e.stdin = None;
                    }
                }
            }
        }
    }

    fn client_data(&mut self, i: usize, data: &[u8]) {
        match &self.clients[i].role {
            Role::Request => {
                let c = &mut self.clients[i];
                c.inbuf.extend_from_slice(data);
                let Some(nl) = c.inbuf.iter().position(|b| *b == b'\n') else {
                    if c.inbuf.len() > MAX_REQUEST {
                        c.dead = true;
                    }
                    return;
                };
                let rest = c.inbuf.split_off(nl + 1);
                let line = std::mem::take(&mut c.inbuf);
                match serde_json::from_slice::<Request>(&line) {
                    Ok(req) => self.handle(i, req),
                    Err(e) => {
                        let c = &mut self.clients[i];
                        c.out.extend(reply_line(&err_reply(
                            StartErrorKind::Other,
                            format!("bad request: {e}"),
                        )));
                        c.close_when_flushed = true;
                    }
                }
                if !rest.is_empty() && !matches!(self.clients[i].role, Role::Request) {
                    self.client_data(i, &rest);
                }
            }
            Role::Attach { stdin: true, .. } if self.stdin.is_some() && !self.stdin_close => {
                self.stdin_buf.extend_from_slice(data);
            }
            Role::Exec(id) => {
                if let Some(e) = self.execs.iter_mut().find(|e| &e.id == id)
                    && e.stdin.is_some()
                    && !e.stdin_close
                {
                    e.stdin_buf.extend_from_slice(data);
                }
            }
            _ => {}
        }
    }

    fn running(&self) -> bool {
        self.init_status.is_none()
    }

    /// The runtime's delete after the exit was reported (see `delete_pending`).
    fn finish_delete(&mut self) {
        if std::mem::take(&mut self.delete_pending) {
            self.mnt_ns = None;
            self.rt.delete();
        }
    }

    fn handle(&mut self, i: usize, req: Request) {
        // every request touches code (JSON, libcontainer): give those pages back when idle
        self.trim_pending = true;
        let not_running = || {
            err_reply(
                StartErrorKind::Other,
                "container is not running".to_string(),
            )
        };
        let mut close = true;
        let reply = match req {
            Request::Attach {
                stdin,
                stdout,
                stderr,
                stdin_once,
            } => {
                if self.exit.is_none() {
                    self.clients[i].role = Role::Attach {
                        stdin,
                        stdout,
                        stderr,
                        stdin_once,
                    };
                    close = false;
                }
                Reply::Ok
            }
            Request::Start => {
                if self.started {
                    err_reply(StartErrorKind::Other, "container already started")
                } else if !self.running() {
                    not_running()
                } else {
                    match self.rt.start() {
                        Ok(()) => {
                            self.started = true;
                            Reply::Ok
                        }
                        Err(StartError::Runtime { kind, message }) => err_reply(kind, message),
                        Err(StartError::Io(m)) => err_reply(StartErrorKind::Other, m),
                    }
                }
            }
            Request::Resize {
                exec,
                height,
                width,
            } => {
                let fd = match &exec {
                    None => self.pty_fd,
                    Some(id) => self.execs.iter().find(|e| &e.id == id).and_then(|e| e.pty),
                };
                match fd {
                    Some(fd) => match set_winsize(fd, height, width) {
                        Ok(()) => Reply::Ok,
                        Err(e) => err_reply(StartErrorKind::Other, format!("resize: {e}")),
                    },
                    None => err_reply(StartErrorKind::Other, "no tty to resize"),
                }
            }
            Request::Kill { signal, all } => {
                // the init may now wait on zombies nobody holds a pidfd for (see stray_sweep_until)
                self.stray_sweep_until = Some(Instant::now() + STRAY_SWEEP);
                self.kill(signal, all)
            }
            Request::State => Reply::State {
                status: if !self.running() {
                    Status::Stopped
                } else if self.paused {
                    Status::Paused
                } else if !self.started {
                    Status::Created
                } else {
                    Status::Running
                },
                pid: self.init_pid.as_raw(),
                shim_pid: nix::unistd::getpid().as_raw(),
                exit: self.exit.clone(),
            },
            Request::Wait => match &self.exit {
                Some(x) => Reply::Exit(x.clone()),
                None => {
                    self.clients[i].role = Role::Waiting;
                    return;
                }
            },
            Request::Pause => {
                if !self.running() {
                    not_running()
                } else {
                    match self.rt.pause() {
                        Ok(()) => {
                            self.paused = true;
                            Reply::Ok
                        }
                        Err(e) => err_reply(StartErrorKind::Other, format!("pause: {e}")),
                    }
                }
            }
            Request::Resume => {
                if !self.running() {
                    not_running()
                } else {
                    match self.rt.resume() {
                        Ok(()) => {
                            self.paused = false;
                            Reply::Ok
                        }
                        Err(e) => err_reply(StartErrorKind::Other, format!("resume: {e}")),
                    }
                }
            }
            Request::Exec(spec) => {
                if !self.running() || !self.started {
                    not_running()
                } else if self.paused {
                    err_reply(
                        StartErrorKind::Other,
                        "container is paused, unpause the container before exec",
                    )
                } else {
                    let client = self.clients[i].id;
                    let detach = spec.detach;
                    match self.exec(spec, client) {
                        Ok((id, pid)) => {
                            if !detach {
                                self.clients[i].role = Role::Exec(id);
                                close = false;
                            }
                            Reply::ExecStarted { pid: pid.as_raw() }
                        }
                        Err(StartError::Runtime { kind, message }) => err_reply(kind, message),
                        Err(StartError::Io(m)) => err_reply(StartErrorKind::Other, m),
                    }
                }
            }
            Request::ExecState { id } => match self.execs.iter().find(|e| e.id == id) {
                Some(e) => Reply::ExecState {
                    running: e.exit_code.is_none(),
                    pid: e.pid.as_raw(),
                    exit_code: e.exit_code,
                },
                None => err_reply(StartErrorKind::Other, format!("no such exec: {id}")),
            },
            Request::CloseStdin => {
                self.stdin_close = true;
                if self.stdin_buf.is_empty() {
                    self.stdin = None;
                }
                Reply::Ok
            }
            Request::Release => {
                self.released = true;
                Reply::Ok
            }
        };
        let c = &mut self.clients[i];
        c.out.extend(reply_line(&reply));
        if close {
            c.close_when_flushed = true;
        }
    }

    fn kill(&mut self, signal: i32, all: bool) -> Reply {
        if !self.running() {
            return err_reply(StartErrorKind::Other, "container is not running");
        }
        let sig = match Signal::try_from(signal) {
            Ok(s) => s,
            Err(_) => return err_reply(StartErrorKind::Other, format!("invalid signal: {signal}")),
        };
        // The init is our unreaped child, so its pid cannot have been reused: signalling it
        // directly is race-free.
        let r = if all {
            self.rt.kill_all(sig)
        } else {
            nix::sys::signal::kill(self.init_pid, sig).map_err(|e| e.to_string())
        };
        // a frozen task does not die until thawed (cgroup v1): Docker unpauses after SIGKILL
        if sig == Signal::SIGKILL && self.paused && self.rt.resume().is_ok() {
            self.paused = false;
        }
        match r {
            Ok(()) => Reply::Ok,
            Err(e) => err_reply(StartErrorKind::Other, format!("kill: {e}")),
        }
    }

    fn exec(&mut self, spec: ExecSpec, client: u64) -> Result<(String, Pid), StartError> {
        if spec.args.is_empty() {
            return Err(StartError::Io("no command specified".into()));
        }
        if spec.id.is_empty() || self.execs.iter().any(|e| e.id == spec.id) {
            return Err(StartError::Io(format!(
                "invalid or duplicate exec id: {:?}",
                spec.id
            )));
        }
        self.exec_seq += 1;
        let seq = self.exec_seq;

        // The exec'd process: the container's process with Docker's exec overrides.
        let mut p = self.process.clone();
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &spec.env {
            let k = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map(|(ek, _)| ek).unwrap_or(e) == k)
            {
                Some(slot) => *slot = kv.clone(),
                None => env.push(kv.clone()),
            }
        }
        if spec.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        p.set_args(Some(spec.args.clone()))
            .set_env(Some(env))
            .set_terminal(Some(spec.tty))
            .set_console_size(None);
        if !spec.cwd.is_empty() {
            p.set_cwd(PathBuf::from(&spec.cwd));
        }
        if let Some(u) = &spec.user {
            let mut user = p.user().clone();
            user.set_uid(u.uid).set_gid(u.gid).set_additional_gids(
                (!u.additional_gids.is_empty()).then(|| u.additional_gids.clone()),
            );
            p.set_user(user);
        }
        if spec.privileged {
            let all: libcontainer::oci_spec::runtime::Capabilities = crate::all_caps();
            let mut caps = p.capabilities().clone().unwrap_or_default();
            caps.set_bounding(Some(all.clone()))
                .set_effective(Some(all.clone()))
                .set_permitted(Some(all));
            p.set_capabilities(Some(caps));
        }
        let pfile = self.state_dir.join(format!("exec-{seq}.json"));
        let json = serde_json::to_vec(&p).map_err(|e| StartError::Io(format!("exec spec: {e}")))?;
        start::write_atomic(&pfile, &json)
            .map_err(|e| StartError::Io(format!("exec spec: {e}")))?;

        let mut out: [Option<File>; 2] = [None, None];
        let mut stdin = None;
        let mut console = None;
        let mut pio = ProcIo::default();
        let sock_name = format!("exec-{seq}.sock");
        if spec.tty {
            console = Some(start::bind_relative(&sock_name)?);
            pio.console_socket = Some(self.state_dir.join(&sock_name));
        } else if !spec.detach {
            // (detached: /dev/null for all three)
            let (or, ow) = start::pipe()?;
            let (er, ew) = start::pipe()?;
            pio.stdout = Some(ow);
            pio.stderr = Some(ew);
            out = [Some(start::our_end(or)?), Some(start::our_end(er)?)];
            if spec.stdin {
                let (ir, iw) = start::pipe()?;
                pio.stdin = Some(ir);
                stdin = Some(start::our_end(iw)?);
            }
        }
        let res = self.rt.exec(&pfile, pio);
        let _ = std::fs::remove_file(&pfile);
        let pid = match res {
            Ok(pid) => pid,
            Err(e) => {
                let _ = std::fs::remove_file(&sock_name);
                self.stray_sweep_until = Some(Instant::now() + STRAY_SWEEP);
                self.reap();
                return Err(e);
            }
        };
        let mut pty = None;
        if let Some(l) = console {
            let _ = std::fs::remove_file(&sock_name);
            let m = start::recv_pty(&l).and_then(start::our_end);
            match m {
                Ok(m) => {
                    if let Some((rows, cols)) = spec.console_size {
                        let _ = set_winsize(m.as_raw_fd(), rows, cols);
                    }
                    pty = Some(m.as_raw_fd());
                    if spec.stdin {
                        stdin = m.try_clone().ok();
                    }
                    // detached: still read (and discard) so the process neither blocks nor
                    // gets SIGHUP from a closed master
                    out[0] = Some(m);
                }
                Err(e) => {
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    return Err(e);
                }
            }
        }
        self.execs.push(Exec {
            id: spec.id.clone(),
            pid,
            pidfd: pidfd_open(pid),
            out,
            stdin,
            stdin_buf: Vec::new(),
            stdin_close: false,
            pty,
            client: (!spec.detach).then_some(client),
            exit_code: None,
            exited_at: None,
            finished: false,
        });
        // a process can exit before its pidfd exists; the reap sweep covers it
        self.reap();
        Ok((spec.id, pid))
    }

    /// Collects every exited child: the init and exec'd processes.
    fn reap(&mut self) {
        loop {
            let ws = match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(ws) => ws,
            };
            let Some((pid, code)) = exit_code(ws) else {
                continue;
            };
            if pid == self.init_pid {
                self.init_status = Some(code);
                self.reaped_at = Some(Instant::now());
                self.init_pidfd = None;
            } else if let Some(e) = self.execs.iter_mut().find(|e| e.pid == pid) {
                e.exit_code = Some(code);
                e.exited_at = Some(Instant::now());
                e.pidfd = None;
            }
        }
    }

    /// Finishes execs and the container once their processes are gone and output drained.
    fn progress(&mut self) {
        for e in &mut self.execs {
            let Some(code) = e.exit_code else { continue };
            if e.finished {
                continue;
            }
            let drained = e.out.iter().all(Option::is_none);
            if drained || e.exited_at.is_some_and(|t| t.elapsed() >= DRAIN) {
                e.finished = true;
                self.trim_pending = true;
                e.out = [None, None];
                e.stdin = None;
                e.pty = None;
                if let Some(cid) = e.client
                    && let Some(c) = self.clients.iter_mut().find(|c| c.id == cid)
                {
                    let body =
                        serde_json::to_vec(&ExecExit { exit_code: code }).unwrap_or_default();
                    push_frame(&mut c.out, FRAME_EXIT, &body);
                    c.close_when_flushed = true;
                }
            }
        }
        // forget old finished execs so a long-lived container's shim does not grow
        if self.execs.len() > 64
            && let Some(pos) = self.execs.iter().position(|e| e.finished)
        {
            self.execs.remove(pos);
        }

        let Some(code) = self.init_status else { return };
        if self.exit.is_some() {
            return;
        }
        let drained = self.out.iter().all(Option::is_none);
        if !drained && self.reaped_at.is_some_and(|t| t.elapsed() < DRAIN) {
            return;
        }
        self.out = [None, None];
        self.pty_fd = None;
        self.stdin = None;
        if let Some(l) = &mut self.log {
            l.flush();
        }
        // read the OOM counter before the cgroup goes away
        let oom = crate::cgroup::oom_kills(&self.cgroups_path) > 0;
        let info = ExitInfo {
            exit_code: code,
            oom_killed: oom,
            finished_at: proto::rfc3339_nanos(SystemTime::now()),
            pid: self.init_pid.as_raw(),
        };
        let path = self.state_dir.join(proto::EXIT_FILE);
        if let Err(e) = serde_json::to_vec(&info)
            .map_err(std::io::Error::other)
            // it must outlive the daemon (a kill -9), not the host: a host crash ends the
            // container with it
            .and_then(|j| start::write_atomic(&path, &j))
        {
            eprintln!("berth-shim {}: write exit.json: {e}", self.id);
        }
        self.delete_pending = true;
        let line = reply_line(&Reply::Exit(info.clone()));
        for c in &mut self.clients {
            match c.role {
                Role::Waiting => {
                    c.out.extend_from_slice(&line);
                    c.close_when_flushed = true;
                }
                Role::Attach { .. } => c.close_when_flushed = true,
                _ => {}
            }
        }
        self.exit = Some(info);
        self.finalized_at = Some(Instant::now());
    }
}
