//! [`TypedCache`]: serde values over any [`Cache`], with single-flight loading.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deploy_core::cache::{Cache, CacheError, CacheStats};
use deploy_core::error::{BoxError, Classify, ErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::instrument;

use crate::codec::{Codec, JsonCodec};
use crate::single_flight::{Role, SharedError, SingleFlight, follow};

/// A failure of [`TypedCache::get_or_insert_with`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The cache could not be read, or the cached bytes could not be decoded.
    #[error("cache failed while loading {key}: {source}")]
    Cache {
        /// The key.
        key: String,
        /// The cache's error.
        #[source]
        source: CacheError,
    },
    /// The loader failed. Every caller that waited for this loader gets the same error.
    #[error("loader for {key} failed: {source}")]
    Loader {
        /// The key.
        key: String,
        /// The loader's error, shared by the waiting callers.
        #[source]
        source: SharedError,
    },
}

impl Classify for LoadError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Cache { source, .. } => source.kind(),
            Self::Loader { .. } => ErrorKind::Other,
        }
    }
}

/// Values of type `V` over any [`Cache`], encoded by a [`Codec`] (JSON by default).
///
/// [`TypedCache::get_or_insert_with`] runs one loader per key at a time, whatever
/// the number of callers: the others wait for it and share its value or its error.
/// The guarantee holds within this `TypedCache` and its clones (one process); it
/// does not coordinate processes that share a Redis.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use deploy_cache::{MokaCache, MokaConfig, TypedCache};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Digest { image: String, sha256: String }
///
/// let digests: TypedCache<Digest> = TypedCache::new(Arc::new(MokaCache::new(MokaConfig::default())));
/// let digest = digests
///     .get_or_insert_with("shop/checkout:1.4.2", Some(Duration::from_secs(600)), || async {
///         // Ask the registry, once, however many rollouts want it now.
///         Ok::<_, std::io::Error>(Digest { image: "shop/checkout:1.4.2".into(), sha256: "ab12".into() })
///     })
///     .await?;
/// assert_eq!(digests.get("shop/checkout:1.4.2").await?, Some(digest));
/// # Ok(())
/// # }
/// ```
pub struct TypedCache<V, C = JsonCodec> {
    cache: Arc<dyn Cache>,
    codec: Arc<C>,
    flights: Arc<SingleFlight<Result<Bytes, Failure>>>,
    value: PhantomData<fn() -> V>,
}

impl<V, C> Clone for TypedCache<V, C> {
    fn clone(&self) -> Self {
        Self {
            cache: Arc::clone(&self.cache),
            codec: Arc::clone(&self.codec),
            flights: Arc::clone(&self.flights),
            value: PhantomData,
        }
    }
}

impl<V, C> std::fmt::Debug for TypedCache<V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedCache")
            .field("value", &std::any::type_name::<V>())
            .field("codec", &std::any::type_name::<C>())
            .field("stats", &self.cache.stats())
            .finish()
    }
}

impl<V> TypedCache<V, JsonCodec>
where
    V: Serialize + DeserializeOwned + Send + Sync,
{
    /// JSON values over `cache`.
    pub fn new(cache: Arc<dyn Cache>) -> Self {
        Self::with_codec(cache, JsonCodec)
    }
}

