//! Invariants 3 and 6 across real processes: a driver running a canary on the
//! real Docker engine is killed with `SIGKILL` while its rollout is paused;
//! another process resumes it from the durable store (the file store, then the
//! Redis store), takes the dead driver's lease over (the old token is fenced
//! out), and the rollout ends as an uninterrupted one would: 2.0.0 on the stable
//! track with all traffic, no canary, no saved progress, no lock, a succeeded
//! record.
//!
//! The driver is this test binary re-invoked with `DEPLOY_RS_CRASH_DRIVER` set
//! (see `crash_driver_child`), so the kill hits a real process.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{Cleanup, build_busybox, docker, require_binary};
use deploy_cache::store::{RedisHistoryStore, RedisStateStore};
use deploy_core::engine::{EngineConfig, RetryPolicy, RolloutEngine, RolloutError, RolloutEvent, RolloutRequest};
use deploy_core::history::{HistoryQuery, HistoryStore};
use deploy_core::model::{
    AppId, AppSpec, DeploymentStatus, HumanDuration, ImageRef, Name, Namespace, Percent, Probe, Release, Track,
    TrafficSplit, Version,
};
use deploy_core::plan::{PauseKind, Step};
use deploy_core::platform::Platform;
use deploy_core::state::{StateError, StateStore};
use deploy_core::store::file::{FileHistoryStore, FileStateStore};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::traffic::TrafficRouter;
use deploy_docker::NetworkName;
use deploy_docker::containers::Containers;
use deploy_docker::labels;
use deploy_docker::platform::{DockerPlatform, PlatformConfig};
use deploy_docker::router::NetworkAliasRouter;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

const DRIVER_ENV: &str = "DEPLOY_RS_CRASH_DRIVER";
const ID_ENV: &str = "DEPLOY_RS_CRASH_ID";
const STORE_ENV: &str = "DEPLOY_RS_CRASH_STORE";
const LOCK_TTL: Duration = Duration::from_secs(3);

/// Everything a driver process needs, rebuilt from the test's id.
struct World {
    cleanup: Cleanup,
    platform: Arc<DockerPlatform>,
    router: Arc<NetworkAliasRouter>,
    app: AppId,
}

async fn world(id: &str) -> World {
    let docker = docker().await;
    let cleanup = Cleanup { id: id.to_owned() };
    let (key, value) = cleanup.label();
    let serving = format!("{id}-edge");
    let config = PlatformConfig::default()
        .network(NetworkName::new(format!("{id}-net")).unwrap())
        .serving_network(NetworkName::new(&serving).unwrap())
        .label(key, value)
        .poll_interval(Duration::from_millis(100));
    let platform = Arc::new(DockerPlatform::new(docker.clone(), config));
    let router = Arc::new(
        NetworkAliasRouter::new(docker, NetworkName::new(serving.clone()).unwrap())
            .network_labels([cleanup.label()].into_iter().collect()),
    );
    let app = AppId::new(Namespace::new(id).unwrap(), Name::new("web").unwrap());
    World { cleanup, platform, router, app }
}

impl World {
    fn image(&self, version: &str) -> String {
        format!("deploy-rs-test/{}:{version}", self.cleanup.id)
    }

    fn release(&self, version: &str) -> Release {
        Release::new(Version::new(version).unwrap(), ImageRef::parse(&self.image(version)).unwrap())
    }

    fn spec(&self) -> AppSpec {
        let mut probe = Probe::http("/health", 8080).period(HumanDuration::new(Duration::from_millis(500)));
        probe.failure_threshold = 2;
        AppSpec::new(self.app.namespace.clone(), self.app.name.clone(), ImageRef::parse(&self.image("1.0.0")).unwrap())
            .readiness(probe)
            .replicas(2)
    }
}

