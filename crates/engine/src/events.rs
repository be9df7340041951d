//! The events bus: every state change is published here as a Docker events message. Live
//! subscribers get a broadcast; `docker events --since` is answered from a bounded in-memory
//! history (old events fall off the front, nothing is kept on disk).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many recent events `--since` can replay (dockerd keeps 256; a little more is cheap).
const HISTORY: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One message of `GET /events`, serialized exactly like dockerd's `events.Message` (legacy
/// `status`/`id`/`from` only for container and image events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    /// Build a message the way dockerd's `events.Log` does, stamped now.
    pub fn new(kind: &str, action: &str, actor: Actor) -> Event {
        let now = chrono::Utc::now();
        let time_nano = now
            .timestamp_nanos_opt()
            .unwrap_or(now.timestamp() * 1_000_000_000);
        let (status, id, from) = match kind {
            "container" => (
                action.to_owned(),
                actor.id.clone(),
                actor.attributes.get("image").cloned().unwrap_or_default(),
            ),
            "image" => (action.to_owned(), actor.id.clone(), String::new()),
            _ => (String::new(), String::new(), String::new()),
        };
        Event {
            status,
            id,
            from,
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor,
            scope: "local".to_owned(),
            time: now.timestamp(),
            time_nano,
        }
    }
}

/// Filters of `GET /events` (already parsed from the query's JSON).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub filters: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    pub const KEYS: &'static [&'static str] = &[
        "config",
        "container",
        "daemon",
        "event",
        "image",
        "label",
        "network",
        "node",
        "plugin",
        "scope",
        "secret",
        "service",
        "type",
        "volume",
    ];

    fn any(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        match self.filters.get(key) {
            None => true,
            Some(vs) if vs.is_empty() => true,
            Some(vs) => vs.iter().any(|v| pred(v)),
        }
    }

    pub fn matches(&self, ev: &Event) -> bool {
        let name = ev.actor.attributes.get("name").map(String::as_str);
        let image_attr = ev.actor.attributes.get("image").map(String::as_str);
        self.any("type", |t| t == ev.kind)
            && self.any("event", |a| {
                // `exec_start` style filters match "exec_start: sh -c ..." actions too.
                a == ev.action || ev.action.starts_with(&format!("{a}:"))
            })
            && self.any("scope", |s| s == ev.scope)
            && self.any("container", |c| {
                ev.kind == "container" && (same_id(c, &ev.actor.id) || name == Some(c))
            })
            && self.any("image", |i| {
                let targets: Vec<&str> = match ev.kind.as_str() {
                    "image" => [Some(ev.actor.id.as_str()), name]
                        .into_iter()
                        .flatten()
                        .collect(),
                    "container" => image_attr.into_iter().collect(),
                    _ => Vec::new(),
                };
                targets.iter().any(|t| image_matches(i, t))
            })
            && self.any("label", |l| {
                let (k, v) = match l.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (l, None),
                };
                match (ev.actor.attributes.get(k), v) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have == want,
                    (None, _) => false,
                }
            })
            && [
                "network", "volume", "plugin", "daemon", "service", "node", "secret", "config",
            ]
            .iter()
            .all(|k| {
                self.any(k, |v| {
                    ev.kind == *k && (same_id(v, &ev.actor.id) || name == Some(v))
                })
            })
    }
}

fn same_id(filter: &str, id: &str) -> bool {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    let f = filter.strip_prefix("sha256:").unwrap_or(filter);
    !f.is_empty() && id.starts_with(f)
}

/// Image filters match the ID (or a prefix), or the reference with and without `:latest` and
/// the `docker.io/library/` prefix, as users type them.
fn image_matches(filter: &str, target: &str) -> bool {
    if same_id(filter, target) || filter == target {
        return true;
    }
    let norm = |s: &str| -> String {
        let s = s.strip_prefix("docker.io/").unwrap_or(s);
        let s = s.strip_prefix("library/").unwrap_or(s);
        let last = s.rsplit('/').next().unwrap_or(s);
        if last.contains(':') || last.contains('@') {
            s.to_owned()
        } else {
            format!("{s}:latest")
        }
    };
    norm(filter) == norm(target)
}

