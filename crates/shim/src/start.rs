//! `berth-shim start`: fork, detach (new session, stdio to /dev/null), create (and start) the
//! container, report the result to the caller through a pipe, then serve.

use std::fs::File;
use std::io::{BufRead, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use berth_shim_proto::{self as proto, StartErrorKind, StartResult};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::{ForkResult, Pid};

use crate::executor::DockerExecutor;
use crate::runtime::{ProcIo, Runtime};
use crate::server::{ContainerIo, Shim};
use crate::{LogDriver, StartOpts};

/// Errors while bringing a container up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Io(String),
    #[error("{message}")]
    Runtime {
        kind: StartErrorKind,
        message: String,
    },
}

impl StartError {
    fn kind(&self) -> StartErrorKind {
        match self {
            StartError::Io(_) => StartErrorKind::Other,
            StartError::Runtime { kind, .. } => *kind,
        }
    }
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |e| StartError::Io(format!("{what}: {e}"))
}

fn nix_err(what: &str) -> impl FnOnce(nix::Error) -> StartError + '_ {
    move |e| StartError::Io(format!("{what}: {e}"))
}

/// Turns a libcontainer error (with its whole source chain) into Docker's wording and class.
pub fn runtime_error(e: &dyn std::error::Error) -> StartError {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    message_error(msg)
}

/// A runtime's error message in Docker's wording and class.
pub fn message_error(msg: String) -> StartError {
    // the executor's (or runc's) message is what Docker users expect; keep it unwrapped
    let message = match msg.find("exec: \"") {
        Some(i) => msg[i..].trim_end().to_string(),
        None => msg,
    };
    StartError::Runtime {
        kind: proto::classify_exec_error(&message),
        message,
    }
}

/// Entry of `berth-shim start`; returns the caller's exit status.
pub fn run(o: StartOpts) -> i32 {
    let (r, w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return report_local(&format!("pipe: {e}")),
    };
    // SAFETY: single-threaded here (nothing has spawned threads yet).
    match unsafe { nix::unistd::fork() } {
        Err(e) => report_local(&format!("fork: {e}")),
        Ok(ForkResult::Parent { .. }) => {
            drop(w);
            // The shim writes exactly one JSON line (or dies). Read only that line: a created
            // container's init still holds a copy of the pipe until it execs.
            let mut s = String::new();
            let _ = std::io::BufReader::new(File::from(r)).read_line(&mut s);
            let res: StartResult = serde_json::from_str(s.trim()).unwrap_or(StartResult::Failed {
                kind: StartErrorKind::Other,
                message: format!("shim exited without reporting ({})", s.trim()),
            });
            let line = serde_json::to_string(&res).unwrap_or_default();
            println!("{line}");
            match res {
                StartResult::Started { .. } => 0,
                StartResult::Failed { kind, message } => {
                    eprintln!("{message}");
                    kind.exit_code()
                }
            }
        }
        Ok(ForkResult::Child) => {
            drop(r);
            // Descriptors leaked by whoever started us (the daemon, a shell) must not be held
            // for the container's lifetime: close everything but stdio and the report pipe.
            close_all_but(w.as_raw_fd());
            std::process::exit(serve_as_shim(&o, File::from(w), false))
        }
    }
}

/// Closes every descriptor above stdio except `keep`.
fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    // SAFETY: close_range on ranges that exclude the descriptors we still use.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, keep - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0);
    }
}

/// The forked shim: create the container, report on `report`, serve; the process's exit code.
fn serve_as_shim(o: &StartOpts, mut report: File, session_made: bool) -> i32 {
    match shim_main(o, &mut report, session_made) {
        Ok(mut shim) => {
            drop(report);
            // (pages are trimmed once the shim is idle: see server.rs)
            shim.serve();
            0
        }
        Err(e) => {
            report_failure(&mut report, e.kind(), e.to_string());
            1
        }
    }
}

