//! The Docker platform and the network-alias router on the real engine: rolling
//! replacement within surge and unavailability, readiness from health, failing
//! fast, blue-green alias switches and a canary by replica ratio.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Cleanup, build_busybox, docker, exec};
use deploy_core::model::{
    AppId, AppSpec, HumanDuration, ImageRef, IntOrPercent, Name, Namespace, Percent, Probe, Release,
    RollingUpdateParams, Track, TrafficSplit, Version,
};
use deploy_core::platform::{Platform, PlatformError, TrackState};
use deploy_core::traffic::{RouterError, TrafficRouter};
use deploy_docker::NetworkName;
use deploy_docker::containers::{ContainerSpec, Containers, Health};
use deploy_docker::labels;
use deploy_docker::platform::{DockerPlatform, PlatformConfig};
use deploy_docker::router::NetworkAliasRouter;

struct World {
    docker: bollard::Docker,
    cleanup: Cleanup,
    platform: DockerPlatform,
    app: AppId,
    good: [String; 2],
    bad: String,
    serving: String,
}

async fn world(prefix: &str) -> World {
    let docker = docker().await;
    let cleanup = Cleanup::new(prefix);
    let repo = format!("deploy-rs-test/{}", cleanup.id);
    let good = [format!("{repo}:1.0.0"), format!("{repo}:2.0.0")];
    let bad = format!("{repo}:3.0.0-bad");
    build_busybox(&docker, &cleanup, &good[0], "1.0.0", true).await;
    build_busybox(&docker, &cleanup, &good[1], "2.0.0", true).await;
    build_busybox(&docker, &cleanup, &bad, "3.0.0-bad", false).await;
    let serving = format!("{}-edge", cleanup.id);
    let (key, value) = cleanup.label();
    let config = PlatformConfig::default()
        .network(NetworkName::new(format!("{}-net", cleanup.id)).unwrap())
        .serving_network(NetworkName::new(&serving).unwrap())
        .label(key, value)
        .poll_interval(Duration::from_millis(100))
        .rollout_timeout(Duration::from_secs(60));
    let platform = DockerPlatform::new(docker.clone(), config);
    let app = AppId::new(Namespace::new(cleanup.id.clone()).unwrap(), Name::new("web").unwrap());
    World { docker, cleanup, platform, app, good, bad, serving }
}

impl World {
    fn spec(&self, replicas: u32) -> AppSpec {
        let mut probe = Probe::http("/health", 8080).period(HumanDuration::new(Duration::from_millis(500)));
        probe.failure_threshold = 2;
        AppSpec::new(self.app.namespace.clone(), self.app.name.clone(), ImageRef::parse(&self.good[0]).unwrap())
            .replicas(replicas)
            .readiness(probe)
    }

    fn release(&self, image: &str) -> Release {
        let version = image.rsplit(':').next().unwrap();
        Release::new(Version::new(version).unwrap(), ImageRef::parse(image).unwrap())
    }

    /// A busybox container on the serving network to call the app from.
    async fn client(&self) -> String {
        let spec = ContainerSpec::new(format!("{}-client", self.cleanup.id), &self.good[0])
            .command(["sleep", "300"])
            .network(&self.serving, Vec::<String>::new())
            .labels([self.cleanup.label()]);
        Containers::new(self.docker.clone()).run(&spec).await.unwrap()
    }

    /// What `http://web:8080/version` answers from inside the serving network.
    async fn call(&self, client: &str) -> String {
        exec(&self.docker, client, &["wget", "-q", "-O", "-", "http://web:8080/version"]).await.trim().to_owned()
    }

    async fn versions(&self, track: Track) -> Vec<String> {
        let containers = Containers::new(self.docker.clone());
        let mut versions = Vec::new();
        for id in containers.list(&labels::track_selector(&self.app, track)).await.unwrap() {
            versions.push(containers.state(&id).await.unwrap().labels[labels::VERSION].clone());
        }
        versions
    }
}

