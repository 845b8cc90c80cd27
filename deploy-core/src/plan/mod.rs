//! Plans: what a strategy decided to do, as plain data the engine executes.
//!
//! A plan can be printed (`--dry-run`), serialized, diffed and tested. It names
//! three tracks: where the previous release runs (`old_track`), where the new
//! release is tried (`new_track`) and where the new release runs once promoted
//! (`final_track`). A rolling update uses `stable` for all three; a canary tries on
//! `canary` and ends on `stable`; blue-green tries on the idle colour and ends there.
//!
//! ```
//! use deploy_core::plan::{Plan, Step, PauseKind};
//! use deploy_core::model::StrategyKind;
//! use deploy_core::model::{Percent, Track};
//! let plan = Plan::new(StrategyKind::Canary, 4, Track::Stable, Track::Canary, Track::Stable)
//!     .step(Step::DeployTrack { track: Track::Canary, replicas: 1 })
//!     .step(Step::WaitReady { track: Track::Canary })
//!     .step(Step::SetWeight(Percent::new(25).unwrap()))
//!     .step(Step::Pause(PauseKind::UntilPromoted))
//!     .step(Step::Promote);
//! assert!(plan.validate(None).is_ok()); // no router: the weight is reached by replica ratio
//! assert!(plan.to_string().contains("3. set canary weight to 25%"));
//! ```

mod problem;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisSpec;
use crate::model::{HumanDuration, IntOrPercent, Percent, StrategyKind, Track};
use crate::traffic::{HeaderRoute, Mirror};

pub use problem::{PlanErrors, PlanProblem, PlanProblemKind};

/// How long a pause lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PauseKind {
    /// A fixed time; a promotion ends it early.
    Duration(HumanDuration),
    /// Until the caller promotes the rollout.
    UntilPromoted,
}

/// How many replicas the canary runs, independent of its traffic weight (Argo
/// Rollouts' `setCanaryScale`); needs a router with weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CanaryScale {
    /// Exactly this many replicas.
    Replicas(u32),
    /// This share of the plan's replicas, rounded up.
    Weight(Percent),
    /// Back to the default: replicas follow the traffic weight.
    MatchTrafficWeight,
}

/// One thing the engine does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Creates or updates `track` to run the new release with `replicas` replicas.
    DeployTrack {
        /// The track.
        track: Track,
        /// Its replicas.
        replicas: u32,
    },
    /// Updates the stable track in place with the platform's native rolling update.
    RollingUpdate {
        /// Desired replicas.
        replicas: u32,
        /// Pods allowed above `replicas` during the update.
        max_surge: IntOrPercent,
        /// Pods of `replicas` allowed to be unavailable during the update.
        max_unavailable: IntOrPercent,
    },
    /// Waits until `track` is ready (the engine's readiness deadline applies).
    WaitReady {
        /// The track.
        track: Track,
    },
    /// Sends this share of traffic to the new track: by router weights when the
    /// router has them, otherwise by replica ratio.
    SetWeight(Percent),
    /// Sets the canary's replicas apart from its weight.
    SetCanaryScale(CanaryScale),
    /// Routes requests whose header matches to a track.
    HeaderRoute(HeaderRoute),
    /// Copies a share of the requests whose method the caller lists as safe to
    /// duplicate to the new track, whose answers are discarded; needs a router
    /// with mirroring. Mirroring stops at promotion and on rollback.
    Mirror(Mirror),
    /// Waits for a time or for the caller.
    Pause(PauseKind),
    /// Runs an analysis; a failed or inconclusive one rolls back.
    Analyze(AnalysisSpec),
    /// Makes the new release the one that serves: it runs on the final track with
    /// all replicas and receives all traffic; header routes are removed.
    Promote,
    /// After a delay, removes the tracks that no longer serve (the old colour, the canary).
    ScaleDownAfter(HumanDuration),
    /// Runs a one-shot job on the platform: a `BeforeRollout` hook where it stands
    /// (before anything changes), an `AfterPromotion` hook where it stands (after
    /// the promotion), an `OnRollback` hook only after a rollback restored the
    /// previous release.
    Hook {
        /// When it runs.
        when: crate::hook::HookWhen,
        /// What it runs.
        hook: crate::hook::HookSpec,
    },
}

