//! Copy-up: a new, empty volume mounted over a directory of the image gets that directory's
//! content (dockerd's `copyExistingContents`), ownership and mode included.
//!
//! The image side is opened with openat2(RESOLVE_IN_ROOT) so a symlink in the image resolves
//! inside the container's root, never on the host; below that, every entry is reached with
//! *at() calls on directory fds and O_NOFOLLOW, and symlinks are copied as symlinks.

use std::ffi::CStr;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW
}

/// Copy `dest` (a path inside `rootfs`) into `volume_dir` when `volume_dir` is empty and the
/// image has a directory there. Anything else (no such path, a file, a non-empty volume) is
/// left alone.
pub fn copy_up(rootfs: &Path, dest: &str, volume_dir: &Path) -> std::io::Result<()> {
    let root = rustix::fs::open(rootfs, dir_flags(), Mode::empty())?;
    let rel = dest.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let src = match rustix::fs::openat2(
        &root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let dst = rustix::fs::open(volume_dir, dir_flags(), Mode::empty())?;
    if !is_empty(&dst)? {
        return Ok(());
    }
    copy_dir(&src, &dst, 0)?;
    let st = rustix::fs::fstat(&src)?;
    copy_owner_mode(&dst, &st)?;
    Ok(())
}

fn is_empty(fd: &OwnedFd) -> std::io::Result<bool> {
    let mut dir = rustix::fs::Dir::read_from(fd)?;
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

fn copy_owner_mode(fd: &OwnedFd, st: &rustix::fs::Stat) -> std::io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    Ok(())
}

fn times(st: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn copy_dir(src: &OwnedFd, dst: &OwnedFd, depth: usize) -> std::io::Result<()> {
    if depth > 256 {
        return Err(std::io::Error::other("directory tree too deep"));
    }
    let mut dir = rustix::fs::Dir::read_from(src)?;
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let name: &CStr = ent.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        copy_entry(src, dst, name, depth)?;
    }
    Ok(())
}

fn copy_entry(src: &OwnedFd, dst: &OwnedFd, name: &CStr, depth: usize) -> std::io::Result<()> {
    let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
    let owner = |fd: &OwnedFd| -> std::io::Result<()> {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        )?;
        rustix::fs::fchmod(fd, perm)?;
        Ok(())
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
            let s = rustix::fs::openat(src, name, dir_flags(), Mode::empty())?;
            let d = rustix::fs::openat(dst, name, dir_flags(), Mode::empty())?;
            copy_dir(&s, &d, depth + 1)?;
            owner(&d)?;
            rustix::fs::futimens(&d, &times(&st))?;
        }
        FileType::RegularFile => {
            let s = rustix::fs::openat(
                src,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let d = rustix::fs::openat(
                dst,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let mut sf = std::fs::File::from(s);
            let mut df = std::fs::File::from(d);
            std::io::copy(&mut sf, &mut df)?;
            let d: OwnedFd = df.into();
            owner(&d)?;
            rustix::fs::futimens(&d, &times(&st))?;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(src, name, Vec::new())?;
            rustix::fs::symlinkat(target.as_c_str(), dst, name)?;
            rustix::fs::chownat(
                dst,
                name,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice | FileType::Socket => {
            let ft = FileType::from_raw_mode(st.st_mode);
            match rustix::fs::mknodat(dst, name, ft, perm, st.st_rdev) {
                Ok(()) => {}
                // sockets and devices may be refused (no CAP_MKNOD in a user namespace)
                Err(e) if e.kind() == ErrorKind::PermissionDenied => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            rustix::fs::chownat(
                dst,
                name,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        FileType::Unknown => {}
    }
    Ok(())
}
