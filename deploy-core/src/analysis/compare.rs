//! Canary versus baseline: the candidate's current value may deviate from the
//! baseline's by an allowed ratio or difference ([`CompareJudge`]).

use async_trait::async_trait;

use super::{Direction, Evidence, Judge, JudgeInput, JudgeSpec, MeasurementOutcome, Statistics, Verdict};
use crate::metrics::{MetricValue, MetricsError};

/// Compares the candidate track's value with the baseline track's value of the same
/// query, measured at the same moment.
///
/// A deviation in `direction` is allowed when it stays within **either** allowance
/// given: `max_ratio` (the candidate is at most `max_ratio` times the baseline, or,
/// for decreases, at least the baseline divided by it) or `max_difference` (in the
/// metric's unit). Either suffices so that a baseline of zero errors, against which
/// every ratio is infinite, can still be met by a small absolute difference.
/// Ratios assume non-negative metrics (rates, latencies). No data on either track
/// is inconclusive.
///
/// ```
/// use deploy_core::analysis::{CompareJudge, Direction, MeasurementOutcome};
/// use deploy_core::metrics::MetricValue::Scalar;
/// let judge = CompareJudge::new(Direction::Increase, Some(1.5), Some(0.005));
/// // 0.07 against 0.01: 7 times and 0.06 more, beyond both allowances.
/// assert_eq!(judge.compare(&Scalar(0.07), &Scalar(0.01)).outcome, MeasurementOutcome::Failed);
/// // 0.004 against 0: no ratio fits, but the difference does.
/// assert_eq!(judge.compare(&Scalar(0.004), &Scalar(0.0)).outcome, MeasurementOutcome::Successful);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CompareJudge {
    /// Which deviation counts against the candidate.
    pub direction: Direction,
    /// The allowed ratio, at least 1.
    pub max_ratio: Option<f64>,
    /// The allowed absolute difference, at least 0.
    pub max_difference: Option<f64>,
}

impl CompareJudge {
    /// A judge; give at least one allowance (with none, any deviation fails).
    pub fn new(direction: Direction, max_ratio: Option<f64>, max_difference: Option<f64>) -> Self {
        Self { direction, max_ratio, max_difference }
    }

    /// Whether `candidate` is within an allowance above `baseline`.
    fn increase_allowed(&self, candidate: f64, baseline: f64) -> bool {
        candidate <= baseline
            || self.max_ratio.is_some_and(|r| candidate <= baseline * r)
            || self.max_difference.is_some_and(|d| candidate - baseline <= d)
    }

    /// Whether `candidate` is within an allowance below `baseline`.
    fn decrease_allowed(&self, candidate: f64, baseline: f64) -> bool {
        candidate >= baseline
            || self.max_ratio.is_some_and(|r| candidate * r >= baseline)
            || self.max_difference.is_some_and(|d| baseline - candidate <= d)
    }

    fn allowances(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.max_ratio {
            parts.push(format!("ratio {r}"));
        }
        if let Some(d) = self.max_difference {
            parts.push(format!("difference {d}"));
        }
        if parts.is_empty() { "no deviation".to_owned() } else { parts.join(" or ") }
    }

    /// Judges values already fetched.
    pub fn compare(&self, candidate: &MetricValue, baseline: &MetricValue) -> Verdict {
        let (c, b) = (candidate.as_single(), baseline.as_single());
        let evidence =
            Evidence::new(self.spec(), c.into_iter().collect(), b.into_iter().collect(), Statistics::default());
        self.compare_values(c, b).with_evidence(evidence)
    }

    /// The rule as data, for the evidence.
    fn spec(&self) -> JudgeSpec {
        JudgeSpec::Compare { direction: self.direction, max_ratio: self.max_ratio, max_difference: self.max_difference }
    }

