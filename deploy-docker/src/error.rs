//! Errors of the Docker operations that are not covered by a `deploy-core` trait
//! (connecting, containers, networks), and the classification of bollard's errors
//! shared by every module.

use deploy_core::error::{BoxError, Classify, ErrorKind};

/// A failure to reach the Docker engine or to run a container or network operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// The engine could not be reached at all (no socket, connection refused, an
    /// API version the client cannot speak).
    #[error("docker engine at {endpoint} is unreachable: {source}")]
    Unreachable {
        /// Where the client tried to connect.
        endpoint: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// The container, network or image does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, such as `container web-1`.
        what: String,
    },
    /// The request was refused as invalid (a bad name, a port already taken).
    #[error("invalid request to {operation}: {message}")]
    Invalid {
        /// What was being done.
        operation: String,
        /// The engine's message.
        message: String,
    },
    /// Any other failure of the engine.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The engine's error.
        #[source]
        source: BoxError,
    },
}

impl DockerError {
    /// Wraps a bollard error raised during `operation`, classified by
    /// [`classify_bollard`]; a 404 becomes [`DockerError::NotFound`] naming `what`.
    pub(crate) fn from_bollard(operation: &str, what: impl FnOnce() -> String, error: bollard::errors::Error) -> Self {
        match classify_bollard(&error) {
            ErrorKind::NotFound => Self::NotFound { what: what() },
            ErrorKind::InvalidInput => {
                Self::Invalid { operation: operation.to_owned(), message: bollard_message(&error) }
            }
            kind => Self::Backend { operation: operation.to_owned(), kind, source: Box::new(error) },
        }
    }
}

impl Classify for DockerError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unreachable { .. } => ErrorKind::Unavailable,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Invalid { .. } => ErrorKind::InvalidInput,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// The class of a bollard error: HTTP status codes from the engine (through
/// [`ErrorKind::from_http_status`]), transport
/// failures as [`ErrorKind::Unavailable`], timeouts as [`ErrorKind::Timeout`].
pub(crate) fn classify_bollard(error: &bollard::errors::Error) -> ErrorKind {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError { status_code, .. } => ErrorKind::from_http_status(*status_code),
        E::RequestTimeoutError => ErrorKind::Timeout,
        E::SocketNotFoundError(_) | E::HyperResponseError { .. } | E::IOError { .. } => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// The engine's own message for a server error, or the error's display.
pub(crate) fn bollard_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Whether the error is the engine answering 404.
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    classify_bollard(error) == ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_by_status() {
        let e = |status_code| bollard::errors::Error::DockerResponseServerError { status_code, message: "m".into() };
        assert_eq!(classify_bollard(&e(404)), ErrorKind::NotFound);
        assert_eq!(classify_bollard(&e(409)), ErrorKind::Conflict);
        assert_eq!(classify_bollard(&e(400)), ErrorKind::InvalidInput);
        assert_eq!(classify_bollard(&e(503)), ErrorKind::Unavailable);
        let not_found = DockerError::from_bollard("inspect container", || "container x".into(), e(404));
        assert!(not_found.is_not_found());
        assert_eq!(not_found.to_string(), "container x not found");
        let invalid = DockerError::from_bollard("create container", String::new, e(400));
        assert_eq!(invalid.to_string(), "invalid request to create container: m");
        assert!(DockerError::from_bollard("x", String::new, e(500)).is_retryable());
    }
}
