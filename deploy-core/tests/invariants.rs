//! Every strategy × every step × every fault, with the seven invariants of
//! DESIGN.md checked after each run:
//! 1. traffic never goes to a track that is not ready;
//! 2. after a failure or an abort the previous release serves 100 % and nothing
//!    of the new release runs;
//! 3. a rollout resumed after a crash ends as one that never crashed;
//! 4. the state store is never torn: revisions only grow, every saved document
//!    reads back;
//! 5. nothing it does not own: the old track is never removed, the serving
//!    release is read from the platform (a forgotten `from`, a wrong live colour);
//! 6. one driver, fenced: a second start, a retried request, a second engine with
//!    a skewed clock never disturb the driver; a driver whose renewals fail stops
//!    changing anything before another engine takes over;
//! 7. a failed rollback is never forgotten, a rolled-back release never resumed
//!    forward (the state store failing during the rollback, a lost save answer).
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Fixture, LOCK_TTL, Strat};
use deploy_core::analysis::AnalysisOutcome;
use deploy_core::engine::{RolloutEngine, RolloutError, RolloutEvent, RolloutReport, RolloutRequest};
use deploy_core::metrics::MetricValue;
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, Version};
use deploy_core::plan::Step;
use deploy_core::platform::TrackState;
use deploy_core::state::{LockRequest, RolloutState};
use deploy_core::testkit::{Fault, HealthScript, Method, MetricScript, Snapshot, StateMethod};
use tokio::time::Instant;

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

/// The faults of issue 16, each run at every step of every strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SafetyFault {
    /// A second start and a resume in the same engine, and the same request
    /// retried by a second engine, while the rollout runs.
    SecondStartAndRetry,
    /// Renewals fail for longer than the lease's ttl from this step on.
    RenewalsFailPastTtl,
    /// The step fails, and the state store fails (saves, clears, renewals) during
    /// the rollback.
    StoreFailsDuringRollback,
    /// The answer to the next save is lost (the write landed).
    LostSaveResponse,
    /// A second engine whose clock is ttl − 1 s ahead tries to take over.
    ClockSkewAhead,
    /// A second engine whose clock is ttl − 1 s behind tries to take over.
    ClockSkewBehind,
    /// The request names no `from` while the old track serves, and the step fails.
    ForgottenFrom,
    /// A request made for the wrong live track (blue-green: the wrong colour;
    /// others: a `from` the platform does not run) arrives before the rollout and
    /// again at this step.
    WrongLiveTrack,
    /// A promotion arrives at this step, before the pause it could end.
    PromoteBeforePause,
}

const SAFETY_FAULTS: [SafetyFault; 9] = [
    SafetyFault::SecondStartAndRetry,
    SafetyFault::RenewalsFailPastTtl,
    SafetyFault::StoreFailsDuringRollback,
    SafetyFault::LostSaveResponse,
    SafetyFault::ClockSkewAhead,
    SafetyFault::ClockSkewBehind,
    SafetyFault::ForgottenFrom,
    SafetyFault::WrongLiveTrack,
    SafetyFault::PromoteBeforePause,
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
            // Not enough data pauses for a decision; the test's caller aborts.
            Self::Inconclusive => Some(&[CauseKind::Aborted]),
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
                Some(RolloutEvent::AnalysisFinished { outcome: AnalysisOutcome::Inconclusive, .. })
                    if fault == FaultCase::Inconclusive =>
                {
                    handle.abort();
                }
                Some(_) => {}
                None => return handle.wait().await.unwrap(),
            },
        }
    }
}

/// Invariants 1, 2 and 4 (and the end of the rollout's bookkeeping).
async fn check_invariants(f: &Fixture, report: &RolloutReport, label: &str) -> Snapshot {
    // Every verdict in the record can be recomputed from its evidence.
    let replayed = deploy_core::analysis::replay(&report.record);
    assert!(replayed.reproduced(), "{label}: {replayed}: {:?}", replayed.differences);
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
        assert_eq!(state.record().id, report.record.id, "{label}");
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
                        assert_eq!(report.record.cause, Some(cause.clone()), "{label}");
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
    eprintln!("{strat:?}: {scenarios} scenarios ({steps} steps x {} faults)", FAULTS.len());
}

