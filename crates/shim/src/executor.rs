//! The libcontainer workload executor: validates the command inside the container (after
//! pivot_root, before start) with runc's/Docker's messages, so "not found" (127) and "cannot
//! execute" (126) are distinguishable, then execs it.
//!
//! For exec'd processes it also installs the container's seccomp filter: libcontainer 0.7
//! builds the tenant's spec without `linux.seccomp`, and Docker confines `docker exec`
//! processes like the container's own.

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

/// (device, inode) of the berth-shim binary, taken at start-up on the host.
static OWN_BINARY: OnceLock<(u64, u64)> = OnceLock::new();

/// Records which file is berth-shim, before any container is entered (CVE-2019-5736 class:
/// the about-to-exec process still runs berth-shim, so `/proc/self/exe` inside the container
/// resolves to the host's binary).
pub fn remember_own_binary() {
    if let Ok(m) = std::fs::metadata("/proc/self/exe") {
        let _ = OWN_BINARY.set((m.dev(), m.ino()));
    }
}

/// Refuses to run the runtime's own binary as a container process, directly or as a script's
/// interpreter: running it would leave the host file reachable through `/proc/<pid>/exe` for
/// the container's other processes.
///
/// This is a check, then an exec by path: a process already in the container (exec, a shared
/// volume) could swap the path in between. We accept that race rather than runc's fix (a
/// sealed memfd copy of the binary per shim: 2–5 MiB of memory each, against a 1 MiB budget;
/// or a read-only bind mount, which needs a mount namespace per shim) because the payoff of
/// winning it is nil here: the host binary cannot be opened for writing while any process
/// executes it (ETXTBSY, checked on this kernel), and the container's own shim executes the
/// same file for as long as any process of the container lives (it kills the cgroup in its
/// delete before it exits). Until the exec the init is non-dumpable (libcontainer), so
/// `/proc/<pid>/exe` is closed to the container meanwhile.
fn refuse_own_binary(name: &str, p: &Path, md: &std::fs::Metadata) -> Result<(), String> {
    let Some(&own) = OWN_BINARY.get() else {
        return Ok(());
    };
    let denied = || format!("exec: \"{name}\": permission denied");
    if (md.dev(), md.ino()) == own {
        return Err(denied());
    }
    // `#!/proc/self/exe`: the kernel resolves the interpreter while we are still berth-shim
    let mut head = [0u8; 256];
    let n = std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    if let Some(line) = head[..n].strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let interp = String::from_utf8_lossy(line);
        if let Some(i) = interp.split_whitespace().next()
            && let Ok(m) = std::fs::metadata(i)
            && (m.dev(), m.ino()) == own
        {
            return Err(denied());
        }
    }
    Ok(())
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
        refuse_own_binary(name, p, &md)
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

    #[test]
    fn refuses_the_runtime_binary() {
        remember_own_binary();
        let e = look_path("/proc/self/exe", "/bin").unwrap_err();
        assert_eq!(e, "exec: \"/proc/self/exe\": permission denied");
        let dir = std::env::temp_dir().join(format!("berth-shim-exe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s");
        std::fs::write(&script, "#!/proc/self/exe -x\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = look_path(script.to_str().unwrap(), "/bin").unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.ends_with("permission denied"), "{e}");
        assert!(look_path("sh", "/bin").is_ok());
    }
}
