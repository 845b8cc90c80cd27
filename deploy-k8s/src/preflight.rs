//! Pre-deployment checks that return a report: API server reachable (with its
//! version), namespace exists, the requested resources fit the namespace's
//! ResourceQuotas (requests, limits, pod and Deployment counts) and what the nodes
//! have left once the pods already bound to them are counted, and the image exists.
//!
//! A check that cannot be carried out fails; nothing passes on silence.
//!
//! Each check is a [`deploy_core::checklist::Check`], the suite's one check
//! vocabulary: [`preflight`] runs them in order into a report, [`preflight_checklist`]
//! makes them a checklist, and [`KubePreflight`] hands them to the rollout engine
//! to run before a rollout changes anything.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deploy_core::checklist::{Check, Checklist, ImageExistsCheck, Phase};
use deploy_core::engine::{Preflight, PreflightInput};
use deploy_core::model::{ImageRef, Quantity, ResourceList};
use deploy_core::plan::{Step, resolve_rolling};
use deploy_core::registry::ImageRegistry;

use k8s_openapi::api::core::v1::{Node, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use kube::api::{Api, ListParams};
use tracing::instrument;

use crate::cluster::Cluster;

/// What is about to be deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreflightRequest {
    /// The target namespace.
    pub namespace: String,
    /// The image to run.
    pub image: ImageRef,
    /// Requests of one pod.
    pub pod_requests: ResourceList,
    /// Limits of one pod, if it sets any; a quota on `limits.*` needs them.
    pub pod_limits: Option<ResourceList>,
    /// How many pods at most run at once (replicas plus surge, or both tracks of a
    /// blue-green rollout).
    pub pods: u32,
    /// How many Deployments the rollout creates (1 for a new track, 0 for a rolling
    /// update in place), for a `count/deployments.apps` quota.
    pub new_deployments: u32,
}

impl PreflightRequest {
    /// A request for `pods` pods of `image`, each requesting `pod_requests`, in one
    /// new Deployment.
    pub fn new(namespace: impl Into<String>, image: ImageRef, pod_requests: ResourceList, pods: u32) -> Self {
        Self { namespace: namespace.into(), image, pod_requests, pod_limits: None, pods, new_deployments: 1 }
    }

    /// Sets the limits of one pod.
    #[must_use]
    pub fn limits(mut self, limits: ResourceList) -> Self {
        self.pod_limits = Some(limits);
        self
    }

    /// Sets how many Deployments the rollout creates.
    #[must_use]
    pub fn new_deployments(mut self, count: u32) -> Self {
        self.new_deployments = count;
        self
    }
}

pub use deploy_core::checklist::CheckOutcome;

/// The preflight's checks, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckName {
    /// `api-server`: [`ApiServerCheck`].
    ApiServer,
    /// `namespace`: [`NamespaceCheck`].
    Namespace,
    /// `quota`: [`QuotaCheck`].
    Quota,
    /// `capacity`: [`CapacityCheck`].
    Capacity,
    /// `image`: the registry has the image.
    Image,
}

impl CheckName {
    /// The id of the check in reports and checklists.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiServer => "api-server",
            Self::Namespace => "namespace",
            Self::Quota => "quota",
            Self::Capacity => "capacity",
            Self::Image => "image",
        }
    }
}

/// One named check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckResult {
    /// `api-server`, `namespace`, `quota`, `capacity` or `image`.
    pub name: &'static str,
    /// What happened.
    pub outcome: CheckOutcome,
}

impl CheckResult {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, CheckOutcome::Passed(_))
    }
}

/// Every check, in the order run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PreflightReport {
    /// The checks.
    pub checks: Vec<CheckResult>,
}

impl PreflightReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(CheckResult::passed)
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for PreflightReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            match &c.outcome {
                CheckOutcome::Passed(d) => writeln!(f, "[pass] {}: {d}", c.name)?,
                CheckOutcome::Warning(d) => writeln!(f, "[warn] {}: {d}", c.name)?,
                CheckOutcome::Failed(d) => writeln!(f, "[FAIL] {}: {d}", c.name)?,
                other => writeln!(f, "[????] {}: {other:?}", c.name)?,
            }
        }
        Ok(())
    }
}

