use super::*;
use crate::fixtures::{self, mock::*};
use crate::rollout_status::PROGRESS_DEADLINE_EXCEEDED;
use crate::rollout_status::tests::{deployment_json, pod_json};
use deploy_core::error::Classify;
use serde_json::json;

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";
const PODS: &str = "/api/v1/namespaces/shop/pods";
const CANARY_PODS: &str = "app.kubernetes.io/name=web,deploy-rs.io/track=canary";

fn platform(client: kube::Client) -> KubePlatform {
    KubePlatform::new(Cluster::new(client), PlatformOptions::default())
}

fn canary(generation: i64, observed: i64, counts: (i64, i64, i64, i64)) -> serde_json::Value {
    deployment_json("web-canary", generation, observed, 3, counts, "ReplicaSetUpdated")
}

fn deployment_list(items: Vec<serde_json::Value>, rv: &str) -> Expect {
    Expect::get(DEPLOYMENTS).query("fieldSelector", "metadata.name=web-canary").ok(list(
        "DeploymentList",
        "apps/v1",
        rv,
        items,
    ))
}

fn pod_list(items: Vec<serde_json::Value>) -> Expect {
    Expect::get(PODS).query("labelSelector", CANARY_PODS).ok(list("PodList", "v1", "300", items))
}

#[tokio::test]
async fn apply_builds_the_track_deployment_and_retries_a_conflict() {
    let check = |b: &serde_json::Value| {
        assert_eq!(b["metadata"]["name"], "web-canary");
        assert_eq!(b["spec"]["replicas"], 2);
        assert_eq!(b["spec"]["selector"]["matchLabels"]["deploy-rs.io/track"], "canary");
        assert_eq!(b["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"], "1.4.2");
    };
    let (client, mock) = start(vec![
        Expect::get(&format!("{DEPLOYMENTS}/web-canary")).status(404, "NotFound", "not found"),
        Expect::patch(&format!("{DEPLOYMENTS}/web-canary")).query("fieldManager", "deploy-rs").body(check).status(
            409,
            "Conflict",
            "Operation cannot be fulfilled on deployments.apps \"web-canary\": the object has been modified",
        ),
        Expect::patch(&format!("{DEPLOYMENTS}/web-canary")).body(check).ok(canary(2, 1, (3, 0, 3, 3))),
    ]);
    let p = platform(client);
    within(p.apply(&fixtures::spec(), Track::Canary, &fixtures::release("1.4.2"), 2)).await.unwrap();
    drop(p);
    assert_eq!(mock.finish().await.len(), 3, "ownership read, one conflict, one retry");
}

