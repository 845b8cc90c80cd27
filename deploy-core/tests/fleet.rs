//! Fleet rollouts on the test kit: 50 targets (one simulated cluster each) in 5
//! waves; a failure injected at every step of targets across every wave; a crash
//! of the driver at every journal write, resumed by another driver with other
//! engines on the same stores. Each run is checked against what the kits'
//! worlds hold: versions served, calls received, records, locks.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code fails the test on any error")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::{EngineConfig, RolloutEngine};
use deploy_core::fleet::{
    FleetConfig, FleetControl, FleetDriver, FleetEvent, FleetPlan, FleetRecord, FleetStatus, FleetTarget, Gate,
    RollbackPolicy, TargetRecord, WaveCheck, WavePolicy, WaveSize,
};
use deploy_core::model::{AppId, AppSpec, DeploymentStatus, Name, Namespace, Percent, Release, Track, Version};
use deploy_core::plan::{Plan, Step};
use deploy_core::state::LockRequest;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{self, Fault, Method, TestKit};

const TARGETS: usize = 50;
const LOCK_TTL: Duration = Duration::from_secs(30);

/// The fleet's simulated clusters and the store of its journal.
struct World {
    /// How many targets: 50 (waves of 2, 8, 10, 15, 15) or 10 (1, 1, 2, 3, 3).
    size: usize,
    /// Each target's wave.
    wave: Vec<usize>,
    kits: Vec<TestKit>,
    journal: TestKit,
    spec: AppSpec,
    v1: Release,
    v2: Release,
}

impl World {
    fn new() -> Self {
        Self::of(TARGETS)
    }

    fn of(size: usize) -> Self {
        let (spec, v1, v2) = testkit::sample_app(2);
        let kits: Vec<TestKit> = (0..size)
            .map(|_| {
                let kit = TestKit::new();
                kit.seed(&spec, Track::Stable, &v1);
                kit.set_ready_delay(Duration::ZERO);
                kit
            })
            .collect();
        let wave = (0..size).map(|i| wave_of(size, i)).collect();
        Self { size, wave, kits, journal: TestKit::new(), spec, v1, v2 }
    }

    fn fleet() -> AppId {
        AppId::new(Namespace::new("fleets").unwrap(), Name::new("checkout").unwrap())
    }

    /// The plan as the process `holder` makes it: its own engines on the kits.
    fn plan(&self, holder: &str, policy: RollbackPolicy) -> FleetPlan {
        let mut builder = FleetPlan::builder(Self::fleet(), self.v2.clone())
            .from(self.v1.clone())
            .waves(self.wave_policy())
            .bake(Duration::from_secs(600))
            .max_concurrent(4)
            .rollback(policy);
        for (i, kit) in self.kits.iter().enumerate() {
            let config = EngineConfig::default().holder(format!("{holder}-{i}")).lock_ttl(LOCK_TTL);
            let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
                .router(kit.router())
                .config(config)
                .build();
            builder = builder.target(
                FleetTarget::new(format!("t{i:02}"), Arc::new(engine), self.spec.clone(), target_plan())
                    .label("region", if i % 2 == 0 { "eu" } else { "us" }),
            );
        }
        builder.build().unwrap()
    }

    /// 50 targets: "2, 8, then 20 %, 15, the rest"; a smaller fleet: explicit
    /// lists in the same proportions.
    fn wave_policy(&self) -> WavePolicy {
        if self.size == TARGETS {
            return WavePolicy::Progressive(vec![
                WaveSize::Count(2),
                WaveSize::Count(8),
                WaveSize::Percent(Percent::new(20).unwrap()),
                WaveSize::Count(15),
                WaveSize::Rest,
            ]);
        }
        let mut waves = vec![Vec::new(); 5];
        for i in 0..self.size {
            waves[wave_of(self.size, i)].push(format!("t{i:02}"));
        }
        WavePolicy::Explicit(waves)
    }

    fn driver(&self, holder: &str) -> FleetDriver {
        FleetDriver::new(self.journal.state_store()).config(
            FleetConfig::default()
                .holder(holder)
                .lease_ttl(LOCK_TTL)
                .control_interval(Duration::from_secs(60))
                .lock_wait(Duration::from_secs(120)),
        )
    }
}

