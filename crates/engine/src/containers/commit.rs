//! `docker diff` and `docker commit`: a container's changes are its overlay upper dir.
//!
//! `changes` follows dockerd's overlay rules (`archive.OverlayChanges`): an entry of the upper
//! dir is Added unless a lower layer has that path (then Modified; a directory whose size, mode
//! and mtime match is not listed); a 0/0 character device is a Deleted whiteout; an opaque
//! directory is Deleted; the parent of an Added/Deleted entry is Modified. dockerd keeps the
//! runtime's mount points (/etc/hosts, /dev, /proc, ...) in a separate init layer, so they are
//! never changes; so does berth (rootfs.rs), and they are also left out of the upper dir of
//! containers made before it had one (where the runtime created them).
//! `commit` turns the same upper dir (minus those mount points) into a layer on top of the
//! container's image.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_types::Digest;
use berth_types::image_config::{ContainerConfig, History, ImageConfig};
use serde_json::{Value, json};

use super::{Containers, blocking, io_err, rootfs};
use crate::error::{Error, Result};

/// The paths Docker's init layer holds (mount points the runtime needs), relative to `/`.
const INIT_PATHS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    ".dockerenv",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/mtab",
];

/// Whether `rel` (no leading `/`) is an init path or inside one of the init directories.
fn is_init_path(rel: &[u8]) -> bool {
    INIT_PATHS.iter().any(|p| {
        let p = p.as_bytes();
        rel == p || (rel.len() > p.len() && rel.starts_with(p) && rel[p.len()] == b'/')
    })
}

/// `docker commit` parameters (`POST /commit`).
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub container: String,
    pub repo: Option<String>,
    pub tag: Option<String>,
    pub comment: Option<String>,
    pub author: Option<String>,
    pub pause: bool,
    pub changes: Vec<String>,
    /// The request body's Config, if any (fields given there win over the container's).
    pub config: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Modify = 0,
    Add = 1,
    Delete = 2,
}

struct Walk<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    out: Vec<(String, Kind)>,
    changed_dirs: std::collections::HashSet<String>,
}

fn in_lower(lowers: &[PathBuf], rel: &str) -> Option<std::fs::Metadata> {
    // top layer first, like dockerd's list; lstat: a lower symlink is never followed on the host
    lowers
        .iter()
        .rev()
        .find_map(|l| std::fs::symlink_metadata(l.join(rel)).ok())
}

impl Walk<'_> {
    fn dir(&mut self, rel: &str) -> Result<()> {
        let dir = self.upper.join(rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| io_err("reading container changes", e))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            if is_init_path(child.as_bytes()) {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(self.upper.join(&child)) else {
                continue;
            };
            let path = format!("/{child}");
            let ft = md.file_type();
            let whiteout = ft.is_char_device() && md.rdev() == 0;
            let opaque = ft.is_dir()
                && xattr_is_y(&self.upper.join(&child), berth_image::layer::OPAQUE_XATTR);
            let kind = if whiteout || (opaque && in_lower(self.lowers, &child).is_some()) {
                Some(Kind::Delete)
            } else {
                match in_lower(self.lowers, &child) {
                    None => Some(Kind::Add),
                    Some(l) if l.is_dir() && md.is_dir() => {
                        let same = l.len() == md.len()
                            && l.mode() == md.mode()
                            && l.mtime() == md.mtime()
                            && l.mtime_nsec() == md.mtime_nsec();
                        (!same).then_some(Kind::Modify)
                    }
                    Some(_) => Some(Kind::Modify),
                }
            };
            if let Some(kind) = kind {
                if md.is_dir() {
                    self.changed_dirs.insert(path.clone());
                }
                if kind != Kind::Modify {
                    let parent = match path.rfind('/') {
                        Some(0) | None => "/".to_owned(),
                        Some(i) => path[..i].to_owned(),
                    };
                    if parent != "/" && !self.changed_dirs.contains(&parent) {
                        self.out.push((parent.clone(), Kind::Modify));
                        self.changed_dirs.insert(parent);
                    }
                }
                self.out.push((path, kind));
            }
            if md.is_dir() && !whiteout {
                self.dir(&child)?;
            }
        }
        Ok(())
    }
}

fn xattr_is_y(path: &Path, name: &str) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(path, name, &mut buf), Ok(1) if buf[0] == b'y')
}

