//! A pipeline that deploys through the rollout engine, on the test kit.

use std::sync::Arc;

use super::fixtures::{FakeBuilder, FakeScanner};
use super::*;
use crate::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use crate::build::BuildRequest;
use crate::engine::{EngineConfig, RolloutEngine, RolloutRequest};
use crate::model::{DeploymentStatus, HumanDuration, ImageRef, Percent, Release, Track, TrafficSplit};
use crate::scan::{ScanPolicy, Severity};
use crate::strategy::{Canary, PlanInput, Strategy};
use crate::testkit::{self, TestKit};

struct World {
    kit: TestKit,
    deployer: Arc<EngineDeployer>,
    v1: Release,
    v2: Release,
    app: AppId,
}

fn world() -> World {
    let kit = TestKit::new();
    let (spec, v1, v2) = testkit::sample_app(4);
    kit.seed(&spec, Track::Stable, &v1);
    for track in Track::ALL {
        kit.metric_values().set("error-rate", track, 0.001);
    }
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .config(EngineConfig::default().holder("pipeline"))
        .build();
    let analysis = AnalysisSpec::new("error-rate")
        .metric(MetricCheck::new("error-rate", "errors{track=\"{{track}}\"}", JudgeSpec::max(0.01)))
        .interval(HumanDuration::new(std::time::Duration::from_secs(30)))
        .count(2);
    let weights = [25, 50, 100].map(|w| Percent::new(w).unwrap());
    let plan = Canary::progressive(weights, &analysis).plan(&PlanInput::new(spec.replicas));
    let request = RolloutRequest::new(spec.clone(), v2.clone(), plan).from(v1.clone());
    let deployer = Arc::new(EngineDeployer::new(engine, request));
    World { kit, deployer, v1, v2, app: spec.id() }
}

/// build → scan → gate → deploy → smoke test; the smoke test passes while the
/// new release serves all traffic and `smoke_passes` says so.
fn pipeline(w: &World, smoke_passes: bool) -> Pipeline {
    let image = ImageRef::parse("registry.local/shop/checkout:2.0.0").unwrap();
    let (kit, app, v2) = (w.kit.clone(), w.app.clone(), w.v2.version.clone());
    Pipeline::builder()
        .stage(BuildStage::new(Arc::new(FakeBuilder), BuildRequest::new(".").tag(image)))
        .stage(SecurityScanStage::new(
            Arc::new(FakeScanner { findings: vec![Severity::Low], fail: false }),
            ScanPolicy::default(),
        ))
        .stage(QualityGate::new().at_most("vulnerabilities_critical", 0.0))
        .stage(DeployStage::new(w.deployer.clone()))
        .stage(FnStage::new("smoke", StageKind::SmokeTest, move |_| {
            let serving = kit.snapshot(&app).serving();
            let expected = v2.clone();
            async move {
                if !smoke_passes {
                    return Err(StageError::failed("GET /checkout: 500"));
                }
                if serving != [expected.clone()].into() {
                    return Err(StageError::failed(format!("{expected} does not serve alone: {serving:?}")));
                }
                Ok(StageOutput::default())
            }
        }))
        .rollback(RollbackStage::new(w.deployer.clone()))
        .build()
}

