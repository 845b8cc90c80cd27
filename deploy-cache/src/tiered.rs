//! [`TieredCache`]: a [`MokaCache`] in front of a shared cache (Redis), read-through
//! and write-through, that can keep serving from memory while the shared tier fails.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deploy_core::cache::{Cache, CacheError, CacheStats};
use tracing::instrument;

use crate::moka_cache::MokaCache;
use crate::stats::StatsCounters;

/// What a [`TieredCache`] does when its shared tier (L2) fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum L2FailurePolicy {
    /// Keep serving from memory: a failed L2 read is a miss, a failed L2 write or
    /// delete still updates memory, and the call succeeds. Each failure counts in
    /// [`CacheStats::errors`] and is traced at WARN.
    #[default]
    ServeFromMemory,
    /// Return L2's error to the caller (also counted and traced). A failed write
    /// removes the key from memory, since L2 may or may not hold the new value.
    Fail,
}

/// Configuration of a [`TieredCache`].
///
/// ```
/// use std::time::Duration;
/// use deploy_cache::{L2FailurePolicy, TieredConfig};
///
/// let config = TieredConfig::default()
///     .on_l2_error(L2FailurePolicy::Fail)
///     .memory_max_ttl(Duration::from_secs(30));
/// assert_eq!(config.on_l2_error, L2FailurePolicy::Fail);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TieredConfig {
    /// What to do when L2 fails. Default: [`L2FailurePolicy::ServeFromMemory`].
    pub on_l2_error: L2FailurePolicy,
    /// The longest an entry lives in memory, so that what other processes write to
    /// L2 is seen after at most this long. Values read from L2 are kept in memory
    /// for this long (L2's remaining TTL is not read); values written keep their
    /// own TTL when it is shorter. `None`: the memory tier's own TTL rules.
    pub memory_max_ttl: Option<Duration>,
}

impl TieredConfig {
    /// Sets [`TieredConfig::on_l2_error`].
    #[must_use]
    pub fn on_l2_error(mut self, policy: L2FailurePolicy) -> Self {
        self.on_l2_error = policy;
        self
    }

    /// Sets [`TieredConfig::memory_max_ttl`].
    #[must_use]
    pub fn memory_max_ttl(mut self, ttl: Duration) -> Self {
        self.memory_max_ttl = Some(ttl);
        self
    }
}

/// Counters of each tier of a [`TieredCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// The memory tier (L1): its hits and misses are every read's first look.
    pub memory: CacheStats,
    /// The shared tier (L2): read on L1 misses only.
    pub shared: CacheStats,
}

/// Memory (L1, [`MokaCache`]) in front of a shared cache (L2, usually a
/// `RedisCache`).
///
/// - Read-through: a read looks in memory, then in L2, and keeps what L2 had in memory.
/// - Write-through: a write goes to L2, then to memory.
/// - A delete removes the key from both tiers.
/// - When L2 fails, [`TieredConfig::on_l2_error`] decides: keep serving from memory
///   (default) or fail the call. Either way the failure counts in
///   [`CacheStats::errors`] and is traced.
///
/// [`Cache::stats`] counts what callers saw: a hit in either tier is a hit, a miss in
/// both is a miss; evictions are the memory tier's; errors are L2 failures.
/// [`TieredCache::tier_stats`] has each tier's own counters.
///
/// Memory is per process: another process's write reaches this one's memory only
/// when the entry expires there ([`TieredConfig::memory_max_ttl`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), deploy_core::cache::CacheError> {
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use deploy_cache::{MokaCache, MokaConfig, TieredCache, TieredConfig};
/// use deploy_core::cache::Cache;
///
/// // In production L2 is a RedisCache; any Cache works.
/// let shared: Arc<dyn Cache> = Arc::new(MokaCache::new(MokaConfig::default()));
/// let tiered = TieredCache::new(MokaCache::new(MokaConfig::default()), Arc::clone(&shared), TieredConfig::default());
/// tiered.set("k", Bytes::from_static(b"v"), None).await?;
/// assert_eq!(shared.get("k").await?, Some(Bytes::from_static(b"v")));
/// assert_eq!(tiered.get("k").await?, Some(Bytes::from_static(b"v")));
/// assert_eq!(tiered.tier_stats().shared.hits, 1, "served from memory; L2 read only by the check above");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TieredCache {
    memory: MokaCache,
    shared: Arc<dyn Cache>,
    config: TieredConfig,
    stats: Arc<StatsCounters>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("memory", &self.memory)
            .field("config", &self.config)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

