//! "Not enough data" decides nothing by itself: an inconclusive analysis pauses the
//! rollout for a decision by default, or rolls back or goes on as its policy says;
//! each is in the events and the record. An analysis that could pass without
//! evaluating any metric is rejected before the rollout starts.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use common::{Fixture, Strat, pct, secs};
use deploy_core::analysis::{AnalysisOutcome, AnalysisSpec, InconclusivePolicy, JudgeSpec, MetricCheck};
use deploy_core::engine::{DecisionKind, RolloutError, RolloutEvent, RolloutHandle, RolloutRequest};
use deploy_core::metrics::MetricValue;
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, Track};
use deploy_core::plan::{PauseKind, Plan};
use deploy_core::strategy::{Canary, FlaggerAnalysis, PlanInput, Strategy};
use deploy_core::testkit::MetricScript;

fn analysis(policy: InconclusivePolicy) -> AnalysisSpec {
    AnalysisSpec::new("errors")
        .metric(MetricCheck::new("error-rate", "q", JudgeSpec::max(0.01)))
        .interval(secs(30))
        .count(2)
        .inconclusive_limit(1)
        .on_inconclusive(policy)
}

fn plan(policy: InconclusivePolicy) -> Plan {
    Canary::progressive([50, 100].map(pct), &analysis(policy)).plan(&PlanInput::new(common::REPLICAS))
}

fn silent_canary(f: &Fixture) {
    f.kit.metric_values().script("error-rate", Track::Canary, MetricScript::Constant(MetricValue::Empty));
}

fn request(f: &Fixture, plan: Plan) -> RolloutRequest {
    RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone())
}

/// Reads events until the rollout pauses after an inconclusive analysis; returns
/// them (the pause included).
async fn until_inconclusive_pause(handle: &mut RolloutHandle) -> Vec<RolloutEvent> {
    let mut seen = Vec::new();
    let mut inconclusive = false;
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::AnalysisFinished { outcome: AnalysisOutcome::Inconclusive, .. }) {
            inconclusive = true;
        }
        let paused = inconclusive && matches!(e, RolloutEvent::Paused { kind: PauseKind::UntilPromoted, .. });
        seen.push(e);
        if paused {
            return seen;
        }
    }
    panic!("the rollout ended without pausing: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn silence_pauses_by_default_and_a_promotion_goes_on() {
    let f = Fixture::new(Strat::Canary);
    silent_canary(&f);
    let mut handle = f.engine.start(request(&f, plan(InconclusivePolicy::default()))).await.unwrap();
    let events = until_inconclusive_pause(&mut handle).await;
    assert!(
        events.iter().any(|e| matches!(e, RolloutEvent::Decision { kind: DecisionKind::InconclusivePause { .. } })),
        "{events:?}"
    );
    // While paused, nothing was rolled back and the canary still runs the new release.
    assert!(!events.iter().any(|e| matches!(e, RolloutEvent::RollbackStarted { .. })));
    assert!(f.kit.snapshot(&f.spec.id()).runs(&f.v2.version));
    // Paused for good: an hour later it still waits.
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    assert!(f.kit.history().records().iter().all(|r| r.status == DeploymentStatus::InProgress));
    // Data comes back; the caller promotes; the rollout goes on and succeeds.
    f.kit.metric_values().set("error-rate", Track::Canary, 0.001);
    handle.promote().unwrap();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let decisions = &report.record.inconclusive_decisions;
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0].policy, InconclusivePolicy::Pause);
    assert_eq!(decisions[0].resolution.as_deref(), Some("promoted by the caller"));
    assert!(decisions[0].reason.contains("was inconclusive 2 times"), "{}", decisions[0].reason);
    assert!(report.record.logs.iter().any(|l| l.message.contains("pausing until the caller promotes")));
    // The stored record says the same.
    let stored = f.kit.history().records().into_iter().find(|r| r.id == report.record.id).unwrap();
    assert_eq!(stored.inconclusive_decisions, report.record.inconclusive_decisions);
    assert_eq!(stored.analyses.len(), 2, "both analyses with their evidence");
}

