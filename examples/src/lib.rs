//! Shared helpers of the deploy-rs examples; the programs themselves are the
//! `examples/*.rs` files of this package.
//!
//! - [`canary_plan`]: the canary plan the test-kit examples roll out.
//! - [`standins`]: in-process stand-ins for an image builder, a vulnerability
//!   scanner and an image registry, so that the pipeline example runs without
//!   Docker, a scanner or a registry.

use std::time::Duration;

use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::model::{HumanDuration, Percent};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};

pub mod standins;

/// The examples' error type: they print it and exit non-zero.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The error-rate query the test-kit examples analyse; the test kit's metrics
/// answer it by check name (`error-rate`), the query is there to show its shape.
pub const ERROR_RATE_QUERY: &str = r#"sum(rate(http_requests_total{app="{{app}}",track="{{track}}",code=~"5.."}[{{interval}}])) / sum(rate(http_requests_total{app="{{app}}",track="{{track}}"}[{{interval}}]))"#;

/// A canary plan for `replicas` replicas: 10, 25, 50, 75 and 100 % of the traffic,
/// each weight followed by three error-rate measurements a minute apart (at most
/// 1 % errors, one "no data" tolerated); with `pause_for_operator`, the rollout
/// also waits at 50 % until the caller promotes it.
///
/// # Errors
///
/// Never in practice: the weights and durations are constants, but they go through
/// the same validation as values from outside the process.
pub fn canary_plan(replicas: u32, pause_for_operator: bool) -> Result<Plan, Error> {
    let analysis = AnalysisSpec::new("error-rate")
        .metric(MetricCheck::new("error-rate", ERROR_RATE_QUERY, JudgeSpec::max(0.01)))
        .interval(HumanDuration::new(Duration::from_secs(60)))
        .count(3)
        .inconclusive_limit(1);
    let mut steps = Vec::new();
    for w in [10, 25, 50, 75, 100] {
        steps.push(Step::SetWeight(Percent::new(w)?));
        steps.push(Step::Analyze(analysis.clone()));
        if w == 50 && pause_for_operator {
            steps.push(Step::Pause(PauseKind::UntilPromoted));
        }
    }
    Ok(Canary::with_steps(steps).scale_down_delay("1m".parse()?).plan(&PlanInput::new(replicas)))
}

pub mod kube_demo;

/// Prints every event of a rollout as it happens and returns its report.
///
/// # Errors
///
/// When the engine fails outside the rollout itself (it could not take the lock,
/// save progress, or restore the previous release).
pub async fn print_rollout(
    mut handle: deploy_core::engine::RolloutHandle,
) -> Result<deploy_core::engine::RolloutReport, Error> {
    while let Some(event) = handle.next_event().await {
        println!("  {event}");
    }
    Ok(handle.wait().await?)
}
