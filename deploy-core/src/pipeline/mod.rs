//! CI/CD pipelines: stages run in order, with branch rules, fail-fast, a rollback
//! stage after a failed deployment, cancellation, and a notification at the end.
//!
//! Stages are `Arc<dyn Stage>`. The provided ones work through the backend traits:
//! [`BuildStage`] (an [`ImageBuilder`](crate::build::ImageBuilder)),
//! [`SecurityScanStage`] (a [`VulnerabilityScanner`](crate::scan::VulnerabilityScanner)
//! with a [`ScanPolicy`](crate::scan::ScanPolicy) gate), [`QualityGate`], [`PushStage`] (an
//! [`ImageRegistry`](crate::registry::ImageRegistry)), [`DeployStage`] and
//! [`RollbackStage`] (through a [`Deployer`]: [`EngineDeployer`] runs a rollout
//! through the [rollout engine](crate::engine) and restores the previous release
//! on rollback; other deployers implement the trait), and [`FnStage`] for tests,
//! smoke tests and anything else.
//!
//! ```
//! use std::sync::Arc;
//! use deploy_core::pipeline::*;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pipeline = Pipeline::builder()
//!     .stage(FnStage::new("unit-tests", StageKind::Test, |_| async {
//!         Ok(StageOutput::default().value("coverage", "88"))
//!     }))
//!     .stage(QualityGate::new().at_least("coverage", 80.0))
//!     .stage(FnStage::new("deploy", StageKind::Deploy, |_| async { Ok(StageOutput::default()) }))
//!     .build();
//!
//! let run = pipeline.run(RunOptions::new("feature/login")).await;
//! assert_eq!(run.status, PipelineStatus::Succeeded);
//! // Feature branches do not deploy.
//! assert_eq!(run.stages[2].status, StageStatus::Skipped);
//! # }
//! ```

mod artifacts;
mod engine_deployer;
mod stage;
mod stages;

pub use artifacts::Artifacts;
pub use engine_deployer::EngineDeployer;

pub use stage::{PipelineId, Stage, StageContext, StageError, StageKind, StageOutput, StageResult, StageStatus};
pub use stages::{
    BuildStage, DeployStage, Deployer, FnStage, PushStage, QualityGate, RollbackStage, SecurityScanStage,
};
pub use tokio_util::sync::CancellationToken;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::model::LogLevel;
use crate::model::{AppId, Environment, LogLine};
use crate::notify::{Notification, NotificationKind, Notifier};
use stage::error_chain;

/// Which branches may run the deploying stages. A pattern ending in `*` matches by
/// prefix (`release/*`).
///
/// ```
/// use deploy_core::pipeline::{BranchRules, StageKind};
/// let rules = BranchRules::default();
/// assert!(rules.allows("main") && rules.allows("production"));
/// assert!(!rules.allows("feature/x"));
/// let rules = rules.allow("release/*");
/// assert!(rules.allows("release/2.1"));
/// assert!(rules.gated_kinds.contains(&StageKind::Deploy));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BranchRules {
    /// Branches allowed to deploy. Default: `main`, `master`, `production`.
    pub deploy_branches: Vec<String>,
    /// Stage kinds that only run on those branches. Default: deploy, smoke test.
    pub gated_kinds: Vec<StageKind>,
}

impl Default for BranchRules {
    fn default() -> Self {
        Self {
            deploy_branches: vec!["main".into(), "master".into(), "production".into()],
            gated_kinds: vec![StageKind::Deploy, StageKind::SmokeTest],
        }
    }
}

impl BranchRules {
    /// Also allows `pattern`.
    #[must_use]
    pub fn allow(mut self, pattern: impl Into<String>) -> Self {
        self.deploy_branches.push(pattern.into());
        self
    }

    /// Replaces the allowed branches.
    #[must_use]
    pub fn deploy_branches(mut self, patterns: Vec<String>) -> Self {
        self.deploy_branches = patterns;
        self
    }

