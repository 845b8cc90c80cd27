//! Issue 18 on Docker: a release's environment and configuration files roll back
//! with its image. Through deploy-core's engine on the real Docker engine: v1 runs
//! with `FOO=1` and file content A, v2 with `FOO=2` and content B fails its health
//! check and is rolled back; the containers that serve again are read back with
//! `docker inspect` and `docker exec` and run with v1's environment and files,
//! although the rollback was driven with v2's `AppSpec`. Secret values are never
//! in the snapshot's labels or the containers' labels.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use common::{Cleanup, build_busybox, docker, exec};
use deploy_core::engine::{EngineConfig, RetryPolicy, RolloutEngine, RolloutRequest};
use deploy_core::model::{
    AppId, AppSpec, DeploymentStatus, EnvVar, HumanDuration, ImageRef, IntOrPercent, Name, Namespace, Probe, Release,
    RollingUpdateParams, Track, Version,
};
use deploy_core::platform::Platform;
use deploy_core::secret::{PutOptions, Secret, SecretBytes, SecretError, SecretManager};
use deploy_core::strategy::{PlanInput, RollingUpdate, Strategy};
use deploy_core::testkit::TestKit;
use deploy_docker::NetworkName;
use deploy_docker::config_files::{ConfigSnapshots, ReleaseConfig, volume_name};
use deploy_docker::containers::Containers;
use deploy_docker::labels;
use deploy_docker::platform::{DockerPlatform, PlatformConfig};
use deploy_docker::workload::Workload;

struct World {
    docker: Docker,
    cleanup: Cleanup,
    app: AppId,
    images: [String; 3],
}

async fn world(prefix: &str) -> World {
    let docker = docker().await;
    let cleanup = Cleanup::new(prefix);
    let repo = format!("deploy-rs-test/{}", cleanup.id);
    let images = [format!("{repo}:1.0.0"), format!("{repo}:2.0.0"), format!("{repo}:3.0.0-bad")];
    build_busybox(&docker, &cleanup, &images[0], "1.0.0", true).await;
    build_busybox(&docker, &cleanup, &images[1], "2.0.0", true).await;
    build_busybox(&docker, &cleanup, &images[2], "3.0.0-bad", false).await;
    let app = AppId::new(Namespace::new(cleanup.id.clone()).unwrap(), Name::new("web").unwrap());
    World { docker, cleanup, app, images }
}

impl World {
    fn config(&self) -> PlatformConfig {
        let (key, value) = self.cleanup.label();
        PlatformConfig::default()
            .network(NetworkName::new(format!("{}-net", self.cleanup.id)).unwrap())
            .label(key, value)
            .poll_interval(Duration::from_millis(100))
    }

    fn spec(&self, env: &[EnvVar]) -> AppSpec {
        let mut probe = Probe::http("/health", 8080).period(HumanDuration::new(Duration::from_millis(500)));
        probe.failure_threshold = 2;
        let mut spec =
            AppSpec::new(self.app.namespace.clone(), self.app.name.clone(), ImageRef::parse(&self.images[0]).unwrap())
                .readiness(probe);
        for var in env {
            spec = spec.env(var.clone());
        }
        // One container at a time is taken down and replaced: a rollback re-creates them.
        spec.rolling_update = RollingUpdateParams::new(IntOrPercent::Int(0), IntOrPercent::Int(1));
        spec
    }

    fn release(&self, index: usize) -> Release {
        let image = &self.images[index];
        Release::new(Version::new(image.rsplit(':').next().unwrap()).unwrap(), ImageRef::parse(image).unwrap())
    }

    fn engine(&self, kit: &TestKit, platform: Arc<DockerPlatform>) -> RolloutEngine {
        let config = EngineConfig::default()
            .step_deadline(Duration::from_secs(60))
            .readiness_deadline(Duration::from_secs(30))
            .retry(RetryPolicy::new(3, Duration::from_millis(50), Duration::from_millis(200)))
            .holder("docker-config-rollback-test");
        let platform: Arc<dyn Platform> = platform;
        RolloutEngine::builder(platform, kit.state_store(), kit.history_store()).config(config).build()
    }

    async fn track_ids(&self, track: Track) -> Vec<String> {
        Containers::new(self.docker.clone()).list(&labels::track_selector(&self.app, track)).await.unwrap()
    }

    /// `NAME=value` pairs of the container's config, as `docker inspect` shows them.
    async fn inspected_env(&self, id: &str) -> Vec<String> {
        let inspect = self.docker.inspect_container(id, None).await.unwrap();
        inspect.config.unwrap().env.unwrap_or_default()
    }

    async fn container_labels(&self, id: &str) -> BTreeMap<String, String> {
        let inspect = self.docker.inspect_container(id, None).await.unwrap();
        inspect.config.unwrap().labels.unwrap_or_default().into_iter().collect()
    }

