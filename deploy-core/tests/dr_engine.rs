//! Failovers through the engine on the test kit: two kits stand in for two sites
//! (the engine's stores are the primary's), a switch in memory for DNS. A failover
//! takes the application's lock (a rollout holding it refuses the failover, naming
//! the holder, and a running failover refuses a rollout), keeps its lease alive
//! while it waits, and writes a record of kind failover / fail-back with every
//! step and the measured time to recover; a failure before the switch is recorded
//! as failed with its cause, and the traffic stays where it was.
#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deploy_core::dr::{FailoverDriver, FailoverPlan, Site, TrafficSwitch};
use deploy_core::engine::{EngineConfig, FailoverRequest, RolloutEngine, RolloutError, RolloutEvent, RolloutRequest};
use deploy_core::history::HistoryQuery;
use deploy_core::model::CauseKind;
use deploy_core::model::{
    AppSpec, DeploymentStatus, Environment, EnvironmentProfile, Percent, RecordKind, Release, StepOutcome, Track,
};
use deploy_core::notify::{Notification, NotificationKind, Notifier, NotifyError};
use deploy_core::plan::{PauseKind, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{HealthScript, StateMethod, TestHealthCheck, TestKit, TestTrafficSwitch, sample_app};

struct World {
    primary: TestKit,
    standby: TestKit,
    dns: Arc<TestTrafficSwitch>,
    health: Arc<TestHealthCheck>,
    driver: Arc<FailoverDriver>,
    engine: RolloutEngine,
    spec: AppSpec,
    v1: Release,
    v2: Release,
}

fn world(lock_ttl: Duration) -> World {
    let (spec, v1, v2) = sample_app(3);
    let (primary, standby) = (TestKit::new(), TestKit::new());
    primary.seed(&spec, Track::Stable, &v1);
    let dns = Arc::new(TestTrafficSwitch::pointing_at("eu"));
    let health = Arc::new(TestHealthCheck::new("smoke"));
    let sites = [
        Site { name: "eu".into(), platform: primary.platform(), spec: spec.clone() },
        Site { name: "us".into(), platform: standby.platform(), spec: spec.clone() },
    ];
    let driver = Arc::new(FailoverDriver::new(sites, dns.clone()).health_check(health.clone()));
    let config = EngineConfig::default().lock_ttl(lock_ttl).holder("engine-a");
    let engine = RolloutEngine::builder(primary.platform(), primary.state_store(), primary.history_store())
        .config(config)
        .build();
    World { primary, standby, dns, health, driver, engine, spec, v1, v2 }
}

fn request(w: &World, plan: FailoverPlan) -> FailoverRequest {
    FailoverRequest::new(w.spec.id(), w.driver.clone(), plan, w.v1.clone())
        .targets(EnvironmentProfile::preset(Environment::DisasterRecovery).recovery)
}

#[tokio::test(start_paused = true)]
async fn a_failover_and_a_fail_back_are_recorded_with_their_recovery_time() {
    let w = world(Duration::from_secs(60));
    let plan = FailoverPlan::failover("eu", "us", 3, false);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = w.engine.failover(request(&w, plan.clone()).events(tx)).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_eq!(w.dns.current().await.unwrap().as_deref(), Some("us"));
    assert!(w.standby.snapshot(&w.spec.id()).runs(&w.v1.version), "the standby runs the release");
    assert!(!w.primary.snapshot(&w.spec.id()).runs(&w.v1.version), "the old primary is scaled down");
    assert!(w.primary.lease(&w.spec.id()).is_none(), "the lock is released");

    // The record as the history store has it.
    let stored = w.primary.history().records();
    assert_eq!(stored.len(), 1);
    let record = &stored[0];
    assert_eq!(record, &report.record);
    assert_eq!(record.kind, RecordKind::Failover { from: "eu".into(), to: "us".into() });
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    assert_eq!(record.steps.len(), 5);
    assert!(record.steps.iter().all(|s| s.outcome == StepOutcome::Succeeded), "{:?}", record.steps);
    assert!(record.steps[2].details.iter().any(|d| d.starts_with("smoke")), "{:?}", record.steps[2]);
    let recovery = record.recovery.unwrap();
    assert!(recovery.time_to_recover >= Duration::from_secs(5), "the kit's pods take 5 s: {recovery:?}");
    assert!(recovery.time_to_recover < Duration::from_secs(60), "{recovery:?}");
    assert_eq!(recovery.met, Some(true));
    assert_eq!(Some(recovery.time_to_recover), report.failover.time_to_recover);
    // The events tell the same story.
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let finished_steps = events.iter().filter(|e| matches!(e, RolloutEvent::StepFinished { .. })).count();
    assert_eq!(finished_steps, 5);
    assert!(
        matches!(events.last(), Some(RolloutEvent::Finished { status: DeploymentStatus::Succeeded, cause: None })),
        "{events:?}"
    );

    let back = w.engine.failover(request(&w, plan.fail_back(3, true)).fail_back()).await.unwrap();
    assert_eq!(back.status, DeploymentStatus::Succeeded);
    assert_eq!(w.dns.current().await.unwrap().as_deref(), Some("eu"));
    let stored = w.primary.history().records();
    assert_eq!(stored.len(), 2);
    let back_record = stored.iter().find(|r| r.id == back.record.id).unwrap();
    assert_eq!(back_record.kind, RecordKind::FailBack { from: "us".into(), to: "eu".into() });
    assert!(back_record.recovery.unwrap().time_to_recover > Duration::ZERO);
    // Neither counts as a deployment for DORA.
    let dora = deploy_core::dora::DoraAccumulator::from_history(
        w.engine.history_store().as_ref(),
        &HistoryQuery::default(),
        deploy_core::dora::DoraWindow::all(),
    )
    .await
    .unwrap();
    assert_eq!(dora.metrics(None).deployments, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failover_is_refused_while_a_rollout_holds_the_lock() {
    let w = world(Duration::from_secs(60));
    let rollout_plan =
        Canary::with_steps(vec![Step::SetWeight(Percent::new(20).unwrap()), Step::Pause(PauseKind::UntilPromoted)])
            .plan(&PlanInput::new(3));
    let mut handle = w
        .engine
        .start(RolloutRequest::new(w.spec.clone(), w.v2.clone(), rollout_plan).from(w.v1.clone()))
        .await
        .unwrap();
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::Paused { .. }) {
            break;
        }
    }
    let err = w.engine.failover(request(&w, FailoverPlan::failover("eu", "us", 3, false))).await.unwrap_err();
    assert!(matches!(&err, RolloutError::Locked { holder, .. } if holder == "engine-a"), "{err}");
    assert!(err.to_string().contains("locked by engine-a"), "{err}");
    assert_eq!(w.dns.current().await.unwrap().as_deref(), Some("eu"), "nothing moved");
    assert!(w.standby.snapshot(&w.spec.id()).tracks.is_empty(), "nothing was scaled up");
    let kinds: Vec<RecordKind> = w.primary.history().records().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![RecordKind::Rollout], "no failover was recorded");
    handle.abort();
    assert_eq!(handle.wait().await.unwrap().status, DeploymentStatus::RolledBack);
}

