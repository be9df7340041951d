//! The registry side of the images service: pull (`POST /images/create?fromImage=`), push,
//! login (`POST /auth`), search and distribution inspect, over `berth_distribution`.
//!
//! Like dockerd, the daemon never reads a user's `~/.docker/config.json`: credentials come
//! only with the request (X-Registry-Auth / the login body); the client looks them up.
//! Progress goes out as Docker's jsonmessage objects on a channel; the API writes them.

use std::collections::BTreeMap;

use berth_distribution::{self as dist, Credentials, Platform, PullProgress, RegistryConfig};
use berth_types::{Digest, Reference};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{Error, ErrorKind, Result};
use crate::events::Actor;
use crate::images::{Filters, Images};

/// Where progress lines go (jsonmessage objects: status/id/progressDetail/aux).
pub type Progress = UnboundedSender<Value>;

/// The registry configuration the daemon's flags gave (insecure registries, mirrors).
pub fn registry_config(insecure: &[String], mirrors: &[String]) -> RegistryConfig {
    RegistryConfig {
        insecure_registries: insecure.to_vec(),
        mirrors: mirrors.to_vec(),
        // dockerd reads no client config: credentials come with each request.
        docker_config: None,
        ..RegistryConfig::default()
    }
}

fn map_err(e: dist::Error) -> Error {
    let kind = match e.kind() {
        dist::ErrorKind::NotFound => ErrorKind::NotFound,
        dist::ErrorKind::Unauthorized => ErrorKind::Unauthorized,
        dist::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
        dist::ErrorKind::Internal => ErrorKind::Internal,
    };
    Error::new(kind, e.to_string())
}

/// dockerd answers a denied pull as not found ("pull access denied ... may require 'docker
/// login'"), a 404, not a 401.
fn pull_err(e: dist::Error) -> Error {
    let mut e = map_err(e);
    if e.kind == ErrorKind::Unauthorized {
        e.kind = ErrorKind::NotFound;
    }
    e
}

/// Decode X-Registry-Auth (absent, empty or `{}`: anonymous).
pub fn parse_auth(header: Option<&str>) -> Result<Option<Credentials>> {
    match header {
        None => Ok(None),
        Some(h) => Credentials::from_registry_auth_header(h)
            .map_err(|e| Error::invalid(format!("invalid X-Registry-Auth header: {e}"))),
    }
}

/// What `POST /images/create?fromImage=&tag=&platform=` asks for.
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    pub from_image: String,
    pub tag: String,
    pub platform: String,
    pub auth: Option<Credentials>,
}

/// dockerd's reference handling for pulls: `tag` may be a tag or a digest; none at all (and
/// none in `fromImage`) means every tag of the repository.
fn pull_reference(from_image: &str, tag: &str) -> Result<Reference> {
    let r = Reference::parse_normalized(from_image)?;
    if tag.is_empty() {
        return Ok(r);
    }
    let base = r.repository();
    if let Ok(d) = tag.parse::<Digest>() {
        return Ok(base.with_digest(&d));
    }
    Reference::parse_normalized(&format!("{}:{tag}", base.name())).map_err(Error::from)
}

fn message(p: &PullProgress) -> Value {
    p.to_message().to_json()
}

impl Images {
    /// The registry configuration (set at start-up from the daemon's flags).
    pub fn set_registry(&self, cfg: RegistryConfig) {
        let _ = self.registry.set(cfg);
    }

    fn registry(&self) -> RegistryConfig {
        self.registry
            .get()
            .cloned()
            .unwrap_or_else(|| registry_config(&[], &[]))
    }

