//! [`RedisCache`]: one Redis server, a Redis Cluster, or a Sentinel-watched master
//! behind the [`Cache`] trait.

mod config;
mod error;
mod sentinel;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deploy_core::cache::{Cache, CacheError, CacheStats};
use deploy_core::error::ErrorKind;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, Value};
use tracing::instrument;

use self::config::redact_url;
pub use self::config::{RedisConfig, RedisTopology};
use self::error::backend;
use self::sentinel::SentinelConnection;
use crate::stats::StatsCounters;

/// The connection, cheap to clone: both kinds multiplex every call over shared
/// connections.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConnection>),
}

impl Connection {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match self {
            Self::Single(manager) => cmd.query_async(&mut manager.clone()).await,
            Self::Cluster(cluster) => cmd.query_async(&mut cluster.clone()).await,
            Self::Sentinel(sentinel) => sentinel.query(cmd).await,
        }
    }

    async fn exec_pipeline(&self, pipeline: &Pipeline) -> Result<(), RedisError> {
        match self {
            Self::Single(manager) => pipeline.exec_async(&mut manager.clone()).await,
            Self::Cluster(cluster) => pipeline.exec_async(&mut cluster.clone()).await,
            Self::Sentinel(sentinel) => sentinel.exec_pipeline(pipeline).await,
        }
    }
}

/// Counters that Redis itself keeps (`INFO stats`, `INFO memory`), summed over the
/// primaries of a cluster. They count every client of the server, not only this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RedisServerStats {
    /// Keys removed because `maxmemory` was reached.
    pub evicted_keys: u64,
    /// Keys removed because their TTL passed.
    pub expired_keys: u64,
    /// Successful key look-ups.
    pub keyspace_hits: u64,
    /// Failed key look-ups.
    pub keyspace_misses: u64,
    /// Bytes allocated by Redis.
    pub used_memory: u64,
}

