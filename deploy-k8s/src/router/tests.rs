use deploy_core::error::{Classify, ErrorKind};
use deploy_core::model::{Percent, Track, TrafficSplit};
use deploy_core::traffic::{HeaderMatch, HeaderRoute, Mirror, RouterError, TrafficRouter};
use serde_json::{Value, json};

use super::*;
use crate::cluster::Cluster;
use crate::fixtures::{self, fake_api, mock::*};

fn pct(n: u8) -> Percent {
    Percent::new(n).unwrap()
}

fn service_json(track: Option<&str>) -> Value {
    let mut selector = json!({"app.kubernetes.io/name": "web"});
    if let Some(t) = track {
        selector["deploy-rs.io/track"] = json!(t);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "50"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.14.2", "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
        "status": {"loadBalancer": {}}})
}

#[tokio::test]
async fn service_selector_switches_whole_tracks_and_reads_them_back() {
    let path = "/api/v1/namespaces/shop/services/web";
    let (client, mock) = start(vec![
        Expect::patch(path)
            .body(|b| {
                // Only the track label: the selector's other labels are the user's.
                assert_eq!(b, &json!({"spec": {"selector": {"deploy-rs.io/track": "green"}}}))
            })
            .ok(service_json(Some("green"))),
        Expect::get(path).ok(service_json(Some("green"))),
        Expect::patch(path).status(500, "InternalError", "etcdserver: request timed out"),
        Expect::get(path).ok(service_json(None)),
        Expect::patch("/api/v1/namespaces/shop/services/other").status(404, "NotFound", "services \"other\" not found"),
    ]);
    let router = ServiceSelectorRouter::new(Cluster::new(client.clone()));
    let app = fixtures::app_id();
    assert!(router.capabilities().switch_only);
    within(router.set_weights(&app, &TrafficSplit::all(Track::Green))).await.unwrap();
    assert_eq!(within(router.weights(&app)).await.unwrap(), TrafficSplit::all(Track::Green));
    let half = TrafficSplit::between(Track::Blue, Track::Green, pct(50));
    assert!(matches!(within(router.set_weights(&app, &half)).await, Err(RouterError::Unsupported { .. })));
    let err = within(router.set_weights(&app, &TrafficSplit::all(Track::Blue))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(within(router.weights(&app)).await.unwrap_err().kind(), ErrorKind::InvalidInput, "no single track");
    let other = ServiceSelectorRouter::new(Cluster::new(client)).service("other");
    assert!(matches!(
        within(other.set_weights(&app, &TrafficSplit::all(Track::Blue))).await,
        Err(RouterError::NotFound { .. })
    ));
    drop((router, other));
    mock.finish().await;
}

fn scale_answer(name: &str, n: i64) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": name, "namespace": "shop"},
        "spec": {"replicas": n}, "status": {"replicas": n}})
}

fn with_replicas(name: &str, n: i64) -> Value {
    let mut d = crate::rollout_status::tests::deployment_json(name, 2, 2, n, (n, n, n, n), "NewReplicaSetAvailable");
    d["spec"]["replicas"] = json!(n);
    d
}

#[tokio::test]
async fn replica_ratio_scales_tracks_and_reports_the_effective_split() {
    let d = "/apis/apps/v1/namespaces/shop/deployments";
    let (client, mock) = start(vec![
        Expect::patch(&format!("{d}/web-stable/scale"))
            .body(|b| assert_eq!(b["spec"]["replicas"], 7))
            .ok(scale_answer("web-stable", 7)),
        Expect::patch(&format!("{d}/web-canary/scale"))
            .body(|b| assert_eq!(b["spec"]["replicas"], 3))
            .ok(scale_answer("web-canary", 3)),
        Expect::get(&format!("{d}/web-stable")).ok(with_replicas("web-stable", 7)),
        Expect::get(&format!("{d}/web-canary")).ok(with_replicas("web-canary", 3)),
        Expect::patch(&format!("{d}/web-stable/scale"))
            .body(|b| assert_eq!(b["spec"]["replicas"], 10))
            .ok(scale_answer("web-stable", 10)),
        Expect::patch(&format!("{d}/web-canary/scale")).body(|b| assert_eq!(b["spec"]["replicas"], 0)).status(
            404,
            "NotFound",
            "deployments.apps \"web-canary\" not found",
        ),
    ]);
    let router = ReplicaRatioRouter::new(Cluster::new(client), 10);
    let app = fixtures::app_id();
    within(router.set_weights(&app, &TrafficSplit::canary(pct(25)))).await.unwrap();
    // 25 % of 10 replicas cannot be exact: the router reports what it really is.
    assert_eq!(within(router.weights(&app)).await.unwrap(), TrafficSplit::canary(pct(30)));
    within(router.set_weights(&app, &TrafficSplit::all(Track::Stable))).await.unwrap();
    drop(router);
    let seen = mock.finish().await;
    let scale_order: Vec<_> = seen.iter().filter(|r| r.path.ends_with("/scale")).map(|r| r.path.clone()).collect();
    assert!(
        scale_order[2].contains("web-stable") && scale_order[3].contains("web-canary"),
        "stable is scaled up before canary goes to 0"
    );
}

