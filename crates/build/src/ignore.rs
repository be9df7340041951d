//! `.dockerignore`: Docker's pattern rules (filepath.Match per component, `**`, `!` exceptions,
//! last match wins, leading `/` and `./` cleaned). (Being written: see issue #7.)

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    pub patterns: Vec<String>,
}

impl Ignore {
    /// Parses the file's text (comments `#`, blank lines, whitespace trimmed).
    pub fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        Ignore { patterns }
    }

    /// Whether a context-relative path (`a/b/c`, no leading `/`) is excluded.
    pub fn excluded(&self, _path: &str) -> bool {
        false
    }
}
