//! Registry credentials on the client side, as the docker CLI keeps them: `config.json` in
//! `$DOCKER_CONFIG` (else `~/.docker`), `auths` entries (base64 `user:password`), a
//! `credsStore` for all registries or `credHelpers` per registry, run as
//! `docker-credential-<name> get|store|erase` (the docker credential helper protocol).
//! The daemon never sees this file: requests carry the credentials (X-Registry-Auth).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::error::CliError;

/// Docker Hub's key in config.json (its v1 index URL, for historical reasons).
pub const HUB_KEY: &str = "https://index.docker.io/v1/";

pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker")
}

pub fn config_file() -> PathBuf {
    config_dir().join("config.json")
}

/// The config.json key of a registry: Docker Hub's index URL, else the bare host[:port]
/// (docker's ConvertToHostname: scheme and path dropped).
pub fn server_key(server: &str) -> String {
    let host = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    if server.is_empty()
        || matches!(
            host,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    {
        HUB_KEY.to_owned()
    } else {
        host.to_owned()
    }
}

fn load() -> Result<Map<String, Value>, CliError> {
    let path = config_file();
    match std::fs::read(&path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(CliError::msg(format!(
                "loading config file: {}: invalid JSON",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(CliError::msg(format!(
            "loading config file: {}: {e}",
            path.display()
        ))),
    }
}

/// Write config.json atomically, private to the user (it may hold passwords).
fn save(cfg: &Map<String, Value>) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = config_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::msg(format!("creating {}: {e}", dir.display())))?;
    let path = config_file();
    let tmp = dir.join(".config.json.tmp");
    let text = serde_json::to_string_pretty(&Value::Object(cfg.clone()))
        .map_err(|e| CliError::msg(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| CliError::msg(format!("saving {}: {e}", path.display())))
}

/// The helper for `key`: `credHelpers[host]`, else `credsStore`.
fn helper_for(cfg: &Map<String, Value>, key: &str) -> Option<String> {
    let host = server_key(key);
    cfg.get("credHelpers")
        .and_then(|h| h.get(&host).or_else(|| h.get(key)))
        .or_else(|| cfg.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn run_helper(name: &str, action: &str, input: &str) -> Result<String, CliError> {
    let prog = format!("docker-credential-{name}");
    let mut child = Command::new(&prog)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::msg(format!("error getting credentials - err: {e}, out: ``")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits early closes the pipe; its status says why.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CliError::msg(format!("{prog}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(CliError::msg(stdout))
    }
}

/// (username, password) stored for a registry key, if any.
pub fn lookup(key: &str) -> Result<Option<(String, String)>, CliError> {
    let cfg = load()?;
    if let Some(h) = helper_for(&cfg, key) {
        return match run_helper(&h, "get", key) {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
                let u = v["Username"].as_str().unwrap_or("").to_owned();
                let p = v["Secret"].as_str().unwrap_or("").to_owned();
                Ok((!u.is_empty() || !p.is_empty()).then_some((u, p)))
            }
            Err(e) if e.message.contains("credentials not found") => Ok(None),
            Err(e) => Err(CliError::msg(format!(
                "error getting credentials - err: exit status 1, out: `{}`",
                e.message
            ))),
        };
    }
    let auths = cfg.get("auths").and_then(Value::as_object);
    let entry = auths.and_then(|a| {
        a.get(key).or_else(|| {
            a.iter()
                .find(|(k, _)| server_key(k) == server_key(key))
                .map(|(_, v)| v)
        })
    });
    let Some(entry) = entry else { return Ok(None) };
    if let Some(a) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| CliError::msg(format!("invalid auth configuration for {key}")))?;
        return Ok(raw
            .split_once(':')
            .map(|(u, p)| (u.to_owned(), p.to_owned())));
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) => Ok(Some((u.to_owned(), p.to_owned()))),
        _ => Ok(None),
    }
}

/// Store credentials: through the helper when configured (config.json then keeps an empty
/// `auths` entry, as docker does), else base64 in `auths`. Returns whether they went to the
/// file in plain text (docker warns then).
pub fn store(key: &str, user: &str, password: &str) -> Result<bool, CliError> {
    let mut cfg = load()?;
    let helper = helper_for(&cfg, key);
    let entry = match &helper {
        Some(h) => {
            let input = json!({"ServerURL": key, "Username": user, "Secret": password});
            run_helper(h, "store", &input.to_string()).map_err(|e| {
                CliError::msg(format!(
                    "error storing credentials - err: exit status 1, out: `{}`",
                    e.message
                ))
            })?;
            json!({})
        }
        None => {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            json!({ "auth": auth })
        }
    };
    let auths = cfg
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Some(a) = auths.as_object_mut() {
        a.insert(key.to_owned(), entry);
    }
    save(&cfg)?;
    Ok(helper.is_none())
}

/// Remove stored credentials. Returns false when none were recorded for `key`.
pub fn erase(key: &str) -> Result<bool, CliError> {
    let mut cfg = load()?;
    let had = cfg
        .get("auths")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(key));
    if !had {
        return Ok(false);
    }
    if let Some(h) = helper_for(&cfg, key)
        && let Err(e) = run_helper(&h, "erase", key)
    {
        // docker warns and still forgets the entry.
        eprintln!("WARNING: could not erase credentials: {key}: {}", e.message);
    }
    if let Some(a) = cfg.get_mut("auths").and_then(Value::as_object_mut) {
        a.remove(key);
    }
    save(&cfg)?;
    Ok(true)
}

/// The X-Registry-Auth value for a registry (base64url JSON AuthConfig; `{}` when none).
pub fn registry_auth(key: &str) -> Result<String, CliError> {
    let v = match lookup(key)? {
        Some((u, p)) => json!({"username": u, "password": p, "serveraddress": key}),
        None => json!({}),
    };
    Ok(base64::engine::general_purpose::URL_SAFE.encode(v.to_string()))
}

/// The X-Registry-Config value for builds: every credential in config.json's `auths`, as
/// base64url JSON `{server: AuthConfig}` (a FROM may pull from any of them), as the docker CLI
/// sends it.
pub fn registry_config() -> Result<String, CliError> {
    let cfg = load()?;
    let keys: Vec<String> = cfg
        .get("auths")
        .and_then(Value::as_object)
        .map(|a| a.keys().cloned().collect())
        .unwrap_or_default();
    let mut m = Map::new();
    for k in keys {
        if let Some((u, p)) = lookup(&k)? {
            m.insert(
                k.clone(),
                json!({"username": u, "password": p, "serveraddress": k}),
            );
        }
    }
    Ok(base64::engine::general_purpose::URL_SAFE.encode(Value::Object(m).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_like_docker() {
        assert_eq!(server_key("docker.io"), HUB_KEY);
        assert_eq!(server_key(""), HUB_KEY);
        assert_eq!(server_key("https://index.docker.io/v1/"), HUB_KEY);
        assert_eq!(server_key("localhost:5000"), "localhost:5000");
        assert_eq!(server_key("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
    }
}
