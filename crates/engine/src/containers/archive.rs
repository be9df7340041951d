//! `docker cp` and `docker export` on the daemon side: `HEAD`/`GET`/`PUT
//! /containers/{id}/archive` and `GET /containers/{id}/export`, with dockerd's naming, stat
//! header and error messages. All filesystem access goes through [`FsView`], which resolves
//! every path inside the container (see `fsview.rs` for why that is safe against symlink
//! swaps). Trees are walked from directory fds; a file is read through the fd we stat'ed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{FileType, Stat};
use rustix::io::Errno;
use serde_json::{Value, json};

use super::fsview::{self, FsView, HostBind, InRoot, file_type};
use super::{Container, Containers, Record, blocking, io_err};
use crate::error::{Error, Result};

/// `X-Docker-Container-Path-Stat`: Docker's `ContainerPathStat`.
#[derive(Debug, Clone)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits.
    pub mode: u32,
    pub mtime: String,
    pub link_target: String,
}

impl PathStat {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        })
    }
}

/// `os.FileMode` from `st_mode`, as Go's `os.Lstat` builds it.
pub fn go_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut m = st_mode & 0o777;
    m |= match FileType::from_raw_mode(st_mode) {
        FileType::Directory => DIR,
        FileType::Symlink => SYMLINK,
        FileType::Fifo => NAMED_PIPE,
        FileType::Socket => SOCKET,
        FileType::CharacterDevice => DEVICE | CHAR_DEVICE,
        FileType::BlockDevice => DEVICE,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        m |= SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= STICKY;
    }
    m
}

/// Go's `time.Time` JSON (RFC 3339 with trailing zeros of the fraction dropped), in UTC.
fn go_time(secs: i64, nanos: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, nanos.clamp(0, 999_999_999) as u32)
        .unwrap_or_default();
    let s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos == 0 {
        return format!("{s}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{s}.{}Z", frac.trim_end_matches('0'))
}

/// Docker's `filepath.Join("/", path)` keeping a trailing `/` or `/.`
/// (`archive.PreserveTrailingDotOrSeparator`).
pub fn abs_path(path: &str) -> String {
    let mut comps: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                comps.pop();
            }
            c => comps.push(c),
        }
    }
    let mut out = format!("/{}", comps.join("/"));
    let dot = path == "." || path.ends_with("/.");
    if dot && out != "/" {
        out.push_str("/.");
    } else if dot {
        out.push('.');
    } else if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Go's `filepath.Base`.
pub fn go_base(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_owned()
}

/// A path that asserts a directory (trailing `/` or `/.`) follows a last symlink.
fn asserts_dir(abs: &str) -> bool {
    abs.ends_with('/') || abs.ends_with("/.")
}

fn not_found(path: &str, ctr: &str) -> Error {
    Error::not_found(format!("Could not find the file {path} in container {ctr}"))
}

fn resolve_err(e: Errno, path: &str, ctr: &str) -> Error {
    match e {
        Errno::NOENT => not_found(path, ctr),
        Errno::NOTDIR => Error::invalid(format!("lstat {path}: not a directory")),
        Errno::LOOP => Error::invalid(format!("lstat {path}: too many levels of symbolic links")),
        e => Error::internal(format!("lstat {path}: {e}")),
    }
}

/// The mounts a container's processes see over its rootfs: the /etc files the daemon writes,
/// then its volumes and binds (tmpfs mounts live only in the container's namespace).
fn mount_points(dir: &std::path::Path, table: &[super::mounts::HostMount]) -> Vec<HostBind> {
    let mut out: Vec<HostBind> = ["hosts", "hostname", "resolv.conf"]
        .iter()
        .map(|f| HostBind {
            destination: format!("/etc/{f}"),
            source: dir.join(f),
            read_only: false,
        })
        .filter(|m| m.source.exists())
        .collect();
    out.extend(table.iter().filter_map(|m| {
        Some(HostBind {
            destination: m.destination.clone(),
            source: m.source.clone()?,
            read_only: m.read_only,
        })
    }));
    out
}

impl Containers {
    /// The container's filesystem as seen from inside, rooted at `root` (held mounted by the
    /// caller's [`RootfsGuard`](super::RootfsGuard) for the whole operation).
    fn view(&self, ctr: &Arc<Container>, root: &Path, with_mounts: bool) -> Result<FsView> {
        let mounts = if with_mounts {
            let table = self.mount_table(&ctr.id).unwrap_or_default();
            mount_points(&self.dir(&ctr.id), &table)
        } else {
            Vec::new()
        };
        FsView::open(root, &mounts).map_err(|e| io_err("opening container filesystem", e))
    }