/// The state and history stores named by `spec` (`file:<dir>` or `redis:<url>`).
async fn stores(spec: &str) -> (Arc<dyn StateStore>, Arc<dyn HistoryStore>) {
    if let Some(dir) = spec.strip_prefix("file:") {
        (Arc::new(FileStateStore::new(dir)), Arc::new(FileHistoryStore::new(dir)))
    } else if let Some(url) = spec.strip_prefix("redis:") {
        (
            Arc::new(RedisStateStore::connect(url, "crash").await.unwrap()),
            Arc::new(RedisHistoryStore::connect(url, "crash").await.unwrap()),
        )
    } else {
        panic!("unknown store {spec}")
    }
}

fn engine(w: &World, state: Arc<dyn StateStore>, history: Arc<dyn HistoryStore>, holder: &str) -> RolloutEngine {
    let config = EngineConfig::default()
        .step_deadline(Duration::from_secs(90))
        .readiness_deadline(Duration::from_secs(60))
        .retry(RetryPolicy::new(3, Duration::from_millis(50), Duration::from_millis(200)))
        .lock_ttl(LOCK_TTL)
        .holder(holder);
    let platform: Arc<dyn Platform> = w.platform.clone();
    let router: Arc<dyn TrafficRouter> = w.router.clone();
    RolloutEngine::builder(platform, state, history).config(config).router(router).build()
}

/// The driver process: `start` begins the canary, `resume` takes it over; both
/// print (on stderr, which the parent reads) `DRIVER PAUSED` at the pause and
/// `DRIVER DONE <status>` at the end.
#[tokio::test]
async fn crash_driver_child() {
    let Ok(mode) = std::env::var(DRIVER_ENV) else { return };
    let w = world(&std::env::var(ID_ENV).unwrap()).await;
    let (state, history) = stores(&std::env::var(STORE_ENV).unwrap()).await;
    let engine = engine(&w, state, history, &format!("driver-{mode}-{}", std::process::id()));
    let mut handle = if mode == "start" {
        let plan =
            Canary::with_steps(vec![Step::SetWeight(Percent::new(50).unwrap()), Step::Pause(PauseKind::UntilPromoted)])
                .scale_down_delay(HumanDuration::ZERO)
                .plan(&PlanInput::new(2));
        engine.start(RolloutRequest::new(w.spec(), w.release("2.0.0"), plan).from(w.release("1.0.0"))).await.unwrap()
    } else {
        // The dead driver's lease must be seen unchanged for its whole ttl first.
        loop {
            match engine.resume(&w.app).await {
                Ok(handle) => break handle,
                Err(RolloutError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(300)).await,
                Err(e) => panic!("resume: {e}"),
            }
        }
    };
    while let Some(event) = handle.next_event().await {
        eprintln!("driver {mode}: {event}");
        if matches!(event, RolloutEvent::Paused { .. }) {
            eprintln!("DRIVER PAUSED");
        }
    }
    let report = handle.wait().await.unwrap();
    // The test that started this process owns the clean-up: dropping the guard
    // here would remove the app this driver just rolled out.
    std::mem::forget(w);
    eprintln!("DRIVER DONE {:?}", report.status);
}

fn spawn_driver(mode: &str, id: &str, store: &str) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_driver_child", "--nocapture", "--test-threads=1"])
        .env(DRIVER_ENV, mode)
        .env(ID_ENV, id)
        .env(STORE_ENV, store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

async fn expect_line(lines: &mut Lines<BufReader<ChildStderr>>, prefix: &str) -> String {
    let wait = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("  {line}");
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("the driver exited before printing {prefix}");
    };
    tokio::time::timeout(Duration::from_secs(180), wait).await.unwrap_or_else(|_| panic!("no {prefix} within 180 s"))
}

