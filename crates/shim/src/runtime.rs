//! The OCI runtime that creates and drives the container: youki's libcontainer in this
//! process (the built-in runtime, `runc` to Docker clients), or an external OCI runtime binary
//! (`--runtime PATH`, e.g. runc) through its command line: `create --bundle --pid-file
//! [--console-socket]`, `start`, `kill`, `pause`, `resume`, `exec --process`, `delete`.
//! Either way the shim keeps stdio, logs and the exit status; it is a child subreaper, so the
//! processes an external runtime leaves behind are reparented to it and reaped here.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::signal::Signal as LcSignal;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::executor::DockerExecutor;
use crate::start::{self, StartError};

/// The container's (or an exec's) ends of its stdio; None = /dev/null.
#[derive(Default)]
pub struct ProcIo {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    /// Where the runtime sends the pty master (the process has a terminal).
    pub console_socket: Option<PathBuf>,
}

pub enum Runtime {
    Builtin(Builtin),
    External(External),
}

pub struct Builtin {
    id: String,
    root: PathBuf,
    // boxed: libcontainer's state is large next to the external variant
    container: Option<Box<Container>>,
    /// The container's seccomp filter, applied to exec'd processes too (see executor.rs).
    exec_seccomp: Option<LinuxSeccomp>,
}

pub struct External {
    id: String,
    /// The runtime binary and its global options (daemon.json `runtimeArgs`).
    path: PathBuf,
    args: Vec<String>,
    /// `--root`: the runtime's state directory.
    root: PathBuf,
    /// `--log` (JSON): where its error messages are read from.
    log: PathBuf,
    state_dir: PathBuf,
}

fn err_string(e: &dyn std::error::Error) -> String {
    start::runtime_error(e).to_string()
}

impl Runtime {
    pub fn new(o: &crate::StartOpts, exec_seccomp: Option<LinuxSeccomp>) -> Runtime {
        match &o.runtime {
            None => Runtime::Builtin(Builtin {
                id: o.id.clone(),
                root: o.runtime_root.clone(),
                container: None,
                exec_seccomp,
            }),
            Some(path) => Runtime::External(External {
                id: o.id.clone(),
                path: path.clone(),
                args: o.runtime_args.clone(),
                root: o.runtime_root.clone(),
                log: o.state_dir.join("runtime.log"),
                state_dir: o.state_dir.clone(),
            }),
        }
    }

    /// Creates the container; its process waits for [`Runtime::start`]. Returns the init pid.
    /// `spec` is the bundle's config.json, already parsed (the built-in runtime uses it
    /// instead of parsing the file again).
    pub fn create(&mut self, bundle: &Path, spec: &Spec, io: ProcIo) -> Result<Pid, StartError> {
        match self {
            Runtime::Builtin(b) => {
                if let Some(sc) = &b.exec_seccomp {
                    crate::seccomp_cache::prepare(&b.root, sc);
                }
                // pathrs' cached procfs handle (a private, detached subset=pid procfs mount),
                // made here once: libcontainer's intermediate and init processes are clones
                // of this one and inherit it instead of mounting a procfs each (and the shim
                // needs it later for exec, kill and delete anyway). Best effort: without it
                // pathrs makes its own, as before.
                let _ = pathrs::procfs::ProcfsHandle::new();
                // the host's cgroup facts, read once for this shim and its clones (a pooled
                // shim has them already)
                libcgroups::common::prime_host_cgroups();
                let mut bld = start::builder(&b.id, &b.root, DockerExecutor::default())?;
                bld = with_io(bld, io)?;
                let c = bld
                    .as_init(bundle)
                    .with_spec(spec.clone())
                    .with_systemd(false)
                    .with_detach(true)
                    .build()
                    .map_err(|e| {
                        start::cleanup_failed(&b.root, &b.id);
                        start::runtime_error(&e)
                    })?;
                let pid = c.pid();
                b.container = Some(Box::new(c));
                pid.ok_or_else(|| StartError::Io("container has no init pid".into()))
            }
            Runtime::External(x) => {
                let pid_file = x.state_dir.join("init.runtime.pid");
                let mut cmd = x.command("create");
                cmd.arg("--bundle")
                    .arg(bundle)
                    .arg("--pid-file")
                    .arg(&pid_file);
                if let Some(s) = &io.console_socket {
                    cmd.arg("--console-socket").arg(s);
                }
                cmd.arg(&x.id);
                x.run_with_io(cmd, io)?;
                read_pid(&pid_file)
            }
        }
    }

    pub fn start(&mut self) -> Result<(), StartError> {
        match self {
            Runtime::Builtin(b) => match &mut b.container {
                Some(c) => c.start().map_err(|e| start::runtime_error(&e)),
                None => Err(StartError::Io("container not created".into())),
            },
            Runtime::External(x) => {
                let mut cmd = x.command("start");
                cmd.arg(&x.id);
                x.run(cmd)
            }
        }
    }

    /// A signal to every process of the container.
    pub fn kill_all(&mut self, sig: Signal) -> Result<(), String> {
        match self {
            Runtime::Builtin(b) => match &mut b.container {
                Some(c) => c
                    .kill(LcSignal::from(sig), true)
                    .map_err(|e| err_string(&e)),
                None => Err("container not created".into()),
            },
            Runtime::External(x) => {
                let mut cmd = x.command("kill");
                cmd.arg("--all").arg(&x.id).arg((sig as i32).to_string());
                x.run(cmd).map_err(|e| e.to_string())
            }
        }
    }

