//! Failover plans on the test kit: two kits stand in for two sites, a switch in
//! memory for DNS. A failover scales the standby up, verifies it, moves the traffic
//! and scales the old primary down, measuring the time to recover against the RTO;
//! a standby that fails verification never receives traffic; bad plans are refused
//! with every problem.
#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]
#![cfg(feature = "testkit")]

use std::sync::Arc;
use std::time::Duration;

use deploy_core::dr::{FailoverDriver, FailoverError, FailoverPlan, FailoverStep, Site, TrafficSwitch};
use deploy_core::model::{Environment, EnvironmentProfile, Track};
use deploy_core::testkit::{HealthScript, TestHealthCheck, TestKit, TestTrafficSwitch, sample_app};

struct World {
    primary: TestKit,
    standby: TestKit,
    dns: Arc<TestTrafficSwitch>,
    health: Arc<TestHealthCheck>,
    driver: FailoverDriver,
}

fn world() -> World {
    let (spec, v1, _) = sample_app(3);
    let (primary, standby) = (TestKit::new(), TestKit::new());
    primary.seed(&spec, Track::Stable, &v1);
    let dns = Arc::new(TestTrafficSwitch::pointing_at("eu"));
    let health = Arc::new(TestHealthCheck::new("smoke"));
    let sites = [
        Site { name: "eu".into(), platform: primary.platform(), spec: spec.clone() },
        Site { name: "us".into(), platform: standby.platform(), spec },
    ];
    let driver = FailoverDriver::new(sites, dns.clone()).health_check(health.clone());
    World { primary, standby, dns, health, driver }
}

#[tokio::test(start_paused = true)]
async fn a_failover_and_a_fail_back_move_the_traffic_and_measure_recovery() {
    let w = world();
    let (spec, v1, _) = sample_app(3);
    let targets = EnvironmentProfile::preset(Environment::DisasterRecovery).recovery;
    assert!(targets.is_some(), "the DR preset carries the seeds' RTO and RPO");
    let plan = FailoverPlan::failover("eu", "us", 3, false);
    let record = w.driver.run(&plan, &v1, targets).await.unwrap();
    assert_eq!(w.dns.current().await.unwrap().as_deref(), Some("us"));
    assert!(w.standby.snapshot(&spec.id()).runs(&v1.version), "the standby runs the release");
    assert!(!w.primary.snapshot(&spec.id()).runs(&v1.version), "the old primary is scaled down");
    let recovered = record.time_to_recover.unwrap();
    assert!(recovered >= Duration::from_secs(5), "the kit's pods take 5 s to get ready: {recovered:?}");
    assert_eq!(record.met_rto(), Some(true));
    assert_eq!(record.steps.len(), 5);
    assert!(record.steps[2].details.iter().any(|d| d.starts_with("smoke")), "{:?}", record.steps[2]);

    let back = plan.fail_back(3, true);
    let record = w.driver.run(&back, &v1, targets).await.unwrap();
    assert_eq!(w.dns.current().await.unwrap().as_deref(), Some("eu"));
    assert!(w.primary.snapshot(&spec.id()).runs(&v1.version) && w.standby.snapshot(&spec.id()).runs(&v1.version));
    assert!(record.time_to_recover.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_standby_that_fails_verification_never_receives_traffic() {
    let w = world();
    let (spec, v1, _) = sample_app(3);
    w.health.set(Track::Stable, HealthScript::Unhealthy("503 from /healthz".into()));
    let err = w.driver.run(&FailoverPlan::failover("eu", "us", 3, false), &v1, None).await.unwrap_err();
    let FailoverError::StepFailed { step, reason, record, .. } = err else { panic!("{err}") };
    assert_eq!(step, 3);
    assert!(reason.contains("503 from /healthz"), "{reason}");
    assert_eq!(record.time_to_recover, None);
    assert_eq!(w.dns.current().await.unwrap().as_deref(), Some("eu"), "the traffic stayed");
    assert!(w.primary.snapshot(&spec.id()).runs(&v1.version), "the primary still runs");
}

#[tokio::test(start_paused = true)]
async fn plans_that_cannot_hold_are_refused_with_every_problem() {
    let w = world();
    let (_, v1, _) = sample_app(3);
    let mut plan = FailoverPlan::failover("eu", "mars", 0, false);
    plan.steps.swap(2, 3);
    plan.steps.push(FailoverStep::ScaleDown { site: "mars".into() });
    let err = w.driver.run(&plan, &v1, None).await.unwrap_err();
    let FailoverError::InvalidPlan { problems } = err else { panic!("{err}") };
    let text = problems.join("\n");
    for expected in [
        "site \"mars\" is not one of the driver's sites (eu, us)",
        "step 1 scales mars up to 0 replicas",
        "step 3 switches to mars before verifying it",
        "step 6 scales down mars, which serves the traffic then",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(w.dns.current().await.unwrap().as_deref(), Some("eu"), "nothing ran");
}

#[tokio::test(start_paused = true)]
async fn a_verification_with_no_health_check_is_refused() {
    let (spec, v1, _) = sample_app(3);
    let (primary, standby) = (TestKit::new(), TestKit::new());
    let sites = [
        Site { name: "eu".into(), platform: primary.platform(), spec: spec.clone() },
        Site { name: "us".into(), platform: standby.platform(), spec },
    ];
    let driver = FailoverDriver::new(sites, Arc::new(TestTrafficSwitch::default()));
    let err = driver.run(&FailoverPlan::failover("eu", "us", 3, false), &v1, None).await.unwrap_err();
    assert!(err.to_string().contains("step 3 verifies us with no health check to run"), "{err}");
}
