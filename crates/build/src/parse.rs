//! Dockerfile text → [`crate::ast::Dockerfile`]. (Being written: see issue #7.)

use crate::ast::Dockerfile;

/// A Dockerfile that cannot be parsed. `Display` names the line as Docker does:
/// `Dockerfile parse error line 3: unknown instruction: RUNN`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile parse error line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole Dockerfile.
pub fn parse(_src: &str) -> Result<Dockerfile, ParseError> {
    Err(ParseError {
        line: 1,
        message: "the Dockerfile parser is not written yet".into(),
    })
}
