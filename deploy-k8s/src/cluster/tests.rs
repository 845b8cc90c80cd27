use super::*;
use crate::fixtures::{self, mock::*};
use crate::manifest::{DeploymentOptions, deployment};
use deploy_core::error::{Classify, ErrorKind};
use serde_json::json;

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";

fn stored(mut object: serde_json::Value, resource_version: &str) -> serde_json::Value {
    object["metadata"]["resourceVersion"] = json!(resource_version);
    object["metadata"]["uid"] = json!("6f1c7b9e-3a5d-4d8e-9b1a-2f4e6c8d0a1b");
    object
}

#[tokio::test]
async fn apply_is_server_side_with_the_field_manager() {
    let d = deployment(&fixtures::spec(), &DeploymentOptions::default().release(fixtures::release("1.4.2")));
    let answer = stored(serde_json::to_value(&d).unwrap(), "4711");
    let (client, mock) = start(vec![
        Expect::patch(&format!("{DEPLOYMENTS}/web"))
            .query("fieldManager", "deploy-rs")
            .query("force", "true")
            .body(|b| {
                assert_eq!(b["kind"], "Deployment");
                assert_eq!(b["apiVersion"], "apps/v1");
                assert_eq!(
                    b["spec"]["template"]["spec"]["containers"][0]["image"],
                    "registry.example.com/shop/web:1.4.2"
                );
            })
            .ok(answer),
    ]);
    let cluster = Cluster::new(client);
    let applied = within(cluster.apply(&d)).await.unwrap();
    assert_eq!(applied.metadata.resource_version.as_deref(), Some("4711"));
    assert_eq!(applied.spec, d.spec);
    drop(cluster);
    mock.finish().await;
}

#[tokio::test]
async fn apply_errors_are_typed_by_status() {
    let d = deployment(&fixtures::spec(), &DeploymentOptions::default());
    let (client, mock) = start(vec![
        Expect::patch(&format!("{DEPLOYMENTS}/web")).query("force", "true").status(
            500,
            "InternalError",
            "etcdserver: request timed out",
        ),
        Expect::patch(&format!("{DEPLOYMENTS}/web")).query("fieldManager", "ci").status(
            409,
            "Conflict",
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas",
        ),
    ]);
    let cluster = Cluster::new(client);
    let err = within(cluster.apply(&d)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("apply Deployment shop/web"), "{err}");
    let strict = cluster.clone().field_manager("ci").force(false);
    let err = within(strict.apply(&d)).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    drop((cluster, strict));
    let seen = mock.finish().await;
    assert_eq!(seen[1].query("force"), None, "no force when switched off");
}

#[tokio::test]
async fn namespaces_are_applied_and_read() {
    let (client, mock) = start(vec![
        Expect::patch("/api/v1/namespaces/shop")
            .query("fieldManager", "deploy-rs")
            .body(|b| assert_eq!(b["metadata"]["labels"]["environment"], "production"))
            .ok(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "shop", "labels": {"environment": "production", "kubernetes.io/metadata.name": "shop"}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})),
        Expect::get("/api/v1/namespaces/shop").ok(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop"}, "status": {"phase": "Active"}})),
        Expect::get("/api/v1/namespaces/gone").status(404, "NotFound", "namespaces \"gone\" not found"),
    ]);
    let cluster = Cluster::new(client);
    let ns = within(cluster.ensure_namespace("shop", BTreeMap::from([("environment".into(), "production".into())])))
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    assert!(within(cluster.namespace("shop")).await.unwrap().is_some());
    assert!(within(cluster.namespace("gone")).await.unwrap().is_none());
    drop(cluster);
    mock.finish().await;
}