    /// Replaces the gated stage kinds.
    #[must_use]
    pub fn gated_kinds(mut self, kinds: Vec<StageKind>) -> Self {
        self.gated_kinds = kinds;
        self
    }

    /// Whether `branch` may deploy.
    pub fn allows(&self, branch: &str) -> bool {
        self.deploy_branches.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => branch.starts_with(prefix),
            None => p == branch,
        })
    }
}

/// What to run a pipeline on: per-run options.
///
/// ```
/// use deploy_core::pipeline::RunOptions;
/// use deploy_core::model::Environment;
/// let o = RunOptions::new("main").commit("9fceb02").environment(Environment::Staging);
/// assert_eq!(o.commit.as_deref(), Some("9fceb02"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// The branch.
    pub branch: String,
    /// The commit.
    pub commit: Option<String>,
    /// The application.
    pub app: Option<AppId>,
    /// The target environment.
    pub environment: Option<Environment>,
    /// Cancels the run when fired; a fresh token by default.
    pub cancellation: CancellationToken,
}

impl RunOptions {
    /// A run on `branch`.
    pub fn new(branch: impl Into<String>) -> Self {
        Self {
            branch: branch.into(),
            commit: None,
            app: None,
            environment: None,
            cancellation: CancellationToken::new(),
        }
    }

    /// Sets the commit.
    #[must_use]
    pub fn commit(mut self, commit: impl Into<String>) -> Self {
        self.commit = Some(commit.into());
        self
    }

    /// Sets the application.
    #[must_use]
    pub fn app(mut self, app: AppId) -> Self {
        self.app = Some(app);
        self
    }

    /// Sets the environment.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Uses `token` to cancel the run.
    #[must_use]
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancellation = token;
        self
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PipelineStatus {
    /// Every stage succeeded or was skipped by a branch rule.
    Succeeded,
    /// A stage failed.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

/// The record of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PipelineRun {
    /// The run's id.
    pub id: PipelineId,
    /// The branch.
    pub branch: String,
    /// The commit.
    pub commit: Option<String>,
    /// How it ended.
    pub status: PipelineStatus,
    /// Every stage, in order, each once (skipped ones too).
    pub stages: Vec<StageResult>,
    /// The rollback stage, when it ran.
    pub rollback: Option<StageResult>,
    /// When the run began.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// How long it took.
    pub duration: Duration,
}

impl PipelineRun {
    /// The first failed stage.
    pub fn failed_stage(&self) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.status == StageStatus::Failed)
    }

    /// Whether the rollback stage ran and succeeded.
    pub fn rolled_back(&self) -> bool {
        self.rollback.as_ref().is_some_and(|r| r.status == StageStatus::Succeeded)
    }
}

/// Builds a [`Pipeline`].
#[derive(Default)]
pub struct PipelineBuilder {
    stages: Vec<Arc<dyn Stage>>,
    rollback: Option<Arc<dyn Stage>>,
    branch_rules: BranchRules,
    notifiers: Vec<Arc<dyn Notifier>>,
}

impl PipelineBuilder {
    /// Appends a stage.
    #[must_use]
    pub fn stage(mut self, stage: impl Stage + 'static) -> Self {
        self.stages.push(Arc::new(stage));
        self
    }

    /// Appends a shared stage.
    #[must_use]
    pub fn shared_stage(mut self, stage: Arc<dyn Stage>) -> Self {
        self.stages.push(stage);
        self
    }

    /// The stage to run when a deploy stage, or a stage after one, fails or is
    /// cancelled.
    #[must_use]
    pub fn rollback(mut self, stage: impl Stage + 'static) -> Self {
        self.rollback = Some(Arc::new(stage));
        self
    }

    /// Sets the branch rules.
    #[must_use]
    pub fn branch_rules(mut self, rules: BranchRules) -> Self {
        self.branch_rules = rules;
        self
    }