fn virtual_service_json(version: &str, rv: &str, weights: &[(&str, i64)]) -> Value {
    let route: Vec<Value> =
        weights.iter().map(|(s, w)| json!({"destination": {"host": "web", "subset": s}, "weight": w})).collect();
    json!({"apiVersion": format!("networking.istio.io/{version}"), "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv, "generation": 3},
        "spec": {"hosts": ["web"], "http": [
            {"name": "deploy-rs-header-x-canary", "match": [{"headers": {"x-canary": {"exact": "always"}}}],
             "route": [{"destination": {"host": "web", "subset": "canary"}}]},
            {"name": "primary", "route": route, "timeout": "10s", "retries": {"attempts": 3, "perTryTimeout": "2s"}}]}})
}

fn api_groups(istio_versions: &[&str]) -> Value {
    let versions: Vec<Value> = istio_versions
        .iter()
        .map(|v| json!({"groupVersion": format!("networking.istio.io/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
        {"name": "networking.istio.io", "versions": versions, "preferredVersion": versions[0].clone()}]})
}

/// Issue 17: the Istio API version is discovered once (`v1beta1` on an older
/// Istio), and writes are replaces guarded by the `resourceVersion` read.
#[tokio::test]
async fn istio_router_discovers_its_version_and_updates_the_primary_route_under_cas() {
    let path = "/apis/networking.istio.io/v1beta1/namespaces/shop/virtualservices/web";
    let check = |b: &Value| {
        assert_eq!(b["apiVersion"], "networking.istio.io/v1beta1");
        assert_eq!(b["metadata"]["resourceVersion"], "8", "write guarded by the version read");
        assert_eq!(b["spec"]["http"][0]["name"], "deploy-rs-header-x-canary", "header route kept");
        assert_eq!(
            b["spec"]["http"][1]["route"],
            json!([
            {"destination": {"host": "web", "subset": "stable"}, "weight": 90},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 10}])
        );
        assert_eq!(b["spec"]["http"][1]["retries"]["attempts"], 3, "retries kept");
    };
    let (client, mock) = start(vec![
        Expect::get("/apis").ok(api_groups(&["v1beta1", "v1alpha3"])),
        Expect::get(path).ok(virtual_service_json("v1beta1", "7", &[("stable", 100)])),
        Expect::put(path).body(|b| assert_eq!(b["metadata"]["resourceVersion"], "7")).status(
            409,
            "Conflict",
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        Expect::get(path).ok(virtual_service_json("v1beta1", "8", &[("stable", 100)])),
        Expect::put(path).body(check).ok(virtual_service_json("v1beta1", "9", &[("stable", 90), ("canary", 10)])),
        Expect::get(path).ok(virtual_service_json("v1beta1", "9", &[("stable", 90), ("canary", 10)])),
        Expect::get(path).ok(virtual_service_json("v1beta1", "9", &[("stable", 90), ("canary", 10)])),
        Expect::put(path)
            .body(|b| {
                let http = b["spec"]["http"].as_array().unwrap();
                assert_eq!(http.len(), 3, "added next to the other header route");
                assert_eq!(http[1]["name"], "deploy-rs-header-x-user", "right before primary");
                assert_eq!(http[1]["match"][0]["headers"]["x-user"]["prefix"], "beta-");
                assert_eq!(http[1]["route"], json!([{"destination": {"host": "web", "subset": "canary"}}]));
                assert_eq!(http[1]["retries"]["attempts"], 3, "the primary route's retries apply to it too");
                assert_eq!(http[2]["name"], "primary");
            })
            .status(500, "InternalError", "admission webhook \"validation.istio.io\" failed: connection refused"),
    ]);
    let router = IstioRouter::new(Cluster::new(client));
    let app = fixtures::app_id();
    within(router.set_weights(&app, &TrafficSplit::canary(pct(10)))).await.unwrap();
    assert_eq!(within(router.weights(&app)).await.unwrap(), TrafficSplit::canary(pct(10)));
    let route = HeaderRoute::new("x-user", HeaderMatch::Prefix("beta-".into()), Track::Canary);
    let err = within(router.set_header_route(&app, &route)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    drop(router);
    mock.finish().await;
}

#[tokio::test]
async fn istio_router_without_a_served_version_names_what_is_served() {
    let (client, mock) = start(vec![Expect::get("/apis").ok(api_groups(&["v1alpha3"]))]);
    let router = IstioRouter::new(Cluster::new(client));
    let err = within(router.weights(&fixtures::app_id())).await.unwrap_err();
    assert!(matches!(&err, RouterError::Unsupported { capability } if capability.contains("v1alpha3")), "{err}");
    drop(router);
    mock.finish().await;
}

fn http_route_json(rv: &str, backends: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv},
        "spec": {"parentRefs": [{"name": "public", "namespace": "gateways"}], "hostnames": ["shop.example.com"],
            "rules": [{"backendRefs": backends}]},
        "status": {"parents": []}})
}

