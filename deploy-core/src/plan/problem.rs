//! What can be wrong with a plan: [`PlanProblem`] and its [`PlanProblemKind`],
//! returned by [`Plan::validate`](super::Plan::validate) as [`PlanErrors`].

use std::fmt;

use crate::model::{HumanDuration, IntOrPercent, Percent, StrategyKind, Track, ValidationError, ValidationErrors};
use crate::traffic::{HeaderMatchKind, HeaderMatchKinds, HeaderRoute, Mirror, TrackSet};

use super::{CanaryScale, plural};

/// One problem with a plan: the step it is in (none for the plan as a whole) and
/// what is wrong, with its data. Its `Display` is the sentence of the
/// [`ValidationError`] it converts to.
///
/// ```
/// use deploy_core::plan::{Plan, PlanProblemKind, Step};
/// use deploy_core::model::{StrategyKind, Track};
/// let plan = Plan::new(StrategyKind::Canary, 4, Track::Stable, Track::Canary, Track::Stable)
///     .step(Step::DeployTrack { track: Track::Canary, replicas: 0 })
///     .step(Step::Promote);
/// let errors = plan.validate(None).unwrap_err();
/// let problem = &errors.problems[0];
/// assert_eq!(problem.step, Some(0));
/// assert_eq!(problem.kind, PlanProblemKind::DeployNoReplicas);
/// assert_eq!(problem.to_string(), r#"invalid step 1 (deploy-track) "0": must deploy at least one replica"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanProblem {
    /// The step's index, from 0; `None` for a problem of the plan as a whole.
    pub step: Option<usize>,
    /// What is wrong.
    pub kind: PlanProblemKind,
    /// The step's kind (`deploy-track`), for the message.
    step_kind: &'static str,
}

impl PlanProblem {
    /// A problem of the plan as a whole.
    pub(crate) fn plan(kind: PlanProblemKind) -> Self {
        Self { step: None, kind, step_kind: "" }
    }

    /// A problem of step `index`, whose kind is `step_kind`.
    pub(crate) fn step(index: usize, step_kind: &'static str, kind: PlanProblemKind) -> Self {
        Self { step: Some(index), kind, step_kind }
    }

    /// The problem as a field, a value and a reason.
    pub fn to_validation_error(&self) -> ValidationError {
        let field = match self.step {
            Some(i) => format!("step {} ({})", i + 1, self.step_kind),
            None => self.kind.plan_field().to_owned(),
        };
        match &self.kind {
            PlanProblemKind::Analysis(e) => e.clone(),
            kind => {
                let (value, reason) = kind.value_and_reason();
                ValidationError::new(field, value, reason)
            }
        }
    }
}

impl fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_validation_error().fmt(f)
    }
}

