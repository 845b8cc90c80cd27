//! What every backend error has in common: a kind that tells the caller whether to
//! retry, look elsewhere, or give up.

/// A boxed error from a backend library, kept as the `source` of our errors so that
/// `deploy-core` never names `kube::Error`, `bollard::errors::Error` or `redis::RedisError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The class of a backend failure, for deciding what to do next.
///
/// ```
/// use deploy_core::error::ErrorKind;
/// assert!(ErrorKind::Unavailable.is_retryable());
/// assert!(!ErrorKind::InvalidInput.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// Someone else changed the object first (HTTP 409, a stale revision).
    Conflict,
    /// The operation ran out of time.
    Timeout,
    /// The backend could not be reached or answered with a server error.
    Unavailable,
    /// The backend refused the credentials.
    Unauthorized,
    /// The request was wrong and will stay wrong if repeated.
    InvalidInput,
    /// The backend cannot do this at all.
    Unsupported,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Conflict | Self::Timeout | Self::Unavailable)
    }
}

/// Classification shared by every error type of the backend traits, as reqwest's
/// `is_timeout()`.
///
/// Implementors provide [`Classify::kind`]; the predicates follow from it.
///
/// ```
/// use deploy_core::error::{Classify, ErrorKind};
/// use deploy_core::cache::CacheError;
/// let e = CacheError::backend("get", ErrorKind::Timeout, "redis took too long");
/// assert!(e.is_retryable());
/// assert!(!e.is_not_found());
/// ```
pub trait Classify {
    /// The class of the failure.
    fn kind(&self) -> ErrorKind;

    /// Whether the same call may succeed if made again later.
    fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// Whether the failure means the object does not exist.
    fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Whether the failure is a lost race with another writer.
    fn is_conflict(&self) -> bool {
        self.kind() == ErrorKind::Conflict
    }

    /// Whether the failure is a timeout.
    fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }
}

/// Adds the `backend` constructor shared by every trait error: each has a
/// `Backend { operation, kind, source }` variant for failures of the system behind it.
macro_rules! backend_error {
    ($error:ident) => {
        impl $error {
            /// A failure of the backend system during `operation`, classified by `kind`,
            /// with the backend's own error kept as the source.
            pub fn backend(
                operation: impl Into<String>,
                kind: $crate::error::ErrorKind,
                source: impl Into<$crate::error::BoxError>,
            ) -> Self {
                Self::Backend { operation: operation.into(), kind, source: source.into() }
            }
        }
    };
}
pub(crate) use backend_error;
