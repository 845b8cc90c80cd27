//! `TieredCache` with a real redis-server as its shared tier.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deploy_cache::{L2FailurePolicy, MokaCache, MokaConfig, RedisCache, RedisConfig, TieredCache, TieredConfig};
use deploy_core::cache::{Cache, CacheStats};
use deploy_core::error::Classify;

use crate::support::{RedisServer, redis_cli};

async fn tiered(server: &RedisServer, policy: L2FailurePolicy) -> (TieredCache, RedisCache) {
    let redis = RedisCache::connect(
        RedisConfig::single(server.url())
            .connection_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(500))
            .reconnect_retries(1),
    )
    .await
    .unwrap();
    let cache = TieredCache::new(
        MokaCache::new(MokaConfig::default()),
        Arc::new(redis.clone()),
        TieredConfig::default().on_l2_error(policy),
    );
    (cache, redis)
}

#[tokio::test]
async fn reads_and_writes_go_through_to_redis() {
    let server = RedisServer::start();
    let (cache, redis) = tiered(&server, L2FailurePolicy::ServeFromMemory).await;
    cache.set("written", Bytes::from_static(b"w"), Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(redis_cli(&["-p", &server.port().to_string(), "GET", "written"]).trim(), "w");

    redis.set("elsewhere", Bytes::from_static(b"e"), None).await.unwrap();
    assert_eq!(cache.get("elsewhere").await.unwrap(), Some(Bytes::from_static(b"e")));
    assert_eq!(cache.get("elsewhere").await.unwrap(), Some(Bytes::from_static(b"e")));
    assert_eq!(cache.tier_stats().shared.hits, 1, "the second read is served from memory");

    assert!(cache.delete("written").await.unwrap());
    assert_eq!(redis_cli(&["-p", &server.port().to_string(), "EXISTS", "written"]).trim(), "0");
    assert_eq!(cache.memory().lookup("written").await, None);
}

#[tokio::test]
async fn redis_killed_mid_test_memory_keeps_serving_and_errors_are_counted() {
    let mut server = RedisServer::start();
    let (cache, _redis) = tiered(&server, L2FailurePolicy::ServeFromMemory).await;
    cache.set("hot", Bytes::from_static(b"h"), None).await.unwrap();

    server.kill();
    for _ in 0..10 {
        assert_eq!(cache.get("hot").await.unwrap(), Some(Bytes::from_static(b"h")));
    }
    assert_eq!(cache.get("cold").await.unwrap(), None, "an L2 failure reads as a miss");
    cache.set("while-down", Bytes::from_static(b"d"), None).await.unwrap();
    assert_eq!(cache.get("while-down").await.unwrap(), Some(Bytes::from_static(b"d")));
    let stats = cache.stats();
    assert_eq!(stats.errors, 2, "one failed L2 read, one failed L2 write: {stats:?}");
    assert_eq!((stats.hits, stats.misses), (11, 1));

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.set("after", Bytes::from_static(b"a"), None).await.is_ok()
        && redis_cli(&["-p", &server.port().to_string(), "EXISTS", "after"]).trim() != "1"
    {
        assert!(Instant::now() < deadline, "writes did not reach the restarted redis within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(redis_cli(&["-p", &server.port().to_string(), "GET", "after"]).trim(), "a");
}

#[tokio::test]
async fn fail_policy_surfaces_retryable_errors_when_redis_dies() {
    let mut server = RedisServer::start();
    let (cache, _redis) = tiered(&server, L2FailurePolicy::Fail).await;
    cache.set("hot", Bytes::from_static(b"h"), None).await.unwrap();
    server.kill();
    assert_eq!(cache.get("hot").await.unwrap(), Some(Bytes::from_static(b"h")), "memory hits need no redis");
    let err = cache.get("cold").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let err = cache.set("hot", Bytes::from_static(b"new"), None).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(cache.memory().lookup("hot").await, None, "an unsure write leaves no stale value in memory");
    assert_eq!(cache.stats(), CacheStats::new(1, 0, 0, 2));
}
