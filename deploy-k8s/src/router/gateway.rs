use async_trait::async_trait;
use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{
    HeaderMatch, HeaderMatchKind, HeaderMatchKinds, HeaderRoute, Mirror, RouterCapabilities, RouterError, TrafficRouter,
};
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::{Value, json};
use tracing::instrument;

use super::{array_at, malformed, owned_route_name, router_error, split_from, update_untyped, with_methods};
use crate::cluster::Cluster;
use crate::labels;

/// The name prefix of the header rules the Gateway router adds; it removes only
/// rules whose name starts with it.
pub const HEADER_RULE_PREFIX: &str = "deploy-rs-header-";

/// The name of the rule the Gateway router adds to mirror traffic; it removes only
/// this one.
pub const MIRROR_RULE: &str = "deploy-rs-mirror";

/// Canary through a Gateway API HTTPRoute (`gateway.networking.k8s.io/v1`) named
/// after the app, as the user wrote it: each track has its own Service
/// `{app}-{track}`; the weighted rule is the first rule with a backend that is a
/// track Service (or, in a route without one, the first rule without matches), and
/// header rules the router adds (named `deploy-rs-header-<header>`) come right
/// before it.
///
/// The router changes only what it owns: the weights of the track backends of the
/// weighted rule (a new track's backend is a copy of an existing track backend,
/// with its `port`, `kind`, `namespace` and `filters`), its own header rules, and
/// its mirror rule (`deploy-rs-mirror`: a copy of the weighted rule restricted to
/// the mirrored methods, with a `RequestMirror` filter to the track's Service).
/// As Gateway API prefers a rule with a method match over one with more header
/// matches, header rules also get the mirrored methods' matches while a mirror
/// is in place, so a header keeps its track.
/// Every other field (the rule's `matches`, `filters`, `timeouts`, other rules,
/// other backends, `parentRefs`, ...) is read and written back as untyped JSON,
/// unchanged, in a replace guarded by `resourceVersion`.
#[derive(Debug, Clone)]
pub struct GatewayRouter {
    cluster: Cluster,
    port: u16,
}

impl GatewayRouter {
    /// Routes to the track Services on `port` when it adds the first track backend.
    pub fn new(cluster: Cluster, port: u16) -> Self {
        Self { cluster, port }
    }

    fn api(&self, app: &AppId) -> Api<DynamicObject> {
        let resource = ApiResource {
            group: "gateway.networking.k8s.io".to_owned(),
            version: "v1".to_owned(),
            api_version: "gateway.networking.k8s.io/v1".to_owned(),
            kind: "HTTPRoute".to_owned(),
            plural: "httproutes".to_owned(),
        };
        Api::namespaced_with(self.cluster.client().clone(), app.namespace.as_str(), &resource)
    }

    async fn update(
        &self,
        app: &AppId,
        change: impl FnMut(&mut Value) -> Result<(), RouterError>,
    ) -> Result<(), RouterError> {
        let name = app.name.to_string();
        update_untyped(&self.api(app), app, &format!("httproute {name}"), &name, change).await
    }
}

fn is_header_rule(rule: &Value) -> bool {
    rule["name"].as_str().is_some_and(|n| n.starts_with(HEADER_RULE_PREFIX))
}

fn is_mirror_rule(rule: &Value) -> bool {
    rule["name"] == MIRROR_RULE
}

fn is_own_rule(rule: &Value) -> bool {
    is_header_rule(rule) || is_mirror_rule(rule)
}

/// The methods the mirror rule among `rules` is restricted to.
fn mirrored_methods(rules: &[Value]) -> Vec<String> {
    let mut methods = Vec::new();
    for m in rules.iter().filter(|r| is_mirror_rule(r)).flat_map(|r| r["matches"].as_array().into_iter().flatten()) {
        if let Some(name) = m["method"].as_str()
            && !methods.iter().any(|known| known == name)
        {
            methods.push(name.to_owned());
        }
    }
    methods
}

/// `matches` and, for the matches without a method, one copy per mirrored method.
fn with_mirrored_methods(matches: Vec<Value>, methods: &[String]) -> Vec<Value> {
    if methods.is_empty() {
        return matches;
    }
    let open: Vec<Value> = matches.iter().filter(|m| m["method"].is_null()).cloned().collect();
    let mut out = matches;
    out.extend(with_methods(&open, methods, |m| json!(m), |_, _| false));
    out
}

