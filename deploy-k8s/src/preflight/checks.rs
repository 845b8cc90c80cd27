//! The checks themselves: each a [`Check`], the suite's one check trait.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deploy_core::check::{Check, CheckOutcome};
use deploy_core::model::{Namespace, Quantity, ResourceList};
use k8s_openapi::api::core::v1::{Node, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use kube::api::{Api, ListParams};

use super::PreflightRequest;
use crate::cluster::Cluster;

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
    pub fn new(cluster: Cluster, namespace: Namespace) -> Self {
        Self { cluster, namespace: namespace.into_string() }
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
    let api: Api<ResourceQuota> = Api::namespaced(cluster.client().clone(), request.namespace.as_str());
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
