//! The libcontainer workload executor: validates the command inside the container (after
//! pivot_root, before start) with runc's/Docker's messages, so "not found" (127) and "cannot
//! execute" (126) are distinguishable, then execs it.
//!
//! For exec'd processes it also installs the container's seccomp filter: libcontainer 0.7
//! builds the tenant's spec without `linux.seccomp`, and Docker confines `docker exec`
//! processes like the container's own.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{Capability, LinuxSeccomp, Spec};
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

#[derive(Clone, Default)]
pub struct DockerExecutor {
    /// The container's filter, to load before exec'ing a tenant (exec) process.
    pub exec_seccomp: Option<LinuxSeccomp>,
}

/// Loads `sc` into this (about to exec) process. Capabilities are already dropped here, so
/// without CAP_SYS_ADMIN the kernel requires no_new_privs for an unprivileged filter load.
fn load_exec_seccomp(spec: &Spec, sc: &LinuxSeccomp) -> Result<(), ExecutorError> {
    let has_sys_admin = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.effective().as_ref())
        .is_some_and(|e| e.contains(&Capability::SysAdmin));
    if !has_sys_admin {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(ExecutorError::Other(format!(
                "set no_new_privs for seccomp: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    libcontainer::seccomp::initialize_seccomp(sc)
        .map(|_| ())
        .map_err(|e| ExecutorError::Other(format!("loading seccomp filter: {e}")))
}

fn args_env(spec: &Spec) -> (Vec<String>, String) {
    let p = spec.process().as_ref();
    let args = p.and_then(|p| p.args().clone()).unwrap_or_default();
    let path = p
        .and_then(|p| p.env().as_ref())
        .and_then(|env| {
            env.iter()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        })
        .unwrap_or_default();
    (args, path)
}

/// Go's exec.LookPath as runc uses it: a name with a slash is taken as is, otherwise each
/// PATH entry is tried; the first existing *executable regular file* wins.
fn look_path(name: &str, path_var: &str) -> Result<PathBuf, String> {
    let check = |p: &Path| -> Result<(), String> {
        let md = std::fs::metadata(p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "exec: \"{name}\": stat {}: no such file or directory",
                    p.display()
                )
            } else {
                format!("exec: \"{name}\": stat {}: {e}", p.display())
            }
        })?;
        if md.is_dir() {
            return Err(format!("exec: \"{name}\": is a directory"));
        }
        if md.permissions().mode() & 0o111 == 0 {
            return Err(format!("exec: \"{name}\": permission denied"));
        }
        Ok(())
    };
    if name.contains('/') {
        check(Path::new(name))?;
        return Ok(PathBuf::from(name));
    }
    let mut first_err = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(name);
        match check(&cand) {
            Ok(()) => return Ok(cand),
            // a non-executable match is remembered but the search goes on, like Go
            Err(e) if !e.contains("no such file") && first_err.is_none() => first_err = Some(e),
            Err(_) => {}
        }
    }
    Err(first_err
        .unwrap_or_else(|| format!("exec: \"{name}\": executable file not found in $PATH")))
}

impl Executor for DockerExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let (args, path_var) = args_env(spec);
        let Some(first) = args.first() else {
            return Err(ExecutorError::InvalidArg);
        };
        let prog = look_path(first, &path_var).map_err(ExecutorError::Other)?;
        let prog = CString::new(prog.as_os_str().as_encoded_bytes())
            .map_err(|_| ExecutorError::InvalidArg)?;
        let argv: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| ExecutorError::InvalidArg))
            .collect::<Result<_, _>>()?;
        if let Some(sc) = &self.exec_seccomp {
            load_exec_seccomp(spec, sc)?;
        }
        // The Rust runtime of the shim ignores SIGPIPE and ignored signals survive execve:
        // give the workload the default disposition back.
        // SAFETY: single-threaded process about to exec; resetting a disposition is benign.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        let err = nix::unistd::execv(&prog, &argv).err();
        Err(ExecutorError::Other(format!(
            "exec: \"{first}\": {}",
            err.map(|e| e.desc().to_lowercase())
                .unwrap_or_else(|| "exec failed".into())
        )))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let (args, path_var) = args_env(spec);
        let Some(first) = args.first() else {
            return Err(ExecutorValidationError::ArgValidationError(
                "no command specified".into(),
            ));
        };
        look_path(first, &path_var)
            .map(|_| ())
            .map_err(ExecutorValidationError::ArgValidationError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_messages() {
        assert!(look_path("sh", "/nonexistent:/bin").is_ok());
        let e = look_path("nosuch-xyz", "/bin:/usr/bin").unwrap_err();
        assert_eq!(
            e,
            "exec: \"nosuch-xyz\": executable file not found in $PATH"
        );
        let e = look_path("/etc/passwd", "/bin").unwrap_err();
        assert_eq!(e, "exec: \"/etc/passwd\": permission denied");
        let e = look_path("/etc", "/bin").unwrap_err();
        assert_eq!(e, "exec: \"/etc\": is a directory");
        let e = look_path("/nosuch/x", "/bin").unwrap_err();
        assert!(e.contains("no such file or directory"), "{e}");
    }
}