#[tokio::test]
async fn gateway_router_sets_backend_weights_and_normalises_relative_ones() {
    let path = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web";
    let (client, mock) = start(vec![
        Expect::get(path).ok(http_route_json("3", json!([{"name": "web-stable", "port": 80, "weight": 1}]))),
        Expect::put(path)
            .body(|b| {
                assert_eq!(b["spec"]["parentRefs"][0]["name"], "public");
                assert_eq!(
                    b["spec"]["rules"][0]["backendRefs"],
                    json!([
                    {"name": "web-stable", "port": 80, "weight": 50}, {"name": "web-canary", "port": 80, "weight": 50}])
                );
            })
            .ok(http_route_json("4", json!([]))),
        Expect::get(path).ok(http_route_json(
            "5",
            json!([
            {"name": "web-stable", "port": 80, "weight": 3}, {"name": "web-canary", "port": 80, "weight": 1}]),
        )),
        Expect::get(path).ok(http_route_json("5", json!([{"name": "web-stable", "port": 80}]))),
        Expect::put(path)
            .body(|b| {
                let rules = b["spec"]["rules"].as_array().unwrap();
                assert_eq!(
                    rules[0]["matches"][0]["headers"][0],
                    json!({"type": "Exact", "name": "x-canary", "value": "always"})
                );
                assert_eq!(rules[0]["backendRefs"][0]["name"], "web-canary");
                assert!(rules[1]["matches"].is_null(), "weighted rule kept");
            })
            .ok(http_route_json("6", json!([]))),
    ]);
    let router = GatewayRouter::new(Cluster::new(client), 80);
    let app = fixtures::app_id();
    within(router.set_weights(&app, &TrafficSplit::canary(pct(50)))).await.unwrap();
    assert_eq!(within(router.weights(&app)).await.unwrap(), TrafficSplit::canary(pct(25)));
    let prefix = HeaderRoute::new("x-canary", HeaderMatch::Prefix("a".into()), Track::Canary);
    assert!(matches!(within(router.set_header_route(&app, &prefix)).await, Err(RouterError::Unsupported { .. })));
    let exact = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
    within(router.set_header_route(&app, &exact)).await.unwrap();
    drop(router);
    mock.finish().await;
}

fn canary_ingress(annotations: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web-canary", "namespace": "shop", "annotations": annotations},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}]}}]}})
}