/// A byte cache on Redis: single node, cluster, or a master watched by Sentinel.
///
/// - One node goes through redis-rs's `ConnectionManager`: when the connection
///   drops, the failing call returns an error and the manager reconnects, so a
///   restarted server serves the next calls without a new `RedisCache`.
/// - A cluster goes through redis-rs's async cluster client, which follows the slot
///   map and its changes.
/// - With Sentinel, the master is the one the Sentinels name (and that says `ROLE`
///   master itself). When a call fails because the connection broke, timed out or the
///   node was demoted (`READONLY`), that call returns a retryable error and the next
///   one asks the Sentinels again, so after a failover writes go to the promoted
///   replica; in a [`TieredCache`](crate::TieredCache) the failed call is served from
///   memory as with any outage of the shared tier. Until the Sentinels agree on a new
///   master (their `down-after-milliseconds` plus the election), calls fail
///   `Unavailable`. Reads go to the master too: replicas may lag.
/// - Keys get [`RedisConfig::key_prefix`] in front; values are stored with `SET ...
///   PX ttl` (the call's TTL, else [`RedisConfig::default_ttl`], else none).
/// - [`Cache::get_many`] is one `MGET` (split by slot on a cluster);
///   [`Cache::set_many`] is one pipeline of `SET`s on one node, and concurrent `SET`s
///   (pipelined per node by the cluster client) on a cluster.
/// - Failures are `CacheError::Backend` with a kind saying whether to retry:
///   `Unavailable` (connection refused or dropped, cluster down, loading),
///   `Timeout` (no answer within [`RedisConfig::response_timeout`]),
///   `Unauthorized`, `InvalidInput`. Each failure also counts in [`Cache::stats`].
///
/// Evictions in [`CacheStats`] stay 0: Redis evicts on the server; see
/// [`RedisCache::server_stats`].
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), deploy_core::cache::CacheError> {
/// use std::time::Duration;
/// use bytes::Bytes;
/// use deploy_cache::{RedisCache, RedisConfig};
/// use deploy_core::cache::Cache;
/// use deploy_core::error::Classify;
///
/// let cache = RedisCache::connect(RedisConfig::single("redis://127.0.0.1:6379").key_prefix("deploy:")).await?;
/// cache.set("lock-owner:checkout", Bytes::from_static(b"ci-42"), Some(Duration::from_secs(30))).await?;
/// match cache.get("lock-owner:checkout").await {
///     Ok(owner) => println!("{owner:?}"),
///     Err(e) if e.is_retryable() => println!("redis is unavailable for now: {e}"),
///     Err(e) => return Err(e),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisCache {
    connection: Connection,
    key_prefix: Arc<str>,
    default_ttl: Option<Duration>,
    max_value_size: usize,
    stats: Arc<StatsCounters>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topology = match &self.connection {
            Connection::Single(_) => "single",
            Connection::Cluster(_) => "cluster",
            Connection::Sentinel(_) => "sentinel",
        };
        f.debug_struct("RedisCache")
            .field("topology", &topology)
            .field("key_prefix", &self.key_prefix)
            .field("default_ttl", &self.default_ttl)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

/// The CA of `config` for the TLS client, after checking it goes with `rediss://`.
fn tls_certificates(config: &RedisConfig) -> Result<Option<redis::TlsCertificates>, CacheError> {
    let Some(path) = &config.tls_ca_file else { return Ok(None) };
    let urls: Vec<&str> = match &config.topology {
        RedisTopology::Single { url } => vec![url.as_str()],
        RedisTopology::Cluster { nodes } => nodes.iter().map(String::as_str).collect(),
        RedisTopology::Sentinel { .. } => {
            return Err(CacheError::backend(
                "configure redis tls",
                ErrorKind::InvalidInput,
                "tls with redis sentinel is not supported by RedisCache yet",
            ));
        }
    };
    if let Some(plain) = urls.iter().find(|url| !url.starts_with("rediss://")) {
        return Err(CacheError::backend(
            "configure redis tls",
            ErrorKind::InvalidInput,
            format!("a tls CA file is set but {} is not a rediss:// url", redact_url(plain)),
        ));
    }
    let pem = std::fs::read(path).map_err(|e| {
        CacheError::backend(
            "configure redis tls",
            ErrorKind::InvalidInput,
            format!("failed to read the CA file {}: {e}", path.display()),
        )
    })?;
    Ok(Some(redis::TlsCertificates { client_tls: None, root_cert: Some(pem) }))
}

impl RedisCache {
    /// Connects to the Redis of `config` and checks that it answers.
    ///
    /// Fails with an `Unavailable` (retryable) error when no node can be reached,
    /// and an `InvalidInput` error when a URL is malformed.
    #[instrument(skip_all, fields(redis.topology = ?config.topology), err)]
    pub async fn connect(config: RedisConfig) -> Result<Self, CacheError> {
        let tls = tls_certificates(&config)?;
        let connection = match &config.topology {
            RedisTopology::Single { url } => {
                let client = match &tls {
                    Some(certs) => redis::Client::build_with_tls(url.as_str(), certs.clone()),
                    None => redis::Client::open(url.as_str()),
                }
                .map_err(|e| backend("open redis client", e))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connection_timeout))
                    .set_response_timeout(Some(config.response_timeout))
                    .set_number_of_retries(usize::try_from(config.reconnect_retries).unwrap_or(usize::MAX))
                    .set_max_delay(config.connection_timeout);
                let manager = ConnectionManager::new_with_config(client, manager_config)
                    .await
                    .map_err(|e| backend("connect to redis", e))?;
                tracing::debug!(redis.url = %redact_url(url), "connected to redis");
                Connection::Single(manager)
            }
            RedisTopology::Cluster { nodes } => {
                let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(config.connection_timeout)
                    .response_timeout(config.response_timeout)
                    .retries(config.reconnect_retries);
                if let Some(certs) = tls.clone() {
                    builder = builder.certs(certs);
                }
                let client = builder.build().map_err(|e| backend("open redis cluster client", e))?;
                let cluster =
                    client.get_async_connection().await.map_err(|e| backend("connect to redis cluster", e))?;
                Connection::Cluster(cluster)
            }
            RedisTopology::Sentinel { sentinels, service_name, master_password } => {
                let connection_config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(config.connection_timeout))
                    .set_response_timeout(Some(config.response_timeout));
                let sentinel =
                    SentinelConnection::new(sentinels, service_name, master_password.as_deref(), connection_config)
                        .map_err(|e| backend("open redis sentinel client", e))?;
                Connection::Sentinel(Arc::new(sentinel))
            }
        };
        let cache = Self {
            connection,
            key_prefix: Arc::from(config.key_prefix.as_str()),
            default_ttl: config.default_ttl,
            max_value_size: config.max_value_size,
            stats: Arc::default(),
        };
        cache.ping().await?;
        Ok(cache)
    }

    /// Sends `PING`; succeeds when Redis answers.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.run("ping redis", &redis::cmd("PING")).await.map(|_: String| ())
    }

    /// Redis's own counters of evicted and expired keys, hits, misses and memory.
    pub async fn server_stats(&self) -> Result<RedisServerStats, CacheError> {
        let info: Value = self.run("read redis info", redis::cmd("INFO").arg("all")).await?;
        let mut stats = RedisServerStats::default();
        add_info(&info, &mut stats);
        Ok(stats)
    }

    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.key_prefix.len() + key.len());
        full.push_str(&self.key_prefix);
        full.push_str(key);
        full
    }

    fn set_command(&self, key: &str, value: &Bytes, ttl: Option<Duration>) -> Result<Cmd, CacheError> {
        if value.len() > self.max_value_size {
            return Err(CacheError::TooLarge { key: key.to_owned(), size: value.len(), limit: self.max_value_size });
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value.as_ref());
        if let Some(ttl) = ttl.or(self.default_ttl) {
            // PX 0 is an error in Redis; the shortest lifetime it accepts is 1 ms.
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            cmd.arg("PX").arg(millis);
        }
        Ok(cmd)
    }

    /// Runs `cmd`, counting a failure in the stats.
    async fn run<T: FromRedisValue>(&self, operation: &'static str, cmd: &Cmd) -> Result<T, CacheError> {
        self.connection.query(cmd).await.map_err(|e| {
            self.stats.error();
            backend(operation, e)
        })
    }
}

