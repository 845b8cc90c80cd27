//! Manifest audit: an [`AppSpec`] or Kubernetes workload JSON, judged by
//! [`MANIFEST_RULES`](super::MANIFEST_RULES).

use std::collections::BTreeMap;

use deploy_core::model::AppSpec;
use serde::Deserialize;

use super::pod::{ContainerView, PodView};
use super::rules::check_pod;
use deploy_core::scan::Finding;

/// Audits the pod an [`AppSpec`] describes. Host namespaces, host paths and the service
/// account token cannot be expressed in an `AppSpec`, so those rules do not apply.
///
/// ```
/// use deploy_core::model::{AppSpec, ContainerSecurityContext, ImageRef, Name, Namespace, PodSecurityContext};
/// use deploy_security::audit::audit_app_spec;
/// let spec = AppSpec::new(Namespace::new("shop").unwrap(), Name::new("checkout").unwrap(),
///     ImageRef::parse("shop/checkout:1.4.2").unwrap());
/// let ids: Vec<String> = audit_app_spec(&spec).into_iter().map(|f| f.id).collect();
/// assert!(ids.contains(&"run-as-non-root".to_owned()));
///
/// let hardened = spec
///     .pod_security(PodSecurityContext::restricted())
///     .container_security(ContainerSecurityContext::restricted());
/// let ids: Vec<String> = audit_app_spec(&hardened).into_iter().map(|f| f.id).collect();
/// assert!(!ids.contains(&"run-as-non-root".to_owned()));
/// assert!(!ids.contains(&"read-only-root-filesystem".to_owned()));
/// ```
pub fn audit_app_spec(spec: &AppSpec) -> Vec<Finding> {
    let container = ContainerView {
        name: spec.name.to_string(),
        image: spec.image.to_string(),
        run_as_non_root: None,
        run_as_user: None,
        read_only_root_filesystem: spec.container_security.read_only_root_filesystem,
        allow_privilege_escalation: spec.container_security.allow_privilege_escalation,
        privileged: spec.container_security.privileged,
        drop_capabilities: spec.container_security.drop_capabilities.clone(),
        add_capabilities: Vec::new(),
        cpu_request: spec.resources.requests.cpu.is_some(),
        memory_request: spec.resources.requests.memory.is_some(),
        cpu_limit: spec.resources.limits.cpu.is_some(),
        memory_limit: spec.resources.limits.memory.is_some(),
        liveness_probe: spec.liveness.is_some(),
        readiness_probe: spec.readiness.is_some(),
    };
    check_pod(&PodView {
        object: format!("AppSpec {}", spec.id()),
        run_as_non_root: spec.pod_security.run_as_non_root,
        run_as_user: spec.pod_security.run_as_user,
        host_network: None,
        host_pid: None,
        host_ipc: None,
        host_path_volumes: None,
        automount_service_account_token: None,
        containers: vec![container],
    })
}

/// A manifest that could not be audited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON of a known shape; `path` says where.
    #[error("malformed manifest at {path}: {reason}")]
    Malformed {
        /// The JSON path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A kind that has no pod template.
    #[error("kind {kind} has no pod template")]
    UnsupportedKind {
        /// The kind.
        kind: String,
    },
}

/// Audits a Kubernetes workload manifest in JSON: a Pod, Deployment, StatefulSet,
/// DaemonSet, ReplicaSet, Job or CronJob (every container and init container).
///
/// ```
/// use deploy_security::audit::audit_manifest_json;
/// let manifest = br#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"},
///   "spec": {"hostNetwork": true, "containers": [{"name": "sh", "image": "busybox",
///   "securityContext": {"privileged": true}}]}}"#;
/// let ids: Vec<String> = audit_manifest_json(manifest).unwrap().into_iter().map(|f| f.id).collect();
/// assert!(ids.contains(&"privileged".to_owned()) && ids.contains(&"host-network".to_owned()));
/// ```
pub fn audit_manifest_json(json: &[u8]) -> Result<Vec<Finding>, ManifestError> {
    let workload: Workload = from_json(json, "")?;
    let object = format!(
        "{} {}{}",
        workload.kind,
        workload.metadata.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
        workload.metadata.name.as_deref().unwrap_or("(unnamed)")
    );
    let path: &[&str] = match workload.kind.as_str() {
        "Pod" => &[],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => &["template", "spec"],
        "CronJob" => &["jobTemplate", "spec", "template", "spec"],
        other => return Err(ManifestError::UnsupportedKind { kind: other.to_owned() }),
    };
    let mut pod = &workload.spec;
    let mut at = String::from(".spec");
    for field in path {
        at = format!("{at}.{field}");
        pod = pod.get(field).ok_or_else(|| ManifestError::Malformed {
            path: at.clone(),
            reason: format!("a {} needs {at}", workload.kind),
        })?;
    }
    let spec: PodSpec = from_json(&serde_json::to_vec(pod).unwrap_or_default(), &at)?;
    Ok(check_pod(&spec.into_view(object)))
}

