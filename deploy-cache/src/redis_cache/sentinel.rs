//! A connection to the master of a Redis Sentinel deployment that follows failovers.
//!
//! redis-rs's `SentinelClient` finds the master once per call to it; this module keeps
//! the multiplexed connection it returns, and drops it when a call fails in a way that
//! says the master may have moved (connection refused or dropped, timeout, `READONLY`
//! from a demoted master, `MASTERDOWN`). The next call asks the Sentinels again, so
//! after a failover the first call fails (retryable) and the following ones go to the
//! promoted replica, as a `ConnectionManager` does for one server.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisConnectionInfo, RedisError, RedisResult};
use tokio::sync::Mutex;

use super::config::redact_url;
use super::error::classify;
use deploy_core::error::ErrorKind;

/// The master connection of one Sentinel-monitored service, rediscovered on demand.
pub(crate) struct SentinelConnection {
    /// Asks the Sentinels; behind an async lock because discovery takes `&mut`.
    client: Mutex<SentinelClient>,
    /// The current master connection and its generation (bumped on every rediscovery,
    /// so that a late failure of an old connection does not drop a fresh one).
    current: StdMutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    connection_config: AsyncConnectionConfig,
    service_name: String,
}

impl SentinelConnection {
    /// A client that finds the master named `service_name` through `sentinels`.
    /// `master_password` authenticates to the master and its replicas (the Sentinels'
    /// own credentials, if any, are in their URLs).
    pub(crate) fn new(
        sentinels: &[String],
        service_name: &str,
        master_password: Option<&str>,
        connection_config: AsyncConnectionConfig,
    ) -> RedisResult<Self> {
        let mut node_info = SentinelNodeConnectionInfo::default();
        if let Some(password) = master_password {
            node_info = node_info.set_redis_connection_info(RedisConnectionInfo::default().set_password(password));
        }
        let urls: Vec<&str> = sentinels.iter().map(String::as_str).collect();
        let client = SentinelClient::build(urls, service_name, Some(node_info), SentinelServerType::Master)?;
        tracing::debug!(
            redis.sentinels = ?sentinels.iter().map(|url| redact_url(url)).collect::<Vec<_>>(),
            redis.service = service_name,
            "redis sentinel client built"
        );
        Ok(Self {
            client: Mutex::new(client),
            current: StdMutex::new(None),
            generation: AtomicU64::new(0),
            connection_config,
            service_name: service_name.to_owned(),
        })
    }

    /// The master connection: the kept one, else a new one to the master the
    /// Sentinels name now.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(kept) = self.kept() {
            return Ok(kept);
        }
        let mut client = self.client.lock().await;
        // Another call may have reconnected while this one waited for the lock.
        if let Some(kept) = self.kept() {
            return Ok(kept);
        }
        // Boxed: the discovery future is deep enough to overflow the type-layout
        // recursion limit of crates that await a `RedisCache` call.
        let connection = Box::pin(client.get_async_connection_with_config(&self.connection_config)).await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(redis.service = %self.service_name, redis.generation = generation, "connected to the redis master named by sentinel");
        *self.lock_current() = Some((generation, connection.clone()));
        Ok((generation, connection))
    }

    fn kept(&self) -> Option<(u64, MultiplexedConnection)> {
        self.lock_current().clone()
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        // A poisoned lock only means a panic elsewhere while swapping an Option: the
        // value is still whole.
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets connection `generation` when `error` says the master may have moved.
    fn on_error(&self, generation: u64, error: &RedisError) {
        if !master_may_have_moved(error) {
            return;
        }
        let mut current = self.lock_current();
        if current.as_ref().is_some_and(|(kept, _)| *kept == generation) {
            tracing::warn!(redis.service = %self.service_name, error = %error, "redis master lost; asking sentinel again on the next call");
            *current = None;
        }
    }

    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let (generation, mut connection) = self.connection().await?;
        let result = cmd.query_async(&mut connection).await;
        if let Err(error) = &result {
            self.on_error(generation, error);
        }
        result
    }

    pub(crate) async fn exec_pipeline(&self, pipeline: &Pipeline) -> RedisResult<()> {
        let (generation, mut connection) = self.connection().await?;
        let result = pipeline.exec_async(&mut connection).await;
        if let Err(error) = &result {
            self.on_error(generation, error);
        }
        result
    }
}

/// Whether `error` means the kept connection may no longer lead to the master: the
/// connection failed, or the node answered that it is no longer (or not yet) a
/// writable master. A plain command error (wrong type, bad argument) keeps it.
fn master_may_have_moved(error: &RedisError) -> bool {
    matches!(classify(error), ErrorKind::Unavailable | ErrorKind::Timeout)
}

#[cfg(test)]
mod tests {
    use redis::{ErrorKind as RedisKind, ServerErrorKind};

    use super::*;

    #[test]
    fn demotion_and_connection_loss_move_the_master_but_command_errors_do_not() {
        let readonly = RedisError::from((RedisKind::Server(ServerErrorKind::ReadOnly), "READONLY"));
        assert!(master_may_have_moved(&readonly));
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(master_may_have_moved(&dropped));
        let wrong_type = RedisError::from((RedisKind::Server(ServerErrorKind::ResponseError), "WRONGTYPE"));
        assert!(!master_may_have_moved(&wrong_type));
    }
}
