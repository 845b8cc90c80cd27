//! Every strategy × every step × every fault, with the four invariants of
//! DESIGN.md checked after each run:
//! 1. traffic never goes to a track that is not ready;
//! 2. after a failure or an abort the previous release serves 100 % and nothing
//!    of the new release runs;
//! 3. a rollout resumed after a crash ends as one that never crashed;
//! 4. the state store is never torn: revisions only grow, every saved document
//!    reads back.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Fixture, LOCK_TTL, Strat};
use deploy_core::engine::{CauseKind, RolloutEvent, RolloutReport};
use deploy_core::metrics::MetricValue;
use deploy_core::model::{DeploymentStatus, Version};
use deploy_core::platform::TrackState;
use deploy_core::state::{LockRequest, RolloutState};
use deploy_core::testkit::{Fault, HealthScript, MetricScript, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FaultCase {
    PlatformError,
    TransientError,
    Timeout,
    NeverReady,
    Doomed,
    AnalysisFails,
    HealthCheckFails,
    Inconclusive,
    CrashThenResume,
    Abort,
}

const FAULTS: [FaultCase; 10] = [
    FaultCase::PlatformError,
    FaultCase::TransientError,
    FaultCase::Timeout,
    FaultCase::NeverReady,
    FaultCase::Doomed,
    FaultCase::AnalysisFails,
    FaultCase::HealthCheckFails,
    FaultCase::Inconclusive,
    FaultCase::CrashThenResume,
    FaultCase::Abort,
];

impl FaultCase {
    /// The causes a rollback under this fault may report; `None`: it must succeed.
    fn expected(self) -> Option<&'static [CauseKind]> {
        match self {
            Self::PlatformError => Some(&[CauseKind::Platform, CauseKind::Router]),
            Self::TransientError | Self::CrashThenResume => None,
            Self::Timeout => Some(&[CauseKind::StepDeadline]),
            Self::NeverReady => Some(&[CauseKind::ReadinessDeadline]),
            Self::Doomed => Some(&[CauseKind::Doomed]),
            Self::AnalysisFails => Some(&[CauseKind::AnalysisFailed]),
            Self::HealthCheckFails => Some(&[CauseKind::HealthCheckFailed]),
            Self::Inconclusive => Some(&[CauseKind::AnalysisInconclusive]),
            Self::Abort => Some(&[CauseKind::Aborted]),
        }
    }

    fn arm(self, f: &Fixture) {
        let candidate = f.plan.new_track;
        match self {
            Self::PlatformError => f.kit.fail_next_call(Fault::Fatal),
            Self::TransientError => f.kit.fail_next_call(Fault::Retryable),
            Self::Timeout => f.kit.fail_next_call(Fault::Hang),
            Self::NeverReady => f.kit.never_ready(&f.v2.version),
            Self::Doomed => f.kit.doomed(&f.v2.version, "CrashLoopBackOff"),
            Self::AnalysisFails => f.kit.metric_values().set("error-rate", candidate, 0.2),
            Self::HealthCheckFails => f.smoke.set(candidate, HealthScript::Unhealthy("GET /healthz: 503".into())),
            Self::Inconclusive => {
                f.kit.metric_values().script("error-rate", candidate, MetricScript::Constant(MetricValue::Empty));
            }
            Self::CrashThenResume | Self::Abort => {}
        }
    }
}

/// Runs the fixture's rollout with `fault` injected when step `step` starts.
async fn run(f: &Fixture, step: usize, fault: FaultCase) -> RolloutReport {
    if fault == FaultCase::CrashThenResume {
        // The initial save plus one save per finished step: die right after step `step` is saved.
        f.kit.crash_after_saves(step + 2);
    }
    let mut handle = f.engine.start(f.request()).await.unwrap();
    loop {
        tokio::select! {
            biased;
            () = f.kit.crashed(), if fault == FaultCase::CrashThenResume => {
                handle.kill();
                // The dead process' lease lapses; another process picks the rollout up.
                tokio::time::advance(LOCK_TTL + Duration::from_secs(1)).await;
                let other = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
                let resumed = common::resume_when_free(&other, &f.spec.id()).await;
                return resumed.wait().await.unwrap();
            }
            event = handle.next_event() => match event {
                Some(RolloutEvent::StepStarted { index, .. }) if index == step => {
                    if fault == FaultCase::Abort {
                        handle.abort();
                    } else {
                        fault.arm(f);
                    }
                }
                Some(_) => {}
                None => return handle.wait().await.unwrap(),
            },
        }
    }
}

