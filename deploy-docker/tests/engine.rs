//! deploy-core's rollout engine, unmodified, on the real engine: a blue-green and a
//! canary rollout whose new version fails its health check are rolled back on
//! their own, the old containers keep serving throughout, and clean-up leaves
//! nothing labelled behind.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cleanup, build_busybox, docker, exec};
use deploy_core::engine::{EngineConfig, RetryPolicy, RolloutEngine, RolloutRequest};
use deploy_core::model::{
    AppId, AppSpec, DeploymentStatus, HumanDuration, ImageRef, Name, Namespace, Percent, Probe, Release, Track,
    TrafficSplit, Version,
};
use deploy_core::plan::{Plan, Step};
use deploy_core::platform::Platform;
use deploy_core::strategy::{BlueGreen, Canary, PlanInput, Strategy};
use deploy_core::testkit::TestKit;
use deploy_core::traffic::TrafficRouter;
use deploy_docker::NetworkName;
use deploy_docker::containers::{ContainerSpec, Containers};
use deploy_docker::labels;
use deploy_docker::platform::{DockerPlatform, PlatformConfig};
use deploy_docker::router::NetworkAliasRouter;

struct World {
    docker: bollard::Docker,
    cleanup: Cleanup,
    platform: Arc<DockerPlatform>,
    router: Arc<NetworkAliasRouter>,
    app: AppId,
    serving: String,
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
    let serving = format!("{}-edge", cleanup.id);
    let (key, value) = cleanup.label();
    let config = PlatformConfig::default()
        .network(NetworkName::new(format!("{}-net", cleanup.id)).unwrap())
        .serving_network(NetworkName::new(&serving).unwrap())
        .label(key, value)
        .poll_interval(Duration::from_millis(100));
    let platform = Arc::new(DockerPlatform::new(docker.clone(), config));
    let router = Arc::new(
        NetworkAliasRouter::new(docker.clone(), NetworkName::new(serving.clone()).unwrap())
            .network_labels([cleanup.label()].into_iter().collect()),
    );
    let app = AppId::new(Namespace::new(cleanup.id.clone()).unwrap(), Name::new("web").unwrap());
    World { docker, cleanup, platform, router, app, serving, images }
}

impl World {
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

    fn engine(&self, kit: &TestKit) -> RolloutEngine {
        let config = EngineConfig::default()
            .step_deadline(Duration::from_secs(60))
            .readiness_deadline(Duration::from_secs(30))
            .retry(RetryPolicy::new(3, Duration::from_millis(50), Duration::from_millis(200)))
            .holder("docker-engine-test");
        let platform: Arc<dyn Platform> = self.platform.clone();
        let router: Arc<dyn TrafficRouter> = self.router.clone();
        RolloutEngine::builder(platform, kit.state_store(), kit.history_store()).config(config).router(router).build()
    }

    async fn client(&self) -> String {
        let spec = ContainerSpec::new(format!("{}-client", self.cleanup.id), &self.images[0])
            .command(["sleep", "600"])
            .network(&self.serving, Vec::<String>::new())
            .labels([self.cleanup.label()]);
        Containers::new(self.docker.clone()).run(&spec).await.unwrap()
    }

    /// Calls the app from the serving network until `stop` is set; returns every answer.
    fn keep_calling(
        &self,
        client: String,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        let docker = self.docker.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let answer = exec(&docker, &client, &["wget", "-q", "-O", "-", "http://web:8080/version"]).await;
                answers.push(answer.trim().to_owned());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answers
        })
    }

    async fn track_ids(&self, track: Track) -> Vec<String> {
        Containers::new(self.docker.clone()).list(&labels::track_selector(&self.app, track)).await.unwrap()
    }

    async fn finish(self) {
        self.platform.remove_app(&self.app).await.unwrap();
        self.platform.remove_everything_labelled().await.unwrap();
        let containers = Containers::new(self.docker.clone());
        containers.remove_labelled(&[self.cleanup.label()].into_iter().collect()).await.unwrap();
        let (containers, networks, _) = self.cleanup.leftovers(&self.docker).await;
        assert_eq!((containers, networks), (0, 0), "clean-up left labelled objects behind");
    }
}

