//! The [`Judge`] trait and the built-in threshold judge.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::kayenta::{MannWhitneyClassifier, MannWhitneyJudge};
use super::{CompareJudge, Evidence, JudgeSpec, MeasurementOutcome, Statistics};
use crate::metrics::{MetricQuery, MetricsError, MetricsProvider};

/// What a judge sees for one measurement.
#[non_exhaustive]
pub struct JudgeInput<'a> {
    /// Where to get values from.
    pub metrics: &'a dyn MetricsProvider,
    /// The query for the track under test.
    pub candidate: &'a MetricQuery,
    /// The same query for the track that runs the previous release, for judges
    /// that compare the two (canary versus baseline, Mann-Whitney).
    pub baseline: &'a MetricQuery,
    /// Which measurement this is, from 0.
    pub round: u32,
}

impl<'a> JudgeInput<'a> {
    /// An input; judges receive it from the [`AnalysisRunner`](super::AnalysisRunner).
    pub fn new(
        metrics: &'a dyn MetricsProvider,
        candidate: &'a MetricQuery,
        baseline: &'a MetricQuery,
        round: u32,
    ) -> Self {
        Self { metrics, candidate, baseline, round }
    }
}

/// A judge's verdict on one measurement.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Verdict {
    /// Successful, failed or inconclusive (errors are returned as `Err`).
    pub outcome: MeasurementOutcome,
    /// The value judged, if there was one.
    pub value: Option<f64>,
    /// A sentence for events and records (`0.07 > 0.01`).
    pub detail: String,
    /// The data and statistics behind the verdict, for replay.
    pub evidence: Option<Evidence>,
    /// Whether the verdict settles its check for the rest of the analysis: an
    /// anytime-valid test whose confidence sequence excludes the threshold (a
    /// regression, or clearly none beyond its margin), or a critical metric of a
    /// canary score that did not pass. The [`AnalysisRunner`](super::AnalysisRunner)
    /// ends the analysis on a decisive failure at once (whatever `failure_limit`
    /// says) and stops measuring a check after a decisive success.
    pub decisive: bool,
}

impl Verdict {
    /// A verdict.
    pub fn new(outcome: MeasurementOutcome, value: Option<f64>, detail: impl Into<String>) -> Self {
        Self { outcome, value, detail: detail.into(), evidence: None, decisive: false }
    }

    /// The verdict, marked as settling its check ([`Verdict::decisive`]).
    #[must_use]
    pub fn decisive(mut self, decisive: bool) -> Self {
        self.decisive = decisive;
        self
    }

    /// The verdict with its evidence.
    #[must_use]
    pub fn with_evidence(mut self, evidence: Evidence) -> Self {
        self.evidence = Some(evidence);
        self
    }

    /// No data to judge.
    pub fn no_data(detail: impl Into<String>) -> Self {
        Self::new(MeasurementOutcome::Inconclusive, None, detail)
    }
}

/// Decides whether a metric's values are good: a threshold, a comparison with the
/// baseline, a statistical test. Judges query the provider themselves, so a judge
/// that needs a distribution uses [`MetricsProvider::query_range`].
///
/// Contract: no data is [`MeasurementOutcome::Inconclusive`], never a pass or a
/// failure; a query that fails is `Err` and counts as an error measurement.
///
/// ```
/// use std::sync::Arc;
/// use deploy_core::analysis::{Judge, JudgeRegistry, JudgeSpec, ThresholdJudge};
/// let registry = JudgeRegistry::new();
/// let judge: Arc<dyn Judge> = registry.resolve(&JudgeSpec::max(0.01)).unwrap();
/// assert_eq!(judge.name(), "threshold");
/// assert!(registry.resolve(&JudgeSpec::custom("mann-whitney", serde_json::json!({}))).is_err());
/// ```
#[async_trait]
pub trait Judge: Send + Sync {
    /// The judge's name in events.
    fn name(&self) -> &str;

    /// Judges one measurement.
    async fn judge(&self, input: &JudgeInput<'_>) -> Result<Verdict, MetricsError>;
}

/// The built-in judge: the candidate's current value must lie within bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ThresholdJudge {
    /// The smallest acceptable value.
    pub min: Option<f64>,
    /// The largest acceptable value.
    pub max: Option<f64>,
}

impl ThresholdJudge {
    /// A judge with both bounds optional.
    pub fn new(min: Option<f64>, max: Option<f64>) -> Self {
        Self { min, max }
    }

    /// Judges a value already fetched.
    ///
    /// ```
    /// use deploy_core::analysis::{MeasurementOutcome, ThresholdJudge};
    /// use deploy_core::metrics::MetricValue;
    /// let j = ThresholdJudge::new(None, Some(0.01));
    /// assert_eq!(j.judge_value(&MetricValue::Scalar(0.07)).outcome, MeasurementOutcome::Failed);
    /// assert_eq!(j.judge_value(&MetricValue::Scalar(0.0)).outcome, MeasurementOutcome::Successful);
    /// assert_eq!(j.judge_value(&MetricValue::Empty).outcome, MeasurementOutcome::Inconclusive);
    /// ```
    pub fn judge_value(&self, value: &crate::metrics::MetricValue) -> Verdict {
        let Some(v) = value.as_single() else {
            let evidence = Evidence::new(self.spec(), Vec::new(), Vec::new(), Statistics::default());
            return Verdict::no_data("no single value to judge (no data, NaN or several series)")
                .with_evidence(evidence);
        };
        let evidence = Evidence::new(self.spec(), vec![v], Vec::new(), Statistics::default());
        self.judge_single(v).with_evidence(evidence)
    }

