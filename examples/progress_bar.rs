//! Rendering a rollout's events as progress bars with `indicatif`, on the in-memory
//! test kit (no cluster needed).
//!
//! Two bars: the plan's steps, and the share of traffic on the new release. Every
//! event that matters is also printed above the bars as a log line, so the output
//! still tells the story when stderr is not a terminal (indicatif then hides the
//! bars, as in CI).
//!
//! The first rollout is healthy and is promoted; the second one's error rate is 7 %,
//! so its first analysis fails and the engine rolls back: watch the traffic bar
//! drop to 0.
//!
//! Run with `cargo run -p deploy-examples --example progress_bar`. Add `--slow` to
//! pace the events (40 ms each) and watch the bars move in a terminal.

use std::time::Duration;

use deploy_core::engine::{RolloutEngine, RolloutEvent, RolloutRequest};
use deploy_core::model::{DeploymentStatus, ImageRef, Release, Track, Version};
use deploy_core::plan::{Plan, Step};
use deploy_core::testkit::{self, TestKit};
use deploy_examples::{Error, canary_plan};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The two bars of one rollout, and what an event does to them.
struct RolloutBars {
    steps: ProgressBar,
    traffic: ProgressBar,
    /// The index of the plan's `Promote` step: from there on, the new release runs
    /// on the final track (stable), not on the canary.
    promote_at: Option<usize>,
    promoting: std::cell::Cell<bool>,
}

impl RolloutBars {
    fn new(multi: &MultiProgress, title: &str, plan: &Plan) -> Result<Self, Error> {
        let steps_bar = multi.add(ProgressBar::new(plan.steps.len() as u64));
        steps_bar.set_style(ProgressStyle::with_template("{prefix:>14} [{bar:30.cyan/blue}] {pos}/{len} {msg}")?);
        steps_bar.set_prefix(title.to_owned());
        let traffic = multi.add(ProgressBar::new(100));
        traffic.set_style(ProgressStyle::with_template("{prefix:>14} [{bar:30.green/red}] {pos:>3}% {msg}")?);
        traffic.set_prefix("new release");
        let promote_at = plan.steps.iter().position(|s| matches!(s, Step::Promote));
        Ok(Self { steps: steps_bar, traffic, promote_at, promoting: std::cell::Cell::new(false) })
    }

    /// Moves the bars; returns the line to log, if the event deserves one.
    fn apply(&self, event: &RolloutEvent) -> Option<String> {
        match event {
            RolloutEvent::StepStarted { index, description } => {
                self.promoting.set(Some(*index) == self.promote_at);
                self.steps.set_message(description.clone());
                None
            }
            RolloutEvent::StepFinished { .. } => {
                self.steps.inc(1);
                Some(event.to_string())
            }
            RolloutEvent::WeightChanged { split } => {
                // The new release is on the canary track, or on stable once promoted.
                let on_new =
                    if self.promoting.get() { split.weight(Track::Stable) } else { split.weight(Track::Canary) };
                self.traffic.set_position(u64::from(u8::from(on_new)));
                self.traffic.set_message(split.to_string());
                Some(event.to_string())
            }
            RolloutEvent::AnalysisFinished { .. }
            | RolloutEvent::RollbackStarted { .. }
            | RolloutEvent::Started { .. } => Some(event.to_string()),
            RolloutEvent::Finished { status, .. } => {
                let message = status.to_string();
                if *status == DeploymentStatus::Succeeded {
                    self.steps.finish_with_message(message.clone());
                    self.traffic.finish_with_message("promoted");
                } else {
                    self.steps.abandon_with_message(message.clone());
                    self.traffic.set_position(0);
                    self.traffic.abandon_with_message("previous release serves 100 %");
                }
                Some(event.to_string())
            }
            _ => None,
        }
    }
}

async fn rollout(
    engine: &RolloutEngine,
    multi: &MultiProgress,
    title: &str,
    request: RolloutRequest,
    pace: Option<Duration>,
) -> Result<DeploymentStatus, Error> {
    let bars = RolloutBars::new(multi, title, &request.plan)?;
    let mut handle = engine.start(request).await?;
    while let Some(event) = handle.next_event().await {
        if let Some(line) = bars.apply(&event) {
            multi.suspend(|| println!("{title}: {line}"));
        }
        if let Some(pace) = pace {
            // A real pause, outside tokio's paused clock, so that the bars can be seen.
            std::thread::sleep(pace);
        }
    }
    Ok(handle.wait().await?.status)
}

async fn run(pace: Option<Duration>) -> Result<(), Error> {
    let (spec, v1, v2) = testkit::sample_app(4);
    let v3 = Release::new(Version::new("2.1.0")?, ImageRef::parse("registry.local/shop/checkout:2.1.0")?);
    let plan = canary_plan(spec.replicas, false)?;

    let kit = TestKit::new();
    kit.seed(&spec, Track::Stable, &v1);
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .build();
    let multi = MultiProgress::new();

    kit.metric_values().set("error-rate", Track::Canary, 0.002);
    let request = RolloutRequest::new(spec.clone(), v2.clone(), plan.clone()).from(v1);
    let first = rollout(&engine, &multi, "2.0.0 healthy", request, pace).await?;

    kit.metric_values().set("error-rate", Track::Canary, 0.07);
    let request = RolloutRequest::new(spec.clone(), v3, plan).from(v2);
    let second = rollout(&engine, &multi, "2.1.0 bad", request, pace).await?;

    println!("first rollout: {first}; second rollout: {second}");
    println!("now serving: {}", kit.snapshot(&spec.id()));
    if first != DeploymentStatus::Succeeded || second != DeploymentStatus::RolledBack {
        return Err("the rollouts did not end as the example expects".into());
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let pace = std::env::args().any(|a| a == "--slow").then_some(Duration::from_millis(40));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()?;
    runtime.block_on(run(pace))
}