/// Invariants 1, 2 and 4 (and the end of the rollout's bookkeeping).
async fn check_invariants(f: &Fixture, report: &RolloutReport, label: &str) -> Snapshot {
    // 1. never traffic to a track that was not ready at that moment
    let unready = f.kit.unready_routing();
    assert!(unready.is_empty(), "{label}: traffic to unready tracks: {unready:?}");

    let world = f.kit.snapshot(&f.spec.id());
    let (kept, gone) = match report.status {
        DeploymentStatus::Succeeded => (&f.v2.version, &f.v1.version),
        DeploymentStatus::RolledBack => (&f.v1.version, &f.v2.version),
        other => panic!("{label}: unexpected status {other}: {:?}", report.cause),
    };
    // 2. the kept release serves everything, the other runs nowhere
    assert!(world.tracks.values().all(|t| &t.version == kept), "{label}: {world}");
    let full: Vec<_> =
        world.tracks.values().filter(|t| t.replicas == f.plan.replicas && t.state == TrackState::Ready).collect();
    assert!(!full.is_empty(), "{label}: no ready track with all replicas: {world}");
    if let Some(weights) = &world.weights {
        for (track, _) in weights.iter() {
            let view =
                world.tracks.get(&track).unwrap_or_else(|| panic!("{label}: traffic to absent {track}: {world}"));
            assert_eq!(&view.version, kept, "{label}: {world}");
            assert_eq!(view.state, TrackState::Ready, "{label}: {world}");
        }
        assert_eq!(world.serving(), BTreeSet::from([kept.clone()]), "{label}");
    }
    assert!(world.header_routes.is_empty(), "{label}: header routes left: {world:?}");
    assert!(!world.runs(gone), "{label}: {gone} still runs: {world}");

    // 4. never torn: revisions grow, every document reads back as a RolloutState
    let saved = f.kit.saved_states();
    assert!(saved.windows(2).all(|w| w[0].revision < w[1].revision), "{label}: revisions not increasing");
    for s in &saved {
        let state: RolloutState = serde_json::from_str(&s.json).unwrap_or_else(|e| panic!("{label}: torn state: {e}"));
        assert_eq!(state.record.id, report.record.id, "{label}");
    }

    // Bookkeeping: progress cleared, lock free, record written at start and end.
    let store = f.kit.state_store();
    assert!(store.load(&f.spec.id()).await.unwrap().is_none(), "{label}: progress left behind");
    let probe = store.acquire_lock(&f.spec.id(), &LockRequest::new("probe", LOCK_TTL)).await.unwrap();
    store.release_lock(&probe).await.unwrap();
    let writes = f.kit.history().writes();
    assert_eq!(writes.first().map(|r| r.status), Some(DeploymentStatus::InProgress), "{label}");
    assert_eq!(writes.last().map(|r| r.status), Some(report.status), "{label}");
    if report.status == DeploymentStatus::RolledBack {
        let last = report.record.steps.last().map(|s| s.description.clone()).unwrap_or_default();
        assert!(last.starts_with("roll back"), "{label}: the record does not end with its rollback: {last}");
    }
    world
}

async fn matrix(strat: Strat) {
    let baseline = {
        let f = Fixture::new(strat);
        let report = f.engine.run(f.request()).await.unwrap();
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{strat:?} baseline: {:?}", report.cause);
        check_invariants(&f, &report, &format!("{strat:?} baseline")).await
    };
    let steps = Fixture::new(strat).plan.steps.len();
    let mut scenarios = 0;
    let mut seen: std::collections::BTreeMap<FaultCase, BTreeSet<String>> = Default::default();
    for fault in FAULTS {
        for step in 0..steps {
            let f = Fixture::new(strat);
            let label = format!("{strat:?} / step {} ({}) / {fault:?}", step + 1, f.plan.steps[step].kind());
            let report = run(&f, step, fault).await;
            let world = check_invariants(&f, &report, &label).await;
            match fault.expected() {
                None => {
                    assert_eq!(report.status, DeploymentStatus::Succeeded, "{label}: {:?}", report.cause);
                    // 3. resumed after a crash: the same end state as without it
                    assert_eq!(strip(&world), strip(&baseline), "{label}");
                }
                Some(kinds) => {
                    if report.status == DeploymentStatus::RolledBack {
                        let cause = report.cause.clone().unwrap();
                        assert!(kinds.contains(&cause.kind), "{label}: unexpected cause {cause}");
                        assert_eq!(report.record.cause, Some(cause.to_string()), "{label}");
                        seen.entry(fault).or_default().insert(format!("{:?}", cause.kind));
                    }
                    if fault == FaultCase::Abort {
                        assert_eq!(report.status, DeploymentStatus::RolledBack, "{label}");
                    }
                }
            }
            scenarios += 1;
        }
    }
    // Every fault that can roll back did so in at least one position.
    for fault in FAULTS.iter().filter(|f| f.expected().is_some()) {
        assert!(seen.contains_key(fault), "{strat:?}: {fault:?} never caused a rollback");
    }
    assert_eq!(scenarios, steps * FAULTS.len());
    println!("{strat:?}: {scenarios} scenarios ({steps} steps x {} faults)", FAULTS.len());
}

/// The parts of a snapshot that must match (states and replicas, not timings).
fn strip(s: &Snapshot) -> Vec<(String, Version, u32)> {
    let mut v: Vec<_> = s.tracks.iter().map(|(t, v)| (t.to_string(), v.version.clone(), v.replicas)).collect();
    v.push(("weights".into(), Version::new("0").unwrap(), 0));
    v.push((format!("{:?}", s.weights), Version::new("0").unwrap(), 0));
    v
}

#[tokio::test(start_paused = true)]
async fn rolling_update_holds_the_invariants() {
    matrix(Strat::Rolling).await;
}

#[tokio::test(start_paused = true)]
async fn blue_green_holds_the_invariants() {
    matrix(Strat::BlueGreen).await;
}

#[tokio::test(start_paused = true)]
async fn canary_with_weights_and_header_route_holds_the_invariants() {
    matrix(Strat::Canary).await;
}

#[tokio::test(start_paused = true)]
async fn canary_by_replica_ratio_holds_the_invariants() {
    matrix(Strat::CanaryReplicaRatio).await;
}

#[tokio::test(start_paused = true)]
async fn flagger_canary_holds_the_invariants() {
    matrix(Strat::Flagger).await;
}
