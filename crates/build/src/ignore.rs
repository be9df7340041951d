//! `.dockerignore` with Docker's rules (moby/patternmatcher and the CLI's `ignorefile`):
//! patterns are `filepath.Clean`ed with a leading `/` dropped, `*` and `?` stay inside one path
//! component, `**` spans any number of them, `!` re-includes, the last matching pattern wins, and
//! a pattern matching a parent directory matches everything below it.
//!
//! [`walk_context`] lists what the client sends: excluded directories are skipped without
//! reading them unless an exception could re-include something below them.

use std::io;
use std::path::Path;

use regex::Regex;

/// A bad pattern (Docker: `syntax error in pattern`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern: {pattern}")]
pub struct PatternError {
    pub pattern: String,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    /// `foo/**`: everything that starts with `foo/`.
    Prefix,
    /// `**/foo`, `**.txt`: everything that ends with the rest.
    Suffix,
    Regex(Regex),
    /// The pattern did not compile; matches nothing (reported by [`Ignore::check`]).
    Invalid,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, without the `!`.
    text: String,
    exclusion: bool,
    matcher: Matcher,
}

impl Pattern {
    fn new(text: &str, exclusion: bool) -> Pattern {
        Pattern {
            text: text.to_string(),
            exclusion,
            matcher: compile(text),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.text,
            Matcher::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            Matcher::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/') == Some(path)
            }
            Matcher::Regex(re) => re.is_match(path),
            Matcher::Invalid => false,
        }
    }
}

