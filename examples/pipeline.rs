//! A full delivery pipeline: build → unit tests → scan → quality gate → push →
//! canary → verify, with the rollback stage after a failed deployment.
//!
//! It runs with no external system: the build, the scanner and the registry are the
//! in-process stand-ins of `deploy_examples::standins`, and the canary runs on
//! deploy-core's test kit through the real rollout engine (on tokio's paused
//! clock, so the hour of analyses takes milliseconds). Swap the stand-ins for
//! `deploy-docker`'s builder and registry, a `deploy-security` scanner and
//! `deploy-k8s`'s platform and router to run the same pipeline for real.
//!
//! Three runs of the pipeline:
//! 1. release 2.0.0: clean scan, healthy canary → succeeded;
//! 2. release 2.1.0: the scan finds a critical vulnerability → stops at the scan,
//!    nothing is pushed or deployed;
//! 3. release 2.2.0: clean scan, but the canary's error rate is 7 % → the engine
//!    rolls back, the deploy stage fails, and the rollback stage confirms that
//!    2.0.0 serves again.
//!
//! Run with `cargo run -p deploy-examples --example pipeline`.

use std::sync::Arc;

use async_trait::async_trait;
use deploy_core::build::BuildRequest;
use deploy_core::engine::{RolloutEngine, RolloutRequest};
use deploy_core::error::{BoxError, ErrorKind};
use deploy_core::model::{AppSpec, DeploymentStatus, ImageRef, Release, Track, Version};
use deploy_core::pipeline::{
    Artifacts, BuildStage, DeployStage, Deployer, FnStage, Pipeline, PipelineRun, PipelineStatus, PushStage,
    QualityGate, RollbackStage, RunOptions, SecurityScanStage, StageContext, StageError, StageKind, StageOutput,
};
use deploy_core::scan::{ScanPolicy, Severity, SeverityLimits};
use deploy_core::testkit::{self, TestKit};
use deploy_examples::standins::{InMemoryRegistry, InstantBuilder, ScriptedScanner};
use deploy_examples::{Error, canary_plan};

/// Deploys the pipeline's `image` artifact with a canary rollout on the test kit.
struct CanaryDeployer {
    kit: TestKit,
    engine: RolloutEngine,
    spec: AppSpec,
    serving: std::sync::Mutex<Release>,
}

