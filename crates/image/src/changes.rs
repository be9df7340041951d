//! `--change` lines of `docker import`/`docker commit`: the Dockerfile instructions that only
//! touch the image config.

use std::collections::BTreeMap;

use berth_types::image_config::ContainerConfig;
use serde_json::Value;

use crate::{Error, Result};

/// Split words like a Dockerfile does for ENV/LABEL: whitespace separates, quotes group,
/// backslash escapes.
fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::InvalidArgument(format!(
            "unterminated quote in {s:?}"
        )));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `KEY=VALUE ...` pairs, or the legacy `KEY VALUE WITH SPACES` form.
fn pairs(instr: &str, rest: &str) -> Result<Vec<(String, String)>> {
    let w = words(rest)?;
    if w.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{instr} requires at least one argument"
        )));
    }
    if !w[0].contains('=') {
        // Legacy form: first word is the key, the remainder of the line is the value.
        let trimmed = rest.trim_start();
        let key_len = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
        let value = trimmed[key_len..].trim();
        if value.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{instr} must have two arguments"
            )));
        }
        let v = words(value)?.join(" ");
        return Ok(vec![(w[0].clone(), v)]);
    }
    w.into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(Error::InvalidArgument(format!(
                "Syntax error - can't find = in {kv:?}. Must be of the form: name=value"
            ))),
        })
        .collect()
}

/// JSON array form, or None for the shell form.
fn json_array(rest: &str) -> Option<Vec<String>> {
    let t = rest.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// Apply Dockerfile-style `--change` lines (CMD, ENTRYPOINT, ENV, EXPOSE, USER, WORKDIR, LABEL,
/// VOLUME, ONBUILD, STOPSIGNAL) to `config`, as Docker's commit/import do.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    let mut cmd_set = false;
    for line in changes {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instr, rest) = match line.find(char::is_whitespace) {
            Some(i) => (&line[..i], line[i..].trim()),
            None => (line, ""),
        };
        let lower = instr.to_ascii_lowercase();
        let shell = |rest: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), rest.to_owned()];
        match lower.as_str() {
            "cmd" => {
                config.cmd = Some(json_array(rest).unwrap_or_else(|| shell(rest)));
                cmd_set = true;
            }
            "entrypoint" => {
                config.entrypoint = Some(match json_array(rest) {
                    Some(v) => v,
                    None if rest.is_empty() => Vec::new(),
                    None => shell(rest),
                });
                // A new entrypoint drops an inherited CMD unless CMD was also given.
                if !cmd_set {
                    config.cmd = None;
                }
            }
            "env" => {
                let env = config.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs("ENV", rest)? {
                    let entry = format!("{k}={v}");
                    match env
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(k.as_str()))
                    {
                        Some(e) => *e = entry,
                        None => env.push(entry),
                    }
                }
            }
            "label" => {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in pairs("LABEL", rest)? {
                    labels.insert(k, v);
                }
            }
            "expose" => {
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                let w = words(rest)?;
                if w.is_empty() {
                    return Err(Error::InvalidArgument(
                        "EXPOSE requires at least one argument".into(),
                    ));
                }
                for p in w {
                    let (num, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    let (lo, hi) = match num.split_once('-') {
                        Some((a, b)) => (a, b),
                        None => (num, num),
                    };
                    let parse = |s: &str| {
                        s.parse::<u16>().map_err(|_| {
                            Error::InvalidArgument(format!("invalid containerPort: {num}"))
                        })
                    };
                    let (lo, hi) = (parse(lo)?, parse(hi)?);
                    if hi < lo {
                        return Err(Error::InvalidArgument(format!(
                            "invalid containerPort: {num}"
                        )));
                    }
                    for port in lo..=hi {
                        ports.insert(format!("{port}/{proto}"), Value::Object(Default::default()));
                    }
                }
            }
            "user" => config.user = Some(rest.to_owned()),
            "workdir" => {
                let dir = if rest.starts_with('/') {
                    rest.to_owned()
                } else {
                    let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
                    format!("{}/{}", base.trim_end_matches('/'), rest)
                };
                config.working_dir = Some(dir);
            }
            "volume" => {
                let vols = json_array(rest).map_or_else(|| words(rest), Ok)?;
                if vols.is_empty() {
                    return Err(Error::InvalidArgument(
                        "VOLUME requires at least one argument".into(),
                    ));
                }
                let map = config.volumes.get_or_insert_with(BTreeMap::new);
                for v in vols {
                    map.insert(v, Value::Object(Default::default()));
                }
            }
            "onbuild" => {
                let first = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if first == "ONBUILD" || first == "FROM" || first == "MAINTAINER" {
                    return Err(Error::InvalidArgument(format!(
                        "{first} isn't allowed as an ONBUILD trigger"
                    )));
                }
                config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(rest.to_owned());
            }
            "stopsignal" => config.stop_signal = Some(rest.to_owned()),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{lower} is not a valid change command"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(lines: &[&str]) -> Result<ContainerConfig> {
        let mut c = ContainerConfig::default();
        apply_changes(
            &mut c,
            &lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(c)
    }

    #[test]
    fn json_and_shell_forms() {
        let c = apply(&[r#"CMD ["sh", "-c", "echo hi"]"#]).unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["sh", "-c", "echo hi"]);
        let c = apply(&["cmd echo hi"]).unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        let c = apply(&["CMD x", r#"ENTRYPOINT ["/init"]"#]).unwrap();
        assert_eq!(c.entrypoint.unwrap(), vec!["/init"]);
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh", "-c", "x"]);
        let mut base = ContainerConfig {
            cmd: Some(vec!["old".into()]),
            ..Default::default()
        };
        apply_changes(&mut base, &["ENTRYPOINT top".into()]).unwrap();
        assert_eq!(base.cmd, None);
    }

    #[test]
    fn env_label_expose_volume() {
        let c = apply(&[
            "ENV A=1 B=\"two words\"",
            "ENV C three four",
            "ENV A=9",
            "LABEL com.x=\"y z\" k=v",
            "EXPOSE 80 53/udp 8000-8001",
            "VOLUME [\"/data\"]",
            "VOLUME /a /b",
            "USER nobody",
            "WORKDIR /app",
            "WORKDIR sub",
            "ONBUILD RUN make",
            "STOPSIGNAL SIGTERM",
        ])
        .unwrap();
        assert_eq!(c.env.unwrap(), vec!["A=9", "B=two words", "C=three four"]);
        let l = c.labels.unwrap();
        assert_eq!(l["com.x"], "y z");
        assert_eq!(l["k"], "v");
        let p: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(p, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        let v: Vec<_> = c.volumes.unwrap().into_keys().collect();
        assert_eq!(v, vec!["/a", "/b", "/data"]);
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(c.working_dir.as_deref(), Some("/app/sub"));
        assert_eq!(c.on_build.unwrap(), vec!["RUN make"]);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
    }

    #[test]
    fn invalid_commands() {
        let e = apply(&["RUN make"]).unwrap_err();
        assert_eq!(e.to_string(), "run is not a valid change command");
        assert!(apply(&["FROM x"]).is_err());
        assert!(apply(&["EXPOSE abc"]).is_err());
        assert!(apply(&["ENV"]).is_err());
    }
}
