//! The stored types of Kayenta's canary judging: a score's spec ([`ScoreSpec`]),
//! its result ([`CanaryScore`]) and each metric's evidence ([`MetricEvidence`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Direction, Statistics};
use crate::model::HumanDuration;

/// A metric's class, as Kayenta names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Classification {
    /// The candidate behaves like the baseline (or differs in the harmless direction).
    Pass,
    /// The candidate is higher than the baseline, beyond tolerance.
    High,
    /// The candidate is lower than the baseline, beyond tolerance.
    Low,
    /// One of the samples had no values.
    NoData,
}

/// Kayenta's score thresholds: a score of at least `pass` passes, at least
/// `marginal` is marginal, anything lower fails.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScoreThresholds {
    /// The lowest passing score, 0 to 100.
    pub pass: f64,
    /// The lowest marginal score, 0 to `pass`.
    pub marginal: f64,
}

/// The verdict on a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScoreVerdict {
    /// At least the pass threshold.
    Pass,
    /// Between the marginal and the pass threshold.
    Marginal,
    /// Below the marginal threshold, or a critical metric deviated.
    Fail,
    /// No metric had data, or a critical one had none.
    NoData,
}

/// A canary's score and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CanaryScore {
    /// 0 to 100.
    pub score: f64,
    /// The verdict on the score.
    pub verdict: ScoreVerdict,
    /// Each group's score (passing share of its metrics with data, × 100).
    pub groups: BTreeMap<String, f64>,
    /// Why the verdict is what it is.
    pub reason: String,
}

/// One metric of a canary score ([`ScoreSpec`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScoredCheck {
    /// The metric's name, unique within the score; the metrics provider is asked
    /// for it by this name.
    pub name: String,
    /// Its range query, with the placeholders of
    /// [`MetricQuery`](crate::metrics::MetricQuery).
    pub query: String,
    /// Which deviation counts against the candidate.
    #[serde(default)]
    pub direction: Direction,
    /// Its group (Kayenta scores groups, then weighs them); `""` for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Whether a deviation fails the whole analysis at once, whatever the score.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub critical: bool,
}

/// Kayenta's canary judgement over several metrics, as one judge
/// ([`JudgeSpec::CanaryScore`](super::JudgeSpec::CanaryScore)): each look classifies every metric's candidate
/// samples against the baseline's over the last `lookback`
/// ([`MannWhitneyClassifier`](crate::analysis::kayenta::MannWhitneyClassifier)) and scores them ([`CanaryScorer`](crate::analysis::kayenta::CanaryScorer)). A score at or
/// above `thresholds.pass` is a successful measurement, one at or above
/// `thresholds.marginal` an inconclusive one (as Argo Rollouts maps Kayenta's
/// marginal: the engine's inconclusive policy decides, a pause for a person by
/// default), anything lower a failed one; a critical metric that deviates fails
/// the measurement decisively, which ends the analysis at once. Every metric's
/// samples and statistics are in the verdict's evidence, and
/// [`replay`](crate::analysis::replay) recomputes the score.
///
/// The check's own query is not asked for: each metric has its own.
///
/// ```
/// use deploy_core::analysis::kayenta::{ScoreSpec, ScoredCheck, ScoreThresholds};
/// use deploy_core::analysis::{JudgeSpec, MeasurementOutcome};
/// let spec = ScoreSpec::new(
///     [ScoredCheck::new("latency", "q1"), ScoredCheck::new("errors", "q2").critical()],
///     "5m".parse().unwrap(),
///     "30s".parse().unwrap(),
/// )
/// .thresholds(ScoreThresholds::new(90.0, 50.0));
/// let base = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02];
/// let worse = [3.0, 3.1, 2.9, 3.05, 2.95, 3.02];
/// let v = spec.judge_samples(&[(&base[..], &base[..]), (&worse[..], &base[..])]);
/// assert_eq!(v.outcome, MeasurementOutcome::Failed);
/// assert!(v.decisive, "a critical metric deviated: {}", v.detail);
/// assert_eq!(JudgeSpec::CanaryScore(spec).to_string(), "canary score of latency, errors (pass ≥ 90, marginal ≥ 50; critical: errors)");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScoreSpec {
    /// The metrics, each classified and scored.
    pub metrics: Vec<ScoredCheck>,
    /// How far back the samples reach.
    pub lookback: HumanDuration,
    /// The time between two samples.
    pub step: HumanDuration,
    /// The score thresholds; Spinnaker's 95 and 75 by default.
    #[serde(default)]
    pub thresholds: ScoreThresholds,
    /// Percent weight per group; groups without one share what is left.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_weights: BTreeMap<String, f64>,
    /// The classifier's confidence, in (0.5, 1); Kayenta's 0.98.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// The classifier's tolerance; Kayenta's 0.25.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

pub(crate) fn default_confidence() -> f64 {
    0.98
}

pub(crate) fn default_tolerance() -> f64 {
    0.25
}

/// One metric of a canary score, as the evidence keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricEvidence {
    /// The metric's name.
    pub name: String,
    /// Its class.
    pub classification: Classification,
    /// The candidate's samples.
    pub candidate: Vec<f64>,
    /// The baseline's samples.
    pub baseline: Vec<f64>,
    /// The Mann-Whitney statistics of its classification.
    pub statistics: Statistics,
}