#[tokio::test]
async fn nginx_router_annotates_the_canary_ingress() {
    let path = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web-canary";
    let (client, mock) = start(vec![
        Expect::patch(path)
            .body(|b| {
                assert_eq!(
                    b,
                    &json!({"metadata": {"annotations": {
                "nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "10"}}})
                )
            })
            .ok(canary_ingress(json!({}))),
        Expect::get(path).ok(canary_ingress(json!({
            "nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "10"}))),
        Expect::get(path).ok(canary_ingress(json!({"nginx.ingress.kubernetes.io/canary": "false"}))),
        Expect::get(path).ok(canary_ingress(json!({"nginx.ingress.kubernetes.io/canary": "true"}))),
        Expect::patch(path)
            .body(|b| {
                let a = &b["metadata"]["annotations"];
                assert_eq!(a["nginx.ingress.kubernetes.io/canary-by-header"], "x-canary");
                assert_eq!(a["nginx.ingress.kubernetes.io/canary-by-header-pattern"], "^(yes|1)$");
                assert!(a["nginx.ingress.kubernetes.io/canary-by-header-value"].is_null());
            })
            .ok(canary_ingress(json!({}))),
        Expect::patch(path)
            .body(|b| assert!(b["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"].is_null()))
            .status(404, "NotFound", "ingresses.networking.k8s.io \"web-canary\" not found"),
    ]);
    let router = NginxCanaryRouter::new(Cluster::new(client));
    let app = fixtures::app_id();
    within(router.set_weights(&app, &TrafficSplit::canary(pct(10)))).await.unwrap();
    assert_eq!(within(router.weights(&app)).await.unwrap(), TrafficSplit::canary(pct(10)));
    assert_eq!(within(router.weights(&app)).await.unwrap(), TrafficSplit::all(Track::Stable));
    let blue = TrafficSplit::between(Track::Blue, Track::Green, pct(10));
    assert!(matches!(within(router.set_weights(&app, &blue)).await, Err(RouterError::Unsupported { .. })));
    let to_stable = HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Stable);
    assert!(matches!(within(router.set_header_route(&app, &to_stable)).await, Err(RouterError::Unsupported { .. })));
    let regex = HeaderRoute::new("x-canary", HeaderMatch::Regex("^(yes|1)$".into()), Track::Canary);
    within(router.set_header_route(&app, &regex)).await.unwrap();
    within(router.clear_header_routes(&app)).await.unwrap();
    drop(router);
    mock.finish().await;
}

// ---- Issue 17, item 1: a user's object survives every router operation, outside
// the router's own entries, compared as JSON on the stateful fake API server. ----

const VS_PATH: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web";
const ROUTE_PATH: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web";
const INGRESS_PATH: &str = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web-canary";
const SERVICE_PATH: &str = "/api/v1/namespaces/shop/services/web";

/// A VirtualService as a user writes it: TLS and TCP routes, `exportTo`, an
/// unrelated route, a route named like an old header route, and a primary route
/// with a restricted match and every HTTP route field the router does not model.
fn user_virtual_service() -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "shop"}, "annotations": {"owner": "sre"}},
    "spec": {
        "hosts": ["web", "web.shop.example.com"],
        "gateways": ["mesh", "shop/public"],
        "exportTo": [".", "istio-system"],
        "tls": [{"match": [{"port": 443, "sniHosts": ["web.shop.example.com"]}],
                 "route": [{"destination": {"host": "web", "port": {"number": 8443}}}]}],
        "tcp": [{"match": [{"port": 5432}], "route": [{"destination": {"host": "db", "port": {"number": 5432}}}]}],
        "http": [
            {"name": "admin", "match": [{"uri": {"prefix": "/admin"}, "sourceLabels": {"role": "ops"}}],
             "route": [{"destination": {"host": "admin"}}]},
            {"name": "header-legacy", "match": [{"headers": {"x-legacy": {"exact": "1"}}}],
             "route": [{"destination": {"host": "legacy"}}]},
            {"name": "primary",
             "match": [{"uri": {"prefix": "/api"}, "method": {"exact": "GET"}, "gateways": ["shop/public"],
                        "sourceLabels": {"app": "frontend"}, "headers": {"x-region": {"exact": "eu"}}}],
             "rewrite": {"uri": "/v1"},
             "fault": {"delay": {"percentage": {"value": 0.1}, "fixedDelay": "5s"}},
             "corsPolicy": {"allowOrigins": [{"exact": "https://shop.example.com"}], "allowMethods": ["GET"]},
             "mirror": {"host": "shadow", "subset": "v1"}, "mirrorPercentage": {"value": 5.0},
             "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
             "timeout": "10s",
             "headers": {"request": {"set": {"x-env": "prod"}}},
             "route": [{"destination": {"host": "web", "subset": "stable", "port": {"number": 8080}},
                        "headers": {"response": {"add": {"x-track": "stable"}}}}]}
        ]}})
}

/// `spec` with the router's own entries taken out: its header routes, and the
/// primary route's destinations put back as `original` had them.
fn istio_outside_own_entries(spec: &Value, original: &Value) -> Value {
    let mut spec = spec.clone();
    let http = spec["http"].as_array_mut().unwrap();
    http.retain(|r| !r["name"].as_str().unwrap_or_default().starts_with("deploy-rs-header-"));
    let primary = http.iter_mut().find(|r| r["name"] == "primary").unwrap();
    let original_primary = original["http"].as_array().unwrap().iter().find(|r| r["name"] == "primary").unwrap();
    primary["route"] = original_primary["route"].clone();
    spec
}

#[tokio::test]
async fn istio_router_keeps_every_field_of_a_users_virtual_service() {
    let (client, fake) = fake_api::start();
    let original = user_virtual_service();
    fake.seed(VS_PATH, original.clone());
    let router = IstioRouter::new(Cluster::new(client)).api_version("v1");
    let app = fixtures::app_id();
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::canary(pct(10))).await.unwrap();
        let exact = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
        router.set_header_route(&app, &exact).await.unwrap();
        let prefix = HeaderRoute::new("X-User", HeaderMatch::Prefix("beta-".into()), Track::Canary);
        router.set_header_route(&app, &prefix).await.unwrap();
        router.set_header_route(&app, &exact).await.unwrap();
        assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::canary(pct(10)));
    })
    .await;
    let during = fake.object(VS_PATH).unwrap();
    let http = during["spec"]["http"].as_array().unwrap();
    let names: Vec<&str> = http.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "header-legacy", "deploy-rs-header-x-user", "deploy-rs-header-x-canary", "primary"]);
    // The destinations: stable keeps its port and headers; the canary is a copy with its subset.
    assert_eq!(
        http[4]["route"],
        json!([
            {"destination": {"host": "web", "subset": "stable", "port": {"number": 8080}},
             "headers": {"response": {"add": {"x-track": "stable"}}}, "weight": 90},
            {"destination": {"host": "web", "subset": "canary", "port": {"number": 8080}},
             "headers": {"response": {"add": {"x-track": "stable"}}}, "weight": 10}])
    );
    // A header route matches what primary matches, and the header.
    let header = &http[3];
    let mut expected_match = original["spec"]["http"][2]["match"].clone();
    expected_match[0]["headers"]["x-canary"] = json!({"exact": "always"});
    assert_eq!(header["match"], expected_match);
    assert_eq!(header["rewrite"], original["spec"]["http"][2]["rewrite"]);
    assert_eq!(header["route"][0]["destination"]["subset"], "canary");
    assert!(header["route"][0]["weight"].is_null());
    assert_eq!(istio_outside_own_entries(&during["spec"], &original["spec"]), original["spec"]);

    // Back to stable and the header routes cleared: only the weight of the route it owns differs.
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::all(Track::Stable)).await.unwrap();
        router.clear_header_routes(&app).await.unwrap();
    })
    .await;
    let after = fake.object(VS_PATH).unwrap();
    let mut expected = original["spec"].clone();
    expected["http"][2]["route"][0]["weight"] = json!(100);
    assert_eq!(after["spec"], expected);
    assert_eq!(after["metadata"]["labels"], original["metadata"]["labels"]);
    assert_eq!(after["metadata"]["annotations"], original["metadata"]["annotations"]);
    // Nothing changes, nothing is written.
    let writes = fake.log().iter().filter(|r| r.method == http::Method::PUT).count();
    fake_api::within(router.clear_header_routes(&app)).await.unwrap();
    assert_eq!(fake.log().iter().filter(|r| r.method == http::Method::PUT).count(), writes);
}