/// Deploy canary, wait, 20 %, 50 %, 100 %, promote, scale down: seven steps.
fn target_plan() -> Plan {
    let w = |p| Step::SetWeight(Percent::new(p).unwrap());
    Canary::with_steps(vec![w(20), w(50), w(100)]).plan(&PlanInput::new(2))
}

/// A fault that fails step `step` of the target plan (the calls each step makes
/// first, as the kit logs them for an uninterrupted rollout).
fn fault_for_step(step: usize) -> (Method, u32) {
    match step {
        0 => (Method::Apply, 1),
        1 => (Method::WaitReady, 1),
        2 => (Method::SetWeights, 1),
        3 => (Method::SetWeights, 2),
        4 => (Method::SetWeights, 3),
        5 => (Method::Apply, 2),
        6 => (Method::Remove, 1),
        _ => unreachable!("the plan has seven steps"),
    }
}

/// The waves' target ranges: 50 targets in waves of 2, 8, 10, 15 and 15.
const WAVES: [std::ops::Range<usize>; 5] = [0..2, 2..10, 10..20, 20..35, 35..50];

/// The wave of target `i` of a fleet of `size` (the ranges scale with it).
fn wave_of(size: usize, i: usize) -> usize {
    WAVES.iter().position(|r| r.contains(&(i * TARGETS / size))).unwrap()
}

/// Every guarantee of a fleet run, read from the kits' worlds. `failed_wave` is
/// the wave in which the line stopped, if it did.
async fn check(world: &World, record: &FleetRecord, failed_wave: Option<usize>, policy: RollbackPolicy, label: &str) {
    let app = world.spec.id();
    assert_eq!(record.targets.len(), world.size, "{label}: every target in the record");
    let stored = FleetControl::new(world.journal.state_store(), World::fleet()).record().await.unwrap().unwrap();
    assert_eq!(&stored, record, "{label}: the journal keeps the record returned");
    match failed_wave {
        None => assert_eq!(record.status, Some(FleetStatus::Succeeded), "{label}"),
        Some(_) => assert_eq!(record.status, Some(FleetStatus::RolledBack), "{label}: {:?}", record.cause),
    }
    for (i, kit) in world.kits.iter().enumerate() {
        let w = world.wave[i];
        let t = record.target(&format!("t{i:02}")).unwrap();
        assert_eq!(t.wave, w, "{label}: t{i:02} wave");
        let expected: &Version = match failed_wave {
            None => &world.v2.version,
            Some(f) if w > f => {
                // Stop-the-line: a later wave is never touched.
                assert!(kit.calls().is_empty(), "{label}: t{i:02} of wave {w} was touched: {:?}", kit.calls());
                assert!(kit.history().writes().is_empty(), "{label}: t{i:02} has records");
                assert!(t.forward.is_none() && t.revert.is_none(), "{label}: t{i:02} in the record");
                &world.v1.version
            }
            Some(f) if w == f || policy == RollbackPolicy::Fleet => &world.v1.version,
            Some(_) => &world.v2.version,
        };
        let snapshot = kit.snapshot(&app);
        assert_eq!(snapshot.serving(), BTreeSet::from([expected.clone()]), "{label}: t{i:02} serves");
        assert!(!snapshot.runs(if *expected == world.v1.version { &world.v2.version } else { &world.v1.version }));
        assert!(kit.unready_routing().is_empty(), "{label}: t{i:02} routed to an unready track");
        // A target whose engine died with the first driver between its end and
        // its lock's release keeps that dead lease (the next rollout of the app
        // takes it over after its ttl); every other lock is released.
        if let Some(lease) = kit.lease(&app) {
            assert!(
                label.contains("killed") && lease.holder.starts_with("a-"),
                "{label}: t{i:02} lock left: {lease:?}"
            );
        }
        assert!(kit.state_store().load(&app).await.unwrap().is_none(), "{label}: t{i:02} progress left");
        // No double deployment: one rollout of v2 at most, one back to v1 at most.
        let records = kit.history().records();
        let forward: Vec<_> = records.iter().filter(|r| r.to.version == world.v2.version).collect();
        let back: Vec<_> = records.iter().filter(|r| r.to.version == world.v1.version).collect();
        assert!(forward.len() <= 1 && back.len() <= 1, "{label}: t{i:02} deployed twice: {records:#?}");
        // The fleet record holds the target's own records.
        for (run, stored) in [(&t.forward, forward.first()), (&t.revert, back.first())] {
            assert_eq!(run.as_ref().and_then(|r| r.record.as_ref()), stored.copied(), "{label}: t{i:02} record");
            if let Some(r) = run {
                assert_eq!(Some(&r.deployment), stored.map(|s| &s.id), "{label}: t{i:02}");
                assert!(r.status.is_terminal(), "{label}: t{i:02} {}", r.status);
            }
        }
        if let Some(r) = &t.revert {
            assert_eq!(r.status, DeploymentStatus::Succeeded, "{label}: t{i:02} revert");
        }
        if failed_wave.is_none_or(|f| w < f) {
            assert!(t.forward.is_some(), "{label}: t{i:02} of a wave that passed has no record");
        } else if t.forward.is_none() && t.refused.is_none() {
            // The failed wave's targets not started when the line stopped stay untouched.
            assert!(kit.calls().is_empty(), "{label}: t{i:02} touched without a record");
        }
    }
    assert!(world.journal.lease(&World::fleet()).is_none(), "{label}: fleet lease left");
}

