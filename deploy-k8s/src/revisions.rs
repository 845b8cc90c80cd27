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
    let mut attempt = 0;
    loop {
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
            Err(e) if is_conflict(&e) && attempt < UNDO_CONFLICT_RETRIES => attempt += 1,
            Err(e) => return Err(KubeError::api(format!("roll back {what}"), e)),
        }
    }
}

/// How often `undo` re-reads and retries after a 409.
const UNDO_CONFLICT_RETRIES: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::mock::*;
    use deploy_core::error::Classify;
    use serde_json::{Value, json};

    const UID: &str = "0b4a3c1e-5f6d-4a7b-8c9d-0e1f2a3b4c5d";

    fn replica_set(revision: i64, image: &str, cause: Option<&str>) -> Value {
        let mut annotations = json!({"deployment.kubernetes.io/revision": revision.to_string()});
        if let Some(c) = cause {
            annotations["kubernetes.io/change-cause"] = json!(c);
        }
        json!({"metadata": {"name": format!("web-canary-{revision}abc"), "namespace": "shop", "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-canary", "uid": UID, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "canary"}},
                "template": {"metadata": {"labels": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "canary",
                    "pod-template-hash": format!("{revision}abc")}},
                    "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn script() -> Vec<Expect> {
        let mut orphan = replica_set(9, "evil:1", None);
        orphan["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
        vec![
            Expect::get("/apis/apps/v1/namespaces/shop/deployments/web-canary").ok(
                crate::rollout_status::tests::deployment_json(
                    "web-canary",
                    4,
                    4,
                    3,
                    (3, 3, 3, 3),
                    "NewReplicaSetAvailable",
                ),
            ),
            Expect::get("/apis/apps/v1/namespaces/shop/replicasets")
                .query("labelSelector", "app.kubernetes.io/name=web,deploy-rs.io/track=canary")
                .ok(list(
                    "ReplicaSetList",
                    "apps/v1",
                    "60",
                    vec![
                        replica_set(3, "registry.example.com/shop/web:1.4.2", Some("ship 1.4.2")),
                        replica_set(1, "registry.example.com/shop/web:1.4.0", Some("ship 1.4.0")),
                        replica_set(2, "registry.example.com/shop/web:1.4.1", None),
                        orphan,
                    ],
                )),
        ]
    }

    #[tokio::test]
    async fn history_lists_owned_revisions_with_images_and_causes() {
        let (client, mock) = start(script());
        let cluster = Cluster::new(client);
        let revisions = within(history(&cluster, "shop", "web-canary")).await.unwrap();
        let summary: Vec<_> =
            revisions.iter().map(|r| (r.revision, r.images[0].as_str(), r.change_cause.as_deref())).collect();
        assert_eq!(
            summary,
            vec![
                (1, "registry.example.com/shop/web:1.4.0", Some("ship 1.4.0")),
                (2, "registry.example.com/shop/web:1.4.1", None),
                (3, "registry.example.com/shop/web:1.4.2", Some("ship 1.4.2")),
            ]
        );
        drop(cluster);
        mock.finish().await;
    }

    #[tokio::test]
    async fn undo_copies_the_previous_template_back_and_retries_a_conflict() {
        let check = |b: &Value| {
            let t = &b["spec"]["template"];
            assert_eq!(t["spec"]["containers"][0]["image"], "registry.example.com/shop/web:1.4.1");
            assert!(t["metadata"]["labels"]["pod-template-hash"].is_null(), "hash label dropped");
            assert!(b["metadata"]["annotations"]["kubernetes.io/change-cause"].is_null(), "revision 2 had no cause");
            assert_eq!(b["metadata"]["resourceVersion"], "104");
        };
        let mut s = script();
        s.push(Expect::put("/apis/apps/v1/namespaces/shop/deployments/web-canary").body(check).status(
            409,
            "Conflict",
            "the object has been modified",
        ));
        s.extend(script());
        s.push(Expect::put("/apis/apps/v1/namespaces/shop/deployments/web-canary").body(check).ok(
            crate::rollout_status::tests::deployment_json(
                "web-canary",
                5,
                4,
                3,
                (3, 3, 3, 3),
                "NewReplicaSetAvailable",
            ),
        ));
        s.extend(script());
        let (client, mock) = start(s);
        let cluster = Cluster::new(client);
        assert_eq!(within(undo(&cluster, "shop", "web-canary", None)).await.unwrap(), 2);
        let err = within(undo(&cluster, "shop", "web-canary", Some(7))).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        drop(cluster);
        mock.finish().await;
    }
}
