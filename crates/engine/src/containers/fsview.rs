//! A container's filesystem as its processes see it (the rootfs plus the mounts laid over it),
//! for `cp`, the archive API and export. Blocking; call from `spawn_blocking`.
//!
//! Every path is resolved one component at a time from directory fds we hold: each component
//! is opened with `openat(O_PATH | O_NOFOLLOW)`, a symlink is read and its target resolved again
//! from the container's root (an absolute target restarts at the root, `..` never climbs above
//! it), and a directory that is a mount destination is swapped for the mount's source fd. A
//! process in the container that swaps a component for a symlink (CVE-2018-15664) can only make
//! us resolve inside the container's own tree, never a host path: no host path is ever joined
//! with a container path.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// Symlinks followed in one resolution before giving up, as the kernel's MAXSYMLINKS.
const MAX_LINKS: u32 = 40;

/// One mount over the rootfs: `destination` in the container, `source` on the host.
#[derive(Debug, Clone)]
pub struct HostBind {
    pub destination: String,
    pub source: PathBuf,
    pub read_only: bool,
}

struct ViewMount {
    comps: Vec<OsString>,
    fd: OwnedFd,
    read_only: bool,
}

/// The container root and its mounts, opened once.
pub struct FsView {
    root: OwnedFd,
    mounts: Vec<ViewMount>,
}

/// What a path resolved to.
pub struct Resolved {
    /// `O_PATH` fd of the object itself (the link when a last symlink is not followed).
    pub fd: OwnedFd,
    /// Canonical path components in the container.
    pub comps: Vec<OsString>,
    pub stat: Stat,
    /// Inside a read-only mount.
    pub read_only: bool,
    /// Inside a mount (a volume or bind) rather than the rootfs.
    pub in_mount: bool,
}

impl Resolved {
    pub fn is_dir(&self) -> bool {
        file_type(&self.stat) == FileType::Directory
    }
    /// The canonical container path, `/a/b`.
    pub fn path(&self) -> String {
        canonical(&self.comps)
    }
}

pub fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

pub fn canonical(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// Split a container path into components (`.`, `..` and empty ones kept for the resolver).
pub fn split(path: &[u8]) -> Vec<OsString> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}