    /// Adds a notifier, told when every run ends.
    #[must_use]
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// The pipeline.
    pub fn build(self) -> Pipeline {
        Pipeline {
            stages: self.stages,
            rollback: self.rollback,
            branch_rules: self.branch_rules,
            notifiers: self.notifiers,
        }
    }
}

/// A sequence of stages; see the [module docs](self).
///
/// Rules of a run:
/// - Stages run in order; each sees the artifacts of those before.
/// - A stage whose kind the [`BranchRules`] gate is skipped on other branches.
/// - Fail-fast: after a failure the remaining stages are skipped.
/// - When the failed stage is a deploy stage or comes after one that ran, the
///   rollback stage runs (also after a cancellation). It gets a token of its own:
///   cancelling the run does not cancel its rollback.
/// - Cancellation stops the running stage (its future is dropped) and skips the rest.
/// - Every notifier is told the outcome; a notifier's failure is logged as a
///   warning and changes nothing.
#[derive(Clone)]
pub struct Pipeline {
    stages: Vec<Arc<dyn Stage>>,
    rollback: Option<Arc<dyn Stage>>,
    branch_rules: BranchRules,
    notifiers: Vec<Arc<dyn Notifier>>,
}

impl Pipeline {
    /// Starts building a pipeline.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    /// Runs every stage and reports the run. Failures are in the report, not an `Err`.
    pub async fn run(&self, options: RunOptions) -> PipelineRun {
        let id = PipelineId::generate();
        let span = tracing::info_span!("pipeline.run", pipeline.id = %id, pipeline.branch = %options.branch);
        self.run_inner(id, options).instrument(span).await
    }

    async fn run_inner(&self, id: PipelineId, options: RunOptions) -> PipelineRun {
        let started_at = Timestamp::now();
        let mut ctx = StageContext {
            pipeline_id: id.clone(),
            branch: options.branch.clone(),
            commit: options.commit.clone(),
            app: options.app.clone(),
            environment: options.environment,
            artifacts: Artifacts::default(),
            cancellation: options.cancellation.clone(),
        };
        let may_deploy = self.branch_rules.allows(&options.branch);
        let mut results = Vec::with_capacity(self.stages.len());
        let mut status = PipelineStatus::Succeeded;
        let mut deploy_ran = false;
        let mut needs_rollback = false;

        for stage in &self.stages {
            let stage = stage.as_ref();
            let now = Timestamp::now();
            if status != PipelineStatus::Succeeded {
                let why = if status == PipelineStatus::Cancelled {
                    "the run was cancelled"
                } else {
                    "an earlier stage failed"
                };
                results.push(skipped(stage, now, why, status));
                continue;
            }
            if options.cancellation.is_cancelled() {
                status = PipelineStatus::Cancelled;
                needs_rollback |= deploy_ran;
                results.push(skipped(stage, now, "the run was cancelled", status));
                continue;
            }
            if !may_deploy && self.branch_rules.gated_kinds.contains(&stage.kind()) {
                let why = format!("branch {} may not deploy", options.branch);
                results.push(skipped(stage, now, &why, PipelineStatus::Succeeded));
                continue;
            }
            deploy_ran |= stage.kind() == StageKind::Deploy;
            let outcome = tokio::select! {
                biased;
                () = options.cancellation.cancelled() => None,
                r = stage.run(&ctx) => Some(r),
            };
            let mut result = StageResult::new(stage, StageStatus::Succeeded, now);
            match outcome {
                Some(Ok(out)) => {
                    ctx.artifacts.merge(out.artifacts.clone());
                    result.artifacts = out.artifacts;
                    result.logs = out.logs;
                }
                Some(Err(e)) => {
                    let text = error_chain(&e);
                    tracing::warn!(pipeline.stage = stage.name(), error = %text, "stage failed");
                    result.logs = e.logs().to_vec();
                    result.status = StageStatus::Failed;
                    result.error = Some(text);
                    status = PipelineStatus::Failed;
                    needs_rollback |= deploy_ran;
                }
                None => {
                    result.status = StageStatus::Cancelled;
                    result.logs.push(LogLine::new(LogLevel::Warn, "cancelled while running"));
                    status = PipelineStatus::Cancelled;
                    needs_rollback |= deploy_ran;
                }
            }
            results.push(result);
        }

        let rollback = match (&self.rollback, needs_rollback) {
            (Some(stage), true) => Some(self.run_rollback(stage.as_ref(), &ctx).await),
            _ => None,
        };
        let finished_at = Timestamp::now();
        let run = PipelineRun {
            id,
            branch: options.branch,
            commit: options.commit,
            status,
            stages: results,
            rollback,
            started_at,
            finished_at,
            duration: Duration::try_from(finished_at.duration_since(started_at)).unwrap_or_default(),
        };
        self.notify(&run, options.app, options.environment).await;
        run
    }

