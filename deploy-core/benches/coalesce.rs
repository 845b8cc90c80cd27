//! Analysis queries that add up sensibly: 1, 100 and 1,000 concurrent canaries,
//! each looking three times at the same three queries, judged by a real Prometheus
//! (Debian's `prometheus` on a loopback port), once straight and once through
//! `CoalescingMetrics`. A benchmark program (one run is the measurement) that prints
//! its table: questions asked, calls that reached Prometheus, the most calls in any
//! one-second interval, and wall time, with the straight run as the baseline.
//!
//! `cargo bench -p deploy-core --features testkit,prometheus --bench coalesce`
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark fixtures fail loudly")]

use std::num::NonZeroU32;
use std::time::Duration;

use deploy_core::metrics::{CoalesceConfig, RateLimit};

#[path = "../tests/common/prometheus_server.rs"]
mod prometheus_server;

#[path = "../tests/common/coalesce_world.rs"]
mod coalesce_world;
use coalesce_world::{INTERVAL, LOOKS, prometheus, run};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (_server, provider) = prometheus().await;
        println!(
            "| rollouts | provider | questions | Prometheus calls | most calls in 1 s | wall | wall vs straight |"
        );
        println!("|---|---|---|---|---|---|---|");
        for n in [1usize, 100, 1000] {
            let limit = RateLimit::per_second(NonZeroU32::new(20).unwrap());
            let modes = [
                ("straight", None),
                ("coalesced", Some(CoalesceConfig::default().window(INTERVAL))),
                ("coalesced, ≤ 20/s", Some(CoalesceConfig::default().window(INTERVAL).rate_limit(limit))),
            ];
            let mut baseline = None;
            for (name, config) in modes {
                let run = run(n, provider.clone(), config).await;
                let base = *baseline.get_or_insert(run.wall);
                // Every rollout looks LOOKS times at the three questions.
                println!(
                    "| {n} | {name} | {} | {} | {:.1} | {} | {:.2} s | {:.2}× |",
                    run.questions,
                    run.starts.len(),
                    run.starts.len() as f64 / f64::from(LOOKS),
                    run.max_calls_in(Duration::from_secs(1)),
                    run.wall.as_secs_f64(),
                    run.wall.as_secs_f64() / base.as_secs_f64()
                );
            }
        }
    });
}