impl<V, C> TypedCache<V, C>
where
    V: Serialize + DeserializeOwned + Send + Sync,
    C: Codec,
{
    /// Values encoded by `codec` over `cache`.
    pub fn with_codec(cache: Arc<dyn Cache>, codec: C) -> Self {
        Self { cache, codec: Arc::new(codec), flights: Arc::default(), value: PhantomData }
    }

    /// The byte cache underneath.
    pub fn inner(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// The counters of the cache underneath.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The value of `key`; [`CacheError::Codec`] when the stored bytes are not a `V`.
    pub async fn get(&self, key: &str) -> Result<Option<V>, CacheError> {
        match self.cache.get(key).await? {
            Some(bytes) => self.decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` for `ttl` (the cache's default when `None`).
    pub async fn set(&self, key: &str, value: &V, ttl: Option<Duration>) -> Result<(), CacheError> {
        let bytes = self.codec.encode(value).map_err(|source| CacheError::Codec { key: key.to_owned(), source })?;
        self.cache.set(key, bytes, ttl).await
    }

    /// Removes `key`; returns whether it was present.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        self.cache.delete(key).await
    }

    /// The value of `key`; on a miss, runs `loader`, stores its value for `ttl` and
    /// returns it.
    ///
    /// However many callers ask for a missing key at once, one runs its loader; the
    /// others wait and get the same value, or the same [`LoadError::Loader`]. A
    /// failed load is not cached: the next call runs a loader again. If the leader
    /// is cancelled (its future dropped), a waiting caller takes over. Storing the
    /// loaded value is best effort: when the cache refuses it, the callers still get
    /// the value, the cache counts the error and a warning is traced.
    #[instrument(skip_all, fields(cache.key = key), err)]
    pub async fn get_or_insert_with<F, Fut, E>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<V, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Into<BoxError>,
    {
        let cache_error = |source| LoadError::Cache { key: key.to_owned(), source };
        let leader = loop {
            if let Some(value) = self.get(key).await.map_err(cache_error)? {
                return Ok(value);
            }
            match self.flights.join(key) {
                Role::Leader(leader) => break leader,
                Role::Follower(slot) => match follow(slot).await {
                    Some(Ok(bytes)) => return self.decode(key, &bytes).map_err(cache_error),
                    Some(Err(Failure::Loader(source))) => {
                        return Err(LoadError::Loader { key: key.to_owned(), source });
                    }
                    Some(Err(Failure::Encode(source))) => {
                        return Err(cache_error(CacheError::Codec { key: key.to_owned(), source: Box::new(source) }));
                    }
                    // The leader was cancelled: start over, perhaps as the leader.
                    None => continue,
                },
            }
        };
        // A flight that ended between our read and our join may have stored the value.
        if let Some(bytes) = self.cache.get(key).await.map_err(cache_error)? {
            let value = self.decode(key, &bytes).map_err(cache_error)?;
            leader.finish(Ok(bytes));
            return Ok(value);
        }
        let value = match loader().await {
            Ok(value) => value,
            Err(error) => {
                let source: SharedError = Arc::from(error.into());
                leader.finish(Err(Failure::Loader(Arc::clone(&source))));
                return Err(LoadError::Loader { key: key.to_owned(), source });
            }
        };
        let bytes = match self.codec.encode(&value) {
            Ok(bytes) => bytes,
            Err(source) => {
                let source: SharedError = Arc::from(source);
                leader.finish(Err(Failure::Encode(Arc::clone(&source))));
                return Err(cache_error(CacheError::Codec { key: key.to_owned(), source: Box::new(source) }));
            }
        };
        if let Err(error) = self.cache.set(key, bytes.clone(), ttl).await {
            tracing::warn!(cache.key = key, error = %error, "loaded value could not be cached");
        }
        leader.finish(Ok(bytes));
        Ok(value)
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<V, CacheError> {
        self.codec.decode(bytes).map_err(|source| CacheError::Codec { key: key.to_owned(), source })
    }
}

/// Why a flight ended without a value; cloned to every follower.
#[derive(Debug, Clone)]
enum Failure {
    Loader(SharedError),
    Encode(SharedError),
}

#[cfg(all(test, feature = "moka"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{MokaCache, MokaConfig};

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Release {
        app: String,
        version: u32,
    }

    fn releases() -> TypedCache<Release> {
        TypedCache::new(Arc::new(MokaCache::new(MokaConfig::default())))
    }

    #[tokio::test]
    async fn values_round_trip_as_json() {
        let cache = releases();
        let release = Release { app: "checkout".into(), version: 7 };
        cache.set("r", &release, None).await.unwrap();
        assert_eq!(cache.get("r").await.unwrap(), Some(release));
        assert_eq!(
            cache.inner().get("r").await.unwrap().unwrap(),
            bytes::Bytes::from_static(br#"{"app":"checkout","version":7}"#)
        );
    }

    #[tokio::test]
    async fn bytes_of_another_type_are_a_codec_error_naming_the_key() {
        let cache = releases();
        cache.inner().set("r", bytes::Bytes::from_static(b"[1,2]"), None).await.unwrap();
        let err = cache.get("r").await.unwrap_err();
        assert!(matches!(&err, CacheError::Codec { key, .. } if key == "r"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_run_one_loader() {
        let cache = releases();
        let loads = Arc::new(AtomicUsize::new(0));
        let (release_gate, gate) = tokio::sync::watch::channel(false);
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let cache = cache.clone();
                let loads = Arc::clone(&loads);
                let mut gate = gate.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with("r", None, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            // Hold the flight open until every caller has arrived.
                            gate.wait_for(|open| *open).await.map_err(|e| e.to_string())?;
                            Ok::<_, String>(Release { app: "checkout".into(), version: 1 })
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release_gate.send_replace(true);
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap().version, 1);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.flights.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_load_reaches_every_waiter_and_is_not_cached() {
        let cache = releases();
        let loads = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                let loads = Arc::clone(&loads);
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with("r", None, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Err::<Release, _>("registry unreachable")
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            let err = caller.await.unwrap().unwrap_err();
            assert!(err.to_string().contains("registry unreachable"), "{err}");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get("r").await.unwrap(), None);
        let value = cache
            .get_or_insert_with("r", None, || async { Ok::<_, String>(Release { app: "a".into(), version: 2 }) })
            .await
            .unwrap();
        assert_eq!(value.version, 2);
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let cache = releases();
        let stuck = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("r", None, || async {
                        std::future::pending::<()>().await;
                        Ok::<_, String>(Release { app: "never".into(), version: 0 })
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("r", None, || async {
                        Ok::<_, String>(Release { app: "second".into(), version: 3 })
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        stuck.abort();
        let value = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(value.app, "second");
    }

    #[tokio::test]
    async fn a_custom_codec_is_used_both_ways() {
        #[derive(Debug)]
        struct Reversed;
        impl Codec for Reversed {
            fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<bytes::Bytes, BoxError> {
                let mut json = serde_json::to_vec(value)?;
                json.reverse();
                Ok(json.into())
            }
            fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
                let mut json = bytes.to_vec();
                json.reverse();
                Ok(serde_json::from_slice(&json)?)
            }
        }
        let cache: TypedCache<u32, Reversed> =
            TypedCache::with_codec(Arc::new(MokaCache::new(MokaConfig::default())), Reversed);
        cache.set("n", &123, None).await.unwrap();
        assert_eq!(cache.inner().get("n").await.unwrap().unwrap(), bytes::Bytes::from_static(b"321"));
        assert_eq!(cache.get("n").await.unwrap(), Some(123));
    }
}
