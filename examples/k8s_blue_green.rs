//! Blue-green on Kubernetes: the new release starts on the idle colour, testers
//! reach it through a preview Service, and the live Service's selector switches
//! to it when it is ready and an operator promotes it.
//!
//! Needs a cluster reachable through `KUBECONFIG` (kind or k3d work, see
//! docs/kubernetes.md) and the RBAC described there. With `--dry-run` it prints the
//! plan and the manifests and needs no cluster (CI runs that mode).
//!
//! ```text
//! cargo run -p deploy-examples --example k8s_blue_green -- --dry-run
//! cargo run -p deploy-examples --example k8s_blue_green -- [--namespace NS] [--from 1] [--to 2]
//! ```
//!
//! On a cluster it creates the namespace and the Service `web` (selecting the live
//! colour), deploys `--from` on blue if neither colour runs yet, then rolls `--to`
//! out to the idle colour. The rollout pauses before the switch; this program
//! promotes it after 15 s (the time to look at `web-preview`, a Service on the idle
//! colour, with `kubectl port-forward svc/web-preview 8080`). Run it again with
//! `--from 2 --to 3` to switch back the other way. The image is
//! `registry.k8s.io/pause:3.10` unless `DEPLOY_RS_EXAMPLE_IMAGE` names another.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutEvent, RolloutRequest};
use deploy_core::model::{AppSpec, DeploymentStatus, Release, Track, TrafficSplit};
use deploy_core::plan::{PauseKind, Plan};
use deploy_core::platform::{Platform, TrackState};
use deploy_core::strategy::{AutoPromotion, BlueGreen, PlanInput, Strategy};
use deploy_core::traffic::TrafficRouter;
use deploy_examples::Error;
use deploy_examples::kube_demo::{self, Args};
use deploy_k8s::manifest::{DeploymentOptions, ManifestSet, ServiceOptions, deployment, service};
use deploy_k8s::router::ServiceSelectorRouter;
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};
use deploy_k8s::{Cluster, KubePlatform, PlatformOptions};

fn plan(replicas: u32, live: Track) -> Plan {
    BlueGreen::default().auto_promotion(AutoPromotion::Manual).plan(&PlanInput::new(replicas).live_track(live))
}

/// The preview Service, on the idle colour.
fn preview(idle: Track) -> ServiceOptions {
    ServiceOptions::default().name("web-preview").track(idle)
}

fn manifests(spec: &AppSpec, from: &Release, to: &Release, live: Track) -> Result<ManifestSet, Error> {
    let idle = live.opposite();
    let mut set = ManifestSet::new();
    set.push(&service(spec, &ServiceOptions::default().track(live)))?;
    set.push(&service(spec, &preview(idle)))?;
    set.push(&deployment(
        spec,
        &DeploymentOptions::default().track(live).release(from.clone()).replicas(spec.replicas),
    ))?;
    set.push(&deployment(spec, &DeploymentOptions::default().track(idle).release(to.clone()).replicas(spec.replicas)))?;
    Ok(set)
}

/// Finds the live colour from the Service's selector, deploying `from` on blue
/// when nothing runs yet.
async fn prepare(
    cluster: &Cluster,
    platform: &KubePlatform,
    router: &ServiceSelectorRouter,
    spec: &AppSpec,
    from: &Release,
) -> Result<Track, Error> {
    let app = spec.id();
    cluster.ensure_namespace(app.namespace.as_str(), BTreeMap::new()).await?;
    let blue = platform.status(&app, Track::Blue).await?.state;
    let green = platform.status(&app, Track::Green).await?.state;
    if blue == TrackState::Absent && green == TrackState::Absent {
        println!("neither colour runs yet: deploying {} on blue first", from.version);
        platform.apply(spec, Track::Blue, from, spec.replicas).await?;
        platform.wait_ready(&app, Track::Blue, Duration::from_secs(300)).await?;
        cluster.apply(&service(spec, &ServiceOptions::default().track(Track::Blue))).await?;
        return Ok(Track::Blue);
    }
    let split = router.weights(&app).await?;
    Ok(if split == TrafficSplit::all(Track::Green) { Track::Green } else { Track::Blue })
}

async fn run(args: Args) -> Result<(), Error> {
    let spec = args.spec()?;
    let (from, to) = args.releases()?;
    if args.dry_run {
        let plan = plan(spec.replicas, Track::Blue);
        plan.validate(Some(deploy_core::traffic::RouterCapabilities::switch_only()))?;
        println!("# plan: blue-green of {} from {} (blue) to {} (green)", spec.id(), from.version, to.version);
        println!("# {}", plan.to_string().trim_end().replace('\n', "\n# "));
        println!("{}", manifests(&spec, &from, &to, Track::Blue)?.to_yaml()?);
        return Ok(());
    }

    let cluster = kube_demo::connect().await?;
    let platform = KubePlatform::new(cluster.clone(), PlatformOptions::default());
    let router = ServiceSelectorRouter::new(cluster.clone());
    let live = prepare(&cluster, &platform, &router, &spec, &from).await?;
    cluster.apply(&service(&spec, &preview(live.opposite()))).await?;
    println!("{} serves on {live}; {} goes to {}", from.version, to.version, live.opposite());

    let engine = RolloutEngine::builder(
        Arc::new(platform),
        Arc::new(KubeStateStore::new(cluster.clone())),
        Arc::new(KubeHistoryStore::new(cluster.clone(), spec.namespace.clone())),
    )
    .router(Arc::new(router))
    .config(EngineConfig::default().holder("k8s-blue-green-example"))
    .build();
    let request = RolloutRequest::new(spec.clone(), to, plan(spec.replicas, live)).from(from);
    engine.validate(&request)?;
    let mut handle = engine.start(request).await?;
    while let Some(event) = handle.next_event().await {
        println!("  {event}");
        if let RolloutEvent::Paused { kind: PauseKind::UntilPromoted, .. } = event {
            println!("  (look at web-preview now; promoting in 15 s)");
            tokio::time::sleep(Duration::from_secs(15)).await;
            handle.promote()?;
        }
    }
    let report = handle.wait().await?;
    println!("{}: {}", report.record.id, report.status);
    if report.status == DeploymentStatus::Succeeded {
        Ok(())
    } else {
        Err(format!("the rollout ended {}", report.status).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(Args::parse()?).await
}