fn assert_previous_release_serves_alone(w: &World) {
    let snapshot = w.kit.snapshot(&w.app);
    assert_eq!(snapshot.weights, Some(TrafficSplit::all(Track::Stable)), "{snapshot}");
    assert_eq!(snapshot.serving(), [w.v1.version.clone()].into());
    assert!(!snapshot.runs(&w.v2.version), "{snapshot}");
    assert!(w.kit.unready_routing().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_healthy_release_goes_through_every_stage() {
    let w = world();
    let run = pipeline(&w, true).run(RunOptions::new("main")).await;
    assert_eq!(run.status, PipelineStatus::Succeeded, "{run:#?}");
    let deploy = &run.stages[3];
    assert_eq!(deploy.artifacts.release, Some(w.v2.version.clone()));
    assert_eq!(deploy.artifacts.rollout_status, Some(DeploymentStatus::Succeeded));
    // The rollout's events are the stage's logs.
    let logs: Vec<&str> = deploy.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(logs[0].starts_with("started canary rollout"), "{logs:?}");
    assert!(logs.contains(&"traffic stable=50% canary=50%"), "{logs:?}");
    assert_eq!(logs.last(), Some(&"finished: succeeded"));
    assert!(run.rollback.is_none());
    assert_eq!(w.kit.snapshot(&w.app).serving(), [w.v2.version.clone()].into());
}

#[tokio::test(start_paused = true)]
async fn a_bad_release_fails_the_deploy_stage_and_the_previous_release_serves() {
    let w = world();
    w.kit.metric_values().set("error-rate", Track::Canary, 0.2);
    let run = pipeline(&w, true).run(RunOptions::new("main")).await;
    assert_eq!(run.status, PipelineStatus::Failed);
    let deploy = run.failed_stage().unwrap();
    assert_eq!(deploy.name, "deploy");
    let error = deploy.error.as_deref().unwrap();
    assert!(error.contains("rolled back: analysis failed at step"), "{error}");
    assert!(error.contains("error-rate"), "{error}");
    assert!(deploy.logs.iter().any(|l| l.level == LogLevel::Warn && l.message.starts_with("rolling back")));
    assert_eq!(run.stages[4].status, StageStatus::Skipped);
    let rollback = run.rollback.as_ref().unwrap();
    assert_eq!(rollback.status, StageStatus::Succeeded, "{rollback:#?}");
    assert_eq!(rollback.artifacts.restored, Some(w.v1.version.clone()));
    assert_previous_release_serves_alone(&w);
    assert_eq!(w.kit.history().records().len(), 1, "the engine's own rollback was enough");
}

#[tokio::test(start_paused = true)]
async fn a_failed_smoke_test_after_a_good_rollout_restores_the_previous_release() {
    let w = world();
    let run = pipeline(&w, false).run(RunOptions::new("main")).await;
    assert_eq!(run.status, PipelineStatus::Failed);
    assert_eq!(run.failed_stage().unwrap().name, "smoke");
    assert_eq!(run.stages[3].status, StageStatus::Succeeded);
    let rollback = run.rollback.as_ref().unwrap();
    assert_eq!(rollback.status, StageStatus::Succeeded, "{rollback:#?}");
    assert_eq!(rollback.artifacts.restored, Some(w.v1.version.clone()));
    assert_previous_release_serves_alone(&w);
    let records = w.kit.history().records();
    let statuses: Vec<_> = records.iter().map(|r| (r.to.version.to_string(), r.status)).collect();
    assert_eq!(
        statuses,
        [("2.0.0".to_owned(), DeploymentStatus::Succeeded), ("1.0.0".to_owned(), DeploymentStatus::Succeeded)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_deploy_gets_an_emergency_rollback() {
    let w = world();
    let token = CancellationToken::new();
    let canceller = token.clone();
    tokio::spawn(async move {
        // Mid-rollout: the first analysis runs 60 s after the canary is ready.
        tokio::time::sleep(std::time::Duration::from_secs(20)).await;
        canceller.cancel();
    });
    let run = pipeline(&w, true).run(RunOptions::new("main").cancellation(token)).await;
    assert_eq!(run.status, PipelineStatus::Cancelled);
    assert_eq!(run.stages[3].status, StageStatus::Cancelled);
    let rollback = run.rollback.as_ref().unwrap();
    assert_eq!(rollback.status, StageStatus::Succeeded, "{rollback:#?}");
    assert!(rollback.logs[0].message.starts_with("emergency rollback of rollout"), "{:?}", rollback.logs);
    assert_previous_release_serves_alone(&w);
    let record = &w.kit.history().records()[0];
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    assert!(record.cause.as_ref().unwrap().to_string().contains("emergency rollback"), "{:?}", record.cause);
}
