//! Canary judging the way Netflix's Kayenta does it: each metric's candidate and
//! baseline samples are compared with a Mann-Whitney test and classified Pass, High,
//! Low or NoData ([`MannWhitneyClassifier`], [`MannWhitneyJudge`]); the share of
//! passing metrics is a score from 0 to 100 that is Pass, Marginal or Fail against
//! two thresholds ([`CanaryScorer`]). An analysis uses the score as the judge of
//! several metrics with [`ScoreSpec`] (`JudgeSpec::CanaryScore`, run by
//! [`CanaryScoreJudge`]).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::mann_whitney::{
    Alternative, MannWhitney, MethodChoice, ShiftEstimate, mann_whitney_test, min_sample_size, power, shift_estimate,
};
use super::{Direction, Evidence, Judge, JudgeInput, JudgeSpec, MeasurementOutcome, Statistics, Verdict};
use crate::metrics::MetricsError;
use crate::model::HumanDuration;

pub use crate::model::analysis::kayenta::{
    CanaryScore, Classification, MetricEvidence, ScoreSpec, ScoreThresholds, ScoreVerdict, ScoredCheck,
};

mod score;

pub use score::{CanaryScoreJudge, CanaryScorer, ScoredMetric};

/// A classification with the statistics behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricClassification {
    /// The class.
    pub classification: Classification,
    /// The Mann-Whitney test, when both samples had values and differed.
    pub test: Option<MannWhitney>,
    /// The shift from baseline to candidate with its interval, likewise.
    pub shift: Option<ShiftEstimate>,
    /// Mean of the candidate over mean of the baseline (Kayenta's "ratio"), when
    /// both samples had values and the baseline's mean is not zero.
    pub ratio: Option<f64>,
    /// The power of the test at these sample sizes for a shift of
    /// [`MannWhitneyClassifier::power_shift`] standard deviations.
    pub power: Option<f64>,
    /// Why the class is NoData, when it is: no values, or fewer than the floor.
    pub no_data: Option<String>,
}

impl fmt::Display for MetricClassification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.classification)?;
        if let Some(test) = &self.test {
            write!(f, ": {test}")?;
        }
        if let Some(shift) = &self.shift {
            write!(
                f,
                ", shift {:.4} in [{:.4}, {:.4}] at {}%",
                shift.estimate,
                shift.lower,
                shift.upper,
                shift.confidence * 100.0
            )?;
        }
        if let Some(ratio) = self.ratio {
            write!(f, ", mean ratio {ratio:.3}")?;
        }
        if let Some(power) = self.power {
            write!(f, ", power {power:.2}")?;
        }
        if let Some(why) = &self.no_data {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

/// Kayenta's Mann-Whitney classifier (`NetflixACAJudge`), with a floor and
/// one-sided tests: the candidate is High when the whole confidence interval of its
/// shift against the baseline lies above `tolerance × |shift estimate|` (Low when
/// below minus that), the test's p-value is at most α = 1 − `confidence`, the
/// deviation is in a direction that counts against it, and the candidate's mean is
/// at least `effect_size` times the baseline's (at most 1 / `effect_size` for Low).
///
/// A canary is judged for being worse, so `Increase` and `Decrease` test one side
/// (SciPy's `greater` / `less`, and a one-sided interval bound); `Either` tests
/// both. Fewer than `min_samples` values on a side is NoData (inconclusive), since
/// below [`min_sample_size`] the test could never flag anything and a pass would
/// mean nothing. Kayenta's defaults: confidence 0.98, tolerance 0.25, any effect
/// size (1.0).
///
/// ```
/// use deploy_core::analysis::{Direction, kayenta::{Classification, MannWhitneyClassifier}};
/// let classifier = MannWhitneyClassifier::new(Direction::Increase);
/// let baseline = [100.0, 102.0, 98.0, 101.0, 99.0, 100.5, 99.5, 101.5];
/// let slower = [150.0, 152.0, 149.0, 151.0, 148.0, 150.5, 149.5, 151.5];
/// assert_eq!(classifier.classify(&slower, &baseline).classification, Classification::High);
/// let faster = [50.0, 52.0, 49.0, 51.0, 48.0, 50.5, 49.5, 51.5];
/// assert_eq!(classifier.classify(&faster, &baseline).classification, Classification::Pass);
/// assert_eq!(classifier.classify(&[], &baseline).classification, Classification::NoData);
/// // One value against one cannot be judged at 98 %: no data, not a verdict.
/// assert_eq!(classifier.classify(&[150.0], &[100.0]).classification, Classification::NoData);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MannWhitneyClassifier {
    /// Which deviation counts against the candidate.
    pub direction: Direction,
    /// The confidence level of the shift's interval, in (0, 1).
    pub confidence: f64,
    /// The share of the shift estimate that the interval must clear.
    pub tolerance: f64,
    /// The smallest ratio of means (≥ 1) that counts as a deviation.
    pub effect_size: f64,
    /// The fewest values per side; `None` for [`min_sample_size`] at this
    /// confidence and direction.
    pub min_samples: Option<usize>,
    /// The shift, in standard deviations, whose detection power is reported.
    pub power_shift: f64,
}