#[tokio::test]
async fn rolling_replacement_honours_surge_and_unavailability_and_a_bad_version_fails_fast() {
    let w = world("rolling").await;
    let spec = w.spec(3).rolling_update(RollingUpdateParams::new(IntOrPercent::Int(1), IntOrPercent::Int(0)));
    let wait = Duration::from_secs(30);

    w.platform.apply(&spec, Track::Stable, &w.release(&w.good[0]), 3).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Stable, wait).await.unwrap();
    let status = w.platform.status(&w.app, Track::Stable).await.unwrap();
    assert_eq!((status.desired, status.updated, status.ready, status.state.clone()), (3, 3, 3, TrackState::Ready));
    assert_eq!(status.release.unwrap().as_str(), "1.0.0");

    // Watch the track while it is replaced: never more than 4 containers, never
    // fewer than 3 ready.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (docker, app, watching) = (w.docker.clone(), w.app.clone(), Arc::clone(&watching));
        tokio::spawn(async move {
            let containers = Containers::new(docker);
            let (mut most, mut fewest_ready) = (0, usize::MAX);
            while watching.load(Ordering::SeqCst) {
                let ids = containers.list(&labels::track_selector(&app, Track::Stable)).await.unwrap();
                let mut ready = 0;
                for id in &ids {
                    if let Ok(state) = containers.state(id).await
                        && state.running
                        && state.health == Health::Healthy
                    {
                        ready += 1;
                    }
                }
                most = most.max(ids.len());
                fewest_ready = fewest_ready.min(ready);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (most, fewest_ready)
        })
    };
    w.platform.apply(&spec, Track::Stable, &w.release(&w.good[1]), 3).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Stable, wait).await.unwrap();
    watching.store(false, Ordering::SeqCst);
    let (most, fewest_ready) = watcher.await.unwrap();
    assert!(most <= 4, "max surge 1 over 3 replicas, saw {most} containers");
    assert!(fewest_ready >= 3, "max unavailable 0, saw {fewest_ready} ready");
    assert_eq!(w.versions(Track::Stable).await, ["2.0.0", "2.0.0", "2.0.0"]);

    // A version whose health check fails is reported as doomed, and the old
    // containers are still all there and ready.
    let err = w.platform.apply(&spec, Track::Stable, &w.release(&w.bad), 3).await.unwrap_err();
    let PlatformError::Doomed { reason, .. } = &err else { panic!("{err:?}") };
    assert!(reason.contains("unhealthy"), "{reason}");
    let versions = w.platform.status(&w.app, Track::Stable).await.unwrap();
    assert_eq!(versions.ready, 3, "{versions:?}");
    assert_eq!(versions.state, TrackState::Failed(reason.clone()));

    // Scale, stop and remove.
    w.platform.apply(&spec, Track::Stable, &w.release(&w.good[1]), 3).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Stable, wait).await.unwrap();
    assert_eq!(w.versions(Track::Stable).await, ["2.0.0", "2.0.0", "2.0.0"], "the bad container went");
    w.platform.scale(&w.app, Track::Stable, 1).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Stable, wait).await.unwrap();
    assert_eq!(w.platform.status(&w.app, Track::Stable).await.unwrap().desired, 1);
    w.platform.scale(&w.app, Track::Stable, 2).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Stable, wait).await.unwrap();
    assert_eq!(w.versions(Track::Stable).await, ["2.0.0", "2.0.0"], "scaled up from a clone of the track");
    w.platform.remove(&w.app, Track::Stable).await.unwrap();
    assert_eq!(w.platform.status(&w.app, Track::Stable).await.unwrap().state, TrackState::Absent);
    assert!(matches!(w.platform.scale(&w.app, Track::Stable, 1).await, Err(PlatformError::NotFound { .. })));
    w.platform.remove(&w.app, Track::Stable).await.unwrap();
    w.platform.remove_everything_labelled().await.unwrap();
    assert_eq!(w.cleanup.leftovers(&w.docker).await.0, 0);
}

