//! Disaster recovery on the real server: two namespaces stand in for two regions
//! and a third holds the `ExternalName` Service clients address. A failover scales
//! the standby region up, verifies it, points the Service at it and scales the old
//! primary to zero; the fail-back returns; both records carry the measured time to
//! recover against the disaster-recovery profile's RTO. Asserted from the objects
//! the server stores. Through the engine, the same failover and fail-back take the
//! application's lock in the cluster (`KubeStateStore`: a Lease another holder has
//! refuses them, naming it) and their records, read back from the server
//! (`KubeHistoryStore`), say failover / fail-back with the measured time to recover.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::dr::{FailoverDriver, FailoverPlan, Site, TrafficSwitch};
use deploy_core::engine::{EngineConfig, FailoverRequest, RolloutEngine, RolloutError};
use deploy_core::history::{HistoryQuery, HistoryStore};
use deploy_core::model::{
    AppSpec, DeploymentStatus, Environment, EnvironmentProfile, RecordKind, Release, StepOutcome, Track,
};
use deploy_core::platform::Platform;
use deploy_core::state::{LockRequest, StateStore};
use deploy_core::testkit::TestHealthCheck;
use deploy_k8s::failover::ExternalNameSwitch;
use deploy_k8s::manifest::{ServiceOptions, service};
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};
use deploy_k8s::{KubePlatform, PlatformOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;

use crate::support::{self, Scratch};

fn spec_in(s: &Scratch) -> AppSpec {
    s.spec().replicas(2)
}

async fn replicas(s: &Scratch) -> (i32, i32, String) {
    let api: Api<Deployment> = s.api();
    let d = api.get("web-stable").await.expect("web-stable exists");
    let image =
        d.spec.template.spec.and_then(|p| p.containers.first().and_then(|c| c.image.clone())).unwrap_or_default();
    (d.spec.replicas.unwrap_or(0), d.status.and_then(|st| st.ready_replicas).unwrap_or(0), image)
}

/// The app's Service in both regions, release `release` serving in `east`, and the
/// front `ExternalName` Service pointed at east: the sites a failover moves between.
async fn east_serving(
    front: &Scratch,
    east: &Scratch,
    west: &Scratch,
    release: &Release,
) -> (Arc<ExternalNameSwitch>, [Site; 2]) {
    for region in [east, west] {
        region.cluster.apply(&service(&spec_in(region), &ServiceOptions::default())).await.expect("the app's Service");
    }
    let primary = KubePlatform::new(east.cluster.clone(), PlatformOptions::default());
    primary.apply(&spec_in(east), Track::Stable, release, 2).await.unwrap();
    primary.wait_ready(&east.app(), Track::Stable, Duration::from_secs(60)).await.unwrap();
    let sites_map =
        BTreeMap::from([("east".to_owned(), east.namespace.clone()), ("west".to_owned(), west.namespace.clone())]);
    let switch =
        Arc::new(ExternalNameSwitch::new(front.cluster.clone(), front.namespace.clone(), "web", "web", sites_map));
    switch.switch_to("east").await.unwrap();
    let sites = [
        Site { name: "east".into(), platform: Arc::new(primary), spec: spec_in(east) },
        Site {
            name: "west".into(),
            platform: Arc::new(KubePlatform::new(west.cluster.clone(), PlatformOptions::default())),
            spec: spec_in(west),
        },
    ];
    (switch, sites)
}

#[tokio::test]
async fn a_failover_and_a_fail_back_between_two_regions() {
    let (front, east, west) =
        (Scratch::new("dr-front").await, Scratch::new("dr-east").await, Scratch::new("dr-west").await);
    let release = support::release("1");
    let (switch, sites) = east_serving(&front, &east, &west, &release).await;
    let driver = FailoverDriver::new(sites, switch.clone())
        .health_check(Arc::new(TestHealthCheck::new("smoke")))
        .readiness_deadline(Duration::from_secs(60));
    let targets = EnvironmentProfile::preset(Environment::DisasterRecovery).recovery;

    let plan = FailoverPlan::failover("east", "west", 2, false);
    let record = driver.run(&plan, &release, targets).await.expect("the failover succeeds");
    let services: Api<Service> = front.api();
    let front_service = services.get("web").await.unwrap().spec.unwrap();
    assert_eq!(front_service.type_.as_deref(), Some("ExternalName"));
    assert_eq!(front_service.external_name, Some(format!("web.{}.svc.cluster.local", west.namespace)));
    let (want, ready, image) = replicas(&west).await;
    assert_eq!((want, ready), (2, 2), "west runs the release, ready");
    assert_eq!(image, release.image.to_string());
    assert_eq!(replicas(&east).await.0, 0, "east is scaled to zero");
    let recovered = record.time_to_recover.expect("a recovery time");
    assert!(recovered < Duration::from_secs(60), "{recovered:?}");
    assert_eq!(record.met_rto(), Some(true), "{record:?}");

    let back = driver.run(&plan.fail_back(2, true), &release, targets).await.expect("the fail-back succeeds");
    assert_eq!(switch.current().await.unwrap().as_deref(), Some("east"));
    let front_service = services.get("web").await.unwrap().spec.unwrap();
    assert_eq!(front_service.external_name, Some(format!("web.{}.svc.cluster.local", east.namespace)));
    assert_eq!(replicas(&east).await.1, 2, "east serves again");
    assert_eq!(replicas(&west).await.0, 2, "west is kept warm");
    assert!(back.time_to_recover.is_some() && back.met_rto() == Some(true));
    // A Service someone else owns under the switch's name is refused, not taken over.
    let theirs: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "theirs"},
        "spec": {"type": "ExternalName", "externalName": "example.org"}
    }))
    .unwrap();
    services.create(&Default::default(), &theirs).await.unwrap();
    let sites_map = BTreeMap::from([("east".to_owned(), east.namespace.clone())]);
    let foreign = ExternalNameSwitch::new(front.cluster.clone(), front.namespace.clone(), "theirs", "web", sites_map);
    let err = foreign.switch_to("east").await.unwrap_err();
    assert!(err.to_string().contains("not managed by deploy-rs"), "{err}");
    let kept = services.get("theirs").await.unwrap().spec.unwrap().external_name;
    assert_eq!(kept.as_deref(), Some("example.org"), "their Service is unchanged");
    for s in [front, east, west] {
        s.cleanup().await;
    }
}

