//! Canary: the new release takes a growing share of traffic, judged at every step.

use serde::{Deserialize, Serialize};

use super::{PlanInput, Strategy};
use crate::analysis::{AnalysisSpec, MetricCheck};
use crate::model::StrategyKind;
use crate::model::{HumanDuration, Percent, Track};
use crate::plan::{CanaryScale, PauseKind, Plan, Step, canary_replicas};

/// The weights the seeds ask for by default.
const DEFAULT_WEIGHTS: [u8; 5] = [10, 25, 50, 75, 100];

/// Runs the new release on the `canary` track next to `stable`, moves traffic to it
/// step by step (router weights, or replica ratio without a weighted router), and
/// promotes it: `stable` is updated to the new release, takes all traffic back, and
/// the canary is removed after `scale_down_delay`.
///
/// The steps between deployment and promotion are Argo Rollouts' (set weight,
/// pause, analyze, set canary scale, header route); [`Canary::flagger`] builds them
/// from Flagger's shorthand.
///
/// ```
/// use deploy_core::strategy::{Canary, PlanInput, Strategy};
/// let plan = Canary::default().plan(&PlanInput::new(4));
/// assert_eq!(plan.steps[0].to_string(), "deploy the new release to canary with 1 replica");
/// assert!(plan.validate(None).is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Canary {
    /// The steps between the canary's deployment and its promotion.
    pub steps: Vec<Step>,
    /// How long the canary keeps running after promotion.
    pub scale_down_delay: HumanDuration,
}

impl Default for Canary {
    /// 10 → 25 → 50 → 75 → 100 %, pausing one minute at each weight below 100 %.
    fn default() -> Self {
        let pause = HumanDuration::new(std::time::Duration::from_secs(60));
        let mut steps = Vec::new();
        for w in DEFAULT_WEIGHTS.into_iter().filter_map(|w| Percent::new(w).ok()) {
            steps.push(Step::SetWeight(w));
            if w != Percent::HUNDRED {
                steps.push(Step::Pause(PauseKind::Duration(pause)));
            }
        }
        Self { steps, scale_down_delay: HumanDuration::ZERO }
    }
}

/// Flagger's shorthand: raise the weight by `step_weight` up to `max_weight`, one
/// analysis per weight every `interval`; `threshold` failed checks roll back.
///
/// Each weight's analysis takes up to `threshold` measurements, advances on the
/// first success, and fails on the `threshold`-th failure. Unlike Flagger, failures
/// are counted per weight, not across the whole rollout. Measurements without data
/// are tolerated up to `threshold - 1` times, as Flagger counts a check without
/// values as a failed check; at the `threshold`-th the analysis is inconclusive and
/// the rollout pauses for a decision ([`InconclusivePolicy::Pause`], the default
/// of every analysis), rather than rolling back for silence or promoting on it.
///
/// [`InconclusivePolicy::Pause`]: crate::analysis::InconclusivePolicy::Pause
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FlaggerAnalysis {
    /// The weight added at every step.
    pub step_weight: Percent,
    /// The last weight before promotion.
    pub max_weight: Percent,
    /// Time between checks.
    pub interval: HumanDuration,
    /// Failed checks that roll back.
    pub threshold: u32,
    /// The metric checks.
    pub metrics: Vec<MetricCheck>,
    /// Health checks by name.
    #[serde(default)]
    pub health_checks: Vec<String>,
}

impl FlaggerAnalysis {
    /// Flagger's usual numbers: `step_weight` up to `max_weight`, every `interval`,
    /// rolling back after `threshold` failed checks; add checks with [`Self::metric`].
    pub fn new(step_weight: Percent, max_weight: Percent, interval: HumanDuration, threshold: u32) -> Self {
        Self { step_weight, max_weight, interval, threshold, metrics: Vec::new(), health_checks: Vec::new() }
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
}

impl Canary {
    /// A canary with explicit steps, as Argo Rollouts writes them.
    pub fn with_steps(steps: Vec<Step>) -> Self {
        Self { steps, scale_down_delay: HumanDuration::ZERO }
    }

    /// `weights` in order, each followed by `analysis`.
    pub fn progressive(weights: impl IntoIterator<Item = Percent>, analysis: &AnalysisSpec) -> Self {
        let steps = weights.into_iter().flat_map(|w| [Step::SetWeight(w), Step::Analyze(analysis.clone())]).collect();
        Self::with_steps(steps)
    }

    /// The steps of Flagger's shorthand. A step weight of 0 gives a single step at
    /// 0 % (nothing would ever move).
    ///
    /// ```
    /// use deploy_core::strategy::{Canary, FlaggerAnalysis, PlanInput, Strategy};
    /// use deploy_core::analysis::{JudgeSpec, MetricCheck};
    /// use deploy_core::model::Percent;
    /// let f = FlaggerAnalysis::new(Percent::new(20).unwrap(), Percent::new(50).unwrap(), "1m".parse().unwrap(), 5)
    ///     .metric(MetricCheck::new("request-success-rate", "q", JudgeSpec::min(0.99)));
    /// let plan = Canary::flagger(&f).plan(&PlanInput::new(10));
    /// let weights: Vec<String> = plan.steps.iter().filter(|s| s.kind() == "set-weight").map(|s| s.to_string()).collect();
    /// assert_eq!(weights, ["set canary weight to 20%", "set canary weight to 40%"]);
    /// ```
    pub fn flagger(analysis: &FlaggerAnalysis) -> Self {
        let mut spec = AnalysisSpec::new("flagger")
            .interval(analysis.interval)
            .count(analysis.threshold)
            .failure_limit(analysis.threshold.saturating_sub(1))
            .inconclusive_limit(analysis.threshold.saturating_sub(1))
            .success_limit(1);
        spec.metrics = analysis.metrics.clone();
        spec.health_checks = analysis.health_checks.clone();
        let mut weights = Vec::new();
        let step = analysis.step_weight.value();
        let mut w = step;
        while w <= analysis.max_weight.value() {
            weights.extend(Percent::new(w).ok());
            if step == 0 {
                break;
            }
            w = w.saturating_add(step);
        }
        Self::progressive(weights, &spec)
    }

