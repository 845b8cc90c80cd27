//! Issue 20 on the real Docker engine: readiness follows the engine's container
//! events everywhere, the in-place rolling replacement inside `apply` included,
//! and a dropped event stream is subscribed again from the last event's time
//! instead of falling back to polling at once.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use common::{Cleanup, build_busybox, docker};
use deploy_core::model::{
    AppId, AppSpec, HumanDuration, ImageRef, IntOrPercent, Name, Namespace, Probe, Release, RollingUpdateParams, Track,
    Version,
};
use deploy_core::platform::{Platform, TrackState};
use deploy_docker::NetworkName;
use deploy_docker::containers::Containers;
use deploy_docker::events::{ContainerEvents, DockerEvents, EventStream};
use deploy_docker::labels;
use deploy_docker::platform::{DockerPlatform, PlatformConfig};
use futures::StreamExt;

struct World {
    docker: Docker,
    cleanup: Cleanup,
    app: AppId,
    images: [String; 2],
}

async fn world(prefix: &str) -> World {
    let docker = docker().await;
    let cleanup = Cleanup::new(prefix);
    let repo = format!("deploy-rs-test/{}", cleanup.id);
    let images = [format!("{repo}:1.0.0"), format!("{repo}:2.0.0")];
    build_busybox(&docker, &cleanup, &images[0], "1.0.0", true).await;
    build_busybox(&docker, &cleanup, &images[1], "2.0.0", true).await;
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

    /// Health checked every `period`: readiness comes at least that long after a start.
    fn spec(&self, period: Duration) -> AppSpec {
        let mut probe = Probe::http("/health", 8080).period(HumanDuration::new(period));
        probe.failure_threshold = 2;
        let mut spec =
            AppSpec::new(self.app.namespace.clone(), self.app.name.clone(), ImageRef::parse(&self.images[0]).unwrap())
                .readiness(probe);
        spec.rolling_update = RollingUpdateParams::new(IntOrPercent::Int(1), IntOrPercent::Int(0));
        spec
    }

    fn release(&self, index: usize) -> Release {
        let image = &self.images[index];
        Release::new(Version::new(image.rsplit(':').next().unwrap()).unwrap(), ImageRef::parse(image).unwrap())
    }

    async fn versions(&self, track: Track) -> Vec<String> {
        let ids = Containers::new(self.docker.clone()).list(&labels::track_selector(&self.app, track)).await.unwrap();
        let mut versions = Vec::new();
        for id in ids {
            let inspect = self.docker.inspect_container(&id, None).await.unwrap();
            versions.push(inspect.config.unwrap().labels.unwrap()[labels::VERSION].clone());
        }
        versions
    }

    async fn finish(self, platform: &DockerPlatform) {
        platform.remove_app(&self.app).await.unwrap();
        platform.remove_everything_labelled().await.unwrap();
        let (containers, networks, _) = self.cleanup.leftovers(&self.docker).await;
        assert_eq!((containers, networks), (0, 0), "clean-up left labelled objects behind");
    }
}

#[tokio::test]
async fn an_in_place_rolling_replacement_waits_on_events_not_polls() {
    let w = world("events-rolling").await;
    let platform = DockerPlatform::new(w.docker.clone(), w.config());
    let spec = w.spec(Duration::from_millis(500));
    platform.apply(&spec, Track::Stable, &w.release(0), 2).await.unwrap();
    platform.wait_ready(&w.app, Track::Stable, Duration::from_secs(30)).await.unwrap();
    let before = platform.readiness_counts();

    // 1.0.0 -> 2.0.0 in place: apply returns once every new container is healthy.
    platform.apply(&spec, Track::Stable, &w.release(1), 2).await.unwrap();
    let after = platform.readiness_counts();
    assert_eq!(w.versions(Track::Stable).await, ["2.0.0", "2.0.0"]);
    assert_eq!(platform.status(&w.app, Track::Stable).await.unwrap().state, TrackState::Ready);
    assert_eq!(after.polls, 0, "no poll while the event stream was up: {after:?}");
    assert_eq!(after.fallbacks, 0);
    assert!(after.event_wakeups > before.event_wakeups, "the replacement was woken by events: {after:?}");
    println!("rolling replacement: {before:?} -> {after:?}");

    // The same replacement with events off polls: the counter tells them apart.
    let polling = DockerPlatform::new(w.docker.clone(), w.config().readiness_events(false));
    polling.apply(&spec, Track::Stable, &w.release(0), 2).await.unwrap();
    let counted = polling.readiness_counts();
    assert!(counted.polls > 0 && counted.event_wakeups == 0, "{counted:?}");
    assert_eq!(w.versions(Track::Stable).await, ["1.0.0", "1.0.0"]);
    w.finish(&platform).await;
}