/// What is wrong with a plan or one of its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanProblemKind {
    /// The plan has no replicas.
    NoReplicas,
    /// The plan has no steps.
    NoSteps,
    /// An in-place update (old track = new track) ends on another track.
    InPlaceMovesTrack {
        /// The old track.
        old: Track,
        /// The new track.
        new: Track,
        /// The final track.
        final_track: Track,
    },
    /// A plan with a new track does not promote exactly once.
    PromoteCount {
        /// How many promote steps it has.
        found: usize,
    },
    /// The plan switches all traffic to the new track without a router.
    SwitchNeedsRouter {
        /// The plan's strategy.
        strategy: StrategyKind,
    },
    /// The router cannot route one of the plan's tracks.
    RouterCannotRouteTrack {
        /// The track.
        track: Track,
        /// The tracks it can route.
        routable: TrackSet,
    },
    /// The plan holds more header routes at once than the router can.
    TooManyHeaderRoutes {
        /// The distinct headers routed.
        headers: Vec<String>,
        /// The router's limit.
        max: u32,
    },
    /// Two hooks have one name.
    DuplicateHook {
        /// The name.
        name: String,
    },
    /// A hook's deadline is zero.
    HookDeadlineZero {
        /// The hook, as it prints.
        hook: String,
    },
    /// A before-rollout hook comes after a step that changes the platform or the
    /// traffic.
    BeforeRolloutHookTooLate {
        /// The hook, as it prints.
        hook: String,
    },
    /// An after-promotion hook comes before the promotion.
    AfterPromotionHookTooEarly {
        /// The hook, as it prints.
        hook: String,
    },
    /// A deploy step with no replicas.
    DeployNoReplicas,
    /// A deploy step to another track than the new one.
    DeployNotNewTrack {
        /// The track it deploys to.
        track: Track,
    },
    /// A rolling update in a plan that is not in place on `stable`.
    RollingUpdateNotInPlace {
        /// The plan's new track.
        track: Track,
    },
    /// A rolling update to no replicas.
    RollingUpdateNoReplicas,
    /// A rolling update that can neither add nor remove a pod.
    RollingUpdateCannotProgress {
        /// Its max surge.
        max_surge: IntOrPercent,
        /// Its max unavailable.
        max_unavailable: IntOrPercent,
    },
    /// A readiness wait on a track the plan does not have.
    WaitReadyUnknownTrack {
        /// The track.
        track: Track,
    },
    /// A weight in a plan that is not a canary.
    WeightOutsideCanary {
        /// The plan's strategy.
        strategy: StrategyKind,
    },
    /// A weight after the promotion.
    WeightAfterPromotion {
        /// The plan's strategy.
        strategy: StrategyKind,
    },
    /// A canary weight with a router that only switches whole tracks.
    WeightNeedsSplittingRouter {
        /// The weight.
        weight: Percent,
    },
    /// A canary weight between tracks the router cannot split traffic between.
    WeightTrackNotSplittable {
        /// The weight.
        weight: Percent,
        /// The plan's new track.
        new: Track,
        /// The track the router cannot split to.
        track: Track,
        /// The tracks it can split between.
        splittable: TrackSet,
    },
    /// A weight that the split by replicas rounds to 0 % or 100 %.
    WeightRoundsAway {
        /// The weight.
        weight: Percent,
        /// The replicas that carry it (the router's or the plan's).
        replicas: u32,
        /// What the new track would get.
        effective: Percent,
        /// The plan's new track.
        new: Track,
        /// The fewest replicas that would give a share, if any up to 100 do.
        needed: Option<u32>,
    },
    /// A canary scale without a router with weights.
    CanaryScaleNeedsWeights {
        /// The scale.
        scale: CanaryScale,
    },
    /// A canary scale with a router whose weights are its replicas.
    CanaryScaleFollowsRouter {
        /// The scale.
        scale: CanaryScale,
        /// The router's replicas.
        replicas: u32,
    },
    /// A canary scale in a plan that is not a canary.
    CanaryScaleOutsideCanary {
        /// The plan's strategy.
        strategy: StrategyKind,
    },
    /// A header route whose match kind the router cannot match.
    HeaderMatchUnsupported {
        /// The route.
        route: HeaderRoute,
        /// Its match kind.
        kind: HeaderMatchKind,
        /// The kinds the router matches.
        supported: HeaderMatchKinds,
    },
    /// A header route to a track the router cannot route headers to.
    HeaderRouteTrackUnsupported {
        /// The route.
        route: HeaderRoute,
        /// The tracks the router routes headers to.
        supported: TrackSet,
    },
    /// A header route with a router that cannot route by header (or no router).
    HeaderRoutesUnsupported {
        /// The route.
        route: HeaderRoute,
    },
    /// A header route with an empty header name.
    HeaderNameEmpty {
        /// The route.
        route: HeaderRoute,
    },
    /// A header route to another track than the new one.
    HeaderRouteNotNewTrack {
        /// The route.
        route: HeaderRoute,
    },
    /// A header route after the promotion.
    HeaderRouteAfterPromotion {
        /// The route.
        route: HeaderRoute,
    },
    /// Mirroring with a router that cannot mirror (or no router).
    MirrorUnsupported {
        /// The mirror.
        mirror: Mirror,
    },
    /// Mirroring in an in-place plan.
    MirrorInPlace {
        /// The mirror.
        mirror: Mirror,
    },
    /// Mirroring after the promotion.
    MirrorAfterPromotion {
        /// The mirror.
        mirror: Mirror,
    },
    /// Mirroring 0 %.
    MirrorNothing {
        /// The mirror.
        mirror: Mirror,
    },
    /// Mirroring without the methods that are safe to duplicate.
    MirrorNoMethods {
        /// The mirror.
        mirror: Mirror,
    },
    /// A mirrored method that is not an HTTP method.
    MirrorNotHttpMethod {
        /// The method.
        method: String,
    },
    /// A pause of zero.
    PauseZero {
        /// The duration.
        duration: HumanDuration,
    },
    /// A scale-down before the promotion.
    ScaleDownBeforePromotion {
        /// The plan's strategy.
        strategy: StrategyKind,
    },
    /// A problem of an analysis step's spec (its own validation, with its field).
    Analysis(ValidationError),
}

