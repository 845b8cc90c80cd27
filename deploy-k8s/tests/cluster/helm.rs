//! Helm interop on the real API server: release Secrets written as Helm's storage
//! driver writes them are read back as revisions and deployment records (and DORA
//! metrics), and an app exported as a chart renders objects that validate strictly
//! and apply.

use std::collections::BTreeMap;

use deploy_core::dora::{DoraAccumulator, DoraWindow};
use deploy_core::model::{DeploymentStatus, Environment};
use deploy_k8s::helm::{ChartMetadata, HelmRelease, HelmReleases, encode_release, export_chart};
use deploy_k8s::manifest::{DeploymentOptions, ManifestSet, ServiceOptions, deployment, service};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, PostParams};

use crate::addons::kubernetes_validate;
use crate::support::{self, Scratch};

/// A release revision as `helm upgrade` records it (the JSON fields Helm writes).
fn helm_release(namespace: &str, revision: u32, status: &str, description: &str, image: &str) -> HelmRelease {
    let json = serde_json::json!({
        "name": "web",
        "info": {
            "first_deployed": "2026-03-01T09:00:00.123456789Z",
            "last_deployed": format!("2026-03-0{revision}T09:30:00.5+01:00"),
            "deleted": "",
            "description": description,
            "status": status,
            "notes": "",
        },
        "chart": {
            "metadata": {"name": "web", "version": "0.3.0", "appVersion": format!("1.{revision}.0"), "apiVersion": "v2", "type": "application"},
            "lock": null, "templates": [], "values": {}, "schema": null, "files": [],
        },
        "config": {"image": image},
        "manifest": format!("---\n# Source: web/templates/service.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\n# Source: web/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"),
        "version": revision,
        "namespace": namespace,
    });
    serde_json::from_value(json).unwrap()
}

/// The Secret Helm's storage driver creates for `release`.
fn helm_secret(release: &HelmRelease, status: &str) -> Secret {
    let labels = BTreeMap::from([
        ("name".to_owned(), release.name.clone()),
        ("owner".to_owned(), "helm".to_owned()),
        ("status".to_owned(), status.to_owned()),
        ("version".to_owned(), release.version.to_string()),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("sh.helm.release.v1.{}.v{}", release.name, release.version)),
            labels: Some(labels),
            ..Default::default()
        },
        type_: Some("helm.sh/release.v1".to_owned()),
        data: Some(BTreeMap::from([("release".to_owned(), ByteString(encode_release(release).unwrap()))])),
        ..Default::default()
    }
}

