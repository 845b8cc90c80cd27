//! Istio's networking and security kinds, typed from Istio's API reference
//! (`networking.istio.io/v1`, `security.istio.io/v1`), and builders for them.
//!
//! Only the fields deploy-rs sets or reads are modelled; unknown fields of objects
//! read from a cluster are ignored on deserialisation.

use deploy_core::model::Namespace as ModelNamespace;
use std::collections::BTreeMap;
use std::time::Duration;

use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{HeaderMatch, HeaderRoute};
use serde::{Deserialize, Serialize};

use crate::labels;
use crate::manifest::custom::custom_kind;

custom_kind!(
    /// `networking.istio.io/v1` VirtualService: routing rules for a host.
    VirtualService, VirtualServiceSpec, "networking.istio.io", "v1", "virtualservices"
);
custom_kind!(
    /// `networking.istio.io/v1` DestinationRule: subsets and traffic policy of a host.
    DestinationRule, DestinationRuleSpec, "networking.istio.io", "v1", "destinationrules"
);
custom_kind!(
    /// `security.istio.io/v1` PeerAuthentication: the mutual TLS mode.
    PeerAuthentication, PeerAuthenticationSpec, "security.istio.io", "v1", "peerauthentications"
);
custom_kind!(
    /// `security.istio.io/v1` AuthorizationPolicy: who may call what.
    AuthorizationPolicy, AuthorizationPolicySpec, "security.istio.io", "v1", "authorizationpolicies"
);

/// VirtualService `spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VirtualServiceSpec {
    /// The hosts the rules apply to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The gateways (and `mesh`) the rules apply to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// HTTP routes, first match wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
}

/// One HTTP route of a VirtualService.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpRoute {
    /// The route's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions, any of which selects the route; none matches everything.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// The whole request's timeout, as a duration string (`10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
}

/// A match condition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpMatchRequest {
    /// Header conditions, all of which must hold; names lower case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// A URI condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
}

/// Istio's `StringMatch`: exactly one of the three is set (a `oneof` in Istio's
/// protobuf, hence a struct of options on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StringMatch {
    /// Equal to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// RE2 regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    /// Equal to `value`.
    pub fn exact(value: impl Into<String>) -> Self {
        Self { exact: Some(value.into()), ..Self::default() }
    }

    /// Starts with `value`.
    pub fn prefix(value: impl Into<String>) -> Self {
        Self { prefix: Some(value.into()), ..Self::default() }
    }

    /// Matches the RE2 expression `value`.
    pub fn regex(value: impl Into<String>) -> Self {
        Self { regex: Some(value.into()), ..Self::default() }
    }
}

/// A weighted destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpRouteDestination {
    /// Where.
    pub destination: Destination,
    /// Percentage of the route's traffic; Istio treats a missing weight as 100 when
    /// there is one destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// A host and subset.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Destination {
    /// The Service host.
    pub host: String,
    /// The DestinationRule subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// A port by number.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PortSelector {
    /// The port number.
    pub number: u32,
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpRetry {
    /// Retries allowed.
    pub attempts: i32,
    /// Timeout per attempt (`2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Envoy retry conditions (`5xx,reset,connect-failure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
}

/// DestinationRule `spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DestinationRuleSpec {
    /// The Service host.
    pub host: String,
    /// Policy for every subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
}

/// A named group of pods.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Subset {
    /// The subset's name.
    pub name: String,
    /// The pods' labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Load balancing, connection pool and outlier detection.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TrafficPolicy {
    /// The load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

/// `ROUND_ROBIN`, `LEAST_REQUEST`, `RANDOM` or `PASSTHROUGH`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoadBalancerSettings {
    /// The algorithm.
    pub simple: String,
}

/// Connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConnectionPoolSettings {
    /// TCP limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// TCP connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TcpSettings {
    /// Maximum connections per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i32>,
    /// Connect timeout (`3s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
}

