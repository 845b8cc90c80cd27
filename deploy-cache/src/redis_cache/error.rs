//! Turning `redis::RedisError` into [`CacheError`] with a kind that says whether a
//! retry makes sense.

use deploy_core::cache::CacheError;
use deploy_core::error::ErrorKind;
use redis::{ErrorKind as RedisKind, RedisError, ServerErrorKind};

/// The class of a Redis failure.
pub(crate) fn classify(error: &RedisError) -> ErrorKind {
    if error.is_timeout() {
        return ErrorKind::Timeout;
    }
    if error.is_connection_refusal() || error.is_connection_dropped() || error.is_io_error() {
        return ErrorKind::Unavailable;
    }
    match error.kind() {
        RedisKind::AuthenticationFailed | RedisKind::Server(ServerErrorKind::NoPerm) => ErrorKind::Unauthorized,
        RedisKind::ClusterConnectionNotFound
        | RedisKind::MasterNameNotFoundBySentinel
        | RedisKind::NoValidReplicasFoundBySentinel
        | RedisKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => ErrorKind::Unavailable,
        RedisKind::InvalidClientConfig
        | RedisKind::EmptySentinelList
        | RedisKind::Server(ServerErrorKind::CrossSlot | ServerErrorKind::ResponseError) => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    }
}

/// `error` during `operation`, as a [`CacheError::Backend`].
pub(crate) fn backend(operation: &'static str, error: RedisError) -> CacheError {
    CacheError::backend(operation, classify(&error), error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_failures_are_retryable_and_config_errors_are_not() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&refused), ErrorKind::Unavailable);
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(classify(&timeout), ErrorKind::Timeout);
        let config = RedisError::from((RedisKind::InvalidClientConfig, "bad url"));
        assert_eq!(classify(&config), ErrorKind::InvalidInput);
        assert!(!classify(&config).is_retryable());
        let auth = RedisError::from((RedisKind::AuthenticationFailed, "WRONGPASS"));
        assert_eq!(classify(&auth), ErrorKind::Unauthorized);
    }
}