/// The API server answers; the detail names its version.
#[derive(Clone)]
pub struct ApiServerCheck {
    cluster: Cluster,
}

impl ApiServerCheck {
    /// Checks `cluster`'s API server.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }
}

#[async_trait]
impl Check for ApiServerCheck {
    async fn check(&self) -> CheckOutcome {
        match self.cluster.client().apiserver_version().await {
            Ok(v) => CheckOutcome::passed(format!("reachable, Kubernetes {}", v.git_version)),
            Err(e) => CheckOutcome::failed(format!("not reachable: {e}")),
        }
    }
}

/// The target namespace exists.
#[derive(Clone)]
pub struct NamespaceCheck {
    cluster: Cluster,
    namespace: String,
}

impl NamespaceCheck {
    /// Checks that `namespace` exists in `cluster`.
    pub fn new(cluster: Cluster, namespace: impl Into<String>) -> Self {
        Self { cluster, namespace: namespace.into() }
    }
}

#[async_trait]
impl Check for NamespaceCheck {
    async fn check(&self) -> CheckOutcome {
        match self.cluster.namespace(&self.namespace).await {
            Ok(Some(_)) => CheckOutcome::passed(format!("{} exists", self.namespace)),
            Ok(None) => CheckOutcome::failed(format!("{} does not exist", self.namespace)),
            Err(e) => CheckOutcome::failed(format!("could not be read: {e}")),
        }
    }
}

/// The rollout fits the namespace's ResourceQuotas (requests, limits, pod and
/// Deployment counts), as their controller counts what is in use.
#[derive(Clone)]
pub struct QuotaCheck {
    cluster: Cluster,
    request: PreflightRequest,
}

impl QuotaCheck {
    /// Checks `request` against the quotas of its namespace.
    pub fn new(cluster: Cluster, request: PreflightRequest) -> Self {
        Self { cluster, request }
    }
}

#[async_trait]
impl Check for QuotaCheck {
    async fn check(&self) -> CheckOutcome {
        quota_check(&self.cluster, &self.request).await
    }
}

/// The pods fit what the schedulable nodes have left once the pods already bound
/// to them are counted, and one pod fits on some node.
#[derive(Clone)]
pub struct CapacityCheck {
    cluster: Cluster,
    request: PreflightRequest,
}

impl CapacityCheck {
    /// Checks `request` against the cluster's nodes.
    pub fn new(cluster: Cluster, request: PreflightRequest) -> Self {
        Self { cluster, request }
    }
}

#[async_trait]
impl Check for CapacityCheck {
    async fn check(&self) -> CheckOutcome {
        let wanted = Totals::of(&self.request.pod_requests, self.request.pods);
        capacity_check(&self.cluster, &self.request.pod_requests, &wanted).await
    }
}

/// Every preflight check as a [`Checklist`] of `Pre` items (`api-server`,
/// `namespace`, `quota`, `capacity`, `image`), for a caller's own gate or, through
/// [`KubePreflight`], the rollout engine's.
pub fn preflight_checklist(
    cluster: &Cluster,
    registry: Arc<dyn ImageRegistry>,
    request: &PreflightRequest,
) -> Checklist {
    let c = || cluster.clone();
    Checklist::new()
        .automated("api-server", Phase::Pre, "the API server answers", ApiServerCheck::new(c()))
        .automated("namespace", Phase::Pre, "the namespace exists", NamespaceCheck::new(c(), request.namespace.clone()))
        .automated(
            "quota",
            Phase::Pre,
            "the rollout fits the namespace's quotas",
            QuotaCheck::new(c(), request.clone()),
        )
        .automated("capacity", Phase::Pre, "the pods fit the nodes", CapacityCheck::new(c(), request.clone()))
        .automated("image", Phase::Pre, "the image exists", ImageExistsCheck::new(registry, request.image.clone()))
}

