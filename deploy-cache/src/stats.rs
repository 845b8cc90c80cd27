//! Lock-free counters behind every cache's [`CacheStats`].

use std::sync::atomic::{AtomicU64, Ordering};

use deploy_core::cache::CacheStats;

/// Counters shared by the caches of this crate; cheap enough for the hot path
/// (one relaxed atomic add per event).
#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    errors: AtomicU64,
}

impl StatsCounters {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one read that found (`true`) or did not find (`false`) a value.
    pub(crate) fn read(&self, found: bool) {
        if found { self.hit() } else { self.miss() }
    }

    #[cfg_attr(not(feature = "moka"), expect(dead_code, reason = "only moka reports evictions"))]
    pub(crate) fn eviction(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats::new(
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
            self.evictions.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reports_each_counter_separately() {
        let counters = StatsCounters::default();
        counters.read(true);
        counters.read(true);
        counters.read(false);
        counters.eviction();
        counters.error();
        counters.error();
        assert_eq!(counters.snapshot(), CacheStats::new(2, 1, 1, 2));
    }
}
