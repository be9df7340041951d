//! Garbage collection: mark every blob referenced by any manifest revision of any repository
//! (the manifests themselves, their configs and layers, the children of indexes), then sweep
//! the blobs nobody references, and the repository links to them.
//!
//! Like distribution's `garbage-collect`, it must not race pushes: run it with the registry
//! stopped or in `--read-only` mode, or a blob uploaded between mark and sweep whose manifest
//! is not yet pushed would be collected.

use std::collections::HashSet;
use std::path::Path;

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
    pub dry_run: bool,
}

pub fn gc(root: &Path, dry_run: bool) -> Result<GcReport> {
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
