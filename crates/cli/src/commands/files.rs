//! Container filesystem commands: `cp`, `export`, `diff`, `commit`. `cp` follows the docker
//! CLI's copy rules (go-archive's CopyInfo/PrepareArchiveCopy): the daemon only tars a path or
//! extracts a tar into a directory; deciding names (dir vs file, trailing `/.`, rebasing) is the
//! client's job, done here the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use futures_util::StreamExt;
use http::Method;

use crate::client::{Client, urlencode};
use crate::error::CliError;
use crate::format::units::human_size_with_precision;

#[derive(Args, Debug, Default)]
pub struct CpArgs {
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long = "archive")]
    pub archive: bool,
    /// Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(hide = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long, value_name = "string")]
    pub output: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long, value_name = "string")]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change", value_name = "list")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long, value_name = "string")]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, value_name = "bool", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    pub pause: String,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

// ------------------------------------------------------------------ path rules (go-archive)

fn has_trailing_sep(p: &str) -> bool {
    p.ends_with('/')
}

fn specifies_current_dir(p: &str) -> bool {
    go_base(p) == "."
}

fn asserts_directory(p: &str) -> bool {
    has_trailing_sep(p) || specifies_current_dir(p)
}

/// Go's `filepath.Clean`.
pub fn go_clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let j = out.join("/");
    match (abs, j.is_empty()) {
        (true, _) => format!("/{j}"),
        (false, true) => ".".into(),
        (false, false) => j,
    }
}

/// Go's `filepath.Base`.
pub fn go_base(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    t.rsplit('/').next().unwrap_or(t).to_owned()
}

/// Go's `filepath.Dir`.
pub fn go_dir(p: &str) -> String {
    let i = p.rfind('/').map(|i| i + 1).unwrap_or(0);
    go_clean(&p[..i])
}

/// `archive.PreserveTrailingDotOrSeparator`.
pub fn preserve_trailing(cleaned: &str, original: &str) -> String {
    let mut c = cleaned.to_owned();
    if !specifies_current_dir(&c) && specifies_current_dir(original) {
        if !has_trailing_sep(&c) {
            c.push('/');
        }
        c.push('.');
    }
    if !has_trailing_sep(&c) && has_trailing_sep(original) {
        c.push('/');
    }
    c
}

/// `archive.SplitPathDirEntry`.
pub fn split_path_dir_entry(p: &str) -> (String, String) {
    let mut cleaned = go_clean(p);
    if specifies_current_dir(p) {
        cleaned.push_str("/.");
    }
    (go_dir(&cleaned), go_base(&cleaned))
}

/// `archive.GetRebaseName`.
fn get_rebase_name(path: &str, resolved: &str) -> (String, String) {
    let mut resolved = resolved.to_owned();
    if specifies_current_dir(path) && !specifies_current_dir(&resolved) {
        resolved.push_str("/.");
    }
    if has_trailing_sep(path) && !has_trailing_sep(&resolved) {
        resolved.push('/');
    }
    let rebase = if go_base(path) != go_base(&resolved) {
        go_base(path)
    } else {
        String::new()
    };
    (resolved, rebase)
}

fn split_cp_arg(arg: &str) -> (Option<String>, String) {
    if arg.starts_with('/') {
        return (None, arg.to_owned());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') => (Some(c.to_owned()), p.to_owned()),
        _ => (None, arg.to_owned()),
    }
}

fn local_abs(p: &str) -> Result<String, CliError> {
    let abs = if p.starts_with('/') {
        p.to_owned()
    } else {
        let cwd = std::env::current_dir()?;
        format!("{}/{p}", cwd.to_string_lossy())
    };
    Ok(preserve_trailing(&go_clean(&abs), p))
}

/// Rename the first occurrence of `old` in an entry name to `new` (`RebaseArchiveEntries`).
fn rebase(name: &[u8], old: &str, new: &str) -> Vec<u8> {
    let old = if old == "/" { "" } else { old };
    let s = String::from_utf8_lossy(name);
    s.replacen(old, new, 1).into_bytes()
}

// ------------------------------------------------------------------ stat header

struct PathStat {
    mode: u32,
    link_target: String,
}

const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;