/// HTTP connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpSettings {
    /// Maximum queued requests (HTTP/1.1).
    #[serde(default, rename = "http1MaxPendingRequests", skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<i32>,
    /// Maximum concurrent requests (HTTP/2).
    #[serde(default, rename = "http2MaxRequests", skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<i32>,
    /// Requests per connection; 1 disables keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<i32>,
}

/// Ejection of hosts that keep failing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OutlierDetection {
    /// Consecutive 5xx answers before ejection.
    #[serde(default, rename = "consecutive5xxErrors", skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx_errors: Option<u32>,
    /// How often hosts are analysed (`10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Minimum ejection time (`30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Most hosts that may be ejected, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i32>,
}

/// PeerAuthentication `spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PeerAuthenticationSpec {
    /// The workloads; none means the whole namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// The mutual TLS mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
}

/// Pods by label.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WorkloadSelector {
    /// The labels.
    pub match_labels: BTreeMap<String, String>,
}

/// `STRICT`, `PERMISSIVE` or `DISABLE`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MutualTls {
    /// The mode.
    pub mode: String,
}

/// AuthorizationPolicy `spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AuthorizationPolicySpec {
    /// The workloads; none means the whole namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// `ALLOW` or `DENY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Rules, any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRule>,
}

/// One rule: sources and operations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthorizationRule {
    /// Who calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    /// What they call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
}

/// A source clause.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuleFrom {
    /// The source.
    pub source: Source,
}

/// Who calls: SPIFFE principals or namespaces.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Source {
    /// Principals such as `cluster.local/ns/shop/sa/frontend`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// An operation clause.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuleTo {
    /// The operation.
    pub operation: Operation,
}

/// What is called.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Operation {
    /// HTTP methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// What a VirtualService for an app routes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VirtualServiceOptions {
    /// The Service host; `None` is the app's name.
    pub host: Option<String>,
    /// Gateways, in addition to the mesh.
    pub gateways: Vec<String>,
    /// The weights per track (each track is a DestinationRule subset of its name).
    pub split: TrafficSplit,
    /// Header routes, placed before the weighted route.
    pub header_routes: Vec<HeaderRoute>,
    /// Retries of the weighted route.
    pub retries: Option<HttpRetry>,
    /// Timeout of the weighted route.
    pub timeout: Option<Duration>,
}

impl Default for VirtualServiceOptions {
    fn default() -> Self {
        Self {
            host: None,
            gateways: Vec::new(),
            split: TrafficSplit::all(Track::Stable),
            header_routes: Vec::new(),
            retries: None,
            timeout: None,
        }
    }
}

impl VirtualServiceOptions {
    /// Sets the weights.
    #[must_use]
    pub fn split(mut self, split: TrafficSplit) -> Self {
        self.split = split;
        self
    }

    /// Adds a header route.
    #[must_use]
    pub fn header_route(mut self, route: HeaderRoute) -> Self {
        self.header_routes.push(route);
        self
    }

