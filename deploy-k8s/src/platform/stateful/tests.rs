use super::*;
use serde_json::json;

fn set(generation: i64, observed: i64, partition: i32, canary: bool) -> StatefulSet {
    let mut annotations = json!({});
    if canary {
        annotations = json!({labels::STATEFUL_CANARY: "2", labels::PARTITION_BEFORE: "0"});
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop", "generation": generation, "annotations": annotations,
            "labels": {labels::MANAGED_BY: labels::MANAGER}},
        "spec": {"replicas": 4, "serviceName": "web-headless", "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/version": "2"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:2"}]}}},
        "status": {"observedGeneration": observed, "replicas": 4, "currentRevision": "web-old", "updateRevision": "web-new"}
    }))
    .unwrap()
}

fn pod(ordinal: u32, revision: &str, ready: bool, waiting: Option<&str>) -> Pod {
    let mut container = json!({"name": "web", "image": "x", "ready": ready, "restartCount": 0, "imageID": "",
        "state": {"running": {}}});
    if let Some(reason) = waiting {
        container["state"] = json!({"waiting": {"reason": reason, "message": "back-off"}});
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("web-{ordinal}"), "labels": {labels::REVISION_HASH: revision},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [container]}
    }))
    .unwrap()
}

#[test]
fn the_canary_is_the_highest_ordinals_at_the_update_revision() {
    let s = set(3, 3, 3, true);
    assert_eq!(part(&s, Track::Canary), Some(Part { from: 3, to: 4, revision: Some("web-new".into()) }));
    assert_eq!(part(&s, Track::Stable), Some(Part { from: 0, to: 3, revision: Some("web-old".into()) }));
    assert_eq!(part(&set(3, 3, 0, false), Track::Canary), None, "no canary runs");
    assert_eq!(part(&s, Track::Blue), None);
    let pods = [pod(0, "web-old", true, None), pod(1, "web-old", true, None), pod(2, "web-old", true, None)];
    let waiting = readiness(&s, &pods, Track::Canary).unwrap();
    assert!(matches!(&waiting, Readiness::Waiting(m) if m.contains("0 of 1 pods of canary")), "{waiting:?}");
    assert_eq!(readiness(&s, &pods, Track::Stable), Some(Readiness::Ready));
    let pods = [pods[0].clone(), pods[1].clone(), pods[2].clone(), pod(3, "web-new", true, None)];
    assert_eq!(readiness(&s, &pods, Track::Canary), Some(Readiness::Ready));
}

#[test]
fn generations_come_first_and_doomed_pods_of_the_part_fail_fast() {
    let pods = [pod(3, "web-new", true, None)];
    assert!(
        matches!(readiness(&set(4, 3, 3, true), &pods, Track::Canary), Some(Readiness::Waiting(m)) if m.contains("observed"))
    );
    let crashing = [pod(3, "web-new", false, Some("CrashLoopBackOff"))];
    assert!(
        matches!(readiness(&set(3, 3, 3, true), &crashing, Track::Canary), Some(Readiness::Doomed(r)) if r.contains("web-3") && r.contains("CrashLoopBackOff"))
    );
    // A crash-looping pod of another revision or another part dooms nothing here.
    let old_crashing = [pod(3, "web-old", false, Some("CrashLoopBackOff"))];
    assert!(matches!(readiness(&set(3, 3, 3, true), &old_crashing, Track::Canary), Some(Readiness::Waiting(_))));
    assert!(matches!(readiness(&set(3, 3, 3, true), &crashing, Track::Stable), Some(Readiness::Waiting(_))));
}

#[tokio::test]
async fn what_a_stateful_set_cannot_do_is_refused_before_anything_is_written() {
    use crate::fixtures::{self, mock::*};
    use crate::{Cluster, PlatformOptions};
    use deploy_core::model::Autoscaling;
    use deploy_core::platform::Platform;
    const SET: &str = "/apis/apps/v1/namespaces/shop/statefulsets/web";
    let running = serde_json::to_value(set(3, 3, 3, true)).unwrap();
    let (client, mock) = start(vec![
        Expect::get(SET).status(404, "NotFound", "statefulsets.apps \"web\" not found"),
        Expect::get(SET).ok(running.clone()),
        Expect::get(SET).ok(serde_json::to_value(set(3, 3, 0, false)).unwrap()),
    ]);
    let options = PlatformOptions::default().stateful_set(fixtures::app_id(), StatefulSetOptions::default());
    let p = KubePlatform::new(Cluster::new(client), options);
    let (spec, release) = (fixtures::spec(), fixtures::release("1.4.2"));
    let err = within(p.apply(&spec, Track::Blue, &release, 4)).await.unwrap_err();
    assert!(
        matches!(&err, PlatformError::Unsupported { what } if what.contains("stable and a partitioned canary")),
        "{err}"
    );
    let autoscaled = spec.clone().autoscaling(Autoscaling::cpu(2, 6, deploy_core::model::Percent::new(70).unwrap()));
    let err = within(p.apply(&autoscaled, Track::Stable, &release, 4)).await.unwrap_err();
    assert!(matches!(err, PlatformError::Unsupported { .. }), "{err}");
    // A canary needs the set to run stable first.
    let err = within(p.apply(&spec, Track::Canary, &release, 1)).await.unwrap_err();
    assert!(matches!(err, PlatformError::NotFound { track: Track::Stable, .. }), "{err}");
    // A running canary is undone by applying stable, never deleted on its own.
    let err = within(p.remove(&fixtures::app_id(), Track::Canary)).await.unwrap_err();
    assert!(matches!(&err, PlatformError::Unsupported { what } if what.contains("apply stable")), "{err}");
    within(p.remove(&fixtures::app_id(), Track::Canary)).await.expect("no canary runs: nothing to remove");
    drop(p);
    let seen = mock.finish().await;
    assert!(seen.iter().all(|r| r.method == http::Method::GET), "nothing written or deleted: {seen:#?}");
}