impl TieredCache {
    /// `memory` in front of `shared`.
    pub fn new(memory: MokaCache, shared: Arc<dyn Cache>, config: TieredConfig) -> Self {
        Self { memory, shared, config, stats: Arc::default() }
    }

    /// The memory tier.
    pub fn memory(&self) -> &MokaCache {
        &self.memory
    }

    /// The shared tier.
    pub fn shared(&self) -> &Arc<dyn Cache> {
        &self.shared
    }

    /// Each tier's own counters.
    pub fn tier_stats(&self) -> TierStats {
        TierStats { memory: self.memory.counters(), shared: self.shared.stats() }
    }

    /// Removes `key` from memory only, for example when another process announces
    /// that it changed the key in L2. Returns whether memory had it.
    pub async fn invalidate_memory(&self, key: &str) -> bool {
        self.memory.remove(key).await
    }

    /// The value of `key`, as [`Cache::get`] but without the trait's boxed future:
    /// the fast path for callers that hold the concrete type.
    pub async fn lookup(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        if let Some(value) = self.memory.lookup(key).await {
            self.stats.hit();
            return Ok(Some(value));
        }
        match self.shared.get(key).await {
            Ok(Some(value)) => {
                // Too large for memory: it stays in L2 only, which is fine for a read.
                let _kept_in_memory = self.remember(key, value.clone(), None).await.is_ok();
                self.stats.hit();
                Ok(Some(value))
            }
            Ok(None) => {
                self.stats.miss();
                Ok(None)
            }
            Err(error) => {
                self.l2_failed(key, error)?;
                self.stats.miss();
                Ok(None)
            }
        }
    }

    /// How long a value stays in memory, given the TTL it was stored with (`None` for
    /// values read from L2).
    fn memory_ttl(&self, ttl: Option<Duration>) -> Option<Duration> {
        match (ttl, self.config.memory_max_ttl) {
            (Some(own), Some(max)) => Some(own.min(max)),
            (own, max) => own.or(max),
        }
    }

    /// Counts and traces an L2 failure; `Ok` when the policy says to carry on.
    fn l2_failed(&self, key: &str, error: CacheError) -> Result<(), CacheError> {
        self.stats.error();
        match self.config.on_l2_error {
            L2FailurePolicy::ServeFromMemory => {
                tracing::warn!(cache.key = key, error = %error, "shared cache tier failed; serving from memory");
                Ok(())
            }
            L2FailurePolicy::Fail => {
                tracing::warn!(cache.key = key, error = %error, "shared cache tier failed");
                Err(error)
            }
        }
    }

    /// Keeps a value in memory; a value too large for memory is only in L2, and an
    /// older value of the key must not stay in memory.
    async fn remember(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
        let stored = self.memory.insert(key, value, self.memory_ttl(ttl)).await;
        if stored.is_err() {
            self.memory.remove(key).await;
        }
        stored
    }
}

