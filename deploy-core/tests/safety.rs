//! Issue 16: the engine never hurts what it does not own. One test per finding of
//! the engine's review; each failed on the engine before the fix.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, LOCK_TTL, Strat, pct, secs};
use deploy_core::engine::{
    DecisionKind, RolloutEngine, RolloutError, RolloutEvent, RolloutHandle, RolloutReport, RolloutRequest,
};
use deploy_core::model::{AppId, DeploymentStatus, Track, TrafficSplit};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::state::StateStore;
use deploy_core::strategy::{Canary, PlanInput, RollingUpdate, Strategy};
use deploy_core::testkit::{Fault, Method, StateMethod};
use tokio::time::Instant;

/// An engine of another process on the fixture's world, with its own view of the
/// state store (a skewed clock, say).
fn engine_with_store(f: &Fixture, store: Arc<dyn StateStore>, holder: &str) -> RolloutEngine {
    let mut builder = RolloutEngine::builder(f.kit.platform(), store, f.kit.history_store())
        .metrics(f.kit.metrics())
        .health_check(f.smoke.clone())
        .config(common::config(holder));
    if f.strat.router().is_some() {
        builder = builder.router(f.kit.router());
    }
    builder.build()
}

/// Resumes `app` on `engine` as soon as the lock lets it, trying every second for
/// at most `limit`.
async fn resume_when_free(engine: &RolloutEngine, app: &AppId, limit: Duration) -> (RolloutHandle, Instant) {
    let until = Instant::now() + limit;
    loop {
        match engine.resume(app).await {
            Ok(handle) => return (handle, Instant::now()),
            Err(e) if Instant::now() < until => {
                assert!(matches!(e, RolloutError::Locked { .. }), "{e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("the lock never became free: {e}"),
        }
    }
}

async fn until_step(handle: &mut RolloutHandle, step: usize) {
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::StepStarted { index, .. } if index == step) {
            return;
        }
    }
    panic!("the rollout ended before step {step}");
}

/// The previous release serves all traffic on its track, with all replicas, and
/// nothing of the new one runs.
fn assert_previous_serves(f: &Fixture, report: &RolloutReport) {
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{:?}", report.cause);
    let world = f.kit.snapshot(&f.spec.id());
    let old =
        world.tracks.get(&f.plan.old_track).unwrap_or_else(|| panic!("{} was removed: {world}", f.plan.old_track));
    assert_eq!(old.version, f.v1.version, "{world}");
    assert_eq!(old.replicas, f.plan.replicas, "{world}");
    assert!(!world.runs(&f.v2.version), "{world}");
    if f.strat.router().is_some() {
        assert_eq!(world.weights, Some(TrafficSplit::all(f.plan.old_track)), "{world}");
    }
    assert!(f.kit.unready_routing().is_empty());
}

fn paused_plan(pause: PauseKind) -> Plan {
    Canary::with_steps(vec![
        Step::SetWeight(pct(20)),
        Step::SetWeight(pct(40)),
        Step::Pause(pause),
        Step::SetWeight(pct(60)),
    ])
    .plan(&PlanInput::new(common::REPLICAS))
}

fn request(f: &Fixture, plan: Plan) -> RolloutRequest {
    RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone())
}

// ---- "RolloutRequest::new defaults from to None, and then a failed rollout removes
// every track of the plan, including a live stable" ----

#[tokio::test(start_paused = true)]
async fn a_forgotten_from_never_removes_the_running_release() {
    for strat in [Strat::Canary, Strat::Rolling, Strat::BlueGreen, Strat::CanaryReplicaRatio] {
        let f = Fixture::new(strat);
        f.kit.doomed(&f.v2.version, "CrashLoopBackOff");
        // The README's own example: no `.from(..)`.
        let request = RolloutRequest::new(f.spec.clone(), f.v2.clone(), f.plan.clone());
        let mut handle = f.engine.start(request).await.unwrap();
        let mut adopted = false;
        while let Some(e) = handle.next_event().await {
            adopted |= matches!(
                &e,
                RolloutEvent::Decision { kind: DecisionKind::AdoptedServingRelease { version, track } }
                    if version.as_str() == "1.0.0" && *track == f.plan.old_track
            );
        }
        let report = handle.wait().await.unwrap();
        assert_previous_serves(&f, &report);
        // The engine says what it adopted, in the events and the record.
        assert!(adopted, "{strat:?}: no adoption event");
        assert_eq!(report.record.from.as_ref().map(|r| &r.version), Some(&f.v1.version));
        assert!(report.record.logs.iter().any(|l| l.message.contains("adopted 1.0.0")), "{:?}", report.record.logs);
    }
}