#[tokio::test(start_paused = true)]
async fn another_process_can_promote_the_pause() {
    let f = Fixture::new(Strat::Canary);
    silent_canary(&f);
    let mut handle = f.engine.start(request(&f, plan(InconclusivePolicy::Pause))).await.unwrap();
    until_inconclusive_pause(&mut handle).await;
    f.kit.metric_values().set("error-rate", Track::Canary, 0.001);
    // Another engine on the same stores (another process) decides.
    let other = common::Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
    other.promote(&f.spec.id()).await.unwrap();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_eq!(report.record.inconclusive_decisions[0].resolution.as_deref(), Some("promoted by the caller"));
    // Nothing waits any more: a second promotion is refused.
    assert!(other.promote(&f.spec.id()).await.is_err(), "nothing waits any more");
}

/// A crash during the pause after an inconclusive analysis: engine A pauses, its
/// process dies (its task is killed and the engine dropped); engine B resumes on
/// the same stores and shows the same pause without running the analysis again
/// (no metric query), then a promotion from B goes on.
#[tokio::test(start_paused = true)]
async fn a_crash_during_the_pause_keeps_the_outcome_and_a_resumed_engine_waits_for_the_decision() {
    let f = Fixture::new(Strat::Canary);
    silent_canary(&f);
    let Fixture { kit, engine, smoke, spec, strat, v1, v2, .. } = f;
    let request = RolloutRequest::new(spec.clone(), v2.clone(), plan(InconclusivePolicy::Pause)).from(v1.clone());
    let mut handle = engine.start(request).await.unwrap();
    until_inconclusive_pause(&mut handle).await;
    let queried = kit.metric_values().queries("error-rate", Track::Canary);
    assert_eq!(queried, 2, "the analysis measured twice (inconclusive limit 1)");
    // The state saved with the pause keeps the analysis' outcome and the open decision.
    let saved = kit.state_store().load(&spec.id()).await.unwrap().unwrap().value;
    let analysis = saved.record().analyses.last().unwrap();
    assert_eq!(analysis.report.outcome, AnalysisOutcome::Inconclusive);
    let decision = saved.record().inconclusive_decisions.last().unwrap();
    assert_eq!((decision.step, decision.resolution.as_ref()), (analysis.step, None));
    let paused_step = analysis.step;
    // The crash.
    handle.kill();
    drop(engine);

    let b = common::Fixture::engine_on(&kit, &smoke, strat, "engine-b");
    let mut resumed = common::resume_when_free(&b, &spec.id()).await;
    let mut seen = Vec::new();
    loop {
        let e = resumed.next_event().await.unwrap();
        let paused = matches!(e, RolloutEvent::Paused { kind: PauseKind::UntilPromoted, .. });
        seen.push(e);
        if paused {
            break;
        }
    }
    assert!(
        seen.iter().any(|e| matches!(e, RolloutEvent::Paused { index, .. } if *index == paused_step)),
        "the same pause, at step {paused_step}: {seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(e, RolloutEvent::Measurement { .. } | RolloutEvent::AnalysisFinished { .. })),
        "the analysis did not run again: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, RolloutEvent::Decision { kind: DecisionKind::InconclusivePauseResumed { .. } })),
        "{seen:?}"
    );
    assert_eq!(kit.metric_values().queries("error-rate", Track::Canary), queried, "no new metric query");
    // It keeps waiting: an hour later, still no query and still in progress.
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    assert_eq!(kit.metric_values().queries("error-rate", Track::Canary), queried);
    assert!(kit.history().records().iter().all(|r| r.status == DeploymentStatus::InProgress));
    assert!(kit.snapshot(&spec.id()).runs(&v2.version), "nothing rolled back while paused");

    // Data comes back; B promotes; the rollout goes on and succeeds.
    kit.metric_values().set("error-rate", Track::Canary, 0.001);
    b.promote(&spec.id()).await.unwrap();
    let report = resumed.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let decisions = &report.record.inconclusive_decisions;
    assert_eq!(decisions.len(), 1, "one pause, not a second one after the resume: {decisions:?}");
    assert_eq!(decisions[0].resolution.as_deref(), Some("promoted by the caller"));
    // The analyses: the inconclusive one from before the crash, kept as saved, then
    // the next step's, which ran on B.
    assert_eq!(report.record.analyses.len(), 2, "{:?}", report.record.analyses);
    assert_eq!(&report.record.analyses[0], analysis);
    assert_eq!(report.record.analyses[1].report.outcome, AnalysisOutcome::Successful);
    assert!(deploy_core::analysis::replay(&report.record).reproduced());
}

