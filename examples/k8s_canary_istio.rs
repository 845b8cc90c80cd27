//! A canary on Kubernetes with Istio: header route for testers, then 10 → 25 → 50 %
//! of the traffic by VirtualService weights, then promotion.
//!
//! Needs a cluster with Istio (the `networking.istio.io/v1` CRDs) reachable through
//! `KUBECONFIG`, and the RBAC of docs/kubernetes.md. The namespace should carry
//! `istio-injection=enabled` for the sidecars to route the traffic. With
//! `--dry-run` it prints the plan and the manifests it would apply, and needs no
//! cluster (CI runs that mode).
//!
//! ```text
//! cargo run -p deploy-examples --example k8s_canary_istio -- --dry-run
//! cargo run -p deploy-examples --example k8s_canary_istio -- [--namespace NS] [--from 1] [--to 2]
//! ```
//!
//! On a cluster it creates the namespace, the Service, the DestinationRule (one
//! subset per track) and the VirtualService, deploys `--from` on the stable track
//! if nothing runs there yet, then rolls `--to` out and prints every event. The
//! image is `registry.k8s.io/pause:3.10` unless `DEPLOY_RS_EXAMPLE_IMAGE` names
//! another; the steps pause 20 s each so that the weights can be watched with
//! `kubectl get virtualservice web -o yaml`. This example judges no metrics: add
//! `Step::Analyze` with deploy-core's `PrometheusProvider` (feature `prometheus`)
//! as the quickstart does with the test kit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutRequest};
use deploy_core::model::{AppSpec, DeploymentStatus, HumanDuration, Percent, Release, Track, TrafficSplit};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::platform::{Platform, TrackState};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::traffic::{HeaderMatch, HeaderRoute};
use deploy_examples::kube_demo::{self, Args};
use deploy_examples::{Error, print_rollout};
use deploy_k8s::manifest::{
    DeploymentOptions, ManifestSet, ServiceOptions, VirtualServiceOptions, deployment, destination_rule, service,
    virtual_service,
};
use deploy_k8s::router::IstioRouter;
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};
use deploy_k8s::{Cluster, KubePlatform, PlatformOptions};

fn plan(replicas: u32) -> Result<Plan, Error> {
    let pause = Step::Pause(PauseKind::Duration(HumanDuration::new(Duration::from_secs(20))));
    let testers = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
    let mut steps = vec![Step::HeaderRoute(testers), pause.clone()];
    for weight in [10, 25, 50] {
        steps.push(Step::SetWeight(Percent::new(weight)?));
        steps.push(pause.clone());
    }
    Ok(Canary::with_steps(steps).scale_down_delay("30s".parse()?).plan(&PlanInput::new(replicas)))
}

/// The objects the rollout starts from: the Service, a DestinationRule with a
/// subset per track, a VirtualService sending everything to stable, and the
/// stable Deployment. The canary's Deployment is applied by the engine.
fn manifests(spec: &AppSpec, from: &Release, to: &Release) -> Result<ManifestSet, Error> {
    let app = spec.id();
    let mut set = ManifestSet::new();
    set.push(&service(spec, &ServiceOptions::default()))?;
    set.push(&destination_rule(&app, &[Track::Stable, Track::Canary], None))?;
    set.push(&virtual_service(&app, &VirtualServiceOptions::default().split(TrafficSplit::all(Track::Stable))))?;
    let stable = DeploymentOptions::default().track(Track::Stable).release(from.clone()).replicas(spec.replicas);
    set.push(&deployment(spec, &stable))?;
    // For review only: what the engine applies for the canary's first step.
    let canary = DeploymentOptions::default().track(Track::Canary).release(to.clone()).replicas(1);
    set.push(&deployment(spec, &canary))?;
    Ok(set)
}

async fn prepare(cluster: &Cluster, platform: &KubePlatform, spec: &AppSpec, from: &Release) -> Result<(), Error> {
    let app = spec.id();
    cluster
        .ensure_namespace(app.namespace.as_str(), BTreeMap::from([("istio-injection".into(), "enabled".into())]))
        .await?;
    cluster.apply(&service(spec, &ServiceOptions::default())).await?;
    cluster.apply(&destination_rule(&app, &[Track::Stable, Track::Canary], None)).await?;
    let status = platform.status(&app, Track::Stable).await?;
    if status.state == TrackState::Absent {
        println!("nothing runs on the stable track yet: deploying {} there first", from.version);
        cluster
            .apply(&virtual_service(&app, &VirtualServiceOptions::default().split(TrafficSplit::all(Track::Stable))))
            .await?;
        platform.apply(spec, Track::Stable, from, spec.replicas).await?;
        platform.wait_ready(&app, Track::Stable, Duration::from_secs(300)).await?;
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), Error> {
    let spec = args.spec()?;
    let (from, to) = args.releases()?;
    let plan = plan(spec.replicas)?;
    if args.dry_run {
        plan.validate(Some(deploy_core::traffic::RouterCapabilities::weights_only().with_header_routes()))?;
        println!(
            "# plan: canary of {} from {} to {}\n# {}",
            spec.id(),
            from.version,
            to.version,
            plan.to_string().trim_end().replace('\n', "\n# ")
        );
        println!("{}", manifests(&spec, &from, &to)?.to_yaml()?);
        return Ok(());
    }

    let cluster = kube_demo::connect().await?;
    let platform = KubePlatform::new(cluster.clone(), PlatformOptions::default());
    prepare(&cluster, &platform, &spec, &from).await?;
    let engine = RolloutEngine::builder(
        Arc::new(platform),
        Arc::new(KubeStateStore::new(cluster.clone())),
        Arc::new(KubeHistoryStore::new(cluster.clone(), spec.namespace.clone())),
    )
    .router(Arc::new(IstioRouter::new(cluster)))
    .config(EngineConfig::default().holder("k8s-canary-istio-example"))
    .build();
    let request = RolloutRequest::new(spec, to, plan).from(from);
    engine.validate(&request)?;
    let report = print_rollout(engine.start(request).await?).await?;
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
