//! Many rollouts in one process: 1, 100 and 1,000 concurrent canaries (with
//! analysis) on the test kit, driven by one engine. A benchmark program (not
//! criterion: one run of 1,000 rollouts is the measurement) that prints its table:
//!
//! - wall time and CPU time of the whole run, on a current-thread runtime with
//!   tokio's paused clock (analysis intervals and pauses take no real time, so the
//!   figures are the engine's own cost);
//! - per-step overhead: CPU time / steps executed, and its ratio to the single
//!   rollout's in the same run;
//! - memory per waiting rollout: every rollout held at a pause until promoted,
//!   (heap bytes live with them − before) / rollouts, counted by `stats_alloc`'s
//!   instrumented allocator (resident memory would hide it: the allocator reuses
//!   what the earlier runs freed), once with the kit's call log and state copies and
//!   once with a kit that keeps no observations (the engine's share plus the latest
//!   state document and simulated tracks).
//!
//! `cargo bench -p deploy-core --features testkit --bench many_rollouts`
#![allow(clippy::unwrap_used, reason = "benchmark fixtures fail loudly")]

use std::time::{Duration, Instant};

use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutEvent, RolloutHandle, RolloutRequest};
use deploy_core::model::{AppSpec, HumanDuration, ImageRef, Name, Namespace, Percent, Release, Track, Version};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::TestKit;

use cpu_time::ThreadTime;

#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Heap bytes allocated and not yet freed. `stats_alloc` already adds a
/// reallocation's growth to `bytes_allocated` (and its shrinking to
/// `bytes_deallocated`); `bytes_reallocated` is the same growth again, so it is not
/// added (an earlier version did, and over-counted every `Vec` and `String` that grew).
fn live_bytes() -> u64 {
    let s = GLOBAL.stats();
    (s.bytes_allocated as u64).saturating_sub(s.bytes_deallocated as u64)
}

fn plan(pause: bool) -> Plan {
    let analysis = AnalysisSpec::new("errors")
        .metric(MetricCheck::new("error-rate", "sum(rate(errors[1m]))", JudgeSpec::max(0.01)))
        .interval(HumanDuration::new(Duration::from_secs(60)))
        .count(3);
    let mut steps = vec![Step::SetWeight(Percent::new(25).unwrap()), Step::Analyze(analysis.clone())];
    if pause {
        steps.push(Step::Pause(PauseKind::UntilPromoted));
    }
    steps.extend([
        Step::SetWeight(Percent::new(50).unwrap()),
        Step::Analyze(analysis),
        Step::SetWeight(Percent::new(75).unwrap()),
    ]);
    Canary::with_steps(steps).plan(&PlanInput::new(4))
}

fn app(i: usize) -> (AppSpec, Release, Release) {
    let image = |v: &str| ImageRef::parse(&format!("registry.local/shop/app-{i}:{v}")).unwrap();
    let spec = AppSpec::new(Namespace::new("shop").unwrap(), Name::new(format!("app-{i}")).unwrap(), image("1.0.0"))
        .replicas(4);
    (
        spec,
        Release::new(Version::new("1.0.0").unwrap(), image("1.0.0")),
        Release::new(Version::new("2.0.0").unwrap(), image("2.0.0")),
    )
}

struct World {
    kit: TestKit,
    engine: RolloutEngine,
    apps: Vec<(AppSpec, Release, Release)>,
}

fn world(n: usize, observed: bool) -> World {
    let kit = if observed { TestKit::new() } else { TestKit::without_observations() };
    kit.set_ready_delay(Duration::from_secs(5));
    kit.metric_values().set("error-rate", Track::Canary, 0.001);
    let apps: Vec<_> = (0..n).map(app).collect();
    for (spec, v1, _) in &apps {
        kit.seed(spec, Track::Stable, v1);
    }
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .config(EngineConfig::default().holder("bench"))
        .build();
    World { kit, engine, apps }
}

fn request(w: &World, i: usize, plan: &Plan) -> RolloutRequest {
    let (spec, v1, v2) = &w.apps[i];
    RolloutRequest::new(spec.clone(), v2.clone(), plan.clone()).from(v1.clone())
}

/// Runs `n` rollouts to their end at once; (wall, cpu, steps executed).
async fn run_all(n: usize) -> (Duration, Duration, usize) {
    let w = world(n, true);
    let plan = plan(false);
    let cpu = ThreadTime::now();
    let wall = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        handles.push(w.engine.start(request(&w, i, &plan)).await.unwrap());
    }
    let mut steps = 0;
    for h in handles {
        let report = h.wait().await.unwrap();
        assert_eq!(report.status, deploy_core::model::DeploymentStatus::Succeeded, "{:?}", report.cause);
        steps += report.record.steps.len();
    }
    let _ = &w.kit;
    (wall.elapsed(), cpu.elapsed(), steps)
}

/// Heap bytes per rollout held at a pause. With `observed`, the kit keeps its call
/// log and a copy of every saved state for assertions; without, only what its
/// backends need (the simulated tracks, the latest state document, the lease),
/// which a real backend keeps outside the process: the rest is the engine's.
async fn memory_per_waiting(n: usize, observed: bool) -> u64 {
    let w = world(n, observed);
    let plan = plan(true);
    let before = live_bytes();
    let mut handles: Vec<RolloutHandle> = Vec::with_capacity(n);
    for i in 0..n {
        handles.push(w.engine.start(request(&w, i, &plan)).await.unwrap());
    }
    for h in &mut handles {
        while let Some(e) = h.next_event().await {
            if matches!(e, RolloutEvent::Paused { .. }) {
                break;
            }
        }
    }
    let during = live_bytes();
    for h in &handles {
        h.promote().unwrap();
    }
    for h in handles {
        h.wait().await.unwrap();
    }
    during.saturating_sub(before) / n as u64
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    // `MANY_ROLLOUTS_HEAP_ONLY=N`: only hold N rollouts at their pause (lean kit), for
    // a heap profiler (`valgrind --tool=massif`) to attribute what they keep.
    if let Some(n) = std::env::var("MANY_ROLLOUTS_HEAP_ONLY").ok().and_then(|v| v.parse::<usize>().ok()) {
        let lean = runtime.block_on(memory_per_waiting(n, false));
        println!("{n} waiting rollouts (kit without observations): {lean} B each");
        return;
    }
    runtime.block_on(async {
        println!(
            "| rollouts | wall | CPU | steps | CPU per step | vs 1 rollout | heap per waiting rollout (kit with log) | (kit without observations) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let mut single = None;
        for n in [1usize, 100, 1000] {
            let (wall, cpu, steps) = run_all(n).await;
            let per_step = cpu.as_secs_f64() / steps as f64;
            let base = *single.get_or_insert(per_step);
            let memory = memory_per_waiting(n, true).await;
            let lean = memory_per_waiting(n, false).await;
            println!(
                "| {n} | {:.1} ms | {:.1} ms | {steps} | {:.1} µs | {:.2}× | {} B | {lean} B |",
                wall.as_secs_f64() * 1e3,
                cpu.as_secs_f64() * 1e3,
                per_step * 1e6,
                per_step / base,
                memory
            );
        }
    });
}
