//! Canary judging the way Netflix's Kayenta does it: each metric's candidate and
//! baseline samples are compared with a Mann-Whitney test and classified Pass, High,
//! Low or NoData ([`MannWhitneyClassifier`], [`MannWhitneyJudge`]); the share of
//! passing metrics is a score from 0 to 100 that is Pass, Marginal or Fail against
//! two thresholds ([`CanaryScorer`]). An analysis uses the score as the judge of
//! several metrics with [`ScoreSpec`] (`JudgeSpec::CanaryScore`, run by
//! [`CanaryScoreJudge`]).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::mann_whitney::{
    Alternative, MannWhitney, MethodChoice, ShiftEstimate, mann_whitney_test, min_sample_size, power, shift_estimate,
};
use super::{
    AnalysisReport, CheckKind, Direction, Evidence, Judge, JudgeInput, JudgeSpec, MeasurementOutcome, Statistics,
    Verdict,
};
use crate::metrics::MetricsError;
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

impl Default for ScoreThresholds {
    /// Pass from 95, marginal from 75 (the values Spinnaker suggests).
    fn default() -> Self {
        Self { pass: 95.0, marginal: 75.0 }
    }
}

impl ScoreThresholds {
    /// Thresholds.
    pub fn new(pass: f64, marginal: f64) -> Self {
        Self { pass, marginal }
    }
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

impl ScoreVerdict {
    /// The measurement outcome this verdict amounts to, as Argo Rollouts maps
    /// Kayenta's: pass is successful, marginal inconclusive, fail failed, no data
    /// inconclusive.
    pub fn outcome(self) -> MeasurementOutcome {
        match self {
            Self::Pass => MeasurementOutcome::Successful,
            Self::Fail => MeasurementOutcome::Failed,
            Self::Marginal | Self::NoData => MeasurementOutcome::Inconclusive,
        }
    }
}

/// One classified metric for [`CanaryScorer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScoredMetric {
    /// The metric's name.
    pub name: String,
    /// Its group (Kayenta scores groups, then weighs them); `""` for none.
    pub group: String,
    /// Its class.
    pub classification: Classification,
    /// Whether a non-passing class fails the whole canary regardless of the score.
    pub critical: bool,
}

impl ScoredMetric {
    /// A non-critical metric without a group.
    pub fn new(name: impl Into<String>, classification: Classification) -> Self {
        Self { name: name.into(), group: String::new(), classification, critical: false }
    }

    /// Puts the metric in `group`.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Makes the metric critical.
    #[must_use]
    pub fn critical(mut self) -> Self {
        self.critical = true;
        self
    }
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

/// Kayenta's `WeightedSumScorer` and `ThresholdScoreClassifier`: a group's score is
/// the share of its metrics with data that passed, × 100; the canary's score is the
/// groups' scores weighed by `group_weights` (percentages; groups without a weight
/// share what is left equally), and a critical metric that deviated (High or Low)
/// scores 0 and fails. A critical metric without data makes the verdict NoData
/// (not enough data decides nothing by itself), whatever the other metrics score.
///
/// ```
/// use deploy_core::analysis::kayenta::{CanaryScorer, Classification::*, ScoredMetric, ScoreVerdict};
/// let scorer = CanaryScorer::default();
/// let metrics: Vec<ScoredMetric> = [Pass, Pass, Pass, High]
///     .into_iter().enumerate().map(|(i, c)| ScoredMetric::new(format!("m{i}"), c)).collect();
/// let score = scorer.score(&metrics);
/// assert_eq!((score.score, score.verdict), (75.0, ScoreVerdict::Marginal));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct CanaryScorer {
    /// Percent weight per group.
    pub group_weights: BTreeMap<String, f64>,
    /// The thresholds of the verdict.
    pub thresholds: ScoreThresholds,
}

impl CanaryScorer {
    /// A scorer with no group weights.
    pub fn new(thresholds: ScoreThresholds) -> Self {
        Self { group_weights: BTreeMap::new(), thresholds }
    }