#[tokio::test]
async fn a_rollback_puts_the_template_back_under_the_partition_unblocks_then_restores_the_partition() {
    use crate::fixtures::{self, mock::*};
    use crate::{Cluster, PlatformOptions};
    use deploy_core::platform::Platform;
    const SETS: &str = "/apis/apps/v1/namespaces/shop/statefulsets";
    const SET: &str = "/apis/apps/v1/namespaces/shop/statefulsets/web";
    const PODS: &str = "/api/v1/namespaces/shop/pods";
    const HEADLESS: &str = "/api/v1/namespaces/shop/services/web-headless";
    let live = serde_json::to_value(set(3, 3, 3, true)).unwrap();
    // Observed after the revert: the old revision is the update revision again.
    let mut reverted = set(4, 4, 3, true);
    reverted.metadata.uid = Some("5e7a1c9e-0000-4000-8000-000000000001".into());
    if let Some(status) = reverted.status.as_mut() {
        status.update_revision = Some("web-old".into());
    }
    let reverted = serde_json::to_value(reverted).unwrap();
    let mut crashing = serde_json::to_value(pod(3, "web-new", false, Some("CrashLoopBackOff"))).unwrap();
    crashing["metadata"]["uid"] = json!("0c0c0c0c-0000-4000-8000-000000000003");
    let stable = serde_json::to_value(pod(2, "web-old", true, None)).unwrap();
    let template_version = |b: &serde_json::Value| b["spec"]["template"]["metadata"]["labels"][labels::VERSION].clone();
    let (client, mock) = start(vec![
        Expect::get(SET).ok(live),
        Expect::patch(SET)
            .body(move |b| {
                assert_eq!(template_version(b), "1", "the previous template first");
                assert_eq!(
                    b["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 3,
                    "under the canary's partition"
                );
                assert_eq!(b["metadata"]["annotations"][labels::STATEFUL_CANARY], "2");
            })
            .ok(reverted.clone()),
        Expect::get(SETS)
            .query("fieldSelector", "metadata.name=web")
            .ok(list("StatefulSetList", "apps/v1", "7", vec![reverted.clone()]))
            .repeat(),
        Expect::get(SETS).watch().hang().optional().repeat(),
        Expect::get(PODS)
            .query("labelSelector", "app.kubernetes.io/name=web")
            .ok(list("PodList", "v1", "8", vec![stable, crashing]))
            .repeat(),
        Expect::delete(&format!("{PODS}/web-3"))
            .body(|b| assert_eq!(b["preconditions"]["uid"], "0c0c0c0c-0000-4000-8000-000000000003"))
            .ok(json!({})),
        Expect::patch(SET)
            .body(move |b| {
                assert_eq!(template_version(b), "1");
                assert_eq!(
                    b["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0,
                    "then the partition before the canary"
                );
                assert!(b["metadata"]["annotations"].get(labels::STATEFUL_CANARY).is_none(), "no canary runs any more");
            })
            .ok(reverted),
        Expect::delete(&format!("{PODS}/web-3")).ok(json!({})),
        Expect::get(HEADLESS).status(404, "NotFound", "services \"web-headless\" not found"),
        Expect::patch(HEADLESS).body(|b| assert_eq!(b["metadata"]["ownerReferences"][0]["kind"], "StatefulSet")).ok(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-headless", "namespace": "shop"}}),
        ),
    ]);
    let options = PlatformOptions::default().stateful_set(fixtures::app_id(), StatefulSetOptions::default());
    let p = KubePlatform::new(Cluster::new(client), options);
    within(p.apply(&fixtures::spec(), Track::Stable, &fixtures::release("1"), 4)).await.expect("the rollback");
    drop(p);
    let seen = mock.finish().await;
    let writes: Vec<String> =
        seen.iter().filter(|r| r.method != http::Method::GET).map(|r| format!("{} {}", r.method, r.path)).collect();
    // The scripted pod list never changes, so the second look still finds web-3.
    let expected = [
        format!("PATCH {SET}"),
        format!("DELETE {PODS}/web-3"),
        format!("PATCH {SET}"),
        format!("DELETE {PODS}/web-3"),
        format!("PATCH {HEADLESS}"),
    ];
    assert_eq!(writes, expected, "template under the partition, unblock, then the partition, in this order");
}

#[test]
fn ordinals_come_from_the_pod_name() {
    assert_eq!(ordinal("web", &pod(12, "r", true, None)), Some(12));
    let other: Pod = serde_json::from_value(json!({"metadata": {"name": "web-canary-7d9f-abcde"}})).unwrap();
    assert_eq!(ordinal("web", &other), None);
}