#[tokio::test(start_paused = true)]
async fn fifty_targets_in_five_waves_all_succeed_and_the_plan_prints() {
    let world = World::new();
    let plan = world.plan("a", RollbackPolicy::FailedWave);
    let text = plan.to_string();
    assert!(text.contains("50 targets in 5 waves"), "{text}");
    assert!(text.contains("wave 3 (10 targets"), "{text}");
    let doc: deploy_core::fleet::FleetPlanDocument =
        serde_json::from_str(&serde_json::to_string(&plan.document()).unwrap()).unwrap();
    assert_eq!(doc, plan.document(), "the plan reads back from JSON");
    let mut driver = world.driver("a");
    let mut events = driver.events();
    let record = driver.run(&plan).await.unwrap();
    check(&world, &record, None, RollbackPolicy::FailedWave, "clean").await;
    let mut waves = 0;
    while let Ok(e) = events.try_recv() {
        waves += usize::from(matches!(e, deploy_core::fleet::FleetEvent::WaveStarted { .. }));
    }
    assert_eq!(waves, 5);
    // Running the same plan again changes nothing: the journal says it ended.
    let calls: usize = world.kits.iter().map(|k| k.calls().len()).sum();
    let again = world.driver("b").run(&world.plan("b", RollbackPolicy::FailedWave)).await.unwrap();
    assert_eq!(again, record);
    assert_eq!(world.kits.iter().map(|k| k.calls().len()).sum::<usize>(), calls);
}

/// Runs a fleet of `size` with a fatal fault at `step` of target `i` and checks it.
async fn fail_once(size: usize, i: usize, step: usize) {
    let w = wave_of(size, i);
    let policy = if (i + step).is_multiple_of(2) { RollbackPolicy::FailedWave } else { RollbackPolicy::Fleet };
    let world = World::of(size);
    let (method, nth) = fault_for_step(step);
    world.kits[i].fail_call(method, nth, Fault::Fatal);
    let record = world.driver("a").run(&world.plan("a", policy)).await.unwrap();
    let label = format!("{size} targets: t{i:02} (wave {}) fails at step {}, {policy:?}", w + 1, step + 1);
    let failed = record.target(&format!("t{i:02}")).unwrap().forward.clone().unwrap();
    assert_ne!(failed.status, DeploymentStatus::Succeeded, "{label}: the fault did not fail it");
    assert!(record.cause.as_deref().is_some_and(|c| c.contains(&format!("t{i:02}"))), "{label}");
    check(&world, &record, Some(w), policy, &label).await;
}

/// A failure at every step of every target (every position of every wave) of a
/// fleet of 10 in 5 waves, under both rollback policies.
#[tokio::test(start_paused = true)]
async fn a_failure_at_every_step_and_wave_position_stops_the_line() {
    for i in 0..10 {
        for step in 0..7 {
            fail_once(10, i, step).await;
        }
    }
}

/// The fleet of 50 in 5 waves, to the letter: a fatal failure at target `i`
/// (every position of every wave) at step `step`, one fleet each, split by
/// step into seven tests of 50 fleets (350 in all) so that the harness runs
/// them side by side. Returns how many fleets ran.
async fn every_position_fails_at(step: usize) -> usize {
    let mut fleets = 0;
    for i in 0..TARGETS {
        fail_once(TARGETS, i, step).await;
        fleets += 1;
    }
    fleets
}

