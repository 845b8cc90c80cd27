use async_trait::async_trait;
use deploy_core::model::{AppId, Percent, Track, TrafficSplit};
use deploy_core::traffic::{
    HeaderMatch, HeaderMatchKind, HeaderMatchKinds, HeaderRoute, RouterCapabilities, RouterError, TrackSet,
    TrafficRouter,
};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use tracing::instrument;

use super::router_error;
use crate::cluster::Cluster;

/// `nginx.ingress.kubernetes.io/canary`.
pub const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
/// `nginx.ingress.kubernetes.io/canary-weight`.
pub const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
/// `nginx.ingress.kubernetes.io/canary-by-header`.
pub const CANARY_BY_HEADER: &str = "nginx.ingress.kubernetes.io/canary-by-header";
/// `nginx.ingress.kubernetes.io/canary-by-header-value`.
pub const CANARY_BY_HEADER_VALUE: &str = "nginx.ingress.kubernetes.io/canary-by-header-value";
/// `nginx.ingress.kubernetes.io/canary-by-header-pattern`.
pub const CANARY_BY_HEADER_PATTERN: &str = "nginx.ingress.kubernetes.io/canary-by-header-pattern";

/// Canary through the NGINX Ingress controller: the main Ingress sends to the
/// stable Service, and a second Ingress `{app}-canary` (same host and path, to the
/// canary Service) carries the canary annotations this router sets: the weight,
/// and one header route (exact value or pattern) to the canary.
///
/// The router changes only its own annotations, with merge patches that name
/// them alone; the Ingress's other annotations, labels and spec are not touched.
/// It routes only the stable and canary tracks, holds one header route (a route
/// for another header is refused, not put in place of the first), and routes a
/// header only to the canary.
#[derive(Debug, Clone)]
pub struct NginxCanaryRouter {
    cluster: Cluster,
}

impl NginxCanaryRouter {
    /// Annotates the Ingress `{app}-canary`.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    async fn ingress(&self, app: &AppId) -> Result<Ingress, RouterError> {
        let name = format!("{}-canary", app.name);
        let api: Api<Ingress> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        api.get(&name).await.map_err(|e| router_error(app, &format!("ingress {name}"), "read", e))
    }

    async fn annotate(&self, app: &AppId, annotations: serde_json::Value) -> Result<(), RouterError> {
        let name = format!("{}-canary", app.name);
        let api: Api<Ingress> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| router_error(app, &format!("ingress {name}"), "annotate", e))
    }
}

#[async_trait]
impl TrafficRouter for NginxCanaryRouter {
    fn capabilities(&self) -> RouterCapabilities {
        let tracks = TrackSet::of([Track::Stable, Track::Canary]);
        RouterCapabilities::weights_only()
            .with_tracks(tracks)
            .with_header_routes()
            .with_header_matches(HeaderMatchKinds::of([HeaderMatchKind::Exact, HeaderMatchKind::Regex]))
            .with_header_route_tracks(TrackSet::of([Track::Canary]))
            .with_max_header_routes(1)
    }

    #[instrument(skip_all, fields(deploy.app = %app, split = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        if split.iter().any(|(t, _)| !matches!(t, Track::Stable | Track::Canary)) {
            return Err(RouterError::Unsupported { capability: format!("route {split} (only stable and canary)") });
        }
        let weight = split.weight(Track::Canary).value();
        self.annotate(app, serde_json::json!({CANARY: "true", CANARY_WEIGHT: weight.to_string()})).await
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        let name = format!("{}-canary", app.name);
        let ingress = self.ingress(app).await?;
        let annotations = ingress.metadata.annotations.unwrap_or_default();
        if annotations.get(CANARY).map(String::as_str) != Some("true") {
            return Ok(TrafficSplit::all(Track::Stable));
        }
        let weight = match annotations.get(CANARY_WEIGHT) {
            None => 0,
            Some(w) => w.parse::<u8>().ok().filter(|w| *w <= 100).ok_or_else(|| {
                RouterError::backend(
                    format!("read the split of ingress {name}"),
                    deploy_core::error::ErrorKind::InvalidInput,
                    format!("canary weight {w:?} is not a percentage"),
                )
            })?,
        };
        let weight = Percent::new(weight).map_err(|e| {
            RouterError::backend(
                format!("read the split of ingress {name}"),
                deploy_core::error::ErrorKind::InvalidInput,
                e,
            )
        })?;
        Ok(TrafficSplit::canary(weight))
    }

    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        if route.track != Track::Canary {
            return Err(RouterError::Unsupported {
                capability: format!("route a header to the {} track", route.track),
            });
        }
        let annotations = match &route.matches {
            HeaderMatch::Exact(v) => serde_json::json!({CANARY: "true", CANARY_BY_HEADER: route.header,
                CANARY_BY_HEADER_VALUE: v, CANARY_BY_HEADER_PATTERN: null}),
            HeaderMatch::Regex(v) => serde_json::json!({CANARY: "true", CANARY_BY_HEADER: route.header,
                CANARY_BY_HEADER_PATTERN: v, CANARY_BY_HEADER_VALUE: null}),
            other => {
                return Err(RouterError::Unsupported {
                    capability: format!("match a header by {} with NGINX canary annotations", other.kind()),
                });
            }
        };
        let existing = self.ingress(app).await?.metadata.annotations.unwrap_or_default();
        if let Some(held) = existing.get(CANARY_BY_HEADER)
            && *held != route.header
        {
            return Err(RouterError::Unsupported {
                capability: format!("hold a second header route ({}) next to the one for {held}", route.header),
            });
        }
        self.annotate(app, annotations).await
    }

    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        let cleared =
            serde_json::json!({CANARY_BY_HEADER: null, CANARY_BY_HEADER_VALUE: null, CANARY_BY_HEADER_PATTERN: null});
        match self.annotate(app, cleared).await {
            // No canary Ingress, no header route: clearing succeeds.
            Err(RouterError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}
