//! `--user uid[:gid]` / `name[:group]` and `--group-add` resolved against the container's own
//! /etc/passwd and /etc/group, opened with openat2(RESOLVE_IN_ROOT) so an image's symlinks can
//! never make us read a host file.

use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::Error;

/// Resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Home directory from passwd (for HOME), when the user was found there.
    pub home: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads a file inside `root`; a missing file is an empty one (images without /etc/passwd
/// still run numeric users, as with Docker).
fn read_in_root(root: &Path, rel: &str) -> Result<String, Error> {
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Io(format!("open rootfs {}: {e}", root.display())))?;
    let fd = match rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => return Err(Error::Io(format!("open {rel} in rootfs: {e}"))),
    };
    let mut f = std::fs::File::from(fd);
    // /etc/passwd of a real image is small; cap what we read so a hostile image cannot make the
    // daemon allocate gigabytes.
    let mut s = String::new();
    (&mut f)
        .take(16 << 20)
        .read_to_string(&mut s)
        .map_err(|e| Error::Io(format!("read {rel} in rootfs: {e}")))?;
    Ok(s)
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Docker's (runc `user.GetExecUser`) rules: empty = root; a numeric uid need not exist in
/// passwd; a name must; the gid defaults to the passwd entry's, else 0; supplementary groups
/// are the user's memberships in /etc/group plus `group_add`.
pub fn resolve(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser, Error> {
    let passwd = parse_passwd(&read_in_root(rootfs, "/etc/passwd")?);
    let groups = parse_group(&read_in_root(rootfs, "/etc/group")?);
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };

    let (uid, mut gid, name, home) = if let Ok(n) = u.parse::<u32>() {
        match passwd.iter().find(|p| p.uid == n) {
            Some(p) => (n, p.gid, Some(p.name.clone()), Some(p.home.clone())),
            None => (n, 0, None, None),
        }
    } else {
        match passwd.iter().find(|p| p.name == u) {
            Some(p) => (p.uid, p.gid, Some(p.name.clone()), Some(p.home.clone())),
            None => {
                return Err(Error::User(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                )));
            }
        }
    };

    let lookup_group = |g: &str| -> Result<u32, Error> {
        if let Ok(n) = g.parse::<u32>() {
            return Ok(n);
        }
        groups
            .iter()
            .find(|e| e.name == g)
            .map(|e| e.gid)
            .ok_or_else(|| {
                Error::User(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })
    };

    if let Some(g) = g
        && !g.is_empty()
    {
        gid = lookup_group(g)?;
    }
    // The primary group is a supplementary group too, as dockerd sets it since the fix of
    // CVE-2022-36109 (so `newgrp`/setgroups cannot drop it; `id` lists it under groups=).
    let mut additional = vec![gid];
    if g.is_none()
        && let Some(name) = &name
    {
        // memberships only when the group was not given explicitly (runc does the same)
        for e in &groups {
            if e.members.iter().any(|m| m == name) && !additional.contains(&e.gid) {
                additional.push(e.gid);
            }
        }
    }
    for g in group_add {
        let id = lookup_group(g)?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nbob:x:1000:\naudio:x:29:bob,www\nstaff:x:50:bob\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn numeric_and_names() {
        let d = root();
        let r = resolve(d.path(), "", &[]).unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        let r = resolve(d.path(), "1000", &[]).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));
        assert_eq!(r.additional_gids, vec![1000, 29, 50]);
        assert_eq!(r.home.as_deref(), Some("/home/bob"));
        let r = resolve(d.path(), "4242", &[]).unwrap();
        assert_eq!((r.uid, r.gid), (4242, 0));
        let r = resolve(d.path(), "www:staff", &["audio".into(), "7".into()]).unwrap();
        assert_eq!((r.uid, r.gid), (33, 50));
        assert_eq!(r.additional_gids, vec![50, 29, 7]);
        assert!(resolve(d.path(), "nobody", &[]).is_err());
        assert!(resolve(d.path(), "bob:nogroup", &[]).is_err());
    }

    #[test]
    fn symlink_cannot_escape_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:7:7::/:/bin/sh\n").unwrap();
        // absolute symlink: inside the root it resolves to <root>/<outside>/passwd, not the host
        std::os::unix::fs::symlink(outside.path().join("passwd"), d.path().join("etc/passwd"))
            .unwrap();
        assert!(resolve(d.path(), "evil", &[]).is_err());
        std::os::unix::fs::symlink(
            "../../../../../../../../etc/shadow",
            d.path().join("etc/group"),
        )
        .unwrap();
        // ".." is clamped at the root, so this is <root>/etc/shadow: missing, not the host's
        assert!(resolve(d.path(), "0:shadow", &[]).is_err());
    }
}