impl MannWhitneyClassifier {
    /// Kayenta's defaults for `direction`.
    pub fn new(direction: Direction) -> Self {
        Self { direction, confidence: 0.98, tolerance: 0.25, effect_size: 1.0, min_samples: None, power_shift: 1.0 }
    }

    /// Sets the confidence level.
    #[must_use]
    pub fn confidence(mut self, confidence: f64) -> Self {
        self.confidence = confidence;
        self
    }

    /// Sets the tolerance.
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Sets the effect size.
    #[must_use]
    pub fn effect_size(mut self, effect_size: f64) -> Self {
        self.effect_size = effect_size;
        self
    }

    /// Sets the floor of values per side.
    #[must_use]
    pub fn min_samples(mut self, min_samples: usize) -> Self {
        self.min_samples = Some(min_samples);
        self
    }

    /// Sets the shift, in standard deviations, whose detection power is reported.
    #[must_use]
    pub fn power_shift(mut self, shift_sd: f64) -> Self {
        self.power_shift = shift_sd;
        self
    }

    /// The test's alternative for the direction.
    pub fn alternative(&self) -> Alternative {
        match self.direction {
            Direction::Increase => Alternative::Greater,
            Direction::Decrease => Alternative::Less,
            Direction::Either => Alternative::TwoSided,
        }
    }

    /// The significance level, 1 − confidence.
    pub fn alpha(&self) -> f64 {
        1.0 - self.confidence
    }

    /// The floor in force: the one set, or the smallest size that can reject.
    pub fn floor(&self) -> usize {
        self.min_samples.unwrap_or_else(|| min_sample_size(self.alpha(), self.alternative())).max(1)
    }

