//! In-memory backends with fault injection, for testing code that embeds
//! deploy-core (feature `testkit`).
//!
//! A [`TestKit`] holds one simulated world: a [`Platform`] whose tracks become ready
//! after a delay on tokio's clock (or when the test says so), a [`TrafficRouter`]
//! with configurable capabilities, a scripted [`MetricsProvider`], a
//! compare-and-swap [`StateStore`] with lease locks that expire on tokio's clock,
//! and a [`HistoryStore`]. Run tests under `#[tokio::test(start_paused = true)]`:
//! readiness delays, pauses, analysis intervals, backoffs and lease expiry then
//! take no real time and every run is the same.
//!
//! Faults: fail the Nth call of a method ([`TestKit::fail_call`]) or the next call
//! of any method ([`TestKit::fail_next_call`]), retryable, fatal or hanging; a
//! release whose tracks never become ready ([`TestKit::never_ready`]) or are doomed
//! ([`TestKit::doomed`]); metric values per track, per call or per time
//! ([`TestMetrics`]); routers that read back stale weights
//! ([`TestKit::misreport_weights`]); and a crash after the Nth save of progress
//! ([`TestKit::crash_after_saves`]): the save is stored and never returns, as if
//! the process died right after it.
//!
//! Observations: every call in order with its outcome ([`TestKit::calls`]), routing
//! calls that sent traffic to a track that was not ready at that moment
//! ([`TestKit::unready_routing`]), the world's state ([`TestKit::snapshot`]) and
//! every saved state document ([`TestKit::saved_states`]).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! use deploy_core::engine::{RolloutEngine, RolloutRequest};
//! use deploy_core::model::{DeploymentStatus, Track};
//! use deploy_core::strategy::{Canary, PlanInput, Strategy};
//! use deploy_core::testkit::{self, TestKit};
//!
//! let kit = TestKit::new();
//! let (spec, v1, v2) = testkit::sample_app(4);
//! kit.seed(&spec, Track::Stable, &v1);
//! let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
//!     .router(kit.router())
//!     .build();
//! let plan = Canary::default().plan(&PlanInput::new(spec.replicas));
//! let report = engine.run(RolloutRequest::new(spec.clone(), v2.clone(), plan).from(v1)).await.unwrap();
//! assert_eq!(report.status, DeploymentStatus::Succeeded);
//! let world = kit.snapshot(&spec.id());
//! assert_eq!(world.tracks[&Track::Stable].version, v2.version);
//! assert!(!world.tracks.contains_key(&Track::Canary));
//! assert!(kit.unready_routing().is_empty());
//! # });
//! ```

pub mod conformance;
mod health;
mod history;
mod metrics;
mod platform;
mod router;
mod state;
mod switch;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub use health::{HealthScript, TestHealthCheck};
pub use history::TestHistoryStore;
pub use metrics::{MetricScript, TestMetrics};
pub use platform::TestPlatform;
pub use router::TestRouter;
pub use state::{SavedState, StateMethod, TestStateStore};
pub use switch::TestTrafficSwitch;

use crate::error::ErrorKind;
use crate::history::HistoryStore;
use crate::metrics::MetricsProvider;
use crate::model::{AppId, AppSpec, ImageRef, Name, Namespace, Release, Track, TrafficSplit, Version};
use crate::platform::{Platform, TrackState};
use crate::state::StateStore;
use crate::traffic::{HeaderRoute, Mirror, RouterCapabilities, TrafficRouter};

/// A platform or router method, for fault injection and the call log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Method {
    /// [`Platform::apply`].
    Apply,
    /// [`Platform::scale`].
    Scale,
    /// [`Platform::wait_ready`].
    WaitReady,
    /// [`Platform::status`].
    Status,
    /// [`Platform::remove`].
    Remove,
    /// [`TrafficRouter::set_weights`].
    SetWeights,
    /// [`TrafficRouter::weights`].
    Weights,
    /// [`TrafficRouter::set_header_route`].
    SetHeaderRoute,
    /// [`TrafficRouter::clear_header_routes`].
    ClearHeaderRoutes,
    /// [`TrafficRouter::set_mirror`].
    SetMirror,
    /// [`TrafficRouter::clear_mirror`].
    ClearMirror,
    /// [`Platform::run_hook`].
    RunHook,
}

