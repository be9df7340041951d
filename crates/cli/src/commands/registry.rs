//! Registry commands: `pull`, `push`, `login`, `logout`, `search`, and the pull that
//! `run`/`create` do for a missing image. Progress is the daemon's JSON stream, drawn as
//! docker draws it: live per-layer lines on a terminal, plain status lines otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};

use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::{Client, urlencode};
use crate::credentials;
use crate::error::CliError;
use crate::format::template::{Format, Row};

use super::out;

#[derive(Args, Debug, Default)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Skip image verification (accepted for compatibility)
    #[arg(long, default_value_t = true, hide = true)]
    pub disable_content_trust: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Push a platform-specific manifest as a single-platform image (accepted; images here are single-platform)
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long, value_name = "string")]
    pub username: Option<String>,
    /// Password or Personal Access Token (PAT)
    #[arg(short = 'p', long, value_name = "string")]
    pub password: Option<String>,
    /// Take the Password or Personal Access Token (PAT) from stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct LogoutArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct SearchArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Pretty-print search using a Go template
    #[arg(long, value_name = "string", default_value = "")]
    pub format: String,
    /// Max number of search results
    #[arg(long, value_name = "int", default_value_t = 0)]
    pub limit: i64,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// Draws a JSON progress stream like docker's DisplayJSONMessagesStream.
pub struct Display<W: Write> {
    out: W,
    tty: bool,
    /// Progress lines on screen: id -> line index (terminal mode).
    ids: HashMap<String, usize>,
}

impl<W: Write> Display<W> {
    pub fn new(out: W, tty: bool) -> Self {
        Display {
            out,
            tty,
            ids: HashMap::new(),
        }
    }

    /// Show one message; returns the stream's error message if it is one.
    pub fn message(&mut self, m: &Value) -> Result<(), String> {
        if let Some(e) = m["errorDetail"]["message"]
            .as_str()
            .or_else(|| m["error"].as_str())
        {
            return Err(e.to_owned());
        }
        if m.get("aux").is_some() {
            return Ok(());
        }
        let s = |k: &str| m[k].as_str().unwrap_or("");
        let id = s("id");
        let has_progress = m.get("progressDetail").is_some() || !s("progress").is_empty();
        let cur = m["progressDetail"]["current"].as_u64().unwrap_or(0);
        let total = m["progressDetail"]["total"].as_u64().unwrap_or(0);
        let mut w = String::new();
        let mut diff = 0;
        if !id.is_empty() && has_progress {
            let line = match self.ids.get(id) {
                Some(l) => *l,
                None => {
                    let l = self.ids.len();
                    self.ids.insert(id.to_owned(), l);
                    if self.tty {
                        w.push('\n');
                    }
                    l
                }
            };
            diff = self.ids.len() - line;
            if self.tty {
                w.push_str(&format!("\x1b[{diff}A"));
            }
        } else {
            // Non-progress output starts a new block (pull -a: the next tag's layers).
            self.ids.clear();
        }
        let bar = cur > 0 || total > 0;
        if self.tty && has_progress {
            w.push_str("\x1b[2K\r");
        } else if bar {
            // Without a terminal docker leaves progress updates out.
            return self.write(&w);
        }
        if !id.is_empty() {
            w.push_str(&format!("{id}: "));
        }
        let endl = if self.tty && has_progress { "\r" } else { "" };
        if self.tty && bar {
            w.push_str(&format!("{} {}{endl}", s("status"), s("progress")));
        } else if !s("stream").is_empty() {
            w.push_str(&format!("{}{endl}", s("stream")));
        } else {
            w.push_str(&format!("{}{endl}\n", s("status")));
        }
        if !id.is_empty() && self.tty && has_progress {
            w.push_str(&format!("\x1b[{diff}B"));
        }
        self.write(&w)
    }

    fn write(&mut self, s: &str) -> Result<(), String> {
        if s.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(s.as_bytes())
            .and_then(|_| self.out.flush())
            .map_err(|e| e.to_string())
    }
}

/// Read a JSON-lines progress body as it arrives and draw it (or discard it when quiet).
async fn show_stream(
    mut body: hyper::body::Incoming,
    quiet: bool,
    to_stderr: bool,
) -> Result<(), CliError> {
    let tty = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let sink: Box<dyn Write> = if quiet {
        Box::new(std::io::sink())
    } else if to_stderr {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut d = Display::new(sink, tty);
    let mut buf: Vec<u8> = Vec::new();
    let handle = |line: &[u8], d: &mut Display<Box<dyn Write>>| -> Result<(), CliError> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| CliError::msg(format!("invalid progress from daemon: {e}")))?;
        d.message(&v).map_err(CliError::msg)
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::msg(format!("reading progress: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            handle(&line, &mut d)?;
        }
    }
    handle(&buf, &mut d)
}

/// Split "name[:tag][@digest]" into the API's fromImage and tag (a digest goes in `tag`).
fn split_for_api(r: &berth_types::Reference) -> (String, String) {
    let name = r.repository().name();
    let tag = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => String::new(),
    };
    (name, tag)
}

