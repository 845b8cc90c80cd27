//! The engine's behaviour on the test kit: outcomes, events, records, controls,
//! locks and validation.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use std::time::Duration;

use common::{Fixture, Strat, pct, secs};
use deploy_core::engine::{RolloutError, RolloutEvent};
use deploy_core::error::Classify;
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, StepOutcome, Track, TrafficSplit};
use deploy_core::plan::{PauseKind, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{Fault, Method};
use deploy_core::traffic::RouterCapabilities;

async fn events_until_end(handle: &mut deploy_core::engine::RolloutHandle) -> Vec<RolloutEvent> {
    let mut events = Vec::new();
    while let Some(e) = handle.next_event().await {
        events.push(e);
    }
    events
}

#[tokio::test(start_paused = true)]
async fn two_rollouts_of_one_app_exactly_one_proceeds() {
    let f = Fixture::new(Strat::Canary);
    let second = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
    let (a, b) = tokio::join!(f.engine.start(f.request()), second.start(f.request()));
    let (winner, loser) = match (a, b) {
        (Ok(h), Err(e)) | (Err(e), Ok(h)) => (h, e),
        (a, b) => panic!("exactly one must start: {a:?} {b:?}"),
    };
    assert!(
        matches!(&loser, RolloutError::Locked { holder, .. } if holder == "engine-a" || holder == "engine-b"),
        "{loser}"
    );
    assert!(loser.is_conflict());
    // The loser touched nothing: one deployment in the history, one rollout's saves.
    let report = winner.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded);
    assert_eq!(f.kit.history().records().len(), 1);
    // Once it is done the application is free again (and 2.0.0 is what serves).
    let back =
        deploy_core::engine::RolloutRequest::new(f.spec.clone(), f.v1.clone(), f.plan.clone()).from(f.v2.clone());
    let again = second.run(back).await.unwrap();
    assert_eq!(again.status, DeploymentStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_canary_is_promoted_and_explains_itself() {
    let f = Fixture::new(Strat::Canary);
    let mut handle = f.engine.start(f.request()).await.unwrap();
    let events = events_until_end(&mut handle).await;
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded);
    let weights: Vec<String> = events
        .iter()
        .filter_map(|e| if let RolloutEvent::WeightChanged { split } = e { Some(split.to_string()) } else { None })
        .collect();
    assert_eq!(
        weights,
        [
            "stable=90% canary=10%",
            "stable=75% canary=25%",
            "stable=50% canary=50%",
            "stable=25% canary=75%",
            "canary=100%",
            "stable=100%"
        ]
    );
    let measurements = events.iter().filter(|e| matches!(e, RolloutEvent::Measurement { .. })).count();
    assert_eq!(measurements, 5 * 2 * 2, "5 analyses x 2 rounds x (metric + health check)");
    assert!(matches!(events.last(), Some(RolloutEvent::Finished { status: DeploymentStatus::Succeeded, cause: None })));
    // The record has every step with its decisions.
    assert_eq!(report.record.steps.len(), f.plan.steps.len());
    assert!(report.record.steps.iter().all(|s| s.outcome == StepOutcome::Succeeded));
    let analysis = &report.record.steps[4];
    assert!(
        analysis.details.iter().any(|d| d.contains("error-rate: successful value 0.001")),
        "{:?}",
        analysis.details
    );
    // Every weight change was read back from the router.
    let reads = f.kit.calls().iter().filter(|c| c.method == Method::Weights).count();
    assert_eq!(reads, weights.len());
}

#[tokio::test(start_paused = true)]
async fn a_bad_release_is_rolled_back_when_its_error_rate_fails_analysis() {
    let f = Fixture::new(Strat::Canary);
    f.kit.metric_values().set("error-rate", Track::Canary, 0.07);
    let report = f.engine.run(f.request()).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    let cause = report.cause.unwrap();
    assert_eq!(cause.kind, CauseKind::AnalysisFailed);
    assert_eq!(cause.step, Some(4), "the first analysis, after 10 %");
    assert!(cause.message.contains("0.07 > 0.01"), "{cause}");
    let world = f.kit.snapshot(&f.spec.id());
    assert_eq!(world.weights, Some(TrafficSplit::all(Track::Stable)));
    assert!(!world.tracks.contains_key(&Track::Canary));
    let rollback = report.record.steps.last().unwrap();
    assert_eq!(rollback.description, "roll back to 1.0.0");
    assert!(rollback.details.iter().any(|d| d.contains("removed canary")), "{:?}", rollback.details);
    assert_eq!(f.kit.history().records()[0].status, DeploymentStatus::RolledBack);
}

#[tokio::test(start_paused = true)]
async fn without_a_weighted_router_weights_are_replica_ratios() {
    let f = Fixture::new(Strat::CanaryReplicaRatio);
    let report = f.engine.run(f.request()).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let scales: Vec<String> =
        f.kit.calls().into_iter().filter(|c| c.method == Method::Scale).map(|c| c.detail).collect();
    // 4 replicas: 25 % = 1 canary + 3 stable, 50 % = 2 + 2, 100 % = 4 + 0, then promotion.
    assert_eq!(scales, ["canary x1", "stable x3", "canary x2", "stable x2", "canary x4", "stable x0", "canary x0"]);
    assert!(f.kit.calls().iter().all(|c| c.method != Method::SetWeights));
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_and_recorded() {
    let f = Fixture::new(Strat::Canary);
    f.kit.fail_call(Method::Apply, 1, Fault::Retryable);
    f.kit.fail_call(Method::SetWeights, 2, Fault::Retryable);
    let report = f.engine.run(f.request()).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded);
    let retries: Vec<&String> =
        report.record.steps.iter().flat_map(|s| &s.details).filter(|d| d.contains("retry 1 of 2")).collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
}

#[tokio::test(start_paused = true)]
async fn weights_read_back_wrong_are_set_again_then_fail() {
    let f = Fixture::new(Strat::Canary);
    f.kit.misreport_weights(1);
    let report = f.engine.run(f.request()).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded);
    assert!(report.record.steps.iter().flat_map(|s| &s.details).any(|d| d.contains("setting it again")));

    let f = Fixture::new(Strat::Canary);
    f.kit.misreport_weights(3);
    let report = f.engine.run(f.request()).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    assert_eq!(report.cause.unwrap().kind, CauseKind::WeightMismatch);
}

