//! Caches for deploy-rs: [`MokaCache`] in memory, `RedisCache` (feature `redis`) on one Redis node or
//! a Redis Cluster, [`TieredCache`] with memory in front of a shared cache, and
//! [`TypedCache`] for serde values with single-flight loading.
//!
//! Every cache implements [`deploy_core::cache::Cache`] and is used as
//! `Arc<dyn Cache>`; every one counts hits, misses, evictions and errors
//! ([`deploy_core::cache::CacheStats`]).
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `moka` | yes | [`MokaCache`], [`TieredCache`] |
//! | `redis` | no | `RedisCache` (single node with reconnection, or cluster) |
//!
//! [`TypedCache`] and the [`Codec`] trait are always there.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use deploy_cache::{MokaCache, MokaConfig, TypedCache};
//! use deploy_core::cache::Cache;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let memory = Arc::new(MokaCache::new(MokaConfig::default().default_ttl(Duration::from_secs(60))));
//! let digests: TypedCache<String> = TypedCache::new(memory.clone());
//! let registry_calls = AtomicUsize::new(0);
//! for _ in 0..3 {
//!     let digest = digests
//!         .get_or_insert_with("shop/checkout:1.4.2", None, || async {
//!             registry_calls.fetch_add(1, Ordering::SeqCst); // ask the registry
//!             Ok::<_, std::io::Error>("sha256:ab12".to_owned())
//!         })
//!         .await?;
//!     assert_eq!(digest, "sha256:ab12");
//! }
//! // The loader ran once; the two later calls were cache hits.
//! assert_eq!(registry_calls.load(Ordering::SeqCst), 1);
//! assert_eq!(memory.stats().hits, 2);
//! # Ok(()) }
//! ```
//!
//! With the `redis` feature, put the memory cache in front of Redis:
//! `TieredCache::new(memory, Arc::new(RedisCache::connect(config).await?), TieredConfig::default())`
//! (see the README and the `tiered_cache` example).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod codec;
#[cfg(feature = "moka")]
mod moka_cache;
#[cfg(feature = "redis")]
mod redis_cache;
mod single_flight;
#[cfg(any(feature = "moka", feature = "redis"))]
mod stats;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod store;
#[cfg(feature = "moka")]
mod tiered;
mod typed;

pub use codec::{Codec, JsonCodec};
#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub use moka_cache::{Capacity, MokaCache, MokaConfig};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_cache::{RedisCache, RedisConfig, RedisServerStats, RedisTopology};
pub use single_flight::SharedError;
#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub use tiered::{L2FailurePolicy, TierStats, TieredCache, TieredConfig};
pub use typed::{LoadError, TypedCache};

// The libraries this crate's API is made of, re-exported so that users need not pin
// their own copies.
pub use deploy_core;
#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub use moka;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;
