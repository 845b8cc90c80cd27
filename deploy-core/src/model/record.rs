//! Deployment records: what happened in a rollout, kept for history and DORA metrics.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{AppId, Environment, Release, ValidationError};

/// The unique id of one deployment: 1 to 63 characters of lower-case letters, digits
/// and `-`, so it fits in a Kubernetes label.
///
/// ```
/// use deploy_core::model::DeploymentId;
/// let a = DeploymentId::generate();
/// let b = DeploymentId::generate();
/// assert_ne!(a, b);
/// assert!(DeploymentId::new("Bad Id").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeploymentId(String);

impl DeploymentId {
    /// A validated id.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        let ok = !value.is_empty()
            && value.len() <= 63
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(value))
        } else {
            Err(ValidationError::new(
                "deployment id",
                value,
                "must be 1 to 63 characters of lower-case letters, digits and '-'",
            ))
        }
    }

    /// A fresh id: the current time in milliseconds and 64 random bits, in hex, so ids
    /// sort by creation time and never collide across processes in practice.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let millis = Timestamp::now().as_millisecond();
        // RandomState is seeded from the OS random source once per process; mixing in a
        // counter gives distinct values within a process.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        Self(format!("{millis:011x}-{:016x}", hasher.finish()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DeploymentId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for DeploymentId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<DeploymentId> for String {
    fn from(value: DeploymentId) -> Self {
        value.0
    }
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeploymentStatus {
    /// Recorded, not started.
    Pending,
    /// Running its plan.
    InProgress,
    /// The new release serves all traffic.
    Succeeded,
    /// Stopped with an error and could not restore the previous release.
    Failed,
    /// Stopped, and the previous release serves all traffic again.
    RolledBack,
}

impl DeploymentStatus {
    /// Whether the deployment has ended.
    ///
    /// ```
    /// use deploy_core::model::DeploymentStatus;
    /// assert!(DeploymentStatus::RolledBack.is_terminal());
    /// assert!(!DeploymentStatus::InProgress.is_terminal());
    /// ```
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::RolledBack)
    }

    /// Whether the change failed in production terms (DORA's change failure): failed
    /// or rolled back.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::RolledBack)
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::InProgress => "in progress",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled back",
        })
    }
}

/// How one step of a plan ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
#[non_exhaustive]
pub enum StepOutcome {
    /// The step did what it should.
    Succeeded,
    /// The step failed; the reason says why.
    Failed(String),
    /// The step was not run (an emergency rollback skips analysis and pauses).
    Skipped(String),
    /// The caller aborted the rollout during the step.
    Aborted,
}

/// The result of one step, for the record and for the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepRecord {
    /// The step's position in the plan, from 0.
    pub index: usize,
    /// A human description of the step (`set weight canary=25%`).
    pub description: String,
    /// When the step began.
    pub started_at: Timestamp,
    /// When the step ended.
    pub finished_at: Timestamp,
    /// How it ended.
    pub outcome: StepOutcome,
    /// Decisions and measurements behind the outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl StepRecord {
    /// A record of step `index`.
    pub fn new(
        index: usize,
        description: impl Into<String>,
        started_at: Timestamp,
        finished_at: Timestamp,
        outcome: StepOutcome,
    ) -> Self {
        Self { index, description: description.into(), started_at, finished_at, outcome, details: Vec::new() }
    }
}

/// The severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogLevel {
    /// Routine progress.
    Info,
    /// Something to look at.
    Warn,
    /// Something failed.
    Error,
}

/// A line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogLine {
    /// When it was written.
    pub at: Timestamp,
    /// How serious it is.
    pub level: LogLevel,
    /// The message.
    pub message: String,
}

impl LogLine {
    /// A line written now.
    pub fn new(level: LogLevel, message: impl Into<String>) -> Self {
        Self { at: Timestamp::now(), level, message: message.into() }
    }
}

