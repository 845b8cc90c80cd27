//! Docker workloads as users write them, on the real engine (issues 18 and 20):
//! hooks as one-shot containers run by the engine's plan, the pod-template
//! mapping read back from `docker inspect`, readiness from the engine's events
//! (and the poll fallback when the event stream keeps dropping), and configuration files
//! that roll back with the release.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use common::{Cleanup, build_busybox, docker, exec};
use deploy_core::engine::{EngineConfig, RetryPolicy, RolloutEngine, RolloutRequest};
use deploy_core::hook::{HookSpec, HookWhen};
use deploy_core::model::CauseKind;
use deploy_core::model::{
    AppId, AppSpec, Autoscaling, ContainerSecurityContext, DeploymentStatus, EnvVar, HumanDuration, ImageRef,
    IntOrPercent, Name, Namespace, Percent, PodSecurityContext, Probe, Release, ResourceList, Resources,
    RollingUpdateParams, Track, Version,
};
use deploy_core::plan::Step;
use deploy_core::platform::{Platform, PlatformError};
use deploy_core::secret::{PutOptions, Secret, SecretBytes, SecretError, SecretManager};
use deploy_core::strategy::{Canary, PlanInput, RollingUpdate, Strategy};
use deploy_core::testkit::TestKit;
use deploy_core::traffic::TrafficRouter;
use deploy_docker::NetworkName;
use deploy_docker::config_files::ConfigSnapshots;
use deploy_docker::containers::{Containers, Mount, MountSource, RestartPolicy};
use deploy_docker::labels;
use deploy_docker::platform::{DockerPlatform, PlatformConfig};
use deploy_docker::router::NetworkAliasRouter;
use deploy_docker::workload::Workload;
use futures::StreamExt;

struct World {
    docker: Docker,
    cleanup: Cleanup,
    app: AppId,
    images: [String; 3],
    network: String,
    serving: String,
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
    let network = format!("{}-net", cleanup.id);
    let serving = format!("{}-edge", cleanup.id);
    World { docker, cleanup, app, images, network, serving }
}

impl World {
    fn config(&self) -> PlatformConfig {
        let (key, value) = self.cleanup.label();
        PlatformConfig::default()
            .network(NetworkName::new(&self.network).unwrap())
            .serving_network(NetworkName::new(&self.serving).unwrap())
            .label(key, value)
            .poll_interval(Duration::from_millis(100))
    }

    fn platform(&self, config: PlatformConfig) -> Arc<DockerPlatform> {
        Arc::new(DockerPlatform::new(self.docker.clone(), config))
    }

    fn spec(&self) -> AppSpec {
        let mut probe = Probe::http("/health", 8080).period(HumanDuration::new(Duration::from_millis(500)));
        probe.failure_threshold = 2;
        AppSpec::new(self.app.namespace.clone(), self.app.name.clone(), ImageRef::parse(&self.images[0]).unwrap())
            .readiness(probe)
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
            .holder("docker-workloads-test");
        let router: Arc<dyn TrafficRouter> = Arc::new(
            NetworkAliasRouter::new(self.docker.clone(), NetworkName::new(self.serving.clone()).unwrap())
                .network_labels([self.cleanup.label()].into_iter().collect()),
        );
        let platform: Arc<dyn Platform> = platform;
        RolloutEngine::builder(platform, kit.state_store(), kit.history_store()).config(config).router(router).build()
    }

    async fn track_ids(&self, track: Track) -> Vec<String> {
        Containers::new(self.docker.clone()).list(&labels::track_selector(&self.app, track)).await.unwrap()
    }

