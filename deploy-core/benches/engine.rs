//! Engine overhead on the test kit, each against a baseline measured in the same run:
//! - `per_step`: canaries of 5 and 20 weight steps through the engine, versus the
//!   same backend calls (platform, router, state and history stores) made directly;
//!   the overhead per step is (engine − direct) / steps. Measured as the bench
//!   thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`; the runtime is current-thread,
//!   so the engine's task runs on that thread too): the machines this runs on are
//!   shared, and time spent preempted would otherwise swamp the difference.
//! - `ready_to_next_action`: from a track marked ready to the next backend call the
//!   engine makes, versus a bare task blocked in `wait_ready` making its next call
//!   (wall time: it is a latency).
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_main};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutRequest};
use deploy_core::model::{AppSpec, DeploymentRecord, Environment, Percent, Release, Track, TrafficSplit};
use deploy_core::plan::{Plan, Step};
use deploy_core::state::RolloutState;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{self, Method, TestKit};

#[path = "support/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::ThreadCpu;

/// The weight steps of the plans measured.
const WEIGHT_STEPS: [u8; 2] = [5, 20];

fn weight(i: u8, steps: u8) -> Percent {
    Percent::new((u16::from(i) * 100 / u16::from(steps)) as u8).unwrap_or(Percent::HUNDRED)
}

fn plan(steps: u8) -> Plan {
    Canary::with_steps((1..=steps).map(|i| Step::SetWeight(weight(i, steps))).collect()).plan(&PlanInput::new(4))
}

fn kit() -> (TestKit, AppSpec, Release, Release) {
    let kit = TestKit::new();
    kit.set_ready_delay(Duration::ZERO);
    let (spec, v1, v2) = testkit::sample_app(4);
    kit.seed(&spec, Track::Stable, &v1);
    (kit, spec, v1, v2)
}

async fn through_engine(steps: u8) {
    let (kit, spec, v1, v2) = kit();
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .config(EngineConfig::default().holder("bench"))
        .build();
    let report = engine.run(RolloutRequest::new(spec, v2, plan(steps)).from(v1)).await;
    assert!(report.is_ok_and(|r| r.status == deploy_core::model::DeploymentStatus::Succeeded));
}

/// The calls the engine makes for `plan(steps)`, made directly.
async fn direct_calls(steps: u8) {
    let (kit, spec, v1, v2) = kit();
    let (platform, router, state, history) = (kit.platform(), kit.router(), kit.state_store(), kit.history_store());
    let app = spec.id();
    let record = DeploymentRecord::new(
        app.clone(),
        Environment::Production,
        Some(v1),
        v2.clone(),
        deploy_core::model::StrategyKind::Canary,
    );
    let doc = RolloutState::new(record.clone(), TrafficSplit::all(Track::Stable));
    let ttl = Duration::from_secs(60);
    let lease = state.acquire_lock(&app, &deploy_core::state::LockRequest::new("bench", ttl)).await.unwrap();
    let _ = state.load(&app).await;
    // What runs before the start: the plan's tracks.
    platform.status(&app, Track::Stable).await.unwrap();
    platform.status(&app, Track::Canary).await.unwrap();
    let mut rev = state.save(&app, &doc, None).await.unwrap();
    history.record(&record).await.unwrap();
    platform.apply(&spec, Track::Canary, &v2, 1).await.unwrap();
    rev = state.save(&app, &doc, Some(&rev)).await.unwrap();
    platform.wait_ready(&app, Track::Canary, ttl).await.unwrap();
    rev = state.save(&app, &doc, Some(&rev)).await.unwrap();
    for i in 1..=steps {
        let w = weight(i, steps);
        platform.scale(&app, Track::Canary, deploy_core::plan::canary_replicas(4, w).max(1)).await.unwrap();
        platform.wait_ready(&app, Track::Canary, ttl).await.unwrap();
        let split = TrafficSplit::canary(w);
        for (t, _) in split.iter() {
            platform.status(&app, t).await.unwrap();
        }
        router.set_weights(&app, &split).await.unwrap();
        router.weights(&app).await.unwrap();
        rev = state.save(&app, &doc, Some(&rev)).await.unwrap();
    }
    platform.apply(&spec, Track::Stable, &v2, 4).await.unwrap();
    platform.wait_ready(&app, Track::Stable, ttl).await.unwrap();
    platform.status(&app, Track::Stable).await.unwrap();
    router.set_weights(&app, &TrafficSplit::all(Track::Stable)).await.unwrap();
    router.weights(&app).await.unwrap();
    router.clear_header_routes(&app).await.unwrap();
    rev = state.save(&app, &doc, Some(&rev)).await.unwrap();
    platform.remove(&app, Track::Canary).await.unwrap();
    rev = state.save(&app, &doc, Some(&rev)).await.unwrap();
    history.record(&record).await.unwrap();
    state.clear(&app, &rev).await.unwrap();
    state.release_lock(&lease).await.unwrap();
}

