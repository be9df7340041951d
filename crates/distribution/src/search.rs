//! `docker search` and `GET /distribution/{name}/json`: Docker Hub's v1 search API, a
//! registry's `/v2/_catalog` for any other registry, and resolving a reference to its
//! descriptor and platforms without pulling.

use berth_types::Reference;
use serde::{Deserialize, Serialize};

use crate::client::{self, Client, RegistryConfig, api_host, read_limited};
use crate::manifest::{self, Manifest, Platform};
use crate::{Credentials, Error, Result, scope};

/// One search hit, in the shape of Docker's `registry.SearchResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    pub name: String,
    #[serde(default)]
    pub is_automated: bool,
    #[serde(default)]
    pub description: String,
}

/// Docker Hub's search endpoint (what dockerd queries for unqualified terms).
const HUB_SEARCH: &str = "https://index.docker.io/v1/search";

/// Split a search term into (registry domain, the rest), as Docker does: a first component
/// with a `.` or `:`, or `localhost`, names a registry; otherwise the term is for Docker Hub.
pub fn split_term(term: &str) -> (Option<&str>, &str) {
    match term.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, term),
    }
}

/// Search `term`: Docker Hub's v1 search for unqualified terms, `/v2/_catalog` filtered by the
/// rest of the term (substring) for `host/term`. At most `limit` results.
pub async fn search(
    cfg: &RegistryConfig,
    term: &str,
    limit: usize,
    credentials: Option<&Credentials>,
) -> Result<Vec<SearchResult>> {
    match split_term(term) {
        (Some(domain), rest) if domain != "docker.io" && domain != "index.docker.io" => {
            catalog_search(cfg, domain, rest, limit, credentials).await
        }
        (_, rest) => hub_search(cfg, rest, limit).await,
    }
}

async fn hub_search(cfg: &RegistryConfig, term: &str, limit: usize) -> Result<Vec<SearchResult>> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(default)]
        results: Vec<SearchResult>,
    }
    let http = client::http_client(cfg, "index.docker.io", false)?;
    let resp = http
        .get(HUB_SEARCH)
        .query(&[("q", term), ("n", &limit.to_string())])
        .send()
        .await
        .map_err(|e| Error::http(format!("Get \"{HUB_SEARCH}\""), e))?;
    if !resp.status().is_success() {
        return Err(Error::Registry(client::error_text(resp).await));
    }
    let body = read_limited(resp, 16 << 20, "search results").await?;
    let r: Reply = serde_json::from_slice(&body)
        .map_err(|e| Error::Registry(format!("invalid search results: {e}")))?;
    let mut out = r.results;
    out.truncate(limit);
    Ok(out)
}

async fn catalog_search(
    cfg: &RegistryConfig,
    domain: &str,
    term: &str,
    limit: usize,
    credentials: Option<&Credentials>,
) -> Result<Vec<SearchResult>> {
    let creds = match credentials {
        Some(c) => Some(c.clone()),
        None => cfg.credentials_for(domain)?,
    };
    let c = Client::connect(cfg, api_host(domain), creds).await?;
    let scopes = vec!["registry:catalog:*".to_owned()];
    let mut out = Vec::new();
    c.list_pages(
        &scopes,
        "/v2/_catalog?n=1000".to_owned(),
        "repositories",
        None,
        100,
        |repos| {
            for repo in repos {
                if repo.contains(term) && out.len() < limit {
                    out.push(SearchResult {
                        star_count: 0,
                        is_official: false,
                        name: format!("{domain}/{repo}"),
                        is_automated: false,
                        description: String::new(),
                    });
                }
            }
            out.len() < limit
        },
    )
    .await?;
    Ok(out)
}

/// What `GET /distribution/{name}/json` answers: the descriptor the reference resolves to and
/// the platforms it offers.
#[derive(Debug, Clone, Serialize)]
pub struct DistributionInspect {
    #[serde(rename = "Descriptor")]
    pub descriptor: InspectDescriptor,
    #[serde(rename = "Platforms")]
    pub platforms: Vec<Platform>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectDescriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// Resolve `reference` (a bare name means `:latest`) on its registry without pulling.
pub async fn inspect(
    cfg: &RegistryConfig,
    reference: &Reference,
    credentials: Option<&Credentials>,
) -> Result<DistributionInspect> {
    let reference = if reference.is_name_only() {
        reference.with_tag(berth_types::reference::DEFAULT_TAG)
    } else {
        reference.clone()
    };
    let want = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => berth_types::reference::DEFAULT_TAG.to_owned(),
    };
    let creds = match credentials {
        Some(c) => Some(c.clone()),
        None => cfg.credentials_for(&reference.domain)?,
    };
    let c = Client::connect(cfg, api_host(&reference.domain), creds).await?;
    let scopes = vec![scope(&reference.path, "pull")];
    let name = reference.familiar();
    let (status, ct, body) = c.get_manifest(&reference.path, &want, &scopes).await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body).into_owned();
        return Err(match status.as_u16() {
            404 => Error::NotFound(format!("manifest for {name} not found: {text}")),
            401 | 403 => Error::Unauthorized(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login': {text}",
                reference.familiar_name()
            )),
            _ => Error::Registry(text),
        });
    }
    let digest = berth_types::Digest::of(&body);
    if let Ok(expected) = want.parse::<berth_types::Digest>()
        && expected != digest
    {
        return Err(Error::DigestMismatch {
            what: format!("manifest of {name}"),
            expected: expected.to_string(),
            actual: digest.to_string(),
        });
    }
    let parsed = manifest::parse(ct.as_deref(), &body, &reference.name())?;
    let (media_type, platforms) = match parsed {
        Manifest::Index(idx) => (
            ct.filter(|t| t.starts_with("application/vnd."))
                .unwrap_or_else(|| manifest::OCI_INDEX.to_owned()),
            idx.manifests
                .iter()
                .filter_map(|d| d.platform.clone())
                .filter(|p| p.os != "unknown")
                .collect(),
        ),
        Manifest::Image(m) => {
            // A single manifest: its platform is in the config.
            let mt = if m.media_type.is_empty() {
                ct.unwrap_or_else(|| manifest::DOCKER_MANIFEST.to_owned())
            } else {
                m.media_type.clone()
            };
            let resp = c
                .get_blob(&reference.path, &m.config.digest, 0, &scopes)
                .await?;
            let mut platforms = Vec::new();
            if resp.status().is_success() {
                let cfg_body = read_limited(resp, manifest::MAX_CONFIG as usize, "config").await?;
                if let Ok(p) = serde_json::from_slice::<Platform>(&cfg_body) {
                    platforms.push(p);
                }
            }
            (mt, platforms)
        }
    };
    Ok(DistributionInspect {
        descriptor: InspectDescriptor {
            media_type,
            digest: digest.to_string(),
            size: body.len() as u64,
        },
        platforms,
    })
}
