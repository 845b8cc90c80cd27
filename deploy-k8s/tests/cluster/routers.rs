//! Routers on the real API server change only what they route: a VirtualService
//! and an HTTPRoute written as a user would write them (with the fields no router
//! models) are, after a promoted canary and after a rolled-back one, what they were
//! before, compared as JSON; and the default canary succeeds behind the
//! replica-ratio router at 4 and at 10 replicas.

use deploy_core::engine::RolloutEngine;
use deploy_core::model::{DeploymentStatus, Percent, Track};
use deploy_core::plan::{Plan, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::traffic::{HeaderMatch, HeaderRoute};
use serde_json::{Value, json};

use crate::engine::{HTTP_ROUTE, Kind, NEW, OLD, Route, Strat, VIRTUAL_SERVICE, World, assert_serves, read};
use crate::support;

fn pct(v: u8) -> Percent {
    Percent::new(v).expect("percent")
}

/// A canary with a header route, two weights and analysis in between.
fn plan() -> Plan {
    Canary::with_steps(vec![
        Step::HeaderRoute(HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary)),
        Step::SetWeight(pct(25)),
        Step::Analyze(crate::engine::analysis()),
        Step::SetWeight(pct(50)),
    ])
    .scale_down_delay(deploy_core::model::HumanDuration::ZERO)
    .plan(&PlanInput::new(crate::engine::REPLICAS))
}

fn user_virtual_service(namespace: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"team": "shop"}},
        "spec": {
            "hosts": ["web"],
            "gateways": ["mesh"],
            "exportTo": ["."],
            "http": [
                {"name": "admin-only",
                 "match": [{"uri": {"prefix": "/admin"}, "method": {"exact": "GET"}, "gateways": ["mesh"],
                            "sourceLabels": {"team": "ops"}}],
                 "route": [{"destination": {"host": "web-admin"}}]},
                {"name": "primary",
                 "route": [
                    {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                    {"destination": {"host": "web", "subset": "canary"}, "weight": 0}],
                 "rewrite": {"uri": "/"},
                 "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
                 "timeout": "10s",
                 "fault": {"delay": {"percentage": {"value": 0.1}, "fixedDelay": "5s"}},
                 "corsPolicy": {"allowOrigins": [{"exact": "https://shop.example.com"}], "allowMethods": ["GET", "POST"]},
                 "mirror": {"host": "web-shadow"},
                 "mirrorPercentage": {"value": 5.0}}
            ],
            "tls": [{"match": [{"port": 443, "sniHosts": ["web.example.com"]}],
                     "route": [{"destination": {"host": "web", "port": {"number": 443}}}]}],
            "tcp": [{"match": [{"port": 9000}], "route": [{"destination": {"host": "web", "port": {"number": 9000}}}]}]
        }
    })
}

fn user_http_route(namespace: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace, "annotations": {"owner": "team-shop"}},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}],
            "hostnames": ["web.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                 "backendRefs": [{"name": "cdn", "port": 80}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "method": "GET"}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"add": [{"name": "x-env", "value": "prod"}]}}],
                 "timeouts": {"request": "10s"},
                 "backendRefs": [
                    {"kind": "Service", "namespace": namespace, "name": "web-stable", "port": 80, "weight": 100},
                    {"kind": "Service", "namespace": namespace, "name": "web-canary", "port": 80, "weight": 0}]}
            ]
        }
    })
}

/// The canary Ingress as a user writes it for ingress-nginx: TLS, a body-size limit,
/// their own labels; the canary annotations the router reads and writes.
fn user_canary_ingress(namespace: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web-canary", "namespace": namespace, "labels": {"team": "shop"},
            "annotations": {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "0",
                "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
                "nginx.ingress.kubernetes.io/ssl-redirect": "true"
            }},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["web.example.com"], "secretName": "web-tls"}],
            "rules": [{"host": "web.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}
            ]}}]
        }
    })
}

const INGRESS: Kind = Kind { group: "networking.k8s.io", version: "v1", kind: "Ingress", plural: "ingresses" };

/// What the user wrote and owns: everything but the server's bookkeeping and the
/// router's own entries, the track destinations (VirtualService `primary`) or track
/// backends (the HTTPRoute's weighted rule) that carry no traffic.
fn users_part(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        for key in ["resourceVersion", "generation", "managedFields", "uid", "creationTimestamp"] {
            meta.remove(key);
        }
    }
    let idle_track = |entry: &Value, track_of: &dyn Fn(&Value) -> Option<String>| {
        entry["weight"].as_i64() == Some(0)
            && track_of(entry).is_some_and(|t| ["stable", "canary"].contains(&t.as_str()))
    };
    for route in object["spec"]["http"].as_array_mut().into_iter().flatten() {
        if let Some(destinations) = route["route"].as_array_mut() {
            destinations.retain(|d| !idle_track(d, &|d| d["destination"]["subset"].as_str().map(str::to_owned)));
        }
    }
    // The NGINX router's own header annotations.
    if let Some(annotations) = object["metadata"]["annotations"].as_object_mut() {
        annotations.retain(|k, _| !k.starts_with("nginx.ingress.kubernetes.io/canary-by-header"));
    }
    for rule in object["spec"]["rules"].as_array_mut().into_iter().flatten() {
        if let Some(backends) = rule["backendRefs"].as_array_mut() {
            backends.retain(|b| {
                !idle_track(b, &|b| b["name"].as_str().and_then(|n| n.strip_prefix("web-")).map(str::to_owned))
            });
        }
    }
    object
}

