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

    /// The class of an HTTP error status, the one mapping every HTTP client of the
    /// suite uses (Kubernetes API server, OCI registries, Vault, Azure, webhooks),
    /// so that a status means the same thing to a caller whichever backend sent it.
    ///
    /// The choices where HTTP leaves room, and why:
    /// - `408 Request Timeout` and `504 Gateway Timeout` are [`ErrorKind::Timeout`]:
    ///   someone ran out of time, and for a 504 the upstream may still have done the
    ///   work, which is what a timeout tells a caller (retryable; check before
    ///   repeating a write that is not idempotent).
    /// - `429 Too Many Requests` is [`ErrorKind::Unavailable`]: the server is fine but
    ///   will not serve now; the same request later succeeds.
    /// - `410 Gone` is [`ErrorKind::NotFound`]: the object is no longer there, and
    ///   asking again gives the same answer (not retryable).
    /// - `409 Conflict` and `412 Precondition Failed` are [`ErrorKind::Conflict`]:
    ///   another writer changed the object first (a stale revision or `If-Match`).
    /// - `401` and `403` are [`ErrorKind::Unauthorized`]; `501 Not Implemented` is
    ///   [`ErrorKind::Unsupported`]; every other 5xx is [`ErrorKind::Unavailable`].
    /// - Every other 4xx is [`ErrorKind::InvalidInput`]: the request was wrong and
    ///   stays wrong if repeated.
    /// - 1xx, 2xx and 3xx are not failures: [`ErrorKind::Other`] for a caller that
    ///   treats one as such (an unexpected redirect).
    ///
    /// ```
    /// use deploy_core::error::ErrorKind;
    /// assert_eq!(ErrorKind::from_http_status(404), ErrorKind::NotFound);
    /// assert_eq!(ErrorKind::from_http_status(504), ErrorKind::Timeout);
    /// assert!(ErrorKind::from_http_status(429).is_retryable());
    /// assert!(!ErrorKind::from_http_status(422).is_retryable());
    /// ```
    pub fn from_http_status(status: u16) -> Self {
        match status {
            404 | 410 => Self::NotFound,
            409 | 412 => Self::Conflict,
            401 | 403 => Self::Unauthorized,
            408 | 504 => Self::Timeout,
            429 => Self::Unavailable,
            501 => Self::Unsupported,
            400..=499 => Self::InvalidInput,
            500..=599 => Self::Unavailable,
            _ => Self::Other,
        }
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

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn every_status_maps_to_the_kind_a_caller_acts_on() {
        use ErrorKind::*;
        let table = [
            (200, Other),
            (302, Other),
            (400, InvalidInput),
            (401, Unauthorized),
            (403, Unauthorized),
            (404, NotFound),
            (405, InvalidInput),
            (408, Timeout),
            (409, Conflict),
            (410, NotFound),
            (412, Conflict),
            (415, InvalidInput),
            (422, InvalidInput),
            (429, Unavailable),
            (500, Unavailable),
            (501, Unsupported),
            (502, Unavailable),
            (503, Unavailable),
            (504, Timeout),
            (599, Unavailable),
            (600, Other),
        ];
        for (status, kind) in table {
            assert_eq!(ErrorKind::from_http_status(status), kind, "status {status}");
        }
        // What a caller does with them: retry the passing ones, not the rest.
        let retryable: Vec<u16> =
            (100..600).filter(|s| ErrorKind::from_http_status(*s).is_retryable()).filter(|s| *s < 500).collect();
        assert_eq!(retryable, [408, 409, 412, 429]);
        assert!((500..600).all(|s| s == 501 || ErrorKind::from_http_status(s).is_retryable()));
    }
}
