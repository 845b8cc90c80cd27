use std::collections::BTreeMap;

use async_trait::async_trait;
use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{RouterCapabilities, RouterError, TrafficRouter};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use tracing::instrument;

use super::{router_error, split_from};
use crate::cluster::Cluster;
use crate::labels;

/// Canary without a mesh: one Service selects every track's pods, and the share of
/// each track is its share of the replicas.
///
/// `set_weights` scales the tracks' Deployments (scale subresource) so that
/// `total` replicas are divided as the split says, at least one for a track with a
/// weight above 0. `weights` reads the Deployments' desired replicas back and
/// reports the effective split, so a ratio the replica count cannot express
/// exactly (10 % of 4) shows as what it really is.
#[derive(Debug, Clone)]
pub struct ReplicaRatioRouter {
    cluster: Cluster,
    total: u32,
    tracks: Vec<Track>,
}

impl ReplicaRatioRouter {
    /// Divides `total` replicas between the stable and canary tracks.
    pub fn new(cluster: Cluster, total: u32) -> Self {
        Self { cluster, total: total.max(1), tracks: vec![Track::Stable, Track::Canary] }
    }

    /// The replicas of each managed track for `split`: every weighted track but the
    /// heaviest gets its rounded share (at least one), the heaviest the rest.
    pub fn replicas_for(&self, split: &TrafficSplit) -> BTreeMap<Track, u32> {
        let mut out: BTreeMap<Track, u32> = self.tracks.iter().map(|t| (*t, 0)).collect();
        let mut weighted: Vec<_> = split.iter().collect();
        weighted.sort_by_key(|(_, w)| *w);
        let Some((heaviest, _)) = weighted.pop() else { return out };
        let mut assigned = 0u32;
        for (track, weight) in weighted {
            let share = (u64::from(self.total) * u64::from(weight.value()) + 50) / 100;
            let n = u32::try_from(share).unwrap_or(self.total).max(1);
            assigned = assigned.saturating_add(n);
            out.insert(track, n);
        }
        out.insert(heaviest, self.total.saturating_sub(assigned).max(1));
        out
    }
}

#[async_trait]
impl TrafficRouter for ReplicaRatioRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::weights_only()
    }

    #[instrument(skip_all, fields(deploy.app = %app, split = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let api: Api<Deployment> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        // Scale the tracks that receive traffic first, then the others to zero.
        let mut plan: Vec<(Track, u32)> = self.replicas_for(split).into_iter().collect();
        plan.sort_by_key(|(track, _)| split.weight(*track).value() == 0);
        for (track, replicas) in plan {
            let name = labels::workload_name(app, track);
            if replicas == 0 && !split.routes_to(track) {
                let patch = serde_json::json!({"spec": {"replicas": 0}});
                match api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(e) if crate::error::is_not_found(&e) => {}
                    Err(e) => return Err(router_error(app, &format!("deployment {name}"), "scale", e)),
                }
                continue;
            }
            let patch = serde_json::json!({"spec": {"replicas": replicas}});
            api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| router_error(app, &format!("deployment {name}"), "scale", e))?;
        }
        Ok(())
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        let api: Api<Deployment> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        let mut counts = Vec::new();
        for track in &self.tracks {
            let name = labels::workload_name(app, *track);
            let replicas = match api.get_opt(&name).await {
                Ok(d) => d.and_then(|d| d.spec.replicas).unwrap_or(0),
                Err(e) => return Err(router_error(app, &format!("deployment {name}"), "read", e)),
            };
            counts.push((*track, i64::from(replicas.max(0))));
        }
        let total: i64 = counts.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Err(RouterError::NotFound { app: app.clone(), what: "replicas of any track".to_owned() });
        }
        let mut weights: Vec<(Track, i64)> = counts.iter().map(|(t, n)| (*t, n * 100 / total)).collect();
        let rest = 100 - weights.iter().map(|(_, w)| w).sum::<i64>();
        if let Some(largest) = weights.iter_mut().max_by_key(|(_, w)| *w) {
            largest.1 += rest;
        }
        split_from(weights, "replica counts")
    }
}
