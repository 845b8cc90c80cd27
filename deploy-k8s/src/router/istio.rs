use async_trait::async_trait;
use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{HeaderRoute, RouterCapabilities, RouterError, TrafficRouter};
use kube::api::Api;
use tracing::instrument;

use super::{CONFLICT_RETRIES, router_error, split_from, update_object};
use crate::cluster::Cluster;
use crate::manifest::istio::{PRIMARY_ROUTE, VirtualService, header_http_route, weighted_destinations};

/// Canary through an Istio VirtualService: the weighted route named `primary`
/// holds one destination per track (subset of the track's name, from a
/// DestinationRule), and header routes come before it.
///
/// Updates are read-modify-write guarded by `resourceVersion`; other routes of
/// the VirtualService are kept.
#[derive(Debug, Clone)]
pub struct IstioRouter {
    cluster: Cluster,
    host: Option<String>,
}

impl IstioRouter {
    /// Routes the VirtualService named after the app, whose host is the app's name.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster, host: None }
    }

    /// Uses `host` as the destination host.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    fn api(&self, app: &AppId) -> Api<VirtualService> {
        Api::namespaced(self.cluster.client().clone(), app.namespace.as_str())
    }

    fn host_of(&self, app: &AppId) -> String {
        self.host.clone().unwrap_or_else(|| app.name.to_string())
    }

    async fn update(&self, app: &AppId, change: impl FnMut(&mut VirtualService)) -> Result<(), RouterError> {
        let name = app.name.to_string();
        update_object(&self.api(app), &name, CONFLICT_RETRIES, change)
            .await
            .map(drop)
            .map_err(|e| router_error(app, &format!("virtualservice {name}"), "update", e))
    }
}

#[async_trait]
impl TrafficRouter for IstioRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::weights_only().with_header_routes()
    }

    #[instrument(skip_all, fields(deploy.app = %app, split = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let host = self.host_of(app);
        self.update(app, |vs| {
            let route = weighted_destinations(&host, split);
            match vs.spec.http.iter_mut().find(|r| r.name.as_deref() == Some(PRIMARY_ROUTE)) {
                Some(primary) => primary.route = route,
                None => vs.spec.http.push(crate::manifest::istio::HttpRoute {
                    name: Some(PRIMARY_ROUTE.to_owned()),
                    route,
                    ..Default::default()
                }),
            }
        })
        .await
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        let name = app.name.to_string();
        let vs = self
            .api(app)
            .get(&name)
            .await
            .map_err(|e| router_error(app, &format!("virtualservice {name}"), "read", e))?;
        let primary = vs.spec.http.iter().find(|r| r.name.as_deref() == Some(PRIMARY_ROUTE)).ok_or_else(|| {
            RouterError::NotFound { app: app.clone(), what: format!("route {PRIMARY_ROUTE} of virtualservice {name}") }
        })?;
        let single = primary.route.len() == 1;
        let mut weights = Vec::new();
        for dest in &primary.route {
            let track = dest.destination.subset.as_deref().and_then(|s| s.parse::<Track>().ok()).ok_or_else(|| {
                RouterError::backend(
                    format!("read the split of virtualservice {name}"),
                    deploy_core::error::ErrorKind::InvalidInput,
                    format!("destination subset {:?} is not a track", dest.destination.subset),
                )
            })?;
            weights.push((track, i64::from(dest.weight.unwrap_or(if single { 100 } else { 0 }))));
        }
        split_from(weights, &format!("virtualservice {name}"))
    }

    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        let host = self.host_of(app);
        let new_route = header_http_route(&host, route);
        self.update(app, |vs| {
            vs.spec.http.retain(|r| r.name != new_route.name);
            vs.spec.http.insert(0, new_route.clone());
        })
        .await
    }

    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        self.update(app, |vs| vs.spec.http.retain(|r| !r.name.as_deref().is_some_and(|n| n.starts_with("header-"))))
            .await
    }
}
