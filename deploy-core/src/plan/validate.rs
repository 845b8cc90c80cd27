//! Plan validation: every problem of a plan, checked against what the router can
//! do, as typed [`PlanProblem`]s.

use std::collections::BTreeMap;

use super::problem::{PlanErrors, PlanProblem, PlanProblemKind};
use super::{PauseKind, Plan, Step, canary_replicas};
use crate::model::{IntOrPercent, Percent, Track, TrafficSplit, ValidationErrors};
use crate::traffic::{HTTP_METHODS, RouterCapabilities, split_of_replicas};

impl Plan {
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
    pub fn validate(&self, router: Option<RouterCapabilities>) -> Result<(), PlanErrors> {
        let mut problems = Vec::new();
        let mut bad = |kind: PlanProblemKind| problems.push(PlanProblem::plan(kind));
        if self.replicas == 0 {
            bad(PlanProblemKind::NoReplicas);
        }
        if self.steps.is_empty() {
            bad(PlanProblemKind::NoSteps);
        }
        let in_place = self.old_track == self.new_track;
        if in_place && (self.new_track != self.final_track) {
            bad(PlanProblemKind::InPlaceMovesTrack {
                old: self.old_track,
                new: self.new_track,
                final_track: self.final_track,
            });
        }
        let canary = !in_place && self.final_track == self.old_track;
        let switches = !in_place && self.final_track == self.new_track;
        let promotes = self.steps.iter().filter(|s| matches!(s, Step::Promote)).count();
        if !in_place && promotes != 1 {
            bad(PlanProblemKind::PromoteCount { found: promotes });
        }
        if switches && router.is_none() {
            bad(PlanProblemKind::SwitchNeedsRouter { strategy: self.strategy });
        }
        let mut promoted = false;
        // Whether a step before this one changes the platform or the traffic.
        let mut changed = false;
        let mut hooks: Vec<&str> = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let step_kind = step.kind();
            let mut bad = |kind: PlanProblemKind| problems.push(PlanProblem::step(i, step_kind, kind));
            let strategy = self.strategy;
            let was_changed = changed;
            changed |= !matches!(step, Step::Hook { .. } | Step::Pause(_) | Step::Analyze(_));
            match step {
                Step::Hook { when, hook } => {
                    if hooks.contains(&hook.name.as_str()) {
                        bad(PlanProblemKind::DuplicateHook { name: hook.name.to_string() });
                    }
                    hooks.push(hook.name.as_str());
                    if hook.deadline.is_zero() {
                        bad(PlanProblemKind::HookDeadlineZero { hook: hook.to_string() });
                    }
                    match when {
                        crate::hook::HookWhen::BeforeRollout if was_changed => {
                            bad(PlanProblemKind::BeforeRolloutHookTooLate { hook: hook.to_string() });
                        }
                        crate::hook::HookWhen::AfterPromotion if !promoted => {
                            bad(PlanProblemKind::AfterPromotionHookTooEarly { hook: hook.to_string() });
                        }
                        _ => {}
                    }
                }
                Step::DeployTrack { track, replicas } => {
                    if *replicas == 0 {
                        bad(PlanProblemKind::DeployNoReplicas);
                    }
                    if *track != self.new_track {
                        bad(PlanProblemKind::DeployNotNewTrack { track: *track });
                    }
                }
                Step::RollingUpdate { replicas, max_surge, max_unavailable } => {
                    // An update in place makes the new release serve.
                    promoted = true;
                    if !in_place || self.old_track != Track::Stable {
                        bad(PlanProblemKind::RollingUpdateNotInPlace { track: self.new_track });
                    }
                    if *replicas == 0 {
                        bad(PlanProblemKind::RollingUpdateNoReplicas);
                    }
                    let zero = |v: &IntOrPercent| {
                        matches!(v, IntOrPercent::Int(0)) || *v == IntOrPercent::Percent(Percent::ZERO)
                    };
                    if zero(max_surge) && zero(max_unavailable) {
                        bad(PlanProblemKind::RollingUpdateCannotProgress {
                            max_surge: *max_surge,
                            max_unavailable: *max_unavailable,
                        });
                    }
                }
                Step::WaitReady { track } => {
                    if !self.tracks().contains(track) {
                        bad(PlanProblemKind::WaitReadyUnknownTrack { track: *track });
                    }
                }
                Step::SetWeight(weight) => {
                    if !canary {
                        bad(PlanProblemKind::WeightOutsideCanary { strategy });
                    }
                    if promoted {
                        bad(PlanProblemKind::WeightAfterPromotion { strategy });
                    }
                    if canary {
                        for kind in self.weight_problems(*weight, router) {
                            bad(kind);
                        }
                    }
                }
                Step::SetCanaryScale(scale) => {
                    if !router.is_some_and(|r| r.weights) {
                        bad(PlanProblemKind::CanaryScaleNeedsWeights { scale: *scale });
                    }
                    if let Some(n) = router.and_then(|r| r.weight_replicas.filter(|_| r.weights)) {
                        bad(PlanProblemKind::CanaryScaleFollowsRouter { scale: *scale, replicas: n });
                    }
                    if !canary {
                        bad(PlanProblemKind::CanaryScaleOutsideCanary { strategy });
                    }
                }
                Step::HeaderRoute(route) => {
                    match router {
                        Some(r) if r.header_routes => {
                            let kind = route.matches.kind();
                            if !r.header_matches.contains(kind) {
                                bad(PlanProblemKind::HeaderMatchUnsupported {
                                    route: route.clone(),
                                    kind,
                                    supported: r.header_matches,
                                });
                            }
                            if !r.header_route_tracks.contains(route.track) {
                                bad(PlanProblemKind::HeaderRouteTrackUnsupported {
                                    route: route.clone(),
                                    supported: r.header_route_tracks,
                                });
                            }
                        }
                        _ => bad(PlanProblemKind::HeaderRoutesUnsupported { route: route.clone() }),
                    }
                    if route.header.trim().is_empty() {
                        bad(PlanProblemKind::HeaderNameEmpty { route: route.clone() });
                    }
                    if route.track != self.new_track {
                        bad(PlanProblemKind::HeaderRouteNotNewTrack { route: route.clone() });
                    }
                    if promoted {
                        bad(PlanProblemKind::HeaderRouteAfterPromotion { route: route.clone() });
                    }
                }
                Step::Mirror(mirror) => {
                    if !router.is_some_and(|r| r.mirroring) {
                        bad(PlanProblemKind::MirrorUnsupported { mirror: mirror.clone() });
                    }
                    if in_place {
                        bad(PlanProblemKind::MirrorInPlace { mirror: mirror.clone() });
                    }
                    if promoted {
                        bad(PlanProblemKind::MirrorAfterPromotion { mirror: mirror.clone() });
                    }
                    if mirror.percent == Percent::ZERO {
                        bad(PlanProblemKind::MirrorNothing { mirror: mirror.clone() });
                    }
                    if mirror.methods.is_empty() {
                        bad(PlanProblemKind::MirrorNoMethods { mirror: mirror.clone() });
                    }
                    for method in &mirror.methods {
                        if !HTTP_METHODS.contains(&method.as_str()) {
                            bad(PlanProblemKind::MirrorNotHttpMethod { method: method.clone() });
                        }
                    }
                }
                Step::Pause(PauseKind::Duration(d)) if d.is_zero() => bad(PlanProblemKind::PauseZero { duration: *d }),
                Step::Pause(_) => {}
                Step::Analyze(spec) => {
                    let mut inner = ValidationErrors::new();
                    spec.collect_problems(&format!("step {} ({step_kind}) analysis", i + 1), &mut inner);
                    for e in inner {
                        bad(PlanProblemKind::Analysis(e));
                    }
                }
                Step::Promote => promoted = true,
                Step::ScaleDownAfter(_) => {
                    if !promoted {
                        bad(PlanProblemKind::ScaleDownBeforePromotion { strategy });
                    }
                }
            }
        }
        if let Some(r) = router {
            for track in self.tracks() {
                if !r.tracks.contains(track) {
                    problems
                        .push(PlanProblem::plan(PlanProblemKind::RouterCannotRouteTrack { track, routable: r.tracks }));
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
                problems.push(PlanProblem::plan(PlanProblemKind::TooManyHeaderRoutes {
                    headers: headers.iter().map(|h| (*h).to_owned()).collect(),
                    max,
                }));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(PlanErrors { problems }) }
    }

    /// What stops `weight` from being reached as asked: a switch-only router, tracks
    /// that cannot share traffic, or a weight that rounds to 0 % or 100 % of the
    /// replicas that carry it (with the replicas that would be needed).
    fn weight_problems(&self, weight: Percent, router: Option<RouterCapabilities>) -> Vec<PlanProblemKind> {
        let mut problems = Vec::new();
        if weight == Percent::ZERO {
            return problems;
        }
        let (old, new) = (self.old_track, self.new_track);
        if let Some(r) = router {
            if r.switch_only {
                problems.push(PlanProblemKind::WeightNeedsSplittingRouter { weight });
                return problems;
            }
            for track in [old, new] {
                if !r.split_tracks.contains(track) {
                    problems.push(PlanProblemKind::WeightTrackNotSplittable {
                        weight,
                        new,
                        track,
                        splittable: r.split_tracks,
                    });
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
            problems.push(PlanProblemKind::WeightRoundsAway { weight, replicas, effective: got, new, needed });
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
