use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::fixtures::*;
use super::*;
use crate::build::BuildRequest;
use crate::model::ImageRef;
use crate::notify::NotificationKind;
use crate::scan::{ScanPolicy, Severity, SeverityLimits};

fn full(deployer: Arc<FakeDeployer>, scanner: FakeScanner, notifier: Arc<RecordingNotifier>) -> Pipeline {
    let request = BuildRequest::new(".").tag(ImageRef::parse("localhost:5000/web:1.0").unwrap());
    Pipeline::builder()
        .stage(BuildStage::new(Arc::new(FakeBuilder), request))
        .stage(FnStage::new("unit-tests", StageKind::Test, |_| async {
            Ok(StageOutput::default().value("coverage", "85"))
        }))
        .stage(SecurityScanStage::new(
            Arc::new(scanner),
            ScanPolicy::default().max_vulnerabilities(SeverityLimits::none().critical(0).high(1)),
        ))
        .stage(QualityGate::new().at_least("coverage", 80.0))
        .stage(PushStage::new(Arc::new(FakeRegistry)))
        .stage(DeployStage::new(deployer.clone()))
        .stage(FnStage::new("smoke", StageKind::SmokeTest, |ctx| async move {
            ctx.artifacts.require_deployment()?;
            Ok(StageOutput::default())
        }))
        .rollback(RollbackStage::new(deployer))
        .notifier(notifier)
        .build()
}

fn clean() -> FakeScanner {
    FakeScanner { findings: vec![Severity::High, Severity::Low], fail: false }
}

#[tokio::test]
async fn a_good_run_passes_artifacts_along_and_notifies() {
    let deployer = Arc::new(FakeDeployer::default());
    let notifier = Arc::new(RecordingNotifier::default());
    let run = full(deployer.clone(), clean(), notifier.clone()).run(RunOptions::new("main").commit("abc123")).await;
    assert_eq!(run.status, PipelineStatus::Succeeded, "{run:#?}");
    assert!(run.stages.iter().all(|s| s.status == StageStatus::Succeeded));
    assert_eq!(run.stages[0].artifacts.image, Some(ImageRef::parse("localhost:5000/web:1.0").unwrap()));
    assert_eq!(run.stages[2].artifacts.vulnerabilities.map(|c| c.high), Some(1));
    assert_eq!(deployer.seen_digest.lock().unwrap().as_deref(), Some(digest().as_str()));
    assert!(run.rollback.is_none());
    assert!(run.stages.iter().all(|s| s.finished_at >= s.started_at));
    let seen = notifier.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].kind, NotificationKind::PipelineSucceeded);
    assert_eq!(seen[0].fields["pipeline"], run.id.as_str());
    assert_eq!(seen[0].fields["commit"], "abc123");
}

#[tokio::test]
async fn scan_policy_and_scan_failures_stop_the_run_before_deploying() {
    for scanner in [
        FakeScanner { findings: vec![Severity::Critical], fail: false },
        FakeScanner { findings: vec![Severity::High, Severity::High], fail: false },
        FakeScanner { findings: vec![], fail: true },
    ] {
        let deployer = Arc::new(FakeDeployer::default());
        let notifier = Arc::new(RecordingNotifier::default());
        let run = full(deployer.clone(), scanner, notifier.clone()).run(RunOptions::new("main")).await;
        assert_eq!(run.status, PipelineStatus::Failed);
        assert_eq!(run.failed_stage().unwrap().name, "security-scan");
        assert!(run.stages[3..].iter().all(|s| s.status == StageStatus::Skipped));
        assert_eq!(deployer.deploys.load(Ordering::SeqCst), 0);
        assert!(run.rollback.is_none(), "nothing was deployed, nothing to roll back");
        assert_eq!(notifier.seen.lock().unwrap()[0].kind, NotificationKind::PipelineFailed);
    }
}

