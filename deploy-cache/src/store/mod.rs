//! Rollout progress, the per-app lock and deployment history in one Redis, so
//! that drivers on several hosts coordinate (feature `redis`).
//!
//! [`RedisStateStore`] keeps each document with a revision drawn from a per-app
//! counter that is never reset, and changes it only in Lua scripts that compare
//! the revision first (compare-and-swap without a race between the read and the
//! write). The lock is a key taken with `SET NX PX` holding the lease record
//! with its token; renewal, takeover and release are scripts that compare the
//! token (and, for a takeover, the observed record's revision), so a driver
//! whose lease was taken over is fenced out. [`RedisHistoryStore`] keeps one
//! key per record and sorted-set indexes by creation time.
//!
//! Both pass deploy-core's `testkit::conformance` suite against a real
//! `redis-server` (see `tests/redis/stores.rs`).

mod history;
mod state;

pub use history::RedisHistoryStore;
pub use state::RedisStateStore;

use deploy_core::error::ErrorKind;
use redis::RedisError;

/// The class of a Redis failure: connection trouble is retryable.
fn redis_kind(e: &RedisError) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Other
    }
}

/// Connects a reconnecting connection to the Redis at `url`.
async fn connect(url: &str) -> Result<redis::aio::ConnectionManager, RedisError> {
    let client = redis::Client::open(url)?;
    redis::aio::ConnectionManager::new(client).await
}
