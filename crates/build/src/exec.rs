//! The executor: walks the stages a target needs with the legacy builder's semantics (moby
//! `builder/dockerfile`) against a [`Backend`] the engine implements. Independent stages run
//! as concurrent tokio tasks; their output is printed stage by stage, in Dockerfile order.
//!
//! Every step produces an image (metadata-only steps an empty-layer one, without a container);
//! a step's cache key is its parent image, its history line and the resulting config (plus the
//! files' checksum for ADD/COPY, the build args in use for RUN, its mounts and network), so a
//! miss changes the parent of every following step and so invalidates them. `RUN --mount`
//! sources `from=` a stage or image (bind: read-only; cache: seeds a new cache) make that
//! stage a dependency; `COPY --link` builds like COPY; `COPY --parents` (BuildKit labs) is
//! refused as dockerd refuses a flag it does not know.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_types::duration;
use berth_types::image_config::{ContainerConfig, Healthcheck, History, ImageConfig};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::BuildError;
use crate::ast::{Command, CopyInstr, Dockerfile, Instruction, InstructionKind, RunMount};
use crate::context::{self, Context, FileEntry, Source};

/// Build args Docker accepts without an `ARG` (and never reports as unused).
pub const BUILTIN_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Text for the client's `{"stream": ...}` lines.
pub type Output = Arc<dyn Fn(String) + Send + Sync>;

/// What `POST /build` asked for, as far as the executor cares.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--build-arg K=V`; `None`: given without a value and not set in the client's env.
    pub build_args: BTreeMap<String, Option<String>>,
    /// `--label`: added to the target stage as a last LABEL step, as dockerd does.
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    /// `networkmode` for RUN steps without `--network`.
    pub network: Option<String>,
    pub quiet: bool,
    /// `cachefrom`: images whose chains count as cache (when they are local).
    pub cache_from: Vec<String>,
    /// IDs of the secrets the client sent (`RUN --mount=type=secret`); the data stays with
    /// the backend.
    pub secrets: BTreeSet<String>,
}

/// An image a stage starts from.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub id: String,
    pub config: ImageConfig,
}

