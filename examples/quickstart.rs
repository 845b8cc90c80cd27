//! Quickstart: two canary rollouts on the in-memory test kit, no cluster needed.
//!
//! 1. Release 2.0.0 is healthy: it goes 10 → 25 → 50 %, waits for an operator's
//!    promotion (given by this program), then 75 → 100 % and is promoted.
//! 2. Release 2.1.0 has a 7 % error rate: the first analysis fails and the engine
//!    rolls back to 2.0.0 on its own.
//!
//! Events are printed as they happen, with the time on the rollout's clock (tokio's
//! paused clock: the hour of analyses takes milliseconds), then a summary table.
//!
//! Run with `cargo run -p deploy-examples --example quickstart`; add `--dry-run` to
//! print the plans only.

use std::sync::Arc;
use std::time::Duration;

use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutEvent, RolloutReport, RolloutRequest};
use deploy_core::model::{HumanDuration, ImageRef, Percent, Release, Track, Version};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{self, TestHealthCheck, TestKit};

type Error = Box<dyn std::error::Error>;

fn plan(replicas: u32) -> Result<Plan, Error> {
    let analysis = AnalysisSpec::new("error-rate")
        .metric(MetricCheck::new(
            "error-rate",
            r#"sum(rate(http_requests_total{app="{{app}}",track="{{track}}",code=~"5.."}[{{interval}}])) / sum(rate(http_requests_total{app="{{app}}",track="{{track}}"}[{{interval}}]))"#,
            JudgeSpec::max(0.01),
        ))
        .health_check("smoke")
        .interval(HumanDuration::new(Duration::from_secs(60)))
        .count(3)
        .inconclusive_limit(1);
    let mut steps = Vec::new();
    for w in [10, 25, 50, 75, 100] {
        steps.push(Step::SetWeight(Percent::new(w)?));
        steps.push(Step::Analyze(analysis.clone()));
        if w == 50 {
            steps.push(Step::Pause(PauseKind::UntilPromoted));
        }
    }
    Ok(Canary::with_steps(steps).scale_down_delay("1m".parse()?).plan(&PlanInput::new(replicas)))
}

async fn rollout(engine: &RolloutEngine, request: RolloutRequest) -> Result<(RolloutReport, Duration), Error> {
    let started = tokio::time::Instant::now();
    let mut handle = engine.start(request).await?;
    while let Some(event) = handle.next_event().await {
        let at = HumanDuration::new(Duration::from_secs(started.elapsed().as_secs()));
        let quiet = matches!(event, RolloutEvent::Decision { .. } | RolloutEvent::Scaled { .. });
        if !quiet {
            println!("  [+{:>7}] {event}", at.to_string());
        }
        if let RolloutEvent::Paused { kind: PauseKind::UntilPromoted, .. } = event {
            println!("  [+{:>7}] (operator looks at the dashboards and promotes)", at.to_string());
            handle.promote()?;
        }
    }
    Ok((handle.wait().await?, started.elapsed()))
}

async fn run(dry_run: bool) -> Result<(), Error> {
    let (spec, v1, v2) = testkit::sample_app(4);
    let v3 = Release::new(Version::new("2.1.0")?, ImageRef::parse("registry.local/shop/checkout:2.1.0")?);
    let plan = plan(spec.replicas)?;
    if dry_run {
        println!("rollout of {} to {}:\n{plan}", v1.version, v2.version);
        println!("rollout of {} to {}:\n{plan}", v2.version, v3.version);
        return Ok(());
    }

    let kit = TestKit::new();
    kit.seed(&spec, Track::Stable, &v1);
    let smoke = Arc::new(TestHealthCheck::new("smoke"));
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .health_check(smoke)
        .config(EngineConfig::default().holder("quickstart"))
        .build();
    engine.validate(&RolloutRequest::new(spec.clone(), v2.clone(), plan.clone()))?;
    println!("{plan}");

    let mut results = Vec::new();
    println!("rollout 1: {} -> {} (healthy: 0.2 % errors)", v1.version, v2.version);
    kit.metric_values().set("error-rate", Track::Canary, 0.002);
    let request = RolloutRequest::new(spec.clone(), v2.clone(), plan.clone()).from(v1.clone());
    results.push(rollout(&engine, request).await?);

    println!("\nrollout 2: {} -> {} (bad: 7 % errors)", v2.version, v3.version);
    kit.metric_values().set("error-rate", Track::Canary, 0.07);
    let request = RolloutRequest::new(spec.clone(), v3.clone(), plan).from(v2.clone());
    results.push(rollout(&engine, request).await?);

    println!("\n{:<30} {:<16} {:<12} {:>6} {:>8}  cause", "deployment", "release", "status", "steps", "time");
    for (report, took) in &results {
        let r = &report.record;
        let from = r.from.as_ref().map_or_else(|| "-".to_owned(), |f| f.version.to_string());
        println!(
            "{:<30} {:<16} {:<12} {:>6} {:>8}  {}",
            r.id.to_string(),
            format!("{from} -> {}", r.to.version),
            r.status.to_string(),
            r.steps.len(),
            HumanDuration::new(Duration::from_secs(took.as_secs())).to_string(),
            r.cause.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
        );
    }
    let world = kit.snapshot(&spec.id());
    println!("\nnow serving: {world}");
    Ok(())
}

fn main() -> Result<(), Error> {
    let dry_run = std::env::args().any(|a| a == "--dry-run");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()?;
    runtime.block_on(run(dry_run))
}
