//! The images service: Docker's image operations over `berth_image::ImageStore`, with dockerd's
//! rules for filters, tagging and events. Every store call is blocking and runs in
//! `spawn_blocking`; the store sits behind an `Arc` so those tasks can own a handle.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use berth_image::{
    Image, ImageStore, ImageUsage, ImportOptions, LoadProgress, LoadedImage, PruneOptions,
    RemoveEvent, RemoveOptions,
};
use berth_types::image_config::ImageConfig;
use berth_types::{Digest, Reference};

use crate::error::{Error, Result};
use crate::events::{Actor, EventBus};
use crate::models::{
    DeleteItem, DiskUsage, GraphDriver, HistoryItem, ImageInspect, ImageMetadata, ImagePruneReport,
    ImageSummary, RootFs,
};

/// Query filters as Docker sends them (`{"key":{"value":true}}` already flattened).
pub type Filters = BTreeMap<String, Vec<String>>;

/// Which containers use an image: a snapshot of (container id, image id, running) taken from
/// the containers service before a blocking store call.
pub struct EngineUsage(pub Vec<(String, String, bool)>);

impl ImageUsage for EngineUsage {
    fn containers_using(&self, image: &Digest) -> Vec<(String, bool)> {
        let want = image.to_string();
        self.0
            .iter()
            .filter(|(_, img, _)| *img == want)
            .map(|(id, _, running)| (id.clone(), *running))
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub all: bool,
    pub filters: Filters,
    pub shared_size: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ImportParams {
    /// `repo` query parameter (may carry a tag)
    pub repo: Option<String>,
    pub tag: Option<String>,
    pub message: Option<String>,
    /// Dockerfile-like `--change` lines
    pub changes: Vec<String>,
}

pub struct Images {
    store: Arc<ImageStore>,
    pub(crate) events: Arc<EventBus>,
    /// Set once at engine start-up (the containers service is built after the store).
    containers: std::sync::OnceLock<crate::containers::Containers>,
    /// Set once at engine start-up from the daemon's registry flags.
    pub(crate) registry: std::sync::OnceLock<berth_distribution::RegistryConfig>,
}

/// Run a blocking store call off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

fn familiar_list(refs: &[Reference]) -> Vec<String> {
    refs.iter().map(Reference::familiar).collect()
}

fn created_unix(cfg: &ImageConfig) -> i64 {
    cfg.created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn summary(img: &Image) -> ImageSummary {
    ImageSummary {
        id: img.id.to_string(),
        parent_id: img
            .parent
            .as_ref()
            .map(Digest::to_string)
            .unwrap_or_default(),
        repo_tags: familiar_list(&img.repo_tags),
        repo_digests: familiar_list(&img.repo_digests),
        created: created_unix(&img.config),
        size: to_i64(img.size),
        shared_size: -1,
        labels: img.config.labels(),
        containers: -1,
    }
}

/// Docker's tag grammar: `[\w][\w.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if word(c))
        && tag.len() <= 128
        && chars.all(|c| word(c) || c == '.' || c == '-')
}

/// Go's `path.Match` (what dockerd's reference filter uses): `*` and `?` never cross `/`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => {
                // try every split that does not consume a '/'
                let mut i = 0;
                loop {
                    if go(&p[1..], &n[i..]) {
                        return true;
                    }
                    if i >= n.len() || n[i] == '/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some('?') => !n.is_empty() && n[0] != '/' && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().position(|&c| c == ']') else {
                    return false;
                };
                let Some(&c) = n.first() else { return false };
                let class = &p[1..close];
                let (neg, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && go(&p[close + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// dockerd's `reference.FamiliarMatch`: the pattern against the familiar string, or the
/// familiar name alone.
fn reference_matches(pattern: &str, r: &Reference) -> bool {
    glob_match(pattern, &r.familiar()) || glob_match(pattern, &r.familiar_name())
}

fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

fn bool_filter(filters: &Filters, key: &str) -> Result<Option<bool>> {
    let Some(vals) = filters.get(key) else {
        return Ok(None);
    };
    let mut out = None;
    for v in vals {
        let b = match v.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(Error::invalid(format!("Invalid filter '{key}={v}'"))),
        };
        out = Some(b);
    }
    Ok(out)
}

/// Docker's timestamp filter values: unix seconds (with optional fraction), RFC 3339, or a
/// duration before now (`10m`, `1h30m`, `24h`).
pub fn parse_timestamp(s: &str, now: i64) -> Result<i64> {
    let s = s.trim();
    if let Ok(f) = s.parse::<f64>() {
        return Ok(f.floor() as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Ok(t.and_utc().timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().timestamp());
    }
    berth_types::duration::parse(s)
        .ok()
        .map(|ns| now - ns / 1_000_000_000)
        .ok_or_else(|| {
            Error::invalid(format!(
                "failed to parse value as time or duration: \"{s}\""
            ))
        })
}

impl Images {
    pub fn new(store: Arc<ImageStore>, events: Arc<EventBus>) -> Images {
        Images {
            store,
            events,
            containers: std::sync::OnceLock::new(),
            registry: std::sync::OnceLock::new(),
        }
    }

    /// Lets rmi/prune see which containers use an image.
    pub fn set_containers(&self, c: crate::containers::Containers) {
        let _ = self.containers.set(c);
    }

    fn usage(&self) -> EngineUsage {
        EngineUsage(self.containers.get().map(|c| c.usage()).unwrap_or_default())
    }

    pub fn store(&self) -> &Arc<ImageStore> {
        &self.store
    }

    /// dockerd's `LogImageEvent`: the image's labels plus `name`.
    fn log(&self, action: &str, id: &Digest, name: &str, labels: BTreeMap<String, String>) {
        let mut attributes = labels;
        if !name.is_empty() {
            attributes.insert("name".to_owned(), name.to_owned());
        }
        self.events.log(
            "image",
            action,
            Actor {
                id: id.to_string(),
                attributes,
            },
        );
    }

    /// `GET /images/json`.
    pub async fn list(&self, opts: ListOptions) -> Result<Vec<ImageSummary>> {
        for key in opts.filters.keys() {
            if !["dangling", "label", "before", "since", "reference", "until"]
                .contains(&key.as_str())
            {
                return Err(Error::invalid(format!("invalid filter '{key}'")));
            }
        }
        let store = self.store.clone();
        blocking(move || {
            let images = store.list()?;
            let f = &opts.filters;
            let dangling = bool_filter(f, "dangling")?;
            let created_of =
                |name: &str| -> Result<i64> { Ok(created_unix(&store.lookup(name)?.config)) };
            let before = f
                .get("before")
                .map(|v| v.iter().map(|n| created_of(n)).collect::<Result<Vec<_>>>())
                .transpose()?;
            let since = f
                .get("since")
                .map(|v| v.iter().map(|n| created_of(n)).collect::<Result<Vec<_>>>())
                .transpose()?;
            let now = chrono::Utc::now().timestamp();
            let until = f
                .get("until")
                .map(|v| {
                    v.iter()
                        .map(|t| parse_timestamp(t, now))
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?;
            let with_children: BTreeSet<Digest> =
                images.iter().filter_map(|i| i.parent.clone()).collect();
            let shared = if opts.shared_size {
                let du = store.disk_usage()?;
                du.images
                    .into_iter()
                    .map(|(id, _, s)| (id, s))
                    .collect::<BTreeMap<_, _>>()
            } else {
                BTreeMap::new()
            };

            let mut out = Vec::new();
            for img in &images {
                let untagged = img.repo_tags.is_empty() && img.repo_digests.is_empty();
                // Intermediate images (untagged parents) are hidden unless `-a`.
                if !opts.all && untagged && with_children.contains(&img.id) {
                    continue;
                }
                if let Some(d) = dangling
                    && d != img.repo_tags.is_empty()
                {
                    continue;
                }
                let created = created_unix(&img.config);
                if before
                    .as_ref()
                    .is_some_and(|b| b.iter().any(|&t| created >= t))
                {
                    continue;
                }
                if since
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|&t| created <= t))
                {
                    continue;
                }
                if until
                    .as_ref()
                    .is_some_and(|u| u.iter().any(|&t| created >= t))
                {
                    continue;
                }
                let labels = img.config.labels();
                if let Some(ls) = f.get("label")
                    && !ls.iter().all(|l| label_matches(&labels, l))
                {
                    continue;
                }
                let mut s = summary(img);
                if let Some(patterns) = f.get("reference") {
                    // Only the matching references are shown, as dockerd does.
                    let keep = |r: &&Reference| patterns.iter().any(|p| reference_matches(p, r));
                    let tags: Vec<&Reference> = img.repo_tags.iter().filter(keep).collect();
                    let digests: Vec<&Reference> = img.repo_digests.iter().filter(keep).collect();
                    if tags.is_empty() && digests.is_empty() {
                        continue;
                    }
                    s.repo_tags = tags.into_iter().map(Reference::familiar).collect();
                    s.repo_digests = digests.into_iter().map(Reference::familiar).collect();
                }
                if let Some(sz) = shared.get(&img.id) {
                    s.shared_size = to_i64(*sz);
                }
                out.push(s);
            }
            out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
            Ok(out)
        })
        .await
    }

    /// `GET /images/{name}/json`.
    pub async fn inspect(&self, name: String) -> Result<ImageInspect> {
        let store = self.store.clone();
        blocking(move || {
            let img = store.lookup(&name)?;
            let data = store
                .layer_dirs(&img.id)
                .ok()
                .and_then(|dirs| overlay_data(&dirs));
            let cfg = &img.config;
            let last_tag = chrono::DateTime::from_timestamp(img.added_at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned());
            Ok(ImageInspect {
                id: img.id.to_string(),
                repo_tags: familiar_list(&img.repo_tags),
                repo_digests: familiar_list(&img.repo_digests),
                parent: img
                    .parent
                    .as_ref()
                    .map(Digest::to_string)
                    .unwrap_or_default(),
                comment: cfg.comment.clone().unwrap_or_default(),
                created: cfg.created.clone().unwrap_or_default(),
                docker_version: cfg.docker_version.clone().unwrap_or_default(),
                author: cfg.author.clone().unwrap_or_default(),
                config: cfg
                    .config
                    .as_ref()
                    .and_then(|c| serde_json::to_value(c).ok())
                    .unwrap_or(serde_json::Value::Null),
                architecture: cfg.architecture.clone(),
                variant: cfg.variant.clone().filter(|v| !v.is_empty()),
                os: cfg.os.clone(),
                size: to_i64(img.size),
                graph_driver: GraphDriver {
                    name: "overlay2".to_owned(),
                    data,
                },
                root_fs: RootFs {
                    kind: "layers".to_owned(),
                    layers: img.layers.iter().map(Digest::to_string).collect(),
                },
                metadata: ImageMetadata {
                    last_tag_time: last_tag,
                },
            })
        })
        .await
    }

    /// `GET /images/{name}/history`.
    pub async fn history(&self, name: String) -> Result<Vec<HistoryItem>> {
        let store = self.store.clone();
        blocking(move || {
            let img = store.lookup(&name)?;
            let items = store.history(&img.id)?;
            Ok(items
                .into_iter()
                .map(|h| HistoryItem {
                    id: h
                        .id
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "<missing>".to_owned()),
                    created: h.created,
                    created_by: h.created_by,
                    tags: if h.tags.is_empty() {
                        None
                    } else {
                        Some(h.tags)
                    },
                    size: to_i64(h.size),
                    comment: h.comment,
                })
                .collect())
        })
        .await
    }

    /// `POST /images/{name}/tag?repo=&tag=`.
    /// [`Images::tag`] for the builder, inline: its own image by ID and a reference it has
    /// validated. One short transaction, which writes nothing when the tag is unchanged (the
    /// cached rebuild), so no trip through the blocking pool.
    pub fn tag_built(&self, id: &Digest, reference: &Reference) -> Result<()> {
        let img = self.store.get(id)?;
        self.store.tag(&img.id, reference)?;
        self.log("tag", &img.id, &reference.familiar(), img.config.labels());
        Ok(())
    }

    pub async fn tag(&self, source: String, repo: String, tag: String) -> Result<()> {
        if repo.is_empty() {
            return Err(Error::invalid(
                "repository name must have at least one component",
            ));
        }
        let mut reference = Reference::parse_normalized(&repo)?;
        if reference.digest.is_some() {
            return Err(Error::invalid(
                "refusing to create a tag with a digest reference",
            ));
        }
        if berth_types::reference::is_full_hex_id(&reference.path) {
            return Err(Error::invalid(format!(
                "invalid repository name ({repo}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        if !tag.is_empty() {
            if !valid_tag(&tag) {
                return Err(Error::invalid(format!("invalid tag format: {tag}")));
            }
            reference = reference.with_tag(&tag);
        } else if reference.tag.is_none() {
            reference = reference.with_tag("latest");
        }
        let store = self.store.clone();
        let r = reference.clone();
        let (id, labels) = blocking(move || {
            let img = store.lookup(&source)?;
            store.tag(&img.id, &r)?;
            Ok((img.id, img.config.labels()))
        })
        .await?;
        self.log("tag", &id, &reference.familiar(), labels);
        Ok(())
    }

    /// Log dockerd's untag/delete events for what a removal did. `images` are the image IDs that
    /// existed before: `Deleted` lines for layers get no event, as with dockerd.
    fn log_removals(
        &self,
        image: Option<&Digest>,
        images: &BTreeSet<Digest>,
        events: &[RemoveEvent],
    ) -> Vec<DeleteItem> {
        events
            .iter()
            .map(|e| match e {
                RemoveEvent::Untagged(r) => {
                    if let Some(id) = image {
                        self.log("untag", id, &id.to_string(), BTreeMap::new());
                    }
                    DeleteItem::Untagged(r.clone())
                }
                RemoveEvent::Deleted(d) => {
                    if images.contains(d) {
                        self.log("delete", d, &d.to_string(), BTreeMap::new());
                    }
                    DeleteItem::Deleted(d.to_string())
                }
            })
            .collect()
    }

    /// `DELETE /images/{name}?force=&noprune=`.
    pub async fn remove(
        &self,
        name: String,
        force: bool,
        noprune: bool,
    ) -> Result<Vec<DeleteItem>> {
        let store = self.store.clone();
        let usage = self.usage();
        let (id, ids, events) = blocking(move || {
            let img = store.lookup(&name)?;
            let ids: BTreeSet<Digest> = store.list()?.into_iter().map(|i| i.id).collect();
            let opts = RemoveOptions {
                force,
                prune_parents: !noprune,
            };
            let events = store.remove(&name, opts, &usage)?;
            Ok((img.id, ids, events))
        })
        .await?;
        Ok(self.log_removals(Some(&id), &ids, &events))
    }

    /// `POST /images/prune?filters=`.
    pub async fn prune(&self, filters: Filters) -> Result<ImagePruneReport> {
        let mut opts = PruneOptions::default();
        let now = chrono::Utc::now().timestamp();
        for (key, vals) in &filters {
            match key.as_str() {
                "dangling" => {
                    if let Some(d) = bool_filter(&filters, "dangling")? {
                        opts.all = !d;
                    }
                }
                "until" => {
                    for v in vals {
                        opts.until = Some(parse_timestamp(v, now)?);
                    }
                }
                "label" | "label!" => {
                    for v in vals {
                        let (k, val) = match v.split_once('=') {
                            Some((k, val)) => (k.to_owned(), Some(val.to_owned())),
                            None => (v.clone(), None),
                        };
                        opts.labels.push((k, val, key == "label!"));
                    }
                }
                _ => return Err(Error::invalid(format!("invalid filter '{key}'"))),
            }
        }
        let store = self.store.clone();
        let usage = self.usage();
        let (ids, owners, report) = blocking(move || {
            let images = store.list()?;
            let ids: BTreeSet<Digest> = images.iter().map(|i| i.id.clone()).collect();
            // Prune's untag lines name only the reference: remember whose it was for the event.
            let owners: BTreeMap<String, Digest> = images
                .iter()
                .flat_map(|i| {
                    i.repo_tags
                        .iter()
                        .chain(&i.repo_digests)
                        .map(|r| (r.familiar(), i.id.clone()))
                })
                .collect();
            Ok((ids, owners, store.prune(&opts, &usage)?))
        })
        .await?;
        for e in &report.deleted {
            if let RemoveEvent::Untagged(r) = e
                && let Some(id) = owners.get(r)
            {
                self.log("untag", id, &id.to_string(), BTreeMap::new());
            }
        }
        let deleted = self.log_removals(None, &ids, &report.deleted);
        let mut attributes = BTreeMap::new();
        attributes.insert("reclaimed".to_owned(), report.space_reclaimed.to_string());
        self.events.log(
            "image",
            "prune",
            Actor {
                id: String::new(),
                attributes,
            },
        );
        Ok(ImagePruneReport {
            images_deleted: if deleted.is_empty() {
                None
            } else {
                Some(deleted)
            },
            space_reclaimed: report.space_reclaimed,
        })
    }

    /// Resolve names for `save` before any byte is written, so an unknown name is a clean 404.
    pub async fn check_names(&self, names: Vec<String>) -> Result<()> {
        if names.is_empty() {
            return Err(Error::invalid("no images specified"));
        }
        let store = self.store.clone();
        blocking(move || {
            for n in &names {
                store.lookup(n)?;
            }
            Ok(())
        })
        .await
    }

    /// `GET /images/get`: write the tar into `out` (a pipe the API streams from).
    pub async fn save(&self, names: Vec<String>, mut out: Box<dyn Write + Send>) -> Result<()> {
        let store = self.store.clone();
        let ids = blocking(move || {
            let ids = names
                .iter()
                .map(|n| store.lookup(n).map(|i| (i.id, i.config.labels())))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            store.save(&names, &mut out)?;
            out.flush()
                .map_err(|e| Error::internal(format!("writing image archive: {e}")))?;
            Ok(ids)
        })
        .await?;
        for (id, labels) in ids {
            self.log("save", &id, &id.to_string(), labels);
        }
        Ok(())
    }

    /// `POST /images/load`: read the archive from `input`, report progress as it goes.
    pub async fn load(
        &self,
        mut input: Box<dyn Read + Send>,
        mut progress: Box<dyn FnMut(LoadProgress) + Send>,
    ) -> Result<Vec<LoadedImage>> {
        let store = self.store.clone();
        let loaded = blocking(move || Ok(store.load(&mut input, &mut *progress)?)).await?;
        // One event per loaded reference (named like the "Loaded image:" line), or per ID for
        // untagged images, as dockerd with the containerd store reports them.
        for img in &loaded {
            if img.tags.is_empty() {
                self.log("load", &img.id, &img.id.to_string(), BTreeMap::new());
            }
            for t in &img.tags {
                self.log("load", &img.id, &t.familiar(), BTreeMap::new());
            }
        }
        Ok(loaded)
    }

    /// `POST /images/create?fromSrc=`: one layer from a root filesystem tar.
    pub async fn import(
        &self,
        mut input: Box<dyn Read + Send>,
        params: ImportParams,
        mut progress: Box<dyn FnMut(LoadProgress) + Send>,
    ) -> Result<Digest> {
        let reference = match params.repo.as_deref().filter(|r| !r.is_empty()) {
            Some(repo) => {
                let mut r = Reference::parse_normalized(repo)?;
                if r.digest.is_some() {
                    return Err(Error::invalid("cannot import digest reference"));
                }
                match params.tag.as_deref().filter(|t| !t.is_empty()) {
                    Some(t) => {
                        if !valid_tag(t) {
                            return Err(Error::invalid(format!("invalid tag format: {t}")));
                        }
                        r = r.with_tag(t);
                    }
                    None if r.tag.is_none() => r = r.with_tag("latest"),
                    None => {}
                }
                Some(r)
            }
            None => None,
        };
        let mut config = ImageConfig::default();
        // No `--change`: no `config` object at all, so the config bytes (the image ID) stay
        // what a plain import always produced.
        if !params.changes.is_empty() {
            berth_image::apply_changes(
                config.config.get_or_insert_with(Default::default),
                &params.changes,
            )?;
        }
        let opts = ImportOptions {
            config,
            message: params.message.filter(|m| !m.is_empty()),
            reference: reference.clone(),
        };
        let store = self.store.clone();
        let id = blocking(move || Ok(store.import(&mut input, opts, &mut *progress)?)).await?;
        self.log("import", &id, &id.to_string(), BTreeMap::new());
        if let Some(r) = reference {
            self.log("tag", &id, &r.familiar(), BTreeMap::new());
        }
        Ok(id)
    }

    /// Images part of `GET /system/df`.
    pub async fn disk_usage(&self) -> Result<DiskUsage> {
        let store = self.store.clone();
        blocking(move || {
            let du = store.disk_usage()?;
            let shared: BTreeMap<Digest, (u64, u64)> = du
                .images
                .into_iter()
                .map(|(id, size, s)| (id, (size, s)))
                .collect();
            let mut images: Vec<ImageSummary> = store
                .list()?
                .iter()
                .map(|img| {
                    let mut s = summary(img);
                    s.containers = 0;
                    s.shared_size = shared.get(&img.id).map(|(_, sh)| to_i64(*sh)).unwrap_or(0);
                    s
                })
                .collect();
            images.sort_by_key(|i| std::cmp::Reverse(i.created));
            Ok(DiskUsage {
                layers_size: to_i64(du.layers_size),
                images,
                containers: Vec::new(),
                volumes: Vec::new(),
                build_cache: Vec::new(),
            })
        })
        .await
    }

    /// Number of images as `docker info` counts them (tagged or not).
    pub async fn count(&self) -> Result<usize> {
        let store = self.store.clone();
        blocking(move || Ok(store.list()?.len())).await
    }

    /// Load `archive` (a docker-archive tar) if `reference` is not in the store yet.
    pub async fn ensure_loaded(&self, reference: &str, archive: Vec<u8>) -> Result<()> {
        let store = self.store.clone();
        let r = reference.to_owned();
        blocking(move || {
            match store.lookup(&r) {
                Ok(_) => return Ok(()),
                Err(berth_image::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let mut input = std::io::Cursor::new(archive);
            store.load(&mut input, &mut |_| {})?;
            Ok(())
        })
        .await
    }
}

/// dockerd's overlay2 GraphDriver data for an image: its top layer is the "upper" dir, the
/// layers below it (top first) the lower dirs.
fn overlay_data(dirs: &[PathBuf]) -> Option<BTreeMap<String, String>> {
    let (top, lower) = dirs.split_last()?;
    let base = top.parent()?;
    let mut m = BTreeMap::new();
    m.insert(
        "MergedDir".to_owned(),
        base.join("merged").display().to_string(),
    );
    m.insert("UpperDir".to_owned(), top.display().to_string());
    m.insert(
        "WorkDir".to_owned(),
        base.join("work").display().to_string(),
    );
    if !lower.is_empty() {
        let l: Vec<String> = lower
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        m.insert("LowerDir".to_owned(), l.join(":"));
    }
    Some(m)
}

impl Images {
    /// `docker import URL`: stream an http(s) source into a blocking reader.
    pub async fn download(&self, url: &str) -> Result<Box<dyn Read + Send>> {
        crate::fetch::get_reader(url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("*", "user/app"));
        assert!(glob_match("*/*", "user/app"));
        assert!(glob_match("b?sy[a-c]ox", "busybox"));
        assert!(!glob_match("b?sy[^a-c]ox", "busybox"));
    }

    #[test]
    fn tags() {
        assert!(valid_tag("latest"));
        assert!(valid_tag("1.0-rc_1"));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag(""));
        assert!(!valid_tag(&"a".repeat(129)));
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("1700000000.123456789", 0).unwrap(),
            1700000000
        );
        assert_eq!(parse_timestamp("10m", 1000).unwrap(), 400);
        assert_eq!(parse_timestamp("1h30m", 10000).unwrap(), 10000 - 5400);
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00Z", 0).unwrap(),
            1704067200
        );
        assert!(parse_timestamp("soon", 0).is_err());
    }

    #[test]
    fn overlay() {
        let d = overlay_data(&[
            PathBuf::from("/r/overlay2/a/diff"),
            PathBuf::from("/r/overlay2/b/diff"),
        ])
        .unwrap();
        assert_eq!(d["UpperDir"], "/r/overlay2/b/diff");
        assert_eq!(d["MergedDir"], "/r/overlay2/b/merged");
        assert_eq!(d["LowerDir"], "/r/overlay2/a/diff");
    }
}
