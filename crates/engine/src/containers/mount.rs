//! When a container's rootfs (the overlay) is mounted, as Docker does it: while the container
//! runs, and for the moment someone needs the files of a stopped one (cp, export, diff,
//! commit: [`Containers::mount_rootfs`] / [`Containers::with_rootfs`]). Users are counted per
//! container so a start and a `cp` overlapping do not unmount under each other. Also the
//! container's sizes (`SizeRw`, `SizeRootFs`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_types::Digest;

use super::{Container, Containers, blocking, io_err, lock, rootfs};
use crate::error::{Error, Result};

/// Who holds a container's rootfs mount.
#[derive(Debug, Default)]
pub(super) struct RootfsState {
    /// Holders (the running container counts as one).
    users: u32,
    /// Whether the running container is one of them.
    run: bool,
    /// Whether the mount made ahead of the first start (`premount`) is one of them.
    premount: bool,
    /// Whether it was ever started (by this daemon): no premount after that.
    started: bool,
}

impl RootfsState {
    /// A container found running at daemon start: its rootfs is mounted and held by the run.
    pub(super) fn running() -> RootfsState {
        RootfsState {
            users: 1,
            run: true,
            premount: false,
            started: true,
        }
    }
}

/// Whose hold on the rootfs [`Containers::rootfs_acquire`] takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    Run,
    User,
    Premount,
}

/// How long a premount waits for the start it was made for.
const PREMOUNT_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// The rootfs of a container, mounted for as long as this guard lives. Dropping it unmounts
/// the rootfs unless the container runs or another guard holds it. Drop it inside a tokio
/// runtime (the unmount then happens on the blocking pool) or anywhere else (inline).
pub struct RootfsGuard {
    containers: Containers,
    ctr: Arc<Container>,
    path: PathBuf,
}

impl RootfsGuard {
    /// The merged root filesystem (`GraphDriver.Data.MergedDir`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RootfsGuard {
    fn drop(&mut self) {
        let c = self.containers.clone();
        let ctr = self.ctr.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || c.rootfs_release(&ctr, false));
            }
            Err(_) => c.rootfs_release(&ctr, false),
        }
    }
}

impl Containers {
    /// Mounts the rootfs (if no one else has) and counts one more user; `run` is the running
    /// container's own hold (taken once per run). Blocking.
    pub(super) fn rootfs_acquire(&self, ctr: &Container, run: bool) -> Result<PathBuf> {
        let hold = if run { Hold::Run } else { Hold::User };
        self.acquire(ctr, hold)
            .map(|t| t.unwrap_or_else(|| self.merged(&ctr.id)))
    }

    fn merged(&self, id: &str) -> PathBuf {
        rootfs::rw_dir(self.0.images.overlay_root(), id).join("merged")
    }

    /// `rootfs_acquire`, and the premount's hold: None when it is not taken (the container
    /// was started or is being removed: its files may be moving).
    fn acquire(&self, ctr: &Container, hold: Hold) -> Result<Option<PathBuf>> {
        let rec = ctr.record();
        let store = &self.0.images;
        let mut st = lock(&ctr.rootfs);
        let target = self.merged(&rec.id);
        match hold {
            Hold::Run if st.run => return Ok(Some(target)),
            Hold::Premount if st.started || st.premount => return Ok(None),
            _ => {}
        }
        if st.users == 0 {
            let image_id: Digest = rec
                .image_id
                .parse()
                .map_err(|_| Error::internal("bad image id in container record"))?;
            // the layers the container holds: its image may have been force-removed since
            // (dockerd starts such a container all the same); no hold means an image without
            // layers, whose lowerdir is empty even when the image is gone
            let lower = match store.held_lowerdir(&rec.id)? {
                Some(l) => l,
                None => match store.lowerdir(&image_id) {
                    Ok(l) => l,
                    Err(berth_image::Error::NotFound(_)) => String::new(),
                    Err(e) => return Err(e.into()),
                },
            };
            rootfs::mount(
                store.overlay_root(),
                &rec.id,
                &lower,
                rec.host_bool("AutoRemove"),
            )
            .map_err(|e| io_err("mounting rootfs", e))?;
        }
        st.users += 1;
        if hold != Hold::User {
            // a run's files, under the same lock as its mount: a premount and a start never
            // write them at once
            if let Err(e) = super::ensure_etc(&self.dir(&rec.id), &rec) {
                st.users -= 1;
                if st.users == 0 {
                    let _ = rootfs::unmount(&target);
                }
                return Err(io_err("writing /etc files", e));
            }
        }
        match hold {
            Hold::Run => {
                st.run = true;
                st.started = true;
            }
            Hold::Premount => st.premount = true,
            Hold::User => {}
        }
        Ok(Some(target))
    }

    /// No premount from now on (a removal is about to move the container's files). Blocking
    /// (waits for a premount that is mounting).
    pub(super) fn no_premount(&self, ctr: &Container) {
        lock(&ctr.rootfs).started = true;
    }

