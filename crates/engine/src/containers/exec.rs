//! `docker exec`: exec instances (in memory, like dockerd's), started through the container's
//! shim; plus tty resize, pause/unpause and rename.

use std::sync::{Arc, Mutex};

use berth_shim_proto::{ExecSpec, ExecUser, Reply, Request};
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
        let (reply, conn) = shim::connect(&sd, &Request::Exec(spec)).await?;
        let pid = match reply {
            Reply::ExecStarted { pid } => pid,
            Reply::Error { kind, message } => {
                lock(&e.state).exit_code = Some(kind.exit_code());
                // worded like dockerd so the docker CLI maps it to 126/127
                let msg = format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown"
                );
                if !o.detach {
                    // dockerd has hijacked by now: the message goes to the client's stream
                    // and the exit code (126/127) comes from inspecting the exec
                    let (tx, rx) = oneshot::channel::<BoxIo>();
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        if let Ok(mut io) = rx.await {
                            let line = format!("{msg}\r\n");
                            if !tty {
                                let _ = io
                                    .write_all(&berth_shim_proto::frame_header(1, line.len()))
                                    .await;
                            }
                            let _ = io.write_all(line.as_bytes()).await;
                            let _ = io.shutdown().await;
                        }
                    });
                    return Ok((tty, Some(tx)));
                }
                return Err(match kind {
                    berth_shim_proto::StartErrorKind::Other => Error::internal(msg),
                    _ => Error::invalid(msg),
                });
            }
            other => return Err(Error::internal(format!("unexpected shim reply {other:?}"))),
        };
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
        if o.detach {
            drop(conn);
            // the exit code is collected on inspect (exec_state)
            return Ok((tty, None));
        }
        let (tx, rx) = oneshot::channel::<BoxIo>();
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(io) = rx.await else {
                return;
            };
            let e2 = e.clone();
            shim::pump(conn, io, tty, e.stdin, None, false, move |code| {
                let mut st = lock(&e2.state);
                st.running = false;
                st.exit_code = Some(code.unwrap_or(126));
            })
            .await;
            let rec = this.get(&e.container_id).map(|c| c.record());
            if let (Ok(rec), Some(code)) = (rec, lock(&e.state).exit_code) {
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
