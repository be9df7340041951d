//! berth-distribution: the registry client (OCI distribution spec / Docker registry API v2).
//!
//! Owns: talking to registries — endpoint choice (docker.io -> registry-1.docker.io, mirrors,
//! HTTPS with system roots + certs.d, plain HTTP only for insecure hosts and loopback), auth
//! (Basic; Bearer tokens from the WWW-Authenticate challenge, anonymous or with credentials from
//! the request, docker's config.json or a credential helper), manifest negotiation and platform
//! selection, and the two operations built on them:
//! - [`pull`]: config first, then layers concurrently (bounded), each streamed from the network
//!   straight into [`berth_image::PullSession::add_layer`] (hash + decompress + unpack while it
//!   downloads, one overlay2 dir per layer so unpacks run in parallel), broken downloads resumed
//!   with HTTP Range, everything committed in one store transaction at the end.
//! - [`push`]: blobs (stored compressed bytes reused, uncompressed layers gzipped), existing-blob
//!   skip, cross-repository mount, Docker schema2 manifest, repo digest recorded.
//!
//! Must not: write image data anywhere but through `berth_image`'s API (the store owns the
//! layout and crash safety), know about the daemon/HTTP API (progress comes out as
//! [`PullProgress`]/[`PushProgress`] values that map 1:1 onto Docker's JSON progress messages),
//! or print anything.

mod auth;
mod client;
mod error;
pub mod manifest;
mod pull;
mod push;
mod search;

pub use auth::{Credentials, config_key, default_docker_config};
pub use client::{
    DEFAULT_MAX_CONCURRENT_DOWNLOADS, DEFAULT_MAX_CONCURRENT_UPLOADS, RegistryConfig, api_host,
};
pub use error::{Error, ErrorKind, Result};
pub use manifest::Platform;
pub use pull::{PullOptions, PullResult, pull};
pub use push::{PushOptions, push};
pub use search::{DistributionInspect, SearchResult, inspect, search, split_term};

use berth_types::Digest;
use serde::Serialize;

/// One line of Docker's JSON progress stream: `{"status":..,"id":..,"progressDetail":{..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgressMessage {
    pub status: String,
    pub id: Option<String>,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

impl ProgressMessage {
    fn new(status: impl Into<String>, id: Option<&str>) -> Self {
        ProgressMessage {
            status: status.into(),
            id: id.map(str::to_owned),
            current: None,
            total: None,
        }
    }

    fn detail(mut self, current: u64, total: u64) -> Self {
        self.current = Some(current);
        self.total = Some(total);
        self
    }

    /// Docker's JSON shape (the docker CLI draws its bars from `progressDetail`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("status".into(), self.status.clone().into());
        if let Some(c) = self.current {
            let mut d = serde_json::Map::new();
            d.insert("current".into(), c.into());
            if let Some(t) = self.total {
                d.insert("total".into(), t.into());
            }
            m.insert("progressDetail".into(), d.into());
        } else if self.id.is_some() {
            m.insert("progressDetail".into(), serde_json::json!({}));
        }
        if let Some(id) = &self.id {
            m.insert("id".into(), id.clone().into());
        }
        m.into()
    }
}

/// Progress of a pull, in the order Docker reports it. Layer `id`s are the first 12 hex
/// characters of the layer blob digest, as Docker prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PullProgress {
    /// "Pulling from library/busybox", id = the tag (or digest).
    PullingFrom {
        repository: String,
        tag: String,
    },
    PullingFsLayer {
        id: String,
    },
    Waiting {
        id: String,
    },
    Downloading {
        id: String,
        current: u64,
        total: u64,
    },
    VerifyingChecksum {
        id: String,
    },
    DownloadComplete {
        id: String,
    },
    Extracting {
        id: String,
        current: u64,
        total: u64,
    },
    PullComplete {
        id: String,
    },
    AlreadyExists {
        id: String,
    },
    /// "Digest: sha256:..." (the manifest digest)
    Digest(Digest),
    /// "Status: Downloaded newer image for busybox:latest" / "Status: Image is up to date for ..."
    Status(String),
}

impl PullProgress {
    pub fn to_message(&self) -> ProgressMessage {
        use PullProgress::*;
        match self {
            PullingFrom { repository, tag } => {
                ProgressMessage::new(format!("Pulling from {repository}"), Some(tag))
            }
            PullingFsLayer { id } => ProgressMessage::new("Pulling fs layer", Some(id)),
            Waiting { id } => ProgressMessage::new("Waiting", Some(id)),
            Downloading { id, current, total } => {
                ProgressMessage::new("Downloading", Some(id)).detail(*current, *total)
            }
            VerifyingChecksum { id } => ProgressMessage::new("Verifying Checksum", Some(id)),
            DownloadComplete { id } => ProgressMessage::new("Download complete", Some(id)),
            Extracting { id, current, total } => {
                ProgressMessage::new("Extracting", Some(id)).detail(*current, *total)
            }
            PullComplete { id } => ProgressMessage::new("Pull complete", Some(id)),
            AlreadyExists { id } => ProgressMessage::new("Already exists", Some(id)),
            Digest(d) => ProgressMessage::new(format!("Digest: {d}"), None),
            Status(s) => ProgressMessage::new(format!("Status: {s}"), None),
        }
    }
}

