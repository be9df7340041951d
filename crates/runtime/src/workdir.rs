//! `-w`/WORKDIR creation inside the container's rootfs, as Docker does at create time.
//! Every step is resolved with openat2(RESOLVE_IN_ROOT), so symlinks in the image (or a path
//! like `/proc/self/fd/N`, CVE-2024-21626 class) can never make us create or touch a host
//! directory.

use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::Error;

fn open_in_root(root: &OwnedFd, rel: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        root,
        if rel.is_empty() { "." } else { rel },
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Creates `cwd` (absolute, container view) inside `rootfs` with mode 0755 owned by root,
/// like Docker's `SetupWorkingDirectory`. Existing directories are left alone.
pub fn ensure_workdir(rootfs: &Path, cwd: &str) -> Result<(), Error> {
    if !cwd.starts_with('/') {
        return Err(Error::InvalidInput(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Io(format!("open rootfs {}: {e}", rootfs.display())))?;
    let mut prefix = String::new();
    for c in Path::new(cwd).components() {
        let Component::Normal(name) = c else {
            // "/" and "." are no-ops; ".." is resolved (and clamped) by RESOLVE_IN_ROOT
            if c == Component::ParentDir {
                prefix.push_str("../");
            }
            continue;
        };
        let parent = prefix.clone();
        prefix.push_str(&name.to_string_lossy());
        match open_in_root(&root, &prefix) {
            Ok(_) => {}
            Err(Errno::NOENT) => {
                let dir = open_in_root(&root, &parent)
                    .map_err(|e| Error::Io(format!("mkdir {cwd}: {e}")))?;
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(Error::Io(format!("mkdir {cwd}: {e}"))),
                }
                // a dangling symlink makes mkdir fail with EEXIST: check we got a directory
                open_in_root(&root, &prefix).map_err(|e| Error::Io(format!("mkdir {cwd}: {e}")))?;
            }
            Err(Errno::NOTDIR) => {
                return Err(Error::InvalidInput(format!(
                    "the working directory '{cwd}' is not a directory"
                )));
            }
            Err(e) => return Err(Error::Io(format!("mkdir {cwd}: {e}"))),
        }
        prefix.push('/');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_inside_the_root_only() {
        let root = tempfile::tempdir().unwrap();
        ensure_workdir(root.path(), "/app/src/x").unwrap();
        assert!(root.path().join("app/src/x").is_dir());
        ensure_workdir(root.path(), "/app/src/x").unwrap(); // idempotent
        ensure_workdir(root.path(), "/").unwrap();

        // an absolute symlink pointing at a host dir resolves inside the root (where it
        // dangles: an error), never to the host
        let host = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path(), root.path().join("evil")).unwrap();
        let _ = ensure_workdir(root.path(), "/evil/created");
        assert!(!host.path().join("created").exists());
        // a symlink to a directory that exists inside the root is followed inside it
        std::fs::create_dir_all(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink("/real", root.path().join("link")).unwrap();
        ensure_workdir(root.path(), "/link/sub").unwrap();
        assert!(root.path().join("real/sub").is_dir());

        // .. cannot climb out
        ensure_workdir(root.path(), "/../../../escaped").unwrap();
        assert!(root.path().join("escaped").is_dir());

        std::fs::write(root.path().join("file"), "x").unwrap();
        assert!(matches!(
            ensure_workdir(root.path(), "/file/sub"),
            Err(Error::InvalidInput(_))
        ));
        assert!(ensure_workdir(root.path(), "relative").is_err());
    }
}
