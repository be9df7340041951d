//! berth-build: `docker build` without BuildKit's daemon.
//!
//! Owns the Dockerfile front end — [`parse`] turns source text into the [`ast`] (directives,
//! line continuations, comments, heredocs, JSON/shell forms, flags such as `--from`/`--mount`),
//! [`expand`] does Docker's variable substitution (`$V`, `${V}`, `${V:-x}`, `${V:+x}`), and
//! [`ignore`] applies `.dockerignore` with Docker's pattern rules — and the executor
//! ([`exec`], with the context's file handling in [`context`]) that walks stages with Docker's
//! cache semantics against a backend the engine implements.
//!
//! Must not: speak HTTP, touch the image store or containers directly (the engine's backend
//! does that), or depend on engine crates (arrows point down: the engine uses this crate).

pub mod ast;
pub mod context;
pub mod exec;
pub mod expand;
pub mod ignore;
pub mod parse;

pub use ast::{Dockerfile, Instruction, InstructionKind, Stage};
pub use exec::{Backend, BaseImage, Built, FilesRequest, MountSpec, Options, Output, RunRequest};
pub use parse::{ParseError, parse, parse_named};

/// A build failure, with the message dockerd would put in the stream's error line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub message: String,
    /// A failed RUN's exit status: dockerd sends it as the stream's `errorDetail.code` and
    /// `docker build` exits with it.
    pub code: Option<i32>,
}

impl BuildError {
    pub fn new(message: impl Into<String>) -> BuildError {
        BuildError {
            message: message.into(),
            code: None,
        }
    }

    pub fn with_code(mut self, code: i32) -> BuildError {
        self.code = Some(code);
        self
    }
}