    /// Pull an image (or every tag of a repository). "Pulling from" is held back until the
    /// manifest resolved, so an unknown image is a plain HTTP error as with dockerd.
    pub async fn pull(&self, req: PullRequest, progress: Progress) -> Result<()> {
        let reference = pull_reference(&req.from_image, &req.tag)?;
        let platform = if req.platform.is_empty() {
            None
        } else {
            Some(Platform::parse(&req.platform).map_err(|e| Error::invalid(e.to_string()))?)
        };
        let opts = dist::PullOptions {
            platform,
            registry: self.registry(),
            credentials: req.auth.clone(),
            ..dist::PullOptions::default()
        };
        let all_tags = reference.is_name_only();
        let targets = if all_tags {
            let mut tags = dist::list_tags(&opts.registry, &reference, req.auth.as_ref())
                .await
                .map_err(pull_err)?;
            tags.sort();
            tags.into_iter().map(|t| reference.with_tag(&t)).collect()
        } else {
            vec![reference.clone()]
        };
        let mut updated = false;
        for r in &targets {
            let mut held: Option<Value> = None;
            let res = dist::pull(self.store(), r, &opts, |p| {
                if matches!(p, PullProgress::PullingFrom { .. }) {
                    held = Some(message(&p));
                    return;
                }
                if let Some(h) = held.take() {
                    let _ = progress.send(h);
                }
                // For -a, one Status line for the repository at the end, as dockerd.
                if all_tags && matches!(p, PullProgress::Status(_)) {
                    return;
                }
                let _ = progress.send(message(&p));
            })
            .await
            .map_err(pull_err)?;
            updated |= res.updated;
            self.pulled(r, &res.id);
        }
        if all_tags {
            let name = reference.familiar();
            let status = if updated {
                format!("Downloaded newer image for {name}")
            } else {
                format!("Image is up to date for {name}")
            };
            let _ = progress.send(message(&PullProgress::Status(status)));
        }
        Ok(())
    }

    /// dockerd logs a pull event with the reference as its ID.
    fn pulled(&self, r: &Reference, _id: &Digest) {
        let name = r.familiar();
        let mut attributes = BTreeMap::new();
        attributes.insert("name".to_owned(), name.clone());
        self.events.log(
            "image",
            "pull",
            Actor {
                id: name,
                attributes,
            },
        );
    }

    /// `POST /images/{name}/push?tag=`: one tag, or every local tag of the repository when
    /// `tag` is empty and `name` has none.
    pub async fn push(
        &self,
        name: &str,
        tag: &str,
        auth: Option<Credentials>,
        progress: Progress,
    ) -> Result<()> {
        let reference = Reference::parse_normalized(name)?;
        if reference.digest.is_some() {
            return Err(Error::invalid("cannot push a digest reference"));
        }
        let reference = if tag.is_empty() {
            reference
        } else {
            reference.repository().with_tag(tag)
        };
        let targets: Vec<Reference> = if reference.is_name_only() {
            let store = self.store().clone();
            let want = reference.name();
            let mut refs: Vec<Reference> = tokio::task::spawn_blocking(move || store.list())
                .await??
                .into_iter()
                .flat_map(|i| i.repo_tags)
                .filter(|t| t.repository().name() == want)
                .collect();
            refs.sort_by_key(|r| r.tag.clone());
            refs
        } else {
            let store = self.store().clone();
            let key = reference.to_string();
            if tokio::task::spawn_blocking(move || store.lookup(&key))
                .await?
                .is_err()
            {
                return Err(Error::not_found(format!(
                    "An image does not exist locally with the tag: {}",
                    reference.familiar_name()
                )));
            }
            vec![reference.clone()]
        };
        if targets.is_empty() {
            return Err(Error::not_found(format!(
                "An image does not exist locally with the tag: {}",
                reference.familiar_name()
            )));
        }
        let opts = dist::PushOptions {
            registry: self.registry(),
            credentials: auth,
        };
        for r in &targets {
            let digest = dist::push(self.store(), r, &opts, |p| {
                let mut m = p.to_message().to_json();
                if let dist::PushProgress::Done { tag, digest, size } = &p {
                    let _ = progress.send(m);
                    // The aux record dockerd sends after the summary line.
                    m = json!({
                        "progressDetail": {},
                        "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size},
                    });
                }
                let _ = progress.send(m);
            })
            .await
            .map_err(map_err)?;
            let name = r.familiar();
            let mut attributes = BTreeMap::new();
            attributes.insert("name".to_owned(), name.clone());
            self.events.log(
                "image",
                "push",
                Actor {
                    id: name,
                    attributes,
                },
            );
            tracing::debug!(reference = %r, %digest, "pushed");
        }
        Ok(())
    }