struct Inner {
    history: VecDeque<Event>,
}

/// Publish/subscribe for events. Publishing and subscribing take the same lock so a subscriber
/// sees every event exactly once: either in its history snapshot or on its receiver.
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    inner: Mutex<Inner>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (tx, _) = broadcast::channel(256);
        EventBus {
            tx,
            inner: Mutex::new(Inner {
                history: VecDeque::with_capacity(64),
            }),
        }
    }

    pub fn publish(&self, ev: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.history.len() >= HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(ev.clone());
        // No receivers is fine: nobody is listening.
        let _ = self.tx.send(ev);
    }

    /// Log an event the way dockerd's `events.Log` does.
    pub fn log(&self, kind: &str, action: &str, actor: Actor) {
        self.publish(Event::new(kind, action, actor));
    }

    /// Open live subscriptions.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Past events with `time_nano >= since_nano` plus a receiver for everything after.
    pub fn subscribe(&self, since_nano: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let past = match since_nano {
            Some(since) => inner
                .history
                .iter()
                .filter(|e| e.time_nano >= since)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (past, self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_event(action: &str, id: &str, name: &str) -> Event {
        let mut attributes = BTreeMap::new();
        attributes.insert("name".to_owned(), name.to_owned());
        Event::new(
            "image",
            action,
            Actor {
                id: id.to_owned(),
                attributes,
            },
        )
    }

    #[test]
    fn image_event_serializes_like_dockerd() {
        let ev = image_event("tag", "sha256:abc", "busybox:latest");
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["status"], "tag");
        assert_eq!(v["id"], "sha256:abc");
        assert!(v.get("from").is_none());
        assert_eq!(v["Type"], "image");
        assert_eq!(v["Action"], "tag");
        assert_eq!(v["Actor"]["ID"], "sha256:abc");
        assert_eq!(v["Actor"]["Attributes"]["name"], "busybox:latest");
        assert_eq!(v["scope"], "local");
        assert!(v["timeNano"].as_i64().unwrap() > 0);
    }

    #[test]
    fn history_and_live_are_disjoint() {
        let bus = EventBus::new();
        bus.publish(image_event("tag", "sha256:1", "a:latest"));
        let (past, mut rx) = bus.subscribe(Some(0));
        assert_eq!(past.len(), 1);
        bus.publish(image_event("untag", "sha256:1", "sha256:1"));
        assert_eq!(rx.try_recv().unwrap().action, "untag");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn history_is_bounded() {
        let bus = EventBus::new();
        for i in 0..(HISTORY + 10) {
            bus.publish(image_event("tag", &format!("sha256:{i}"), "a"));
        }
        let (past, _) = bus.subscribe(Some(0));
        assert_eq!(past.len(), HISTORY);
        assert_eq!(past[0].actor.id, "sha256:10");
    }

    #[test]
    fn filters() {
        let ev = image_event("tag", "sha256:abcdef", "busybox:latest");
        let f = |k: &str, v: &str| EventFilter {
            filters: [(k.to_owned(), vec![v.to_owned()])].into_iter().collect(),
        };
        assert!(f("type", "image").matches(&ev));
        assert!(!f("type", "container").matches(&ev));
        assert!(f("event", "tag").matches(&ev));
        assert!(!f("event", "untag").matches(&ev));
        assert!(f("image", "busybox").matches(&ev));
        assert!(f("image", "docker.io/library/busybox:latest").matches(&ev));
        assert!(f("image", "abcdef").matches(&ev));
        assert!(!f("image", "alpine").matches(&ev));
        assert!(!f("container", "x").matches(&ev));
        assert!(f("label", "name=busybox:latest").matches(&ev));
    }
}