/// patternmatcher's `compile`, including its choice of the cheap matchers (which differ from
/// the regex in corner cases such as `**.txt` matching `a.txt`, so they are kept as Docker has
/// them).
fn compile(pattern: &str) -> Matcher {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut kind = Kind::Exact;
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut pos = 0;
    let mut first = true;
    let mut in_class = false;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        if in_class {
            match ch {
                ']' => {
                    in_class = false;
                    re.push(']');
                }
                '\\' => {
                    re.push('\\');
                    if let Some(&n) = chars.get(pos) {
                        re.push(n);
                        pos += 1;
                    }
                }
                // Go's filepath.Match negates with `^` only; `[` inside is literal.
                '[' => re.push_str("\\["),
                _ => re.push(ch),
            }
            first = false;
            continue;
        }
        match ch {
            '*' if chars.get(pos) == Some(&'*') => {
                pos += 1;
                if chars.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos == chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            // (patternmatcher leaves `a\*b` an exact match against the backslashed text,
            // which can never match; the regex is what the escape means.)
            '\\' => match chars.get(pos) {
                Some(&n) => {
                    kind = Kind::Regex;
                    re.push_str(&regex::escape(&n.to_string()));
                    pos += 1;
                }
                None => re.push_str("\\\\"),
            },
            '[' => {
                in_class = true;
                re.push('[');
                kind = Kind::Regex;
            }
            ']' => {
                re.push(']');
                kind = Kind::Regex;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        first = false;
    }
    if in_class {
        return Matcher::Invalid;
    }
    match kind {
        Kind::Exact => Matcher::Exact,
        Kind::Prefix => Matcher::Prefix,
        Kind::Suffix => Matcher::Suffix,
        Kind::Regex => {
            re.push('$');
            Regex::new(&re).map_or(Matcher::Invalid, Matcher::Regex)
        }
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    /// The patterns after Docker's normalisation (`!` kept), in file order.
    pub patterns: Vec<String>,
    compiled: Vec<Pattern>,
}

impl Ignore {
    /// Parses the file's text as the docker CLI's `ignorefile.ReadAll`: a `#` in the first
    /// column starts a comment, blank lines are skipped, whitespace is trimmed, patterns are
    /// cleaned and a leading `/` dropped.
    pub fn parse(text: &str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let patterns = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (invert, p) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let mut p = if p.is_empty() {
                    String::new()
                } else {
                    clean(p)
                };
                if p.len() > 1 && p.starts_with('/') {
                    p.remove(0);
                }
                if invert { format!("!{p}") } else { p }
            })
            .collect();
        Self::from_patterns(patterns)
    }

    /// From already normalised patterns (as [`Ignore::patterns`] holds them).
    pub fn from_patterns(patterns: Vec<String>) -> Self {
        let compiled = patterns
            .iter()
            .filter_map(|p| {
                let p = p.trim();
                let (exclusion, p) = match p.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, p),
                };
                (!p.is_empty()).then(|| Pattern::new(&clean(p), exclusion))
            })
            .collect();
        Ignore { patterns, compiled }
    }

    /// The first invalid pattern, as the docker CLI refuses them (`!` alone, an unclosed `[`).
    pub fn check(&self) -> Result<(), PatternError> {
        for p in &self.patterns {
            let bad = p.trim() == "!"
                || self.compiled.iter().any(|c| {
                    matches!(c.matcher, Matcher::Invalid) && p.trim_start_matches('!') == c.text
                });
            if bad {
                return Err(PatternError { pattern: p.clone() });
            }
        }
        Ok(())
    }

    /// Adds `!.dockerignore` and `!<dockerfile>` when they would be excluded: the daemon needs
    /// both (the CLI's `TrimBuildFilesFromExcludes`). `dockerfile` is context-relative.
    pub fn keep_build_files(self, dockerfile: Option<&str>) -> Self {
        let mut patterns = self.patterns;
        let probe = Ignore::from_patterns(patterns.clone());
        if probe.excluded(".dockerignore") {
            patterns.push("!.dockerignore".into());
        }
        if let Some(df) = dockerfile {
            let df = clean(df);
            if probe.excluded(&df) {
                patterns.push(format!("!{df}"));
            }
        }
        Ignore::from_patterns(patterns)
    }

    /// Whether a context-relative path (`a/b/c`, no leading `/`) is excluded
    /// (patternmatcher's `MatchesOrParentMatches`).
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = match path.rsplit_once('/') {
            Some((dir, _)) => dir.split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.compiled {
            // An inclusion can't change an already excluded path, nor an exception an
            // included one.
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(&path);
            if !hit {
                hit = (1..=parents.len()).any(|i| p.matches(&parents[..i].join("/")));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether an excluded directory must still be walked because an exception pattern could
    /// re-include something below it.
    pub fn must_walk(&self, dir: &str) -> bool {
        let dir = clean(dir);
        let comps: Vec<&str> = dir.split('/').collect();
        self.compiled.iter().filter(|p| p.exclusion).any(|p| {
            let pcomps: Vec<&str> = p.text.split('/').collect();
            for (i, d) in comps.iter().enumerate() {
                let Some(pc) = pcomps.get(i) else {
                    return false;
                };
                if pc.contains("**") {
                    return true;
                }
                if !Pattern::new(pc, false).matches(d) {
                    return false;
                }
            }
            pcomps.len() > comps.len()
        })
    }
}

/// The kind of a context entry (symlinks are sent as links, never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Fifos, sockets, devices: sent as Docker sends them (header only).
    Other,
}

/// One path to send, relative to the context root, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    pub path: String,
    pub kind: EntryKind,
}

/// Walks a context directory in lexical order (as Go's `filepath.Walk`) and returns what is not
/// excluded. A directory that is excluded but must be walked for an exception is not itself
/// listed (as Docker: its re-included children carry their own parents implicitly).
pub fn walk_context(root: &Path, ignore: &Ignore) -> io::Result<Vec<ContextEntry>> {
    let mut out = Vec::new();
    walk_dir(root, "", ignore, &mut out)?;
    Ok(out)
}