fn parse_stat(headers: &http::HeaderMap) -> Option<PathStat> {
    let v = headers.get("X-Docker-Container-Path-Stat")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
    let j: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    Some(PathStat {
        mode: j.get("mode")?.as_u64().unwrap_or(0) as u32,
        link_target: j
            .get("linkTarget")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned(),
    })
}

async fn stat_path(client: &Client, ctr: &str, path: &str) -> Result<PathStat, CliError> {
    let r = client
        .raw(
            Method::HEAD,
            &format!(
                "/containers/{}/archive?path={}",
                urlencode(ctr),
                urlencode(path)
            ),
            None,
        )
        .await?;
    if r.status == http::StatusCode::NOT_FOUND {
        return Err(CliError::daemon(format!(
            "Could not find the file {path} in container {ctr}"
        )));
    }
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    parse_stat(&r.headers)
        .ok_or_else(|| CliError::msg("unable to decode container path stat header"))
}

fn copied_msg(n: u64, dest: &str) -> String {
    format!(
        "Successfully copied {} to {dest}\n",
        human_size_with_precision(n as f64, 3)
    )
}

// ------------------------------------------------------------------ cp

pub async fn cp(client: &Client, a: CpArgs) -> Result<(), CliError> {
    let (src, dst) = (&a.args[0], &a.args[1]);
    if src.is_empty() {
        return Err(CliError::msg("source can not be empty"));
    }
    if dst.is_empty() {
        return Err(CliError::msg("destination can not be empty"));
    }
    // docker: quiet unless stdout is a terminal; the summary goes to stderr
    let quiet = a.quiet || !super::stdio::is_tty(1);
    let (sc, sp) = split_cp_arg(src);
    let (dc, dp) = split_cp_arg(dst);
    match (sc, dc) {
        (Some(c), None) => from_container(client, &c, &sp, &dp, a.follow_link, quiet).await,
        (None, Some(c)) => {
            to_container(client, &c, &sp, &dp, a.archive, a.follow_link, quiet).await
        }
        (Some(_), Some(_)) => Err(CliError::msg("copying between containers is not supported")),
        (None, None) => Err(CliError::msg("must specify at least one container source")),
    }
}

fn validate_output_path(path: &str) -> Result<(), CliError> {
    let dir = go_dir(&go_clean(path));
    if !dir.is_empty() && dir != "." && !Path::new(&dir).exists() {
        return Err(CliError::msg(format!(
            "invalid output path: directory {dir:?} does not exist"
        )));
    }
    Ok(())
}

async fn from_container(
    client: &Client,
    ctr: &str,
    src: &str,
    dst: &str,
    follow: bool,
    quiet: bool,
) -> Result<(), CliError> {
    let dst = if dst == "-" {
        dst.to_owned()
    } else {
        local_abs(dst)?
    };
    validate_output_path(&dst)?;
    let mut src_path = src.to_owned();
    let mut rebase_name = String::new();
    if follow
        && let Ok(st) = stat_path(client, ctr, src).await
        && st.mode & GO_MODE_SYMLINK != 0
    {
        let mut target = st.link_target.clone();
        if !target.starts_with('/') {
            let (parent, _) = split_path_dir_entry(src);
            target = go_clean(&format!("{parent}/{target}"));
        }
        let (t, r) = get_rebase_name(&src_path, &target);
        src_path = t;
        rebase_name = r;
    }
    let (headers, body) = client
        .get_stream_headers(&format!(
            "/containers/{}/archive?path={}",
            urlencode(ctr),
            urlencode(&src_path)
        ))
        .await?;
    let stat = parse_stat(&headers);
    let mut stream = http_body_util::BodyStream::new(body);
    if dst == "-" {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            let frame = chunk.map_err(|e| CliError::msg(e.to_string()))?;
            if let Ok(b) = frame.into_data() {
                out.write_all(&b)?;
            }
        }
        out.flush()?;
        return Ok(());
    }
    // Spool to a pipe read by a blocking extractor thread.
    let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(16);
    let is_dir = stat.as_ref().is_some_and(|s| s.mode & GO_MODE_DIR != 0);
    let src_info = SrcInfo {
        path: src_path.clone(),
        is_dir,
        rebase_name,
    };
    let d2 = dst.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let reader = ChanReader {
            rx,
            cur: bytes::Bytes::new(),
        };
        copy_to_local(reader, &src_info, &d2)
    });
    let mut total = 0u64;
    let mut err = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(frame) => {
                if let Ok(b) = frame.into_data() {
                    total += b.len() as u64;
                    if tx.send(b).is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                err = Some(CliError::msg(e.to_string()));
                break;
            }
        }
    }
    drop(tx);
    let res = worker.await.map_err(|e| CliError::msg(e.to_string()))?;
    if let Some(e) = err {
        return Err(e);
    }
    res?;
    if !quiet {
        eprint!("{}", copied_msg(total, &dst));
    }
    Ok(())
}

