//! The rollout load benchmark: runs a rolling update, a canary and a blue-green
//! rollout and a rollback of each, driven by the engine on the real Docker
//! engine behind a real nginx, while a loopback load generator sends 500
//! requests/s; prints one table row per rollout: requests answered, failed
//! (connection errors, 5xx), and the time from "rollback decided" to 100 % on
//! the previous release. Run it on a quiet machine:
//! `cargo bench -p deploy-docker --bench rollout_load`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark program: a failure stops it")]
#![allow(dead_code, unused_imports, reason = "the test module's tests are not part of the benchmark")]

#[path = "../tests/load.rs"]
mod load;

use std::sync::atomic::Ordering;
use std::time::Duration;

use deploy_core::model::{HumanDuration, Percent, Track, TrafficSplit};
use deploy_core::plan::{Plan, Step};
use deploy_core::platform::Platform;
use deploy_core::strategy::{BlueGreen, Canary, PlanInput, RollingUpdate, Strategy};
use deploy_core::testkit::TestKit;
use deploy_core::traffic::TrafficRouter;

async fn scenario(name: &str, seed: Track, plans: [Plan; 2]) {
    let w = load::world(&format!("bench-{name}")).await;
    let kit = TestKit::new();
    let engine = w.engine(&kit);
    w.platform.apply(&w.spec(), seed, &w.release(0), 2).await.unwrap();
    w.platform.wait_ready(&w.app, seed, Duration::from_secs(60)).await.unwrap();
    w.router.set_weights(&w.app, &TrafficSplit::all(seed)).await.unwrap();
    let [forward, back] = plans;
    for (label, plan, from, to) in [(name.to_owned(), forward, 0, 1), (format!("{name} rollback"), back, 1, 2)] {
        let (status, counts, took) = w.under_load_timed(&engine, plan, from, to).await;
        let failed = counts.server_errors.load(Ordering::Relaxed) + counts.connection_errors.load(Ordering::Relaxed);
        println!(
            "| {label:<20} | {status:<10?} | {:>8} | {failed:>6} | {:>12} |",
            counts.ok.load(Ordering::Relaxed),
            took.map_or_else(|| "-".to_owned(), |t| format!("{:.2} s", t.as_secs_f64()))
        );
    }
    w.finish().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        println!("| rollout              | status     | answered | failed | rollback time |");
        println!("|---|---|---|---|---|");
        let rolling = || RollingUpdate::default().plan(&PlanInput::new(2));
        scenario("rolling", Track::Stable, [rolling(), rolling()]).await;
        let canary = || {
            Canary::with_steps(vec![
                Step::SetWeight(Percent::new(25).unwrap()),
                Step::SetWeight(Percent::new(50).unwrap()),
            ])
            .scale_down_delay(HumanDuration::ZERO)
            .plan(&PlanInput::new(2))
        };
        scenario("canary", Track::Stable, [canary(), canary()]).await;
        let bg =
            |live| BlueGreen::default().scale_down_delay(HumanDuration::ZERO).plan(&PlanInput::new(2).live_track(live));
        scenario("blue-green", Track::Blue, [bg(Track::Blue), bg(Track::Green)]).await;
    });
}
