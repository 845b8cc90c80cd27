//! Which rollout strategy suits a change: the seed's decision table (major release:
//! blue-green; risky change: canary; routine change and hotfix: rolling; schema
//! change: blue-green), adjusted to what the traffic router can do.
//!
//! ```
//! use deploy_core::recommend::{recommend, Change, ChangeType, RouterCapability, Recommended};
//! let r = recommend(&Change::new(ChangeType::RiskyChange).router(RouterCapability::Weights));
//! assert_eq!(r.strategy, Recommended::Canary { steps: vec![10, 25, 50, 75, 100], by_replicas: false });
//! ```

use serde::{Deserialize, Serialize};

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

/// What the traffic router in front of the application can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RouterCapability {
    /// Nothing: traffic follows the pods (a plain Service over both versions).
    None,
    /// Switch all traffic between two tracks at once (a Service selector, a
    /// network alias).
    Switch,
    /// Split traffic by weight (a mesh, Gateway API, an NGINX canary ingress).
    Weights,
}

/// A change to recommend a strategy for.
///
/// ```
/// use deploy_core::recommend::{Change, ChangeType, RouterCapability};
/// let c = Change::new(ChangeType::Hotfix).router(RouterCapability::Switch).replicas(6);
/// assert_eq!(c.replicas, 6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Change {
    /// The kind of change.
    pub change: ChangeType,
    /// The router's capability. Default: none.
    pub router: RouterCapability,
    /// Replicas of the application. Default 3.
    pub replicas: u32,
}

impl Change {
    /// A change of `change` type with no router and 3 replicas.
    pub fn new(change: ChangeType) -> Self {
        Self { change, router: RouterCapability::None, replicas: 3 }
    }

    /// Sets the router's capability.
    #[must_use]
    pub fn router(mut self, router: RouterCapability) -> Self {
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

/// A recommended strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "strategy")]
#[non_exhaustive]
pub enum Recommended {
    /// Replace pods a few at a time.
    Rolling,
    /// Run the new version beside the old one and switch all traffic at once.
    BlueGreen,
    /// Shift traffic in steps (percentages), judging each step.
    Canary {
        /// The traffic percentages of the steps.
        steps: Vec<u8>,
        /// Whether the steps are reached by replica ratio (no weighted router),
        /// which limits them to multiples of 100 / replicas.
        by_replicas: bool,
    },
}

/// A recommendation and the reasons for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// The strategy.
    pub strategy: Recommended,
    /// Why, one sentence each.
    pub reasons: Vec<String>,
}

/// The seed's canary steps.
const CANARY_STEPS: [u8; 5] = [10, 25, 50, 75, 100];

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
        if change.router == RouterCapability::None {
            reasons.push(format!("{why}, but blue-green needs a router that can switch traffic; rolling instead"));
            Recommended::Rolling
        } else {
            reasons.push(why.to_owned());
            Recommended::BlueGreen
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
        ChangeType::RiskyChange => match change.router {
            RouterCapability::Weights => {
                reasons.push("a risky change should meet real traffic in small steps: canary by weight".into());
                Recommended::Canary { steps: CANARY_STEPS.to_vec(), by_replicas: false }
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
                Recommended::Canary { steps: replica_steps(change.replicas), by_replicas: true }
            }
        },
        ChangeType::Routine => {
            reasons.push("a routine change: rolling update, no extra capacity needed".into());
            Recommended::Rolling
        }
        ChangeType::Hotfix => {
            reasons.push("a hotfix must land fast: rolling update without analysis pauses".into());
            Recommended::Rolling
        }
    };
    Recommendation { strategy, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChangeType::*;
    use RouterCapability as R;

    #[test]
    fn the_seed_table_with_a_capable_router() {
        let with = |c| recommend(&Change::new(c).router(R::Weights)).strategy;
        assert_eq!(with(MajorRelease), Recommended::BlueGreen);
        assert_eq!(with(SchemaChange), Recommended::BlueGreen);
        assert_eq!(with(Routine), Recommended::Rolling);
        assert_eq!(with(Hotfix), Recommended::Rolling);
        assert!(matches!(with(RiskyChange), Recommended::Canary { by_replicas: false, .. }));
    }

    #[test]
    fn adapts_to_the_router_and_replicas() {
        let r = recommend(&Change::new(MajorRelease));
        assert_eq!(r.strategy, Recommended::Rolling);
        assert!(r.reasons[0].contains("needs a router"));
        let r = recommend(&Change::new(RiskyChange).router(R::Switch).replicas(10));
        assert_eq!(r.strategy, Recommended::Canary { steps: vec![10, 30, 50, 80, 100], by_replicas: true });
        let r = recommend(&Change::new(RiskyChange).router(R::Switch).replicas(4));
        assert_eq!(r.strategy, Recommended::Canary { steps: vec![25, 50, 75, 100], by_replicas: true });
        let r = recommend(&Change::new(RiskyChange).router(R::Switch).replicas(2));
        assert_eq!(r.strategy, Recommended::BlueGreen);
        assert_eq!(recommend(&Change::new(RiskyChange).replicas(2)).strategy, Recommended::Rolling);
    }
}
