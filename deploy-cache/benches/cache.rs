//! Criterion benchmarks, each against a baseline measured in the same run:
//!
//! - `moka_get_hit`: `MokaCache` through `Arc<dyn Cache>` (and its inherent
//!   `lookup`) against raw `moka::future::Cache` with the same capacity. Goal: the
//!   trait object costs at most 10 % more.
//! - `tiered_get_hit`: a `TieredCache` memory hit through `Arc<dyn Cache>` against
//!   raw moka (and its inherent `lookup`). Goal: at most 1.2×.
//! - `redis_pipelined`: `set_many` / `get_many` of 16 keys from 50 concurrent tasks
//!   on one `RedisCache`, against `redis-benchmark -c 50 -P 16 -d 256` on the same
//!   server. Goal: at least 0.8× its requests per second. The summary at the end
//!   prints both figures and their ratio.
#![expect(clippy::unwrap_used, reason = "a benchmark with a broken setup must stop at once")]
#![expect(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use deploy_cache::{MokaCache, MokaConfig, RedisCache, RedisConfig, TieredCache, TieredConfig};
use deploy_core::cache::Cache;

const KEYS: usize = 1_000;
const PAYLOAD: usize = 256;
const CLIENTS: usize = 50;
const PIPELINE: usize = 16;
const REQUESTS: usize = 100_000;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("key:{i:06}")).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The next key of a rotation, so that every read is a hit on a different entry.
fn next<'a>(keys: &'a [String], cursor: &AtomicUsize) -> &'a str {
    &keys[cursor.fetch_add(1, Ordering::Relaxed) % keys.len()]
}

/// redis-server on a free loopback port, killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server is missing ({e}): install it with `apt-get install -y redis-server redis-tools`")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moka_get_hit(c: &mut Criterion) {
    let rt = runtime();
    let keys = keys();
    let value = Bytes::from(vec![7u8; PAYLOAD]);
    let raw: moka::future::Cache<String, Bytes> = moka::future::Cache::new(10_000);
    let ours = Arc::new(MokaCache::new(MokaConfig::default()));
    let dyn_cache: Arc<dyn Cache> = ours.clone();
    rt.block_on(async {
        for key in &keys {
            raw.insert(key.clone(), value.clone()).await;
            ours.insert(key, value.clone(), None).await.unwrap();
        }
    });
    let cursor = AtomicUsize::new(0);
    let mut group = c.benchmark_group("moka_get_hit");
    group.bench_function("raw_moka", |b| {
        b.to_async(&rt).iter(|| async { black_box(raw.get(next(&keys, &cursor)).await) })
    });
    group.bench_function("dyn_cache", |b| {
        b.to_async(&rt).iter(|| async { black_box(dyn_cache.get(next(&keys, &cursor)).await.unwrap()) })
    });
    group.bench_function("inherent_lookup", |b| {
        b.to_async(&rt).iter(|| async { black_box(ours.lookup(next(&keys, &cursor)).await) })
    });
    group.finish();
}

fn tiered_get_hit(c: &mut Criterion) {
    let rt = runtime();
    let server = Server::start();
    let keys = keys();
    let value = Bytes::from(vec![7u8; PAYLOAD]);
    let raw: moka::future::Cache<String, Bytes> = moka::future::Cache::new(10_000);
    let tiered: Arc<TieredCache> = rt.block_on(async {
        let redis = RedisCache::connect(RedisConfig::single(server.url())).await.unwrap();
        let tiered = TieredCache::new(MokaCache::new(MokaConfig::default()), Arc::new(redis), TieredConfig::default());
        for key in &keys {
            raw.insert(key.clone(), value.clone()).await;
            tiered.set(key, value.clone(), None).await.unwrap();
        }
        Arc::new(tiered)
    });
    let cursor = AtomicUsize::new(0);
    let mut group = c.benchmark_group("tiered_get_hit");
    group.bench_function("raw_moka", |b| {
        b.to_async(&rt).iter(|| async { black_box(raw.get(next(&keys, &cursor)).await) })
    });
    let dyn_tiered: Arc<dyn Cache> = tiered.clone();
    group.bench_function("tiered_memory_hit", |b| {
        b.to_async(&rt).iter(|| async { black_box(dyn_tiered.get(next(&keys, &cursor)).await.unwrap()) })
    });
    group.bench_function("tiered_inherent_lookup", |b| {
        b.to_async(&rt).iter(|| async { black_box(tiered.lookup(next(&keys, &cursor)).await.unwrap()) })
    });
    group.finish();
}