    fn live(&self, name: &str) -> Result<(Arc<Container>, Record)> {
        let ctr = self.get(name)?;
        let rec = ctr.record();
        if rec.state.status == "removing" || rec.state.status == "dead" {
            return Err(Error::conflict(format!(
                "container {} is marked for removal and cannot be accessed",
                rec.short_id()
            )));
        }
        Ok((ctr, rec))
    }

    /// `HEAD /containers/{id}/archive?path=`.
    pub async fn archive_stat(&self, name: &str, path: &str) -> Result<PathStat> {
        let (ctr, _) = self.live(name)?;
        let this = self.clone();
        let (name, path) = (name.to_owned(), path.to_owned());
        let guard = self.mount_rootfs(&ctr.id).await?;
        blocking(move || {
            let view = this.view(&ctr, guard.path(), true)?;
            stat_path(&view, &path, &name)
        })
        .await
    }

    /// `GET /containers/{id}/archive?path=`: the tar of `path`, named as dockerd names it
    /// (the last element of the requested path; `.` for `dir/.`).
    pub async fn archive_get(
        &self,
        name: &str,
        path: &str,
        out: Box<dyn Write + Send>,
    ) -> Result<()> {
        let (ctr, rec) = self.live(name)?;
        let this = self.clone();
        let (n, p) = (name.to_owned(), path.to_owned());
        let guard = self.mount_rootfs(&ctr.id).await?;
        blocking(move || {
            let view = this.view(&ctr, guard.path(), true)?;
            let abs = abs_path(&p);
            let r = view
                .resolve(abs.as_bytes(), asserts_dir(&abs), false)
                .map_err(|e| resolve_err(e, &p, &n))?;
            let mut out = out;
            let mut w = TarWriter::new(&view, &mut out, true);
            w.tree(r.fd, r.stat, r.comps, go_base(&abs).into_bytes())
                .and_then(|()| w.finish())
                .map_err(|e| io_err("writing archive", e))
        })
        .await?;
        self.log_event(&rec, "archive-path", &[]);
        Ok(())
    }

    /// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`: extract a
    /// tar (plain, gzip or zstd) into the directory `path`.
    pub async fn archive_put(
        &self,
        name: &str,
        path: &str,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
        input: Box<dyn Read + Send>,
    ) -> Result<()> {
        let (ctr, rec) = self.live(name)?;
        let this = self.clone();
        let (n, p) = (name.to_owned(), path.to_owned());
        let r2 = rec.clone();
        let guard = self.mount_rootfs(&ctr.id).await?;
        blocking(move || {
            let view = this.view(&ctr, guard.path(), true)?;
            let abs = abs_path(&p);
            let r = view
                .resolve(abs.as_bytes(), true, false)
                .map_err(|e| resolve_err(e, &p, &n))?;
            if !r.is_dir() {
                return Err(Error::invalid("extraction point is not a directory"));
            }
            if r.read_only {
                return Err(Error::invalid("mounted volume is marked read-only"));
            }
            if !r.in_mount && r2.host_bool("ReadonlyRootfs") {
                return Err(Error::invalid("container rootfs is marked read-only"));
            }
            let user = r2.cfg_str("User");
            let chown = if copy_uid_gid && !user.is_empty() {
                let u = berth_runtime::user::resolve(guard.path(), &user, &[])
                    .map_err(|e| Error::invalid(e.to_string()))?;
                Some((u.uid, u.gid))
            } else {
                None
            };
            let opts = berth_image::layer::ExtractOptions {
                whiteouts: false,
                check_symlinks: false,
                chown,
                no_overwrite_dir_non_dir,
            };
            let mut input = input;
            let (_, mut reader) = berth_image::layer::decompress(&mut input)?;
            let mut dest = InRoot {
                view: &view,
                base: r.comps,
            };
            berth_image::layer::extract(&mut reader, &mut dest, &opts, &mut |_| {})?;
            Ok(())
        })
        .await?;
        self.log_event(&rec, "extract-to-dir", &[]);
        Ok(())
    }

    /// `GET /containers/{id}/export`: the container's root filesystem (without its mounts).
    pub async fn export(&self, name: &str, out: Box<dyn Write + Send>) -> Result<()> {
        let (ctr, rec) = self.live(name)?;
        let this = self.clone();
        let guard = self.mount_rootfs(&ctr.id).await?;
        blocking(move || {
            let view = this.view(&ctr, guard.path(), false)?;
            let r = view
                .resolve(b"/", false, false)
                .map_err(|e| io_err("opening rootfs", e))?;
            let mut out = out;
            let mut w = TarWriter::new(&view, &mut out, false);
            // dockerd's export has no entry for the root itself, only its children.
            w.children(&r.fd, &r.comps, b"")
                .and_then(|()| w.finish())
                .map_err(|e| io_err("exporting container", e))
        })
        .await?;
        self.log_event(&rec, "export", &[]);
        Ok(())
    }
}