fn from_json<T: serde::de::DeserializeOwned>(json: &[u8], prefix: &str) -> Result<T, ManifestError> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { format!("{prefix}.") } else { format!("{prefix}.{path}") };
        ManifestError::Malformed { path, reason: e.into_inner().to_string() }
    })
}

#[derive(Deserialize)]
struct Workload {
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: serde_json::Value,
}

#[derive(Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
    #[serde(default)]
    host_network: Option<bool>,
    #[serde(rename = "hostPID", default)]
    host_pid: Option<bool>,
    #[serde(rename = "hostIPC", default)]
    host_ipc: Option<bool>,
    #[serde(default)]
    automount_service_account_token: Option<bool>,
    #[serde(default)]
    security_context: Option<SecurityContext>,
    #[serde(default)]
    volumes: Vec<Volume>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    security_context: Option<SecurityContext>,
    #[serde(default)]
    resources: Option<ResourceRequirements>,
    #[serde(default)]
    liveness_probe: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    readiness_probe: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    run_as_non_root: Option<bool>,
    run_as_user: Option<i64>,
    read_only_root_filesystem: Option<bool>,
    allow_privilege_escalation: Option<bool>,
    privileged: Option<bool>,
    #[serde(default)]
    capabilities: Option<Capabilities>,
}

#[derive(Deserialize, Default)]
struct Capabilities {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ResourceRequirements {
    #[serde(default)]
    requests: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    limits: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    #[serde(default)]
    host_path: Option<HostPath>,
}

#[derive(Deserialize)]
struct HostPath {
    path: String,
}

impl PodSpec {
    fn into_view(self, object: String) -> PodView {
        let pod_context = self.security_context.unwrap_or_default();
        let containers = self
            .init_containers
            .into_iter()
            .map(|c| (c, true))
            .chain(self.containers.into_iter().map(|c| (c, false)))
            .map(|(c, init)| {
                let sc = c.security_context.unwrap_or_default();
                let caps = sc.capabilities.unwrap_or_default();
                let resources = c.resources.unwrap_or_default();
                ContainerView {
                    name: if init { format!("{} (init)", c.name) } else { c.name },
                    image: c.image,
                    run_as_non_root: sc.run_as_non_root,
                    run_as_user: sc.run_as_user,
                    read_only_root_filesystem: sc.read_only_root_filesystem,
                    allow_privilege_escalation: sc.allow_privilege_escalation,
                    privileged: sc.privileged,
                    drop_capabilities: caps.drop,
                    add_capabilities: caps.add,
                    cpu_request: resources.requests.contains_key("cpu"),
                    memory_request: resources.requests.contains_key("memory"),
                    cpu_limit: resources.limits.contains_key("cpu"),
                    memory_limit: resources.limits.contains_key("memory"),
                    // Init containers run to completion: probes do not apply.
                    liveness_probe: init || c.liveness_probe.is_some(),
                    readiness_probe: init || c.readiness_probe.is_some(),
                }
            })
            .collect();
        PodView {
            object,
            run_as_non_root: pod_context.run_as_non_root,
            run_as_user: pod_context.run_as_user,
            host_network: Some(self.host_network.unwrap_or(false)),
            host_pid: Some(self.host_pid.unwrap_or(false)),
            host_ipc: Some(self.host_ipc.unwrap_or(false)),
            host_path_volumes: Some(
                self.volumes
                    .into_iter()
                    .filter_map(|v| v.host_path.map(|h| format!("{} ({})", h.path, v.name)))
                    .collect(),
            ),
            automount_service_account_token: Some(self.automount_service_account_token),
            containers,
        }
    }
}
