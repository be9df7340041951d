use std::io;

/// Errors of registry operations. `kind()` tells the API layer which Docker status to use.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Manifest, tag or repository unknown (Docker answers 404).
    #[error("{0}")]
    NotFound(String),
    /// The registry refused our credentials or anonymous access.
    #[error("{0}")]
    Unauthorized(String),
    /// A manifest or image we cannot use: schema1, no matching platform, bad JSON, ...
    #[error("{0}")]
    Unsupported(String),
    /// Content did not match its digest or size: nothing of the pull is stored.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// The registry answered with an error status.
    #[error("{0}")]
    Registry(String),
    /// Transport failure (connection refused, TLS, reset, ...).
    #[error("{context}: {source}")]
    Http {
        context: String,
        #[source]
        source: reqwest::Error,
    },
    /// Bad local configuration: config.json, credential helper, certs.d files.
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Store(berth_image::Error),
}

impl From<berth_image::Error> for Error {
    fn from(e: berth_image::Error) -> Self {
        match e {
            berth_image::Error::DigestMismatch {
                what,
                expected,
                actual,
            } => Error::DigestMismatch {
                what,
                expected,
                actual,
            },
            other => Error::Store(other),
        }
    }
}

/// What kind of failure this is, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Unauthorized,
    InvalidInput,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Unsupported(_) | Error::DigestMismatch { .. } => ErrorKind::InvalidInput,
            Error::Store(e) => match e {
                berth_image::Error::NotFound(_) => ErrorKind::NotFound,
                berth_image::Error::Reference(_)
                | berth_image::Error::InvalidArchive(_)
                | berth_image::Error::InvalidArgument(_)
                | berth_image::Error::DigestMismatch { .. } => ErrorKind::InvalidInput,
                _ => ErrorKind::Internal,
            },
            Error::Registry(_) | Error::Http { .. } | Error::Config(_) | Error::Io { .. } => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn http(context: impl Into<String>, source: reqwest::Error) -> Self {
        Error::Http {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