/// A directory tree (an image's filesystem the builder holds, read-only) seen as a container
/// would see it: every path resolved inside it, symlinks included. Lets the builder ask about
/// and copy out of an image without creating a container. Blocking.
pub struct RootView(FsView);

impl RootView {
    pub fn open(root: &Path) -> Result<RootView> {
        FsView::open(root, &[])
            .map(RootView)
            .map_err(|e| io_err("opening image filesystem", e))
    }

    /// Whether `path` is (or links to) a directory.
    pub fn is_dir(&self, path: &str) -> bool {
        self.0
            .resolve(abs_path(path).as_bytes(), true, false)
            .is_ok_and(|r| r.is_dir())
    }

    /// The canonical path of `path` with every symlink followed (inside the root).
    pub fn canonical(&self, path: &str) -> std::result::Result<String, Errno> {
        Ok(self
            .0
            .resolve(abs_path(path).as_bytes(), true, false)?
            .path())
    }

    /// `path` without following a last symlink: its canonical path (symlinks of the parents
    /// resolved) and whether it is a directory.
    pub fn lstat(&self, path: &str) -> std::result::Result<(String, bool), Errno> {
        let r = self.0.resolve(abs_path(path).as_bytes(), false, false)?;
        Ok((r.path(), r.is_dir()))
    }

    /// Mode (permission bits), owner and mtime of `path` (a last symlink not followed).
    pub fn meta(&self, path: &str) -> std::result::Result<(u32, u32, u32, i64), Errno> {
        let r = self.0.resolve(abs_path(path).as_bytes(), false, false)?;
        Ok((
            r.stat.st_mode & 0o7777,
            r.stat.st_uid,
            r.stat.st_gid,
            r.stat.st_mtime,
        ))
    }

    /// The tar `GET /containers/{id}/archive?path=` would give for `path` (named by its last
    /// element). A missing path is a NotFound error.
    pub fn archive(&self, path: &str, out: &mut dyn Write) -> Result<()> {
        let abs = abs_path(path);
        let r = self
            .0
            .resolve(abs.as_bytes(), asserts_dir(&abs), false)
            .map_err(|e| match e {
                Errno::NOENT => Error::not_found(format!("stat {path}: file does not exist")),
                e => Error::invalid(format!("stat {path}: {e}")),
            })?;
        let mut w = TarWriter::new(&self.0, out, false);
        w.tree(r.fd, r.stat, r.comps, go_base(&abs).into_bytes())
            .and_then(|()| w.finish())
            .map_err(|e| io_err("writing archive", e))
    }
}

/// dockerd's stat of a container path: `lstat` (a trailing `/` or `/.` follows a last
/// symlink), plus the fully resolved target of a symlink.
fn stat_path(view: &FsView, path: &str, ctr: &str) -> Result<PathStat> {
    let abs = abs_path(path);
    let r = view
        .resolve(abs.as_bytes(), asserts_dir(&abs), false)
        .map_err(|e| resolve_err(e, path, ctr))?;
    let link_target = if file_type(&r.stat) == FileType::Symlink {
        match view.resolve(abs.as_bytes(), true, false) {
            Ok(t) => t.path(),
            // A dangling link: where it points, taken from its directory.
            Err(_) => {
                let parent = &r.comps[..r.comps.len().saturating_sub(1)];
                match FsView::link_target(&r.fd) {
                    Ok(t) if t.as_bytes().starts_with(b"/") => abs_path(&t.to_string_lossy()),
                    Ok(t) => abs_path(&format!(
                        "{}/{}",
                        fsview::canonical(parent),
                        t.to_string_lossy()
                    )),
                    Err(_) => String::new(),
                }
            }
        }
    } else {
        String::new()
    };
    Ok(PathStat {
        name: go_base(&abs),
        size: r.stat.st_size,
        mode: go_mode(r.stat.st_mode),
        mtime: go_time(r.stat.st_mtime, r.stat.st_mtime_nsec as i64),
        link_target,
    })
}

/// A reader that yields exactly `n` bytes: a file that shrank while we read it is padded with
/// zeros, one that grew is cut, so the tar stays well-formed.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes a tree of the view as a tar, walking directory fds.
struct TarWriter<'a, W: Write> {
    view: &'a FsView,
    b: tar::Builder<W>,
    use_mounts: bool,
    links: HashMap<(u64, u64), Vec<u8>>,
}