fn open_path(dir: impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// A readable directory fd from an `O_PATH` one (same inode, nothing re-resolved).
pub fn reopen_dir(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// A readable fd of a non-directory from an `O_PATH` one, through the fd's own magic link
/// (the same inode; no path is resolved again). Never blocks on a FIFO.
pub fn reopen_file(fd: &OwnedFd) -> Result<std::fs::File, Errno> {
    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let f = rustix::fs::open(
        p.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(f))
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0)
}

impl FsView {
    /// Open `rootfs` and the mounts. A mount whose source is gone is skipped (as it would be
    /// empty in the container).
    pub fn open(rootfs: &Path, mounts: &[HostBind]) -> std::io::Result<FsView> {
        let root = rustix::fs::open(
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut ms = Vec::new();
        for m in mounts {
            let comps: Vec<OsString> = split(m.destination.as_bytes())
                .into_iter()
                .filter(|c| c != "." && c != "..")
                .collect();
            if comps.is_empty() {
                continue;
            }
            // The source is a host path the daemon chose (volume dir, container dir, bind
            // source given by the admin): opened as is.
            match rustix::fs::open(&m.source, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => ms.push(ViewMount {
                    comps,
                    fd,
                    read_only: m.read_only,
                }),
                Err(e) => {
                    tracing::debug!("mount source {} not opened: {e}", m.source.display())
                }
            }
        }
        // Deepest last, so a nested mount wins over its parent.
        ms.sort_by_key(|m| m.comps.len());
        Ok(FsView { root, mounts: ms })
    }

    /// The mount at exactly `comps`, if any (the last one listed wins, as the kernel's top).
    fn mount_at(&self, comps: &[OsString]) -> Option<&ViewMount> {
        self.mounts.iter().rev().find(|m| m.comps == comps)
    }

    /// The innermost mount containing `comps`.
    fn mount_over(&self, comps: &[OsString]) -> Option<&ViewMount> {
        self.mounts
            .iter()
            .rev()
            .find(|m| comps.len() >= m.comps.len() && comps[..m.comps.len()] == m.comps[..])
    }

    /// The fd to use for the object at canonical `comps` whose `O_PATH` fd in its parent is
    /// `fd`: the mount's source when something is mounted there.
    fn over_mount(&self, comps: &[OsString], fd: OwnedFd) -> Result<OwnedFd, Errno> {
        match self.mount_at(comps) {
            Some(m) => dup(&m.fd),
            None => Ok(fd),
        }
    }

    /// Resolve `path` (absolute or not: always from the container's root). `follow_last`:
    /// follow a symlink in the last component too. `create_dirs`: create missing directories
    /// (0755) along the way, as an extraction does for an entry's parents.
    pub fn resolve(
        &self,
        path: &[u8],
        follow_last: bool,
        create_dirs: bool,
    ) -> Result<Resolved, Errno> {
        self.resolve_comps(split(path), follow_last, create_dirs)
    }

    pub fn resolve_comps(
        &self,
        path: Vec<OsString>,
        follow_last: bool,
        create_dirs: bool,
    ) -> Result<Resolved, Errno> {
        // The directories we are in, below the root: (fd, name).
        let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
        let mut queue: VecDeque<OsString> = path.into();
        let mut links = 0;
        let mut last: Option<(OwnedFd, OsString)> = None;
        while let Some(c) = queue.pop_front() {
            if c == "." || c.is_empty() {
                continue;
            }
            if c == ".." {
                stack.pop();
                continue;
            }
            let more = queue.iter().any(|x| !x.is_empty() && x != ".");
            let dir: &OwnedFd = stack.last().map_or(&self.root, |(fd, _)| fd);
            let fd = match open_path(dir, &c) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create_dirs => {
                    match rustix::fs::mkdirat(dir, &c, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e),
                    }
                    let fd = open_path(dir, &c)?;
                    // 0755 whatever the umask, as Docker does for implied parents.
                    if let Ok(real) = reopen_dir(&fd) {
                        let _ = rustix::fs::fchmod(&real, Mode::from_raw_mode(0o755));
                    }
                    fd
                }
                Err(e) => return Err(e),
            };
            let st = rustix::fs::fstat(&fd)?;
            match file_type(&st) {
                FileType::Symlink if more || follow_last => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = FsView::link_target(&fd)?.into_vec();
                    if target.starts_with(b"/") {
                        stack.clear();
                    }
                    for t in split(&target).into_iter().rev() {
                        queue.push_front(t);
                    }
                }
                FileType::Directory => {
                    let mut comps: Vec<OsString> = stack.iter().map(|(_, n)| n.clone()).collect();
                    comps.push(c.clone());
                    let fd = self.over_mount(&comps, fd)?;
                    stack.push((fd, c));
                }
                _ if more => return Err(Errno::NOTDIR),
                _ => {
                    last = Some((fd, c));
                    break;
                }
            }
        }
        let mut comps: Vec<OsString> = stack.iter().map(|(_, n)| n.clone()).collect();
        let fd = match last {
            Some((fd, name)) => {
                comps.push(name);
                self.over_mount(&comps, fd)?
            }
            None => match stack.pop() {
                Some((fd, _)) => fd,
                None => dup(&self.root)?,
            },
        };
        let stat = rustix::fs::fstat(&fd)?;
        let mount = self.mount_over(&comps);
        Ok(Resolved {
            fd,
            comps,
            stat,
            read_only: mount.is_some_and(|m| m.read_only),
            in_mount: mount.is_some(),
        })
    }

    /// A directory's entries (names only, sorted bytewise for stable archives).
    pub fn list_dir(dir: &OwnedFd) -> Result<Vec<OsString>, Errno> {
        let real = reopen_dir(dir)?;
        let mut out = Vec::new();
        let d = rustix::fs::Dir::read_from(&real)?;
        for e in d {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            out.push(OsString::from_vec(n.to_vec()));
        }
        out.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(out)
    }

    /// The child `name` of directory `dir` (whose canonical path is `comps`), without
    /// following a symlink; a mount there replaces it. For walking a tree.
    pub fn child(
        &self,
        dir: &OwnedFd,
        comps: &[OsString],
        name: &OsStr,
        use_mounts: bool,
    ) -> Result<(OwnedFd, Stat), Errno> {
        let fd = open_path(dir, name)?;
        let fd = if use_mounts {
            let mut c = comps.to_vec();
            c.push(name.to_owned());
            self.over_mount(&c, fd)?
        } else {
            fd
        };
        let st = rustix::fs::fstat(&fd)?;
        Ok((fd, st))
    }

    /// The target of the symlink whose `O_PATH | O_NOFOLLOW` fd is `fd` (readlinkat with an
    /// empty path reads the link the fd itself refers to).
    pub fn link_target(fd: &OwnedFd) -> Result<OsString, Errno> {
        let t = rustix::fs::readlinkat(fd, "", Vec::new())?;
        Ok(OsString::from_vec(t.into_bytes()))
    }
}

