//! A fleet rollout across three real API servers of the project's test cluster
//! script (three etcd + kube-apiserver + kube-controller-manager sets on loopback,
//! started by `scripts/test.sh`, kubeconfigs in `DEPLOY_RS_FLEET_KUBECONFIGS`) and
//! a Docker host (deploy-docker's `DockerPlatform` and `NetworkAliasRouter` on the
//! machine's Docker engine, with file state and history stores), in three waves:
//! `east` and the Docker host, then `central`, then `west`. A good release reaches
//! all four; a release whose analysis fails on `central` stops the line there,
//! wave 1 (`east` and the Docker host) is rolled back, and `west` is never
//! touched. Asserted from each server's Deployments and from `docker inspect` of
//! the Docker host's containers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::RolloutEngine;
use deploy_core::fleet::{FleetDriver, FleetPlan, FleetStatus, FleetTarget, Gate, RollbackPolicy, WavePolicy};
use deploy_core::model::{AppId, AppSpec, HumanDuration, ImageRef, Name, Namespace, Probe, Release, Track};
use deploy_core::platform::Platform;
use deploy_core::store::file::{FileHistoryStore, FileStateStore};
use deploy_core::strategy::{PlanInput, RollingUpdate, Strategy};
use deploy_core::testkit::TestKit;
use deploy_core::traffic::TrafficRouter;
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};
use deploy_k8s::{KubePlatform, PlatformOptions};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use crate::docker_host::DockerHost;
use crate::engine::{Strat, analysis, engine_config, plan};
use crate::support::{self, Scratch};

const FLEET_VAR: &str = "DEPLOY_RS_FLEET_KUBECONFIGS";

async fn clusters() -> Vec<Scratch> {
    let paths = std::env::var(FLEET_VAR).unwrap_or_else(|_| {
        panic!(
            "{FLEET_VAR} is not set: the fleet test needs three test clusters; `./scripts/test.sh` starts them \
             (scripts/kube-test-cluster.sh start with three DEPLOY_RS_KUBE_STATE directories)"
        )
    });
    let paths: Vec<PathBuf> = paths.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
    assert_eq!(paths.len(), 3, "{FLEET_VAR} names {} kubeconfigs, not 3", paths.len());
    let mut scratches = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        scratches.push(Scratch::on(support::client_from(path).await, &format!("fleet-{i}")).await);
    }
    scratches
}

/// The image tag `web-stable` runs on `s`, and its generation.
async fn stable(s: &Scratch) -> (String, i64) {
    let api: Api<Deployment> = s.api();
    let d = api.get("web-stable").await.expect("web-stable exists");
    let image =
        d.spec.template.spec.and_then(|p| p.containers.first().and_then(|c| c.image.clone())).unwrap_or_default();
    let tag = image.rsplit(':').next().unwrap_or_default().to_owned();
    (tag, d.metadata.generation.unwrap_or_default())
}

struct Target {
    s: Scratch,
    kit: TestKit,
}

/// The Docker host of the fleet: its platform and router, file stores in a
/// directory of its own, and metrics from a test kit (the analysis reads them).
struct Host {
    host: DockerHost,
    app: AppId,
    stores: tempfile::TempDir,
    kit: TestKit,
}

impl Host {
    fn spec(&self, release: &Release) -> AppSpec {
        let mut probe = Probe::http("/health", 8080).period(HumanDuration::new(Duration::from_millis(500)));
        probe.failure_threshold = 2;
        AppSpec::new(self.app.namespace.clone(), self.app.name.clone(), release.image.clone())
            .readiness(probe)
            .replicas(2)
    }

    fn engine(&self) -> RolloutEngine {
        RolloutEngine::builder(
            self.host.platform.clone(),
            Arc::new(FileStateStore::new(self.stores.path())),
            Arc::new(FileHistoryStore::new(self.stores.path())),
        )
        .router(self.host.router.clone())
        .metrics(self.kit.metrics())
        .config(engine_config("fleet-docker").readiness_deadline(Duration::from_secs(60)))
        .build()
    }

    /// What the Docker host serves: the serving track's containers, as `docker
    /// inspect` reads them, all running the image of one release; that image.
    async fn serving_image(&self) -> ImageRef {
        let track = self.host.serving_track(&self.app).await;
        let seen = self.host.inspect(&self.app, track).await;
        assert_eq!(seen.len(), 2, "two containers serve on the Docker host: {seen:?}");
        assert!(seen.iter().all(|(_, running)| *running), "every serving container runs: {seen:?}");
        let image = seen[0].0.clone();
        assert!(seen.iter().all(|(i, _)| *i == image), "the serving containers run one image: {seen:?}");
        ImageRef::parse(&image).unwrap()
    }
}