/// What an injected fault does to the call it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fails with a retryable backend error (`Unavailable`).
    Retryable,
    /// Fails with an error that retrying will not fix (`InvalidInput`).
    Fatal,
    /// Never returns.
    Hang,
}

/// How a logged call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallOutcome {
    /// It ran (it may still have returned a domain error such as a timeout).
    Ran,
    /// An injected fault failed it with this kind.
    Injected(ErrorKind),
    /// An injected fault made it hang.
    Hung,
}

/// One call the kit received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Call {
    /// Its position in the log, from 0.
    pub seq: usize,
    /// When it came, on tokio's clock.
    pub at: Instant,
    /// The method.
    pub method: Method,
    /// The arguments, in words (`canary 2.0.0 x3`).
    pub detail: String,
    /// How it ended.
    pub outcome: CallOutcome,
    /// For routing calls: tracks given traffic that were not ready at that moment.
    pub unready: Vec<Track>,
}

/// A track as the kit sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackView {
    /// The release it runs.
    pub version: Version,
    /// Its replicas.
    pub replicas: u32,
    /// Whether it is ready.
    pub state: TrackState,
}

/// The kit's world for one application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Every track that exists.
    pub tracks: BTreeMap<Track, TrackView>,
    /// The router's weights, if any were set.
    pub weights: Option<TrafficSplit>,
    /// The router's header routes.
    pub header_routes: Vec<HeaderRoute>,
}

impl Snapshot {
    /// The versions that receive traffic: by the router's weights when set,
    /// otherwise (no router) every ready track with replicas.
    pub fn serving(&self) -> BTreeSet<Version> {
        match &self.weights {
            Some(split) => split.iter().filter_map(|(t, _)| self.tracks.get(&t).map(|v| v.version.clone())).collect(),
            None => self
                .tracks
                .values()
                .filter(|v| v.replicas > 0 && v.state == TrackState::Ready)
                .map(|v| v.version.clone())
                .collect(),
        }
    }

    /// Whether any track with replicas runs `version`.
    pub fn runs(&self, version: &Version) -> bool {
        self.tracks.values().any(|v| &v.version == version && v.replicas > 0)
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (track, v) in &self.tracks {
            write!(f, "{track}={}x{} ", v.version, v.replicas)?;
        }
        match &self.weights {
            Some(w) => write!(f, "traffic {w}"),
            None => f.write_str("no router weights"),
        }
    }
}

/// How tracks become ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stuck {
    NeverReady,
    Doomed,
}

#[derive(Debug, Clone)]
pub(crate) struct SimTrack {
    release: Release,
    replicas: u32,
    /// When it becomes ready; `None`: when the test marks it.
    ready_at: Option<Instant>,
    stuck: Option<Stuck>,
}

#[derive(Debug, Default)]
pub(crate) struct World {
    tracks: BTreeMap<(AppId, Track), SimTrack>,
    weights: BTreeMap<AppId, TrafficSplit>,
    stale_weights: BTreeMap<AppId, TrafficSplit>,
    header_routes: BTreeMap<AppId, Vec<HeaderRoute>>,
    mirrors: BTreeMap<AppId, (Track, Mirror)>,
    log: Vec<Call>,
    /// False for a kit made with [`TestKit::without_observations`]: no call log.
    forget_calls: bool,
    counts: BTreeMap<Method, u32>,
    faults: Vec<(Method, u32, Fault)>,
    next_fault: Option<Fault>,
    never_ready: BTreeSet<Version>,
    doomed: BTreeMap<Version, String>,
    failing_hooks: BTreeMap<String, String>,
    ready_delay: Duration,
    manual_ready: bool,
    misreport: u32,
    caps: RouterCapabilities,
}

