//! `kubectl rollout status` for Deployments, as a pure function, plus the pod states
//! that doom a rollout (as Shopify's krane reads them).
//!
//! The decision follows kubectl's `DeploymentStatusViewer` (staging/src/k8s.io/
//! kubectl/pkg/polymorphichelpers/rollout_status.go) step by step, with kubectl's
//! messages (without their trailing newline).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

use crate::labels;

/// The Progressing condition's reason when the progress deadline passed.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// What a Deployment's rollout is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waiting {
    /// The controller has not observed the latest spec (`generation` >
    /// `status.observedGeneration`); the rest of the status is stale.
    SpecUpdate,
    /// Fewer replicas run the new template than desired.
    UpdatedReplicas {
        /// Updated replicas.
        updated: i32,
        /// Desired replicas.
        desired: i32,
    },
    /// Old replicas are still terminating.
    OldReplicas {
        /// How many.
        pending: i32,
    },
    /// Updated replicas are not all available yet.
    AvailableReplicas {
        /// Available replicas.
        available: i32,
        /// Updated replicas.
        updated: i32,
    },
}

/// The rollout status of a Deployment, as `kubectl rollout status` decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RolloutStatus {
    /// Still rolling out; `message` is what kubectl prints.
    Waiting {
        /// What it waits for.
        reason: Waiting,
        /// kubectl's message.
        message: String,
    },
    /// Done: every desired replica is updated and available.
    Complete {
        /// kubectl's message.
        message: String,
    },
    /// Cannot finish: the progress deadline passed, or the revision is not the one
    /// expected. kubectl exits with this error.
    Failed {
        /// kubectl's error message.
        message: String,
    },
}

impl RolloutStatus {
    /// Whether the rollout is complete.
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Complete { .. })
    }

    /// The message kubectl prints.
    pub fn message(&self) -> &str {
        match self {
            Self::Waiting { message, .. } | Self::Complete { message } | Self::Failed { message } => message,
        }
    }
}