/// Waits (yielding) until the kit logs a call after `seen` calls; returns when.
async fn next_call_after(kit: &TestKit, seen: usize) -> Instant {
    loop {
        if let Some(call) = kit.calls().get(seen) {
            return call.at.into_std();
        }
        tokio::task::yield_now().await;
    }
}

/// Starts a rollout in manual-ready mode, waits until the engine blocks in
/// `wait_ready` for the canary, marks it ready, and returns the delay to the
/// engine's next call.
async fn engine_reaction() -> Duration {
    let (kit, spec, v1, v2) = kit();
    kit.set_manual_ready(true);
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .config(EngineConfig::default().holder("bench"))
        .build();
    let plan = Canary::with_steps(vec![Step::SetWeight(Percent::new(50).unwrap_or(Percent::HUNDRED))])
        .plan(&PlanInput::new(4));
    let handle = engine.start(RolloutRequest::new(spec.clone(), v2, plan).from(v1)).await.unwrap();
    let seen = loop {
        let calls = kit.calls();
        if calls.last().is_some_and(|c| c.method == Method::WaitReady) {
            break calls.len();
        }
        tokio::task::yield_now().await;
    };
    // Let the engine reach its wait.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let marked = Instant::now();
    kit.mark_ready(&spec.id(), Track::Canary);
    let next = next_call_after(&kit, seen).await;
    handle.kill();
    next.saturating_duration_since(marked)
}

async fn bare_reaction() -> Duration {
    let (kit, spec, _, v2) = kit();
    kit.set_manual_ready(true);
    let platform = kit.platform();
    platform.apply(&spec, Track::Canary, &v2, 1).await.unwrap();
    let app = spec.id();
    let waiter = {
        let (platform, app) = (Arc::clone(&platform), app.clone());
        tokio::spawn(async move {
            platform.wait_ready(&app, Track::Canary, Duration::from_secs(60)).await.unwrap();
            platform.status(&app, Track::Canary).await.unwrap();
        })
    };
    let seen = loop {
        let calls = kit.calls();
        if calls.last().is_some_and(|c| c.method == Method::WaitReady) {
            break calls.len();
        }
        tokio::task::yield_now().await;
    };
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let marked = Instant::now();
    kit.mark_ready(&app, Track::Canary);
    let next = next_call_after(&kit, seen).await;
    let _ = waiter.await;
    next.saturating_duration_since(marked)
}

fn per_step(c: &mut Criterion<ThreadCpu>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("per_step");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for weights in WEIGHT_STEPS {
        let steps = plan(weights).steps.len();
        group.bench_function(format!("engine_rollout_{steps}_steps"), |b| {
            b.to_async(&rt).iter(|| through_engine(weights))
        });
        group.bench_function(format!("direct_calls_{steps}_steps"), |b| b.to_async(&rt).iter(|| direct_calls(weights)));
    }
    group.finish();
}

fn reaction(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let mut group = c.benchmark_group("ready_to_next_action");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    group.bench_function("engine", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += engine_reaction().await;
            }
            total
        })
    });
    group.bench_function("bare_wait_ready", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += bare_reaction().await;
            }
            total
        })
    });
    group.finish();
}

fn cpu_time() -> Criterion<ThreadCpu> {
    Criterion::default().with_measurement(ThreadCpu)
}

mod group {
    //! The criterion groups, in a module so their generated functions have docs.
    #![allow(missing_docs, reason = "generated by criterion_group!")]
    criterion::criterion_group! { name = per_step; config = super::cpu_time(); targets = super::per_step }
    criterion::criterion_group!(reaction, super::reaction);
}
criterion_main!(group::per_step, group::reaction);