    /// Weighs `group` with `percent`.
    #[must_use]
    pub fn group_weight(mut self, group: impl Into<String>, percent: f64) -> Self {
        self.group_weights.insert(group.into(), percent);
        self
    }

    /// Scores `metrics`.
    pub fn score(&self, metrics: &[ScoredMetric]) -> CanaryScore {
        let mut tallies: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for m in metrics {
            let entry = tallies.entry(m.group.as_str()).or_default();
            match m.classification {
                Classification::Pass => {
                    entry.0 += 1;
                    entry.1 += 1;
                }
                Classification::High | Classification::Low => entry.1 += 1,
                Classification::NoData => {}
            }
        }
        let groups: BTreeMap<String, f64> = tallies
            .iter()
            .filter(|(_, (_, with_data))| *with_data > 0)
            .map(|(g, (pass, with_data))| ((*g).to_owned(), f64::from(*pass) / f64::from(*with_data) * 100.0))
            .collect();
        if groups.is_empty() {
            return CanaryScore {
                score: 0.0,
                verdict: ScoreVerdict::NoData,
                groups,
                reason: "no metric had data".to_owned(),
            };
        }
        let weighted: f64 =
            self.group_weights.iter().filter(|(g, _)| tallies.contains_key(g.as_str())).map(|(_, w)| w).sum();
        let unweighted = tallies.keys().filter(|g| !self.group_weights.contains_key(**g)).count();
        let share = if unweighted > 0 {
            (100.0 - weighted) / f64::from(u32::try_from(unweighted).unwrap_or(u32::MAX))
        } else {
            0.0
        };
        let score: f64 =
            groups.iter().map(|(g, s)| s * self.group_weights.get(g).copied().unwrap_or(share) / 100.0).sum();
        let critical: Vec<&str> = metrics
            .iter()
            .filter(|m| m.critical && matches!(m.classification, Classification::High | Classification::Low))
            .map(|m| m.name.as_str())
            .collect();
        if !critical.is_empty() {
            return CanaryScore {
                score: 0.0,
                verdict: ScoreVerdict::Fail,
                groups,
                reason: format!("critical metric {} did not pass", critical.join(", ")),
            };
        }
        // A critical metric without data was not judged: the canary neither fails
        // for its silence nor passes without it.
        let silent: Vec<&str> = metrics
            .iter()
            .filter(|m| m.critical && m.classification == Classification::NoData)
            .map(|m| m.name.as_str())
            .collect();
        if !silent.is_empty() {
            return CanaryScore {
                score,
                verdict: ScoreVerdict::NoData,
                groups,
                reason: format!("critical metric {} had no data", silent.join(", ")),
            };
        }
        let t = self.thresholds;
        let (verdict, reason) = if score >= t.pass {
            (ScoreVerdict::Pass, format!("score {score:.1} ≥ pass threshold {}", t.pass))
        } else if score >= t.marginal {
            (ScoreVerdict::Marginal, format!("score {score:.1} ≥ marginal threshold {} but < {}", t.marginal, t.pass))
        } else {
            (ScoreVerdict::Fail, format!("score {score:.1} < marginal threshold {}", t.marginal))
        };
        CanaryScore { score, verdict, groups, reason }
    }

    /// Scores round `round` of an analysis: each metric measurement that succeeded
    /// passes, one that failed counts as a deviation, one without data (or that
    /// could not be taken) as no data; health checks are left out.
    pub fn score_round(&self, report: &AnalysisReport, round: u32) -> CanaryScore {
        let metrics: Vec<ScoredMetric> = report
            .measurements
            .iter()
            .filter(|m| m.round == round && m.kind == CheckKind::Metric)
            .map(|m| {
                let class = match m.outcome {
                    MeasurementOutcome::Successful => Classification::Pass,
                    MeasurementOutcome::Failed => Classification::High,
                    _ => Classification::NoData,
                };
                ScoredMetric::new(m.check.clone(), class)
            })
            .collect();
        self.score(&metrics)
    }
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

impl ScoredCheck {
    /// A non-critical metric without a group, worse when higher.
    pub fn new(name: impl Into<String>, query: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            query: query.into(),
            direction: Direction::Increase,
            group: String::new(),
            critical: false,
        }
    }

