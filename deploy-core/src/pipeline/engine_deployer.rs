//! [`EngineDeployer`]: a pipeline's deploy and rollback stages through the rollout
//! engine.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::artifacts::Artifacts;
use super::stage::{StageContext, StageError, StageOutput};
use super::stages::Deployer;
use crate::engine::{RolloutEngine, RolloutError, RolloutEvent, RolloutReport, RolloutRequest};
use crate::model::LogLevel;
use crate::model::{DeploymentStatus, LogLine};
use crate::plan::Plan;
use crate::strategy::{AutoPromotion, BlueGreen, PlanInput, RollingUpdate, Strategy};

/// Runs a [`RolloutRequest`] through a [`RolloutEngine`] as a pipeline's deploy
/// stage, and restores the previous release as its rollback stage.
///
/// - `deploy` starts the rollout, forwards every [`RolloutEvent`] into the stage's
///   logs (warnings for the rollback and failures) and waits for its end. A
///   rollout that did not succeed (rolled back, or failed) fails the stage with
///   the cause, the logs kept; the stage's [`Artifacts`] are `deployment` (its
///   id), `release` (the version) and `rollout_status`. The rollback stage's are
///   `restored` (the release that serves again) and, after a revert rollout, its
///   `deployment`.
/// - `rollback` restores the release that served before: a rollout still running
///   (the pipeline was cancelled mid-deploy) or left behind by a dead process gets
///   an [emergency rollback](RolloutEngine::emergency_rollback); a rollout the
///   engine already rolled back needs nothing more; after a rollout that succeeded
///   (a later stage failed) the previous release is rolled out again at once,
///   without analysis or pauses: in place for rolling and canary plans, by
///   switching back to the other colour for blue-green. A first deployment
///   (no previous release) cannot be rolled back this way and fails the stage.
///
/// The request is fixed when the deployer is made: make one per release.
pub struct EngineDeployer {
    engine: RolloutEngine,
    request: RolloutRequest,
    last: Mutex<Option<RolloutReport>>,
}

impl std::fmt::Debug for EngineDeployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineDeployer")
            .field("app", &self.request.spec.id())
            .field("to", &self.request.to.version)
            .field("strategy", &self.request.plan.strategy)
            .finish_non_exhaustive()
    }
}

impl EngineDeployer {
    /// A deployer that runs `request` on `engine`.
    pub fn new(engine: RolloutEngine, request: RolloutRequest) -> Self {
        Self { engine, request, last: Mutex::new(None) }
    }

    /// The report of the last rollout `deploy` saw to its end.
    pub fn last_report(&self) -> Option<RolloutReport> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn remember(&self, report: &RolloutReport) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(report.clone());
    }

    /// The previous release, rolled out again at once on the tracks `plan` left.
    fn revert_request(&self, from: &crate::model::Release) -> RolloutRequest {
        let plan = revert_plan(&self.request.plan);
        RolloutRequest::new(self.request.spec.clone(), from.clone(), plan)
            .from(self.request.to.clone())
            .environment(self.request.environment)
    }
}

/// Restoring the release a successful `plan` replaced: in place on the final track
/// for rolling and canary plans, back to the other colour for blue-green; no
/// analysis and no pause.
fn revert_plan(plan: &Plan) -> Plan {
    let input = PlanInput::new(plan.replicas).live_track(plan.final_track);
    if plan.final_track == plan.old_track {
        RollingUpdate::default().plan(&input)
    } else {
        BlueGreen::default()
            .auto_promotion(AutoPromotion::Immediate)
            .scale_down_delay(crate::model::HumanDuration::ZERO)
            .plan(&input)
    }
}

fn event_line(event: &RolloutEvent) -> LogLine {
    let level = match event {
        RolloutEvent::RollbackStarted { .. } => LogLevel::Warn,
        RolloutEvent::Finished { status, .. } if *status != DeploymentStatus::Succeeded => LogLevel::Error,
        RolloutEvent::StepFinished { outcome, .. } if !matches!(outcome, crate::model::StepOutcome::Succeeded) => {
            LogLevel::Warn
        }
        _ => LogLevel::Info,
    };
    LogLine::new(level, event.to_string())
}

fn report_line(what: &str, report: &RolloutReport) -> LogLine {
    let level = if report.status == DeploymentStatus::Succeeded || report.status == DeploymentStatus::RolledBack {
        LogLevel::Info
    } else {
        LogLevel::Error
    };
    LogLine::new(level, format!("{what} {}: {}", report.record.id, report.status))
}

#[async_trait]
impl Deployer for EngineDeployer {
    async fn deploy(&self, _ctx: &StageContext) -> Result<StageOutput, StageError> {
        let request = self.request.clone();
        let (app, version) = (request.spec.id(), request.to.version.clone());
        let mut handle = self.engine.start(request).await?;
        let mut logs = Vec::new();
        while let Some(event) = handle.next_event().await {
            logs.push(event_line(&event));
        }
        let report = handle.wait().await?;
        self.remember(&report);
        if report.status == DeploymentStatus::Succeeded {
            let mut out = StageOutput::default().artifacts(
                Artifacts::default()
                    .deployment(report.record.id.clone())
                    .release(version)
                    .rollout_status(report.status),
            );
            out.logs = logs;
            return Ok(out);
        }
        let cause = report.cause.as_ref().map_or_else(|| "no cause recorded".to_owned(), ToString::to_string);
        let message = format!("rollout {} of {app} to {version} {}: {cause}", report.record.id, report.status);
        Err(StageError::failed(message).with_logs(logs))
    }

    async fn rollback(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let app = self.request.spec.id();
        let reason = format!("pipeline {} is rolling back", ctx.pipeline_id);
        let mut out = StageOutput::default();
        let report = match self.engine.emergency_rollback(&app, reason).await {
            Ok(report) => {
                out.logs.push(report_line("emergency rollback of rollout", &report));
                Some(report)
            }
            Err(RolloutError::NothingToResume { .. }) => self.last_report(),
            Err(e) => return Err(e.into()),
        };
        let Some(report) = report else {
            return Ok(out.log(LogLevel::Info, "nothing was deployed: nothing to roll back"));
        };
        self.remember(&report);
        if report.status == DeploymentStatus::RolledBack {
            let restored = report.record.from.as_ref().map(|r| r.version.clone());
            let serves = restored.as_ref().map_or_else(|| "nothing".to_owned(), ToString::to_string);
            out = out.log(LogLevel::Info, format!("rollout {} was rolled back: {serves} serves", report.record.id));
            if let Some(version) = restored {
                out = out.artifacts(Artifacts::default().restored(version));
            }
            return Ok(out);
        }
        // It succeeded (a later stage failed) or even its own rollback failed:
        // roll the previous release out again.
        let Some(from) = self.request.from.clone() else {
            return Err(StageError::failed(format!(
                "{app} had no release before {}: nothing to restore",
                self.request.to.version
            )));
        };
        let mut handle = self.engine.start(self.revert_request(&from)).await?;
        while let Some(event) = handle.next_event().await {
            out.logs.push(event_line(&event));
        }
        let revert = handle.wait().await?;
        out.logs.push(report_line("revert to the previous release", &revert));
        if revert.status != DeploymentStatus::Succeeded {
            let cause = revert.cause.as_ref().map_or_else(String::new, |c| format!(": {c}"));
            let message = format!("could not restore {} ({}){cause}", from.version, revert.status);
            return Err(StageError::failed(message).with_logs(out.logs));
        }
        Ok(out.artifacts(Artifacts::default().restored(from.version.clone()).deployment(revert.record.id.clone())))
    }
}