/// An HTTPRoute as a user writes it: a second rule to another Service, and a
/// weighted rule with a restricted match (path, method, a header, a query
/// parameter), filters, timeouts, and a backend with group, kind, namespace and
/// filters of its own.
fn user_http_route() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {"name": "static", "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                 "backendRefs": [{"name": "cdn", "port": 80}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
                              "headers": [{"type": "Exact", "name": "x-region", "value": "eu"}],
                              "queryParams": [{"type": "Exact", "name": "v", "value": "2"}]}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}}],
                 "timeouts": {"request": "10s", "backendRequest": "2s"},
                 "backendRefs": [{"group": "", "kind": "Service", "name": "web-stable", "namespace": "shop",
                                  "port": 8080, "weight": 1,
                                  "filters": [{"type": "ResponseHeaderModifier",
                                               "responseHeaderModifier": {"add": [{"name": "x-track", "value": "stable"}]}}]}]}
            ]},
        "status": {"parents": []}})
}

#[tokio::test]
async fn gateway_router_keeps_every_field_of_a_users_http_route() {
    let (client, fake) = fake_api::start();
    let original = user_http_route();
    fake.seed(ROUTE_PATH, original.clone());
    let router = GatewayRouter::new(Cluster::new(client), 80);
    let app = fixtures::app_id();
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::canary(pct(25))).await.unwrap();
        let exact = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
        router.set_header_route(&app, &exact).await.unwrap();
        let regex = HeaderRoute::new("x-user", HeaderMatch::Regex("^beta-".into()), Track::Canary);
        router.set_header_route(&app, &regex).await.unwrap();
        assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::canary(pct(25)));
    })
    .await;
    let during = fake.object(ROUTE_PATH).unwrap();
    let rules = during["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4, "{rules:#?}");
    assert_eq!(rules[0], original["spec"]["rules"][0], "the other rule untouched");
    let (weighted, user_rule) = (&rules[3], &original["spec"]["rules"][1]);
    let stable = user_rule["backendRefs"][0].clone();
    let mut canary = stable.clone();
    canary["name"] = json!("web-canary");
    let (mut stable75, mut canary25) = (stable, canary);
    stable75["weight"] = json!(75);
    canary25["weight"] = json!(25);
    assert_eq!(weighted["backendRefs"], json!([stable75, canary25]), "kind, namespace, port, filters kept");
    for key in ["matches", "filters", "timeouts"] {
        assert_eq!(weighted[key], user_rule[key], "{key}");
    }
    let header_rule = &rules[1];
    assert_eq!(header_rule["name"], "deploy-rs-header-x-canary");
    assert_eq!(
        header_rule["matches"][0]["headers"],
        json!([{"type": "Exact", "name": "x-region", "value": "eu"},
               {"type": "Exact", "name": "x-canary", "value": "always"}])
    );
    assert_eq!(header_rule["matches"][0]["queryParams"], user_rule["matches"][0]["queryParams"]);
    assert_eq!(header_rule["filters"], user_rule["filters"]);
    assert_eq!(header_rule["backendRefs"][0]["name"], "web-canary");
    assert_eq!(rules[2]["name"], "deploy-rs-header-x-user");
    assert_eq!(rules[2]["matches"][0]["headers"][1]["type"], "RegularExpression");

    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::all(Track::Stable)).await.unwrap();
        router.clear_header_routes(&app).await.unwrap();
    })
    .await;
    let after = fake.object(ROUTE_PATH).unwrap();
    let mut expected = original["spec"].clone();
    expected["rules"][1]["backendRefs"][0]["weight"] = json!(100);
    assert_eq!(after["spec"], expected, "only the weight it owns differs");
    let prefix = HeaderRoute::new("x-canary", HeaderMatch::Prefix("a".into()), Track::Canary);
    assert!(matches!(
        fake_api::within(router.set_header_route(&app, &prefix)).await,
        Err(RouterError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn nginx_router_keeps_the_users_annotations_and_holds_one_header_route() {
    let (client, fake) = fake_api::start();
    let mut original = canary_ingress(json!({
        "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
        "cert-manager.io/cluster-issuer": "letsencrypt"}));
    original["metadata"]["labels"] = json!({"team": "shop"});
    original["spec"]["tls"] = json!([{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]);
    fake.seed(INGRESS_PATH, original.clone());
    let router = NginxCanaryRouter::new(Cluster::new(client));
    let app = fixtures::app_id();
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::canary(pct(10))).await.unwrap();
        let first = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
        router.set_header_route(&app, &first).await.unwrap();
        let again = HeaderRoute::new("x-canary", HeaderMatch::Regex("^(yes|1)$".into()), Track::Canary);
        router.set_header_route(&app, &again).await.unwrap();
        let second = HeaderRoute::new("x-user", HeaderMatch::Exact("beta".into()), Track::Canary);
        let err = router.set_header_route(&app, &second).await.unwrap_err();
        assert!(matches!(&err, RouterError::Unsupported { capability } if capability.contains("x-canary")), "{err}");
        assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::canary(pct(10)));
        router.set_weights(&app, &TrafficSplit::all(Track::Stable)).await.unwrap();
        router.clear_header_routes(&app).await.unwrap();
    })
    .await;
    let after = fake.object(INGRESS_PATH).unwrap();
    let mut expected = original.clone();
    expected["metadata"]["annotations"][nginx::CANARY] = json!("true");
    expected["metadata"]["annotations"][nginx::CANARY_WEIGHT] = json!("0");
    assert_eq!(after["metadata"]["annotations"], expected["metadata"]["annotations"]);
    assert_eq!(after["metadata"]["labels"], original["metadata"]["labels"]);
    assert_eq!(after["spec"], original["spec"]);
}