    /// Sets which deviation counts against the candidate.
    #[must_use]
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Puts the metric in `group`.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Makes the metric critical.
    #[must_use]
    pub fn critical(mut self) -> Self {
        self.critical = true;
        self
    }
}

/// Kayenta's canary judgement over several metrics, as one judge
/// ([`JudgeSpec::CanaryScore`]): each look classifies every metric's candidate
/// samples against the baseline's over the last `lookback`
/// ([`MannWhitneyClassifier`]) and scores them ([`CanaryScorer`]). A score at or
/// above `thresholds.pass` is a successful measurement, one at or above
/// `thresholds.marginal` an inconclusive one (as Argo Rollouts maps Kayenta's
/// marginal: the engine's inconclusive policy decides, a pause for a person by
/// default), anything lower a failed one; a critical metric that deviates fails
/// the measurement decisively, which ends the analysis at once. Every metric's
/// samples and statistics are in the verdict's evidence, and
/// [`replay`](super::replay) recomputes the score.
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

fn default_confidence() -> f64 {
    0.98
}

fn default_tolerance() -> f64 {
    0.25
}

impl ScoreSpec {
    /// A score of `metrics` over the last `lookback`, one sample every `step`,
    /// with Spinnaker's thresholds and Kayenta's classifier defaults.
    pub fn new(metrics: impl IntoIterator<Item = ScoredCheck>, lookback: HumanDuration, step: HumanDuration) -> Self {
        Self {
            metrics: metrics.into_iter().collect(),
            lookback,
            step,
            thresholds: ScoreThresholds::default(),
            group_weights: BTreeMap::new(),
            confidence: default_confidence(),
            tolerance: default_tolerance(),
        }
    }