    pub fn pause(&mut self) -> Result<(), String> {
        match self {
            Runtime::Builtin(b) => match &mut b.container {
                Some(c) => c.pause().map_err(|e| err_string(&e)),
                None => Err("container not created".into()),
            },
            Runtime::External(x) => x.simple("pause"),
        }
    }

    pub fn resume(&mut self) -> Result<(), String> {
        match self {
            Runtime::Builtin(b) => match &mut b.container {
                Some(c) => c.resume().map_err(|e| err_string(&e)),
                None => Err("container not created".into()),
            },
            Runtime::External(x) => x.simple("resume"),
        }
    }

    /// Removes the runtime's state of the container (force: its processes are killed).
    pub fn delete(&mut self) {
        match self {
            Runtime::Builtin(b) => {
                let ok = b.container.as_mut().is_some_and(|c| match c.delete(true) {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("berth-shim {}: delete: {e}", b.id);
                        false
                    }
                });
                if !ok {
                    start::cleanup_failed(&b.root, &b.id);
                }
            }
            Runtime::External(x) => {
                let mut cmd = x.command("delete");
                cmd.arg("--force").arg(&x.id);
                if let Err(e) = x.run(cmd) {
                    eprintln!("berth-shim {}: delete: {e}", x.id);
                }
            }
        }
    }

    /// Starts the process described by `process_file` (an OCI `process` JSON) in the running
    /// container; returns its pid.
    pub fn exec(&mut self, process_file: &Path, io: ProcIo) -> Result<Pid, StartError> {
        match self {
            Runtime::Builtin(b) => {
                let executor = DockerExecutor {
                    exec_seccomp: b.exec_seccomp.clone(),
                };
                let bld = with_io(start::builder(&b.id, &b.root, executor)?, io)?;
                bld.as_tenant()
                    .with_process(Some(process_file))
                    .with_detach(true)
                    .build()
                    .map_err(|e| start::runtime_error(&e))
            }
            Runtime::External(x) => {
                let pid_file = x.state_dir.join("exec.runtime.pid");
                let _ = std::fs::remove_file(&pid_file);
                let mut cmd = x.command("exec");
                cmd.arg("--detach")
                    .arg("--process")
                    .arg(process_file)
                    .arg("--pid-file")
                    .arg(&pid_file);
                if let Some(s) = &io.console_socket {
                    cmd.arg("--console-socket").arg(s);
                }
                cmd.arg(&x.id);
                x.run_with_io(cmd, io)?;
                let pid = read_pid(&pid_file);
                let _ = std::fs::remove_file(&pid_file);
                pid
            }
        }
    }
}

fn with_io(
    mut b: libcontainer::container::builder::ContainerBuilder,
    io: ProcIo,
) -> Result<libcontainer::container::builder::ContainerBuilder, StartError> {
    if let Some(s) = io.console_socket {
        return Ok(b.with_console_socket(Some(s)));
    }
    let null = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| StartError::Io(format!("/dev/null: {e}")))
    };
    b = b.with_stdin(match io.stdin {
        Some(f) => f,
        None => null()?,
    });
    b = b.with_stdout(match io.stdout {
        Some(f) => f,
        None => null()?,
    });
    b = b.with_stderr(match io.stderr {
        Some(f) => f,
        None => null()?,
    });
    Ok(b)
}

fn read_pid(path: &Path) -> Result<Pid, StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::Io(format!("reading {}: {e}", path.display())))?;
    text.trim()
        .parse::<i32>()
        .map(Pid::from_raw)
        .map_err(|_| StartError::Io(format!("bad pid in {}: {text:?}", path.display())))
}

impl External {
    fn command(&self, op: &str) -> Command {
        let mut c = Command::new(&self.path);
        c.args(&self.args)
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json")
            .arg(op);
        c
    }

    fn simple(&self, op: &str) -> Result<(), String> {
        let mut cmd = self.command(op);
        cmd.arg(&self.id);
        self.run(cmd).map_err(|e| e.to_string())
    }

    fn run(&self, mut cmd: Command) -> Result<(), StartError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.finish(cmd)
    }

    /// Runs a command whose stdio the container's process inherits (create, exec).
    fn run_with_io(&self, mut cmd: Command, io: ProcIo) -> Result<(), StartError> {
        let pick = |f: Option<File>| f.map(Stdio::from).unwrap_or_else(Stdio::null);
        if io.console_socket.is_some() {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else {
            cmd.stdin(pick(io.stdin))
                .stdout(pick(io.stdout))
                .stderr(pick(io.stderr));
        }
        self.finish(cmd)
    }

    fn finish(&self, mut cmd: Command) -> Result<(), StartError> {
        let _ = std::fs::remove_file(&self.log);
        let out = cmd
            .output()
            .map_err(|e| StartError::Io(format!("running {}: {e}", self.path.display())))?;
        if out.status.success() {
            return Ok(());
        }
        // the runtime's own words: the last error in its JSON log, else its stderr
        let logged = std::fs::read_to_string(&self.log).unwrap_or_default();
        let msg = logged
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v.get("level").and_then(|l| l.as_str()) == Some("error"))
            .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_owned());
        let msg = if msg.is_empty() {
            format!("{} exited with {}", self.path.display(), out.status)
        } else {
            msg
        };
        Err(start::message_error(msg))
    }
}