    async fn run_rollback(&self, stage: &dyn Stage, ctx: &StageContext) -> StageResult {
        let mut ctx = ctx.clone();
        ctx.cancellation = CancellationToken::new();
        let started = Timestamp::now();
        let outcome = stage.run(&ctx).await;
        let mut result = StageResult::new(stage, StageStatus::Succeeded, started);
        match outcome {
            Ok(out) => {
                result.artifacts = out.artifacts;
                result.logs = out.logs;
            }
            Err(e) => {
                let text = error_chain(&e);
                tracing::error!(error = %text, "rollback stage failed");
                result.logs = e.logs().to_vec();
                result.status = StageStatus::Failed;
                result.error = Some(text);
            }
        }
        result
    }

    async fn notify(&self, run: &PipelineRun, app: Option<AppId>, environment: Option<Environment>) {
        if self.notifiers.is_empty() {
            return;
        }
        let (kind, title) = match run.status {
            PipelineStatus::Succeeded => {
                (NotificationKind::PipelineSucceeded, format!("pipeline {} succeeded", run.id))
            }
            PipelineStatus::Failed => (NotificationKind::PipelineFailed, format!("pipeline {} failed", run.id)),
            PipelineStatus::Cancelled => {
                (NotificationKind::PipelineFailed, format!("pipeline {} was cancelled", run.id))
            }
        };
        let message = match run.failed_stage() {
            Some(s) => format!("stage {} failed: {}", s.name, s.error.as_deref().unwrap_or("")),
            None => format!("{} stages on {}", run.stages.len(), run.branch),
        };
        let mut n = Notification::new(kind, title, message)
            .field("pipeline", run.id.to_string())
            .field("branch", run.branch.clone())
            .field("status", format!("{:?}", run.status).to_lowercase())
            .field("duration_ms", run.duration.as_millis().to_string());
        if let Some(c) = &run.commit {
            n = n.field("commit", c.clone());
        }
        if let Some(r) = &run.rollback {
            n = n.field("rollback", format!("{:?}", r.status).to_lowercase());
        }
        if let Some(a) = app {
            n = n.app(a);
        }
        if let Some(e) = environment {
            n = n.environment(e);
        }
        for notifier in &self.notifiers {
            if let Err(e) = notifier.notify(&n).await {
                tracing::warn!(error = %error_chain(&e), "pipeline notification not delivered");
            }
        }
    }
}

fn skipped(stage: &dyn Stage, at: Timestamp, why: &str, status: PipelineStatus) -> StageResult {
    let s = if status == PipelineStatus::Cancelled { StageStatus::Cancelled } else { StageStatus::Skipped };
    let mut r = StageResult::new(stage, s, at);
    r.logs.push(LogLine::new(LogLevel::Info, format!("skipped: {why}")));
    r
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests;

#[cfg(test)]
#[cfg(feature = "testkit")]
mod engine_tests;
