//! `docker import --change` / `commit --change`: the Dockerfile instructions that only touch the
//! image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR).

use std::collections::BTreeMap;

use berth_types::image_config::{ContainerConfig, ImageConfig};
use serde_json::Value;

use crate::error::{Error, Result};

/// JSON array form (`["a","b"]`) or shell form (`/bin/sh -c "..."`), as Dockerfiles allow.
fn exec_or_shell(args: &str) -> Vec<String> {
    if let Ok(v) = serde_json::from_str::<Vec<String>>(args) {
        return v;
    }
    vec!["/bin/sh".to_owned(), "-c".to_owned(), args.to_owned()]
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].replace("\\\"", "\"")
    } else {
        s.to_owned()
    }
}

/// Split on whitespace outside quotes.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `k=v k2="v 2"` or the legacy single pair `k v`.
fn pairs(instr: &str, args: &str) -> Result<Vec<(String, String)>> {
    let ws = words(args);
    if ws.is_empty() {
        return Err(Error::invalid(format!(
            "{instr} requires at least one argument"
        )));
    }
    if !ws[0].contains('=') {
        let (k, v) = args
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| Error::invalid(format!("{instr} must have two arguments")))?;
        return Ok(vec![(k.to_owned(), unquote(v))]);
    }
    ws.iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((unquote(k), unquote(v))),
            _ => Err(Error::invalid(format!(
                "{instr} names can not be blank or key=value pairs expected: {w}"
            ))),
        })
        .collect()
}

pub fn apply_changes(config: &mut ImageConfig, changes: &[String]) -> Result<()> {
    for line in changes {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (instr, args) = line
            .split_once(char::is_whitespace)
            .map(|(i, a)| (i, a.trim()))
            .unwrap_or((line, ""));
        let c: &mut ContainerConfig = config.config.get_or_insert_with(Default::default);
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => c.cmd = Some(exec_or_shell(args)),
            "ENTRYPOINT" => c.entrypoint = Some(exec_or_shell(args)),
            "ENV" => {
                let env = c.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs("ENV", args)? {
                    env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = c.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in pairs("LABEL", args)? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = c.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in words(args) {
                    let p = if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    };
                    ports.insert(p, Value::Object(Default::default()));
                }
            }
            "VOLUME" => {
                let vols = c.volumes.get_or_insert_with(BTreeMap::new);
                let list =
                    serde_json::from_str::<Vec<String>>(args).unwrap_or_else(|_| words(args));
                for v in list {
                    vols.insert(v, Value::Object(Default::default()));
                }
            }
            "WORKDIR" => c.working_dir = Some(unquote(args)),
            "USER" => c.user = Some(unquote(args)),
            "STOPSIGNAL" => c.stop_signal = Some(unquote(args)),
            "ONBUILD" => c
                .on_build
                .get_or_insert_with(Vec::new)
                .push(args.to_owned()),
            _ => {
                return Err(Error::invalid(format!(
                    "{instr} is not a valid change command"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut cfg = ImageConfig::default();
        apply_changes(
            &mut cfg,
            &[
                "CMD [\"/bin/sh\"]".into(),
                "ENV A=1 B=\"two words\"".into(),
                "ENV C 3".into(),
                "EXPOSE 80 53/udp".into(),
                "WORKDIR /app".into(),
                "LABEL a=b".into(),
                "ENTRYPOINT echo hi".into(),
            ],
        )
        .unwrap();
        let c = cfg.config.unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh"]);
        assert_eq!(c.env.unwrap(), vec!["A=1", "B=two words", "C=3"]);
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
        assert!(c.exposed_ports.unwrap().contains_key("53/udp"));
        assert_eq!(c.working_dir.unwrap(), "/app");
        assert_eq!(c.labels.unwrap()["a"], "b");
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        let mut cfg = ImageConfig::default();
        assert!(apply_changes(&mut cfg, &["RUN true".into()]).is_err());
    }
}
