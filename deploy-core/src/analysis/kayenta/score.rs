//! Kayenta's canary score: metrics classified, scored and held against two
//! thresholds ([`CanaryScorer`]), and the judge of [`ScoreSpec`]
//! ([`CanaryScoreJudge`]).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use super::{
    CanaryScore, Classification, MannWhitneyClassifier, MetricEvidence, ScoreSpec, ScoreThresholds, ScoreVerdict,
    ScoredCheck,
};
use super::{MAX_JUDGE_SAMPLE, thin};
use crate::analysis::{
    AnalysisReport, CheckKind, Direction, Evidence, Judge, JudgeInput, JudgeSpec, MeasurementOutcome, Statistics,
    Verdict,
};
use crate::metrics::MetricsError;
use crate::model::HumanDuration;
use crate::model::analysis::kayenta::{default_confidence, default_tolerance};

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