/// Adds the counters of every `INFO` text in `value` (one per primary on a cluster).
fn add_info(value: &Value, stats: &mut RedisServerStats) {
    match value {
        Value::BulkString(bytes) => add_info_text(&String::from_utf8_lossy(bytes), stats),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => add_info_text(text, stats),
        Value::Map(pairs) => pairs.iter().for_each(|(_node, info)| add_info(info, stats)),
        Value::Array(items) => items.iter().for_each(|info| add_info(info, stats)),
        _ => {}
    }
}

fn add_info_text(text: &str, stats: &mut RedisServerStats) {
    for line in text.lines() {
        let Some((field, value)) = line.trim().split_once(':') else { continue };
        let Ok(value) = value.parse::<u64>() else { continue };
        let counter = match field {
            "evicted_keys" => &mut stats.evicted_keys,
            "expired_keys" => &mut stats.expired_keys,
            "keyspace_hits" => &mut stats.keyspace_hits,
            "keyspace_misses" => &mut stats.keyspace_misses,
            "used_memory" => &mut stats.used_memory,
            _ => continue,
        };
        *counter = counter.saturating_add(value);
    }
}

#[async_trait]
impl Cache for RedisCache {
    #[instrument(level = "debug", skip_all, fields(cache.key = key), err)]
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let value: Option<Bytes> = self.run("get a value from redis", redis::cmd("GET").arg(self.key(key))).await?;
        self.stats.read(value.is_some());
        Ok(value)
    }

    #[instrument(level = "debug", skip_all, fields(cache.key = key, cache.size = value.len()), err)]
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
        let cmd = self.set_command(key, &value, ttl)?;
        self.run("set a value in redis", &cmd).await.map(|_: ()| ())
    }

    #[instrument(level = "debug", skip_all, fields(cache.key = key), err)]
    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: u64 = self.run("delete a value from redis", redis::cmd("DEL").arg(self.key(key))).await?;
        Ok(removed > 0)
    }

    #[instrument(level = "debug", skip_all, fields(cache.keys = keys.len()), err)]
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(key));
        }
        let values: Vec<Option<Bytes>> = self.run("get values from redis", &cmd).await?;
        for value in &values {
            self.stats.read(value.is_some());
        }
        Ok(values)
    }

    #[instrument(level = "debug", skip_all, fields(cache.keys = entries.len()), err)]
    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<(), CacheError> {
        let commands =
            entries.iter().map(|(key, value)| self.set_command(key, value, ttl)).collect::<Result<Vec<_>, _>>()?;
        let result = match &self.connection {
            Connection::Single(_) | Connection::Sentinel(_) => {
                let mut pipeline = redis::pipe();
                for cmd in commands {
                    pipeline.add_command(cmd).ignore();
                }
                self.connection.exec_pipeline(&pipeline).await
            }
            // A cluster pipeline must stay within one slot; concurrent commands are
            // pipelined per node by the cluster client instead.
            Connection::Cluster(_) => {
                futures_util::future::try_join_all(commands.iter().map(|cmd| self.connection.query::<()>(cmd)))
                    .await
                    .map(|_| ())
            }
        };
        result.map_err(|e| {
            self.stats.error();
            backend("set values in redis", e)
        })
    }

    fn stats(&self) -> CacheStats {
        self.stats.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_counters_are_summed_over_nodes() {
        let node = |hits: u64| {
            Value::BulkString(
                format!("# Stats\r\nkeyspace_hits:{hits}\r\nkeyspace_misses:2\r\nexpired_keys:3\r\nevicted_keys:0\r\n# Memory\r\nused_memory:100\r\nused_memory_human:100B\r\n")
                    .into_bytes(),
            )
        };
        let cluster = Value::Map(vec![
            (Value::SimpleString("127.0.0.1:7000".into()), node(5)),
            (Value::SimpleString("127.0.0.1:7001".into()), node(7)),
        ]);
        let mut stats = RedisServerStats::default();
        add_info(&cluster, &mut stats);
        assert_eq!(
            stats,
            RedisServerStats {
                evicted_keys: 0,
                expired_keys: 6,
                keyspace_hits: 12,
                keyspace_misses: 4,
                used_memory: 200
            }
        );
    }
}
