//! Image commands: `images`/`image ls`, `rmi`, `history`, `tag`, `image prune`, `save`,
//! `load`, `import`. Output mirrors docker CLI 28's formatter contexts.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};

use futures_util::StreamExt;
use hyper::Method;

use crate::cli::{
    HistoryArgs, ImagesArgs, ImportArgs, LoadArgs, PruneArgs, RmiArgs, SaveArgs, TagArgs,
};
use crate::client::{Client, filters_json, path_escape, urlencode};
use crate::commands::out;
use crate::error::{CliError, EXIT_USAGE};
use crate::format::json::Ordered;
use crate::format::units::{go_time_string, human_size, human_size_with_precision, since_unix};
use crate::format::{Format, Row, short_id};

const IMAGES_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const IMAGES_TABLE_DIGEST: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const QUIET: &str = "{{.ID}}";

fn num(v: Option<&Ordered>) -> i64 {
    match v {
        Some(Ordered::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn strs(v: Option<&Ordered>) -> Vec<String> {
    match v {
        Some(Ordered::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// Split "name:tag" / "name@digest" into the familiar repository and the tag or digest.
fn split_ref(s: &str) -> Option<(String, Option<String>, Option<String>)> {
    let r = berth_types::Reference::parse_normalized(s).ok()?;
    Some((
        r.familiar_name(),
        r.tag.clone(),
        r.digest.as_ref().map(|d| d.to_string()),
    ))
}

/// One image-list row, as docker's imageContext.
fn image_row(img: &Ordered, repo: &str, tag: &str, digest: &str, trunc: bool) -> Row {
    let id = img.get("Id").and_then(Ordered::as_str).unwrap_or("");
    let created = num(img.get("Created"));
    let size = num(img.get("Size"));
    let shared = img.get("SharedSize").map_or(-1, |v| num(Some(v)));
    let containers = img.get("Containers").map_or(-1, |v| num(Some(v)));
    let na = |v: i64, f: &dyn Fn(i64) -> String| if v == -1 { "N/A".to_string() } else { f(v) };
    Row::new()
        .with(
            "Containers",
            "CONTAINERS",
            na(containers, &|c| c.to_string()),
        )
        .with("CreatedAt", "CREATED AT", go_time_string(created))
        .with("CreatedSince", "CREATED", since_unix(created))
        .with("Digest", "DIGEST", digest)
        .with(
            "ID",
            "IMAGE ID",
            if trunc { short_id(id) } else { id.to_string() },
        )
        .with("Repository", "REPOSITORY", repo)
        .with(
            "SharedSize",
            "SHARED SIZE",
            na(shared, &|s| human_size(s as f64)),
        )
        .with("Size", "SIZE", human_size_with_precision(size as f64, 3))
        .with("Tag", "TAG", tag)
        .with(
            "UniqueSize",
            "UNIQUE SIZE",
            if size == -1 || shared == -1 {
                "N/A".into()
            } else {
                human_size((size - shared) as f64)
            },
        )
        .with("VirtualSize", "VIRTUAL SIZE", human_size(size as f64))
}

/// docker's imageFormat: one row per (repository, tag[, digest]); dangling -> <none>.
pub fn image_rows(images: &[Ordered], digests: bool, trunc: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for img in images {
        let tags = strs(img.get("RepoTags"));
        let dgsts = strs(img.get("RepoDigests"));
        let dangling = (tags.is_empty() && dgsts.is_empty())
            || (tags == ["<none>:<none>"] && dgsts == ["<none>@<none>"]);
        if dangling {
            rows.push(image_row(img, "<none>", "<none>", "<none>", trunc));
            continue;
        }
        // Docker iterates Go maps here (random order); sorted repositories keep it stable.
        let mut repo_tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut repo_digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &tags {
            if let Some((repo, Some(tag), _)) = split_ref(t) {
                repo_tags.entry(repo).or_default().push(tag);
            }
        }
        for d in &dgsts {
            if let Some((repo, _, Some(dg))) = split_ref(d) {
                repo_digests.entry(repo).or_default().push(dg);
            }
        }
        for (repo, tags) in &repo_tags {
            let ds = repo_digests.remove(repo).unwrap_or_default();
            for tag in tags {
                if !digests || ds.is_empty() {
                    rows.push(image_row(img, repo, tag, "<none>", trunc));
                } else {
                    for d in &ds {
                        rows.push(image_row(img, repo, tag, d, trunc));
                    }
                }
            }
        }
        for (repo, ds) in &repo_digests {
            if digests {
                for d in ds {
                    rows.push(image_row(img, repo, "<none>", d, trunc));
                }
            } else {
                rows.push(image_row(img, repo, "<none>", "", trunc));
            }
        }
    }
    rows
}

pub async fn list(client: &Client, _path: &str, a: ImagesArgs) -> Result<(), CliError> {
    let mut filters = a.filter.clone();
    if let Some(r) = a.args.first() {
        filters.push(format!("reference={r}"));
    }
    let mut q = String::from("/images/json?");
    if a.all {
        q.push_str("all=1&");
    }
    if !filters.is_empty() {
        q.push_str(&format!("filters={}", urlencode(&filters_json(&filters)?)));
    }
    let list = client.get_json(q.trim_end_matches(['&', '?'])).await?;
    let images = match list {
        Ordered::Array(v) => v,
        _ => Vec::new(),
    };
    let default = if a.quiet {
        QUIET
    } else if a.digests {
        IMAGES_TABLE_DIGEST
    } else {
        IMAGES_TABLE
    };
    let user = if a.format.is_empty() || (a.quiet && a.format == "table") {
        default
    } else {
        a.format.as_str()
    };
    let fmt = Format::new(user, default).typed("*formatter.imageContext");
    let rows = image_rows(&images, a.digests, !a.no_trunc);
    let header = image_row(&Ordered::Null, "", "", "", true);
    out(&fmt.render_rows(&rows, &header).map_err(CliError::msg)?)
}

pub async fn remove(client: &Client, a: RmiArgs) -> Result<(), CliError> {
    let mut errs = Vec::new();
    for name in &a.args {
        let opts = bollard::query_parameters::RemoveImageOptions {
            force: a.force,
            noprune: a.no_prune,
            ..Default::default()
        };
        match client.docker.remove_image(name, Some(opts), None).await {
            Ok(items) => {
                let mut s = String::new();
                for it in items {
                    match (it.deleted, it.untagged) {
                        (Some(d), _) if !d.is_empty() => s.push_str(&format!("Deleted: {d}\n")),
                        (_, Some(u)) => s.push_str(&format!("Untagged: {u}\n")),
                        _ => s.push_str("Untagged: \n"),
                    }
                }
                out(&s)?;
            }
            // With -f, a missing image is reported but is not a failure (docker 28).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message,
            }) if a.force => eprintln!("Error response from daemon: {message}"),
            Err(e) => errs.push(client.bollard_err(e).message),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(CliError::msg(errs.join("\n")))
    }
}

/// `--platform os[/arch[/variant]]` as the API's JSON platform query (docker 28 sends it
/// from API 1.48/1.49 on and refuses older daemons).
pub fn platform_query(
    client: &Client,
    platform: Option<&str>,
    min_api: &str,
) -> Result<Option<String>, CliError> {
    let Some(p) = platform.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if crate::client::parse_version(&client.api_version) < crate::client::parse_version(min_api) {
        return Err(CliError::msg(format!(
            "\"--platform\" requires API version {min_api}, but the Docker daemon API version is {}",
            client.api_version
        )));
    }
    Ok(Some(format!("platform={}", urlencode(&platform_json(p)?))))
}

/// containerd's platforms.Parse, reduced to what a CLI needs.
fn platform_json(p: &str) -> Result<String, CliError> {
    const OSES: [&str; 5] = ["linux", "windows", "darwin", "freebsd", "solaris"];
    let lower = p.to_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let (os, arch, variant) = match parts.as_slice() {
        [one] if OSES.contains(one) => (*one, host_arch, None),
        [one] => ("linux", *one, None),
        [os, arch] => (*os, *arch, None),
        [os, arch, v] => (*os, *arch, Some(*v)),
        _ => {
            return Err(CliError::msg(format!(
                "\"{p}\": unknown operating system or architecture: invalid argument"
            )));
        }
    };
    let arch = match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let mut json = format!("{{\"architecture\":\"{arch}\",\"os\":\"{os}\"");
    if let Some(v) = variant {
        json.push_str(&format!(",\"variant\":\"{v}\""));
    }
    json.push('}');
    Ok(json)
}

/// cobra-style boolean flag value ("true", "false", "1", "0", ...).
pub fn parse_bool_flag(v: &str, flag: &str, path: &str) -> Result<bool, CliError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(CliError::new(
            format!(
                "invalid argument \"{v}\" for \"{flag}\" flag: strconv.ParseBool: parsing \"{v}\": invalid syntax\n\nUsage:  {}\n\nRun 'berth {path} --help' for more information",
                crate::cli::usage(path)
            ),
            EXIT_USAGE,
        )),
    }
}

/// docker's Ellipsis: cut to `max` display columns, last one an ellipsis.
fn ellipsis(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max || max == 0 {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

pub async fn history(client: &Client, a: HistoryArgs) -> Result<(), CliError> {
    // Validated in precheck with the right usage text; here only the value matters.
    let human = parse_bool_flag(&a.human, "-H, --human", "history")?;
    let name = &a.args[0];
    let platform = platform_query(client, a.platform.as_deref(), "1.48")?;
    let q = platform.map(|p| format!("?{p}")).unwrap_or_default();
    let v = client
        .get_json(&format!("/images/{}/history{q}", path_escape(name)))
        .await?;
    let entries = match v {
        Ordered::Array(v) => v,
        _ => Vec::new(),
    };
    let trunc = !a.no_trunc;
    let row = |h: &Ordered| {
        let id = h.get("Id").and_then(Ordered::as_str).unwrap_or("");
        let created = num(h.get("Created"));
        let size = num(h.get("Size"));
        let created_at = chrono::DateTime::from_timestamp(created, 0)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .unwrap_or_default();
        let by = h
            .get("CreatedBy")
            .and_then(Ordered::as_str)
            .unwrap_or("")
            .replace('\t', " ");
        Row::new()
            .with(
                "Comment",
                "COMMENT",
                h.get("Comment").and_then(Ordered::as_str).unwrap_or(""),
            )
            .with("CreatedAt", "CREATED AT", created_at.clone())
            .with(
                "CreatedBy",
                "CREATED BY",
                if trunc { ellipsis(&by, 45) } else { by },
            )
            .with(
                "CreatedSince",
                "CREATED",
                if human {
                    since_unix(created)
                } else {
                    created_at
                },
            )
            .with(
                "ID",
                "IMAGE",
                if trunc && id != "<missing>" {
                    short_id(id)
                } else {
                    id.to_string()
                },
            )
            .with(
                "Size",
                "SIZE",
                if human {
                    human_size_with_precision(size as f64, 3)
                } else {
                    size.to_string()
                },
            )
    };
    let default = if a.quiet {
        QUIET
    } else if human {
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    } else {
        "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    };
    let user = if a.format.is_empty() {
        default
    } else {
        a.format.as_str()
    };
    let rows: Vec<Row> = entries.iter().map(row).collect();
    let fmt = Format::new(user, default).typed("*image.historyContext");
    out(&fmt
        .render_rows(&rows, &row(&Ordered::Null))
        .map_err(CliError::msg)?)
}

fn ref_error(s: &str, e: impl std::fmt::Display) -> CliError {
    CliError::msg(format!(
        "Error parsing reference: \"{s}\" is not a valid repository/tag: {e}"
    ))
}

pub async fn tag(client: &Client, a: TagArgs) -> Result<(), CliError> {
    let (src, dst) = (&a.args[0], &a.args[1]);
    if !berth_types::reference::is_full_hex_id(src) && !src.starts_with("sha256:") {
        berth_types::Reference::parse_normalized(src).map_err(|e| ref_error(src, e))?;
    }
    let r = berth_types::Reference::parse_tagged(dst).map_err(|e| ref_error(dst, e))?;
    if r.digest.is_some() {
        return Err(CliError::msg(
            "refusing to create a tag with a digest reference",
        ));
    }
    let opts = bollard::query_parameters::TagImageOptions {
        repo: Some(r.familiar_name()),
        tag: r.tag.clone(),
    };
    client
        .docker
        .tag_image(src, Some(opts))
        .await
        .map_err(|e| client.bollard_err(e))
}

/// docker's prompt: returns true on "y"/"Y"; EOF or anything else is "no".
pub(crate) fn confirm(question: &str) -> Result<bool, CliError> {
    out(&format!("{question} [y/N] "))?;
    let mut line = String::new();
    let mut stdin = std::io::stdin();
    let mut b = [0u8; 1];
    while let Ok(1) = stdin.read(&mut b) {
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0] as char);
    }
    Ok(matches!(line.trim(), "y" | "Y"))
}

pub async fn prune(client: &Client, a: PruneArgs) -> Result<(), CliError> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue?"
    } else {
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"
    };
    if !a.force && !confirm(warning)? {
        return Ok(());
    }
    let mut filters = a.filter.clone();
    filters.push(format!("dangling={}", !a.all));
    let q = format!(
        "/images/prune?filters={}",
        urlencode(&filters_json(&filters)?)
    );
    let r = client.raw(Method::POST, &q, None).await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let rep = Ordered::parse(&r.body).map_err(|e| CliError::msg(e.to_string()))?;
    let mut s = String::new();
    if let Some(Ordered::Array(items)) = rep.get("ImagesDeleted")
        && !items.is_empty()
    {
        s.push_str("Deleted Images:\n");
        for it in items {
            match (
                it.get("Untagged").and_then(Ordered::as_str),
                it.get("Deleted").and_then(Ordered::as_str),
            ) {
                (Some(u), _) if !u.is_empty() => s.push_str(&format!("untagged: {u}\n")),
                (_, Some(d)) => s.push_str(&format!("deleted: {d}\n")),
                _ => {}
            }
        }
        s.push('\n');
    }
    let reclaimed = num(rep.get("SpaceReclaimed"));
    s.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(reclaimed as f64)
    ));
    out(&s)
}

