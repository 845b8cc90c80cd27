use std::sync::Arc;

use async_trait::async_trait;
use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{HeaderRoute, Mirror, RouterCapabilities, RouterError, TrafficRouter};
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::instrument;

use super::{array_at, malformed, router_error, split_from, update_untyped, with_methods};
use crate::cluster::Cluster;
use crate::manifest::istio::{HEADER_ROUTE_PREFIX, MIRROR_ROUTE, PRIMARY_ROUTE, string_match};

/// The Istio networking API group.
const GROUP: &str = "networking.istio.io";
/// The versions of VirtualService the router speaks, most preferred first.
const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// Canary through an Istio VirtualService the user wrote: the weighted route named
/// `primary` holds one destination per track (subset of the track's name, from a
/// DestinationRule), and header routes the router adds (named
/// `deploy-rs-header-<header>`) come right before it.
///
/// The router changes only what it owns: the destinations of `primary` (their
/// weights, one per track), its own header routes, and its mirror route
/// (`deploy-rs-mirror`: a copy of `primary` restricted to the mirrored methods,
/// with Istio's `mirror` and `mirrorPercentage`, between the header routes and
/// `primary`). Every other field of the
/// VirtualService (`tls`, `tcp`, `exportTo`, other routes, and `primary`'s
/// `match`, `rewrite`, `fault`, `corsPolicy`, `mirror`, `retries`, ...) is read and
/// written back as untyped JSON, unchanged, in a replace guarded by
/// `resourceVersion`.
///
/// The API version (`networking.istio.io/v1` or `v1beta1`) is discovered from the
/// API server once, or set with [`IstioRouter::api_version`].
#[derive(Debug, Clone)]
pub struct IstioRouter {
    cluster: Cluster,
    host: Option<String>,
    version: Arc<OnceCell<String>>,
}

impl IstioRouter {
    /// Routes the VirtualService named after the app, whose host is the app's name.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster, host: None, version: Arc::new(OnceCell::new()) }
    }

    /// Uses `host` as the destination host of destinations the router adds.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Uses `networking.istio.io/{version}` (`v1`, `v1beta1`) instead of asking the
    /// API server which versions it serves.
    #[must_use]
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.version = Arc::new(OnceCell::new_with(Some(version.into())));
        self
    }

    /// The served version of VirtualService: `v1` when served, else `v1beta1`.
    async fn version(&self, app: &AppId) -> Result<&str, RouterError> {
        let version = self
            .version
            .get_or_try_init(|| async {
                let groups = self
                    .cluster
                    .client()
                    .list_api_groups()
                    .await
                    .map_err(|e| router_error(app, "API groups", "discover", e))?;
                let group = groups.groups.into_iter().find(|g| g.name == GROUP).ok_or_else(|| {
                    RouterError::NotFound { app: app.clone(), what: format!("API group {GROUP} (is Istio installed?)") }
                })?;
                let served: Vec<&str> = group.versions.iter().map(|v| v.version.as_str()).collect();
                VERSIONS.iter().find(|v| served.contains(v)).map(|v| (*v).to_owned()).ok_or_else(|| {
                    RouterError::Unsupported {
                        capability: format!(
                            "route with {GROUP} {} (VirtualService {} needed)",
                            served.join(", "),
                            VERSIONS.join(" or ")
                        ),
                    }
                })
            })
            .await?;
        Ok(version.as_str())
    }

    async fn api(&self, app: &AppId) -> Result<Api<DynamicObject>, RouterError> {
        let version = self.version(app).await?;
        let resource = ApiResource {
            group: GROUP.to_owned(),
            version: version.to_owned(),
            api_version: format!("{GROUP}/{version}"),
            kind: "VirtualService".to_owned(),
            plural: "virtualservices".to_owned(),
        };
        Ok(Api::namespaced_with(self.cluster.client().clone(), app.namespace.as_str(), &resource))
    }

    fn host_of(&self, app: &AppId) -> String {
        self.host.clone().unwrap_or_else(|| app.name.to_string())
    }

    async fn update(
        &self,
        app: &AppId,
        change: impl FnMut(&mut Value) -> Result<(), RouterError>,
    ) -> Result<(), RouterError> {
        let name = app.name.to_string();
        let api = self.api(app).await?;
        update_untyped(&api, app, &format!("virtualservice {name}"), &name, change).await
    }
}

fn is_primary(route: &Value) -> bool {
    route["name"] == PRIMARY_ROUTE
}

fn is_mirror(route: &Value) -> bool {
    route["name"] == MIRROR_ROUTE
}

