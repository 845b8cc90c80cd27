//! A StatefulSet for a stateful service (a database, a cache with persistence),
//! with a volume claim per replica and the headless Service that names its pods.

use std::collections::BTreeMap;

use deploy_core::model::{AppSpec, Quantity};
use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Service, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::labels;
use crate::manifest::deployment::{DeploymentOptions, deployment, to_i32};
use crate::manifest::service::{ServiceOptions, service};

/// A persistent volume each replica gets for itself (`volumeClaimTemplates`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeClaim {
    /// The claim's name; each pod's claim is `{name}-{app}-{ordinal}`.
    pub name: String,
    /// Its size, such as `10Gi`.
    pub size: Quantity,
    /// Where the app's container mounts it.
    pub mount_path: String,
    /// The storage class; `None` takes the cluster's default.
    pub storage_class: Option<String>,
}

impl VolumeClaim {
    /// A `ReadWriteOnce` claim of `size` mounted at `mount_path`.
    pub fn new(name: impl Into<String>, size: Quantity, mount_path: impl Into<String>) -> Self {
        Self { name: name.into(), size, mount_path: mount_path.into(), storage_class: None }
    }

    /// Uses `class` instead of the default storage class.
    #[must_use]
    pub fn storage_class(mut self, class: impl Into<String>) -> Self {
        self.storage_class = Some(class.into());
        self
    }
}

/// How a StatefulSet is built beyond the [`AppSpec`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StatefulSetOptions {
    /// Pod template settings, as for a Deployment (volumes, sidecars, security ...).
    pub pod: DeploymentOptions,
    /// One claim per replica for each entry.
    pub volume_claims: Vec<VolumeClaim>,
    /// Only ordinals at or above this are updated (`rollingUpdate.partition`): a
    /// canary of the highest ordinals first.
    pub partition: u32,
    /// `OrderedReady` (one pod at a time, the default) or `Parallel`.
    pub pod_management_policy: String,
}

impl Default for StatefulSetOptions {
    fn default() -> Self {
        Self {
            pod: DeploymentOptions::default(),
            volume_claims: Vec::new(),
            partition: 0,
            pod_management_policy: "OrderedReady".to_owned(),
        }
    }
}

impl StatefulSetOptions {
    /// Adds a volume claim per replica.
    #[must_use]
    pub fn volume_claim(mut self, claim: VolumeClaim) -> Self {
        self.volume_claims.push(claim);
        self
    }

    /// Updates only the ordinals at or above `partition`.
    #[must_use]
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = partition;
        self
    }

    /// Sets the pod template options.
    #[must_use]
    pub fn pod(mut self, options: DeploymentOptions) -> Self {
        self.pod = options;
        self
    }
}

/// The headless Service `{app}-headless` that gives each pod of the StatefulSet a
/// stable DNS name (`{app}-0.{app}-headless`).
pub fn headless_service(spec: &AppSpec) -> Service {
    let name = format!("{}-headless", spec.name);
    let mut headless = service(spec, &ServiceOptions::default().name(name));
    if let Some(s) = headless.spec.as_mut() {
        s.cluster_ip = Some("None".to_owned());
        s.publish_not_ready_addresses = Some(true);
    }
    headless
}

/// The StatefulSet of `spec`: its pods are built as a Deployment's would be
/// ([`deployment`]) and each mounts its own claims, which Kubernetes keeps when the
/// StatefulSet is deleted or scaled down (data outlives a rollback).
pub fn stateful_set(spec: &AppSpec, options: &StatefulSetOptions) -> StatefulSet {
    let app = spec.id();
    let built = deployment(spec, &options.pod);
    let mut template = built.spec.template;
    if let Some(app_container) = template.spec.as_mut().and_then(|pod| pod.containers.first_mut()) {
        let mounts = app_container.volume_mounts.get_or_insert_with(Vec::new);
        for claim in &options.volume_claims {
            mounts.push(VolumeMount {
                name: claim.name.clone(),
                mount_path: claim.mount_path.clone(),
                ..VolumeMount::default()
            });
        }
    }
    let claims: Vec<PersistentVolumeClaim> = options
        .volume_claims
        .iter()
        .map(|claim| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(claim.name.clone()),
                labels: Some(labels::pod_labels(&app, None, None)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                storage_class_name: claim.storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        KubeQuantity(claim.size.as_str().to_owned()),
                    )])),
                    limits: None,
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        })
        .collect();
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(app.name.to_string()),
            namespace: Some(app.namespace.to_string()),
            labels: built.metadata.labels,
            annotations: built.metadata.annotations,
            ..ObjectMeta::default()
        },
        spec: StatefulSetSpec {
            replicas: built.spec.replicas,
            selector: LabelSelector { match_labels: Some(labels::app_selector(&app)), ..LabelSelector::default() },
            service_name: Some(format!("{}-headless", app.name)),
            template,
            volume_claim_templates: (!claims.is_empty()).then_some(claims),
            pod_management_policy: Some(options.pod_management_policy.clone()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(to_i32(options.partition)),
                    max_unavailable: None,
                }),
            }),
            // Left out: Kubernetes' default keeps the claims when the StatefulSet is
            // deleted or scaled down, and servers before 1.23 refuse the field.
            persistent_volume_claim_retention_policy: None,
            revision_history_limit: Some(10),
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}
