//! Judging a release with evidence: analysis specs, pluggable [`Judge`]s and the
//! [`AnalysisRunner`] that measures at an interval.
//!
//! The semantics are Argo Rollouts': every metric (and health check) is measured
//! `count` times, `interval` apart (a measurement that could not be taken does not
//! count and is taken again); the analysis fails as soon as more than
//! `failure_limit` measurements of one metric failed, more than
//! `consecutive_error_limit` measurements in a row could not be taken, or more than
//! `inconclusive_limit` had no data, and the worst of these decides. "No data" is its own outcome with its own
//! limit: a quiet canary is neither rolled back for silence nor promoted on it.
//! A [decisive](Verdict::decisive) verdict ends a check early: a failure ends the
//! analysis at once, a success stops measuring the check, and an analysis whose
//! checks are all settled ends before `count` looks
//! ([`AnalysisReport::looks`] keeps how many were used).
//!
//! ```
//! use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
//! use deploy_core::model::HumanDuration;
//! let spec = AnalysisSpec::new("error-rate")
//!     .metric(MetricCheck::new("error-rate", "sum(rate(errors[1m]))", JudgeSpec::max(0.01)))
//!     .interval("30s".parse::<HumanDuration>().unwrap())
//!     .count(5);
//! assert!(spec.validate("analysis").is_ok());
//! assert_eq!(spec.to_string(), "error-rate: error-rate ≤ 0.01, every 30s × 5 (failure limit 0, inconclusive limit 0)");
//! ```

mod compare;
mod evidence;
mod holm;
mod judge;
pub mod kayenta;
pub mod mann_whitney;
mod policy;
mod replay;
mod runner;
pub mod sequential;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{HumanDuration, Track, ValidationError, ValidationErrors};

pub use compare::CompareJudge;
pub use evidence::{AnalysisRecord, CategoryStatistics, Evidence, HolmAdjustment, Statistics};
pub use holm::{MultipleTesting, holm_adjust};
pub use judge::{Judge, JudgeFactory, JudgeInput, JudgeRegistry, ThresholdJudge, Verdict};
pub use policy::InconclusivePolicy;
pub use replay::{ReplayDifference, ReplayReport, recompute, replay};
pub use runner::{AnalysisRunner, AnalysisTarget};

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
    /// failed. A [decisive](Verdict::decisive) failure (an anytime-valid test that
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

fn default_consecutive_error_limit() -> u32 {
    4
}