fn walk_dir(
    root: &Path,
    rel: &str,
    ignore: &Ignore,
    out: &mut Vec<ContextEntry>,
) -> io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: file name is not UTF-8", dir.join(&name).display()),
            ));
        };
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let ft = std::fs::symlink_metadata(root.join(&path))?.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        if ignore.excluded(&path) {
            if kind == EntryKind::Dir && ignore.must_walk(&path) {
                walk_dir(root, &path, ignore, out)?;
            }
            continue;
        }
        out.push(ContextEntry {
            path: path.clone(),
            kind,
        });
        if kind == EntryKind::Dir {
            walk_dir(root, &path, ignore, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises() {
        let ig = Ignore::parse(
            "# comment\n  # not a comment?\n\n/abs\n./dot/../x/\n! keep \n**/*.log\n a/b//c \n",
        );
        assert_eq!(
            ig.patterns,
            vec!["# not a comment?", "abs", "x", "!keep", "**/*.log", "a/b/c"]
        );
        assert!(ig.check().is_ok());
        assert!(Ignore::parse("!\n").check().is_err());
        assert!(Ignore::parse("a[b\n").check().is_err());
    }

    #[test]
    fn matching_table() {
        // (patterns, path, excluded)
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "foo/bar", true),
            ("foo", "a/foo", false),
            ("*.md", "README.md", true),
            ("*.md", "docs/a.md", false),
            ("*/*.md", "docs/a.md", true),
            ("**/*.md", "docs/x/a.md", true),
            ("**/*.md", "a.md", true),
            ("**.txt", "a.txt", true),
            ("**", "anything/at/all", true),
            ("docs/**", "docs/a/b", true),
            ("docs/**", "docs", false),
            ("**/node_modules", "a/b/node_modules/x/y", true),
            ("**/node_modules", "node_modules", true),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("a.b", "axb", false),
            ("*\n!keep.md", "keep.md", false),
            ("*\n!keep.md", "other", true),
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md\nREADME.md", "README.md", true),
            ("dir\n!dir/keep", "dir/keep", false),
            ("dir\n!dir/keep", "dir/other", true),
            ("dir\n!dir/keep", "dir/keep/deep", false),
            ("!x\nx", "x", true),
            ("/abs", "abs", true),
            ("./rel/../x", "x", true),
            ("a/", "a/b", true),
            ("**/tmp/**", "x/tmp/y", true),
            ("**/tmp/**", "x/tmpy", false),
        ];
        for (pats, path, want) in cases {
            let ig = Ignore::parse(pats);
            assert_eq!(ig.excluded(path), *want, "patterns {pats:?} path {path:?}");
        }
    }

    #[test]
    fn must_walk_only_when_an_exception_could_reach_below() {
        let ig = Ignore::parse("dir\n!dir/sub/keep\n!*/x\n");
        assert!(ig.must_walk("dir"));
        assert!(ig.must_walk("dir/sub"));
        assert!(!ig.must_walk("dir/other"));
        assert!(!Ignore::parse("dir\n").must_walk("dir"));
        assert!(Ignore::parse("dir\n!**/keep").must_walk("dir"));
        assert!(!Ignore::parse("dir\n!dir").must_walk("dir/sub"));
    }

    #[test]
    fn build_files_are_kept() {
        let ig = Ignore::parse("*\n").keep_build_files(Some("sub/Dockerfile.dev"));
        assert!(!ig.excluded(".dockerignore"));
        assert!(!ig.excluded("sub/Dockerfile.dev"));
        assert!(ig.excluded("sub/other"));
        let ig = Ignore::parse("x\n").keep_build_files(Some("Dockerfile"));
        assert_eq!(ig.patterns, vec!["x"]);
    }

    #[test]
    fn walk() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        let r = t.path();
        for d in ["a/b", "node_modules/m", "keep/deep", "skip/inner"] {
            std::fs::create_dir_all(r.join(d))?;
        }
        for f in [
            "Dockerfile",
            ".dockerignore",
            "a/b/c.txt",
            "a/x.log",
            "node_modules/m/i.js",
            "keep/deep/k",
            "keep/deep/drop",
            "skip/inner/f",
            "top.log",
        ] {
            std::fs::write(r.join(f), f)?;
        }
        std::os::unix::fs::symlink("a", r.join("link"))?;
        let ig = Ignore::parse("**/*.log\nnode_modules\nkeep\n!keep/deep/k\nskip\n.dockerignore\n")
            .keep_build_files(Some("Dockerfile"));
        let got: Vec<(String, EntryKind)> = walk_context(r, &ig)?
            .into_iter()
            .map(|e| (e.path, e.kind))
            .collect();
        let want: Vec<(String, EntryKind)> = [
            (".dockerignore", EntryKind::File),
            ("Dockerfile", EntryKind::File),
            ("a", EntryKind::Dir),
            ("a/b", EntryKind::Dir),
            ("a/b/c.txt", EntryKind::File),
            ("keep/deep/k", EntryKind::File),
            ("link", EntryKind::Symlink),
        ]
        .into_iter()
        .map(|(p, k)| (p.to_string(), k))
        .collect();
        assert_eq!(got, want);
        Ok(())
    }
}