/// Where the router's own routes go: before its mirror route, else before `primary`.
fn own_route_position(routes: &[Value]) -> Option<usize> {
    routes.iter().position(is_mirror).or_else(|| routes.iter().position(is_primary))
}

/// Istio's destination for `track`, from `primary`'s first track destination
/// (its host and port).
fn track_destination(primary: &Value, track: Track, host: &str) -> Value {
    let mut destination = primary["route"]
        .as_array()
        .and_then(|r| r.first())
        .map(|d| d["destination"].clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"host": host}));
    destination["subset"] = json!(track.as_str());
    destination
}

fn is_own_header_route(route: &Value) -> bool {
    route["name"].as_str().is_some_and(|n| n.starts_with(HEADER_ROUTE_PREFIX))
}

/// The HTTP routes of a VirtualService's body.
fn http_routes<'a>(body: &'a mut Value, what: &str) -> Result<&'a mut Vec<Value>, RouterError> {
    let spec = body.get_mut("spec").ok_or_else(|| malformed(what, "it has no spec"))?;
    array_at(spec, "http", what)
}

/// The destinations of `split` for the route `destinations`: each track keeps its
/// destination (every field but the weight as it was), a new track gets a copy of
/// the first track destination with its own subset, and tracks without traffic are
/// dropped; destinations that are not tracks stay as they are.
fn weighted(destinations: &[Value], split: &TrafficSplit, host: &str) -> Vec<Value> {
    let track_of = |d: &Value| d["destination"]["subset"].as_str().and_then(|s| s.parse::<Track>().ok());
    let template = destinations
        .iter()
        .find(|d| track_of(d).is_some())
        .cloned()
        .unwrap_or_else(|| json!({"destination": {"host": host}}));
    let mut out: Vec<Value> = split
        .iter()
        .map(|(track, weight)| {
            let mut d = destinations.iter().find(|d| track_of(d) == Some(track)).cloned().unwrap_or_else(|| {
                let mut d = template.clone();
                d["destination"]["subset"] = json!(track.as_str());
                d
            });
            d["weight"] = json!(weight.value());
            d
        })
        .collect();
    out.extend(destinations.iter().filter(|d| track_of(d).is_none()).cloned());
    out
}