    /// Keeps the canary this long after promotion.
    #[must_use]
    pub fn scale_down_delay(mut self, delay: HumanDuration) -> Self {
        self.scale_down_delay = delay;
        self
    }

    /// The canary's replicas when it is first deployed: those of the first weight or
    /// explicit scale, at least one.
    fn first_replicas(&self, total: u32) -> u32 {
        let first = self.steps.iter().find_map(|s| match s {
            Step::SetWeight(w) => Some(canary_replicas(total, *w)),
            Step::SetCanaryScale(CanaryScale::Replicas(n)) => Some(*n),
            Step::SetCanaryScale(CanaryScale::Weight(w)) => Some(canary_replicas(total, *w)),
            _ => None,
        });
        first.unwrap_or(1).max(1)
    }
}

impl Strategy for Canary {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Canary
    }

    fn plan(&self, input: &PlanInput) -> Plan {
        let mut plan = Plan::new(StrategyKind::Canary, input.replicas, Track::Stable, Track::Canary, Track::Stable)
            .step(Step::DeployTrack { track: Track::Canary, replicas: self.first_replicas(input.replicas) })
            .step(Step::WaitReady { track: Track::Canary });
        plan.steps.extend(self.steps.iter().cloned());
        plan.step(Step::Promote).step(Step::ScaleDownAfter(self.scale_down_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::JudgeSpec;
    use crate::traffic::{HeaderMatch, HeaderRoute, RouterCapabilities};

    fn p(v: u8) -> Percent {
        Percent::new(v).unwrap()
    }

    #[test]
    fn default_is_10_25_50_75_100_then_promotion() {
        let plan = Canary::default().plan(&PlanInput::new(10));
        let kinds: Vec<String> = plan.steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            kinds,
            [
                "deploy the new release to canary with 1 replica",
                "wait until canary is ready",
                "set canary weight to 10%",
                "pause for 1m",
                "set canary weight to 25%",
                "pause for 1m",
                "set canary weight to 50%",
                "pause for 1m",
                "set canary weight to 75%",
                "pause for 1m",
                "set canary weight to 100%",
                "promote the new release",
                "scale down what no longer serves after 0s",
            ]
        );
        assert!(plan.validate(None).is_ok());
        assert!(plan.validate(Some(RouterCapabilities::weights_only())).is_ok());
    }

    #[test]
    fn first_canary_replicas_follow_the_first_weight_rounded_up() {
        for (total, weight, expected) in [(10, 10, 1), (10, 25, 3), (3, 50, 2), (1, 1, 1), (20, 5, 1), (7, 100, 7)] {
            let plan = Canary::with_steps(vec![Step::SetWeight(p(weight))]).plan(&PlanInput::new(total));
            assert_eq!(
                plan.steps[0],
                Step::DeployTrack { track: Track::Canary, replicas: expected },
                "{total} {weight}"
            );
        }
        let scaled = Canary::with_steps(vec![Step::SetCanaryScale(CanaryScale::Replicas(2)), Step::SetWeight(p(5))]);
        assert_eq!(scaled.plan(&PlanInput::new(10)).steps[0], Step::DeployTrack { track: Track::Canary, replicas: 2 });
    }

    #[test]
    fn flagger_shorthand() {
        let f = FlaggerAnalysis::new(p(10), p(30), "30s".parse().unwrap(), 3).metric(MetricCheck::new(
            "request-duration",
            "q",
            JudgeSpec::max(500.0),
        ));
        let plan = Canary::flagger(&f).plan(&PlanInput::new(10));
        let analyses: Vec<&AnalysisSpec> =
            plan.steps.iter().filter_map(|s| if let Step::Analyze(a) = s { Some(a) } else { None }).collect();
        assert_eq!(analyses.len(), 3);
        assert_eq!((analyses[0].count, analyses[0].failure_limit, analyses[0].success_limit), (3, 2, Some(1)));
        assert_eq!(plan.steps[2], Step::SetWeight(p(10)));
        assert_eq!(plan.steps[6], Step::SetWeight(p(30)));
        assert!(plan.validate(None).is_ok());
        // step weight 0 cannot loop forever
        let f0 = FlaggerAnalysis::new(Percent::ZERO, p(50), "30s".parse().unwrap(), 1);
        assert_eq!(Canary::flagger(&f0).steps.len(), 2);
        // a threshold of 0 makes an incomplete analysis, reported by validation
        let bad = FlaggerAnalysis::new(p(50), p(50), "30s".parse().unwrap(), 0);
        let err = Canary::flagger(&bad).plan(&PlanInput::new(2)).validate(None).unwrap_err();
        assert!(err.to_string().contains("count"), "{err}");
    }

    #[test]
    fn header_routes_need_a_capable_router() {
        let route = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
        let plan = Canary::with_steps(vec![Step::HeaderRoute(route), Step::SetWeight(p(20))]).plan(&PlanInput::new(5));
        assert!(plan.validate(Some(RouterCapabilities::full())).is_ok());
        assert!(plan.validate(Some(RouterCapabilities::weights_only())).is_err());
        assert!(plan.validate(None).is_err());
    }
}
