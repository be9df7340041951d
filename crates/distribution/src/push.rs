//! `docker push`: blobs (skip existing, mount from sibling repositories, else upload), then the
//! manifest, then the repo digest in the store.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use berth_image::layer::Compression;
use berth_image::{ImageStore, PushLayer};
use berth_types::digest::Hasher;
use berth_types::{Digest, Reference};
use futures_util::StreamExt;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::client::{Client, RegistryConfig, api_host, error_text};
use crate::manifest::{self, Descriptor, ImageManifest};
use crate::{Credentials, Error, PushProgress, Result, scope};

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub registry: RegistryConfig,
    /// Credentials sent with the request (X-Registry-Auth); None: docker config lookup.
    pub credentials: Option<Credentials>,
}

/// What one layer upload needs.
struct LayerCtx<'a> {
    store: &'a Arc<ImageStore>,
    image: &'a Digest,
    client: &'a Client,
    repo: &'a str,
    scopes: &'a [String],
    work: &'a std::path::Path,
    events: mpsc::UnboundedSender<PushProgress>,
}

impl LayerCtx<'_> {
    async fn push_layer(&self, l: &PushLayer, from: &[String]) -> Result<Descriptor> {
        let id = l.diff_id.short().to_owned();
        let blob = match &l.blob {
            // The bytes as pulled or loaded: the blob the registry most likely has already.
            Some((d, size, c)) if *c != Compression::None => Blob {
                digest: d.clone(),
                size: *size,
                media_type: if *c == Compression::Zstd {
                    manifest::OCI_LAYER_ZSTD
                } else {
                    manifest::DOCKER_LAYER_GZIP
                },
                path: self.store.blob_file(d)?,
            },
            _ => {
                let store = Arc::clone(self.store);
                let img = self.image.clone();
                let diff = l.diff_id.clone();
                let out = self.work.join(diff.hex());
                tokio::task::spawn_blocking(move || gzip_layer(&store, &img, &diff, out))
                    .await
                    .map_err(|e| Error::Registry(format!("compress task failed: {e}")))??
            }
        };
        let outcome = upload_blob(
            self.client,
            self.repo,
            self.scopes,
            &blob,
            from,
            &id,
            &self.events,
        )
        .await?;
        let _ = self.events.send(match outcome {
            Uploaded::Exists => PushProgress::LayerAlreadyExists { id },
            Uploaded::Mounted(from) => PushProgress::MountedFrom { id, from },
            Uploaded::Pushed => PushProgress::Pushed { id },
        });
        Ok(Descriptor {
            media_type: blob.media_type.to_owned(),
            size: blob.size,
            digest: blob.digest.to_string(),
            platform: None,
            urls: Vec::new(),
        })
    }
}

/// Where a layer's upload bytes come from.
struct Blob {
    digest: Digest,
    size: u64,
    media_type: &'static str,
    path: PathBuf,
}