#[tokio::test]
async fn config_maps_and_secrets_create_merge_and_read() {
    let cm = crate::manifest::config_map(
        &"shop".parse().unwrap(),
        "web",
        BTreeMap::from([("LOG_LEVEL".into(), "info".into())]),
    );
    let (client, mock) = start(vec![
        Expect::post("/api/v1/namespaces/shop/configmaps")
            .body(|b| assert_eq!(b["data"]["LOG_LEVEL"], "info"))
            .reply(201, stored(serde_json::to_value(&cm).unwrap(), "10")),
        Expect::post("/api/v1/namespaces/shop/configmaps")
            .status(409, "AlreadyExists", "configmaps \"web\" already exists"),
        Expect::patch("/api/v1/namespaces/shop/configmaps/web")
            .body(|b| assert_eq!(b, &json!({"data": {"LOG_LEVEL": "debug"}})))
            .ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "11"},
                "data": {"LOG_LEVEL": "debug", "PORT": "8080"}})),
        Expect::patch("/api/v1/namespaces/shop/configmaps/missing").status(404, "NotFound", "configmaps \"missing\" not found"),
        Expect::get("/api/v1/namespaces/shop/configmaps/web")
            .ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "shop"}, "data": {"A": "1"}})),
        Expect::patch("/api/v1/namespaces/shop/secrets/db")
            .body(|b| assert_eq!(b, &json!({"data": {"password": "aHVudGVyMg=="}})))
            .ok(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
                "type": "Opaque", "data": {"password": "aHVudGVyMg==", "user": "YXBw"}})),
        Expect::get("/api/v1/namespaces/shop/secrets/db").status(500, "InternalError", "etcd unavailable"),
    ]);
    let cluster = Cluster::new(client);
    let created = within(cluster.create_config_map(&cm)).await.unwrap();
    assert_eq!(created.metadata.resource_version.as_deref(), Some("10"));
    let err = within(cluster.create_config_map(&cm)).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let merged =
        within(cluster.merge_config_map("shop", "web", &BTreeMap::from([("LOG_LEVEL".into(), "debug".into())])))
            .await
            .unwrap();
    assert_eq!(merged.data.unwrap()["PORT"], "8080", "other keys kept");
    let err = within(cluster.merge_config_map("shop", "missing", &BTreeMap::new())).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(within(cluster.config_map("shop", "web")).await.unwrap().unwrap().data.unwrap()["A"], "1");
    let secret =
        within(cluster.merge_secret("shop", "db", &BTreeMap::from([("password".into(), b"hunter2".to_vec())])))
            .await
            .unwrap();
    assert_eq!(secret.data.unwrap()["user"].0, b"app");
    let err = within(cluster.secret("shop", "db")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    drop(cluster);
    mock.finish().await;
}

#[tokio::test]
async fn logs_and_scale_use_their_subresources() {
    let (client, mock) = start(vec![
        Expect::get("/api/v1/namespaces/shop/pods/web-7d4b9c-x2x9k/log")
            .query("tailLines", "20")
            .query("container", "web")
            .query("previous", "true")
            .text("panic: config key DB_URL missing\n"),
        Expect::patch(&format!("{DEPLOYMENTS}/web-canary/scale"))
            .body(|b| assert_eq!(b, &json!({"spec": {"replicas": 5}})))
            .ok(json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web-canary", "namespace": "shop"},
                "spec": {"replicas": 5}, "status": {"replicas": 2, "selector": "app.kubernetes.io/name=web"}})),
        Expect::patch(&format!("{DEPLOYMENTS}/nope/scale")).status(404, "NotFound", "deployments.apps \"nope\" not found"),
    ]);
    let cluster = Cluster::new(client);
    let logs = within(cluster.pod_logs(
        "shop",
        "web-7d4b9c-x2x9k",
        &LogOptions::default().tail(20).container("web").previous(),
    ))
    .await
    .unwrap();
    assert_eq!(logs, "panic: config key DB_URL missing\n");
    within(cluster.scale("shop", "web-canary", 5)).await.unwrap();
    assert!(within(cluster.scale("shop", "nope", 1)).await.unwrap_err().is_not_found());
    drop(cluster);
    mock.finish().await;
}

fn crd_json(established: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(crate::manifest::crd::tests::rollout_crd()).unwrap();
    v["metadata"]["resourceVersion"] = json!(if established { "21" } else { "20" });
    v["status"] = json!({"conditions": [
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
        {"type": "Established", "status": if established { "True" } else { "False" }, "reason": "InitialNamesAccepted",
         "message": "the initial names have been accepted"}]});
    v
}

#[tokio::test]
async fn crd_apply_waits_for_established_by_watching() {
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let (client, mock) = start(vec![
        Expect::patch(&format!("{path}/rollouts.deploy-rs.io")).query("fieldManager", "deploy-rs").ok(crd_json(false)),
        Expect::get(path).query("fieldSelector", "metadata.name=rollouts.deploy-rs.io").ok(list(
            "CustomResourceDefinitionList",
            "apiextensions.k8s.io/v1",
            "20",
            vec![crd_json(false)],
        )),
        Expect::get(path).watch().query("resourceVersion", "20").events(vec![event("MODIFIED", crd_json(true))]),
    ]);
    let cluster = Cluster::new(client);
    let crd =
        within(cluster.apply_crd(&crate::manifest::crd::tests::rollout_crd(), Duration::from_secs(3))).await.unwrap();
    assert_eq!(crd.metadata.resource_version.as_deref(), Some("21"));
    drop(cluster);
    mock.finish().await;
}

