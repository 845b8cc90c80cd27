//! deploy-core's rollout engine, unmodified, running each strategy on Kubernetes
//! through `kube::Client` over the stateful fake API server: happy paths and
//! failures (pods never ready, 409 on update, 500 during the traffic switch,
//! watches that end and are re-established), with DESIGN.md's invariants checked
//! from the requests the server saw and the objects it holds at the end.

use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::{EngineConfig, RetryPolicy, RolloutEngine, RolloutReport, RolloutRequest};
use deploy_core::model::{DeploymentStatus, HumanDuration, Namespace, Percent, Track};
use deploy_core::plan::{Plan, Step};
use deploy_core::strategy::{BlueGreen, Canary, PlanInput, RollingUpdate, Strategy};
use deploy_core::traffic::TrafficRouter;
use http::Method;
use serde_json::json;

use crate::cluster::Cluster;
use crate::fixtures::{self, fake_api};
use crate::labels;
use crate::manifest::{DeploymentOptions, ServiceOptions, deployment, service};
use crate::platform::{KubePlatform, PlatformOptions};
use crate::router::{GatewayRouter, IstioRouter, ServiceSelectorRouter};
use crate::state::{KubeHistoryStore, KubeStateStore};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";
const SERVICE: &str = "/api/v1/namespaces/shop/services/web";
const VIRTUAL_SERVICE: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web";
const HTTP_ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Rolling,
    BlueGreen,
    CanaryReplicaRatio,
    CanaryIstio,
    CanaryGateway,
}

const ZERO: HumanDuration = HumanDuration::ZERO;

fn pct(v: u8) -> Percent {
    Percent::new(v).unwrap()
}

impl Setup {
    const ALL: [Setup; 5] =
        [Setup::Rolling, Setup::BlueGreen, Setup::CanaryReplicaRatio, Setup::CanaryIstio, Setup::CanaryGateway];

    fn plan(self, canary_steps: &[u8]) -> Plan {
        let steps: Vec<Step> = canary_steps.iter().map(|w| Step::SetWeight(pct(*w))).collect();
        match self {
            Setup::Rolling => RollingUpdate::default().plan(&PlanInput::new(3)),
            Setup::BlueGreen => {
                BlueGreen::default().scale_down_delay(ZERO).plan(&PlanInput::new(3).live_track(Track::Blue))
            }
            _ => Canary::with_steps(steps).scale_down_delay(ZERO).plan(&PlanInput::new(4)),
        }
    }

    fn old_track(self) -> Track {
        if self == Setup::BlueGreen { Track::Blue } else { Track::Stable }
    }
}

struct World {
    fake: fake_api::FakeApi,
    engine: RolloutEngine,
    plan: Plan,
}