/// Notes a case whose step ended before the fault's requests arrived.
fn raced(label: &str) {
    eprintln!("{label}: the rollout had ended when the second request came");
}

/// An engine of another process on `f`'s world whose wall clock is off by `skew`.
fn skewed_engine(f: &Fixture, skew: jiff::SignedDuration, holder: &str) -> RolloutEngine {
    let mut builder =
        RolloutEngine::builder(f.kit.platform(), f.kit.state_store_with_clock_offset(skew), f.kit.history_store())
            .metrics(f.kit.metrics())
            .health_check(f.smoke.clone())
            .config(common::config(holder));
    if f.strat.router().is_some() {
        builder = builder.router(f.kit.router());
    }
    builder.build()
}

/// The request `f` would make if it believed the wrong track served.
fn wrong_live_request(f: &Fixture) -> RolloutRequest {
    if f.plan.old_track == f.plan.new_track || f.plan.final_track == f.plan.old_track {
        // In place or canary: a `from` that does not run.
        RolloutRequest::new(f.spec.clone(), f.v2.clone(), f.plan.clone()).from(f.v2.clone())
    } else {
        let wrong = common::plan_for_live(f.strat, f.plan.new_track);
        RolloutRequest::new(f.spec.clone(), f.v2.clone(), wrong).from(f.v1.clone())
    }
}

/// Finishes what `first` left: when progress is still saved (the lease was lost,
/// the store failed), a second engine resumes it as soon as the lock lets it.
async fn settle(f: &Fixture, first: Result<RolloutReport, RolloutError>, label: &str) -> RolloutReport {
    let mut last = first;
    for _ in 0..10 {
        let left = f.kit.state_store().load(&f.spec.id()).await.unwrap();
        if left.is_none() {
            return last.unwrap_or_else(|e| panic!("{label}: {e} and nothing left to resume"));
        }
        if let Err(e) = &last {
            assert!(matches!(e, RolloutError::LockLost { .. }), "{label}: {e}");
        }
        // Give a failing store time to come back, then let another engine finish it.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let other = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-c");
        last = common::resume_when_free(&other, &f.spec.id()).await.wait().await;
    }
    panic!("{label}: progress still saved after ten resumes")
}

