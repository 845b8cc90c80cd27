//! Issue 16's faults where the real API server can make them: a forgotten `from`
//! with a running stable, a `from` that names another release, a blue-green plan
//! onto the serving colour, a second start while running, Lease renewals failing
//! for longer than the TTL, and the state store failing during the rollback.

use std::time::Duration;

use deploy_core::engine::{RolloutError, RolloutRequest};
use deploy_core::model::{DeploymentStatus, HumanDuration, Track};
use deploy_core::plan::{PauseKind, Step};
use deploy_core::strategy::{BlueGreen, Canary, PlanInput, Strategy};
use deploy_k8s::Cluster;
use deploy_k8s::state::{KubeStateStore, lock_name, state_name};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::engine::{
    NEW, OLD, Route, Strat, World, assert_lock_and_state_cleared, assert_nothing_runs, assert_serves, deployment,
    engine_config, served_tracks,
};
use crate::support::{self, CuttableProxy};

/// A canary at 25 %, a pause of `pause`, then 50 %.
fn paused_canary(pause: Duration) -> deploy_core::plan::Plan {
    Canary::with_steps(vec![
        Step::SetWeight(deploy_core::model::Percent::new(25).unwrap()),
        Step::Pause(PauseKind::Duration(HumanDuration::new(pause))),
        Step::SetWeight(deploy_core::model::Percent::new(50).unwrap()),
    ])
    .scale_down_delay(HumanDuration::ZERO)
    .plan(&PlanInput::new(crate::engine::REPLICAS))
}

/// An Istio engine whose Lease and progress go through `proxy` (which the test can
/// cut off) while its platform and router reach the server directly.
fn state_through(
    w: &World,
    proxy: &CuttableProxy,
    config: deploy_core::engine::EngineConfig,
) -> deploy_core::engine::RolloutEngine {
    let c = w.s.cluster.clone();
    deploy_core::engine::RolloutEngine::builder(
        std::sync::Arc::new(deploy_k8s::KubePlatform::new(c.clone(), deploy_k8s::PlatformOptions::default())),
        std::sync::Arc::new(KubeStateStore::new(Cluster::new(proxy.client.clone()))),
        std::sync::Arc::new(deploy_k8s::state::KubeHistoryStore::new(c.clone(), w.s.ns())),
    )
    .router(std::sync::Arc::new(deploy_k8s::router::IstioRouter::new(c)))
    .metrics(w.kit.metrics())
    .config(config)
    .build()
}

/// Nothing of the rollout reached the server: no new track, no Lease, no progress.
async fn untouched(w: &World, new_track: &str, context: &str) {
    assert!(deployment(&w.s, new_track).await.is_none(), "{context}: {new_track} was created");
    let leases: Api<Lease> = w.s.api();
    assert!(leases.get_opt(&lock_name(&w.s.app())).await.unwrap().is_none(), "{context}: a Lease was taken");
    let maps: Api<ConfigMap> = w.s.api();
    assert!(maps.get_opt(&state_name(&w.s.app())).await.unwrap().is_none(), "{context}: progress was saved");
}