#[tokio::test(start_paused = true)]
async fn a_doomed_track_fails_fast_instead_of_waiting_out_the_deadline() {
    let f = Fixture::new(Strat::Canary);
    f.kit.doomed(&f.v2.version, "ErrImagePull: manifest unknown");
    let started = tokio::time::Instant::now();
    let report = f.engine.run(f.request()).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    let cause = report.cause.unwrap();
    assert_eq!(cause.kind, CauseKind::Doomed);
    assert!(cause.message.contains("manifest unknown"), "{cause}");
    assert!(started.elapsed() < Duration::from_secs(120), "waited {:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn promote_ends_a_pause_and_abort_rolls_back() {
    let f = Fixture::new(Strat::Canary);
    let plan = Canary::with_steps(vec![Step::SetWeight(pct(20)), Step::Pause(PauseKind::UntilPromoted)])
        .plan(&PlanInput::new(common::REPLICAS));
    let request =
        deploy_core::engine::RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan.clone()).from(f.v1.clone());
    let mut handle = f.engine.start(request.clone()).await.unwrap();
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::Paused { .. }) {
            tokio::time::sleep(Duration::from_secs(3600)).await; // nothing moves while paused
            assert_eq!(f.kit.snapshot(&f.spec.id()).weights.unwrap().weight(Track::Canary), pct(20));
            handle.promote().unwrap();
        }
        if matches!(e, RolloutEvent::Promoted { .. }) {
            break;
        }
    }
    assert_eq!(handle.wait().await.unwrap().status, DeploymentStatus::Succeeded);

    let f = Fixture::new(Strat::Canary);
    let request = deploy_core::engine::RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone());
    let mut handle = f.engine.start(request).await.unwrap();
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::Paused { .. }) {
            handle.abort();
            break;
        }
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    assert_eq!(report.cause.unwrap().kind, CauseKind::Aborted);
    assert_eq!(f.kit.snapshot(&f.spec.id()).weights, Some(TrafficSplit::all(Track::Stable)));
}