#[tokio::test]
async fn service_selector_router_changes_only_the_track_label_of_a_users_service() {
    let (client, fake) = fake_api::start();
    let mut original = service_json(Some("blue"));
    original["spec"]["selector"]["tier"] = json!("frontend");
    original["metadata"]["annotations"] = json!({"external-dns.alpha.kubernetes.io/hostname": "shop.example.com"});
    fake.seed(SERVICE_PATH, original.clone());
    let router = ServiceSelectorRouter::new(Cluster::new(client));
    let app = fixtures::app_id();
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::all(Track::Green)).await.unwrap();
        assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::all(Track::Green));
        assert!(matches!(
            router.set_weights(&app, &TrafficSplit::canary(pct(10))).await,
            Err(RouterError::Unsupported { .. })
        ));
        router.set_weights(&app, &TrafficSplit::all(Track::Blue)).await.unwrap();
    })
    .await;
    let after = fake.object(SERVICE_PATH).unwrap();
    assert_eq!(after["spec"], original["spec"]);
    assert_eq!(after["metadata"]["annotations"], original["metadata"]["annotations"]);
}

// ---- Issue 17, item 4: mirroring only the listed methods, as the router's own route. ----

#[tokio::test]
async fn istio_router_mirrors_only_listed_methods_in_its_own_route() {
    let (client, fake) = fake_api::start();
    let mut original = user_virtual_service();
    let router = IstioRouter::new(Cluster::new(client)).api_version("v1");
    let app = fixtures::app_id();
    let mirror = Mirror::new(pct(20));
    // The user's primary route mirrors already: Istio takes one mirror per route, so it is refused.
    fake.seed(VS_PATH, original.clone());
    let err = fake_api::within(router.set_mirror(&app, Track::Canary, &mirror)).await.unwrap_err();
    assert!(matches!(&err, RouterError::Unsupported { capability } if capability.contains("shadow")), "{err}");
    let primary = original["spec"]["http"][2].as_object_mut().unwrap();
    primary.remove("mirror");
    primary.remove("mirrorPercentage");
    fake.seed(VS_PATH, original.clone());
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::canary(pct(10))).await.unwrap();
        router.set_mirror(&app, Track::Canary, &mirror).await.unwrap();
        let exact = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
        router.set_header_route(&app, &exact).await.unwrap();
        router.set_weights(&app, &TrafficSplit::canary(pct(50))).await.unwrap();
    })
    .await;
    let during = fake.object(VS_PATH).unwrap();
    let http = during["spec"]["http"].as_array().unwrap();
    let names: Vec<&str> = http.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "header-legacy", "deploy-rs-header-x-canary", "deploy-rs-mirror", "primary"]);
    let mirrored = &http[3];
    // The primary route takes GET only: HEAD is not added, nothing is widened.
    assert_eq!(mirrored["match"].as_array().unwrap().len(), 1);
    assert_eq!(mirrored["match"][0]["method"], json!({"exact": "GET"}));
    assert_eq!(mirrored["mirror"], json!({"host": "web", "subset": "canary", "port": {"number": 8080}}));
    assert_eq!(mirrored["mirrorPercentage"], json!({"value": 20.0}));
    assert_eq!(mirrored["route"], http[4]["route"], "the mirror route follows the split");
    assert_eq!(http[4]["route"][1]["weight"], 50);
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::all(Track::Stable)).await.unwrap();
        router.clear_header_routes(&app).await.unwrap();
        router.clear_mirror(&app).await.unwrap();
    })
    .await;
    let mut expected = original["spec"].clone();
    expected["http"][2]["route"][0]["weight"] = json!(100);
    assert_eq!(fake.object(VS_PATH).unwrap()["spec"], expected);
}