fn fleet(targets: &[Target], host: &Host, journal: &Scratch, version: &str, from: &str) -> FleetPlan {
    let fleet_id = AppId::new(Namespace::new(&journal.namespace).unwrap(), Name::new("web-fleet").unwrap());
    let release = host.host.release(version);
    let mut builder = FleetPlan::builder(fleet_id, release.clone())
        .from(host.host.release(from))
        .waves(WavePolicy::Explicit(vec![
            vec!["east".into(), "docker".into()],
            vec!["central".into()],
            vec!["west".into()],
        ]))
        .gate(Gate::Open)
        .max_concurrent(2)
        .rollback(RollbackPolicy::Fleet);
    for (t, name) in targets.iter().zip(["east", "central", "west"]) {
        let c = t.s.cluster.clone();
        let engine = RolloutEngine::builder(
            Arc::new(KubePlatform::new(c.clone(), PlatformOptions::default())),
            Arc::new(KubeStateStore::new(c.clone())),
            Arc::new(KubeHistoryStore::new(c, t.s.ns())),
        )
        .metrics(t.kit.metrics())
        .config(engine_config(&format!("fleet-{name}")))
        .build();
        builder =
            builder.target(FleetTarget::new(name, Arc::new(engine), t.s.spec().replicas(2), plan(Strat::Rolling)));
    }
    let docker_plan = RollingUpdate::default().analysis(analysis()).plan(&PlanInput::new(2));
    builder = builder.target(FleetTarget::new("docker", Arc::new(host.engine()), host.spec(&release), docker_plan));
    builder.build().expect("a valid fleet")
}

#[tokio::test]
async fn one_release_in_three_waves_across_three_api_servers_and_a_docker_host() {
    let docker = DockerHost::connect("fleet").await;
    let releases: Vec<Release> = ["1", "2", "3"].into_iter().map(|v| docker.release(v)).collect();
    for release in &releases {
        docker.build(release).await;
    }
    let app = AppId::new(Namespace::new(&docker.id).unwrap(), Name::new("web").unwrap());
    let host = Host { host: docker, app, stores: tempfile::tempdir().unwrap(), kit: TestKit::new() };
    host.kit.metric_values().set("error-rate", Track::Stable, 0.001);
    // Release 1 serves on the Docker host.
    let platform = &host.host.platform;
    platform.apply(&host.spec(&releases[0]), Track::Stable, &releases[0], 2).await.unwrap();
    platform.wait_ready(&host.app, Track::Stable, Duration::from_secs(60)).await.unwrap();
    host.host.router.set_weights(&host.app, &deploy_core::model::TrafficSplit::all(Track::Stable)).await.unwrap();
    assert_eq!(host.serving_image().await, releases[0].image);

    let mut targets = Vec::new();
    for s in clusters().await {
        let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
        platform.apply(&s.spec().replicas(2), Track::Stable, &releases[0], 2).await.unwrap();
        platform.wait_ready(&s.app(), Track::Stable, Duration::from_secs(60)).await.unwrap();
        let kit = TestKit::new();
        kit.metric_values().set("error-rate", Track::Stable, 0.001);
        targets.push(Target { s, kit });
    }
    let journal = Scratch::new("fleet-journal").await;
    let driver = FleetDriver::new(Arc::new(KubeStateStore::new(journal.cluster.clone())));

    let good = driver.run(&fleet(&targets, &host, &journal, "2", "1")).await.expect("a fleet record");
    assert_eq!(good.status, Some(FleetStatus::Succeeded), "{:?}", good.cause);
    for t in &targets {
        assert_eq!(stable(&t.s).await.0, "2", "{} runs release 2", t.s.namespace);
    }
    assert_eq!(host.serving_image().await, releases[1].image, "the Docker host serves release 2");
    let docker_run = good.target("docker").and_then(|t| t.forward.clone()).expect("the Docker host's rollout");
    assert!(docker_run.record.is_some(), "the fleet record holds the Docker host's deployment record");

    // Release 3 fails its analysis on the second cluster.
    targets[1].kit.metric_values().set("error-rate", Track::Stable, 0.5);
    let untouched = stable(&targets[2].s).await;
    let journal2 = Scratch::new("fleet-journal-2").await;
    let stopped = driver.run(&fleet(&targets, &host, &journal2, "3", "2")).await.expect("a fleet record");
    assert_eq!(stopped.status, Some(FleetStatus::RolledBack), "{:?}", stopped.cause);
    assert_eq!(stable(&targets[0].s).await.0, "2", "wave 1 was rolled back to release 2");
    assert_eq!(stable(&targets[1].s).await.0, "2", "wave 2 rolled itself back");
    assert_eq!(stable(&targets[2].s).await, untouched, "wave 3 was never touched: same image, same generation");
    // The Docker host (wave 1) went to release 3 and was put back on release 2.
    let docker = stopped.target("docker").expect("the Docker host in the record");
    let forward = docker.forward.clone().expect("the Docker host's rollout of release 3");
    assert_eq!((forward.status, forward.to.version.as_str()), (deploy_core::model::DeploymentStatus::Succeeded, "3"));
    let revert = docker.revert.clone().expect("the Docker host's rollback");
    assert_eq!((revert.status, revert.to.version.as_str()), (deploy_core::model::DeploymentStatus::Succeeded, "2"));
    assert_eq!(host.serving_image().await, releases[1].image, "the Docker host serves release 2 again");
    let images: Vec<ImageRef> =
        host.host.images_of(&host.app).await.iter().map(|i| ImageRef::parse(i).unwrap()).collect();
    assert!(!images.contains(&releases[2].image), "no container of release 3 is left on the Docker host: {images:?}");

    for t in targets {
        t.s.cleanup().await;
    }
    journal.cleanup().await;
    journal2.cleanup().await;
    host.host.platform.remove_app(&host.app).await.unwrap();
    host.host.clean_up().await;
}
