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

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisSpec;

use crate::model::{
    HumanDuration, IntOrPercent, Percent, StrategyKind, Track, TrafficSplit, ValidationError, ValidationErrors,
};
use crate::traffic::{HTTP_METHODS, HeaderRoute, Mirror, RouterCapabilities, split_of_replicas};

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

    /// Every problem with the plan, checked against what the router can do
    /// (`None`: there is no router). A plan that needs a capability the router lacks
    /// (header routes, an explicit canary scale, a traffic switch) is rejected here
    /// rather than ignored mid-rollout. Weights without a weighted router are
    /// reached by replica ratio and are accepted.
    ///
    /// ```
    /// use deploy_core::plan::{Plan, Step, PauseKind};
    /// use deploy_core::model::StrategyKind;
    /// use deploy_core::model::{HumanDuration, Track};
    /// use deploy_core::traffic::{HeaderMatch, HeaderRoute, RouterCapabilities};
    /// let plan = Plan::new(StrategyKind::Canary, 0, Track::Stable, Track::Canary, Track::Stable)
    ///     .step(Step::HeaderRoute(HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Canary)))
    ///     .step(Step::Pause(PauseKind::Duration(HumanDuration::ZERO)));
    /// let errors = plan.validate(Some(RouterCapabilities::weights_only())).unwrap_err();
    /// // replicas, header route unsupported, zero pause, no promote: all at once
    /// assert_eq!(errors.len(), 4, "{errors}");
    /// ```
    pub fn validate(&self, router: Option<RouterCapabilities>) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let mut bad =
            |field: String, value: String, reason: &str| errors.push(ValidationError::new(field, value, reason));
        if self.replicas == 0 {
            bad("plan replicas".into(), "0".into(), "must be at least 1");
        }
        if self.steps.is_empty() {
            bad("plan steps".into(), String::new(), "must not be empty");
        }
        let in_place = self.old_track == self.new_track;
        if in_place && (self.new_track != self.final_track) {
            bad(
                "plan tracks".into(),
                format!("{} -> {} -> {}", self.old_track, self.new_track, self.final_track),
                "an in-place update must end on the track it updates",
            );
        }
        let canary = !in_place && self.final_track == self.old_track;
        let switches = !in_place && self.final_track == self.new_track;
        let promotes = self.steps.iter().filter(|s| matches!(s, Step::Promote)).count();
        if !in_place && promotes != 1 {
            bad(
                "plan steps".into(),
                format!("{promotes} promote steps"),
                "a plan with a new track must promote exactly once",
            );
        }
        if switches && router.is_none() {
            bad(
                "plan router".into(),
                self.strategy.to_string(),
                "switching all traffic to the new track needs a traffic router",
            );
        }
        let mut promoted = false;
        // Whether a step before this one changes the platform or the traffic.
        let mut changed = false;
        let mut hooks: Vec<&str> = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let field = format!("step {} ({})", i + 1, step.kind());
            let mut bad = |value: String, reason: &str| errors.push(ValidationError::new(field.clone(), value, reason));
            let was_changed = changed;
            changed |= !matches!(step, Step::Hook { .. } | Step::Pause(_) | Step::Analyze(_));
            match step {
                Step::Hook { when, hook } => {
                    if hooks.contains(&hook.name.as_str()) {
                        bad(hook.name.to_string(), "hook names must be unique in a plan");
                    }
                    hooks.push(hook.name.as_str());
                    if hook.deadline.is_zero() {
                        bad(hook.to_string(), "a hook's deadline must be positive");
                    }
                    match when {
                        crate::hook::HookWhen::BeforeRollout if was_changed => bad(
                            hook.to_string(),
                            "a before-rollout hook must come before every step that changes the platform or the traffic",
                        ),
                        crate::hook::HookWhen::AfterPromotion if !promoted => bad(
                            hook.to_string(),
                            "an after-promotion hook must come after the step that makes the new release serve",
                        ),
                        _ => {}
                    }
                }
                Step::DeployTrack { track, replicas } => {
                    if *replicas == 0 {
                        bad("0".into(), "must deploy at least one replica");
                    }
                    if *track != self.new_track {
                        bad(track.to_string(), "only the new track is deployed to before promotion");
                    }
                }
                Step::RollingUpdate { replicas, max_surge, max_unavailable } => {
                    // An update in place makes the new release serve.
                    promoted = true;
                    if !in_place || self.old_track != Track::Stable {
                        bad(self.new_track.to_string(), "a rolling update only updates the stable track in place");
                    }
                    if *replicas == 0 {
                        bad("0".into(), "must update to at least one replica");
                    }
                    let zero = |v: &IntOrPercent| {
                        matches!(v, IntOrPercent::Int(0)) || *v == IntOrPercent::Percent(Percent::ZERO)
                    };
                    if zero(max_surge) && zero(max_unavailable) {
                        bad(
                            format!("{max_surge}/{max_unavailable}"),
                            "max surge and max unavailable must not both be 0",
                        );
                    }
                }
                Step::WaitReady { track } => {
                    if !self.tracks().contains(track) {
                        bad(track.to_string(), "is not one of the plan's tracks");
                    }
                }
                Step::SetWeight(weight) => {
                    if !canary {
                        bad(self.strategy.to_string(), "weights are only set by canary plans");
                    }
                    if promoted {
                        bad(self.strategy.to_string(), "weights cannot change after promotion");
                    }
                    if canary {
                        for (value, reason) in self.weight_problems(*weight, router) {
                            bad(value, &reason);
                        }
                    }
                }
                Step::SetCanaryScale(scale) => {
                    if !router.is_some_and(|r| r.weights) {
                        bad(format!("{scale:?}"), "needs a traffic router with weights");
                    }
                    if let Some(n) = router.and_then(|r| r.weight_replicas.filter(|_| r.weights)) {
                        bad(
                            format!("{scale:?}"),
                            &format!(
                                "the traffic router's weights are its replicas ({n}); the canary's scale follows them"
                            ),
                        );
                    }
                    if !canary {
                        bad(self.strategy.to_string(), "only canary plans scale a canary");
                    }
                }
                Step::HeaderRoute(route) => {
                    match router {
                        Some(r) if r.header_routes => {
                            let kind = route.matches.kind();
                            if !r.header_matches.contains(kind) {
                                bad(
                                    route.to_string(),
                                    &format!(
                                        "the traffic router cannot match a header by {kind} (it matches by {})",
                                        r.header_matches
                                    ),
                                );
                            }
                            if !r.header_route_tracks.contains(route.track) {
                                bad(
                                    route.to_string(),
                                    &format!(
                                        "the traffic router cannot route a header to {} (only to {})",
                                        route.track, r.header_route_tracks
                                    ),
                                );
                            }
                        }
                        _ => bad(route.to_string(), "the traffic router cannot route by header"),
                    }
                    if route.header.trim().is_empty() {
                        bad(route.to_string(), "the header name must not be empty");
                    }
                    if route.track != self.new_track {
                        bad(route.to_string(), "header routes may only point at the new track");
                    }
                    if promoted {
                        bad(route.to_string(), "header routes cannot be added after promotion");
                    }
                }
                Step::Mirror(mirror) => {
                    if !router.is_some_and(|r| r.mirroring) {
                        bad(mirror.to_string(), "the traffic router cannot mirror traffic");
                    }
                    if in_place {
                        bad(mirror.to_string(), "mirroring needs a new track apart from the serving one");
                    }
                    if promoted {
                        bad(mirror.to_string(), "mirroring cannot start after promotion");
                    }
                    if mirror.percent == Percent::ZERO {
                        bad(mirror.to_string(), "must mirror more than 0%");
                    }
                    if mirror.methods.is_empty() {
                        bad(mirror.to_string(), "must list the methods that are safe to duplicate");
                    }
                    for method in &mirror.methods {
                        if !HTTP_METHODS.contains(&method.as_str()) {
                            bad(method.clone(), "is not an HTTP method");
                        }
                    }
                }
                Step::Pause(PauseKind::Duration(d)) if d.is_zero() => bad(d.to_string(), "a pause must be positive"),
                Step::Pause(_) => {}
                Step::Analyze(spec) => {
                    let mut inner = ValidationErrors::new();
                    spec.collect_problems(&format!("{field} analysis"), &mut inner);
                    errors.extend(inner);
                }
                Step::Promote => promoted = true,
                Step::ScaleDownAfter(_) => {
                    if !promoted {
                        bad(self.strategy.to_string(), "scaling down must come after the promotion");
                    }
                }
            }
        }
        if let Some(r) = router {
            for track in self.tracks() {
                if !r.tracks.contains(track) {
                    errors.push(ValidationError::new(
                        "plan tracks",
                        track.to_string(),
                        format!("the traffic router cannot route this track (only {})", r.tracks),
                    ));
                }
            }
            let mut headers: Vec<&str> = Vec::new();
            for step in &self.steps {
                if let Step::HeaderRoute(route) = step
                    && !headers.contains(&route.header.as_str())
                {
                    headers.push(&route.header);
                }
            }
            if r.header_routes
                && let Some(max) = r.max_header_routes
                && headers.len() > usize::try_from(max).unwrap_or(usize::MAX)
            {
                errors.push(ValidationError::new(
                    "plan steps",
                    format!("{} header routes ({})", headers.len(), headers.join(", ")),
                    format!("the traffic router holds at most {max} header route{} at once", plural(max)),
                ));
            }
        }
        errors.into_result(())
    }

    /// What stops `weight` from being reached as asked: a switch-only router, tracks
    /// that cannot share traffic, or a weight that rounds to 0 % or 100 % of the
    /// replicas that carry it (with the replicas that would be needed).
    fn weight_problems(&self, weight: Percent, router: Option<RouterCapabilities>) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if weight == Percent::ZERO {
            return problems;
        }
        let (old, new) = (self.old_track, self.new_track);
        if let Some(r) = router {
            if r.switch_only {
                problems.push((
                    weight.to_string(),
                    "the traffic router only switches whole tracks: a canary weight would send the new track nothing, \
                     or take all traffic from the old one; use blue-green or a router with weights"
                        .to_owned(),
                ));
                return problems;
            }
            for track in [old, new] {
                if !r.split_tracks.contains(track) {
                    problems.push((
                        format!("{weight} to {new}"),
                        format!("the traffic router cannot split traffic to {track} (only between {})", r.split_tracks),
                    ));
                }
            }
        }
        if weight == Percent::HUNDRED || self.replicas == 0 {
            return problems;
        }
        // Who divides replicas: the router (its own count) or the engine (the plan's).
        let (replicas, by_router) = match router {
            Some(r) if r.weights => match r.weight_replicas {
                Some(n) => (n, true),
                None => return problems,
            },
            _ => (self.replicas, false),
        };
        let effective = |n: u32, w: Percent| replica_ratio_weight(n, w, by_router);
        let got = effective(replicas, weight);
        if got == Percent::ZERO || got == Percent::HUNDRED {
            let needed = (2..=100).find(|n| {
                let w = effective(*n, weight);
                w != Percent::ZERO && w != Percent::HUNDRED
            });
            let needed = needed.map_or_else(String::new, |n| format!("; it needs at least {n} replicas"));
            problems.push((
                format!("{weight} with {replicas} replica{}", plural(replicas)),
                format!("the split by replicas would send {got} to {new}, not a share{needed}"),
            ));
        }
        problems
    }
}