macro_rules! fifty_targets_fail_at_step {
    ($($name:ident => $step:expr),* $(,)?) => {$(
        /// Every one of the 50 targets (every position of every wave) fails at
        /// this step of its plan, one fleet each; see [`every_position_fails_at`].
        #[tokio::test(start_paused = true)]
        async fn $name() {
            assert_eq!(every_position_fails_at($step).await, TARGETS);
        }
    )*};
}

fifty_targets_fail_at_step! {
    fifty_targets_every_wave_position_fails_at_step_1 => 0,
    fifty_targets_every_wave_position_fails_at_step_2 => 1,
    fifty_targets_every_wave_position_fails_at_step_3 => 2,
    fifty_targets_every_wave_position_fails_at_step_4 => 3,
    fifty_targets_every_wave_position_fails_at_step_5 => 4,
    fifty_targets_every_wave_position_fails_at_step_6 => 5,
    fifty_targets_every_wave_position_fails_at_step_7 => 6,
}

/// Runs a fresh world's fleet with the driver killed right after the journal
/// write `crash_at` (none: uninterrupted), then resumed by driver `b` with its
/// own engines on the same stores. Returns the record and the number of
/// journal writes of the first driver.
async fn run_with_crash(
    size: usize,
    inject: Option<(usize, usize)>,
    policy: RollbackPolicy,
    crash_at: Option<usize>,
) -> (World, FleetRecord, usize) {
    let world = World::of(size);
    if let Some((i, step)) = inject {
        let (method, nth) = fault_for_step(step);
        world.kits[i].fail_call(method, nth, Fault::Fatal);
    }
    let Some(n) = crash_at else {
        let record = world.driver("a").run(&world.plan("a", policy)).await.unwrap();
        let writes = world.journal.saved_states().len();
        return (world, record, writes);
    };
    world.journal.crash_after_saves(n);
    let plan = world.plan("a", policy);
    let driver = world.driver("a");
    tokio::select! {
        biased;
        () = world.journal.crashed() => {}
        r = driver.run(&plan) => panic!("the run ended before journal write {n}: {r:?}"),
    }
    // The first driver is gone (its future dropped: its target rollouts die with it).
    drop(plan);
    let record = world.driver("b").run(&world.plan("b", policy)).await.unwrap();
    (world, record, n)
}

/// A clean fleet, and one whose wave 3 fails at its last target's 100 % step
/// with the whole fleet rolled back (its journal writes cover the rollback); the
/// driver killed after every `stride`th journal write of a fleet of `size`.
async fn crash_everywhere(size: usize, stride: usize) {
    let last_of_wave_3 = 20 * size / TARGETS - 1;
    let cases = [(None, RollbackPolicy::FailedWave, None), (Some((last_of_wave_3, 4)), RollbackPolicy::Fleet, Some(2))];
    for (inject, policy, failed_wave) in cases {
        let (_, reference, writes) = run_with_crash(size, inject, policy, None).await;
        assert!(writes > 2 * size, "{writes} journal writes");
        for n in (1..=writes).step_by(stride) {
            let label = format!("{size} targets, {inject:?} {policy:?}, killed at journal write {n} of {writes}");
            let (world, record, _) = run_with_crash(size, inject, policy, Some(n)).await;
            check(&world, &record, failed_wave, policy, &label).await;
            assert_eq!(record.status, reference.status, "{label}");
            let ran = |r: &FleetRecord| r.targets.iter().filter(|t| t.forward.is_some()).count();
            assert_eq!(ran(&record), ran(&reference), "{label}: targets deployed");
        }
    }
}

/// Every journal write of a fleet of 10 targets in 5 waves.
#[tokio::test(start_paused = true)]
async fn a_driver_killed_at_every_journal_write_is_resumed_to_the_same_end() {
    crash_everywhere(10, 1).await;
}

/// Every fifth journal write of the fleet of 50 targets (each kind of write
/// is hit: wave starts, target starts, ends, bakes, gates, rollbacks).
#[tokio::test(start_paused = true)]
async fn fifty_targets_killed_at_every_fifth_journal_write_end_the_same() {
    crash_everywhere(TARGETS, 5).await;
}

