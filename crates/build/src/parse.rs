//! Dockerfile text → [`crate::ast::Dockerfile`], following BuildKit's
//! `frontend/dockerfile/parser` (lines, directives, continuations, heredocs) and `instructions`
//! (per-instruction arguments, flags and checks), with their error messages.
//!
//! Words stay unexpanded — and ENV/LABEL/ARG values keep their quotes: removing quotes is part of
//! Docker's word processing ([`crate::expand::expand`]), which the executor runs with the ARGs
//! and ENV in effect at that step (`ENV a='$x'` must stay literal, `ENV a="$x"` must not).

use std::collections::{HashMap, HashSet};

use crate::ast::{
    Command, CopyInstr, Dockerfile, Healthcheck, Heredoc, Instruction, InstructionKind, Run,
    RunMount, Stage,
};
use crate::expand::Lexer;

/// A Dockerfile that cannot be parsed. `Display` is dockerd 20.10's wording: errors of an
/// instruction name its line (`dockerfile parse error line 3: unknown instruction: RUNN`);
/// errors of the line parser underneath (ENV/LABEL pairs, directives, no instruction at all)
/// name the file instead (`failed to parse Dockerfile.dev: Syntax error - ...`). Line 0 means
/// the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(*.line, .message, .file.as_deref()))]
pub struct ParseError {
    pub line: usize,
    pub message: String,
    /// Set (to the Dockerfile's name) for the line parser's errors.
    pub file: Option<String>,
}

fn render(line: usize, message: &str, file: Option<&str>) -> String {
    match file {
        Some(f) => format!("failed to parse {f}: {message}"),
        None if line == 0 => message.to_string(),
        None => format!("dockerfile parse error line {line}: {message}"),
    }
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
        file: None,
    })
}

/// An error of BuildKit's line parser (reported with the file's name, see [`ParseError`]).
fn node_err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
        file: Some(String::new()),
    })
}

/// Parses a whole Dockerfile.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    parse_named(src, "Dockerfile")
}