#[tokio::test]
async fn unknown_images_and_crash_loops_fail_fast() {
    let w = world("doomed").await;
    let registry = common::LocalRegistry::start();
    let missing = format!("{}/deploy-rs-test/never-pushed:1.0.0", registry.host());
    let err = w.platform.apply(&w.spec(1), Track::Canary, &w.release(&missing), 1).await.unwrap_err();
    let PlatformError::Doomed { reason, .. } = &err else { panic!("{err:?}") };
    assert!(reason.contains("does not exist"), "{reason}");

    // A container whose process keeps exiting.
    let mut spec = w.spec(1);
    spec.readiness = None;
    let crashing = Release::new(Version::new("9").unwrap(), ImageRef::parse(&w.good[0]).unwrap());
    let containers = Containers::new(w.docker.clone());
    w.platform.apply(&spec, Track::Canary, &crashing, 1).await.unwrap();
    // Make the container crash: replace it by one that exits at once, with the track's labels.
    let id = containers.list(&labels::track_selector(&w.app, Track::Canary)).await.unwrap().remove(0);
    let state = containers.state(&id).await.unwrap();
    containers.remove(&id).await.unwrap();
    let crash = ContainerSpec::new(format!("{}-crash", w.cleanup.id), &w.good[0])
        .command(["sh", "-c", "echo boom; exit 3"])
        .restart(deploy_docker::containers::RestartPolicy::Always)
        .labels(state.labels.clone());
    containers.run(&crash).await.unwrap();
    let started = std::time::Instant::now();
    let err = w.platform.wait_ready(&w.app, Track::Canary, Duration::from_secs(60)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "failed fast, not at the deadline");
    let PlatformError::Doomed { reason, .. } = &err else { panic!("{err:?}") };
    assert!(reason.contains("crash loop") || reason.contains("exited with code 3"), "{reason}");
    w.platform.remove_everything_labelled().await.unwrap();
}

#[tokio::test]
async fn blue_green_switches_the_alias_and_reads_it_back() {
    let w = world("bluegreen").await;
    let router = NetworkAliasRouter::new(w.docker.clone(), NetworkName::new(w.serving.clone()).unwrap());
    let wait = Duration::from_secs(30);
    w.platform.apply(&w.spec(2), Track::Blue, &w.release(&w.good[0]), 2).await.unwrap();
    let client = w.client().await;
    w.platform.wait_ready(&w.app, Track::Blue, wait).await.unwrap();
    assert!(matches!(router.weights(&w.app).await, Err(RouterError::NotFound { .. })), "blue does not serve yet");
    router.set_weights(&w.app, &TrafficSplit::all(Track::Blue)).await.unwrap();
    assert_eq!(router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Blue));
    assert_eq!(w.call(&client).await, "1.0.0");

    w.platform.apply(&w.spec(2), Track::Green, &w.release(&w.good[1]), 2).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Green, wait).await.unwrap();
    assert_eq!(router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Blue), "green waits for the switch");
    router.set_weights(&w.app, &TrafficSplit::all(Track::Green)).await.unwrap();
    assert_eq!(router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Green));
    for _ in 0..4 {
        assert_eq!(w.call(&client).await, "2.0.0");
    }
    let split = TrafficSplit::between(Track::Blue, Track::Green, Percent::new(50).unwrap());
    assert!(matches!(router.set_weights(&w.app, &split).await, Err(RouterError::Unsupported { .. })));

    // Switching back is the rollback.
    router.set_weights(&w.app, &TrafficSplit::all(Track::Blue)).await.unwrap();
    assert_eq!(w.call(&client).await, "1.0.0");
    w.platform.remove_app(&w.app).await.unwrap();
    w.platform.remove_everything_labelled().await.unwrap();
    let (containers, networks, _) = w.cleanup.leftovers(&w.docker).await;
    assert_eq!((containers, networks), (0, 0));
}

#[tokio::test]
async fn canary_by_replica_ratio_shares_the_alias() {
    let w = world("canary").await;
    let router = NetworkAliasRouter::new(w.docker.clone(), NetworkName::new(w.serving.clone()).unwrap());
    let wait = Duration::from_secs(30);
    w.platform.apply(&w.spec(3), Track::Stable, &w.release(&w.good[0]), 3).await.unwrap();
    let client = w.client().await;
    w.platform.wait_ready(&w.app, Track::Stable, wait).await.unwrap();
    assert_eq!(router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Stable), "stable joins on its own");
    w.platform.apply(&w.spec(1), Track::Canary, &w.release(&w.good[1]), 1).await.unwrap();
    w.platform.wait_ready(&w.app, Track::Canary, wait).await.unwrap();
    assert_eq!(router.weights(&w.app).await.unwrap(), TrafficSplit::canary(Percent::new(25).unwrap()));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(w.call(&client).await);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["1.0.0", "2.0.0"], "both tracks answer behind one alias");

    // Taking the canary out of traffic, as a rollback does.
    router.set_weights(&w.app, &TrafficSplit::all(Track::Stable)).await.unwrap();
    assert_eq!(router.weights(&w.app).await.unwrap(), TrafficSplit::all(Track::Stable));
    for _ in 0..6 {
        assert_eq!(w.call(&client).await, "1.0.0");
    }
    w.platform.remove_app(&w.app).await.unwrap();
    w.platform.remove_everything_labelled().await.unwrap();
}