    /// Judges values already reduced to numbers (`None` for no data).
    pub(crate) fn compare_values(&self, candidate: Option<f64>, baseline: Option<f64>) -> Verdict {
        let (Some(c), Some(b)) = (candidate, baseline) else {
            let which = match (candidate, baseline) {
                (None, None) => "candidate and baseline",
                (None, Some(_)) => "candidate",
                _ => "baseline",
            };
            return Verdict::no_data(format!("no single value for the {which} to compare"));
        };
        let ok = match self.direction {
            Direction::Increase => self.increase_allowed(c, b),
            Direction::Decrease => self.decrease_allowed(c, b),
            Direction::Either => self.increase_allowed(c, b) && self.decrease_allowed(c, b),
        };
        let ratio = if b == 0.0 { String::new() } else { format!(", ratio {:.3}", c / b) };
        let detail = format!(
            "candidate {c} vs baseline {b} (difference {:+}{ratio}) {} allowed {}",
            c - b,
            if ok { "within" } else { "beyond" },
            self.allowances()
        );
        let outcome = if ok { MeasurementOutcome::Successful } else { MeasurementOutcome::Failed };
        Verdict::new(outcome, Some(c), detail)
    }
}

#[async_trait]
impl Judge for CompareJudge {
    fn name(&self) -> &str {
        "compare"
    }

    async fn judge(&self, input: &JudgeInput<'_>) -> Result<Verdict, MetricsError> {
        let candidate = input.metrics.query(input.candidate).await?;
        let baseline = input.metrics.query(input.baseline).await?;
        Ok(self.compare(&candidate, &baseline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricValue::{Empty, Scalar};

    #[test]
    fn ratio_difference_and_direction() {
        let ratio = CompareJudge::new(Direction::Increase, Some(1.2), None);
        assert_eq!(ratio.compare(&Scalar(0.119), &Scalar(0.1)).outcome, MeasurementOutcome::Successful);
        let v = ratio.compare(&Scalar(0.13), &Scalar(0.1));
        assert_eq!(v.outcome, MeasurementOutcome::Failed);
        assert!(v.detail.contains("ratio 1.300") && v.detail.contains("beyond allowed ratio 1.2"), "{}", v.detail);
        // Lower is never bad for an increase judge.
        assert_eq!(ratio.compare(&Scalar(0.0), &Scalar(0.1)).outcome, MeasurementOutcome::Successful);
        // A success rate must not drop by more than one point.
        let drop = CompareJudge::new(Direction::Decrease, None, Some(1.0));
        assert_eq!(drop.compare(&Scalar(99.2), &Scalar(99.9)).outcome, MeasurementOutcome::Successful);
        assert_eq!(drop.compare(&Scalar(97.0), &Scalar(99.9)).outcome, MeasurementOutcome::Failed);
        assert_eq!(drop.compare(&Scalar(100.0), &Scalar(99.9)).outcome, MeasurementOutcome::Successful);
        let either = CompareJudge::new(Direction::Either, Some(2.0), None);
        assert_eq!(either.compare(&Scalar(4.9), &Scalar(10.0)).outcome, MeasurementOutcome::Failed);
        assert_eq!(either.compare(&Scalar(20.1), &Scalar(10.0)).outcome, MeasurementOutcome::Failed);
        assert_eq!(either.compare(&Scalar(15.0), &Scalar(10.0)).outcome, MeasurementOutcome::Successful);
        // A zero baseline fails every ratio but not a difference.
        assert_eq!(ratio.compare(&Scalar(0.001), &Scalar(0.0)).outcome, MeasurementOutcome::Failed);
    }

    #[test]
    fn missing_data_on_either_side_is_inconclusive() {
        let j = CompareJudge::new(Direction::Increase, Some(1.2), None);
        let v = j.compare(&Empty, &Scalar(1.0));
        assert_eq!(v.outcome, MeasurementOutcome::Inconclusive);
        assert!(v.detail.contains("for the candidate"), "{}", v.detail);
        assert_eq!(j.compare(&Scalar(1.0), &Scalar(f64::NAN)).outcome, MeasurementOutcome::Inconclusive);
    }
}
