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
mod holm;
mod judge;
pub mod kayenta;
pub mod mann_whitney;
mod replay;
mod runner;
pub mod sequential;

use std::fmt;

use crate::model::{HumanDuration, Track, ValidationError, ValidationErrors};

pub use compare::CompareJudge;
pub use holm::holm_adjust;
pub use judge::{Judge, JudgeFactory, JudgeInput, JudgeRegistry, ThresholdJudge, Verdict};
pub use replay::{ReplayDifference, ReplayReport, recompute, replay};
pub use runner::{AnalysisRunner, AnalysisTarget};

pub use crate::model::analysis::{
    AnalysisOutcome, AnalysisRecord, AnalysisReport, AnalysisSpec, CategoryStatistics, CheckKind, Direction, Evidence,
    HolmAdjustment, InconclusivePolicy, JudgeSpec, Measurement, MeasurementOutcome, MetricCheck, MultipleTesting,
    Statistics,
};
use crate::model::analysis::{
    default_confidence, default_consecutive_error_limit, default_effect_size, default_power_shift, default_tolerance,
};

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

impl Direction {
    fn phrase(self) -> &'static str {
        match self {
            Self::Increase => "not higher than",
            Self::Decrease => "not lower than",
            Self::Either => "close to",
        }
    }
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

#[cfg(test)]
mod tests;
