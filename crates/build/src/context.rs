//! The build context on disk (the engine unpacks the client's tar into a private directory) and
//! the files ADD/COPY put into a layer: sources resolved inside the context root (a `..` that
//! leaves it is refused; symlinks are followed but clamped to the root, as Docker's
//! `FollowSymlinkInScope`), Go `filepath.Match` wildcards, content checksums for the cache, and
//! the tar the backend extracts into the step's container.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::BuildError;
use crate::ignore::Ignore;

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A regular file on the host, already resolved inside the context (no symlink left).
    File(PathBuf),
    /// Content in memory (heredocs, downloads, members of an ADDed archive).
    Bytes(Vec<u8>),
    Dir,
    Symlink(String),
}

/// One entry of the layer a COPY/ADD writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute, clean path in the image (`/app/x`).
    pub path: String,
    pub source: Source,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Unix seconds.
    pub mtime: u64,
    /// A directory created only because something goes inside it: left alone when the image
    /// already has it (its mode and owner stay).
    pub implicit: bool,
}

/// Lexically cleans a slash path (Go's `path.Clean` without the leading `/`): `.` and empty
/// components dropped, `..` applied. `None` when `..` climbs above the start.
pub fn clean_rel(p: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_owned()),
        }
    }
    Some(out)
}

/// Go's `path.Clean` of an absolute path: `/a/../b/` → `/b`.
pub fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Go's `filepath.Match`: `*` (no `/`), `?`, `[...]` with ranges and `^` negation, `\` escapes.
pub fn go_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    if p.is_empty() {
        return n.is_empty();
    }
    match p[0] {
        '*' => {
            // `*` matches any run of non-separators
            let mut i = 0;
            loop {
                if match_from(&p[1..], &n[i..]) {
                    return true;
                }
                if i >= n.len() || n[i] == '/' {
                    return false;
                }
                i += 1;
            }
        }
        '?' => !n.is_empty() && n[0] != '/' && match_from(&p[1..], &n[1..]),
        '[' => {
            let Some(&c) = n.first() else { return false };
            if c == '/' {
                return false;
            }
            let mut i = 1;
            let negate = p.get(1) == Some(&'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let Some(&pc) = p.get(i) else { return false };
                if pc == ']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let lo = if pc == '\\' {
                    i += 1;
                    match p.get(i) {
                        Some(&x) => x,
                        None => return false,
                    }
                } else {
                    pc
                };
                i += 1;
                let mut hi = lo;
                if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
                    hi = p[i + 1];
                    i += 2;
                }
                if lo <= c && c <= hi {
                    matched = true;
                }
            }
            matched != negate && match_from(&p[i..], &n[1..])
        }
        '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && match_from(&p[2..], &n[1..]),
        c => !n.is_empty() && n[0] == c && match_from(&p[1..], &n[1..]),
    }
}

pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The unpacked context and what was already hashed in this build (the cache key of a COPY
/// hashes its files once per build, however many steps or stages read them).
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    hashes: Mutex<BTreeMap<PathBuf, String>>,
}

/// A source resolved in the context: its host path and its path relative to the root.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub host: PathBuf,
    pub rel: String,
    pub is_dir: bool,
    /// The source's own name as written: a symlink is copied under its name, with its
    /// target's content (`COPY link /d/` makes `/d/link`).
    pub name: String,
}

fn not_found(orig: &str) -> BuildError {
    BuildError::new(format!(
        "file not found in build context or excluded by .dockerignore: stat {orig}: file does not exist"
    ))
}

