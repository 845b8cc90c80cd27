//! Issue 17, items 4 and 3: mirroring only the listed methods, as the router's own
//! route; each router declares what it does, and refuses the rest.

use super::preservation::{INGRESS_PATH, ROUTE_PATH, SERVICE_PATH, VS_PATH, user_http_route, user_virtual_service};
use super::*;

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