    /// Sets the score thresholds.
    #[must_use]
    pub fn thresholds(mut self, thresholds: ScoreThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Weighs `group` with `percent`.
    #[must_use]
    pub fn group_weight(mut self, group: impl Into<String>, percent: f64) -> Self {
        self.group_weights.insert(group.into(), percent);
        self
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.metrics.is_empty() {
            return Err("a canary score needs at least one metric".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for m in &self.metrics {
            if m.name.trim().is_empty() || m.query.trim().is_empty() {
                return Err("every scored metric needs a name and a query".into());
            }
            if !names.insert(m.name.as_str()) {
                return Err(format!("scored metric {} is named twice", m.name));
            }
        }
        let t = self.thresholds;
        if !(t.marginal.is_finite()
            && t.pass.is_finite()
            && 0.0 <= t.marginal
            && t.marginal <= t.pass
            && t.pass <= 100.0)
        {
            return Err("thresholds must satisfy 0 ≤ marginal ≤ pass ≤ 100".into());
        }
        if self.group_weights.values().any(|w| !(w.is_finite() && *w >= 0.0))
            || self.group_weights.values().sum::<f64>() > 100.0
        {
            return Err("group weights must be percentages of at least 0 that add up to at most 100".into());
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err("confidence must lie strictly between 0.5 and 1".into());
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err("tolerance must be at least 0".into());
        }
        if self.step.is_zero() || self.lookback.as_duration() < self.step.as_duration() {
            return Err("step must be positive and lookback at least one step".into());
        }
        Ok(())
    }

    fn classifier(&self, metric: &ScoredCheck) -> MannWhitneyClassifier {
        MannWhitneyClassifier::new(metric.direction).confidence(self.confidence).tolerance(self.tolerance)
    }

    fn scorer(&self) -> CanaryScorer {
        CanaryScorer { group_weights: self.group_weights.clone(), thresholds: self.thresholds }
    }

    /// The verdict on samples already fetched: `(candidate, baseline)` per metric,
    /// in the order of [`ScoreSpec::metrics`].
    pub fn judge_samples(&self, samples: &[(&[f64], &[f64])]) -> Verdict {
        let keep = |s: &[f64]| s.iter().copied().filter(|v| !v.is_nan()).collect::<Vec<f64>>();
        let mut scored = Vec::with_capacity(self.metrics.len());
        let mut parts = Vec::with_capacity(self.metrics.len());
        let mut lines = Vec::with_capacity(self.metrics.len());
        for (metric, (candidate, baseline)) in self.metrics.iter().zip(samples) {
            let classifier = self.classifier(metric);
            let c = classifier.classify(candidate, baseline);
            let mut one = ScoredMetric::new(metric.name.clone(), c.classification).group(metric.group.clone());
            one.critical = metric.critical;
            scored.push(one);
            lines.push(format!("{} {}", metric.name, c.classification));
            parts.push(MetricEvidence {
                name: metric.name.clone(),
                classification: c.classification,
                candidate: keep(candidate),
                baseline: keep(baseline),
                statistics: classifier.statistics(&c),
            });
        }
        // A metric whose samples are missing has no data.
        for metric in self.metrics.iter().skip(samples.len()) {
            scored.push(ScoredMetric::new(metric.name.clone(), Classification::NoData).group(metric.group.clone()));
        }
        let score = self.scorer().score(&scored);
        let critical =
            scored.iter().any(|m| m.critical && matches!(m.classification, Classification::High | Classification::Low));
        let outcome = score.verdict.outcome();
        let detail = format!("{} {:.1} ({}): {}", score.verdict, score.score, score.reason, lines.join(", "));
        let statistics = Statistics { score: Some(score.clone()), ..Statistics::default() };
        let mut evidence = Evidence::new(JudgeSpec::CanaryScore(self.clone()), Vec::new(), Vec::new(), statistics);
        evidence.metrics = parts;
        Verdict::new(outcome, Some(score.score), detail).with_evidence(evidence).decisive(critical)
    }
}

impl fmt::Display for ScoreVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "pass",
            Self::Marginal => "marginal",
            Self::Fail => "fail",
            Self::NoData => "no data",
        })
    }
}

impl fmt::Display for ScoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.metrics.iter().map(|m| m.name.as_str()).collect();
        write!(
            f,
            "canary score of {} (pass ≥ {}, marginal ≥ {}",
            names.join(", "),
            self.thresholds.pass,
            self.thresholds.marginal
        )?;
        let critical: Vec<&str> = self.metrics.iter().filter(|m| m.critical).map(|m| m.name.as_str()).collect();
        if !critical.is_empty() {
            write!(f, "; critical: {}", critical.join(", "))?;
        }
        f.write_str(")")
    }
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

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "pass",
            Self::High => "high",
            Self::Low => "low",
            Self::NoData => "no data",
        })
    }
}

/// The [`Judge`] for [`JudgeSpec::CanaryScore`]: each look fetches every metric's
/// samples of both tracks ([`MetricsProvider::query_range`]) and scores them with
/// [`ScoreSpec::judge_samples`].
///
/// [`MetricsProvider::query_range`]: crate::metrics::MetricsProvider::query_range
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryScoreJudge {
    spec: ScoreSpec,
}

impl CanaryScoreJudge {
    /// A judge.
    pub fn new(spec: ScoreSpec) -> Self {
        Self { spec }
    }
}

#[async_trait]
impl Judge for CanaryScoreJudge {
    fn name(&self) -> &str {
        "canary-score"
    }