impl World {
    fn state_of(&self, track: &SimTrack, now: Instant) -> TrackState {
        match track.stuck {
            Some(Stuck::Doomed) if track.replicas > 0 => {
                let reason = self.doomed.get(&track.release.version).cloned().unwrap_or_default();
                return TrackState::Failed(reason);
            }
            Some(Stuck::NeverReady) if track.replicas > 0 => return TrackState::Progressing,
            _ => {}
        }
        if track.replicas == 0 || track.ready_at.is_some_and(|at| at <= now) {
            TrackState::Ready
        } else {
            TrackState::Progressing
        }
    }

    pub(crate) fn track_state(&self, app: &AppId, track: Track, now: Instant) -> TrackState {
        match self.tracks.get(&(app.clone(), track)) {
            Some(t) => self.state_of(t, now),
            None => TrackState::Absent,
        }
    }

    /// A track changed: it converges after the ready delay, unless its release is
    /// marked never ready or doomed.
    fn converge(&self, release: &Release, now: Instant) -> (Option<Instant>, Option<Stuck>) {
        let stuck = if self.doomed.contains_key(&release.version) {
            Some(Stuck::Doomed)
        } else if self.never_ready.contains(&release.version) {
            Some(Stuck::NeverReady)
        } else {
            None
        };
        let ready_at = if self.manual_ready { None } else { Some(now + self.ready_delay) };
        (ready_at, stuck)
    }
}

/// The world shared by the kit's backends.
#[derive(Debug)]
pub(crate) struct Shared {
    world: Mutex<World>,
    changed: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs a call and returns the fault that hits it, if any. Yields first, as a
    /// real backend would, so other tasks (the test) run between calls.
    pub(crate) async fn enter(&self, method: Method, detail: String) -> (usize, Option<Fault>) {
        tokio::task::yield_now().await;
        let mut world = self.lock();
        let count = world.counts.entry(method).or_insert(0);
        *count += 1;
        let n = *count;
        let fault = match world.faults.iter().position(|(m, nth, _)| *m == method && *nth == n) {
            Some(i) => Some(world.faults.remove(i).2),
            None => world.next_fault.take(),
        };
        let outcome = match fault {
            None => CallOutcome::Ran,
            Some(Fault::Retryable) => CallOutcome::Injected(ErrorKind::Unavailable),
            Some(Fault::Fatal) => CallOutcome::Injected(ErrorKind::InvalidInput),
            Some(Fault::Hang) => CallOutcome::Hung,
        };
        let seq = world.log.len();
        if !world.forget_calls {
            world.log.push(Call { seq, at: Instant::now(), method, detail, outcome, unready: Vec::new() });
        }
        (seq, fault)
    }
}

/// Maps an injected fault to the kind of the error it raises.
pub(crate) fn fault_kind(fault: Fault) -> ErrorKind {
    match fault {
        Fault::Retryable => ErrorKind::Unavailable,
        _ => ErrorKind::InvalidInput,
    }
}

/// Timestamps on tokio's clock, so lease expiry is deterministic under a paused clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KitClock {
    instant: Instant,
    timestamp: jiff::Timestamp,
}

impl KitClock {
    fn new() -> Self {
        Self { instant: Instant::now(), timestamp: jiff::Timestamp::now() }
    }

    pub(crate) fn timestamp(&self, at: Instant) -> jiff::Timestamp {
        let elapsed = jiff::SignedDuration::try_from(at.saturating_duration_since(self.instant)).unwrap_or_default();
        self.timestamp.checked_add(elapsed).unwrap_or(self.timestamp)
    }
}