impl Context {
    pub fn new(root: impl Into<PathBuf>, ignore: Ignore) -> Context {
        Context {
            root: root.into(),
            ignore,
            hashes: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a source path inside the root: `..` beyond the root is refused (Docker's
    /// "forbidden path outside the build context"), symlinks are followed with absolute targets
    /// and `..` clamped at the root, so no path leaves it.
    pub fn resolve(&self, orig: &str) -> Result<Resolved, BuildError> {
        let comps = clean_rel(orig).ok_or_else(|| {
            BuildError::new(format!(
                "forbidden path outside the build context: {orig} ()"
            ))
        })?;
        let name = comps.last().cloned().unwrap_or_default();
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = comps.into_iter().rev().collect();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            if c == "." || c.is_empty() {
                continue;
            }
            let mut p = self.root.clone();
            p.extend(done.iter());
            p.push(&c);
            let md = fs::symlink_metadata(&p).map_err(|_| not_found(orig))?;
            if md.file_type().is_symlink() {
                links += 1;
                if links > 255 {
                    return Err(BuildError::new(format!("too many links in {orig}")));
                }
                let target = fs::read_link(&p).map_err(|_| not_found(orig))?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                for tc in t.split('/').rev() {
                    todo.push(tc.to_owned());
                }
            } else {
                done.push(c);
            }
        }
        let rel = done.join("/");
        if !rel.is_empty() && self.ignore.excluded(&rel) {
            return Err(not_found(orig));
        }
        let mut host = self.root.clone();
        host.extend(done.iter());
        let md = fs::metadata(&host).map_err(|_| not_found(orig))?;
        Ok(Resolved {
            host,
            rel,
            is_dir: md.is_dir(),
            name,
        })
    }

    /// All context paths (files and dirs, relative, `/`-separated) matching a wildcard pattern.
    pub fn glob(&self, pattern: &str) -> Result<Vec<Resolved>, BuildError> {
        let pat = clean_rel(pattern)
            .ok_or_else(|| {
                BuildError::new(format!(
                    "forbidden path outside the build context: {pattern} ()"
                ))
            })?
            .join("/");
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for n in names.into_iter().rev() {
                let n = n.to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    n.clone()
                } else {
                    format!("{rel}/{n}")
                };
                if self.ignore.excluded(&r) {
                    continue;
                }
                let host = dir.join(&n);
                let Ok(md) = fs::symlink_metadata(&host) else {
                    continue;
                };
                if go_match(&pat, &r) {
                    out.push(self.resolve(&r)?);
                } else if md.is_dir() {
                    stack.push((host, r));
                }
            }
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    /// Docker's content hash of a source: names, modes, link targets and contents (not mtimes,
    /// so a touched but unchanged file still hits the cache). Memoized per build.
    pub fn checksum(&self, r: &Resolved, exclude: &[String]) -> Result<String, BuildError> {
        if exclude.is_empty()
            && let Some(h) = self
                .hashes
                .lock()
                .ok()
                .and_then(|m| m.get(&r.host).cloned())
        {
            return Ok(h);
        }
        let mut h = Sha256::new();
        let mut entries = Vec::new();
        walk(&r.host, "", exclude, &mut entries)?;
        for (rel, path, md) in entries {
            h.update(rel.as_bytes());
            h.update([0]);
            h.update(md.mode().to_le_bytes());
            if md.file_type().is_symlink() {
                let t = fs::read_link(&path).map_err(|e| io_err(&path, e))?;
                h.update(t.as_os_str().as_encoded_bytes());
            } else if md.is_file() {
                h.update(md.len().to_le_bytes());
                let mut f = fs::File::open(&path).map_err(|e| io_err(&path, e))?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f.read(&mut buf).map_err(|e| io_err(&path, e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            h.update([1]);
        }
        let sum = hex::encode(h.finalize());
        if exclude.is_empty()
            && let Ok(mut m) = self.hashes.lock()
        {
            m.insert(r.host.clone(), sum.clone());
        }
        Ok(sum)
    }

    pub fn excluded(&self, rel: &str) -> bool {
        self.ignore.excluded(rel)
    }
}

fn io_err(p: &Path, e: io::Error) -> BuildError {
    BuildError::new(format!("{}: {e}", p.display()))
}

/// Entries under `top` (itself first when a file), sorted, lstat'ed: (relative path, host path,
/// metadata). `exclude` patterns (`COPY --exclude`) match relative paths.
pub fn walk(
    top: &Path,
    rel: &str,
    exclude: &[String],
    out: &mut Vec<(String, PathBuf, fs::Metadata)>,
) -> Result<(), BuildError> {
    let md = fs::symlink_metadata(top).map_err(|e| io_err(top, e))?;
    let is_dir = md.is_dir();
    if !rel.is_empty() && exclude.iter().any(|p| go_match(p, rel)) {
        return Ok(());
    }
    out.push((rel.to_owned(), top.to_path_buf(), md));
    if is_dir {
        let mut names: Vec<_> = fs::read_dir(top)
            .map_err(|e| io_err(top, e))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let n = n.to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            walk(&top.join(&n), &r, exclude, out)?;
        }
    }
    Ok(())
}

/// The entries of a host source copied to `dest` (a file: `dest` itself; a dir: its contents
/// under `dest`). Owner root unless `--chown` (applied by the backend), mode from the file
/// unless `chmod`, mtime kept.
pub fn entries_for(
    host: &Path,
    dest: &str,
    chmod: Option<u32>,
    exclude: &[String],
) -> Result<Vec<FileEntry>, BuildError> {
    let mut found = Vec::new();
    walk(host, "", exclude, &mut found)?;
    let mut out = Vec::new();
    for (rel, path, md) in found {
        let p = if rel.is_empty() {
            dest.to_owned()
        } else {
            clean_abs(&format!("{dest}/{rel}"))
        };
        let ft = md.file_type();
        let source = if ft.is_symlink() {
            let t = fs::read_link(&path).map_err(|e| io_err(&path, e))?;
            Source::Symlink(t.to_string_lossy().into_owned())
        } else if ft.is_dir() {
            Source::Dir
        } else if ft.is_file() {
            Source::File(path.clone())
        } else {
            // sockets, fifos, devices in a context are not copied (Docker skips sockets)
            continue;
        };
        let mode = match (&source, chmod) {
            (Source::Symlink(_), _) => 0o777,
            (_, Some(m)) => m,
            _ => md.permissions().mode() & 0o7777,
        };
        out.push(FileEntry {
            path: p,
            source,
            mode,
            uid: 0,
            gid: 0,
            mtime: md.mtime().max(0) as u64,
            implicit: false,
        });
    }
    Ok(out)
}

/// How a context or an ADDed archive is compressed, beyond what the image store reads
/// (plain, gzip, zstd): dockerd's `DecompressStream` also takes bzip2 and xz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    Bzip2,
    Xz,
}

impl Packed {
    /// By magic bytes (`BZh`, `\xFD7zXZ\0`).
    pub fn sniff(head: &[u8]) -> Option<Packed> {
        if head.starts_with(b"BZh") {
            Some(Packed::Bzip2)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Packed::Xz)
        } else {
            None
        }
    }
}

/// `input` decompressed when it is bzip2 or xz; anything else comes back unchanged (the
/// caller handles plain, gzip and zstd). Concatenated streams read as one, like the tools.
pub fn unpack_bz_xz<'a>(input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = io::BufReader::new(input);
    // fill_buf may return fewer bytes than the magic on a pipe: top up into a head buffer
    let mut head = Vec::with_capacity(6);
    while head.len() < 6 {
        let buf = io::BufRead::fill_buf(&mut r)?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(6 - head.len());
        head.extend_from_slice(&buf[..n]);
        io::BufRead::consume(&mut r, n);
    }
    let kind = Packed::sniff(&head);
    let joined = io::Cursor::new(head).chain(r);
    Ok(match kind {
        Some(Packed::Bzip2) => Box::new(bzip2::read::MultiBzDecoder::new(joined)),
        Some(Packed::Xz) => Box::new(liblzma::read::XzDecoder::new_multi_decoder(joined)),
        None => Box::new(joined),
    })
}

/// Adds implicit entries for every missing parent directory of the entries (mode 0755).
pub fn with_parents(entries: Vec<FileEntry>, now: u64) -> Vec<FileEntry> {
    let mut have: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    let mut parents = Vec::new();
    for e in &entries {
        let mut p = e.path.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if p.is_empty() {
                break;
            }
            if have.insert(p.to_owned()) {
                parents.push(FileEntry {
                    path: p.to_owned(),
                    source: Source::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: now,
                    implicit: true,
                });
            }
        }
    }
    parents.sort_by(|a, b| a.path.cmp(&b.path));
    parents.extend(entries);
    parents
}

