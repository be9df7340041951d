//! The Dockerfile corpus: real-world Dockerfile shapes (official images, language templates,
//! docs and compose samples), made to build offline on a locally imported busybox, under
//! tests/dockerfiles/<case>/ (Dockerfile, context files, case.json). Each case is built on a
//! throwaway berthd with the real docker CLI (`DOCKER_BUILDKIT=0`) and compared with what the
//! reference dockerd 20.10 produced, recorded once in the case's expected.json: success or the
//! error and exit code, the `Step` lines and warnings, the image config, history (created_by,
//! empty_layer), the layer count, every file the build added or changed (type, mode, owner,
//! size, content hash), and the output of `docker run` of the image.
//!
//! Cases marked `"buildkit": true` use syntax dockerd 20.10's legacy builder lacks (heredocs,
//! `RUN --mount`, `--chmod`); their expected.json is berth's own output, checked by hand
//! against BuildKit's documented behaviour.
//!
//! `BERTH_DOCKERFILES=a,b` runs only those cases. `BERTH_DOCKERFILES_RECORD=1` rebuilds the
//! expectations (the reference dockerd for legacy cases, berthd for the buildkit ones).
//! Needs root, busybox-static and the docker CLI (dockerd only to record).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_e2e::{Fixture, OutputExt, RefDocker, ScratchDir, archive, can_run_containers};
use serde_json::{Value, json};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles")
}

