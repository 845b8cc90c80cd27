use async_trait::async_trait;
use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{RouterCapabilities, RouterError, TrafficRouter};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use tracing::instrument;

use super::{router_error, single_track};
use crate::cluster::Cluster;
use crate::labels;

/// Blue-green by switching the Service's selector to one track's pods: every
/// request goes to one track, and the switch is one atomic update.
///
/// The router changes only the selector's track label (`deploy-rs.io/track`),
/// with a merge patch that names it alone: the selector's other labels, the ports
/// and everything else of the Service stay as the user wrote them. It only
/// switches: a split across tracks is refused.
#[derive(Debug, Clone)]
pub struct ServiceSelectorRouter {
    cluster: Cluster,
    service: Option<String>,
}

impl ServiceSelectorRouter {
    /// Switches the Service named after the app.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster, service: None }
    }

    /// Switches the Service `name` instead.
    #[must_use]
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    fn name(&self, app: &AppId) -> String {
        self.service.clone().unwrap_or_else(|| app.name.to_string())
    }
}

#[async_trait]
impl TrafficRouter for ServiceSelectorRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::switch_only()
    }

    #[instrument(skip_all, fields(deploy.app = %app, split = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let track = single_track(split).ok_or_else(|| RouterError::Unsupported {
            capability: format!("split traffic {split} with a Service selector"),
        })?;
        let name = self.name(app);
        let api: Api<Service> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        let patch = serde_json::json!({"spec": {"selector": {labels::TRACK: track.as_str()}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| router_error(app, &format!("service {name}"), "switch", e))
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        let name = self.name(app);
        let api: Api<Service> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        let service = api.get(&name).await.map_err(|e| router_error(app, &format!("service {name}"), "read", e))?;
        let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
        let track = selector.get(labels::TRACK).and_then(|t| t.parse::<Track>().ok()).ok_or_else(|| {
            RouterError::backend(
                format!("read the split of service {name}"),
                deploy_core::error::ErrorKind::InvalidInput,
                "the selector names no single track",
            )
        })?;
        Ok(TrafficSplit::all(track))
    }
}