    /// Records the engine's `create` and `die` events of this test's containers
    /// from now on, live (the engine keeps only its last 256 events, which other
    /// tests' health checks push out within seconds). Replayed from one second
    /// back, so that nothing falls between the call and the subscription.
    fn record_events(&self) -> Recorder {
        let filters: HashMap<String, Vec<String>> = HashMap::from([
            ("label".to_owned(), vec![format!("{}={}", common::TEST_LABEL, self.cleanup.id)]),
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["create".to_owned(), "die".to_owned()]),
        ]);
        let since = (jiff::Timestamp::now().as_second() - 1).to_string();
        let options = EventsOptionsBuilder::new().since(&since).filters(&filters).build();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut stream = self.docker.events(Some(options));
        let task = tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                let actor = event.actor.unwrap_or_default();
                sink.lock().unwrap().push(Seen {
                    action: event.action.unwrap_or_default(),
                    labels: actor.attributes.unwrap_or_default(),
                    time_nano: event.time_nano.unwrap_or(0),
                });
            }
        });
        Recorder { seen, task }
    }

    async fn finish(&self, platform: &DockerPlatform) {
        platform.remove_app(&self.app).await.unwrap();
        platform.remove_everything_labelled().await.unwrap();
        let (containers, networks, _) = self.cleanup.leftovers(&self.docker).await;
        assert_eq!((containers, networks), (0, 0), "clean-up left labelled objects behind");
    }
}

struct Seen {
    action: String,
    labels: HashMap<String, String>,
    time_nano: i64,
}

struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Stops recording (after a moment for the last events to arrive) and returns
    /// the times of the `action` events whose container carried every pair of `selector`.
    async fn times(&self, selector: &BTreeMap<String, String>, action: &str) -> Vec<i64> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.task.abort();
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|e| e.action == action && selector.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
            .map(|e| e.time_nano)
            .collect()
    }
}

fn hook(command: &str, image: &str) -> Step {
    let hook = HookSpec::new(Name::new("db-backup").unwrap(), ImageRef::parse(image).unwrap())
        .command(["/bin/sh", "-c", command])
        .deadline(HumanDuration::new(Duration::from_secs(30)));
    Step::Hook { when: HookWhen::BeforeRollout, hook }
}

fn canary_plan() -> deploy_core::plan::Plan {
    Canary::with_steps(vec![Step::SetWeight(Percent::new(50).unwrap())])
        .scale_down_delay(HumanDuration::ZERO)
        .plan(&PlanInput::new(2))
}

async fn hook_containers(w: &World) -> usize {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={}", labels::HOOK, "db-backup"), format!("{}={}", common::TEST_LABEL, w.cleanup.id)],
    )]);
    w.docker
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filters).build()))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_failing_before_rollout_hook_stops_the_rollout_before_any_new_container_exists_with_its_logs() {
    let w = world("hook-fails").await;
    let platform = w.platform(w.config());
    let kit = TestKit::new();
    let engine = w.engine(&kit, platform.clone());
    platform.apply(&w.spec(), Track::Stable, &w.release(0), 2).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    let stable = w.track_ids(Track::Stable).await;
    let recorder = w.record_events();

    let mut plan = canary_plan();
    plan.steps.insert(0, hook("echo dumping shop; echo 'pg_dump: connection refused' >&2; exit 3", &w.images[0]));
    let request = RolloutRequest::new(w.spec(), w.release(1), plan).from(w.release(0));
    let report = tokio::time::timeout(Duration::from_secs(120), engine.run(request)).await.unwrap().unwrap();

    assert_ne!(report.status, DeploymentStatus::Succeeded);
    let cause = report.cause.expect("a cause");
    assert_eq!(cause.kind, CauseKind::HookFailed, "{cause}");
    assert!(cause.message.contains("exited with code 3"), "{cause}");
    assert!(cause.message.contains("pg_dump: connection refused"), "the log tail is in the cause: {cause}");
    assert!(cause.message.contains("dumping shop"), "{cause}");
    // The engine saw it: one hook container ran (and died) ...
    let hook_selector = BTreeMap::from([
        (labels::HOOK.to_owned(), "db-backup".to_owned()),
        (common::TEST_LABEL.to_owned(), w.cleanup.id.clone()),
    ]);
    assert_eq!(recorder.times(&hook_selector, "die").await.len(), 1, "one run of the hook");
    assert_eq!(hook_containers(&w).await, 0, "the hook's container was removed after it ended");
    // ... and no container of the new release was ever created.
    let created = recorder.times(&labels::track_selector(&w.app, Track::Canary), "create").await;
    assert!(created.is_empty(), "no canary container was created: {created:?}");
    assert_eq!(w.track_ids(Track::Stable).await, stable, "stable was not touched");
    w.finish(&platform).await;
}

