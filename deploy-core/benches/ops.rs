//! Benchmarks of the operations toolkit.
//!
//! - `lb/<strategy>/<n>`: one pick (and, for the counting balancers, the guard's
//!   release) at 10, 1,000 and 10,000 backends, next to `naive/<strategy>/<n>`: the
//!   seed's approach, which filters the healthy backends into a new list and then
//!   picks from it on every request.
//! - `dora/1m`: DORA metrics over one million deployment records.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall
//! time: the machines this runs on are shared, and time spent preempted by other
//! processes would otherwise swamp the nanosecond figures and their ratios.
#![expect(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use deploy_core::dora::{DoraAccumulator, DoraWindow};
use deploy_core::lb::{
    Backend, ConsistentHash, HealthBased, LeastConnections, OutlierDetection, PowerOfTwoChoices, RingConfig,
    RoundRobin, SmoothWeightedRoundRobin, stable_hash,
};
use deploy_core::model::{
    AppId, DeploymentRecord, DeploymentStatus, Environment, ImageRef, Name, Namespace, Release, Version,
};
use rand::RngExt;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

#[path = "support/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::ThreadCpu;

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend::new(format!("b{i}"), format!("10.0.{}.{}:80", i / 256, i % 256)).weight(1 + (i % 3) as u32))
        .collect()
}

/// The seed's representation: a list of backends with health and connection counts.
struct NaiveBackend {
    backend: Backend,
    healthy: bool,
    connections: AtomicU32,
}

fn naive(n: usize) -> Vec<NaiveBackend> {
    backends(n)
        .into_iter()
        .enumerate()
        .map(|(i, backend)| NaiveBackend { backend, healthy: i % 10 != 3, connections: AtomicU32::new(0) })
        .collect()
}

fn healthy(list: &[NaiveBackend]) -> Vec<&NaiveBackend> {
    list.iter().filter(|b| b.healthy).collect()
}