    /// The rule as data, for the evidence.
    fn spec(&self) -> JudgeSpec {
        JudgeSpec::Threshold { min: self.min, max: self.max }
    }

    /// Judges one value.
    pub(crate) fn judge_single(&self, v: f64) -> Verdict {
        if let Some(lo) = self.min
            && v < lo
        {
            return Verdict::new(MeasurementOutcome::Failed, Some(v), format!("{v} < {lo}"));
        }
        if let Some(hi) = self.max
            && v > hi
        {
            return Verdict::new(MeasurementOutcome::Failed, Some(v), format!("{v} > {hi}"));
        }
        Verdict::new(MeasurementOutcome::Successful, Some(v), format!("{v} within bounds"))
    }
}

#[async_trait]
impl Judge for ThresholdJudge {
    fn name(&self) -> &str {
        "threshold"
    }

    async fn judge(&self, input: &JudgeInput<'_>) -> Result<Verdict, MetricsError> {
        let value = input.metrics.query(input.candidate).await?;
        Ok(self.judge_value(&value))
    }
}

/// Builds a judge from its parameters; closures `Fn(&serde_json::Value) ->
/// Result<Arc<dyn Judge>, String>` are factories.
pub trait JudgeFactory: Send + Sync {
    /// The judge for `params`, or why the parameters are wrong.
    fn build(&self, params: &serde_json::Value) -> Result<Arc<dyn Judge>, String>;
}

impl<F> JudgeFactory for F
where
    F: Fn(&serde_json::Value) -> Result<Arc<dyn Judge>, String> + Send + Sync,
{
    fn build(&self, params: &serde_json::Value) -> Result<Arc<dyn Judge>, String> {
        self(params)
    }
}

/// The judges the engine knows by name, for [`JudgeSpec::Custom`]; the built-in
/// judges (threshold, canary versus baseline, Mann-Whitney) need no registration.
/// New judges are registered here; the engine itself does not change.
#[derive(Clone, Default)]
pub struct JudgeRegistry {
    factories: BTreeMap<String, Arc<dyn JudgeFactory>>,
}

impl fmt::Debug for JudgeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl JudgeRegistry {
    /// A registry with only the built-in judges.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `factory` under `name`, replacing any judge of that name.
    pub fn register(&mut self, name: impl Into<String>, factory: Arc<dyn JudgeFactory>) {
        self.factories.insert(name.into(), factory);
    }

    /// Whether a judge named `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The judge `spec` describes, or why there is none.
    pub fn resolve(&self, spec: &JudgeSpec) -> Result<Arc<dyn Judge>, String> {
        match spec {
            JudgeSpec::Threshold { min, max } => Ok(Arc::new(ThresholdJudge::new(*min, *max))),
            JudgeSpec::Compare { direction, max_ratio, max_difference } => {
                Ok(Arc::new(CompareJudge::new(*direction, *max_ratio, *max_difference)))
            }
            JudgeSpec::MannWhitney { lookback, step, .. } => {
                let classifier = mann_whitney_classifier(spec).ok_or("not a Mann-Whitney judge")?;
                Ok(Arc::new(MannWhitneyJudge::new(classifier, *lookback, *step)))
            }
            JudgeSpec::Sequential(spec) => Ok(Arc::new(super::sequential::SequentialJudge::new(spec.clone()))),
            JudgeSpec::CanaryScore(spec) => Ok(Arc::new(super::kayenta::CanaryScoreJudge::new(spec.clone()))),
            JudgeSpec::Custom { name, params } => match self.factories.get(name) {
                Some(factory) => factory.build(params).map_err(|e| format!("judge {name}: {e}")),
                None => Err(format!("no judge named {name:?} is registered with the engine")),
            },
        }
    }
}

/// The classifier a [`JudgeSpec::MannWhitney`] describes (`None` for other judges):
/// one construction for the engine's judges and for [`replay`](super::replay).
pub(crate) fn mann_whitney_classifier(spec: &JudgeSpec) -> Option<MannWhitneyClassifier> {
    let JudgeSpec::MannWhitney { direction, confidence, tolerance, effect_size, min_samples, power_shift, .. } = spec
    else {
        return None;
    };
    let classifier = MannWhitneyClassifier::new(*direction)
        .confidence(*confidence)
        .tolerance(*tolerance)
        .effect_size(*effect_size)
        .power_shift(*power_shift);
    Some(match min_samples {
        Some(n) => classifier.min_samples(*n as usize),
        None => classifier,
    })
}
