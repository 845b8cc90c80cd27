//! Autoscaling beyond the HPA: a VerticalPodAutoscaler (`autoscaling.k8s.io/v1`),
//! a KEDA ScaledObject (`keda.sh/v1alpha1`) and the cluster autoscaler's
//! Deployment. The custom kinds are typed from the upstream CRDs.

use std::collections::BTreeMap;

use deploy_core::model::AppSpec;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use crate::labels;
use crate::manifest::custom::custom_kind;
use crate::manifest::deployment::to_i32;

custom_kind!(
    /// `autoscaling.k8s.io/v1` VerticalPodAutoscaler: recommends (or sets) pod resources.
    VerticalPodAutoscaler, VpaSpec, "autoscaling.k8s.io", "v1", "verticalpodautoscalers"
);
custom_kind!(
    /// `keda.sh/v1alpha1` ScaledObject: scales a workload on external events.
    ScaledObject, ScaledObjectSpec, "keda.sh", "v1alpha1", "scaledobjects"
);

/// What a workload reference names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TargetRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// The workload's name.
    pub name: String,
}

/// VerticalPodAutoscaler `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VpaSpec {
    /// The workload whose pods it sizes.
    pub target_ref: TargetRef,
    /// How it acts.
    pub update_policy: VpaUpdatePolicy,
    /// Per-container bounds and the resources it manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<VpaResourcePolicy>,
}

/// How a VPA acts on its recommendations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VpaUpdatePolicy {
    /// `Off` (recommend only), `Initial` (set at pod creation) or `Recreate`.
    pub update_mode: String,
}

/// A VPA's resource policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VpaResourcePolicy {
    /// One entry per container (`*` for all).
    pub container_policies: Vec<VpaContainerPolicy>,
}

/// A VPA's bounds for one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VpaContainerPolicy {
    /// The container's name, or `*`.
    pub container_name: String,
    /// The resources it recommends for (`cpu`, `memory`).
    pub controlled_resources: Vec<String>,
    /// The least it recommends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_allowed: BTreeMap<String, KubeQuantity>,
    /// The most it recommends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_allowed: BTreeMap<String, KubeQuantity>,
}

/// How a VPA may act next to the spec's HPA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VpaMode {
    /// Recommendations only (`Off`): safe beside an HPA on any resource.
    Recommend,
    /// Sets requests when pods are created (`Initial`).
    Initial,
    /// Evicts pods to apply new requests (`Recreate`).
    Recreate,
}

/// The VPA of `spec`'s Deployment `deployment`.
///
/// Never two controllers on one signal: when the spec autoscales horizontally
/// (its HPA acts on CPU or memory utilisation, which VPA changes would shift),
/// the VPA only recommends ([`VpaMode::Recommend`]) whatever `mode` asks, and it
/// controls memory only when the HPA targets CPU alone.
pub fn vertical_pod_autoscaler(spec: &AppSpec, deployment: &str, mode: VpaMode) -> VerticalPodAutoscaler {
    let app = spec.id();
    let hpa = spec.autoscaling.as_ref();
    let mode = if hpa.is_some() { VpaMode::Recommend } else { mode };
    let controlled: Vec<String> = match hpa {
        Some(a) if a.target_memory.is_none() => vec!["memory".to_owned()],
        _ => vec!["cpu".to_owned(), "memory".to_owned()],
    };
    let bound = |list: &deploy_core::model::ResourceList| {
        let mut out = BTreeMap::new();
        if let Some(cpu) = &list.cpu {
            out.insert("cpu".to_owned(), KubeQuantity(cpu.as_str().to_owned()));
        }
        if let Some(memory) = &list.memory {
            out.insert("memory".to_owned(), KubeQuantity(memory.as_str().to_owned()));
        }
        out.retain(|k, _| controlled.contains(k));
        out
    };
    let mut vpa = VerticalPodAutoscaler::new(
        &app.namespace,
        deployment,
        VpaSpec {
            target_ref: TargetRef { api_version: "apps/v1".into(), kind: "Deployment".into(), name: deployment.into() },
            update_policy: VpaUpdatePolicy {
                update_mode: match mode {
                    VpaMode::Recommend => "Off",
                    VpaMode::Initial => "Initial",
                    VpaMode::Recreate => "Recreate",
                }
                .to_owned(),
            },
            resource_policy: Some(VpaResourcePolicy {
                container_policies: vec![VpaContainerPolicy {
                    container_name: spec.name.to_string(),
                    controlled_resources: controlled.clone(),
                    min_allowed: bound(&spec.resources.requests),
                    max_allowed: bound(&spec.resources.limits),
                }],
            }),
        },
    );
    vpa.metadata.labels = Some(labels::pod_labels(&app, None, None));
    vpa
}

