//! Which rollout strategy suits a change: the seed's decision table (major release:
//! blue-green; risky change: canary; routine change and hotfix: rolling; schema
//! change: blue-green), adjusted to what the traffic router can do.
//!
//! The advisor speaks the engine's language: it reads the router's
//! [`RouterCapabilities`] and answers a [`StrategySpec`], which plans directly.
//!
//! ```
//! use deploy_core::recommend::{recommend, Change, ChangeType};
//! use deploy_core::strategy::{PlanInput, Strategy, StrategySpec};
//! use deploy_core::traffic::RouterCapabilities;
//! let r = recommend(&Change::new(ChangeType::RiskyChange).router(RouterCapabilities::weights_only()));
//! assert!(matches!(r.strategy, StrategySpec::Canary(_)));
//! let plan = r.strategy.plan(&PlanInput::new(3));
//! assert!(plan.validate(Some(RouterCapabilities::weights_only())).is_ok());
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{HumanDuration, Percent};
use crate::plan::{PauseKind, Step};
use crate::strategy::{Canary, RollingUpdate, StrategySpec};
use crate::traffic::RouterCapabilities;

/// What kind of change is being deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeType {
    /// A new major version: new behaviour everywhere at once.
    MajorRelease,
    /// A change that may misbehave under real traffic.
    RiskyChange,
    /// An everyday change.
    Routine,
    /// An urgent fix.
    Hotfix,
    /// A change that comes with a database schema change.
    SchemaChange,
}

/// A change to recommend a strategy for.
///
/// ```
/// use deploy_core::recommend::{Change, ChangeType};
/// use deploy_core::traffic::RouterCapabilities;
/// let c = Change::new(ChangeType::Hotfix).router(RouterCapabilities::switch_only()).replicas(6);
/// assert_eq!(c.replicas, 6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Change {
    /// The kind of change.
    pub change: ChangeType,
    /// What the router in front of the application can do, as the router itself
    /// declares it ([`TrafficRouter::capabilities`](crate::traffic::TrafficRouter::capabilities)).
    /// Default: [`RouterCapabilities::default`], no router of its own (traffic
    /// follows the pods).
    pub router: RouterCapabilities,
    /// Replicas of the application. Default 3.
    pub replicas: u32,
}

impl Change {
    /// A change of `change` type with no router and 3 replicas.
    pub fn new(change: ChangeType) -> Self {
        Self { change, router: RouterCapabilities::default(), replicas: 3 }
    }

    /// Sets the router's capabilities.
    #[must_use]
    pub fn router(mut self, router: RouterCapabilities) -> Self {
        self.router = router;
        self
    }

    /// Sets the replica count.
    #[must_use]
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }
}

/// A recommendation and the reasons for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// The strategy, ready to plan with ([`Strategy::plan`](crate::strategy::Strategy::plan)).
    pub strategy: StrategySpec,
    /// Why, one sentence each.
    pub reasons: Vec<String>,
}

/// The seed's canary steps.
const CANARY_STEPS: [u8; 5] = [10, 25, 50, 75, 100];

/// The pause after each canary weight below 100 %, as [`Canary::default`] has.
const CANARY_PAUSE: Duration = Duration::from_secs(60);

/// A canary through `weights`, pausing after each one below 100 %.
fn canary(weights: &[u8]) -> StrategySpec {
    let mut steps = Vec::new();
    for weight in weights.iter().filter_map(|w| Percent::new(*w).ok()) {
        steps.push(Step::SetWeight(weight));
        if weight != Percent::HUNDRED {
            steps.push(Step::Pause(PauseKind::Duration(HumanDuration::new(CANARY_PAUSE))));
        }
    }
    StrategySpec::Canary(Canary::with_steps(steps))
}

/// Whether the router can send all traffic to one track (a switch or weights).
fn can_switch(router: &RouterCapabilities) -> bool {
    router.weights || router.switch_only
}

/// The traffic shares reachable by replica ratio, nearest to the seed's steps.
fn replica_steps(replicas: u32) -> Vec<u8> {
    let mut steps: Vec<u8> = CANARY_STEPS
        .iter()
        .map(|target| {
            let n = ((f64::from(*target) / 100.0 * f64::from(replicas)).round() as u32).clamp(1, replicas);
            (f64::from(n) * 100.0 / f64::from(replicas)).round() as u8
        })
        .collect();
    steps.dedup();
    steps
}