/// Push the image `reference` points at (a tag; a bare name means `:latest`) to its registry.
/// Returns the manifest digest, also recorded in the store as `name@digest`.
pub async fn push(
    store: &Arc<ImageStore>,
    reference: &Reference,
    opts: &PushOptions,
    mut progress: impl FnMut(PushProgress),
) -> Result<Digest> {
    if reference.digest.is_some() {
        return Err(Error::Unsupported(
            "cannot push a digest reference; push a tag".into(),
        ));
    }
    let reference = match &reference.tag {
        Some(_) => reference.clone(),
        None => reference.with_tag(berth_types::reference::DEFAULT_TAG),
    };
    let tag = reference
        .tag
        .clone()
        .unwrap_or_else(|| berth_types::reference::DEFAULT_TAG.into());
    let repo = reference.path.clone();
    let image = store.lookup(&reference.to_string())?;
    progress(PushProgress::RefersTo {
        repository: reference.name(),
    });
    let layers = store.push_layers(&image.id)?;

    // Sibling repositories on the same registry known to hold a layer: mount sources.
    let mut sources: Vec<(Digest, BTreeSet<String>)> = Vec::new();
    for img in store.list()? {
        for r in img.repo_tags.iter().chain(img.repo_digests.iter()) {
            if r.domain == reference.domain && r.path != repo {
                for d in &img.layers {
                    match sources.iter_mut().find(|(x, _)| x == d) {
                        Some((_, s)) => {
                            s.insert(r.path.clone());
                        }
                        None => sources.push((d.clone(), BTreeSet::from([r.path.clone()]))),
                    }
                }
            }
        }
    }
    let mut scopes = vec![scope(&repo, "pull,push")];
    let froms: BTreeSet<&String> = sources.iter().flat_map(|(_, s)| s.iter()).collect();
    scopes.extend(froms.iter().map(|f| scope(f, "pull")));

    let creds = match &opts.credentials {
        Some(c) => Some(c.clone()),
        None => opts.registry.credentials_for(&reference.domain)?,
    };
    let client = Client::connect(&opts.registry, api_host(&reference.domain), creds).await?;

    let work = tempfile::tempdir().map_err(|e| Error::io("creating a temp dir", e))?;
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<PushProgress>();
    // Built eagerly (async blocks do nothing until polled) so `ev_tx` can be dropped below.
    // The same layer twice in one image is uploaded once (two concurrent uploads of one blob
    // race inside the registry).
    let mut unique: Vec<&PushLayer> = Vec::new();
    for l in &layers {
        if !unique.iter().any(|u| u.diff_id == l.diff_id) {
            unique.push(l);
        }
    }
    for l in unique.iter().rev() {
        progress(PushProgress::Preparing {
            id: l.diff_id.short().to_owned(),
        });
    }
    let concurrency = opts.registry.max_concurrent_uploads.max(1);
    for l in unique.iter().rev().skip(concurrency) {
        progress(PushProgress::Waiting {
            id: l.diff_id.short().to_owned(),
        });
    }
    let futs: Vec<_> = unique
        .iter()
        .map(|l| {
            let ctx = LayerCtx {
                store,
                image: &image.id,
                client: &client,
                repo: &repo,
                scopes: &scopes,
                work: work.path(),
                events: ev_tx.clone(),
            };
            let from: Vec<String> = sources
                .iter()
                .find(|(d, _)| d == &l.diff_id)
                .map(|(_, s)| s.iter().cloned().collect())
                .unwrap_or_default();
            async move { ctx.push_layer(l, &from).await }
        })
        .collect();
    let jobs = futures_util::stream::iter(futs)
        .buffered(concurrency)
        .collect::<Vec<Result<Descriptor>>>();
    drop(ev_tx);
    tokio::pin!(jobs);
    let results = loop {
        tokio::select! {
            r = &mut jobs => break r,
            Some(ev) = ev_rx.recv() => progress(ev),
        }
    };
    while let Ok(ev) = ev_rx.try_recv() {
        progress(ev);
    }
    let done = results.into_iter().collect::<Result<Vec<Descriptor>>>()?;
    let mut descs = Vec::with_capacity(layers.len());
    for l in &layers {
        let i = unique
            .iter()
            .position(|u| u.diff_id == l.diff_id)
            .ok_or_else(|| Error::Registry("internal error: layer lost".into()))?;
        descs.push(done[i].clone());
    }
    let any_zstd = descs
        .iter()
        .any(|d| d.media_type == manifest::OCI_LAYER_ZSTD);
    if any_zstd {
        // No Docker media type for zstd: the whole manifest becomes OCI.
        for d in &mut descs {
            if d.media_type == manifest::DOCKER_LAYER_GZIP {
                d.media_type = manifest::OCI_LAYER_GZIP.into();
            }
        }
    }

    let config_bytes = store.config_bytes(&image.id)?;
    let config_path = work.path().join("config");
    std::fs::write(&config_path, &config_bytes).map_err(|e| Error::io("writing temp config", e))?;
    let config_blob = Blob {
        digest: image.id.clone(),
        size: config_bytes.len() as u64,
        media_type: if any_zstd {
            manifest::OCI_CONFIG
        } else {
            manifest::DOCKER_CONFIG
        },
        path: config_path,
    };
    let (cfg_tx, _cfg_rx) = mpsc::unbounded_channel();
    upload_blob(&client, &repo, &scopes, &config_blob, &[], "", &cfg_tx).await?;

    let m = ImageManifest {
        schema_version: 2,
        media_type: if any_zstd {
            manifest::OCI_MANIFEST.into()
        } else {
            manifest::DOCKER_MANIFEST.into()
        },
        config: Descriptor {
            media_type: config_blob.media_type.into(),
            size: config_blob.size,
            digest: image.id.to_string(),
            platform: None,
            urls: Vec::new(),
        },
        layers: descs,
    };
    // Docker writes manifests indented with three spaces; matching it keeps digests familiar.
    let mut body = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut body,
        serde_json::ser::PrettyFormatter::with_indent(b"   "),
    );
    m.serialize(&mut ser)
        .map_err(|e| Error::Registry(format!("encoding manifest: {e}")))?;
    let digest = Digest::of(&body);
    let url_path = format!("/v2/{repo}/manifests/{tag}");
    let mt = m.media_type.clone();
    let resp = client
        .send(&scopes, |c, base| {
            c.put(format!("{base}{url_path}"))
                .header(header::CONTENT_TYPE, mt.clone())
                .body(body.clone())
        })
        .await?;
    if !resp.status().is_success() {
        return Err(push_error(&reference, resp).await);
    }
    if let Some(h) = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        && h != digest.to_string()
    {
        return Err(Error::DigestMismatch {
            what: "pushed manifest".into(),
            expected: digest.to_string(),
            actual: h.to_owned(),
        });
    }
    store.add_repo_digest(&image.id, &reference.with_digest(&digest))?;
    progress(PushProgress::Done {
        tag,
        digest: digest.clone(),
        size: body.len() as u64,
    });
    Ok(digest)
}

