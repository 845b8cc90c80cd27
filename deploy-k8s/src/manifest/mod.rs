//! Builders from [`AppSpec`](deploy_core::model::AppSpec) to Kubernetes objects, and
//! rendering them as manifests.
//!
//! Every builder is a pure function: the same spec and options give the same
//! object, so manifests can be diffed and reviewed before anything is applied.

pub mod autoscaling;
pub mod backup;
pub mod config;
pub mod crd;
pub(crate) mod custom;
pub mod deployment;
pub mod edge;
pub mod gateway;
pub mod gitops;
pub mod hook;
pub mod ingress;
pub mod istio;
pub mod network_policy;
pub mod render;
pub mod scaling;
pub mod service;
pub mod stateful;

pub use autoscaling::{
    DisruptionBudget, HpaOptions, PodsMetric, ScalingPolicy, ScalingRules, horizontal_pod_autoscaler,
    pod_disruption_budget,
};
pub use config::{
    ChecksumKey, ChecksumKeyError, config_map, config_map_checksum, namespace, secret, secret_checksum,
    secret_revision_checksum,
};
pub use crd::{CrdDescription, CrdScope, CrdVersion, custom_resource_definition};
pub use deployment::{DeploymentOptions, EnvFrom, PodVolume, VolumeSource, deployment};
pub use gateway::HTTPRoute;
pub use ingress::{IngressOptions, IngressPath, ingress};
pub use istio::{
    AuthorizationPolicy, DestinationRule, PeerAuthentication, StringMatch, TrafficPolicy, VirtualService,
    VirtualServiceOptions, authorization_policy, destination_rule, peer_authentication, virtual_service,
};
pub use network_policy::{EgressTo, NetworkPolicyOptions, network_policy};
pub use render::ManifestSet;
pub use service::{ServiceOptions, service};
pub use stateful::{StatefulSetOptions, VolumeClaim, headless_service, stateful_set};

/// The name of a header route a router adds for `header` (and that a
/// VirtualService built here carries): `prefix` and the header name, lower case,
/// with every character outside `[a-z0-9-]` as `-`. It lives with the manifests so
/// that the routers import the manifests and never the other way round.
pub(crate) fn owned_route_name(prefix: &str, header: &str) -> String {
    let cleaned: String = header
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    format!("{prefix}{}", cleaned.trim_matches('-'))
}
