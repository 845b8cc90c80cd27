//! [`MokaCache`]: an in-process cache on `moka`, bounded by entries or bytes, with
//! a default time-to-live, per-entry time-to-live and time-to-idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use deploy_core::cache::{Cache, CacheError, CacheStats};
use moka::Expiry;
use moka::notification::RemovalCause;

use crate::stats::StatsCounters;

/// How the size bound of a [`MokaCache`] is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capacity {
    /// At most this many entries.
    Entries(u64),
    /// At most this many bytes of keys plus values (each entry weighs
    /// `key.len() + value.len()`, capped at `u32::MAX`).
    Bytes(u64),
}

impl Default for Capacity {
    fn default() -> Self {
        Self::Entries(10_000)
    }
}

/// Configuration of a [`MokaCache`].
///
/// ```
/// use std::time::Duration;
/// use deploy_cache::{Capacity, MokaConfig};
///
/// let config = MokaConfig::default()
///     .capacity(Capacity::Bytes(64 * 1024 * 1024))
///     .default_ttl(Duration::from_secs(300))
///     .time_to_idle(Duration::from_secs(60));
/// assert_eq!(config.capacity, Capacity::Bytes(64 * 1024 * 1024));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MokaConfig {
    /// The size bound; entries beyond it are evicted (and counted as evictions).
    /// Default: 10 000 entries.
    pub capacity: Capacity,
    /// Lifetime of entries stored without a TTL of their own; `None` keeps them
    /// until they are evicted or removed. A per-entry TTL replaces it (it may be
    /// longer or shorter).
    pub default_ttl: Option<Duration>,
    /// Entries not read or written for this long expire, whatever their TTL says.
    pub time_to_idle: Option<Duration>,
    /// Values larger than this are refused with [`CacheError::TooLarge`] instead
    /// of being stored and evicted at once. `None`: no limit.
    pub max_value_size: Option<usize>,
}

impl MokaConfig {
    /// Sets [`MokaConfig::capacity`].
    #[must_use]
    pub fn capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`MokaConfig::default_ttl`].
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Sets [`MokaConfig::time_to_idle`].
    #[must_use]
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.time_to_idle = Some(idle);
        self
    }

    /// Sets [`MokaConfig::max_value_size`].
    #[must_use]
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = Some(bytes);
        self
    }
}

/// A stored value with the TTL it was stored with.
#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    ttl: Option<Duration>,
}

/// Per-entry expiry: the entry's own TTL, else the cache's default.
struct EntryExpiry {
    default_ttl: Option<Duration>,
}

impl Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _created_at: Instant) -> Option<Duration> {
        entry.ttl.or(self.default_ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        // A replaced value starts a new lifetime, as `SET key value PX ttl` does in Redis.
        entry.ttl.or(self.default_ttl)
    }
}

/// An in-process byte cache on `moka::future::Cache`.
///
/// Cloning is cheap and shares the entries and the counters. Besides the [`Cache`]
/// trait (for `Arc<dyn Cache>`), it has inherent methods without the trait's boxed
/// futures and `Result`s, for hot paths: [`MokaCache::lookup`], [`MokaCache::insert`],
/// [`MokaCache::remove`].
///
/// Evictions (for size, or on expiry) are counted by moka's eviction listener; moka
/// runs it during its housekeeping, so the count can lag until
/// [`MokaCache::run_pending_tasks`] has run.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), deploy_core::cache::CacheError> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bytes::Bytes;
/// use deploy_cache::{MokaCache, MokaConfig};
/// use deploy_core::cache::Cache;
///
/// let cache: Arc<dyn Cache> = Arc::new(MokaCache::new(MokaConfig::default()));
/// cache.set("release:checkout", Bytes::from_static(b"1.4.2"), Some(Duration::from_secs(60))).await?;
/// assert_eq!(cache.get("release:checkout").await?, Some(Bytes::from_static(b"1.4.2")));
/// assert_eq!(cache.stats().hits, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MokaCache {
    entries: moka::future::Cache<String, Entry>,
    stats: Arc<StatsCounters>,
    max_value_size: Option<usize>,
}

impl std::fmt::Debug for MokaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaCache")
            .field("entry_count", &self.entries.entry_count())
            .field("weighted_size", &self.entries.weighted_size())
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

