//! How `KubePlatform` treats workloads on the real server: an HPA per track that
//! keeps the replica count it chose, the `Cluster`'s field manager, and objects it
//! does not own.

use std::time::Duration;

use deploy_core::error::Classify;
use deploy_core::model::{Autoscaling, Percent, Track};
use deploy_core::platform::Platform;
use deploy_k8s::discovery::compatible;
use deploy_k8s::{Cluster, KubePlatform, PlatformOptions, labels};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::engine::deployment;
use crate::support::{self, Scratch};

const DEADLINE: Duration = Duration::from_secs(60);

async fn hpa(s: &Scratch, name: &str) -> Option<serde_json::Value> {
    let version =
        s.cluster.served_version(compatible("autoscaling", "HorizontalPodAutoscaler").unwrap()).await.unwrap();
    let gvk = GroupVersionKind::gvk("autoscaling", version, "HorizontalPodAutoscaler");
    let api: Api<DynamicObject> = Api::namespaced_with(
        s.cluster.client().clone(),
        &s.namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "horizontalpodautoscalers"),
    );
    api.get_opt(name).await.unwrap().map(|o| serde_json::to_value(o).unwrap())
}

#[tokio::test]
async fn each_track_gets_its_hpa_and_keeps_the_replicas_it_chose() {
    let s = Scratch::new("hpa-track").await;
    let spec = s.spec().autoscaling(Autoscaling::cpu(2, 8, Percent::new(70).unwrap()));
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    platform.apply(&spec, Track::Stable, &support::release("1"), 2).await.unwrap();
    platform.wait_ready(&s.app(), Track::Stable, DEADLINE).await.unwrap();
    let stable = hpa(&s, "web-stable").await.expect("the stable track's HPA");
    assert_eq!(stable["spec"]["scaleTargetRef"]["name"], "web-stable");
    assert_eq!(stable["spec"]["minReplicas"], 2);
    assert_eq!(stable["spec"]["maxReplicas"], 8);
    assert_eq!(stable["metadata"]["labels"][labels::TRACK], "stable");

    // The HPA scales the track up, through the scale subresource, as its controller does.
    let deployments: Api<Deployment> = s.api();
    deployments
        .patch_scale(
            "web-stable",
            &PatchParams::apply("horizontal-pod-autoscaler").force(),
            &Patch::Apply(json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    // The next release's apply keeps the HPA's count.
    platform.apply(&spec, Track::Stable, &support::release("2"), 2).await.unwrap();
    platform.wait_ready(&s.app(), Track::Stable, DEADLINE).await.unwrap();
    let d = deployment(&s, "stable").await.unwrap();
    assert_eq!(d.spec.replicas, Some(5), "the apply did not reset what the HPA chose");
    assert_eq!(crate::engine::version_of(&d).as_deref(), Some("2"));

    platform.apply(&spec, Track::Canary, &support::release("3"), 1).await.unwrap();
    assert_eq!(
        hpa(&s, "web-canary").await.expect("the canary's own HPA")["spec"]["scaleTargetRef"]["name"],
        "web-canary"
    );
    platform.remove(&s.app(), Track::Canary).await.unwrap();
    crate::support::eventually("the garbage collector removes the canary's HPA with its track", DEADLINE, || async {
        hpa(&s, "web-canary").await.is_none()
    })
    .await;
    assert!(deployment(&s, "canary").await.is_none());
    assert!(hpa(&s, "web-stable").await.is_some(), "the other track's HPA stays");
    s.cleanup().await;
}

#[tokio::test]
async fn applies_as_the_clusters_field_manager() {
    let s = Scratch::new("field-manager").await;
    let cluster = Cluster::new(s.cluster.client().clone()).field_manager("team-ci");
    let platform = KubePlatform::new(cluster, PlatformOptions::default());
    platform.apply(&s.spec(), Track::Stable, &support::release("1"), 1).await.unwrap();
    let d = deployment(&s, "stable").await.unwrap();
    let managers: Vec<String> =
        d.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.iter().any(|m| m == "team-ci"), "{managers:?}");
    assert!(!managers.iter().any(|m| m == "deploy-rs"), "{managers:?}");
    s.cleanup().await;
}

#[tokio::test]
async fn a_users_deployment_of_the_same_name_is_left_alone() {
    let s = Scratch::new("not-owned").await;
    let deployments: Api<Deployment> = s.api();
    let theirs: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web-stable", "labels": {"team": "payments"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "theirs"}},
            "template": {"metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "c", "image": "registry.deploy-rs.test/theirs:1"}]}}}
    }))
    .unwrap();
    let created = deployments.create(&PostParams::default(), &theirs).await.unwrap();
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
    let err = platform.apply(&s.spec(), Track::Stable, &support::release("1"), 2).await.unwrap_err();
    assert!(err.is_conflict() && err.to_string().contains("not managed by deploy-rs"), "{err}");
    let err = platform.remove(&s.app(), Track::Stable).await.unwrap_err();
    assert!(err.to_string().contains("not managed by deploy-rs"), "{err}");
    let after = deployments.get("web-stable").await.unwrap();
    assert_eq!(after.metadata.uid, created.metadata.uid, "still their object");
    assert_eq!(after.metadata.generation, created.metadata.generation, "its spec is unchanged");
    assert_eq!(after.metadata.labels, created.metadata.labels, "its labels are unchanged");
    assert_eq!(
        after
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .filter(|m| m == "deploy-rs")
            .count(),
        0
    );
    s.cleanup().await;
}

