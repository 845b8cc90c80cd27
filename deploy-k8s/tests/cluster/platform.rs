//! `KubePlatform`, the routers and the stores one call at a time on the real API
//! server (the end-to-end suite that once needed a cluster of its own), with what the server holds
//! read back after each.

use std::time::Duration;

use deploy_core::model::{Percent, Release, Track, TrafficSplit, Version};
use deploy_core::platform::{Platform, PlatformError, TrackState};
use deploy_core::state::{LockRequest, StateError, StateStore};
use deploy_core::traffic::TrafficRouter;
use deploy_k8s::labels;
use deploy_k8s::manifest::{ServiceOptions, service};
use deploy_k8s::router::{ReplicaRatioRouter, ServiceSelectorRouter};
use deploy_k8s::state::{KubeStateStore, lock_name};
use deploy_k8s::{KubePlatform, PlatformOptions};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;

use crate::engine::{complete, deployment, version_of};
use crate::support::{self, CuttableProxy, Scratch};

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn rolling_update_in_place() {
    let s = Scratch::new("rolling-in-place").await;
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    platform.apply(&s.spec(), Track::Stable, &support::release("1"), 2).await.unwrap();
    platform.wait_ready(&s.app(), Track::Stable, DEADLINE).await.unwrap();
    platform.apply(&s.spec(), Track::Stable, &support::release("2"), 2).await.unwrap();
    platform.wait_ready(&s.app(), Track::Stable, DEADLINE).await.unwrap();
    let status = platform.status(&s.app(), Track::Stable).await.unwrap();
    assert_eq!(status.state, TrackState::Ready);
    assert_eq!(status.release.unwrap().as_str(), "2");
    let d = deployment(&s, "stable").await.expect("the Deployment");
    assert_eq!(version_of(&d).as_deref(), Some("2"));
    assert!(complete(&d, 2), "the controllers report it complete: {:?}", d.status);
    s.cleanup().await;
}

#[tokio::test]
async fn blue_green_with_service_selector() {
    let s = Scratch::new("bluegreen-selector").await;
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    s.cluster.apply(&service(&s.spec(), &ServiceOptions::default().track(Track::Blue))).await.unwrap();
    platform.apply(&s.spec(), Track::Blue, &support::release("1"), 1).await.unwrap();
    platform.wait_ready(&s.app(), Track::Blue, DEADLINE).await.unwrap();
    platform.apply(&s.spec(), Track::Green, &support::release("2"), 1).await.unwrap();
    platform.wait_ready(&s.app(), Track::Green, DEADLINE).await.unwrap();
    let router = ServiceSelectorRouter::new(s.cluster.clone());
    router.set_weights(&s.app(), &TrafficSplit::all(Track::Green)).await.unwrap();
    assert_eq!(router.weights(&s.app()).await.unwrap(), TrafficSplit::all(Track::Green));
    let svc: Service = s.api().get("web").await.unwrap();
    assert_eq!(svc.spec.unwrap().selector.unwrap().get(labels::TRACK).map(String::as_str), Some("green"));
    platform.remove(&s.app(), Track::Blue).await.unwrap();
    assert!(deployment(&s, "blue").await.is_none(), "blue is gone from the server");
    s.cleanup().await;
}

#[tokio::test]
async fn canary_by_replica_ratio() {
    let s = Scratch::new("canary-ratio").await;
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    s.cluster.apply(&service(&s.spec(), &ServiceOptions::default())).await.unwrap();
    platform.apply(&s.spec(), Track::Stable, &support::release("1"), 4).await.unwrap();
    platform.apply(&s.spec(), Track::Canary, &support::release("2"), 0).await.unwrap();
    let router = ReplicaRatioRouter::new(s.cluster.clone(), 4);
    router.set_weights(&s.app(), &TrafficSplit::canary(Percent::new(25).unwrap())).await.unwrap();
    platform.wait_ready(&s.app(), Track::Canary, DEADLINE).await.unwrap();
    assert_eq!(router.weights(&s.app()).await.unwrap(), TrafficSplit::canary(Percent::new(25).unwrap()));
    let replicas = |d: Option<k8s_openapi::api::apps::v1::Deployment>| d.and_then(|d| d.spec.replicas);
    assert_eq!(replicas(deployment(&s, "stable").await), Some(3));
    assert_eq!(replicas(deployment(&s, "canary").await), Some(1));
    s.cleanup().await;
}

async fn doomed(test: &str, release: Release, reason: &str) {
    let s = Scratch::new(test).await;
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    platform.apply(&s.spec(), Track::Canary, &release, 1).await.unwrap();
    let started = tokio::time::Instant::now();
    let err = platform.wait_ready(&s.app(), Track::Canary, DEADLINE).await.unwrap_err();
    assert!(matches!(err, PlatformError::Doomed { .. }), "{err}");
    assert!(err.to_string().contains(reason), "{err}");
    assert!(started.elapsed() < DEADLINE / 2, "failed fast, not at the deadline: {:?}", started.elapsed());
    s.cleanup().await;
}

#[tokio::test]
async fn missing_image_is_doomed_before_the_deadline() {
    doomed("doomed-pull", support::missing_image_release("404"), "ImagePullBackOff").await;
}

#[tokio::test]
async fn crash_loop_is_doomed_before_the_deadline() {
    doomed("doomed-crash", support::crash_loop_release("2"), "CrashLoopBackOff").await;
}

