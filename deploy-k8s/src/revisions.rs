//! Revision history and rollback as `kubectl rollout history` and `kubectl
//! rollout undo` do them: revisions come from the ReplicaSets a Deployment owns
//! (annotation `deployment.kubernetes.io/revision`), and undo copies a
//! ReplicaSet's pod template back into the Deployment.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, PostParams};
use tracing::instrument;

use crate::cluster::Cluster;
use crate::error::{KubeError, Result, is_conflict};
use crate::labels;
use crate::rollout_status::revision;

/// One revision of a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevisionInfo {
    /// The revision number.
    pub revision: i64,
    /// The ReplicaSet that holds it.
    pub replica_set: String,
    /// The images of its containers.
    pub images: Vec<String>,
    /// Its `kubernetes.io/change-cause`, if any.
    pub change_cause: Option<String>,
}

/// The revisions of Deployment `name`, oldest first, from the ReplicaSets it owns.
#[instrument(skip_all, fields(namespace, name), err)]
pub async fn history(cluster: &Cluster, namespace: &str, name: &str) -> Result<Vec<RevisionInfo>> {
    let (_, owned) = owned_replica_sets(cluster, namespace, name).await?;
    let mut out: Vec<RevisionInfo> = owned
        .iter()
        .map(|rs| RevisionInfo {
            revision: revision(&rs.metadata),
            replica_set: rs.metadata.name.clone().unwrap_or_default(),
            images: rs
                .spec
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .map(|p| p.containers.iter().filter_map(|c| c.image.clone()).collect())
                .unwrap_or_default(),
            change_cause: rs.metadata.annotations.as_ref().and_then(|a| a.get(labels::CHANGE_CAUSE).cloned()),
        })
        .collect();
    out.sort_by_key(|r| r.revision);
    Ok(out)
}

async fn owned_replica_sets(cluster: &Cluster, namespace: &str, name: &str) -> Result<(Deployment, Vec<ReplicaSet>)> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client().clone(), namespace);
    let what = format!("deployment {namespace}/{name}");
    let deployment = deployments
        .get_opt(name)
        .await
        .map_err(|e| KubeError::api(format!("read {what}"), e))?
        .ok_or_else(|| KubeError::NotFound { what: what.clone() })?;
    let uid = deployment
        .metadata
        .uid
        .clone()
        .ok_or_else(|| KubeError::Incomplete { what: what.clone(), field: "metadata.uid".into() })?;
    let selector = deployment.spec.selector.match_labels.as_ref().map(labels::selector_string).unwrap_or_default();
    let replica_sets: Api<ReplicaSet> = Api::namespaced(cluster.client().clone(), namespace);
    let list = replica_sets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| KubeError::api(format!("list replicasets of {what}"), e))?;
    let owned = list
        .items
        .into_iter()
        .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| o.uid == uid && o.controller == Some(true)))
        .collect();
    Ok((deployment, owned))
}

/// Rolls Deployment `name` back to `to_revision`, or to the revision before the
/// current one, and returns the revision rolled back to.
///
/// As kubectl: the ReplicaSet's pod template (without its `pod-template-hash`
/// label) replaces the Deployment's, with the ReplicaSet's change cause; the write
/// is guarded by `resourceVersion` and retried on 409. The controller then makes
/// it a new revision.
#[instrument(skip_all, fields(namespace, name, to_revision), err)]
pub async fn undo(cluster: &Cluster, namespace: &str, name: &str, to_revision: Option<i64>) -> Result<i64> {
    let what = format!("deployment {namespace}/{name}");
    for _attempt in 0..5 {
        let (mut deployment, owned) = owned_replica_sets(cluster, namespace, name).await?;
        let current = revision(&deployment.metadata);
        let target = match to_revision {
            Some(r) => owned.iter().find(|rs| revision(&rs.metadata) == r),
            None => owned.iter().filter(|rs| revision(&rs.metadata) < current).max_by_key(|rs| revision(&rs.metadata)),
        }
        .ok_or_else(|| KubeError::NotFound {
            what: match to_revision {
                Some(r) => format!("revision {r} of {what}"),
                None => format!("a revision before {current} of {what}"),
            },
        })?;
        let target_revision = revision(&target.metadata);
        let mut template = target.spec.template.clone().ok_or_else(|| KubeError::Incomplete {
            what: format!("replicaset of revision {target_revision}"),
            field: "spec.template".into(),
        })?;
        if let Some(l) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.remove("pod-template-hash");
        }
        let cause = target.metadata.annotations.as_ref().and_then(|a| a.get(labels::CHANGE_CAUSE).cloned());
        deployment.spec.template = template;
        let annotations = deployment.metadata.annotations.get_or_insert_default();
        match cause {
            Some(c) => annotations.insert(labels::CHANGE_CAUSE.to_owned(), c),
            None => annotations.remove(labels::CHANGE_CAUSE),
        };
        let api: Api<Deployment> = Api::namespaced(cluster.client().clone(), namespace);
        match api.replace(name, &PostParams::default(), &deployment).await {
            Ok(_) => return Ok(target_revision),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(KubeError::api(format!("roll back {what}"), e)),
        }
    }
    Err(KubeError::Timeout { what, after: std::time::Duration::ZERO, last: "five conflicting writes in a row".into() })
}
