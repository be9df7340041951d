//! The parsed Dockerfile. Words are kept as written (unexpanded): what gets substituted depends
//! on the build args and ENV in effect at each step, which only the executor knows; it calls
//! [`crate::expand`] for the instructions Docker expands (ADD, COPY, ENV, EXPOSE, FROM, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR, and ONBUILD's trigger when it runs).

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dockerfile {
    /// `# escape=` (default `\`).
    pub escape: char,
    /// `# syntax=` if present (recorded; berth has one front end).
    pub syntax: Option<String>,
    /// The parser's warnings, worded as dockerd prints them before the first step
    /// (`[WARNING]: Empty continuation line found in: ...`).
    pub warnings: Vec<String>,
    /// ARGs before the first FROM: usable in FROM lines, and in a stage after a bare `ARG NAME`.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

/// One `FROM ... [AS name]` and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Stage index, 0-based (`COPY --from=0`).
    pub index: usize,
    /// `AS name`, lower-cased as Docker does.
    pub name: Option<String>,
    /// The base as written (`busybox`, `${BASE}:1`, `scratch`, or a previous stage's name).
    pub base: String,
    /// `FROM --platform=...`
    pub platform: Option<String>,
    /// Line of the FROM (1-based).
    pub line: usize,
    /// The FROM line as written (continuations joined, trimmed): dockerd's `Step 1/n : ...`.
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// First line of the instruction (1-based), for errors ("Dockerfile:7 ...").
    pub line: usize,
    /// The instruction as Docker prints it in `Step n/m : ...`: as written (keyword case kept),
    /// continuation lines joined, comments inside continuations removed, trimmed.
    pub original: String,
    pub kind: InstructionKind,
}

/// Shell form (`RUN echo hi`: run via SHELL) or exec form (`RUN ["echo","hi"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// A heredoc attached to an instruction (`RUN <<EOF`, `COPY <<EOF /dst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The word after `<<` / `<<-` without quotes (`EOF`).
    pub name: String,
    /// The body, with `<<-` leading tabs already stripped.
    pub content: String,
    /// False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): no expansion of the body.
    pub expand: bool,
    /// `<<-`
    pub chomp: bool,
}

/// `RUN --mount=...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// `type=bind` (default type): from the context or `from=` a stage/image.
    Bind {
        target: String,
        source: Option<String>,
        from: Option<String>,
        readwrite: bool,
    },
    /// `type=cache`: persistent across builds, keyed by `id` (default: target).
    Cache {
        target: String,
        id: Option<String>,
        from: Option<String>,
        source: Option<String>,
        sharing: Option<String>,
        readonly: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// `type=tmpfs`
    Tmpfs { target: String, size: Option<u64> },
    /// `type=secret`: never in a layer or in history.
    Secret {
        id: Option<String>,
        target: Option<String>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// `type=ssh` (parsed; refused by the executor if no agent is forwarded).
    Ssh {
        id: Option<String>,
        target: Option<String>,
        required: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Run {
    pub mounts: Vec<RunMount>,
    /// `--network=default|none|host`
    pub network: Option<String>,
    /// `--security=insecure|sandbox`
    pub security: Option<String>,
    pub command: Option<Command>,
    pub heredocs: Vec<Heredoc>,
}

/// ADD and COPY share their shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyInstr {
    /// Sources as written (unexpanded); for ADD also URLs / git refs. Empty when only heredocs.
    pub sources: Vec<String>,
    pub dest: String,
    /// `COPY <<EOF /dst` bodies, in order (each is a source file named after the heredoc).
    pub heredocs: Vec<Heredoc>,
    /// `--from=stage|index|image` (COPY only)
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--exclude=pattern` (repeatable)
    pub exclude: Vec<String>,
    /// `--parents` (COPY)
    pub parents: bool,
    /// `--checksum=sha256:...` (ADD)
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD)
    pub keep_git_dir: bool,
    /// Written in JSON form (`COPY ["a b", "/x"]`).
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    /// `HEALTHCHECK NONE`
    pub none: bool,
    /// `CMD` as a command; Docker stores shell form as `["CMD-SHELL", cmd]`.
    pub command: Option<Command>,
    /// Durations as written (`30s`, `1m30s`); the executor converts them.
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    /// key/value pairs as written: quotes and escapes still in place (they are removed by
    /// [`crate::expand::expand`], which must run on both key and value).
    Label(Vec<(String, String)>),
    Maintainer(String),
    /// Ports as written (`80/tcp`, `${P}`, `8000-8010`).
    Expose(Vec<String>),
    /// `ENV a=b c=d` and the legacy `ENV a b c` (one pair, value `b c`). Raw like LABEL's.
    Env(Vec<(String, String)>),
    Add(CopyInstr),
    Copy(CopyInstr),
    /// Paths as written (JSON array or space separated).
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    /// `ARG name[=default]` (several per line allowed); the default raw like ENV's.
    Arg(Vec<(String, Option<String>)>),
    /// The trigger, parsed (ONBUILD may not hold FROM, MAINTAINER or ONBUILD).
    Onbuild(Box<Instruction>),
    Stopsignal(String),
    Healthcheck(Healthcheck),
    /// `SHELL ["/bin/bash", "-c"]` (JSON form only).
    Shell(Vec<String>),
}
