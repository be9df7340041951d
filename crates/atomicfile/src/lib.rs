//! Whole-file replacement for the state files of the daemon, the shim, networks, volumes and
//! the registry: a reader (or a daemon restarted after kill -9) sees the old file or the new
//! one, never half of one. `durable` adds the fsyncs that also survive a host crash.
//!
//! It owns only the write-then-rename dance; it knows nothing of formats or directory layouts
//! and never creates directories.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{CWD, RenameFlags, renameat_with};

/// A temp file name unique per process and call, so concurrent writers of one path never
/// share a temp file (the last rename wins).
fn tmp_suffix() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(".tmp-{}-{n}", std::process::id())
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => File::open(d)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Writes `data` to a fresh temp file next to `path` and renames it over `path`. With
/// `durable`, the file and then its directory are fsync'd.
pub fn write(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(tmp_suffix());
    write_via(Path::new(&tmp), path, data, durable)
}

/// As [`write`], with the temp file in `staging` (a directory on the same filesystem), for a
/// directory whose listing must never show one (a registry's tags): a crash leaves it in
/// `staging`, for its owner's clean-up.
pub fn write_staged(staging: &Path, path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    write_via(&staging.join(tmp_suffix()), path, data, durable)
}

fn write_via(tmp: &Path, path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let r = (|| {
        let mut f = File::create(tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    r?;
    if durable {
        sync_parent(path)?;
    }
    Ok(())
}

/// For a file saved again and again (container records, network state): `data` goes into
/// a temp file, overwritten in place, which is then swapped with `path` in one
/// `renameat2(RENAME_EXCHANGE)`; the temp file keeps the previous content until the next
/// save. The temp file is `path` with its extension replaced by `tmp` (`config.v2.json` →
/// `config.v2.tmp`), the name data roots already have. A rename over the old file would free an inode and allocate one per save, which on
/// an ext4 without a journal means a scan of the recently deleted inodes each time. Falls
/// back to a plain rename for the first save and on filesystems without the flag. One
/// writer per path at a time (callers hold their own lock or own the file).
pub fn swap(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        // not truncated first: its blocks (the content of two saves ago, about the same
        // size) are reused instead of freed and allocated again
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&tmp)?;
        f.write_all(data)?;
        f.set_len(data.len() as u64)?;
        if durable {
            f.sync_all()?;
        }
    }
    match renameat_with(CWD, &tmp, CWD, path, RenameFlags::EXCHANGE) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::INVAL => {
            std::fs::rename(&tmp, path)?
        }
        Err(e) => return Err(e.into()),
    }
    if durable {
        sync_parent(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write(&p, b"one", true).unwrap();
        write(&p, b"two", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(names(d.path()), ["f.json"]);
    }

    #[test]
    fn write_staged_leaves_nothing_beside_the_file() {
        let d = tempfile::tempdir().unwrap();
        let (staging, dir) = (d.path().join("tmp"), d.path().join("tags"));
        std::fs::create_dir(&staging).unwrap();
        std::fs::create_dir(&dir).unwrap();
        write_staged(&staging, &dir.join("latest"), b"sha256:x", true).unwrap();
        assert_eq!(std::fs::read(dir.join("latest")).unwrap(), b"sha256:x");
        assert_eq!(names(&dir), ["latest"]);
        assert_eq!(names(&staging), Vec::<String>::new());
    }

    #[test]
    fn write_into_a_missing_dir_fails_cleanly() {
        let d = tempfile::tempdir().unwrap();
        assert!(write(&d.path().join("no/f"), b"x", false).is_err());
        assert_eq!(names(d.path()), Vec::<String>::new());
    }

    /// Saves swap the file with its temp: both inodes are reused, a shorter save is not
    /// followed by the tail of a longer one.
    #[test]
    fn swap_reuses_two_inodes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        swap(&p, b"first, the longest", true).unwrap();
        swap(&p, b"second", false).unwrap();
        let inodes = || {
            let mut v: Vec<u64> = std::fs::read_dir(d.path())
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().ino())
                .collect();
            v.sort();
            v
        };
        let before = inodes();
        swap(&p, b"third", false).unwrap();
        assert_eq!(inodes(), before);
        assert_eq!(std::fs::read(&p).unwrap(), b"third");
        swap(&p, b"4", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"4");
        assert_eq!(names(d.path()), ["s.json", "s.tmp"]);
    }
}