#[tokio::test]
async fn a_failed_deploy_runs_the_rollback_stage() {
    let deployer = Arc::new(FakeDeployer { fail_deploy: true, ..Default::default() });
    let notifier = Arc::new(RecordingNotifier { fail: true, ..Default::default() });
    let run = full(deployer.clone(), clean(), notifier.clone()).run(RunOptions::new("production")).await;
    assert_eq!(run.status, PipelineStatus::Failed);
    let failed = run.failed_stage().unwrap();
    assert_eq!(failed.name, "deploy");
    assert!(failed.error.as_deref().unwrap().contains("cluster away"), "{:?}", failed.error);
    assert_eq!(run.stages[6].status, StageStatus::Skipped);
    assert!(run.rolled_back());
    assert_eq!(deployer.rollbacks.load(Ordering::SeqCst), 1);
    // The notifier failed; the run is unaffected.
    assert_eq!(notifier.seen.lock().unwrap()[0].fields["rollback"], "succeeded");
}

#[tokio::test]
async fn a_failed_smoke_test_after_deploy_rolls_back_too() {
    let deployer = Arc::new(FakeDeployer::default());
    let p = Pipeline::builder()
        .stage(DeployStage::new(deployer.clone()))
        .stage(FnStage::new("smoke", StageKind::SmokeTest, |_| async { Err(StageError::failed("GET /health: 503")) }))
        .rollback(RollbackStage::new(deployer.clone()))
        .build();
    let run = p.run(RunOptions::new("master")).await;
    assert_eq!(run.failed_stage().unwrap().error.as_deref(), Some("GET /health: 503"));
    assert_eq!(deployer.rollbacks.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_branches_skip_deploying_stages() {
    let deployer = Arc::new(FakeDeployer::default());
    let run = full(deployer.clone(), clean(), Arc::default()).run(RunOptions::new("feature/login")).await;
    assert_eq!(run.status, PipelineStatus::Succeeded);
    assert_eq!(run.stages[4].status, StageStatus::Succeeded, "push is not gated by default");
    assert_eq!(run.stages[5].status, StageStatus::Skipped);
    assert!(run.stages[5].logs[0].message.contains("feature/login may not deploy"));
    assert_eq!(deployer.deploys.load(Ordering::SeqCst), 0);

    let rules = BranchRules::default().deploy_branches(vec!["release/*".into()]);
    let p = Pipeline::builder().stage(DeployStage::new(deployer.clone())).branch_rules(rules).build();
    assert_eq!(p.run(RunOptions::new("main")).await.stages[0].status, StageStatus::Skipped);
    assert_eq!(p.run(RunOptions::new("release/3")).await.stages[0].status, StageStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_the_running_stage_and_rolls_back_a_deploy() {
    let deployer = Arc::new(FakeDeployer::default());
    let token = CancellationToken::new();
    let p = Pipeline::builder()
        .stage(DeployStage::new(deployer.clone()))
        .stage(FnStage::new("soak", StageKind::SmokeTest, |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(StageOutput::default())
        }))
        .stage(FnStage::new("after", StageKind::Custom, |_| async { Ok(StageOutput::default()) }))
        .rollback(RollbackStage::new(deployer.clone()))
        .build();
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        canceller.cancel();
    });
    let run = p.run(RunOptions::new("main").cancellation(token)).await;
    assert_eq!(run.status, PipelineStatus::Cancelled);
    let statuses: Vec<_> = run.stages.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [StageStatus::Succeeded, StageStatus::Cancelled, StageStatus::Cancelled]);
    assert!(run.rolled_back());

    // Cancelled before it starts: nothing runs, nothing to roll back.
    let token = CancellationToken::new();
    token.cancel();
    let run = p.run(RunOptions::new("main").cancellation(token)).await;
    assert!(run.stages.iter().all(|s| s.status == StageStatus::Cancelled));
    assert_eq!(deployer.deploys.load(Ordering::SeqCst), 1);
    assert!(run.rollback.is_none());
}

#[tokio::test]
async fn quality_gate_reports_every_problem() {
    let gate = QualityGate::new().at_least("coverage", 80.0).at_most("warnings", 0.0).at_least("score", 1.0);
    let ctx =
        StageContext::new("main").artifacts(Artifacts::default().value("coverage", "79.5").value("warnings", "x"));
    let err = gate.run(&ctx).await.unwrap_err();
    let StageError::Gate { violations, .. } = err else { panic!("{err:?}") };
    assert_eq!(violations, ["coverage is 79.5, below 80", "warnings is not a number", "score is missing"]);
}