    /// Classifies `candidate` against `baseline`; NaN values are dropped first, and
    /// an empty sample, or one below the floor, is [`Classification::NoData`].
    pub fn classify(&self, candidate: &[f64], baseline: &[f64]) -> MetricClassification {
        let candidate: Vec<f64> = candidate.iter().copied().filter(|v| !v.is_nan()).collect();
        let baseline: Vec<f64> = baseline.iter().copied().filter(|v| !v.is_nan()).collect();
        let empty = MetricClassification {
            classification: Classification::NoData,
            test: None,
            shift: None,
            ratio: None,
            power: None,
            no_data: None,
        };
        if candidate.is_empty() || baseline.is_empty() {
            return MetricClassification { no_data: Some("a sample has no values".to_owned()), ..empty };
        }
        let floor = self.floor();
        let alternative = self.alternative();
        let alpha = self.alpha();
        let power = Some(power(candidate.len(), baseline.len(), alpha, alternative, self.power_shift));
        if candidate.len() < floor || baseline.len() < floor {
            let why = format!(
                "{} candidate and {} baseline values, fewer than the {floor} per side at which {}% confidence can \
                 be reached",
                candidate.len(),
                baseline.len(),
                self.confidence * 100.0
            );
            return MetricClassification { no_data: Some(why), power, ..empty };
        }
        let mean = |s: &[f64]| s.iter().sum::<f64>() / f64::from(u32::try_from(s.len()).unwrap_or(u32::MAX));
        let base_mean = mean(&baseline);
        let ratio = (base_mean != 0.0).then(|| mean(&candidate) / base_mean);
        if candidate == baseline {
            return MetricClassification { classification: Classification::Pass, ratio, power, ..empty };
        }
        // A one-sided bound at α is the lower (upper) end of a two-sided interval
        // at 1 − 2α.
        let interval = if alternative == Alternative::TwoSided {
            self.confidence
        } else {
            (1.0 - 2.0 * alpha).clamp(1e-9, 1.0 - 1e-9)
        };
        let (Ok(test), Ok(shift)) = (
            mann_whitney_test(&candidate, &baseline, alternative, MethodChoice::Auto),
            shift_estimate(&candidate, &baseline, interval),
        ) else {
            return empty;
        };
        let significant = test.p_value <= alpha;
        let bound = self.tolerance * shift.estimate.abs();
        let effect = self.effect_size.max(1.0);
        let high = matches!(self.direction, Direction::Increase | Direction::Either)
            && significant
            && shift.lower > bound
            && ratio.is_none_or(|r| r >= effect);
        let low = matches!(self.direction, Direction::Decrease | Direction::Either)
            && significant
            && shift.upper < -bound
            && ratio.is_none_or(|r| r <= 1.0 / effect);
        let classification = if high {
            Classification::High
        } else if low {
            Classification::Low
        } else {
            Classification::Pass
        };
        MetricClassification { classification, test: Some(test), shift: Some(shift), ratio, power, no_data: None }
    }

    /// The statistics of a classification by this classifier, for the evidence.
    fn statistics(&self, c: &MetricClassification) -> Statistics {
        Statistics {
            u: c.test.as_ref().map(|t| t.u),
            p_value: c.test.as_ref().map(|t| t.p_value),
            alpha: Some(self.alpha()),
            alternative: Some(self.alternative()),
            method: c.test.as_ref().map(|t| t.method),
            shift: c.shift,
            power: c.power,
            min_samples: Some(self.floor()),
            ..Statistics::default()
        }
    }

    /// The rule as data, for the evidence.
    pub(crate) fn spec(&self, lookback: HumanDuration, step: HumanDuration) -> JudgeSpec {
        JudgeSpec::MannWhitney {
            direction: self.direction,
            lookback,
            step,
            confidence: self.confidence,
            tolerance: self.tolerance,
            effect_size: self.effect_size,
            min_samples: self.min_samples.and_then(|n| u32::try_from(n).ok()),
            power_shift: self.power_shift,
        }
    }
}

/// The most values of each sample that [`MannWhitneyJudge`] uses: a longer series
/// is thinned evenly (every k-th value, keeping its time spread) to this many. A day
/// at 5 s steps (17 280 points) fits.
pub const MAX_JUDGE_SAMPLE: usize = 20_000;

/// Samples with more values than this, both together, are judged on tokio's
/// blocking pool (`spawn_blocking`) rather than on the async thread.
pub const BLOCKING_JUDGE_THRESHOLD: usize = 2_000;

/// `sample` thinned evenly to at most `max` values.
fn thin(sample: Vec<f64>, max: usize) -> Vec<f64> {
    let len = sample.len();
    if len <= max || max == 0 {
        return sample;
    }
    (0..max).map(|i| sample[i * len / max]).collect()
}

/// A [`Judge`] that classifies a metric with [`MannWhitneyClassifier`] over the
/// values of the last `lookback`, sampled every `step`, of the candidate's and the
/// baseline's track ([`MetricsProvider::query_range`]).
///
/// Pass is a successful measurement, High or Low a failed one, NoData an
/// inconclusive one. The verdict's value is the p-value.
///
/// Bounded work: each sample is capped at [`MAX_JUDGE_SAMPLE`] values (thinned
/// evenly, and the verdict's detail says so), the statistics cost
/// O((m + n) log(m + n)) time and O(m + n) memory (see
/// [`mann_whitney`](super::mann_whitney)), and samples above
/// [`BLOCKING_JUDGE_THRESHOLD`] values are judged off the async threads.
///
/// [`MetricsProvider::query_range`]: crate::metrics::MetricsProvider::query_range
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MannWhitneyJudge {
    /// The classifier.
    pub classifier: MannWhitneyClassifier,
    /// How far back the samples reach.
    pub lookback: HumanDuration,
    /// The time between two samples.
    pub step: HumanDuration,
}