#[tokio::test(start_paused = true)]
async fn an_abort_during_the_pause_rolls_back() {
    let f = Fixture::new(Strat::Canary);
    silent_canary(&f);
    let mut handle = f.engine.start(request(&f, plan(InconclusivePolicy::Pause))).await.unwrap();
    until_inconclusive_pause(&mut handle).await;
    handle.abort();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    assert_eq!(report.cause.unwrap().kind, CauseKind::Aborted);
    assert!(!f.kit.snapshot(&f.spec.id()).runs(&f.v2.version));
}

#[tokio::test(start_paused = true)]
async fn the_rollback_policy_rolls_back_and_the_promote_policy_goes_on() {
    let f = Fixture::new(Strat::Canary);
    silent_canary(&f);
    let report = f.engine.run(request(&f, plan(InconclusivePolicy::Rollback))).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    assert_eq!(report.cause.unwrap().kind, CauseKind::AnalysisInconclusive);

    let f = Fixture::new(Strat::Canary);
    silent_canary(&f);
    let promoting = plan(InconclusivePolicy::Promote);
    let analyses: Vec<(usize, InconclusivePolicy)> = promoting
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind() == "analyze")
        .map(|(i, _)| (i, InconclusivePolicy::Promote))
        .collect();
    let report = f.engine.run(request(&f, promoting)).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded);
    let policies: Vec<_> = report.record.inconclusive_decisions.iter().map(|d| (d.step, d.policy)).collect();
    assert_eq!(policies.len(), 2);
    assert_eq!(policies, analyses);
    assert!(report.record.logs.iter().any(|l| l.message.contains("as its policy on inconclusive analyses says")));
}

#[tokio::test(start_paused = true)]
async fn flagger_shorthand_pauses_on_silence_instead_of_rolling_back() {
    let f = Fixture::new(Strat::Flagger);
    silent_canary(&f);
    let flagger = FlaggerAnalysis::new(pct(50), pct(50), secs(30), 3).metric(MetricCheck::new(
        "error-rate",
        "q",
        JudgeSpec::max(0.01),
    ));
    let plan = Canary::flagger(&flagger).plan(&PlanInput::new(common::REPLICAS));
    let mut handle = f.engine.start(request(&f, plan)).await.unwrap();
    let events = until_inconclusive_pause(&mut handle).await;
    let silent = events.iter().filter(|e| matches!(e, RolloutEvent::Measurement { .. })).count();
    assert_eq!(silent, 3, "threshold 3: two silent checks tolerated, the third pauses");
    handle.abort();
    assert_eq!(handle.wait().await.unwrap().status, DeploymentStatus::RolledBack);
}

#[tokio::test(start_paused = true)]
async fn an_analysis_that_could_pass_on_silence_is_rejected_before_the_rollout() {
    let f = Fixture::new(Strat::Canary);
    let lenient = analysis(InconclusivePolicy::Pause).inconclusive_limit(2);
    let plan = Canary::progressive([50, 100].map(pct), &lenient).plan(&PlanInput::new(common::REPLICAS));
    let err = f.engine.start(request(&f, plan)).await.unwrap_err();
    assert!(matches!(err, RolloutError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("without evaluating any metric"), "{err}");
    assert!(f.kit.calls().is_empty(), "nothing was touched: {:?}", f.kit.calls());
}