    async fn judge(&self, input: &JudgeInput<'_>) -> Result<Verdict, MetricsError> {
        let (range, step) = (self.spec.lookback.as_duration(), self.spec.step.as_duration());
        let mut samples = Vec::with_capacity(self.spec.metrics.len());
        for metric in &self.spec.metrics {
            let of = |q: &crate::metrics::MetricQuery| crate::metrics::MetricQuery {
                name: metric.name.clone(),
                query: metric.query.clone(),
                ..q.clone()
            };
            let candidate = input.metrics.query_range(&of(input.candidate), range, step).await?;
            let baseline = input.metrics.query_range(&of(input.baseline), range, step).await?;
            samples.push((thin(candidate, MAX_JUDGE_SAMPLE), thin(baseline, MAX_JUDGE_SAMPLE)));
        }
        let refs: Vec<(&[f64], &[f64])> = samples.iter().map(|(c, b)| (c.as_slice(), b.as_slice())).collect();
        Ok(self.spec.judge_samples(&refs))
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_spread_and_short_samples_whole() {
        let long: Vec<f64> = (0..100_000).map(f64::from).collect();
        let thinned = thin(long, MAX_JUDGE_SAMPLE);
        assert_eq!(thinned.len(), MAX_JUDGE_SAMPLE);
        assert_eq!(thinned[0], 0.0);
        assert_eq!(thinned[MAX_JUDGE_SAMPLE - 1], 99_995.0);
        assert_eq!(thin(vec![1.0, 2.0], MAX_JUDGE_SAMPLE), [1.0, 2.0]);
    }

    /// Long series: 60 000 values per track, a canary 30 % higher.
    struct LongSeries;

    #[async_trait]
    impl crate::metrics::MetricsProvider for LongSeries {
        async fn query(&self, _: &crate::metrics::MetricQuery) -> Result<crate::metrics::MetricValue, MetricsError> {
            Ok(crate::metrics::MetricValue::Empty)
        }

        async fn query_range(
            &self,
            query: &crate::metrics::MetricQuery,
            _: std::time::Duration,
            _: std::time::Duration,
        ) -> Result<Vec<f64>, MetricsError> {
            let base = if query.track == crate::model::Track::Canary { 130.0 } else { 100.0 };
            Ok((0..60_000).map(|i| base + f64::from(i % 101) * 0.1).collect())
        }
    }

    #[tokio::test]
    async fn long_series_are_capped_and_judged_off_the_async_thread() {
        use crate::model::{AppId, Name, Namespace, Track};
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
        let query = |track| {
            crate::metrics::MetricQuery::new("latency", "q", app.clone(), track, std::time::Duration::from_secs(60))
        };
        let (candidate, baseline) = (query(Track::Canary), query(Track::Stable));
        let judge = MannWhitneyJudge::new(
            MannWhitneyClassifier::new(Direction::Increase),
            "1d".parse().unwrap(),
            "1s".parse().unwrap(),
        );
        // A current-thread runtime: the statistics must not need it to be free.
        let verdict = judge.judge(&JudgeInput::new(&LongSeries, &candidate, &baseline, 0)).await.unwrap();
        assert_eq!(verdict.outcome, MeasurementOutcome::Failed, "{}", verdict.detail);
        assert!(
            verdict.detail.ends_with("samples of 60000 and 60000 values thinned to at most 20000)"),
            "{}",
            verdict.detail
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Classification::{High, Low, NoData, Pass};
    use super::*;

    fn jitter(base: f64, n: usize) -> Vec<f64> {
        // A deterministic, noisy-looking sample around `base` (±2 %), no ties.
        (0..n).map(|i| base * (1.0 + 0.02 * ((i as f64 * 2.399).sin()))).collect()
    }

    #[test]
    fn classifies_by_direction() {
        let baseline = jitter(100.0, 30);
        let higher = jitter(130.0, 30);
        let lower = jitter(70.0, 30);
        let c = |d| MannWhitneyClassifier::new(d);
        assert_eq!(c(Direction::Increase).classify(&higher, &baseline).classification, High);
        assert_eq!(c(Direction::Increase).classify(&lower, &baseline).classification, Pass);
        assert_eq!(c(Direction::Decrease).classify(&lower, &baseline).classification, Low);
        assert_eq!(c(Direction::Either).classify(&lower, &baseline).classification, Low);
        assert_eq!(c(Direction::Either).classify(&higher, &baseline).classification, High);
        // The same distribution, shuffled: pass.
        let mut same = baseline.clone();
        same.reverse();
        let r = c(Direction::Either).classify(&same, &baseline);
        assert_eq!(r.classification, Pass, "{r}");
        assert!(r.test.unwrap().p_value > 0.5);
        // Identical samples pass without a test; an effect size can excuse a small shift.
        assert_eq!(c(Direction::Either).classify(&baseline, &baseline).test, None);
        let slightly = jitter(103.0, 30);
        assert_eq!(c(Direction::Increase).classify(&slightly, &baseline).classification, High);
        let lenient = c(Direction::Increase).effect_size(1.1);
        assert_eq!(lenient.classify(&slightly, &baseline).classification, Pass);
        // NaN values are dropped; nothing left is no data.
        assert_eq!(c(Direction::Either).classify(&[f64::NAN], &baseline).classification, NoData);
    }

    #[test]
    fn scores_as_kayenta_does() {
        let scorer = CanaryScorer::new(ScoreThresholds::new(90.0, 50.0));
        let m = |name: &str, c| ScoredMetric::new(name, c);
        let all_pass = scorer.score(&[m("a", Pass), m("b", Pass), m("c", NoData)]);
        assert_eq!((all_pass.score, all_pass.verdict), (100.0, ScoreVerdict::Pass), "no data is left out");
        let half = scorer.score(&[m("a", Pass), m("b", Low)]);
        assert_eq!((half.score, half.verdict), (50.0, ScoreVerdict::Marginal));
        let bad = scorer.score(&[m("a", Pass), m("b", Low), m("c", High)]);
        assert_eq!(bad.verdict, ScoreVerdict::Fail);
        assert_eq!(scorer.score(&[m("a", NoData)]).verdict, ScoreVerdict::NoData);
        let critical = scorer.score(&[m("a", Pass), m("b", Pass), m("c", High).critical()]);
        assert_eq!((critical.score, critical.verdict), (0.0, ScoreVerdict::Fail));
        assert!(critical.reason.contains("critical metric c"));
        // Groups: latency weighs 70 %, errors get the remaining 30 %.
        let grouped = CanaryScorer::new(ScoreThresholds::new(90.0, 50.0)).group_weight("latency", 70.0);
        let s = grouped.score(&[
            m("p50", Pass).group("latency"),
            m("p99", High).group("latency"),
            m("5xx", Pass).group("errors"),
        ]);
        assert_eq!(s.groups["latency"], 50.0);
        assert!((s.score - (50.0 * 0.7 + 100.0 * 0.3)).abs() < 1e-9, "{s:?}");
        assert_eq!(s.verdict, ScoreVerdict::Marginal);
        assert_eq!(ScoreVerdict::Marginal.outcome(), MeasurementOutcome::Inconclusive);
    }
}

#[cfg(test)]
mod score_tests {
    use super::*;

    #[test]
    fn score_evidence_round_trips_through_json() {
        let spec = ScoreSpec::new(
            [ScoredCheck::new("a", "q").group("g"), ScoredCheck::new("b", "q").critical()],
            "1m".parse().unwrap(),
            "5s".parse().unwrap(),
        );
        let base = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02];
        let v = spec.judge_samples(&[(&base[..], &base[..]), (&base[..], &base[..])]);
        let evidence = v.evidence.unwrap();
        let json = serde_json::to_string(&evidence).unwrap();
        let back: Evidence = serde_json::from_str(&json).unwrap();
        assert_eq!(back.metrics.len(), 2, "{json}");
    }
}