/// Recommends a strategy for `change`.
pub fn recommend(change: &Change) -> Recommendation {
    let mut reasons = Vec::new();
    let blue_green = |reasons: &mut Vec<String>, why: &str| {
        if can_switch(&change.router) {
            reasons.push(why.to_owned());
            StrategySpec::BlueGreen(Box::default())
        } else {
            reasons.push(format!("{why}, but blue-green needs a router that can switch traffic; rolling instead"));
            StrategySpec::Rolling(RollingUpdate::default())
        }
    };
    let strategy = match change.change {
        ChangeType::MajorRelease => {
            blue_green(&mut reasons, "a major release should switch all at once with an instant way back: blue-green")
        }
        ChangeType::SchemaChange => {
            reasons.push("keep the schema compatible with the old version, or the switch back will break it".into());
            blue_green(&mut reasons, "a schema change should not serve two versions side by side for long: blue-green")
        }
        ChangeType::RiskyChange => match (change.router.weights, change.router.weight_replicas) {
            (true, None) => {
                reasons.push("a risky change should meet real traffic in small steps: canary by weight".into());
                canary(&CANARY_STEPS)
            }
            (true, Some(replicas)) => {
                reasons.push(format!(
                    "a risky change should meet real traffic in small steps; the router rounds weights to {replicas} replicas"
                ));
                canary(&replica_steps(replicas.max(1)))
            }
            _ if change.replicas < 4 => {
                reasons.push(format!(
                    "a canary by replica ratio with {} replicas starts at {}% of traffic, too coarse for a risky change",
                    change.replicas,
                    100 / change.replicas.max(1)
                ));
                blue_green(&mut reasons, "a risky change needs a quick way back: blue-green")
            }
            _ => {
                reasons.push(format!(
                    "a risky change should meet real traffic in small steps; without a weighted router the steps follow the replica ratio of {} replicas",
                    change.replicas
                ));
                canary(&replica_steps(change.replicas))
            }
        },
        ChangeType::Routine => {
            reasons.push("a routine change: rolling update, no extra capacity needed".into());
            StrategySpec::Rolling(RollingUpdate::default())
        }
        ChangeType::Hotfix => {
            reasons.push("a hotfix must land fast: rolling update without analysis pauses".into());
            StrategySpec::Rolling(RollingUpdate::default())
        }
    };
    Recommendation { strategy, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{PlanInput, Strategy};
    use ChangeType::*;

    /// The canary weights a recommendation plans, or `None` for another strategy.
    fn weights(spec: &StrategySpec) -> Option<Vec<u8>> {
        let StrategySpec::Canary(canary) = spec else { return None };
        Some(
            canary
                .steps
                .iter()
                .filter_map(|s| match s {
                    Step::SetWeight(w) => Some(w.value()),
                    _ => None,
                })
                .collect(),
        )
    }

    fn kind(spec: &StrategySpec) -> &'static str {
        spec.plan(&PlanInput::new(4)).strategy.as_str()
    }

    #[test]
    fn the_seed_table_with_a_capable_router() {
        let router = RouterCapabilities::weights_only();
        let with = |c| recommend(&Change::new(c).router(router)).strategy;
        assert_eq!(kind(&with(MajorRelease)), "blue-green");
        assert_eq!(kind(&with(SchemaChange)), "blue-green");
        assert_eq!(kind(&with(Routine)), "rolling");
        assert_eq!(kind(&with(Hotfix)), "rolling");
        let risky = with(RiskyChange);
        assert_eq!(weights(&risky), Some(vec![10, 25, 50, 75, 100]));
        // What the advisor answers, the engine accepts for that router.
        for change in [MajorRelease, SchemaChange, Routine, Hotfix, RiskyChange] {
            let plan = with(change).plan(&PlanInput::new(4));
            assert!(plan.validate(Some(router)).is_ok(), "{change:?}: {plan}");
        }
    }

    #[test]
    fn adapts_to_the_router_and_replicas() {
        let r = recommend(&Change::new(MajorRelease));
        assert_eq!(kind(&r.strategy), "rolling");
        assert!(r.reasons[0].contains("needs a router"));
        let switch = RouterCapabilities::switch_only();
        let r = recommend(&Change::new(RiskyChange).router(switch).replicas(10));
        assert_eq!(weights(&r.strategy), Some(vec![10, 30, 50, 80, 100]));
        let r = recommend(&Change::new(RiskyChange).router(switch).replicas(4));
        assert_eq!(weights(&r.strategy), Some(vec![25, 50, 75, 100]));
        let r = recommend(&Change::new(RiskyChange).router(switch).replicas(2));
        assert_eq!(kind(&r.strategy), "blue-green");
        assert_eq!(kind(&recommend(&Change::new(RiskyChange).replicas(2)).strategy), "rolling");
        // A router that reaches weights by its own replicas: steps it can hit.
        let ratio = RouterCapabilities::replica_ratio(10);
        let r = recommend(&Change::new(RiskyChange).router(ratio));
        assert_eq!(weights(&r.strategy), Some(vec![10, 30, 50, 80, 100]));
    }
}
