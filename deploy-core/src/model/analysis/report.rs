//! What an analysis measured and how it ended: [`Measurement`], [`AnalysisReport`].

use serde::{Deserialize, Serialize};

use super::Evidence;

/// The outcome of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MeasurementOutcome {
    /// The value passed.
    Successful,
    /// The value is evidence against the release.
    Failed,
    /// There was no data to judge (no traffic, no series yet).
    Inconclusive,
    /// The measurement could not be taken.
    Error,
}

/// What produced a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckKind {
    /// A metric judged by a judge.
    Metric,
    /// A health check.
    HealthCheck,
}

/// One measurement of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Measurement {
    /// The metric's or health check's name.
    pub check: String,
    /// Whether it is a metric or a health check.
    pub kind: CheckKind,
    /// The round it belongs to, from 0.
    pub round: u32,
    /// The verdict.
    pub outcome: MeasurementOutcome,
    /// The value judged, when there was one.
    pub value: Option<f64>,
    /// What the judge or check said.
    pub detail: String,
    /// The data and statistics the verdict was decided on, for judges that give
    /// them (every built-in judge does); `None` for health checks.
    /// Boxed: it holds the samples, and events carry measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
    /// Whether the verdict settled its check ([`Verdict::decisive`](crate::analysis::Verdict::decisive)): the analysis
    /// ended on it (a failure), or stopped measuring the check (a success).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decisive: bool,
}

/// How an analysis ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnalysisOutcome {
    /// Every check stayed within its limits.
    Successful,
    /// A check failed more than `failure_limit` times.
    Failed,
    /// A check had no data more than `inconclusive_limit` times.
    Inconclusive,
    /// A check could not be measured more than `consecutive_error_limit` times in a row.
    Error,
}

/// Everything an analysis measured and how it ended, for events and records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AnalysisReport {
    /// The analysis' name.
    pub name: String,
    /// How it ended.
    pub outcome: AnalysisOutcome,
    /// The check that decided a non-successful outcome, and its kind.
    pub decided_by: Option<(String, CheckKind)>,
    /// Why it ended so, in one sentence.
    pub reason: String,
    /// Every measurement, in the order taken.
    pub measurements: Vec<Measurement>,
    /// How many looks (rounds of measurements) were taken, errors measured again
    /// included; fewer than `count` when a limit was passed or a decisive verdict
    /// (an anytime-valid test) ended the analysis early. 0 in records written
    /// before it was kept.
    #[serde(default)]
    pub looks: u32,
}
