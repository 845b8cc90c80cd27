//! Kinds whose version differs between servers are applied in the version the
//! server serves: the 1.20 test server has neither `autoscaling/v2` nor `policy/v1`.

use deploy_core::model::{Autoscaling, Percent};
use deploy_k8s::discovery::{Compatible, ServedGroups, compatible};
use deploy_k8s::error::KubeError;
use deploy_k8s::manifest::{DisruptionBudget, HpaOptions, horizontal_pod_autoscaler, pod_disruption_budget};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::support::Scratch;

fn dynamic(s: &Scratch, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(s.cluster.client().clone(), &s.namespace, &resource)
}

#[tokio::test]
async fn an_hpa_is_applied_in_the_version_the_server_serves() {
    let s = Scratch::new("hpa").await;
    let spec = s.spec().autoscaling(Autoscaling::cpu(3, 10, Percent::new(70).unwrap()));
    let hpa = horizontal_pod_autoscaler(&spec, &HpaOptions::default()).expect("the spec autoscales");
    let entry = compatible("autoscaling", "HorizontalPodAutoscaler").unwrap();
    let version = s.cluster.served_version(entry).await.unwrap();
    let stored = s.cluster.apply(&hpa).await.expect("applied in a served version");
    assert_eq!(stored.spec.max_replicas, 10);
    // Read it through the version the server chose, as kubectl would.
    let read = dynamic(&s, "autoscaling", version, "HorizontalPodAutoscaler", "horizontalpodautoscalers")
        .get("web")
        .await
        .unwrap();
    let read = serde_json::to_value(read).unwrap();
    assert_eq!(read["spec"]["minReplicas"], 3);
    assert_eq!(read["spec"]["maxReplicas"], 10);
    assert_eq!(read["spec"]["scaleTargetRef"]["name"], hpa.spec.scale_target_ref.name);
    assert_eq!(read["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(read["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70);
    // Applying again is idempotent.
    s.cluster.apply(&hpa).await.expect("re-applied");
    s.cleanup().await;
}

#[tokio::test]
async fn a_pdb_is_applied_in_the_version_the_server_serves() {
    let s = Scratch::new("pdb").await;
    let pdb = pod_disruption_budget(&s.spec(), &DisruptionBudget::default());
    let version = s.cluster.served_version(compatible("policy", "PodDisruptionBudget").unwrap()).await.unwrap();
    s.cluster.apply(&pdb).await.expect("applied in a served version");
    let read = dynamic(&s, "policy", version, "PodDisruptionBudget", "poddisruptionbudgets").get("web").await.unwrap();
    let read = serde_json::to_value(read).unwrap();
    assert_eq!(read["spec"]["maxUnavailable"], 1);
    assert_eq!(read["spec"]["selector"], serde_json::to_value(&pdb.spec.as_ref().unwrap().selector).unwrap());
    s.cleanup().await;
}

#[tokio::test]
async fn a_kind_served_in_no_known_version_names_what_the_server_offers() {
    let s = Scratch::new("unserved").await;
    let only_v2 = Compatible { group: "autoscaling", kind: "HorizontalPodAutoscaler", versions: &["v2"] };
    let served = ServedGroups::discover(s.cluster.client(), &only_v2).await.unwrap();
    let offered = served.versions("autoscaling").to_vec();
    assert!(offered.iter().any(|v| v == "v1"), "the server lists its autoscaling versions: {offered:?}");
    if offered.iter().any(|v| v == "v2") {
        // A server of 1.23 or later: nothing to refuse.
        assert_eq!(served.pick(&only_v2).unwrap(), "v2");
    } else {
        let err = served.pick(&only_v2).unwrap_err();
        assert!(matches!(err, KubeError::Unserved { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("autoscaling/HorizontalPodAutoscaler") && text.contains("v1"), "{text}");
    }
    s.cleanup().await;
}