impl AnalysisSpec {
    /// An analysis named `name` with no checks yet, one measurement per minute,
    /// one measurement, and Argo Rollouts' default limits (no failure, no
    /// inconclusive measurement, four errors in a row).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            metrics: Vec::new(),
            health_checks: Vec::new(),
            interval: HumanDuration::new(std::time::Duration::from_secs(60)),
            initial_delay: HumanDuration::ZERO,
            count: 1,
            failure_limit: 0,
            inconclusive_limit: 0,
            on_inconclusive: InconclusivePolicy::Pause,
            multiple_testing: MultipleTesting::Holm,
            consecutive_error_limit: default_consecutive_error_limit(),
            success_limit: None,
        }
    }

    /// Adds a metric check.
    #[must_use]
    pub fn metric(mut self, check: MetricCheck) -> Self {
        self.metrics.push(check);
        self
    }

    /// Adds a health check by name.
    #[must_use]
    pub fn health_check(mut self, name: impl Into<String>) -> Self {
        self.health_checks.push(name.into());
        self
    }

    /// Sets the interval between measurements.
    #[must_use]
    pub fn interval(mut self, interval: HumanDuration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the wait before the first measurement.
    #[must_use]
    pub fn initial_delay(mut self, delay: HumanDuration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the number of measurements.
    #[must_use]
    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Sets the failure limit.
    #[must_use]
    pub fn failure_limit(mut self, limit: u32) -> Self {
        self.failure_limit = limit;
        self
    }

    /// Sets the inconclusive limit.
    #[must_use]
    pub fn inconclusive_limit(mut self, limit: u32) -> Self {
        self.inconclusive_limit = limit;
        self
    }

    /// Sets what the engine does when the analysis ends inconclusive.
    #[must_use]
    pub fn on_inconclusive(mut self, policy: InconclusivePolicy) -> Self {
        self.on_inconclusive = policy;
        self
    }

    /// Sets the correction for several tests in one round.
    #[must_use]
    pub fn multiple_testing(mut self, correction: MultipleTesting) -> Self {
        self.multiple_testing = correction;
        self
    }

    /// Sets the consecutive error limit.
    #[must_use]
    pub fn consecutive_error_limit(mut self, limit: u32) -> Self {
        self.consecutive_error_limit = limit;
        self
    }

    /// Sets the success limit.
    #[must_use]
    pub fn success_limit(mut self, limit: u32) -> Self {
        self.success_limit = Some(limit);
        self
    }

    /// The longest the analysis takes when every measurement can be taken: the
    /// initial delay plus `count - 1` intervals (the first measurement is taken at
    /// once). Measurements that err are taken again at the next interval, as in Argo
    /// Rollouts, and add one interval each.
    pub fn max_duration(&self) -> std::time::Duration {
        self.initial_delay.as_duration() + self.interval.as_duration().saturating_mul(self.count.saturating_sub(1))
    }

    /// Every problem with the spec, naming `field` (such as `step 4 analysis`).
    pub fn validate(&self, field: &str) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        self.collect_problems(field, &mut errors);
        errors.into_result(())
    }

    pub(crate) fn collect_problems(&self, field: &str, errors: &mut ValidationErrors) {
        let mut bad = |what: &str, value: String, reason: &str| {
            errors.push(ValidationError::new(format!("{field} {what}"), value, reason));
        };
        if self.name.trim().is_empty() {
            bad("name", self.name.clone(), "must not be empty");
        }
        if self.metrics.is_empty() && self.health_checks.is_empty() {
            bad("checks", String::new(), "needs at least one metric or health check");
        }
        if self.count == 0 {
            bad("count", "0".into(), "must be at least 1");
        }
        if self.count > 1 && self.interval.is_zero() {
            bad("interval", self.interval.to_string(), "must be positive when more than one measurement is taken");
        }
        if self.count > 0 && self.inconclusive_limit >= self.count && !self.metrics.is_empty() {
            bad(
                "inconclusive limit",
                self.inconclusive_limit.to_string(),
                &format!(
                    "must be below count ({}): with this limit every measurement could have no data and the \
                     analysis would pass without evaluating any metric",
                    self.count
                ),
            );
        }
        if self.success_limit == Some(0) {
            bad("success limit", "0".into(), "must be at least 1");
        }
        for check in &self.metrics {
            if check.name.trim().is_empty() {
                bad("metric name", check.name.clone(), "must not be empty");
            }
            if check.query.trim().is_empty() {
                bad(&format!("metric {} query", check.name), check.query.clone(), "must not be empty");
            }
            if let Err(reason) = check.judge.check() {
                bad(&format!("metric {} judge", check.name), check.judge.to_string(), &reason);
            }
        }
        for name in &self.health_checks {
            if name.trim().is_empty() {
                bad("health check", name.clone(), "must not be empty");
            }
        }
    }
}

impl fmt::Display for AnalysisSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        let checks: Vec<String> = self
            .metrics
            .iter()
            .map(|m| format!("{} {}", m.name, m.judge))
            .chain(self.health_checks.iter().map(|h| format!("health {h}")))
            .collect();
        write!(f, "{}, every {} × {}", checks.join(", "), self.interval, self.count)?;
        if !self.initial_delay.is_zero() {
            write!(f, " after {}", self.initial_delay)?;
        }
        write!(f, " (failure limit {}, inconclusive limit {}", self.failure_limit, self.inconclusive_limit)?;
        if self.on_inconclusive != InconclusivePolicy::Pause {
            write!(f, ", inconclusive: {}", self.on_inconclusive)?;
        }
        f.write_str(")")
    }
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

impl MetricCheck {
    /// A check of `query` judged by `judge`, measured on the new release's track.
    pub fn new(name: impl Into<String>, query: impl Into<String>, judge: JudgeSpec) -> Self {
        Self { name: name.into(), query: query.into(), track: None, judge }
    }

    /// Measures `track` instead of the new release's track.
    #[must_use]
    pub fn track(mut self, track: Track) -> Self {
        self.track = Some(track);
        self
    }
}

/// Which judge decides a metric, as data so plans stay printable and serializable.
///
/// `Threshold` is built in; `Custom` names a judge registered with the engine
/// ([`JudgeRegistry`]), such as a Mann-Whitney test or a canary-vs-baseline
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
    /// The candidate's value against the baseline's ([`CompareJudge`]): a deviation
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
    /// ([`kayenta::MannWhitneyJudge`]).
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
        /// ([`mann_whitney::min_sample_size`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_samples: Option<u32>,
        /// The shift, in standard deviations, whose detection power the verdict
        /// reports; 1 by default.
        #[serde(default = "default_power_shift")]
        power_shift: f64,
    },
    /// An anytime-valid sequential test of the candidate against the baseline
    /// ([`sequential::SequentialJudge`]): valid however often it looks.
    Sequential(sequential::SequentialSpec),
    /// Kayenta's canary score over several metrics, each classified by a
    /// Mann-Whitney test ([`kayenta::CanaryScoreJudge`]): pass, marginal or fail
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

