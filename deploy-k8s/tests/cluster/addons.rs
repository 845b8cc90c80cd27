//! The seeds' add-on objects: each renders as YAML, the built-in kinds validate
//! strictly against Kubernetes' schemas (kubernetes-validate), and each applies to
//! the test API server; the custom kinds are read back unchanged, so no field was
//! pruned by the upstream CRD's schema.

use std::path::PathBuf;
use std::process::Command;

use deploy_core::model::{Autoscaling, Environment, EnvironmentProfile, Namespace, Percent, Quantity, ResourceList};
use deploy_k8s::manifest::backup::{PgDumpOptions, pg_dump_cron_job, velero_schedule};
use deploy_k8s::manifest::edge::{IstioGateway, NginxSettings, https_gateway, mesh_telemetry, nginx_configuration};
use deploy_k8s::manifest::gitops::argo_application;
use deploy_k8s::manifest::scaling::{
    ClusterAutoscalerOptions, ScaledObjectTrigger, VpaMode, cluster_autoscaler, scaled_object, vertical_pod_autoscaler,
};
use deploy_k8s::manifest::stateful::{StatefulSetOptions, VolumeClaim, headless_service, stateful_set};
use deploy_k8s::manifest::{
    DeploymentOptions, DisruptionBudget, HpaOptions, ManifestSet, ServiceOptions, deployment,
    horizontal_pod_autoscaler, pod_disruption_budget, service,
};
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::support::{self, Scratch};

/// Validates `yaml` strictly (no unknown field) against Kubernetes 1.37's schemas.
pub(crate) fn kubernetes_validate(name: &str, yaml: &str) {
    let dir = std::env::temp_dir().join(format!("deploy-rs-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.37.0", "--no-warn"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubernetes-validate (PyPI) is needed: `pip install kubernetes-validate` (./scripts/test.sh installs it): {e}")
        });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("ERROR"), "{name} does not validate strictly:\n{text}\n{yaml}");
}

fn production_spec(s: &Scratch) -> deploy_core::model::AppSpec {
    EnvironmentProfile::preset(Environment::Production).apply_to(s.spec())
}

#[tokio::test]
async fn built_in_kinds_validate_strictly_and_apply() {
    let s = Scratch::new("addons-builtin").await;
    let spec = production_spec(&s);
    let db = s.spec().resources(deploy_core::model::Resources::new(
        ResourceList::new("250m", "512Mi").unwrap(),
        ResourceList::new("1", "1Gi").unwrap(),
    ));
    let stateful = stateful_set(
        &db,
        &StatefulSetOptions::default().volume_claim(VolumeClaim::new(
            "data",
            Quantity::parse("10Gi").unwrap(),
            "/var/lib/postgresql/data",
        )),
    );
    let cron = pg_dump_cron_job(
        &PgDumpOptions::new(s.ns(), "web-headless", "shop")
            .image("registry.deploy-rs.test/postgres:16")
            .credentials("backup", "web-db", "password"),
    );
    let mut set = ManifestSet::new();
    set.push(&deployment(&spec, &DeploymentOptions::default().release(support::release("1")))).unwrap();
    set.push(&service(&spec, &ServiceOptions::default())).unwrap();
    set.push(&horizontal_pod_autoscaler(&spec, &HpaOptions::default()).unwrap()).unwrap();
    set.push(&pod_disruption_budget(&spec, &DisruptionBudget::default())).unwrap();
    set.push(&stateful).unwrap();
    set.push(&headless_service(&db)).unwrap();
    set.push(&cron).unwrap();
    set.push(&nginx_configuration(&s.ns(), &NginxSettings::default())).unwrap();
    let autoscaler = cluster_autoscaler(
        &ClusterAutoscalerOptions::new("registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.0", "clusterapi")
            .node_group(3, 10, "workers"),
    );
    set.push(&autoscaler).unwrap();
    let yaml = set.to_yaml().unwrap();
    assert_eq!(yaml.matches("\n---\n").count() + 1, 9, "nine documents");
    kubernetes_validate("built-in", &yaml);

    // And the server takes them (HPA, PDB and CronJob in the versions it serves).
    s.cluster.apply(&stateful).await.unwrap();
    s.cluster.apply(&headless_service(&db)).await.unwrap();
    s.cluster.apply(&cron).await.unwrap();
    s.cluster.apply(&nginx_configuration(&s.ns(), &NginxSettings::default())).await.unwrap();
    let mut autoscaler = autoscaler;
    autoscaler.metadata.namespace = Some(s.namespace.clone());
    s.cluster.apply(&autoscaler).await.unwrap();
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = s.api();
    let read = sets.get("web").await.unwrap();
    let claims = read.spec.volume_claim_templates.unwrap();
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    assert_eq!(read.spec.service_name.as_deref(), Some("web-headless"));
    s.cleanup().await;
}