async fn crash_and_resume(prefix: &str, store_for: impl FnOnce() -> String) {
    let docker = docker().await;
    let w = world(&common::unique(prefix)).await;
    build_busybox(&docker, &w.cleanup, &w.image("1.0.0"), "1.0.0", true).await;
    build_busybox(&docker, &w.cleanup, &w.image("2.0.0"), "2.0.0", true).await;
    w.platform.apply(&w.spec(), Track::Stable, &w.release("1.0.0"), 2).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(60)).await.unwrap();
    w.router.set_weights(&w.app, &TrafficSplit::all(Track::Stable)).await.unwrap();
    let store = store_for();
    let (state, history) = stores(&store).await;

    let (mut first, mut first_out) = spawn_driver("start", &w.cleanup.id, &store);
    expect_line(&mut first_out, "DRIVER PAUSED").await;
    let dead_lease = state.read_lock(&w.app).await.unwrap().expect("the driver holds the lock");
    let saved = state.load(&w.app).await.unwrap().expect("progress is saved");
    assert_eq!(saved.value.canary_weight(), Percent::new(50).unwrap());
    first.start_kill().unwrap(); // SIGKILL
    let status = first.wait().await.unwrap();
    assert!(!status.success(), "killed: {status:?}");

    let (mut second, mut second_out) = spawn_driver("resume", &w.cleanup.id, &store);
    expect_line(&mut second_out, "DRIVER PAUSED").await;
    let lease = state.read_lock(&w.app).await.unwrap().expect("the resumer holds the lock");
    assert_ne!(lease.token, dead_lease.token, "the resumer took the lease over with its own token");
    assert!(lease.holder.starts_with("driver-resume-"), "{}", lease.holder);
    // The dead driver's token is fenced out: it renews nothing.
    let fenced = state.renew_lock(&dead_lease, LOCK_TTL).await;
    assert!(matches!(fenced, Err(StateError::LockLost { .. })), "{fenced:?}");
    assert_eq!(w.router.weights(&w.app).await.unwrap().weight(Track::Canary), Percent::new(50).unwrap());

    // Promoted through the store by a third party, as a CLI would.
    let (s, h) = stores(&store).await;
    engine(&w, s, h, "operator").promote(&w.app).await.unwrap();
    let done = expect_line(&mut second_out, "DRIVER DONE").await;
    assert_eq!(done, "DRIVER DONE Succeeded");
    assert!(second.wait().await.unwrap().success());

    // The end state of an uninterrupted rollout, read back from the systems.
    let containers = Containers::new(docker.clone());
    assert!(containers.list(&labels::track_selector(&w.app, Track::Canary)).await.unwrap().is_empty(), "no canary");
    let stable = containers.list(&labels::track_selector(&w.app, Track::Stable)).await.unwrap();
    let all = containers.list(&labels::app_selector(&w.app)).await.unwrap();
    assert_eq!(stable.len(), 2, "stable {stable:?}, every container of the app: {all:?}");
    for id in &stable {
        let c = docker.inspect_container(id, None).await.unwrap();
        let image = c.config.and_then(|c| c.image).unwrap_or_default();
        assert_eq!(image, w.image("2.0.0"), "stable container {id} runs 2.0.0");
    }
    assert_eq!(w.router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Stable));
    assert!(state.load(&w.app).await.unwrap().is_none(), "progress cleared");
    assert!(state.read_lock(&w.app).await.unwrap().is_none(), "lock released");
    let records = history.list(&HistoryQuery::default().app(w.app.clone())).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].status, DeploymentStatus::Succeeded);

    w.platform.remove_app(&w.app).await.unwrap();
    w.platform.remove_everything_labelled().await.unwrap();
    let (containers, networks, _) = w.cleanup.leftovers(&docker).await;
    assert_eq!((containers, networks), (0, 0), "clean-up left labelled objects behind");
}

#[tokio::test]
async fn sigkill_mid_canary_resumes_from_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    crash_and_resume("crash-file", || format!("file:{path}")).await;
}

/// A redis-server on a free loopback port, killed on drop.
struct Redis(std::process::Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Redis {
    require_binary("/usr/bin/redis-server", "redis-server");
    let port = common::free_port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "redis-server on port {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis(child, port)
}

#[tokio::test]
async fn sigkill_mid_canary_resumes_from_the_redis_store() {
    let redis = start_redis();
    let port = redis.1;
    crash_and_resume("crash-redis", move || format!("redis:redis://127.0.0.1:{port}")).await;
    drop(redis);
}
