//! A fleet rollout across three real API servers of the project's test cluster
//! script (three etcd + kube-apiserver + kube-controller-manager sets on loopback,
//! started by `scripts/test.sh`, kubeconfigs in `DEPLOY_RS_FLEET_KUBECONFIGS`), one
//! target per cluster, one wave each: a good release reaches all three; a release
//! whose analysis fails on the second cluster stops the line there, the first
//! cluster is rolled back, and the third is never touched. Asserted from each
//! server's Deployments.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::RolloutEngine;
use deploy_core::fleet::{FleetDriver, FleetPlan, FleetStatus, FleetTarget, Gate, RollbackPolicy, WavePolicy};
use deploy_core::model::{AppId, Name, Track};
use deploy_core::platform::Platform;
use deploy_core::testkit::TestKit;
use deploy_k8s::KubePlatform;
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use crate::engine::{Strat, engine_config, plan};
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

fn fleet(targets: &[Target], journal: &Scratch, version: &str, from: &str) -> FleetPlan {
    let fleet_id = AppId::new(Name::new(&journal.namespace).unwrap(), Name::new("web-fleet").unwrap());
    let mut builder = FleetPlan::builder(fleet_id, support::release(version))
        .from(support::release(from))
        .waves(WavePolicy::Explicit(vec![vec!["east".into()], vec!["central".into()], vec!["west".into()]]))
        .gate(Gate::Open)
        .rollback(RollbackPolicy::Fleet);
    for (t, name) in targets.iter().zip(["east", "central", "west"]) {
        let c = t.s.cluster.clone();
        let engine = RolloutEngine::builder(
            Arc::new(KubePlatform::new(c.clone())),
            Arc::new(KubeStateStore::new(c.clone())),
            Arc::new(KubeHistoryStore::new(c, t.s.namespace.clone())),
        )
        .metrics(t.kit.metrics())
        .config(engine_config(&format!("fleet-{name}")))
        .build();
        builder =
            builder.target(FleetTarget::new(name, Arc::new(engine), t.s.spec().replicas(2), plan(Strat::Rolling)));
    }
    builder.build().expect("a valid fleet")
}

#[tokio::test]
async fn one_release_in_three_waves_across_three_api_servers() {
    let mut targets = Vec::new();
    for s in clusters().await {
        let platform = KubePlatform::new(s.cluster.clone());
        platform.apply(&s.spec().replicas(2), Track::Stable, &support::release("1"), 2).await.unwrap();
        platform.wait_ready(&s.app(), Track::Stable, Duration::from_secs(60)).await.unwrap();
        let kit = TestKit::new();
        kit.metric_values().set("error-rate", Track::Stable, 0.001);
        targets.push(Target { s, kit });
    }
    let journal = Scratch::new("fleet-journal").await;
    let driver = FleetDriver::new(Arc::new(KubeStateStore::new(journal.cluster.clone())));

    let good = driver.run(&fleet(&targets, &journal, "2", "1")).await.expect("a fleet record");
    assert_eq!(good.status, Some(FleetStatus::Succeeded), "{:?}", good.cause);
    for t in &targets {
        assert_eq!(stable(&t.s).await.0, "2", "{} runs release 2", t.s.namespace);
    }

    // Release 3 fails its analysis on the second cluster.
    targets[1].kit.metric_values().set("error-rate", Track::Stable, 0.5);
    let untouched = stable(&targets[2].s).await;
    let journal2 = Scratch::new("fleet-journal-2").await;
    let stopped = driver.run(&fleet(&targets, &journal2, "3", "2")).await.expect("a fleet record");
    assert_eq!(stopped.status, Some(FleetStatus::RolledBack), "{:?}", stopped.cause);
    assert_eq!(stable(&targets[0].s).await.0, "2", "wave 1 was rolled back to release 2");
    assert_eq!(stable(&targets[1].s).await.0, "2", "wave 2 rolled itself back");
    assert_eq!(stable(&targets[2].s).await, untouched, "wave 3 was never touched: same image, same generation");
    for t in targets {
        t.s.cleanup().await;
    }
    journal.cleanup().await;
    journal2.cleanup().await;
}
