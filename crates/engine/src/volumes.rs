//! The volumes service: Docker's `/volumes` API over `berth_volume::VolumeStore` (local
//! driver), with filters, prune and events. Containers share the same store (their mounts
//! reference volumes; see containers/mounts.rs).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_volume::{Volume, VolumeStore};
use serde_json::{Value, json};

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Actor, EventBus};

impl From<berth_volume::Error> for Error {
    fn from(e: berth_volume::Error) -> Error {
        use berth_volume::Error as E;
        let kind = match &e {
            E::NotFound(_) => ErrorKind::NotFound,
            E::Invalid(_) => ErrorKind::InvalidInput,
            E::InUse(_) => ErrorKind::Conflict,
            E::Io(_) => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

#[derive(Clone)]
pub struct Volumes {
    store: Arc<VolumeStore>,
    events: Arc<EventBus>,
}

fn str_map(v: Option<&Value>) -> Result<BTreeMap<String, String>> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => Ok(o
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect()),
        Some(_) => Err(Error::invalid("labels and options must be objects")),
    }
}

/// `label=key` / `label=key=value` (and `label!=`) against a volume's labels.
fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(want),
    }
}

fn truthy(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl Volumes {
    pub fn open(data_root: &std::path::Path, events: Arc<EventBus>) -> Result<Volumes> {
        Ok(Volumes {
            store: Arc::new(VolumeStore::open(data_root)?),
            events,
        })
    }

    pub fn store(&self) -> &Arc<VolumeStore> {
        &self.store
    }

    pub(crate) fn event(&self, action: &str, name: &str, extra: &[(&str, String)]) {
        let mut attributes = BTreeMap::new();
        attributes.insert("driver".to_owned(), "local".to_owned());
        for (k, v) in extra {
            attributes.insert((*k).to_owned(), v.clone());
        }
        self.events.log(
            "volume",
            action,
            Actor {
                id: name.to_owned(),
                attributes,
            },
        );
    }

    /// Create for a container's mount (named or anonymous); logs `create` when it is new.
    pub(crate) fn create_sync(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
        driver: &str,
    ) -> Result<Volume> {
        let (v, created) = self.store.create(name, driver, labels, options)?;
        if created {
            self.event("create", &v.name, &[]);
        }
        Ok(v)
    }

    /// `POST /volumes/create` with Docker's body (`Name`, `Driver`, `DriverOpts`, `Labels`).
    pub async fn create(&self, body: Value) -> Result<Value> {
        let name = body
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let driver = body
            .get("Driver")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let labels = str_map(body.get("Labels"))?;
        let opts = str_map(body.get("DriverOpts"))?;
        let this = self.clone();
        let v = blocking(move || {
            let n = (!name.is_empty()).then_some(name.as_str());
            let (v, created) = this.store.create(n, &driver, labels, opts)?;
            if created {
                this.event("create", &v.name, &[]);
            }
            Ok(v)
        })
        .await?;
        Ok(v.to_json())
    }

    pub async fn inspect(&self, name: &str) -> Result<Value> {
        Ok(self.store.get(name)?.to_json())
    }

    /// `GET /volumes?filters=`: dangling, name, label, label!, driver.
    pub async fn list(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Value> {
        for k in filters.keys() {
            if !matches!(
                k.as_str(),
                "dangling" | "name" | "label" | "label!" | "driver"
            ) {
                return Err(Error::invalid(format!("invalid filter '{k}'")));
            }
        }
        let mut dangling = None;
        for d in filters.get("dangling").into_iter().flatten() {
            dangling = Some(truthy(d).ok_or_else(|| {
                Error::invalid(format!(
                    "invalid filter 'dangling={d}': invalid value for 'dangling', expected 'true' or 'false'"
                ))
            })?);
        }
        let any = |key: &str, pred: &dyn Fn(&str) -> bool| match filters.get(key) {
            None => true,
            Some(v) if v.is_empty() => true,
            Some(v) => v.iter().any(|x| pred(x)),
        };
        let mut out = Vec::new();
        for v in self.store.list() {
            let used = !self.store.users(&v.name).is_empty();
            let keep = dangling.is_none_or(|d| d != used)
                && any("name", &|n| v.name.contains(n))
                && any("driver", &|d| v.driver == d)
                && filters
                    .get("label")
                    .is_none_or(|ls| ls.iter().all(|l| label_matches(&v.labels, l)))
                && filters
                    .get("label!")
                    .is_none_or(|ls| ls.iter().all(|l| !label_matches(&v.labels, l)));
            if keep {
                out.push(v.to_json());
            }
        }
        Ok(json!({ "Volumes": out, "Warnings": Value::Null }))
    }

    /// `DELETE /volumes/{name}?force=`.
    pub async fn remove(&self, name: &str, force: bool) -> Result<()> {
        let this = self.clone();
        let n = name.to_owned();
        blocking(move || {
            let existed = this.store.get(&n).is_ok();
            this.store.remove(&n, force)?;
            if existed {
                this.event("destroy", &n, &[]);
            }
            Ok(())
        })
        .await
    }

    /// `POST /volumes/prune`: unused volumes; only anonymous ones unless `all=true` (API 1.42+
    /// behaviour; `all_default` is true for older clients, which pruned everything).
    pub async fn prune(
        &self,
        filters: &BTreeMap<String, Vec<String>>,
        all_default: bool,
    ) -> Result<Value> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "label" | "label!" | "all") {
                return Err(Error::invalid(format!("invalid filter '{k}'")));
            }
        }
        let mut all = all_default;
        for a in filters.get("all").into_iter().flatten() {
            all = truthy(a).ok_or_else(|| Error::invalid(format!("invalid filter 'all={a}'")))?;
        }
        let filters = filters.clone();
        let this = self.clone();
        blocking(move || {
            let mut deleted = Vec::new();
            let mut space = 0i64;
            for v in this.store.list() {
                if !this.store.users(&v.name).is_empty() || (!all && !v.anonymous()) {
                    continue;
                }
                if !filters
                    .get("label")
                    .is_none_or(|ls| ls.iter().all(|l| label_matches(&v.labels, l)))
                    || !filters
                        .get("label!")
                        .is_none_or(|ls| ls.iter().all(|l| !label_matches(&v.labels, l)))
                {
                    continue;
                }
                let size = this.store.size(&v.name).max(0);
                match this.store.remove(&v.name, false) {
                    Ok(()) => {
                        this.event("destroy", &v.name, &[]);
                        space += size;
                        deleted.push(v.name.clone());
                    }
                    Err(e) => tracing::warn!("pruning volume {}: {e}", v.name),
                }
            }
            this.events.log(
                "volume",
                "prune",
                Actor {
                    id: String::new(),
                    attributes: [("reclaimed".to_owned(), space.to_string())]
                        .into_iter()
                        .collect(),
                },
            );
            Ok(json!({
                "VolumesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
                "SpaceReclaimed": space,
            }))
        })
        .await
    }

    /// `system df` volumes: each volume with `UsageData` (size and reference count).
    pub async fn disk_usage(&self) -> Result<Vec<Value>> {
        let store = self.store.clone();
        blocking(move || {
            Ok(store
                .list()
                .iter()
                .map(|v| {
                    let mut j = v.to_json();
                    j["UsageData"] = json!({
                        "Size": store.size(&v.name),
                        "RefCount": store.users(&v.name).len(),
                    });
                    j
                })
                .collect())
        })
        .await
    }
}