/// `save` refuses to write a tar to a terminal, or into a missing directory, before asking
/// the daemon anything.
pub fn save_precheck(a: &SaveArgs) -> Result<(), CliError> {
    if let Some(o) = &a.output {
        let dir = std::path::Path::new(o)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        match std::fs::metadata(dir) {
            Err(e) => {
                return Err(CliError::msg(format!(
                    "failed to save image: invalid output path: stat {}: {}",
                    dir.display(),
                    os_msg(&e)
                )));
            }
            Ok(m) if !m.is_dir() => {
                return Err(CliError::msg(format!(
                    "failed to save image: invalid output path: stat {}: not a directory",
                    dir.display()
                )));
            }
            Ok(_) => {}
        }
    }
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::msg(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    Ok(())
}

pub async fn save(client: &Client, a: SaveArgs) -> Result<(), CliError> {
    let mut q: Vec<String> = a
        .args
        .iter()
        .map(|n| format!("names={}", urlencode(n)))
        .collect();
    if let Some(p) = platform_query(client, a.platform.as_deref(), "1.48")? {
        q.push(p);
    }
    // Ask first: a daemon error leaves no file behind.
    let body = client
        .get_stream(&format!("/images/get?{}", q.join("&")))
        .await?;
    let mut stream = http_body_util::BodyStream::new(body);
    // -o: write next to the target and rename, so a failed save leaves no half file.
    let (mut file, tmp) = match &a.output {
        Some(p) => {
            let path = std::path::Path::new(p);
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = dir.join(format!(".berth_temp_{}", std::process::id()));
            // 0600 like docker's CopyToFile (a temp file renamed into place).
            let f = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true),
                0o600,
            )
            .open(&tmp)
            .map_err(|e| {
                CliError::msg(format!("failed to save image: invalid output path: {e}"))
            })?;
            (Some(f), Some((tmp, path.to_path_buf())))
        }
        None => (None, None),
    };
    let mut stdout = std::io::stdout().lock();
    let mut result = Ok(());
    while let Some(chunk) = stream.next().await {
        let r = match chunk {
            Ok(frame) => match (frame.into_data(), file.as_mut()) {
                (Ok(b), Some(f)) => f.write_all(&b).map_err(CliError::from),
                (Ok(b), None) => stdout.write_all(&b).map_err(CliError::from),
                (Err(_), _) => Ok(()),
            },
            Err(e) => Err(CliError::msg(format!("failed to save image: {e}"))),
        };
        if let Err(e) = r {
            result = Err(e);
            break;
        }
    }
    let _ = stdout.flush();
    if let Some((tmp, dst)) = tmp {
        drop(file);
        if result.is_ok() {
            std::fs::rename(&tmp, &dst)?;
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    result
}

/// Print a daemon JSON-message stream like docker's DisplayJSONMessagesToStream (no tty).
/// Returns what to print and the stream's error, if it carried one.
fn display_json_messages(body: &[u8]) -> (String, Option<String>) {
    let mut s = String::new();
    let de = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    for m in de {
        let m = match m {
            Ok(m) => m,
            Err(e) => return (s, Some(e.to_string())),
        };
        if let Some(err) = m
            .get("errorDetail")
            .and_then(|d| d.get("message"))
            .and_then(|x| x.as_str())
            .or_else(|| m.get("error").and_then(|x| x.as_str()))
        {
            return (s, Some(err.to_string()));
        }
        // Non-terminal output, as docker's JSONMessage.Display: aux and progress-bar
        // updates are not shown.
        if m.get("aux").is_some() {
            continue;
        }
        let detail = |k: &str| {
            m.get("progressDetail")
                .and_then(|d| d.get(k))
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
        };
        if detail("current") > 0 || detail("total") > 0 {
            continue;
        }
        let field = |k: &str| m.get(k).and_then(|x| x.as_str()).unwrap_or("");
        if !field("id").is_empty() {
            s.push_str(&format!("{}: ", field("id")));
        }
        if !field("from").is_empty() {
            s.push_str(&format!("(from {}) ", field("from")));
        }
        if !field("progress").is_empty() {
            s.push_str(&format!("{} {}", field("status"), field("progress")));
        } else if !field("stream").is_empty() {
            s.push_str(field("stream"));
        } else {
            s.push_str(field("status"));
            s.push('\n');
        }
    }
    (s, None)
}

/// Print the messages, then fail with the stream's error if any.
fn print_json_messages(body: &[u8]) -> Result<(), CliError> {
    let (s, err) = display_json_messages(body);
    out(&s)?;
    match err {
        Some(e) => Err(CliError::msg(e)),
        None => Ok(()),
    }
}

/// Open the tar to upload: a file, or stdin (refused when it is a terminal, like docker).
fn open_input(
    path: Option<&str>,
    what: &str,
) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, CliError> {
    match path {
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| CliError::msg(format!("open {p}: {}", os_msg(&e))))?;
            Ok(Box::new(tokio::fs::File::from_std(f)))
        }
        None => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::msg(format!(
                    "requested {what} from stdin, but stdin is empty"
                )));
            }
            Ok(Box::new(tokio::io::stdin()))
        }
    }
}