#[tokio::test]
async fn a_passing_before_rollout_hook_runs_to_completion_before_the_first_new_container() {
    let w = world("hook-passes").await;
    let platform = w.platform(w.config());
    let kit = TestKit::new();
    let engine = w.engine(&kit, platform.clone());
    platform.apply(&w.spec(), Track::Stable, &w.release(0), 2).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    let recorder = w.record_events();

    let mut plan = canary_plan();
    plan.steps.insert(0, hook("echo backup done", &w.images[0]));
    let request = RolloutRequest::new(w.spec(), w.release(1), plan).from(w.release(0));
    let report = tokio::time::timeout(Duration::from_secs(120), engine.run(request)).await.unwrap().unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);

    let hook_selector = BTreeMap::from([
        (labels::HOOK.to_owned(), "db-backup".to_owned()),
        (common::TEST_LABEL.to_owned(), w.cleanup.id.clone()),
    ]);
    let died = recorder.times(&hook_selector, "die").await;
    assert_eq!(died.len(), 1, "one run of the hook");
    let created = recorder.times(&labels::track_selector(&w.app, Track::Canary), "create").await;
    assert!(!created.is_empty(), "the canary was deployed");
    let first_canary = created.iter().copied().min().unwrap();
    assert!(died[0] < first_canary, "the hook ended ({}) before the first canary container ({first_canary})", died[0]);
    assert_eq!(hook_containers(&w).await, 0, "the hook's container was removed after it ended");
    w.finish(&platform).await;
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

#[tokio::test]
async fn what_maps_onto_a_container_is_what_docker_inspect_reads_back() {
    let w = world("workload-map").await;
    let dir = tempfile::tempdir().unwrap();
    let motd = dir.path().join("motd");
    std::fs::write(&motd, "welcome to the shop\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&motd, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let data_volume = format!("{}-data", w.cleanup.id);
    let workload = Workload::default()
        .command(["/bin/busybox"])
        .args(["httpd", "-f", "-p", "8080", "-h", "/www"])
        .mount(Mount::new(MountSource::Volume(data_volume.clone()), "/data"))
        .mount(Mount::new(MountSource::Bind(motd.display().to_string()), "/etc/motd").read_only())
        .mount(Mount::new(MountSource::Tmpfs { size_bytes: Some(8 << 20) }, "/scratch"));
    let secrets = Arc::new(Secrets::default());
    secrets
        .put("shop-db/password", SecretBytes::from(b"s3cr3t-value".as_slice()), PutOptions::default())
        .await
        .unwrap();
    let platform =
        Arc::new(DockerPlatform::new(w.docker.clone(), w.config().workload(w.app.clone(), workload)).secrets(secrets));
    let mut pod = PodSecurityContext::default();
    pod.run_as_user = Some(1000);
    pod.run_as_group = Some(1000);
    let mut security = ContainerSecurityContext::default();
    security.read_only_root_filesystem = Some(true);
    security.allow_privilege_escalation = Some(false);
    security.drop_capabilities = vec!["ALL".to_owned()];
    let spec = w
        .spec()
        .env(EnvVar::from_secret("DB_PASSWORD", Name::new("shop-db").unwrap(), "password").unwrap())
        .resources(Resources::new(
            ResourceList::new("250m", "32Mi").unwrap(),
            ResourceList::new("500m", "64Mi").unwrap(),
        ))
        .pod_security(pod)
        .container_security(security);
    platform.apply(&spec, Track::Stable, &w.release(0), 1).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    // A replica added by a scale is made like the first.
    platform.scale(&w.app, Track::Stable, 2).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();

    let ids = w.track_ids(Track::Stable).await;
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let inspect = w.docker.inspect_container(id, None).await.unwrap();
        let host = inspect.host_config.clone().unwrap();
        let config = inspect.config.clone().unwrap();
        assert_eq!(host.nano_cpus, Some(500_000_000), "CPU limit");
        assert_eq!(host.memory, Some(64 << 20), "memory limit");
        assert_eq!(host.memory_reservation, Some(32 << 20), "memory request");
        assert_eq!(host.cpu_shares, Some(256), "CPU request as shares");
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert!(host.security_opt.unwrap_or_default().iter().any(|o| o.starts_with("no-new-privileges")));
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
        assert_eq!(config.entrypoint.as_deref(), Some(&["/bin/busybox".to_owned()][..]));
        let args: Vec<String> = ["httpd", "-f", "-p", "8080", "-h", "/www"].map(str::to_owned).to_vec();
        assert_eq!(config.cmd.as_deref(), Some(&args[..]));
        let mounts: BTreeMap<String, String> = inspect
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.destination.unwrap_or_default(), format!("{:?}:{}", m.typ, m.rw.unwrap_or(true))))
            .collect();
        assert_eq!(mounts.get("/data").map(String::as_str), Some("Some(\"volume\"):true"), "{mounts:?}");
        assert_eq!(mounts.get("/etc/motd").map(String::as_str), Some("Some(\"bind\"):false"), "{mounts:?}");
        assert_eq!(mounts.get("/scratch").map(String::as_str), Some("Some(\"tmpfs\"):true"), "{mounts:?}");
        assert_eq!(exec(&w.docker, id, &["id", "-u"]).await.trim(), "1000");
        assert_eq!(exec(&w.docker, id, &["cat", "/etc/motd"]).await, "welcome to the shop\n");
        assert_eq!(exec(&w.docker, id, &["/bin/sh", "-c", "echo -n \"$DB_PASSWORD\""]).await, "s3cr3t-value");
        let written = exec(&w.docker, id, &["/bin/sh", "-c", "echo x > /scratch/f && cat /scratch/f"]).await;
        assert_eq!(written.trim(), "x", "the tmpfs is writable beside a read-only root");
        let refused = exec(&w.docker, id, &["/bin/sh", "-c", "echo x > /www/f 2>&1 || echo refused"]).await;
        assert!(refused.contains("refused") || refused.contains("Read-only"), "{refused}");
    }
    w.finish(&platform).await;
    w.docker.remove_volume(&data_volume, None::<bollard::query_parameters::RemoveVolumeOptions>).await.unwrap();
}