/// Runs every check, one after the other. Later checks still run when an earlier
/// one fails, so the report lists every problem at once.
#[instrument(skip_all, fields(namespace = %request.namespace, image = %request.image))]
pub async fn preflight(cluster: &Cluster, registry: &dyn ImageRegistry, request: &PreflightRequest) -> PreflightReport {
    let c = || cluster.clone();
    let mut checks = Vec::new();
    let mut push = |name: &'static str, outcome: CheckOutcome| checks.push(CheckResult { name, outcome });
    push("api-server", ApiServerCheck::new(c()).check().await);
    push("namespace", NamespaceCheck::new(c(), request.namespace.clone()).check().await);
    push("quota", QuotaCheck::new(c(), request.clone()).check().await);
    push("capacity", CapacityCheck::new(c(), request.clone()).check().await);
    push(
        "image",
        match registry.exists(&request.image).await {
            Ok(true) => CheckOutcome::passed(format!("{} exists", request.image)),
            Ok(false) => CheckOutcome::failed(format!("{} does not exist in its registry", request.image)),
            Err(e) => CheckOutcome::failed(format!("the registry could not be asked: {e}")),
        },
    );
    PreflightReport { checks }
}

/// The preflight the rollout engine runs before a rollout changes anything
/// ([`RolloutEngineBuilder::preflight`](deploy_core::engine::RolloutEngineBuilder::preflight)):
/// the checks of [`preflight_checklist`] for the app's namespace, the release's
/// image, the app's requests and limits, and as many pods as the plan runs at once.
#[derive(Clone)]
pub struct KubePreflight {
    cluster: Cluster,
    registry: Arc<dyn ImageRegistry>,
    advisory: Vec<&'static str>,
}

impl KubePreflight {
    /// Checks against `cluster`, asking `registry` whether images exist; every
    /// check blocks.
    pub fn new(cluster: Cluster, registry: Arc<dyn ImageRegistry>) -> Self {
        Self { cluster, registry, advisory: Vec::new() }
    }

    /// Reports `check` without letting it block: [`CheckName::Capacity`] on a
    /// cluster whose autoscaler adds nodes on demand, for example.
    #[must_use]
    pub fn advisory(mut self, check: CheckName) -> Self {
        self.advisory.push(check.as_str());
        self
    }

    /// What a rollout asks of the cluster: the pods that run at once (the old
    /// track's replicas next to the most the plan gives the new one, or the
    /// replicas plus the surge of a rolling update) and the Deployments it creates.
    pub fn request_for(input: &PreflightInput<'_>) -> PreflightRequest {
        let (spec, plan) = (input.spec, input.plan);
        let mut new_pods = 0u32;
        let mut new_tracks = std::collections::BTreeSet::new();
        for step in &plan.steps {
            match step {
                Step::DeployTrack { track, replicas } => {
                    new_pods = new_pods.max(*replicas);
                    new_tracks.insert(*track);
                }
                Step::RollingUpdate { replicas, max_surge, max_unavailable } => {
                    let (surge, _) = resolve_rolling(*replicas, *max_surge, *max_unavailable);
                    new_pods = new_pods.max(surge);
                }
                _ => {}
            }
        }
        let mut request = PreflightRequest::new(
            spec.namespace.as_str(),
            input.release.image.clone(),
            spec.resources.requests.clone(),
            spec.replicas.saturating_add(new_pods),
        )
        .new_deployments(u32::try_from(new_tracks.len()).unwrap_or(u32::MAX));
        if spec.resources.limits != ResourceList::default() {
            request = request.limits(spec.resources.limits.clone());
        }
        request
    }
}

#[async_trait]
impl Preflight for KubePreflight {
    async fn checklist(&self, input: PreflightInput<'_>) -> Checklist {
        let checklist = preflight_checklist(&self.cluster, self.registry.clone(), &Self::request_for(&input));
        self.advisory.iter().fold(checklist, |checklist, id| checklist.advisory(id))
    }
}

