//! A little fuzzing of the front end with the e2e corpus (crates/e2e/tests/dockerfiles) as
//! seeds: truncated, spliced and byte-mutated Dockerfiles must parse or fail with an error
//! that names a line of the file — never panic; the word expander and `.dockerignore` patterns
//! get the same treatment. Deterministic (a fixed xorshift seed), so a failure reproduces.

use std::path::Path;

use berth_build::expand::{expand, expand_words};
use berth_build::ignore::Ignore;
use berth_build::parse_named;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn seeds() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/tests/dockerfiles");
    let mut out = Vec::new();
    for case in std::fs::read_dir(&dir).expect("corpus dir").flatten() {
        for f in std::fs::read_dir(case.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with("Dockerfile") || name == ".dockerignore" {
                let text = std::fs::read_to_string(f.path()).expect("read seed");
                out.push((name, text));
            }
        }
    }
    out.sort();
    assert!(out.len() > 20, "the corpus is missing: {}", dir.display());
    out
}

/// Bytes that matter to the grammar, favoured by the mutations.
const SPECIAL: &[&str] = &[
    "\\",
    "`",
    "\n",
    "\r\n",
    "\"",
    "'",
    "$",
    "${",
    "}",
    ":-",
    ":+",
    ":?",
    "<<",
    "<<-",
    "EOF",
    "[",
    "]",
    ",",
    "=",
    "--",
    "--mount=",
    "--from=",
    "#",
    "# escape=`\n",
    "\t",
    " ",
    "\u{feff}",
    "é",
    "\u{0}",
    "FROM ",
    "RUN ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "COPY ",
    "ARG ",
    "ENV ",
    "AS ",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = chars.clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            // truncate
            0 => out.truncate(at),
            // delete a run
            1 => {
                let end = (at + rng.below(12)).min(out.len());
                out.drain(at..end);
            }
            // insert a grammar token
            2 | 3 => {
                let tok = SPECIAL[rng.below(SPECIAL.len())];
                out.splice(at..at, tok.chars()).for_each(drop);
            }
            // duplicate a slice from elsewhere
            _ => {
                let from = rng.below(chars.len() + 1);
                let end = (from + rng.below(40)).min(chars.len());
                out.splice(at..at, chars[from..end].iter().copied())
                    .for_each(drop);
            }
        }
    }
    out.into_iter().collect()
}

#[test]
fn mutated_dockerfiles_fail_cleanly_with_a_line() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut errors = 0;
    for (name, text) in seeds().iter().filter(|(n, _)| n != ".dockerignore") {
        for _ in 0..300 {
            let src = mutate(&mut rng, text);
            let lines = src.split('\n').count();
            match parse_named(&src, name) {
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    assert!(
                        e.line <= lines,
                        "{name}: line {} of {lines}: {e}\n{src:?}",
                        e.line
                    );
                    let msg = e.to_string();
                    assert!(
                        e.line > 0
                            && msg
                                .starts_with(&format!("dockerfile parse error line {}: ", e.line))
                            || msg.starts_with(&format!("failed to parse {name}: "))
                            || e.line == 0 && msg.contains(name.as_str()),
                        "{name}: {msg:?} names no line\n{src:?}"
                    );
                }
            }
        }
    }
    assert!(
        errors > 0,
        "no mutation was an error: the fuzzer mutates nothing"
    );
}

#[test]
fn mutated_words_and_ignore_patterns_do_not_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let lookup = |k: &str| k.len().is_multiple_of(2).then(|| format!("v-{k}"));
    for (_, text) in seeds() {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            for _ in 0..20 {
                let w = mutate(&mut rng, line);
                for esc in ['\\', '`'] {
                    let _ = expand(&w, esc, &lookup);
                    let _ = expand_words(&w, esc, &lookup);
                }
                let ig = Ignore::parse(&w);
                let _ = ig.check();
                for p in ["a", "a/b/c.md", ".", "x/.hg/y", "Dockerfile"] {
                    let _ = ig.excluded(p);
                    let _ = ig.must_walk(p);
                }
            }
        }
    }
}