/// Extraction (`PUT /archive`) into a directory of the view: each entry's parent resolved
/// inside the container's root (symlinks followed there, as dockerd's chrooted untar does),
/// missing parents created, read-only mounts refused.
pub struct InRoot<'a> {
    pub view: &'a FsView,
    /// Canonical components of the extraction point.
    pub base: Vec<OsString>,
}

impl berth_image::layer::EntryResolver for InRoot<'_> {
    fn parent(&mut self, comps: &[OsString], full: &OsStr) -> berth_image::Result<OwnedFd> {
        self.open(comps, full)
    }
    fn existing_dir(&mut self, comps: &[OsString]) -> Result<OwnedFd, Errno> {
        let mut path = self.base.clone();
        path.extend(comps.iter().cloned());
        let r = self.view.resolve_comps(path, true, false)?;
        if !r.is_dir() {
            return Err(Errno::NOTDIR);
        }
        reopen_dir(&r.fd)
    }
}

impl InRoot<'_> {
    fn open(&self, comps: &[OsString], full: &OsStr) -> berth_image::Result<OwnedFd> {
        let mut path = self.base.clone();
        path.extend(comps.iter().cloned());
        let err = |e: Errno| {
            let p = full.to_string_lossy();
            berth_image::Error::InvalidArchive(match e {
                Errno::NOTDIR => {
                    format!(
                        "invalid archive entry {p:?}: a parent path component is not a directory"
                    )
                }
                Errno::NOENT => format!("invalid archive entry {p:?}: no such file or directory"),
                Errno::LOOP => {
                    format!("invalid archive entry {p:?}: too many levels of symbolic links")
                }
                e => format!("invalid archive entry {p:?}: {e}"),
            })
        };
        let r = self.view.resolve_comps(path, true, true).map_err(err)?;
        if !r.is_dir() {
            return Err(err(Errno::NOTDIR));
        }
        if r.read_only {
            return Err(berth_image::Error::InvalidArchive(
                "mounted volume is marked read-only".into(),
            ));
        }
        reopen_dir(&r.fd).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &Resolved) -> String {
        r.path()
    }

    #[test]
    fn resolves_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/a", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../a", root.join("a/up")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("hostetc")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let vol = t.path().join("vol");
        std::fs::create_dir_all(vol.join("in")).unwrap();
        let v = FsView::open(
            &root,
            &[HostBind {
                destination: "/a/b".into(),
                source: vol.clone(),
                read_only: true,
            }],
        )
        .unwrap();
        assert_eq!(
            names(&v.resolve(b"/abs/b/in", true, false).unwrap()),
            "/a/b/in"
        );
        let r = v.resolve(b"abs/b/in", true, false).unwrap();
        assert!(r.read_only && r.in_mount && r.is_dir());
        // the rootfs file under the mount point is hidden by the mount
        assert_eq!(v.resolve(b"/a/b/f", true, false).err(), Some(Errno::NOENT));
        // `..` and absolute links stop at the root
        assert_eq!(names(&v.resolve(b"/a/up", true, false).unwrap()), "/a");
        assert_eq!(
            names(&v.resolve(b"/../../a/../a", true, false).unwrap()),
            "/a"
        );
        // /etc of the host is not reachable
        assert_eq!(
            v.resolve(b"/hostetc/passwd", true, false).err(),
            Some(Errno::NOENT)
        );
        // the last link is kept unless followed
        let r = v.resolve(b"/abs", false, false).unwrap();
        assert_eq!(file_type(&r.stat), FileType::Symlink);
        assert_eq!(v.resolve(b"/loop", true, false).err(), Some(Errno::LOOP));
        // created parents stay inside
        let r = v.resolve(b"/hostetc/new/dir", true, true).unwrap();
        assert_eq!(names(&r), "/etc/new/dir");
        assert!(root.join("etc/new/dir").is_dir());
    }
}