#[async_trait]
impl Cache for TieredCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        self.lookup(key).await
    }

    #[instrument(level = "debug", skip_all, fields(cache.key = key), err)]
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
        let shared_result = self.shared.set(key, value.clone(), ttl).await;
        let shared_stored = match shared_result {
            Ok(()) => true,
            Err(error) => {
                if let Err(error) = self.l2_failed(key, error) {
                    self.memory.remove(key).await;
                    return Err(error);
                }
                false
            }
        };
        match self.remember(key, value, ttl).await {
            // Stored nowhere: the caller must hear of it.
            Err(too_large) if !shared_stored => Err(too_large),
            _ => Ok(()),
        }
    }

    #[instrument(level = "debug", skip_all, fields(cache.key = key), err)]
    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let in_memory = self.memory.remove(key).await;
        match self.shared.delete(key).await {
            Ok(in_shared) => Ok(in_memory || in_shared),
            Err(error) => {
                self.l2_failed(key, error)?;
                Ok(in_memory)
            }
        }
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>, CacheError> {
        let mut values = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let value = self.memory.lookup(key).await;
            if value.is_none() {
                missing.push(index);
            }
            values.push(value);
        }
        if !missing.is_empty() {
            let missing_keys: Vec<&str> = missing.iter().map(|&index| keys[index]).collect();
            match self.shared.get_many(&missing_keys).await {
                Ok(found) => {
                    for (&index, value) in missing.iter().zip(found) {
                        if let Some(value) = &value {
                            let _kept_in_memory = self.remember(keys[index], value.clone(), None).await.is_ok();
                        }
                        values[index] = value;
                    }
                }
                Err(error) => self.l2_failed(missing_keys.first().copied().unwrap_or_default(), error)?,
            }
        }
        for value in &values {
            self.stats.read(value.is_some());
        }
        Ok(values)
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<(), CacheError> {
        if let Err(error) = self.shared.set_many(entries, ttl).await
            && let Err(error) = self.l2_failed(entries.first().map(|(key, _)| *key).unwrap_or_default(), error)
        {
            for (key, _) in entries {
                self.memory.remove(key).await;
            }
            return Err(error);
        }
        for (key, value) in entries {
            // L2 has it (or failed and the policy says carry on); a value too large for
            // memory is simply not kept there.
            let _kept_in_memory = self.remember(key, value.clone(), ttl).await.is_ok();
        }
        Ok(())
    }

    fn stats(&self) -> CacheStats {
        let own = self.stats.snapshot();
        CacheStats::new(own.hits, own.misses, self.memory.counters().evictions, own.errors)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::MokaConfig;
    use deploy_core::error::{Classify, ErrorKind};

    /// A shared tier that can be switched to failing, standing in for Redis in the
    /// unit tests (the integration tests use a real redis-server).
    #[derive(Default)]
    struct SwitchableTier {
        inner: Option<MokaCache>,
        down: AtomicBool,
    }

    impl SwitchableTier {
        fn new() -> Arc<Self> {
            Arc::new(Self { inner: Some(MokaCache::new(MokaConfig::default())), down: AtomicBool::new(false) })
        }
        fn check(&self) -> Result<&MokaCache, CacheError> {
            match (&self.inner, self.down.load(Ordering::SeqCst)) {
                (Some(inner), false) => Ok(inner),
                _ => Err(CacheError::backend("reach the shared tier", ErrorKind::Unavailable, "connection refused")),
            }
        }
    }

    #[async_trait]
    impl Cache for SwitchableTier {
        async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
            Ok(self.check()?.lookup(key).await)
        }
        async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
            self.check()?.insert(key, value, ttl).await
        }
        async fn delete(&self, key: &str) -> Result<bool, CacheError> {
            Ok(self.check()?.remove(key).await)
        }
        fn stats(&self) -> CacheStats {
            self.inner.as_ref().map(MokaCache::counters).unwrap_or_default()
        }
    }

    fn tiered(shared: &Arc<SwitchableTier>, config: TieredConfig) -> TieredCache {
        TieredCache::new(MokaCache::new(MokaConfig::default()), Arc::clone(shared) as Arc<dyn Cache>, config)
    }

    #[tokio::test]
    async fn reads_go_through_to_l2_once_then_stay_in_memory() {
        let shared = SwitchableTier::new();
        shared.set("k", Bytes::from_static(b"v"), None).await.unwrap();
        let cache = tiered(&shared, TieredConfig::default());
        assert_eq!(cache.get("k").await.unwrap(), Some(Bytes::from_static(b"v")));
        for _ in 0..2 {
            assert_eq!(cache.lookup("k").await.unwrap(), Some(Bytes::from_static(b"v")), "the fast path");
        }
        assert_eq!(cache.get("absent").await.unwrap(), None);
        assert_eq!(cache.tier_stats().shared, CacheStats::new(1, 1, 0, 0));
        assert_eq!(cache.stats(), CacheStats::new(3, 1, 0, 0));
    }

    #[tokio::test]
    async fn writes_and_deletes_reach_both_tiers() {
        let shared = SwitchableTier::new();
        let cache = tiered(&shared, TieredConfig::default());
        cache.set("k", Bytes::from_static(b"v"), None).await.unwrap();
        assert!(shared.get("k").await.unwrap().is_some());
        assert!(cache.memory().lookup("k").await.is_some());
        assert!(cache.delete("k").await.unwrap());
        assert_eq!(shared.get("k").await.unwrap(), None);
        assert_eq!(cache.memory().lookup("k").await, None);
    }

    #[tokio::test]
    async fn serve_from_memory_hides_l2_failures_but_counts_them() {
        let shared = SwitchableTier::new();
        let cache = tiered(&shared, TieredConfig::default());
        cache.set("cached", Bytes::from_static(b"v"), None).await.unwrap();
        shared.down.store(true, Ordering::SeqCst);
        assert_eq!(cache.get("cached").await.unwrap(), Some(Bytes::from_static(b"v")));
        assert_eq!(cache.get("uncached").await.unwrap(), None);
        cache.set("written", Bytes::from_static(b"w"), None).await.unwrap();
        assert_eq!(cache.get("written").await.unwrap(), Some(Bytes::from_static(b"w")));
        assert!(cache.delete("cached").await.unwrap());
        assert_eq!(cache.stats().errors, 3, "failed get, set and delete on L2");
    }

    #[tokio::test]
    async fn fail_policy_returns_typed_errors_and_drops_unsure_writes_from_memory() {
        let shared = SwitchableTier::new();
        let cache = tiered(&shared, TieredConfig::default().on_l2_error(L2FailurePolicy::Fail));
        cache.set("k", Bytes::from_static(b"old"), None).await.unwrap();
        shared.down.store(true, Ordering::SeqCst);
        assert_eq!(cache.get("k").await.unwrap(), Some(Bytes::from_static(b"old")), "memory hits need no L2");
        let err = cache.get("other").await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let err = cache.set("k", Bytes::from_static(b"new"), None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(cache.memory().lookup("k").await, None);
        assert_eq!(cache.stats().errors, 2);
    }

    #[tokio::test]
    async fn memory_max_ttl_bounds_how_long_memory_serves_a_value() {
        let shared = SwitchableTier::new();
        let cache = tiered(&shared, TieredConfig::default().memory_max_ttl(Duration::from_millis(200)));
        cache.set("k", Bytes::from_static(b"v1"), Some(Duration::from_secs(60))).await.unwrap();
        shared.set("k", Bytes::from_static(b"v2"), None).await.unwrap(); // another process writes
        assert_eq!(cache.get("k").await.unwrap(), Some(Bytes::from_static(b"v1")));
        tokio::time::sleep(Duration::from_millis(450)).await;
        cache.memory().run_pending_tasks().await;
        assert_eq!(cache.get("k").await.unwrap(), Some(Bytes::from_static(b"v2")));
    }

    #[tokio::test]
    async fn batches_read_only_the_memory_misses_from_l2() {
        let shared = SwitchableTier::new();
        let cache = tiered(&shared, TieredConfig::default());
        cache.set_many(&[("a", Bytes::from_static(b"1"))], None).await.unwrap();
        shared.set("b", Bytes::from_static(b"2"), None).await.unwrap();
        let values = cache.get_many(&["a", "b", "c"]).await.unwrap();
        assert_eq!(values, vec![Some(Bytes::from_static(b"1")), Some(Bytes::from_static(b"2")), None]);
        assert_eq!(cache.tier_stats().shared, CacheStats::new(1, 1, 0, 0), "only b and c went to L2");
        assert!(cache.memory().lookup("b").await.is_some());
    }
}
