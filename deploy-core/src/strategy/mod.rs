//! Strategies turn an application and its current state into a [`Plan`]; they do
//! nothing else. The engine executes plans.
//!
//! ```
//! use deploy_core::strategy::{Canary, PlanInput, Strategy};
//! let plan = Canary::default().plan(&PlanInput::new(10));
//! let weights: Vec<u8> = plan.steps.iter().filter_map(|s| match s {
//!     deploy_core::plan::Step::SetWeight(w) => Some(w.value()),
//!     _ => None,
//! }).collect();
//! assert_eq!(weights, [10, 25, 50, 75, 100]);
//! ```

mod blue_green;
mod canary;
mod rolling;

use serde::{Deserialize, Serialize};

pub use blue_green::{AutoPromotion, BlueGreen};
pub use canary::{Canary, FlaggerAnalysis};
pub use rolling::RollingUpdate;

use crate::model::StrategyKind;
use crate::model::Track;
use crate::plan::Plan;

/// What a strategy needs to know about the application to plan its rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanInput {
    /// The replicas the application should run.
    pub replicas: u32,
    /// The track that serves the previous release now (`stable`, or the live colour
    /// of a blue-green pair).
    pub live_track: Track,
}

impl PlanInput {
    /// `replicas` replicas, the previous release on `stable`.
    pub fn new(replicas: u32) -> Self {
        Self { replicas, live_track: Track::Stable }
    }

    /// Sets the track that serves now.
    #[must_use]
    pub fn live_track(mut self, track: Track) -> Self {
        self.live_track = track;
        self
    }
}

/// Produces a plan; object safe so tools can hold `Box<dyn Strategy>`.
pub trait Strategy: Send + Sync {
    /// The family of the strategy.
    fn kind(&self) -> StrategyKind;

    /// The plan for `input`. Plans are not validated here: call
    /// [`Plan::validate`] with the router's capabilities (the engine does).
    fn plan(&self, input: &PlanInput) -> Plan;
}

/// Any of the built-in strategies, as configuration files name them.
///
/// ```
/// use deploy_core::strategy::{PlanInput, Strategy, StrategySpec};
/// let spec: StrategySpec = serde_json::from_str(r#"{"rolling":{"max_surge":1,"max_unavailable":"0%"}}"#).unwrap();
/// assert_eq!(spec.plan(&PlanInput::new(3)).strategy.as_str(), "rolling");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StrategySpec {
    /// A rolling update.
    Rolling(RollingUpdate),
    /// Blue-green.
    BlueGreen(Box<BlueGreen>),
    /// Canary.
    Canary(Canary),
}

impl Strategy for StrategySpec {
    fn kind(&self) -> StrategyKind {
        match self {
            Self::Rolling(s) => s.kind(),
            Self::BlueGreen(s) => s.kind(),
            Self::Canary(s) => s.kind(),
        }
    }

    fn plan(&self, input: &PlanInput) -> Plan {
        match self {
            Self::Rolling(s) => s.plan(input),
            Self::BlueGreen(s) => s.plan(input),
            Self::Canary(s) => s.plan(input),
        }
    }
}
