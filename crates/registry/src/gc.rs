//! Garbage collection: mark every blob referenced by any manifest revision of any repository
//! (the manifests themselves, their configs and layers, the children of indexes), then sweep
//! the blobs nobody references, and the repository links to them.
//!
//! Upload sessions nobody touched for `upload_max_age` (an abandoned or crashed push; their
//! data would otherwise stay forever) and staging files as old go too, as distribution's upload
//! purging does (it defaults to a week).
//!
//! Like distribution's `garbage-collect`, it must not race pushes: run it with the registry
//! stopped or in `--read-only` mode, or a blob uploaded between mark and sweep whose manifest
//! is not yet pushed would be collected.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_types::Digest;

use crate::error::Result;
use crate::manifest;
use crate::storage::Storage;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs kept (referenced).
    pub marked: usize,
    /// Blobs removed, or that would be with `dry_run`.
    pub deleted: Vec<Digest>,
    /// Stale upload sessions removed (or that would be), as `<repository>/<upload id>`.
    pub stale_uploads: Vec<String>,
    pub dry_run: bool,
}

/// distribution's default age for purging uploads.
pub const DEFAULT_UPLOAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Only report.
    pub dry_run: bool,
    /// Upload sessions (and staging files) untouched for longer are removed; None keeps all.
    pub upload_max_age: Option<Duration>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            upload_max_age: Some(DEFAULT_UPLOAD_MAX_AGE),
        }
    }
}

pub fn gc(root: &Path, opts: &GcOptions) -> Result<GcReport> {
    let dry_run = opts.dry_run;
    let store = Storage::open(root)?;
    let mut marked: HashSet<Digest> = HashSet::new();
    let repos = store.repositories()?;
    for repo in &repos {
        for m in store.revisions(repo)? {
            // A revision whose content is gone (an earlier partial gc) keeps nothing.
            let Some((_, data)) = store.read_manifest(repo, &m)? else {
                continue;
            };
            marked.insert(m);
            marked.extend(manifest::references(&data));
        }
    }
    let mut report = GcReport {
        dry_run,
        ..Default::default()
    };
    let mut all = store.all_blobs()?;
    all.sort();
    for b in all {
        if marked.contains(&b) {
            report.marked += 1;
        } else {
            if !dry_run {
                store.remove_blob(&b)?;
            }
            report.deleted.push(b);
        }
    }
    if let Some(age) = opts.upload_max_age {
        // A clock set back makes everything "new": then nothing is purged, never too much.
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for (repo, id) in store.uploads_older_than(cutoff)? {
            if !dry_run {
                store.delete_upload(&repo, &id)?;
            }
            report.stale_uploads.push(format!("{repo}/{id}"));
        }
        if !dry_run {
            store.remove_tmp_older_than(cutoff)?;
        }
    }
    if !dry_run {
        for repo in &repos {
            for l in store.layer_links(repo)? {
                if store.blob_size(&l).is_none() {
                    store.unlink_blob(repo, &l)?;
                }
            }
        }
    }
    Ok(report)
}
