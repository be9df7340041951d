//! Volume commands: `volume create/ls/inspect/rm/prune`, output as docker CLI 28's
//! volumeContext.

use bytes::Bytes;
use hyper::Method;
use serde_json::{Map, Value, json};

use crate::cli::{VolumeCreateArgs, VolumeLsArgs, VolumePruneArgs, VolumeRmArgs};
use crate::client::{Client, filters_json, path_escape, urlencode};
use crate::commands::image::confirm;
use crate::commands::out;
use crate::error::CliError;
use crate::format::json::Ordered;
use crate::format::units::human_size;
use crate::format::{Format, Row};

const TABLE: &str = "table {{.Driver}}\t{{.Name}}";
const QUIET: &str = "{{.Name}}";

fn kv(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|s| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (k.to_owned(), Value::String(v.to_owned()))
        })
        .collect()
}

pub async fn create(client: &Client, a: VolumeCreateArgs) -> Result<(), CliError> {
    let name = match (a.name.as_deref(), a.args.first()) {
        (Some(n), Some(p)) if n != p => {
            return Err(CliError::msg(
                "conflicting options: cannot specify a volume-name through both --name and as a positional arg",
            ));
        }
        (Some(n), _) => n.to_owned(),
        (None, Some(p)) => p.clone(),
        (None, None) => String::new(),
    };
    let body = json!({
        "Name": name,
        "Driver": a.driver,
        "DriverOpts": kv(&a.opt),
        "Labels": kv(&a.label),
    });
    let r = client
        .raw(
            Method::POST,
            "/volumes/create",
            Some(Bytes::from(body.to_string())),
        )
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let v = Ordered::parse(&r.body).map_err(|e| CliError::msg(e.to_string()))?;
    out(&format!(
        "{}\n",
        v.get("Name").and_then(Ordered::as_str).unwrap_or("")
    ))
}

/// Go's sortorder.NaturalLess: digit runs compare as numbers.
fn natural_less(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..nx], &y[..ny]);
                let tx = dx.iter().skip_while(|c| **c == b'0').count();
                let ty = dy.iter().skip_while(|c| **c == b'0').count();
                let o = tx
                    .cmp(&ty)
                    .then_with(|| dx[nx - tx..].cmp(&dy[ny - ty..]))
                    .then_with(|| nx.cmp(&ny));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn s(v: &Ordered, k: &str) -> String {
    v.get(k).and_then(Ordered::as_str).unwrap_or("").to_owned()
}

fn labels(v: &Ordered) -> String {
    match v.get("Labels") {
        Some(Ordered::Object(o)) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// A row of docker's volumeContext (also used by `system df -v`).
pub fn volume_row(v: &Ordered) -> Row {
    let usage = |k: &str| match v.get("UsageData").and_then(|u| u.get(k)) {
        Some(Ordered::Number(n)) => n.as_i64(),
        _ => None,
    };
    let size = match usage("Size") {
        Some(n) if n >= 0 => human_size(n as f64),
        _ => "N/A".to_owned(),
    };
    let links = match usage("RefCount") {
        Some(n) if n >= 0 => n.to_string(),
        _ => "N/A".to_owned(),
    };
    Row::new()
        .with("Driver", "DRIVER", s(v, "Driver"))
        .with("Name", "VOLUME NAME", s(v, "Name"))
        .with("Scope", "SCOPE", s(v, "Scope"))
        .with("Mountpoint", "MOUNTPOINT", s(v, "Mountpoint"))
        .with("Labels", "LABELS", labels(v))
        .with("Links", "LINKS", links)
        .with("Size", "SIZE", size)
        .with("Group", "GROUP", "N/A")
        .with("Availability", "AVAILABILITY", "N/A")
        .with("Status", "STATUS", "N/A")
}

pub async fn ls(client: &Client, a: VolumeLsArgs) -> Result<(), CliError> {
    let mut q = String::from("/volumes");
    if !a.filter.is_empty() {
        q.push_str(&format!(
            "?filters={}",
            urlencode(&filters_json(&a.filter)?)
        ));
    }
    let list = client.get_json(&q).await?;
    let mut vols: Vec<Ordered> = match list.get("Volumes") {
        Some(Ordered::Array(v)) => v.clone(),
        _ => Vec::new(),
    };
    vols.sort_by(|x, y| natural_less(&s(x, "Name"), &s(y, "Name")));
    let default = if a.quiet { QUIET } else { TABLE };
    let user = if a.format.is_empty() || (a.quiet && a.format == "table") {
        default
    } else {
        a.format.as_str()
    };
    let fmt = Format::new(user, default).typed("*formatter.volumeContext");
    let rows: Vec<Row> = vols.iter().map(volume_row).collect();
    out(&fmt
        .render_rows(&rows, &volume_row(&Ordered::Null))
        .map_err(CliError::msg)?)
}

pub async fn rm(client: &Client, a: VolumeRmArgs) -> Result<(), CliError> {
    let mut errs = Vec::new();
    for name in &a.args {
        let q = format!(
            "/volumes/{}{}",
            path_escape(name),
            if a.force { "?force=1" } else { "" }
        );
        let r = client.raw(Method::DELETE, &q, None).await?;
        if r.status.is_success() {
            out(&format!("{name}\n"))?;
        } else {
            errs.push(format!("Error response from daemon: {}", r.message()));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(CliError::msg(errs.join("\n")))
    }
}

pub async fn prune(client: &Client, a: VolumePruneArgs) -> Result<(), CliError> {
    // daemons before API 1.42 prune named volumes too; docker words its question accordingly
    let old = {
        let mut p = client
            .api_version
            .split('.')
            .map(|x| x.parse::<u32>().unwrap_or(0));
        (p.next().unwrap_or(1), p.next().unwrap_or(0)) < (1, 42)
    };
    let warning = if a.all || old {
        "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue?"
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue?"
    };
    if !a.force && !confirm(warning)? {
        return Ok(());
    }
    let mut filters = a.filter.clone();
    if a.all {
        filters.push("all=true".into());
    }
    let mut q = String::from("/volumes/prune");
    if !filters.is_empty() {
        q.push_str(&format!("?filters={}", urlencode(&filters_json(&filters)?)));
    }
    let r = client.raw(Method::POST, &q, None).await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let rep = Ordered::parse(&r.body).map_err(|e| CliError::msg(e.to_string()))?;
    let mut text = String::new();
    if let Some(Ordered::Array(items)) = rep.get("VolumesDeleted")
        && !items.is_empty()
    {
        text.push_str("Deleted Volumes:\n");
        for it in items {
            text.push_str(it.as_str().unwrap_or(""));
            text.push('\n');
        }
        text.push('\n');
    }
    let reclaimed = match rep.get("SpaceReclaimed") {
        Some(Ordered::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    };
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(reclaimed as f64)
    ));
    out(&text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn natural_order() {
        let mut v = vec!["v10", "v2", "a", "v1"];
        v.sort_by(|a, b| super::natural_less(a, b));
        assert_eq!(v, ["a", "v1", "v2", "v10"]);
    }
}
