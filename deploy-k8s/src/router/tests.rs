use deploy_core::error::{Classify, ErrorKind};
use deploy_core::model::{Percent, Track, TrafficSplit};
use deploy_core::traffic::{HeaderMatch, HeaderRoute, Mirror, RouterError, TrafficRouter};
use serde_json::{Value, json};

use super::*;
use crate::cluster::Cluster;
use crate::fixtures::{self, fake_api, mock::*};

// Tests on the stateful fake API server: users' objects survive the routers
// (issue 17, item 1), mirroring and capabilities (items 4 and 3).
mod mirroring;
mod preservation;

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