fn join_name(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if !out.is_empty() && !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

impl<'a, W: Write> TarWriter<'a, W> {
    fn new(view: &'a FsView, out: W, use_mounts: bool) -> Self {
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Complete);
        TarWriter {
            view,
            b,
            use_mounts,
            links: HashMap::new(),
        }
    }

    fn finish(self) -> io::Result<()> {
        let mut w = self.b.into_inner()?;
        w.flush()
    }

    /// Append with the name (and link name) exactly as given: the tar crate's path setters
    /// drop `./` and refuse `/`, which dockerd's names (`./x`, `/bin`) need. Names longer than
    /// the header holds go in GNU long-name entries first, as GNU tar and Go read them.
    fn append_raw(
        &mut self,
        mut h: tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> io::Result<()> {
        for (kind, value) in [(b'L', Some(name)), (b'K', link)] {
            let Some(v) = value.filter(|v| v.len() > 100) else {
                continue;
            };
            let mut lh = tar::Header::new_gnu();
            lh.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            lh.set_mode(0o644);
            lh.set_entry_type(tar::EntryType::new(kind));
            let mut body = v.to_vec();
            body.push(0);
            lh.set_size(body.len() as u64);
            lh.set_cksum();
            self.b.append(&lh, &body[..])?;
        }
        let old = h.as_old_mut();
        old.name = [0; 100];
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name[..n]);
        if let Some(l) = link {
            old.linkname = [0; 100];
            let n = l.len().min(100);
            old.linkname[..n].copy_from_slice(&l[..n]);
        }
        h.set_cksum();
        self.b.append(&h, data)
    }

    fn header(st: &Stat) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    /// Children of the directory `dir` (an `O_PATH` fd) at canonical `comps`, named under
    /// `prefix`.
    fn children(&mut self, dir: &OwnedFd, comps: &[OsString], prefix: &[u8]) -> io::Result<()> {
        let names = FsView::list_dir(dir).map_err(io::Error::from)?;
        for n in names {
            let (fd, st) = match self.view.child(dir, comps, &n, self.use_mounts) {
                Ok(x) => x,
                // Deleted while we walk: skip, as a tar of a live tree does.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut c = comps.to_vec();
            c.push(n.clone());
            self.tree(fd, st, c, join_name(prefix, n.as_bytes()))?;
        }
        Ok(())
    }

    /// The object `fd` (stat `st`) at canonical `comps`, named `name` in the tar.
    fn tree(
        &mut self,
        fd: OwnedFd,
        st: Stat,
        comps: Vec<OsString>,
        name: Vec<u8>,
    ) -> io::Result<()> {
        let mut h = Self::header(&st);
        match file_type(&st) {
            FileType::Directory => {
                let mut dname = name.clone();
                if !dname.ends_with(b"/") {
                    dname.push(b'/');
                }
                h.set_entry_type(tar::EntryType::Directory);
                self.append_raw(h, &dname, None, io::empty())?;
                self.children(&fd, &comps, &name)?;
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        self.append_raw(h, &name, Some(&first), io::empty())?;
                        return Ok(());
                    }
                    self.links.insert(key, name.clone());
                }
                let f = fsview::reopen_file(&fd).map_err(io::Error::from)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.st_size.max(0) as u64);
                let data = Exact {
                    inner: f,
                    left: st.st_size.max(0) as u64,
                };
                self.append_raw(h, &name, None, data)?;
            }
            FileType::Symlink => {
                let target = FsView::link_target(&fd).map_err(io::Error::from)?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.append_raw(h, &name, Some(target.as_bytes()), io::empty())?;
            }
            ft @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                h.set_entry_type(match ft {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if ft != FileType::Fifo {
                    h.set_device_major(rustix::fs::major(st.st_rdev))?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                }
                self.append_raw(h, &name, None, io::empty())?;
            }
            // Sockets and anything else have no tar form; skipped like Docker does.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_like_docker() {
        assert_eq!(abs_path("etc/hosts"), "/etc/hosts");
        assert_eq!(abs_path("/a/b/"), "/a/b/");
        assert_eq!(abs_path("/a/b/."), "/a/b/.");
        assert_eq!(abs_path("/"), "/");
        assert_eq!(abs_path("/."), "/.");
        assert_eq!(abs_path("../../x"), "/x");
        assert_eq!(go_base("/a/b/"), "b");
        assert_eq!(go_base("/a/b/."), ".");
        assert_eq!(go_base("/"), "/");
        assert_eq!(go_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(go_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(go_mode(0o104755), (1 << 23) | 0o755);
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(go_time(1, 500_000_000), "1970-01-01T00:00:01.5Z");
    }
}