/// [`parse`], naming the file in the whole-file errors as dockerd does (`-f` name):
/// `the Dockerfile (Dockerfile.dev) cannot be empty` for zero bytes,
/// `failed to parse Dockerfile.dev: file with no instructions` for only comments/blank lines.
pub fn parse_named(src: &str, name: &str) -> Result<Dockerfile, ParseError> {
    if src.is_empty() {
        return err(0, format!("the Dockerfile ({name}) cannot be empty"));
    }
    let named = |mut e: ParseError| {
        if e.file.is_some() {
            e.file = Some(name.to_string());
        }
        e
    };
    let (nodes, directives, warnings) = split_nodes(src).map_err(named)?;
    if nodes.is_empty() {
        return Err(named(ParseError {
            line: 0,
            message: "file with no instructions".into(),
            file: Some(String::new()),
        }));
    }
    let mut df = Dockerfile {
        escape: directives.escape,
        syntax: directives.syntax,
        warnings,
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    let mut names = HashSet::new();
    for node in nodes {
        let line = node.line;
        if node.cmd.eq_ignore_ascii_case("from") {
            let stage = parse_from(&node, df.stages.len())?;
            if let Some(name) = &stage.name
                && !names.insert(name.clone())
            {
                return err(line, format!("duplicate stage name {name:?}"));
            }
            df.stages.push(stage);
            continue;
        }
        let instr = instruction(&node, directives.escape).map_err(named)?;
        match df.stages.last_mut() {
            Some(stage) => stage.instructions.push(instr),
            None if matches!(instr.kind, InstructionKind::Arg(_)) => df.global_args.push(instr),
            None => return err(line, "no build stage in current context"),
        }
    }
    Ok(df)
}

/// One logical line: keyword, flags and the rest, as BuildKit's parser hands it to
/// `instructions`.
#[derive(Debug)]
struct Node {
    line: usize,
    /// The keyword as written.
    cmd: String,
    /// `--name[=value]` words before the arguments.
    flags: Vec<String>,
    /// The arguments after the flags, trimmed.
    rest: String,
    /// The joined line (continuations removed), trimmed.
    original: String,
    heredocs: Vec<Heredoc>,
}

struct Directives {
    escape: char,
    syntax: Option<String>,
    done: bool,
    seen: HashSet<String>,
    count: usize,
}

impl Directives {
    /// BuildKit's `DirectiveParser.ParseLine`: directives are `# key=value` lines at the very
    /// top; the first line that is not one (a blank line, an instruction, a plain comment) ends
    /// them. Unknown keys (`# foo=bar`) are comments that don't end the block.
    fn feed(&mut self, line: &str, lineno: usize) -> Result<(), ParseError> {
        self.count += 1;
        if self.done {
            return Ok(());
        }
        if self.count == 1 && line.starts_with("#!") {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            return Ok(());
        }
        if !self.seen.insert(key.clone()) {
            return node_err(
                lineno,
                format!("only one {key} parser directive can be used"),
            );
        }
        match key.as_str() {
            "escape" => match value {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                _ => {
                    return node_err(
                        lineno,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    );
                }
            },
            "syntax" => self.syntax = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, after) = rest.split_at(key_len);
    let value = after.trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((key, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strips a trailing escape char (plus trailing blanks after it): `(line, ended)`.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(s) => (s, false),
        None => (line, true),
    }
}

/// Lines → logical nodes (BuildKit's `parser.Parse`).
fn split_nodes(src: &str) -> Result<(Vec<Node>, Directives, Vec<String>), ParseError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    // Lines keep whether they ended with '\n': heredoc bodies are copied byte for byte.
    let lines: Vec<(&str, bool)> = {
        let mut v: Vec<(&str, bool)> = src
            .split_inclusive('\n')
            .map(|l| match l.strip_suffix('\n') {
                Some(s) => (s.strip_suffix('\r').unwrap_or(s), true),
                None => (l.strip_suffix('\r').unwrap_or(l), false),
            })
            .collect();
        if v.last().is_some_and(|(l, nl)| l.is_empty() && !nl) {
            v.pop();
        }
        v
    };
    let mut d = Directives {
        escape: '\\',
        syntax: None,
        done: false,
        seen: HashSet::new(),
        count: 0,
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let first = lines[i].0.trim_start();
        i += 1;
        d.feed(first, lineno)?;
        let first = if first.starts_with('#') { "" } else { first };
        let (s, mut ended) = trim_continuation(first, d.escape);
        if ended && s.is_empty() {
            continue;
        }
        let mut line = s.to_string();
        let mut empty_continuation = false;
        while !ended && i < lines.len() {
            let raw = lines[i].0;
            i += 1;
            d.feed(raw, i)?;
            // Comments and blank lines inside a continuation are dropped (blank ones are
            // deprecated in Docker, but still accepted, with a warning).
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (c, e) = trim_continuation(raw, d.escape);
            line.push_str(c);
            ended = e;
        }
        if empty_continuation {
            warnings.push(format!(
                "[WARNING]: Empty continuation line found in:\n    {line}"
            ));
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (cmd, flags, rest) = split_command(line);
        let mut node = Node {
            line: lineno,
            cmd: cmd.to_string(),
            flags,
            rest,
            original: line.to_string(),
            heredocs: Vec::new(),
        };
        let heredoc_capable = ["run", "copy", "add"]
            .iter()
            .any(|k| node.cmd.eq_ignore_ascii_case(k));
        if heredoc_capable && line.contains("<<") {
            for (name, expand, chomp) in heredocs_in_line(line) {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let (body, nl) = lines[i];
                    i += 1;
                    let candidate = if chomp {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    if candidate == name {
                        terminated = true;
                        break;
                    }
                    content.push_str(candidate);
                    if nl {
                        content.push('\n');
                    }
                }
                if !terminated {
                    return err(lineno, "unterminated heredoc");
                }
                node.heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                    chomp,
                });
            }
        }
        nodes.push(node);
    }
    if !warnings.is_empty() {
        warnings.push(
            "[WARNING]: Empty continuation lines will become errors in a future release.".into(),
        );
    }
    Ok((nodes, d, warnings))
}

/// Heredoc delimiters in a line: `<<EOF`, `<<-EOF`, `<<'EOF'`, `<<"EOF"`, also `3<<EOF`
/// (BuildKit's `^(\d*)<<(-?)([^<]*)$` over shell words). `(name, expand, chomp)`.
fn heredocs_in_line(line: &str) -> Vec<(String, bool, bool)> {
    let raw = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        ..Lexer::new('\\')
    };
    let none = |_: &str| None;
    let Ok(words) = raw.process_words(line, &none) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for w in words {
        let w = w.trim_start_matches(|c: char| c.is_ascii_digit());
        let Some(rest) = w.strip_prefix("<<") else {
            continue;
        };
        let (chomp, rest) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if rest.is_empty() || rest.contains('<') {
            continue;
        }
        let unquoted = Lexer {
            skip_unset: true,
            ..Lexer::new('\\')
        };
        let Ok(names) = unquoted.process_words(rest, &none) else {
            continue;
        };
        let [name] = names.as_slice() else {
            continue;
        };
        let quotes = |s: &str| s.matches(['\'', '"']).count();
        let expand = quotes(name) == quotes(rest);
        out.push((name.clone(), expand, chomp));
    }
    out
}