#[tokio::test]
async fn a_deployment_with_every_pod_template_field_is_applied_and_rolled() {
    use deploy_k8s::PlatformOptions;
    use deploy_k8s::manifest::{DeploymentOptions, PodVolume, VolumeSource};
    use k8s_openapi::api::core::v1::{
        Container, PodSecurityContext, PodSpec, SecurityContext, ServiceAccount, Toleration, TopologySpreadConstraint,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    let s = Scratch::new("pod-template").await;
    let accounts: Api<ServiceAccount> = s.api();
    accounts
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "web"}})).unwrap())
        .await
        .unwrap();
    let sidecar = Container {
        name: "proxy".into(),
        image: Some("registry.deploy-rs.test/proxy:1".into()),
        ..Container::default()
    };
    let migrate = Container {
        name: "migrate".into(),
        image: Some("registry.deploy-rs.test/web-migrate:1".into()),
        command: Some(vec!["/migrate".into(), "--up".into()]),
        ..Container::default()
    };
    let options = DeploymentOptions::default()
        .volume(PodVolume::new("cache", VolumeSource::EmptyDir { size_limit: Some("64Mi".into()) }, "/var/cache/web"))
        .volume(PodVolume::new("settings", VolumeSource::ConfigMap("web-settings".into()), "/etc/web").read_only())
        .volume(PodVolume::new("tls", VolumeSource::Secret("web-tls".into()), "/etc/tls").read_only())
        .volume(PodVolume::new("data", VolumeSource::PersistentVolumeClaim("web-data".into()), "/data"))
        .init_container(migrate)
        .sidecar(sidecar)
        .command(["/web"])
        .args(["--port", "8080"])
        .image_pull_secret("registry-credentials")
        .service_account("web")
        .node_selector("kubernetes.io/os", "linux")
        .toleration(Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("web".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        })
        .topology_spread(TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some([("app.kubernetes.io/name".to_owned(), "web".to_owned())].into()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        })
        .pod_security(PodSecurityContext {
            run_as_user: Some(2000),
            run_as_non_root: Some(true),
            ..PodSecurityContext::default()
        })
        .container_security(SecurityContext {
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            ..SecurityContext::default()
        })
        .pod_spec_patch(PodSpec {
            termination_grace_period_seconds: Some(45),
            dns_policy: Some("Default".into()),
            ..PodSpec::default()
        });
    let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default().deployment(options));
    for version in ["1", "2"] {
        platform.apply(&s.spec(), Track::Stable, &support::release(version), 2).await.unwrap();
        platform.wait_ready(&s.app(), Track::Stable, DEADLINE).await.unwrap();
    }
    let d = deployment(&s, "stable").await.unwrap();
    assert_eq!(crate::engine::version_of(&d).as_deref(), Some("2"));
    assert!(crate::engine::complete(&d, 2), "{:?}", d.status);
    let pod = serde_json::to_value(d.spec.template.spec.unwrap()).unwrap();
    let volumes: Vec<_> =
        pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(volumes, ["cache", "settings", "tls", "data", "tmp"], "{pod:#}");
    assert_eq!(pod["volumes"][0]["emptyDir"]["sizeLimit"], "64Mi");
    assert_eq!(pod["volumes"][1]["configMap"]["name"], "web-settings");
    assert_eq!(pod["volumes"][2]["secret"]["secretName"], "web-tls");
    assert_eq!(pod["volumes"][3]["persistentVolumeClaim"]["claimName"], "web-data");
    assert!(pod["volumes"][4]["emptyDir"].is_object(), "a writable /tmp next to the read-only root");
    let app = &pod["containers"][0];
    let mounts: Vec<_> =
        app["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap().to_owned()).collect();
    assert_eq!(mounts, ["/var/cache/web", "/etc/web", "/etc/tls", "/data", "/tmp"]);
    assert_eq!(app["volumeMounts"][1]["readOnly"], true);
    assert_eq!(app["command"], json!(["/web"]));
    assert_eq!(app["args"], json!(["--port", "8080"]));
    assert_eq!(app["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["containers"][1]["name"], "proxy");
    assert_eq!(pod["initContainers"][0]["command"], json!(["/migrate", "--up"]));
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "registry-credentials"}]));
    assert_eq!(pod["serviceAccountName"], "web");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(pod["securityContext"]["runAsUser"], 2000);
    assert_eq!(pod["terminationGracePeriodSeconds"], 45, "the patch is merged last");
    assert_eq!(pod["dnsPolicy"], "Default");
    // The rolled pods run with all of it.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = s.api();
    let running = pods.list(&kube::api::ListParams::default().labels(&format!("{}=2", labels::VERSION))).await.unwrap();
    assert_eq!(running.items.len(), 2);
    for p in running.items {
        let spec = p.spec.unwrap();
        assert_eq!(spec.containers.len(), 2);
        assert_eq!(spec.init_containers.map(|c| c.len()), Some(1));
    }
    s.cleanup().await;
}