    async fn volume_labels(&self, name: &str) -> BTreeMap<String, String> {
        self.docker.inspect_volume(name).await.unwrap().labels.into_iter().collect()
    }

    async fn finish(self, platform: &DockerPlatform) {
        platform.remove_app(&self.app).await.unwrap();
        platform.remove_everything_labelled().await.unwrap();
        let (containers, networks, _) = self.cleanup.leftovers(&self.docker).await;
        assert_eq!((containers, networks), (0, 0), "clean-up left labelled objects behind");
    }
}

/// An in-memory secret manager for the test.
#[derive(Default)]
struct Secrets(Mutex<BTreeMap<String, Vec<u8>>>);

#[async_trait::async_trait]
impl SecretManager for Secrets {
    async fn get(&self, key: &str) -> Result<Secret, SecretError> {
        let map = self.0.lock().unwrap();
        map.get(key)
            .map(|v| Secret::new(SecretBytes::from(v.as_slice()), 1))
            .ok_or_else(|| SecretError::NotFound { key: key.into() })
    }
    async fn get_version(&self, key: &str, _version: u64) -> Result<Secret, SecretError> {
        self.get(key).await
    }
    async fn put(&self, key: &str, value: SecretBytes, _options: PutOptions) -> Result<u64, SecretError> {
        self.0.lock().unwrap().insert(key.into(), value.expose_secret().to_vec());
        Ok(1)
    }
    async fn delete(&self, key: &str) -> Result<(), SecretError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
    async fn list(&self) -> Result<Vec<String>, SecretError> {
        Ok(self.0.lock().unwrap().keys().cloned().collect())
    }
}

fn foo(value: &str) -> EnvVar {
    EnvVar::value("FOO", value).unwrap()
}

fn db_password() -> EnvVar {
    EnvVar::from_secret("DB_PASSWORD", Name::new("db").unwrap(), "password").unwrap()
}

#[tokio::test]
async fn a_rolled_back_release_runs_again_with_its_own_env_and_files_not_the_failed_releases() {
    let w = world("config-env-rollback").await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let secret = format!("s3cr3t-{nanos:09}");
    let secrets = Arc::new(Secrets::default());
    secrets.put("db/password", SecretBytes::from(secret.as_bytes()), PutOptions::default()).await.unwrap();

    let snapshots = ConfigSnapshots::new(w.docker.clone(), w.config().labels.clone());
    let v1_config = ReleaseConfig::new().file("app.conf", b"content A\n".to_vec()).env(vec![foo("1"), db_password()]);
    let v2_config = ReleaseConfig::new().file("app.conf", b"content B\n".to_vec()).env(vec![foo("2"), db_password()]);
    let a = snapshots.publish_config(&w.app, &v1_config, &w.images[0]).await.unwrap();
    let b = snapshots.publish_config(&w.app, &v2_config, &w.images[0]).await.unwrap();
    assert_ne!(a, b);
    assert_eq!(a, snapshots.publish_config(&w.app, &v1_config, &w.images[0]).await.unwrap(), "content-addressed");
    for id in [&a, &b] {
        let snapshot = snapshots.read(&w.app, id).await.unwrap().unwrap();
        assert!(!format!("{snapshot:?}").contains(&secret));
        let recorded = w.volume_labels(&volume_name(&w.app, id)).await;
        assert!(recorded.values().all(|v| !v.contains(&secret)), "a secret value in a snapshot label: {recorded:?}");
        assert!(recorded.values().any(|v| v.contains("DB_PASSWORD")), "the secret's reference is recorded");
    }

    let config = w.config().workload(w.app.clone(), Workload::default().config_mount("/etc/app"));
    let platform = Arc::new(DockerPlatform::new(w.docker.clone(), config).secrets(secrets.clone()));
    let v1 = w.release(0).config_checksum(&a);
    // v2: another env, other files, and an image whose health check fails.
    let v2 = w.release(2).config_checksum(&b);
    let spec_v1 = w.spec(&[foo("1"), db_password()]);
    let spec_v2 = w.spec(&[foo("2"), db_password()]);
    platform.apply(&spec_v1, Track::Stable, &v1, 2).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    let before = w.track_ids(Track::Stable).await;

    let kit = TestKit::new();
    let engine = w.engine(&kit, platform.clone());
    let plan = RollingUpdate::new(IntOrPercent::Int(0), IntOrPercent::Int(1)).plan(&PlanInput::new(2));
    // The rollback is driven with v2's spec (FOO=2), as the engine always does.
    let request = RolloutRequest::new(spec_v2, v2, plan).from(v1);
    let report = tokio::time::timeout(Duration::from_secs(180), engine.run(request)).await.unwrap().unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{:?}", report.cause);

    let after = w.track_ids(Track::Stable).await;
    assert_eq!(after.len(), 2);
    assert!(after.iter().any(|id| !before.contains(id)), "the rollback re-created a 1.0.0 container");
    for id in &after {
        let container_labels = w.container_labels(id).await;
        assert_eq!(container_labels[labels::VERSION], "1.0.0");
        assert!(container_labels.values().all(|v| !v.contains(&secret)), "a secret value in a container label");
        let env = w.inspected_env(id).await;
        assert!(env.contains(&"FOO=1".to_owned()), "container {id} runs with v1's env: {:?}", names_only(&env));
        assert!(!env.iter().any(|e| e == "FOO=2"), "container {id} has v2's FOO");
        assert!(env.contains(&format!("DB_PASSWORD={secret}")), "the secret is read from the manager again");
        let process_env = exec(&w.docker, id, &["env"]).await;
        assert!(process_env.lines().any(|l| l == "FOO=1"), "the process sees FOO=1");
        assert_eq!(exec(&w.docker, id, &["cat", "/etc/app/app.conf"]).await, "content A\n");
    }

    let app = w.app.clone();
    w.finish(&platform).await;
    assert_eq!(snapshots.collect_garbage(&app, 0).await.unwrap(), 2, "unused snapshots are collected");
}