impl Containers {
    fn upper_and_lowers(&self, rec: &super::Record) -> (PathBuf, Vec<PathBuf>) {
        // a container never mounted yet has no writable layer dirs (made at the first mount)
        let _ = rootfs::create_dirs(self.0.images.overlay_root(), &rec.id);
        let upper = rootfs::rw_dir(self.0.images.overlay_root(), &rec.id).join("diff");
        let mut lowers = rec
            .image_id
            .parse::<Digest>()
            .ok()
            .and_then(|id| self.0.images.layer_dirs(&id).ok())
            .unwrap_or_default();
        // the init layer is the topmost lower of every container's overlay (rootfs.rs)
        lowers.push(self.0.images.overlay_root().join(rootfs::INIT_LAYER));
        (upper, lowers)
    }

    /// `GET /containers/{id}/changes`: `[{"Path": "/x", "Kind": 0|1|2}]` (Modify, Add, Delete).
    pub async fn changes(&self, name: &str) -> Result<Value> {
        let rec = self.get(name)?.record();
        let (upper, lowers) = self.upper_and_lowers(&rec);
        let list = blocking(move || {
            let mut w = Walk {
                upper: &upper,
                lowers: &lowers,
                out: Vec::new(),
                changed_dirs: Default::default(),
            };
            w.dir("")?;
            Ok(w.out)
        })
        .await?;
        Ok(Value::Array(
            list.into_iter()
                .map(|(p, k)| json!({ "Path": p, "Kind": k as u8 }))
                .collect(),
        ))
    }

    /// `POST /commit`: a new image from the container's changes on top of its image.
    pub async fn commit(&self, o: CommitOptions) -> Result<Digest> {
        let ctr = self.get(&o.container)?;
        let rec = ctr.record();
        let reference = match o.repo.as_deref().filter(|r| !r.is_empty()) {
            Some(repo) => {
                let mut r = berth_types::Reference::parse_normalized(repo)?;
                if r.digest.is_some() {
                    return Err(Error::invalid(
                        "refusing to create a tag with a digest reference",
                    ));
                }
                let tag = o
                    .tag
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .unwrap_or("latest");
                r = r.with_tag(tag);
                Some(r)
            }
            None => None,
        };
        // the image config: the container's Config with the body's fields and the changes
        let mut cfg_json = rec.config.clone();
        if let (Some(Value::Object(body)), Some(obj)) = (&o.config, cfg_json.as_object_mut()) {
            for (k, v) in body {
                let empty = v.is_null()
                    || v.as_str() == Some("")
                    || v.as_array().is_some_and(|a| a.is_empty())
                    || v.as_object().is_some_and(|a| a.is_empty())
                    || v.as_bool() == Some(false);
                if !empty {
                    obj.insert(k.clone(), v.clone());
                }
            }
        }
        let mut config: ContainerConfig = serde_json::from_value(cfg_json)
            .map_err(|e| Error::invalid(format!("invalid container config: {e}")))?;
        berth_image::apply_changes(&mut config, &o.changes)?;
        let parent: Option<Digest> = rec.image_id.parse().ok();
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let author = o.author.clone().filter(|a| !a.is_empty());
        let comment = o.comment.clone().filter(|c| !c.is_empty());
        let image_config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            author: author.clone(),
            comment: comment.clone(),
            created: Some(created.clone()),
            config: Some(config),
            ..Default::default()
        };
        let created_by = std::iter::once(rec.path.clone())
            .chain(rec.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let history = History {
            created: Some(created),
            author,
            created_by: Some(created_by),
            comment: comment.clone(),
            empty_layer: false,
        };

        let paused = o.pause && rec.running() && rec.state.status != "paused";
        if paused {
            self.pause(&rec.id, true).await?;
        }
        let (upper, _) = self.upper_and_lowers(&rec);
        let store = self.0.images.clone();
        let r2 = reference.clone();
        let res = blocking(move || {
            // the layer tar goes through a pipe into the store as it is written
            let (mut r, mut w) = std::io::pipe().map_err(|e| io_err("commit pipe", e))?;
            let writer = std::thread::spawn(move || {
                berth_image::layer::write_layer_tar_filtered(&upper, &mut w, &|p| is_init_path(p))
            });
            let id = store.create_image(
                parent.as_ref(),
                Some(&mut r),
                image_config,
                history,
                r2.as_ref(),
                &mut |_| {},
            );
            let w = writer
                .join()
                .map_err(|_| Error::internal("commit: layer writer panicked"))?;
            w?;
            Ok(id?)
        })
        .await;
        if paused && let Err(e) = self.pause(&rec.id, false).await {
            tracing::warn!("unpausing {} after commit: {e}", rec.id);
        }
        let id = res?;
        let mut extra = vec![("comment", o.comment.clone().unwrap_or_default())];
        if let Some(r) = &reference {
            extra.push(("imageRef", r.familiar()));
        }
        extra.push(("imageID", id.to_string()));
        self.log_event(&rec, "commit", &extra);
        Ok(id)
    }
}