    /// Undoes one `rootfs_acquire` (the run's hold: only if it has one). Blocking.
    pub(super) fn rootfs_release(&self, ctr: &Container, run: bool) {
        let mut st = lock(&ctr.rootfs);
        if run {
            if !st.run {
                return;
            }
            st.run = false;
        }
        st.users = st.users.saturating_sub(1);
        if st.users == 0 {
            let merged = rootfs::rw_dir(self.0.images.overlay_root(), &ctr.id).join("merged");
            if let Err(e) = rootfs::unmount(&merged) {
                tracing::warn!("unmounting {}: {e}", merged.display());
            }
        }
    }

    /// Right after a create (not on its reply's path): mount the rootfs ahead of the start
    /// that `docker run` sends next, so the overlay mount (the kernel's work dir set-up, about
    /// half a millisecond) overlaps the client's attach and start requests instead of
    /// delaying the start. The start takes its own hold and drops this one; without a start
    /// within [`PREMOUNT_FOR`] it is dropped anyway, so a created container does not stay
    /// mounted (as in Docker, whose rootfs is mounted only while it runs or is copied from).
    pub(super) fn premount(&self, ctr: Arc<Container>) {
        let this = self.clone();
        tokio::spawn(async move {
            let (t, c) = (this.clone(), ctr.clone());
            let held = blocking(move || Ok(t.premount_acquire(&c))).await;
            if !matches!(held, Ok(true)) {
                return;
            }
            tokio::time::sleep(PREMOUNT_FOR).await;
            let _ = blocking(move || {
                this.premount_release(&ctr);
                Ok(())
            })
            .await;
        });
    }

    /// Takes the premount hold unless the container was started already. Blocking.
    fn premount_acquire(&self, ctr: &Container) -> bool {
        match self.acquire(ctr, Hold::Premount) {
            Ok(held) => held.is_some(),
            Err(e) => {
                tracing::debug!("premounting {}: {e}", ctr.id);
                false
            }
        }
    }

    /// Drops the premount hold, if there is one. Blocking.
    pub(super) fn premount_release(&self, ctr: &Container) {
        {
            let mut st = lock(&ctr.rootfs);
            if !st.premount {
                return;
            }
            st.premount = false;
        }
        self.rootfs_release(ctr, false);
    }

    /// The running container's hold on its rootfs ends (it exited, or failed to start).
    pub(super) async fn rootfs_release_run(&self, ctr: &Arc<Container>) {
        let this = self.clone();
        let c = ctr.clone();
        let _ = blocking(move || {
            this.rootfs_release(&c, true);
            Ok(())
        })
        .await;
    }

    /// The container's root filesystem, mounted until the guard is dropped, whether the
    /// container runs or not (for cp, export, diff, commit of a stopped container).
    pub async fn mount_rootfs(&self, name: &str) -> Result<RootfsGuard> {
        let ctr = self.get(name)?;
        let st = ctr.record().state.status;
        if st == "removing" || st == "dead" {
            return Err(Error::conflict(format!(
                "container {} is marked for removal",
                ctr.id
            )));
        }
        let this = self.clone();
        let c = ctr.clone();
        let path = blocking(move || this.rootfs_acquire(&c, false)).await?;
        Ok(RootfsGuard {
            containers: self.clone(),
            ctr,
            path,
        })
    }

    /// Runs `f` (on the blocking pool) with the container's rootfs mounted at the path it is
    /// given; unmounts afterwards unless the container runs or someone else holds it.
    pub async fn with_rootfs<T, F>(&self, name: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T> + Send + 'static,
    {
        let guard = self.mount_rootfs(name).await?;
        let path = guard.path().to_path_buf();
        let res = blocking(move || f(&path)).await;
        drop(guard);
        res
    }

    /// (`SizeRw`, `SizeRootFs`): the bytes in the container's writable layer, and those plus
    /// the image's layers, as `docker ps -s` / `inspect --size` report them.
    pub async fn sizes(&self, name: &str) -> Result<(i64, i64)> {
        let rec = self.get(name)?.record();
        let store = self.0.images.clone();
        blocking(move || {
            let diff = rootfs::rw_dir(store.overlay_root(), &rec.id).join("diff");
            let rw = dir_size(&diff) as i64;
            let image = rec
                .image_id
                .parse::<Digest>()
                .ok()
                .and_then(|d| store.get(&d).ok())
                .map(|i| i.size as i64)
                .unwrap_or(0);
            Ok((rw, image + rw))
        })
        .await
    }
}

/// Bytes of the regular files and symlinks under `dir`, each inode counted once (Docker's
/// `directory.Size`). Does not follow symlinks or leave the filesystem.
pub fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let dev = std::fs::symlink_metadata(dir).map(|m| m.dev()).ok();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                if Some(md.dev()) == dev {
                    stack.push(e.path());
                }
                continue;
            }
            if md.nlink() > 1 && !seen.insert(md.ino()) {
                continue;
            }
            total += md.size();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_count_hardlinks_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("a"), [0u8; 100]).unwrap();
        std::fs::write(d.path().join("sub/b"), [0u8; 50]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("sub/c")).unwrap();
        assert_eq!(super::dir_size(d.path()), 150);
    }
}