// ---- "a second start for an app this engine is already rolling out renews the
// lock, finds saved state and then releases the lock"; "resume does not check what
// is running either" ----

#[tokio::test(start_paused = true)]
async fn a_second_start_in_the_same_engine_is_refused_and_disturbs_nothing() {
    let f = Fixture::new(Strat::Canary);
    let mut handle = f.engine.start(f.request()).await.unwrap();
    until_step(&mut handle, 3).await;
    let err = f.engine.start(f.request()).await.unwrap_err();
    assert!(err.to_string().contains(handle.deployment().as_str()), "the error names the running rollout: {err}");
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_eq!(f.kit.history().records().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn resume_of_a_rollout_this_engine_runs_is_refused() {
    let f = Fixture::new(Strat::Canary);
    let mut handle = f.engine.start(f.request()).await.unwrap();
    until_step(&mut handle, 3).await;
    let err = f.engine.resume(&f.spec.id()).await.unwrap_err();
    assert!(err.to_string().contains(handle.deployment().as_str()), "the error names the running rollout: {err}");
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let starts = f.kit.calls().iter().filter(|c| c.method == Method::Apply && c.detail.starts_with("canary")).count();
    assert_eq!(starts, 1, "one driver deployed the canary once");
}

// ---- "A renewal error other than LockLost is only logged: the engine keeps changing
// the platform after its lease may have expired while another engine takes over" ----

#[tokio::test(start_paused = true)]
async fn renewals_failing_past_the_lease_stop_every_change_before_another_engine_takes_over() {
    let f = Fixture::new(Strat::Canary);
    let mut handle = f.engine.start(request(&f, paused_plan(PauseKind::Duration(secs(600))))).await.unwrap();
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::Paused { .. }) {
            break;
        }
    }
    // The store stops answering renewals (a partition between this engine and it).
    let broken_at = Instant::now();
    f.kit.fail_state_calls_for(StateMethod::RenewLock, LOCK_TTL + Duration::from_secs(15), Fault::Retryable);
    let a = tokio::spawn(async move {
        let result = handle.wait().await;
        (result, Instant::now())
    });
    let other = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
    let (b, b_started) = resume_when_free(&other, &f.spec.id(), Duration::from_secs(600)).await;
    let (a_result, a_stopped) = a.await.unwrap();
    let err = a_result.unwrap_err();
    assert!(matches!(err, RolloutError::LockLost { .. }), "{err}");
    assert!(a_stopped < broken_at + LOCK_TTL, "A stopped {:?} after its last renewal", a_stopped - broken_at);
    assert!(a_stopped < b_started, "A stopped before B took over");
    let calls_while_both = f
        .kit
        .calls()
        .into_iter()
        .filter(|c| c.at > a_stopped && c.at < b_started && c.method != Method::Status && c.method != Method::Weights)
        .count();
    assert_eq!(calls_while_both, 0, "nothing changed the platform between A's stop and B's takeover");
    let report = b.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert!(f.kit.unready_routing().is_empty());
}

// ---- "expiry compares the holder's clock with the reader's" ----

#[tokio::test(start_paused = true)]
async fn clock_skew_between_two_engines_never_lets_one_take_over_a_live_lease() {
    let skew = jiff::SignedDuration::try_from(LOCK_TTL - Duration::from_secs(1)).unwrap();
    for (a_skew, b_skew) in [(jiff::SignedDuration::ZERO, skew), (-skew, jiff::SignedDuration::ZERO)] {
        let f = Fixture::new(Strat::Canary);
        let a = engine_with_store(&f, f.kit.state_store_with_clock_offset(a_skew), "engine-a2");
        let b = engine_with_store(&f, f.kit.state_store_with_clock_offset(b_skew), "engine-b");
        let handle = a.start(request(&f, paused_plan(PauseKind::Duration(secs(120))))).await.unwrap();
        let task = tokio::spawn(handle.wait());
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if task.is_finished() {
                break;
            }
            let taken = b.resume(&f.spec.id()).await;
            assert!(taken.is_err(), "B (skew {b_skew}) took over A's live lease (skew {a_skew})");
        }
        let report = task.await.unwrap().unwrap();
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    }
}

// ---- "When the rollback itself fails, the state is cleared and the lock released,
// so resume says there is nothing to do and a new start runs on a half-restored app" ----

