//! The platform's native rolling update.

use serde::{Deserialize, Serialize};

use super::{PlanInput, Strategy};
use crate::analysis::AnalysisSpec;
use crate::model::StrategyKind;
use crate::model::{IntOrPercent, RollingUpdateParams, Track};
use crate::plan::{Plan, Step};

/// Replaces the stable track's pods in place, at most `max_surge` above and
/// `max_unavailable` below the desired count (Kubernetes rounding: surge up,
/// unavailability down), then optionally analyses the result. Traffic never moves:
/// the platform only sends it to ready pods. A rollback re-applies the previous
/// release the same way.
///
/// ```
/// use deploy_core::strategy::{PlanInput, RollingUpdate, Strategy};
/// use deploy_core::model::{IntOrPercent, Percent};
/// let plan = RollingUpdate::new(IntOrPercent::Int(1), IntOrPercent::Percent(Percent::new(25).unwrap()))
///     .plan(&PlanInput::new(10));
/// assert_eq!(plan.steps[0].to_string(),
///     "rolling update of stable to 10 replicas (max surge 1 = 1, max unavailable 25% = 2)");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RollingUpdate {
    /// Pods allowed above the desired count.
    pub max_surge: IntOrPercent,
    /// Desired pods allowed to be unavailable.
    pub max_unavailable: IntOrPercent,
    /// An analysis of the updated release; failure rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
}

impl Default for RollingUpdate {
    /// Kubernetes' defaults: 25 % surge, 25 % unavailable.
    fn default() -> Self {
        let params = RollingUpdateParams::default();
        Self { max_surge: params.max_surge, max_unavailable: params.max_unavailable, analysis: None }
    }
}

impl RollingUpdate {
    /// A rolling update with these bounds.
    pub fn new(max_surge: IntOrPercent, max_unavailable: IntOrPercent) -> Self {
        Self { max_surge, max_unavailable, analysis: None }
    }

    /// Analyses the release once it is rolled out.
    #[must_use]
    pub fn analysis(mut self, spec: AnalysisSpec) -> Self {
        self.analysis = Some(spec);
        self
    }
}

impl Strategy for RollingUpdate {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Rolling
    }

    fn plan(&self, input: &PlanInput) -> Plan {
        let mut plan = Plan::new(StrategyKind::Rolling, input.replicas, Track::Stable, Track::Stable, Track::Stable)
            .step(Step::RollingUpdate {
                replicas: input.replicas,
                max_surge: self.max_surge,
                max_unavailable: self.max_unavailable,
            })
            .step(Step::WaitReady { track: Track::Stable });
        if let Some(spec) = &self.analysis {
            plan = plan.step(Step::Analyze(spec.clone()));
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Percent;
    use crate::plan::resolve_rolling;

    fn pct(v: u8) -> IntOrPercent {
        IntOrPercent::Percent(Percent::new(v).unwrap())
    }

    #[test]
    fn kubernetes_rounding() {
        // (replicas, surge, unavailable) -> (surge pods, unavailable pods)
        let cases = [
            (10, pct(25), pct(25), (3, 2)),
            (4, pct(25), pct(25), (1, 1)),
            (3, pct(25), pct(25), (1, 0)),
            (1, pct(25), pct(25), (1, 0)),
            (5, pct(0), pct(0), (0, 1)),
            (5, IntOrPercent::Int(0), IntOrPercent::Int(0), (0, 1)),
            (7, pct(50), pct(50), (4, 3)),
            (10, IntOrPercent::Int(2), pct(100), (2, 10)),
        ];
        for (replicas, surge, unavailable, expected) in cases {
            assert_eq!(resolve_rolling(replicas, surge, unavailable), expected, "{replicas} {surge} {unavailable}");
        }
    }

    #[test]
    fn plan_updates_stable_in_place_and_analyses() {
        let spec = AnalysisSpec::new("smoke").health_check("http");
        let plan = RollingUpdate::default().analysis(spec.clone()).plan(&PlanInput::new(4));
        assert_eq!((plan.old_track, plan.new_track, plan.final_track), (Track::Stable, Track::Stable, Track::Stable));
        assert_eq!(
            plan.steps,
            vec![
                Step::RollingUpdate { replicas: 4, max_surge: pct(25), max_unavailable: pct(25) },
                Step::WaitReady { track: Track::Stable },
                Step::Analyze(spec),
            ]
        );
        assert!(plan.validate(None).is_ok());
        let err = RollingUpdate::new(pct(0), IntOrPercent::Int(0)).plan(&PlanInput::new(0)).validate(None).unwrap_err();
        assert_eq!(err.len(), 3, "{err}"); // plan replicas, step replicas, both zero
    }
}