impl PlanProblemKind {
    /// The field of a plan-wide problem.
    fn plan_field(&self) -> &'static str {
        match self {
            Self::NoReplicas => "plan replicas",
            Self::InPlaceMovesTrack { .. } | Self::RouterCannotRouteTrack { .. } => "plan tracks",
            Self::SwitchNeedsRouter { .. } => "plan router",
            _ => "plan steps",
        }
    }

    /// The value at fault and why it is wrong.
    fn value_and_reason(&self) -> (String, String) {
        let s = |v: &dyn fmt::Display, reason: &str| (v.to_string(), reason.to_owned());
        match self {
            Self::NoReplicas => s(&0, "must be at least 1"),
            Self::NoSteps => s(&"", "must not be empty"),
            Self::InPlaceMovesTrack { old, new, final_track } => {
                s(&format!("{old} -> {new} -> {final_track}"), "an in-place update must end on the track it updates")
            }
            Self::PromoteCount { found } => {
                s(&format!("{found} promote steps"), "a plan with a new track must promote exactly once")
            }
            Self::SwitchNeedsRouter { strategy } => {
                s(strategy, "switching all traffic to the new track needs a traffic router")
            }
            Self::RouterCannotRouteTrack { track, routable } => {
                (track.to_string(), format!("the traffic router cannot route this track (only {routable})"))
            }
            Self::TooManyHeaderRoutes { headers, max } => (
                format!("{} header routes ({})", headers.len(), headers.join(", ")),
                format!("the traffic router holds at most {max} header route{} at once", plural(*max)),
            ),
            Self::DuplicateHook { name } => s(name, "hook names must be unique in a plan"),
            Self::HookDeadlineZero { hook } => s(hook, "a hook's deadline must be positive"),
            Self::BeforeRolloutHookTooLate { hook } => {
                s(hook, "a before-rollout hook must come before every step that changes the platform or the traffic")
            }
            Self::AfterPromotionHookTooEarly { hook } => {
                s(hook, "an after-promotion hook must come after the step that makes the new release serve")
            }
            Self::DeployNoReplicas => s(&0, "must deploy at least one replica"),
            Self::DeployNotNewTrack { track } => s(track, "only the new track is deployed to before promotion"),
            Self::RollingUpdateNotInPlace { track } => {
                s(track, "a rolling update only updates the stable track in place")
            }
            Self::RollingUpdateNoReplicas => s(&0, "must update to at least one replica"),
            Self::RollingUpdateCannotProgress { max_surge, max_unavailable } => {
                s(&format!("{max_surge}/{max_unavailable}"), "max surge and max unavailable must not both be 0")
            }
            Self::WaitReadyUnknownTrack { track } => s(track, "is not one of the plan's tracks"),
            Self::WeightOutsideCanary { strategy } => s(strategy, "weights are only set by canary plans"),
            Self::WeightAfterPromotion { strategy } => s(strategy, "weights cannot change after promotion"),
            Self::WeightNeedsSplittingRouter { weight } => s(
                weight,
                "the traffic router only switches whole tracks: a canary weight would send the new track nothing, or \
                 take all traffic from the old one; use blue-green or a router with weights",
            ),
            Self::WeightTrackNotSplittable { weight, new, track, splittable } => (
                format!("{weight} to {new}"),
                format!("the traffic router cannot split traffic to {track} (only between {splittable})"),
            ),
            Self::WeightRoundsAway { weight, replicas, effective, new, needed } => {
                let needed = needed.map_or_else(String::new, |n| format!("; it needs at least {n} replicas"));
                (
                    format!("{weight} with {replicas} replica{}", plural(*replicas)),
                    format!("the split by replicas would send {effective} to {new}, not a share{needed}"),
                )
            }
            Self::CanaryScaleNeedsWeights { scale } => {
                (format!("{scale:?}"), "needs a traffic router with weights".into())
            }
            Self::CanaryScaleFollowsRouter { scale, replicas } => (
                format!("{scale:?}"),
                format!("the traffic router's weights are its replicas ({replicas}); the canary's scale follows them"),
            ),
            Self::CanaryScaleOutsideCanary { strategy } => s(strategy, "only canary plans scale a canary"),
            Self::HeaderMatchUnsupported { route, kind, supported } => (
                route.to_string(),
                format!("the traffic router cannot match a header by {kind} (it matches by {supported})"),
            ),
            Self::HeaderRouteTrackUnsupported { route, supported } => (
                route.to_string(),
                format!("the traffic router cannot route a header to {} (only to {supported})", route.track),
            ),
            Self::HeaderRoutesUnsupported { route } => s(route, "the traffic router cannot route by header"),
            Self::HeaderNameEmpty { route } => s(route, "the header name must not be empty"),
            Self::HeaderRouteNotNewTrack { route } => s(route, "header routes may only point at the new track"),
            Self::HeaderRouteAfterPromotion { route } => s(route, "header routes cannot be added after promotion"),
            Self::MirrorUnsupported { mirror } => s(mirror, "the traffic router cannot mirror traffic"),
            Self::MirrorInPlace { mirror } => s(mirror, "mirroring needs a new track apart from the serving one"),
            Self::MirrorAfterPromotion { mirror } => s(mirror, "mirroring cannot start after promotion"),
            Self::MirrorNothing { mirror } => s(mirror, "must mirror more than 0%"),
            Self::MirrorNoMethods { mirror } => s(mirror, "must list the methods that are safe to duplicate"),
            Self::MirrorNotHttpMethod { method } => s(method, "is not an HTTP method"),
            Self::PauseZero { duration } => s(duration, "a pause must be positive"),
            Self::ScaleDownBeforePromotion { strategy } => s(strategy, "scaling down must come after the promotion"),
            Self::Analysis(e) => (e.value.clone(), e.reason.clone()),
        }
    }
}

/// Every problem of a plan, in the order they were found; its `Display` lists
/// them as [`ValidationErrors`] does.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct PlanErrors {
    /// The problems.
    pub problems: Vec<PlanProblem>,
}

impl PlanErrors {
    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Iterates over the problems in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, PlanProblem> {
        self.problems.iter()
    }
}

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ValidationErrors::from(self.clone()).fmt(f)
    }
}

impl From<PlanErrors> for ValidationErrors {
    fn from(errors: PlanErrors) -> Self {
        let mut out = ValidationErrors::new();
        for problem in &errors.problems {
            out.push(problem.to_validation_error());
        }
        out
    }
}

impl<'a> IntoIterator for &'a PlanErrors {
    type Item = &'a PlanProblem;
    type IntoIter = std::slice::Iter<'a, PlanProblem>;

    fn into_iter(self) -> Self::IntoIter {
        self.problems.iter()
    }
}