/// The weight the new track really gets when `weight` is reached with `replicas`
/// replicas: divided by a router ([`RouterCapabilities::replica_ratio`]) or by the
/// engine (canary replicas rounded up, [`canary_replicas`]).
fn replica_ratio_weight(replicas: u32, weight: Percent, by_router: bool) -> Percent {
    let requested = TrafficSplit::canary(weight);
    if by_router {
        return RouterCapabilities::replica_ratio(replicas).effective_split(&requested).weight(Track::Canary);
    }
    let canary = canary_replicas(replicas, weight).min(replicas);
    split_of_replicas(&BTreeMap::from([(Track::Stable, replicas - canary), (Track::Canary, canary)]))
        .map_or(Percent::ZERO, |s| s.weight(Track::Canary))
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
mod tests {
    use super::*;
    use crate::analysis::{JudgeSpec, MetricCheck};
    use crate::traffic::HeaderMatch;

    fn p(v: u8) -> Percent {
        Percent::new(v).unwrap()
    }

    #[test]
    fn validation_lists_every_problem_of_a_broken_canary() {
        let bad_analysis = AnalysisSpec::new("a").count(0).metric(MetricCheck::new("m", "", JudgeSpec::max(1.0)));
        let plan = Plan::new(StrategyKind::Canary, 5, Track::Stable, Track::Canary, Track::Stable)
            .step(Step::DeployTrack { track: Track::Canary, replicas: 0 })
            .step(Step::SetCanaryScale(CanaryScale::Replicas(2)))
            .step(Step::HeaderRoute(HeaderRoute::new("x", HeaderMatch::Exact("1".into()), Track::Stable)))
            .step(Step::Analyze(bad_analysis))
            .step(Step::ScaleDownAfter(HumanDuration::ZERO))
            .step(Step::Pause(PauseKind::Duration(HumanDuration::ZERO)));
        let errors = plan.validate(Some(RouterCapabilities::switch_only())).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "plan steps",
                "step 1 (deploy-track)",
                "step 2 (set-canary-scale)",
                "step 3 (header-route)",
                "step 3 (header-route)",
                "step 4 (analyze) analysis count",
                "step 4 (analyze) analysis metric m query",
                "step 5 (scale-down)",
                "step 6 (pause)",
            ],
            "{errors}"
        );
    }

    #[test]
    fn blue_green_needs_a_router_and_rolling_needs_surge_or_unavailability() {
        let bg = Plan::new(StrategyKind::BlueGreen, 2, Track::Blue, Track::Green, Track::Green)
            .step(Step::DeployTrack { track: Track::Green, replicas: 2 })
            .step(Step::Promote);
        assert!(bg.validate(Some(RouterCapabilities::switch_only())).is_ok());
        let err = bg.validate(None).unwrap_err();
        assert!(err.to_string().contains("needs a traffic router"), "{err}");

        let rolling = Plan::new(StrategyKind::Rolling, 3, Track::Stable, Track::Stable, Track::Stable).step(
            Step::RollingUpdate {
                replicas: 3,
                max_surge: IntOrPercent::Int(0),
                max_unavailable: IntOrPercent::Percent(p(0)),
            },
        );
        let err = rolling.validate(None).unwrap_err();
        assert!(err.to_string().contains("must not both be 0"), "{err}");
    }

    fn canary_plan(replicas: u32, old: Track, new: Track) -> Plan {
        Plan::new(StrategyKind::Canary, replicas, old, new, old)
            .step(Step::DeployTrack { track: new, replicas: 1 })
            .step(Step::SetWeight(p(10)))
            .step(Step::SetWeight(p(60)))
            .step(Step::Promote)
    }

    /// Issue 17, item 3: every capability a plan needs and its router lacks is
    /// reported at once, by validation, before anything runs.
    #[test]
    fn validation_lists_every_capability_the_router_lacks() {
        use crate::traffic::{HeaderMatchKind, HeaderMatchKinds, TrackSet};
        let stable_canary = TrackSet::of([Track::Stable, Track::Canary]);
        // An NGINX-like router: stable and canary, exact/regex headers to the canary, one at a time.
        let nginx = RouterCapabilities::weights_only()
            .with_tracks(stable_canary)
            .with_header_routes()
            .with_header_matches(HeaderMatchKinds::of([HeaderMatchKind::Exact, HeaderMatchKind::Regex]))
            .with_header_route_tracks(TrackSet::of([Track::Canary]))
            .with_max_header_routes(1);
        let route = |h: &str, m: HeaderMatch| Step::HeaderRoute(HeaderRoute::new(h, m, Track::Canary));
        let plan = canary_plan(4, Track::Stable, Track::Canary);
        assert!(plan.validate(Some(nginx)).is_ok());
        let mut headers = plan.clone();
        headers.steps.insert(1, route("x-a", HeaderMatch::Prefix("b".into())));
        headers.steps.insert(1, route("x-b", HeaderMatch::Exact("1".into())));
        let errors = headers.validate(Some(nginx)).unwrap_err();
        let text = errors.to_string();
        assert_eq!(errors.len(), 2, "{text}");
        assert!(text.contains("cannot match a header by prefix (it matches by exact, regex)"), "{text}");
        assert!(text.contains("2 header routes (x-b, x-a)") && text.contains("at most 1 header route"), "{text}");
        // Blue-green behind a router of stable and canary: both colours named.
        let bg = Plan::new(StrategyKind::BlueGreen, 2, Track::Blue, Track::Green, Track::Green)
            .step(Step::DeployTrack { track: Track::Green, replicas: 2 })
            .step(Step::Promote);
        let text = bg.validate(Some(nginx)).unwrap_err().to_string();
        assert!(text.contains("\"blue\": the traffic router cannot route this track (only stable, canary)"), "{text}");
        assert!(text.contains("\"green\": the traffic router cannot route this track"), "{text}");
        // A canary weight behind a switch-only router is refused, naming why.
        let text = plan.validate(Some(RouterCapabilities::switch_only())).unwrap_err().to_string();
        assert!(text.contains("only switches whole tracks"), "{text}");
        assert_eq!(plan.validate(Some(RouterCapabilities::switch_only())).unwrap_err().len(), 2, "both weights");
        // A header route to the stable track of a router that routes headers only to the canary.
        let to_stable = Plan::new(StrategyKind::Canary, 4, Track::Canary, Track::Stable, Track::Canary)
            .step(Step::HeaderRoute(HeaderRoute::new("x", HeaderMatch::Exact("1".into()), Track::Stable)))
            .step(Step::Promote);
        let text = to_stable.validate(Some(nginx)).unwrap_err().to_string();
        assert!(text.contains("cannot route a header to stable (only to canary)"), "{text}");
        // Weights between tracks that cannot share traffic.
        let docker_like = RouterCapabilities::default().with_split_tracks(stable_canary);
        let text = canary_plan(4, Track::Blue, Track::Green).validate(Some(docker_like)).unwrap_err().to_string();
        assert!(
            text.contains("cannot split traffic to blue") && text.contains("cannot split traffic to green"),
            "{text}"
        );
    }

    /// Issue 17, item 2: a weight that replicas round to 0 % or 100 % is refused
    /// with the replicas it needs, for a router that divides replicas and for the
    /// engine's own replica ratio.
    #[test]
    fn weights_that_round_to_nothing_or_everything_are_refused_with_the_replicas_needed() {
        let plan = canary_plan(1, Track::Stable, Track::Canary);
        let errors = plan.validate(Some(RouterCapabilities::replica_ratio(1))).unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("10% with 1 replica\": the split by replicas would send 0% to canary"), "{text}");
        assert!(text.contains("60% with 1 replica\": the split by replicas would send 100% to canary"), "{text}");
        assert!(text.contains("needs at least 2 replicas"), "{text}");
        // No router: the engine scales the plan's one replica; 10 % would be 100 %.
        let text = plan.validate(None).unwrap_err().to_string();
        assert!(text.contains("10% with 1 replica\": the split by replicas would send 100% to canary"), "{text}");
        // Enough replicas: accepted, and the router's rounding is what it reports.
        assert!(
            canary_plan(4, Track::Stable, Track::Canary).validate(Some(RouterCapabilities::replica_ratio(4))).is_ok()
        );
        assert!(canary_plan(3, Track::Stable, Track::Canary).validate(None).is_ok());
        // 60 % of 2 replicas rounded up is both of them: all traffic, not a share.
        assert!(canary_plan(2, Track::Stable, Track::Canary).validate(None).is_err());
        // The engine's ratio needs 100 replicas for 99 %; the router's rounding needs 2.
        let p99 = Plan::new(StrategyKind::Canary, 3, Track::Stable, Track::Canary, Track::Stable)
            .step(Step::SetWeight(p(99)))
            .step(Step::Promote);
        let text = p99.validate(None).unwrap_err().to_string();
        assert!(text.contains("needs at least 100 replicas"), "{text}");
        assert!(p99.validate(Some(RouterCapabilities::replica_ratio(3))).is_ok());
        // A router whose weights are replicas sets the canary's scale itself.
        let scaled = canary_plan(4, Track::Stable, Track::Canary).step(Step::SetCanaryScale(CanaryScale::Replicas(1)));
        let text = scaled.validate(Some(RouterCapabilities::replica_ratio(4))).unwrap_err().to_string();
        assert!(text.contains("weights are its replicas (4)"), "{text}");
    }

    #[test]
    fn plans_round_trip_and_print() {
        let plan = Plan::new(StrategyKind::Canary, 4, Track::Stable, Track::Canary, Track::Stable)
            .step(Step::DeployTrack { track: Track::Canary, replicas: 1 })
            .step(Step::SetWeight(p(10)))
            .step(Step::Pause(PauseKind::Duration("30s".parse().unwrap())))
            .step(Step::Promote)
            .step(Step::ScaleDownAfter("30s".parse().unwrap()));
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        let text = plan.to_string();
        assert!(text.starts_with("canary plan, 4 replicas: previous release on stable"), "{text}");
        assert!(text.contains("   3. pause for 30s\n"), "{text}");
        assert!(text.contains("   5. scale down what no longer serves after 30s\n"), "{text}");
    }
}
