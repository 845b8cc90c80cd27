//! A thousand canaries sharing three analysis queries against a real Prometheus
//! (Debian's `prometheus`, started on a loopback port): through `CoalescingMetrics`
//! they make at most three calls per analysis interval, Prometheus's own request
//! counter agrees, and a rate limit is never exceeded in any window.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures fail loudly")]
#![cfg(all(feature = "testkit", feature = "prometheus"))]

use std::num::NonZeroU32;
use std::time::Duration;

use deploy_core::metrics::{CoalesceConfig, RateLimit};

#[path = "common/prometheus_server.rs"]
mod prometheus_server;

#[path = "common/coalesce_world.rs"]
mod coalesce_world;
use coalesce_world::{INTERVAL, QUERIES, prometheus, prometheus_queries_since, prometheus_query_requests, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_rollouts_sharing_three_queries_make_three_calls_per_interval() {
    let (server, provider) = prometheus().await;
    let before = prometheus_query_requests(&server).await;
    // Answers are shared within interval-long windows: each question reaches
    // Prometheus at most once per window.
    let run = run(1000, provider, Some(CoalesceConfig::default().window(INTERVAL))).await;
    let served = prometheus_queries_since(&server, before, run.starts.len() as u64).await;
    assert_eq!(run.questions, 1000 * 3 * 3, "every rollout asks three questions three times");
    assert_eq!(served, run.starts.len() as u64, "Prometheus answered another number of queries than we made");
    let windows = (run.wall.as_secs_f64() / INTERVAL.as_secs_f64()).ceil() as usize + 1;
    assert!(
        run.starts.len() <= QUERIES.len() * windows,
        "{} calls in {windows} windows of {INTERVAL:?}",
        run.starts.len()
    );
    // A sliding interval straddles at most two windows (50 ms of scheduling jitter
    // allowed, as below).
    let max = run.max_calls_in(INTERVAL - Duration::from_millis(50));
    assert!(max <= 2 * QUERIES.len(), "{max} calls within one interval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_rate_limit_is_never_exceeded() {
    let (server, provider) = prometheus().await;
    let before = prometheus_query_requests(&server).await;
    // Two calls per second for three questions per one-second interval: the limit,
    // not the questions, sets the pace.
    let limit = RateLimit::per_second(NonZeroU32::new(2).unwrap());
    let config = CoalesceConfig::default().window(Duration::from_millis(500)).rate_limit(limit);
    let run = run(200, provider, Some(config)).await;
    let served = prometheus_queries_since(&server, before, run.starts.len() as u64).await;
    assert_eq!(served, run.starts.len() as u64);
    // The limiter admits the third call exactly one second after the first; the
    // times recorded here lag its decisions by scheduling jitter on a busy machine,
    // so the window checked is 50 ms shorter (the unit tests check the exact window
    // on tokio's paused clock).
    let max = run.max_calls_in(Duration::from_millis(950));
    assert!(max <= 2, "{max} calls started within 950 ms under a limit of 2 per second");
    assert!(run.starts.len() >= 3, "the rollouts made only {} calls", run.starts.len());
}