struct ChanReader {
    rx: std::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.cur = b,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

struct SrcInfo {
    path: String,
    is_dir: bool,
    rebase_name: String,
}

struct DstInfo {
    path: String,
    exists: bool,
    is_dir: bool,
}

/// `archive.CopyInfoDestinationPath` on the local filesystem.
fn local_dst_info(path: &str) -> Result<DstInfo, CliError> {
    let mut path = path.to_owned();
    let mut n = 0;
    loop {
        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_symlink() => {
                n += 1;
                if n > 10 {
                    return Err(CliError::msg(format!("too many symlinks in {path}")));
                }
                let t = std::fs::read_link(&path)?.to_string_lossy().into_owned();
                path = if t.starts_with('/') {
                    t
                } else {
                    let (parent, _) = split_path_dir_entry(&path);
                    go_clean(&format!("{parent}/{t}"))
                };
            }
            Ok(md) => {
                return Ok(DstInfo {
                    path,
                    exists: true,
                    is_dir: md.is_dir(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (parent, _) = split_path_dir_entry(&path);
                let md = std::fs::metadata(&parent).map_err(|e| {
                    CliError::msg(format!("stat {parent}: {}", super::opts::io_text(&e)))
                })?;
                if !md.is_dir() {
                    return Err(CliError::msg("not a directory"));
                }
                return Ok(DstInfo {
                    path,
                    exists: false,
                    is_dir: false,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `archive.PrepareArchiveCopy`: the directory to extract into and the (old, new) base names
/// to rebase entries with.
fn prepare_copy(
    src: &SrcInfo,
    dst: &DstInfo,
) -> Result<(String, Option<(String, String)>), CliError> {
    let (dst_dir, dst_base) = split_path_dir_entry(&dst.path);
    let (_, mut src_base) = split_path_dir_entry(&src.path);
    if !src.rebase_name.is_empty() {
        src_base = src.rebase_name.clone();
    }
    if dst.exists && dst.is_dir {
        return Ok((dst.path.clone(), None));
    }
    if dst.exists && src.is_dir {
        return Err(CliError::msg("cannot copy directory"));
    }
    if !dst.exists && !src.is_dir && asserts_directory(&dst.path) {
        return Err(CliError::msg("no such directory"));
    }
    Ok((dst_dir, Some((src_base, dst_base))))
}

/// Extract a container's tar locally, as `archive.CopyTo` does (no chown: files belong to the
/// user running the copy; an existing directory is never replaced by a file or vice versa).
fn copy_to_local(
    reader: impl std::io::Read,
    src: &SrcInfo,
    dst_path: &str,
) -> Result<(), CliError> {
    let mut reader = reader;
    // the daemon's own rebase for a followed link happens here, before the copy's
    let pre: Option<(String, String)> = (!src.rebase_name.is_empty()).then(|| {
        let (_, base) = split_path_dir_entry(&src.path);
        (base, src.rebase_name.clone())
    });
    let dst = local_dst_info(dst_path)?;
    let (dir, re) = prepare_copy(src, &dst)?;
    let mut archive = tar::Archive::new(&mut reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let root = PathBuf::from(&dir);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| CliError::msg(e.to_string()))?
    {
        let mut entry = entry.map_err(|e| CliError::msg(e.to_string()))?;
        let mut name = entry.path_bytes().into_owned();
        if let Some((o, n)) = &pre {
            name = rebase(&name, o, n);
        }
        if let Some((o, n)) = &re {
            name = rebase(&name, o, n);
        }
        let rel = String::from_utf8_lossy(&name).into_owned();
        let clean = go_clean(&format!("/{rel}"));
        if clean == "/" {
            continue;
        }
        let target = root.join(clean.trim_start_matches('/'));
        // a lexical escape or a write through a symlink out of the destination is refused
        if rel.split('/').any(|c| c == "..") {
            return Err(CliError::msg(format!(
                "invalid archive entry {rel:?}: escapes the destination"
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
            let canon = parent.canonicalize()?;
            let croot = root.canonicalize()?;
            if !canon.starts_with(&croot) {
                return Err(CliError::msg(format!(
                    "invalid archive entry {rel:?}: a parent is a symlink out of the destination"
                )));
            }
        }
        let kind = entry.header().entry_type();
        if let Ok(md) = std::fs::symlink_metadata(&target) {
            let new_dir = kind == tar::EntryType::Directory;
            if md.is_dir() && !new_dir {
                return Err(CliError::msg(format!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    target.display().to_string(),
                    rel
                )));
            }
            if !md.is_dir() && new_dir {
                return Err(CliError::msg(format!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    target.display().to_string(),
                    rel
                )));
            }
        }
        if kind != tar::EntryType::Directory && std::fs::symlink_metadata(&target).is_ok() {
            std::fs::remove_file(&target)?;
        }
        if kind == tar::EntryType::Link {
            // hardlink targets are archive names too: rebase and anchor them the same way
            let mut ln = entry
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default();
            if let Some((o, n)) = &pre {
                ln = rebase(&ln, o, n);
            }
            if let Some((o, n)) = &re {
                ln = rebase(&ln, o, n);
            }
            let lt = go_clean(&format!("/{}", String::from_utf8_lossy(&ln)));
            let _ = std::fs::remove_file(&target);
            std::fs::hard_link(root.join(lt.trim_start_matches('/')), &target)?;
            continue;
        }
        let mtime = entry.header().mtime().unwrap_or(0);
        entry
            .unpack(&target)
            .map_err(|e| CliError::msg(format!("{}: {e}", target.display())))?;
        if kind == tar::EntryType::Directory {
            dirs.push((target, mtime));
        }
    }
    // directory mtimes last: their children changed them
    for (d, mtime) in dirs.iter().rev() {
        let t = libc::timespec {
            tv_sec: *mtime as libc::time_t,
            tv_nsec: 0,
        };
        if let Ok(c) = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()) {
            // SAFETY: valid NUL-terminated path and two timespecs.
            unsafe {
                libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0);
            }
        }
    }
    Ok(())
}

/// `archive.CopyInfoSourcePath` + `TarResource`: the local path and the name its tar entries
/// take.
fn local_src(path: &str, follow: bool) -> Result<(PathBuf, bool, String), CliError> {
    let not_found = |p: &str| CliError::msg(format!("lstat {p}: no such file or directory"));
    let (resolved, rebase_name) = if follow {
        let r = std::fs::canonicalize(path).map_err(|_| not_found(path))?;
        let (r, n) = get_rebase_name(path, &r.to_string_lossy());
        (r, n)
    } else {
        let (dir, base) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        let rd = if dir.is_empty() {
            std::env::current_dir()?
        } else {
            std::fs::canonicalize(dir).map_err(|_| not_found(path))?
        };
        let resolved = format!("{}/{base}", rd.to_string_lossy().trim_end_matches('/'));
        let rebase = if has_trailing_sep(path) && go_base(path) != go_base(&resolved) {
            go_base(path)
        } else {
            String::new()
        };
        (resolved, rebase)
    };
    let md = std::fs::symlink_metadata(&resolved).map_err(|_| not_found(&resolved))?;
    Ok((PathBuf::from(resolved), md.is_dir(), rebase_name))
}

/// Counts the bytes an upload reads (docker 28 reports the tar bytes it sent).
struct Counting<R> {
    inner: R,
    n: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.n.fetch_add(read, std::sync::atomic::Ordering::Relaxed);
        r
    }
}

/// Tar the local `path` with its top entry named `name` (`.` for `dir/.`).
fn tar_local(path: &Path, is_dir: bool, name: &str, out: impl Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    if is_dir {
        b.append_dir_all(name, path)?;
    } else {
        b.append_path_with_name(path, name)?;
    }
    b.into_inner()?.flush()
}

async fn to_container(
    client: &Client,
    ctr: &str,
    src: &str,
    dst: &str,
    copy_uid_gid: bool,
    follow: bool,
    quiet: bool,
) -> Result<(), CliError> {
    let mut dst_info = DstInfo {
        path: dst.to_owned(),
        exists: false,
        is_dir: false,
    };
    if let Ok(mut st) = stat_path(client, ctr, dst).await {
        let mut ok = true;
        if st.mode & GO_MODE_SYMLINK != 0 {
            let mut t = st.link_target.clone();
            if !t.starts_with('/') {
                let (parent, _) = split_path_dir_entry(dst);
                t = go_clean(&format!("{parent}/{t}"));
            }
            dst_info.path = t.clone();
            match stat_path(client, ctr, &t).await {
                Ok(s) => st = s,
                Err(_) => ok = false,
            }
        }
        if ok {
            const DEVICE: u32 = 1 << 26;
            const IRREGULAR: u32 = 1 << 19;
            let why = if st.mode & DEVICE != 0 {
                Some("got a device")
            } else if st.mode & IRREGULAR != 0 {
                Some("got an irregular file")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(CliError::msg(format!(
                    "destination \"{ctr}:{dst}\" must be a directory or a regular file: {why}"
                )));
            }
            dst_info.exists = true;
            dst_info.is_dir = st.mode & GO_MODE_DIR != 0;
        }
    }
    let (body, extract_dir): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, String) = if src == "-"
    {
        if !dst_info.is_dir {
            return Err(CliError::msg(format!(
                "destination \"{ctr}:{dst}\" must be a directory"
            )));
        }
        (Box::new(tokio::io::stdin()), dst_info.path.clone())
    } else {
        let abs = local_abs(src)?;
        let (path, is_dir, rebase_name) = local_src(&abs, follow)?;
        let p = path.to_string_lossy().into_owned();
        let src_info = SrcInfo {
            path: p.clone(),
            is_dir,
            rebase_name,
        };
        let (dir, re) = prepare_copy(&src_info, &dst_info)?;
        let (_, mut top) = split_path_dir_entry(&p);
        if !src_info.rebase_name.is_empty() {
            top = src_info.rebase_name.clone();
        }
        if let Some((old, new)) = &re {
            top = String::from_utf8_lossy(&rebase(top.as_bytes(), old, new)).into_owned();
        }
        // the tar is produced by a thread as the upload reads it
        let (r, w) = std::io::pipe()?;
        let top2 = top.clone();
        std::thread::spawn(move || {
            let _ = tar_local(&path, is_dir, &top2, w);
        });
        let f = tokio::fs::File::from_std(std::fs::File::from(std::os::fd::OwnedFd::from(r)));
        (Box::new(f), dir)
    };
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let body = Box::new(Counting {
        inner: body,
        n: sent.clone(),
    });
    let q = format!(
        "/containers/{}/archive?path={}&noOverwriteDirNonDir=true{}",
        urlencode(ctr),
        urlencode(&extract_dir),
        if copy_uid_gid { "&copyUIDGID=true" } else { "" }
    );
    let r = client
        .upload(Method::PUT, &q, body, "application/x-tar")
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    if !quiet {
        let n = sent.load(std::sync::atomic::Ordering::Relaxed);
        eprint!("{}", copied_msg(n, &format!("{ctr}:{}", dst_info.path)));
    }
    Ok(())
}

// ------------------------------------------------------------------ export / diff / commit

pub async fn export(client: &Client, a: ExportArgs) -> Result<(), CliError> {
    let out_tty = super::stdio::is_tty(1);
    if a.output.is_none() && out_tty {
        return Err(CliError::msg(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let name = &a.args[0];
    let body = client
        .get_stream(&format!("/containers/{}/export", urlencode(name)))
        .await?;
    let mut stream = http_body_util::BodyStream::new(body);
    let mut file: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| {
            CliError::msg(format!(
                "failed to export container: {}",
                super::opts::io_text(&e)
            ))
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    while let Some(chunk) = stream.next().await {
        let frame = chunk.map_err(|e| CliError::msg(e.to_string()))?;
        if let Ok(b) = frame.into_data() {
            file.write_all(&b)?;
        }
    }
    file.flush()?;
    Ok(())
}

pub async fn diff(client: &Client, name: &str) -> Result<(), CliError> {
    let r = client
        .raw(
            Method::GET,
            &format!("/containers/{}/changes", urlencode(name)),
            None,
        )
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|e| CliError::msg(e.to_string()))?;
    let mut out = String::new();
    for c in v.as_array().into_iter().flatten() {
        let k = match c.get("Kind").and_then(|k| k.as_i64()) {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        let p = c.get("Path").and_then(|p| p.as_str()).unwrap_or("");
        out.push_str(&format!("{k} {p}\n"));
    }
    super::out(&out)
}

pub async fn commit(client: &Client, a: CommitArgs) -> Result<(), CliError> {
    let pause = match a.pause.as_str() {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
        "false" | "0" | "f" | "F" | "FALSE" | "False" => false,
        v => {
            return Err(CliError::msg(format!(
                "invalid argument \"{v}\" for \"-p, --pause\" flag: strconv.ParseBool: parsing \"{v}\": invalid syntax"
            )));
        }
    };
    let name = &a.args[0];
    let (repo, tag) = match a.args.get(1) {
        Some(r) => {
            let reference = berth_types::Reference::parse_normalized(r)
                .map_err(|e| CliError::msg(e.to_string()))?;
            if reference.digest.is_some() {
                return Err(CliError::msg(
                    "refusing to create a tag with a digest reference",
                ));
            }
            let tag = reference.tag.clone().unwrap_or_default();
            let last = r.rsplit('/').next().unwrap_or(r);
            let repo = match last.rfind(':') {
                Some(_) => r[..r.len() - tag.len() - 1].to_owned(),
                None => r.clone(),
            };
            (repo, tag)
        }
        None => (String::new(), String::new()),
    };
    let mut q = format!(
        "/commit?container={}&repo={}&tag={}&comment={}&author={}&pause={}",
        urlencode(name),
        urlencode(&repo),
        urlencode(&tag),
        urlencode(a.message.as_deref().unwrap_or("")),
        urlencode(a.author.as_deref().unwrap_or("")),
        pause
    );
    for c in &a.change {
        q.push_str(&format!("&changes={}", urlencode(c)));
    }
    let r = client
        .raw(Method::POST, &q, Some(bytes::Bytes::from_static(b"{}")))
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|e| CliError::msg(e.to_string()))?;
    let id = v.get("Id").and_then(|i| i.as_str()).unwrap_or("");
    super::out(&format!("{id}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_helpers() {
        assert_eq!(go_clean("/a/../b/./c/"), "/b/c");
        assert_eq!(go_clean("a/.."), ".");
        assert_eq!(go_base("/a/b/"), "b");
        assert_eq!(go_dir("/a/b"), "/a");
        assert_eq!(go_dir("/a"), "/");
        assert_eq!(preserve_trailing("/a/b", "a/b/."), "/a/b/.");
        assert_eq!(preserve_trailing("/a/b", "a/b/"), "/a/b/");
        assert_eq!(
            split_path_dir_entry("/a/b/."),
            ("/a/b".to_string(), ".".to_string())
        );
        assert_eq!(
            split_path_dir_entry("/a/b/"),
            ("/a".to_string(), "b".to_string())
        );
        assert_eq!(split_cp_arg("c1:/x"), (Some("c1".into()), "/x".into()));
        assert_eq!(split_cp_arg("./c1:/x"), (None, "./c1:/x".into()));
        assert_eq!(split_cp_arg("/abs:x"), (None, "/abs:x".into()));
        assert_eq!(rebase(b"src/a", "src", "dst"), b"dst/a");
        assert_eq!(rebase(b"./a", ".", "new"), b"new/a");
        assert_eq!(copied_msg(1540, "/x"), "Successfully copied 1.54kB to /x\n");
    }
}