/// Progress of a push, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PushProgress {
    /// "The push refers to repository [docker.io/library/busybox]"
    RefersTo {
        repository: String,
    },
    Preparing {
        id: String,
    },
    Waiting {
        id: String,
    },
    Pushing {
        id: String,
        current: u64,
        total: u64,
    },
    Pushed {
        id: String,
    },
    LayerAlreadyExists {
        id: String,
    },
    /// "Mounted from library/other"
    MountedFrom {
        id: String,
        from: String,
    },
    /// "latest: digest: sha256:... size: 527"
    Done {
        tag: String,
        digest: Digest,
        size: u64,
    },
}

impl PushProgress {
    pub fn to_message(&self) -> ProgressMessage {
        use PushProgress::*;
        match self {
            RefersTo { repository } => ProgressMessage::new(
                format!("The push refers to repository [{repository}]"),
                None,
            ),
            Preparing { id } => ProgressMessage::new("Preparing", Some(id)),
            Waiting { id } => ProgressMessage::new("Waiting", Some(id)),
            Pushing { id, current, total } => {
                ProgressMessage::new("Pushing", Some(id)).detail(*current, *total)
            }
            Pushed { id } => ProgressMessage::new("Pushed", Some(id)),
            LayerAlreadyExists { id } => ProgressMessage::new("Layer already exists", Some(id)),
            MountedFrom { id, from } => {
                ProgressMessage::new(format!("Mounted from {from}"), Some(id))
            }
            Done { tag, digest, size } => {
                ProgressMessage::new(format!("{tag}: digest: {digest} size: {size}"), None)
            }
        }
    }
}

/// `docker login` (the API's `POST /auth`): check `creds` against the registry of `domain`
/// (docker.io -> Docker Hub). Storing them is the client's business, as with Docker. Returns
/// the identity token (a refresh token) when the registry's token server issues one: clients
/// store it instead of the password.
pub async fn login(
    cfg: &RegistryConfig,
    domain: &str,
    creds: &Credentials,
) -> Result<Option<String>> {
    let domain = domain
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or(domain);
    let domain = if domain == "index.docker.io" {
        berth_types::reference::DEFAULT_DOMAIN
    } else {
        domain
    };
    let c = client::Client::connect(cfg, api_host(domain), Some(creds.clone())).await?;
    c.check_login().await
}

/// Tags of a repository (`GET /v2/<name>/tags/list`, following `Link` pagination), for
/// `pull -a`. Credentials as in [`PullOptions`].
pub async fn list_tags(
    cfg: &RegistryConfig,
    repository: &berth_types::Reference,
    credentials: Option<&Credentials>,
) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Tags {
        #[serde(default)]
        tags: Option<Vec<String>>,
    }
    let creds = match credentials {
        Some(c) => Some(c.clone()),
        None => cfg.credentials_for(&repository.domain)?,
    };
    let c = client::Client::connect(cfg, api_host(&repository.domain), creds).await?;
    let scopes = vec![scope(&repository.path, "pull")];
    let mut next = Some(format!("/v2/{}/tags/list?n=1000", repository.path));
    let mut out = Vec::new();
    // A registry could paginate forever; 1000 pages of 1000 tags is plenty.
    for _ in 0..1000 {
        let Some(path) = next.take() else { break };
        let resp = c
            .send(&scopes, |h, base| h.get(format!("{base}{path}")))
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let text = client::error_text(resp).await;
            return Err(match status.as_u16() {
                401 | 403 => Error::Unauthorized(text),
                404 => Error::NotFound(format!("{}: {text}", repository.familiar_name())),
                _ => Error::Registry(text),
            });
        }
        next = client::next_link(&resp);
        let body = client::read_limited(resp, 16 << 20, "tag list").await?;
        let t: Tags = serde_json::from_slice(&body)
            .map_err(|e| Error::Registry(format!("invalid tag list: {e}")))?;
        out.extend(t.tags.unwrap_or_default());
    }
    Ok(out)
}

/// Scope strings of the token flow.
pub(crate) fn scope(repo: &str, actions: &str) -> String {
    format!("repository:{repo}:{actions}")
}