#[tokio::test]
async fn never_ready_runs_out_the_deadline() {
    let s = Scratch::new("never-ready").await;
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    platform.apply(&s.spec(), Track::Canary, &support::never_ready_release("2"), 1).await.unwrap();
    let err = platform.wait_ready(&s.app(), Track::Canary, Duration::from_secs(4)).await.unwrap_err();
    assert!(matches!(err, PlatformError::Timeout { .. }), "{err}");
    s.cleanup().await;
}

#[tokio::test]
async fn a_watch_cut_mid_wait_is_re_established() {
    let s = Scratch::new("watch-cut").await;
    let proxy = CuttableProxy::start().await;
    let platform = KubePlatform::new(deploy_k8s::Cluster::new(proxy.client.clone()), PlatformOptions::default());
    let node = s.node.as_ref().expect("this test needs the node stand-in (a cluster without nodes)");
    node.hold();
    platform.apply(&s.spec(), Track::Stable, &support::release("1"), 2).await.unwrap();
    let app = s.app();
    let waiting = tokio::spawn({
        let platform = platform.clone();
        async move { platform.wait_ready(&app, Track::Stable, DEADLINE).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "pods are held Pending: the wait must still run");
    let before = proxy.accepted();
    let cut = proxy.cut();
    assert!(cut >= 1, "the wait's watch went through the proxy");
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.release();
    let ready = tokio::time::timeout(DEADLINE, waiting).await.expect("the wait ends").expect("no panic");
    ready.expect("ready after the watch was re-established");
    assert!(proxy.accepted() > before, "the client reconnected after the cut");
    let d = deployment(&s, "stable").await.unwrap();
    assert!(complete(&d, 2), "{:?}", d.status);
    s.cleanup().await;
}

#[tokio::test]
async fn lock_is_exclusive() {
    let s = Scratch::new("lock").await;
    let store = KubeStateStore::new(s.cluster.clone());
    let lease = store.acquire_lock(&s.app(), &LockRequest::new("e2e-a", Duration::from_secs(30))).await.unwrap();
    assert!(store.acquire_lock(&s.app(), &LockRequest::new("e2e-b", Duration::from_secs(30))).await.is_err());
    let leases: Api<Lease> = s.api();
    let held = leases.get(&lock_name(&s.app())).await.unwrap();
    assert_eq!(held.spec.unwrap().holder_identity.as_deref(), Some("e2e-a"));
    store.release_lock(&lease).await.unwrap();
    store.acquire_lock(&s.app(), &LockRequest::new("e2e-b", Duration::from_secs(30))).await.unwrap();
    let held = leases.get(&lock_name(&s.app())).await.unwrap();
    assert_eq!(held.spec.unwrap().holder_identity.as_deref(), Some("e2e-b"));
    s.cleanup().await;
}

#[tokio::test]
async fn a_lease_is_taken_over_only_as_the_record_observed() {
    let s = Scratch::new("lease-takeover").await;
    let store = KubeStateStore::new(s.cluster.clone());
    let ttl = Duration::from_secs(30);
    let first = store.acquire_lock(&s.app(), &LockRequest::new("engine-a", ttl)).await.unwrap();
    let early = store.acquire_lock(&s.app(), &LockRequest::new("engine-b", ttl)).await;
    assert!(matches!(early, Err(StateError::LockHeld { .. })), "{early:?}");
    // B watches the record; A renews meanwhile, so B's observation is stale.
    let observed = store.read_lock(&s.app()).await.unwrap().expect("a lease");
    let renewed = store.renew_lock(&first, ttl).await.unwrap();
    let stale = store.acquire_lock(&s.app(), &LockRequest::new("engine-b", ttl).take_over(observed)).await;
    assert!(stale.is_err(), "a record that changed since it was observed is not taken over: {stale:?}");
    // A record that stayed as observed (the engine waits a whole ttl for that) is.
    let observed = store.read_lock(&s.app()).await.unwrap().expect("a lease");
    store.acquire_lock(&s.app(), &LockRequest::new("engine-b", ttl).take_over(observed)).await.expect("taken over");
    let leases: Api<Lease> = s.api();
    let held = leases.get(&lock_name(&s.app())).await.unwrap();
    assert_eq!(held.spec.unwrap().holder_identity.as_deref(), Some("engine-b"));
    let lost = store.renew_lock(&renewed, ttl).await;
    assert!(matches!(lost, Err(StateError::LockLost { .. })), "the old holder lost it: {lost:?}");
    let released = store.release_lock(&renewed).await;
    assert!(released.is_ok(), "{released:?}");
    assert!(leases.get_opt(&lock_name(&s.app())).await.unwrap().is_some(), "the old holder's release leaves B's lease");
    s.cleanup().await;
}

#[tokio::test]
async fn a_release_with_a_version_label_reads_back() {
    let s = Scratch::new("status").await;
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    let release = Release::new(Version::new("1.4.2").unwrap(), support::release("1.4.2").image);
    platform.apply(&s.spec(), Track::Stable, &release, 1).await.unwrap();
    platform.wait_ready(&s.app(), Track::Stable, DEADLINE).await.unwrap();
    let status = platform.status(&s.app(), Track::Stable).await.unwrap();
    assert_eq!(status.release.map(|v| v.to_string()).as_deref(), Some("1.4.2"));
    assert_eq!(status.state, TrackState::Ready);
    s.cleanup().await;
}
