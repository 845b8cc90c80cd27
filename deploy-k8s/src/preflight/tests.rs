//! The preflight's checks against a mocked API server: request shapes and
//! outcomes. Behaviour on a real API server is in `tests/cluster/preflight.rs`.

use super::*;
use crate::fixtures::mock::*;
use deploy_core::error::ErrorKind;
use deploy_core::model::Digest;
use deploy_core::registry::{PushEvent, RegistryError};
use futures::stream::BoxStream;
use serde_json::json;

/// A registry whose answer to `exists` is scripted.
struct ScriptedRegistry(Option<bool>);

#[async_trait::async_trait]
impl ImageRegistry for ScriptedRegistry {
    async fn exists(&self, _: &ImageRef) -> Result<bool, RegistryError> {
        self.0.ok_or_else(|| RegistryError::backend("look up image", ErrorKind::Unavailable, "connection refused"))
    }
    async fn digest(&self, _: &ImageRef) -> Result<Option<Digest>, RegistryError> {
        Ok(None)
    }
    fn push(&self, image: ImageRef) -> BoxStream<'_, Result<PushEvent, RegistryError>> {
        Box::pin(futures::stream::once(async move { Err(RegistryError::NotFound { image }) }))
    }
}

fn version() -> serde_json::Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
        "gitTreeState": "clean", "buildDate": "2025-05-15T08:19:08Z", "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64"})
}

fn quota(hard_cpu: &str, used_cpu: &str, hard_mem: &str, used_mem: &str) -> serde_json::Value {
    json!({"metadata": {"name": "compute", "namespace": "shop"},
        "spec": {"hard": {"requests.cpu": hard_cpu, "requests.memory": hard_mem, "pods": "50"}},
        "status": {"hard": {"requests.cpu": hard_cpu, "requests.memory": hard_mem, "pods": "50"},
                   "used": {"requests.cpu": used_cpu, "requests.memory": used_mem, "pods": "12"}}})
}

fn node(name: &str, cpu: &str, memory: &str, unschedulable: bool) -> serde_json::Value {
    json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"unschedulable": unschedulable},
        "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                   "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}})
}

fn request(pods: u32) -> PreflightRequest {
    PreflightRequest::new(
        Namespace::new("shop").unwrap(),
        ImageRef::parse("registry.example.com/shop/web:1.4.2").unwrap(),
        ResourceList::new("250m", "256Mi").unwrap(),
        pods,
    )
}

fn script(quota_json: serde_json::Value, nodes: Vec<serde_json::Value>) -> Vec<Expect> {
    vec![
        Expect::get("/version").ok(version()),
        Expect::get("/api/v1/namespaces/shop").ok(json!({"metadata": {"name": "shop"}, "status": {"phase": "Active"}})),
        Expect::get("/api/v1/namespaces/shop/resourcequotas").ok(list(
            "ResourceQuotaList",
            "v1",
            "7",
            vec![quota_json],
        )),
        Expect::get("/api/v1/nodes").ok(list("NodeList", "v1", "8", nodes)),
        bound_pods(vec![]),
    ]
}

/// The list of pods bound to nodes that the capacity check makes.
fn bound_pods(pods: Vec<serde_json::Value>) -> Expect {
    Expect::get("/api/v1/pods")
        .query("fieldSelector", "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed")
        .ok(list("PodList", "v1", "9", pods))
}

/// A running pod on `node` whose containers request `cpu` and `memory` each.
fn bound_pod(node: &str, containers: &[(&str, &str)]) -> serde_json::Value {
    let containers: Vec<_> = containers
        .iter()
        .enumerate()
        .map(|(i, (cpu, memory))| {
            json!({"name": format!("c{i}"), "image": "x",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}})
        })
        .collect();
    json!({"metadata": {"name": format!("p-{node}"), "namespace": "other"},
        "spec": {"nodeName": node, "containers": containers}, "status": {"phase": "Running"}})
}