#[async_trait]
impl TrafficRouter for IstioRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::full()
    }

    #[instrument(skip_all, fields(deploy.app = %app, split = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let host = self.host_of(app);
        let what = format!("virtualservice {}", app.name);
        self.update(app, |body| {
            let routes = http_routes(body, &what)?;
            if !routes.iter().any(is_primary) {
                routes.push(json!({"name": PRIMARY_ROUTE, "route": []}));
            }
            // The mirror route carries the same split as primary for its methods.
            for route in routes.iter_mut().filter(|r| is_primary(r) || is_mirror(r)) {
                let current = route["route"].as_array().cloned().unwrap_or_default();
                route["route"] = Value::Array(weighted(&current, split, &host));
            }
            Ok(())
        })
        .await
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        let name = app.name.to_string();
        let what = format!("virtualservice {name}");
        let vs = self.api(app).await?.get(&name).await.map_err(|e| router_error(app, &what, "read", e))?;
        let primary =
            vs.data["spec"]["http"].as_array().and_then(|r| r.iter().find(|r| is_primary(r))).ok_or_else(|| {
                RouterError::NotFound { app: app.clone(), what: format!("route {PRIMARY_ROUTE} of {what}") }
            })?;
        let destinations = primary["route"].as_array().cloned().unwrap_or_default();
        let single = destinations.len() == 1;
        let mut weights = Vec::new();
        for dest in &destinations {
            let subset = &dest["destination"]["subset"];
            let track = subset
                .as_str()
                .and_then(|s| s.parse::<Track>().ok())
                .ok_or_else(|| malformed(&what, format!("destination subset {subset} is not a track")))?;
            let weight = match &dest["weight"] {
                Value::Null => {
                    if single {
                        100
                    } else {
                        0
                    }
                }
                w => w.as_i64().ok_or_else(|| malformed(&what, format!("weight {w} is not a number")))?,
            };
            weights.push((track, weight));
        }
        split_from(weights, &what)
    }

    /// Adds the route `deploy-rs-header-<header>` right before `primary`: a copy of
    /// `primary` (so the header's requests keep its rewrites, retries and
    /// timeouts) whose matches also require the header and whose one destination
    /// is the route's track.
    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        let host = self.host_of(app);
        let what = format!("virtualservice {}", app.name);
        let header_route = crate::manifest::istio::header_http_route(&host, route);
        let own_name = header_route.name.clone().unwrap_or_default();
        let header_match = serde_json::to_value(string_match(&route.matches))
            .map_err(|e| RouterError::backend("encode a header match", deploy_core::error::ErrorKind::Other, e))?;
        self.update(app, |body| {
            let routes = http_routes(body, &what)?;
            routes.retain(|r| r["name"] != own_name.as_str());
            let primary = routes.iter().position(is_primary).ok_or_else(|| RouterError::NotFound {
                app: app.clone(),
                what: format!("route {PRIMARY_ROUTE} of {what}"),
            })?;
            let mut added = routes[primary].clone();
            let at = own_route_position(routes).unwrap_or(primary);
            added["name"] = json!(own_name);
            let mut matches = added["match"].as_array().cloned().unwrap_or_default();
            if matches.is_empty() {
                matches.push(json!({}));
            }
            for m in &mut matches {
                if !m.is_object() || !(m["headers"].is_null() || m["headers"].is_object()) {
                    return Err(malformed(&what, "a match of the primary route is not an object with headers"));
                }
                m["headers"][route.header.as_str()] = header_match.clone();
            }
            added["match"] = Value::Array(matches);
            let template =
                added["route"].as_array().and_then(|r| r.first()).filter(|d| d["destination"].is_object()).cloned();
            let mut destination = template.unwrap_or_else(|| json!({"destination": {"host": host}}));
            destination["destination"]["subset"] = json!(route.track.as_str());
            if let Some(d) = destination.as_object_mut() {
                d.remove("weight");
            }
            added["route"] = json!([destination]);
            routes.insert(at, added);
            Ok(())
        })
        .await
    }

    /// Adds (or replaces) the route `deploy-rs-mirror` right before `primary`: a
    /// copy of `primary` whose matches also require one of the mirrored methods,
    /// with the same split, and Istio's `mirror` to the track's subset with
    /// `mirrorPercentage`. A `primary` that already has a `mirror` of the user's is
    /// refused ([`RouterError::Unsupported`]: Istio takes one `mirror` per route);
    /// with a `mirrors` list, the track is added to it.
    async fn set_mirror(&self, app: &AppId, track: Track, mirror: &Mirror) -> Result<(), RouterError> {
        let host = self.host_of(app);
        let what = format!("virtualservice {}", app.name);
        let percentage = json!({"value": f64::from(mirror.percent.value())});
        self.update(app, |body| {
            let routes = http_routes(body, &what)?;
            routes.retain(|r| !is_mirror(r));
            let at = routes.iter().position(is_primary).ok_or_else(|| RouterError::NotFound {
                app: app.clone(),
                what: format!("route {PRIMARY_ROUTE} of {what}"),
            })?;
            let mut added = routes[at].clone();
            if let Some(theirs) = added.get("mirror") {
                return Err(RouterError::Unsupported {
                    capability: format!(
                        "mirror to {track}: route {PRIMARY_ROUTE} of {what} already mirrors to {theirs}, and Istio takes one mirror per route"
                    ),
                });
            }
            added["name"] = json!(MIRROR_ROUTE);
            let own = added["match"].as_array().cloned().unwrap_or_default();
            let matches = with_methods(&own, &mirror.methods, |m| json!({"exact": m}), |own, m| own["exact"] == m);
            if matches.is_empty() {
                return Err(RouterError::Unsupported {
                    capability: format!("mirror {mirror}: route {PRIMARY_ROUTE} of {what} takes none of these methods"),
                });
            }
            added["match"] = Value::Array(matches);
            let destination = track_destination(&added, track, &host);
            match added.get_mut("mirrors").and_then(Value::as_array_mut) {
                Some(list) => list.push(json!({"destination": destination, "percentage": percentage})),
                None => {
                    added["mirror"] = destination;
                    added["mirrorPercentage"] = percentage.clone();
                }
            }
            routes.insert(at, added);
            Ok(())
        })
        .await
    }

    async fn clear_mirror(&self, app: &AppId) -> Result<(), RouterError> {
        let what = format!("virtualservice {}", app.name);
        let cleared = self
            .update(app, |body| {
                http_routes(body, &what)?.retain(|r| !is_mirror(r));
                Ok(())
            })
            .await;
        match cleared {
            Err(RouterError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        let what = format!("virtualservice {}", app.name);
        let cleared = self
            .update(app, |body| {
                http_routes(body, &what)?.retain(|r| !is_own_header_route(r));
                Ok(())
            })
            .await;
        match cleared {
            // No VirtualService, no header route: clearing succeeds.
            Err(RouterError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}