impl JudgeSpec {
    /// Values must be at least `min` (a success rate).
    pub fn min(min: f64) -> Self {
        Self::Threshold { min: Some(min), max: None }
    }

    /// Values must be at most `max` (an error rate, a latency).
    pub fn max(max: f64) -> Self {
        Self::Threshold { min: None, max: Some(max) }
    }

    /// The candidate may exceed (or, by `direction`, fall below) the baseline by at
    /// most `max_ratio` times.
    pub fn ratio(direction: Direction, max_ratio: f64) -> Self {
        Self::Compare { direction, max_ratio: Some(max_ratio), max_difference: None }
    }

    /// The candidate may deviate from the baseline in `direction` by at most
    /// `max_difference`.
    pub fn difference(direction: Direction, max_difference: f64) -> Self {
        Self::Compare { direction, max_ratio: None, max_difference: Some(max_difference) }
    }

    /// A Mann-Whitney judge with Kayenta's defaults (confidence 0.98, tolerance 0.25,
    /// any effect size).
    ///
    /// ```
    /// use deploy_core::analysis::{Direction, JudgeSpec};
    /// let spec = JudgeSpec::mann_whitney(Direction::Increase, "10m".parse().unwrap(), "30s".parse().unwrap());
    /// assert_eq!(spec.to_string(), "not higher than baseline (Mann-Whitney over 10m every 30s, 98% confidence)");
    /// ```
    pub fn mann_whitney(direction: Direction, lookback: HumanDuration, step: HumanDuration) -> Self {
        Self::MannWhitney {
            direction,
            lookback,
            step,
            confidence: default_confidence(),
            tolerance: default_tolerance(),
            effect_size: default_effect_size(),
            min_samples: None,
            power_shift: default_power_shift(),
        }
    }

    /// Sets a Mann-Whitney judge's effect size (the smallest ratio of means that
    /// counts); other judges are returned unchanged.
    #[must_use]
    pub fn with_effect_size(mut self, ratio: f64) -> Self {
        if let Self::MannWhitney { effect_size, .. } = &mut self {
            *effect_size = ratio;
        }
        self
    }

    /// Sets a Mann-Whitney judge's floor of values per side; other judges are
    /// returned unchanged.
    #[must_use]
    pub fn with_min_samples(mut self, n: u32) -> Self {
        if let Self::MannWhitney { min_samples, .. } = &mut self {
            *min_samples = Some(n);
        }
        self
    }

    /// A registered judge with parameters.
    pub fn custom(name: impl Into<String>, params: serde_json::Value) -> Self {
        Self::Custom { name: name.into(), params }
    }

    /// Why the spec cannot work, if it cannot.
    fn check(&self) -> Result<(), String> {
        match self {
            Self::Threshold { min: None, max: None } => Err("a threshold needs a min, a max or both".into()),
            Self::Threshold { min, max } => {
                if min.is_some_and(|v| !v.is_finite()) || max.is_some_and(|v| !v.is_finite()) {
                    return Err("threshold bounds must be finite numbers".into());
                }
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    return Err("min must not be above max".into());
                }
                Ok(())
            }
            Self::Compare { max_ratio: None, max_difference: None, .. } => {
                Err("a comparison needs a max ratio, a max difference or both".into())
            }
            Self::Compare { max_ratio, max_difference, .. } => {
                if max_ratio.is_some_and(|r| !(r.is_finite() && r >= 1.0)) {
                    return Err("max ratio must be a finite number of at least 1".into());
                }
                if max_difference.is_some_and(|d| !(d.is_finite() && d >= 0.0)) {
                    return Err("max difference must be a finite number of at least 0".into());
                }
                Ok(())
            }
            Self::MannWhitney {
                lookback, step, confidence, tolerance, effect_size, min_samples, power_shift, ..
            } => {
                if !(*confidence > 0.5 && *confidence < 1.0) {
                    return Err("confidence must lie strictly between 0.5 and 1".into());
                }
                if *min_samples == Some(0) {
                    return Err("min samples must be at least 1".into());
                }
                if !(power_shift.is_finite() && *power_shift > 0.0) {
                    return Err("power shift must be a positive number of standard deviations".into());
                }
                if !(tolerance.is_finite() && *tolerance >= 0.0 && effect_size.is_finite() && *effect_size >= 1.0) {
                    return Err("tolerance must be at least 0 and effect size at least 1".into());
                }
                if step.is_zero() || lookback.as_duration() < step.as_duration() {
                    return Err("step must be positive and lookback at least one step".into());
                }
                Ok(())
            }
            Self::Sequential(spec) => spec.check(),
            Self::CanaryScore(spec) => spec.check(),
            Self::Custom { name, .. } if name.trim().is_empty() => Err("a custom judge needs a name".into()),
            Self::Custom { .. } => Ok(()),
        }
    }
}