#[tokio::test]
async fn helm_release_secrets_are_read_back_as_revisions_records_and_dora_metrics() {
    let s = Scratch::new("helm-releases").await;
    let secrets: Api<Secret> = s.api();
    let revisions = [
        (1, "superseded", "Install complete", "registry.example/web:1.1.0"),
        (2, "superseded", "Upgrade complete", "registry.example/web:1.2.0"),
        (3, "deployed", "Rollback to 1", "registry.example/web:1.1.0"),
    ];
    // Written in reverse, so that the reader must sort by revision.
    for (revision, status, description, image) in revisions.iter().rev() {
        let release = helm_release(&s.namespace, *revision, status, description, image);
        secrets.create(&PostParams::default(), &helm_secret(&release, status)).await.unwrap();
    }
    // A Secret with Helm's labels but another type is not a release.
    let mut decoy = helm_secret(&helm_release(&s.namespace, 9, "deployed", "x", "registry.example/web:9"), "deployed");
    decoy.metadata.name = Some("not-a-release".into());
    decoy.type_ = Some("Opaque".into());
    secrets.create(&PostParams::default(), &decoy).await.unwrap();

    // What the API server stores is Helm's shape: base64 (gzip magic `H4sI`) in data.
    let stored = secrets.get("sh.helm.release.v1.web.v2").await.unwrap();
    assert!(stored.data.unwrap()["release"].0.starts_with(b"H4sI"), "gzip, then base64, as Helm writes");

    let reader = HelmReleases::new(s.cluster.client().clone());
    let read = reader.revisions(&s.namespace, "web").await.unwrap();
    assert_eq!(read.iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(read[2].info.description, "Rollback to 1");
    assert_eq!(read[1].images(), ["registry.example/web:1.2.0"]);
    assert!(reader.revisions(&s.namespace, "other").await.unwrap().is_empty());

    let records = reader.records(&s.namespace, "web", Environment::Production).await.unwrap();
    let statuses: Vec<DeploymentStatus> = records.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [DeploymentStatus::Succeeded, DeploymentStatus::RolledBack, DeploymentStatus::Succeeded]);
    assert_eq!(records[1].to.image.to_string(), "registry.example/web:1.2.0");
    assert_eq!(records[2].from.as_ref().unwrap().version.as_str(), "1.2.0");
    assert_eq!(records[0].strategy, deploy_core::model::StrategyKind::Helm);
    assert_eq!(records[1].started_at.unwrap().to_string(), "2026-03-02T08:30:00.5Z");

    let mut dora = DoraAccumulator::new(DoraWindow::all());
    records.iter().for_each(|record| dora.add(record));
    let metrics = dora.metrics(Some(Environment::Production));
    assert_eq!((metrics.deployments, metrics.succeeded, metrics.rolled_back), (3, 2, 1));
    assert_eq!(metrics.change_failure_rate, Some(1.0 / 3.0));

    // A Secret that is not what Helm writes is a typed error naming it.
    let mut broken = helm_secret(&helm_release(&s.namespace, 4, "deployed", "x", "registry.example/web:4"), "deployed");
    broken.data = Some(BTreeMap::from([("release".to_owned(), ByteString(b"not base64!".to_vec()))]));
    secrets.create(&PostParams::default(), &broken).await.unwrap();
    let err = reader.revisions(&s.namespace, "web").await.unwrap_err();
    assert!(err.to_string().contains("sh.helm.release.v1.web.v4"), "{err}");
    s.cleanup().await;
}

#[tokio::test]
async fn an_exported_chart_has_helms_layout_and_renders_objects_that_validate_and_apply() {
    let s = Scratch::new("helm-chart").await;
    let spec = s.spec();
    let mut set = ManifestSet::new();
    set.push(&deployment(&spec, &DeploymentOptions::default().release(support::release("1")))).unwrap();
    set.push(&service(&spec, &ServiceOptions::default())).unwrap();
    let chart = export_chart(&set, &ChartMetadata::new("web", "0.1.0", "1.0.0")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    chart.write_to(dir.path()).unwrap();
    for file in ["Chart.yaml", "values.yaml", "templates/deployment-web.yaml", "templates/service-web.yaml"] {
        assert!(dir.path().join(file).is_file(), "{file} missing: {:?}", chart.files().keys());
    }
    let chart_yaml: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(dir.path().join("Chart.yaml")).unwrap()).unwrap();
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["name"], "web");
    assert_eq!(chart_yaml["version"], "0.1.0");
    assert_eq!(chart_yaml["appVersion"], "1.0.0");
    let values: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(dir.path().join("values.yaml")).unwrap()).unwrap();
    assert_eq!(values["image"], support::release("1").image.to_string());
    assert_eq!(values["replicaCount"], 4);

    let rendered = chart
        .render(&s.namespace, Some(&format!("replicaCount: 2\nimage: {}\n", support::release("2").image)))
        .unwrap();
    assert_eq!(rendered.len(), 2);
    for object in &rendered {
        let kind = object["kind"].as_str().unwrap().to_owned();
        kubernetes_validate(&format!("helm-{kind}"), &serde_norway::to_string(object).unwrap());
        assert_eq!(object["metadata"]["namespace"], s.namespace.as_str());
        // And the API server takes it.
        let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
            Some((group, version)) => (group.to_owned(), version.to_owned()),
            None => (String::new(), object["apiVersion"].as_str().unwrap().to_owned()),
        };
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, &kind));
        let api: Api<DynamicObject> = Api::namespaced_with(s.cluster.client().clone(), &s.namespace, &resource);
        let created: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        api.create(&PostParams::default(), &created).await.unwrap();
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = s.api();
    let stored = deployments.get("web").await.unwrap();
    let stored_spec = stored.spec;
    assert_eq!(stored_spec.replicas, Some(2));
    assert_eq!(
        stored_spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some(support::release("2").image.to_string().as_str())
    );
    s.cleanup().await;
}