/// Seven targets: six in wave 1, then `t06` alone in wave 2, whose canary never
/// gets ready; the whole fleet rolls back, at most `limit` targets at once.
struct Concurrent {
    world: World,
    limit: usize,
}

impl Concurrent {
    fn new(limit: usize) -> Self {
        let mut world = World::of(7);
        world.wave = vec![0, 0, 0, 0, 0, 0, 1];
        for kit in &world.kits {
            // Each rollout takes a while (5 s per readiness wait), so overlaps show.
            kit.set_ready_delay(Duration::from_secs(5));
        }
        // t06's canary never gets ready (on every try, a resumed one too): its
        // engine rolls it back after its readiness deadline, well after wave 1 ended.
        world.kits[6].never_ready(&world.v2.version);
        Self { world, limit }
    }

    fn plan(&self, holder: &str, gate: Gate) -> FleetPlan {
        let w = &self.world;
        let names = |r: std::ops::Range<usize>| r.map(|i| format!("t{i:02}")).collect::<Vec<_>>();
        let mut builder = FleetPlan::builder(World::fleet(), w.v2.clone())
            .from(w.v1.clone())
            .waves(WavePolicy::Explicit(vec![names(0..6), names(6..7)]))
            .gate(gate)
            .max_concurrent(self.limit)
            .rollback(RollbackPolicy::Fleet);
        for (i, kit) in w.kits.iter().enumerate() {
            let config = EngineConfig::default().holder(format!("{holder}-{i}")).lock_ttl(LOCK_TTL);
            let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
                .router(kit.router())
                .config(config)
                .build();
            builder =
                builder.target(FleetTarget::new(format!("t{i:02}"), Arc::new(engine), w.spec.clone(), target_plan()));
        }
        builder.build().unwrap()
    }

    /// Runs the fleet, stamping the moment the line stopped on tokio's clock.
    /// `on_stop` is notified then.
    async fn run(
        &self,
        driver: FleetDriver,
        plan: &FleetPlan,
        on_stop: Option<&tokio::sync::Notify>,
    ) -> (FleetRecord, tokio::time::Instant) {
        let mut driver = driver;
        let mut events = driver.events();
        let run = driver.run(plan);
        let mut run = std::pin::pin!(run);
        let mut stopped = None;
        loop {
            tokio::select! {
                record = &mut run => {
                    while let Ok(e) = events.try_recv() {
                        assert!(!matches!(e, FleetEvent::Stopped { .. }) || stopped.is_some(), "a late stop event");
                    }
                    return (record.unwrap(), stopped.expect("the line stopped"));
                }
                Some(e) = events.recv() => if matches!(e, FleetEvent::Stopped { .. }) {
                    stopped = Some(tokio::time::Instant::now());
                    if let Some(notify) = on_stop {
                        notify.notify_one();
                    }
                }
            }
        }
    }

    /// Each wave-1 target's rollback as `[first call, last call]` of its platform
    /// and router after the line stopped.
    fn rollback_spans(&self, stopped: tokio::time::Instant) -> Vec<(tokio::time::Instant, tokio::time::Instant)> {
        self.world.kits[..6]
            .iter()
            .enumerate()
            .map(|(i, kit)| {
                let calls: Vec<_> = kit.calls().into_iter().filter(|c| c.at >= stopped).collect();
                assert!(!calls.is_empty(), "t{i:02} was not rolled back");
                (calls.iter().map(|c| c.at).min().unwrap(), calls.iter().map(|c| c.at).max().unwrap())
            })
            .collect()
    }
}

/// The most spans open at one moment (half-open: one that ends when another
/// begins does not overlap it).
fn most_at_once(spans: &[(tokio::time::Instant, tokio::time::Instant)]) -> usize {
    let mut edges: Vec<(tokio::time::Instant, i32)> = spans.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    usize::try_from(most).unwrap()
}

