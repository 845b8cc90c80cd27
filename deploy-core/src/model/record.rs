//! Deployment records: what happened in a rollout, kept for history and DORA metrics.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{AppId, Environment, FailureCause, Release, StrategyKind, ValidationError};

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
/// let mut record = DeploymentRecord::new(app, Environment::Staging, None, to, StrategyKind::Canary);
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
    /// The strategy that carried it out (stored as its name: `rolling`,
    /// `blue-green`, `canary`, `helm`).
    pub strategy: StrategyKind,
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
    /// Why the deployment failed or was rolled back. Records written before causes
    /// were typed stored a sentence; it reads back as [`CauseKind::Unclassified`].
    ///
    /// [`CauseKind::Unclassified`]: super::CauseKind::Unclassified
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<FailureCause>,
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
    pub analyses: Vec<super::analysis::AnalysisRecord>,
    /// What the engine did when an analysis ended inconclusive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inconclusive_decisions: Vec<InconclusiveDecision>,
    /// What the record is of: a rollout of a release (records written before
    /// failovers were recorded are rollouts), or a failover or fail-back between
    /// sites, which DORA's deployment metrics leave out.
    #[serde(default, skip_serializing_if = "RecordKind::is_rollout")]
    pub kind: RecordKind,
    /// For a failover or fail-back that moved the traffic: how long recovery took,
    /// against which RTO, and whether it met it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// What a [`DeploymentRecord`] is of.
///
/// ```
/// use deploy_core::model::RecordKind;
/// let kind = RecordKind::Failover { from: "eu".into(), to: "us".into() };
/// assert_eq!(serde_json::to_string(&kind).unwrap(), r#"{"type":"failover","from":"eu","to":"us"}"#);
/// assert!(RecordKind::default().is_rollout());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum RecordKind {
    /// A release rolled out by a strategy's plan.
    #[default]
    Rollout,
    /// The traffic moved from the site `from` to the standby site `to`.
    Failover {
        /// The site that served before.
        from: String,
        /// The site that serves after.
        to: String,
    },
    /// The traffic moved back to the original primary `to` after a failover.
    FailBack {
        /// The site that served before (the one failed over to).
        from: String,
        /// The site that serves after (the original primary).
        to: String,
    },
}

impl RecordKind {
    /// Whether this is a rollout (the kind DORA's deployment metrics count).
    pub fn is_rollout(&self) -> bool {
        matches!(self, Self::Rollout)
    }
}

/// A measured recovery: from the start of a failover until the traffic reached
/// the verified site, against the environment's RTO.
///
/// ```
/// use std::time::Duration;
/// use deploy_core::model::{HumanDuration, Recovery};
/// let r = Recovery::new(Duration::from_secs(42), Some(HumanDuration::new(Duration::from_secs(900))));
/// assert_eq!(r.met, Some(true));
/// assert_eq!(Recovery::new(Duration::from_secs(42), None).met, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recovery {
    /// How long recovery took.
    pub time_to_recover: Duration,
    /// The recovery time objective it was measured against, if the environment
    /// has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<super::HumanDuration>,
    /// Whether `time_to_recover` is within the RTO (`None` without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

impl Recovery {
    /// A recovery of `time_to_recover` against `rto`.
    pub fn new(time_to_recover: Duration, rto: Option<super::HumanDuration>) -> Self {
        let met = rto.map(|rto| time_to_recover <= rto.as_duration());
        Self { time_to_recover, rto, met }
    }
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
    pub policy: super::analysis::InconclusivePolicy,
    /// How a pause ended (`promoted by the caller`); `None` while it lasts, and for
    /// the other policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

impl InconclusiveDecision {
    /// A decision on step `step`.
    pub fn new(step: usize, reason: impl Into<String>, policy: super::analysis::InconclusivePolicy) -> Self {
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
        strategy: StrategyKind,
    ) -> Self {
        Self {
            id: DeploymentId::generate(),
            app,
            environment,
            from,
            to,
            strategy,
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
            kind: RecordKind::Rollout,
            recovery: None,
        }
    }

    /// Marks the deployment as started now.
    pub fn start(&mut self) {
        self.status = DeploymentStatus::InProgress;
        self.started_at.get_or_insert_with(Timestamp::now);
    }

    /// Marks the deployment as ended now with `status` and an optional cause.
    pub fn finish(&mut self, status: DeploymentStatus, cause: Option<FailureCause>) {
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
        DeploymentRecord::new(app, Environment::Production, None, to, StrategyKind::Canary)
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
        r.finish(
            DeploymentStatus::RolledBack,
            Some(FailureCause::new(crate::model::CauseKind::AnalysisFailed, Some(0), "error rate 7% above 1%")),
        );
        let json = serde_json::to_string(&r).unwrap();
        let back: DeploymentRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(json.contains(r#""status":"rolled_back""#), "{json}");
    }

    /// A record as the engine wrote it before the strategy and the cause were typed:
    /// it still loads, the strategy by its name and the cause as unclassified text.
    #[test]
    fn a_record_written_with_string_strategy_and_cause_still_reads() {
        let old = r#"{
            "id": "0192a1b2c3d-00000000000000ff",
            "app": {"namespace": "shop", "name": "web"},
            "environment": "production",
            "from": null,
            "to": {"version": "2.0.0", "image": "web:2.0.0"},
            "strategy": "blue-green",
            "status": "rolled_back",
            "created_at": "2026-11-30T10:00:00Z",
            "started_at": "2026-11-30T10:00:01Z",
            "finished_at": "2026-11-30T10:05:00Z",
            "cause": "analysis failed at step 4: error-rate 0.07 > 0.01",
            "steps": [],
            "logs": []
        }"#;
        let record: DeploymentRecord = serde_json::from_str(old).unwrap();
        assert_eq!(record.strategy, StrategyKind::BlueGreen);
        let cause = record.cause.as_ref().unwrap();
        assert_eq!(cause.kind, crate::model::CauseKind::Unclassified);
        assert_eq!(cause.to_string(), "analysis failed at step 4: error-rate 0.07 > 0.01");
        assert_eq!(record.status, DeploymentStatus::RolledBack);
        // Written again, the strategy keeps its stored name.
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""strategy":"blue-green""#), "{json}");
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
