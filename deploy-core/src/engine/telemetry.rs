//! Rollout metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): the embedding program installs the exporter it wants (Prometheus,
//! StatsD, OpenTelemetry), the engine only records. Without the feature every call
//! here compiles to nothing.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `deploy_rollouts_started_total` | counter | `strategy` |
//! | `deploy_rollouts_finished_total` | counter | `strategy`, `status` (`succeeded`, `rolled_back`, `failed`) |
//! | `deploy_rollout_duration_seconds` | histogram | `strategy`, `status` |
//! | `deploy_rollout_step_duration_seconds` | histogram | `step` (the step's kind), `outcome` |
//! | `deploy_rollout_canary_weight_percent` | gauge | `app` (`namespace/name`) |
//! | `deploy_analysis_measurements_total` | counter | `outcome` |
//! | `deploy_backend_errors_total` | counter | `backend` (`platform`, `router`, `state`, `history`, `other`), `kind` |
//! | `deploy_lock_takeovers_total` | counter | none |
//! | `deploy_rollback_duration_seconds` | histogram | `strategy` |
//!
//! Label values are bounded: strategies, statuses, step kinds, outcomes, error
//! kinds, and the application's name; never a release version or a message.

use std::sync::Mutex;
#[cfg(feature = "metrics")]
use std::sync::PoisonError;
use std::time::Instant;

use super::RolloutEvent;
use crate::error::ErrorKind;
use crate::model::AppId;
#[cfg(feature = "metrics")]
use crate::model::{DeploymentStatus, Track};
use crate::plan::Plan;

/// Timers of one rollout, fed with its events.
#[derive(Debug)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code, reason = "records nothing without the feature"))]
pub(crate) struct RolloutTelemetry {
    strategy: &'static str,
    app: String,
    timers: Mutex<Timers>,
}

#[derive(Debug, Default)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code, reason = "records nothing without the feature"))]
struct Timers {
    started: Option<Instant>,
    step: Option<(Instant, &'static str)>,
    rollback: Option<Instant>,
}

#[cfg(feature = "metrics")]
fn step_label(outcome: &crate::model::StepOutcome) -> &'static str {
    use crate::model::StepOutcome;
    match outcome {
        StepOutcome::Succeeded => "succeeded",
        StepOutcome::Failed(_) => "failed",
        StepOutcome::Skipped(_) => "skipped",
        StepOutcome::Aborted => "aborted",
    }
}

#[cfg(feature = "metrics")]
fn measurement_label(outcome: crate::analysis::MeasurementOutcome) -> &'static str {
    use crate::analysis::MeasurementOutcome;
    match outcome {
        MeasurementOutcome::Successful => "successful",
        MeasurementOutcome::Failed => "failed",
        MeasurementOutcome::Inconclusive => "inconclusive",
        MeasurementOutcome::Error => "error",
    }
}

#[cfg(feature = "metrics")]
fn kind_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::Unsupported => "unsupported",
        _ => "other",
    }
}

#[cfg(feature = "metrics")]
fn status_label(status: DeploymentStatus) -> &'static str {
    match status {
        DeploymentStatus::Succeeded => "succeeded",
        DeploymentStatus::RolledBack => "rolled_back",
        DeploymentStatus::Failed => "failed",
        _ => "other",
    }
}

impl RolloutTelemetry {
    pub(crate) fn new(app: &AppId, plan: &Plan) -> Self {
        Self { strategy: plan.strategy.as_str(), app: app.to_string(), timers: Mutex::default() }
    }

    /// Records what `event` says; `plan` names the steps.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables, reason = "records nothing without the feature"))]
    pub(crate) fn observe(&self, event: &RolloutEvent, plan: &Plan) {
        #[cfg(feature = "metrics")]
        {
            let mut timers = self.timers.lock().unwrap_or_else(PoisonError::into_inner);
            let strategy = self.strategy;
            match event {
                RolloutEvent::Started { .. } | RolloutEvent::Resumed { .. } => {
                    timers.started.get_or_insert_with(Instant::now);
                    if matches!(event, RolloutEvent::Started { .. }) {
                        metrics::counter!("deploy_rollouts_started_total", "strategy" => strategy).increment(1);
                    }
                }
                RolloutEvent::StepStarted { index, .. } => {
                    let kind = plan.steps.get(*index).map_or("unknown", crate::plan::Step::kind);
                    timers.step = Some((Instant::now(), kind));
                }
                RolloutEvent::StepFinished { outcome, .. } => {
                    if let Some((at, kind)) = timers.step.take() {
                        let outcome = step_label(outcome);
                        metrics::histogram!("deploy_rollout_step_duration_seconds", "step" => kind, "outcome" => outcome)
                            .record(at.elapsed().as_secs_f64());
                    }
                }
                RolloutEvent::WeightChanged { split } => {
                    let weight = split
                        .iter()
                        .filter(|(t, _)| *t == Track::Canary)
                        .map(|(_, w)| f64::from(w.value()))
                        .sum::<f64>();
                    metrics::gauge!("deploy_rollout_canary_weight_percent", "app" => self.app.clone()).set(weight);
                }
                RolloutEvent::RollbackStarted { .. } => {
                    timers.rollback = Some(Instant::now());
                }
                RolloutEvent::Finished { status, .. } => {
                    let status = status_label(*status);
                    metrics::counter!("deploy_rollouts_finished_total", "strategy" => strategy, "status" => status)
                        .increment(1);
                    if let Some(at) = timers.started.take() {
                        metrics::histogram!("deploy_rollout_duration_seconds", "strategy" => strategy, "status" => status)
                            .record(at.elapsed().as_secs_f64());
                    }
                    if let Some(at) = timers.rollback.take() {
                        metrics::histogram!("deploy_rollback_duration_seconds", "strategy" => strategy)
                            .record(at.elapsed().as_secs_f64());
                    }
                    metrics::gauge!("deploy_rollout_canary_weight_percent", "app" => self.app.clone()).set(0.0);
                }
                _ => {}
            }
        }
    }
}

impl RolloutTelemetry {
    /// Counts one analysis measurement by its outcome.
    #[cfg_attr(
        not(feature = "metrics"),
        allow(unused_variables, clippy::unused_self, reason = "records nothing without the feature")
    )]
    pub(crate) fn measurement(&self, outcome: crate::analysis::MeasurementOutcome) {
        #[cfg(feature = "metrics")]
        metrics::counter!("deploy_analysis_measurements_total", "outcome" => measurement_label(outcome)).increment(1);
    }
}

/// Counts a failed backend call of type `E` by its class.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables, reason = "records nothing without the feature"))]
pub(crate) fn backend_error<E>(kind: ErrorKind) {
    #[cfg(feature = "metrics")]
    {
        let name = std::any::type_name::<E>();
        let backend = if name.ends_with("PlatformError") {
            "platform"
        } else if name.ends_with("RouterError") {
            "router"
        } else if name.ends_with("StateError") {
            "state"
        } else if name.ends_with("HistoryError") {
            "history"
        } else {
            "other"
        };
        metrics::counter!("deploy_backend_errors_total", "backend" => backend, "kind" => kind_label(kind)).increment(1);
    }
}

/// Counts a lock taken over from a holder whose lease lapsed.
pub(crate) fn lock_takeover() {
    #[cfg(feature = "metrics")]
    metrics::counter!("deploy_lock_takeovers_total").increment(1);
}