/// The revision of a Deployment (or ReplicaSet) from its
/// `deployment.kubernetes.io/revision` annotation; 0 when absent, as kubectl.
pub fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.annotations.as_ref().and_then(|a| a.get(labels::REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Decides the rollout status of `deployment`. With `expected_revision`, a
/// Deployment at another revision fails, as `kubectl rollout status --revision`.
///
/// Generations are compared first: right after an update the status still
/// describes the previous rollout, and only `observedGeneration` tells.
pub fn rollout_status(deployment: &Deployment, expected_revision: Option<i64>) -> RolloutStatus {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    if let Some(expected) = expected_revision.filter(|r| *r > 0) {
        let running = revision(&deployment.metadata);
        if running != expected {
            return RolloutStatus::Failed {
                message: format!("desired revision ({expected}) is different from the running revision ({running})"),
            };
        }
    }
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutStatus::Waiting {
            reason: Waiting::SpecUpdate,
            message: "Waiting for deployment spec update to be observed...".to_owned(),
        };
    }
    let progressing = status.conditions.iter().flatten().find(|c| c.type_.as_deref() == Some("Progressing"));
    if progressing.and_then(|c| c.reason.as_deref()) == Some(PROGRESS_DEADLINE_EXCEEDED) {
        return RolloutStatus::Failed { message: format!("deployment \"{name}\" exceeded its progress deadline") };
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if let Some(desired) = deployment.spec.replicas
        && updated < desired
    {
        return RolloutStatus::Waiting {
            reason: Waiting::UpdatedReplicas { updated, desired },
            message: format!(
                "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {desired} new replicas have been updated..."
            ),
        };
    }
    if replicas > updated {
        let pending = replicas - updated;
        return RolloutStatus::Waiting {
            reason: Waiting::OldReplicas { pending },
            message: format!(
                "Waiting for deployment \"{name}\" rollout to finish: {pending} old replicas are pending termination..."
            ),
        };
    }
    if available < updated {
        return RolloutStatus::Waiting {
            reason: Waiting::AvailableReplicas { available, updated },
            message: format!(
                "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        };
    }
    RolloutStatus::Complete { message: format!("deployment \"{name}\" successfully rolled out") }
}

/// Container waiting reasons that cannot resolve without a change.
pub const DOOMED_REASONS: [&str; 5] =
    ["CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "InvalidImageName"];

/// Why `pod` can never become ready, if it cannot: a container (or init container)
/// waiting with one of [`DOOMED_REASONS`]. The reason names the container and
/// carries the kubelet's message.
pub fn doomed_pod(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for container in containers {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
        let Some(reason) = waiting.reason.as_deref() else { continue };
        if DOOMED_REASONS.contains(&reason) {
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            let message = waiting.message.as_deref().unwrap_or_default();
            return Some(if message.is_empty() {
                format!("pod {pod_name} container {}: {reason}", container.name)
            } else {
                format!("pod {pod_name} container {}: {reason}: {message}", container.name)
            });
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A Deployment as the API server returns it, with the given counts.
    pub(crate) fn deployment_json(
        name: &str,
        generation: i64,
        observed: i64,
        desired: i64,
        counts: (i64, i64, i64, i64),
        progressing_reason: &str,
    ) -> Value {
        let (replicas, updated, ready, available) = counts;
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop", "generation": generation, "resourceVersion": format!("{}", 100 + observed),
                "uid": "0b4a3c1e-5f6d-4a7b-8c9d-0e1f2a3b4c5d", "creationTimestamp": "2025-06-01T10:00:00Z",
                "annotations": {"deployment.kubernetes.io/revision": "3"},
                "labels": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "canary", "app.kubernetes.io/version": "1.4.2"}},
            "spec": {"replicas": desired, "progressDeadlineSeconds": 600, "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "canary"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "canary", "app.kubernetes.io/version": "1.4.2"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:1.4.2"}]}}},
            "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                "readyReplicas": ready, "availableReplicas": available,
                "unavailableReplicas": (replicas - available).max(0),
                "conditions": [
                    {"type": "Available", "status": if available >= desired { "True" } else { "False" },
                     "reason": if available >= desired { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                     "message": "Deployment has minimum availability.",
                     "lastUpdateTime": "2025-06-01T10:00:05Z", "lastTransitionTime": "2025-06-01T10:00:05Z"},
                    {"type": "Progressing", "status": if progressing_reason == PROGRESS_DEADLINE_EXCEEDED { "False" } else { "True" },
                     "reason": progressing_reason,
                     "message": format!("ReplicaSet \"{name}-6d9f7c8b5\" is progressing."),
                     "lastUpdateTime": "2025-06-01T10:00:05Z", "lastTransitionTime": "2025-06-01T10:00:01Z"}]}
        })
    }

    fn status_of(v: Value, revision: Option<i64>) -> RolloutStatus {
        rollout_status(&serde_json::from_value(v).unwrap(), revision)
    }

    #[test]
    fn stale_observed_generation_waits_even_if_the_old_status_looks_complete() {
        let v = deployment_json("web", 4, 3, 3, (3, 3, 3, 3), "NewReplicaSetAvailable");
        let s = status_of(v, None);
        assert_eq!(
            s,
            RolloutStatus::Waiting {
                reason: Waiting::SpecUpdate,
                message: "Waiting for deployment spec update to be observed...".into()
            }
        );
    }

    #[test]
    fn progress_deadline_exceeded_fails() {
        let v = deployment_json("web", 4, 4, 3, (4, 1, 3, 3), PROGRESS_DEADLINE_EXCEEDED);
        assert_eq!(
            status_of(v, None),
            RolloutStatus::Failed { message: "deployment \"web\" exceeded its progress deadline".into() }
        );
    }

    #[test]
    fn too_few_updated_replicas_wait() {
        let v = deployment_json("web", 4, 4, 3, (4, 1, 3, 3), "ReplicaSetUpdated");
        let s = status_of(v, None);
        assert_eq!(
            s.message(),
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert!(matches!(
            s,
            RolloutStatus::Waiting { reason: Waiting::UpdatedReplicas { updated: 1, desired: 3 }, .. }
        ));
    }

    #[test]
    fn old_replicas_pending_termination_wait() {
        let v = deployment_json("web", 4, 4, 3, (5, 3, 4, 4), "ReplicaSetUpdated");
        let s = status_of(v, None);
        assert_eq!(
            s.message(),
            "Waiting for deployment \"web\" rollout to finish: 2 old replicas are pending termination..."
        );
        assert!(matches!(s, RolloutStatus::Waiting { reason: Waiting::OldReplicas { pending: 2 }, .. }));
    }

    #[test]
    fn unavailable_updated_replicas_wait() {
        let v = deployment_json("web", 4, 4, 3, (3, 3, 2, 1), "ReplicaSetUpdated");
        let s = status_of(v, None);
        assert_eq!(
            s.message(),
            "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available..."
        );
        assert!(matches!(
            s,
            RolloutStatus::Waiting { reason: Waiting::AvailableReplicas { available: 1, updated: 3 }, .. }
        ));
    }

    #[test]
    fn all_updated_and_available_is_complete() {
        let v = deployment_json("web", 4, 4, 3, (3, 3, 3, 3), "NewReplicaSetAvailable");
        let s = status_of(v, None);
        assert_eq!(s, RolloutStatus::Complete { message: "deployment \"web\" successfully rolled out".into() });
        assert!(s.is_complete());
    }

    #[test]
    fn scaled_to_zero_is_complete_and_unobserved_fresh_object_waits() {
        let v = deployment_json("web", 2, 2, 0, (0, 0, 0, 0), "NewReplicaSetAvailable");
        assert!(status_of(v, None).is_complete());
        let mut fresh = deployment_json("web", 1, 0, 3, (0, 0, 0, 0), "");
        fresh["status"] = json!({});
        assert_eq!(status_of(fresh, None).message(), "Waiting for deployment spec update to be observed...");
    }

    #[test]
    fn a_revision_other_than_the_expected_one_fails() {
        let v = deployment_json("web", 4, 4, 3, (3, 3, 3, 3), "NewReplicaSetAvailable");
        assert!(status_of(v.clone(), Some(3)).is_complete());
        assert_eq!(
            status_of(v, Some(5)),
            RolloutStatus::Failed { message: "desired revision (5) is different from the running revision (3)".into() }
        );
    }

    pub(crate) fn pod_json(name: &str, version: &str, waiting: Option<(&str, &str)>, ready: bool) -> Value {
        let state = match waiting {
            Some((reason, message)) => json!({"waiting": {"reason": reason, "message": message}}),
            None => json!({"running": {"startedAt": "2025-06-01T10:00:03Z"}}),
        };
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": "300",
                "labels": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "canary", "app.kubernetes.io/version": version,
                           "pod-template-hash": "6d9f7c8b5"}},
            "spec": {"containers": [{"name": "web", "image": format!("registry.example.com/shop/web:{version}")}]},
            "status": {"phase": if waiting.is_some() { "Pending" } else { "Running" },
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": "web", "ready": ready, "restartCount": 4, "image": format!("registry.example.com/shop/web:{version}"),
                    "imageID": "", "started": waiting.is_none(), "state": state}]}})
    }

    #[test]
    fn doomed_container_states_are_recognised_with_their_message() {
        let crash = pod_json(
            "web-canary-6d9f7c8b5-x2x9k",
            "1.4.2",
            Some((
                "CrashLoopBackOff",
                "back-off 40s restarting failed container=web pod=web-canary-6d9f7c8b5-x2x9k_shop(0b4a)",
            )),
            false,
        );
        let why = doomed_pod(&serde_json::from_value(crash).unwrap()).unwrap();
        assert!(
            why.starts_with("pod web-canary-6d9f7c8b5-x2x9k container web: CrashLoopBackOff: back-off 40s"),
            "{why}"
        );
        for reason in ["ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError"] {
            let p = pod_json("p", "1.4.2", Some((reason, "x")), false);
            assert!(doomed_pod(&serde_json::from_value(p).unwrap()).unwrap().contains(reason));
        }
        for benign in [Some(("ContainerCreating", "")), None] {
            let p = pod_json("p", "1.4.2", benign, false);
            assert_eq!(doomed_pod(&serde_json::from_value(p).unwrap()), None);
        }
    }
}