/// Go-style OS error text ("no such file or directory").
fn os_msg(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

pub async fn load(client: &Client, a: LoadArgs) -> Result<(), CliError> {
    let body = open_input(a.input.as_deref(), "load")?;
    let quiet = a.quiet || !std::io::stdout().is_terminal();
    let mut params = Vec::new();
    if quiet {
        params.push("quiet=1".to_string());
    }
    if let Some(p) = platform_query(client, a.platform.as_deref(), "1.48")? {
        params.push(p);
    }
    let q = if params.is_empty() {
        "/images/load".to_string()
    } else {
        format!("/images/load?{}", params.join("&"))
    };
    let r = client
        .upload(Method::POST, &q, body, "application/x-tar")
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let json = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        print_json_messages(&r.body)
    } else {
        out(&String::from_utf8_lossy(&r.body))
    }
}

pub async fn import(client: &Client, a: ImportArgs) -> Result<(), CliError> {
    let src = &a.args[0];
    let repo = a.args.get(1).cloned().unwrap_or_default();
    if !repo.is_empty() {
        berth_types::Reference::parse_normalized(&repo)
            .map_err(|e| CliError::msg(e.to_string()))?;
    }
    let (from_src, body): (String, Box<dyn tokio::io::AsyncRead + Send + Unpin>) = if src == "-" {
        ("-".to_string(), open_input(None, "import")?)
    } else if src.contains("://") {
        // The daemon fetches URLs itself.
        (src.clone(), Box::new(tokio::io::empty()))
    } else {
        ("-".to_string(), open_input(Some(src), "import")?)
    };
    let mut q = format!(
        "/images/create?fromSrc={}&message={}&repo={}&tag=",
        urlencode(&from_src),
        urlencode(a.message.as_deref().unwrap_or("")),
        urlencode(&repo)
    );
    for c in &a.change {
        q.push_str(&format!("&changes={}", urlencode(c)));
    }
    if let Some(p) = &a.platform {
        q.push_str(&format!("&platform={}", urlencode(&p.to_lowercase())));
    }
    let r = client
        .upload(Method::POST, &q, body, "application/x-tar")
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    print_json_messages(&r.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(json: &str) -> Ordered {
        Ordered::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn rows_per_repo_tag_and_dangling() {
        let i = img(
            r#"{"Id":"sha256:3bdd47c224176c69455483d0635b441cd12928fafee72c2c72a46a2fac7650bc","RepoTags":["bb2:v1","busybox:latest","busybox:1"],"RepoDigests":[],"Created":0,"Size":1982291,"SharedSize":-1,"Containers":-1}"#,
        );
        let d =
            img(r#"{"Id":"sha256:aa","RepoTags":null,"RepoDigests":null,"Created":0,"Size":0}"#);
        let rows = image_rows(&[i, d], false, true);
        let f = Format::new(
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}} {{.Containers}}",
            "",
        );
        let out = f.render_rows(&rows, &rows[0]).unwrap();
        assert_eq!(
            out,
            "bb2:v1 3bdd47c22417 1.98MB N/A\nbusybox:latest 3bdd47c22417 1.98MB N/A\nbusybox:1 3bdd47c22417 1.98MB N/A\n<none>:<none> aa 0B N/A\n"
        );
    }

    #[test]
    fn ellipsis_like_docker() {
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }

    #[test]
    fn bool_flags() {
        assert!(!parse_bool_flag("false", "-H", "history").unwrap());
        assert_eq!(parse_bool_flag("x", "-H", "history").unwrap_err().code, 125);
    }

    #[test]
    fn json_messages_display() {
        let (s, e) = display_json_messages(
            br#"{"stream":"Loaded image: busybox:latest\n"}{"status":"sha256:abc"}"#,
        );
        assert!(e.is_none());
        assert_eq!(s, "Loaded image: busybox:latest\nsha256:abc\n");
    }
}