impl CanaryDeployer {
    fn serving(&self) -> Release {
        self.serving.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl Deployer for CanaryDeployer {
    async fn deploy(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let invalid = |what: &str, e: BoxError| StageError::backend(what, ErrorKind::InvalidInput, e);
        let image = ctx.artifacts.require_image()?.clone();
        let version =
            Version::new(image.tag().unwrap_or("latest")).map_err(|e| invalid("read the image's version", e.into()))?;
        let to = Release::new(version, image);
        let from = self.serving();
        let plan =
            canary_plan(self.spec.replicas, false).map_err(|e| invalid("plan the canary", e.to_string().into()))?;
        let request = RolloutRequest::new(self.spec.clone(), to.clone(), plan).from(from);
        let report = self.engine.run(request).await?;
        let record = &report.record;
        if report.status != DeploymentStatus::Succeeded {
            let cause = record.cause.as_ref().map_or_else(|| report.status.to_string(), ToString::to_string);
            return Err(StageError::failed(format!(
                "rollout {} of {} ended {}: {cause}",
                record.id, to.version, report.status
            )));
        }
        *self.serving.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = to.clone();
        Ok(StageOutput::default().artifacts(Artifacts::default().deployment(record.id.clone()).release(to.version)))
    }

    async fn rollback(&self, _ctx: &StageContext) -> Result<StageOutput, StageError> {
        // The engine already rolled back on its own; this stage checks the result.
        let previous = self.serving();
        let world = self.kit.snapshot(&self.spec.id());
        if world.serving().len() == 1 && world.runs(&previous.version) {
            Ok(StageOutput::default().artifacts(Artifacts::default().restored(previous.version)))
        } else {
            Err(StageError::failed(format!("after the rollback the world is {world}, not {} alone", previous.version)))
        }
    }
}

fn pipeline(
    release: &str,
    scanner: Arc<ScriptedScanner>,
    registry: Arc<InMemoryRegistry>,
    deployer: Arc<CanaryDeployer>,
) -> Result<Pipeline, Error> {
    let image = ImageRef::parse(&format!("registry.local/shop/checkout:{release}"))?;
    let builder = Arc::new(InstantBuilder::new([
        "FROM scratch",
        "COPY checkout /checkout",
        "USER 65532:65532",
        "ENTRYPOINT [\"/checkout\"]",
    ]));
    let verify = deployer.clone();
    Ok(Pipeline::builder()
        .stage(BuildStage::new(builder, BuildRequest::new(".").tag(image)))
        .stage(FnStage::new("unit-tests", StageKind::Test, |_| async {
            Ok(StageOutput::default().value("coverage", "87.5"))
        }))
        .stage(SecurityScanStage::new(
            scanner,
            ScanPolicy::default().max_vulnerabilities(SeverityLimits::none().critical(0).high(3)),
        ))
        .stage(QualityGate::new().at_least("coverage", 80.0).at_most("vulnerabilities_high", 3.0))
        .stage(PushStage::new(registry))
        .stage(DeployStage::new(deployer.clone()))
        .stage(FnStage::new("verify", StageKind::SmokeTest, move |ctx| {
            let verify = verify.clone();
            async move {
                let Some(version) = ctx.artifacts.release.clone() else {
                    return Err(StageError::MissingArtifact { name: "release".to_owned() });
                };
                let world = verify.kit.snapshot(&verify.spec.id());
                if world.serving().len() == 1 && world.runs(&version) {
                    Ok(StageOutput::default().value("verified", version.to_string()))
                } else {
                    Err(StageError::failed(format!("{version} is not the only release serving: {world}")))
                }
            }
        }))
        .rollback(RollbackStage::new(deployer))
        .build())
}

fn print_run(title: &str, run: &PipelineRun) {
    println!("\n{title}: {:?}", run.status);
    for stage in run.stages.iter().chain(run.rollback.iter()) {
        println!("  {:<14} {:<10} {}", stage.name, format!("{:?}", stage.status), stage.artifacts);
        if let Some(error) = &stage.error {
            println!("  {:<14} {:<10} {error}", "", "");
        }
    }
}

async fn run() -> Result<(), Error> {
    let (spec, v1, _) = testkit::sample_app(4);
    let kit = TestKit::new();
    kit.seed(&spec, Track::Stable, &v1);
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .build();
    let deployer =
        Arc::new(CanaryDeployer { kit: kit.clone(), engine, spec: spec.clone(), serving: std::sync::Mutex::new(v1) });
    let scanner = Arc::new(ScriptedScanner::new());
    let registry = Arc::new(InMemoryRegistry::new());

    kit.metric_values().set("error-rate", Track::Canary, 0.002);
    let first = pipeline("2.0.0", scanner.clone(), registry.clone(), deployer.clone())?;
    let first = first.run(RunOptions::new("main").commit("a1b2c3d")).await;
    print_run("pipeline for 2.0.0 (clean, healthy)", &first);

    let vulnerable = ImageRef::parse("registry.local/shop/checkout:2.1.0")?;
    scanner.set_findings(&vulnerable, vec![Severity::Critical, Severity::High]);
    let second = pipeline("2.1.0", scanner.clone(), registry.clone(), deployer.clone())?;
    let second = second.run(RunOptions::new("main").commit("b2c3d4e")).await;
    print_run("pipeline for 2.1.0 (a critical vulnerability)", &second);

    kit.metric_values().set("error-rate", Track::Canary, 0.07);
    let third = pipeline("2.2.0", scanner, registry.clone(), deployer.clone())?;
    let third = third.run(RunOptions::new("main").commit("c3d4e5f")).await;
    print_run("pipeline for 2.2.0 (7 % errors in the canary)", &third);

    println!("\nregistry holds: {:?}", registry.images().keys().collect::<Vec<_>>());
    println!("now serving: {}", kit.snapshot(&spec.id()));
    let expected = first.status == PipelineStatus::Succeeded
        && second.status == PipelineStatus::Failed
        && third.status == PipelineStatus::Failed
        && third.rolled_back()
        && deployer.serving().version.as_str() == "2.0.0";
    if !expected {
        return Err("the pipelines did not end as the example expects".into());
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()?;
    runtime.block_on(run())
}