/// `KEYWORD --flags rest`.
fn split_command(line: &str) -> (&str, Vec<String>, String) {
    let line = line.trim();
    match line.find(is_ws) {
        None => (line, Vec::new(), String::new()),
        Some(at) => {
            let (rest, flags) = extract_flags(line[at..].trim_start_matches(is_ws));
            (&line[..at], flags, rest.trim().to_string())
        }
    }
}

/// Go's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes and `\` handled) until the first
/// word that does not start with `--`, or a bare `--`.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut it = line.char_indices().peekable();
    while let Some((pos, ch)) = it.next() {
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    continue;
                }
                if !line[pos..].starts_with("--") {
                    return (&line[pos..], words);
                }
                phase = Phase::Word;
                word.push(ch);
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&line[pos..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    if let Some((_, n)) = it.next() {
                        word.push(n);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match it.next() {
                        Some((_, n)) => word.push(n),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    ("", words)
}

/// Flag kinds of BuildKit's `BFlags`.
#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Bool,
    Str,
    Strs,
}

#[derive(Default)]
struct Flags {
    bools: HashMap<&'static str, bool>,
    strs: HashMap<&'static str, String>,
    lists: HashMap<&'static str, Vec<String>>,
}

impl Flags {
    /// BuildKit's `BFlags.Parse` with its messages.
    fn parse(
        raw: &[String],
        spec: &[(&'static str, FlagKind)],
        line: usize,
    ) -> Result<Flags, ParseError> {
        let mut out = Flags::default();
        let mut used = HashSet::new();
        for arg in raw {
            let Some(arg) = arg.strip_prefix("--") else {
                return err(line, format!("arg should start with -- : {arg}"));
            };
            if arg.is_empty() {
                break;
            }
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let Some(&(key, kind)) = spec.iter().find(|(k, _)| *k == name) else {
                return err(line, format!("Unknown flag: {name}"));
            };
            if !used.insert(key) && kind != FlagKind::Strs {
                return err(line, format!("Duplicate flag specified: {name}"));
            }
            match (kind, value) {
                (FlagKind::Bool, Some("")) | (FlagKind::Str | FlagKind::Strs, None) => {
                    return err(line, format!("Missing a value on flag: {name}"));
                }
                (FlagKind::Bool, v) => {
                    let b = match v.map(str::to_ascii_lowercase).as_deref() {
                        None | Some("true") => true,
                        Some("false") => false,
                        Some(_) => {
                            return err(
                                line,
                                format!(
                                    "Expecting boolean value for flag {name}, not: {}",
                                    v.unwrap_or_default()
                                ),
                            );
                        }
                    };
                    out.bools.insert(key, b);
                }
                (FlagKind::Str, Some(v)) => {
                    out.strs.insert(key, v.to_string());
                }
                (FlagKind::Strs, Some(v)) => out.lists.entry(key).or_default().push(v.to_string()),
            }
        }
        Ok(out)
    }
    fn bool(&self, k: &str) -> bool {
        self.bools.get(k).copied().unwrap_or(false)
    }
    fn str(&mut self, k: &str) -> Option<String> {
        self.strs.remove(k)
    }
    fn list(&mut self, k: &str) -> Vec<String> {
        self.lists.remove(k).unwrap_or_default()
    }
}

fn no_flags(node: &Node) -> Result<(), ParseError> {
    Flags::parse(&node.flags, &[], node.line).map(|_| ())
}

fn parse_from(node: &Node, index: usize) -> Result<Stage, ParseError> {
    let line = node.line;
    let mut flags = Flags::parse(&node.flags, &[("platform", FlagKind::Str)], line)?;
    let args = split_ws(&node.rest);
    let name = match args.as_slice() {
        [_] => None,
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            if !valid_stage_name(&lower) {
                return err(
                    line,
                    format!(
                        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                    ),
                );
            }
            Some(lower)
        }
        _ => return err(line, "FROM requires either one or three arguments"),
    };
    Ok(Stage {
        index,
        name,
        base: args[0].clone(),
        platform: flags.str("platform"),
        line,
        original: node.original.clone(),
        instructions: Vec::new(),
    })
}

/// `^[a-z][a-z0-9-_\.]*$`
fn valid_stage_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_ascii_lowercase())
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn split_ws(s: &str) -> Vec<String> {
    s.split(is_ws)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Docker's JSON form: a JSON array of strings. `Ok(None)`: not JSON, use the shell form.
fn parse_json(rest: &str, line: usize) -> Result<Option<Vec<String>>, ParseError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => node_err(
                line,
                "when using JSON array syntax, arrays must be comprised of strings only",
            ),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn command(rest: &str, line: usize) -> Result<Command, ParseError> {
    Ok(match parse_json(rest, line)? {
        Some(v) => Command::Exec(v),
        None => Command::Shell(rest.to_string()),
    })
}

/// ADD/COPY/VOLUME: JSON array or whitespace separated. `(words, json)`.
fn json_or_list(rest: &str, line: usize) -> Result<(Vec<String>, bool), ParseError> {
    Ok(match parse_json(rest, line)? {
        Some(v) => (v, true),
        None => (split_ws(rest), false),
    })
}

/// BuildKit's `parseWords`: whitespace-separated, quotes and escapes kept in the words.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut it = rest.chars().peekable();
    while let Some(ch) = it.next() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            if ch == escape && q != '\'' {
                match it.next() {
                    Some(n) => {
                        word.push(ch);
                        word.push(n);
                    }
                    None => quote = None,
                }
                continue;
            }
            word.push(ch);
            continue;
        }
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        if ch.is_whitespace() {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
        }
        if ch == escape {
            if let Some(n) = it.next() {
                word.push(ch);
                word.push(n);
            }
            continue;
        }
        word.push(ch);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV and LABEL: `k=v k2="v 2"` or the legacy `KEY name value…` (one pair, the value is the
/// rest of the line as written).
fn name_vals(
    rest: &str,
    key: &str,
    escape: char,
    line: usize,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return node_err(line, format!("{key} requires at least one argument"));
    }
    let pairs = if !words[0].contains('=') {
        let mut parts = rest.splitn(2, is_ws);
        let name = parts.next().unwrap_or_default();
        let value = parts
            .next()
            .map(|v| v.trim_start_matches(is_ws))
            .unwrap_or_default();
        if value.is_empty() {
            return node_err(line, format!("{key} must have two arguments"));
        }
        vec![(name.to_string(), value.to_string())]
    } else {
        let mut pairs = Vec::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return node_err(
                    line,
                    format!(
                        "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                    ),
                );
            };
            pairs.push((k.to_string(), v.to_string()));
        }
        pairs
    };
    if pairs.iter().any(|(k, _)| k.is_empty()) {
        return err(line, format!("{key} names can not be blank"));
    }
    Ok(pairs)
}

