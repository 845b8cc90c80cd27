//! What an analysis is to measure and how to judge it: [`AnalysisSpec`],
//! [`MetricCheck`], [`JudgeSpec`], [`Direction`], [`MultipleTesting`].

use serde::{Deserialize, Serialize};

use super::{InconclusivePolicy, kayenta, sequential};
use crate::model::{HumanDuration, Track};

/// One analysis: what to measure, how often, and how much bad news to tolerate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AnalysisSpec {
    /// The analysis' name in events and records.
    pub name: String,
    /// Metric checks, each judged on every measurement.
    #[serde(default)]
    pub metrics: Vec<MetricCheck>,
    /// Names of health checks given to the engine ([`HealthCheck::name`]), run on
    /// every measurement against the new release's track.
    ///
    /// [`HealthCheck::name`]: crate::health::HealthCheck::name
    #[serde(default)]
    pub health_checks: Vec<String>,
    /// Time between two measurements.
    pub interval: HumanDuration,
    /// Wait before the first measurement (metrics need traffic first).
    #[serde(default)]
    pub initial_delay: HumanDuration,
    /// How many measurements to take; at least 1.
    pub count: u32,
    /// The analysis fails when more than this many measurements of one check
    /// failed. A [decisive](crate::analysis::Verdict::decisive) failure (an anytime-valid test that
    /// rejected, a critical metric of a canary score) fails it at once.
    #[serde(default)]
    pub failure_limit: u32,
    /// The analysis is inconclusive when more than this many measurements of one
    /// check had no data; what the engine then does is `on_inconclusive`. Must be
    /// below `count`: otherwise an analysis could pass without evaluating anything.
    #[serde(default)]
    pub inconclusive_limit: u32,
    /// What the engine does when the analysis ends inconclusive: pause for a
    /// decision (the default), roll back, or promote.
    #[serde(default)]
    pub on_inconclusive: InconclusivePolicy,
    /// The analysis errs when more than this many measurements of one check in a
    /// row could not be taken (the metrics backend was down).
    #[serde(default = "default_consecutive_error_limit")]
    pub consecutive_error_limit: u32,
    /// How the p-values of one round's metrics are corrected for their number
    /// (Holm's correction by default; it changes nothing with one test).
    #[serde(default)]
    pub multiple_testing: MultipleTesting,
    /// Finish successfully as soon as this many measurements of every check
    /// succeeded, before `count` is reached (Flagger's "advance on success").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_limit: Option<u32>,
}

pub(crate) fn default_consecutive_error_limit() -> u32 {
    4
}

/// One metric, its query and the judge of its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricCheck {
    /// The metric's name in events, records and the metrics provider.
    pub name: String,
    /// The query template, with the placeholders of [`MetricQuery`](crate::metrics::MetricQuery).
    pub query: String,
    /// Which track to measure; `None` for the track that runs the new release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Track>,
    /// How to judge the values.
    pub judge: JudgeSpec,
}

/// Which judge decides a metric, as data so plans stay printable and serializable.
///
/// `Threshold` is built in; `Custom` names a judge registered with the engine
/// ([`JudgeRegistry`](crate::analysis::JudgeRegistry)), such as a Mann-Whitney test or a canary-vs-baseline
/// comparison, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JudgeSpec {
    /// The value must lie within `[min, max]`; a missing bound is open.
    Threshold {
        /// The smallest acceptable value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// The largest acceptable value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// The candidate's value against the baseline's ([`CompareJudge`](crate::analysis::CompareJudge)): a deviation
    /// in `direction` passes while it is within `max_ratio` or `max_difference`.
    Compare {
        /// Which deviation counts against the candidate.
        #[serde(default)]
        direction: Direction,
        /// The allowed ratio to the baseline, at least 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_ratio: Option<f64>,
        /// The allowed difference from the baseline, at least 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_difference: Option<f64>,
    },
    /// Kayenta's Mann-Whitney classification of the candidate's samples against the
    /// baseline's over the last `lookback`, one sample every `step`
    /// ([`kayenta::MannWhitneyJudge`](crate::analysis::kayenta::MannWhitneyJudge)).
    MannWhitney {
        /// Which deviation counts against the candidate.
        #[serde(default)]
        direction: Direction,
        /// How far back the samples reach.
        lookback: HumanDuration,
        /// The time between two samples.
        step: HumanDuration,
        /// The confidence level of the shift's interval, in (0, 1); Kayenta's 0.98.
        #[serde(default = "default_confidence")]
        confidence: f64,
        /// The share of the shift that its interval must clear; Kayenta's 0.25.
        #[serde(default = "default_tolerance")]
        tolerance: f64,
        /// The smallest ratio of means that counts as a deviation; 1 for any.
        #[serde(default = "default_effect_size")]
        effect_size: f64,
        /// The fewest values per side, below which the outcome is inconclusive;
        /// `None` for the smallest size at which `confidence` can be reached
        /// ([`mann_whitney::min_sample_size`](crate::analysis::mann_whitney::min_sample_size)).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_samples: Option<u32>,
        /// The shift, in standard deviations, whose detection power the verdict
        /// reports; 1 by default.
        #[serde(default = "default_power_shift")]
        power_shift: f64,
    },
    /// An anytime-valid sequential test of the candidate against the baseline
    /// ([`sequential::SequentialJudge`](crate::analysis::sequential::SequentialJudge)): valid however often it looks.
    Sequential(sequential::SequentialSpec),
    /// Kayenta's canary score over several metrics, each classified by a
    /// Mann-Whitney test ([`kayenta::CanaryScoreJudge`](crate::analysis::kayenta::CanaryScoreJudge)): pass, marginal or fail
    /// by the score's thresholds; a critical metric that deviates fails the whole
    /// analysis.
    CanaryScore(kayenta::ScoreSpec),
    /// A judge registered with the engine under `name`.
    Custom {
        /// The registered name.
        name: String,
        /// Parameters for the judge's factory.
        #[serde(default)]
        params: serde_json::Value,
    },
}

pub(crate) fn default_confidence() -> f64 {
    0.98
}

pub(crate) fn default_tolerance() -> f64 {
    0.25
}

pub(crate) fn default_effect_size() -> f64 {
    1.0
}

pub(crate) fn default_power_shift() -> f64 {
    1.0
}

/// Which deviation of the candidate from the baseline counts against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Direction {
    /// Higher is worse (error rates, latencies).
    #[default]
    Increase,
    /// Lower is worse (success rates, throughput).
    Decrease,
    /// Any deviation is bad.
    Either,
}

/// How the p-values of one round's metrics are corrected for their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MultipleTesting {
    /// Holm's step-down correction (the default).
    #[default]
    Holm,
    /// No correction: every metric at its own α.
    None,
}