impl Containers {
    /// The builder's commit (a RUN/COPY step): the container's changes as a layer on its
    /// image, with the config and history line the step computed. No event, no tag. `skip`:
    /// absolute paths (the step's mount points) left out of the layer with what is below them.
    pub async fn commit_build(
        &self,
        name: &str,
        config: ImageConfig,
        history: History,
        skip: &[String],
    ) -> Result<Digest> {
        let skip: Vec<Vec<u8>> = skip
            .iter()
            .map(|s| s.trim_start_matches('/').as_bytes().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        let rec = self.get(name)?.record();
        let parent: Option<Digest> = rec.image_id.parse().ok();
        let (upper, lowers) = self.upper_and_lowers(&rec);
        let store = self.0.images.clone();
        blocking(move || {
            let mut anchors: Vec<&[u8]> = INIT_PATHS.iter().map(|p| p.as_bytes()).collect();
            anchors.extend(skip.iter().map(|s| &s[..]));
            let copied_up = copied_up_only(&upper, &lowers, &anchors, &|p| skipped(p, &skip));
            let (mut r, mut w) = std::io::pipe().map_err(|e| io_err("commit pipe", e))?;
            let writer = std::thread::spawn(move || {
                berth_image::layer::write_layer_tar_filtered(&upper, &mut w, &|p| {
                    skipped(p, &skip) || copied_up.contains(p)
                })
            });
            // a step that changed nothing is an empty layer, as with dockerd
            let id = store.create_child_image(parent.as_ref(), &mut r, config, history);
            let w = writer
                .join()
                .map_err(|_| Error::internal("commit: layer writer panicked"))?;
            w?;
            Ok(id?)
        })
        .await
    }
}

/// Whether `p` is left out of a build step's layer: an init path, or a mount target of the
/// step (or below one).
fn skipped(p: &[u8], targets: &[Vec<u8>]) -> bool {
    is_init_path(p)
        || targets
            .iter()
            .any(|s| p == &s[..] || (p.len() > s.len() && p.starts_with(s) && p[s.len()] == b'/'))
}

/// Directories of the upper dir that overlay copied up (or the runtime made) only to hold
/// skipped entries (the runtime's mount points, a step's mount targets): they hold nothing
/// else and keep the lower layer's mode and owner, if the lower layers have them. dockerd has these in its init layer, so they are no change of the
/// step and a `RUN true` commits the empty layer. Only ancestors of `anchors` are looked at.
fn copied_up_only(
    upper: &Path,
    lowers: &[PathBuf],
    anchors: &[&[u8]],
    skipped: &dyn Fn(&[u8]) -> bool,
) -> std::collections::HashSet<Vec<u8>> {
    let mut cands: Vec<Vec<u8>> = Vec::new();
    for a in anchors {
        let mut end = a.len();
        while let Some(i) = a[..end].iter().rposition(|b| *b == b'/') {
            if !cands.iter().any(|c| c[..] == a[..i]) {
                cands.push(a[..i].to_vec());
            }
            end = i;
        }
    }
    // deepest first: a parent is pruned only when its pruned children are all it holds
    cands.sort_by_key(|c| std::cmp::Reverse(c.len()));
    let mut out = std::collections::HashSet::new();
    for c in cands {
        let rel = std::ffi::OsStr::from_bytes(&c);
        let dir = upper.join(rel);
        let Ok(md) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !md.is_dir() || xattr_is_y(&dir, berth_image::layer::OPAQUE_XATTR) {
            continue;
        }
        let Some(rel_str) = rel.to_str() else {
            continue;
        };
        // absent below: the runtime made it for a mount point
        let same_as_lower = in_lower(lowers, rel_str).is_none_or(|l| {
            l.is_dir() && l.mode() == md.mode() && l.uid() == md.uid() && l.gid() == md.gid()
        });
        if !same_as_lower {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let only_skipped = rd.flatten().all(|e| {
            let mut child = c.clone();
            child.push(b'/');
            child.extend_from_slice(e.file_name().as_bytes());
            skipped(&child) || out.contains(&child)
        });
        if only_skipped {
            out.insert(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn init_paths() {
        assert!(super::is_init_path(b"etc/hosts"));
        assert!(super::is_init_path(b"dev/pts"));
        assert!(!super::is_init_path(b"etc"));
        assert!(!super::is_init_path(b"devices"));
        assert!(!super::is_init_path(b"etc/hostsx"));
    }
}
