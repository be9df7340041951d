//! The networks service: Docker's /networks API over berth-network, with events and the
//! filters of `network ls` / `network prune`.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_network::{CreateRequest, Network, Networks as Net};
use serde_json::{Value, json};

use crate::containers::Containers;
use crate::error::{Error, Result};
use crate::events::{Actor, EventBus};

#[derive(Clone)]
pub struct NetworkService {
    net: Arc<Net>,
    events: Arc<EventBus>,
    containers: Containers,
}

fn err(e: berth_network::Error) -> Error {
    crate::containers::net_error(e)
}

fn label_match(labels: &BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(f),
    }
}

impl NetworkService {
    pub fn new(net: Arc<Net>, events: Arc<EventBus>, containers: Containers) -> NetworkService {
        NetworkService {
            net,
            events,
            containers,
        }
    }

    fn event(&self, n: &Network, action: &str, extra: &[(&str, String)]) {
        let mut attributes = BTreeMap::new();
        attributes.insert("name".to_owned(), n.name.clone());
        attributes.insert("type".to_owned(), n.driver.clone());
        for (k, v) in extra {
            attributes.insert((*k).to_owned(), v.clone());
        }
        self.events.log(
            "network",
            action,
            Actor {
                id: n.id.clone(),
                attributes,
            },
        );
    }

    /// `GET /networks?filters=`.
    pub fn list(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Vec<Value>> {
        for k in filters.keys() {
            if !["name", "id", "driver", "label", "type", "scope", "dangling"].contains(&k.as_str())
            {
                return Err(Error::invalid(format!("invalid filter '{k}'")));
            }
        }
        let unused: Vec<String> = self.net.unused().into_iter().map(|n| n.id).collect();
        let f = |k: &str| filters.get(k).cloned().unwrap_or_default();
        let out = self
            .net
            .list()
            .into_iter()
            .filter(|n| {
                f("name").is_empty() || f("name").iter().any(|x| n.name.contains(x.as_str()))
            })
            .filter(|n| f("id").is_empty() || f("id").iter().any(|x| n.id.starts_with(x.as_str())))
            .filter(|n| f("driver").is_empty() || f("driver").contains(&n.driver))
            .filter(|n| f("label").iter().all(|l| label_match(&n.labels, l)))
            .filter(|_| f("scope").is_empty() || f("scope").iter().any(|s| s == "local"))
            .filter(|n| {
                f("type").is_empty() || f("type").iter().any(|t| (t == "builtin") == n.predefined)
            })
            .filter(|n| {
                f("dangling").is_empty()
                    || f("dangling").iter().any(|d| {
                        let want = d == "true" || d == "1";
                        want == (!n.predefined && unused.contains(&n.id))
                    })
            })
            .map(|n| self.net.inspect_json(&n, false))
            .collect();
        Ok(out)
    }

    /// `GET /networks/{id}`.
    pub fn inspect(&self, name_or_id: &str) -> Result<Value> {
        let n = self.net.get(name_or_id).map_err(err)?;
        Ok(self.net.inspect_json(&n, true))
    }

    /// `POST /networks/create`: (id, warning).
    pub async fn create(&self, body: &Value) -> Result<(String, String)> {
        let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let b = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
        let map = |v: Option<&Value>| -> BTreeMap<String, String> {
            v.and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default()
        };
        let ipam = body.get("IPAM").cloned().unwrap_or(json!({}));
        let driver = ipam.get("Driver").and_then(Value::as_str).unwrap_or("");
        if !driver.is_empty() && driver != "default" {
            return Err(Error::not_found(format!("plugin \"{driver}\" not found")));
        }
        // one IPv4 and (with EnableIPv6) one IPv6 pool, told apart by their subnets
        let (v6, configs): (Vec<Value>, Vec<Value>) = ipam
            .get("Config")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .partition(|c| {
                c.get("Subnet")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .contains(':')
            });
        if configs.len() > 1 || v6.len() > 1 {
            return Err(Error::invalid(
                "berthd supports one IPv4 and one IPv6 subnet per network",
            ));
        }
        let c = configs.first().cloned().unwrap_or(json!({}));
        let cs = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        let c6 = v6.first().cloned().unwrap_or(json!({}));
        let cs6 = |k: &str| c6.get(k).and_then(Value::as_str).map(str::to_owned);
        let req = CreateRequest {
            name: s("Name"),
            driver: s("Driver"),
            internal: b("Internal"),
            attachable: b("Attachable"),
            subnet: cs("Subnet"),
            gateway: cs("Gateway"),
            ip_range: cs("IPRange"),
            ipam_options: map(ipam.get("Options")),
            options: map(body.get("Options")),
            labels: map(body.get("Labels")),
            enable_ipv6: b("EnableIPv6"),
            subnet6: cs6("Subnet"),
            gateway6: cs6("Gateway"),
        };
        if req.gateway.is_some() && req.subnet.is_none() {
            return Err(Error::invalid("gateway requires a subnet"));
        }
        let n = self.net.create(req).await.map_err(err)?;
        self.event(&n, "create", &[]);
        Ok((n.id, String::new()))
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove(&self, name_or_id: &str) -> Result<()> {
        let n = self.net.remove(name_or_id).await.map_err(err)?;
        self.event(&n, "destroy", &[]);
        Ok(())
    }

    /// `POST /networks/prune`: the names removed.
    pub async fn prune(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>> {
        let until = filters.get("until").and_then(|u| u.first()).cloned();
        let until = match until {
            Some(u) => Some(
                parse_until(&u)
                    .ok_or_else(|| Error::invalid(format!("invalid filter 'until={u}'")))?,
            ),
            None => None,
        };
        let mut out = Vec::new();
        for n in self.net.unused() {
            let labels = filters.get("label").cloned().unwrap_or_default();
            if !labels.iter().all(|l| label_match(&n.labels, l)) {
                continue;
            }
            if let Some(t) = until
                && chrono::DateTime::parse_from_rfc3339(&n.created)
                    .map(|c| c.timestamp() >= t)
                    .unwrap_or(false)
            {
                continue;
            }
            if self.remove(&n.id).await.is_ok() {
                out.push(n.name);
            }
        }
        Ok(out)
    }

    /// `POST /networks/{id}/connect`.
    pub async fn connect(
        &self,
        name_or_id: &str,
        container: &str,
        endpoint: Option<&Value>,
    ) -> Result<()> {
        let n = self.net.get(name_or_id).map_err(err)?;
        let ctr = self.containers.get(container)?;
        self.containers.connect(&ctr.id, &n, endpoint).await?;
        self.event(&n, "connect", &[("container", ctr.id.clone())]);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect(&self, name_or_id: &str, container: &str, force: bool) -> Result<()> {
        let n = self.net.get(name_or_id).map_err(err)?;
        let ctr = self.containers.get(container)?;
        self.containers.disconnect(&ctr.id, &n, force).await?;
        self.event(&n, "disconnect", &[("container", ctr.id.clone())]);
        Ok(())
    }
}

/// `until=`: a Unix timestamp, an RFC 3339 time or a duration ago (`24h`, `30m`, `10s`).
fn parse_until(u: &str) -> Option<i64> {
    if let Ok(t) = u.parse::<f64>() {
        return Some(t as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(u) {
        return Some(t.timestamp());
    }
    let (num, unit) = u.split_at(u.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "h" => n * 3600.0,
        "m" => n * 60.0,
        "s" => n,
        _ => return None,
    };
    Some(chrono::Utc::now().timestamp() - secs as i64)
}
