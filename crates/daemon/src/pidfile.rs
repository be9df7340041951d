//! The pidfile: holds our pid and stays flock'ed while we run, so a second berthd on the same
//! pidfile refuses to start instead of fighting over state.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    #[error("pid file found, ensure berthd is not running or delete {path}: {detail}")]
    Locked { path: String, detail: String },
    #[error("pidfile {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Removed (still locked) on drop.
pub struct Pidfile {
    path: PathBuf,
    _file: File,
}

impl Pidfile {
    pub fn acquire(path: &Path) -> Result<Pidfile, PidfileError> {
        let io = |source| PidfileError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let detail = match text.trim() {
                "" => format!("it is locked by another process ({e})"),
                pid => format!("berthd is running as pid {pid}"),
            };
            return Err(PidfileError::Locked {
                path: path.display().to_string(),
                detail,
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Pidfile {
            path: path.to_owned(),
            _file: file,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Remove while still holding the lock, so a successor never sees our stale pid.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/berthd.pid");
        let first = Pidfile::acquire(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            std::process::id().to_string()
        );
        let second = Pidfile::acquire(&p);
        let msg = second.err().unwrap().to_string();
        assert!(msg.contains("pid file found"), "{msg}");
        drop(first);
        assert!(!p.exists());
        let again = Pidfile::acquire(&p).unwrap();
        drop(again);
    }
}
