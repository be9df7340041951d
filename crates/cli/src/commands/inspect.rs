//! `inspect` and `image inspect`: the daemon's raw JSON re-indented like docker (4 spaces,
//! daemon key order), or a `--format` template per object.

use crate::client::{Client, path_escape};
use crate::commands::out;
use crate::error::CliError;
use crate::format::Format;
use crate::format::json::{Ordered, indent};

const TYPES: &str = r#""config", "container", "image", "network", "node", "plugin", "secret", "service", "task", "volume""#;

enum Lookup {
    Found(bytes::Bytes),
    /// 404, with the daemon's message.
    Missing(String),
}

/// Look one object up by kind.
async fn fetch(
    client: &Client,
    kind: &str,
    name: &str,
    query: Option<&str>,
) -> Result<Lookup, CliError> {
    let n = path_escape(name);
    let q = query.map(|q| format!("?{q}")).unwrap_or_default();
    let path = match kind {
        "container" => format!("/containers/{n}/json{q}"),
        "image" => format!("/images/{n}/json{q}"),
        "network" => format!("/networks/{n}{q}"),
        "volume" => format!("/volumes/{n}"),
        "plugin" => format!("/plugins/{n}/json"),
        // Swarm objects: berth has no swarm; report them as missing.
        _ => return Ok(Lookup::Missing(format!("No such {kind}: {name}"))),
    };
    let r = client.raw(hyper::Method::GET, &path, None).await?;
    if r.status == hyper::StatusCode::NOT_FOUND {
        return Ok(Lookup::Missing(r.message()));
    }
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    Ok(Lookup::Found(r.body))
}

pub async fn run(
    client: &Client,
    names: &[String],
    format: &str,
    kind: &str,
    // Extra query: `size=1` for containers, `platform=...` for images.
    query: Option<&str>,
) -> Result<(), CliError> {
    run_with(client, names, format, kind, query, None).await
}

/// Like [`run`]; `typed` fills in, before a template sees an object, the fields docker's typed
/// struct has even when the daemon's JSON leaves them out (Go zero values).
pub async fn run_with(
    client: &Client,
    names: &[String],
    format: &str,
    kind: &str,
    query: Option<&str>,
    typed: Option<fn(&mut Ordered)>,
) -> Result<(), CliError> {
    let kinds: Vec<&str> = match kind {
        "" => vec!["container", "image", "network", "volume", "plugin"],
        "config" | "container" | "image" | "network" | "node" | "plugin" | "secret" | "service"
        | "task" | "volume" => vec![kind],
        other => {
            return Err(CliError::msg(format!(
                "unknown type: \"{other}\": must be one of {TYPES}"
            )));
        }
    };
    let tmpl = (!format.is_empty()).then(|| Format::new(format, ""));
    let mut raws: Vec<bytes::Bytes> = Vec::new();
    let mut errs: Vec<String> = Vec::new();
    let mut text = String::new();
    for name in names {
        let mut found = None;
        let mut missing = String::new();
        for k in &kinds {
            match fetch(client, k, name, query).await {
                Ok(Lookup::Found(b)) => {
                    found = Some(b);
                    break;
                }
                Ok(Lookup::Missing(m)) => missing = m,
                Err(e) => {
                    missing = e.message;
                    break;
                }
            }
        }
        let Some(raw) = found else {
            errs.push(if kind.is_empty() {
                format!("Error: No such object: {name}")
            } else if missing.starts_with("Error") {
                missing
            } else {
                format!("Error response from daemon: {missing}")
            });
            continue;
        };
        match &tmpl {
            None => raws.push(raw),
            Some(t) => {
                let mut v = Ordered::parse(&raw)
                    .map_err(|e| CliError::msg(format!("invalid JSON from daemon: {e}")))?;
                if let Some(fill) = typed {
                    fill(&mut v);
                }
                match t.render_value(&v) {
                    Ok(s) => {
                        text.push_str(&s);
                        text.push('\n');
                    }
                    Err(e) => errs.push(e),
                }
            }
        }
    }
    if tmpl.is_none() {
        text = if raws.is_empty() {
            "[]\n".to_string()
        } else {
            // docker joins the raw elements into one array, then json.Indent's it.
            let mut joined = Vec::new();
            joined.push(b'[');
            for (i, r) in raws.iter().enumerate() {
                if i > 0 {
                    joined.push(b',');
                }
                joined.extend_from_slice(r.trim_ascii());
            }
            joined.push(b']');
            format!("{}\n", indent(&joined, "    "))
        };
    }
    if tmpl.is_some() && text.is_empty() {
        // docker's template inspector writes a bare newline when nothing rendered.
        text.push('\n');
    }
    out(&text)?;
    if errs.is_empty() {
        Ok(())
    } else {
        Err(CliError::msg(errs.join("\n")))
    }
}
