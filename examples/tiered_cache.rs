//! A tiered cache: `moka` in memory in front of a real Redis, with typed values and
//! single-flight loading.
//!
//! Needs `redis-server` on `PATH` (Debian: `apt-get install -y redis-server`): the
//! example starts its own server on a free loopback port, with no persistence, in a
//! temporary directory, and stops it at the end. Without `redis-server` it fails
//! with a message that says so.
//!
//! What it shows:
//! 1. two "processes" (two tiered caches on one Redis): eight concurrent callers in
//!    the first ask for one release's digest and the registry is asked once; the
//!    second process finds the value in Redis, then in its own memory;
//! 2. Redis dies: the first process keeps serving what it holds in memory (the
//!    `ServeFromMemory` policy); a key it never held is a miss, and the failed
//!    Redis call is counted as an error of the shared tier, for monitoring.
//!
//! Run with `cargo run -p deploy-examples --example tiered_cache`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deploy_cache::{
    L2FailurePolicy, MokaCache, MokaConfig, RedisCache, RedisConfig, TieredCache, TieredConfig, TypedCache,
};
use deploy_core::cache::Cache;
use deploy_examples::Error;
use serde::{Deserialize, Serialize};

/// A `redis-server` child process on a loopback port, killed (and its directory
/// removed) on drop.
struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    fn start() -> Result<Self, Error> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("deploy-rs-example-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "this example needs redis-server on PATH ({e}); on Debian or Ubuntu: \
                     apt-get install -y redis-server"
                )
            })?;
        Ok(Self { child, port, dir })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the example caches: a release's image digest, as a registry would answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ImageInfo {
    digest: String,
    size_bytes: u64,
}

/// Connects to Redis, retrying while the fresh server starts up.
async fn connect(url: &str) -> Result<RedisCache, Error> {
    let config = RedisConfig::single(url)
        .key_prefix("deploy-rs-example:")
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500));
    let mut last = None;
    for _ in 0..50 {
        match RedisCache::connect(config.clone()).await {
            Ok(cache) => return Ok(cache),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "redis-server at {url} did not accept connections: {}",
        last.map_or_else(String::new, |e| e.to_string())
    )
    .into())
}

fn tiered(redis: RedisCache) -> Arc<TieredCache> {
    let memory = MokaCache::new(MokaConfig::default().default_ttl(Duration::from_secs(30)));
    let config =
        TieredConfig::default().memory_max_ttl(Duration::from_secs(10)).on_l2_error(L2FailurePolicy::ServeFromMemory);
    Arc::new(TieredCache::new(memory, Arc::new(redis), config))
}

async fn run() -> Result<(), Error> {
    let mut server = RedisServer::start()?;
    let process_a = tiered(connect(&server.url()).await?);
    let process_b = tiered(connect(&server.url()).await?);
    let images_a: TypedCache<ImageInfo> = TypedCache::new(process_a.clone());
    let images_b: TypedCache<ImageInfo> = TypedCache::new(process_b.clone());

    // 1. Eight concurrent callers, one registry look-up.
    let registry_calls = Arc::new(AtomicUsize::new(0));
    let key = "shop/checkout:2.0.0";
    let callers = (0..8).map(|_| {
        let images = images_a.clone();
        let registry_calls = registry_calls.clone();
        async move {
            images
                .get_or_insert_with(key, Some(Duration::from_secs(600)), || async move {
                    registry_calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await; // the registry is slow
                    Ok::<_, std::io::Error>(ImageInfo {
                        digest: format!("sha256:{}", "ab".repeat(32)),
                        size_bytes: 4 << 20,
                    })
                })
                .await
        }
    });
    let answers = futures::future::try_join_all(callers).await?;
    println!(
        "8 callers in process A got {} answers; the registry was asked {} time(s)",
        answers.len(),
        registry_calls.load(Ordering::SeqCst)
    );

    let from_b = images_b.get(key).await?;
    let again_b = images_b.get(key).await?;
    println!("process B read it from Redis: {from_b:?}");
    println!("process B, second read (its memory): {}", if again_b.is_some() { "hit" } else { "miss" });
    let b = process_b.tier_stats();
    println!("process B tiers: memory {:?}, shared {:?}", b.memory, b.shared);

    // 2. Redis dies.
    server.stop();
    let still = images_a.get(key).await?;
    println!("\nredis-server stopped; process A still serves {key} from memory: {}", still.is_some());
    let unknown = process_a.get("shop/checkout:9.9.9").await;
    match &unknown {
        Ok(value) => println!("a key process A never held: {value:?}"),
        Err(e) => println!("a key process A never held: error ({e})"),
    }
    let a = process_a.tier_stats();
    println!("process A tiers: memory {:?}, shared {:?}", a.memory, a.shared);

    let expected = registry_calls.load(Ordering::SeqCst) == 1
        && answers.iter().all(|info| *info == answers[0])
        && from_b.as_ref() == Some(&answers[0])
        && again_b.is_some()
        && b.memory.hits >= 1
        && b.shared.hits >= 1
        && still.is_some()
        && matches!(unknown, Ok(None))
        && a.shared.errors >= 1;
    if !expected {
        return Err("the tiered cache did not behave as the example expects".into());
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run().await
}
