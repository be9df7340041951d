//! CLI errors and the exit codes docker 28 uses for them.
//!
//! Measured against docker 28.2: flag parsing errors exit 125; argument-count errors,
//! daemon errors ("Error response from daemon: ..."), connection errors and not-found
//! errors of `inspect` exit 1.

use std::fmt;

/// Exit status for flag/usage parse errors (cobra's FlagErrorFunc in the docker CLI).
pub const EXIT_USAGE: i32 = 125;
/// Everything else that fails.
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// Exactly what goes to stderr (no trailing newline).
    pub message: String,
    pub code: i32,
    /// The first request of a command sent without version negotiation found no daemon or
    /// one older than us: negotiate (or start berthd) and run the command again.
    pub renegotiate: bool,
}

impl CliError {
    pub fn new(message: impl Into<String>, code: i32) -> Self {
        CliError {
            message: message.into(),
            code,
            renegotiate: false,
        }
    }

    /// A plain failure (exit 1).
    pub fn msg(message: impl Into<String>) -> Self {
        CliError::new(message, EXIT_FAILURE)
    }

    /// An error the daemon answered with.
    pub fn daemon(message: impl fmt::Display) -> Self {
        CliError::msg(format!("Error response from daemon: {message}"))
    }

    /// Exit code only; the message was already printed.
    pub fn silent(code: i32) -> Self {
        CliError::new(String::new(), code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::msg(e.to_string())
    }
}

/// Map a bollard error the way the docker CLI reports its client errors.
pub fn from_bollard(e: bollard::errors::Error, host: &str) -> CliError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError { message, .. } => CliError::daemon(message),
        E::SocketNotFoundError(_) | E::HyperResponseError { .. } | E::IOError { .. } => {
            cannot_connect(host)
        }
        other => CliError::msg(other.to_string()),
    }
}

pub fn cannot_connect(host: &str) -> CliError {
    CliError::msg(format!(
        "Cannot connect to the berth daemon at {host}. Is the berth daemon running?"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_read_like_docker() {
        let e = CliError::daemon("No such image: nosuch:latest");
        assert_eq!(
            e.message,
            "Error response from daemon: No such image: nosuch:latest"
        );
        assert_eq!(e.code, EXIT_FAILURE);
    }

    #[test]
    fn bollard_server_error_maps_to_daemon_message() {
        let e = from_bollard(
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message: "No such image: x:latest".into(),
            },
            "unix:///x.sock",
        );
        assert_eq!(
            e.message,
            "Error response from daemon: No such image: x:latest"
        );
        assert_eq!(e.code, 1);
    }
}