impl MokaCache {
    /// An empty cache with this configuration.
    pub fn new(config: MokaConfig) -> Self {
        let stats = Arc::new(StatsCounters::default());
        let listener_stats = Arc::clone(&stats);
        let mut builder = moka::future::Cache::builder()
            .expire_after(EntryExpiry { default_ttl: config.default_ttl })
            .eviction_listener(move |_key, _entry, cause: RemovalCause| {
                if cause.was_evicted() {
                    listener_stats.eviction();
                }
            });
        builder = match config.capacity {
            Capacity::Entries(entries) => builder.max_capacity(entries),
            Capacity::Bytes(bytes) => builder.max_capacity(bytes).weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len().saturating_add(entry.value.len())).unwrap_or(u32::MAX)
            }),
        };
        if let Some(idle) = config.time_to_idle {
            builder = builder.time_to_idle(idle);
        }
        Self { entries: builder.build(), stats, max_value_size: config.max_value_size }
    }

    /// The value of `key`, if present and not expired; counts a hit or a miss.
    pub async fn lookup(&self, key: &str) -> Option<Bytes> {
        let found = self.entries.get(key).await.map(|entry| entry.value);
        self.stats.read(found.is_some());
        found
    }

    /// Stores `value` under `key` for `ttl` (or the default TTL when `None`),
    /// replacing any previous value and its lifetime.
    ///
    /// Fails only with [`CacheError::TooLarge`] when the value exceeds
    /// [`MokaConfig::max_value_size`].
    pub async fn insert(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
        if let Some(limit) = self.max_value_size
            && value.len() > limit
        {
            return Err(CacheError::TooLarge { key: key.to_owned(), size: value.len(), limit });
        }
        self.entries.insert(key.to_owned(), Entry { value, ttl }).await;
        Ok(())
    }

    /// Removes `key`; returns whether a live value was there. Not counted as an eviction.
    pub async fn remove(&self, key: &str) -> bool {
        self.entries.remove(key).await.is_some()
    }

    /// Removes every entry (lazily: they stop being visible at once).
    pub fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Runs moka's pending housekeeping now: expired and over-capacity entries are
    /// removed and the eviction listener runs, so counts and sizes are current.
    pub async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
    }

    /// Approximate number of entries (exact after [`MokaCache::run_pending_tasks`]).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Approximate total weight: entries, or bytes with [`Capacity::Bytes`].
    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// The counters (same as [`Cache::stats`], without the trait).
    pub fn counters(&self) -> CacheStats {
        self.stats.snapshot()
    }
}

