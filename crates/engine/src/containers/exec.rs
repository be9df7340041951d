//! `docker exec`: exec instances (in memory, like dockerd's), started through the container's
//! shim; plus tty resize, pause/unpause and rename.

use std::sync::{Arc, Mutex};

use berth_shim_proto::{ExecSpec, ExecUser, Reply, Request, StartErrorKind};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{BoxIo, Containers, lock, rootfs, shim, str_list};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default)]
struct ExecState {
    running: bool,
    exit_code: Option<i32>,
    pid: i32,
    started: bool,
}

pub struct Exec {
    id: String,
    container_id: String,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    user: String,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    privileged: bool,
    state: Mutex<ExecState>,
}

/// `POST /exec/{id}/start` body.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub detach: bool,
    pub tty: bool,
    pub console_size: Option<(u16, u16)>,
}

impl Containers {
    fn exec_get(&self, id: &str) -> Result<Arc<Exec>> {
        lock(&self.0.execs)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("No such exec instance: {id}")))
    }

    fn running_container(&self, name: &str) -> Result<super::Record> {
        let rec = self.get(name)?.record();
        if rec.state.status == "paused" {
            return Err(Error::conflict(format!(
                "Container {} is paused, unpause the container before exec",
                rec.id
            )));
        }
        if !rec.running() {
            return Err(Error::conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        Ok(rec)
    }

    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, body: &Value) -> Result<String> {
        let rec = self.running_container(name)?;
        let args = str_list(body.get("Cmd")).unwrap_or_default();
        if args.is_empty() {
            return Err(Error::invalid("No exec command specified"));
        }
        let b = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
        let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let b32: [u8; 32] = rand::random();
        let id: String = b32.iter().map(|x| format!("{x:02x}")).collect();
        let e = Arc::new(Exec {
            id: id.clone(),
            container_id: rec.id.clone(),
            args: args.clone(),
            env: str_list(body.get("Env")).unwrap_or_default(),
            cwd: s("WorkingDir"),
            user: s("User"),
            tty: b("Tty"),
            stdin: b("AttachStdin"),
            stdout: b("AttachStdout"),
            stderr: b("AttachStderr"),
            privileged: b("Privileged"),
            state: Mutex::new(ExecState::default()),
        });
        lock(&self.0.execs).insert(id.clone(), e);
        self.log_event(
            &rec,
            &format!("exec_create: {}", args.join(" ")),
            &[("execID", id.clone())],
        );
        Ok(id)
    }

    /// `POST /exec/{id}/start`. Call before answering; without `detach`, `io` delivers the
    /// hijacked stream. Returns whether the stream is raw (tty).
    pub async fn exec_start(
        &self,
        id: &str,
        o: ExecOptions,
    ) -> Result<(bool, Option<oneshot::Sender<BoxIo>>)> {
        let e = self.exec_get(id)?;
        {
            let mut st = lock(&e.state);
            if st.started {
                return Err(Error::conflict(format!(
                    "Error: Exec command {id} has already run"
                )));
            }
            st.started = true;
        }
        let rec = self.running_container(&e.container_id)?;
        let user = if e.user.is_empty() {
            None
        } else {
            let root = rootfs::rw_dir(self.0.images.overlay_root(), &rec.id).join("merged");
            let u = e.user.clone();
            let who =
                tokio::task::spawn_blocking(move || berth_runtime::user::resolve(&root, &u, &[]))
                    .await?
                    .map_err(|err| Error::internal(err.to_string()))?;
            Some(ExecUser {
                uid: who.uid,
                gid: who.gid,
                additional_gids: who.additional_gids,
            })
        };
        let tty = e.tty || o.tty;
        let spec = ExecSpec {
            id: e.id.clone(),
            args: e.args.clone(),
            env: e.env.clone(),
            cwd: e.cwd.clone(),
            user,
            tty,
            stdin: e.stdin && !o.detach,
            privileged: e.privileged,
            detach: o.detach,
            console_size: o.console_size,
        };
        let sd = self.state_dir(&rec.id);
        let rootfs = rootfs::rw_dir(self.0.images.overlay_root(), &rec.id).join("merged");
        // the exec's PATH: its own -e, else the container's, else Docker's default
        let env_path = e
            .env
            .iter()
            .chain(str_list(rec.config.get("Env")).unwrap_or_default().iter())
            .find_map(|kv| kv.strip_prefix("PATH=").map(str::to_owned))
            .unwrap_or_else(|| berth_runtime::DEFAULT_PATH.to_owned());
        if o.detach {
            match launch(&sd, spec, rootfs, env_path).await {
                Ok((pid, _conn)) => {
                    {
                        let mut st = lock(&e.state);
                        st.running = true;
                        st.pid = pid;
                    }
                    self.log_event(
                        &rec,
                        &format!("exec_start: {}", e.args.join(" ")),
                        &[("execID", e.id.clone())],
                    );
                    // the exit code is collected on inspect (exec_state)
                    return Ok((tty, None));
                }
                Err((kind, msg)) => {
                    lock(&e.state).exit_code = Some(kind.exit_code());
                    return Err(match kind {
                        StartErrorKind::Other => Error::internal(msg),
                        _ => Error::invalid(msg),
                    });
                }
            }
        }
        // The process starts only once the client has the 101 and the stream: output written
        // right behind the response head can be lost by clients that read the head buffered
        // and then take the raw socket (docker-py).
        lock(&e.state).running = true;
        let (tx, rx) = oneshot::channel::<BoxIo>();
        let this = self.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let Ok(mut io) = rx.await else {
                lock(&e.state).running = false;
                return;
            };
            let conn = match launch(&sd, spec, rootfs, env_path).await {
                Ok((pid, conn)) => {
                    lock(&e.state).pid = pid;
                    this.log_event(
                        &rec,
                        &format!("exec_start: {}", e.args.join(" ")),
                        &[("execID", e.id.clone())],
                    );
                    conn
                }
                Err((kind, msg)) => {
                    {
                        let mut st = lock(&e.state);
                        st.running = false;
                        st.exit_code = Some(kind.exit_code());
                    }
                    // as dockerd: the message goes to the stream and the exit code (126/127)
                    // comes from inspecting the exec
                    let line = format!("{msg}\r\n");
                    if !tty {
                        let _ = io
                            .write_all(&berth_shim_proto::frame_header(1, line.len()))
                            .await;
                    }
                    let _ = io.write_all(line.as_bytes()).await;
                    let _ = io.shutdown().await;
                    return;
                }
            };
            let e2 = e.clone();
            shim::pump(conn, io, tty, e.stdin, None, false, move |code| {
                let mut st = lock(&e2.state);
                st.running = false;
                st.exit_code = Some(code.unwrap_or(126));
            })
            .await;
            if let Some(code) = lock(&e.state).exit_code {
                this.log_event(
                    &rec,
                    "exec_die",
                    &[("execID", e.id.clone()), ("exitCode", code.to_string())],
                );
            }
        });
        Ok((tty, Some(tx)))
    }

    /// `GET /exec/{id}/json`.
    pub async fn exec_inspect(&self, id: &str) -> Result<Value> {
        let e = self.exec_get(id)?;
        let st = lock(&e.state).clone();
        let mut st = st;
        if st.running {
            // detached execs: ask the shim
            let sd = self.state_dir(&e.container_id);
            if let Ok(Reply::ExecState {
                running, exit_code, ..
            }) = shim::request(&sd, &Request::ExecState { id: e.id.clone() }).await
            {
                st.running = running;
                st.exit_code = exit_code;
                let mut s = lock(&e.state);
                s.running = running;
                s.exit_code = exit_code;
            } else if self
                .get(&e.container_id)
                .map(|c| !c.record().running())
                .unwrap_or(true)
            {
                st.running = false;
            }
        }
        let (ep, args) = e
            .args
            .split_first()
            .map(|(a, b)| (a.clone(), b.to_vec()))
            .unwrap_or_default();
        Ok(json!({
            "ID": e.id,
            "Running": st.running,
            "ExitCode": st.exit_code,
            "ProcessConfig": {
                "tty": e.tty,
                "entrypoint": ep,
                "arguments": args,
                "privileged": e.privileged,
                "user": e.user,
            },
            "OpenStdin": e.stdin,
            "OpenStderr": e.stderr,
            "OpenStdout": e.stdout,
            "CanRemove": false,
            "ContainerID": e.container_id,
            "DetachKeys": "",
            "Pid": st.pid,
        }))
    }

    /// `POST /exec/{id}/resize` and `POST /containers/{id}/resize`.
    pub async fn resize(&self, container_or_exec: &str, exec: bool, h: u16, w: u16) -> Result<()> {
        let (cid, exec_id) = if exec {
            let e = self.exec_get(container_or_exec)?;
            (e.container_id.clone(), Some(e.id.clone()))
        } else {
            (self.running_container(container_or_exec)?.id, None)
        };
        let sd = self.state_dir(&cid);
        shim::request(
            &sd,
            &Request::Resize {
                exec: exec_id,
                height: h,
                width: w,
            },
        )
        .await
        .map(|_| ())
    }

    /// `POST /containers/{id}/pause` / `unpause`.
    pub async fn pause(&self, name: &str, pause: bool) -> Result<()> {
        let ctr = self.get(name)?;
        let _op = ctr.op.lock().await;
        let rec = ctr.record();
        if !rec.running() {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let paused = rec.state.status == "paused";
        if pause && paused {
            return Err(Error::conflict(format!(
                "Container {} is already paused",
                rec.id
            )));
        }
        if !pause && !paused {
            return Err(Error::conflict(format!(
                "Container {} is not paused",
                rec.id
            )));
        }
        let sd = self.state_dir(&rec.id);
        shim::request(
            &sd,
            if pause {
                &Request::Pause
            } else {
                &Request::Resume
            },
        )
        .await?;
        lock(&ctr.rec).state.status = if pause { "paused" } else { "running" }.into();
        self.save(&ctr).await?;
        self.log_event(&rec, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// `POST /containers/{id}/rename?name=`.
    pub async fn rename(&self, name: &str, new: &str) -> Result<()> {
        let ctr = self.get(name)?;
        if !super::names::valid(new) {
            return Err(Error::invalid(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let new = format!("/{}", new.trim_start_matches('/'));
        let old = {
            let map = lock(&self.0.map);
            if let Some(c) = map.values().find(|c| lock(&c.rec).name == new) {
                return Err(Error::conflict(format!(
                    "Conflict. The container name \"{new}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    c.id
                )));
            }
            let mut r = lock(&ctr.rec);
            std::mem::replace(&mut r.name, new)
        };
        self.save(&ctr).await?;
        let rec = ctr.record();
        self.log_event(&rec, "rename", &[("oldName", old)]);
        Ok(())
    }
}

/// Start an exec in the shim: (pid, stream) or (kind, Docker-worded message).
async fn launch(
    sd: &std::path::Path,
    spec: ExecSpec,
    rootfs: std::path::PathBuf,
    env_path: String,
) -> std::result::Result<
    (i32, tokio::io::BufReader<tokio::net::UnixStream>),
    (StartErrorKind, String),
> {
    let cmd = spec.args.first().cloned().unwrap_or_default();
    let checked = tokio::task::spawn_blocking(move || check_command(&rootfs, &cmd, &env_path))
        .await
        .unwrap_or(Ok(()));
    if let Err((kind, message)) = checked {
        return Err((
            kind,
            format!(
                "OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown"
            ),
        ));
    }
    let (reply, conn) = shim::connect(sd, &Request::Exec(spec))
        .await
        .map_err(|e| (StartErrorKind::Other, e.message))?;
    match reply {
        Reply::ExecStarted { pid } => Ok((pid, conn)),
        Reply::Error { kind, message } => Err((
            kind,
            format!(
                "OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown"
            ),
        )),
        other => Err((
            StartErrorKind::Other,
            format!("unexpected shim reply {other:?}"),
        )),
    }
}

/// The pids of a container's cgroup (v2 unified, or v1's pids/memory/cpu hierarchies).
fn cgroup_pids(id: &str) -> Vec<u32> {
    let candidates = [
        format!("/sys/fs/cgroup/berth/{id}/cgroup.procs"),
        format!("/sys/fs/cgroup/pids/berth/{id}/cgroup.procs"),
        format!("/sys/fs/cgroup/memory/berth/{id}/cgroup.procs"),
        format!("/sys/fs/cgroup/cpu,cpuacct/berth/{id}/cgroup.procs"),
    ];
    for c in candidates {
        if let Ok(s) = std::fs::read_to_string(&c) {
            return s.lines().filter_map(|l| l.trim().parse().ok()).collect();
        }
    }
    Vec::new()
}

impl Containers {
    /// `GET /containers/{id}/top?ps_args=`: the host's `ps` filtered to the container's
    /// cgroup, as dockerd does it.
    pub async fn top(&self, name: &str, ps_args: &str) -> Result<Value> {
        let rec = self.running_container(name)?;
        let args: Vec<String> = if ps_args.trim().is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(str::to_owned).collect()
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| Error::internal(format!("running ps: {e}")))?;
        if !out.status.success() {
            return Err(Error::internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let Some(pid_col) = header.iter().position(|h| h == "PID") else {
            return Err(Error::internal("Couldn't find PID field in ps output"));
        };
        let pids = cgroup_pids(&rec.id);
        let mut procs = Vec::new();
        for l in lines {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            // the last column (the command) keeps its spaces
            let n = header.len();
            let mut row: Vec<String> = fields
                .iter()
                .take(n.saturating_sub(1))
                .map(|s| s.to_string())
                .collect();
            row.push(fields.get(n.saturating_sub(1)..).unwrap_or(&[]).join(" "));
            procs.push(row);
        }
        Ok(json!({ "Titles": header, "Processes": procs }))
    }

    /// `POST /containers/prune`: every stopped container.
    pub async fn prune(&self) -> Result<Value> {
        let mut deleted = Vec::new();
        for c in self.all() {
            let r = c.record();
            if r.running() || r.state.status == "restarting" {
                continue;
            }
            if self.remove(&r.id, false, false).await.is_ok() {
                deleted.push(r.id.clone());
            }
        }
        self.0.events.log(
            "container",
            "prune",
            crate::events::Actor {
                id: String::new(),
                attributes: [("reclaimed".to_owned(), "0".to_owned())].into(),
            },
        );
        Ok(json!({ "ContainersDeleted": deleted, "SpaceReclaimed": 0 }))
    }
}

/// Open `path` inside `root` (openat2 RESOLVE_IN_ROOT: symlinks cannot leave the rootfs) and
/// return its metadata.
fn stat_in_root(root: &std::path::Path, path: &str) -> std::io::Result<std::fs::Metadata> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let dir = std::fs::File::open(root)?;
    let rel = std::ffi::CString::new(path.trim_start_matches('/'))
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    // SAFETY: valid dirfd, NUL-terminated path, and a correctly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Check an exec's command the way runc's exec does, before asking the shim: a missing or
/// non-executable command fails here with Docker's message (and 127/126) instead of a failed
/// process creation inside the container.
fn check_command(
    rootfs: &std::path::Path,
    cmd: &str,
    env_path: &str,
) -> std::result::Result<(), (StartErrorKind, String)> {
    use std::os::unix::fs::PermissionsExt;
    let usable = |m: &std::fs::Metadata| m.is_file() && m.permissions().mode() & 0o111 != 0;
    if cmd.contains('/') {
        if !cmd.starts_with('/') {
            return Ok(()); // relative to the working directory: let the runtime decide
        }
        return match stat_in_root(rootfs, cmd) {
            Ok(m) if m.is_dir() => Err((
                StartErrorKind::PermissionDenied,
                format!("exec: \"{cmd}\": is a directory"),
            )),
            Ok(m) if usable(&m) => Ok(()),
            Ok(_) => Err((
                StartErrorKind::PermissionDenied,
                format!("exec: \"{cmd}\": permission denied"),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err((
                StartErrorKind::NotFound,
                format!("exec: \"{cmd}\": stat {cmd}: no such file or directory"),
            )),
            Err(_) => Ok(()),
        };
    }
    for dir in env_path.split(':').filter(|d| d.starts_with('/')) {
        if let Ok(m) = stat_in_root(rootfs, &format!("{dir}/{cmd}"))
            && usable(&m)
        {
            return Ok(());
        }
    }
    Err((
        StartErrorKind::NotFound,
        format!("exec: \"{cmd}\": executable file not found in $PATH"),
    ))
}