#[tokio::test]
async fn persistent_conflicts_and_server_errors_come_back_typed() {
    let (client, mock) = start(vec![
        Expect::get(&format!("{DEPLOYMENTS}/web-canary")).status(404, "NotFound", "not found"),
        Expect::patch(&format!("{DEPLOYMENTS}/web-canary")).status(409, "Conflict", "modified").repeat(),
    ]);
    let p = KubePlatform::new(Cluster::new(client), PlatformOptions::default().conflict_retries(2));
    let err = within(p.apply(&fixtures::spec(), Track::Canary, &fixtures::release("1.4.2"), 2)).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    drop(p);
    assert_eq!(mock.finish().await.len(), 4);

    let (client, mock) = start(vec![
        Expect::patch(&format!("{DEPLOYMENTS}/web-canary/scale")).status(
            404,
            "NotFound",
            "deployments.apps \"web-canary\" not found",
        ),
        Expect::get(&format!("{DEPLOYMENTS}/web-canary")).status(500, "InternalError", "etcdserver: leader changed"),
        Expect::get(&format!("{DEPLOYMENTS}/web-canary")).status(404, "NotFound", "not found"),
        Expect::get(&format!("{DEPLOYMENTS}/web-stable")).status(
            404,
            "NotFound",
            "deployments.apps \"web-stable\" not found",
        ),
    ]);
    let p = platform(client);
    let app = fixtures::app_id();
    assert!(matches!(within(p.scale(&app, Track::Canary, 1)).await, Err(PlatformError::NotFound { .. })));
    let err = within(p.status(&app, Track::Canary)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    within(p.remove(&app, Track::Canary)).await.unwrap();
    assert_eq!(within(p.status(&app, Track::Stable)).await.unwrap(), TrackStatus::absent());
    drop(p);
    mock.finish().await;
}

#[tokio::test]
async fn a_deployment_without_the_ownership_label_is_neither_taken_over_nor_deleted() {
    // `canary()` has no managed-by label: someone else's Deployment of that name.
    let (client, mock) = start(vec![
        Expect::get(&format!("{DEPLOYMENTS}/web-canary")).ok(canary(2, 2, (3, 3, 3, 3))),
        Expect::get(&format!("{DEPLOYMENTS}/web-canary")).ok(canary(2, 2, (3, 3, 3, 3))),
    ]);
    let p = platform(client);
    let err = within(p.apply(&fixtures::spec(), Track::Canary, &fixtures::release("1.4.2"), 2)).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("not managed by deploy-rs"), "{err}");
    let err = within(p.remove(&fixtures::app_id(), Track::Canary)).await.unwrap_err();
    assert!(err.to_string().contains("deployment shop/web-canary exists and is not managed by deploy-rs"), "{err}");
    drop(p);
    let seen = mock.finish().await;
    assert!(seen.iter().all(|r| r.method == http::Method::GET), "nothing written or deleted: {seen:#?}");

    // Adopting it is the caller's explicit choice.
    let (client, mock) = start(vec![
        Expect::get(&format!("{DEPLOYMENTS}/web-canary")).ok(canary(2, 2, (3, 3, 3, 3))),
        Expect::patch(&format!("{DEPLOYMENTS}/web-canary")).ok(canary(3, 2, (3, 3, 3, 3))),
    ]);
    let p = KubePlatform::new(Cluster::new(client), PlatformOptions::default().adopt_unowned(true));
    within(p.apply(&fixtures::spec(), Track::Canary, &fixtures::release("1.4.2"), 2)).await.unwrap();
    drop(p);
    mock.finish().await;
}

#[tokio::test]
async fn status_maps_counts_version_and_state() {
    let (client, mock) = start(vec![Expect::get(&format!("{DEPLOYMENTS}/web-canary")).ok(canary(4, 4, (4, 2, 3, 3)))]);
    let p = platform(client);
    let s = within(p.status(&fixtures::app_id(), Track::Canary)).await.unwrap();
    assert_eq!(s.release.as_ref().map(Version::as_str), Some("1.4.2"));
    assert_eq!((s.desired, s.updated, s.ready, s.available), (3, 2, 3, 3));
    assert_eq!(s.state, TrackState::Progressing);
    drop(p);
    mock.finish().await;
}

#[tokio::test]
async fn wait_ready_compares_generations_before_trusting_a_complete_looking_status() {
    let (client, mock) = start(vec![
        // Stale: generation 5 not yet observed, counts from the previous rollout.
        deployment_list(vec![canary(5, 4, (3, 3, 3, 3))], "104"),
        pod_list(vec![]),
        Expect::get(DEPLOYMENTS)
            .watch()
            .query("resourceVersion", "104")
            .events(vec![event("MODIFIED", canary(5, 5, (4, 1, 3, 3))), event("MODIFIED", canary(5, 5, (3, 3, 3, 3)))]),
        Expect::get(PODS).watch().hang(),
    ]);
    let p = platform(client);
    within(p.wait_ready(&fixtures::app_id(), Track::Canary, Duration::from_secs(3))).await.unwrap();
    drop(p);
    let seen = mock.finish().await;
    assert!(
        seen.iter().any(|r| r.path == DEPLOYMENTS && r.is_watch()),
        "ready came from the watch, not the stale list"
    );
    assert!(seen.iter().all(|r| r.method == http::Method::GET), "waiting never writes");
}

