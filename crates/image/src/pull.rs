//! The store's side of registry pulls and pushes (the network side is `berth-distribution`).
//!
//! A pull is a [`PullSession`]: layers are streamed in (compressed bytes as they arrive from the
//! registry), hashed, decompressed and unpacked into their own overlay2 directory while they
//! download, several at a time from different threads. Nothing is visible in the store until
//! [`PullSession::commit`], which places the blobs and writes every row (layers, image, tag,
//! repo digest) in one transaction, exactly as `load` does; dropping a session without commit
//! removes everything it unpacked, and `open` removes what a crash left behind.
//!
//! For pushes the store hands out each layer's stored blob (the compressed bytes as pulled or
//! loaded) or, for layers stored uncompressed, the tar to compress.
//!
//! This is a child module of `store` so it can reuse the commit machinery without widening the
//! store's public API beyond what is here.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_types::digest::Hasher;
use berth_types::image_config::ImageConfig;
use berth_types::{Digest, Reference};
use rusqlite::OptionalExtension;

use super::{ImageStore, LayerGuard, NewImage, NewLayer, TempDir, get_layer, io_err, random_hex};
use crate::archive::SpooledFile;
use crate::layer::{self, Compression};
use crate::{Error, Result};

/// What the manifest and config say about one layer to pull.
#[derive(Debug, Clone)]
pub struct PullLayer {
    /// Digest of the blob as the registry serves it (usually gzip).
    pub blob: Digest,
    /// Size of that blob from the manifest.
    pub size: u64,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids[i]`).
    pub diff_id: Digest,
    /// Chain ID of the stack up to and including this layer.
    pub chain_id: Digest,
    /// Chain ID of the layer below, None for the first.
    pub parent: Option<Digest>,
}

/// One layer of an image about to be pushed.
#[derive(Debug, Clone)]
pub struct PushLayer {
    pub diff_id: Digest,
    /// Length of the uncompressed tar.
    pub tar_size: u64,
    /// The stored blob (digest, size, how it is compressed), if the original bytes are kept.
    pub blob: Option<(Digest, u64, Compression)>,
}

/// An uncommitted pull. `Sync`: layers may be added from several threads at once.
pub struct PullSession {
    store: Arc<ImageStore>,
    work: TempDir,
    layers: Mutex<Vec<NewLayer>>,
}

impl Drop for PullSession {
    fn drop(&mut self) {
        // Not committed (commit empties the list): remove what this session unpacked.
        let layers = std::mem::take(&mut *self.layers.lock().unwrap_or_else(|p| p.into_inner()));
        for l in layers {
            self.store.remove_layer_files(&l.cache_id, &l.link);
        }
    }
}

/// Tees the compressed stream into the blob spool file while counting and hashing it, and
/// refuses to read past the size the manifest promised.
struct Tee<'a> {
    inner: &'a mut dyn Read,
    file: File,
    hasher: Hasher,
    count: u64,
    limit: u64,
    progress: &'a mut dyn FnMut(u64),
    reported: u64,
    /// Bytes whose writeback was started (see `layer::start_writeback`).
    flushed: u64,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob is larger than the {} bytes announced", self.limit),
            ));
        }
        self.hasher.update(&buf[..n]);
        self.file.write_all(&buf[..n])?;
        if self.count - self.flushed >= layer::WRITEBACK_CHUNK {
            layer::start_writeback(&self.file, self.flushed, self.count - self.flushed);
            self.flushed = self.count;
        }
        // Progress callbacks per 512 KiB keep the message rate sane.
        if self.count - self.reported >= 512 * 1024 || (n == 0 && self.count != self.reported) {
            self.reported = self.count;
            (self.progress)(self.count);
        }
        Ok(n)
    }
}

impl ImageStore {
    /// Start a pull into this store.
    pub fn begin_pull(self: &Arc<Self>) -> Result<PullSession> {
        Ok(PullSession {
            store: Arc::clone(self),
            work: self.new_tmp_dir("pull")?,
            layers: Mutex::new(Vec::new()),
        })
    }

    /// Is the layer with this chain ID already unpacked here? (pull: "Already exists")
    pub fn has_layer(&self, chain_id: &Digest) -> Result<bool> {
        Ok(get_layer(&self.conn(), chain_id)?.is_some())
    }

    /// The layers of an image, bottom to top, with their stored blobs (for push).
    pub fn push_layers(&self, id: &Digest) -> Result<Vec<PushLayer>> {
        let rows = self.layer_rows(id)?;
        let conn = self.conn();
        let mut out = Vec::with_capacity(rows.len());
        for l in rows {
            let compression: String = conn
                .query_row(
                    "SELECT tar_compression FROM layers WHERE chain_id = ?1",
                    [l.chain_id.to_string()],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or_default();
            let blob = match &l.tar_blob {
                Some(hex) => match std::fs::metadata(self.blob_path(hex)) {
                    Ok(md) => Digest::from_hex(hex)
                        .ok()
                        .map(|d| (d, md.len(), Compression::parse(&compression))),
                    Err(_) => None,
                },
                None => None,
            };
            out.push(PushLayer {
                diff_id: l.diff_id,
                tar_size: l.tar_size,
                blob,
            });
        }
        Ok(out)
    }

    /// Path of a stored blob (layer blobs from [`ImageStore::push_layers`], configs by image ID).
    /// Readers must verify the digest: the file may be damaged on disk.
    pub fn blob_file(&self, digest: &Digest) -> Result<PathBuf> {
        let p = self.blob_path(digest.hex());
        if p.exists() {
            Ok(p)
        } else {
            Err(Error::NotFound(format!("blob {digest}")))
        }
    }

    /// The uncompressed tar of one layer of an image (regenerated from the unpacked files when
    /// the original is gone and that reproduces the diff ID), verified against the diff ID by
    /// the caller while reading.
    pub fn layer_tar(&self, image: &Digest, diff_id: &Digest) -> Result<LayerTar> {
        let rows = self.layer_rows(image)?;
        let row = rows
            .iter()
            .find(|l| &l.diff_id == diff_id)
            .ok_or_else(|| Error::NotFound(format!("layer {diff_id} of {image}")))?;
        let (reader, keep) = self.layer_tar_reader(row)?;
        Ok(LayerTar {
            reader,
            _keep: keep,
        })
    }
}

/// A layer's uncompressed tar stream (keeps a regenerated temp file alive while reading).
pub struct LayerTar {
    reader: Box<dyn Read>,
    _keep: Option<TempDir>,
}

impl Read for LayerTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl PullSession {
    /// Stream one layer blob in: spool the bytes as received, hash them, decompress (gzip, zstd
    /// or plain) and unpack into a new overlay2 directory as they arrive. Fails with
    /// `DigestMismatch` if the blob's digest or size, or the tar's diff ID, is not what the
    /// manifest and config say. `progress` gets the compressed bytes consumed so far.
    pub fn add_layer(
        &self,
        spec: &PullLayer,
        input: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let store = &self.store;
        let raw_path = self.work.0.join(format!("blob-{}", random_hex(8)));
        let file = File::create(&raw_path).map_err(io_err("creating blob spool file"))?;
        let mut tee = Tee {
            inner: input,
            file,
            hasher: Hasher::new(),
            count: 0,
            limit: spec.size,
            progress,
            reported: 0,
            flushed: 0,
        };
        let super::PendingLayerDir {
            cache_id,
            link,
            tmp,
            guard: tmp_guard,
            diff: diff_dir,
        } = store.pending_layer_dir()?;
        let unpacked = layer::unpack_layer(&mut tee, &diff_dir, &mut |_| {});
        // Whatever the unpacker left unread (padding, a trailer) is part of the blob's digest.
        let drained = io::copy(&mut tee, &mut io::sink());
        let count = tee.count;
        let blob_digest = std::mem::take(&mut tee.hasher).finish();
        let mut file = tee.file;
        // Digest and size first: a corrupt blob shows up as a tar or gzip error too, and the
        // digest error is the one that explains it.
        if drained.is_ok() && (blob_digest != spec.blob || count != spec.size) {
            return Err(Error::DigestMismatch {
                what: format!("blob {} (size {} of {} bytes)", spec.blob, count, spec.size),
                expected: spec.blob.to_string(),
                actual: blob_digest.to_string(),
            });
        }
        drained.map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => Error::InvalidArchive(format!("blob {}: {e}", spec.blob)),
            _ => Error::io(format!("reading blob {}", spec.blob), e),
        })?;
        let stats = unpacked?;
        if stats.diff_id != spec.diff_id {
            return Err(Error::DigestMismatch {
                what: format!("layer {} (uncompressed)", spec.blob),
                expected: spec.diff_id.to_string(),
                actual: stats.diff_id.to_string(),
            });
        }
        file.flush().map_err(io_err("writing blob spool file"))?;
        drop(file);
        std::fs::write(tmp.join("link"), &link).map_err(io_err("writing layer link"))?;
        let final_dir = store.overlay.join(&cache_id);
        std::fs::rename(&tmp, &final_dir).map_err(io_err("renaming layer directory"))?;
        std::mem::forget(tmp_guard);
        let nl = NewLayer {
            chain_id: spec.chain_id.clone(),
            diff_id: stats.diff_id,
            parent: spec.parent.clone(),
            cache_id: cache_id.clone(),
            link: link.clone(),
            size: stats.size,
            tar_size: stats.tar_size,
            compression: stats.compression,
            raw: SpooledFile {
                path: raw_path,
                digest: blob_digest,
                size: count,
            },
        };
        // Registered before the link exists so a failure below still cleans the directory.
        self.layers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(nl);
        std::os::unix::fs::symlink(
            Path::new("..").join(&cache_id).join("diff"),
            store.overlay.join("l").join(&link),
        )
        .map_err(io_err("creating layer link"))?;
        Ok(())
    }

    /// Make the pull visible: blobs placed, then layers, image and `refs` (tags and
    /// `name@sha256:` repo digests) in one transaction. `config_bytes` must be verified by the
    /// caller against the manifest; every diff ID it lists must have been added to this session
    /// or exist in the store. Returns the image ID.
    pub fn commit(self, config_bytes: &[u8], refs: &[Reference]) -> Result<Digest> {
        let config: ImageConfig = serde_json::from_slice(config_bytes)
            .map_err(|e| Error::InvalidArchive(format!("invalid image config: {e}")))?;
        let chains = super::chain_ids(&config.rootfs.diff_ids);
        let mut layers =
            std::mem::take(&mut *self.layers.lock().unwrap_or_else(|p| p.into_inner()));
        // Layers finish in any order; rows must go in bottom-up (a row's parent must exist).
        layers.sort_by_key(|l| chains.iter().position(|c| c == &l.chain_id));
        for (i, c) in chains.iter().enumerate() {
            if !layers.iter().any(|l| &l.chain_id == c) && !self.store.has_layer(c)? {
                // Put the unpacked layers back so Drop cleans them.
                *self.layers.lock().unwrap_or_else(|p| p.into_inner()) = layers;
                return Err(Error::InvalidArgument(format!(
                    "layer {} of the image was not pulled",
                    config.rootfs.diff_ids[i]
                )));
            }
        }
        let guard = LayerGuard {
            store: &self.store,
            layers: layers
                .iter()
                .map(|l| (l.cache_id.clone(), l.link.clone()))
                .collect(),
        };
        let id = Digest::of(config_bytes);
        let image = NewImage {
            id: id.clone(),
            config_bytes: config_bytes.to_vec(),
            top_layer: chains.last().cloned(),
            parent: None,
            tags: refs.to_vec(),
        };
        self.store.commit(layers, &[image], guard)?;
        Ok(id)
    }
}
