use std::io;

/// Errors of the image store. `kind()` tells the API layer which Docker status to answer with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Docker's wording: "No such image: busybox:latest"
    #[error("No such image: {0}")]
    NotFound(String),
    #[error(transparent)]
    Reference(#[from] berth_types::ReferenceError),
    /// A malformed or hostile archive/layer/manifest: truncated tar, path escape, bad JSON...
    #[error("{0}")]
    InvalidArchive(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    InvalidArgument(String),
    /// e.g. "conflict: unable to delete 0123abcd (must be forced) - image is referenced in multiple repositories"
    #[error("{0}")]
    Conflict(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("image metadata store: {0}")]
    Db(#[from] rusqlite::Error),
}

/// What kind of failure this is, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    InvalidInput,
    Conflict,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Reference(_)
            | Error::InvalidArchive(_)
            | Error::DigestMismatch { .. }
            | Error::InvalidArgument(_) => ErrorKind::InvalidInput,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Io { .. } | Error::Db(_) => ErrorKind::Internal,
        }
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