/// The track a backend reference sends to, when it is a track Service of `app`.
fn track_of(app: &AppId, backend: &Value) -> Option<Track> {
    let is_service =
        backend["kind"].as_str().is_none_or(|k| k == "Service") && backend["group"].as_str().is_none_or(str::is_empty);
    let name = backend["name"].as_str()?;
    let track = name.strip_prefix(&format!("{}-", app.name))?.parse::<Track>().ok()?;
    (is_service && labels::workload_name(app, track) == name).then_some(track)
}

/// The index of the weighted rule among `rules`.
fn weighted_rule(app: &AppId, rules: &[Value]) -> Option<usize> {
    let candidates = || rules.iter().enumerate().filter(|(_, r)| !is_own_rule(r));
    candidates()
        .find(|(_, r)| r["backendRefs"].as_array().is_some_and(|b| b.iter().any(|b| track_of(app, b).is_some())))
        .or_else(|| candidates().find(|(_, r)| r["matches"].as_array().is_none_or(Vec::is_empty)))
        .map(|(i, _)| i)
}

/// The HTTPRoute's rules.
fn rules<'a>(body: &'a mut Value, what: &str) -> Result<&'a mut Vec<Value>, RouterError> {
    let spec = body.get_mut("spec").ok_or_else(|| malformed(what, "it has no spec"))?;
    array_at(spec, "rules", what)
}

impl GatewayRouter {
    /// The backends of `split` for a rule with `backends`: each track keeps its
    /// backend (every field but the weight as it was), a new track gets a copy of
    /// the first track backend with its own name, tracks without traffic are
    /// dropped, and backends that are not tracks stay as they are.
    fn weighted(&self, app: &AppId, backends: &[Value], split: &TrafficSplit) -> Vec<Value> {
        let template = backends
            .iter()
            .find(|b| track_of(app, b).is_some())
            .cloned()
            .unwrap_or_else(|| json!({"name": "", "port": self.port}));
        let mut out: Vec<Value> = split
            .iter()
            .map(|(track, weight)| {
                let mut b = backends.iter().find(|b| track_of(app, b) == Some(track)).cloned().unwrap_or_else(|| {
                    let mut b = template.clone();
                    b["name"] = json!(labels::workload_name(app, track));
                    b
                });
                b["weight"] = json!(weight.value());
                b
            })
            .collect();
        out.extend(backends.iter().filter(|b| track_of(app, b).is_none()).cloned());
        out
    }
}

