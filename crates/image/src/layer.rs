//! Layers: safe unpacking of a layer tar into a directory (every path resolved inside the root,
//! whiteouts converted to overlay's form), and the reverse (an overlay upper dir to a tar).
//!
//! Unpacking never joins a tar path onto a host path: each entry's parent directory is opened
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` relative to the
//! layer root, and the entry itself is created with `*at()` calls that do not follow symlinks.
//! A tar that tries to leave the root, or to write through a symlink it planted, is rejected.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_types::Digest;
use berth_types::digest::Hasher;
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::{Error, Result};

/// The overlay xattr marking a directory opaque (`.wh..wh..opq` in a tar).
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// How a blob or stream is compressed (sniffed from its magic bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    pub fn parse(s: &str) -> Compression {
        match s {
            "gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Look at the first bytes of `input` and return a reader of the decompressed stream.
pub fn decompress<'a>(input: impl Read + 'a) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(256 * 1024, input);
    // fill_buf may return fewer bytes than the magic on a pipe; top up into a small head buffer.
    let mut head = Vec::with_capacity(4);
    while head.len() < 4 {
        let buf = r.fill_buf().map_err(|e| Error::io("reading archive", e))?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(4 - head.len());
        head.extend_from_slice(&buf[..n]);
        r.consume(n);
    }
    let kind = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let joined = io::Cursor::new(head).chain(r);
    let out: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(joined),
        // MultiGzDecoder: concatenated gzip members are one stream (pigz, docker). The bufread
        // decoders read straight from our buffer (the read:: ones would add a second one).
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(joined)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(joined)
                .map_err(|e| Error::InvalidArchive(format!("invalid zstd stream: {e}")))?,
        ),
    };
    Ok((kind, out))
}

/// Counts and hashes what passes through.
pub struct HashReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Hasher::new(),
            count: 0,
        }
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Read the rest of the stream (so the digest covers all of it) and return (digest, bytes).
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.finish(), self.count))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// What unpacking a layer found out.
#[derive(Debug, Clone)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream: the layer's diff ID.
    pub diff_id: Digest,
    /// Length of the uncompressed tar stream.
    pub tar_size: u64,
    /// Bytes of regular file content written (Docker's layer size).
    pub size: u64,
    /// How the input was compressed.
    pub compression: Compression,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArchive(msg.into())
}

fn tar_err(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad("unexpected EOF")
    } else {
        bad(format!("invalid tar: {e}"))
    }
}

/// Clean a tar path lexically, like Go's filepath.Clean on a path rooted at the layer root.
/// Leading `/` is dropped (absolute paths are relative to the root, as Docker does); a `..` that
/// would climb above the root is an escape and rejected.
fn clean_components(raw: &[u8], what: &str) -> Result<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(bad(format!(
                        "{what} {:?} escapes the layer root",
                        String::from_utf8_lossy(raw)
                    )));
                }
            }
            _ => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

fn join(comps: &[OsString]) -> OsString {
    let mut s = OsString::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            s.push("/");
        }
        s.push(c);
    }
    s
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

fn dir_flags() -> OFlags {
    // No O_NOFOLLOW: with O_DIRECTORY it turns a trailing symlink into ENOTDIR, hiding the
    // reason; RESOLVE_NO_SYMLINKS already refuses every symlink, trailing ones included (ELOOP).
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Open the directory `comps` beneath `root`, never following a symlink.
fn open_dir(root: &OwnedFd, comps: &[OsString]) -> std::result::Result<OwnedFd, Errno> {
    if comps.is_empty() {
        return rustix::fs::openat2(root, ".", dir_flags(), Mode::empty(), RESOLVE);
    }
    rustix::fs::openat2(
        root,
        join(comps).as_os_str(),
        dir_flags(),
        Mode::empty(),
        RESOLVE,
    )
}

fn resolve_error(path: &OsStr, e: Errno) -> Error {
    let p = path.to_string_lossy();
    match e {
        Errno::LOOP => bad(format!(
            "invalid archive entry {p:?}: a parent path component is a symlink (refusing to write through it)"
        )),
        Errno::XDEV => bad(format!(
            "invalid archive entry {p:?}: escapes the layer root"
        )),
        Errno::NOTDIR => bad(format!(
            "invalid archive entry {p:?}: a parent path component is not a directory"
        )),
        Errno::NOENT => bad(format!(
            "invalid archive entry {p:?}: no such file or directory"
        )),
        other => Error::io(format!("opening {p}"), other.into()),
    }
}

/// Open (creating missing ones with mode 0755, as Docker does) the parent directories.
fn open_parent_creating(root: &OwnedFd, comps: &[OsString], full: &OsStr) -> Result<OwnedFd> {
    match open_dir(root, comps) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(resolve_error(full, e)),
    }
    let mut cur = open_dir(root, &[]).map_err(|e| resolve_error(full, e))?;
    for c in comps {
        match rustix::fs::openat2(&cur, c.as_os_str(), dir_flags(), Mode::empty(), RESOLVE) {
            Ok(fd) => cur = fd,
            Err(Errno::NOENT) => {
                let created =
                    match rustix::fs::mkdirat(&cur, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) => true,
                        Err(Errno::EXIST) => false,
                        Err(e) => return Err(resolve_error(full, e)),
                    };
                cur = rustix::fs::openat2(&cur, c.as_os_str(), dir_flags(), Mode::empty(), RESOLVE)
                    .map_err(|e| resolve_error(full, e))?;
                if created {
                    // 0755 whatever the process umask is, as Docker does for implied parents.
                    rustix::fs::fchmod(&cur, Mode::from_raw_mode(0o755))
                        .map_err(|e| Error::io("chmod", e.into()))?;
                }
            }
            Err(e) => return Err(resolve_error(full, e)),
        }
    }
    Ok(cur)
}

/// A path naming `name` inside the directory `dir` without re-resolving anything from `/`:
/// for calls (xattrs on symlinks, recursive removal) that have no `*at()` form.
fn fd_path(dir: &OwnedFd, name: &OsStr) -> std::path::PathBuf {
    Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// Remove whatever is at `name` (unless both it and the new entry are directories).
/// Returns true when an existing directory is kept.
fn clear_existing(parent: &OwnedFd, name: &OsStr, new_is_dir: bool) -> Result<bool> {
    clear_existing_opt(parent, name, new_is_dir, None)
}

/// `clear_existing`; with `no_overwrite` (the entry's path, for the message) replacing a
/// directory by a non-directory or the reverse is refused, as Docker's NoOverwriteDirNonDir.
fn clear_existing_opt(
    parent: &OwnedFd,
    name: &OsStr,
    new_is_dir: bool,
    no_overwrite: Option<&OsStr>,
) -> Result<bool> {
    let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(Error::io("stat existing entry", e.into())),
    };
    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    if is_dir && new_is_dir {
        return Ok(true);
    }
    if let Some(p) = no_overwrite {
        let p = p.to_string_lossy();
        if is_dir {
            return Err(bad(format!(
                "cannot overwrite directory {p:?} with non-directory {p:?}"
            )));
        }
        if new_is_dir {
            return Err(bad(format!(
                "cannot overwrite non-directory {p:?} with directory {p:?}"
            )));
        }
    }
    if is_dir {
        // remove_dir_all does not follow symlinks inside; the /proc path pins the parent.
        std::fs::remove_dir_all(fd_path(parent, name))
            .map_err(|e| Error::io("replacing directory", e))?;
    } else {
        rustix::fs::unlinkat(parent, name, AtFlags::empty())
            .map_err(|e| Error::io("replacing entry", e.into()))?;
    }
    Ok(false)
}

struct Meta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

fn owner(meta: &Meta) -> (Option<Uid>, Option<Gid>) {
    // u32::MAX means "unchanged" to the kernel; never pass it (or anything wider).
    let ok = |v: u64| v < u32::MAX as u64;
    (
        ok(meta.uid).then(|| Uid::from_raw(meta.uid as u32)),
        ok(meta.gid).then(|| Gid::from_raw(meta.gid as u32)),
    )
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Apply owner, mode, xattrs and mtime to an open file or directory.
fn apply_fd_meta(fd: &OwnedFd, meta: &Meta, set_time: bool) -> Result<()> {
    let (u, g) = owner(meta);
    if is_root() {
        rustix::fs::fchown(fd, u, g).map_err(|e| Error::io("chown", e.into()))?;
    }
    // chmod after chown: chown clears setuid/setgid.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
        .map_err(|e| Error::io("chmod", e.into()))?;
    for (k, v) in &meta.xattrs {
        rustix::fs::fsetxattr(fd, k.as_os_str(), v, XattrFlags::empty())
            .map_err(|e| Error::io(format!("setting xattr {}", k.to_string_lossy()), e.into()))?;
    }
    if set_time {
        rustix::fs::futimens(fd, &times(meta.mtime)).map_err(|e| Error::io("utimes", e.into()))?;
    }
    Ok(())
}

/// Owner, xattrs and mtime of a non-openable entry (symlink, device, fifo), without following it.
fn apply_path_meta(parent: &OwnedFd, name: &OsStr, meta: &Meta, chmod: bool) -> Result<()> {
    let (u, g) = owner(meta);
    if is_root() {
        rustix::fs::chownat(parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("lchown", e.into()))?;
    }
    if chmod {
        // Only for nodes we just created with mknodat (never symlinks): mknod applies the umask.
        rustix::fs::chmodat(
            parent,
            name,
            Mode::from_raw_mode(meta.mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| Error::io("chmod", e.into()))?;
    }
    for (k, v) in &meta.xattrs {
        rustix::fs::lsetxattr(fd_path(parent, name), k.as_os_str(), v, XattrFlags::empty())
            .map_err(|e| Error::io(format!("setting xattr {}", k.to_string_lossy()), e.into()))?;
    }
    rustix::fs::utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("utimes", e.into()))?;
    Ok(())
}

/// Where tar entries go: turns an entry's cleaned parent components into an open directory.
/// Layers resolve beneath the layer root refusing every symlink; `docker cp` resolves inside a
/// container's root (symlinks followed, but never out of it).
pub trait EntryResolver {
    /// The directory `comps` (relative to the extraction point), missing ones created 0755.
    fn parent(&mut self, comps: &[OsString], full: &OsStr) -> Result<OwnedFd>;
    /// The existing directory `comps` (hardlink targets, directory mtimes at the end).
    fn existing_dir(&mut self, comps: &[OsString]) -> std::result::Result<OwnedFd, Errno>;
}

/// The layer resolver: openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) under the root.
struct Beneath(OwnedFd);

impl EntryResolver for Beneath {
    fn parent(&mut self, comps: &[OsString], full: &OsStr) -> Result<OwnedFd> {
        open_parent_creating(&self.0, comps, full)
    }
    fn existing_dir(&mut self, comps: &[OsString]) -> std::result::Result<OwnedFd, Errno> {
        open_dir(&self.0, comps)
    }
}

/// How an archive is extracted.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// `.wh.` entries are OCI whiteouts (layers), not plain files (`docker cp`).
    pub whiteouts: bool,
    /// Refuse relative symlink targets that climb out of the root (layers).
    pub check_symlinks: bool,
    /// Own every entry by this uid/gid instead of the header's (`docker cp -a`).
    pub chown: Option<(u32, u32)>,
    /// Refuse replacing a directory by a non-directory and the reverse.
    pub no_overwrite_dir_non_dir: bool,
}

/// Unpack a layer tar (plain, gzip or zstd) into `dest`, which must exist and be empty.
/// `progress` gets the number of uncompressed tar bytes read so far, after each entry.
pub fn unpack_layer(
    input: &mut dyn Read,
    dest: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<UnpackStats> {
    let (compression, reader) = decompress(input)?;
    let mut hashing = HashReader::new(reader);
    let root_file =
        File::open(dest).map_err(|e| Error::io(format!("opening {}", dest.display()), e))?;
    let mut root = Beneath(root_file.into());
    let opts = ExtractOptions {
        whiteouts: true,
        check_symlinks: true,
        ..Default::default()
    };
    extract(&mut hashing, &mut root, &opts, progress)?;
    let (diff_id, tar_size) = hashing.finish().map_err(tar_err)?;
    Ok(UnpackStats {
        diff_id,
        tar_size,
        // Measured on disk like Docker's overlay2 driver, not summed from the tar: entries that
        // overwrite each other and symlinks then count as Docker counts them.
        size: dir_size(dest),
        compression,
    })
}

/// Extract a plain tar through `resolver`. Every entry is created with `*at()` calls relative
/// to the directory the resolver opened, never following a symlink at the entry itself.
pub fn extract(
    input: &mut dyn Read,
    resolver: &mut dyn EntryResolver,
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut archive = tar::Archive::new(input);
    let mut dir_times: Vec<(Vec<OsString>, i64)> = Vec::new();
    let euid_root = is_root();
    {
        let entries = archive.entries().map_err(tar_err)?;
        for entry in entries {
            let mut entry = entry.map_err(tar_err)?;
            unpack_entry(resolver, &mut entry, &mut dir_times, euid_root, opts)?;
            progress(entry.raw_header_position() + 512 + entry.size());
        }
    }
    // Directory mtimes last: creating children changed them.
    for (comps, mtime) in dir_times.iter().rev() {
        if let Ok(fd) = resolver.existing_dir(comps) {
            let _ = rustix::fs::futimens(&fd, &times(*mtime));
        }
    }
    Ok(())
}

fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        uid: h.uid().map_err(tar_err)?,
        gid: h.gid().map_err(tar_err)?,
        mode: h.mode().map_err(tar_err)?,
        mtime: h.mtime().map_err(tar_err)? as i64,
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions().map_err(tar_err)? {
        for ext in exts {
            let ext = ext.map_err(tar_err)?;
            let key = ext.key_bytes();
            let val = ext.value_bytes();
            let num = || std::str::from_utf8(val).ok();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                // overlay's own xattrs (redirect, metacopy, opaque...) would change how the
                // mount resolves lower layers: only whiteout entries may produce them.
                if name.starts_with(b"trusted.overlay.") {
                    continue;
                }
                meta.xattrs
                    .push((OsStr::from_bytes(name).to_owned(), val.to_vec()));
            } else if key == b"uid" {
                if let Some(v) = num().and_then(|s| s.parse().ok()) {
                    meta.uid = v;
                }
            } else if key == b"gid" {
                if let Some(v) = num().and_then(|s| s.parse().ok()) {
                    meta.gid = v;
                }
            } else if key == b"mtime" {
                // "1700000000.123": whole seconds are enough for files (Docker keeps ns; rare).
                if let Some(v) = num()
                    .and_then(|s| s.split('.').next())
                    .and_then(|s| s.parse().ok())
                {
                    meta.mtime = v;
                }
            }
        }
    }
    Ok(meta)
}

/// Copy a file's content. io::copy's 8 KiB buffer costs a write syscall and a decompressor
/// call per 8 KiB, which dominated unpacking big layers; large files go through a reused
/// 1 MiB buffer instead (per thread: layers unpack on several threads at once).
fn copy_content(src: &mut dyn Read, dst: &mut File, size: u64) -> io::Result<u64> {
    const BIG: usize = 1 << 20;
    if size <= 64 * 1024 {
        return io::copy(src, dst);
    }
    thread_local!(static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        if buf.len() < BIG {
            buf.resize(BIG, 0);
        }
        let mut total = 0u64;
        let mut flushed = 0u64;
        loop {
            let n = match src.read(&mut buf[..]) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            dst.write_all(&buf[..n])?;
            total += n as u64;
            if total - flushed >= WRITEBACK_CHUNK {
                start_writeback(dst, flushed, total - flushed);
                flushed = total;
            }
        }
    })
}

/// How much of a big file is written before its writeback is started.
pub(crate) const WRITEBACK_CHUNK: u64 = 8 << 20;

/// Start writing `len` bytes at `off` of `f` to disk without waiting for it
/// (sync_file_range WRITE): the sync before a pull or load commits then finds most of a big
/// layer already on disk instead of starting seconds of writeback only at the end. Best
/// effort: errors show up at that sync.
pub(crate) fn start_writeback(f: &File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(off), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on an fd we own; no memory is passed.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Unpack one entry.
fn unpack_entry<R: Read>(
    root: &mut dyn EntryResolver,
    entry: &mut tar::Entry<'_, R>,
    dir_times: &mut Vec<(Vec<OsString>, i64)>,
    euid_root: bool,
    opts: &ExtractOptions,
) -> Result<()> {
    let raw_path = entry.path_bytes().into_owned();
    let full = OsStr::from_bytes(&raw_path).to_owned();
    let comps = clean_components(&raw_path, "archive entry")?;
    let kind = entry.header().entry_type();
    let mut meta = entry_meta(entry)?;
    if let Some((u, g)) = opts.chown {
        meta.uid = u.into();
        meta.gid = g.into();
    }
    let no_overwrite = opts.no_overwrite_dir_non_dir.then_some(full.as_os_str());
    let Some((name, parent_comps)) = comps.split_last() else {
        // The root itself ("./"): nothing to create.
        return Ok(());
    };
    let name_bytes = name.as_bytes();

    // Whiteouts (OCI form in the tar) become overlay's form on disk.
    if let Some(rest) = name_bytes
        .strip_prefix(WHITEOUT_PREFIX.as_bytes())
        .filter(|_| opts.whiteouts)
    {
        let parent = root.parent(parent_comps, &full)?;
        if name_bytes == WHITEOUT_OPAQUE.as_bytes() {
            rustix::fs::fsetxattr(&parent, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| Error::io("setting opaque xattr", e.into()))?;
            return Ok(());
        }
        if name_bytes.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            // aufs metadata (.wh..wh.plnk etc.): meaningless for overlay.
            return Ok(());
        }
        if rest.is_empty() || rest == b"." || rest == b".." || rest.contains(&b'/') {
            return Err(bad(format!("invalid whiteout entry {:?}", full)));
        }
        let target = OsStr::from_bytes(rest);
        clear_existing(&parent, target, false)?;
        rustix::fs::mknodat(
            &parent,
            target,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| Error::io("creating whiteout", e.into()))?;
        if euid_root {
            let (u, g) = owner(&meta);
            rustix::fs::chownat(&parent, target, u, g, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Error::io("chown whiteout", e.into()))?;
        }
        // The entry's mtime, not "now": re-taring this layer must give the same bytes.
        rustix::fs::utimensat(
            &parent,
            target,
            &times(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::io("utimes whiteout", e.into()))?;
        return Ok(());
    }

    let parent = root.parent(parent_comps, &full)?;
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            clear_existing_opt(&parent, name, false, no_overwrite)?;
            let fd = rustix::fs::openat(
                &parent,
                name.as_os_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| resolve_error(&full, e))?;
            let expected = entry.size();
            let mut file = File::from(fd);
            let written = copy_content(entry, &mut file, expected).map_err(tar_err)?;
            if written != expected {
                return Err(bad("unexpected EOF"));
            }
            let fd: OwnedFd = file.into();
            apply_fd_meta(&fd, &meta, true)?;
            Ok(())
        }
        tar::EntryType::Directory => {
            if !clear_existing_opt(&parent, name, true, no_overwrite)? {
                rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o700))
                    .map_err(|e| resolve_error(&full, e))?;
            }
            let fd = rustix::fs::openat2(
                &parent,
                name.as_os_str(),
                dir_flags(),
                Mode::empty(),
                RESOLVE,
            )
            .map_err(|e| resolve_error(&full, e))?;
            apply_fd_meta(&fd, &meta, false)?;
            dir_times.push((comps.clone(), meta.mtime));
            Ok(())
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .map(|c| c.into_owned())
                .ok_or_else(|| bad(format!("symlink {full:?} without a target")))?;
            // Docker's rule: the target, taken relative to the link's directory, must stay
            // inside the root (absolute targets are resolved in the container's root: fine).
            if opts.check_symlinks && !target.starts_with(b"/") {
                let mut joined = Vec::new();
                for c in parent_comps {
                    joined.extend_from_slice(c.as_bytes());
                    joined.push(b'/');
                }
                joined.extend_from_slice(&target);
                if clean_components(&joined, "symlink").is_err() {
                    return Err(bad(format!(
                        "invalid symlink {:?} -> {:?}",
                        full,
                        OsStr::from_bytes(&target)
                    )));
                }
            }
            clear_existing_opt(&parent, name, false, no_overwrite)?;
            rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                .map_err(|e| resolve_error(&full, e))?;
            apply_path_meta(&parent, name, &meta, false)?;
            Ok(())
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .map(|c| c.into_owned())
                .ok_or_else(|| bad(format!("hardlink {full:?} without a target")))?;
            let tcomps = clean_components(&target, "hardlink target").map_err(|_| {
                bad(format!(
                    "invalid hardlink {:?} -> {:?}: target outside the layer",
                    full,
                    OsStr::from_bytes(&target)
                ))
            })?;
            let Some((tname, tparent_comps)) = tcomps.split_last() else {
                return Err(bad(format!("invalid hardlink {full:?} to the layer root")));
            };
            let tparent = root.existing_dir(tparent_comps).map_err(|e| match e {
                Errno::NOENT => bad(format!(
                    "invalid hardlink {:?} -> {:?}: target does not exist",
                    full,
                    OsStr::from_bytes(&target)
                )),
                e => resolve_error(OsStr::from_bytes(&target), e),
            })?;
            clear_existing_opt(&parent, name, false, no_overwrite)?;
            // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, like tar.
            rustix::fs::linkat(
                &tparent,
                tname.as_os_str(),
                &parent,
                name.as_os_str(),
                AtFlags::empty(),
            )
            .map_err(|e| match e {
                Errno::NOENT => bad(format!(
                    "invalid hardlink {:?} -> {:?}: target does not exist",
                    full,
                    OsStr::from_bytes(&target)
                )),
                Errno::PERM => bad(format!(
                    "invalid hardlink {:?} -> {:?}: target is a directory",
                    full,
                    OsStr::from_bytes(&target)
                )),
                other => Error::io("creating hardlink", other.into()),
            })?;
            Ok(())
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let ft = match kind {
                tar::EntryType::Char => FileType::CharacterDevice,
                tar::EntryType::Block => FileType::BlockDevice,
                _ => FileType::Fifo,
            };
            if ft != FileType::Fifo && !euid_root {
                // Device nodes need CAP_MKNOD; unprivileged unpacking skips them (as rootless
                // Docker does) rather than failing the whole image.
                tracing::warn!(path = %full.to_string_lossy(), "skipping device node: not root");
                return Ok(());
            }
            let h = entry.header();
            let (major, minor) = if ft == FileType::Fifo {
                (0, 0)
            } else {
                (
                    h.device_major().map_err(tar_err)?.unwrap_or(0),
                    h.device_minor().map_err(tar_err)?.unwrap_or(0),
                )
            };
            clear_existing_opt(&parent, name, false, no_overwrite)?;
            rustix::fs::mknodat(
                &parent,
                name.as_os_str(),
                ft,
                Mode::from_raw_mode(meta.mode & 0o7777),
                rustix::fs::makedev(major, minor),
            )
            .map_err(|e| resolve_error(&full, e))?;
            apply_path_meta(&parent, name, &meta, true)?;
            Ok(())
        }
        // Metadata entries are consumed by the tar crate; anything else is not a filesystem
        // object we can represent.
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => Ok(()),
        other => Err(bad(format!(
            "unhandled tar header type {:?} for {:?}",
            other.as_byte() as char,
            full
        ))),
    }
}

/// Produce a layer tar from an overlay upper (or any) directory: overlay whiteouts (0/0 char
/// devices) become `.wh.<name>`, opaque directories get `.wh..wh..opq`. Entries are in sorted
/// order and headers carry only what the files carry, so the same directory always gives the
/// same bytes. Returns (diff ID, tar length).
pub fn write_layer_tar(dir: &Path, out: &mut dyn Write) -> Result<(Digest, u64)> {
    write_layer_tar_filtered(dir, out, &|_| false)
}

/// [`write_layer_tar`] leaving out every entry (and its subtree) for which `skip` says true;
/// `skip` gets the entry's path relative to `dir`, without a leading `/` (`etc/hosts`). For a
/// container's upper dir: the mount points the runtime created are not the user's changes.
pub fn write_layer_tar_filtered(
    dir: &Path,
    out: &mut dyn Write,
    skip: &dyn Fn(&[u8]) -> bool,
) -> Result<(Digest, u64)> {
    let mut hw = HashWriter {
        inner: out,
        hasher: Hasher::new(),
        count: 0,
    };
    {
        let mut b = tar::Builder::new(&mut hw);
        b.mode(tar::HeaderMode::Complete);
        let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        walk(dir, &[], &mut b, &mut links, skip)?;
        b.finish().map_err(|e| Error::io("writing layer tar", e))?;
    }
    let HashWriter { hasher, count, .. } = hw;
    Ok((hasher.finish(), count))
}

struct HashWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Hasher,
    count: u64,
}

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

fn base_header(md: &std::fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn io_w(e: io::Error) -> Error {
    Error::io("writing layer tar", e)
}

fn walk(
    dir: &Path,
    rel: &[u8],
    b: &mut tar::Builder<&mut HashWriter<'_>>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    skip: &dyn Fn(&[u8]) -> bool,
) -> Result<()> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let md = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        let mut entry_name = rel.to_vec();
        entry_name.extend_from_slice(name.as_bytes());
        if skip(&entry_name) {
            continue;
        }
        let ft = md.file_type();
        let mut h = base_header(&md);
        if ft.is_char_device() && md.rdev() == 0 {
            // overlay whiteout -> OCI whiteout file
            let mut wname = rel.to_vec();
            wname.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            wname.extend_from_slice(name.as_bytes());
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o600);
            b.append_data(&mut h, OsStr::from_bytes(&wname), io::empty())
                .map_err(io_w)?;
            continue;
        }
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        // Like Docker, only security.capability travels in layer tars.
        if let Some(cap) = get_xattr(&path, "security.capability") {
            pax.push(("SCHILY.xattr.security.capability", cap));
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))
                .map_err(io_w)?;
        }
        if ft.is_dir() {
            let mut dname = entry_name.clone();
            dname.push(b'/');
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, OsStr::from_bytes(&dname), io::empty())
                .map_err(io_w)?;
            if get_xattr(&path, OPAQUE_XATTR).as_deref() == Some(b"y") {
                let mut oname = dname.clone();
                oname.extend_from_slice(WHITEOUT_OPAQUE.as_bytes());
                let mut oh = base_header(&md);
                oh.set_entry_type(tar::EntryType::Regular);
                oh.set_mode(md.mode() & 0o777);
                b.append_data(&mut oh, OsStr::from_bytes(&oname), io::empty())
                    .map_err(io_w)?;
            }
            walk(&path, &dname, b, links, skip)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)
                .map_err(|e| Error::io(format!("readlink {}", path.display()), e))?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, OsStr::from_bytes(&entry_name), &target)
                .map_err(io_w)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(
                        &mut h,
                        OsStr::from_bytes(&entry_name),
                        OsStr::from_bytes(first),
                    )
                    .map_err(io_w)?;
                    continue;
                }
                links.insert(key, entry_name.clone());
            }
            let f =
                File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            b.append_data(&mut h, OsStr::from_bytes(&entry_name), f)
                .map_err(io_w)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            if !ft.is_fifo() {
                let dev = md.rdev() as rustix::fs::Dev;
                h.set_device_major(rustix::fs::major(dev)).map_err(io_w)?;
                h.set_device_minor(rustix::fs::minor(dev)).map_err(io_w)?;
            }
            b.append_data(&mut h, OsStr::from_bytes(&entry_name), io::empty())
                .map_err(io_w)?;
        }
        // Sockets are not representable in tar; skipped like Docker does.
    }
    Ok(())
}

/// Total bytes of regular files under `dir` (for layers whose size is not recorded).
pub fn dir_size(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    dir_size_inner(dir, &mut seen)
}

/// Docker's `directory.Size`: every non-directory entry's lstat size (symlinks count their
/// target's length, whiteout devices 0), hardlinked inodes once.
fn dir_size_inner(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        if md.is_dir() {
            total += dir_size_inner(&e.path(), seen);
        } else if md.nlink() <= 1 || seen.insert((md.dev(), md.ino())) {
            total += md.len();
        }
    }
    total
}