fn job_json(condition: Option<(&str, &str)>, rv: &str) -> serde_json::Value {
    let mut status = json!({"startTime": "2025-06-01T10:00:00Z", "active": 1});
    if let Some((type_, message)) = condition {
        status = json!({"startTime": "2025-06-01T10:00:00Z", "failed": 1, "succeeded": if type_ == "Complete" { 1 } else { 0 },
            "conditions": [{"type": type_, "status": "True", "reason": if type_ == "Failed" { "BackoffLimitExceeded" } else { "Completed" },
                "message": message, "lastTransitionTime": "2025-06-01T10:01:00Z", "lastProbeTime": "2025-06-01T10:01:00Z"}]});
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "backup", "namespace": "shop", "resourceVersion": rv},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "backup", "image": "postgres:16"}]}}},
        "status": status})
}

fn backup_job() -> Job {
    serde_json::from_value(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "backup", "namespace": "shop"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "backup", "image": "postgres:16", "command": ["pg_dump"]}]}}}}),
    )
    .unwrap()
}

#[tokio::test]
async fn failed_hook_job_returns_the_failed_pods_logs() {
    let jobs = "/apis/batch/v1/namespaces/shop/jobs";
    let (client, mock) = start(vec![
        Expect::post(jobs).body(|b| assert_eq!(b["metadata"]["name"], "backup")).reply(201, job_json(None, "1")),
        Expect::get(jobs).query("fieldSelector", "metadata.name=backup").ok(list("JobList", "batch/v1", "1", vec![job_json(None, "1")])),
        Expect::get(jobs).watch().events(vec![event("MODIFIED", job_json(Some(("Failed", "Job has reached the specified backoff limit")), "2"))]),
        Expect::get("/api/v1/namespaces/shop/pods").query("labelSelector", "job-name=backup").ok(list("PodList", "v1", "3", vec![
            json!({"metadata": {"name": "backup-8xq2p", "namespace": "shop", "labels": {"job-name": "backup"}}, "status": {"phase": "Failed"}})])),
        Expect::get("/api/v1/namespaces/shop/pods/backup-8xq2p/log").query("tailLines", "50")
            .text("pg_dump: error: connection to server failed: Connection refused\n"),
    ]);
    let cluster = Cluster::new(client);
    let err = within(cluster.run_hook(&backup_job(), &HookOptions::default().deadline(Duration::from_secs(3))))
        .await
        .unwrap_err();
    match err {
        KubeError::JobFailed { job, reason, logs } => {
            assert_eq!(job, "backup");
            assert_eq!(reason, "Job has reached the specified backoff limit");
            assert!(logs.unwrap().contains("Connection refused"));
        }
        other => panic!("expected JobFailed, got {other}"),
    }
    drop(cluster);
    mock.finish().await;
}

#[tokio::test]
async fn completed_hook_job_is_returned_and_a_stuck_one_times_out() {
    let jobs = "/apis/batch/v1/namespaces/shop/jobs";
    let (client, mock) = start(vec![
        Expect::post(jobs).reply(201, job_json(None, "1")),
        Expect::get(jobs).query("fieldSelector", "metadata.name=backup").ok(list(
            "JobList",
            "batch/v1",
            "5",
            vec![job_json(Some(("Complete", "done")), "5")],
        )),
    ]);
    let cluster = Cluster::new(client);
    let job = within(cluster.run_hook(&backup_job(), &HookOptions::default())).await.unwrap();
    assert_eq!(job_finished(Some(&job)), Some(JobOutcome::Complete));
    drop(cluster);
    mock.finish().await;

    let (client, mock) = start(vec![
        Expect::post(jobs).reply(201, job_json(None, "1")),
        Expect::get(jobs).query("fieldSelector", "metadata.name=backup").ok(list(
            "JobList",
            "batch/v1",
            "1",
            vec![job_json(None, "1")],
        )),
        Expect::get(jobs).watch().hang(),
    ]);
    let cluster = Cluster::new(client);
    let err = within(cluster.run_hook(&backup_job(), &HookOptions::default().deadline(Duration::from_millis(200))))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    drop(cluster);
    mock.finish().await;
}