/// What every rollback path does (the old track of a blue-green or canary
/// rollback, a resumed rollback): apply the previous release with the current
/// spec. Here on a fresh track, with snapshots that record only an environment
/// (no files, no config mount), and garbage collection that keeps the snapshot a
/// running release needs although nothing mounts it.
#[tokio::test]
async fn the_previous_release_recreated_from_the_current_spec_gets_its_recorded_env_and_keeps_its_snapshot() {
    let w = world("config-env-only").await;
    let snapshots = ConfigSnapshots::new(w.docker.clone(), w.config().labels.clone());
    let a = snapshots.publish_config(&w.app, &ReleaseConfig::new().env(vec![foo("1")]), "unused").await.unwrap();
    let b = snapshots.publish_config(&w.app, &ReleaseConfig::new().env(vec![foo("2")]), "unused").await.unwrap();
    let platform = DockerPlatform::new(w.docker.clone(), w.config());
    let spec_v2 = w.spec(&[foo("2")]);

    // v1 on blue, applied with v2's spec: it runs with FOO=1.
    platform.apply(&spec_v2, Track::Blue, &w.release(0).config_checksum(&a), 1).await.unwrap();
    platform.wait_ready(&w.app, Track::Blue, Duration::from_secs(30)).await.unwrap();
    // v2 on green, with its own snapshot: FOO=2.
    platform.apply(&spec_v2, Track::Green, &w.release(1).config_checksum(&b), 1).await.unwrap();
    platform.wait_ready(&w.app, Track::Green, Duration::from_secs(30)).await.unwrap();
    let blue = w.track_ids(Track::Blue).await;
    let green = w.track_ids(Track::Green).await;
    assert!(w.inspected_env(&blue[0]).await.contains(&"FOO=1".to_owned()));
    assert!(w.inspected_env(&green[0]).await.contains(&"FOO=2".to_owned()));
    // A release without a snapshot runs with the spec's env, as before.
    platform.apply(&spec_v2, Track::Canary, &w.release(1), 1).await.unwrap();
    let canary = w.track_ids(Track::Canary).await;
    assert!(w.inspected_env(&canary[0]).await.contains(&"FOO=2".to_owned()));
    platform.remove(&w.app, Track::Canary).await.unwrap();

    // Both snapshots are used by containers (a label, not a mount): none is collected.
    assert_eq!(snapshots.collect_garbage(&w.app, 0).await.unwrap(), 0);
    platform.remove(&w.app, Track::Green).await.unwrap();
    assert_eq!(snapshots.collect_garbage(&w.app, 0).await.unwrap(), 1, "v2's snapshot is no longer used");
    assert!(snapshots.exists(&w.app, &a).await.unwrap(), "v1's snapshot stays while blue runs v1");
    assert!(!snapshots.exists(&w.app, &b).await.unwrap());
    let app = w.app.clone();
    w.finish(&platform).await;
    assert_eq!(snapshots.collect_garbage(&app, 0).await.unwrap(), 1);
}

/// Names of `NAME=value` pairs, for assertion messages that print no value.
fn names_only(env: &[String]) -> Vec<&str> {
    env.iter().map(|e| e.split('=').next().unwrap_or_default()).collect()
}