/// Writes the entries as a tar rooted at `/` (names without the leading `/`), skipping the
/// paths in `skip` (implicit directories the image already has).
pub fn write_tar(
    entries: &[FileEntry],
    skip: &HashSet<String>,
    out: &mut dyn Write,
) -> Result<(), BuildError> {
    let mut b = tar::Builder::new(out);
    let terr = |e: io::Error| BuildError::new(format!("writing layer: {e}"));
    for e in entries {
        if skip.contains(&e.path) {
            continue;
        }
        let name = e.path.trim_start_matches('/');
        if name.is_empty() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid as u64);
        h.set_gid(e.gid as u64);
        h.set_mtime(e.mtime);
        match &e.source {
            Source::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{name}/"), io::empty())
                    .map_err(terr)?;
            }
            Source::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, t).map_err(terr)?;
            }
            Source::Bytes(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).map_err(terr)?;
            }
            Source::File(p) => {
                let f = fs::File::open(p).map_err(|e| io_err(p, e))?;
                let len = f.metadata().map_err(|e| io_err(p, e))?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(len);
                b.append_data(&mut h, name, f.take(len)).map_err(terr)?;
            }
        }
    }
    b.finish().map_err(terr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(go_match("*.txt", "a.txt"));
        assert!(!go_match("*.txt", "d/a.txt"));
        assert!(go_match("d/*.txt", "d/a.txt"));
        assert!(go_match("f?le[0-9]", "file7"));
        assert!(!go_match("f[^a-z]", "fa"));
        assert!(go_match("f[^a-z]", "f1"));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean_rel("a/./b/../c"), Some(vec!["a".into(), "c".into()]));
        assert_eq!(clean_rel("../x"), None);
        assert_eq!(clean_abs("/a/../../b/"), "/b");
    }

    #[test]
    fn resolve_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../f", d.path().join("up")).unwrap();
        let c = Context::new(d.path(), Ignore::default());
        assert!(c.resolve("../x").is_err());
        // absolute symlink targets are relative to the context root
        assert!(c.resolve("abs").is_err());
        assert_eq!(c.resolve("up").unwrap().rel, "f");
    }
}