/// A fleet rollback puts six targets back on the previous release with at most
/// `max_concurrent` (3) rollbacks at once, and they do overlap in time: the six
/// take two rounds, not six. Every revert is in the record, equal to the
/// target's history.
#[tokio::test(start_paused = true)]
async fn fleet_rollbacks_run_concurrently_within_the_limit() {
    for limit in [1, 3, 6] {
        let c = Concurrent::new(limit);
        let (record, stopped) = c.run(c.world.driver("a"), &c.plan("a", Gate::Open), None).await;
        check(&c.world, &record, Some(1), RollbackPolicy::Fleet, &format!("limit {limit}")).await;
        let spans = c.rollback_spans(stopped);
        for (i, (a, b)) in spans.iter().enumerate() {
            assert!(b > a, "limit {limit}: t{i:02}'s rollback took no time: {spans:?}");
        }
        assert_eq!(most_at_once(&spans), limit, "limit {limit}: rollbacks at once: {spans:?}");
        for i in 0..6 {
            let revert = record.target(&format!("t{i:02}")).unwrap().revert.clone().unwrap();
            assert_eq!(revert.status, DeploymentStatus::Succeeded, "limit {limit}: t{i:02}");
            assert_eq!(revert.to.version, c.world.v1.version);
        }
    }
}

/// A wave check that takes target `t03`'s lock as another holder (an operator's
/// tool) and gives it back 90 s after the line stopped.
struct TakesLock {
    kit: TestKit,
    app: AppId,
    stopped: Arc<tokio::sync::Notify>,
    released: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

#[deploy_core::async_trait]
impl WaveCheck for TakesLock {
    async fn check(&self, _wave: usize, _targets: &[TargetRecord]) -> Result<(), String> {
        let store = self.kit.state_store();
        let lease = store.acquire_lock(&self.app, &LockRequest::new("operator", Duration::from_secs(3600))).await;
        let lease = lease.map_err(|e| e.to_string())?;
        let released = Arc::clone(&self.released);
        let stopped = Arc::clone(&self.stopped);
        tokio::spawn(async move {
            stopped.notified().await;
            tokio::time::sleep(Duration::from_secs(90)).await;
            *released.lock().unwrap() = Some(tokio::time::Instant::now());
            store.release_lock(&lease).await.unwrap();
        });
        Ok(())
    }
}

/// Concurrent rollbacks respect each target's own lock: `t03`'s lock, held by
/// another holder when the fleet rolls back, keeps its rollback waiting until
/// it is released, while the other five are rolled back meanwhile.
#[tokio::test(start_paused = true)]
async fn a_concurrent_rollback_waits_for_a_targets_lock_held_by_another() {
    let c = Concurrent::new(3);
    let released = Arc::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let check_lock = TakesLock {
        kit: c.world.kits[3].clone(),
        app: c.world.spec.id(),
        stopped: Arc::clone(&notify),
        released: Arc::clone(&released),
    };
    let driver = c.world.driver("a").check("operator", Arc::new(check_lock));
    let (record, stopped) = c.run(driver, &c.plan("a", Gate::Check { name: "operator".into() }), Some(&notify)).await;
    check(&c.world, &record, Some(1), RollbackPolicy::Fleet, "t03 locked").await;
    let released = released.lock().unwrap().expect("the lock was released");
    assert!(released > stopped, "the lock was released before the rollback began");
    let spans = c.rollback_spans(stopped);
    assert!(spans[3].0 >= released, "t03 was rolled back while another held its lock: {spans:?}, {released:?}");
    for (i, span) in spans.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert!(span.1 < released, "t{i:02} waited for t03's lock: {spans:?}");
    }
}

/// The concurrent rollback survives a crash: the driver killed after every
/// journal write of the run (forward and rollback, with three target
/// rollbacks in flight), resumed by another, ends as the uninterrupted run.
#[tokio::test(start_paused = true)]
async fn concurrent_rollbacks_killed_at_every_journal_write_end_the_same() {
    let reference = Concurrent::new(3);
    let (expected, _) = reference.run(reference.world.driver("a"), &reference.plan("a", Gate::Open), None).await;
    let writes = reference.world.journal.saved_states().len();
    for n in 1..=writes {
        let c = Concurrent::new(3);
        c.world.journal.crash_after_saves(n);
        let plan = c.plan("a", Gate::Open);
        let driver = c.world.driver("a");
        tokio::select! {
            biased;
            () = c.world.journal.crashed() => {}
            r = driver.run(&plan) => panic!("the run ended before journal write {n}: {r:?}"),
        }
        drop(plan);
        let record = c.world.driver("b").run(&c.plan("b", Gate::Open)).await.unwrap();
        let label = format!("7 targets, limit 3, killed at journal write {n} of {writes}");
        check(&c.world, &record, Some(1), RollbackPolicy::Fleet, &label).await;
        assert_eq!(record.status, expected.status, "{label}");
    }
}
