//! Issue 17, item 1: a user's object survives every router operation, outside the
//! router's own entries, compared as JSON on the stateful fake API server.

use super::*;

pub(super) const VS_PATH: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web";
pub(super) const ROUTE_PATH: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web";
pub(super) const INGRESS_PATH: &str = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web-canary";
pub(super) const SERVICE_PATH: &str = "/api/v1/namespaces/shop/services/web";

/// A VirtualService as a user writes it: TLS and TCP routes, `exportTo`, an
/// unrelated route, a route named like an old header route, and a primary route
/// with a restricted match and every HTTP route field the router does not model.
pub(super) fn user_virtual_service() -> Value {
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
pub(super) fn istio_outside_own_entries(spec: &Value, original: &Value) -> Value {
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
pub(super) fn user_http_route() -> Value {
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
