//! Emergency rollbacks on the caller's word: of a running rollout (through its
//! handle or through the engine), of one paused until promoted, and of one whose
//! process died.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use std::time::Duration;

use common::{Fixture, LOCK_TTL, Strat, pct};
use deploy_core::engine::{DecisionKind, RolloutError, RolloutEvent, RolloutReport, RolloutRequest};
use deploy_core::error::Classify;
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, StepOutcome, Track, TrafficSplit};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::Method;

const REASON: &str = "pager: checkout 5xx at 12 %";

/// 20 % to the canary, a pause until promoted, then an analysis and more weight.
fn paused_plan() -> Plan {
    Canary::with_steps(vec![
        Step::SetWeight(pct(20)),
        Step::Pause(PauseKind::UntilPromoted),
        Step::Analyze(common::analysis("after-pause")),
        Step::SetWeight(pct(60)),
    ])
    .plan(&PlanInput::new(common::REPLICAS))
}

fn request(f: &Fixture, plan: Plan) -> RolloutRequest {
    RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone())
}

/// Invariant 2 plus the emergency's traces: the previous release serves 100 %,
/// nothing of the new one runs, traffic never went to an unready track, and the
/// report, the record and the history say it was an emergency with the reason.
fn assert_emergency_rolled_back(f: &Fixture, report: &RolloutReport) {
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{report:#?}");
    let cause = report.cause.as_ref().unwrap();
    assert_eq!(cause.kind, CauseKind::EmergencyRollback);
    assert!(cause.message.contains(REASON), "{cause}");
    let world = f.kit.snapshot(&f.spec.id());
    assert_eq!(world.weights, Some(TrafficSplit::all(Track::Stable)), "{world}");
    assert_eq!(world.serving(), [f.v1.version.clone()].into());
    assert!(!world.runs(&f.v2.version), "{world}");
    assert!(world.header_routes.is_empty());
    assert!(f.kit.unready_routing().is_empty(), "{:?}", f.kit.unready_routing());
    let record = &report.record;
    assert!(record.cause.as_ref().unwrap().to_string().starts_with("emergency rollback"), "{:?}", record.cause);
    assert!(record.logs.iter().any(|l| l.message.contains(REASON)), "{:?}", record.logs);
    let stored = f.kit.history().records();
    let stored = stored.iter().find(|r| r.id == record.id).unwrap();
    assert_eq!(stored.status, DeploymentStatus::RolledBack);
    assert_eq!(stored.cause, record.cause);
}

#[tokio::test(start_paused = true)]
async fn a_rollout_paused_until_promoted_rolls_back_at_once_without_its_analysis() {
    let f = Fixture::new(Strat::Canary);
    let mut handle = f.engine.start(request(&f, paused_plan())).await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::Paused { .. }) {
            tokio::time::sleep(Duration::from_secs(600)).await;
            handle.emergency_rollback(REASON);
        }
        events.push(e);
    }
    let report = handle.wait().await.unwrap();
    assert_emergency_rolled_back(&f, &report);
    // The pause step was interrupted; the analysis and the later weight never ran.
    let steps = &report.record.steps;
    let pause = steps.iter().find(|s| s.description.starts_with("pause")).unwrap();
    assert_eq!(pause.outcome, StepOutcome::Aborted);
    assert!(!steps.iter().any(|s| s.description.starts_with("analyze")), "{steps:#?}");
    assert!(!events.iter().any(|e| matches!(e, RolloutEvent::Measurement { .. })));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RolloutEvent::WeightChanged { split } if split.weight(Track::Canary) == pct(60)))
    );
    // The stream says what happened and why.
    assert!(events.iter().any(|e| matches!(
        e,
        RolloutEvent::Decision { kind: DecisionKind::EmergencyRollback { reason } } if reason == REASON
    )));
    let rollback = events.iter().find_map(|e| match e {
        RolloutEvent::RollbackStarted { cause } => Some(cause),
        _ => None,
    });
    assert_eq!(rollback.unwrap().kind, CauseKind::EmergencyRollback);
    // Stable was intact: traffic switched back without touching the platform's stable track.
    let stable_changes = f
        .kit
        .calls()
        .into_iter()
        .filter(|c| matches!(c.method, Method::Apply | Method::Scale) && c.detail.starts_with("stable"))
        .count();
    assert_eq!(stable_changes, 0);
}