/// A mount of a RUN step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A host path (inside the context) bound into the container, or with `image` (`from=` a
    /// stage or image) the path `source` in that image's filesystem.
    Bind {
        source: PathBuf,
        image: Option<String>,
        target: String,
        readonly: bool,
    },
    /// A persistent cache directory, keyed by `id`. With `image` (`from=`), a new cache starts
    /// as a copy of `source` in that image.
    Cache {
        id: String,
        target: String,
        readonly: bool,
        image: Option<(String, String)>,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    /// A secret the client sent, as a read-only file (never in a layer or in history).
    Secret {
        id: String,
        target: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// A RUN step: a container from `image` running `cmd`, committed with `config`/`history`.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub network: Option<String>,
    pub mounts: Vec<MountSpec>,
    pub config: ImageConfig,
    pub history: History,
}

/// An ADD/COPY/WORKDIR step: entries written into a new layer on `image` (None: scratch).
#[derive(Debug, Clone)]
pub struct FilesRequest {
    pub image: Option<String>,
    pub entries: Vec<FileEntry>,
    /// `--chown` as written after expansion (`user:group`, names resolved in the image).
    pub chown: Option<String>,
    pub config: ImageConfig,
    pub history: History,
}

/// What the engine provides. Images are named by ID (`sha256:...`).
pub trait Backend: Send + Sync + 'static {
    /// The image `name` (pulled when missing, or always with `pull`).
    fn base_image(
        &self,
        name: &str,
        pull: bool,
        out: &Output,
    ) -> impl Future<Output = Result<BaseImage, BuildError>> + Send;
    /// Runs a RUN step (output streamed to `out`) and commits it; a non-zero exit is an error.
    fn run(
        &self,
        req: RunRequest,
        out: &Output,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
    /// Writes files into a new layer.
    fn add_files(
        &self,
        req: FilesRequest,
        out: &Output,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
    /// A new image with no layer (metadata steps).
    fn commit_config(
        &self,
        parent: Option<&str>,
        config: ImageConfig,
        history: History,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
    /// Whether `path` is a directory in the image.
    fn is_dir(&self, image: &str, path: &str) -> impl Future<Output = bool> + Send;
    /// A tar of `path` in the image, named by its last element (`COPY --from`).
    fn export(
        &self,
        image: &str,
        path: &str,
    ) -> impl Future<Output = Result<Vec<u8>, BuildError>> + Send;
    /// `ADD <url>`.
    fn download(&self, url: &str) -> impl Future<Output = Result<Vec<u8>, BuildError>> + Send;
    /// The image cached under `key`, if it still exists.
    fn cache_get(&self, key: &str) -> impl Future<Output = Option<String>> + Send;
    fn cache_put(&self, key: &str, image: &str) -> impl Future<Output = ()> + Send;
    /// With `--cache-from`: an image among those given (and their local parents) that is
    /// this step's result: child of `parent`, same history line, same container config.
    fn cache_from_hit(
        &self,
        parent: Option<&str>,
        created_by: &str,
        config: &ImageConfig,
    ) -> impl Future<Output = Option<String>> + Send;
}

fn short(id: &str) -> &str {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    &h[..h.len().min(12)]
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Go's `%q` of a string slice: `["a" "b c"]`, as Docker writes CMD/ENTRYPOINT history.
fn go_q(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

fn env_key(kv: &str) -> &str {
    kv.split_once('=').map(|(k, _)| k).unwrap_or(kv)
}

/// A stage's state between steps (moby's `dispatchState`).
#[derive(Clone)]
struct State {
    image: Option<String>,
    base: ImageConfig,
    config: ContainerConfig,
    /// Declared ARGs with their values (`None`: declared, no value).
    args: BTreeMap<String, Option<String>>,
    cmd_set: bool,
    cache_ok: bool,
}

impl State {
    fn shell(&self) -> Vec<String> {
        self.config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn env(&self) -> Vec<String> {
        self.config.env.clone().unwrap_or_default()
    }

    /// Build args in effect for RUN: declared (or builtin given) args with a value, not
    /// shadowed by ENV. Sorted `k=v`.
    fn args_in_use(&self, opts: &Options) -> Vec<String> {
        let env = self.env();
        let shadowed = |k: &str| env.iter().any(|e| env_key(e) == k);
        let mut out: Vec<String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .filter(|(k, _)| !shadowed(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for b in BUILTIN_ARGS {
            if !self.args.contains_key(*b)
                && !shadowed(b)
                && let Some(Some(v)) = opts.build_args.get(*b)
            {
                out.push(format!("{b}={v}"));
            }
        }
        out.sort();
        out
    }

    fn lookup(&self, opts: &Options, name: &str) -> Option<String> {
        if let Some(v) = self
            .env()
            .iter()
            .rev()
            .find(|e| env_key(e) == name)
            .map(|e| e.split_once('=').map(|(_, v)| v).unwrap_or("").to_owned())
        {
            return Some(v);
        }
        if let Some(v) = self.args.get(name) {
            return v.clone();
        }
        if BUILTIN_ARGS.contains(&name) {
            return opts.build_args.get(name).cloned().flatten();
        }
        None
    }

    fn image_config(&self) -> ImageConfig {
        ImageConfig {
            architecture: if self.base.architecture.is_empty() {
                "amd64".into()
            } else {
                self.base.architecture.clone()
            },
            os: if self.base.os.is_empty() {
                "linux".into()
            } else {
                self.base.os.clone()
            },
            variant: self.base.variant.clone(),
            author: self.base.author.clone(),
            config: Some(self.config.clone()),
            created: Some(now_rfc3339()),
            ..Default::default()
        }
    }
}

/// Shared by the stage tasks of one build.
struct Shared<B: Backend> {
    backend: Arc<B>,
    ctx: Arc<Context>,
    opts: Options,
    df: Dockerfile,
    escape: char,
    /// Global ARGs (before the first FROM) with build-arg overrides applied.
    meta_args: BTreeMap<String, Option<String>>,
    /// Finished stages by index.
    done: Mutex<HashMap<usize, BaseImage>>,
    /// Images named by `COPY --from=<image>` / `FROM <image>` resolved once.
    total_steps: usize,
}

/// The result of a build: the final image ID (the caller tags it and prints the summary).
pub struct Built {
    pub id: String,
}

/// Which stage a `--from`/`FROM` word names: a stage name (case-insensitive) or index before
/// `before`.
fn stage_ref(df: &Dockerfile, word: &str, before: usize) -> Option<usize> {
    let lw = word.to_ascii_lowercase();
    df.stages[..before.min(df.stages.len())]
        .iter()
        .find(|s| s.name.as_deref() == Some(lw.as_str()))
        .map(|s| s.index)
        .or_else(|| {
            word.parse::<usize>()
                .ok()
                .filter(|i| *i < before.min(df.stages.len()))
        })
}

fn stage_deps(df: &Dockerfile, i: usize, meta: &dyn Fn(&str) -> String) -> BTreeSet<usize> {
    let s = &df.stages[i];
    let mut deps = BTreeSet::new();
    if let Some(d) = stage_ref(df, &meta(&s.base), i) {
        deps.insert(d);
    }
    for ins in &s.instructions {
        match &ins.kind {
            InstructionKind::Copy(c) => {
                if let Some(f) = &c.from
                    && let Some(d) = stage_ref(df, f, i)
                {
                    deps.insert(d);
                }
            }
            InstructionKind::Run(r) => {
                for m in &r.mounts {
                    let from = match m {
                        RunMount::Bind { from, .. } | RunMount::Cache { from, .. } => from,
                        _ => &None,
                    };
                    if let Some(f) = from
                        && let Some(d) = stage_ref(df, f, i)
                    {
                        deps.insert(d);
                    }
                }
            }
            _ => {}
        }
    }
    deps
}

/// Builds `df` with `ctx` as the context. Output lines go to `out`.
pub async fn build<B: Backend>(
    backend: Arc<B>,
    ctx: Arc<Context>,
    df: Dockerfile,
    opts: Options,
    out: Output,
) -> Result<Built, BuildError> {
    if df.stages.is_empty() {
        return Err(BuildError::new(
            "dockerfile parse error: file with no instructions",
        ));
    }
    // `COPY --parents` is BuildKit's labs channel only; dockerd refuses a flag it does not
    // know when it reads the Dockerfile, before any step runs
    for ins in df.stages.iter().flat_map(|s| s.instructions.iter()) {
        if let InstructionKind::Copy(c) = &ins.kind
            && c.parents
        {
            return Err(BuildError::new(format!(
                "dockerfile parse error line {}: Unknown flag: parents",
                ins.line
            )));
        }
    }
    let escape = if df.escape == '\0' { '\\' } else { df.escape };
    // global ARGs, with build-arg overrides
    let mut meta_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    for ins in &df.global_args {
        if let InstructionKind::Arg(list) = &ins.kind {
            // defaults see the ARGs of earlier lines, not of this one (moby's processMetaArg)
            let before = meta_args.clone();
            for (k, def) in list {
                let lookup = |n: &str| before.get(n).cloned().flatten();
                let def = match def {
                    Some(d) => Some(
                        crate::expand::expand(d, escape, &lookup)
                            .map_err(|e| BuildError::new(format!("Dockerfile:{} {e}", ins.line)))?,
                    ),
                    None => None,
                };
                let v = match opts.build_args.get(k) {
                    Some(Some(v)) => Some(v.clone()),
                    _ => def,
                };
                meta_args.insert(k.clone(), v);
            }
        }
    }
    let meta = |w: &str| {
        crate::expand::expand(w, escape, &|n: &str| meta_args.get(n).cloned().flatten())
            .unwrap_or_else(|_| w.to_owned())
    };
    // the target and the stages it needs
    let target = match &opts.target {
        Some(t) if !t.is_empty() => {
            let lt = t.to_ascii_lowercase();
            df.stages
                .iter()
                .find(|s| s.name.as_deref() == Some(lt.as_str()))
                .map(|s| s.index)
                .ok_or_else(|| {
                    BuildError::new(format!("failed to reach build target {t} in Dockerfile"))
                })?
        }
        _ => df.stages.len() - 1,
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    let mut deps: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            let d = stage_deps(&df, i, &meta);
            todo.extend(d.iter().copied());
            deps.insert(i, d);
        }
    }
    // unused build args: declared nowhere (builtins are always fine)
    let mut declared: HashSet<String> = HashSet::new();
    for ins in df
        .global_args
        .iter()
        .chain(df.stages.iter().flat_map(|s| s.instructions.iter()))
    {
        if let InstructionKind::Arg(list) = &ins.kind {
            declared.extend(list.iter().map(|(k, _)| k.clone()));
        }
    }
    let unused: Vec<String> = opts
        .build_args
        .keys()
        .filter(|k| !declared.contains(*k) && !BUILTIN_ARGS.contains(&k.as_str()))
        .cloned()
        .collect();

    let mut df = df;
    // dockerd appends one `LABEL k=v` step per --label, in key order, to the target stage
    let line = df.stages[target]
        .instructions
        .last()
        .map(|i| i.line)
        .unwrap_or(df.stages[target].line);
    for (k, v) in &opts.labels {
        df.stages[target].instructions.push(Instruction {
            line,
            original: format!("LABEL {k}={v}"),
            kind: InstructionKind::Label(vec![(literal_word(k, escape), literal_word(v, escape))]),
        });
    }
    if !df.warnings.is_empty() {
        // dockerd writes them to the build's stderr, which the stream shows in red
        out(format!("\x1b[91m{}\n\x1b[0m", df.warnings.join("\n")));
    }
    // the ARGs before the first FROM are steps too, printed first (dockerd's metaArgs)
    let global_steps = df.global_args.len();
    let total_steps = global_steps
        + needed
            .iter()
            .map(|i| df.stages[*i].instructions.len() + 1)
            .sum::<usize>();
    for (i, ins) in df.global_args.iter().enumerate() {
        out(format!("Step {}/{total_steps} : {}\n", i + 1, ins.original));
    }
    let shared = Arc::new(Shared {
        backend,
        ctx,
        opts,
        df,
        escape,
        meta_args,
        done: Mutex::new(HashMap::new()),
        total_steps,
    });

    // step numbers: needed stages in Dockerfile order
    let mut first_step = HashMap::new();
    let mut n = global_steps + 1;
    for i in &needed {
        first_step.insert(*i, n);
        n += shared.df.stages[*i].instructions.len() + 1;
    }
    // one output channel per stage, printed in Dockerfile order
    let order: Vec<usize> = needed.iter().copied().collect();
    let mut rxs = Vec::new();
    let mut txs = HashMap::new();
    for i in &order {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        txs.insert(*i, tx);
        rxs.push(rx);
    }
    let printer = {
        let out = out.clone();
        tokio::spawn(async move {
            for mut rx in rxs {
                while let Some(s) = rx.recv().await {
                    out(s);
                }
            }
        })
    };
    // run stages as their dependencies finish
    let mut pending: BTreeSet<usize> = needed.clone();
    let mut running = tokio::task::JoinSet::new();
    let mut finished: HashSet<usize> = HashSet::new();
    let mut failure: Option<BuildError> = None;
    loop {
        if failure.is_none() {
            let ready: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|i| deps[i].iter().all(|d| finished.contains(d)))
                .collect();
            // a stage that is the only one to run goes inline: a task hand-off costs a
            // scheduling delay per stage on a loaded machine (the cached rebuild's path)
            if let [i] = ready[..]
                && running.is_empty()
            {
                pending.remove(&i);
                let res = match txs.remove(&i) {
                    Some(tx) => {
                        let out: Output = Arc::new(move |s| {
                            let _ = tx.send(s);
                        });
                        build_stage(&shared, i, first_step[&i], &out).await
                    }
                    None => Err(BuildError::new("internal: stage output")),
                };
                match res {
                    Ok(img) => {
                        finished.insert(i);
                        if let Ok(mut d) = shared.done.lock() {
                            d.insert(i, img);
                        }
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
                continue;
            }
            for i in ready {
                pending.remove(&i);
                let sh = shared.clone();
                let tx = txs.remove(&i);
                let step = first_step[&i];
                running.spawn(async move {
                    let Some(tx) = tx else {
                        return (i, Err(BuildError::new("internal: stage output")));
                    };
                    let out: Output = Arc::new(move |s| {
                        let _ = tx.send(s);
                    });
                    (i, build_stage(&sh, i, step, &out).await)
                });
            }
        }
        let Some(res) = running.join_next().await else {
            break;
        };
        match res {
            Ok((i, Ok(img))) => {
                finished.insert(i);
                if let Ok(mut d) = shared.done.lock() {
                    d.insert(i, img);
                }
            }
            Ok((_, Err(e))) => {
                failure.get_or_insert(e);
                running.abort_all();
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                failure.get_or_insert(BuildError::new(format!("build stage failed: {e}")));
                running.abort_all();
            }
        }
    }
    // every stage task is gone, so every sender is: the printer ends after showing what the
    // stages printed (a failed stage's last lines included)
    drop(txs);
    let _ = printer.await;
    if let Some(e) = failure {
        return Err(e);
    }
    let img = shared
        .done
        .lock()
        .ok()
        .and_then(|d| d.get(&target).cloned())
        .ok_or_else(|| BuildError::new("No image was generated. Is your Dockerfile empty?"))?;
    if !unused.is_empty() {
        out(format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            unused.join(" ")
        ));
    }
    Ok(Built { id: img.id })
}

/// `--label` keys and values are literal: escaped so the LABEL step's word expansion (quotes,
/// `$`, the escape character) leaves them as they are.
fn literal_word(s: &str, escape: char) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == escape || matches!(c, '$' | '"' | '\'') {
            out.push(escape);
        }
        out.push(c);
    }
    out
}

enum Action {
    Meta,
    Run(Box<RunRequest>),
    Copy {
        plan: Box<CopyPlan>,
        chown: Option<String>,
    },
    /// WORKDIR: a layer with the directory when the image lacks it, else metadata only.
    Workdir {
        path: String,
    },
}

impl<B: Backend> Shared<B> {
    /// (`_line`: dockerd's expansion errors name no line, its message is enough.)
    fn expand(&self, st: &State, word: &str, _line: usize) -> Result<String, BuildError> {
        crate::expand::expand(word, self.escape, &|n: &str| st.lookup(&self.opts, n))
            .map_err(BuildError::new)
    }

    /// Resolves an image or stage name for FROM / `--from`.
    async fn image_or_stage(
        &self,
        word: &str,
        before: usize,
        out: &Output,
    ) -> Result<Option<BaseImage>, BuildError> {
        if let Some(i) = stage_ref(&self.df, word, before) {
            let d = self.done.lock().ok().and_then(|d| d.get(&i).cloned());
            return d
                .map(Some)
                .ok_or_else(|| BuildError::new(format!("stage {word} was not built")));
        }
        if word.eq_ignore_ascii_case("scratch") {
            return Ok(None);
        }
        self.backend
            .base_image(word, self.opts.pull, out)
            .await
            .map(Some)
    }
}

fn cache_key(parent: Option<&str>, created_by: &str, config: &ImageConfig, extra: &str) -> String {
    let mut h = Sha256::new();
    h.update(parent.unwrap_or("scratch").as_bytes());
    h.update([0]);
    h.update(created_by.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(&config.config).unwrap_or_default());
    h.update([0]);
    h.update(config.author.as_deref().unwrap_or("").as_bytes());
    h.update([0]);
    h.update(extra.as_bytes());
    hex::encode(h.finalize())
}

async fn build_stage<B: Backend>(
    sh: &Shared<B>,
    index: usize,
    first_step: usize,
    out: &Output,
) -> Result<BaseImage, BuildError> {
    let stage = &sh.df.stages[index];
    let mut step = first_step;
    out(format!(
        "Step {step}/{} : {}\n",
        sh.total_steps, stage.original
    ));
    let meta_lookup = |n: &str| sh.meta_args.get(n).cloned().flatten();
    let base_name = crate::expand::expand(&stage.base, sh.escape, &meta_lookup)
        .map_err(|e| BuildError::new(format!("Dockerfile:{} {e}", stage.line)))?;
    let base = sh.image_or_stage(&base_name, index, out).await?;
    let mut st = State {
        image: base.as_ref().map(|b| b.id.clone()),
        base: base.as_ref().map(|b| b.config.clone()).unwrap_or_default(),
        config: base
            .as_ref()
            .and_then(|b| b.config.config.clone())
            .unwrap_or_default(),
        args: BTreeMap::new(),
        cmd_set: false,
        cache_ok: !sh.opts.no_cache,
    };
    // dockerd's setDefaultPath: a base without PATH (scratch, an imported rootfs) gets the
    // default one in the image config
    let env = st.config.env.get_or_insert_with(Vec::new);
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if let Some(id) = &st.image {
        out(format!(" ---> {}\n", short(id)));
    }
    // ONBUILD triggers of the base run first, then are cleared
    let triggers = st.config.on_build.take().unwrap_or_default();
    if !triggers.is_empty() {
        out(format!(
            "# Executing {} build trigger{}\n",
            triggers.len(),
            if triggers.len() == 1 { "" } else { "s" }
        ));
        for t in &triggers {
            let parsed = crate::parse::parse(&format!("FROM scratch\n{t}\n"))
                .map_err(|e| BuildError::new(format!("parsing ONBUILD trigger {t:?}: {e}")))?;
            for ins in parsed
                .stages
                .into_iter()
                .flat_map(|s| s.instructions.into_iter())
            {
                dispatch(sh, &mut st, index, &ins, out).await?;
            }
        }
    }
    for ins in &stage.instructions {
        step += 1;
        out(format!(
            "Step {step}/{} : {}\n",
            sh.total_steps, ins.original
        ));
        dispatch(sh, &mut st, index, ins, out).await?;
    }
    let id = match st.image.clone() {
        Some(id) => id,
        None => {
            // FROM scratch with nothing else: an empty image, as an empty commit would give
            let cfg = st.image_config();
            sh.backend
                .commit_config(
                    None,
                    cfg,
                    History {
                        created: Some(now_rfc3339()),
                        created_by: Some(String::new()),
                        ..Default::default()
                    },
                )
                .await?
        }
    };
    let config = ImageConfig {
        config: Some(st.config.clone()),
        ..st.image_config()
    };
    Ok(BaseImage { id, config })
}

/// One instruction: compute the new config and history line, hit the cache or do the work.
async fn dispatch<B: Backend>(
    sh: &Shared<B>,
    st: &mut State,
    index: usize,
    ins: &Instruction,
    out: &Output,
) -> Result<(), BuildError> {
    let line = ins.line;
    let shell = st.shell();
    let nop = |comment: &str| {
        let mut v = shell.clone();
        v.push(comment.to_owned());
        v.join(" ")
    };
    let mut extra = String::new();
    // (created_by, action)
    let (created_by, action) = match &ins.kind {
        InstructionKind::Env(pairs) => {
            // every word expands with the environment from before the instruction:
            // `ENV abc=bye def=$abc` gives def the old abc (Docker's documented rule)
            let before = st.clone();
            let mut env = st.env();
            let mut shown = Vec::new();
            for (k, v) in pairs {
                let k = sh.expand(&before, k, line)?;
                let v = sh.expand(&before, v, line)?;
                // a variable already set keeps its place (dockerd's dispatchEnv)
                match env.iter_mut().find(|e| env_key(e) == k) {
                    Some(e) => *e = format!("{k}={v}"),
                    None => env.push(format!("{k}={v}")),
                }
                shown.push(format!("{k}={v}"));
                st.config.env = Some(env.clone());
            }
            (
                nop(&format!("#(nop)  ENV {}", shown.join(" "))),
                Action::Meta,
            )
        }
        InstructionKind::Arg(list) => {
            // (defaults expand with what was in effect before the instruction, as ENV's)
            let before = st.clone();
            let mut shown = Vec::new();
            for (k, def) in list {
                let def = match def {
                    Some(d) => Some(sh.expand(&before, d, line)?),
                    None => None,
                };
                let v = match sh.opts.build_args.get(k) {
                    Some(Some(v)) => Some(v.clone()),
                    _ => def
                        .clone()
                        .or_else(|| sh.meta_args.get(k).cloned().flatten()),
                };
                st.args.insert(k.clone(), v);
                shown.push(match def {
                    Some(d) => format!("{k}={d}"),
                    None => k.clone(),
                });
            }
            (
                nop(&format!("#(nop)  ARG {}", shown.join(" "))),
                Action::Meta,
            )
        }
        InstructionKind::Label(pairs) => {
            let mut labels = st.config.labels.clone().unwrap_or_default();
            let mut shown = Vec::new();
            for (k, v) in pairs {
                let k = sh.expand(st, k, line)?;
                let v = sh.expand(st, v, line)?;
                shown.push(format!("{k}={v}"));
                labels.insert(k, v);
            }
            st.config.labels = Some(labels);
            (
                nop(&format!("#(nop)  LABEL {}", shown.join(" "))),
                Action::Meta,
            )
        }
        InstructionKind::Maintainer(m) => {
            st.base.author = Some(m.clone());
            (nop(&format!("#(nop)  MAINTAINER {m}")), Action::Meta)
        }
        InstructionKind::Cmd(c) => {
            let cmd = match c {
                Command::Shell(s) => {
                    let mut v = shell.clone();
                    v.push(s.clone());
                    v
                }
                Command::Exec(v) => v.clone(),
            };
            st.config.cmd = Some(cmd.clone());
            st.cmd_set = true;
            (nop(&format!("#(nop)  CMD {}", go_q(&cmd))), Action::Meta)
        }
        InstructionKind::Entrypoint(c) => {
            let ep = match c {
                Command::Shell(s) => {
                    let mut v = shell.clone();
                    v.push(s.clone());
                    v
                }
                Command::Exec(v) => v.clone(),
            };
            st.config.entrypoint = Some(ep.clone());
            // an ENTRYPOINT resets a CMD inherited from the base (not one set in this stage)
            if !st.cmd_set {
                st.config.cmd = None;
            }
            (
                nop(&format!("#(nop)  ENTRYPOINT {}", go_q(&ep))),
                Action::Meta,
            )
        }
        InstructionKind::Expose(ports) => {
            let mut map = st.config.exposed_ports.clone().unwrap_or_default();
            let mut shown = Vec::new();
            for p in ports {
                let p = sh.expand(st, p, line)?;
                shown.push(p.clone());
                for port in expand_ports(&p)
                    .map_err(|e| BuildError::new(format!("Dockerfile:{line} {e}")))?
                {
                    map.insert(port, Value::Object(Default::default()));
                }
            }
            st.config.exposed_ports = Some(map);
            (
                nop(&format!("#(nop)  EXPOSE {}", shown.join(" "))),
                Action::Meta,
            )
        }
        InstructionKind::Volume(vols) => {
            let mut map = st.config.volumes.clone().unwrap_or_default();
            let mut shown = Vec::new();
            for v in vols {
                let v = sh.expand(st, v, line)?;
                if v.trim().is_empty() {
                    return Err(BuildError::new(
                        "VOLUME specified can not be an empty string",
                    ));
                }
                map.insert(v.clone(), Value::Object(Default::default()));
                shown.push(v);
            }
            st.config.volumes = Some(map);
            (
                nop(&format!("#(nop)  VOLUME [{}]", shown.join(" "))),
                Action::Meta,
            )
        }
        InstructionKind::User(u) => {
            let u = sh.expand(st, u, line)?;
            st.config.user = Some(u.clone());
            (nop(&format!("#(nop)  USER {u}")), Action::Meta)
        }
        InstructionKind::Stopsignal(s) => {
            let s = sh.expand(st, s, line)?;
            st.config.stop_signal = Some(s.clone());
            (nop(&format!("#(nop)  STOPSIGNAL {s}")), Action::Meta)
        }
        InstructionKind::Shell(v) => {
            st.config.shell = Some(v.clone());
            // dockerd writes this step's history with the new shell already in effect
            let mut created_by = st.shell();
            created_by.push(format!("#(nop)  SHELL [{}]", v.join(" ")));
            (created_by.join(" "), Action::Meta)
        }
        InstructionKind::Onbuild(t) => {
            let text = t.original.clone();
            let mut ob = st.config.on_build.clone().unwrap_or_default();
            ob.push(text.clone());
            st.config.on_build = Some(ob);
            (nop(&format!("#(nop)  ONBUILD {text}")), Action::Meta)
        }
        InstructionKind::Healthcheck(h) => {
            let hc = healthcheck(h, &shell)
                .map_err(|e| BuildError::new(format!("Dockerfile:{line} {e}")))?;
            let shown = format!(
                "&{{{} {:?} {:?} {:?} '\\x{:02x}'}}",
                go_q(hc.test.as_deref().unwrap_or(&[])),
                duration::format(hc.interval.unwrap_or(0)),
                duration::format(hc.timeout.unwrap_or(0)),
                duration::format(hc.start_period.unwrap_or(0)),
                hc.retries.unwrap_or(0)
            );
            // dockerd's commit merges the new config over the parent's: an option the new
            // HEALTHCHECK leaves unset keeps the previous one's value (history shows it unset)
            let mut merged = hc;
            if let Some(prev) = &st.config.healthcheck {
                merged.interval = merged.interval.or(prev.interval);
                merged.timeout = merged.timeout.or(prev.timeout);
                merged.start_period = merged.start_period.or(prev.start_period);
                merged.start_interval = merged.start_interval.or(prev.start_interval);
                merged.retries = merged.retries.or(prev.retries);
            }
            st.config.healthcheck = Some(merged);
            (nop(&format!("#(nop)  HEALTHCHECK {shown}")), Action::Meta)
        }
        InstructionKind::Workdir(w) => {
            let w = sh.expand(st, w, line)?;
            let cur = st.config.working_dir.clone().unwrap_or_default();
            let path = if w.starts_with('/') {
                context::clean_abs(&w)
            } else {
                context::clean_abs(&format!("/{cur}/{w}"))
            };
            st.config.working_dir = Some(path.clone());
            let created_by = nop(&format!("#(nop) WORKDIR {path}"));
            if path == "/" {
                (created_by, Action::Meta)
            } else {
                // whether the dir must be created is asked only on a cache miss
                (created_by, Action::Workdir { path })
            }
        }
        InstructionKind::Run(r) => run_step(sh, st, index, r, &mut extra, line, out).await?,
        InstructionKind::Copy(c) => copy_step(sh, st, index, c, false, line, out).await?,
        InstructionKind::Add(c) => copy_step(sh, st, index, c, true, line, out).await?,
    };
    let config = st.image_config();
    let key = cache_key(st.image.as_deref(), &created_by, &config, &extra);
    if st.cache_ok {
        // dockerd: images given with --cache-from replace the local cache as the source
        let hit = if sh.opts.cache_from.is_empty() {
            sh.backend.cache_get(&key).await
        } else {
            sh.backend
                .cache_from_hit(st.image.as_deref(), &created_by, &config)
                .await
        };
        if let Some(id) = hit {
            out(" ---> Using cache\n".into());
            out(format!(" ---> {}\n", short(&id)));
            st.image = Some(id);
            return Ok(());
        }
        st.cache_ok = false;
    }
    let history = History {
        created: config.created.clone(),
        author: config.author.clone(),
        created_by: Some(created_by),
        ..Default::default()
    };
    let id = match action {
        Action::Meta => {
            sh.backend
                .commit_config(st.image.as_deref(), config, history)
                .await?
        }
        Action::Run(mut req) => {
            req.config = config;
            req.history = history;
            sh.backend.run(*req, out).await?
        }
        Action::Workdir { path } => {
            let exists = match &st.image {
                Some(img) => sh.backend.is_dir(img, &path).await,
                None => false,
            };
            if exists {
                sh.backend
                    .commit_config(st.image.as_deref(), config, history)
                    .await?
            } else {
                let now = now_secs();
                let entries = context::with_parents(
                    vec![FileEntry {
                        path,
                        source: Source::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: now,
                        implicit: true,
                    }],
                    now,
                );
                let req = FilesRequest {
                    image: st.image.clone(),
                    entries,
                    // root-owned, as dockerd's legacy builder makes it (BuildKit chowns to USER)
                    chown: None,
                    config,
                    history,
                };
                sh.backend.add_files(req, out).await?
            }
        }
        Action::Copy { plan, chown } => {
            let entries = plan.entries(sh, st.image.as_deref()).await?;
            let req = FilesRequest {
                image: st.image.clone(),
                entries,
                chown,
                config,
                history,
            };
            sh.backend.add_files(req, out).await?
        }
    };
    sh.backend.cache_put(&key, &id).await;
    out(format!(" ---> {}\n", short(&id)));
    st.image = Some(id);
    Ok(())
}

fn expand_ports(p: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_owned()),
    };
    let bad = || format!("Invalid containerPort: {p}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = ports.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

fn healthcheck(h: &crate::ast::Healthcheck, shell: &[String]) -> Result<Healthcheck, String> {
    if h.none {
        return Ok(Healthcheck {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
    }
    let test = match &h.command {
        Some(Command::Shell(s)) => vec!["CMD-SHELL".into(), s.clone()],
        Some(Command::Exec(v)) => {
            let mut t = vec!["CMD".to_owned()];
            t.extend(v.iter().cloned());
            t
        }
        None => return Err("Missing command after HEALTHCHECK CMD".into()),
    };
    let _ = shell;
    let dur = |s: &Option<String>, name: &str| -> Result<Option<i64>, String> {
        match s {
            None => Ok(None),
            Some(s) => {
                let d = duration::parse(s)?;
                if d != 0 && d < 1_000_000 {
                    return Err(format!("Interval {name} cannot be less than 1ms"));
                }
                Ok((d != 0).then_some(d))
            }
        }
    };
    let retries = match &h.retries {
        None => None,
        Some(r) => {
            let n: i64 = r
                .parse()
                .map_err(|_| format!("strconv.ParseInt: parsing {r:?}: invalid syntax"))?;
            if n < 0 {
                return Err("--retries cannot be negative".into());
            }
            (n != 0).then_some(n)
        }
    };
    Ok(Healthcheck {
        test: Some(test),
        interval: dur(&h.interval, "interval")?,
        timeout: dur(&h.timeout, "timeout")?,
        start_period: dur(&h.start_period, "start-period")?,
        start_interval: dur(&h.start_interval, "start-interval")?,
        retries,
    })
}

/// `RUN --mount=type=<kind>,from=<f>,source=<source>`: the id of the image or stage `f`
/// names (expanded; `scratch` has nothing to copy or mount) and `source` as an absolute path in it.
async fn mount_from<B: Backend>(
    sh: &Shared<B>,
    st: &State,
    f: &str,
    source: &Option<String>,
    (index, line): (usize, usize),
    out: &Output,
    kind: &str,
) -> Result<(String, String), BuildError> {
    let verb = if kind == "cache" { "copy" } else { "mount" };
    let f = sh.expand(st, f, line)?;
    let img = sh.image_or_stage(&f, index, out).await?.ok_or_else(|| {
        BuildError::new(format!(
            "RUN --mount=type={kind},from=scratch: nothing to {verb}"
        ))
    })?;
    let src = context::clean_abs(&format!("/{}", source.as_deref().unwrap_or("/")));
    Ok((img.id, src))
}

async fn run_step<B: Backend>(
    sh: &Shared<B>,
    st: &mut State,
    index: usize,
    r: &crate::ast::Run,
    extra: &mut String,
    line: usize,
    out: &Output,
) -> Result<(String, Action), BuildError> {
    let Some(image) = st.image.clone() else {
        return Err(BuildError::new(
            "failed to create container: no command specified (RUN on scratch has no shell)",
        ));
    };
    let shell = st.shell();
    let cmd: Vec<String> = match &r.command {
        Some(Command::Exec(v)) => v.clone(),
        Some(Command::Shell(s)) => {
            let script = if r.heredocs.is_empty() {
                s.clone()
            } else if s.trim_start().starts_with("<<") && r.heredocs.len() == 1 {
                // `RUN <<EOF` alone: the body is the script
                r.heredocs[0].content.clone()
            } else {
                // the shell reads the here-documents itself
                let mut t = s.clone();
                for h in &r.heredocs {
                    t.push('\n');
                    t.push_str(&h.content);
                    if !h.content.ends_with('\n') {
                        t.push('\n');
                    }
                    t.push_str(&h.name);
                }
                t
            };
            let mut v = shell.clone();
            v.push(script);
            v
        }
        None => {
            return Err(BuildError::new(format!(
                "Dockerfile:{line} RUN with no command"
            )));
        }
    };
    let args = st.args_in_use(&sh.opts);
    // history (and so the cache) leaves out the predefined proxy args unless the stage
    // declared them (moby's prependEnvOnCmd / IsReferencedOrNotBuiltin)
    let in_history: Vec<&String> = args
        .iter()
        .filter(|a| {
            let k = env_key(a);
            !BUILTIN_ARGS.contains(&k) || st.args.contains_key(k)
        })
        .collect();
    let mut shown = Vec::new();
    // (a `|0` prefix when the only args in effect are unreferenced proxy args)
    if !args.is_empty() {
        shown.push(format!("|{}", in_history.len()));
        shown.extend(in_history.into_iter().cloned());
    }
    shown.extend(cmd.iter().cloned());
    let created_by = shown.join(" ");
    let mut env = st.env();
    env.extend(args.iter().cloned());
    let network = r
        .network
        .clone()
        .or_else(|| sh.opts.network.clone())
        .filter(|n| !n.is_empty() && n != "default");
    let mut mounts = Vec::new();
    let mut keyed: Vec<String> = Vec::new();
    for m in &r.mounts {
        match m {
            RunMount::Cache {
                target,
                id,
                from,
                source,
                readonly,
                ..
            } => {
                let target = abs_in(st, target);
                let image = match from {
                    Some(f) => {
                        Some(mount_from(sh, st, f, source, (index, line), out, "cache").await?)
                    }
                    None => None,
                };
                mounts.push(MountSpec::Cache {
                    id: id.clone().unwrap_or_else(|| target.clone()),
                    target,
                    readonly: *readonly,
                    image,
                });
            }
            RunMount::Bind {
                target,
                source,
                from,
                ..
            } => {
                // BuildKit discards writes to a rw bind; binding read-only keeps the context
                // and the source image safe (a rw bind would need a copy)
                match from {
                    Some(f) => {
                        let (img, src) =
                            mount_from(sh, st, f, source, (index, line), out, "bind").await?;
                        mounts.push(MountSpec::Bind {
                            source: PathBuf::from(src),
                            image: Some(img),
                            target: abs_in(st, target),
                            readonly: true,
                        });
                    }
                    None => {
                        let src = sh.ctx.resolve(source.as_deref().unwrap_or("."))?;
                        // the context's host dir differs per build: the key takes the
                        // content's checksum instead
                        keyed.push(format!("bind:{}:{}", src.rel, sh.ctx.checksum(&src, &[])?));
                        mounts.push(MountSpec::Bind {
                            source: src.host,
                            image: None,
                            target: abs_in(st, target),
                            readonly: true,
                        });
                    }
                }
            }
            RunMount::Tmpfs { target, size } => mounts.push(MountSpec::Tmpfs {
                target: abs_in(st, target),
                size: *size,
            }),
            RunMount::Secret {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                let id = id
                    .clone()
                    .or_else(|| {
                        target
                            .as_deref()
                            .and_then(|t| t.rsplit('/').next())
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                if !sh.opts.secrets.contains(&id) {
                    if *required {
                        return Err(BuildError::new(format!("secret {id}: not found")));
                    }
                    continue;
                }
                let target = target
                    .clone()
                    .unwrap_or_else(|| format!("/run/secrets/{id}"));
                mounts.push(MountSpec::Secret {
                    target: abs_in(st, &target),
                    id,
                    mode: mode.unwrap_or(0o400),
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                });
            }
            RunMount::Ssh { .. } => {
                return Err(BuildError::new(
                    "RUN --mount=type=ssh needs an SSH agent forwarded, which the legacy /build API has not",
                ));
            }
        }
    }
    // mounts as they matter to the cache: context binds by content, not by host path
    let stable: Vec<String> = mounts
        .iter()
        .map(|m| match m {
            MountSpec::Bind {
                image: None,
                target,
                ..
            } => format!("bind:{target}"),
            m => format!("{m:?}"),
        })
        .collect();
    *extra = format!("{stable:?}|{keyed:?}|{network:?}");
    Ok((
        created_by,
        Action::Run(Box::new(RunRequest {
            image,
            cmd,
            env,
            user: st.config.user.clone().unwrap_or_default(),
            workdir: st.config.working_dir.clone().unwrap_or_default(),
            network,
            mounts,
            config: ImageConfig::default(),
            history: History::default(),
        })),
    ))
}

fn abs_in(st: &State, p: &str) -> String {
    if p.starts_with('/') {
        context::clean_abs(p)
    } else {
        let wd = st.config.working_dir.clone().unwrap_or_default();
        context::clean_abs(&format!("/{wd}/{p}"))
    }
}

fn parse_chmod(s: &str) -> Result<u32, BuildError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| BuildError::new(format!("invalid chmod parameter: {s}")))
}

/// A source of ADD/COPY before its entries are made (the checksum is known first: on a cache
/// hit nothing else is read).
enum Src {
    Ctx(context::Resolved),
    Bytes {
        name: String,
        data: Vec<u8>,
        mode: u32,
    },
    /// A path in an image (`COPY --from`), exported on a miss.
    Export {
        image: String,
        path: String,
    },
    /// An archive to extract (ADD of a local tar).
    Archive {
        data: Vec<u8>,
    },
}

async fn copy_step<B: Backend>(
    sh: &Shared<B>,
    st: &mut State,
    index: usize,
    c: &CopyInstr,
    is_add: bool,
    line: usize,
    out: &Output,
) -> Result<(String, Action), BuildError> {
    let name = if is_add { "ADD" } else { "COPY" };
    let fail = |m: String| BuildError::new(format!("{name} failed: {m}"));
    let dest_raw = sh.expand(st, &c.dest, line)?;
    let chmod = match &c.chmod {
        Some(m) => Some(parse_chmod(&sh.expand(st, m, line)?)?),
        None => None,
    };
    let chown_written = match &c.chown {
        Some(o) => Some(sh.expand(st, o, line)?),
        None => None,
    };
    // `--chown=user` means user:user (moby parseChownFlag)
    let chown = chown_written.as_ref().map(|o| {
        if o.contains(':') {
            o.clone()
        } else {
            format!("{o}:{o}")
        }
    });
    let mut srcs: Vec<Src> = Vec::new();
    let mut sums: Vec<String> = Vec::new();
    let mut kinds: BTreeSet<&str> = BTreeSet::new();
    let from_image = match &c.from {
        Some(f) => {
            let f = sh.expand(st, f, line)?;
            let found = sh
                .image_or_stage(&f, index, out)
                .await
                .map_err(|e| BuildError::new(format!("invalid from flag value {f}: {e}")))?;
            match found {
                Some(img) => Some(img.id),
                None => return Err(fail("cannot copy from scratch".into())),
            }
        }
        None => None,
    };
    for s in &c.sources {
        let s = sh.expand(st, s, line)?;
        if let Some(img) = &from_image {
            let path = if s.starts_with('/') {
                s.clone()
            } else {
                format!("/{s}")
            };
            let path = context::clean_abs(&path);
            let paths = if context::has_wildcard(&path) {
                let m = glob_image(sh, img, &path).await?;
                if m.is_empty() {
                    return Err(fail("no source files were specified".into()));
                }
                m
            } else {
                vec![path]
            };
            for path in paths {
                sums.push(hex::encode(Sha256::digest(format!("{img}:{path}"))));
                kinds.insert("file");
                srcs.push(Src::Export {
                    image: img.clone(),
                    path,
                });
            }
            continue;
        }
        if is_add && (s.starts_with("http://") || s.starts_with("https://")) {
            let data = sh.backend.download(&s).await?;
            if let Some(want) = &c.checksum {
                let got = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
                if &got != want {
                    return Err(fail(format!("digest mismatch {got}: expected {want}")));
                }
            }
            let url_name = s
                .split(['?', '#'])
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("__unnamed__")
                .to_owned();
            sums.push(hex::encode(Sha256::digest(&data)));
            kinds.insert("url");
            srcs.push(Src::Bytes {
                name: url_name,
                data,
                mode: 0o600,
            });
            continue;
        }
        let found = if context::has_wildcard(&s) {
            let m = sh.ctx.glob(&s)?;
            if m.is_empty() {
                return Err(fail("no source files were specified".into()));
            }
            m
        } else {
            vec![sh.ctx.resolve(&s).map_err(|e| fail(e.message))?]
        };
        for r in found {
            let sum = sh.ctx.checksum(&r, &c.exclude)?;
            if is_add
                && !r.is_dir
                && let Some(data) = read_archive(&r.host)?
            {
                kinds.insert("file");
                sums.push(sum);
                srcs.push(Src::Archive { data });
                continue;
            }
            kinds.insert(if r.is_dir { "dir" } else { "file" });
            sums.push(sum);
            srcs.push(Src::Ctx(r));
        }
    }
    for h in &c.heredocs {
        let data = if h.expand {
            sh.expand(st, &h.content, line)?
        } else {
            h.content.clone()
        };
        sums.push(hex::encode(Sha256::digest(data.as_bytes())));
        kinds.insert("file");
        srcs.push(Src::Bytes {
            name: h.name.clone(),
            data: data.into_bytes(),
            mode: 0o644,
        });
    }
    if srcs.is_empty() {
        return Err(fail("no source files were specified".into()));
    }
    // dockerd counts what the sources resolved to: a wildcard matching one file may name a
    // destination file (`COPY --from=build /app/target/*.jar app.jar`)
    let multi = srcs.len() > 1;
    if multi && !dest_raw.ends_with('/') {
        return Err(BuildError::new(format!(
            "When using {name} with more than one source file, the destination must be a directory and end with a /"
        )));
    }
    let dest_dir_syntax = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
    let dest = abs_in(st, &dest_raw);
    let sum = if sums.len() == 1 {
        sums[0].clone()
    } else {
        hex::encode(Sha256::digest(sums.join(",").as_bytes()))
    };
    let kind = if kinds.len() == 1 && srcs.len() == 1 {
        kinds.iter().next().copied().unwrap_or("multi")
    } else {
        "multi"
    };
    // dockerd's history line: the --chown as given glued to the source hash (its format
    // string has no space there), a URL's hash bare, the destination as written
    let hash = if kind == "url" {
        sum
    } else {
        format!("{kind}:{sum}")
    };
    let chown_comment = chown_written
        .map(|o| format!("--chown={o}"))
        .unwrap_or_default();
    let created_by_inner = format!("#(nop) {name} {chown_comment}{hash} in {dest_raw} ");
    let mut shell = st.shell();
    shell.push(created_by_inner);
    let created_by = shell.join(" ");

    // the entries are made only on a miss: a cache hit reads nothing more
    Ok((
        created_by,
        Action::Copy {
            plan: Box::new(CopyPlan {
                srcs,
                dest,
                dest_dir_syntax,
                chmod,
                exclude: c.exclude.clone(),
            }),
            chown,
        },
    ))
}

/// `COPY --from` with a wildcard: the image's paths matching `pattern` (Go's `filepath.Match`,
/// so `*` stays within a component), sorted like `filepath.Glob`, read from an export of the
/// deepest directory above the first wildcard.
async fn glob_image<B: Backend>(
    sh: &Shared<B>,
    image: &str,
    pattern: &str,
) -> Result<Vec<String>, BuildError> {
    let first = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    let anchor = match pattern[..first].rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => pattern[..i].to_owned(),
    };
    let data = sh.backend.export(image, &anchor).await?;
    let terr = |e: std::io::Error| BuildError::new(format!("reading archive: {e}"));
    let mut ar = tar::Archive::new(&data[..]);
    let mut out = Vec::new();
    for ent in ar.entries().map_err(terr)? {
        let ent = ent.map_err(terr)?;
        let p = ent.path().map_err(terr)?.to_string_lossy().into_owned();
        // the export is named by the anchor's last element: the rest is below the anchor
        let Some(comps) = context::clean_rel(&p) else {
            continue;
        };
        let rest = comps.get(1..).unwrap_or(&[]).join("/");
        let abs = context::clean_abs(&format!("{anchor}/{rest}"));
        if context::go_match(pattern, &abs) {
            out.push(abs);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

struct CopyPlan {
    srcs: Vec<Src>,
    dest: String,
    dest_dir_syntax: bool,
    chmod: Option<u32>,
    exclude: Vec<String>,
}

impl CopyPlan {
    async fn entries<B: Backend>(
        self,
        sh: &Shared<B>,
        image: Option<&str>,
    ) -> Result<Vec<FileEntry>, BuildError> {
        let multi = self.srcs.len() > 1;
        let dest_is_dir = self.dest_dir_syntax
            || multi
            || match image {
                Some(i) => sh.backend.is_dir(i, &self.dest).await,
                None => false,
            };
        let mut all = Vec::new();
        let file_dest = |name: &str| {
            if dest_is_dir {
                context::clean_abs(&format!("{}/{name}", self.dest))
            } else {
                self.dest.clone()
            }
        };
        for s in self.srcs {
            match s {
                Src::Ctx(r) => {
                    let d = if r.is_dir {
                        self.dest.clone()
                    } else {
                        let base = if r.name.is_empty() {
                            r.rel.rsplit('/').next().unwrap_or("").to_owned()
                        } else {
                            r.name.clone()
                        };
                        file_dest(&base)
                    };
                    let mut e = context::entries_for(&r.host, &d, self.chmod, &self.exclude)?;
                    if r.is_dir
                        && let Some(top) = e.first_mut()
                    {
                        // the destination dir itself: created if missing, else left as it is
                        top.implicit = true;
                        top.mode = 0o755;
                    }
                    all.extend(e);
                }
                Src::Bytes { name, data, mode } => all.push(FileEntry {
                    path: file_dest(&name),
                    source: Source::Bytes(data),
                    mode: self.chmod.unwrap_or(mode),
                    uid: 0,
                    gid: 0,
                    mtime: now_secs(),
                    implicit: false,
                }),
                Src::Export { image, path } => {
                    let name = path.rsplit('/').next().unwrap_or("").to_owned();
                    let mut path = path;
                    let mut data = sh.backend.export(&image, &path).await?;
                    // a symlink named as the source is followed inside the image, as dockerd
                    // does; the copy keeps the link's name
                    for _ in 0..32 {
                        let Some(target) = top_symlink(&data) else {
                            break;
                        };
                        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                        path = if target.starts_with('/') {
                            context::clean_abs(&target)
                        } else {
                            context::clean_abs(&format!("{dir}/{target}"))
                        };
                        data = sh.backend.export(&image, &path).await?;
                    }
                    let mut e = tar_entries(&data, &self.dest, dest_is_dir, self.chmod, true)?;
                    if let Some(top) = e.first_mut()
                        && !matches!(top.source, Source::Dir)
                        && dest_is_dir
                    {
                        top.path = context::clean_abs(&format!("{}/{name}", self.dest));
                    }
                    all.extend(e)
                }
                Src::Archive { data } => {
                    all.extend(tar_entries(&data, &self.dest, true, None, false)?)
                }
            }
        }
        Ok(context::with_parents(all, now_secs()))
    }
}

/// The link target when a tar's first entry is a symlink (an export of a symlink).
fn top_symlink(data: &[u8]) -> Option<String> {
    let mut ar = tar::Archive::new(data);
    let first = ar.entries().ok()?.next()?.ok()?;
    if !first.header().entry_type().is_symlink() {
        return None;
    }
    first
        .link_name()
        .ok()
        .flatten()
        .map(|l| l.to_string_lossy().into_owned())
}

/// A local ADD source that is a tar (plain, gzip, bzip2 or xz, as dockerd extracts): its
/// decompressed bytes. A file that only looks compressed is copied as it is.
fn read_archive(p: &std::path::Path) -> Result<Option<Vec<u8>>, BuildError> {
    use std::io::Read;
    let data = std::fs::read(p).map_err(|e| BuildError::new(format!("{}: {e}", p.display())))?;
    let raw = if data.starts_with(&[0x1f, 0x8b]) {
        let mut d = Vec::new();
        match flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut d) {
            Ok(_) => d,
            Err(_) => return Ok(None),
        }
    } else if context::Packed::sniff(&data).is_some() {
        let mut d = Vec::new();
        let read = context::unpack_bz_xz(&data[..]).and_then(|mut r| r.read_to_end(&mut d));
        match read {
            Ok(_) => d,
            Err(_) => return Ok(None),
        }
    } else {
        data
    };
    let is_tar = raw.len() >= 512 && &raw[257..262] == b"ustar";
    Ok(is_tar.then_some(raw))
}

/// Entries of a tar. `strip_top`: the tar is an export named by its last element (a file goes
/// to `dest` or into it, a dir's contents go under `dest`); otherwise (an ADDed archive) every
/// member lands under `dest` keeping owners.
fn tar_entries(
    data: &[u8],
    dest: &str,
    dest_is_dir: bool,
    chmod: Option<u32>,
    strip_top: bool,
) -> Result<Vec<FileEntry>, BuildError> {
    use std::io::Read;
    let terr = |e: std::io::Error| BuildError::new(format!("reading archive: {e}"));
    let mut ar = tar::Archive::new(data);
    let mut out = Vec::new();
    let mut top_is_dir = false;
    for (n, ent) in ar.entries().map_err(terr)?.enumerate() {
        let mut ent = ent.map_err(terr)?;
        let h = ent.header().clone();
        let path = ent.path().map_err(terr)?.to_string_lossy().into_owned();
        let Some(comps) = context::clean_rel(&path) else {
            continue;
        };
        let target = if strip_top {
            if n == 0 {
                top_is_dir = h.entry_type().is_dir();
                if top_is_dir {
                    dest.to_owned()
                } else if dest_is_dir {
                    context::clean_abs(&format!(
                        "{dest}/{}",
                        comps.last().cloned().unwrap_or_default()
                    ))
                } else {
                    dest.to_owned()
                }
            } else {
                let rest = comps.get(1..).unwrap_or(&[]).join("/");
                context::clean_abs(&format!("{dest}/{rest}"))
            }
        } else {
            context::clean_abs(&format!("{dest}/{}", comps.join("/")))
        };
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = if strip_top {
            (0, 0)
        } else {
            (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)
        };
        let mtime = h.mtime().unwrap_or(0);
        let et = h.entry_type();
        let source = if et.is_dir() {
            Source::Dir
        } else if et.is_symlink() {
            Source::Symlink(
                ent.link_name()
                    .map_err(terr)?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        } else if et.is_file() {
            let mut d = Vec::new();
            ent.read_to_end(&mut d).map_err(terr)?;
            Source::Bytes(d)
        } else {
            continue;
        };
        let is_link = matches!(source, Source::Symlink(_));
        out.push(FileEntry {
            implicit: strip_top && n == 0 && top_is_dir,
            path: target,
            mode: if is_link {
                0o777
            } else {
                chmod.unwrap_or(mode)
            },
            source,
            uid,
            gid,
            mtime,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(expand_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expand_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(expand_ports("8000-8002").unwrap().len(), 3);
        assert!(expand_ports("x").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(go_q(&["sh".into()]), "[\"sh\"]");
        assert_eq!(
            go_q(&["/bin/sh".into(), "-c".into(), "echo hi".into()]),
            "[\"/bin/sh\" \"-c\" \"echo hi\"]"
        );
    }
}