fn world(setup: Setup, canary_steps: &[u8], before: impl FnOnce(&fake_api::FakeApi)) -> World {
    let (client, fake) = fake_api::start();
    let spec = fixtures::spec();
    let old = setup.old_track();
    let replicas = if setup == Setup::BlueGreen || setup == Setup::Rolling { 3 } else { 4 };
    let running = deployment(
        &spec,
        &DeploymentOptions::default().track(old).release(fixtures::release("1.4.1")).replicas(replicas),
    );
    fake.seed(&format!("{DEPLOYMENTS}/web-{old}"), serde_json::to_value(running).unwrap());
    let selects = if setup == Setup::BlueGreen {
        ServiceOptions::default().track(Track::Blue)
    } else {
        ServiceOptions::default()
    };
    fake.seed(SERVICE, serde_json::to_value(service(&spec, &selects)).unwrap());
    let app = spec.id();
    let cluster = Cluster::new(client);
    let router: Option<Arc<dyn TrafficRouter>> = match setup {
        Setup::BlueGreen => Some(Arc::new(ServiceSelectorRouter::new(cluster.clone()))),
        Setup::CanaryIstio => {
            let vs = crate::manifest::virtual_service(&app, &crate::manifest::VirtualServiceOptions::default());
            fake.seed(VIRTUAL_SERVICE, serde_json::to_value(vs).unwrap());
            Some(Arc::new(IstioRouter::new(cluster.clone()).api_version("v1")))
        }
        Setup::CanaryGateway => {
            fake.seed(HTTP_ROUTE, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": [{"name": "web-stable", "port": 80, "weight": 100}]}]}}));
            Some(Arc::new(GatewayRouter::new(cluster.clone(), 80)))
        }
        Setup::Rolling | Setup::CanaryReplicaRatio => None,
    };
    before(&fake);
    let config = EngineConfig::default()
        .step_deadline(Duration::from_secs(8))
        .readiness_deadline(Duration::from_secs(4))
        .retry(RetryPolicy::new(3, Duration::from_millis(10), Duration::from_millis(40)))
        .lock_ttl(Duration::from_secs(30))
        .holder("engine-test");
    let mut builder = RolloutEngine::builder(
        Arc::new(KubePlatform::new(cluster.clone(), PlatformOptions::default())),
        Arc::new(KubeStateStore::new(cluster.clone())),
        Arc::new(KubeHistoryStore::new(cluster, Namespace::new("shop").unwrap())),
    )
    .config(config);
    if let Some(router) = router {
        builder = builder.router(router);
    }
    World { fake, engine: builder.build(), plan: setup.plan(canary_steps) }
}

async fn run(w: &World) -> RolloutReport {
    let request = RolloutRequest::new(fixtures::spec(), fixtures::release("1.4.2"), w.plan.clone())
        .from(fixtures::release("1.4.1"));
    fake_api::within(w.engine.run(request)).await.expect("the engine returns a report")
}

/// The tracks a router write sends traffic to.
fn routed_tracks(r: &fake_api::Logged) -> Vec<String> {
    let Some(body) = &r.body else { return Vec::new() };
    if r.path == SERVICE && r.method == Method::PATCH {
        return body["spec"]["selector"][labels::TRACK].as_str().map(|t| vec![t.to_owned()]).unwrap_or_default();
    }
    if r.path == VIRTUAL_SERVICE && r.method == Method::PUT {
        return body["spec"]["http"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|route| route["route"].as_array().cloned().unwrap_or_default())
            .filter(|d| d["weight"].as_i64().is_none_or(|w| w > 0))
            .filter_map(|d| d["destination"]["subset"].as_str().map(str::to_owned))
            .collect();
    }
    if r.path == HTTP_ROUTE && r.method == Method::PUT {
        return body["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["backendRefs"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["weight"].as_i64().is_none_or(|w| w > 0))
            .filter_map(|b| b["name"].as_str().and_then(|n| n.strip_prefix("web-")).map(str::to_owned))
            .collect();
    }
    Vec::new()
}

/// Invariant 1: every router write that succeeded sent traffic only to tracks
/// whose Deployment was ready when the write arrived.
fn assert_traffic_only_to_ready(fake: &fake_api::FakeApi) {
    for r in fake.log().iter().filter(|r| r.code < 300) {
        for track in routed_tracks(r) {
            assert!(
                r.ready.contains(&format!("web-{track}")),
                "{} {} routed to {track} while ready = {:?}",
                r.method,
                r.path,
                r.ready
            );
        }
    }
}

/// The traffic split the routing object gives at the end, as (track, weight).
fn final_traffic(setup: Setup, fake: &fake_api::FakeApi) -> Vec<(String, i64)> {
    match setup {
        Setup::BlueGreen => {
            vec![(fake.object(SERVICE).unwrap()["spec"]["selector"][labels::TRACK].as_str().unwrap().to_owned(), 100)]
        }
        Setup::CanaryIstio => {
            let vs = fake.object(VIRTUAL_SERVICE).unwrap();
            let primary =
                vs["spec"]["http"].as_array().unwrap().iter().find(|r| r["name"] == "primary").unwrap().clone();
            primary["route"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| (d["destination"]["subset"].as_str().unwrap().to_owned(), d["weight"].as_i64().unwrap_or(100)))
                .filter(|(_, w)| *w > 0)
                .collect()
        }
        Setup::CanaryGateway => {
            let route = fake.object(HTTP_ROUTE).unwrap();
            route["spec"]["rules"][0]["backendRefs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b["name"].as_str().unwrap().trim_start_matches("web-").to_owned(),
                        b["weight"].as_i64().unwrap_or(1),
                    )
                })
                .filter(|(_, w)| *w > 0)
                .collect()
        }
        Setup::Rolling | Setup::CanaryReplicaRatio => {
            // One Service over every track: traffic follows the running replicas.
            ["stable", "canary"]
                .iter()
                .filter_map(|t| {
                    fake.object(&format!("{DEPLOYMENTS}/web-{t}"))
                        .map(|d| ((*t).to_owned(), d["spec"]["replicas"].as_i64().unwrap_or(0)))
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        }
    }
}

fn running_version(fake: &fake_api::FakeApi, track: &str) -> Option<String> {
    let d = fake.object(&format!("{DEPLOYMENTS}/web-{track}"))?;
    d["spec"]["template"]["metadata"]["labels"][labels::VERSION].as_str().map(str::to_owned)
}

#[tokio::test]
async fn every_strategy_rolls_out_on_the_fake_cluster() {
    for setup in Setup::ALL {
        let w = world(setup, &[25, 50], |_| {});
        let report = run(&w).await;
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{setup:?}: {:?}", report.cause);
        assert_traffic_only_to_ready(&w.fake);
        let final_track = w.plan.final_track.as_str();
        assert_eq!(running_version(&w.fake, final_track).as_deref(), Some("1.4.2"), "{setup:?}");
        let traffic = final_traffic(setup, &w.fake);
        assert_eq!(
            traffic.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            [final_track],
            "{setup:?}: {traffic:?}"
        );
        for track in w.plan.tracks().into_iter().filter(|t| t.as_str() != final_track) {
            let left = w.fake.object(&format!("{DEPLOYMENTS}/web-{track}"));
            assert!(left.is_none_or(|d| d["spec"]["replicas"] == 0), "{setup:?}: {track} still runs");
        }
        assert!(
            w.fake.object("/api/v1/namespaces/shop/configmaps/deploy-rs-state-web").is_none(),
            "{setup:?}: progress cleared"
        );
        assert!(
            w.fake.object("/apis/coordination.k8s.io/v1/namespaces/shop/leases/deploy-rs-lock-web").is_none(),
            "{setup:?}: lock released"
        );
        let watches = w.fake.log().iter().filter(|r| r.is_watch() && r.path == DEPLOYMENTS).count();
        assert!(watches >= 1, "{setup:?}: readiness came from watches");
    }
}

#[tokio::test]
async fn a_new_track_that_never_gets_ready_is_rolled_back_to_the_old_release() {
    for setup in Setup::ALL {
        let w = world(setup, &[25, 50], |fake| fake.never_ready("1.4.2"));
        let report = run(&w).await;
        assert!(
            matches!(report.status, DeploymentStatus::RolledBack | DeploymentStatus::Failed),
            "{setup:?}: {:?}",
            report.status
        );
        assert_traffic_only_to_ready(&w.fake);
        let old = setup.old_track().as_str();
        let traffic = final_traffic(setup, &w.fake);
        assert_eq!(traffic.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), [old], "{setup:?}: {traffic:?}");
        assert_eq!(running_version(&w.fake, old).as_deref(), Some("1.4.1"), "{setup:?}: the old release serves");
        let new = w.plan.new_track.as_str();
        if new != old {
            let left = w.fake.object(&format!("{DEPLOYMENTS}/web-{new}"));
            assert!(left.is_none_or(|d| d["spec"]["replicas"] == 0), "{setup:?}: nothing of the new release runs");
        }
    }
}

#[tokio::test]
async fn conflicts_on_update_and_a_500_during_the_switch_are_retried() {
    for setup in [Setup::BlueGreen, Setup::CanaryIstio, Setup::CanaryGateway] {
        let (switch_method, switch_path) = match setup {
            Setup::BlueGreen => (Method::PATCH, SERVICE),
            Setup::CanaryIstio => (Method::PUT, VIRTUAL_SERVICE),
            _ => (Method::PUT, HTTP_ROUTE),
        };
        let new = if setup == Setup::BlueGreen { "green" } else { "canary" };
        let w = world(setup, &[25, 50], |fake| {
            fake.fail(Method::PATCH, &format!("{DEPLOYMENTS}/web-{new}"), 409, 2);
            fake.fail(switch_method.clone(), switch_path, 500, 1);
        });
        let report = run(&w).await;
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{setup:?}: {:?}", report.cause);
        let log = w.fake.log();
        let codes: Vec<u16> = log
            .iter()
            .filter(|r| r.path == format!("{DEPLOYMENTS}/web-{new}") && r.method == Method::PATCH)
            .map(|r| r.code)
            .take(3)
            .collect();
        assert_eq!(&codes[..2], [409, 409], "{setup:?}");
        assert!(log.iter().any(|r| r.path == switch_path && r.code == 500), "{setup:?}: the fault was hit");
        assert_traffic_only_to_ready(&w.fake);
    }
}

#[tokio::test]
async fn dropped_watches_are_re_established_and_the_rollout_completes() {
    for setup in [Setup::Rolling, Setup::BlueGreen, Setup::CanaryIstio] {
        let w = world(setup, &[50], |fake| fake.drop_watches(3));
        let report = run(&w).await;
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{setup:?}: {:?}", report.cause);
        assert_traffic_only_to_ready(&w.fake);
        let watches: Vec<_> = w
            .fake
            .log()
            .into_iter()
            .filter(|r| r.is_watch() && r.path == DEPLOYMENTS)
            .map(|r| {
                format!(
                    "{:?}",
                    r.query.iter().filter(|(k, _)| k == "fieldSelector" || k == "resourceVersion").collect::<Vec<_>>()
                )
            })
            .collect();
        let repeated = watches.windows(2).any(|pair| pair[0] == pair[1]);
        assert!(repeated, "{setup:?}: a dropped watch was re-established from the same resourceVersion: {watches:#?}");
    }
}

#[tokio::test]
async fn request_budget_of_a_blue_green_rollout_and_of_one_canary_step() {
    let count = |w: &World| w.fake.log().iter().filter(|r| !r.is_watch()).count();
    let bg = world(Setup::BlueGreen, &[], |_| {});
    assert_eq!(run(&bg).await.status, DeploymentStatus::Succeeded);
    let blue_green = count(&bg);
    let one = world(Setup::CanaryIstio, &[10], |_| {});
    assert_eq!(run(&one).await.status, DeploymentStatus::Succeeded);
    let two = world(Setup::CanaryIstio, &[10, 20], |_| {});
    assert_eq!(run(&two).await.status, DeploymentStatus::Succeeded);
    let step = count(&two) - count(&one);
    // The pinned budget (watch requests not counted; each wait adds one or two).
    // Blue-green: lock 2, state 4, record 2, what runs before the start (status of
    // both colours 2, the Service's selector 1), ownership read + apply + wait 4,
    // status reads, switch and read-back, remove 2 (ownership read, delete with a
    // UID precondition), clear, release. One canary step: scale 1, wait's two
    // lists, status of both tracks 2, VirtualService read-modify-write 2,
    // read-back 1, progress save 1. A change here is a change in API traffic.
    assert_eq!((blue_green, step), (BLUE_GREEN_REQUESTS, CANARY_STEP_REQUESTS));
}

const BLUE_GREEN_REQUESTS: usize = 26;
const CANARY_STEP_REQUESTS: usize = 9;

/// Issue 17: the default canary's weights (10 → 25 → 50 → 75 → 100) succeed through
/// the engine behind the replica-ratio router at 4 and at 10 replicas: the router
/// rounds to replicas, the engine expects the rounded split back, and the stable
/// track ends with every replica of the new release.
#[tokio::test]
async fn the_default_canary_succeeds_behind_the_replica_ratio_router_at_4_and_10_replicas() {
    use crate::router::ReplicaRatioRouter;
    for replicas in [4u32, 10] {
        let (client, fake) = fake_api::start();
        let spec = fixtures::spec();
        let running = deployment(
            &spec,
            &DeploymentOptions::default().track(Track::Stable).release(fixtures::release("1.4.1")).replicas(replicas),
        );
        fake.seed(&format!("{DEPLOYMENTS}/web-stable"), serde_json::to_value(running).unwrap());
        fake.seed(SERVICE, serde_json::to_value(service(&spec, &ServiceOptions::default())).unwrap());
        let cluster = Cluster::new(client);
        let config = EngineConfig::default()
            .step_deadline(Duration::from_secs(8))
            .readiness_deadline(Duration::from_secs(4))
            .retry(RetryPolicy::new(3, Duration::from_millis(10), Duration::from_millis(40)))
            .holder("engine-test");
        let engine = RolloutEngine::builder(
            Arc::new(KubePlatform::new(cluster.clone(), PlatformOptions::default())),
            Arc::new(KubeStateStore::new(cluster.clone())),
            Arc::new(KubeHistoryStore::new(cluster.clone(), Namespace::new("shop").unwrap())),
        )
        .router(Arc::new(ReplicaRatioRouter::new(cluster, replicas)))
        .config(config)
        .build();
        let weights = [10, 25, 50, 75, 100].map(|w| Step::SetWeight(pct(w)));
        let plan = Canary::with_steps(weights.to_vec()).scale_down_delay(ZERO).plan(&PlanInput::new(replicas));
        let request = RolloutRequest::new(spec, fixtures::release("1.4.2"), plan).from(fixtures::release("1.4.1"));
        let report = fake_api::within(engine.run(request)).await.expect("a report");
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{replicas} replicas: {:?}", report.cause);
        let rounded: Vec<&String> =
            report.record.steps.iter().flat_map(|s| &s.details).filter(|d| d.contains("requested")).collect();
        if replicas == 10 {
            assert!(
                rounded.iter().any(|d| d.starts_with(
                    "traffic stable=75% canary=25% requested; the router can produce stable=70% canary=30%"
                )),
                "{rounded:#?}"
            );
        }
        assert_eq!(running_version(&fake, "stable").as_deref(), Some("1.4.2"), "{replicas} replicas");
        let stable = fake.object(&format!("{DEPLOYMENTS}/web-stable")).unwrap();
        assert_eq!(stable["spec"]["replicas"], replicas, "{replicas} replicas");
        let canary = fake.object(&format!("{DEPLOYMENTS}/web-canary"));
        assert!(canary.is_none_or(|d| d["spec"]["replicas"] == 0), "{replicas} replicas: the canary is gone");
    }
}

/// Issue 17, item 4: a mirror step through the engine and the Istio router: the
/// VirtualService gets the router's own mirror route while the canary runs, and it
/// is gone after the promotion.
#[tokio::test]
async fn a_mirror_step_mirrors_through_istio_until_promotion() {
    let mut w = world(Setup::CanaryIstio, &[], |_| {});
    let steps = vec![
        Step::SetWeight(pct(10)),
        Step::Mirror(deploy_core::traffic::Mirror::new(pct(20))),
        Step::SetWeight(pct(50)),
    ];
    w.plan = Canary::with_steps(steps).scale_down_delay(ZERO).plan(&PlanInput::new(4));
    let report = run(&w).await;
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_traffic_only_to_ready(&w.fake);
    let mirrored: Vec<serde_json::Value> = w
        .fake
        .log()
        .iter()
        .filter(|r| r.path == VIRTUAL_SERVICE && r.method == Method::PUT && r.code < 300)
        .filter_map(|r| {
            r.body.as_ref()?["spec"]["http"].as_array()?.iter().find(|h| h["name"] == "deploy-rs-mirror").cloned()
        })
        .collect();
    let first = mirrored.first().expect("the mirror route was written");
    assert_eq!(first["mirror"]["subset"], "canary");
    assert_eq!(first["mirrorPercentage"]["value"], 20.0);
    assert_eq!(first["match"], json!([{"method": {"exact": "GET"}}, {"method": {"exact": "HEAD"}}]));
    assert!(mirrored.iter().any(|m| m["route"][1]["weight"] == 50), "the mirror route followed the split");
    let end = w.fake.object(VIRTUAL_SERVICE).unwrap();
    assert!(end["spec"]["http"].as_array().unwrap().iter().all(|h| h["name"] != "deploy-rs-mirror"), "{end:#}");
}