impl Step {
    /// A short name of the step's kind, for spans and tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DeployTrack { .. } => "deploy-track",
            Self::RollingUpdate { .. } => "rolling-update",
            Self::WaitReady { .. } => "wait-ready",
            Self::SetWeight(_) => "set-weight",
            Self::SetCanaryScale(_) => "set-canary-scale",
            Self::HeaderRoute(_) => "header-route",
            Self::Mirror(_) => "mirror",
            Self::Pause(_) => "pause",
            Self::Analyze(_) => "analyze",
            Self::Promote => "promote",
            Self::ScaleDownAfter(_) => "scale-down",
            Self::Hook { .. } => "hook",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeployTrack { track, replicas } => {
                write!(f, "deploy the new release to {track} with {replicas} replica{}", plural(*replicas))
            }
            Self::RollingUpdate { replicas, max_surge, max_unavailable } => {
                let (surge, unavailable) = resolve_rolling(*replicas, *max_surge, *max_unavailable);
                write!(
                    f,
                    "rolling update of stable to {replicas} replica{} (max surge {max_surge} = {surge}, max unavailable {max_unavailable} = {unavailable})",
                    plural(*replicas)
                )
            }
            Self::WaitReady { track } => write!(f, "wait until {track} is ready"),
            Self::SetWeight(w) => write!(f, "set canary weight to {w}"),
            Self::SetCanaryScale(CanaryScale::Replicas(n)) => write!(f, "scale canary to {n} replica{}", plural(*n)),
            Self::SetCanaryScale(CanaryScale::Weight(w)) => write!(f, "scale canary to {w} of the replicas"),
            Self::SetCanaryScale(CanaryScale::MatchTrafficWeight) => {
                f.write_str("scale canary with its traffic weight")
            }
            Self::HeaderRoute(route) => write!(f, "route {route}"),
            Self::Mirror(mirror) => write!(f, "mirror {mirror} to the new release"),
            Self::Pause(PauseKind::Duration(d)) => write!(f, "pause for {d}"),
            Self::Pause(PauseKind::UntilPromoted) => f.write_str("pause until promoted"),
            Self::Analyze(spec) => write!(f, "analyze {spec}"),
            Self::Promote => f.write_str("promote the new release"),
            Self::ScaleDownAfter(d) => write!(f, "scale down what no longer serves after {d}"),
            Self::Hook { when, hook } => write!(f, "run {hook} {when}"),
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Kubernetes' resolution of `maxSurge` (rounded up) and `maxUnavailable` (rounded
/// down), where both zero means one unavailable.
///
/// ```
/// use deploy_core::model::{IntOrPercent, Percent};
/// use deploy_core::plan::resolve_rolling;
/// let pct = |v| IntOrPercent::Percent(Percent::new(v).unwrap());
/// assert_eq!(resolve_rolling(10, pct(25), pct(25)), (3, 2));
/// assert_eq!(resolve_rolling(3, pct(10), pct(10)), (1, 0));
/// assert_eq!(resolve_rolling(1, pct(0), pct(0)), (0, 1));
/// ```
pub fn resolve_rolling(replicas: u32, max_surge: IntOrPercent, max_unavailable: IntOrPercent) -> (u32, u32) {
    crate::model::RollingUpdateParams::new(max_surge, max_unavailable).resolve(replicas)
}

/// The canary replicas that carry `weight` of `total`: rounded up, so any weight
/// above zero has at least one replica.
///
/// ```
/// use deploy_core::model::Percent;
/// use deploy_core::plan::canary_replicas;
/// assert_eq!(canary_replicas(10, Percent::new(25).unwrap()), 3);
/// assert_eq!(canary_replicas(3, Percent::new(10).unwrap()), 1);
/// assert_eq!(canary_replicas(3, Percent::ZERO), 0);
/// ```
pub fn canary_replicas(total: u32, weight: Percent) -> u32 {
    let scaled = u64::from(total) * u64::from(weight.value());
    u32::try_from(scaled.div_ceil(100)).unwrap_or(u32::MAX)
}

/// A strategy's decision: which tracks play which role and the steps to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Plan {
    /// The strategy that made it.
    pub strategy: StrategyKind,
    /// The replicas the application runs with when the plan is done.
    pub replicas: u32,
    /// Where the previous release runs and serves now.
    pub old_track: Track,
    /// Where the new release is tried.
    pub new_track: Track,
    /// Where the new release runs once promoted.
    pub final_track: Track,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// An empty plan; add steps with [`Plan::step`].
    pub fn new(strategy: StrategyKind, replicas: u32, old_track: Track, new_track: Track, final_track: Track) -> Self {
        Self { strategy, replicas, old_track, new_track, final_track, steps: Vec::new() }
    }

    /// Appends a step.
    #[must_use]
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// The tracks the plan touches, old track first.
    pub fn tracks(&self) -> Vec<Track> {
        let mut tracks = vec![self.old_track];
        for t in [self.new_track, self.final_track] {
            if !tracks.contains(&t) {
                tracks.push(t);
            }
        }
        tracks
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} plan, {} replica{}: ", self.strategy, self.replicas, plural(self.replicas))?;
        if self.old_track == self.new_track {
            writeln!(f, "update {} in place", self.old_track)?;
        } else {
            writeln!(
                f,
                "previous release on {}, new release tried on {}, promoted to {}",
                self.old_track, self.new_track, self.final_track
            )?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {:>2}. {step}", i + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