async fn push_error(reference: &Reference, resp: reqwest::Response) -> Error {
    let status = resp.status();
    let text = error_text(resp).await;
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized(text),
        StatusCode::NOT_FOUND => Error::NotFound(format!("{}: {text}", reference.familiar())),
        _ => Error::Registry(text),
    }
}

/// gzip a layer stored uncompressed, verifying its diff ID on the way.
fn gzip_layer(store: &ImageStore, image: &Digest, diff: &Digest, out: PathBuf) -> Result<Blob> {
    let mut tar = store.layer_tar(image, diff)?;
    let file = std::fs::File::create(&out).map_err(|e| Error::io("creating temp layer", e))?;
    let mut hw = HashWriter {
        inner: io::BufWriter::new(file),
        hasher: Hasher::new(),
        count: 0,
    };
    let mut tar_hash = Hasher::new();
    {
        // Level 1: on 2 cores compression is the push bottleneck; ~10% bigger blobs for several
        // times the speed (incompressible data costs as much CPU as text at higher levels).
        let mut gz = flate2::write::GzEncoder::new(&mut hw, flate2::Compression::fast());
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = tar
                .read(&mut buf)
                .map_err(|e| Error::io(format!("reading layer {diff}"), e))?;
            if n == 0 {
                break;
            }
            tar_hash.update(&buf[..n]);
            gz.write_all(&buf[..n])
                .map_err(|e| Error::io("compressing layer", e))?;
        }
        gz.finish().map_err(|e| Error::io("compressing layer", e))?;
    }
    let actual = tar_hash.finish();
    if &actual != diff {
        return Err(Error::DigestMismatch {
            what: format!("stored layer {diff}"),
            expected: diff.to_string(),
            actual: actual.to_string(),
        });
    }
    hw.inner
        .flush()
        .map_err(|e| Error::io("writing temp layer", e))?;
    Ok(Blob {
        digest: hw.hasher.finish(),
        size: hw.count,
        media_type: manifest::DOCKER_LAYER_GZIP,
        path: out,
    })
}

struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Uploaded {
    Exists,
    Mounted(String),
    Pushed,
}

/// HEAD, then mount from a sibling repository, then a monolithic upload (POST + streamed PUT).
async fn upload_blob(
    client: &Client,
    repo: &str,
    scopes: &[String],
    blob: &Blob,
    from: &[String],
    id: &str,
    events: &mpsc::UnboundedSender<PushProgress>,
) -> Result<Uploaded> {
    let digest = blob.digest.to_string();
    if client.blob_exists(repo, &digest, scopes).await? {
        return Ok(Uploaded::Exists);
    }
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    let mut location = None;
    for f in from {
        let resp = client
            .send(scopes, |c, base| {
                c.post(format!("{base}{uploads}"))
                    .query(&[("mount", digest.as_str()), ("from", f.as_str())])
                    .header(header::CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => return Ok(Uploaded::Mounted(f.clone())),
            // The registry could not mount: it opened a normal upload session instead.
            StatusCode::ACCEPTED => {
                location = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                break;
            }
            _ => {}
        }
    }
    let location = match location {
        Some(l) => l,
        None => {
            let resp = client
                .send(scopes, |c, base| {
                    c.post(format!("{base}{uploads}"))
                        .header(header::CONTENT_LENGTH, "0")
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                let status = resp.status();
                let text = error_text(resp).await;
                return Err(match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized(text),
                    _ => Error::Registry(format!("starting upload of {digest}: {text}")),
                });
            }
            resp.headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| Error::Registry("upload session without a Location".into()))?
        }
    };
    let mut url = client.absolute(&location);
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("digest=");
    url.push_str(&digest);

    let file = tokio::fs::File::open(&blob.path)
        .await
        .map_err(|e| Error::io(format!("opening {}", blob.path.display()), e))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let mut sent = 0u64;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |c| {
        if let Ok(b) = &c {
            sent += b.len() as u64;
            let _ = tx.send(sent);
        }
        c
    });
    let mut req = client
        .request(Method::PUT, &url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, HeaderValue::from(blob.size))
        .body(reqwest::Body::wrap_stream(stream));
    if let Some(a) = client.authorization_header(scopes).await? {
        req = req.header(header::AUTHORIZATION, a);
    }
    let put = req.send();
    tokio::pin!(put);
    let total = blob.size;
    let mut last = 0u64;
    let resp = loop {
        tokio::select! {
            r = &mut put => break r,
            Some(n) = rx.recv() => {
                if !id.is_empty() && (n - last >= (total / 50).max(512 * 1024) || n == total) {
                    last = n;
                    let _ = events.send(PushProgress::Pushing { id: id.to_owned(), current: n, total });
                }
            }
        }
    };
    let resp = match resp {
        Ok(r) => r,
        // The registry may answer (and close) before reading the whole body when the blob
        // appeared meanwhile (another client pushing it): then it is there, which is success.
        Err(e) => {
            if client
                .blob_exists(repo, &digest, scopes)
                .await
                .unwrap_or(false)
            {
                return Ok(Uploaded::Pushed);
            }
            return Err(Error::http(format!("uploading blob {digest}"), e));
        }
    };
    if resp.status() != StatusCode::CREATED {
        let status = resp.status();
        let text = error_text(resp).await;
        return Err(match status {
            StatusCode::BAD_REQUEST if text.contains("digest") => Error::DigestMismatch {
                what: format!("uploaded blob ({text})"),
                expected: digest,
                actual: "a different digest on the registry".into(),
            },
            _ => Error::Registry(format!("uploading blob {digest}: {text}")),
        });
    }
    Ok(Uploaded::Pushed)
}
