//! Tests of plans and their validation.

use super::*;
use crate::analysis::{JudgeSpec, MetricCheck};
use crate::model::IntOrPercent;
use crate::traffic::{HeaderMatch, HeaderRoute, RouterCapabilities};

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
    let fields: Vec<String> = errors.iter().map(|e| e.to_validation_error().field).collect();
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
    // The same problems, typed: the step's index and what is wrong.
    let steps: Vec<Option<usize>> = errors.iter().map(|e| e.step).collect();
    assert_eq!(steps, [None, Some(0), Some(1), Some(2), Some(2), Some(3), Some(3), Some(4), Some(5)]);
    assert_eq!(errors.problems[1].kind, PlanProblemKind::DeployNoReplicas);
    assert_eq!(errors.problems[7].kind, PlanProblemKind::ScaleDownBeforePromotion { strategy: StrategyKind::Canary });
    assert!(
        matches!(&errors.problems[5].kind, PlanProblemKind::Analysis(e) if e.field == "step 4 (analyze) analysis count")
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

    let rolling =
        Plan::new(StrategyKind::Rolling, 3, Track::Stable, Track::Stable, Track::Stable).step(Step::RollingUpdate {
            replicas: 3,
            max_surge: IntOrPercent::Int(0),
            max_unavailable: IntOrPercent::Percent(p(0)),
        });
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
    assert!(text.contains("cannot split traffic to blue") && text.contains("cannot split traffic to green"), "{text}");
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
    assert!(canary_plan(4, Track::Stable, Track::Canary).validate(Some(RouterCapabilities::replica_ratio(4))).is_ok());
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
