//! Caches: the [`Cache`] trait.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};

/// Counters of a cache since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Entries removed to make room or because they expired.
    pub evictions: u64,
    /// Operations that failed in the backend.
    pub errors: u64,
}

impl CacheStats {
    /// Counters with these values.
    pub fn new(hits: u64, misses: u64, evictions: u64, errors: u64) -> Self {
        Self { hits, misses, evictions, errors }
    }

    /// `hits / (hits + misses)`, or 0 before any read.
    ///
    /// ```
    /// use deploy_core::cache::CacheStats;
    /// let s = CacheStats::new(3, 1, 0, 0);
    /// assert_eq!(s.hit_ratio(), 0.75);
    /// ```
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 { 0.0 } else { self.hits as f64 / reads as f64 }
    }
}

/// A failure of a cache operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A value could not be encoded or decoded.
    #[error("cannot encode or decode the value of {key}: {source}")]
    Codec {
        /// The key.
        key: String,
        /// The codec's error.
        #[source]
        source: BoxError,
    },
    /// The value is larger than the cache accepts.
    #[error("value of {key} is {size} bytes, above the limit of {limit}")]
    TooLarge {
        /// The key.
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The cache's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(CacheError);

impl Classify for CacheError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Codec { .. } | Self::TooLarge { .. } => ErrorKind::InvalidInput,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// A byte cache with time-to-live: moka in memory, Redis, both in tiers.
///
/// A miss is `Ok(None)`, never an error; an error means the cache could not answer.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value of `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;

    /// Stores `value` under `key` for `ttl`, or the cache's default lifetime when
    /// `None`. Replaces any previous value.
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError>;

    /// Removes `key`; returns whether it was present (backends that cannot tell
    /// answer `true`).
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;

    /// The values of several keys, in order. Backends that can batch override this.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>, CacheError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }

    /// Stores several values with one `ttl`. Backends that can batch override this.
    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<(), CacheError> {
        for (key, value) in entries {
            self.set(key, value.clone(), ttl).await?;
        }
        Ok(())
    }

    /// The cache's counters.
    fn stats(&self) -> CacheStats;
}