    /// `POST /auth`: check the credentials of the body (Docker's AuthConfig) against the
    /// registry. Returns the status text and an identity token (never, for now: registries we
    /// talk to issue none to plain logins).
    pub async fn login(&self, body: &[u8]) -> Result<(String, String)> {
        #[derive(serde::Deserialize, Default)]
        struct AuthConfig {
            #[serde(default)]
            username: String,
            #[serde(default)]
            password: String,
            #[serde(default)]
            serveraddress: String,
            #[serde(default)]
            identitytoken: String,
        }
        let a: AuthConfig = if body.iter().all(u8::is_ascii_whitespace) {
            AuthConfig::default()
        } else {
            serde_json::from_slice(body).map_err(|e| Error::invalid(e.to_string()))?
        };
        let creds = if a.identitytoken.is_empty() {
            Credentials::new(a.username, a.password)
        } else {
            Credentials::new("<token>", a.identitytoken)
        };
        let server = if a.serveraddress.is_empty() {
            "https://index.docker.io/v1/".to_owned()
        } else {
            a.serveraddress
        };
        let token = dist::login(&self.registry(), &server, &creds)
            .await
            .map_err(map_err)?;
        Ok(("Login Succeeded".to_owned(), token.unwrap_or_default()))
    }

    /// `GET /images/search?term=&limit=&filters=`.
    pub async fn search(
        &self,
        term: &str,
        limit: Option<&str>,
        filters: &Filters,
        auth: Option<Credentials>,
    ) -> Result<Vec<dist::SearchResult>> {
        let limit = match limit.filter(|l| !l.is_empty()) {
            None => 25,
            Some(l) => {
                let n: i64 = l
                    .parse()
                    .map_err(|_| Error::invalid(format!("invalid limit: {l}")))?;
                if !(1..=100).contains(&n) {
                    return Err(Error::invalid(format!(
                        "limit {n} is outside the range of [1, 100]"
                    )));
                }
                n as usize
            }
        };
        let mut stars: u64 = 0;
        let mut official: Option<bool> = None;
        let mut automated: Option<bool> = None;
        for (k, vals) in filters {
            for v in vals {
                match k.as_str() {
                    "stars" => {
                        stars = v
                            .parse()
                            .map_err(|_| Error::invalid(format!("invalid filter 'stars={v}'")))?;
                    }
                    "is-official" => official = Some(parse_bool_filter(k, v)?),
                    "is-automated" => automated = Some(parse_bool_filter(k, v)?),
                    other => return Err(Error::invalid(format!("invalid filter '{other}'"))),
                }
            }
        }
        let results = dist::search(&self.registry(), term, limit, auth.as_ref())
            .await
            .map_err(map_err)?;
        Ok(results
            .into_iter()
            .filter(|r| r.star_count >= stars)
            .filter(|r| official.is_none_or(|o| r.is_official == o))
            .filter(|r| automated.is_none_or(|a| r.is_automated == a))
            .collect())
    }

    /// `GET /distribution/{name}/json`.
    pub async fn distribution_inspect(
        &self,
        name: &str,
        auth: Option<Credentials>,
    ) -> Result<dist::DistributionInspect> {
        let r = Reference::parse_normalized(name)?;
        dist::inspect(&self.registry(), &r, auth.as_ref())
            .await
            .map_err(map_err)
    }
}

fn parse_bool_filter(k: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::invalid(format!("invalid filter '{k}={v}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_references() {
        let r = pull_reference("busybox", "").unwrap();
        assert!(r.is_name_only());
        assert_eq!(
            pull_reference("busybox", "1.36").unwrap().familiar(),
            "busybox:1.36"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            pull_reference("localhost:5000/x", &d).unwrap().to_string(),
            format!("localhost:5000/x@{d}")
        );
        assert_eq!(
            pull_reference("localhost:5000/x:old", "new")
                .unwrap()
                .familiar(),
            "localhost:5000/x:new"
        );
    }
}
