//! `docker pull`: resolve the manifest, fetch the config, then stream the layers into the store.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_image::{ImageStore, PullLayer, PullSession};
use berth_types::image_config::ImageConfig;
use berth_types::{Digest, Reference};
use bytes::Bytes;
use reqwest::StatusCode;
use tokio::sync::{Semaphore, mpsc};

use crate::client::{Client, RegistryConfig, api_host, error_text, read_limited};
use crate::manifest::{self, ImageManifest, Manifest, Platform};
use crate::{Credentials, Error, PullProgress, Result, scope};

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// `--platform`; None: the host's (linux/amd64 here).
    pub platform: Option<Platform>,
    pub registry: RegistryConfig,
    /// Credentials sent with the request (the API's X-Registry-Auth); None: look them up in
    /// the docker config / credential helpers.
    pub credentials: Option<Credentials>,
    /// Attempts after the first for a broken blob download (each resumes with Range).
    pub retries: u32,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            registry: RegistryConfig::default(),
            credentials: None,
            retries: 5,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    /// The image ID (config digest).
    pub id: Digest,
    /// The digest of the manifest (or index) the reference resolved to: the repo digest.
    pub manifest_digest: Digest,
    /// False when the reference already pointed at this image ("Image is up to date").
    pub updated: bool,
}

fn short(d: &Digest) -> String {
    d.short().to_owned()
}

/// Transport failures are worth retrying; answers from the registry are not.
fn transient(e: &Error) -> bool {
    matches!(e, Error::Http { .. })
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(4)).min(4000))
}