/// A rollback after a crash: a driver, in a runtime of its own, rolls v1 (`FOO=1`,
/// content A) to v2 (`FOO=2`, content B, healthy) and pauses; its runtime is shut
/// down mid-pause (every task of that driver dropped, its lease left behind, as a
/// killed process leaves it). A second driver with a fresh platform resumes from
/// the same stores and is told to abort: the rollback re-creates every v1
/// container, driven by v2's spec and the `from` release read back from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_after_a_crash_and_resume_restores_the_previous_env_and_files() {
    use deploy_core::engine::{RolloutError, RolloutEvent};
    use deploy_core::plan::{PauseKind, Step};
    let w = world("config-env-resume").await;
    let snapshots = ConfigSnapshots::new(w.docker.clone(), w.config().labels.clone());
    let v1_config = ReleaseConfig::new().file("app.conf", b"content A\n".to_vec()).env(vec![foo("1")]);
    let v2_config = ReleaseConfig::new().file("app.conf", b"content B\n".to_vec()).env(vec![foo("2")]);
    let a = snapshots.publish_config(&w.app, &v1_config, &w.images[0]).await.unwrap();
    let b = snapshots.publish_config(&w.app, &v2_config, &w.images[0]).await.unwrap();
    let config = w.config().workload(w.app.clone(), Workload::default().config_mount("/etc/app"));
    let v1 = w.release(0).config_checksum(&a);
    let v2 = w.release(1).config_checksum(&b);
    let spec_v2 = w.spec(&[foo("2")]);
    let platform = Arc::new(DockerPlatform::new(w.docker.clone(), config.clone()));
    platform.apply(&w.spec(&[foo("1")]), Track::Stable, &v1, 2).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();

    let kit = TestKit::new();
    let lock_ttl = Duration::from_secs(2);
    let engine_config = |holder: &str| {
        EngineConfig::default()
            .step_deadline(Duration::from_secs(60))
            .readiness_deadline(Duration::from_secs(30))
            .retry(RetryPolicy::new(3, Duration::from_millis(50), Duration::from_millis(200)))
            .lock_ttl(lock_ttl)
            .holder(holder)
    };
    let mut plan = RollingUpdate::new(IntOrPercent::Int(0), IntOrPercent::Int(1)).plan(&PlanInput::new(2));
    plan.steps.push(Step::Pause(PauseKind::UntilPromoted));

    // The first driver, in its own runtime with its own connection to the engine.
    let crashed = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (paused_tx, paused_rx) = tokio::sync::oneshot::channel();
    let (state, history) = (kit.state_store(), kit.history_store());
    let (first_config, request) = (engine_config("driver-1"), RolloutRequest::new(spec_v2.clone(), v2, plan).from(v1));
    let first_platform_config = config.clone();
    crashed.spawn(async move {
        let docker = deploy_docker::connect::connect(&Default::default()).await.unwrap();
        let platform: Arc<dyn Platform> = Arc::new(DockerPlatform::new(docker, first_platform_config));
        let engine = RolloutEngine::builder(platform, state, history).config(first_config).build();
        let mut handle = engine.start(request).await.unwrap();
        let mut paused_tx = Some(paused_tx);
        while let Some(event) = handle.next_event().await {
            if matches!(event, RolloutEvent::Paused { .. })
                && let Some(tx) = paused_tx.take()
            {
                let _ = tx.send(());
            }
        }
        std::future::pending::<()>().await;
    });
    tokio::time::timeout(Duration::from_secs(120), paused_rx).await.unwrap().unwrap();
    crashed.shutdown_background();
    for id in w.track_ids(Track::Stable).await {
        assert!(w.inspected_env(&id).await.contains(&"FOO=2".to_owned()), "v2 ran before the crash");
    }

    // The second driver: a fresh platform (a new process would have one), the same stores.
    let platform2 = Arc::new(DockerPlatform::new(docker().await, config));
    let dyn_platform: Arc<dyn Platform> = platform2.clone();
    let engine = RolloutEngine::builder(dyn_platform, kit.state_store(), kit.history_store())
        .config(engine_config("driver-2"))
        .build();
    let handle = loop {
        match engine.resume(&w.app).await {
            Ok(handle) => break handle,
            Err(RolloutError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(300)).await,
            Err(e) => panic!("resume: {e}"),
        }
    };
    engine.abort(&w.app, "v2 is wrong after all").await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(120), handle.wait()).await.unwrap().unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{:?}", report.cause);

    let after = w.track_ids(Track::Stable).await;
    assert_eq!(after.len(), 2);
    for id in &after {
        assert_eq!(w.container_labels(id).await[labels::VERSION], "1.0.0");
        let env = w.inspected_env(id).await;
        assert!(env.contains(&"FOO=1".to_owned()), "container {id} runs with v1's env: {:?}", names_only(&env));
        assert_eq!(exec(&w.docker, id, &["cat", "/etc/app/app.conf"]).await, "content A\n");
    }
    w.finish(&platform2).await;
}