#[tokio::test]
async fn gateway_router_mirrors_only_listed_methods_with_a_request_mirror_filter() {
    let (client, fake) = fake_api::start();
    let mut original = user_http_route();
    // Any method: the mirror rule gets one match per listed method.
    original["spec"]["rules"][1]["matches"][0].as_object_mut().unwrap().remove("method");
    fake.seed(ROUTE_PATH, original.clone());
    let router = GatewayRouter::new(Cluster::new(client), 80);
    let app = fixtures::app_id();
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::canary(pct(10))).await.unwrap();
        let exact = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
        router.set_header_route(&app, &exact).await.unwrap();
        router.set_mirror(&app, Track::Canary, &Mirror::new(pct(20))).await.unwrap();
        router.set_weights(&app, &TrafficSplit::canary(pct(25))).await.unwrap();
        assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::canary(pct(25)));
    })
    .await;
    let during = fake.object(ROUTE_PATH).unwrap();
    let rules = during["spec"]["rules"].as_array().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap_or("")).collect();
    assert_eq!(names, ["static", "deploy-rs-header-x-canary", "deploy-rs-mirror", ""]);
    let mirrored = &rules[2];
    let methods: Vec<&str> =
        mirrored["matches"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["GET", "HEAD"]);
    assert_eq!(
        mirrored["filters"].as_array().unwrap().last().unwrap(),
        &json!({"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": "web-canary", "namespace": "shop", "port": 8080},
            "percent": 20}})
    );
    assert_eq!(mirrored["backendRefs"], rules[3]["backendRefs"], "the mirror rule follows the split");
    // The header rule also matches the mirrored methods, so a method match does not outrank the header.
    let header_methods: Vec<&Value> = rules[1]["matches"].as_array().unwrap().iter().map(|m| &m["method"]).collect();
    assert_eq!(header_methods, [&Value::Null, &json!("GET"), &json!("HEAD")]);
    fake_api::within(async {
        router.set_weights(&app, &TrafficSplit::all(Track::Stable)).await.unwrap();
        router.clear_mirror(&app).await.unwrap();
        router.clear_header_routes(&app).await.unwrap();
    })
    .await;
    let mut expected = original["spec"].clone();
    expected["rules"][1]["backendRefs"][0]["weight"] = json!(100);
    assert_eq!(fake.object(ROUTE_PATH).unwrap()["spec"], expected);
}

