//! Configuration snapshots on the real server: a rolling update to a release with
//! new ConfigMap and Secret contents fails its analysis, and the rollback puts
//! back exactly the configuration the old release ran with (compared by hash of
//! the data its pods mount), with no manual step; old snapshots are collected,
//! those a track runs are kept; no secret value reaches the state or history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::{RolloutEngine, RolloutRequest};
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, Release, Track};
use deploy_core::platform::Platform;
use deploy_core::testkit::TestKit;
use deploy_k8s::manifest::config::ChecksumKey;
use deploy_k8s::manifest::{DeploymentOptions, EnvFrom, PodVolume, VolumeSource};
use deploy_k8s::snapshot::{ConfigSet, ConfigSnapshots, SnapshotId};
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};
use deploy_k8s::{KubePlatform, PlatformOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams};
use sha2::{Digest, Sha256};

use crate::engine::{Strat, engine_config, plan};
use crate::support::{self, Scratch, eventually};

fn config(greeting: &str, token: &str) -> ConfigSet {
    ConfigSet::new()
        .config_map("app-config", BTreeMap::from([("greeting".to_owned(), greeting.to_owned())]))
        .secret("app-secret", BTreeMap::from([("token".to_owned(), token.as_bytes().to_vec())]))
}

fn platform(s: &Scratch) -> KubePlatform {
    let deployment = DeploymentOptions::default()
        .volume(PodVolume::new("config", VolumeSource::ConfigMap("app-config".into()), "/etc/app"))
        .volume(PodVolume::new("ca", VolumeSource::ConfigMap("shared-ca".into()), "/etc/ca"))
        .env_from(EnvFrom::Secret("app-secret".into()));
    KubePlatform::new(s.cluster.clone(), PlatformOptions::default().deployment(deployment).config_snapshots(true))
}

/// The hash of what the pods of `track` mount: the data of the ConfigMap and the
/// Secret their template names, as the server holds them.
async fn mounted(s: &Scratch, track: &str) -> (String, Vec<String>) {
    let pods: Api<Pod> = s.api();
    let selector = format!("deploy-rs.io/track={track}");
    let listed = pods.list(&ListParams::default().labels(&selector)).await.unwrap().items;
    let mut names = Vec::new();
    for pod in &listed {
        let spec = pod.spec.as_ref().unwrap();
        for volume in spec.volumes.iter().flatten() {
            names.extend(volume.config_map.as_ref().map(|c| format!("configmap/{}", c.name)));
        }
        for from in spec.containers[0].env_from.iter().flatten() {
            names.extend(from.secret_ref.as_ref().map(|r| format!("secret/{}", r.name)));
        }
    }
    names.sort();
    names.dedup();
    let mut hasher = Sha256::new();
    for name in &names {
        match name.split_once('/') {
            Some(("configmap", n)) if n != "shared-ca" => {
                let map: ConfigMap = s.api().get(n).await.unwrap();
                assert_eq!(map.immutable, Some(true), "{n} is immutable");
                for (k, v) in map.data.unwrap_or_default() {
                    hasher.update(format!("{k}={v};"));
                }
            }
            Some(("secret", n)) => {
                let secret: Secret = s.api().get(n).await.unwrap();
                assert_eq!(secret.immutable, Some(true), "{n} is immutable");
                for (k, v) in secret.data.unwrap_or_default() {
                    hasher.update(format!("{k}="));
                    hasher.update(&v.0);
                    hasher.update(";");
                }
            }
            _ => {}
        }
    }
    (format!("{:x}", hasher.finalize()), names)
}

fn hash_of(greeting: &str, token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("greeting={greeting};"));
    hasher.update(format!("token={token};"));
    format!("{:x}", hasher.finalize())
}