/// Runs the fixture's rollout with the safety fault injected when step `step`
/// starts; also says whether the fault bit (the rollout had not ended before it,
/// the lease was lost, the rollback ran with the store failing, ...).
async fn run_safety(f: &Fixture, step: usize, fault: SafetyFault, label: &str) -> (RolloutReport, bool) {
    let mut bit = true;
    let saves_before = std::cell::Cell::new(0);
    let app = f.spec.id();
    let skew = jiff::SignedDuration::try_from(LOCK_TTL - Duration::from_secs(1)).unwrap();
    let mut request = f.request();
    if fault == SafetyFault::ForgottenFrom {
        request = RolloutRequest::new(f.spec.clone(), f.v2.clone(), f.plan.clone());
    }
    if fault == SafetyFault::WrongLiveTrack {
        let before = f.kit.snapshot(&app);
        let err = f.engine.start(wrong_live_request(f)).await.unwrap_err();
        assert!(
            matches!(err, RolloutError::LiveTrackMismatch { .. } | RolloutError::FromMismatch { .. }),
            "{label}: {err}"
        );
        assert_eq!(f.kit.snapshot(&app), before, "{label}: a refused request changed the world");
        assert!(f.kit.saved_states().is_empty(), "{label}");
    }
    let mut handle = f.engine.start(request.clone()).await.unwrap();
    let deployment = handle.deployment().clone();
    let mut broken_at = None;
    loop {
        let Some(event) = handle.next_event().await else { break };
        let RolloutEvent::StepStarted { index, .. } = event else { continue };
        if index != step {
            continue;
        }
        match fault {
            SafetyFault::SecondStartAndRetry => {
                // Unless the step is so short that the rollout ended meanwhile, every
                // second request is refused and names the running rollout.
                let err = f.engine.start(request.clone()).await.unwrap_err();
                let ended = !matches!(err, RolloutError::AlreadyRunning { .. });
                if ended {
                    raced(label);
                    bit = false;
                    assert!(matches!(err, RolloutError::FromMismatch { .. }), "{label}: {err}");
                } else {
                    assert!(
                        matches!(&err, RolloutError::AlreadyRunning { deployment: d, .. } if *d == deployment),
                        "{label}: {err}"
                    );
                    assert!(err.to_string().contains(deployment.as_str()), "{label}: {err}");
                }
                let err = f.engine.resume(&app).await.unwrap_err();
                assert!(
                    matches!(err, RolloutError::AlreadyRunning { .. } | RolloutError::NothingToResume { .. }),
                    "{label}: {err}"
                );
                let other = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
                let err = other.start(request.clone()).await.unwrap_err();
                assert!(
                    matches!(err, RolloutError::Locked { .. } | RolloutError::FromMismatch { .. }),
                    "{label}: {err}"
                );
                let err = other.resume(&app).await.unwrap_err();
                assert!(
                    matches!(err, RolloutError::Locked { .. } | RolloutError::NothingToResume { .. }),
                    "{label}: {err}"
                );
            }
            SafetyFault::RenewalsFailPastTtl => {
                broken_at = Some(Instant::now());
                f.kit.fail_state_calls_for(
                    StateMethod::RenewLock,
                    LOCK_TTL + Duration::from_secs(15),
                    Fault::Retryable,
                );
            }
            SafetyFault::StoreFailsDuringRollback => {
                f.kit.fail_next_call(Fault::Fatal);
                for method in [StateMethod::Save, StateMethod::Clear, StateMethod::RenewLock] {
                    f.kit.fail_state_calls_for(method, Duration::from_secs(25), Fault::Fatal);
                }
            }
            SafetyFault::LostSaveResponse => {
                saves_before.set(f.kit.state_calls(StateMethod::Save) + 1);
                f.kit.lose_save_response(saves_before.get());
            }
            SafetyFault::ClockSkewAhead | SafetyFault::ClockSkewBehind => {
                let skew = if fault == SafetyFault::ClockSkewAhead { skew } else { -skew };
                let other = skewed_engine(f, skew, "engine-skewed");
                for _ in 0..3 {
                    let err = other.resume(&app).await.unwrap_err();
                    if matches!(err, RolloutError::NothingToResume { .. }) {
                        raced(label);
                        bit = false;
                        break;
                    }
                    assert!(matches!(err, RolloutError::Locked { .. }), "{label}: {err}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            SafetyFault::ForgottenFrom => f.kit.fail_next_call(Fault::Fatal),
            SafetyFault::WrongLiveTrack => {
                let other = Fixture::engine_on(&f.kit, &f.smoke, f.strat, "engine-b");
                let err = other.start(wrong_live_request(f)).await.unwrap_err();
                assert!(matches!(err, RolloutError::Locked { .. }), "{label}: {err}");
            }
            SafetyFault::PromoteBeforePause => {
                let is_pause = matches!(f.plan.steps[step], Step::Pause(_));
                if is_pause {
                    // Its own pause: accepted, through the handle or by application.
                    let promoted = if step.is_multiple_of(2) { handle.promote() } else { f.engine.promote(&app).await };
                    assert!(promoted.is_ok(), "{label}: {promoted:?}");
                } else {
                    let local = handle.promote();
                    let remote = f.engine.promote(&app).await;
                    for result in [local, remote] {
                        let err = result.unwrap_err();
                        // Refused, naming where the rollout is (this step, or a later
                        // one if it moved on meanwhile), and not kept for later.
                        assert!(
                            matches!(&err, RolloutError::PromoteRejected { step: Some(s), .. } if *s >= step)
                                || matches!(
                                    &err,
                                    RolloutError::PromoteRejected { .. } | RolloutError::NoRollout { .. }
                                ) && step + 1 == f.plan.steps.len(),
                            "{label}: {err}"
                        );
                    }
                }
            }
        }
    }
    let first = handle.wait().await;
    let stopped = Instant::now();
    if let (Some(broken_at), Err(e)) = (broken_at, &first) {
        let bit = true;
        // The driver stopped, typed, before its lease could lapse for others.
        assert!(matches!(e, RolloutError::LockLost { .. }), "{label}: {e}");
        assert!(stopped < broken_at + LOCK_TTL, "{label}: stopped {:?} after renewals broke", stopped - broken_at);
        let settled = settle(f, first, label).await;
        // Nothing changed the platform or the router between its stop and the takeover.
        let changes = f
            .kit
            .calls()
            .into_iter()
            .filter(|c| c.at > stopped && c.at < stopped + LOCK_TTL)
            .filter(|c| !matches!(c.method, Method::Status | Method::Weights | Method::WaitReady))
            .count();
        assert_eq!(changes, 0, "{label}: changes while no engine held a valid lease");
        return (settled, bit);
    }
    let lease_lost = first.is_err();
    let report = settle(f, first, label).await;
    let bit = match fault {
        SafetyFault::RenewalsFailPastTtl => lease_lost,
        SafetyFault::StoreFailsDuringRollback | SafetyFault::ForgottenFrom => {
            report.status == DeploymentStatus::RolledBack
        }
        SafetyFault::LostSaveResponse => f.kit.state_calls(StateMethod::Save) >= saves_before.get(),
        _ => bit,
    };
    (report, bit)
}

async fn safety_matrix(strat: Strat) {
    let steps = Fixture::new(strat).plan.steps.len();
    let mut counts = std::collections::BTreeMap::new();
    let mut hit = std::collections::BTreeMap::new();
    for fault in SAFETY_FAULTS {
        for step in 0..steps {
            let f = Fixture::new(strat);
            let label = format!("{strat:?} / step {} ({}) / {fault:?}", step + 1, f.plan.steps[step].kind());
            let (report, bit) = run_safety(&f, step, fault, &label).await;
            if bit {
                *hit.entry(fault).or_insert(0) += 1;
            }
            check_invariants(&f, &report, &label).await;
            // 5: the old track, which existed before, is never removed on failure.
            if report.status != DeploymentStatus::Succeeded {
                let world = f.kit.snapshot(&f.spec.id());
                assert!(world.tracks.contains_key(&f.plan.old_track), "{label}: {world}");
            }
            match fault {
                SafetyFault::StoreFailsDuringRollback | SafetyFault::ForgottenFrom => {}
                _ => assert_eq!(report.status, DeploymentStatus::Succeeded, "{label}: {:?}", report.cause),
            }
            // 7: a rolled-back release is recorded once as rolled back, never as succeeded after.
            let statuses: Vec<_> = f.kit.history().records().iter().map(|r| r.status).collect();
            assert_eq!(statuses, [report.status], "{label}");
            *counts.entry(fault).or_insert(0) += 1;
        }
    }
    let total: usize = counts.values().sum();
    assert_eq!(total, steps * SAFETY_FAULTS.len());
    for (fault, n) in &counts {
        let bit = hit.get(fault).copied().unwrap_or(0);
        eprintln!("{strat:?}: {fault:?}: {n} cases ({steps} steps), the fault bit in {bit}");
    }
    eprintln!("{strat:?}: {total} safety cases ({steps} steps x {} faults)", SAFETY_FAULTS.len());
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

#[tokio::test(start_paused = true)]
async fn rolling_update_holds_the_invariants_under_issue_16_faults() {
    safety_matrix(Strat::Rolling).await;
}

#[tokio::test(start_paused = true)]
async fn blue_green_holds_the_invariants_under_issue_16_faults() {
    safety_matrix(Strat::BlueGreen).await;
}

#[tokio::test(start_paused = true)]
async fn canary_with_weights_and_header_route_holds_the_invariants_under_issue_16_faults() {
    safety_matrix(Strat::Canary).await;
}

#[tokio::test(start_paused = true)]
async fn canary_by_replica_ratio_holds_the_invariants_under_issue_16_faults() {
    safety_matrix(Strat::CanaryReplicaRatio).await;
}

#[tokio::test(start_paused = true)]
async fn flagger_canary_holds_the_invariants_under_issue_16_faults() {
    safety_matrix(Strat::Flagger).await;
}
