//! Pre-deployment checks against the real server, with quotas whose usage the
//! real resourcequota controller computes.

use std::time::Duration;

use async_trait::async_trait;
use deploy_core::model::{Digest, ImageRef, ResourceList, Track};
use deploy_core::platform::Platform;
use deploy_core::registry::{ImageRegistry, PushEvent, RegistryError};
use deploy_k8s::KubePlatform;
use deploy_k8s::preflight::{CheckOutcome, PreflightRequest, preflight};
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
    let platform = KubePlatform::new(s.cluster.clone());
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
    let request = PreflightRequest::new(&s.namespace, image.clone(), ResourceList::default(), 3);
    let report = preflight(&s.cluster, &Present, &request).await;
    let CheckOutcome::Failed(why) = &report.check("quota").unwrap().outcome else { panic!("{report}") };
    assert_eq!(why, "small: pods needs 3 but 2 is free", "{report}");
    let report =
        preflight(&s.cluster, &Present, &PreflightRequest::new(&s.namespace, image, ResourceList::default(), 2)).await;
    assert!(report.check("quota").unwrap().passed(), "{report}");
    assert!(report.check("namespace").unwrap().passed() && report.check("api-server").unwrap().passed(), "{report}");
    s.cleanup().await;
}