#[tokio::test]
async fn a_rollback_restores_the_configuration_the_old_release_ran_with() {
    let s = Scratch::new("snapshots").await;
    let app = s.app();
    let key = ChecksumKey::new(vec![42; 32]).unwrap();
    let snapshots = ConfigSnapshots::new(s.cluster.clone());
    let a = snapshots.publish(&app, &config("hello", "s3cr3t-A"), &key).await.unwrap();
    let b = snapshots.publish(&app, &config("bonjour", "s3cr3t-B"), &key).await.unwrap();
    assert_ne!(a, b);
    assert_eq!(
        snapshots.publish(&app, &config("hello", "s3cr3t-A"), &key).await.unwrap(),
        a,
        "publishing is idempotent"
    );
    let v1 = support::release("1").config_checksum(a.as_str());
    let v2 = support::release("2").config_checksum(b.as_str());

    let spec = s.spec().replicas(4);
    let p = platform(&s);
    p.apply(&spec, Track::Stable, &v1, 4).await.unwrap();
    p.wait_ready(&app, Track::Stable, Duration::from_secs(60)).await.unwrap();
    let (before, names) = mounted(&s, "stable").await;
    assert_eq!(before, hash_of("hello", "s3cr3t-A"), "{names:?}");
    assert!(names.contains(&format!("configmap/app-config-{a}")) && names.contains(&"configmap/shared-ca".to_owned()));

    // A rolling update to v2 whose analysis fails.
    let kit = TestKit::new();
    kit.metric_values().set("error-rate", Track::Stable, 0.5);
    let engine = RolloutEngine::builder(
        Arc::new(platform(&s)),
        Arc::new(KubeStateStore::new(s.cluster.clone())),
        Arc::new(KubeHistoryStore::new(s.cluster.clone(), s.ns())),
    )
    .metrics(kit.metrics())
    .config(engine_config("snapshots"))
    .build();
    let mut events = engine
        .start(RolloutRequest::new(spec.clone(), v2.clone(), plan(Strat::Rolling)).from(v1.clone()))
        .await
        .unwrap();
    // While v2 runs, its pods mount v2's configuration.
    let mut saw_b = false;
    while let Some(event) = events.next_event().await {
        if !saw_b && matches!(event, deploy_core::engine::RolloutEvent::Measurement { .. }) {
            saw_b = mounted(&s, "stable").await.1.iter().any(|n| n.ends_with(b.as_str()));
        }
    }
    let report = events.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{:?}", report.cause);
    assert_eq!(report.cause.unwrap().kind, CauseKind::AnalysisFailed);
    assert!(saw_b, "v2's pods mounted v2's snapshot during the rollout");

    // The rollback put back v1's configuration: the template and the pods.
    let deployments: Api<Deployment> = s.api();
    let stable = deployments.get("web-stable").await.unwrap();
    let template = stable.spec.template.spec.unwrap();
    let volume = template.volumes.iter().flatten().find(|v| v.name == "config").unwrap();
    assert_eq!(volume.config_map.as_ref().unwrap().name, format!("app-config-{a}"));
    eventually("the pods run v1 with v1's configuration again", Duration::from_secs(60), || async {
        mounted(&s, "stable").await.0 == hash_of("hello", "s3cr3t-A")
    })
    .await;

    // No secret value in the stored state or history, only the snapshot id.
    let maps: Api<ConfigMap> = s.api();
    for map in maps.list(&ListParams::default()).await.unwrap().items {
        let text = serde_json::to_string(&map.data).unwrap();
        assert!(!text.contains("s3cr3t"), "{:?} holds a secret value", map.metadata.name);
    }

    // Collection keeps the newest snapshot and every one a track runs.
    let c = snapshots.publish(&app, &config("hola", "s3cr3t-C"), &key).await.unwrap();
    let deleted = snapshots.collect_garbage(&app, 1).await.unwrap();
    let mut expected = vec![format!("app-config-{b}"), format!("app-secret-{b}")];
    expected.sort();
    let mut deleted_sorted = deleted.clone();
    deleted_sorted.sort();
    assert_eq!(deleted_sorted, expected, "only v2's unused snapshot goes");
    for id in [&a, &c] {
        assert!(snapshots.read(&app, id).await.is_ok(), "{id} is kept");
    }
    assert!(snapshots.read(&app, &b).await.is_err(), "{b} is gone from the server");

    // A release naming a snapshot that does not exist is refused before anything changes.
    let missing = Release::new(v1.version.clone(), v1.image.clone()).config_checksum("0000000000");
    let err = p.apply(&spec, Track::Stable, &missing, 4).await.unwrap_err();
    assert!(err.to_string().contains("config snapshot 0000000000"), "{err}");
    assert!(SnapshotId::parse("not-an-id").is_err());
    s.cleanup().await;
}

