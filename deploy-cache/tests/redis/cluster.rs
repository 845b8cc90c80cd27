//! `RedisCache` against a real three-node Redis Cluster.

use std::time::Duration;

use bytes::Bytes;
use deploy_cache::{RedisCache, RedisConfig};
use deploy_core::cache::{Cache, CacheStats};

use crate::support::{RedisCluster, redis_cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_spreads_keys_over_nodes_and_batches_across_slots() {
    let cluster = RedisCluster::start();
    let cache = RedisCache::connect(RedisConfig::cluster(cluster.urls()).key_prefix("c:")).await.unwrap();

    let values: Vec<(String, Bytes)> =
        (0..300).map(|i| (format!("key-{i}"), Bytes::from(format!("value-{i}")))).collect();
    let entries: Vec<(&str, Bytes)> = values.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    cache.set_many(&entries, Some(Duration::from_secs(60))).await.unwrap();

    let keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).chain(["absent"]).collect();
    let read = cache.get_many(&keys).await.unwrap();
    for (i, (_, value)) in values.iter().enumerate() {
        assert_eq!(read[i].as_ref(), Some(value), "key-{i}");
    }
    assert_eq!(read[300], None);

    let per_node: Vec<u64> = cluster
        .ports()
        .iter()
        .map(|port| redis_cli(&["-p", &port.to_string(), "DBSIZE"]).trim().parse().unwrap())
        .collect();
    assert_eq!(per_node.iter().sum::<u64>(), 300, "{per_node:?}");
    assert!(per_node.iter().all(|&n| n > 0), "every primary holds keys: {per_node:?}");

    cache.set("single", Bytes::from_static(b"s"), Some(Duration::from_millis(300))).await.unwrap();
    assert_eq!(cache.get("single").await.unwrap(), Some(Bytes::from_static(b"s")));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(cache.get("single").await.unwrap(), None, "TTL applies on the cluster");
    assert!(cache.delete("key-7").await.unwrap());
    assert_eq!(cache.get("key-7").await.unwrap(), None);

    let server = cache.server_stats().await.unwrap();
    assert!(server.keyspace_hits >= 301, "summed over the primaries: {server:?}");
    assert_eq!(cache.stats(), CacheStats::new(301, 3, 0, 0));
}