/// ScaledObject `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScaledObjectSpec {
    /// The workload it scales.
    pub scale_target_ref: ScaleTargetRef,
    /// The fewest replicas (0 lets KEDA scale to zero).
    pub min_replica_count: i32,
    /// The most replicas.
    pub max_replica_count: i32,
    /// Seconds between checks of the triggers.
    pub polling_interval: i32,
    /// Seconds to wait after the last active trigger before scaling to the minimum.
    pub cooldown_period: i32,
    /// The event sources.
    pub triggers: Vec<ScaledObjectTrigger>,
}

/// The workload a ScaledObject scales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScaleTargetRef {
    /// The workload's name (a Deployment unless `kind` says otherwise).
    pub name: String,
}

/// One KEDA trigger: a scaler type and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScaledObjectTrigger {
    /// The scaler, such as `prometheus`, `rabbitmq` or `kafka`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The scaler's settings, as strings.
    pub metadata: BTreeMap<String, String>,
}

impl ScaledObjectTrigger {
    /// A Prometheus trigger: scale so that `query` stays near `threshold` per replica.
    pub fn prometheus(server: &str, query: &str, threshold: f64) -> Self {
        Self {
            type_: "prometheus".to_owned(),
            metadata: BTreeMap::from([
                ("serverAddress".to_owned(), server.to_owned()),
                ("query".to_owned(), query.to_owned()),
                ("threshold".to_owned(), threshold.to_string()),
            ]),
        }
    }
}

/// A ScaledObject for `spec`'s Deployment `deployment`, within the spec's
/// autoscaling bounds (or `spec.replicas` fixed when it has none). KEDA makes its
/// own HPA: do not apply the spec's HPA to the same Deployment as well.
pub fn scaled_object(spec: &AppSpec, deployment: &str, triggers: Vec<ScaledObjectTrigger>) -> ScaledObject {
    let app = spec.id();
    let (min, max) =
        spec.autoscaling.as_ref().map_or((spec.replicas, spec.replicas), |a| (a.min_replicas, a.max_replicas));
    let mut object = ScaledObject::new(
        &app.namespace,
        deployment,
        ScaledObjectSpec {
            scale_target_ref: ScaleTargetRef { name: deployment.to_owned() },
            min_replica_count: to_i32(min),
            max_replica_count: to_i32(max),
            polling_interval: 30,
            cooldown_period: 300,
            triggers,
        },
    );
    object.metadata.labels = Some(labels::pod_labels(&app, None, None));
    object
}

/// Settings of the cluster autoscaler's Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterAutoscalerOptions {
    /// The image, such as `registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.0`
    /// (its minor version should match the cluster's).
    pub image: String,
    /// `aws`, `gce`, `azure`, `clusterapi` ...
    pub cloud_provider: String,
    /// Node groups it may resize, as `min:max:name`.
    pub node_groups: Vec<String>,
    /// How long a node must be unneeded before it is removed, such as `10m`.
    pub scale_down_unneeded_time: String,
}

impl ClusterAutoscalerOptions {
    /// The autoscaler for `cloud_provider`, from `image`, removing nodes unneeded for 10 minutes.
    pub fn new(image: impl Into<String>, cloud_provider: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            cloud_provider: cloud_provider.into(),
            node_groups: Vec::new(),
            scale_down_unneeded_time: "10m".to_owned(),
        }
    }

    /// Lets it resize `name` between `min` and `max` nodes.
    #[must_use]
    pub fn node_group(mut self, min: u32, max: u32, name: &str) -> Self {
        self.node_groups.push(format!("{min}:{max}:{name}"));
        self
    }
}

/// The cluster autoscaler's Deployment in `kube-system` (its service account
/// `cluster-autoscaler` and RBAC come from the provider's documentation).
pub fn cluster_autoscaler(options: &ClusterAutoscalerOptions) -> Deployment {
    let labels = BTreeMap::from([("app".to_owned(), "cluster-autoscaler".to_owned())]);
    let mut command = vec![
        "./cluster-autoscaler".to_owned(),
        format!("--cloud-provider={}", options.cloud_provider),
        "--balance-similar-node-groups".to_owned(),
        "--skip-nodes-with-system-pods=false".to_owned(),
        format!("--scale-down-unneeded-time={}", options.scale_down_unneeded_time),
    ];
    command.extend(options.node_groups.iter().map(|g| format!("--nodes={g}")));
    let quantity = |s: &str| KubeQuantity(s.to_owned());
    Deployment {
        metadata: ObjectMeta {
            name: Some("cluster-autoscaler".to_owned()),
            namespace: Some("kube-system".to_owned()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    service_account_name: Some("cluster-autoscaler".to_owned()),
                    priority_class_name: Some("system-cluster-critical".to_owned()),
                    containers: vec![Container {
                        name: "cluster-autoscaler".to_owned(),
                        image: Some(options.image.clone()),
                        command: Some(command),
                        resources: Some(ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".to_owned(), quantity("100m")),
                                ("memory".to_owned(), quantity("300Mi")),
                            ])),
                            limits: Some(BTreeMap::from([
                                ("cpu".to_owned(), quantity("100m")),
                                ("memory".to_owned(), quantity("300Mi")),
                            ])),
                            claims: None,
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}