/// One round: `CLIENTS` concurrent tasks, each one `set_many` (or `get_many`) of
/// `PIPELINE` keys, `rounds` times. Returns the elapsed time.
async fn pipelined_round(cache: &RedisCache, write: bool, rounds: usize) -> Duration {
    let value = Bytes::from(vec![b'x'; PAYLOAD]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let cache = cache.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let keys: Vec<String> = (0..PIPELINE).map(|i| format!("bench:{client}:{i}")).collect();
                let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let entries: Vec<(&str, Bytes)> = key_refs.iter().map(|k| (*k, value.clone())).collect();
                for _ in 0..rounds {
                    if write {
                        cache.set_many(&entries, None).await.unwrap();
                    } else {
                        black_box(cache.get_many(&key_refs).await.unwrap());
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

fn redis_pipelined(c: &mut Criterion) {
    let rt = runtime();
    let server = Server::start();
    let cache = rt.block_on(RedisCache::connect(RedisConfig::single(server.url()))).unwrap();
    rt.block_on(pipelined_round(&cache, true, 1));
    let mut group = c.benchmark_group("redis_pipelined");
    group.sample_size(10).throughput(Throughput::Elements((CLIENTS * PIPELINE * 10) as u64));
    for (name, write) in [("set_many_16", true), ("get_many_16", false)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let cache = cache.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += pipelined_round(&cache, write, 10).await;
                    }
                    total
                }
            })
        });
    }
    group.finish();

    // Summary: the same workload timed over REQUESTS requests, next to redis-benchmark,
    // alternating three times and keeping each side's best run, so that a burst of
    // load from other processes on this machine does not decide the ratio.
    let rounds = REQUESTS / (CLIENTS * PIPELINE);
    let ops = (rounds * CLIENTS * PIPELINE) as f64;
    let (mut ours_set, mut ours_get, mut theirs_set, mut theirs_get) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..3 {
        ours_set = ours_set.max(ops / rt.block_on(pipelined_round(&cache, true, rounds)).as_secs_f64());
        ours_get = ours_get.max(ops / rt.block_on(pipelined_round(&cache, false, rounds)).as_secs_f64());
        let (set, get) = redis_benchmark(server.port);
        theirs_set = theirs_set.max(set);
        theirs_get = theirs_get.max(get);
    }
    println!("\nredis pipelined throughput, payload {PAYLOAD} B, {CLIENTS} clients, pipeline {PIPELINE}, best of 3:");
    println!(
        "  SET: deploy-cache set_many {ours_set:>10.0} req/s | redis-benchmark -P {PIPELINE} {theirs_set:>10.0} req/s | ratio {:.2}",
        ours_set / theirs_set
    );
    println!(
        "  GET: deploy-cache get_many {ours_get:>10.0} req/s | redis-benchmark -P {PIPELINE} {theirs_get:>10.0} req/s | ratio {:.2}",
        ours_get / theirs_get
    );
    println!("  (get_many sends one MGET per 16 keys; redis-benchmark sends 16 pipelined GETs)");
}

/// Requests per second of SET and GET from `redis-benchmark -P 16` on `port`.
fn redis_benchmark(port: u16) -> (f64, f64) {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &CLIENTS.to_string(), "-P", &PIPELINE.to_string(), "-d", &PAYLOAD.to_string()])
        .args(["-n", &REQUESTS.to_string(), "-t", "set,get", "-q", "--csv"])
        .output()
        .unwrap_or_else(|e| panic!("redis-benchmark is missing ({e}): `apt-get install -y redis-tools`"));
    let csv = String::from_utf8_lossy(&output.stdout);
    let rps = |test: &str| -> f64 {
        csv.lines()
            .find(|line| line.starts_with(&format!("\"{test}\"")))
            .and_then(|line| line.split(',').nth(1))
            .and_then(|field| field.trim_matches('"').parse().ok())
            .unwrap_or_else(|| panic!("no {test} line in redis-benchmark output:\n{csv}"))
    };
    (rps("SET"), rps("GET"))
}

fn config() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = moka_get_hit, tiered_get_hit, redis_pipelined
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
