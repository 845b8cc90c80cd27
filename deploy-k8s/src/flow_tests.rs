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
use crate::platform::{KubePlatform, PlatformOptions};
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

/// `object` with deploy-rs's ownership label and the given UID.
fn owned(mut object: Value, uid: &str) -> Value {
    object["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("deploy-rs");
    object["metadata"]["uid"] = json!(uid);
    object
}

/// A GET of `path` answered 404.
fn absent(path: &str) -> Expect {
    Expect::get(path).status(404, "NotFound", "not found")
}

fn position(seen: &[Seen], f: impl Fn(&Seen) -> bool) -> usize {
    seen.iter().position(f).expect("request not seen")
}

#[tokio::test]
async fn blue_green_switch_happens_only_after_green_is_ready() {
    let service = "/api/v1/namespaces/shop/services/web";
    // Only the track label of the selector is written (the user's other labels stay).
    let green_selector = json!({"deploy-rs.io/track": "green"});
    let mut script = vec![
        absent(&format!("{DEPLOYMENTS}/web-green")),
        Expect::patch(&format!("{DEPLOYMENTS}/web-green")).ok(track("web-green", 1, 0, (0, 0, 0, 0))),
    ];
    script.extend(watch_until_ready("web-green", "green"));
    script.extend([
        Expect::patch(service).body(move |b| assert_eq!(b["spec"]["selector"], green_selector)).ok(json!({
            "metadata": {"name": "web", "namespace": "shop"}, "spec": {"selector": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "green"}}})),
        Expect::get(service).ok(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app.kubernetes.io/name": "web", "deploy-rs.io/track": "green"}}})),
        Expect::get(&format!("{DEPLOYMENTS}/web-blue")).ok(owned(track("web-blue", 1, 1, (3, 3, 3, 3)), "uid-web-blue")),
        Expect::delete(&format!("{DEPLOYMENTS}/web-blue"))
            .body(|b| assert_eq!(b["preconditions"]["uid"], "uid-web-blue", "deleted only with its identity"))
            .ok(json!({"kind": "Status", "status": "Success", "metadata": {}})),
    ]);
    let (client, mock) = start(script);
    let cluster = Cluster::new(client);
    let platform = KubePlatform::new(cluster.clone(), PlatformOptions::default());
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
    let applied = &seen[1].body.as_ref().unwrap()["spec"]["template"]["metadata"]["labels"];
    assert_eq!(applied["deploy-rs.io/track"], "green");
    // apply 2 (ownership read, apply) + wait 4 (list and watch of the Deployment and
    // of its pods) + switch 1 + read-back 1 + remove 2 (ownership read, delete with
    // a UID precondition).
    assert_eq!(seen.len(), 10, "{seen:#?}");
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
    let mut script = vec![
        absent(&format!("{DEPLOYMENTS}/web-canary")),
        Expect::patch(&format!("{DEPLOYMENTS}/web-canary")).ok(track("web-canary", 1, 0, (0, 0, 0, 0))),
    ];
    script.extend(watch_until_ready("web-canary", "canary"));
    script.extend([
        Expect::get(vs).ok(vs_json("7", 0)),
        Expect::put(vs).body(|b| assert_eq!(b["spec"]["http"][0]["route"][1]["weight"], 10)).ok(vs_json("8", 10)),
        Expect::get(vs).ok(vs_json("8", 10)),
    ]);
    let (client, mock) = start(script);
    let cluster = Cluster::new(client);
    let platform = KubePlatform::new(cluster.clone(), PlatformOptions::default());
    let router = IstioRouter::new(cluster.clone()).api_version("v1");
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
    // apply 2 (ownership read, apply) + wait 4 + read-modify-write 2 + read-back 1.
    assert_eq!(seen.len(), 9, "{seen:#?}");
}

mod over_fake_cluster {
    use std::time::Duration;

    use deploy_core::error::Classify;
    use deploy_core::model::{Track, TrafficSplit};
    use deploy_core::platform::{Platform, PlatformError};
    use deploy_core::state::{RolloutState, StateStore};
    use deploy_core::traffic::TrafficRouter;
    use http::Method;

    use crate::cluster::Cluster;
    use crate::fixtures::{self, fake_api};
    use crate::manifest::{ServiceOptions, service};
    use crate::platform::KubePlatform;
    use crate::router::ServiceSelectorRouter;
    use crate::state::KubeStateStore;

    const SERVICE: &str = "/api/v1/namespaces/shop/services/web";

    fn setup() -> (fake_api::FakeApi, KubePlatform, ServiceSelectorRouter, KubeStateStore) {
        let (client, fake) = fake_api::start();
        let svc = service(&fixtures::spec(), &ServiceOptions::default().track(Track::Blue));
        fake.seed(SERVICE, serde_json::to_value(svc).unwrap());
        let cluster = Cluster::new(client);
        (
            fake,
            KubePlatform::new(cluster.clone(), crate::PlatformOptions::default()),
            ServiceSelectorRouter::new(cluster.clone()),
            KubeStateStore::new(cluster),
        )
    }

    /// Invariant 1 from the requests: every Service write selected a track whose
    /// Deployment was ready when the write arrived.
    fn assert_switches_only_to_ready_tracks(log: &[fake_api::Logged]) {
        for r in log.iter().filter(|r| r.path == SERVICE && r.method == Method::PATCH) {
            let track = r.body.as_ref().unwrap()["spec"]["selector"]["deploy-rs.io/track"].as_str().unwrap();
            assert!(r.ready.contains(&format!("web-{track}")), "switched to {track} while ready = {:?}", r.ready);
        }
    }

    #[tokio::test]
    async fn blue_green_with_state_and_lock_keeps_traffic_on_ready_tracks() {
        let (fake, platform, router, store) = setup();
        let app = fixtures::app_id();
        let spec = fixtures::spec();
        fake_api::within(async {
            platform.apply(&spec, Track::Blue, &fixtures::release("1.4.1"), 2).await.unwrap();
            platform.wait_ready(&app, Track::Blue, Duration::from_secs(5)).await.unwrap();
            let before = fake.log().len();
            let lease = store
                .acquire_lock(&app, &deploy_core::state::LockRequest::new("test", Duration::from_secs(30)))
                .await
                .unwrap();
            let record = deploy_core::model::DeploymentRecord::new(
                app.clone(),
                deploy_core::model::Environment::Production,
                None,
                fixtures::release("1.4.2"),
                deploy_core::model::StrategyKind::BlueGreen,
            );
            let mut state = RolloutState::new(record, TrafficSplit::all(Track::Blue));
            let rev = store.save(&app, &state, None).await.unwrap();
            platform.apply(&spec, Track::Green, &fixtures::release("1.4.2"), 2).await.unwrap();
            platform.wait_ready(&app, Track::Green, Duration::from_secs(5)).await.unwrap();
            router.set_weights(&app, &TrafficSplit::all(Track::Green)).await.unwrap();
            assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::all(Track::Green));
            state = state.at_step(1, TrafficSplit::all(Track::Green));
            let rev = store.save(&app, &state, Some(&rev)).await.unwrap();
            platform.remove(&app, Track::Blue).await.unwrap();
            store.clear(&app, &rev).await.unwrap();
            store.release_lock(&lease).await.unwrap();
            let rollout = &fake.log()[before..];
            let shown: Vec<_> = rollout.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
            // lock 2 (read, create) + save 1 + apply 2 (ownership read, apply) + wait's
            // two lists (Deployment, pods) + switch 1 + read-back 1 + save 1 + remove 2
            // (ownership read, delete) + clear 1 + release 2 (read, delete) ...
            assert_eq!(rollout.iter().filter(|r| !r.is_watch()).count(), 15, "{shown:#?}");
            // ... and the watches that delivered readiness: the Deployment's, and the
            // pods' if it was opened before the Deployment became ready.
            let watches = rollout.iter().filter(|r| r.is_watch()).count();
            assert!((1..=2).contains(&watches), "{shown:#?}");
            assert!(
                rollout.iter().any(|r| r.is_watch() && r.path.ends_with("/deployments")),
                "ready came from a watch"
            );
        })
        .await;
        let log = fake.log();
        assert_switches_only_to_ready_tracks(&log);
        assert!(fake.object("/apis/apps/v1/namespaces/shop/deployments/web-blue").is_none());
        assert_eq!(fake.object(SERVICE).unwrap()["spec"]["selector"]["deploy-rs.io/track"], "green");
    }

    #[tokio::test]
    async fn a_green_that_never_gets_ready_is_doomed_and_traffic_stays_on_blue() {
        let (fake, platform, router, _) = setup();
        fake.never_ready("1.4.2");
        let app = fixtures::app_id();
        let spec = fixtures::spec();
        fake_api::within(async {
            platform.apply(&spec, Track::Blue, &fixtures::release("1.4.1"), 2).await.unwrap();
            platform.wait_ready(&app, Track::Blue, Duration::from_secs(5)).await.unwrap();
            platform.apply(&spec, Track::Green, &fixtures::release("1.4.2"), 2).await.unwrap();
            let err = platform.wait_ready(&app, Track::Green, Duration::from_secs(60)).await.unwrap_err();
            assert!(
                matches!(&err, PlatformError::Doomed { reason, .. } if reason.contains("CrashLoopBackOff")),
                "{err}"
            );
            // Roll back: remove what was new; blue keeps serving.
            platform.remove(&app, Track::Green).await.unwrap();
            assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::all(Track::Blue));
        })
        .await;
        let log = fake.log();
        assert!(!log.iter().any(|r| r.path == SERVICE && r.method == Method::PATCH), "no switch happened");
        assert!(fake.object("/apis/apps/v1/namespaces/shop/deployments/web-green").is_none());
        assert!(fake.object("/api/v1/namespaces/shop/pods/web-green-142-x2x9k").is_none(), "its pods went with it");
    }

    #[tokio::test]
    async fn a_500_during_the_switch_is_retryable_and_a_409_on_apply_is_retried() {
        let (fake, platform, router, _) = setup();
        let app = fixtures::app_id();
        fake.fail(Method::PATCH, "/apis/apps/v1/namespaces/shop/deployments/web-green", 409, 2);
        fake.fail(Method::PATCH, SERVICE, 500, 1);
        fake_api::within(async {
            platform.apply(&fixtures::spec(), Track::Green, &fixtures::release("1.4.2"), 1).await.unwrap();
            platform.wait_ready(&app, Track::Green, Duration::from_secs(5)).await.unwrap();
            let err = router.set_weights(&app, &TrafficSplit::all(Track::Green)).await.unwrap_err();
            assert!(err.is_retryable(), "{err}");
            assert_eq!(
                router.weights(&app).await.unwrap(),
                TrafficSplit::all(Track::Blue),
                "a failed switch changed nothing"
            );
            router.set_weights(&app, &TrafficSplit::all(Track::Green)).await.unwrap();
        })
        .await;
        let applies: Vec<u16> = fake
            .log()
            .iter()
            .filter(|r| r.path.ends_with("/web-green") && r.method == Method::PATCH)
            .map(|r| r.code)
            .collect();
        assert_eq!(applies, [409, 409, 201], "two conflicts, then the write");
        assert_switches_only_to_ready_tracks(&fake.log());
    }
}