#[tokio::test]
async fn what_does_not_map_is_refused_by_name_before_anything_is_created() {
    let w = world("workload-refuse").await;
    let workload = Workload::default()
        .init_container("migrate")
        .sidecar("envoy")
        .service_account("shop")
        .toleration("dedicated=shop:NoSchedule")
        .affinity();
    let platform = w.platform(w.config().workload(w.app.clone(), workload));
    let spec = w
        .spec()
        .env(EnvVar::from_secret("DB_PASSWORD", Name::new("shop-db").unwrap(), "password").unwrap())
        .autoscaling(Autoscaling::cpu(2, 5, Percent::new(70).unwrap()));
    let err = platform.apply(&spec, Track::Stable, &w.release(0), 1).await.unwrap_err();
    let PlatformError::Invalid { errors, .. } = &err else { panic!("not Invalid: {err:?}") };
    let text = errors.to_string();
    for field in [
        "workload.init_containers",
        "workload.sidecars",
        "workload.service_account",
        "workload.tolerations",
        "workload.affinity",
        "autoscaling",
        "env.DB_PASSWORD",
    ] {
        assert!(text.contains(field), "{field} is named in: {text}");
    }
    assert!(w.track_ids(Track::Stable).await.is_empty(), "no container was created");
    let (containers, networks, _) = w.cleanup.leftovers(&w.docker).await;
    assert_eq!((containers, networks), (0, 0), "not even the network was created");
}

