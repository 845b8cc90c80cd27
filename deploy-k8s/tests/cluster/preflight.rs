//! Pre-deployment checks against the real server, with quotas whose usage the
//! real resourcequota controller computes.

use std::time::Duration;

use async_trait::async_trait;
use deploy_core::check::CheckOutcome;
use deploy_core::model::{Digest, ImageRef, ResourceList, Track};
use deploy_core::platform::Platform;
use deploy_core::registry::{ImageRegistry, PushEvent, RegistryError};
use deploy_k8s::preflight::{PreflightRequest, preflight};
use deploy_k8s::{KubePlatform, PlatformOptions};
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::{self, Scratch, eventually};

/// The image exists: this suite checks the cluster's side.
struct Present;

#[async_trait]
impl ImageRegistry for Present {
    async fn exists(&self, _: &ImageRef) -> Result<bool, RegistryError> {
        Ok(true)
    }
    async fn digest(&self, _: &ImageRef) -> Result<Option<Digest>, RegistryError> {
        Ok(None)
    }
    fn push(&self, image: ImageRef) -> BoxStream<'_, Result<PushEvent, RegistryError>> {
        Box::pin(futures::stream::once(async move { Err(RegistryError::NotFound { image }) }))
    }
}

#[tokio::test]
async fn a_pod_count_quota_is_read_as_the_controller_counts_it() {
    let s = Scratch::new("preflight-quota").await;
    // Two pods already run.
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    platform.apply(&s.spec(), Track::Stable, &support::release("1"), 2).await.unwrap();
    platform.wait_ready(&s.app(), Track::Stable, Duration::from_secs(60)).await.unwrap();
    let quotas: Api<ResourceQuota> = s.api();
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "small"},
        "spec": {"hard": {"pods": "4", "count/deployments.apps": "2"}}
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    eventually("the resourcequota controller counts the running pods", Duration::from_secs(30), || async {
        let q = quotas.get("small").await.unwrap();
        let used = q.status.and_then(|st| st.used).unwrap_or_default();
        used.get("pods").is_some_and(|p| p.0 == "2") && used.contains_key("count/deployments.apps")
    })
    .await;
    let image = support::release("2").image;
    let request = PreflightRequest::new(s.ns(), image.clone(), ResourceList::default(), 3);
    let report = preflight(&s.cluster, &Present, &request).await;
    let CheckOutcome::Failed(why) = &report.check("quota").unwrap().outcome else { panic!("{report}") };
    assert_eq!(why, "small: pods needs 3 but 2 is free", "{report}");
    let report =
        preflight(&s.cluster, &Present, &PreflightRequest::new(s.ns(), image, ResourceList::default(), 2)).await;
    assert!(report.check("quota").unwrap().passed(), "{report}");
    assert!(report.check("namespace").unwrap().passed() && report.check("api-server").unwrap().passed(), "{report}");
    s.cleanup().await;
}

/// The engine's preflight on the real server: a canary that would need more pods
/// than the namespace's quota allows stops before anything changes, naming the
/// quota; without the quota the same rollout runs and its record says preflight
/// passed.
#[tokio::test]
async fn the_engine_runs_the_preflight_before_anything_changes() {
    use crate::engine::{NEW, OLD, REPLICAS, Route, Strat, World, assert_serves, deployment, engine_config};
    use deploy_core::model::CauseKind;
    use deploy_core::model::DeploymentStatus;
    use deploy_k8s::preflight::{CheckName, KubePreflight};
    use std::sync::Arc;

    let w = World::new("preflight-engine", Strat::Canary, Route::Istio).await;
    w.error_rate(0.001);
    let quotas: Api<ResourceQuota> = w.s.api();
    let quota: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "pods"}, "spec": {"hard": {"pods": REPLICAS.to_string()}}}))
            .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    eventually("the resourcequota controller counts the running pods", Duration::from_secs(30), || async {
        let q = quotas.get("pods").await.unwrap();
        q.status.and_then(|st| st.used).is_some_and(|u| u.get("pods").is_some_and(|p| p.0 == REPLICAS.to_string()))
    })
    .await;
    // This cluster has no Node objects (the node stand-in plays the kubelets), so
    // capacity is reported but does not block, as on a cluster with an autoscaler.
    let preflight =
        || Arc::new(KubePreflight::new(w.s.cluster.clone(), Arc::new(Present)).advisory(CheckName::Capacity));
    let engine = w.builder_on(w.s.cluster.clone(), engine_config("preflight")).preflight(preflight()).build();
    let report = engine.run(w.request(support::release(NEW))).await.expect("a report");
    assert_ne!(report.status, DeploymentStatus::Succeeded);
    let cause = report.cause.expect("a cause");
    assert_eq!(cause.kind, CauseKind::PreflightFailed, "{cause}");
    assert!(cause.message.contains("blocked by quota"), "{cause}");
    assert!(cause.message.contains("pods: pods needs"), "the quota's own numbers: {cause}");
    assert!(deployment(&w.s, "canary").await.is_none(), "no canary was deployed");
    assert_serves(&w.s, Track::Stable, OLD, "preflight-engine").await;

    quotas.delete("pods", &Default::default()).await.unwrap();
    let engine = w.builder_on(w.s.cluster.clone(), engine_config("preflight")).preflight(preflight()).build();
    let report = engine.run(w.request(support::release(NEW))).await.expect("a report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let go = report.record.logs.iter().find(|l| l.message.starts_with("preflight go (5 checks)"));
    let go = go.unwrap_or_else(|| panic!("no preflight in the record: {:?}", report.record.logs));
    assert!(go.message.contains("api-server passed: reachable, Kubernetes v1.20.2"), "{}", go.message);
    assert_serves(&w.s, Track::Stable, NEW, "preflight-engine").await;
    w.s.cleanup().await;
}
