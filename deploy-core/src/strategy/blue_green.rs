//! Blue-green: a full copy of the new release next to the old one, then one switch.

use serde::{Deserialize, Serialize};

use super::{PlanInput, Strategy};
use crate::analysis::AnalysisSpec;
use crate::model::StrategyKind;
use crate::model::{HumanDuration, Track};
use crate::plan::{PauseKind, Plan, Step};
use crate::traffic::{HeaderMatch, HeaderRoute};

/// When the switch to the new colour happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AutoPromotion {
    /// As soon as the new colour is ready and pre-promotion analysis passed.
    Immediate,
    /// After this long in preview; the caller may promote earlier.
    After(HumanDuration),
    /// Only when the caller promotes.
    Manual,
}

/// Runs the new release on the idle colour (green when blue serves, and back),
/// optionally previews it through a header route, analyses it, switches all traffic
/// at once, analyses again, and removes the old colour after `scale_down_delay`.
/// Until then a rollback is one traffic switch back.
///
/// ```
/// use deploy_core::strategy::{BlueGreen, PlanInput, Strategy};
/// use deploy_core::model::Track;
/// let plan = BlueGreen::default().plan(&PlanInput::new(3).live_track(Track::Blue));
/// assert_eq!((plan.old_track, plan.new_track, plan.final_track), (Track::Blue, Track::Green, Track::Green));
/// print!("{plan}");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlueGreen {
    /// A header that routes matching requests to the new colour before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<(String, HeaderMatch)>,
    /// Replicas of the new colour while in preview; all replicas before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_replicas: Option<u32>,
    /// When to switch.
    pub auto_promotion: AutoPromotion,
    /// Analysis of the new colour before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion: Option<AnalysisSpec>,
    /// Analysis after the switch; failure switches back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion: Option<AnalysisSpec>,
    /// How long the old colour keeps running after the switch, for an instant rollback.
    pub scale_down_delay: HumanDuration,
}

impl Default for BlueGreen {
    /// Immediate promotion, no preview or analysis, old colour kept 30 s (Argo Rollouts' default).
    fn default() -> Self {
        Self {
            preview: None,
            preview_replicas: None,
            auto_promotion: AutoPromotion::Immediate,
            pre_promotion: None,
            post_promotion: None,
            scale_down_delay: HumanDuration::new(std::time::Duration::from_secs(30)),
        }
    }
}

impl BlueGreen {
    /// Routes requests whose `header` matches to the new colour before the switch.
    #[must_use]
    pub fn preview(mut self, header: impl Into<String>, matches: HeaderMatch) -> Self {
        self.preview = Some((header.into(), matches));
        self
    }

    /// Runs fewer replicas of the new colour while in preview.
    #[must_use]
    pub fn preview_replicas(mut self, replicas: u32) -> Self {
        self.preview_replicas = Some(replicas);
        self
    }

    /// Sets when to switch.
    #[must_use]
    pub fn auto_promotion(mut self, when: AutoPromotion) -> Self {
        self.auto_promotion = when;
        self
    }

    /// Analyses the new colour before the switch.
    #[must_use]
    pub fn pre_promotion(mut self, spec: AnalysisSpec) -> Self {
        self.pre_promotion = Some(spec);
        self
    }

    /// Analyses the new colour after the switch.
    #[must_use]
    pub fn post_promotion(mut self, spec: AnalysisSpec) -> Self {
        self.post_promotion = Some(spec);
        self
    }

    /// Sets how long the old colour keeps running after the switch.
    #[must_use]
    pub fn scale_down_delay(mut self, delay: HumanDuration) -> Self {
        self.scale_down_delay = delay;
        self
    }
}

impl Strategy for BlueGreen {
    fn kind(&self) -> StrategyKind {
        StrategyKind::BlueGreen
    }

    fn plan(&self, input: &PlanInput) -> Plan {
        let old = input.live_track;
        let new = if old == Track::Blue { Track::Green } else { Track::Blue };
        let first = self.preview_replicas.unwrap_or(input.replicas).min(input.replicas);
        let mut plan = Plan::new(StrategyKind::BlueGreen, input.replicas, old, new, new)
            .step(Step::DeployTrack { track: new, replicas: first })
            .step(Step::WaitReady { track: new });
        if let Some((header, matches)) = &self.preview {
            plan = plan.step(Step::HeaderRoute(HeaderRoute::new(header.clone(), matches.clone(), new)));
        }
        if let Some(spec) = &self.pre_promotion {
            plan = plan.step(Step::Analyze(spec.clone()));
        }
        match self.auto_promotion {
            AutoPromotion::Immediate => {}
            AutoPromotion::After(d) => plan = plan.step(Step::Pause(PauseKind::Duration(d))),
            AutoPromotion::Manual => plan = plan.step(Step::Pause(PauseKind::UntilPromoted)),
        }
        if first < input.replicas {
            plan = plan
                .step(Step::DeployTrack { track: new, replicas: input.replicas })
                .step(Step::WaitReady { track: new });
        }
        plan = plan.step(Step::Promote);
        if let Some(spec) = &self.post_promotion {
            plan = plan.step(Step::Analyze(spec.clone()));
        }
        plan.step(Step::ScaleDownAfter(self.scale_down_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::RouterCapabilities;

    #[test]
    fn alternates_colours() {
        for (live, new) in [(Track::Blue, Track::Green), (Track::Green, Track::Blue), (Track::Stable, Track::Blue)] {
            let plan = BlueGreen::default().plan(&PlanInput::new(2).live_track(live));
            assert_eq!((plan.old_track, plan.new_track, plan.final_track), (live, new, new));
        }
    }

    #[test]
    fn full_plan_with_preview_and_both_analyses() {
        let pre = AnalysisSpec::new("pre").health_check("smoke");
        let post = AnalysisSpec::new("post").health_check("smoke");
        let delay: HumanDuration = "5m".parse().unwrap();
        let plan = BlueGreen::default()
            .preview("x-preview", HeaderMatch::Exact("1".into()))
            .preview_replicas(1)
            .auto_promotion(AutoPromotion::Manual)
            .pre_promotion(pre.clone())
            .post_promotion(post.clone())
            .scale_down_delay(delay)
            .plan(&PlanInput::new(4).live_track(Track::Green));
        assert_eq!(
            plan.steps,
            vec![
                Step::DeployTrack { track: Track::Blue, replicas: 1 },
                Step::WaitReady { track: Track::Blue },
                Step::HeaderRoute(HeaderRoute::new("x-preview", HeaderMatch::Exact("1".into()), Track::Blue)),
                Step::Analyze(pre),
                Step::Pause(PauseKind::UntilPromoted),
                Step::DeployTrack { track: Track::Blue, replicas: 4 },
                Step::WaitReady { track: Track::Blue },
                Step::Promote,
                Step::Analyze(post),
                Step::ScaleDownAfter(delay),
            ]
        );
        assert!(plan.validate(Some(RouterCapabilities::full())).is_ok());
        // A selector router can switch but cannot preview by header: rejected up front.
        let err = plan.validate(Some(RouterCapabilities::switch_only())).unwrap_err();
        assert_eq!(err.len(), 1, "{err}");
        assert!(err.to_string().contains("cannot route by header"));
    }

    #[test]
    fn timed_promotion_pauses_for_the_delay() {
        let after: HumanDuration = "10m".parse().unwrap();
        let plan = BlueGreen::default().auto_promotion(AutoPromotion::After(after)).plan(&PlanInput::new(2));
        assert_eq!(plan.steps[2], Step::Pause(PauseKind::Duration(after)));
        assert_eq!(plan.steps[3], Step::Promote);
    }
}