#[tokio::test]
async fn a_forgotten_from_adopts_the_running_stable_and_a_rollback_keeps_it() {
    let w = World::new("adopt", Strat::Canary, Route::Istio).await;
    w.error_rate(0.001);
    let request = RolloutRequest::new(w.s.spec(), support::missing_image_release(NEW), w.plan.clone());
    let report = w.engine("adopt").run(request).await.expect("a report");
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{:?}", report.cause);
    assert_eq!(report.record.from.as_ref().map(|r| r.version.as_str()), Some(OLD), "the running release was adopted");
    assert_serves(&w.s, Track::Stable, OLD, "adopt").await;
    assert_eq!(served_tracks(&w).await, ["stable"]);
    assert_lock_and_state_cleared(&w.s, "adopt").await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_from_that_names_another_release_is_refused_before_anything_changes() {
    let w = World::new("from-mismatch", Strat::Canary, Route::Istio).await;
    let request = RolloutRequest::new(w.s.spec(), support::release(NEW), w.plan.clone()).from(support::release("0.9"));
    let err = w.engine("mismatch").run(request).await.expect_err("refused");
    assert!(matches!(err, RolloutError::FromMismatch { .. }), "{err}");
    assert!(err.to_string().contains("0.9") && err.to_string().contains(OLD), "names both: {err}");
    untouched(&w, "canary", "from-mismatch").await;
    assert_serves(&w.s, Track::Stable, OLD, "from-mismatch").await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_blue_green_plan_onto_the_serving_colour_is_refused() {
    let w = World::new("live-colour", Strat::BlueGreen, Route::ServiceSelector).await;
    // Blue serves; a plan that believes green is live would deploy onto blue.
    let wrong = BlueGreen::default()
        .scale_down_delay(HumanDuration::ZERO)
        .plan(&PlanInput::new(crate::engine::REPLICAS).live_track(Track::Green));
    let request = RolloutRequest::new(w.s.spec(), support::release(NEW), wrong).from(support::release(OLD));
    let err = w.engine("colour").run(request).await.expect_err("refused");
    assert!(matches!(err, RolloutError::LiveTrackMismatch { .. }), "{err}");
    assert_serves(&w.s, Track::Blue, OLD, "live-colour").await;
    assert_eq!(served_tracks(&w).await, ["blue"]);
    assert!(deployment(&w.s, "green").await.is_none());
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_second_start_while_running_is_refused_and_the_running_rollout_completes() {
    let mut w = World::new("second-start", Strat::Canary, Route::Istio).await;
    w.error_rate(0.001);
    w.plan = paused_canary(Duration::from_secs(2));
    let engine = w.engine("second");
    let handle = engine.start(w.request(support::release(NEW))).await.expect("started");
    let again = engine.start(w.request(support::release(NEW))).await;
    assert!(matches!(again, Err(RolloutError::AlreadyRunning { .. })), "{again:?}");
    let other = w.engine("another").start(w.request(support::release(NEW))).await;
    assert!(matches!(other, Err(RolloutError::Locked { .. })), "{other:?}");
    let resumed = engine.resume(&w.s.app()).await;
    assert!(matches!(resumed, Err(RolloutError::AlreadyRunning { .. })), "{resumed:?}");
    let report = handle.wait().await.expect("the first rollout ends");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_serves(&w.s, Track::Stable, NEW, "second-start").await;
    assert_lock_and_state_cleared(&w.s, "second-start").await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn renewals_failing_past_the_ttl_stop_the_driver_before_another_takes_over() {
    let mut w = World::new("lease-lost", Strat::Canary, Route::Istio).await;
    w.error_rate(0.001);
    w.plan = paused_canary(Duration::from_secs(20));
    // The engine's Lease and progress go through a proxy that the test can cut off;
    // its platform and router reach the server directly.
    let proxy = CuttableProxy::start().await;
    let ttl = Duration::from_secs(4);
    let engine = state_through(&w, &proxy, engine_config("cut-off").lock_ttl(ttl));
    let mut handle = engine.start(w.request(support::release(NEW))).await.expect("started");
    support::until_paused(&mut handle).await;
    proxy.block();
    let outcome = tokio::time::timeout(Duration::from_secs(30), handle.wait()).await.expect("the driver stops");
    assert!(matches!(outcome, Err(RolloutError::LockLost { .. })), "{outcome:?}");
    // It stopped at 25 %: the canary never got 50 %.
    let vs = crate::engine::read(&w.s, &crate::engine::VIRTUAL_SERVICE, "web").await;
    let canary_weight = vs["spec"]["http"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "primary"))
        .and_then(|p| p["route"].as_array().cloned())
        .and_then(|d| d.into_iter().find(|d| d["destination"]["subset"] == "canary"))
        .and_then(|d| d["weight"].as_i64());
    assert_eq!(canary_weight, Some(25), "no change after the lease could have expired: {vs:#}");
    // Another engine takes over once the lease lapsed and finishes the rollout.
    proxy.unblock();
    let other = w.engine("taker");
    let resumed = loop {
        match other.resume(&w.s.app()).await {
            Ok(handle) => break handle,
            Err(RolloutError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => panic!("resume: {e}"),
        }
    };
    let report = resumed.wait().await.expect("a report");
    assert!(matches!(report.status, DeploymentStatus::Succeeded | DeploymentStatus::RolledBack), "{:?}", report.cause);
    assert_lock_and_state_cleared(&w.s, "lease-lost").await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_state_store_failing_during_the_rollback_leaves_the_app_for_resume_to_restore() {
    let mut w = World::new("rollback-store", Strat::Canary, Route::Istio).await;
    w.error_rate(0.5);
    // The store goes away during a pause before the failing analysis, so that it is
    // gone for the whole rollback however fast the rollback is.
    let analyze = w.plan.steps.iter().position(|s| matches!(s, Step::Analyze(_))).expect("an analysis");
    w.plan.steps.insert(analyze, Step::Pause(PauseKind::Duration(HumanDuration::new(Duration::from_secs(2)))));
    let proxy = CuttableProxy::start().await;
    let engine = state_through(&w, &proxy, engine_config("store-fails"));
    let mut handle = engine.start(w.request(support::release(NEW))).await.expect("started");
    support::until_paused(&mut handle).await;
    proxy.block();
    let _ = tokio::time::timeout(Duration::from_secs(60), handle.wait()).await.expect("the rollout ends");
    proxy.unblock();
    // The failure is remembered: progress is still on the server and a new start is refused.
    let maps: Api<ConfigMap> = w.s.api();
    assert!(maps.get_opt(&state_name(&w.s.app())).await.unwrap().is_some(), "the unfinished rollback is remembered");
    let second = w.engine("second").start(w.request(support::release("3"))).await;
    assert!(second.is_err(), "a new rollout waits for the rollback: {second:?}");
    // resume restores the previous release.
    let other = w.engine("restorer");
    let resumed = loop {
        match other.resume(&w.s.app()).await {
            Ok(handle) => break handle,
            Err(RolloutError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => panic!("resume: {e}"),
        }
    };
    let report = resumed.wait().await.expect("a report");
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{:?}", report.cause);
    assert_serves(&w.s, Track::Stable, OLD, "rollback-store").await;
    assert_eq!(served_tracks(&w).await, ["stable"]);
    assert_nothing_runs(&w.s, NEW, "rollback-store").await;
    assert_lock_and_state_cleared(&w.s, "rollback-store").await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn progress_changed_in_its_configmap_is_refused_at_resume_and_nothing_is_deployed() {
    let mut w = World::new("tampered", Strat::Canary, Route::Istio).await;
    w.error_rate(0.001);
    // The driver dies during a pause, so the crash cannot race the rollout's end.
    w.plan.steps.insert(3, Step::Pause(PauseKind::Duration(HumanDuration::new(Duration::from_secs(3)))));
    let key = [42u8; 32];
    let first = w.signed_engine("engine-a", &key);
    let mut handle = first.start(w.request(support::release(NEW))).await.expect("started");
    support::until_paused(&mut handle).await;
    handle.kill();
    // Someone with `configmaps update` in the namespace swaps the image to deploy.
    let maps: Api<ConfigMap> = w.s.api();
    let name = state_name(&w.s.app());
    let mut cm = maps.get(&name).await.unwrap();
    let data = cm.data.as_mut().unwrap();
    let text = data.get("state.json").cloned().unwrap();
    assert!(text.contains("\"signature\""), "progress is saved signed");
    let evil = text.replace("registry.deploy-rs.test/shop/web:2", "registry.evil.example/miner:latest");
    assert_ne!(evil, text);
    data.insert("state.json".to_owned(), evil);
    maps.replace(&name, &Default::default(), &cm).await.unwrap();

    let second = w.signed_engine("engine-b", &key);
    let err = loop {
        match second.resume(&w.s.app()).await {
            Err(RolloutError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => break e,
            Ok(_) => panic!("a tampered state was resumed"),
        }
    };
    assert!(err.to_string().contains("changed outside the engine"), "{err}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = w.s.api();
    let all = pods.list(&Default::default()).await.unwrap();
    assert!(
        all.items.iter().flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter())).all(|c| !c
            .image
            .as_deref()
            .unwrap_or_default()
            .contains("miner")),
        "the swapped image never ran"
    );
    w.s.cleanup().await;
}
