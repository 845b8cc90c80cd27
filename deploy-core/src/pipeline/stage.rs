//! The [`Stage`] trait and what flows in and out of a stage.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::artifacts::Artifacts;
use crate::build::BuildError;
use crate::engine::RolloutError;
use crate::error::{BoxError, Classify, ErrorKind};
use crate::model::LogLevel;
use crate::model::{AppId, Environment, LogLine};
use crate::registry::RegistryError;
use crate::scan::ScanError;

/// The unique id of one pipeline run: `pl-`, the start time in milliseconds and 64
/// random bits, in hex.
///
/// ```
/// use deploy_core::pipeline::PipelineId;
/// let id = PipelineId::generate();
/// assert!(id.as_str().starts_with("pl-"));
/// assert_ne!(id, PipelineId::generate());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PipelineId(String);

impl PipelineId {
    /// A fresh id.
    pub fn generate() -> Self {
        Self(format!("pl-{:011x}-{:016x}", Timestamp::now().as_millisecond(), crate::random::u64()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a stage does, for branch rules, fail-fast and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StageKind {
    /// Builds an image.
    Build,
    /// Runs tests.
    Test,
    /// Scans an image for vulnerabilities.
    SecurityScan,
    /// Checks measured values against thresholds.
    QualityGate,
    /// Pushes an image to a registry.
    Push,
    /// Deploys; a failure here (or after it) triggers the rollback stage.
    Deploy,
    /// Checks the deployed service.
    SmokeTest,
    /// Restores the previous release.
    Rollback,
    /// Anything else.
    Custom,
}

/// What a stage sees: the run's identity and the [`Artifacts`] earlier stages
/// produced (image, digest, named values), and the run's cancellation token, which a
/// long stage may watch (the runner also stops waiting for a stage when it fires).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StageContext {
    /// The run's id.
    pub pipeline_id: PipelineId,
    /// The branch being built.
    pub branch: String,
    /// The commit being built.
    pub commit: Option<String>,
    /// The application, if the pipeline is about one.
    pub app: Option<AppId>,
    /// The target environment.
    pub environment: Option<Environment>,
    /// Artifacts of the stages that ran before, later stages overriding earlier ones.
    pub artifacts: Artifacts,
    /// Fires when the run is cancelled.
    pub cancellation: CancellationToken,
}

impl StageContext {
    /// A context for a run on `branch`, for tests of single stages.
    ///
    /// ```
    /// use deploy_core::model::ImageRef;
    /// use deploy_core::pipeline::{Artifacts, StageContext};
    /// let ctx = StageContext::new("main").artifacts(Artifacts::default().image(ImageRef::parse("web:1").unwrap()));
    /// assert_eq!(ctx.artifacts.require_image().unwrap().to_string(), "docker.io/library/web:1");
    /// assert!(ctx.artifacts.require_digest().is_err());
    /// ```
    pub fn new(branch: impl Into<String>) -> Self {
        Self {
            pipeline_id: PipelineId::generate(),
            branch: branch.into(),
            commit: None,
            app: None,
            environment: None,
            artifacts: Artifacts::default(),
            cancellation: CancellationToken::new(),
        }
    }

    /// Sets the artifacts, as if earlier stages had produced them.
    #[must_use]
    pub fn artifacts(mut self, artifacts: Artifacts) -> Self {
        self.artifacts = artifacts;
        self
    }
}

/// What a successful stage produced.
///
/// ```
/// use deploy_core::pipeline::StageOutput;
/// use deploy_core::model::LogLevel;
/// let out = StageOutput::default().value("coverage", "87.5").log(LogLevel::Info, "412 tests passed");
/// assert_eq!(out.artifacts.get("coverage"), Some("87.5"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageOutput {
    /// Results for later stages and the report.
    pub artifacts: Artifacts,
    /// What the stage has to say.
    pub logs: Vec<LogLine>,
}

impl StageOutput {
    /// Adds `artifacts` over what the output has.
    #[must_use]
    pub fn artifacts(mut self, artifacts: Artifacts) -> Self {
        self.artifacts.merge(artifacts);
        self
    }

    /// Adds the named value `key` ([`Artifacts::value`]).
    #[must_use]
    pub fn value(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.artifacts.values.insert(key.into(), value.into());
        self
    }

    /// Adds a log line written now.
    #[must_use]
    pub fn log(mut self, level: LogLevel, message: impl Into<String>) -> Self {
        self.logs.push(LogLine::new(level, message));
        self
    }
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The stage decided it failed (tests failed, a check did not pass).
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
    },
    /// A value the stage needs from an earlier stage is missing.
    #[error("artifact {name} is missing: an earlier stage should have produced it")]
    MissingArtifact {
        /// The artifact.
        name: String,
    },
    /// A gate's rule was broken.
    #[error("{gate} gate failed: {}", violations.join("; "))]
    Gate {
        /// The gate.
        gate: String,
        /// Every broken rule.
        violations: Vec<String>,
    },
    /// The image build failed.
    #[error("build failed: {0}")]
    Build(#[source] BuildError),
    /// The scan did not complete.
    #[error("scan failed: {0}")]
    Scan(#[source] ScanError),
    /// The registry failed.
    #[error("registry failed: {0}")]
    Registry(#[source] RegistryError),
    /// The rollout engine refused or failed a rollout (boxed: the engine's error is
    /// large and rare on this path).
    #[error("rollout failed: {0}")]
    Rollout(#[source] Box<RolloutError>),
    /// Another failure, with what the stage logged before it failed, so that the
    /// run's report keeps those logs ([`StageError::with_logs`]).
    #[error("{source}")]
    WithLogs {
        /// The failure.
        #[source]
        source: Box<StageError>,
        /// What the stage logged.
        logs: Vec<LogLine>,
    },
    /// The deployer or another collaborator failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl StageError {
    /// A stage's own failure.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed { message: message.into() }
    }

    /// This failure with the lines the stage logged before it; the pipeline puts
    /// them in the stage's result.
    ///
    /// ```
    /// use deploy_core::model::{LogLevel, LogLine};
    /// use deploy_core::pipeline::StageError;
    /// let e = StageError::failed("smoke test failed").with_logs(vec![LogLine::new(LogLevel::Info, "GET /health: 503")]);
    /// assert_eq!(e.to_string(), "smoke test failed");
    /// assert_eq!(e.logs()[0].message, "GET /health: 503");
    /// ```
    #[must_use]
    pub fn with_logs(self, logs: Vec<LogLine>) -> Self {
        match self {
            Self::WithLogs { source, logs: mut earlier } => {
                earlier.extend(logs);
                Self::WithLogs { source, logs: earlier }
            }
            other => Self::WithLogs { source: Box::new(other), logs },
        }
    }

    /// The lines the stage logged before it failed, if it kept them.
    pub fn logs(&self) -> &[LogLine] {
        match self {
            Self::WithLogs { logs, .. } => logs,
            _ => &[],
        }
    }

    /// A collaborator's failure during `operation`.
    pub fn backend(operation: impl Into<String>, kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        Self::Backend { operation: operation.into(), kind, source: source.into() }
    }
}

impl From<RolloutError> for StageError {
    fn from(e: RolloutError) -> Self {
        Self::Rollout(Box::new(e))
    }
}

impl Classify for StageError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Failed { .. } | Self::Gate { .. } => ErrorKind::Other,
            Self::MissingArtifact { .. } => ErrorKind::InvalidInput,
            Self::Build(e) => e.kind(),
            Self::Scan(e) => e.kind(),
            Self::Registry(e) => e.kind(),
            Self::Rollout(e) => e.kind(),
            Self::WithLogs { source, .. } => source.kind(),
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// One step of a pipeline. Implementations are used as `Arc<dyn Stage>`.
///
/// ```
/// use deploy_core::async_trait;
/// use deploy_core::pipeline::{Stage, StageContext, StageError, StageKind, StageOutput};
///
/// struct Lint;
///
/// #[async_trait]
/// impl Stage for Lint {
///     fn name(&self) -> &str { "lint" }
///     fn kind(&self) -> StageKind { StageKind::Test }
///     async fn run(&self, _ctx: &StageContext) -> Result<StageOutput, StageError> {
///         Ok(StageOutput::default().value("lint_warnings", "0"))
///     }
/// }
/// ```
#[async_trait]
pub trait Stage: Send + Sync {
    /// A name, unique within the pipeline, for reports.
    fn name(&self) -> &str;

    /// What the stage does.
    fn kind(&self) -> StageKind;

    /// Runs the stage. The runner times it and records its output; a stage is
    /// dropped mid-run when the pipeline is cancelled, so it must not leave
    /// half-done work that a drop cannot undo.
    async fn run(&self, ctx: &StageContext) -> Result<StageOutput, StageError>;
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StageStatus {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
    /// It did not run (an earlier failure, a branch rule); the logs say why.
    Skipped,
    /// The run was cancelled before or while it ran.
    Cancelled,
}

/// The record of one stage in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StageResult {
    /// The stage's name.
    pub name: String,
    /// What it does.
    pub kind: StageKind,
    /// How it ended.
    pub status: StageStatus,
    /// When it began (for a skipped stage: when it was skipped).
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// How long it ran.
    pub duration: Duration,
    /// What it produced.
    pub artifacts: Artifacts,
    /// What it said, and why it was skipped.
    pub logs: Vec<LogLine>,
    /// The error with its causes, when it failed.
    pub error: Option<String>,
}

impl StageResult {
    pub(crate) fn new(stage: &dyn Stage, status: StageStatus, started_at: Timestamp) -> Self {
        let finished_at = Timestamp::now();
        Self {
            name: stage.name().to_owned(),
            kind: stage.kind(),
            status,
            started_at,
            finished_at,
            duration: Duration::try_from(finished_at.duration_since(started_at)).unwrap_or_default(),
            artifacts: Artifacts::default(),
            logs: Vec::new(),
            error: None,
        }
    }
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