async fn replace_object(w: &World, kind: &Kind, object: Value) {
    let api = crate::engine::dynamic(&w.s, kind);
    let name = object["metadata"]["name"].as_str().expect("name").to_owned();
    let mut current = api.get(&name).await.expect("read");
    let mut object: kube::api::DynamicObject = serde_json::from_value(object).expect("object");
    object.metadata.resource_version = current.metadata.resource_version.take();
    api.replace(&name, &Default::default(), &object).await.expect("replace with the user's object");
}

async fn survives(test: &str, route: Route, kind: &Kind, user: fn(&str) -> Value) {
    survives_named(test, route, kind, user, "web").await;
}

async fn survives_named(test: &str, route: Route, kind: &Kind, user: fn(&str) -> Value, name: &str) {
    let mut w = World::new(test, Strat::Canary, route).await;
    replace_object(&w, kind, user(&w.s.namespace)).await;
    let before = users_part(&read(&w.s, kind, name).await);
    w.plan = plan();

    // A promoted canary ...
    w.error_rate(0.001);
    let engine: RolloutEngine = w.engine("routers");
    let report = engine.run(w.request(support::release(NEW))).await.expect("report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{test}: {:?}", report.cause);
    assert_serves(&w.s, Track::Stable, NEW, test).await;
    let after = users_part(&read(&w.s, kind, name).await);
    assert_eq!(after, before, "{test}: the user's object is unchanged after a promoted canary");

    // ... and a rolled-back one.
    w.error_rate(0.5);
    let back = deploy_core::engine::RolloutRequest::new(w.s.spec(), support::release("3"), w.plan.clone())
        .from(support::release(NEW));
    let report = engine.run(back).await.expect("report");
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{test}: {:?}", report.cause);
    assert_serves(&w.s, Track::Stable, NEW, test).await;
    let after = users_part(&read(&w.s, kind, name).await);
    assert_eq!(after, before, "{test}: the user's object is unchanged after a rollback");
    let _ = OLD;
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_users_virtual_service_survives_a_canary_and_a_rollback() {
    survives("vs-survives", Route::Istio, &VIRTUAL_SERVICE, user_virtual_service).await;
}

#[tokio::test]
async fn a_users_canary_ingress_survives_a_canary_and_a_rollback() {
    survives_named("ingress-survives", Route::Nginx, &INGRESS, user_canary_ingress, "web-canary").await;
}

#[tokio::test]
async fn a_users_http_route_survives_a_canary_and_a_rollback() {
    survives("route-survives", Route::Gateway, &HTTP_ROUTE, user_http_route).await;
}

async fn default_canary_by_replica_ratio(test: &str, replicas: u32) {
    let mut w = World::with_replicas(test, Strat::Canary, Route::ReplicaRatio, replicas).await;
    // The default canary's weights (10, 25, 50, 75, 100) without its pauses.
    let mut plan =
        Canary::default().scale_down_delay(deploy_core::model::HumanDuration::ZERO).plan(&PlanInput::new(replicas));
    plan.steps.retain(|s| !matches!(s, Step::Pause(_)));
    w.plan = plan;
    let engine = w.engine("ratio");
    let report = engine.run(w.request(support::release(NEW))).await.expect("report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{test}: {:?}", report.cause);
    let stable = crate::engine::deployment(&w.s, "stable").await.expect("stable");
    assert_eq!(crate::engine::version_of(&stable).as_deref(), Some(NEW));
    assert!(crate::engine::complete(&stable, i32::try_from(replicas).unwrap()), "{:?}", stable.status);
    w.s.cleanup().await;
}

#[tokio::test]
async fn the_default_canary_succeeds_behind_the_replica_ratio_router_at_4_replicas() {
    default_canary_by_replica_ratio("ratio-4", 4).await;
}

#[tokio::test]
async fn the_default_canary_succeeds_behind_the_replica_ratio_router_at_10_replicas() {
    default_canary_by_replica_ratio("ratio-10", 10).await;
}

#[tokio::test]
async fn a_users_service_keeps_everything_but_its_track_label_through_blue_green() {
    use deploy_core::strategy::BlueGreen;
    const SERVICE: Kind = Kind { group: "", version: "v1", kind: "Service", plural: "services" };
    let mut w = World::new("svc-survives", Strat::BlueGreen, Route::ServiceSelector).await;
    let ns = w.s.namespace.clone();
    let mut current = read(&w.s, &SERVICE, "web").await;
    // The user's Service: their own labels, annotations, session affinity and selector label.
    current["metadata"]["labels"]["team"] = json!("shop");
    current["metadata"]["annotations"] = json!({"external-dns.alpha.kubernetes.io/hostname": "web.example.com"});
    current["spec"]["sessionAffinity"] = json!("ClientIP");
    current["spec"]["selector"]["tier"] = json!("frontend");
    replace_object(&w, &SERVICE, current).await;
    let before = users_part(&read(&w.s, &SERVICE, "web").await);
    assert_eq!(before["metadata"]["namespace"], ns.as_str());
    w.error_rate(0.001);
    w.plan = BlueGreen::default()
        .scale_down_delay(deploy_core::model::HumanDuration::ZERO)
        .plan(&PlanInput::new(crate::engine::REPLICAS).live_track(Track::Blue));
    let report = w.engine("selector").run(w.request(support::release(NEW))).await.expect("report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let mut after = users_part(&read(&w.s, &SERVICE, "web").await);
    assert_eq!(after["spec"]["selector"]["deploy-rs.io/track"], "green", "the switch happened");
    after["spec"]["selector"]["deploy-rs.io/track"] = json!("blue");
    assert_eq!(after, before, "only the selector's track label changed");
    w.s.cleanup().await;
}