impl fmt::Display for JudgeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Threshold { min: Some(lo), max: Some(hi) } => write!(f, "within [{lo}, {hi}]"),
            Self::Threshold { min: Some(lo), max: None } => write!(f, "≥ {lo}"),
            Self::Threshold { min: None, max: Some(hi) } => write!(f, "≤ {hi}"),
            Self::Threshold { min: None, max: None } => f.write_str("unbounded"),
            Self::Compare { direction, max_ratio, max_difference } => {
                write!(f, "{} baseline", direction.phrase())?;
                let mut allowances = Vec::new();
                if let Some(r) = max_ratio {
                    allowances.push(format!("× {r}"));
                }
                if let Some(d) = max_difference {
                    allowances.push(format!("± {d}"));
                }
                if !allowances.is_empty() {
                    write!(f, " (within {})", allowances.join(" or "))?;
                }
                Ok(())
            }
            Self::MannWhitney { direction, lookback, step, confidence, .. } => write!(
                f,
                "{} baseline (Mann-Whitney over {lookback} every {step}, {}% confidence)",
                direction.phrase(),
                confidence * 100.0
            ),
            Self::Sequential(spec) => write!(f, "{spec}"),
            Self::CanaryScore(spec) => write!(f, "{spec}"),
            Self::Custom { name, .. } => write!(f, "judged by {name}"),
        }
    }
}

fn default_confidence() -> f64 {
    0.98
}

fn default_tolerance() -> f64 {
    0.25
}

fn default_effect_size() -> f64 {
    1.0
}

fn default_power_shift() -> f64 {
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

impl Direction {
    fn phrase(self) -> &'static str {
        match self {
            Self::Increase => "not higher than",
            Self::Decrease => "not lower than",
            Self::Either => "close to",
        }
    }
}

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

impl fmt::Display for MeasurementOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Successful => "successful",
            Self::Failed => "failed",
            Self::Inconclusive => "inconclusive",
            Self::Error => "error",
        })
    }
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
    /// Whether the verdict settled its check ([`Verdict::decisive`]): the analysis
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

impl fmt::Display for AnalysisOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Successful => "successful",
            Self::Failed => "failed",
            Self::Inconclusive => "inconclusive",
            Self::Error => "error",
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_lists_every_problem() {
        let spec = AnalysisSpec::new("")
            .count(0)
            .metric(MetricCheck::new("", "", JudgeSpec::Threshold { min: Some(2.0), max: Some(1.0) }))
            .metric(MetricCheck::new("latency", "q", JudgeSpec::Threshold { min: None, max: None }))
            .metric(MetricCheck::new("nan", "q", JudgeSpec::max(f64::NAN)));
        let errors = spec.validate("step 2 analysis").unwrap_err();
        let text = errors.to_string();
        assert_eq!(errors.len(), 7, "{text}");
        for needle in ["name", "count", "metric name", "query", "min must not be above max", "a min, a max", "finite"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(errors.iter().all(|e| e.field.starts_with("step 2 analysis")));
    }

    #[test]
    fn spec_without_checks_or_interval_is_incomplete() {
        let spec = AnalysisSpec::new("a").count(3).interval(HumanDuration::ZERO);
        let text = spec.validate("a").unwrap_err().to_string();
        assert!(text.contains("at least one metric or health check") && text.contains("interval"), "{text}");
    }

    #[test]
    fn spec_round_trips_through_json_with_defaults() {
        let json = r#"{"name":"sr","metrics":[{"name":"sr","query":"q","judge":{"kind":"threshold","min":0.99}}],
            "interval":"30s","count":3}"#;
        let spec: AnalysisSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.consecutive_error_limit, 4);
        assert_eq!(spec.metrics[0].judge, JudgeSpec::min(0.99));
        let back: AnalysisSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
        assert_eq!(spec.max_duration(), std::time::Duration::from_secs(60));
    }
}
