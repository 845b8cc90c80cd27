//! `RedisCache` against one real redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deploy_cache::{RedisCache, RedisConfig, TypedCache};
use deploy_core::cache::{Cache, CacheError, CacheStats};
use deploy_core::error::{Classify, ErrorKind};

use crate::support::{RedisServer, free_port, redis_cli};

fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig::single(server.url())
        .connection_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(500))
        .reconnect_retries(1)
}

async fn connect(server: &RedisServer) -> RedisCache {
    RedisCache::connect(config(server)).await.unwrap()
}

#[tokio::test]
async fn values_round_trip_under_the_key_prefix() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(config(&server).key_prefix("deploy:")).await.unwrap();
    cache.set("release:checkout", Bytes::from_static(b"1.4.2"), None).await.unwrap();
    assert_eq!(cache.get("release:checkout").await.unwrap(), Some(Bytes::from_static(b"1.4.2")));
    let raw = redis_cli(&["-p", &server.port().to_string(), "GET", "deploy:release:checkout"]);
    assert_eq!(raw.trim(), "1.4.2", "the prefix is part of the stored key");
    assert!(cache.delete("release:checkout").await.unwrap());
    assert!(!cache.delete("release:checkout").await.unwrap());
    assert_eq!(cache.get("release:checkout").await.unwrap(), None);
    assert_eq!(cache.stats(), CacheStats::new(1, 1, 0, 0));
}

#[tokio::test]
async fn entries_expire_after_their_ttl_or_the_default() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(config(&server).default_ttl(Duration::from_millis(300))).await.unwrap();
    cache.set("own", Bytes::from_static(b"1"), Some(Duration::from_millis(250))).await.unwrap();
    cache.set("default", Bytes::from_static(b"2"), None).await.unwrap();
    cache.set("long", Bytes::from_static(b"3"), Some(Duration::from_secs(60))).await.unwrap();
    let pttl: i64 = redis_cli(&["-p", &server.port().to_string(), "PTTL", "long"]).trim().parse().unwrap();
    assert!(pttl > 59_000 && pttl <= 60_000, "PTTL {pttl}");
    assert!(cache.get("own").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(cache.get("own").await.unwrap(), None);
    assert_eq!(cache.get("default").await.unwrap(), None);
    assert_eq!(cache.get("long").await.unwrap(), Some(Bytes::from_static(b"3")));
    assert!(cache.server_stats().await.unwrap().expired_keys >= 1);
}

