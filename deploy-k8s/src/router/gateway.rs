use async_trait::async_trait;
use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{HeaderMatch, HeaderRoute, RouterCapabilities, RouterError, TrafficRouter};
use kube::api::Api;
use tracing::instrument;

use super::{CONFLICT_RETRIES, router_error, split_from, update_object};
use crate::cluster::Cluster;
use crate::labels;
use crate::manifest::gateway::{HTTPRoute, HttpBackendRef, HttpHeaderMatch, HttpRouteMatch, HttpRouteRule};

/// Canary through a Gateway API HTTPRoute named after the app: each track has its
/// own Service `{app}-{track}`; the rule without matches carries the weighted
/// backends, and header rules (matches on one header) send to one track.
#[derive(Debug, Clone)]
pub struct GatewayRouter {
    cluster: Cluster,
    port: u16,
}

impl GatewayRouter {
    /// Routes to the track Services on `port`.
    pub fn new(cluster: Cluster, port: u16) -> Self {
        Self { cluster, port }
    }

    fn api(&self, app: &AppId) -> Api<HTTPRoute> {
        Api::namespaced(self.cluster.client().clone(), app.namespace.as_str())
    }

    fn backend(&self, app: &AppId, track: Track, weight: i32) -> HttpBackendRef {
        HttpBackendRef { name: labels::workload_name(app, track), port: Some(self.port), weight: Some(weight) }
    }

    async fn update(&self, app: &AppId, change: impl FnMut(&mut HTTPRoute)) -> Result<(), RouterError> {
        let name = app.name.to_string();
        update_object(&self.api(app), &name, CONFLICT_RETRIES, change)
            .await
            .map(drop)
            .map_err(|e| router_error(app, &format!("httproute {name}"), "update", e))
    }
}

fn is_header_rule(rule: &HttpRouteRule) -> bool {
    rule.matches.iter().any(|m| !m.headers.is_empty())
}

#[async_trait]
impl TrafficRouter for GatewayRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::weights_only().with_header_routes()
    }

    #[instrument(skip_all, fields(deploy.app = %app, split = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let backends: Vec<_> = split.iter().map(|(t, w)| self.backend(app, t, i32::from(w.value()))).collect();
        self.update(app, |route| match route.spec.rules.iter_mut().find(|r| !is_header_rule(r)) {
            Some(rule) => rule.backend_refs = backends.clone(),
            None => route.spec.rules.push(HttpRouteRule { backend_refs: backends.clone(), ..Default::default() }),
        })
        .await
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        let name = app.name.to_string();
        let route =
            self.api(app).get(&name).await.map_err(|e| router_error(app, &format!("httproute {name}"), "read", e))?;
        let rule = route.spec.rules.iter().find(|r| !is_header_rule(r)).ok_or_else(|| RouterError::NotFound {
            app: app.clone(),
            what: format!("weighted rule of httproute {name}"),
        })?;
        let prefix = format!("{}-", app.name);
        let mut weights = Vec::new();
        for backend in &rule.backend_refs {
            let track = backend.name.strip_prefix(&prefix).and_then(|t| t.parse::<Track>().ok()).ok_or_else(|| {
                RouterError::backend(
                    format!("read the split of httproute {name}"),
                    deploy_core::error::ErrorKind::InvalidInput,
                    format!("backend {} is not a track Service", backend.name),
                )
            })?;
            weights.push((track, i64::from(backend.weight.unwrap_or(1))));
        }
        // Weights are relative: normalise to percentages.
        let total: i64 = weights.iter().map(|(_, w)| w).sum();
        if total > 0 && total != 100 {
            let mut scaled: Vec<_> = weights.iter().map(|(t, w)| (*t, w * 100 / total)).collect();
            let rest = 100 - scaled.iter().map(|(_, w)| w).sum::<i64>();
            if let Some(largest) = scaled.iter_mut().max_by_key(|(_, w)| *w) {
                largest.1 += rest;
            }
            weights = scaled;
        }
        split_from(weights, &format!("httproute {name}"))
    }

    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        let (type_, value) = match &route.matches {
            HeaderMatch::Exact(v) => ("Exact", v.clone()),
            HeaderMatch::Regex(v) => ("RegularExpression", v.clone()),
            _ => return Err(RouterError::Unsupported { capability: "match a header by prefix".to_owned() }),
        };
        let rule = HttpRouteRule {
            name: None,
            matches: vec![HttpRouteMatch {
                path: None,
                headers: vec![HttpHeaderMatch { type_: Some(type_.to_owned()), name: route.header.clone(), value }],
            }],
            backend_refs: vec![self.backend(app, route.track, 1)],
        };
        let header = route.header.clone();
        self.update(app, |r| {
            r.spec.rules.retain(|rule| !rule.matches.iter().any(|m| m.headers.iter().any(|h| h.name == header)));
            r.spec.rules.insert(0, rule.clone());
        })
        .await
    }

    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        self.update(app, |r| r.spec.rules.retain(|rule| !is_header_rule(rule))).await
    }
}
