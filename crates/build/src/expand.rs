//! Docker's variable substitution in Dockerfile words, with the semantics of BuildKit's
//! `shell/lex.go` (which the legacy builder shares): `$V`, `${V}`, `${V:-x}`, `${V-x}`,
//! `${V:+x}`, `${V+x}`, `${V:?msg}`, `${V?msg}`, nested expansions inside the modifier word,
//! the Dockerfile's escape character, single quotes literal, double quotes with `$` expanded.
//!
//! [`expand`] (Docker's `ProcessWord`) yields one string — for ENV/LABEL values, WORKDIR, USER…;
//! [`expand_words`] (`ProcessWords`) also splits the result into words the way a shell would,
//! where quoted text stays one word and an unquoted expansion is split on whitespace — for
//! EXPOSE, VOLUME's list, ADD/COPY sources in shell form, `--build-arg` free lists.

/// The lexer with BuildKit's switches. The defaults are what the dispatcher uses; the parser
/// uses the raw variants to find heredoc delimiters without losing their quotes.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output (the words are only being split, not evaluated).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave `$V` / `${V}` as written when V is unset (instead of the empty string).
    pub skip_unset: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
        }
    }

    /// One word, no splitting (`ProcessWord`).
    pub fn process_word(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        self.run(word, lookup).map(|(w, _)| w)
    }

    /// Shell-style word splitting (`ProcessWords`).
    pub fn process_words(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, String> {
        self.run(word, lookup).map(|(_, ws)| ws)
    }

    fn run(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Vec<String>), String> {
        let mut sw = ShellWord {
            lx: *self,
            chars: word.chars().collect(),
            pos: 0,
            lookup,
        };
        sw.process_stop_on(None)
            .map_err(|e| format!("failed to process \"{word}\": {e}"))
    }
}

/// Expands one word (Docker's `ProcessWord`): quotes removed, escapes applied, variables
/// substituted. `lookup` returns the value of a build arg or ENV in effect. The error is
/// Docker's message (`failed to process "${X:?}": X: is not allowed to be empty`).
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    Lexer::new(escape).process_word(word, lookup)
}

/// Expands and splits into words (Docker's `ProcessWords`).
pub fn expand_words(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    Lexer::new(escape).process_words(word, lookup)
}