#[tokio::test(start_paused = true)]
async fn a_failed_rollback_leaves_the_app_degraded_until_resume_completes_it() {
    let f = Fixture::new(Strat::Canary);
    f.kit.doomed(&f.v2.version, "ErrImagePull");
    f.kit.fail_call(Method::Remove, 1, Fault::Fatal);
    let report = f.engine.run(f.request()).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Failed, "{:?}", report.cause);
    assert!(f.kit.state_store().load(&f.spec.id()).await.unwrap().is_some(), "the failure is remembered");
    let err = f.engine.start(f.request()).await.unwrap_err();
    assert!(err.to_string().contains(report.record.id.as_str()), "{err}");
    let report = f.engine.resume(&f.spec.id()).await.unwrap().wait().await.unwrap();
    assert_previous_serves(&f, &report);
    assert!(f.kit.state_store().load(&f.spec.id()).await.unwrap().is_none());
    // Now a new rollout may start.
    let f2_report = f.engine.run(RolloutRequest::new(f.spec.clone(), f.v1.clone(), f.plan.clone()).from(f.v1.clone()));
    assert!(f2_report.await.is_ok());
}

// ---- "If saving rolling back fails and clearing fails too, a later resume rolls
// the rejected release forward again" ----

#[tokio::test(start_paused = true)]
async fn a_lost_rollback_marker_and_a_failed_clear_never_resume_the_rejected_release() {
    // A rolling update: stable runs 2.0.0 when its analysis (step 2) fails.
    let f = Fixture::new(Strat::Rolling);
    let mut handle = f.engine.start(f.request()).await.unwrap();
    until_step(&mut handle, 1).await;
    f.kit.metric_values().set("error-rate", Track::Stable, 0.5);
    f.kit.fail_state_calls_for(StateMethod::Save, Duration::from_secs(3600), Fault::Fatal);
    f.kit.fail_state_calls_for(StateMethod::Clear, Duration::from_secs(3600), Fault::Fatal);
    let first = handle.wait().await;
    assert!(!matches!(&first, Ok(r) if r.status == DeploymentStatus::Succeeded), "{first:?}");
    tokio::time::sleep(Duration::from_secs(3601)).await; // the store works again
    f.kit.metric_values().set("error-rate", Track::Stable, 0.001); // a forward run would now pass
    let other = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
    if f.kit.state_store().load(&f.spec.id()).await.unwrap().is_some() {
        let (b, _) = resume_when_free(&other, &f.spec.id(), Duration::from_secs(120)).await;
        let report = b.wait().await.unwrap();
        assert_previous_serves(&f, &report);
    }
    let world = f.kit.snapshot(&f.spec.id());
    assert!(!world.runs(&f.v2.version), "{world}");
    let statuses: Vec<_> = f.kit.history().records().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [DeploymentStatus::RolledBack]);
}

// ---- "A lost response to a save turns into a conflict that stops the rollout
// without a rollback" ----

#[tokio::test(start_paused = true)]
async fn a_lost_save_response_is_recognised_as_the_engines_own_write() {
    for nth in [1, 3, 6] {
        let f = Fixture::new(Strat::Canary);
        f.kit.lose_save_response(nth);
        let result = f.engine.run(f.request()).await;
        let report = result.unwrap_or_else(|e| panic!("save {nth}: {e}"));
        assert_eq!(report.status, DeploymentStatus::Succeeded, "save {nth}: {:?}", report.cause);
        assert!(f.kit.state_store().load(&f.spec.id()).await.unwrap().is_none());
    }
}

// ---- "A promote() sent while no pause runs is stored and skips a manual pause many
// steps later" ----

#[tokio::test(start_paused = true)]
async fn promote_before_its_pause_is_refused_and_the_pause_still_waits() {
    let f = Fixture::new(Strat::Canary);
    let mut handle = f.engine.start(request(&f, paused_plan(PauseKind::UntilPromoted))).await.unwrap();
    until_step(&mut handle, 2).await;
    let _ = handle.promote();
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::Paused { .. }) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let world = f.kit.snapshot(&f.spec.id());
    assert_eq!(world.weights.unwrap().weight(Track::Canary), pct(40), "still paused at 40 %");
    let _ = handle.promote();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded);
}

#[allow(dead_code, reason = "kept for the rolling variant of the adoption test")]
fn rolling_plan() -> Plan {
    RollingUpdate::default().plan(&PlanInput::new(common::REPLICAS))
}