#[tokio::test(start_paused = true)]
async fn the_engine_reaches_a_rollout_it_runs_without_the_handle() {
    let f = Fixture::new(Strat::Canary);
    let mut handle = f.engine.start(request(&f, paused_plan())).await.unwrap();
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::Paused { .. }) {
            break;
        }
    }
    let report = f.engine.emergency_rollback(&f.spec.id(), REASON).await.unwrap();
    assert_emergency_rolled_back(&f, &report);
    // The handle's caller sees the same end.
    assert_eq!(handle.wait().await.unwrap(), report);
    // Once it is over there is nothing left to roll back.
    let err = f.engine.emergency_rollback(&f.spec.id(), REASON).await.unwrap_err();
    assert!(matches!(err, RolloutError::NothingToResume { .. }), "{err}");
    assert!(err.is_not_found());
}

#[tokio::test(start_paused = true)]
async fn a_rollout_whose_process_died_is_rolled_back_from_its_saved_state() {
    let f = Fixture::new(Strat::Canary);
    // Saves: 1 at the start, then one per step; the third step (20 %) is the third save after it.
    f.kit.crash_after_saves(4);
    let handle = f.engine.start(request(&f, paused_plan())).await.unwrap();
    f.kit.crashed().await;
    handle.kill();
    assert_eq!(f.kit.snapshot(&f.spec.id()).weights.unwrap().weight(Track::Canary), pct(20));

    // Another process must wait for the dead holder's lease to lapse.
    let other = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
    let err = other.emergency_rollback(&f.spec.id(), REASON).await.unwrap_err();
    assert!(matches!(err, RolloutError::Locked { .. }), "{err}");
    tokio::time::advance(LOCK_TTL + Duration::from_secs(1)).await;
    let report = other.emergency_rollback(&f.spec.id(), REASON).await.unwrap();
    assert_emergency_rolled_back(&f, &report);
    assert_eq!(report.cause.unwrap().step, Some(3), "the step it would have run next");
    // The steps done before the crash are in the record, then the rollback.
    let outcomes: Vec<_> = report.record.steps.iter().map(|s| s.outcome.clone()).collect();
    assert_eq!(outcomes, vec![StepOutcome::Succeeded; 4]);
    assert!(report.record.steps.last().unwrap().description.starts_with("roll back to 1.0.0"));
    assert_eq!(f.kit.history().records().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_past_promotion_the_previous_release_is_reapplied_and_awaited_first() {
    let f = Fixture::new(Strat::Canary);
    let plan = Canary::with_steps(vec![Step::SetWeight(pct(50))])
        .scale_down_delay(common::secs(600))
        .plan(&PlanInput::new(common::REPLICAS));
    assert!(matches!(plan.steps[3], Step::Promote), "{plan}");
    // The save after the promotion (stable now runs 2.0.0 with all traffic).
    f.kit.crash_after_saves(5);
    let handle = f.engine.start(request(&f, plan)).await.unwrap();
    f.kit.crashed().await;
    handle.kill();
    let world = f.kit.snapshot(&f.spec.id());
    assert_eq!(world.tracks[&Track::Stable].version, f.v2.version);

    // The same process name (a restarted pod) takes its own lock over at once.
    let report = f.engine.emergency_rollback(&f.spec.id(), REASON).await.unwrap();
    assert_emergency_rolled_back(&f, &report);
    let restore = &report.record.steps.last().unwrap().details;
    assert!(restore.iter().any(|d| d.starts_with("restoring 1.0.0 on stable")), "{restore:?}");
}