/// One simulated world and its backends. Cheap to clone; clones share the world.
#[derive(Debug, Clone)]
pub struct TestKit {
    shared: Arc<Shared>,
    platform: Arc<TestPlatform>,
    router: Arc<TestRouter>,
    metrics: Arc<TestMetrics>,
    state: Arc<TestStateStore>,
    history: Arc<TestHistoryStore>,
}

impl Default for TestKit {
    fn default() -> Self {
        Self::new()
    }
}

impl TestKit {
    /// A kit whose router can do everything, with tracks ready 5 s after a change.
    pub fn new() -> Self {
        Self::with_router_capabilities(RouterCapabilities::full())
    }

    /// A kit that keeps no observations: no call log ([`TestKit::calls`] stays empty)
    /// and no copy of every saved state ([`TestKit::saved_states`] stays empty), only
    /// what its backends need to behave. For long simulations and for measuring the
    /// engine's own memory, which the log and copies would otherwise swamp.
    pub fn without_observations() -> Self {
        let kit = Self::new();
        kit.shared.lock().forget_calls = true;
        kit.state.forget_saves();
        kit
    }

    /// A kit whose router has `caps`.
    pub fn with_router_capabilities(caps: RouterCapabilities) -> Self {
        let clock = KitClock::new();
        let world = World { ready_delay: Duration::from_secs(5), caps, ..World::default() };
        let shared = Arc::new(Shared { world: Mutex::new(world), changed: Notify::new() });
        Self {
            platform: Arc::new(TestPlatform::new(Arc::clone(&shared))),
            router: Arc::new(TestRouter::new(Arc::clone(&shared))),
            metrics: Arc::new(TestMetrics::new()),
            state: Arc::new(TestStateStore::new(clock)),
            history: Arc::new(TestHistoryStore::default()),
            shared,
        }
    }

    /// The platform.
    pub fn platform(&self) -> Arc<dyn Platform> {
        self.platform.clone()
    }

    /// The router.
    pub fn router(&self) -> Arc<dyn TrafficRouter> {
        self.router.clone()
    }

    /// The metrics provider, as the engine takes it.
    pub fn metrics(&self) -> Arc<dyn MetricsProvider> {
        self.metrics.clone()
    }

    /// The metrics provider, to script values.
    pub fn metric_values(&self) -> &TestMetrics {
        &self.metrics
    }

    /// The state store.
    pub fn state_store(&self) -> Arc<dyn StateStore> {
        self.state.clone()
    }

    /// The state store as seen by a process whose wall clock is `offset` ahead
    /// (negative: behind) of the others: the leases it writes carry its skewed
    /// timestamps. The documents and leases are shared with
    /// [`TestKit::state_store`].
    pub fn state_store_with_clock_offset(&self, offset: jiff::SignedDuration) -> Arc<dyn StateStore> {
        Arc::new(self.state.with_offset(offset))
    }

    /// Fails the `nth` call (from 1, counted since the kit was made) of a state-store
    /// method.
    pub fn fail_state_call(&self, method: StateMethod, nth: u32, fault: Fault) {
        self.state.fail_call(method, nth, fault);
    }

    /// Fails every call of a state-store method from now for `duration` on tokio's
    /// clock (a store that is down, a network partition).
    pub fn fail_state_calls_for(&self, method: StateMethod, duration: Duration, fault: Fault) {
        self.state.fail_for(method, duration, fault);
    }

    /// Fails `count` calls of a state-store method from the `from`th on.
    pub fn fail_state_calls(&self, method: StateMethod, from: u32, count: u32, fault: Fault) {
        self.state.fail_calls(method, from, count, fault);
    }

    /// How many calls of a state-store method the kit has received.
    pub fn state_calls(&self, method: StateMethod) -> u32 {
        self.state.calls_of(method)
    }

    /// The `nth` save (from 1, counted since the kit was made) is stored, and its
    /// caller gets a retryable error as if the response was lost on the way.
    pub fn lose_save_response(&self, nth: u32) {
        self.state.lose_save_response(nth);
    }