/// What case.json says about a case.
#[derive(Default)]
struct Case {
    name: String,
    dir: PathBuf,
    /// Extra `docker build` arguments (`-f`, `--target`, `--build-arg`...).
    args: Vec<String>,
    /// `docker run` invocations: the image's arguments, or options + "IMAGE" + arguments.
    run: Vec<Vec<String>>,
    /// The build is expected to fail.
    fails: bool,
    /// Expectations come from berth (BuildKit-only syntax), not from dockerd 20.10.
    buildkit: bool,
    /// Serve the case's http/ on loopback; its URL goes in as `--build-arg URL_BASE=...`.
    http: bool,
    /// More `--target`s whose image config is compared too.
    also_targets: Vec<String>,
    /// Also build with `berth build` (client-side .dockerignore, context tar) and compare.
    berth_cli: bool,
    /// Differences known and accepted (diff paths, e.g. `case.history[5][0]`), each with why.
    known: BTreeMap<String, String>,
    /// Compare only the start of the error (the rest is the host's network error text).
    error_prefix: Option<String>,
    /// Stages before the target that it does not need: dockerd's legacy builder runs them,
    /// berth skips them (as BuildKit does), so berth's steps are a subsequence of dockerd's
    /// and their numbers differ.
    unused_stages: bool,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn load_cases() -> Vec<Case> {
    let only: Vec<String> = std::env::var("BERTH_DOCKERFILES")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut cases = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("tests/dockerfiles")
        .flatten()
        .filter(|e| e.path().join("case.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let dir = corpus_dir().join(&name);
        let text = std::fs::read_to_string(dir.join("case.json")).expect("read case.json");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        cases.push(Case {
            name: name.clone(),
            dir,
            args: strings(&v["args"]),
            run: v["run"]
                .as_array()
                .map(|a| a.iter().map(strings).collect())
                .unwrap_or_default(),
            fails: v["fails"].as_bool().unwrap_or(false),
            buildkit: v["buildkit"].as_bool().unwrap_or(false),
            http: v["http"].as_bool().unwrap_or(false),
            also_targets: strings(&v["also_targets"]),
            berth_cli: v["berth_cli"].as_bool().unwrap_or(false),
            unused_stages: v["unused_stages"].as_bool().unwrap_or(false),
            error_prefix: v["error_prefix"].as_str().map(str::to_owned),
            known: v["known"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (format!("{name}.{k}"), v.as_str().unwrap_or("").to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    cases
}

/// A daemon to build on: berthd (through the docker CLI or our CLI) or the reference dockerd.
struct Engine {
    host: String,
    config_dir: PathBuf,
    /// Our CLI instead of the docker CLI for the build itself.
    berth_cli: bool,
    /// Extra `docker build` flags for this engine.
    build_flags: Vec<String>,
}

impl Engine {
    fn docker(&self, args: &[&str]) -> Output {
        berth_e2e::docker_cli(&self.host, &self.config_dir, args, None)
    }

    fn build(&self, ctx: &Path, tag: &str, extra: &[String]) -> Output {
        let mut c = if self.berth_cli {
            let mut c = Command::new(berth_e2e::bin_dir().join("berth"));
            c.arg("build")
                .env("BERTH_HOST", &self.host)
                .env_remove("DOCKER_HOST");
            c
        } else {
            berth_e2e::docker_build_command(&self.host, &self.config_dir)
        };
        // -f is relative to the working directory: build from inside the context
        c.current_dir(ctx)
            .args(&self.build_flags)
            .args(["-t", tag])
            .args(extra)
            .arg(".")
            .stdin(Stdio::null());
        c.output().expect("run the build")
    }
}

/// A copy of the case's context without the test's own files (case.json, expected.json,
/// http/): `COPY .` must not see them, and a re-recorded expected.json must not change them.
fn context_copy(case: &Case) -> ScratchDir {
    let dir = ScratchDir::new(&format!("df-{}", case.name));
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", case.dir.display()))
        .arg(&*dir)
        .status()
        .expect("cp -a");
    assert!(st.success(), "copying {}", case.dir.display());
    for f in ["case.json", "expected.json", "http"] {
        let p = dir.join(f);
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_dir_all(&p);
    }
    dir
}

/// Serves files of `dir` over HTTP/1.1 on loopback until the process ends.
fn serve_dir(dir: PathBuf) -> u16 {
    berth_e2e::http::serve(move |path| {
        let name = path.trim_start_matches('/');
        let body = (!name.contains(".."))
            .then(|| std::fs::read(dir.join(name)).ok())
            .flatten();
        match body {
            Some(b) => ("200 OK", b),
            None => ("404 Not Found", b"not found\n".to_vec()),
        }
    })
}

/// One file of a flattened image.
#[derive(Clone, PartialEq, Eq, Debug)]
struct FileInfo(String);

/// The image's filesystem: layers of a `docker save` applied in order (whiteouts honoured).
fn flatten(save: &[u8]) -> (Value, BTreeMap<String, FileInfo>, usize) {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // docker save links a layer that repeats (two empty layers) to its first copy
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut ar = tar::Archive::new(save);
    for e in ar.entries().expect("save entries") {
        let mut e = e.expect("save entry");
        let p = e.path().expect("path").to_string_lossy().into_owned();
        if e.header().entry_type().is_symlink() {
            if let Ok(Some(t)) = e.link_name() {
                let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
                let t = t.to_string_lossy().into_owned();
                let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
                for c in t.split('/') {
                    match c {
                        ".." => {
                            parts.pop();
                        }
                        "." | "" => {}
                        c => parts.push(c),
                    }
                }
                let target = parts.join("/");
                links.insert(p.clone(), target);
            }
            continue;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read save entry");
        files.insert(p, data);
    }
    for (p, t) in links {
        if let Some(d) = files.get(&t).cloned() {
            files.insert(p, d);
        }
    }
    let manifest: Value =
        serde_json::from_slice(files.get("manifest.json").expect("manifest.json")).expect("json");
    let config_name = manifest[0]["Config"].as_str().expect("Config");
    let config: Value =
        serde_json::from_slice(files.get(config_name).expect("config blob")).expect("json");
    let layers = strings(&manifest[0]["Layers"]);
    let mut fs: BTreeMap<String, FileInfo> = BTreeMap::new();
    for l in &layers {
        let data = files.get(l.as_str()).expect("layer in save");
        let mut ar = tar::Archive::new(&data[..]);
        for e in ar.entries().expect("layer entries") {
            let mut e = e.expect("layer entry");
            let raw = e.path().expect("path").to_string_lossy().into_owned();
            let path = format!("/{}", raw.trim_start_matches("./").trim_end_matches('/'));
            let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
            if base == ".wh..wh..opq" {
                let prefix = format!("{dir}/");
                fs.retain(|k, _| !k.starts_with(&prefix));
                continue;
            }
            if let Some(gone) = base.strip_prefix(".wh.") {
                let gone = format!("{dir}/{gone}");
                let prefix = format!("{gone}/");
                fs.retain(|k, _| *k != gone && !k.starts_with(&prefix));
                continue;
            }
            let h = e.header().clone();
            let mode = h.mode().unwrap_or(0) & 0o7777;
            let owner = format!(
                "{}:{}",
                h.uid().unwrap_or(u64::MAX),
                h.gid().unwrap_or(u64::MAX)
            );
            let what = match h.entry_type() {
                tar::EntryType::Directory => "dir".to_string(),
                tar::EntryType::Symlink => format!(
                    "symlink -> {}",
                    h.link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                tar::EntryType::Link => format!(
                    "hardlink -> /{}",
                    h.link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).expect("read layer file");
                    format!("file {} {}", data.len(), &archive::sha256_hex(&data)[..12])
                }
                other => format!("{other:?}"),
            };
            // a directory entry over an existing directory changes only its metadata
            fs.insert(path, FileInfo(format!("{what} {mode:o} {owner}")));
        }
    }
    (config, fs, layers.len())
}

/// `sha256:`-style sums in created_by (`COPY file:<hex> in /x`) differ between engines (dockerd
/// hashes tar headers); the kind and the rest must match.
fn normalize_created_by(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = ["file:", "dir:", "multi:"]
        .iter()
        .filter_map(|k| rest.find(k).map(|i| (i, k.len())))
        .min()
    {
        let (i, klen) = at;
        let hex_start = i + klen;
        let hex_len = rest[hex_start..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        out.push_str(&rest[..hex_start]);
        if hex_len == 64 {
            out.push_str("<sum>");
        } else {
            out.push_str(&rest[hex_start..hex_start + hex_len]);
        }
        rest = &rest[hex_start + hex_len..];
    }
    out.push_str(rest);
    // dockerd writes a URL's hash bare (`ADD <hex> in /dl/`), and its own scheme for it
    let mut s = out
        .split(' ')
        .map(|w| {
            if w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()) {
                "<sum>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    // dockerd lists EXPOSE's ports in Go map order (random): compare them as a set
    if let Some(at) = s.find("#(nop)  EXPOSE ") {
        let head = at + "#(nop)  EXPOSE ".len();
        let mut ports: Vec<&str> = s[head..].split(' ').collect();
        ports.sort_unstable();
        s = format!("{}{}", &s[..head], ports.join(" "));
    }
    // the loopback server's port changes from run to run
    while let Some(i) = s.find("127.0.0.1:") {
        let start = i + "127.0.0.1:".len();
        let digits = s[start..].chars().take_while(char::is_ascii_digit).count();
        s.replace_range(i..start + digits, "LOOPBACK");
    }
    s
}

/// The config fields `docker build` sets, with null and absent treated alike.
fn config_subset(cfg: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for k in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "Healthcheck",
        "StopSignal",
        "OnBuild",
        "Shell",
    ] {
        let v = &cfg[k];
        // dockerd writes `"User": ""` where berth leaves the field out: the same to a client
        if !v.is_null() && v != "" {
            m.insert(k.to_string(), v.clone());
        }
    }
    Value::Object(m)
}

/// Without colour sequences (dockerd shows parser warnings in red).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' && it.peek() == Some(&'[') {
            for c in it.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `Step 3/9 : RUN x` → `RUN x`.
fn step_text(s: &Value) -> String {
    let s = s.as_str().unwrap_or_default();
    s.split_once(" : ").map_or(s, |(_, t)| t).to_owned()
}

/// Whether `sub` appears in `all` in order (not necessarily adjacent).
fn subsequence(sub: &[String], all: &[String]) -> bool {
    let mut it = all.iter();
    sub.iter().all(|x| it.any(|y| y == x))
}

/// What stderr says once docker's legacy-builder deprecation notice is left out.
fn error_text(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !(l.starts_with("DEPRECATED:")
                || l.starts_with("            BuildKit")
                || l.trim() == "environment-variable."
                || l.contains("Install the buildx component")
                || l.contains("https://docs.docker.com/go/buildx/"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Base {
    diff_id: String,
    history_len: usize,
    files: BTreeMap<String, FileInfo>,
}

fn base_of(e: &Engine) -> Base {
    let save = e.docker(&["save", "busybox:latest"]);
    let (config, files, _) = flatten(&save.ok().stdout);
    Base {
        diff_id: config["rootfs"]["diff_ids"][0]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        history_len: config["history"].as_array().map_or(0, Vec::len),
        files,
    }
}

/// Builds one case on an engine and describes the outcome as expected.json holds it.
fn outcome(e: &Engine, case: &Case, base: &Base, url_base: Option<&str>) -> Value {
    let ctx = context_copy(case);
    let tag = format!("corpus-{}:t", case.name);
    let mut extra = case.args.clone();
    if let Some(u) = url_base {
        extra.extend(["--build-arg".to_string(), format!("URL_BASE={u}")]);
    }
    let out = e.build(&ctx, &tag, &extra);
    let stdout = strip_ansi(&out.stdout_str());
    let steps: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("Step ") || l.to_ascii_lowercase().starts_with("[warning]"))
        .map(normalize_created_by)
        .collect();
    let mut o = serde_json::Map::new();
    o.insert("exit_code".into(), json!(out.code()));
    o.insert("steps".into(), json!(steps));
    if !out.status.success() {
        o.insert("error".into(), json!(error_text(&out.stderr_str())));
        return Value::Object(o);
    }
    let save = e.docker(&["save", &tag]);
    let (config, files, layers) = flatten(&save.ok().stdout);
    let on_busybox = config["rootfs"]["diff_ids"][0].as_str() == Some(base.diff_id.as_str());
    let skip = if on_busybox { base.history_len } else { 0 };
    let history: Vec<Value> = config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .skip(skip)
                .map(|h| {
                    json!([
                        normalize_created_by(h["created_by"].as_str().unwrap_or_default()),
                        h["empty_layer"].as_bool().unwrap_or(false)
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    let empty = BTreeMap::new();
    let before = if on_busybox { &base.files } else { &empty };
    let mut changed: Vec<String> = files
        .iter()
        .filter(|(p, f)| before.get(*p) != Some(f))
        .map(|(p, f)| format!("{p} {}", f.0))
        .collect();
    changed.extend(
        before
            .keys()
            .filter(|p| !files.contains_key(*p))
            .map(|p| format!("{p} removed")),
    );
    o.insert("config".into(), config_subset(&config["config"]));
    o.insert("history".into(), json!(history));
    o.insert("layers".into(), json!(layers));
    o.insert("files".into(), json!(changed));
    let mut runs = Vec::new();
    for r in &case.run {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--network".into(),
            "none".into(),
        ];
        match r.iter().position(|a| a == "IMAGE") {
            Some(i) => {
                args.extend(r[..i].iter().cloned());
                args.push(tag.clone());
                args.extend(r[i + 1..].iter().cloned());
            }
            None => {
                args.push(tag.clone());
                args.extend(r.iter().cloned());
            }
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = e.docker(&argv);
        runs.push(json!({"code": out.code(), "stdout": out.stdout_str()}));
    }
    o.insert("run".into(), json!(runs));
    let mut targets = serde_json::Map::new();
    for t in &case.also_targets {
        let ttag = format!("corpus-{}-{t}:t", case.name);
        let mut extra = extra.clone();
        extra.extend(["--target".to_string(), t.clone()]);
        let out = e.build(&ctx, &ttag, &extra);
        let cfg = if out.status.success() {
            let v: Value = serde_json::from_str(
                &e.docker(&["image", "inspect", "-f", "{{json .Config}}", &ttag])
                    .ok()
                    .stdout_str(),
            )
            .expect("inspect json");
            config_subset(&v)
        } else {
            json!({"error": error_text(&out.stderr_str())})
        };
        targets.insert(t.clone(), cfg);
    }
    if !targets.is_empty() {
        o.insert("targets".into(), Value::Object(targets));
    }
    Value::Object(o)
}

/// Both sides through the same normalisation (expected.json may predate a rule here).
fn normalize(v: &mut Value) {
    let Some(o) = v.as_object_mut() else { return };
    if let Some(c) = o.get_mut("config") {
        *c = config_subset(c);
    }
    if let Some(Value::Array(h)) = o.get_mut("history") {
        for e in h {
            if let Some(s) = e.get(0).and_then(Value::as_str) {
                e[0] = json!(normalize_created_by(s));
            }
        }
    }
    if let Some(Value::Array(steps)) = o.get_mut("steps") {
        for s in steps {
            if let Some(t) = s.as_str() {
                *s = json!(normalize_created_by(t));
            }
        }
    }
    if let Some(e) = o.get("error").and_then(Value::as_str) {
        let e = error_text(e);
        o.insert("error".into(), json!(e));
    }
}

/// Field-by-field differences, readable in a failure message.
fn diff(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for k in w.keys().chain(g.keys().filter(|k| !w.contains_key(*k))) {
                diff(
                    w.get(k).unwrap_or(&Value::Null),
                    g.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(w), Value::Array(g)) if path.ends_with(".files") || w.len() != g.len() => {
            for f in w.iter().filter(|f| !g.contains(f)) {
                out.push(format!("{path}: missing {f}"));
            }
            for f in g.iter().filter(|f| !w.contains(f)) {
                out.push(format!("{path}: unexpected {f}"));
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                diff(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ if want != got => out.push(format!("{path}: want {want}, got {got}")),
        _ => {}
    }
}

fn engine_for_berth(f: &Fixture, berth_cli: bool) -> Engine {
    Engine {
        host: f.host(),
        config_dir: f.dir.clone(),
        berth_cli,
        build_flags: Vec::new(),
    }
}

#[test]
fn corpus_builds_like_docker() {
    if !can_run_containers() {
        return;
    }
    let cases = load_cases();
    let record = std::env::var_os("BERTH_DOCKERFILES_RECORD").is_some();
    let f = Fixture::new();
    let berth = engine_for_berth(&f, false);
    let berth_base = base_of(&berth);
    let reference = if record { RefDocker::start() } else { None };
    let ref_engine = reference.as_ref().map(|r| {
        r.docker_stdin(
            &["import", "-", "busybox:latest"],
            &archive::busybox_rootfs(),
        )
        .ok();
        Engine {
            host: r.host(),
            config_dir: r.dir.clone(),
            berth_cli: false,
            // the reference runs with --bridge none: RUN steps get no network
            build_flags: vec!["--network".into(), "none".into()],
        }
    });
    let ref_base = ref_engine.as_ref().map(base_of);
    let mut failures = Vec::new();
    for case in &cases {
        let url = case
            .http
            .then(|| format!("http://127.0.0.1:{}", serve_dir(case.dir.join("http"))));
        let expected_path = case.dir.join("expected.json");
        if record {
            let got = match (&ref_engine, &ref_base, case.buildkit) {
                (Some(e), Some(b), false) => outcome(e, case, b, url.as_deref()),
                _ => outcome(&berth, case, &berth_base, url.as_deref()),
            };
            let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
            std::fs::write(&expected_path, text).expect("write expected.json");
            eprintln!("recorded {}", case.name);
            continue;
        }
        let want: Value = match std::fs::read_to_string(&expected_path) {
            Ok(t) => serde_json::from_str(&t).expect("expected.json"),
            Err(_) => {
                failures.push(format!("{}: no expected.json (record it)", case.name));
                continue;
            }
        };
        let mut want = want;
        let mut got = outcome(&berth, case, &berth_base, url.as_deref());
        normalize(&mut want);
        normalize(&mut got);
        let mut d = Vec::new();
        if case.fails != (got["exit_code"] != 0) {
            d.push(format!(
                "{}: case.json says fails={}, the build exited {}",
                case.name, case.fails, got["exit_code"]
            ));
        }
        if case.unused_stages {
            let texts = |v: &Value| -> Vec<String> {
                v["steps"]
                    .as_array()
                    .map(|a| a.iter().map(step_text).collect())
                    .unwrap_or_default()
            };
            let (w, g) = (texts(&want), texts(&got));
            if !subsequence(&g, &w) {
                d.push(format!(
                    "{}.steps: {g:?} is no subsequence of {w:?}",
                    case.name
                ));
            }
            for v in [&mut want, &mut got] {
                if let Some(o) = v.as_object_mut() {
                    o.remove("steps");
                }
            }
        }
        if let Some(prefix) = &case.error_prefix {
            let got_err = got["error"].as_str().unwrap_or_default().to_owned();
            if !got_err.starts_with(prefix.as_str()) {
                d.push(format!(
                    "{}.error: {got_err:?} does not start with {prefix:?}",
                    case.name
                ));
            }
            for v in [&mut want, &mut got] {
                if let Some(o) = v.as_object_mut() {
                    o.remove("error");
                }
            }
        }
        diff(&want, &got, &case.name, &mut d);
        if case.berth_cli {
            let cli = engine_for_berth(&f, true);
            let mut got = outcome(&cli, case, &berth_base, url.as_deref());
            normalize(&mut got);
            // berth's CLI prints the same stream; only what the image holds is compared
            for k in ["config", "files", "run", "layers", "exit_code"] {
                diff(
                    &want[k],
                    &got[k],
                    &format!("{} (berth build).{k}", case.name),
                    &mut d,
                );
            }
        }
        let (known, d): (Vec<String>, Vec<String>) = d
            .into_iter()
            .partition(|l| case.known.keys().any(|k| l.starts_with(k.as_str())));
        for k in &known {
            eprintln!("known difference: {k}");
        }
        eprintln!(
            "{}: {}",
            case.name,
            if d.is_empty() { "ok" } else { "DIFFERS" }
        );
        failures.extend(d);
    }
    assert!(
        failures.is_empty(),
        "{} difference(s) from docker:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