impl MannWhitneyJudge {
    /// A judge.
    pub fn new(classifier: MannWhitneyClassifier, lookback: HumanDuration, step: HumanDuration) -> Self {
        Self { classifier, lookback, step }
    }

    /// The verdict on samples already fetched.
    ///
    /// ```
    /// use deploy_core::analysis::{Direction, MeasurementOutcome};
    /// use deploy_core::analysis::kayenta::{MannWhitneyClassifier, MannWhitneyJudge};
    /// let judge = MannWhitneyJudge::new(MannWhitneyClassifier::new(Direction::Increase), "5m".parse().unwrap(), "15s".parse().unwrap());
    /// let v = judge.judge_samples(&[0.10, 0.11, 0.12, 0.10, 0.13], &[0.01, 0.012, 0.011, 0.009, 0.010]);
    /// assert_eq!(v.outcome, MeasurementOutcome::Failed);
    /// assert!(v.detail.starts_with("high: U = 25"), "{}", v.detail);
    /// ```
    pub fn judge_samples(&self, candidate: &[f64], baseline: &[f64]) -> Verdict {
        let c = self.classifier.classify(candidate, baseline);
        let statistics = self.classifier.statistics(&c);
        let keep = |s: &[f64]| s.iter().copied().filter(|v| !v.is_nan()).collect::<Vec<f64>>();
        let evidence =
            Evidence::new(self.classifier.spec(self.lookback, self.step), keep(candidate), keep(baseline), statistics);
        let outcome = match c.classification {
            Classification::Pass => MeasurementOutcome::Successful,
            Classification::High | Classification::Low => MeasurementOutcome::Failed,
            Classification::NoData => MeasurementOutcome::Inconclusive,
        };
        let detail = match (&c.classification, &c.no_data) {
            (Classification::NoData, Some(why)) => format!("no data: {why}"),
            (Classification::NoData, None) => {
                format!("no data: {} candidate and {} baseline values", candidate.len(), baseline.len())
            }
            _ => c.to_string(),
        };
        Verdict::new(outcome, c.test.as_ref().map(|t| t.p_value), detail).with_evidence(evidence)
    }
}

#[async_trait]
impl Judge for MannWhitneyJudge {
    fn name(&self) -> &str {
        "mann-whitney"
    }

    async fn judge(&self, input: &JudgeInput<'_>) -> Result<Verdict, MetricsError> {
        let (range, step) = (self.lookback.as_duration(), self.step.as_duration());
        let candidate = input.metrics.query_range(input.candidate, range, step).await?;
        let baseline = input.metrics.query_range(input.baseline, range, step).await?;
        let sizes = (candidate.len(), baseline.len());
        let candidate = thin(candidate, MAX_JUDGE_SAMPLE);
        let baseline = thin(baseline, MAX_JUDGE_SAMPLE);
        let judge = *self;
        let mut verdict = if candidate.len() + baseline.len() > BLOCKING_JUDGE_THRESHOLD {
            tokio::task::spawn_blocking(move || judge.judge_samples(&candidate, &baseline)).await.map_err(|e| {
                MetricsError::backend("judge with mann-whitney", crate::error::ErrorKind::Other, e.to_string())
            })?
        } else {
            judge.judge_samples(&candidate, &baseline)
        };
        if sizes.0 > MAX_JUDGE_SAMPLE || sizes.1 > MAX_JUDGE_SAMPLE {
            verdict.detail.push_str(&format!(
                " (samples of {} and {} values thinned to at most {MAX_JUDGE_SAMPLE})",
                sizes.0, sizes.1
            ));
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod bounded_tests;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod score_tests;