/// Entry of `berth-shim pool` (issue #3: the exec and start-up of a shim off the path of a
/// container's create). The process becomes a shim in its own session, already initialised,
/// that waits for one line on stdin: the `start` flags as a JSON array of strings. It then
/// does what `start` does and writes the result line to stdout.
/// EOF on stdin (berthd dropped it, stopped or died) ends it: a pooled shim berthd no longer
/// knows never lingers, and it has no state directory, so nothing can take it for a
/// container's shim.
///
/// berthd spawns it in its own process group, so `setsid` works right here and no detach
/// fork is needed (a fork, copying the address space, and the parent's exit: CPU taken from
/// every run); berthd reaps it when it ends, and after berthd's own end (kill -9 included) it
/// is reparented like any detached shim. Only when started as a process group leader (from a
/// shell) does it fork first, as `start` does.
pub fn pool() -> i32 {
    // nothing of berthd's but the two pipes on stdin and stdout stays open here
    // SAFETY: close_range above stdio; nothing of ours is open there yet.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if nix::unistd::setsid().is_err() {
        // SAFETY: single-threaded here (nothing has spawned threads yet).
        match unsafe { nix::unistd::fork() } {
            Err(e) => return report_local(&format!("fork: {e}")),
            Ok(ForkResult::Parent { .. }) => return 0,
            Ok(ForkResult::Child) => {
                if nix::unistd::setsid().is_err() {
                    std::process::exit(1);
                }
            }
        }
    }
    std::process::exit(pooled_shim())
}

/// The pooled shim, in its own session: waits for the `start` flags, then serves.
fn pooled_shim() -> i32 {
    if std::env::set_current_dir("/").is_err() {
        return 1;
    }
    // the report goes to a close-on-exec copy of stdout: stdio becomes /dev/null at
    // detach, and the container's processes must not inherit berthd's pipe
    // SAFETY: fcntl on our own stdout; the new descriptor is owned right away.
    let report = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if report < 0 {
        return 1;
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let report = File::from(unsafe { OwnedFd::from_raw_fd(report) });
    crate::executor::remember_own_binary();
    // container-independent work while idle: the cgroup setup and v1 mounts that
    // libcontainer's intermediate (a clone of this process) and the delete read
    // (best effort: without it they read them as before)
    libcgroups::common::prime_host_cgroups();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(n) if n > 0 => {}
        _ => return 0,
    }
    crate::timing::mark_main();
    let opts = serde_json::from_str::<Vec<String>>(line.trim_end())
        .map_err(|e| e.to_string())
        .and_then(|args| crate::parse(&args));
    match opts {
        Ok(o) => serve_as_shim(&o, report, true),
        Err(e) => {
            let mut report = report;
            report_failure(
                &mut report,
                StartErrorKind::Other,
                format!("berth-shim pool: {e}"),
            );
            1
        }
    }
}

/// The result line of a create that failed, as berthd reads it.
fn report_failure(out: &mut impl Write, kind: StartErrorKind, message: String) {
    let res = StartResult::Failed { kind, message };
    let _ = writeln!(out, "{}", serde_json::to_string(&res).unwrap_or_default());
}

fn report_local(msg: &str) -> i32 {
    report_failure(
        &mut std::io::stdout().lock(),
        StartErrorKind::Other,
        msg.to_string(),
    );
    eprintln!("{msg}");
    125
}

/// Detach from the caller: own session, cwd = state dir, stdio to /dev/null (stderr to
/// `shim.log` for diagnostics), so nothing ties us to the daemon's process or terminal.
fn detach(state_dir: &Path, session_made: bool) -> Result<(), StartError> {
    if !session_made {
        nix::unistd::setsid().map_err(nix_err("setsid"))?;
    }
    std::env::set_current_dir(state_dir).map_err(io_err("chdir state dir"))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(io_err("open /dev/null"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("shim.log"))
        .map_err(io_err("open shim.log"))?;
    for (fd, src) in [
        (0, null.as_raw_fd()),
        (1, null.as_raw_fd()),
        (2, log.as_raw_fd()),
    ] {
        nix::unistd::dup2(src, fd).map_err(nix_err("dup2"))?;
    }
    Ok(())
}

fn nonblocking(fd: RawFd) -> Result<(), StartError> {
    use nix::fcntl::{FcntlArg, fcntl};
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(nix_err("fcntl"))?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK),
    )
    .map_err(nix_err("fcntl"))?;
    Ok(())
}