#[tokio::test]
async fn binary_and_large_values_come_back_byte_for_byte() {
    let server = RedisServer::start();
    let cache = connect(&server).await;
    let every_byte: Bytes = (0..=255u8).cycle().take(1024).collect::<Vec<_>>().into();
    let large: Bytes =
        (0..8 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect::<Vec<_>>().into();
    cache.set("binary", every_byte.clone(), None).await.unwrap();
    cache.set("empty", Bytes::new(), None).await.unwrap();
    cache.set("large", large.clone(), None).await.unwrap();
    assert_eq!(cache.get("binary").await.unwrap(), Some(every_byte));
    assert_eq!(cache.get("empty").await.unwrap(), Some(Bytes::new()), "an empty value is not a miss");
    assert_eq!(cache.get("large").await.unwrap(), Some(large));
}

#[tokio::test]
async fn values_above_the_limit_are_refused_before_sending() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(config(&server).max_value_size(1024)).await.unwrap();
    let err = cache.set("big", Bytes::from(vec![0u8; 1025]), None).await.unwrap_err();
    assert!(matches!(err, CacheError::TooLarge { size: 1025, limit: 1024, .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(redis_cli(&["-p", &server.port().to_string(), "EXISTS", "big"]).trim(), "0");
}

#[tokio::test]
async fn batches_are_pipelined_and_keep_their_order() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(config(&server).key_prefix("b:")).await.unwrap();
    let values: Vec<(String, Bytes)> = (0..500).map(|i| (format!("k{i}"), Bytes::from(format!("v{i}")))).collect();
    let entries: Vec<(&str, Bytes)> = values.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    cache.set_many(&entries, Some(Duration::from_secs(60))).await.unwrap();
    let mut keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
    keys.insert(250, "absent");
    let read = cache.get_many(&keys).await.unwrap();
    assert_eq!(read.len(), 501);
    assert_eq!(read[250], None);
    for (i, (_, value)) in values.iter().enumerate() {
        let at = if i < 250 { i } else { i + 1 };
        assert_eq!(read[at].as_ref(), Some(value), "key k{i}");
    }
    assert_eq!(cache.stats(), CacheStats::new(500, 1, 0, 0));
    assert_eq!(cache.get_many(&[]).await.unwrap(), Vec::<Option<Bytes>>::new());
    let pttl: i64 = redis_cli(&["-p", &server.port().to_string(), "PTTL", "b:k499"]).trim().parse().unwrap();
    assert!(pttl > 50_000, "set_many applies the TTL, PTTL {pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_client() {
    let server = RedisServer::start();
    let cache = connect(&server).await;
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for op in 0..50 {
                    let key = format!("t{task}:{op}");
                    let value = Bytes::from(format!("{task}-{op}"));
                    cache.set(&key, value.clone(), None).await.unwrap();
                    assert_eq!(cache.get(&key).await.unwrap(), Some(value));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(cache.stats().hits, 32 * 50);
    assert_eq!(redis_cli(&["-p", &server.port().to_string(), "DBSIZE"]).trim(), "1600");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_single_flight_runs_one_loader_over_redis() {
    let server = RedisServer::start();
    let typed: TypedCache<Vec<String>> = TypedCache::new(Arc::new(connect(&server).await));
    let loads = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let typed = typed.clone();
            let loads = Arc::clone(&loads);
            tokio::spawn(async move {
                typed
                    .get_or_insert_with("tags", Some(Duration::from_secs(60)), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, std::io::Error>(vec!["1.4.2".to_owned(), "1.4.1".to_owned()])
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), ["1.4.2", "1.4.1"]);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let raw = redis_cli(&["-p", &server.port().to_string(), "GET", "tags"]);
    assert_eq!(raw.trim(), r#"["1.4.2","1.4.1"]"#);
}

#[tokio::test]
async fn connecting_to_nothing_is_a_retryable_error() {
    let port = free_port(false);
    let err = RedisCache::connect(
        RedisConfig::single(format!("redis://127.0.0.1:{port}"))
            .connection_timeout(Duration::from_millis(200))
            .reconnect_retries(0),
    )
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, CacheError::Backend { .. }), "{err:?}");
    let bad = RedisCache::connect(RedisConfig::single("not a url")).await.unwrap_err();
    assert!(!bad.is_retryable(), "{bad:?}");
}

#[tokio::test]
async fn a_killed_server_gives_typed_errors_and_a_restarted_one_is_used_again() {
    let mut server = RedisServer::start();
    let cache = connect(&server).await;
    cache.set("before", Bytes::from_static(b"1"), None).await.unwrap();

    server.kill();
    let err = cache.get("before").await.unwrap_err();
    assert!(err.is_retryable(), "a dead server is worth retrying later: {err:?}");
    assert!(matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{err:?}");
    let err = cache.set("during", Bytes::from_static(b"2"), None).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(cache.stats().errors >= 2);

    server.restart();
    // The same client, no reconnect call: the connection manager reconnects.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.set("after", Bytes::from_static(b"3"), None).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_retryable(), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no recovery within 10 s: {e:?}"),
        }
    }
    assert_eq!(cache.get("after").await.unwrap(), Some(Bytes::from_static(b"3")));
    assert_eq!(cache.get("before").await.unwrap(), None, "the restarted server keeps no data");
}