// ---- Issue 17, item 3: each router declares what it does, and refuses the rest. ----

#[tokio::test]
async fn every_kubernetes_router_declares_its_capabilities_and_refuses_the_rest() {
    use deploy_core::traffic::{HeaderMatchKind, TrackSet};
    let (client, fake) = fake_api::start();
    fake.seed(SERVICE_PATH, service_json(Some("blue")));
    fake.seed(INGRESS_PATH, canary_ingress(json!({})));
    let cluster = Cluster::new(client);
    let app = fixtures::app_id();
    let stable_canary = TrackSet::of([Track::Stable, Track::Canary]);
    let blue_green = TrafficSplit::between(Track::Blue, Track::Green, pct(10));
    let exact = HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Canary);
    let mirror = Mirror::new(pct(10));
    let unsupported = |r: Result<(), RouterError>| matches!(r, Err(RouterError::Unsupported { .. }));

    let selector = ServiceSelectorRouter::new(cluster.clone());
    let caps = selector.capabilities();
    assert!(caps.switch_only && !caps.weights && !caps.header_routes && !caps.mirroring);
    assert_eq!(caps.tracks, TrackSet::ALL);
    fake_api::within(async {
        assert!(unsupported(selector.set_weights(&app, &TrafficSplit::canary(pct(10))).await));
        assert!(unsupported(selector.set_header_route(&app, &exact).await));
        assert!(unsupported(selector.set_mirror(&app, Track::Green, &mirror).await));
    })
    .await;

    let ratio = ReplicaRatioRouter::new(cluster.clone(), 4);
    let caps = ratio.capabilities();
    assert!(caps.weights && caps.weight_replicas == Some(4) && !caps.header_routes && !caps.mirroring);
    assert_eq!((caps.tracks, caps.split_tracks), (stable_canary, stable_canary));
    assert_eq!(ratio.effective_split(&TrafficSplit::canary(pct(10))), TrafficSplit::canary(pct(25)));
    fake_api::within(async {
        assert!(unsupported(ratio.set_weights(&app, &blue_green).await));
        assert!(unsupported(ratio.set_header_route(&app, &exact).await));
        assert!(unsupported(ratio.set_mirror(&app, Track::Canary, &mirror).await));
    })
    .await;

    let nginx = NginxCanaryRouter::new(cluster.clone());
    let caps = nginx.capabilities();
    assert!(caps.weights && caps.header_routes && !caps.mirroring && caps.max_header_routes == Some(1));
    assert_eq!((caps.tracks, caps.header_route_tracks), (stable_canary, TrackSet::of([Track::Canary])));
    assert!(!caps.header_matches.contains(HeaderMatchKind::Prefix));
    assert_eq!(nginx.effective_split(&TrafficSplit::canary(pct(13))), TrafficSplit::canary(pct(13)));
    fake_api::within(async {
        assert!(unsupported(nginx.set_weights(&app, &blue_green).await));
        let prefix = HeaderRoute::new("x-canary", HeaderMatch::Prefix("1".into()), Track::Canary);
        assert!(unsupported(nginx.set_header_route(&app, &prefix).await));
        let to_stable = HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Stable);
        assert!(unsupported(nginx.set_header_route(&app, &to_stable).await));
        assert!(unsupported(nginx.set_mirror(&app, Track::Canary, &mirror).await));
    })
    .await;

    let gateway = GatewayRouter::new(cluster.clone(), 80);
    let caps = gateway.capabilities();
    assert!(caps.weights && caps.header_routes && caps.mirroring && caps.max_header_routes.is_none());
    assert!(
        caps.header_matches.contains(HeaderMatchKind::Regex) && !caps.header_matches.contains(HeaderMatchKind::Prefix)
    );
    assert_eq!(caps.tracks, TrackSet::ALL);
    let prefix = HeaderRoute::new("x-canary", HeaderMatch::Prefix("1".into()), Track::Canary);
    assert!(unsupported(fake_api::within(gateway.set_header_route(&app, &prefix)).await));

    let istio = IstioRouter::new(cluster).api_version("v1");
    let caps = istio.capabilities();
    assert!(caps.weights && caps.header_routes && caps.mirroring && caps.max_header_routes.is_none());
    assert!(HeaderMatchKind::ALL.iter().all(|k| caps.header_matches.contains(*k)));
    assert_eq!((caps.tracks, caps.header_route_tracks), (TrackSet::ALL, TrackSet::ALL));
}