/// Pull `reference` (tagged or by digest; a bare name means `:latest`) into `store`.
/// Progress is reported as Docker does; on any error nothing of this pull is in the store.
pub async fn pull(
    store: &Arc<ImageStore>,
    reference: &Reference,
    opts: &PullOptions,
    mut progress: impl FnMut(PullProgress),
) -> Result<PullResult> {
    let mut reference = reference.clone();
    if reference.is_name_only() {
        reference = reference.with_tag(berth_types::reference::DEFAULT_TAG);
    }
    let repo = reference.path.clone();
    let tag_or_digest = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => berth_types::reference::DEFAULT_TAG.to_owned(),
    };
    progress(PullProgress::PullingFrom {
        repository: repo.clone(),
        tag: tag_or_digest.clone(),
    });
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    let scopes = vec![scope(&repo, "pull")];

    let (client, top_digest, image_manifest) =
        resolve(&reference, &tag_or_digest, opts, &want, &scopes).await?;
    let client = Arc::new(client);

    // Config: small, fetched whole and verified before anything else.
    let config_digest: Digest = image_manifest.config.digest.parse().map_err(|_| {
        Error::Unsupported(format!(
            "invalid config digest {}",
            image_manifest.config.digest
        ))
    })?;
    let cmt = image_manifest.config.media_type.as_str();
    if !matches!(cmt, manifest::DOCKER_CONFIG | manifest::OCI_CONFIG | "") {
        // An artifact (Helm chart, signature, ...) stored in a registry, not a container image.
        return Err(Error::Unsupported(format!(
            "{} is not a container image: unsupported config media type {cmt}",
            reference.familiar()
        )));
    }
    if image_manifest.config.size > manifest::MAX_CONFIG {
        return Err(Error::Unsupported(format!(
            "image config of {} bytes is too large",
            image_manifest.config.size
        )));
    }
    let config_bytes = fetch_small_blob(
        &client,
        &repo,
        &config_digest,
        image_manifest.config.size,
        &scopes,
        opts.retries,
    )
    .await?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::Unsupported(format!("invalid image config {config_digest}: {e}")))?;
    if let Some(p) = &opts.platform {
        let got = Platform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            variant: config.variant.clone(),
            os_version: None,
        };
        if !p.matches(&got) {
            return Err(Error::NotFound(format!(
                "image with reference {} was found but does not match the specified platform: wanted {p}, actual: {got}",
                reference.familiar()
            )));
        }
    }
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != image_manifest.layers.len() {
        return Err(Error::Unsupported(format!(
            "layers from manifest don't match image configuration ({} layers, {} diff IDs)",
            image_manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let chains = berth_image::chain_ids(diff_ids);
    let mut specs = Vec::new();
    for (i, l) in image_manifest.layers.iter().enumerate() {
        if !manifest::is_layer_type(&l.media_type) {
            return Err(Error::Unsupported(format!(
                "unsupported layer media type {} in {}",
                l.media_type,
                reference.familiar()
            )));
        }
        let blob: Digest = l
            .digest
            .parse()
            .map_err(|_| Error::Unsupported(format!("invalid layer digest {}", l.digest)))?;
        specs.push(PullLayer {
            blob,
            size: l.size,
            diff_id: diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            parent: (i > 0).then(|| chains[i - 1].clone()),
        });
    }

    let session = Arc::new(store.begin_pull()?);
    let mut todo = Vec::new();
    for s in &specs {
        if store.has_layer(&s.chain_id)? {
            progress(PullProgress::AlreadyExists { id: short(&s.blob) });
        } else {
            progress(PullProgress::PullingFsLayer { id: short(&s.blob) });
            todo.push(s.clone());
        }
    }
    fetch_layers(&client, &repo, &scopes, &session, todo, opts, &mut progress).await?;

    let previous = store.lookup(&reference.to_string()).ok().map(|i| i.id);
    let manifest_ref = reference.with_digest(&top_digest);
    let mut refs = vec![manifest_ref];
    if reference.digest.is_none() {
        refs.push(reference.clone());
    }
    let session = Arc::try_unwrap(session)
        .map_err(|_| Error::Registry("internal error: a layer task outlived the pull".into()))?;
    let id = tokio::task::spawn_blocking(move || session.commit(&config_bytes, &refs))
        .await
        .map_err(|e| Error::Registry(format!("commit task failed: {e}")))??;
    progress(PullProgress::Digest(top_digest.clone()));
    let updated = previous.as_ref() != Some(&id);
    let name = reference.familiar();
    progress(PullProgress::Status(if updated {
        format!("Downloaded newer image for {name}")
    } else {
        format!("Image is up to date for {name}")
    }));
    Ok(PullResult {
        id,
        manifest_digest: top_digest,
        updated,
    })
}

/// The endpoints to try for a domain: mirrors (Docker Hub only), then the registry itself.
fn endpoints(domain: &str, cfg: &RegistryConfig) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    if domain == berth_types::reference::DEFAULT_DOMAIN {
        out.extend(cfg.mirrors.iter().map(|m| (m.clone(), true)));
    }
    out.push((api_host(domain).to_owned(), false));
    out
}

/// Find the image manifest: (client that served it, repo digest, manifest for the platform).
async fn resolve(
    reference: &Reference,
    tag_or_digest: &str,
    opts: &PullOptions,
    want: &Platform,
    scopes: &[String],
) -> Result<(Client, Digest, ImageManifest)> {
    let creds = match &opts.credentials {
        Some(c) => Some(c.clone()),
        None => opts.registry.credentials_for(&reference.domain)?,
    };
    let repo = &reference.path;
    let name = reference.familiar();
    let mut last: Option<Error> = None;
    for (endpoint, is_mirror) in endpoints(&reference.domain, &opts.registry) {
        // Hub credentials are not sent to mirrors.
        let c = if is_mirror { None } else { creds.clone() };
        let client = match Client::connect(&opts.registry, &endpoint, c).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%endpoint, error = %e, "registry endpoint unusable");
                last = Some(e);
                continue;
            }
        };
        match fetch_manifest(&client, repo, tag_or_digest, reference, scopes).await {
            Ok((digest, Manifest::Image(m))) => return Ok((client, digest, *m)),
            Ok((digest, Manifest::Index(idx))) => {
                let Some(d) = manifest::select(&idx, want) else {
                    return Err(Error::NotFound(format!(
                        "no matching manifest for {want} in the manifest list entries"
                    )));
                };
                let child = fetch_manifest(&client, repo, &d.digest, reference, scopes).await?;
                match child.1 {
                    Manifest::Image(m) => return Ok((client, digest, *m)),
                    Manifest::Index(_) => {
                        return Err(Error::Unsupported(format!(
                            "manifest list entry {} of {name} is itself a list",
                            d.digest
                        )));
                    }
                }
            }
            Err(e) if is_mirror => {
                tracing::debug!(%endpoint, error = %e, "mirror failed, trying next");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Registry("no registry endpoint".into())))
}