    /// The lease of `app`'s lock as stored now, if any.
    pub fn lease(&self, app: &AppId) -> Option<crate::state::LockLease> {
        self.state.lease(app)
    }

    /// Deletes `app`'s saved progress behind the engine's back (an operator's
    /// `kubectl delete`).
    pub fn delete_state(&self, app: &AppId) {
        self.state.delete_state(app);
    }

    /// The history store.
    pub fn history_store(&self) -> Arc<dyn HistoryStore> {
        self.history.clone()
    }

    /// The history store, to read what was recorded.
    pub fn history(&self) -> &TestHistoryStore {
        &self.history
    }

    /// Runs `release` on `track` with the spec's replicas, ready at once, with all
    /// traffic: the state before a rollout.
    pub fn seed(&self, spec: &AppSpec, track: Track, release: &Release) {
        let app = spec.id();
        let mut world = self.shared.lock();
        let sim =
            SimTrack { release: release.clone(), replicas: spec.replicas, ready_at: Some(Instant::now()), stuck: None };
        world.tracks.insert((app.clone(), track), sim);
        world.weights.insert(app, TrafficSplit::all(track));
    }

    /// How long a changed track takes to become ready (5 s by default).
    pub fn set_ready_delay(&self, delay: Duration) {
        self.shared.lock().ready_delay = delay;
    }

    /// With `true`, changed tracks only become ready when [`TestKit::mark_ready`]
    /// says so.
    pub fn set_manual_ready(&self, manual: bool) {
        self.shared.lock().manual_ready = manual;
    }

    /// Makes `track` ready now and wakes whoever waits for it.
    pub fn mark_ready(&self, app: &AppId, track: Track) {
        if let Some(t) = self.shared.lock().tracks.get_mut(&(app.clone(), track)) {
            t.ready_at = Some(Instant::now());
        }
        self.shared.changed.notify_waiters();
    }

    /// Tracks that run `version` and are not ready yet never become ready, nor do
    /// tracks changed to it later.
    pub fn never_ready(&self, version: &Version) {
        let now = Instant::now();
        let mut world = self.shared.lock();
        world.never_ready.insert(version.clone());
        let World { tracks, .. } = &mut *world;
        for t in tracks.values_mut() {
            if &t.release.version == version && t.ready_at.is_none_or(|at| at > now) {
                t.stuck = Some(Stuck::NeverReady);
            }
        }
    }

    /// Runs of the hook named `name` fail from now on, with `logs` as the tail of
    /// their log.
    pub fn fail_hook(&self, name: &str, logs: impl Into<String>) {
        self.shared.lock().failing_hooks.insert(name.to_owned(), logs.into());
    }

    /// Tracks changed to `version` from now on fail at once (a crash loop, a missing
    /// image), as do those of it that are not ready yet.
    pub fn doomed(&self, version: &Version, reason: impl Into<String>) {
        let now = Instant::now();
        let mut world = self.shared.lock();
        world.doomed.insert(version.clone(), reason.into());
        let World { tracks, .. } = &mut *world;
        for t in tracks.values_mut() {
            if &t.release.version == version && t.ready_at.is_none_or(|at| at > now) {
                t.stuck = Some(Stuck::Doomed);
            }
        }
        drop(world);
        self.shared.changed.notify_waiters();
    }

    /// Fails the `nth` call (from 1, counted since the kit was made) of `method`.
    pub fn fail_call(&self, method: Method, nth: u32, fault: Fault) {
        self.shared.lock().faults.push((method, nth, fault));
    }

    /// Fails the next call of any platform or router method.
    pub fn fail_next_call(&self, fault: Fault) {
        self.shared.lock().next_fault = Some(fault);
    }