#[tokio::test]
async fn readiness_follows_the_engines_events_health_and_death() {
    let w = world("ready-events").await;
    // Polls only once a minute: only events can report in time.
    let config = w.config().poll_interval(Duration::from_secs(60)).restart(RestartPolicy::No);
    let platform = w.platform(config.clone());
    platform.apply(&w.spec(), Track::Blue, &w.release(0), 1).await.unwrap();
    let started = Instant::now();
    platform.wait_ready(&w.app, Track::Blue, Duration::from_secs(30)).await.unwrap();
    let took = started.elapsed();
    let id = &w.track_ids(Track::Blue).await[0];
    let health = w.docker.inspect_container(id, None).await.unwrap().state.unwrap().health.unwrap().status;
    assert_eq!(health, Some(bollard::models::HealthStatusEnum::HEALTHY), "ready only after the check passed");
    assert!(took < Duration::from_secs(4), "ready reported from the health_status event in {took:?}");
    println!("ready from events after {took:?}");

    // A container that dies is failed at once, not at the deadline.
    let dying = w.platform(config.workload(w.app.clone(), Workload::default().args(["sh", "-c", "sleep 1; exit 3"])));
    let mut spec = w.spec();
    spec.readiness = None;
    dying.apply(&spec, Track::Green, &w.release(1), 1).await.unwrap();
    let started = Instant::now();
    let err = dying.wait_ready(&w.app, Track::Green, Duration::from_secs(30)).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, PlatformError::Doomed { .. }), "{err:?}");
    assert!(err.to_string().contains("exited with code 3"), "{err}");
    assert!(took < Duration::from_secs(4), "the die event failed the track in {took:?}");
    println!("death reported from events after {took:?}");

    // Without a health check: ready once it has run for min_ready (2 s), woken by
    // the clock rather than a poll, and not before.
    let mut plain = w.spec();
    plain.readiness = None;
    platform.apply(&plain, Track::Stable, &w.release(0), 1).await.unwrap();
    let started = Instant::now();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(4), "ready after min_ready: {took:?}");
    println!("ready without a health check after {took:?}");
    w.finish(&platform).await;
}

/// A proxy in front of the engine's socket that cuts every `/events` stream
/// 150 ms after it starts and counts requests by kind.
struct CuttingProxy {
    path: std::path::PathBuf,
    events_cut: Arc<AtomicUsize>,
    inspects: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl CuttingProxy {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let events_cut = Arc::new(AtomicUsize::new(0));
        let inspects = Arc::new(AtomicUsize::new(0));
        let (cut, seen) = (events_cut.clone(), inspects.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (cut, seen) = (cut.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(upstream) = tokio::net::UnixStream::connect("/var/run/docker.sock").await else { return };
                    relay(client, upstream, cut, seen).await;
                });
            }
        });
        Self { path, events_cut, inspects, _dir: dir }
    }
}