/// GET a manifest by tag or digest; verifies the digest when asked by digest.
async fn fetch_manifest(
    client: &Client,
    repo: &str,
    want: &str,
    reference: &Reference,
    scopes: &[String],
) -> Result<(Digest, Manifest)> {
    let name = reference.familiar();
    let (status, ct, body) = client.get_manifest(repo, want, scopes).await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body).into_owned();
        return Err(match status {
            StatusCode::NOT_FOUND => {
                Error::NotFound(format!("manifest for {name} not found: {text}"))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login': {text}",
                reference.familiar_name()
            )),
            _ => Error::Registry(format!("fetching manifest for {name}: {text}")),
        });
    }
    let digest = Digest::of(&body);
    if let Ok(expected) = want.parse::<Digest>()
        && expected != digest
    {
        return Err(Error::DigestMismatch {
            what: format!("manifest of {name}"),
            expected: expected.to_string(),
            actual: digest.to_string(),
        });
    }
    let m = manifest::parse(ct.as_deref(), &body, &reference.name())?;
    Ok((digest, m))
}

/// A whole small blob (the config), verified.
async fn fetch_small_blob(
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    scopes: &[String],
    retries: u32,
) -> Result<Vec<u8>> {
    let mut attempt = 0;
    loop {
        let res = async {
            let resp = client
                .get_blob(repo, &digest.to_string(), 0, scopes)
                .await?;
            if !resp.status().is_success() {
                return Err(Error::Registry(format!(
                    "fetching blob {digest}: {}",
                    error_text(resp).await
                )));
            }
            read_limited(resp, (size as usize).max(1) + 1, "image config").await
        }
        .await;
        match res {
            Ok(b) => {
                let actual = Digest::of(&b);
                if actual != *digest || b.len() as u64 != size {
                    return Err(Error::DigestMismatch {
                        what: format!("blob {digest} ({} of {size} bytes)", b.len()),
                        expected: digest.to_string(),
                        actual: actual.to_string(),
                    });
                }
                return Ok(b.to_vec());
            }
            Err(e) if transient(&e) && attempt < retries => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Download and unpack `layers` concurrently; returns the first error after every task stopped
/// (so nothing is still writing when the session is dropped).
async fn fetch_layers(
    client: &Arc<Client>,
    repo: &str,
    scopes: &[String],
    session: &Arc<PullSession>,
    layers: Vec<PullLayer>,
    opts: &PullOptions,
    progress: &mut impl FnMut(PullProgress),
) -> Result<()> {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<PullProgress>();
    let sem = Arc::new(Semaphore::new(
        opts.registry.max_concurrent_downloads.max(1),
    ));
    let cancel = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for spec in layers {
        let job = LayerJob {
            client: Arc::clone(client),
            repo: repo.to_owned(),
            scopes: scopes.to_vec(),
            session: Arc::clone(session),
            spec,
            events: ev_tx.clone(),
            cancel: Arc::clone(&cancel),
            retries: opts.retries,
        };
        let sem = Arc::clone(&sem);
        tasks.spawn(async move {
            let _permit = match Arc::clone(&sem).try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    let _ = job.events.send(PullProgress::Waiting {
                        id: short(&job.spec.blob),
                    });
                    sem.acquire_owned()
                        .await
                        .map_err(|_| Error::Registry("pull cancelled".into()))?
                }
            };
            job.run().await
        });
    }
    drop(ev_tx);
    let mut first: Option<Error> = None;
    loop {
        tokio::select! {
            Some(ev) = ev_rx.recv() => progress(ev),
            res = tasks.join_next() => match res {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    cancel.store(true, Ordering::SeqCst);
                    // The cancellation message of the other layers is not the story.
                    if first.is_none() || matches!(first, Some(Error::Registry(ref m)) if m == "pull cancelled") {
                        first = Some(e);
                    }
                }
                Some(Err(join)) => {
                    cancel.store(true, Ordering::SeqCst);
                    first.get_or_insert(Error::Registry(format!("layer task failed: {join}")));
                }
            }
        }
    }
    while let Ok(ev) = ev_rx.try_recv() {
        progress(ev);
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct LayerJob {
    client: Arc<Client>,
    repo: String,
    scopes: Vec<String>,
    session: Arc<PullSession>,
    spec: PullLayer,
    events: mpsc::UnboundedSender<PullProgress>,
    cancel: Arc<AtomicBool>,
    retries: u32,
}

/// The blocking unpacker's view of the download: chunks from a channel.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

impl LayerJob {
    fn ev(&self, p: PullProgress) {
        let _ = self.events.send(p);
    }

    async fn run(self) -> Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Error::Registry("pull cancelled".into()));
        }
        let id = short(&self.spec.blob);
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(64);
        let session = Arc::clone(&self.session);
        let spec = self.spec.clone();
        let unpack = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                rx,
                cur: Bytes::new(),
            };
            session.add_layer(&spec, &mut reader, &mut |_| {})
        });
        let dl = self.download(tx).await;
        let unpacked = unpack.await;
        dl?;
        match unpacked {
            Ok(Ok(())) => {
                self.ev(PullProgress::Extracting {
                    id: id.clone(),
                    current: self.spec.size,
                    total: self.spec.size,
                });
                self.ev(PullProgress::PullComplete { id });
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(Error::Registry(format!("unpack task failed: {e}"))),
        }
    }

    /// Stream the blob into `tx`, resuming with Range after a broken transfer. On failure the
    /// unpacker gets an error item (so it stops) and the error is returned.
    async fn download(&self, tx: mpsc::Sender<io::Result<Bytes>>) -> Result<()> {
        let id = short(&self.spec.blob);
        let digest = self.spec.blob.to_string();
        let total = self.spec.size;
        let mut got = 0u64;
        let mut attempt = 0u32;
        let mut reported = 0u64;
        let fail = |e: Error| async {
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
            Err(e)
        };
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return fail(Error::Registry("pull cancelled".into())).await;
            }
            let start = got;
            let resp = match self
                .client
                .get_blob(&self.repo, &digest, got, &self.scopes)
                .await
            {
                Ok(r) => r,
                Err(e) if transient(&e) && attempt < self.retries => {
                    attempt += 1;
                    tracing::info!(%digest, attempt, error = %e, "blob download failed, retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return fail(e).await,
            };
            let status = resp.status();
            // A server that ignores Range answers 200 from byte 0: skip what we already have.
            let mut skip = match status {
                StatusCode::PARTIAL_CONTENT => 0,
                StatusCode::OK => got,
                StatusCode::RANGE_NOT_SATISFIABLE if got >= total => break,
                s if (s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS)
                    && attempt < self.retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                StatusCode::NOT_FOUND => {
                    let t = error_text(resp).await;
                    return fail(Error::NotFound(format!("blob {digest}: {t}"))).await;
                }
                _ => {
                    let t = error_text(resp).await;
                    return fail(Error::Registry(format!("fetching blob {digest}: {t}"))).await;
                }
            };
            if got == 0 {
                self.ev(PullProgress::Downloading {
                    id: id.clone(),
                    current: 0,
                    total,
                });
            }
            let mut resp = resp;
            let mut broken = None;
            loop {
                match resp.chunk().await {
                    Ok(Some(mut b)) => {
                        if skip > 0 {
                            let n = (skip as usize).min(b.len());
                            b = b.slice(n..);
                            skip -= n as u64;
                        }
                        if b.is_empty() {
                            continue;
                        }
                        got += b.len() as u64;
                        if tx.send(Ok(b)).await.is_err() {
                            // The unpacker stopped; its error is the one to report.
                            return Ok(());
                        }
                        if got - reported >= (total / 100).max(256 * 1024) || got == total {
                            reported = got;
                            self.ev(PullProgress::Downloading {
                                id: id.clone(),
                                current: got,
                                total,
                            });
                        }
                        if self.cancel.load(Ordering::SeqCst) {
                            return fail(Error::Registry("pull cancelled".into())).await;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(Error::http(format!("downloading blob {digest}"), e));
                        break;
                    }
                }
            }
            if broken.is_none() && got >= total {
                break;
            }
            let err = broken.unwrap_or_else(|| {
                Error::Registry(format!(
                    "downloading blob {digest}: connection closed after {got} of {total} bytes"
                ))
            });
            // Progress made: the failure budget starts over (a restarted registry is fine).
            if got > start {
                attempt = 0;
            }
            if attempt >= self.retries {
                return fail(err).await;
            }
            attempt += 1;
            tracing::info!(%digest, got, attempt, error = %err, "blob download broken, resuming");
            tokio::time::sleep(backoff(attempt)).await;
        }
        drop(tx);
        self.ev(PullProgress::VerifyingChecksum { id: id.clone() });
        self.ev(PullProgress::DownloadComplete { id });
        Ok(())
    }
}