async fn run(
    engine: &RolloutEngine,
    w: &World,
    plan: Plan,
    from: usize,
    to: usize,
) -> deploy_core::engine::RolloutReport {
    let request = RolloutRequest::new(w.spec(), w.release(to), plan).from(w.release(from));
    tokio::time::timeout(Duration::from_secs(180), engine.run(request)).await.unwrap().unwrap()
}

#[tokio::test]
async fn blue_green_rollout_succeeds_then_a_bad_version_is_rolled_back_while_the_old_keeps_serving() {
    let w = world("engine-bg").await;
    let kit = TestKit::new();
    let engine = w.engine(&kit);
    // 1.0.0 serves from blue.
    w.platform.apply(&w.spec(), Track::Blue, &w.release(0), 2).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Blue, Duration::from_secs(30)).await.unwrap();
    w.router.set_weights(&w.app, &TrafficSplit::all(Track::Blue)).await.unwrap();
    let client = w.client().await;

    let plan =
        BlueGreen::default().scale_down_delay(HumanDuration::ZERO).plan(&PlanInput::new(2).live_track(Track::Blue));
    let report = run(&engine, &w, plan, 0, 1).await;
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_eq!(w.router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Green));
    assert!(w.track_ids(Track::Blue).await.is_empty(), "blue scaled down after the switch");
    let serving = w.track_ids(Track::Green).await;
    assert_eq!(serving.len(), 2);

    // 3.0.0-bad on blue: its health check fails, the engine rolls back on its own.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = w.keep_calling(client, Arc::clone(&stop));
    let plan =
        BlueGreen::default().scale_down_delay(HumanDuration::ZERO).plan(&PlanInput::new(2).live_track(Track::Green));
    let report = run(&engine, &w, plan, 1, 2).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = calls.await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{report:?}");
    assert!(report.cause.as_ref().unwrap().message.contains("unhealthy"), "{:?}", report.cause);
    assert_eq!(w.router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Green));
    assert_eq!(w.track_ids(Track::Green).await, serving, "the old containers were never touched");
    assert!(w.track_ids(Track::Blue).await.is_empty(), "the bad release was removed");
    assert!(!answers.is_empty());
    assert!(answers.iter().all(|a| a == "2.0.0"), "every call during the rollout was served by 2.0.0: {answers:?}");
    w.finish().await;
}

#[tokio::test]
async fn canary_by_replica_ratio_with_a_bad_version_is_rolled_back_while_stable_keeps_serving() {
    let w = world("engine-canary").await;
    let kit = TestKit::new();
    let engine = w.engine(&kit);
    w.platform.apply(&w.spec(), Track::Stable, &w.release(0), 3).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    let client = w.client().await;
    let stable = w.track_ids(Track::Stable).await;
    assert_eq!(w.router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Stable));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = w.keep_calling(client, Arc::clone(&stop));
    let plan = Canary::with_steps(vec![Step::SetWeight(Percent::new(25).unwrap())])
        .scale_down_delay(HumanDuration::ZERO)
        .plan(&PlanInput::new(4));
    let report = run(&engine, &w, plan, 0, 2).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = calls.await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{report:?}");
    assert_eq!(w.router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Stable));
    assert!(w.track_ids(Track::Canary).await.is_empty(), "the bad canary was removed");
    let now = w.track_ids(Track::Stable).await;
    assert!(stable.iter().all(|id| now.contains(id)), "the stable containers kept running: {stable:?} vs {now:?}");
    assert!(!answers.is_empty());
    assert!(answers.iter().all(|a| a == "1.0.0"), "the unhealthy canary never served: {answers:?}");
    w.finish().await;
}