/// Everything known about one deployment: who, what, how, and how it ended.
///
/// ```
/// use deploy_core::model::*;
/// let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
/// let to = Release::new(Version::new("2.0.0").unwrap(), ImageRef::parse("web:2.0.0").unwrap());
/// let mut record = DeploymentRecord::new(app, Environment::Staging, None, to, "canary");
/// assert_eq!(record.status, DeploymentStatus::Pending);
/// record.finish(DeploymentStatus::Succeeded, None);
/// assert!(record.duration().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeploymentRecord {
    /// The deployment's id.
    pub id: DeploymentId,
    /// The application deployed.
    pub app: AppId,
    /// The environment deployed to.
    pub environment: Environment,
    /// The release that served traffic before, if any.
    pub from: Option<Release>,
    /// The release being deployed.
    pub to: Release,
    /// The strategy's name (`rolling`, `blue-green`, `canary`).
    pub strategy: String,
    /// Where the deployment is.
    pub status: DeploymentStatus,
    /// When the record was made.
    pub created_at: Timestamp,
    /// When the first step began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When the deployment ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// When the change was committed, for DORA's lead time for changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<Timestamp>,
    /// Why the deployment failed or was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Per-step results, in order.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// The deployment's log.
    #[serde(default)]
    pub logs: Vec<LogLine>,
    /// Every analysis the rollout ran, with its spec and every measurement's
    /// evidence (query, values, thresholds, statistics), in a form
    /// [`replay`](crate::analysis::replay) re-checks offline. Records written before
    /// evidence was kept have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<crate::analysis::AnalysisRecord>,
    /// What the engine did when an analysis ended inconclusive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inconclusive_decisions: Vec<InconclusiveDecision>,
}

/// What the engine did when an analysis ended inconclusive: the policy applied and,
/// for a pause, how the pause ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InconclusiveDecision {
    /// The analysis step's index, from 0.
    pub step: usize,
    /// Why the analysis was inconclusive.
    pub reason: String,
    /// The policy applied.
    pub policy: crate::analysis::InconclusivePolicy,
    /// How a pause ended (`promoted by the caller`); `None` while it lasts, and for
    /// the other policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

impl InconclusiveDecision {
    /// A decision on step `step`.
    pub fn new(step: usize, reason: impl Into<String>, policy: crate::analysis::InconclusivePolicy) -> Self {
        Self { step, reason: reason.into(), policy, resolution: None }
    }
}

impl DeploymentRecord {
    /// A pending record with a fresh id.
    pub fn new(
        app: AppId,
        environment: Environment,
        from: Option<Release>,
        to: Release,
        strategy: impl Into<String>,
    ) -> Self {
        Self {
            id: DeploymentId::generate(),
            app,
            environment,
            from,
            to,
            strategy: strategy.into(),
            status: DeploymentStatus::Pending,
            created_at: Timestamp::now(),
            started_at: None,
            finished_at: None,
            committed_at: None,
            cause: None,
            steps: Vec::new(),
            logs: Vec::new(),
            analyses: Vec::new(),
            inconclusive_decisions: Vec::new(),
        }
    }

    /// Marks the deployment as started now.
    pub fn start(&mut self) {
        self.status = DeploymentStatus::InProgress;
        self.started_at.get_or_insert_with(Timestamp::now);
    }

    /// Marks the deployment as ended now with `status` and an optional cause.
    pub fn finish(&mut self, status: DeploymentStatus, cause: Option<String>) {
        self.status = status;
        self.cause = cause;
        let now = Timestamp::now();
        self.started_at.get_or_insert(now);
        self.finished_at = Some(now);
    }

    /// Appends a log line written now.
    pub fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        self.logs.push(LogLine::new(level, message));
    }

    /// How long the deployment ran, once it has ended.
    pub fn duration(&self) -> Option<Duration> {
        let (start, end) = (self.started_at?, self.finished_at?);
        Duration::try_from(end.duration_since(start)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ImageRef, Name, Namespace, Version};

    fn record() -> DeploymentRecord {
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
        let to = Release::new(Version::new("2.0.0").unwrap(), ImageRef::parse("web:2.0.0").unwrap());
        DeploymentRecord::new(app, Environment::Production, None, to, "canary")
    }

    #[test]
    fn record_round_trips_through_json() {
        let mut r = record();
        r.start();
        r.steps.push(StepRecord::new(
            0,
            "set weight canary=10%",
            Timestamp::now(),
            Timestamp::now(),
            StepOutcome::Failed("boom".into()),
        ));
        r.log(LogLevel::Error, "analysis failed");
        r.finish(DeploymentStatus::RolledBack, Some("error rate 7% above 1%".into()));
        let json = serde_json::to_string(&r).unwrap();
        let back: DeploymentRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(json.contains(r#""status":"rolled_back""#), "{json}");
    }

    #[test]
    fn ids_are_unique_and_valid() {
        let ids: std::collections::BTreeSet<_> = (0..1000).map(|_| DeploymentId::generate()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(3) {
            DeploymentId::new(id.as_str()).unwrap();
        }
        assert!(serde_json::from_str::<DeploymentId>(r#""UPPER""#).is_err());
    }

    #[test]
    fn status_classification() {
        assert!(DeploymentStatus::Failed.is_failure());
        assert!(!DeploymentStatus::Succeeded.is_failure());
        assert!(!DeploymentStatus::Pending.is_terminal());
    }
}