fn parse_ref(s: &str) -> Result<berth_types::Reference, CliError> {
    berth_types::Reference::parse_normalized(s).map_err(|e| CliError::msg(e.to_string()))
}

/// POST /images/create?fromImage=; progress to `stderr` or stdout.
pub async fn pull_image(
    client: &Client,
    r: &berth_types::Reference,
    platform: Option<&str>,
    quiet: bool,
    to_stderr: bool,
) -> Result<(), CliError> {
    let (name, tag) = split_for_api(r);
    let mut q = format!("/images/create?fromImage={}", urlencode(&name));
    if !tag.is_empty() {
        q.push_str(&format!("&tag={}", urlencode(&tag)));
    }
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        q.push_str(&format!("&platform={}", urlencode(p)));
    }
    let auth = credentials::registry_auth(&credentials::server_key(&r.domain))?;
    match client
        .request_stream(Method::POST, &q, &[("X-Registry-Auth", auth)], None)
        .await?
    {
        Ok(body) => show_stream(body, quiet, to_stderr).await,
        Err(resp) => Err(CliError::daemon(resp.message())),
    }
}

pub async fn pull(client: &Client, a: PullArgs) -> Result<(), CliError> {
    let mut r = parse_ref(&a.args[0])?;
    if a.all_tags && !r.is_name_only() {
        return Err(CliError::msg("tag can't be used with --all-tags/-a"));
    }
    if !a.all_tags && r.is_name_only() {
        r = r.with_tag(berth_types::reference::DEFAULT_TAG);
        if !a.quiet {
            out("Using default tag: latest\n")?;
        }
    }
    pull_image(client, &r, a.platform.as_deref(), a.quiet, false).await?;
    out(&format!("{r}\n"))
}

pub async fn push(client: &Client, a: PushArgs) -> Result<(), CliError> {
    let mut r = parse_ref(&a.args[0])?;
    if a.all_tags && !r.is_name_only() {
        return Err(CliError::msg("tag can't be used with --all-tags/-a"));
    }
    if !a.all_tags && r.is_name_only() {
        r = r.with_tag(berth_types::reference::DEFAULT_TAG);
        if !a.quiet {
            out("Using default tag: latest\n")?;
        }
    }
    let name = r.repository().name();
    let mut q = format!("/images/{name}/push");
    if let Some(t) = &r.tag {
        q.push_str(&format!("?tag={}", urlencode(t)));
    }
    let auth = credentials::registry_auth(&credentials::server_key(&r.domain))?;
    match client
        .request_stream(Method::POST, &q, &[("X-Registry-Auth", auth)], None)
        .await?
    {
        Ok(body) => show_stream(body, a.quiet, false).await?,
        Err(resp) => return Err(CliError::daemon(resp.message())),
    }
    if a.quiet {
        out(&format!("{r}\n"))?;
    }
    Ok(())
}

fn read_line_from_tty(prompt: &str, echo: bool) -> Result<String, CliError> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // Password prompts switch echo off, as docker's term.DisableEcho.
    let mut saved: Option<libc::termios> = None;
    if !echo {
        // SAFETY: tcgetattr/tcsetattr on stdin with a properly sized termios.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) == 0 {
                saved = Some(t);
                t.c_lflag &= !libc::ECHO;
                libc::tcsetattr(fd, libc::TCSANOW, &t);
            }
        }
    }
    let mut line = String::new();
    let res = std::io::stdin().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: restores the attributes read above.
        unsafe {
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
        eprintln!();
    }
    res.map_err(|e| CliError::msg(e.to_string()))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

pub async fn login(client: &Client, a: LoginArgs) -> Result<(), CliError> {
    let server = a.args.first().cloned().unwrap_or_default();
    let key = credentials::server_key(&server);
    let mut password = a.password.clone();
    if a.password_stdin {
        if password.is_some() {
            return Err(CliError::msg(
                "--password and --password-stdin are mutually exclusive",
            ));
        }
        if a.username.is_none() {
            return Err(CliError::msg(
                "Must provide --username with --password-stdin",
            ));
        }
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::msg(e.to_string()))?;
        password = Some(s.trim_end_matches(['\n', '\r']).to_owned());
    } else if password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let mut username = a.username.clone().unwrap_or_default();
    if username.is_empty() || password.is_none() {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::msg(
                "Error: Cannot perform an interactive login from a non TTY device",
            ));
        }
        if username.is_empty() {
            username = read_line_from_tty("Username: ", true)?;
        }
        if password.is_none() {
            password = Some(read_line_from_tty("Password: ", false)?);
        }
    }
    let password = password.unwrap_or_default();
    if username.is_empty() {
        return Err(CliError::msg("Error: Non-null Username Required"));
    }
    if password.is_empty() {
        return Err(CliError::msg("Error: Password Required"));
    }
    let body = json!({"username": username, "password": password, "serveraddress": key});
    let r = client
        .raw(Method::POST, "/auth", Some(Bytes::from(body.to_string())))
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let reply: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    // An identity token replaces the password, as docker stores it.
    let (user, secret) = match reply["IdentityToken"].as_str().filter(|t| !t.is_empty()) {
        Some(t) => ("<token>".to_owned(), t.to_owned()),
        None => (username, password),
    };
    let plain = credentials::store(&key, &user, &secret)?;
    if plain {
        eprintln!(
            "WARNING! Your credentials are stored unencrypted in '{}'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n",
            credentials::config_file().display()
        );
    }
    out(&format!(
        "{}\n",
        reply["Status"].as_str().unwrap_or("Login Succeeded")
    ))
}

