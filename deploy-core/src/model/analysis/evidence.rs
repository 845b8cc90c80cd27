//! The evidence behind every verdict, as typed data a program can re-check
//! ([`Evidence`]), and an analysis as the deployment record keeps it
//! ([`AnalysisRecord`]).

use serde::{Deserialize, Serialize};

use super::kayenta::{CanaryScore, MetricEvidence};
use super::mann_whitney::{Alternative, PValueMethod, ShiftEstimate};
use super::{AnalysisReport, AnalysisSpec, JudgeSpec};

/// What one verdict was decided on: the query, the values, the rule with its
/// thresholds, and the statistics computed from them. [`replay`](crate::analysis::replay)
/// recomputes the verdict from `judge`, `candidate` and `baseline` alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Evidence {
    /// The query template, as the check names it.
    pub query: String,
    /// The decision rule and its thresholds.
    pub judge: JudgeSpec,
    /// The candidate's values the judge used (one for a threshold; the samples
    /// for a test; every sample so far for a sequential test).
    #[serde(default)]
    pub candidate: Vec<f64>,
    /// The baseline's values, likewise (empty for a threshold).
    #[serde(default)]
    pub baseline: Vec<f64>,
    /// The statistics.
    #[serde(default)]
    pub statistics: Statistics,
    /// The Holm correction applied across the analysis' metrics in this round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holm: Option<HolmAdjustment>,
    /// For a judge over several metrics (a canary score), each metric's samples,
    /// class and statistics; `candidate` and `baseline` are then empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricEvidence>,
}

impl Evidence {
    /// Evidence for `judge` over `candidate` and `baseline`; the query is filled in
    /// by the runner.
    pub fn new(judge: JudgeSpec, candidate: Vec<f64>, baseline: Vec<f64>, statistics: Statistics) -> Self {
        Self { query: String::new(), judge, candidate, baseline, statistics, holm: None, metrics: Vec::new() }
    }
}

/// The statistics of a verdict; which ones are set depends on the judge.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Statistics {
    /// Mann-Whitney U of the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<f64>,
    /// The p-value of the test (before any correction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The significance level the p-value was held against (1 − confidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// The test's alternative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative: Option<Alternative>,
    /// How the p-value was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<PValueMethod>,
    /// The Hodges-Lehmann shift and its interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<ShiftEstimate>,
    /// The power to detect the shift the caller cares about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<f64>,
    /// The fewest values per side the judge accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<usize>,
    /// A sequential test's evidence against the null (its e-value, the mixture
    /// likelihood ratio); the test rejects once it reaches 1 / α.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_value: Option<f64>,
    /// A confidence sequence's bounds on the difference (candidate − baseline, or
    /// the candidate's share for counts), valid at every look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<(f64, f64)>,
    /// A per-category count test's statistics, one entry per category.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<CategoryStatistics>,
    /// A canary score over several metrics, with its verdict and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<CanaryScore>,
}

/// One category of a per-category sequential count test
/// ([`SequentialKind::Categories`](super::sequential::SequentialKind::Categories)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CategoryStatistics {
    /// The category's name.
    pub name: String,
    /// The candidate's events of this category, over all looks.
    pub candidate: f64,
    /// The baseline's, likewise.
    pub baseline: f64,
    /// The category's part of the e-value: its mixture likelihood ratio at the
    /// point of its null nearest the data.
    pub e_value: f64,
    /// The confidence sequence of the candidate's share of the category's events
    /// minus its share of requests, at α / (number of categories).
    pub bounds: (f64, f64),
}

/// Holm's step-down correction of one p-value within its family.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HolmAdjustment {
    /// How many p-values were corrected together.
    pub family: usize,
    /// The Holm-adjusted p-value.
    pub adjusted_p: f64,
    /// Whether the judge's failure stood after the correction.
    pub rejected: bool,
}

/// One analysis as the deployment record keeps it: the step it ran in, its spec
/// (every rule and limit), and its report (every measurement with its evidence).
///
/// `Eq` holds because no NaN is ever stored: judges drop NaN values and
/// statistics are finite or absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AnalysisRecord {
    /// The step's index, from 0.
    pub step: usize,
    /// The analysis as specified.
    pub spec: AnalysisSpec,
    /// What it measured and how it ended.
    pub report: AnalysisReport,
}

impl Eq for AnalysisRecord {}

impl AnalysisRecord {
    /// A record of `report`, run from `spec` in step `step`.
    pub fn new(step: usize, spec: AnalysisSpec, report: AnalysisReport) -> Self {
        Self { step, spec, report }
    }
}