async fn relay(
    client: tokio::net::UnixStream,
    upstream: tokio::net::UnixStream,
    cut: Arc<AtomicUsize>,
    seen: Arc<AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let (is_events_tx, mut is_events_rx) = tokio::sync::watch::channel(false);
    let to_engine = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let head = String::from_utf8_lossy(&buf[..n.min(512)]);
            if head.starts_with("GET ") && head.lines().next().is_some_and(|l| l.contains("/events")) {
                let _ = is_events_tx.send(true);
            }
            if head.starts_with("GET ")
                && head.lines().next().is_some_and(|l| l.contains("/containers/") && l.contains("/json"))
            {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            if up_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let to_client = async move { tokio::io::copy(&mut up_read, &mut client_write).await };
    let cutter = async move {
        loop {
            if *is_events_rx.borrow() {
                tokio::time::sleep(Duration::from_millis(150)).await;
                cut.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if is_events_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = to_engine => {}
        _ = to_client => {}
        () = cutter => {}
    }
}

/// Every event stream is cut: the wait subscribes again 3 times, then polls.
#[tokio::test]
async fn when_the_event_stream_keeps_dropping_readiness_falls_back_to_polling() {
    let w = world("ready-fallback").await;
    let proxy = CuttingProxy::start();
    let through_proxy =
        Docker::connect_with_unix(proxy.path.to_str().unwrap(), 30, bollard::API_DEFAULT_VERSION).unwrap();
    // Health checks every 1.5 s: the stream is cut long before the first passes.
    let mut spec = w.spec();
    if let Some(probe) = spec.readiness.as_mut() {
        probe.period = HumanDuration::new(Duration::from_millis(1500));
    }
    let platform = DockerPlatform::new(through_proxy, w.config().poll_interval(Duration::from_millis(200)));
    platform.apply(&spec, Track::Blue, &w.release(0), 1).await.unwrap();
    let before = proxy.inspects.load(Ordering::SeqCst);
    let started = Instant::now();
    platform.wait_ready(&w.app, Track::Blue, Duration::from_secs(30)).await.unwrap();
    let took = started.elapsed();
    let inspects = proxy.inspects.load(Ordering::SeqCst) - before;
    assert!(proxy.events_cut.load(Ordering::SeqCst) >= 4, "the event stream was cut, then each re-subscription");
    let counts = platform.readiness_counts();
    assert_eq!((counts.resubscriptions, counts.fallbacks), (3, 1), "{counts:?}");
    assert!(counts.polls >= 1, "{counts:?}");
    // Without the fallback the next read would be the 5 s safety re-check.
    assert!(took < Duration::from_secs(4), "ready by polling after the stream dropped, in {took:?}");
    assert!(inspects >= 4, "the track was polled after the drop ({inspects} inspects in {took:?})");
    println!("fallback: ready after {took:?} with {inspects} inspects at a 200 ms poll");
    let cleaner = DockerPlatform::new(w.docker.clone(), w.config());
    w.finish(&cleaner).await;
}

#[tokio::test]
async fn a_failed_rollouts_rollback_restores_the_previous_releases_configuration_files() {
    let w = world("config-rollback").await;
    let snapshots = ConfigSnapshots::new(w.docker.clone(), w.config().labels.clone());
    let files =
        |greeting: &str| BTreeMap::from([("app.conf".to_owned(), format!("greeting = {greeting}\n").into_bytes())]);
    let sha = |greeting: &str| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("greeting = {greeting}\n").as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let a = snapshots.publish(&w.app, &files("hello"), &w.images[0]).await.unwrap();
    let b = snapshots.publish(&w.app, &files("bonjour"), &w.images[0]).await.unwrap();
    let c = snapshots.publish(&w.app, &files("broken"), &w.images[0]).await.unwrap();
    assert_eq!(a, snapshots.publish(&w.app, &files("hello"), &w.images[0]).await.unwrap(), "content-addressed");
    assert_eq!(a.len(), 16);

    let platform = w.platform(w.config().workload(w.app.clone(), Workload::default().config_mount("/etc/app")));
    let kit = TestKit::new();
    let engine = w.engine(&kit, platform.clone());
    // One container at a time is taken down and replaced: a rollback re-creates them.
    let mut spec = w.spec();
    spec.rolling_update = RollingUpdateParams::new(IntOrPercent::Int(0), IntOrPercent::Int(1));
    let v1 = w.release(0).config_checksum(&a);
    let v2 = w.release(1).config_checksum(&b);
    let v3 = w.release(2).config_checksum(&c);
    platform.apply(&spec, Track::Stable, &v1, 2).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    let hashes = |ids: Vec<String>| {
        let docker = w.docker.clone();
        async move {
            let mut out = Vec::new();
            for id in ids {
                out.push(exec(&docker, &id, &["sha256sum", "/etc/app/app.conf"]).await);
            }
            out.into_iter().map(|l| l.split_whitespace().next().unwrap_or_default().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(hashes(w.track_ids(Track::Stable).await).await, [sha("hello"), sha("hello")]);

    let plan = RollingUpdate::new(IntOrPercent::Int(0), IntOrPercent::Int(1)).plan(&PlanInput::new(2));
    let run =
        |from: &Release, to: &Release| RolloutRequest::new(spec.clone(), to.clone(), plan.clone()).from(from.clone());
    let report = engine.run(run(&v1, &v2)).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let v2_ids = w.track_ids(Track::Stable).await;
    assert_eq!(hashes(v2_ids.clone()).await, [sha("bonjour"), sha("bonjour")], "2.0.0 reads its own files");

    let report = engine.run(run(&v2, &v3)).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{:?}", report.cause);
    let after = w.track_ids(Track::Stable).await;
    assert_eq!(after.len(), 2);
    assert!(after.iter().any(|id| !v2_ids.contains(id)), "the rollback re-created a 2.0.0 container");
    for id in &after {
        let inspect = w.docker.inspect_container(id, None).await.unwrap();
        let version = inspect.config.unwrap().labels.unwrap()[labels::VERSION].clone();
        assert_eq!(version, "2.0.0");
    }
    assert_eq!(
        hashes(after).await,
        [sha("bonjour"), sha("bonjour")],
        "after the rollback every 2.0.0 container reads 2.0.0's files, not 3.0.0's"
    );

    // A release naming a snapshot that does not exist is refused before anything runs.
    let missing = w.release(1).config_checksum("00000000deadbeef");
    let err = platform.apply(&spec, Track::Canary, &missing, 1).await.unwrap_err();
    assert!(matches!(err, PlatformError::Invalid { .. }) && err.to_string().contains("config_checksum"), "{err}");
    assert!(w.track_ids(Track::Canary).await.is_empty());

    w.finish(&platform).await;
    // Nothing mounts them now: garbage collection keeping none removes all three.
    assert_eq!(snapshots.collect_garbage(&w.app, 0).await.unwrap(), 3);
    assert!(!snapshots.exists(&w.app, &a).await.unwrap());
}

/// Issue 19: a full run on the Docker platform with an environment variable from a
/// `SecretManager` (a rolling update that succeeds, one that is rolled back, and an
/// apply whose secret is missing): the containers really have the value, and no
/// trace line (every level, TRACE included), event, record, report or error shows it.
#[tokio::test]
async fn a_full_run_with_secret_env_traces_and_prints_no_secret_value() {
    let w = world("secret-trace").await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let value = format!("s3cr3t-docker-{nanos:09}-{}", std::process::id());
    let capture = deploy_core::testkit::trace::TraceCapture::default();
    let guard = capture.set_default();

    let secrets = Arc::new(Secrets::default());
    secrets.put("shop-db/password", SecretBytes::from(value.as_bytes()), PutOptions::default()).await.unwrap();
    let platform = Arc::new(DockerPlatform::new(w.docker.clone(), w.config()).secrets(secrets.clone()));
    let kit = TestKit::new();
    let engine = w.engine(&kit, platform.clone());
    let spec = w.spec().env(EnvVar::from_secret("DB_PASSWORD", Name::new("shop-db").unwrap(), "password").unwrap());
    let mut printed = vec![format!("{platform:?}")];

    platform.apply(&spec, Track::Stable, &w.release(0), 1).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    let plan = RollingUpdate::new(IntOrPercent::Int(1), IntOrPercent::Int(0)).plan(&PlanInput::new(1));
    let mut statuses = Vec::new();
    for (from, to) in [(0, 1), (1, 2)] {
        let request = RolloutRequest::new(spec.clone(), w.release(to), plan.clone()).from(w.release(from));
        let mut handle = engine.start(request).await.unwrap();
        let mut events = Vec::new();
        while let Some(e) = tokio::time::timeout(Duration::from_secs(120), handle.next_event()).await.unwrap() {
            events.push(e);
        }
        let report = handle.wait().await.unwrap();
        for e in &events {
            printed.push(format!("{e:?}"));
            printed.push(e.to_string());
        }
        printed.push(format!("{report:?}"));
        printed.push(serde_json::to_string(&report.record).unwrap());
        if let Some(cause) = &report.cause {
            printed.push(cause.to_string());
        }
        statuses.push(report.status);
        // The value really reached the containers that serve after the run.
        let ids = w.track_ids(Track::Stable).await;
        assert_eq!(ids.len(), 1, "one stable container after {from} -> {to}");
        assert_eq!(exec(&w.docker, &ids[0], &["/bin/sh", "-c", "echo -n \"$DB_PASSWORD\""]).await, value);
    }
    assert_eq!(statuses, [DeploymentStatus::Succeeded, DeploymentStatus::RolledBack]);

    // A secret the manager does not have: the error names the key, not a value.
    let missing = w.spec().env(EnvVar::from_secret("API_KEY", Name::new("shop-api").unwrap(), "key").unwrap());
    let err = platform.apply(&missing, Track::Canary, &w.release(1), 1).await.unwrap_err();
    printed.push(format!("{err:?}"));
    printed.push(err.to_string());
    for record in kit.history().records() {
        printed.push(format!("{record:?}"));
    }
    drop(guard);
    let text = capture.text();
    // The platform's own work was captured: container runs and the engine's HTTP exchanges.
    assert!(text.contains("span run: container.name="), "the container runs were traced: {text}");
    assert!(text.contains("event TRACE hyper"), "the engine API exchanges were traced at TRACE: {text}");
    capture.assert_free_of(&[value.as_str()]);
    for p in &printed {
        assert!(!p.contains(&value), "the secret is in a printed event, record, report or error: {p}");
    }
    w.finish(&platform).await;
}