pub async fn logout(a: LogoutArgs) -> Result<(), CliError> {
    let server = a.args.first().cloned().unwrap_or_default();
    let key = credentials::server_key(&server);
    if credentials::erase(&key)? {
        out(&format!("Removing login credentials for {key}\n"))
    } else {
        out(&format!("Not logged in to {key}\n"))
    }
}

const SEARCH_TABLE: &str = "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}";

fn search_row(v: &Value, trunc: bool) -> Row {
    let desc = v["description"].as_str().unwrap_or("").replace('\n', " ");
    let desc = if trunc && desc.chars().count() > 45 {
        format!("{}…", desc.chars().take(44).collect::<String>())
    } else {
        desc
    };
    let ok = |b: bool| if b { "[OK]" } else { "" };
    Row::new()
        .with("Name", "NAME", v["name"].as_str().unwrap_or(""))
        .with("Description", "DESCRIPTION", desc)
        .with(
            "StarCount",
            "STARS",
            v["star_count"].as_u64().unwrap_or(0).to_string(),
        )
        .with(
            "IsOfficial",
            "OFFICIAL",
            ok(v["is_official"].as_bool().unwrap_or(false)),
        )
        .with(
            "IsAutomated",
            "AUTOMATED",
            ok(v["is_automated"].as_bool().unwrap_or(false)),
        )
}

pub async fn search(client: &Client, a: SearchArgs) -> Result<(), CliError> {
    let term = &a.args[0];
    let mut q = format!("/images/search?term={}", urlencode(term));
    if a.limit != 0 {
        q.push_str(&format!("&limit={}", a.limit));
    }
    if !a.filter.is_empty() {
        q.push_str(&format!(
            "&filters={}",
            urlencode(&crate::client::filters_json(&a.filter)?)
        ));
    }
    let (domain, _) = match term.split_once('/') {
        Some((d, rest)) if d.contains('.') || d.contains(':') || d == "localhost" => (d, rest),
        _ => ("docker.io", term.as_str()),
    };
    let auth = credentials::registry_auth(&credentials::server_key(domain))?;
    let r = match client
        .request_stream(Method::GET, &q, &[("X-Registry-Auth", auth)], None)
        .await?
    {
        Ok(body) => body
            .collect()
            .await
            .map_err(|e| CliError::msg(e.to_string()))?
            .to_bytes(),
        Err(resp) => return Err(CliError::daemon(resp.message())),
    };
    let results: Vec<Value> = serde_json::from_slice(&r)
        .map_err(|e| CliError::msg(format!("invalid search results: {e}")))?;
    let rows: Vec<Row> = results.iter().map(|v| search_row(v, !a.no_trunc)).collect();
    let fmt = Format::new(&a.format, SEARCH_TABLE).typed("*formatter.searchContext");
    let header = search_row(&Value::Null, true);
    out(&fmt.render_rows(&rows, &header).map_err(CliError::msg)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(tty: bool, msgs: &[Value]) -> String {
        let mut buf = Vec::new();
        {
            let mut d = Display::new(&mut buf, tty);
            for m in msgs {
                d.message(m).unwrap();
            }
        }
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn plain_output_skips_progress_like_docker() {
        let msgs = [
            json!({"status":"Pulling from library/busybox","id":"latest"}),
            json!({"status":"Pulling fs layer","progressDetail":{},"id":"abc"}),
            json!({"status":"Downloading","progressDetail":{"current":5,"total":10},"progress":"[==>  ]","id":"abc"}),
            json!({"status":"Pull complete","progressDetail":{},"id":"abc"}),
            json!({"status":"Digest: sha256:00"}),
        ];
        assert_eq!(
            show(false, &msgs),
            "latest: Pulling from library/busybox\nabc: Pulling fs layer\nabc: Pull complete\nDigest: sha256:00\n"
        );
        let t = show(true, &msgs);
        assert!(
            t.contains("\x1b[1A\x1b[2K\rabc: Downloading [==>  ]\r\x1b[1B"),
            "{t:?}"
        );
    }

    #[test]
    fn errors_end_the_stream() {
        let mut buf = Vec::new();
        let mut d = Display::new(&mut buf, false);
        let e = d.message(&json!({"errorDetail":{"message":"boom"},"error":"boom"}));
        assert_eq!(e, Err("boom".to_owned()));
    }
}