#[async_trait]
impl Cache for MokaCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(self.lookup(key).await)
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
        self.insert(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.remove(key).await)
    }

    fn stats(&self) -> CacheStats {
        self.stats.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_core::error::Classify;

    // Long enough that a loaded CI machine still reads the value before it expires.
    const SHORT: Duration = Duration::from_millis(150);

    async fn wait_past(ttl: Duration, cache: &MokaCache) {
        tokio::time::sleep(ttl * 2).await;
        cache.run_pending_tasks().await;
    }

    #[tokio::test]
    async fn get_after_set_returns_the_value_and_counts_hits_and_misses() {
        let cache = MokaCache::new(MokaConfig::default());
        assert_eq!(cache.lookup("a").await, None);
        cache.insert("a", Bytes::from_static(b"1"), None).await.unwrap();
        assert_eq!(cache.lookup("a").await, Some(Bytes::from_static(b"1")));
        assert_eq!(cache.counters(), CacheStats::new(1, 1, 0, 0));
    }

    #[tokio::test]
    async fn trait_object_behaves_like_the_inherent_methods() {
        let cache: Arc<dyn Cache> = Arc::new(MokaCache::new(MokaConfig::default()));
        cache.set("k", Bytes::from_static(b"v"), None).await.unwrap();
        assert_eq!(cache.get_many(&["k", "missing"]).await.unwrap(), vec![Some(Bytes::from_static(b"v")), None]);
        assert!(cache.delete("k").await.unwrap());
        assert!(!cache.delete("k").await.unwrap());
        assert_eq!(cache.get("k").await.unwrap(), None);
        assert_eq!(cache.stats(), CacheStats::new(1, 2, 0, 0));
    }

    #[tokio::test]
    async fn default_ttl_expires_entries_and_counts_them_as_evictions() {
        let cache = MokaCache::new(MokaConfig::default().default_ttl(SHORT));
        cache.insert("a", Bytes::from_static(b"1"), None).await.unwrap();
        assert!(cache.lookup("a").await.is_some());
        wait_past(SHORT, &cache).await;
        assert_eq!(cache.lookup("a").await, None, "reads check the expiry exactly");
        // moka removes expired entries from its timer wheel in ~1 s buckets; the
        // listener (and so the eviction count) follows that removal.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while cache.counters().evictions == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cache.run_pending_tasks().await;
        }
        assert_eq!(cache.counters().evictions, 1);
        assert_eq!(cache.entry_count(), 0);
    }

    #[tokio::test]
    async fn per_entry_ttl_overrides_the_default_both_ways() {
        let cache = MokaCache::new(MokaConfig::default().default_ttl(SHORT));
        cache.insert("long", Bytes::from_static(b"1"), Some(Duration::from_secs(60))).await.unwrap();
        cache.insert("default", Bytes::from_static(b"2"), None).await.unwrap();
        wait_past(SHORT, &cache).await;
        assert!(cache.lookup("long").await.is_some(), "an entry's own TTL outlives the default");
        assert_eq!(cache.lookup("default").await, None);

        let no_default = MokaCache::new(MokaConfig::default());
        no_default.insert("short", Bytes::from_static(b"1"), Some(SHORT)).await.unwrap();
        no_default.insert("forever", Bytes::from_static(b"2"), None).await.unwrap();
        wait_past(SHORT, &no_default).await;
        assert_eq!(no_default.lookup("short").await, None);
        assert!(no_default.lookup("forever").await.is_some());
    }

    #[tokio::test]
    async fn replacing_a_value_starts_a_new_lifetime() {
        let cache = MokaCache::new(MokaConfig::default());
        cache.insert("k", Bytes::from_static(b"old"), Some(SHORT)).await.unwrap();
        cache.insert("k", Bytes::from_static(b"new"), Some(Duration::from_secs(60))).await.unwrap();
        wait_past(SHORT, &cache).await;
        assert_eq!(cache.lookup("k").await, Some(Bytes::from_static(b"new")));
    }

    #[tokio::test]
    async fn time_to_idle_expires_unread_entries_only() {
        let idle = Duration::from_millis(400);
        let cache = MokaCache::new(MokaConfig::default().time_to_idle(idle));
        cache.insert("read", Bytes::from_static(b"1"), None).await.unwrap();
        cache.insert("unread", Bytes::from_static(b"2"), None).await.unwrap();
        for _ in 0..5 {
            tokio::time::sleep(idle / 4).await;
            assert!(cache.lookup("read").await.is_some());
        }
        cache.run_pending_tasks().await;
        assert!(cache.lookup("read").await.is_some(), "reads keep an entry alive");
        assert_eq!(cache.lookup("unread").await, None);
    }

    #[tokio::test]
    async fn entry_capacity_evicts_and_counts_evictions() {
        let cache = MokaCache::new(MokaConfig::default().capacity(Capacity::Entries(10)));
        for i in 0..50 {
            cache.insert(&format!("k{i}"), Bytes::from(vec![0u8; 8]), None).await.unwrap();
            cache.run_pending_tasks().await;
        }
        cache.run_pending_tasks().await;
        assert!(cache.entry_count() <= 10, "entry_count {}", cache.entry_count());
        assert_eq!(cache.counters().evictions, 50 - cache.entry_count());
    }

    #[tokio::test]
    async fn byte_capacity_bounds_the_weighted_size() {
        let cache = MokaCache::new(MokaConfig::default().capacity(Capacity::Bytes(1_000)));
        for i in 0..20 {
            // Key "k00".."k19" (3 bytes) + 97 bytes of value = 100 bytes per entry.
            cache.insert(&format!("k{i:02}"), Bytes::from(vec![7u8; 97]), None).await.unwrap();
            cache.run_pending_tasks().await;
        }
        assert!(cache.weighted_size() <= 1_000, "weighted_size {}", cache.weighted_size());
        assert!(cache.weighted_size() >= 100);
        assert_eq!(cache.weighted_size() % 100, 0);
        assert_eq!(cache.counters().evictions, 20 - cache.entry_count());
    }

    #[tokio::test]
    async fn values_above_the_limit_are_refused_not_stored() {
        let cache = MokaCache::new(MokaConfig::default().max_value_size(4));
        let err = cache.insert("k", Bytes::from_static(b"12345"), None).await.unwrap_err();
        assert!(matches!(err, CacheError::TooLarge { size: 5, limit: 4, .. }), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(cache.lookup("k").await, None);
        cache.insert("k", Bytes::from_static(b"1234"), None).await.unwrap();
        assert!(cache.lookup("k").await.is_some());
    }

    #[tokio::test]
    async fn explicit_removal_is_not_an_eviction() {
        let cache = MokaCache::new(MokaConfig::default());
        cache.insert("k", Bytes::from_static(b"v"), None).await.unwrap();
        assert!(cache.remove("k").await);
        cache.insert("k2", Bytes::from_static(b"v"), None).await.unwrap();
        cache.clear();
        cache.run_pending_tasks().await;
        assert_eq!(cache.lookup("k2").await, None);
        assert_eq!(cache.counters().evictions, 0);
    }
}