#[tokio::test(start_paused = true)]
async fn blue_green_post_promotion_failure_switches_back_at_once() {
    let f = Fixture::new(Strat::BlueGreen);
    let mut handle = f.engine.start(f.request()).await.unwrap();
    while let Some(e) = handle.next_event().await {
        if let RolloutEvent::StepStarted { description, .. } = &e
            && description.starts_with("analyze post-promotion")
        {
            f.kit.metric_values().set("error-rate", Track::Green, 0.5);
        }
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    let rollback = report.record.steps.last().unwrap();
    assert!(rollback.details.iter().any(|d| d == "blue still runs 1.0.0 and is ready"), "{:?}", rollback.details);
    // Restoring blue needed no platform change: green's deployment is the only apply.
    let applies: Vec<String> =
        f.kit.calls().into_iter().filter(|c| c.method == Method::Apply).map(|c| c.detail).collect();
    assert_eq!(applies, ["green 2.0.0 x4"]);
    assert_eq!(f.kit.snapshot(&f.spec.id()).weights, Some(TrafficSplit::all(Track::Blue)));
}

#[tokio::test(start_paused = true)]
async fn plans_the_router_cannot_carry_out_are_rejected_before_anything_runs() {
    let f = common::with_caps(Strat::Canary, RouterCapabilities::weights_only());
    let err = f.engine.start(f.request()).await.unwrap_err();
    let RolloutError::Invalid { errors, .. } = &err else { panic!("{err}") };
    assert!(errors.to_string().contains("cannot route by header"), "{errors}");
    assert!(f.kit.calls().is_empty());
    assert!(f.kit.saved_states().is_empty());

    // Unknown judges and health checks are named too.
    let f = Fixture::new(Strat::Rolling);
    let spec = deploy_core::analysis::AnalysisSpec::new("x")
        .metric(deploy_core::analysis::MetricCheck::new(
            "latency",
            "q",
            deploy_core::analysis::JudgeSpec::custom("mann-whitney", serde_json::json!({})),
        ))
        .health_check("http");
    let plan = deploy_core::strategy::RollingUpdate::default().analysis(spec).plan(&PlanInput::new(2));
    let request = deploy_core::engine::RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan);
    let err = f.engine.validate(&request).unwrap_err().to_string();
    assert!(err.contains("mann-whitney") && err.contains("http"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_custom_judge_plugs_in_without_engine_changes() {
    use deploy_core::analysis::{Judge, JudgeInput, JudgeSpec, MeasurementOutcome, MetricCheck, Verdict};
    use deploy_core::metrics::MetricsError;
    use std::sync::Arc;

    /// Canary versus baseline: the canary may not be more than `ratio` times worse.
    struct Compare {
        ratio: f64,
    }
    #[deploy_core::async_trait]
    impl Judge for Compare {
        fn name(&self) -> &str {
            "compare"
        }
        async fn judge(&self, input: &JudgeInput<'_>) -> Result<Verdict, MetricsError> {
            let canary = input.metrics.query(input.candidate).await?.as_single();
            let base = input.metrics.query(input.baseline).await?.as_single();
            Ok(match (canary, base) {
                (Some(c), Some(b)) if c <= b * self.ratio => {
                    Verdict::new(MeasurementOutcome::Successful, Some(c), "ok")
                }
                (Some(c), Some(b)) => Verdict::new(MeasurementOutcome::Failed, Some(c), format!("{c} vs baseline {b}")),
                _ => Verdict::no_data("no data"),
            })
        }
    }
    let f = Fixture::new(Strat::Canary);
    let engine =
        deploy_core::engine::RolloutEngine::builder(f.kit.platform(), f.kit.state_store(), f.kit.history_store())
            .router(f.kit.router())
            .metrics(f.kit.metrics())
            .judge(
                "compare",
                Arc::new(|p: &serde_json::Value| -> Result<Arc<dyn Judge>, String> {
                    let ratio = p.get("ratio").and_then(serde_json::Value::as_f64).ok_or("ratio is required")?;
                    Ok(Arc::new(Compare { ratio }))
                }),
            )
            .config(common::config("engine-c"))
            .build();
    let analysis = deploy_core::analysis::AnalysisSpec::new("vs-baseline").metric(MetricCheck::new(
        "latency",
        "q",
        JudgeSpec::custom("compare", serde_json::json!({"ratio": 1.5})),
    ));
    let plan = Canary::progressive([pct(50)], &analysis).plan(&PlanInput::new(2));
    f.kit.metric_values().set("latency", Track::Stable, 100.0);
    f.kit.metric_values().set("latency", Track::Canary, 400.0);
    let request = deploy_core::engine::RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone());
    let report = engine.run(request).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    assert!(report.cause.unwrap().message.contains("400 vs baseline 100"));
    let _ = secs(1);
}

/// A reader that never reads does not stall the rollout nor grow its queue: the
/// rollout finishes, the queue holds its capacity, and the late reader gets one
/// `Lagged` with the number of events dropped, then the newest events in order.
#[tokio::test(start_paused = true)]
async fn a_reader_that_never_reads_gets_lagged_then_the_newest_events() {
    // The same rollout read as it goes, for the full list of events.
    let reference = Fixture::new(Strat::Canary);
    let mut handle = reference.engine.start(reference.request()).await.unwrap();
    let all: Vec<String> = events_until_end(&mut handle).await.iter().map(ToString::to_string).collect();
    assert_eq!(handle.wait().await.unwrap().status, DeploymentStatus::Succeeded);
    const CAPACITY: usize = 4;
    assert!(all.len() > CAPACITY * 2, "the rollout emits more than the queue holds: {all:?}");

    let mut f = Fixture::new(Strat::Canary);
    f.engine =
        deploy_core::engine::RolloutEngine::builder(f.kit.platform(), f.kit.state_store(), f.kit.history_store())
            .metrics(f.kit.metrics())
            .health_check(f.smoke.clone())
            .router(f.kit.router())
            .config(common::config("engine-a").event_capacity(CAPACITY))
            .build();
    let mut handle = f.engine.start(f.request()).await.unwrap();
    // Nobody reads while the rollout runs to its end.
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = f.kit.history().records().first().is_some_and(|r| r.status.is_terminal());
        if done && f.kit.state_store().load(&f.spec.id()).await.unwrap().is_none() {
            break;
        }
    }
    let record = f.kit.history().records().remove(0);
    assert_eq!(record.status, DeploymentStatus::Succeeded, "the rollout did not wait for its reader");
    assert!(format!("{handle:?}").contains(&format!("queued: {CAPACITY}")), "{handle:?}");
    let late = events_until_end(&mut handle).await;
    let missed = u64::try_from(all.len() - CAPACITY).unwrap();
    assert_eq!(late[0], RolloutEvent::Lagged { missed }, "{late:?}");
    let newest: Vec<String> = late[1..].iter().map(ToString::to_string).collect();
    assert_eq!(newest, all[all.len() - CAPACITY..], "the newest events, in order");
    assert!(matches!(late.last(), Some(RolloutEvent::Finished { status: DeploymentStatus::Succeeded, .. })));
    assert_eq!(handle.wait().await.unwrap().status, DeploymentStatus::Succeeded);
}

/// The handle is a `Stream` of the same events `next_event` gives.
#[tokio::test(start_paused = true)]
async fn the_handle_is_a_stream_of_its_events() {
    use futures_util::StreamExt;
    let f = Fixture::new(Strat::Canary);
    let handle = f.engine.start(f.request()).await.unwrap();
    let events: Vec<RolloutEvent> = handle.collect().await;
    assert!(matches!(events.first(), Some(RolloutEvent::Started { .. })), "{events:?}");
    assert!(matches!(events.last(), Some(RolloutEvent::Finished { status: DeploymentStatus::Succeeded, .. })));
    assert!(!events.iter().any(|e| matches!(e, RolloutEvent::Lagged { .. })), "a reader that keeps up never lags");
}