/// CPU and memory in milli-units, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Totals {
    cpu: i128,
    memory: i128,
}

impl Totals {
    fn of(list: &ResourceList, pods: u32) -> Self {
        let milli = |q: &Option<Quantity>| q.as_ref().and_then(Quantity::to_milli_units).unwrap_or(0);
        Self { cpu: milli(&list.cpu) * i128::from(pods), memory: milli(&list.memory) * i128::from(pods) }
    }
}

fn milli(q: &KubeQuantity) -> Option<i128> {
    Quantity::parse(&q.0).ok().and_then(|q| q.to_milli_units())
}

fn show_cpu(milli: i128) -> String {
    format!("{milli}m CPU")
}

fn show_memory(milli: i128) -> String {
    format!("{} bytes", milli / 1000)
}

/// An amount in milli-units and how to show it.
type Wanted = (i128, fn(i128) -> String);

/// What a quota key asks of the rollout, in milli-units, and how to show it;
/// `None` when the pods do not set what the key counts (a pod without a CPU limit
/// under a `limits.cpu` quota is refused by the API server).
fn wanted_for(key: &str, request: &PreflightRequest) -> Option<Option<Wanted>> {
    let pods = i128::from(request.pods);
    let per_pod = |list: Option<&ResourceList>, cpu: bool| {
        list.and_then(|l| if cpu { l.cpu.as_ref() } else { l.memory.as_ref() })
            .and_then(Quantity::to_milli_units)
            .map(|m| m * pods)
    };
    let count = |n: i128| n * 1000;
    Some(match key {
        "requests.cpu" | "cpu" => Some((per_pod(Some(&request.pod_requests), true).unwrap_or(0), show_cpu)),
        "requests.memory" | "memory" => Some((per_pod(Some(&request.pod_requests), false).unwrap_or(0), show_memory)),
        "limits.cpu" => per_pod(request.pod_limits.as_ref(), true).map(|m| (m, show_cpu as fn(i128) -> String)),
        "limits.memory" => per_pod(request.pod_limits.as_ref(), false).map(|m| (m, show_memory as fn(i128) -> String)),
        "pods" | "count/pods" => Some((count(pods), show_count)),
        "count/deployments.apps" => Some((count(i128::from(request.new_deployments)), show_count)),
        _ => return None,
    })
}

fn show_count(milli: i128) -> String {
    format!("{}", milli / 1000)
}

async fn quota_check(cluster: &Cluster, request: &PreflightRequest) -> CheckOutcome {
    let api: Api<ResourceQuota> = Api::namespaced(cluster.client().clone(), &request.namespace);
    let quotas = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => return CheckOutcome::failed(format!("quotas could not be read: {e}")),
    };
    if quotas.is_empty() {
        return CheckOutcome::passed("no ResourceQuota in the namespace");
    }
    let mut problems = Vec::new();
    for quota in &quotas {
        let name = quota.metadata.name.clone().unwrap_or_default();
        let hard = quota.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
        let used = quota.status.as_ref().and_then(|s| s.used.clone()).unwrap_or_default();
        for (key, limit) in &hard {
            let Some(wanted) = wanted_for(key, request) else { continue };
            let Some((want, show)) = wanted else {
                problems.push(format!("{name}: {key} is under quota but the pods set no such limit"));
                continue;
            };
            let (Some(limit), Some(in_use)) = (milli(limit), used.get(key).map_or(Some(0), milli)) else {
                problems.push(format!("{name}: {key} cannot be read"));
                continue;
            };
            let free = limit - in_use;
            if want > free {
                problems.push(format!("{name}: {key} needs {} but {} is free", show(want), show(free)));
            }
        }
    }
    if problems.is_empty() {
        CheckOutcome::passed(format!("fits {} quota(s)", quotas.len()))
    } else {
        CheckOutcome::failed(problems.join("; "))
    }
}