pub fn pipe() -> Result<(File, File), StartError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(nix_err("pipe"))?;
    Ok((File::from(r), File::from(w)))
}

/// Our end of a stdio pipe / pty: non-blocking, close-on-exec.
pub fn our_end(f: File) -> Result<File, StartError> {
    nonblocking(f.as_raw_fd())?;
    Ok(f)
}

/// Binds a unix socket at a name relative to the cwd (the state dir), sidestepping the
/// 108-byte sun_path limit for deep state directories.
pub fn bind_relative(name: &str) -> Result<UnixListener, StartError> {
    let _ = std::fs::remove_file(name);
    UnixListener::bind(name).map_err(io_err("bind socket"))
}

/// Receives the pty master libcontainer's init sends over the console socket.
pub fn recv_pty(listener: &UnixListener) -> Result<File, StartError> {
    let (conn, _) = listener.accept().map_err(io_err("accept console socket"))?;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(nix_err("recvmsg console socket"))?;
    for c in msg.cmsgs().map_err(nix_err("cmsgs"))? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us via SCM_RIGHTS.
            return Ok(File::from(unsafe { OwnedFd::from_raw_fd(*fd) }));
        }
    }
    Err(StartError::Io("no pty received on console socket".into()))
}

pub fn builder(
    o_id: &str,
    root: &Path,
    executor: DockerExecutor,
) -> Result<ContainerBuilder, StartError> {
    ContainerBuilder::new(o_id.to_string(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(root)
        .map_err(|e| runtime_error(&e))
}

/// Removes whatever libcontainer left of a container that failed to come up.
pub fn cleanup_failed(root: &Path, id: &str) {
    let dir = root.join(id);
    if let Ok(mut c) = Container::load(dir.clone()) {
        let _ = c.delete(true);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// temp + rename: readers never see half a file. Not fsync'd: everything the shim writes lives
/// in the exec root (tmpfs) and only has to outlive processes, not the host.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    berth_atomicfile::write(path, data, false)
}

fn shim_main(o: &StartOpts, report: &mut File, session_made: bool) -> Result<Shim, StartError> {
    detach(&o.state_dir, session_made)?;
    crate::timing::init(&o.state_dir.join("shim.log"));
    let phase = |name: &str| crate::timing::line(name);
    phase("detached");
    // never steal the socket of a live shim (a second start for the same state dir)
    if std::os::unix::net::UnixStream::connect(proto::SOCKET_NAME).is_ok() {
        return Err(StartError::Io(format!(
            "a shim is already serving {}",
            o.state_dir.display()
        )));
    }
    std::fs::create_dir_all(&o.runtime_root).map_err(io_err("create runtime root"))?;
    let _ = std::fs::remove_file(o.state_dir.join(proto::EXIT_FILE));

    let spec = libcontainer::oci_spec::runtime::Spec::load(o.bundle.join("config.json"))
        .map_err(|e| StartError::Io(format!("load config.json: {e}")))?;
    let listener = bind_relative(proto::SOCKET_NAME)?;

    let log = match (o.log_driver, &o.log_path) {
        (LogDriver::JsonFile, Some(p)) => Some(
            crate::logs::JsonFileLog::open(p.clone(), o.log_max_size, o.log_max_file)
                .map_err(io_err("open log file"))?,
        ),
        _ => None,
    };

    phase("setup");
    // processes an external runtime leaves behind (the init, exec'd processes) are
    // reparented to us, and reaped here
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let mut rt = Runtime::new(o, seccomp);
    let mut console = None;
    let mut io = ContainerIo::default();
    let mut pio = ProcIo::default();
    if o.tty {
        console = Some(bind_relative("console.sock")?);
        pio.console_socket = Some(o.state_dir.join("console.sock"));
    } else {
        let (or, ow) = pipe()?;
        let (er, ew) = pipe()?;
        pio.stdout = Some(ow);
        pio.stderr = Some(ew);
        io.stdout = Some(our_end(or)?);
        io.stderr = Some(our_end(er)?);
        if o.stdin {
            let (ir, iw) = pipe()?;
            pio.stdin = Some(ir);
            io.stdin = Some(our_end(iw)?);
        }
    }

    let init_pid = rt.create(&o.bundle, &spec, pio)?;
    phase("create");
    if o.loopback_up
        && let Err(e) = loopback_up(init_pid)
    {
        kill_and_delete(&mut rt, init_pid);
        return Err(e);
    }
    let _ = std::fs::remove_file("console.sock");
    if let Some(l) = console {
        match recv_pty(&l) {
            Ok(m) => {
                let m = our_end(m)?;
                if o.stdin {
                    io.stdin = Some(m.try_clone().map_err(io_err("dup pty"))?);
                }
                io.pty = Some(m);
            }
            Err(e) => {
                let _ = nix::sys::signal::kill(init_pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(init_pid, None);
                rt.delete();
                return Err(e);
            }
        }
    }
    if !o.create_only
        && let Err(e) = rt.start()
    {
        let _ = nix::sys::signal::kill(init_pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(init_pid, None);
        rt.delete();
        return Err(e);
    }

    phase("start");
    let me = nix::unistd::getpid();
    let pidfiles = write_atomic(
        &o.state_dir.join(proto::SHIM_PID_FILE),
        me.to_string().as_bytes(),
    )
    .and_then(|_| {
        write_atomic(
            &o.state_dir.join(proto::INIT_PID_FILE),
            init_pid.to_string().as_bytes(),
        )
    });
    if let Err(e) = pidfiles {
        kill_and_delete(&mut rt, init_pid);
        return Err(StartError::Io(format!("write pid files: {e}")));
    }
    let shim = Shim::new(o, spec, rt, init_pid, io, log, listener)?;
    let ok = StartResult::Started {
        shim_pid: me.as_raw(),
        init_pid: init_pid.as_raw(),
    };
    let _ = writeln!(report, "{}", serde_json::to_string(&ok).unwrap_or_default());
    phase("reported");
    Ok(shim)
}

/// `lo` up in the network namespace of `pid`, from here: this process is single-threaded, so
/// it can enter the namespace and come back (two setns, no thread, no fork), which is cheaper
/// than the daemon doing it from its blocking pool between two requests to us. Not bringing
/// it up is only logged (a container without a working `lo` still runs); not getting back to
/// our own namespace is fatal.
fn loopback_up(pid: Pid) -> Result<(), StartError> {
    use nix::sched::{CloneFlags, setns};
    let own = File::open("/proc/self/ns/net").map_err(io_err("open own netns"))?;
    let theirs = match File::open(format!("/proc/{pid}/ns/net")) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("berth-shim: lo not brought up: container netns: {e}");
            return Ok(());
        }
    };
    if let Err(e) = setns(&theirs, CloneFlags::CLONE_NEWNET) {
        eprintln!("berth-shim: lo not brought up: entering the container netns: {e}");
        return Ok(());
    }
    let up = set_lo_up();
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(nix_err("leave container netns"))?;
    if let Err(e) = up {
        eprintln!("berth-shim: lo not brought up: {e}");
    }
    Ok(())
}

fn set_lo_up() -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: s is a fresh descriptor nobody else owns.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: a zeroed ifreq is valid; the name is NUL-terminated (2 of 16 bytes).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn kill_and_delete(rt: &mut Runtime, pid: Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    rt.delete();
}
