//! End-to-end suite against a real cluster from `KUBECONFIG` (kind, k3d, any
//! other). Ignored by default; run with
//! `cargo test -p deploy-k8s --test e2e -- --ignored --test-threads=1`.
//! See docs/kubernetes.md. Each test works in its own namespace and deletes it at
//! the end.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test on any error")]

use std::collections::BTreeMap;
use std::time::Duration;

use deploy_core::model::{AppId, AppSpec, ImageRef, Name, Percent, Port, Release, Track, TrafficSplit, Version};
use deploy_core::platform::{Platform, PlatformError, TrackState};
use deploy_core::state::StateStore;
use deploy_core::traffic::TrafficRouter;
use deploy_k8s::manifest::{ServiceOptions, service};
use deploy_k8s::router::{ReplicaRatioRouter, ServiceSelectorRouter};
use deploy_k8s::state::KubeStateStore;
use deploy_k8s::{Cluster, KubePlatform};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};

/// The image the suite runs; any image that starts and stays up without
/// arguments works. Override with `DEPLOY_RS_E2E_IMAGE` (load it into kind with
/// `kind load docker-image` when the cluster cannot pull).
fn image() -> String {
    std::env::var("DEPLOY_RS_E2E_IMAGE").unwrap_or_else(|_| "registry.k8s.io/pause:3.10".to_owned())
}

struct Scratch {
    cluster: Cluster,
    namespace: String,
}

impl Scratch {
    async fn new(test: &str) -> Self {
        let client = kube::Client::try_default().await.expect("a cluster from KUBECONFIG");
        let cluster = Cluster::new(client);
        let namespace = format!("deploy-rs-e2e-{test}-{}", std::process::id());
        cluster.ensure_namespace(&namespace, BTreeMap::new()).await.expect("create the test namespace");
        Self { cluster, namespace }
    }

    fn spec(&self) -> AppSpec {
        AppSpec::new(Name::new("web").unwrap(), Name::new(&self.namespace).unwrap(), ImageRef::parse(&image()).unwrap())
            .port(Port::tcp("http", 8080).unwrap())
    }

    fn app(&self) -> AppId {
        self.spec().id()
    }

    async fn cleanup(self) {
        let api: Api<Namespace> = Api::all(self.cluster.client().clone());
        let _ = api.delete(&self.namespace, &DeleteParams::background()).await;
    }
}

fn release(version: &str) -> Release {
    Release::new(Version::new(version).unwrap(), ImageRef::parse(&image()).unwrap())
}

const DEADLINE: Duration = Duration::from_secs(180);

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn rolling_update_in_place() {
    let s = Scratch::new("rolling").await;
    let platform = KubePlatform::new(s.cluster.clone());
    platform.apply(&s.spec(), Track::Stable, &release("1"), 2).await.unwrap();
    platform.wait_ready(&s.app(), Track::Stable, DEADLINE).await.unwrap();
    platform.apply(&s.spec(), Track::Stable, &release("2"), 2).await.unwrap();
    platform.wait_ready(&s.app(), Track::Stable, DEADLINE).await.unwrap();
    let status = platform.status(&s.app(), Track::Stable).await.unwrap();
    assert_eq!(status.state, TrackState::Ready);
    assert_eq!(status.release.unwrap().as_str(), "2");
    s.cleanup().await;
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn blue_green_with_service_selector() {
    let s = Scratch::new("bluegreen").await;
    let platform = KubePlatform::new(s.cluster.clone());
    s.cluster.apply(&service(&s.spec(), &ServiceOptions::default().track(Track::Blue))).await.unwrap();
    platform.apply(&s.spec(), Track::Blue, &release("1"), 1).await.unwrap();
    platform.wait_ready(&s.app(), Track::Blue, DEADLINE).await.unwrap();
    platform.apply(&s.spec(), Track::Green, &release("2"), 1).await.unwrap();
    platform.wait_ready(&s.app(), Track::Green, DEADLINE).await.unwrap();
    let router = ServiceSelectorRouter::new(s.cluster.clone());
    router.set_weights(&s.app(), &TrafficSplit::all(Track::Green)).await.unwrap();
    assert_eq!(router.weights(&s.app()).await.unwrap(), TrafficSplit::all(Track::Green));
    platform.remove(&s.app(), Track::Blue).await.unwrap();
    s.cleanup().await;
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn canary_by_replica_ratio() {
    let s = Scratch::new("canary").await;
    let platform = KubePlatform::new(s.cluster.clone());
    s.cluster.apply(&service(&s.spec(), &ServiceOptions::default())).await.unwrap();
    platform.apply(&s.spec(), Track::Stable, &release("1"), 4).await.unwrap();
    platform.apply(&s.spec(), Track::Canary, &release("2"), 0).await.unwrap();
    let router = ReplicaRatioRouter::new(s.cluster.clone(), 4);
    router.set_weights(&s.app(), &TrafficSplit::canary(Percent::new(25).unwrap())).await.unwrap();
    platform.wait_ready(&s.app(), Track::Canary, DEADLINE).await.unwrap();
    assert_eq!(router.weights(&s.app()).await.unwrap(), TrafficSplit::canary(Percent::new(25).unwrap()));
    s.cleanup().await;
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn missing_image_is_doomed_before_the_deadline() {
    let s = Scratch::new("doomed").await;
    let platform = KubePlatform::new(s.cluster.clone());
    let missing = Release::new(
        Version::new("404").unwrap(),
        ImageRef::parse("registry.invalid/deploy-rs/does-not-exist:404").unwrap(),
    );
    platform.apply(&s.spec(), Track::Canary, &missing, 1).await.unwrap();
    let err = platform.wait_ready(&s.app(), Track::Canary, DEADLINE).await.unwrap_err();
    assert!(matches!(err, PlatformError::Doomed { .. }), "{err}");
    s.cleanup().await;
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn lock_is_exclusive() {
    let s = Scratch::new("lock").await;
    let store = KubeStateStore::new(s.cluster.clone());
    let lease = store.acquire_lock(&s.app(), "e2e-a", Duration::from_secs(30)).await.unwrap();
    assert!(store.acquire_lock(&s.app(), "e2e-b", Duration::from_secs(30)).await.is_err());
    store.release_lock(&lease).await.unwrap();
    store.acquire_lock(&s.app(), "e2e-b", Duration::from_secs(30)).await.unwrap();
    s.cleanup().await;
}