#[tokio::test(start_paused = true)]
async fn a_rollout_is_refused_while_a_failover_runs_and_the_lease_is_renewed() {
    // A lease of 3 s, renewed every second, outlives the standby's 5 s readiness wait.
    let w = Arc::new(world(Duration::from_secs(3)));
    let running = {
        let w = Arc::clone(&w);
        tokio::spawn(async move { w.engine.failover(request(&w, FailoverPlan::failover("eu", "us", 3, false))).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rollout_plan = Canary::with_steps(vec![Step::SetWeight(Percent::new(20).unwrap())]).plan(&PlanInput::new(3));
    let err = w
        .engine
        .start(RolloutRequest::new(w.spec.clone(), w.v2.clone(), rollout_plan).from(w.v1.clone()))
        .await
        .unwrap_err();
    assert!(matches!(&err, RolloutError::Locked { holder, .. } if holder == "engine-a"), "{err}");
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert!(w.primary.state_calls(StateMethod::RenewLock) >= 2, "the lease was renewed while the failover waited");
    assert!(report.record.recovery.unwrap().time_to_recover >= Duration::from_secs(5));
    assert!(w.primary.lease(&w.spec.id()).is_none(), "the lock is released");
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_the_switch_is_recorded_and_leaves_the_traffic() {
    let w = world(Duration::from_secs(60));
    w.health.set(Track::Stable, HealthScript::Unhealthy("503 from /healthz".into()));
    let report = w.engine.failover(request(&w, FailoverPlan::failover("eu", "us", 3, false))).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Failed);
    let cause = report.cause.unwrap();
    assert_eq!((cause.kind, cause.step), (CauseKind::HealthCheckFailed, Some(2)));
    assert!(cause.message.contains("503 from /healthz"), "{cause}");
    assert!(cause.message.contains("the traffic stays on eu"), "{cause}");
    assert_eq!(w.dns.current().await.unwrap().as_deref(), Some("eu"), "the traffic stayed");
    assert!(w.primary.snapshot(&w.spec.id()).runs(&w.v1.version), "the primary still runs");
    let stored = w.primary.history().records();
    assert_eq!(stored.len(), 1);
    let record = &stored[0];
    assert_eq!(record.status, DeploymentStatus::Failed);
    assert_eq!(record.recovery, None, "no recovery without a switch");
    assert!(record.cause.as_ref().is_some_and(|c| c.to_string().contains("503 from /healthz")), "{:?}", record.cause);
    assert_eq!(record.steps.len(), 3);
    assert!(matches!(&record.steps[2].outcome, StepOutcome::Failed(r) if r.contains("503")), "{:?}", record.steps);
    assert!(w.primary.lease(&w.spec.id()).is_none(), "the lock is released");
}

#[tokio::test(start_paused = true)]
async fn an_invalid_plan_is_refused_before_the_lock() {
    let w = world(Duration::from_secs(60));
    let err = w.engine.failover(request(&w, FailoverPlan::failover("eu", "mars", 3, false))).await.unwrap_err();
    assert!(matches!(err, RolloutError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("site \"mars\" is not one of the driver's sites"), "{err}");
    assert_eq!(w.primary.state_calls(StateMethod::AcquireLock), 0);
    assert!(w.primary.history().records().is_empty());
}

#[derive(Default)]
struct Recording(Mutex<Vec<Notification>>);

#[async_trait]
impl Notifier for Recording {
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push(notification.clone());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_notifier_hears_of_the_start_and_the_end_with_the_recovery_time() {
    let mut w = world(Duration::from_secs(60));
    let notifier = Arc::new(Recording::default());
    w.engine = RolloutEngine::builder(w.primary.platform(), w.primary.state_store(), w.primary.history_store())
        .notifier(notifier.clone())
        .build();
    let report = w.engine.failover(request(&w, FailoverPlan::failover("eu", "us", 3, false))).await.unwrap();
    let seen = notifier.0.lock().unwrap().clone();
    let kinds: Vec<NotificationKind> = seen.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, [NotificationKind::DeploymentStarted, NotificationKind::DeploymentSucceeded]);
    let end = &seen[1];
    assert_eq!(end.fields["operation"], "failover");
    assert_eq!((end.fields["from_site"].as_str(), end.fields["to_site"].as_str()), ("eu", "us"));
    assert_eq!(end.fields["deployment"], report.record.id.to_string());
    let took: f64 = end.fields["time_to_recover_seconds"].parse().unwrap();
    assert!(took >= 5.0, "{took}");
    assert_eq!(end.fields["met_rto"], "true");
    assert!(!end.fields.contains_key("from"), "no from release: CDEvents reads it as a deployment to the site");
}
