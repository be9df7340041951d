//! The engine's error type: a kind (which the API maps to a Docker status code) and a message
//! worded like dockerd's.

use std::fmt;

/// What kind of failure, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400
    InvalidInput,
    /// 401: a registry refused the credentials (`POST /auth`).
    Unauthorized,
    /// 404
    NotFound,
    /// 403 (pre-defined networks, networks in use)
    Forbidden,
    /// 409
    Conflict,
    /// 501: a feature that exists in Docker but not (yet) here.
    NotImplemented,
    /// 500
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }
    pub fn not_implemented(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotImplemented, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<berth_image::Error> for Error {
    fn from(e: berth_image::Error) -> Error {
        use berth_image::Error as E;
        // Matched on variants (ErrorKind is not re-exported by berth-image); anything new or
        // unexpected counts as internal.
        #[allow(unreachable_patterns)]
        let kind = match &e {
            E::NotFound(_) => ErrorKind::NotFound,
            E::Reference(_)
            | E::InvalidArchive(_)
            | E::DigestMismatch { .. }
            | E::InvalidArgument(_) => ErrorKind::InvalidInput,
            E::Conflict(_) => ErrorKind::Conflict,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<berth_types::ReferenceError> for Error {
    fn from(e: berth_types::ReferenceError) -> Error {
        Error::invalid(e.to_string())
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Error {
        // A panic inside a blocking store call must not take the daemon down: report it.
        Error::internal(format!("internal error: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