// ---- Control from another process (issue 16, item 4) ----

#[tokio::test(start_paused = true)]
async fn another_process_promotes_pauses_and_aborts_by_application() {
    let f = Fixture::new(Strat::Canary);
    let app = f.spec.id();
    let cli = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "ci-job");
    let mut handle = f.engine.start(request(&f, paused_plan(PauseKind::UntilPromoted))).await.unwrap();
    until_step(&mut handle, 2).await;
    // Before its pause: refused, naming the step, and not kept.
    let err = cli.promote(&app).await.unwrap_err();
    assert!(matches!(err, RolloutError::PromoteRejected { step: Some(_), .. }), "{err}");
    assert!(err.to_string().contains("set canary weight"), "{err}");
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::Paused { .. }) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(f.kit.snapshot(&app).weights.unwrap().weight(Track::Canary), pct(40), "still paused");
    // Pause before the next step, then promote: it holds at 40 %.
    cli.pause(&app).await.unwrap();
    cli.promote(&app).await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(f.kit.snapshot(&app).weights.unwrap().weight(Track::Canary), pct(40), "held by the pause request");
    cli.unpause(&app).await.unwrap();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let err = cli.promote(&app).await.unwrap_err();
    assert!(matches!(err, RolloutError::NoRollout { .. }), "{err}");

    // Abort from another process rolls back.
    let f = Fixture::new(Strat::Canary);
    let cli = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "ci-job");
    let mut handle = f.engine.start(request(&f, paused_plan(PauseKind::UntilPromoted))).await.unwrap();
    until_step(&mut handle, 3).await;
    cli.abort(&f.spec.id(), "ci: smoke tests failed").await.unwrap();
    let report = handle.wait().await.unwrap();
    assert_previous_serves(&f, &report);
    assert!(report.cause.unwrap().message.contains("smoke tests failed"));
}

#[tokio::test(start_paused = true)]
async fn a_request_stored_while_no_engine_runs_is_acted_on_at_resume() {
    let f = Fixture::new(Strat::Canary);
    let app = f.spec.id();
    // Saves: the start, then one per step; die right after the 40 % step is saved.
    f.kit.crash_after_saves(5);
    let handle = f.engine.start(request(&f, paused_plan(PauseKind::UntilPromoted))).await.unwrap();
    f.kit.crashed().await;
    handle.kill();
    let cli = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "ci-job");
    cli.promote(&app).await.unwrap(); // the saved rollout stands before its pause
    let other = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
    let (resumed, _) = resume_when_free(&other, &app, Duration::from_secs(120)).await;
    let report = resumed.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
}

#[tokio::test(start_paused = true)]
async fn a_state_document_deleted_behind_the_engine_is_written_again() {
    let f = Fixture::new(Strat::Canary);
    let mut handle = f.engine.start(f.request()).await.unwrap();
    until_step(&mut handle, 4).await;
    f.kit.delete_state(&f.spec.id());
    let mut rewritten = false;
    while let Some(e) = handle.next_event().await {
        rewritten |= matches!(&e, RolloutEvent::StepFinished { .. })
            && f.kit.state_store().load(&f.spec.id()).await.unwrap().is_some();
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert!(rewritten);
    assert!(
        report.record.logs.iter().any(|l| l.message.contains("deleted by someone else")),
        "{:?}",
        report.record.logs
    );
}

#[tokio::test(start_paused = true)]
async fn a_blue_green_plan_onto_the_serving_colour_is_refused_and_changes_nothing() {
    let f = Fixture::new(Strat::BlueGreen);
    let before = f.kit.snapshot(&f.spec.id());
    let wrong = common::plan_for_live(Strat::BlueGreen, Track::Green);
    let err =
        f.engine.start(RolloutRequest::new(f.spec.clone(), f.v2.clone(), wrong).from(f.v1.clone())).await.unwrap_err();
    assert!(
        matches!(err, RolloutError::LiveTrackMismatch { declared: Track::Green, serving: Track::Blue, .. }),
        "{err}"
    );
    assert_eq!(f.kit.snapshot(&f.spec.id()), before);
    // A `from` that does not run is refused too, naming both releases.
    let err = f
        .engine
        .start(RolloutRequest::new(f.spec.clone(), f.v2.clone(), f.plan.clone()).from(f.v2.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2.0.0") && err.to_string().contains("1.0.0"), "{err}");
    assert!(f.kit.calls().iter().all(|c| matches!(c.method, Method::Status | Method::Weights)));
}