/// Accumulates the split words next to the unsplit result.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct ShellWord<'a> {
    lx: Lexer,
    chars: Vec<char>,
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes up to the end, or up to `stop` (consumed) when given.
    fn process_stop_on(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                    words.add_string(&v);
                }
                '\'' => {
                    let v = self.process_single_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                '"' => {
                    let v = self.process_double_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.lx.escape {
                        if self.lx.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        // Everything up to the next ' is literal; ' cannot be escaped inside.
        let mut out = String::new();
        let open = self.next();
        if self.lx.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lx.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        // Literal except `$`, and the escape char before `"`, `$` or itself.
        let mut out = String::new();
        let open = self.next();
        if self.lx.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lx.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    out.push_str(&v);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.lx.escape {
                        if self.lx.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lx.escape => {
                                self.pos += 1;
                                ch = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn env(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.env(&name) {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let modifier = self.next();
        match modifier {
            Some('}') => Ok(match self.env(&name) {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let m = self.next();
                let word = self.modifier_word()?;
                let value = self.env(&name);
                let set_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
                match m {
                    Some('+') => Ok(if set_non_empty { word } else { String::new() }),
                    Some('-') => Ok(if set_non_empty {
                        value.unwrap_or_default()
                    } else {
                        word
                    }),
                    Some('?') => {
                        if set_non_empty {
                            Ok(value.unwrap_or_default())
                        } else if word.is_empty() {
                            Err(format!("{name}: is not allowed to be empty"))
                        } else {
                            Err(format!("{name}: {word}"))
                        }
                    }
                    Some(c) => Err(format!("unsupported modifier ({c}) in substitution")),
                    None => Err("syntax error: missing '}'".into()),
                }
            }
            Some(m @ ('+' | '-' | '?')) => {
                let word = self.modifier_word()?;
                let value = self.env(&name);
                match (m, value) {
                    ('+', Some(_)) => Ok(word),
                    ('+', None) => Ok(String::new()),
                    ('-', Some(v)) => Ok(v),
                    ('-', None) => Ok(word),
                    (_, Some(v)) => Ok(v),
                    (_, None) if word.is_empty() => {
                        Err(format!("{name}: is not allowed to be unset"))
                    }
                    (_, None) => Err(format!("{name}: {word}")),
                }
            }
            Some(c) => Err(format!("unsupported modifier ({c}) in substitution")),
            None => Err("syntax error: missing '}'".into()),
        }
    }

    /// The word after a modifier, up to the closing brace, itself expanded.
    fn modifier_word(&mut self) -> Result<String, String> {
        match self.process_stop_on(Some('}')) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err("syntax error: missing '}'".into()),
            Err(e) => Err(e),
        }
    }

    /// A name: letters, digits, `_`; a leading digit run (`$1`) or one special parameter.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "AB" => Some("a b".into()),
            "E" => Some(String::new()),
            "PATH" => Some("/usr/bin".into()),
            _ => None,
        }
    }

    #[test]
    fn process_word_table() {
        let cases: &[(&str, &str)] = &[
            ("hello", "hello"),
            ("$A", "a"),
            ("${A}", "a"),
            ("x${A}y", "xay"),
            ("$Ax", ""), // the name is Ax
            ("$UNSET", ""),
            ("${UNSET:-def}", "def"),
            ("${E:-def}", "def"),
            ("${E-def}", ""),
            ("${UNSET-def}", "def"),
            ("${A:-def}", "a"),
            ("${A:+alt}", "alt"),
            ("${E:+alt}", ""),
            ("${E+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:-${A}b}", "ab"),
            ("${UNSET:-${ALSO:-deep}}", "deep"),
            ("'$A'", "$A"),
            ("\"$A\"", "a"),
            ("\"'$A'\"", "'a'"),
            ("\\$A", "$A"),
            ("\"\\$A\"", "$A"),
            ("\"a\\b\"", "a\\b"),
            ("\"a\\\"b\"", "a\"b"),
            ("a\\ b", "a b"),
            ("$", "$"),
            ("a$", "a$"),
            ("$1", ""),
            ("${PATH}:/x", "/usr/bin:/x"),
            ("it\\'s", "it's"),
            ("\\\\", "\\"),
            ("trailing\\", "trailing"),
            ("a  b", "a  b"),
        ];
        for (input, want) in cases {
            let got = expand(input, '\\', &env);
            assert_eq!(got.as_deref(), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn backtick_escape() {
        let cases: &[(&str, &str)] = &[
            ("c:\\windows", "c:\\windows"),
            ("`$A", "$A"),
            ("\"`\"x\"", "\"x"),
            ("a` b", "a b"),
        ];
        for (input, want) in cases {
            let got = expand(input, '`', &env);
            assert_eq!(got.as_deref(), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn process_words_table() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("$AB", &["a", "b"]),
            ("\"$AB\"", &["a b"]),
            ("x$AB", &["xa", "b"]),
            ("'a b' c", &["a b", "c"]),
            ("a\\ b", &["a b"]),
            ("$UNSET", &[]),
            ("", &[]),
            ("8080/tcp ${P:-80}", &["8080/tcp", "80"]),
        ];
        for (input, want) in cases {
            let got = expand_words(input, '\\', &env).expect(input);
            assert_eq!(got, *want, "input {input:?}");
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            ("${UNSET:?}", "UNSET: is not allowed to be empty"),
            ("${E:?must be set}", "E: must be set"),
            ("${UNSET?}", "UNSET: is not allowed to be unset"),
            ("${A", "syntax error: missing '}'"),
            ("${}", "syntax error: bad substitution"),
            ("${:x}", "syntax error: bad substitution"),
            ("${A!x}", "unsupported modifier (!) in substitution"),
            ("'abc", "matching single-quote"),
            ("\"abc", "matching double-quote"),
        ];
        for (input, want) in cases {
            let err = expand(input, '\\', &env).expect_err(input);
            assert!(err.contains(want), "input {input:?}: {err}");
            assert!(err.starts_with("failed to process"), "{err}");
        }
        assert_eq!(expand("${E?x}", '\\', &env).as_deref(), Ok(""));
    }

    #[test]
    fn raw_modes_keep_quotes_and_unset_names() {
        let lx = Lexer {
            raw_quotes: true,
            raw_escapes: true,
            skip_unset: true,
            ..Lexer::new('\\')
        };
        let got = lx.process_words("RUN <<'EOF' \"a b\" $X ${Y}", &env);
        assert_eq!(
            got,
            Ok(vec![
                "RUN".to_string(),
                "<<'EOF'".into(),
                "\"a b\"".into(),
                "$X".into(),
                "${Y}".into()
            ])
        );
    }
}