fn lb_benches(c: &mut Criterion<ThreadCpu>) {
    let mut g = c.benchmark_group("lb");
    for n in SIZES {
        let rr = RoundRobin::new(backends(n));
        g.bench_with_input(BenchmarkId::new("round_robin", n), &n, |b, _| b.iter(|| black_box(rr.pick().unwrap())));

        let swrr = SmoothWeightedRoundRobin::new(backends(n)).unwrap();
        g.bench_with_input(BenchmarkId::new("smooth_weighted", n), &n, |b, _| {
            b.iter(|| black_box(swrr.pick().unwrap()))
        });

        let lc = LeastConnections::new(backends(n)).unwrap();
        // A realistic background load: every backend holds one or two connections.
        let held: Vec<_> = (0..n + n / 2).map(|_| lc.pick().unwrap()).collect();
        g.bench_with_input(BenchmarkId::new("least_connections", n), &n, |b, _| {
            b.iter(|| drop(black_box(lc.pick().unwrap())))
        });
        drop(held);

        let p2c = PowerOfTwoChoices::new(backends(n)).unwrap();
        g.bench_with_input(BenchmarkId::new("power_of_two", n), &n, |b, _| {
            b.iter(|| drop(black_box(p2c.pick().unwrap())))
        });

        let ring = ConsistentHash::new(backends(n), RingConfig::default()).unwrap();
        let mut key = 0u64;
        g.bench_with_input(BenchmarkId::new("consistent_hash", n), &n, |b, _| {
            b.iter(|| {
                key = key.wrapping_add(1);
                black_box(ring.pick(&key.to_le_bytes()).unwrap())
            })
        });

        let health = HealthBased::new(backends(n), OutlierDetection::default()).unwrap();
        for i in (3..n).step_by(10) {
            health.set_healthy(&format!("b{i}"), false).unwrap();
        }
        g.bench_with_input(BenchmarkId::new("health_based", n), &n, |b, _| {
            b.iter(|| black_box(health.pick().unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("naive");
    for n in SIZES {
        let list = naive(n);
        let next = AtomicUsize::new(0);
        g.bench_with_input(BenchmarkId::new("round_robin", n), &n, |b, _| {
            b.iter(|| {
                let h = healthy(&list);
                black_box(h[next.fetch_add(1, Ordering::Relaxed) % h.len()].backend.id.len())
            })
        });

        let mut current = vec![0i64; n];
        g.bench_with_input(BenchmarkId::new("smooth_weighted", n), &n, |b, _| {
            b.iter(|| {
                let total: i64 = list.iter().filter(|b| b.healthy).map(|b| i64::from(b.backend.weight)).sum();
                let mut best = usize::MAX;
                for (i, be) in list.iter().enumerate().filter(|(_, b)| b.healthy) {
                    current[i] += i64::from(be.backend.weight);
                    if best == usize::MAX || current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= total;
                black_box(best)
            })
        });

        g.bench_with_input(BenchmarkId::new("least_connections", n), &n, |b, _| {
            b.iter(|| {
                let h = healthy(&list);
                let best = h.iter().min_by_key(|b| b.connections.load(Ordering::Relaxed)).unwrap();
                best.connections.fetch_add(1, Ordering::Relaxed);
                best.connections.fetch_sub(1, Ordering::Relaxed);
                black_box(best.backend.id.len())
            })
        });

        g.bench_with_input(BenchmarkId::new("power_of_two", n), &n, |b, _| {
            b.iter(|| {
                let h = healthy(&list);
                let mut rng = rand::rng();
                let (i, j) = (rng.random_range(0..h.len()), rng.random_range(0..h.len()));
                let best = if h[j].connections.load(Ordering::Relaxed) < h[i].connections.load(Ordering::Relaxed) {
                    h[j]
                } else {
                    h[i]
                };
                black_box(best.backend.id.len())
            })
        });

        let mut key = 0u64;
        g.bench_with_input(BenchmarkId::new("consistent_hash", n), &n, |b, _| {
            b.iter(|| {
                key = key.wrapping_add(1);
                let h = healthy(&list);
                black_box(h[(stable_hash(&key.to_le_bytes()) % h.len() as u64) as usize].backend.id.len())
            })
        });

        g.bench_with_input(BenchmarkId::new("health_based", n), &n, |b, _| {
            b.iter(|| {
                let h = healthy(&list);
                black_box(h[next.fetch_add(1, Ordering::Relaxed) % h.len()].backend.id.len())
            })
        });
    }
    g.finish();
}

fn records(count: usize) -> Vec<DeploymentRecord> {
    let apps: Vec<AppId> =
        (0..200).map(|i| AppId::new(Namespace::new("shop").unwrap(), Name::new(format!("svc-{i}")).unwrap())).collect();
    let release = Release::new(Version::new("1.0.0").unwrap(), ImageRef::parse("web:1").unwrap());
    let base = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let mut rng = rand::rng();
    (0..count)
        .map(|i| {
            let env = Environment::ALL[i % 3];
            let mut r = DeploymentRecord::new(
                apps[i % apps.len()].clone(),
                env,
                None,
                release.clone(),
                deploy_core::model::StrategyKind::Rolling,
            );
            let start = base + jiff::SignedDuration::from_secs(i as i64 * 60);
            r.started_at = Some(start);
            r.finished_at = Some(start + jiff::SignedDuration::from_secs(rng.random_range(30..600)));
            r.committed_at = Some(start - jiff::SignedDuration::from_secs(rng.random_range(600..86_400)));
            r.status = match rng.random_range(0..20) {
                0 => DeploymentStatus::Failed,
                1 => DeploymentStatus::RolledBack,
                _ => DeploymentStatus::Succeeded,
            };
            r
        })
        .collect()
}

fn dora_benches(c: &mut Criterion<ThreadCpu>) {
    let records = records(1_000_000);
    let mut g = c.benchmark_group("dora");
    g.sample_size(10);
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("1m", |b| {
        b.iter(|| {
            let mut acc = DoraAccumulator::new(DoraWindow::all());
            records.iter().for_each(|r| acc.add(r));
            black_box(acc.metrics(Some(Environment::Production)))
        })
    });
    g.finish();
}

fn config() -> Criterion<ThreadCpu> {
    Criterion::default()
        .with_measurement(ThreadCpu)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1))
}

// In a private module, because criterion_group! generates undocumented pub functions.
mod groups {
    use super::{config, dora_benches, lb_benches};
    criterion::criterion_group! { name = lb; config = config(); targets = lb_benches }
    criterion::criterion_group! { name = dora; config = config(); targets = dora_benches }
}
criterion_main!(groups::lb, groups::dora);