    /// The next `reads` reads of the weights report the split before the last change.
    pub fn misreport_weights(&self, reads: u32) {
        self.shared.lock().misreport = reads;
    }

    /// The `n`th save of progress (from 1) is stored and never returns: the engine
    /// stops as if its process died. Wait for it with [`TestKit::crashed`].
    pub fn crash_after_saves(&self, n: usize) {
        self.state.crash_after_saves(n);
    }

    /// Returns once the crash asked for with [`TestKit::crash_after_saves`] happened.
    pub async fn crashed(&self) {
        self.state.crashed().await;
    }

    /// Every state document saved, in order.
    pub fn saved_states(&self) -> Vec<SavedState> {
        self.state.saved()
    }

    /// Every platform and router call, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().log.clone()
    }

    /// Routing calls that gave traffic to a track that was not ready at that moment.
    pub fn unready_routing(&self) -> Vec<Call> {
        self.shared.lock().log.iter().filter(|c| !c.unready.is_empty()).cloned().collect()
    }

    /// The mirror the router holds for `app`: the track it copies to, and what.
    pub fn mirror(&self, app: &AppId) -> Option<(Track, Mirror)> {
        self.shared.lock().mirrors.get(app).cloned()
    }

    /// The world of `app` now.
    pub fn snapshot(&self, app: &AppId) -> Snapshot {
        let now = Instant::now();
        let world = self.shared.lock();
        let tracks = world
            .tracks
            .iter()
            .filter(|((a, _), _)| a == app)
            .map(|((_, track), t)| {
                (
                    *track,
                    TrackView {
                        version: t.release.version.clone(),
                        replicas: t.replicas,
                        state: world.state_of(t, now),
                    },
                )
            })
            .collect();
        Snapshot {
            tracks,
            weights: world.weights.get(app).cloned(),
            header_routes: world.header_routes.get(app).cloned().unwrap_or_default(),
        }
    }
}

/// An application `shop/checkout` with `replicas` replicas, and two releases of it
/// (`1.0.0`, `2.0.0`), for tests and examples.
pub fn sample_app(replicas: u32) -> (AppSpec, Release, Release) {
    let name = |s: &str| Name::new(s).unwrap_or_else(|_| unreachable!("literal names are valid"));
    let image = |s: &str| ImageRef::parse(s).unwrap_or_else(|_| unreachable!("literal images are valid"));
    let version = |s: &str| Version::new(s).unwrap_or_else(|_| unreachable!("literal versions are valid"));
    let spec =
        AppSpec::new(Namespace::from(name("shop")), name("checkout"), image("registry.local/shop/checkout:1.0.0"))
            .replicas(replicas);
    let v1 = Release::new(version("1.0.0"), image("registry.local/shop/checkout:1.0.0"));
    let v2 = Release::new(version("2.0.0"), image("registry.local/shop/checkout:2.0.0"));
    (spec, v1, v2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RolloutEngine, RolloutRequest};
    use crate::model::DeploymentStatus;
    use crate::strategy::{Canary, PlanInput, Strategy};

    async fn roll_out(kit: &TestKit) {
        let (spec, v1, v2) = sample_app(4);
        kit.seed(&spec, Track::Stable, &v1);
        let engine =
            RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store()).router(kit.router()).build();
        let plan = Canary::default().plan(&PlanInput::new(4));
        let report = engine.run(RolloutRequest::new(spec, v2, plan).from(v1)).await.unwrap();
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kit_without_observations_runs_rollouts_and_keeps_no_log() {
        let observed = TestKit::new();
        roll_out(&observed).await;
        assert!(!observed.calls().is_empty() && !observed.saved_states().is_empty());
        let lean = TestKit::without_observations();
        roll_out(&lean).await;
        assert!(lean.calls().is_empty(), "{} calls logged", lean.calls().len());
        assert!(lean.saved_states().is_empty());
        assert!(lean.state_calls(StateMethod::Save) > 0, "the store was still used");
    }
}