#[tokio::test]
async fn wait_ready_survives_a_dropped_watch() {
    let (client, mock) = start(vec![
        deployment_list(vec![canary(5, 5, (4, 1, 3, 3))], "105"),
        pod_list(vec![]),
        Expect::get(DEPLOYMENTS)
            .watch()
            .query("resourceVersion", "105")
            .events(vec![event("MODIFIED", canary(5, 5, (3, 3, 2, 2)))]), // then the stream ends
        Expect::get(DEPLOYMENTS)
            .watch()
            .query("resourceVersion", "105")
            .events(vec![event("MODIFIED", canary(5, 5, (3, 3, 3, 3)))]),
        Expect::get(PODS).watch().hang(),
    ]);
    let p = platform(client);
    within(p.wait_ready(&fixtures::app_id(), Track::Canary, Duration::from_secs(3))).await.unwrap();
    drop(p);
    let seen = mock.finish().await;
    assert_eq!(seen.iter().filter(|r| r.path == DEPLOYMENTS && r.is_watch()).count(), 2, "watch re-established");
}

#[tokio::test]
async fn wait_ready_fails_fast_on_doomed_pods_of_the_new_version_only() {
    let old_crashing = pod_json("web-canary-5c8d-aaaaa", "1.4.1", Some(("CrashLoopBackOff", "back-off 5m0s")), false);
    let new_pulling = pod_json("web-canary-6d9f-bbbbb", "1.4.2", Some(("ContainerCreating", "")), false);
    let new_missing = pod_json(
        "web-canary-6d9f-bbbbb",
        "1.4.2",
        Some((
            "ErrImagePull",
            "rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example.com/shop/web:1.4.2\": not found",
        )),
        false,
    );
    let (client, mock) = start(vec![
        deployment_list(vec![canary(5, 5, (4, 1, 3, 3))], "105"),
        pod_list(vec![old_crashing, new_pulling]),
        Expect::get(DEPLOYMENTS).watch().hang(),
        Expect::get(PODS).watch().events(vec![event("MODIFIED", new_missing)]),
    ]);
    let p = platform(client);
    let err = within(p.wait_ready(&fixtures::app_id(), Track::Canary, Duration::from_secs(60))).await.unwrap_err();
    match err {
        PlatformError::Doomed { track, reason, .. } => {
            assert_eq!(track, Track::Canary);
            assert!(reason.contains("web-canary-6d9f-bbbbb") && reason.contains("ErrImagePull"), "{reason}");
        }
        other => panic!("expected Doomed, got {other}"),
    }
    drop(p);
    mock.finish().await;
}

#[tokio::test]
async fn progress_deadline_is_doomed_missing_is_not_found_and_silence_times_out() {
    let (client, mock) = start(vec![
        deployment_list(vec![deployment_json("web-canary", 5, 5, 3, (4, 1, 3, 3), PROGRESS_DEADLINE_EXCEEDED)], "105"),
        pod_list(vec![]).optional(),
        Expect::get(PODS).watch().hang().optional(),
    ]);
    let p = platform(client);
    let err = within(p.wait_ready(&fixtures::app_id(), Track::Canary, Duration::from_secs(3))).await.unwrap_err();
    assert!(err.to_string().contains("exceeded its progress deadline"), "{err}");
    drop(p);
    mock.finish().await;

    let (client, mock) = start(vec![
        deployment_list(vec![], "105"),
        pod_list(vec![]).optional(),
        Expect::get(PODS).watch().hang().optional(),
    ]);
    let p = platform(client);
    let err = within(p.wait_ready(&fixtures::app_id(), Track::Canary, Duration::from_secs(3))).await.unwrap_err();
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err}");
    drop(p);
    mock.finish().await;

    let (client, mock) = start(vec![
        deployment_list(vec![canary(5, 5, (3, 3, 2, 2))], "105"),
        pod_list(vec![]),
        Expect::get(DEPLOYMENTS).watch().hang(),
        Expect::get(PODS).watch().hang(),
    ]);
    let p = platform(client);
    let err = within(p.wait_ready(&fixtures::app_id(), Track::Canary, Duration::from_millis(300))).await.unwrap_err();
    match &err {
        PlatformError::Timeout { reason, .. } => assert_eq!(
            reason,
            "Waiting for deployment \"web-canary\" rollout to finish: 2 of 3 updated replicas are available..."
        ),
        other => panic!("expected Timeout, got {other}"),
    }
    assert!(err.is_timeout());
    drop(p);
    let _ = json!(null);
    mock.finish().await;
}