#[tokio::test]
async fn everything_fits_and_every_check_passes() {
    let (client, mock) = start(script(
        quota("4", "1500m", "8Gi", "3Gi"),
        vec![node("a", "3920m", "15Gi", false), node("b", "3920m", "15Gi", false)],
    ));
    let cluster = Cluster::new(client);
    let report = within(preflight(&cluster, &ScriptedRegistry(Some(true)), &request(4))).await;
    assert!(report.passed(), "{report}");
    assert_eq!(report.checks.len(), 5);
    assert_eq!(
        report.check("api-server").unwrap().outcome,
        CheckOutcome::Passed("reachable, Kubernetes v1.33.1".into())
    );
    drop(cluster);
    mock.finish().await;
}

#[tokio::test]
async fn exact_quota_edge_and_overflow_are_told_apart() {
    // 4 pods × 250m = 1000m; 2500m − 1500m = 1000m free: fits exactly.
    let (client, mock) = start(script(quota("2500m", "1500m", "8Gi", "3Gi"), vec![node("a", "8", "32Gi", false)]));
    let cluster = Cluster::new(client);
    let report = within(preflight(&cluster, &ScriptedRegistry(Some(true)), &request(4))).await;
    assert!(report.check("quota").unwrap().passed(), "{report}");
    let report_one_more = {
        drop(cluster);
        mock.finish().await;
        let (client, mock) = start(script(quota("2500m", "1500m", "8Gi", "3Gi"), vec![node("a", "8", "32Gi", false)]));
        let cluster = Cluster::new(client);
        let r = within(preflight(&cluster, &ScriptedRegistry(Some(true)), &request(5))).await;
        drop(cluster);
        mock.finish().await;
        r
    };
    let CheckOutcome::Failed(why) = &report_one_more.check("quota").unwrap().outcome else {
        panic!("{report_one_more}")
    };
    assert_eq!(why, "compute: requests.cpu needs 1250m CPU but 1000m CPU is free");
}

#[tokio::test]
async fn missing_namespace_capacity_and_unreachable_registry_all_fail() {
    let (client, mock) = start(vec![
        Expect::get("/version").ok(version()),
        Expect::get("/api/v1/namespaces/shop").status(404, "NotFound", "namespaces \"shop\" not found"),
        Expect::get("/api/v1/namespaces/shop/resourcequotas").ok(list("ResourceQuotaList", "v1", "7", vec![])),
        Expect::get("/api/v1/nodes").ok(list(
            "NodeList",
            "v1",
            "8",
            vec![node("a", "200m", "1Gi", false), node("b", "8", "32Gi", true)],
        )),
        bound_pods(vec![]),
    ]);
    let cluster = Cluster::new(client);
    let report = within(preflight(&cluster, &ScriptedRegistry(None), &request(2))).await;
    assert!(!report.passed());
    assert!(report.check("api-server").unwrap().passed());
    assert_eq!(report.check("namespace").unwrap().outcome, CheckOutcome::Failed("shop does not exist".into()));
    assert!(report.check("quota").unwrap().passed());
    let CheckOutcome::Failed(cap) = &report.check("capacity").unwrap().outcome else { panic!("{report}") };
    assert!(cap.contains("no single node"), "{cap}");
    let CheckOutcome::Failed(img) = &report.check("image").unwrap().outcome else { panic!("{report}") };
    assert!(img.starts_with("the registry could not be asked"), "{img}");
    drop(cluster);
    mock.finish().await;
}

#[tokio::test]
async fn unreachable_api_server_and_missing_image_fail() {
    let (client, mock) = start(vec![
        Expect::get("/version").status(503, "ServiceUnavailable", "apiserver is shutting down"),
        Expect::get("/api/v1/namespaces/shop").status(503, "ServiceUnavailable", "apiserver is shutting down"),
        Expect::get("/api/v1/namespaces/shop/resourcequotas").status(403, "Forbidden", "resourcequotas is forbidden"),
        Expect::get("/api/v1/nodes").ok(list("NodeList", "v1", "8", vec![node("a", "1", "1Gi", false)])),
        bound_pods(vec![]),
    ]);
    let cluster = Cluster::new(client);
    let report = within(preflight(&cluster, &ScriptedRegistry(Some(false)), &request(10))).await;
    let failed: Vec<_> = report.checks.iter().filter(|c| !c.passed()).map(|c| c.name).collect();
    assert_eq!(failed, ["api-server", "namespace", "quota", "capacity", "image"]);
    assert!(
        report.to_string().contains("[FAIL] image: registry.example.com/shop/web:1.4.2 does not exist"),
        "{report}"
    );
    drop(cluster);
    mock.finish().await;
}