    /// Sets retries.
    #[must_use]
    pub fn retries(mut self, retries: HttpRetry) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The name of the weighted route whose destinations the VirtualService router owns.
pub const PRIMARY_ROUTE: &str = "primary";

/// The name of the route the VirtualService router adds to mirror traffic; it
/// removes only this one.
pub const MIRROR_ROUTE: &str = "deploy-rs-mirror";

/// The name prefix of the header routes the VirtualService router adds; it removes
/// only routes whose name starts with it.
pub const HEADER_ROUTE_PREFIX: &str = "deploy-rs-header-";

/// Istio's form of a header match.
pub fn string_match(matches: &HeaderMatch) -> StringMatch {
    match matches {
        HeaderMatch::Exact(v) => StringMatch::exact(v),
        HeaderMatch::Prefix(v) => StringMatch::prefix(v),
        HeaderMatch::Regex(v) => StringMatch::regex(v),
        other => StringMatch::exact(format!("{other:?}")),
    }
}

/// The route for requests whose header matches `route`.
pub fn header_http_route(host: &str, route: &HeaderRoute) -> HttpRoute {
    HttpRoute {
        name: Some(super::owned_route_name(HEADER_ROUTE_PREFIX, &route.header)),
        matches: vec![HttpMatchRequest {
            headers: BTreeMap::from([(route.header.clone(), string_match(&route.matches))]),
            uri: None,
        }],
        route: vec![HttpRouteDestination {
            destination: Destination {
                host: host.to_owned(),
                subset: Some(route.track.as_str().to_owned()),
                port: None,
            },
            weight: None,
        }],
        timeout: None,
        retries: None,
    }
}

/// The weighted destinations of `split`, one per track with its subset.
pub fn weighted_destinations(host: &str, split: &TrafficSplit) -> Vec<HttpRouteDestination> {
    split
        .iter()
        .map(|(track, weight)| HttpRouteDestination {
            destination: Destination { host: host.to_owned(), subset: Some(track.as_str().to_owned()), port: None },
            weight: Some(i32::from(weight.value())),
        })
        .collect()
}

/// Builds the VirtualService of `app`: header routes first, then the weighted
/// route named [`PRIMARY_ROUTE`].
pub fn virtual_service(app: &AppId, options: &VirtualServiceOptions) -> VirtualService {
    let host = options.host.clone().unwrap_or_else(|| app.name.to_string());
    let mut http: Vec<HttpRoute> = options.header_routes.iter().map(|r| header_http_route(&host, r)).collect();
    http.push(HttpRoute {
        name: Some(PRIMARY_ROUTE.to_owned()),
        matches: Vec::new(),
        route: weighted_destinations(&host, &options.split),
        timeout: options.timeout.map(|t| format!("{}s", t.as_secs())),
        retries: options.retries.clone(),
    });
    VirtualService::new(
        &app.namespace,
        app.name.as_str(),
        VirtualServiceSpec { hosts: vec![host], gateways: options.gateways.clone(), http },
    )
}

/// Builds the DestinationRule of `app`: one subset per track in `tracks`,
/// selecting that track's pods, with `policy` for all of them.
pub fn destination_rule(app: &AppId, tracks: &[Track], policy: Option<TrafficPolicy>) -> DestinationRule {
    let subsets = tracks
        .iter()
        .map(|t| Subset { name: t.as_str().to_owned(), labels: labels::track_selector(app, *t) })
        .collect();
    DestinationRule::new(
        &app.namespace,
        app.name.as_str(),
        DestinationRuleSpec { host: app.name.to_string(), traffic_policy: policy, subsets },
    )
}

/// Builds a PeerAuthentication for the whole namespace with `mode`
/// (`STRICT`, `PERMISSIVE`, `DISABLE`).
pub fn peer_authentication(namespace: &ModelNamespace, name: &str, mode: &str) -> PeerAuthentication {
    PeerAuthentication::new(
        namespace,
        name,
        PeerAuthenticationSpec { selector: None, mtls: Some(MutualTls { mode: mode.to_owned() }) },
    )
}

/// Builds an `ALLOW` AuthorizationPolicy for `app`'s pods: calls from
/// `principals` with `methods` on `paths`.
pub fn authorization_policy(
    app: &AppId,
    principals: Vec<String>,
    methods: Vec<String>,
    paths: Vec<String>,
) -> AuthorizationPolicy {
    AuthorizationPolicy::new(
        &app.namespace,
        app.name.as_str(),
        AuthorizationPolicySpec {
            selector: Some(WorkloadSelector { match_labels: labels::app_selector(app) }),
            action: Some("ALLOW".to_owned()),
            rules: vec![AuthorizationRule {
                from: vec![RuleFrom { source: Source { principals, namespaces: Vec::new() } }],
                to: vec![RuleTo { operation: Operation { methods, paths } }],
            }],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use deploy_core::model::Percent;

    #[test]
    fn virtual_service_routes_headers_first_then_weights_with_retries_and_timeout() {
        let app = fixtures::app_id();
        let options = VirtualServiceOptions::default()
            .split(TrafficSplit::canary(Percent::new(10).unwrap()))
            .header_route(HeaderRoute::new("X-Canary", HeaderMatch::Exact("always".into()), Track::Canary))
            .retries(HttpRetry { attempts: 3, per_try_timeout: Some("2s".into()), retry_on: Some("5xx".into()) })
            .timeout(Duration::from_secs(10));
        let vs = virtual_service(&app, &options);
        assert_eq!(vs.api_version, "networking.istio.io/v1");
        assert_eq!(vs.kind, "VirtualService");
        assert_eq!(vs.spec.hosts, vec!["web".to_owned()]);
        let header = &vs.spec.http[0];
        assert_eq!(header.matches[0].headers["x-canary"], StringMatch::exact("always"));
        assert_eq!(header.route[0].destination.subset.as_deref(), Some("canary"));
        let primary = &vs.spec.http[1];
        assert_eq!(primary.name.as_deref(), Some(PRIMARY_ROUTE));
        let weights: Vec<_> =
            primary.route.iter().map(|r| (r.destination.subset.clone().unwrap(), r.weight.unwrap())).collect();
        assert_eq!(weights, vec![("stable".to_owned(), 90), ("canary".to_owned(), 10)]);
        assert_eq!(primary.timeout.as_deref(), Some("10s"));
        assert_eq!(primary.retries.as_ref().unwrap().attempts, 3);
        let json = serde_json::to_value(&vs).unwrap();
        assert_eq!(json["spec"]["http"][0]["match"][0]["headers"]["x-canary"]["exact"], "always");
        assert_eq!(json["spec"]["http"][1]["retries"]["perTryTimeout"], "2s");
    }

    #[test]
    fn destination_rule_has_subsets_pool_outliers_and_balancer() {
        let policy = TrafficPolicy {
            load_balancer: Some(LoadBalancerSettings { simple: "LEAST_REQUEST".into() }),
            connection_pool: Some(ConnectionPoolSettings {
                tcp: Some(TcpSettings { max_connections: Some(100), connect_timeout: Some("3s".into()) }),
                http: Some(HttpSettings {
                    http1_max_pending_requests: Some(50),
                    http2_max_requests: Some(1000),
                    max_requests_per_connection: Some(10),
                }),
            }),
            outlier_detection: Some(OutlierDetection {
                consecutive_5xx_errors: Some(5),
                interval: Some("10s".into()),
                base_ejection_time: Some("30s".into()),
                max_ejection_percent: Some(50),
            }),
        };
        let dr = destination_rule(&fixtures::app_id(), &[Track::Stable, Track::Canary], Some(policy));
        assert_eq!(dr.spec.subsets.len(), 2);
        assert_eq!(dr.spec.subsets[1].labels[labels::TRACK], "canary");
        let json = serde_json::to_value(&dr).unwrap();
        let tp = &json["spec"]["trafficPolicy"];
        assert_eq!(tp["loadBalancer"]["simple"], "LEAST_REQUEST");
        assert_eq!(tp["connectionPool"]["http"]["http1MaxPendingRequests"], 50);
        assert_eq!(tp["connectionPool"]["http"]["http2MaxRequests"], 1000);
        assert_eq!(tp["connectionPool"]["tcp"]["connectTimeout"], "3s");
        assert_eq!(tp["outlierDetection"]["consecutive5xxErrors"], 5);
        assert_eq!(tp["outlierDetection"]["baseEjectionTime"], "30s");
    }

    #[test]
    fn security_kinds_carry_mode_selector_and_rules() {
        let pa = peer_authentication(&"shop".parse().unwrap(), "default", "STRICT");
        assert_eq!(pa.spec.mtls.as_ref().unwrap().mode, "STRICT");
        assert_eq!(pa.api_version, "security.istio.io/v1");
        let ap = authorization_policy(
            &fixtures::app_id(),
            vec!["cluster.local/ns/shop/sa/frontend".into()],
            vec!["GET".into()],
            vec!["/api/*".into()],
        );
        assert_eq!(ap.spec.action.as_deref(), Some("ALLOW"));
        assert_eq!(ap.spec.selector.as_ref().unwrap().match_labels[labels::APP], "web");
        assert_eq!(ap.spec.rules[0].from[0].source.principals[0], "cluster.local/ns/shop/sa/frontend");
        assert_eq!(ap.spec.rules[0].to[0].operation.paths[0], "/api/*");
    }
}