/// What the pods bound to each node request, as the scheduler counts it: the
/// larger of the containers' sum and the largest init container.
fn requested_by_bound_pods(pods: &[Pod]) -> BTreeMap<String, Totals> {
    let mut by_node: BTreeMap<String, Totals> = BTreeMap::new();
    for pod in pods {
        let Some(spec) = &pod.spec else { continue };
        let Some(node) = spec.node_name.clone() else { continue };
        let request = |c: &k8s_openapi::api::core::v1::Container, key: &str| {
            c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(key)).and_then(milli).unwrap_or(0)
        };
        let sum = |key: &str| spec.containers.iter().map(|c| request(c, key)).sum::<i128>();
        let init = |key: &str| spec.init_containers.iter().flatten().map(|c| request(c, key)).max().unwrap_or(0);
        let entry = by_node.entry(node).or_default();
        entry.cpu += sum("cpu").max(init("cpu"));
        entry.memory += sum("memory").max(init("memory"));
    }
    by_node
}

async fn capacity_check(cluster: &Cluster, pod: &ResourceList, wanted: &Totals) -> CheckOutcome {
    let api: Api<Node> = Api::all(cluster.client().clone());
    let nodes = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => return CheckOutcome::failed(format!("nodes could not be read: {e}")),
    };
    // Pods bound to a node and not finished hold their requests there.
    let pods: Api<Pod> = Api::all(cluster.client().clone());
    let bound = ListParams::default().fields("spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed");
    let used = match pods.list(&bound).await {
        Ok(list) => requested_by_bound_pods(&list.items),
        Err(e) => return CheckOutcome::failed(format!("the pods bound to nodes could not be read: {e}")),
    };
    let one_pod = Totals::of(pod, 1);
    let mut total = Totals::default();
    let mut fits_one = false;
    let mut schedulable = 0;
    for node in &nodes {
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            continue;
        }
        let Some(allocatable) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) else { continue };
        let taken = node.metadata.name.as_ref().and_then(|n| used.get(n)).copied().unwrap_or_default();
        let cpu = allocatable.get("cpu").and_then(milli).unwrap_or(0) - taken.cpu;
        let memory = allocatable.get("memory").and_then(milli).unwrap_or(0) - taken.memory;
        schedulable += 1;
        total.cpu += cpu;
        total.memory += memory;
        fits_one |= cpu >= one_pod.cpu && memory >= one_pod.memory;
    }
    if schedulable == 0 {
        return CheckOutcome::failed("no schedulable node");
    }
    if !fits_one {
        return CheckOutcome::failed("no single node has the free CPU and memory one pod requests");
    }
    if wanted.cpu > total.cpu || wanted.memory > total.memory {
        return CheckOutcome::failed(format!(
            "requested {} and {} exceed what the nodes have free: {} and {}",
            show_cpu(wanted.cpu),
            show_memory(wanted.memory),
            show_cpu(total.cpu),
            show_memory(total.memory)
        ));
    }
    CheckOutcome::passed(format!(
        "{schedulable} schedulable node(s) with {} and {} free",
        show_cpu(total.cpu),
        show_memory(total.memory)
    ))
}

#[cfg(test)]
mod tests {
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
            "shop",
            ImageRef::parse("registry.example.com/shop/web:1.4.2").unwrap(),
            ResourceList::new("250m", "256Mi").unwrap(),
            pods,
        )
    }

    fn script(quota_json: serde_json::Value, nodes: Vec<serde_json::Value>) -> Vec<Expect> {
        vec![
            Expect::get("/version").ok(version()),
            Expect::get("/api/v1/namespaces/shop")
                .ok(json!({"metadata": {"name": "shop"}, "status": {"phase": "Active"}})),
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
            let (client, mock) =
                start(script(quota("2500m", "1500m", "8Gi", "3Gi"), vec![node("a", "8", "32Gi", false)]));
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
            Expect::get("/api/v1/namespaces/shop/resourcequotas").status(
                403,
                "Forbidden",
                "resourcequotas is forbidden",
            ),
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
}