#[async_trait]
impl TrafficRouter for GatewayRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::weights_only()
            .with_header_routes()
            .with_header_matches(HeaderMatchKinds::of([HeaderMatchKind::Exact, HeaderMatchKind::Regex]))
            .with_mirroring()
    }

    #[instrument(skip_all, fields(deploy.app = %app, split = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let what = format!("httproute {}", app.name);
        self.update(app, |body| {
            let rules = rules(body, &what)?;
            let weighted = match weighted_rule(app, rules) {
                Some(i) => i,
                None => {
                    rules.push(json!({"backendRefs": []}));
                    rules.len() - 1
                }
            };
            // The mirror rule carries the same split as the weighted rule for its methods.
            for (i, rule) in rules.iter_mut().enumerate() {
                if i == weighted || is_mirror_rule(rule) {
                    let current = rule["backendRefs"].as_array().cloned().unwrap_or_default();
                    rule["backendRefs"] = Value::Array(self.weighted(app, &current, split));
                }
            }
            Ok(())
        })
        .await
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        let name = app.name.to_string();
        let what = format!("httproute {name}");
        let route = self.api(app).get(&name).await.map_err(|e| router_error(app, &what, "read", e))?;
        let rules = route.data["spec"]["rules"].as_array().cloned().unwrap_or_default();
        let rule = weighted_rule(app, &rules)
            .and_then(|i| rules.get(i))
            .ok_or_else(|| RouterError::NotFound { app: app.clone(), what: format!("weighted rule of {what}") })?;
        let mut weights = Vec::new();
        for backend in rule["backendRefs"].as_array().into_iter().flatten() {
            let track = track_of(app, backend)
                .ok_or_else(|| malformed(&what, format!("backend {} is not a track Service", backend["name"])))?;
            let weight = match &backend["weight"] {
                Value::Null => 1,
                w => w.as_i64().ok_or_else(|| malformed(&what, format!("weight {w} is not a number")))?,
            };
            weights.push((track, weight));
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
        split_from(weights, &what)
    }

    /// Adds the rule `deploy-rs-header-<header>` right before the weighted rule: a
    /// copy of it (so the header's requests keep its filters and timeouts) whose
    /// matches also require the header and whose one backend is the route's track.
    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        let type_ = match &route.matches {
            HeaderMatch::Exact(_) => "Exact",
            HeaderMatch::Regex(_) => "RegularExpression",
            other => {
                return Err(RouterError::Unsupported {
                    capability: format!("match a header by {} in an HTTPRoute", other.kind()),
                });
            }
        };
        let header = json!({"type": type_, "name": route.header, "value": route.matches.value()});
        let own_name = owned_route_name(HEADER_RULE_PREFIX, &route.header);
        let what = format!("httproute {}", app.name);
        self.update(app, |body| {
            let rules = rules(body, &what)?;
            rules.retain(|r| r["name"] != own_name.as_str());
            let at = weighted_rule(app, rules)
                .ok_or_else(|| RouterError::NotFound { app: app.clone(), what: format!("weighted rule of {what}") })?;
            let mut added = rules[at].clone();
            added["name"] = json!(own_name);
            let mut matches = added["matches"].as_array().cloned().unwrap_or_default();
            if matches.is_empty() {
                matches.push(json!({}));
            }
            for m in &mut matches {
                if !m.is_object() || !(m["headers"].is_null() || m["headers"].is_array()) {
                    return Err(malformed(&what, "a match of the weighted rule is not an object with headers"));
                }
                let headers = array_at(m, "headers", &what)?;
                headers.retain(|h| h["name"] != route.header.as_str());
                headers.push(header.clone());
            }
            added["matches"] = Value::Array(with_mirrored_methods(matches, &mirrored_methods(rules)));
            let backends = added["backendRefs"].as_array().cloned().unwrap_or_default();
            let mut only = self.weighted(app, &backends, &TrafficSplit::all(route.track));
            only.truncate(1);
            added["backendRefs"] = Value::Array(only);
            let at = rules.iter().position(is_mirror_rule).map_or(at, |m| m.min(at));
            rules.insert(at, added);
            Ok(())
        })
        .await
    }

    /// Adds (or replaces) the rule `deploy-rs-mirror` right before the weighted
    /// rule: a copy of it whose matches also require one of the mirrored methods,
    /// with the same backends, and a `RequestMirror` filter (with `percent`) to the
    /// track's Service.
    async fn set_mirror(&self, app: &AppId, track: Track, mirror: &Mirror) -> Result<(), RouterError> {
        let what = format!("httproute {}", app.name);
        self.update(app, |body| {
            let rules = rules(body, &what)?;
            rules.retain(|r| !is_mirror_rule(r));
            let at = weighted_rule(app, rules)
                .ok_or_else(|| RouterError::NotFound { app: app.clone(), what: format!("weighted rule of {what}") })?;
            let mut added = rules[at].clone();
            added["name"] = json!(MIRROR_RULE);
            let own = added["matches"].as_array().cloned().unwrap_or_default();
            let matches = with_methods(&own, &mirror.methods, |m| json!(m), |own, m| own == m);
            if matches.is_empty() {
                return Err(RouterError::Unsupported {
                    capability: format!("mirror {mirror}: the weighted rule of {what} takes none of these methods"),
                });
            }
            added["matches"] = Value::Array(matches);
            let backends = added["backendRefs"].as_array().cloned().unwrap_or_default();
            let target = self.weighted(app, &backends, &TrafficSplit::all(track)).swap_remove(0);
            let mut backend = json!({"name": target["name"]});
            for key in ["group", "kind", "namespace", "port"] {
                if let Some(v) = target.get(key) {
                    backend[key] = v.clone();
                }
            }
            let filter = json!({"type": "RequestMirror",
                "requestMirror": {"backendRef": backend, "percent": mirror.percent.value()}});
            array_at(&mut added, "filters", &what)?.push(filter);
            rules.insert(at, added);
            // Header rules keep their track for the mirrored methods too.
            for rule in rules.iter_mut().filter(|r| is_header_rule(r)) {
                let matches = rule["matches"].as_array().cloned().unwrap_or_default();
                rule["matches"] = Value::Array(with_mirrored_methods(matches, &mirror.methods));
            }
            Ok(())
        })
        .await
    }

    async fn clear_mirror(&self, app: &AppId) -> Result<(), RouterError> {
        let what = format!("httproute {}", app.name);
        let cleared = self
            .update(app, |body| {
                rules(body, &what)?.retain(|r| !is_mirror_rule(r));
                Ok(())
            })
            .await;
        match cleared {
            Err(RouterError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        let what = format!("httproute {}", app.name);
        let cleared = self
            .update(app, |body| {
                rules(body, &what)?.retain(|r| !is_header_rule(r));
                Ok(())
            })
            .await;
        match cleared {
            // No HTTPRoute, no header rule: clearing succeeds.
            Err(RouterError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}
