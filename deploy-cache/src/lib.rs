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
#![cfg_attr(docsrs, feature(doc_cfg))]

mod codec;
#[cfg(feature = "moka")]
mod moka_cache;
#[cfg(feature = "redis")]
mod redis_cache;
mod single_flight;
#[cfg(any(feature = "moka", feature = "redis"))]
mod stats;
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
