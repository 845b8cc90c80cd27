use std::collections::BTreeMap;

use async_trait::async_trait;
use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{
    RouterCapabilities, RouterError, TrackSet, TrafficRouter, replicas_for_split, split_of_replicas,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use tracing::instrument;

use super::router_error;
use crate::cluster::Cluster;
use crate::labels;

/// Canary without a mesh: one Service selects every track's pods, and the share of
/// each track is its share of the replicas.
///
/// `set_weights` scales the tracks' Deployments (scale subresource) so that
/// `total` replicas are divided as the split says, at least one for a track with a
/// weight above 0 ([`deploy_core::traffic::replicas_for_split`]). A ratio the
/// replica count cannot express exactly (10 % of 4) is rounded: the router
/// declares it ([`RouterCapabilities::replica_ratio`], so
/// [`TrafficRouter::effective_split`] answers 25 % for 10 % of 4), `weights`
/// reads the Deployments' desired replicas back and reports that effective split,
/// and plan validation refuses a weight that would round to 0 % or 100 %. It
/// routes the stable and canary tracks only.
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

    /// The replicas of each managed track for `split` (0 for a track without traffic).
    pub fn replicas_for(&self, split: &TrafficSplit) -> BTreeMap<Track, u32> {
        let mut out: BTreeMap<Track, u32> = self.tracks.iter().map(|t| (*t, 0)).collect();
        out.extend(replicas_for_split(self.total, split));
        out
    }
}

#[async_trait]
impl TrafficRouter for ReplicaRatioRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::replica_ratio(self.total).with_tracks(TrackSet::of(self.tracks.iter().copied()))
    }

    #[instrument(skip_all, fields(deploy.app = %app, split = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        if !self.capabilities().supports_split(split) {
            return Err(RouterError::Unsupported { capability: format!("route {split} (only stable and canary)") });
        }
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
        let mut counts = BTreeMap::new();
        for track in &self.tracks {
            let name = labels::workload_name(app, *track);
            let replicas = match api.get_opt(&name).await {
                Ok(d) => d.and_then(|d| d.spec.replicas).unwrap_or(0),
                Err(e) => return Err(router_error(app, &format!("deployment {name}"), "read", e)),
            };
            counts.insert(*track, u32::try_from(replicas.max(0)).unwrap_or(u32::MAX));
        }
        split_of_replicas(&counts)
            .ok_or_else(|| RouterError::NotFound { app: app.clone(), what: "replicas of any track".to_owned() })
    }
}
