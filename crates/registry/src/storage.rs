//! The registry's storage: one directory, crash-safe by construction.
//!
//! ```text
//! blobs/sha256/<hex>                                   content: layers, configs, manifests
//! repositories/<name>/_layers/sha256/<hex>             empty link: the blob belongs to <name>
//! repositories/<name>/_manifests/revisions/sha256/<hex> link to a manifest; holds its media type
//! repositories/<name>/_manifests/tags/<tag>            the digest the tag points to
//! repositories/<name>/_referrers/sha256/<subject>/<hex> the referrers API descriptor of <hex>
//! repositories/<name>/_uploads/<id>                    bytes of an upload session so far
//! tmp/                                                 staging for atomic writes
//! ```
//!
//! Every file a reader can see is published by `rename(2)` from `tmp/` or `_uploads/` (same
//! filesystem), after `fsync`: a kill -9 at any point leaves either the old state or the new one,
//! never a half blob, manifest or tag. Leftovers of an interrupted upload stay in `_uploads/`
//! where the session can be resumed (its offset is the file's length) or cancelled.
//!
//! Callers pass names, tags, ids and digests already checked by [`crate::names`]; the checks are
//! repeated here on names and ids (cheap) so no caller can build a path outside the root.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_types::Digest;

use crate::error::{Error, Result};
use crate::names::{is_valid_name, is_valid_tag, is_valid_upload_id};

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn open(root: &Path) -> Result<Storage> {
        for d in ["blobs/sha256", "repositories", "tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Storage {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    fn repo_dir(&self, name: &str) -> Result<PathBuf> {
        if is_valid_name(name) {
            Ok(self.root.join("repositories").join(name))
        } else {
            Err(Error::NameInvalid)
        }
    }

    fn layer_link(&self, name: &str, d: &Digest) -> Result<PathBuf> {
        Ok(self.repo_dir(name)?.join("_layers/sha256").join(d.hex()))
    }

    fn revision_link(&self, name: &str, d: &Digest) -> Result<PathBuf> {
        Ok(self
            .repo_dir(name)?
            .join("_manifests/revisions/sha256")
            .join(d.hex()))
    }

    fn tag_path(&self, name: &str, tag: &str) -> Result<PathBuf> {
        if !is_valid_tag(tag) {
            return Err(Error::TagInvalid(tag.to_owned()));
        }
        Ok(self.repo_dir(name)?.join("_manifests/tags").join(tag))
    }

    fn referrers_dir(&self, name: &str, subject: &Digest) -> Result<PathBuf> {
        Ok(self
            .repo_dir(name)?
            .join("_referrers/sha256")
            .join(subject.hex()))
    }

    /// Write `data` to `dest` atomically and durably (temp file, fsyncs, rename). The temp
    /// file is staged in `tmp/`, never beside `dest`: listings (tags, blobs) must not show
    /// one a crash left, and `remove_tmp_older_than` cleans `tmp/`.
    fn write_atomic(&self, dest: &Path, data: &[u8]) -> Result<()> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        Ok(berth_atomicfile::write_staged(
            &self.root.join("tmp"),
            dest,
            data,
            true,
        )?)
    }

    /// Size of a blob in the global store, whoever it belongs to.
    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Size of a blob if it belongs to repository `name` (linked there and present).
    pub fn repo_blob(&self, name: &str, d: &Digest) -> Result<Option<u64>> {
        if !self.layer_link(name, d)?.exists() {
            return Ok(None);
        }
        Ok(self.blob_size(d))
    }

    pub fn link_blob(&self, name: &str, d: &Digest) -> Result<()> {
        let link = self.layer_link(name, d)?;
        if !link.exists() {
            self.write_atomic(&link, b"")?;
        }
        Ok(())
    }

    /// Remove a blob from a repository (the content stays until `gc`).
    pub fn unlink_blob(&self, name: &str, d: &Digest) -> Result<bool> {
        remove_if_exists(&self.layer_link(name, d)?)
    }

    /// Store bytes as a blob (manifests); their digest is computed here.
    pub fn put_blob_bytes(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        if self.blob_size(&d) != Some(data.len() as u64) {
            self.write_atomic(&self.blob_path(&d), data)?;
        }
        Ok(d)
    }

    /// Publish a finished, verified upload file as blob `d` (a rename: atomic).
    pub fn commit_upload(&self, name: &str, id: &str, d: &Digest) -> Result<()> {
        let src = self.upload_path(name, id)?;
        fs::File::open(&src)?.sync_all()?;
        if self.blob_size(d).is_some() {
            // Same digest, same bytes: keep the existing file.
            fs::remove_file(&src)?;
        } else {
            fs::rename(&src, self.blob_path(d))?;
        }
        self.link_blob(name, d)
    }

    /// Does repository `name` exist (anything was ever pushed to it)?
    pub fn repo_exists(&self, name: &str) -> Result<bool> {
        let dir = self.repo_dir(name)?;
        Ok(dir.join("_manifests").is_dir() || dir.join("_layers").is_dir())
    }

    /// Link a stored manifest blob into repository `name` as a revision.
    pub fn link_manifest(&self, name: &str, d: &Digest, media_type: &str) -> Result<()> {
        self.write_atomic(&self.revision_link(name, d)?, media_type.as_bytes())
    }

    /// The media type of manifest `d` in repository `name`, if it is one of its revisions.
    pub fn manifest_media_type(&self, name: &str, d: &Digest) -> Result<Option<String>> {
        match fs::read_to_string(self.revision_link(name, d)?) {
            Ok(mt) => Ok(Some(mt)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// (media type, bytes) of manifest `d` in repository `name`.
    pub fn read_manifest(&self, name: &str, d: &Digest) -> Result<Option<(String, Vec<u8>)>> {
        let Some(mt) = self.manifest_media_type(name, d)? else {
            return Ok(None);
        };
        match fs::read(self.blob_path(d)) {
            Ok(b) => Ok(Some((mt, b))),
            // Revision whose content was garbage-collected: unknown.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn resolve_tag(&self, name: &str, tag: &str) -> Result<Option<Digest>> {
        match fs::read_to_string(self.tag_path(name, tag)?) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn set_tag(&self, name: &str, tag: &str, d: &Digest) -> Result<()> {
        self.write_atomic(&self.tag_path(name, tag)?, d.to_string().as_bytes())
    }

    pub fn delete_tag(&self, name: &str, tag: &str) -> Result<bool> {
        remove_if_exists(&self.tag_path(name, tag)?)
    }

    /// Tags of `name`, sorted as Go's sort.Strings; `None` if the repository does not exist.
    pub fn tags(&self, name: &str) -> Result<Option<Vec<String>>> {
        if !self.repo_exists(name)? {
            return Ok(None);
        }
        let mut tags = list_dir(&self.repo_dir(name)?.join("_manifests/tags"))?;
        tags.retain(|t| is_valid_tag(t));
        tags.sort();
        Ok(Some(tags))
    }

    /// Manifest digests linked in `name`.
    pub fn revisions(&self, name: &str) -> Result<Vec<Digest>> {
        let dir = self.repo_dir(name)?.join("_manifests/revisions/sha256");
        Ok(list_dir(&dir)?
            .iter()
            .filter_map(|h| Digest::from_hex(h).ok())
            .collect())
    }

    /// Unlink manifest `d` from `name` and drop the tags pointing at it.
    pub fn delete_manifest(&self, name: &str, d: &Digest) -> Result<bool> {
        let removed = remove_if_exists(&self.revision_link(name, d)?)?;
        if removed {
            for tag in self.tags(name)?.unwrap_or_default() {
                if self.resolve_tag(name, &tag)?.as_ref() == Some(d) {
                    self.delete_tag(name, &tag)?;
                }
            }
        }
        Ok(removed)
    }

    pub fn add_referrer(
        &self,
        name: &str,
        subject: &Digest,
        d: &Digest,
        descriptor: &serde_json::Value,
    ) -> Result<()> {
        let data = serde_json::to_vec(descriptor).map_err(io::Error::other)?;
        self.write_atomic(&self.referrers_dir(name, subject)?.join(d.hex()), &data)
    }

    pub fn remove_referrer(&self, name: &str, subject: &Digest, d: &Digest) -> Result<()> {
        remove_if_exists(&self.referrers_dir(name, subject)?.join(d.hex()))?;
        Ok(())
    }

    /// Descriptors of the manifests in `name` whose subject is `subject`, ordered by digest.
    pub fn referrers(&self, name: &str, subject: &Digest) -> Result<Vec<serde_json::Value>> {
        let dir = self.referrers_dir(name, subject)?;
        let mut out = Vec::new();
        let mut entries = list_dir(&dir)?;
        entries.sort();
        for hex in entries {
            let Ok(d) = Digest::from_hex(&hex) else {
                continue;
            };
            // Skip entries whose manifest is gone (deleted or collected).
            if self.manifest_media_type(name, &d)?.is_none() {
                continue;
            }
            if let Ok(v) = serde_json::from_slice(&fs::read(dir.join(&hex))?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// All repositories, sorted.
    pub fn repositories(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        walk_repos(&self.root.join("repositories"), String::new(), &mut out)?;
        out.sort();
        Ok(out)
    }

    /// All blobs in the global store.
    pub fn all_blobs(&self) -> Result<Vec<Digest>> {
        Ok(list_dir(&self.root.join("blobs/sha256"))?
            .iter()
            .filter_map(|h| Digest::from_hex(h).ok())
            .collect())
    }

    pub fn remove_blob(&self, d: &Digest) -> Result<bool> {
        remove_if_exists(&self.blob_path(d))
    }

    /// Blob links of `name` (for gc's sweep of links to removed blobs).
    pub fn layer_links(&self, name: &str) -> Result<Vec<Digest>> {
        Ok(list_dir(&self.repo_dir(name)?.join("_layers/sha256"))?
            .iter()
            .filter_map(|h| Digest::from_hex(h).ok())
            .collect())
    }

    pub fn new_upload(&self, name: &str) -> Result<String> {
        let id = random_id();
        let path = self.upload_path(name, &id)?;
        if let Some(p) = path.parent() {
            fs::create_dir_all(p)?;
        }
        fs::File::create(&path)?;
        Ok(id)
    }

    pub fn upload_path(&self, name: &str, id: &str) -> Result<PathBuf> {
        if !is_valid_upload_id(id) {
            return Err(Error::BlobUploadUnknown);
        }
        Ok(self.repo_dir(name)?.join("_uploads").join(id))
    }

    /// Bytes received so far by upload `id` of `name`; `None` if there is no such session.
    pub fn upload_size(&self, name: &str, id: &str) -> Result<Option<u64>> {
        match fs::metadata(self.upload_path(name, id)?) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn delete_upload(&self, name: &str, id: &str) -> Result<bool> {
        remove_if_exists(&self.upload_path(name, id)?)
    }

    /// Upload sessions last written before `cutoff`: (repository, upload id). Found by walking
    /// the tree, since a repository whose first push was abandoned has only `_uploads`.
    pub fn uploads_older_than(&self, cutoff: SystemTime) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        walk_uploads(
            &self.root.join("repositories"),
            String::new(),
            cutoff,
            &mut out,
        )?;
        out.sort();
        Ok(out)
    }

    /// Staging files of writes a crash interrupted, last written before `cutoff`.
    pub fn remove_tmp_older_than(&self, cutoff: SystemTime) -> Result<()> {
        let dir = self.root.join("tmp");
        for n in list_dir(&dir)? {
            let p = dir.join(&n);
            if older_than(&p, cutoff) {
                remove_if_exists(&p)?;
            }
        }
        Ok(())
    }
}

fn older_than(p: &Path, cutoff: SystemTime) -> bool {
    fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t < cutoff)
}

fn walk_uploads(
    dir: &Path,
    prefix: String,
    cutoff: SystemTime,
    out: &mut Vec<(String, String)>,
) -> Result<()> {
    for n in list_dir(dir)? {
        let sub = dir.join(&n);
        if n == "_uploads" && !prefix.is_empty() {
            for id in list_dir(&sub)? {
                if is_valid_upload_id(&id) && older_than(&sub.join(&id), cutoff) {
                    out.push((prefix.clone(), id));
                }
            }
            continue;
        }
        if n.starts_with('_') || !sub.is_dir() {
            continue;
        }
        let name = if prefix.is_empty() {
            n.clone()
        } else {
            format!("{prefix}/{n}")
        };
        walk_uploads(&sub, name, cutoff, out)?;
    }
    Ok(())
}

/// 128 random bits in hex: upload ids and temp file names.
pub fn random_id() -> String {
    let v: u128 = rand::random();
    format!("{v:032x}")
}

fn remove_if_exists(p: &Path) -> Result<bool> {
    match fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// File names in `dir`; empty if it does not exist.
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for e in rd {
        if let Some(n) = e?.file_name().to_str() {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

fn walk_repos(dir: &Path, prefix: String, out: &mut Vec<String>) -> Result<()> {
    for n in list_dir(dir)? {
        // Storage's own directories start with `_`, which no name component can.
        if n.starts_with('_') || !dir.join(&n).is_dir() {
            continue;
        }
        let name = if prefix.is_empty() {
            n.clone()
        } else {
            format!("{prefix}/{n}")
        };
        let sub = dir.join(&n);
        if sub.join("_manifests").is_dir() || sub.join("_layers").is_dir() {
            out.push(name.clone());
        }
        walk_repos(&sub, name, out)?;
    }
    Ok(())
}