/// Applies `object` and reads it back through its own group and version: the
/// spec must come back as sent (a CRD's structural schema prunes unknown fields).
async fn round_trip<K>(s: &Scratch, object: &K)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let mut object = object.clone();
    object.meta_mut().namespace = Some(s.namespace.clone());
    s.cluster.apply(&object).await.unwrap_or_else(|e| panic!("apply {}: {e}", K::kind(&())));
    let gvk = GroupVersionKind::gvk(&K::group(&()), &K::version(&()), &K::kind(&()));
    let api: Api<DynamicObject> = Api::namespaced_with(
        s.cluster.client().clone(),
        &s.namespace,
        &ApiResource::from_gvk_with_plural(&gvk, &K::plural(&())),
    );
    let name = object.meta().name.clone().unwrap();
    let read = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
    let sent = serde_json::to_value(&object).unwrap();
    assert_eq!(read["spec"], sent["spec"], "{} {name}: the server kept every field", K::kind(&()));
}

#[tokio::test]
async fn custom_kinds_render_and_survive_the_upstream_crds() {
    let s = Scratch::new("addons-custom").await;
    support::install_crds(s.cluster.client()).await;
    let spec = production_spec(&s);
    let vpa = vertical_pod_autoscaler(&spec, "web-stable", VpaMode::Recreate);
    assert_eq!(vpa.spec.update_policy.update_mode, "Off", "beside the production HPA it only recommends");
    assert_eq!(
        vpa.spec.resource_policy.as_ref().unwrap().container_policies[0].controlled_resources,
        ["memory"],
        "the HPA acts on CPU: the VPA leaves CPU alone"
    );
    let keda = scaled_object(
        &s.spec().autoscaling(Autoscaling::cpu(1, 20, Percent::new(80).unwrap())),
        "web-stable",
        vec![ScaledObjectTrigger::prometheus("http://prometheus:9090", "sum(rate(http_requests_total[1m]))", 100.0)],
    );
    let istio_gateway = IstioGateway::https(&s.ns(), "web", vec!["web.example.com".into()], "web-tls");
    let telemetry = mesh_telemetry(&s.ns(), "otel", 2.5);
    let gateway = https_gateway(&s.ns(), "public", "istio", "web.example.com", "web-tls");
    let schedule = velero_schedule(&s.ns(), "shop-daily", "0 3 * * *", vec!["shop".into()], 720);
    let application = argo_application(
        &s.ns(),
        "web",
        "https://git.example.com/shop/deploy.git",
        "main",
        "web/production",
        &Namespace::new("shop").unwrap(),
    );
    let mut set = ManifestSet::new();
    set.push(&vpa).unwrap().push(&keda).unwrap().push(&istio_gateway).unwrap().push(&telemetry).unwrap();
    set.push(&gateway).unwrap().push(&schedule).unwrap().push(&application).unwrap();
    let yaml = set.to_yaml().unwrap();
    for kind in ["VerticalPodAutoscaler", "ScaledObject", "kind: Gateway", "Telemetry", "Schedule", "Application"] {
        assert!(yaml.contains(kind), "{kind} rendered:\n{yaml}");
    }
    round_trip(&s, &vpa).await;
    round_trip(&s, &keda).await;
    round_trip(&s, &istio_gateway).await;
    round_trip(&s, &telemetry).await;
    round_trip(&s, &gateway).await;
    round_trip(&s, &schedule).await;
    round_trip(&s, &application).await;
    s.cleanup().await;
}