async fn run(script: Vec<Expect>, request: PreflightRequest) -> PreflightReport {
    let (client, mock) = start(script);
    let cluster = Cluster::new(client);
    let report = within(preflight(&cluster, &ScriptedRegistry(Some(true)), &request)).await;
    drop(cluster);
    mock.finish().await;
    report
}

fn failed(report: &PreflightReport, name: &str) -> String {
    match &report.check(name).unwrap().outcome {
        CheckOutcome::Failed(why) => why.clone(),
        other => panic!("{name} did not fail: {other:?}"),
    }
}

#[tokio::test]
async fn a_node_full_of_bound_pods_has_no_room_left() {
    // 4 allocatable CPUs; pods already bound there request 3900m (two containers
    // of one pod, and an init container larger than another pod's containers).
    let full = vec![
        bound_pod("a", &[("2", "1Gi"), ("1500m", "1Gi")]),
        json!({"metadata": {"name": "p2", "namespace": "other"},
            "spec": {"nodeName": "a",
                "initContainers": [{"name": "init", "image": "x", "resources": {"requests": {"cpu": "400m"}}}],
                "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": "Running"}}),
    ];
    let mut script =
        script(json!({"metadata": {"name": "none"}, "spec": {"hard": {}}}), vec![node("a", "4", "16Gi", false)]);
    let last = script.len() - 1;
    script[last] = bound_pods(full.clone());
    let report = run(script, request(1)).await;
    assert_eq!(failed(&report, "capacity"), "no single node has the free CPU and memory one pod requests");

    // Without those pods the same node fits four.
    let report = run(
        super::tests::script(
            json!({"metadata": {"name": "none"}, "spec": {"hard": {}}}),
            vec![node("a", "4", "16Gi", false)],
        ),
        request(4),
    )
    .await;
    assert!(report.check("capacity").unwrap().passed(), "{report}");
}

fn quota_of(hard: serde_json::Value, used: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"name": "compute", "namespace": "shop"}, "spec": {"hard": hard},
        "status": {"hard": hard, "used": used}})
}

#[tokio::test]
async fn a_quota_on_limits_cpu_counts_the_pods_limits() {
    let q = quota_of(json!({"limits.cpu": "2"}), json!({"limits.cpu": "1"}));
    let nodes = vec![node("a", "8", "32Gi", false)];
    // No limits on the pods: the API server would refuse them under this quota.
    let report = run(script(q.clone(), nodes.clone()), request(2)).await;
    assert_eq!(failed(&report, "quota"), "compute: limits.cpu is under quota but the pods set no such limit");
    // 2 pods × 500m = 1000m, 1000m free: fits; 3 pods do not.
    let limited = |pods| request(pods).limits(ResourceList::new("500m", "512Mi").unwrap());
    let report = run(script(q.clone(), nodes.clone()), limited(2)).await;
    assert!(report.check("quota").unwrap().passed(), "{report}");
    let report = run(script(q, nodes), limited(3)).await;
    assert_eq!(failed(&report, "quota"), "compute: limits.cpu needs 1500m CPU but 1000m CPU is free");
}

#[tokio::test]
async fn a_pod_count_quota_and_a_deployment_count_quota() {
    let q = quota_of(
        json!({"pods": "10", "count/deployments.apps": "3"}),
        json!({"pods": "8", "count/deployments.apps": "3"}),
    );
    let nodes = vec![node("a", "8", "32Gi", false)];
    let report = run(script(q.clone(), nodes.clone()), request(3)).await;
    let why = failed(&report, "quota");
    assert!(why.contains("compute: pods needs 3 but 2 is free"), "{why}");
    assert!(why.contains("compute: count/deployments.apps needs 1 but 0 is free"), "{why}");
    // A rolling update in place creates no Deployment and fits two pods.
    let report = run(script(q, nodes), request(2).new_deployments(0)).await;
    assert!(report.check("quota").unwrap().passed(), "{report}");
}