/// The engine's stream, except that the first subscription after [`CutFirstStream::arm`]
/// ends after `cut_after`.
struct CutFirstStream {
    inner: DockerEvents,
    cut_after: Duration,
    /// The `since` of every subscription since armed, in order; `None` until armed.
    subscriptions: Mutex<Option<Vec<Option<String>>>>,
}

impl CutFirstStream {
    fn arm(&self) {
        *self.subscriptions.lock().unwrap() = Some(Vec::new());
    }
}

impl ContainerEvents for CutFirstStream {
    fn subscribe(&self, filters: &HashMap<String, Vec<String>>, since: Option<&str>) -> EventStream {
        let stream = self.inner.subscribe(filters, since);
        let mut armed = self.subscriptions.lock().unwrap();
        let Some(subscriptions) = armed.as_mut() else { return stream };
        subscriptions.push(since.map(str::to_owned));
        if subscriptions.len() == 1 { Box::pin(stream.take_until(tokio::time::sleep(self.cut_after))) } else { stream }
    }
}

#[tokio::test]
async fn a_dropped_event_stream_is_subscribed_again_and_readiness_comes_through_it() {
    let w = world("events-resubscribe").await;
    let source = Arc::new(CutFirstStream {
        inner: DockerEvents::new(w.docker.clone()),
        cut_after: Duration::from_millis(300),
        subscriptions: Mutex::new(None),
    });
    let platform = DockerPlatform::new(w.docker.clone(), w.config()).event_source(source.clone());
    // Health checks every 1.5 s: the stream is cut long before the container is healthy.
    platform.apply(&w.spec(Duration::from_millis(1500)), Track::Blue, &w.release(0), 1).await.unwrap();
    source.arm();
    let started = Instant::now();
    platform.wait_ready(&w.app, Track::Blue, Duration::from_secs(30)).await.unwrap();
    let took = started.elapsed();
    let counts = platform.readiness_counts();
    let subscriptions = source.subscriptions.lock().unwrap().clone().unwrap();
    assert_eq!(subscriptions.len(), 2, "one cut, one re-subscription: {subscriptions:?}");
    let times: Vec<f64> = subscriptions
        .iter()
        .map(|since| {
            let since = since.as_deref().expect("every subscription starts from a time");
            let (_, nanos) = since.split_once('.').expect("<seconds>.<nanoseconds>");
            assert_eq!(nanos.len(), 9);
            since.parse().unwrap()
        })
        .collect();
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(times.iter().all(|t| (now - 60.0..=now).contains(t)), "recent times: {subscriptions:?}");
    assert!(times[1] >= times[0], "re-subscribed from the first subscription or a later event: {subscriptions:?}");
    assert_eq!(counts.resubscriptions, 1, "{counts:?}");
    assert_eq!((counts.polls, counts.fallbacks), (0, 0), "no polling: {counts:?}");
    assert!(counts.event_wakeups >= 1, "readiness came through the re-subscribed stream: {counts:?}");
    assert!(took >= Duration::from_millis(1000), "ready only after the cut: {took:?}");
    assert!(took < Duration::from_secs(5), "ready before the 5 s safety re-check would have read it: {took:?}");
    assert_eq!(counts.timer_rechecks, 0, "{counts:?}");
    println!("re-subscribed: ready after {took:?}, {counts:?}, since {subscriptions:?}");
    w.finish(&platform).await;
}