#[tokio::test]
async fn a_failover_and_a_fail_back_through_the_engine_are_recorded_on_the_server() {
    let (front, east, west) =
        (Scratch::new("dr-eng-front").await, Scratch::new("dr-eng-east").await, Scratch::new("dr-eng-west").await);
    let release = support::release("1");
    let (switch, sites) = east_serving(&front, &east, &west, &release).await;
    let driver = Arc::new(
        FailoverDriver::new(sites, switch.clone())
            .health_check(Arc::new(TestHealthCheck::new("smoke")))
            .readiness_deadline(Duration::from_secs(60)),
    );
    let state = Arc::new(KubeStateStore::new(front.cluster.clone()));
    let engine = RolloutEngine::builder(
        Arc::new(KubePlatform::new(east.cluster.clone(), PlatformOptions::default())),
        state.clone(),
        Arc::new(KubeHistoryStore::new(front.cluster.clone(), front.ns())),
    )
    .config(EngineConfig::default().holder("dr-engine").lock_ttl(Duration::from_secs(15)))
    .build();
    let targets = EnvironmentProfile::preset(Environment::DisasterRecovery).recovery;
    let rto = targets.expect("the DR profile has an RTO").rto.as_duration();
    let plan = FailoverPlan::failover("east", "west", 2, false);
    let request = |plan: FailoverPlan| {
        FailoverRequest::new(front.app(), driver.clone(), plan, release.clone())
            .targets(targets)
            .environment(Environment::Production)
    };

    // A rollout elsewhere holds east's lock in the cluster: the failover is refused
    // and changes nothing.
    let elsewhere =
        state.acquire_lock(&east.app(), &LockRequest::new("rollout-elsewhere", Duration::from_secs(60))).await.unwrap();
    let err = engine.failover(request(plan.clone())).await.unwrap_err();
    assert!(matches!(&err, RolloutError::Locked { holder, .. } if holder == "rollout-elsewhere"), "{err}");
    assert_eq!(switch.current().await.unwrap().as_deref(), Some("east"), "the traffic did not move");
    assert!(west.api::<Deployment>().get_opt("web-stable").await.unwrap().is_none(), "west was not scaled up");
    state.release_lock(&elsewhere).await.unwrap();

    let report = engine.failover(request(plan.clone())).await.expect("the failover runs");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let services: Api<Service> = front.api();
    let front_service = services.get("web").await.unwrap().spec.unwrap();
    assert_eq!(front_service.external_name, Some(format!("web.{}.svc.cluster.local", west.namespace)));
    let (want, ready, image) = replicas(&west).await;
    assert_eq!((want, ready), (2, 2), "west runs the release, ready");
    assert_eq!(image, release.image.to_string());
    assert_eq!(replicas(&east).await.0, 0, "east is scaled to zero");

    let back = engine.failover(request(plan.fail_back(2, true)).fail_back()).await.expect("the fail-back runs");
    assert_eq!(back.status, DeploymentStatus::Succeeded, "{:?}", back.cause);
    let front_service = services.get("web").await.unwrap().spec.unwrap();
    assert_eq!(front_service.external_name, Some(format!("web.{}.svc.cluster.local", east.namespace)));
    assert_eq!(replicas(&east).await, (2, 2, release.image.to_string()), "east serves again");
    assert_eq!(replicas(&west).await.0, 2, "west is kept warm");

    // The records, read back from the server by a store of their own.
    let history = KubeHistoryStore::new(front.cluster.clone(), front.ns());
    let records = history.list(&HistoryQuery::default().app(front.app())).await.unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    for (id, kind) in [
        (&report.record.id, RecordKind::Failover { from: "east".into(), to: "west".into() }),
        (&back.record.id, RecordKind::FailBack { from: "west".into(), to: "east".into() }),
    ] {
        let record = history.get(id).await.unwrap().expect("the record is on the server");
        assert_eq!(record.kind, kind);
        assert_eq!(record.status, DeploymentStatus::Succeeded);
        assert_eq!(record.steps.len(), if matches!(kind, RecordKind::Failover { .. }) { 5 } else { 4 });
        assert!(record.steps.iter().all(|s| s.outcome == StepOutcome::Succeeded), "{:?}", record.steps);
        let recovery = record.recovery.expect("a measured recovery");
        assert!(recovery.time_to_recover > Duration::ZERO, "{recovery:?}");
        assert!(recovery.time_to_recover < rto, "{recovery:?} within the RTO of {rto:?}");
        // Measured, not copied from the RTO: a readiness wait on this cluster takes seconds.
        assert!(recovery.time_to_recover < Duration::from_secs(60), "{recovery:?}");
        eprintln!("{:?} recovered in {:?}", record.kind, recovery.time_to_recover);
        assert_eq!(recovery.met, Some(true));
    }
    // Every lock is released.
    for app in [front.app(), east.app(), west.app()] {
        assert!(state.read_lock(&app).await.unwrap().is_none(), "{app} is unlocked");
    }
    for s in [front, east, west] {
        s.cleanup().await;
    }
}
