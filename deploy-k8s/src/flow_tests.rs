//! The platform and routers driven in the order the rollout engine drives them,
//! over the scripted API server: the request counts of one blue-green switch and
//! one canary step, and the invariant that traffic moves only after the target
//! track was seen ready (from the requests the mock saw).

use std::time::Duration;

use deploy_core::model::{Percent, Track, TrafficSplit};
use deploy_core::platform::Platform;
use deploy_core::traffic::TrafficRouter;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::fixtures::{self, mock::*};
use crate::platform::KubePlatform;
use crate::rollout_status::tests::deployment_json;
use crate::router::{IstioRouter, ServiceSelectorRouter};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";
const PODS: &str = "/api/v1/namespaces/shop/pods";

fn track(name: &str, generation: i64, observed: i64, counts: (i64, i64, i64, i64)) -> Value {
    deployment_json(name, generation, observed, 3, counts, "ReplicaSetUpdated")
}

fn watch_until_ready(name: &str, track_label: &str) -> Vec<Expect> {
    vec![
        Expect::get(DEPLOYMENTS).query("fieldSelector", &format!("metadata.name={name}")).ok(list(
            "DeploymentList",
            "apps/v1",
            "200",
            vec![track(name, 1, 0, (0, 0, 0, 0))],
        )),
        Expect::get(PODS)
            .query("labelSelector", &format!("app.kubernetes.io/name=web,deploy-rs.io/track={track_label}"))
            .ok(list("PodList", "v1", "200", vec![])),
        Expect::get(DEPLOYMENTS).watch().query("fieldSelector", &format!("metadata.name={name}")).events(vec![
            event("MODIFIED", track(name, 1, 1, (3, 3, 0, 0))),
            event("MODIFIED", track(name, 1, 1, (3, 3, 3, 3))),
        ]),
        Expect::get(PODS).watch().hang(),
    ]
}

fn position(seen: &[Seen], f: impl Fn(&Seen) -> bool) -> usize {
    seen.iter().position(f).expect("request not seen")
}

#[tokio::test]
async fn blue_green_switch_happens_only_after_green_is_ready() {
    let service = "/api/v1/namespaces/shop/services/web";
    let green_selector = json!({"app.kubernetes.io/name": "web", "deploy-rs.io/track": "green"});
    let mut script =
        vec![Expect::patch(&format!("{DEPLOYMENTS}/web-green")).ok(track("web-green", 1, 0, (0, 0, 0, 0)))];
    script.extend(watch_until_ready("web-green", "green"));
    script.extend([
        Expect::patch(service).body(move |b| assert_eq!(b["spec"]["selector"], green_selector)).ok(json!({
            "metadata": {"name": "web", "namespace": "shop"}, "spec": {"selector": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "green"}}})),
        Expect::get(service).ok(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "green"}}})),
        Expect::delete(&format!("{DEPLOYMENTS}/web-blue")).ok(json!({"kind": "Status", "status": "Success", "metadata": {}})),
    ]);
    let (client, mock) = start(script);
    let cluster = Cluster::new(client);
    let platform = KubePlatform::new(cluster.clone());
    let router = ServiceSelectorRouter::new(cluster.clone());
    let app = fixtures::app_id();
    within(async {
        platform.apply(&fixtures::spec(), Track::Green, &fixtures::release("1.4.2"), 3).await.unwrap();
        platform.wait_ready(&app, Track::Green, Duration::from_secs(3)).await.unwrap();
        router.set_weights(&app, &TrafficSplit::all(Track::Green)).await.unwrap();
        assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::all(Track::Green));
        platform.remove(&app, Track::Blue).await.unwrap();
    })
    .await;
    drop((cluster, platform, router));
    let seen = mock.finish().await;
    let ready_event = position(&seen, |r| r.path == DEPLOYMENTS && r.is_watch());
    let switch = position(&seen, |r| r.path == service && r.method == http::Method::PATCH);
    assert!(ready_event < switch, "the Service switched only after green's watch reported it ready");
    let applied = &seen[0].body.as_ref().unwrap()["spec"]["template"]["metadata"]["labels"];
    assert_eq!(applied["deploy-rs.io/track"], "green");
    // apply 1 + wait 4 (list and watch of the Deployment and of its pods) +
    // switch 1 + read-back 1 + remove 1.
    assert_eq!(seen.len(), 8, "{seen:#?}");
}

#[tokio::test]
async fn one_istio_canary_step_is_wait_then_cas_write_then_read_back() {
    let vs = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web";
    let vs_json = |rv: &str, canary: i64| {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv},
        "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100 - canary},
            {"destination": {"host": "web", "subset": "canary"}, "weight": canary}]}]}})
    };
    let mut script =
        vec![Expect::patch(&format!("{DEPLOYMENTS}/web-canary")).ok(track("web-canary", 1, 0, (0, 0, 0, 0)))];
    script.extend(watch_until_ready("web-canary", "canary"));
    script.extend([
        Expect::get(vs).ok(vs_json("7", 0)),
        Expect::put(vs).body(|b| assert_eq!(b["spec"]["http"][0]["route"][1]["weight"], 10)).ok(vs_json("8", 10)),
        Expect::get(vs).ok(vs_json("8", 10)),
    ]);
    let (client, mock) = start(script);
    let cluster = Cluster::new(client);
    let platform = KubePlatform::new(cluster.clone());
    let router = IstioRouter::new(cluster.clone());
    let app = fixtures::app_id();
    let ten = TrafficSplit::canary(Percent::new(10).unwrap());
    within(async {
        platform.apply(&fixtures::spec(), Track::Canary, &fixtures::release("1.4.2"), 1).await.unwrap();
        platform.wait_ready(&app, Track::Canary, Duration::from_secs(3)).await.unwrap();
        router.set_weights(&app, &ten).await.unwrap();
        assert_eq!(router.weights(&app).await.unwrap(), ten);
    })
    .await;
    drop((cluster, platform, router));
    let seen = mock.finish().await;
    let ready_event = position(&seen, |r| r.path == DEPLOYMENTS && r.is_watch());
    let write = position(&seen, |r| r.path == vs && r.method == http::Method::PUT);
    assert!(ready_event < write, "weights moved only after the canary was ready");
    // apply 1 + wait 4 + read-modify-write 2 + read-back 1.
    assert_eq!(seen.len(), 8, "{seen:#?}");
}
