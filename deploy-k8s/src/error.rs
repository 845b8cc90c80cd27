//! Errors of the cluster operations, and how a `kube::Error` maps onto deploy-core's
//! [`ErrorKind`].

use deploy_core::error::{Classify, ErrorKind};

/// A failure of a cluster operation of this crate (apply, read, wait, hook Jobs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// The API server answered with an error status or could not be reached.
    #[error("failed to {operation}: {source}")]
    Api {
        /// What was being done, such as `apply deployment shop/web`.
        operation: String,
        /// The class of the failure, from the HTTP status.
        kind: ErrorKind,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// The object does not exist.
    #[error("{what} not found")]
    NotFound {
        /// Which object, such as `namespace shop`.
        what: String,
    },
    /// The object could not be turned into or out of JSON.
    #[error("failed to encode {what}: {source}")]
    Encode {
        /// Which object.
        what: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// A wait ran out of time.
    #[error("{what} was not done after {after:?}: {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: std::time::Duration,
        /// The last state seen.
        last: String,
    },
    /// A watch ended with an error that retries did not cure.
    #[error("watch of {what} failed: {source}")]
    Watch {
        /// What was watched.
        what: String,
        /// kube-runtime's error.
        #[source]
        source: kube::runtime::watcher::Error,
    },
    /// A hook Job failed; `logs` holds the tail of its failed pod's logs.
    #[error("hook job {job} failed: {reason}")]
    JobFailed {
        /// The Job's name.
        job: String,
        /// The Job's failure condition message.
        reason: String,
        /// The last lines of the failed pod's log, if any could be read.
        logs: Option<String>,
    },
    /// An object of the name this crate would write or delete exists but does not
    /// carry its ownership label (`app.kubernetes.io/managed-by: deploy-rs`): it
    /// belongs to someone else and is left alone.
    #[error("{what} exists and is not managed by deploy-rs; it is left alone (adopt it explicitly to take it over)")]
    NotOwned {
        /// Which object, such as `deployment shop/web-stable`.
        what: String,
    },
    /// The server serves the kind in none of the versions this crate can send.
    #[error("the server does not serve {kind} in any of {wanted} (it serves it in [{offered}]; the group offers [{group_offers}])", wanted = wanted.join(", "), offered = offered.join(", "), group_offers = group_offers.join(", "))]
    Unserved {
        /// `group/Kind`.
        kind: String,
        /// The versions this crate can send, newest first.
        wanted: Vec<String>,
        /// The versions the server serves the kind in.
        offered: Vec<String>,
        /// Every version of the group the server offers.
        group_offers: Vec<String>,
    },
    /// The caller gave a value this crate cannot use.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was given, such as `config snapshot id`.
        what: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The object the server returned lacks a field the operation needs.
    #[error("{what} is missing {field}")]
    Incomplete {
        /// Which object.
        what: String,
        /// Which field.
        field: String,
    },
}

/// `Result` with [`KubeError`].
pub type Result<T, E = KubeError> = std::result::Result<T, E>;

impl KubeError {
    /// Wraps kube's error for `operation`, classified by [`kind_of`].
    pub fn api(operation: impl Into<String>, source: kube::Error) -> Self {
        Self::Api { operation: operation.into(), kind: kind_of(&source), source }
    }
}

impl Classify for KubeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { kind, .. } => *kind,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Encode { .. } | Self::Incomplete { .. } | Self::Invalid { .. } => ErrorKind::InvalidInput,
            Self::Unserved { .. } => ErrorKind::Unsupported,
            Self::NotOwned { .. } => ErrorKind::Conflict,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Watch { .. } => ErrorKind::Unavailable,
            Self::JobFailed { .. } => ErrorKind::Other,
        }
    }
}

/// The class of a kube error: from the API server's status code when it answered,
/// [`ErrorKind::Unavailable`] when it could not be reached.
pub fn kind_of(error: &kube::Error) -> ErrorKind {
    match error {
        kube::Error::Api(status) => ErrorKind::from_http_status(status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) => ErrorKind::Unavailable,
        kube::Error::SerdeError(_) => ErrorKind::InvalidInput,
        kube::Error::Auth(_) => ErrorKind::Unauthorized,
        _ => ErrorKind::Other,
    }
}

/// Whether `error` is the API server's 404.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

/// Whether `error` is the API server's 409.
pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("refused", "Test").with_code(code).boxed())
    }

    #[test]
    fn api_server_statuses_map_through_the_shared_table() {
        assert_eq!(kind_of(&api(404)), ErrorKind::NotFound);
        assert_eq!(kind_of(&api(409)), ErrorKind::Conflict);
        assert_eq!(kind_of(&api(410)), ErrorKind::NotFound);
        assert_eq!(kind_of(&api(429)), ErrorKind::Unavailable);
        assert_eq!(kind_of(&api(504)), ErrorKind::Timeout);
        assert_eq!(kind_of(&api(422)), ErrorKind::InvalidInput);
        assert!(kind_of(&api(409)).is_retryable());
        assert!(!kind_of(&api(422)).is_retryable());
    }
}