/// Issue 19: a full run on the real API server with Secret contents published as
/// snapshots under a checksum key, rolled out and rolled back by the engine: the
/// server holds the Secret's data, and no trace line (every level, TRACE included:
/// kube's and hyper's own), event, record, report or error shows a secret value
/// (raw or base64, as the API carries it), the checksum key or the client's token.
#[tokio::test]
async fn a_snapshot_run_traces_and_prints_no_secret_value_key_or_token() {
    use base64::Engine as _;
    let capture = deploy_core::testkit::trace::TraceCapture::default();
    let guard = capture.set_default();
    let s = Scratch::new("snapshot-traces").await;
    let app = s.app();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let tag = format!("{nanos:09}-{}", std::process::id());
    let (token_a, token_b) = (format!("s3cr3t-a-{tag}"), format!("s3cr3t-b-{tag}"));
    let key_text = format!("s3cr3t-key-{tag}-0123456789abcdef0123456789");
    let key = ChecksumKey::new(key_text.clone().into_bytes()).unwrap();
    let snapshots = ConfigSnapshots::new(s.cluster.clone());
    let a = snapshots.publish(&app, &config("hello", &token_a), &key).await.unwrap();
    let b = snapshots.publish(&app, &config("bonjour", &token_b), &key).await.unwrap();
    let v1 = support::release("1").config_checksum(a.as_str());
    let v2 = support::release("2").config_checksum(b.as_str());
    let spec = s.spec().replicas(2);
    let p = platform(&s);
    p.apply(&spec, Track::Stable, &v1, 2).await.unwrap();
    p.wait_ready(&app, Track::Stable, Duration::from_secs(60)).await.unwrap();

    let kit = TestKit::new();
    kit.metric_values().set("error-rate", Track::Stable, 0.5);
    let engine = RolloutEngine::builder(
        Arc::new(platform(&s)),
        Arc::new(KubeStateStore::new(s.cluster.clone())),
        Arc::new(KubeHistoryStore::new(s.cluster.clone(), s.ns())),
    )
    .metrics(kit.metrics())
    .config(engine_config("snapshot-traces"))
    .build();
    let mut handle = engine
        .start(RolloutRequest::new(spec.clone(), v2.clone(), plan(Strat::Rolling)).from(v1.clone()))
        .await
        .unwrap();
    let mut printed = vec![format!("{key:?}"), format!("{a:?}"), format!("{b:?}")];
    while let Some(event) = handle.next_event().await {
        printed.push(format!("{event:?}"));
        printed.push(event.to_string());
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{:?}", report.cause);
    printed.push(format!("{report:?}"));
    printed.push(serde_json::to_string(&report.record).unwrap());

    // The server holds both snapshots' Secret data.
    let secrets: Api<Secret> = s.api();
    for (id, token) in [(&a, &token_a), (&b, &token_b)] {
        let secret = secrets.get(&format!("app-secret-{id}")).await.unwrap();
        let data = secret.data.unwrap_or_default();
        assert_eq!(data.get("token").map(|v| v.0.as_slice()), Some(token.as_bytes()), "app-secret-{id}");
    }
    let read = snapshots.read(&app, &a).await.unwrap();
    printed.push(format!("{read:?}"));
    // Errors: a snapshot that does not exist, a release naming it.
    let missing = SnapshotId::parse("0000000000").unwrap();
    let err = snapshots.read(&app, &missing).await.unwrap_err();
    printed.push(format!("{err:?}"));
    printed.push(err.to_string());
    let err = p.apply(&spec, Track::Stable, &v1.clone().config_checksum("0000000000"), 2).await.unwrap_err();
    printed.push(format!("{err:?}"));
    printed.push(err.to_string());
    s.cleanup().await;
    drop(guard);

    // The client's bearer token, from the kubeconfig the tests use.
    let kubeconfig = std::fs::read_to_string(std::env::var_os(support::KUBECONFIG_VAR).unwrap()).unwrap();
    let client_token = kubeconfig
        .split("token:")
        .nth(1)
        .map(|rest| rest.trim_start().split(['}', '\n', ' ']).next().unwrap_or_default().to_owned())
        .filter(|t| t.len() >= 8);
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let mut secrets = vec![token_a.clone(), token_b.clone(), b64(&token_a), b64(&token_b), key_text.clone()];
    secrets.extend(client_token);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let text = capture.text();
    assert!(text.contains("event TRACE hyper"), "the API exchanges were traced at TRACE: {text}");
    assert!(text.contains("rolling back"), "the engine's rollback was traced: {text}");
    capture.assert_free_of(&secrets);
    for p in &printed {
        for secret in &secrets {
            assert!(!p.contains(secret), "a secret is in a printed event, record, report or error: {p}");
        }
    }
}