fn exactly_one(node: &Node, key: &str) -> Result<String, ParseError> {
    no_flags(node)?;
    if node.rest.is_empty() {
        return err(node.line, format!("{key} requires exactly one argument"));
    }
    Ok(node.rest.clone())
}

fn instruction(node: &Node, escape: char) -> Result<Instruction, ParseError> {
    let line = node.line;
    let rest = node.rest.as_str();
    let kind = match node.cmd.to_ascii_lowercase().as_str() {
        "run" => {
            let mut f = Flags::parse(
                &node.flags,
                &[
                    ("mount", FlagKind::Strs),
                    ("network", FlagKind::Str),
                    ("security", FlagKind::Str),
                ],
                line,
            )?;
            let mounts = f
                .list("mount")
                .iter()
                .map(|m| parse_mount(m).or_else(|e| err(line, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let network = f.str("network");
            if let Some(n) = &network
                && !matches!(n.as_str(), "default" | "none" | "host")
            {
                return err(line, format!("unsupported network mode {n:?}"));
            }
            let security = f.str("security");
            if let Some(s) = &security
                && !matches!(s.as_str(), "insecure" | "sandbox")
            {
                return err(line, format!("unsupported security mode {s:?}"));
            }
            InstructionKind::Run(Run {
                mounts,
                network,
                security,
                command: (!rest.is_empty())
                    .then(|| command(rest, line))
                    .transpose()?,
                heredocs: node.heredocs.clone(),
            })
        }
        "cmd" => {
            no_flags(node)?;
            InstructionKind::Cmd(command(rest, line)?)
        }
        "entrypoint" => {
            no_flags(node)?;
            InstructionKind::Entrypoint(command(rest, line)?)
        }
        "label" => {
            no_flags(node)?;
            InstructionKind::Label(name_vals(rest, "LABEL", escape, line)?)
        }
        "maintainer" => InstructionKind::Maintainer(exactly_one(node, "MAINTAINER")?),
        "expose" => {
            no_flags(node)?;
            let ports = split_ws(rest);
            if ports.is_empty() {
                return err(line, "EXPOSE requires at least one argument");
            }
            InstructionKind::Expose(ports)
        }
        "env" => {
            no_flags(node)?;
            InstructionKind::Env(name_vals(rest, "ENV", escape, line)?)
        }
        "add" => InstructionKind::Add(copy_instr(node, true)?),
        "copy" => InstructionKind::Copy(copy_instr(node, false)?),
        "volume" => {
            no_flags(node)?;
            let (vols, _) = json_or_list(rest, line)?;
            if vols.is_empty() {
                return err(line, "VOLUME requires at least one argument");
            }
            if vols.iter().any(|v| v.trim().is_empty()) {
                return err(line, "VOLUME specified can not be an empty string");
            }
            InstructionKind::Volume(vols)
        }
        "user" => InstructionKind::User(exactly_one(node, "USER")?),
        "workdir" => InstructionKind::Workdir(exactly_one(node, "WORKDIR")?),
        "stopsignal" => InstructionKind::Stopsignal(exactly_one(node, "STOPSIGNAL")?),
        "arg" => {
            no_flags(node)?;
            let words = parse_words(rest, escape);
            if words.is_empty() {
                return err(line, "ARG requires at least one argument");
            }
            let mut args = Vec::new();
            for w in words {
                let (k, v) = match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w, None),
                };
                if k.is_empty() {
                    return err(line, "ARG names can not be blank");
                }
                args.push((k, v));
            }
            InstructionKind::Arg(args)
        }
        "onbuild" => {
            no_flags(node)?;
            if rest.is_empty() {
                return err(line, "ONBUILD requires at least one argument");
            }
            let (cmd, flags, trigger_rest) = split_command(rest);
            let upper = cmd.to_ascii_uppercase();
            match upper.as_str() {
                "ONBUILD" => {
                    return err(line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
                }
                "MAINTAINER" | "FROM" => {
                    return err(line, format!("{upper} isn't allowed as an ONBUILD trigger"));
                }
                _ => {}
            }
            let trigger = Node {
                line,
                cmd: cmd.to_string(),
                flags,
                rest: trigger_rest,
                original: rest.to_string(),
                heredocs: Vec::new(),
            };
            InstructionKind::Onbuild(Box::new(instruction(&trigger, escape)?))
        }
        "healthcheck" => InstructionKind::Healthcheck(healthcheck(node)?),
        "shell" => {
            no_flags(node)?;
            match parse_json(rest, line)? {
                Some(v) if v.is_empty() => {
                    return err(line, "SHELL requires at least one argument");
                }
                Some(v) => InstructionKind::Shell(v),
                None => return err(line, "SHELL requires the arguments to be in JSON form"),
            }
        }
        _ => {
            return err(
                line,
                format!("unknown instruction: {}", node.cmd.to_ascii_uppercase()),
            );
        }
    };
    Ok(Instruction {
        line,
        original: node.original.clone(),
        kind,
    })
}

fn copy_instr(node: &Node, add: bool) -> Result<CopyInstr, ParseError> {
    let line = node.line;
    let spec: &[(&'static str, FlagKind)] = if add {
        &[
            ("chown", FlagKind::Str),
            ("chmod", FlagKind::Str),
            ("link", FlagKind::Bool),
            ("exclude", FlagKind::Strs),
            ("checksum", FlagKind::Str),
            ("keep-git-dir", FlagKind::Bool),
        ]
    } else {
        &[
            ("from", FlagKind::Str),
            ("chown", FlagKind::Str),
            ("chmod", FlagKind::Str),
            ("link", FlagKind::Bool),
            ("exclude", FlagKind::Strs),
            ("parents", FlagKind::Bool),
        ]
    };
    let mut f = Flags::parse(&node.flags, spec, line)?;
    let (mut args, json) = json_or_list(&node.rest, line)?;
    let key = if add { "ADD" } else { "COPY" };
    if args.len() < 2 {
        return err(
            line,
            format!(
                "{key} requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
        );
    }
    let dest = args.pop().unwrap_or_default();
    let mut sources = Vec::new();
    let mut heredocs = Vec::new();
    for src in args {
        let named = (!json)
            .then(|| heredocs_in_line(&src))
            .and_then(|h| h.into_iter().next());
        match named.and_then(|(name, ..)| node.heredocs.iter().find(|h| h.name == name)) {
            Some(h) => heredocs.push(h.clone()),
            None => sources.push(src),
        }
    }
    Ok(CopyInstr {
        sources,
        dest,
        heredocs,
        from: f.str("from"),
        chown: f.str("chown"),
        chmod: f.str("chmod"),
        link: f.bool("link"),
        exclude: f.list("exclude"),
        parents: f.bool("parents"),
        checksum: f.str("checksum"),
        keep_git_dir: f.bool("keep-git-dir"),
        json,
    })
}

fn healthcheck(node: &Node) -> Result<Healthcheck, ParseError> {
    let line = node.line;
    let rest = node.rest.as_str();
    let (typ, cmd_rest) = match rest.find(char::is_whitespace) {
        Some(at) => (&rest[..at], rest[at..].trim_start()),
        None => (rest, ""),
    };
    if typ.is_empty() {
        return err(line, "HEALTHCHECK requires at least one argument");
    }
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        if !cmd_rest.is_empty() {
            return err(line, "HEALTHCHECK NONE takes no arguments");
        }
        no_flags(node)?;
        return Ok(Healthcheck {
            none: true,
            ..Healthcheck::default()
        });
    }
    if typ != "CMD" || cmd_rest.is_empty() {
        return err(
            line,
            format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"),
        );
    }
    let mut f = Flags::parse(
        &node.flags,
        &[
            ("interval", FlagKind::Str),
            ("timeout", FlagKind::Str),
            ("start-period", FlagKind::Str),
            ("start-interval", FlagKind::Str),
            ("retries", FlagKind::Str),
        ],
        line,
    )?;
    let retries = f.str("retries");
    if let Some(r) = &retries {
        match r.parse::<i32>() {
            Ok(n) if n < 1 => return err(line, format!("--retries must be at least 1 (not {n})")),
            Ok(_) => {}
            Err(_) => {
                return err(
                    line,
                    format!("strconv.ParseInt: parsing {r:?}: invalid syntax"),
                );
            }
        }
    }
    Ok(Healthcheck {
        none: false,
        command: Some(command(cmd_rest, line)?),
        interval: f.str("interval"),
        timeout: f.str("timeout"),
        start_period: f.str("start-period"),
        start_interval: f.str("start-interval"),
        retries,
    })
}

/// One `--mount=` value: CSV `k=v` fields with BuildKit's defaults (type bind, read-only unless
/// cache/tmpfs, cache sharing `shared`, cache id = target, secret id from the target's name).
fn parse_mount(val: &str) -> Result<RunMount, String> {
    let mut typ = "bind".to_string();
    let mut ro: Option<bool> = None;
    let mut required = false;
    let (mut from, mut source, mut target, mut id, mut sharing) = (None, None, None, None, None);
    let (mut mode, mut uid, mut gid, mut size) = (None, None, None, None);
    for field in csv_fields(val)? {
        let Some((key, value)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => ro = Some(true),
                "readwrite" | "rw" => ro = Some(false),
                "required" if typ == "secret" || typ == "ssh" => required = true,
                "required" => {
                    return Err(format!("unexpected key 'required' for mount type '{typ}'"));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let value = value.to_string();
        let bool_of =
            |v: &str| parse_go_bool(v).ok_or_else(|| format!("invalid value for {key}: {v}"));
        let u32_of = |v: &str, radix: u32| {
            u32::from_str_radix(v, radix).map_err(|_| format!("invalid value {v} for {key}"))
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                let t = value.to_ascii_lowercase();
                if !matches!(t.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                    return Err(format!("unsupported mount type {value:?}"));
                }
                typ = t;
            }
            "from" => from = Some(value),
            "source" | "src" => source = Some(value),
            "target" | "dst" | "destination" => target = Some(value),
            "readonly" | "ro" => ro = Some(bool_of(&value)?),
            "readwrite" | "rw" => ro = Some(!bool_of(&value)?),
            "required" if typ == "secret" || typ == "ssh" => required = bool_of(&value)?,
            "required" => {
                return Err(format!("unexpected key 'required' for mount type '{typ}'"));
            }
            "id" => id = Some(value),
            "sharing" => {
                if typ != "cache" {
                    return Err(format!("invalid cache sharing set for {typ} mount"));
                }
                if !matches!(value.as_str(), "shared" | "private" | "locked") {
                    return Err(format!("unsupported sharing value {value:?}"));
                }
                sharing = Some(value);
            }
            "mode" => mode = Some(u32_of(&value, 8)?),
            "uid" => uid = Some(u32_of(&value, 10)?),
            "gid" => gid = Some(u32_of(&value, 10)?),
            "size" => {
                size = Some(
                    parse_size(&value).ok_or_else(|| format!("invalid value for size: {value}"))?,
                )
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    let file_info = matches!(typ.as_str(), "secret" | "ssh" | "cache");
    if !file_info {
        for (set, what) in [
            (mode.is_some(), "mode"),
            (uid.is_some(), "uid"),
            (gid.is_some(), "gid"),
        ] {
            if set {
                return Err(format!("{what} not allowed for {typ:?} type mounts"));
            }
        }
    }
    let need_target = |t: Option<String>| t.ok_or_else(|| "mount target is required".to_string());
    Ok(match typ.as_str() {
        "bind" => RunMount::Bind {
            target: need_target(target)?,
            source,
            from,
            readwrite: ro == Some(false),
        },
        "cache" => {
            let target = need_target(target)?;
            RunMount::Cache {
                id: Some(id.unwrap_or_else(|| target.clone())),
                target,
                from,
                source,
                sharing: Some(sharing.unwrap_or_else(|| "shared".into())),
                readonly: ro == Some(true),
                mode,
                uid,
                gid,
            }
        }
        "tmpfs" => RunMount::Tmpfs {
            target: need_target(target)?,
            size,
        },
        "secret" => {
            if from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if source.is_some() && id.is_some() {
                return Err("both source and id can't be set".into());
            }
            let id = id.or(source).or_else(|| {
                target
                    .as_deref()
                    .and_then(|t| t.rsplit('/').find(|s| !s.is_empty()))
                    .map(str::to_string)
            });
            let Some(id) = id else {
                return Err("invalid secret mount. one of source, target required".into());
            };
            RunMount::Secret {
                target: Some(target.unwrap_or_else(|| format!("/run/secrets/{id}"))),
                id: Some(id),
                required,
                mode,
                uid,
                gid,
            }
        }
        _ => RunMount::Ssh {
            id: Some(id.unwrap_or_else(|| "default".into())),
            target,
            required,
        },
    })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// go-units `RAMInBytes`: `64m`, `1g`, `512kb`, plain bytes; binary multiples.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    Some((num * mult as f64) as u64)
}

/// One CSV record (Go's `encoding/csv`): `"` quotes a field, `""` inside is a quote.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if c == '"' && at_start {
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        cur.push('"');
                    }
                    Some('"') => break,
                    Some(c) => cur.push(c),
                    None => return Err(format!("invalid mount {s:?}: unterminated quote")),
                }
            }
            at_start = false;
        } else if c == ',' {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests;
