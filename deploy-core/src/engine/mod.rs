//! The rollout engine: executes a [`Plan`] against a [`Platform`] and a
//! [`TrafficRouter`], judges each step, saves progress, and rolls back on its own.
//!
//! See the `testkit` module (feature `testkit`) for a complete
//! rollout on in-memory backends.
//!
//! # Guarantees
//! - Traffic only goes to tracks the platform reports ready; weights are read back
//!   and compared after every change.
//! - Progress is saved (compare-and-swap) after every step; a rollout whose process
//!   died is finished by [`RolloutEngine::resume`] to the same end state.
//! - One driver per application, fenced: the lock's lease has a token of its own;
//!   a second start or resume fails at once ([`RolloutError::AlreadyRunning`] in
//!   the same engine, [`RolloutError::Locked`] elsewhere) and disturbs nothing; a
//!   driver that cannot renew its lease stops changing the platform before the
//!   lease can lapse and ends with [`RolloutError::LockLost`].
//! - The serving release is read from the platform: a request without `from`
//!   adopts the release the old track runs, one whose `from` disagrees is refused
//!   ([`RolloutError::FromMismatch`]), and a blue-green plan onto the colour that
//!   serves is refused ([`RolloutError::LiveTrackMismatch`]).
//! - On any failure the previous release serves 100 % again and the tracks this
//!   rollout created are removed (unless [`EngineConfig::keep_failed_release`]);
//!   tracks that existed before are never removed. A failed rollback leaves the
//!   application degraded in the state store until `resume` completes it.
//! - Other processes control a rollout by its application through the state store:
//!   [`RolloutEngine::promote`], [`RolloutEngine::abort`], [`RolloutEngine::pause`],
//!   [`RolloutEngine::unpause`].
//!
//! [`Platform`]: crate::platform::Platform
//! [`TrafficRouter`]: crate::traffic::TrafficRouter

mod decision;
mod event_queue;
mod events;
mod handle;
mod notify;
mod preflight;
mod retry;
mod run;
mod telemetry;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

pub use decision::DecisionKind;
pub use events::RolloutEvent;
pub use handle::RolloutHandle;
pub use preflight::{Preflight, PreflightInput};
pub use retry::RetryPolicy;

use handle::{Control, Progress};

use crate::analysis::{AnalysisRunner, AnalysisTarget, JudgeFactory, JudgeRegistry};
use crate::error::{Classify, ErrorKind};
use crate::health::HealthCheck;
use crate::history::{HistoryError, HistoryStore};
use crate::metrics::MetricsProvider;
use crate::model::record::LogLevel;
use crate::model::{
    AppId, AppSpec, CauseKind, DeploymentId, DeploymentRecord, DeploymentStatus, Environment, Release, Track, TrafficSplit,
    ValidationError, ValidationErrors, Version,
    FailureCause,
};
use crate::plan::{Plan, Step};
use crate::platform::{Platform, PlatformError, TrackState};
use crate::state::{
    ControlRequest, LockLease, LockRequest, Revision, RolloutPhase, RolloutState, StateError, StateStore, WriteStamp,
};
use crate::traffic::{RouterError, TrafficRouter};

/// How the engine behaves; the defaults suit a production cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The longest one step may take beyond the waits its plan asks for (a pause's
    /// or an analysis' own duration); past it the step fails and the rollout rolls back.
    pub step_deadline: Duration,
    /// The deadline given to [`Platform::wait_ready`].
    pub readiness_deadline: Duration,
    /// Retries of retryable platform, router and store errors.
    pub retry: RetryPolicy,
    /// The lease of the per-app lock; renewed every third of it while running. A
    /// driver that could not renew it for two thirds of it stops changing the
    /// platform; another engine takes it over only after watching it unchanged for
    /// all of it.
    pub lock_ttl: Duration,
    /// Who holds the lock (a pod or process name), for people reading it; each
    /// acquisition is told apart by its own token, not by this name.
    pub holder: String,
    /// How often a running rollout reads control requests of other processes
    /// from the state store.
    pub control_interval: Duration,
    /// After a failure, keep the new release's tracks (without traffic) for
    /// debugging instead of removing them.
    pub keep_failed_release: bool,
    /// How many events a rollout's handle queues for its reader (at least one;
    /// default [`EngineConfig::DEFAULT_EVENT_CAPACITY`]). The engine never waits
    /// for the reader: when the queue is full the oldest event is dropped, and the
    /// reader gets one [`RolloutEvent::Lagged`] with the count in their place, then
    /// the newest events. A rollout emits a few events per step, so the default
    /// is lost only by a reader that stopped reading; the deployment record keeps
    /// every decision whatever the reader does.
    pub event_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            step_deadline: Duration::from_secs(15 * 60),
            readiness_deadline: Duration::from_secs(10 * 60),
            retry: RetryPolicy::default(),
            lock_ttl: Duration::from_secs(60),
            holder: format!("deploy-rs-{}", DeploymentId::generate()),
            control_interval: Duration::from_secs(5),
            keep_failed_release: false,
            event_capacity: Self::DEFAULT_EVENT_CAPACITY,
        }
    }
}

impl EngineConfig {
    /// The default of [`EngineConfig::event_capacity`]: 256 events, the most a
    /// rollout whose reader stopped reading keeps queued.
    pub const DEFAULT_EVENT_CAPACITY: usize = 256;

    /// Sets how many events the handle queues before the oldest are dropped
    /// ([`EngineConfig::event_capacity`]; 0 counts as 1).
    ///
    /// ```
    /// use deploy_core::engine::EngineConfig;
    /// let config = EngineConfig::default().event_capacity(16);
    /// assert_eq!(config.event_capacity, 16);
    /// assert_eq!(EngineConfig::default().event_capacity, EngineConfig::DEFAULT_EVENT_CAPACITY);
    /// ```
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Sets the step deadline.
    #[must_use]
    pub fn step_deadline(mut self, deadline: Duration) -> Self {
        self.step_deadline = deadline;
        self
    }

    /// Sets the readiness deadline.
    #[must_use]
    pub fn readiness_deadline(mut self, deadline: Duration) -> Self {
        self.readiness_deadline = deadline;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the lock's lease.
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Sets the lock holder's name.
    #[must_use]
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Sets how often a running rollout reads control requests.
    #[must_use]
    pub fn control_interval(mut self, interval: Duration) -> Self {
        self.control_interval = interval;
        self
    }

    /// Keeps a failed release's tracks instead of removing them.
    #[must_use]
    pub fn keep_failed_release(mut self, keep: bool) -> Self {
        self.keep_failed_release = keep;
        self
    }
}

/// How a rollout ended, when the engine could carry it to an end.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RolloutReport {
    /// `Succeeded`, `RolledBack`, or `Failed` when even the rollback failed.
    pub status: DeploymentStatus,
    /// Why it did not succeed.
    pub cause: Option<FailureCause>,
    /// The deployment record, as stored in the history store.
    pub record: DeploymentRecord,
}

/// Why the engine could not start, resume or finish a rollout. A rollout that ran
/// and rolled back is not an error: it is a [`RolloutReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// Another driver holds the application's lock; nothing was changed. A
    /// driver that died is taken over by a later call once this engine has seen
    /// its lease unchanged for the lease's ttl.
    #[error("{app} is locked by {holder} until {expires_at} (holder's clock)")]
    Locked {
        /// The application.
        app: AppId,
        /// The current holder.
        holder: String,
        /// When its lease lapses, by its holder's clock (informational: nobody
        /// compares it with their own clock).
        expires_at: Timestamp,
    },
    /// The spec or plan is invalid, or needs what the engine does not have.
    #[error("invalid rollout of {app}: {errors}")]
    Invalid {
        /// The application.
        app: AppId,
        /// Every problem.
        errors: ValidationErrors,
    },
    /// A rollout of the application was interrupted and must be resumed first.
    #[error("{app} has an unfinished rollout {deployment}; resume it first")]
    Unfinished {
        /// The application.
        app: AppId,
        /// The interrupted deployment.
        deployment: DeploymentId,
    },
    /// There is no saved rollout to resume.
    #[error("{app} has no rollout to resume")]
    NothingToResume {
        /// The application.
        app: AppId,
    },
    /// The saved state cannot be resumed.
    #[error("saved rollout of {app} cannot be resumed: {reason}")]
    CorruptState {
        /// The application.
        app: AppId,
        /// What is missing.
        reason: String,
    },
    /// The driver's lease is lost (another holder has it) or may lapse (renewals
    /// kept failing): the rollout stopped before the lease could lapse, without
    /// touching the platform or the router further, and saved its progress when it
    /// still could. Another engine resumes it.
    #[error("lost the lock of {app} (holder now {holder}): {reason}")]
    LockLost {
        /// The application.
        app: AppId,
        /// The new holder, `unknown` when renewals failed.
        holder: String,
        /// What happened.
        reason: String,
    },
    /// This engine already runs a rollout of the application; the request changed
    /// nothing.
    #[error("{app} is already being rolled out by this engine: deployment {deployment}")]
    AlreadyRunning {
        /// The application.
        app: AppId,
        /// The running deployment.
        deployment: DeploymentId,
    },
    /// A rollback of the application failed earlier; until a rollback completes
    /// ([`RolloutEngine::resume`] retries it, [`RolloutEngine::emergency_rollback`]
    /// forces it) no new rollout starts.
    #[error("{app} is degraded: the rollback of {deployment} failed ({cause}); resume it to retry the rollback")]
    Degraded {
        /// The application.
        app: AppId,
        /// The deployment whose rollback failed.
        deployment: DeploymentId,
        /// Why.
        cause: FailureCause,
    },
    /// The request's `from` is not the release the platform runs on the old track.
    #[error("refusing to roll out {app}: the request says {requested} serves, but {track} runs {}", running.as_ref().map_or_else(|| "nothing".to_owned(), ToString::to_string))]
    FromMismatch {
        /// The application.
        app: AppId,
        /// The plan's old track.
        track: Track,
        /// The release the request named.
        requested: Version,
        /// The release the track runs, if any.
        running: Option<Version>,
    },
    /// The old track runs a release the request did not name, and the platform
    /// does not report its image, so it could not be restored: name it as `from`.
    #[error("{track} of {app} runs {version}, whose image the platform does not report; pass it as the request's from")]
    ServingReleaseUnknown {
        /// The application.
        app: AppId,
        /// The plan's old track.
        track: Track,
        /// The version it runs.
        version: Version,
    },
    /// The plan would deploy the new release onto the track that serves traffic
    /// (a blue-green plan made for the wrong live colour).
    #[error("refusing to deploy {app} onto {serving}: it serves traffic now (the plan says {declared} is live)")]
    LiveTrackMismatch {
        /// The application.
        app: AppId,
        /// The live track the plan was made for.
        declared: Track,
        /// The track that serves, which the plan would deploy onto.
        serving: Track,
    },
    /// A promotion was asked for while no pause waits for one.
    #[error("promote of {app} refused: no pause waits for it (the rollout is at {})", describe_step(*step, current))]
    PromoteRejected {
        /// The application.
        app: AppId,
        /// The step it is at, when known.
        step: Option<usize>,
        /// What that step does, or the phase.
        current: String,
    },
    /// There is no rollout of the application in progress to control.
    #[error("{app} has no rollout in progress")]
    NoRollout {
        /// The application.
        app: AppId,
    },
    /// The platform failed while the engine checked what runs.
    #[error("platform failed: {0}")]
    Platform(#[source] PlatformError),
    /// The router failed while the engine checked what serves.
    #[error("traffic router failed: {0}")]
    Router(#[source] RouterError),
    /// The state store failed.
    #[error("state store failed: {0}")]
    State(#[source] StateError),
    /// The history store failed.
    #[error("history store failed: {0}")]
    History(#[source] HistoryError),
    /// The rollout's task stopped (it was killed or panicked).
    #[error("rollout task stopped: {reason}")]
    Stopped {
        /// What the runtime said.
        reason: String,
    },
}

impl Classify for RolloutError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Locked { .. }
            | Self::Unfinished { .. }
            | Self::LockLost { .. }
            | Self::AlreadyRunning { .. }
            | Self::Degraded { .. }
            | Self::FromMismatch { .. }
            | Self::LiveTrackMismatch { .. }
            | Self::PromoteRejected { .. } => ErrorKind::Conflict,
            Self::Invalid { .. } | Self::CorruptState { .. } | Self::ServingReleaseUnknown { .. } => {
                ErrorKind::InvalidInput
            }
            Self::NothingToResume { .. } | Self::NoRollout { .. } => ErrorKind::NotFound,
            Self::Platform(e) => e.kind(),
            Self::Router(e) => e.kind(),
            Self::State(e) => e.kind(),
            Self::History(e) => e.kind(),
            Self::Stopped { .. } => ErrorKind::Other,
        }
    }
}

impl RolloutError {
    fn from_lock(app: &AppId, e: StateError) -> Self {
        match e {
            StateError::LockHeld { app, holder, expires_at } => Self::Locked { app, holder, expires_at },
            StateError::LockLost { holder, .. } => {
                Self::LockLost { app: app.clone(), holder, reason: "another holder has the lease".to_owned() }
            }
            other => Self::State(other),
        }
    }
}

fn describe_step(step: Option<usize>, current: &str) -> String {
    match step {
        Some(step) => format!("step {}: {current}", step + 1),
        None => current.to_owned(),
    }
}

/// One rollout to carry out.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RolloutRequest {
    /// What to run.
    pub spec: AppSpec,
    /// The release that serves now, as the caller believes. The engine reads
    /// the old track from the platform: `None` adopts what runs there (the event
    /// stream and the record say so); a release that differs from what runs is
    /// refused with [`RolloutError::FromMismatch`]. Naming it is still the safe
    /// path: it says which image to restore should the old track need it.
    pub from: Option<Release>,
    /// The release to roll out.
    pub to: Release,
    /// The environment, for the record.
    pub environment: Environment,
    /// The plan a strategy made.
    pub plan: Plan,
    /// When the change was committed, for DORA's lead time.
    pub committed_at: Option<Timestamp>,
}

impl RolloutRequest {
    /// A rollout of `to` by `plan`, in production, from the release the platform
    /// runs on the plan's old track (if any; see [`RolloutRequest::from`]).
    pub fn new(spec: AppSpec, to: Release, plan: Plan) -> Self {
        Self { spec, from: None, to, environment: Environment::Production, plan, committed_at: None }
    }

    /// Sets the release that serves now; the engine checks it against the
    /// platform before it changes anything.
    #[must_use]
    pub fn from(mut self, release: Release) -> Self {
        self.from = Some(release);
        self
    }

    /// Sets the environment.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// Sets the commit time.
    #[must_use]
    pub fn committed_at(mut self, at: Timestamp) -> Self {
        self.committed_at = Some(at);
        self
    }
}

pub(crate) struct Inner {
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) router: Option<Arc<dyn TrafficRouter>>,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) history: Arc<dyn HistoryStore>,
    pub(crate) metrics: Option<Arc<dyn MetricsProvider>>,
    pub(crate) health: Vec<Arc<dyn HealthCheck>>,
    pub(crate) judges: JudgeRegistry,
    pub(crate) config: EngineConfig,
    pub(crate) preflight: Option<Arc<dyn Preflight>>,
    pub(crate) notifier: Option<Arc<dyn crate::notify::Notifier>>,
    /// The rollouts this engine runs now, so that a caller without the handle can
    /// still reach them ([`RolloutEngine::emergency_rollback`]).
    running: Mutex<HashMap<AppId, Running>>,
    /// Leases of other holders as this engine first saw them, on its monotonic
    /// clock: a lease seen unchanged for its whole ttl may be taken over.
    observed: Mutex<HashMap<AppId, (LockLease, Instant)>>,
    /// Leases of this engine's rollouts whose task ended without releasing them
    /// (killed): this engine may take them over at once (the crash takeover).
    orphans: Mutex<HashMap<AppId, LockLease>>,
}

/// How a rollout that ran in this engine ended, for callers without its handle.
type Outcome = Option<Result<RolloutReport, String>>;

/// A rollout running in this engine.
struct Running {
    deployment: DeploymentId,
    controls: mpsc::UnboundedSender<Control>,
    progress: watch::Receiver<Progress>,
    done: watch::Receiver<Outcome>,
}

impl Inner {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<AppId, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, HashMap<AppId, (LockLease, Instant)>> {
        self.observed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn orphans(&self) -> std::sync::MutexGuard<'_, HashMap<AppId, LockLease>> {
        self.orphans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A lease this engine took, and how.
struct Acquired {
    lease: LockLease,
    /// When the acquisition was sent, on this process' monotonic clock.
    sent: Instant,
    /// Why a held lease was taken over, if it was.
    takeover: Option<String>,
}

/// What the engine found on the platform before a rollout.
struct Inspection {
    from: Option<Release>,
    existed: Vec<Track>,
    notes: Vec<DecisionKind>,
}

/// Lists a rollout as running in its engine while its task lives; publishes its
/// outcome and unlists it when the task ends or is dropped (killed).
struct Registration {
    inner: Arc<Inner>,
    app: AppId,
    deployment: DeploymentId,
    done: watch::Sender<Outcome>,
    lease: Arc<run::LeaseView>,
}

impl Registration {
    fn publish(&self, result: &Result<RolloutReport, RolloutError>) {
        let outcome = match result {
            Ok(report) => Ok(report.clone()),
            Err(e) => Err(e.to_string()),
        };
        self.done.send_replace(Some(outcome));
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.lease() {
            // Not released: the task was killed (or could not release it). Only
            // this engine knows its driver is gone, so only it may take it over at once.
            self.inner.orphans().insert(self.app.clone(), lease);
        }
        let mut running = self.inner.running();
        if running.get(&self.app).is_some_and(|r| r.deployment == self.deployment) {
            running.remove(&self.app);
        }
    }
}

/// How a rollout task begins.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Start,
    Resume,
    Emergency(String),
}

/// Builds a [`RolloutEngine`]; the platform and both stores are required, the rest
/// optional.
#[must_use]
pub struct RolloutEngineBuilder {
    inner: Inner,
}

impl RolloutEngineBuilder {
    /// Signs saved progress with `key` and refuses progress whose signature does
    /// not match ([`SignedStateStore`](crate::signed_state::SignedStateStore)): a
    /// document changed outside the engines is never resumed. Every engine that
    /// drives or controls the same applications needs the same key.
    pub fn sign_state(mut self, key: crate::signed_state::StateKey) -> Self {
        self.inner.state = Arc::new(crate::signed_state::SignedStateStore::new(self.inner.state, key));
        self
    }

    /// Routes traffic with `router`; without one, canary weights are reached by
    /// replica ratio and blue-green plans are rejected.
    pub fn router(mut self, router: Arc<dyn TrafficRouter>) -> Self {
        self.inner.router = Some(router);
        self
    }

    /// Measures analysis metrics with `metrics`.
    pub fn metrics(mut self, metrics: Arc<dyn MetricsProvider>) -> Self {
        self.inner.metrics = Some(metrics);
        self
    }

    /// Runs `preflight`'s checklist (its `Pre` phase) before a rollout changes
    /// anything: a no-go fails the rollout with [`CauseKind::PreflightFailed`],
    /// naming every blocking item, and leaves the platform as it was.
    pub fn preflight(mut self, preflight: Arc<dyn Preflight>) -> Self {
        self.inner.preflight = Some(preflight);
        self
    }

    /// Tells `notifier` of every rollout this engine starts (`DeploymentStarted`)
    /// and of how each rollout it drives ends (`DeploymentSucceeded`, `RolledBack`,
    /// `DeploymentFailed`), with the deployment id, versions, image and strategy as
    /// fields: a [`WebhookNotifier`](crate::webhook::WebhookNotifier) in the CDEvents
    /// format turns them into `pipelinerun.started`, `service.deployed` /
    /// `service.upgraded`, `service.rolledback` and `pipelinerun.finished`. Best
    /// effort: a notification that fails or takes over 10 s is logged and the rollout
    /// goes on; the end is told before [`RolloutHandle::wait`] returns.
    pub fn notifier(mut self, notifier: Arc<dyn crate::notify::Notifier>) -> Self {
        self.inner.notifier = Some(notifier);
        self
    }

    /// Makes a health check available to analyses by its name.
    pub fn health_check(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.inner.health.push(check);
        self
    }

    /// Registers a judge for [`JudgeSpec::Custom`](crate::analysis::JudgeSpec::Custom).
    pub fn judge(mut self, name: impl Into<String>, factory: Arc<dyn JudgeFactory>) -> Self {
        self.inner.judges.register(name, factory);
        self
    }

    /// Sets the configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.inner.config = config;
        self
    }

    /// The engine.
    pub fn build(self) -> RolloutEngine {
        RolloutEngine { inner: Arc::new(self.inner) }
    }
}

/// Executes plans; cheap to clone and shared between tasks.
#[derive(Clone)]
pub struct RolloutEngine {
    inner: Arc<Inner>,
}

impl fmt::Debug for RolloutEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutEngine")
            .field("router", &self.inner.router.is_some())
            .field("metrics", &self.inner.metrics.is_some())
            .field("health_checks", &self.inner.health.iter().map(|h| h.name()).collect::<Vec<_>>())
            .field("judges", &self.inner.judges)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl RolloutEngine {
    /// A builder from the parts every rollout needs.
    pub fn builder(
        platform: Arc<dyn Platform>,
        state: Arc<dyn StateStore>,
        history: Arc<dyn HistoryStore>,
    ) -> RolloutEngineBuilder {
        RolloutEngineBuilder {
            inner: Inner {
                platform,
                router: None,
                state,
                history,
                metrics: None,
                health: Vec::new(),
                judges: JudgeRegistry::new(),
                config: EngineConfig::default(),
                preflight: None,
                notifier: None,
                running: Mutex::new(HashMap::new()),
                observed: Mutex::new(HashMap::new()),
                orphans: Mutex::new(HashMap::new()),
            },
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The state store this engine keeps progress and locks in, for drivers built
    /// on the engine (a fleet driver reads it to learn whether a rollout it
    /// announced was started before it died).
    pub fn state_store(&self) -> &Arc<dyn StateStore> {
        &self.inner.state
    }

    /// The history store this engine records deployments in.
    pub fn history_store(&self) -> &Arc<dyn HistoryStore> {
        &self.inner.history
    }

    /// Every problem that would stop `request` from running on this engine: the
    /// spec's, the plan's against the router's capabilities, and analyses that name
    /// judges, health checks or metrics the engine does not have.
    pub fn validate(&self, request: &RolloutRequest) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = request.spec.validate() {
            errors.extend(e);
        }
        if let Err(e) = request.plan.validate(self.inner.router.as_ref().map(|r| r.capabilities())) {
            errors.extend(e);
        }
        let target = AnalysisTarget::new(
            request.spec.id(),
            request.plan.new_track,
            request.plan.old_track,
            request.to.version.clone(),
        );
        if !self.inner.platform.supports_hooks() {
            for (i, step) in request.plan.steps.iter().enumerate() {
                if let Step::Hook { hook, .. } = step {
                    errors.push(ValidationError::new(
                        format!("step {} (hook)", i + 1),
                        hook.to_string(),
                        "the platform cannot run hooks",
                    ));
                }
            }
        }
        for step in &request.plan.steps {
            if let Step::Analyze(spec) = step
                && let Err(e) = AnalysisRunner::new(
                    spec.clone(),
                    target.clone(),
                    self.inner.metrics.clone(),
                    &self.inner.judges,
                    &self.inner.health,
                )
            {
                // Spec problems were already reported by the plan's validation.
                errors
                    .extend(e.into_iter().filter(|e| !e.field.starts_with("analysis") || e.reason.contains("engine")));
            }
        }
        errors.into_result(())
    }

    /// Validates `request`, reads what runs on the platform, takes the
    /// application's lock, saves the initial state, records the deployment as
    /// started and runs it in a new task.
    ///
    /// Fails at once, having changed nothing, with
    /// [`RolloutError::AlreadyRunning`] when this engine rolls the application out
    /// already, [`RolloutError::Locked`] when another holder has its lock,
    /// [`RolloutError::Unfinished`] when an interrupted rollout must be resumed
    /// first, [`RolloutError::Degraded`] when a rollback failed and must be
    /// completed first, [`RolloutError::FromMismatch`] /
    /// [`RolloutError::ServingReleaseUnknown`] when the request's `from` and the
    /// platform disagree, and [`RolloutError::LiveTrackMismatch`] when the plan
    /// would deploy onto the track that serves.
    #[tracing::instrument(skip_all, fields(deploy.app = %request.spec.id(), deploy.strategy = %request.plan.strategy, release.version = %request.to.version), err)]
    pub async fn start(&self, request: RolloutRequest) -> Result<RolloutHandle, RolloutError> {
        let app = request.spec.id();
        self.validate(&request).map_err(|errors| RolloutError::Invalid { app: app.clone(), errors })?;
        self.refuse_if_running(&app)?;
        let inner = &self.inner;
        let acquired = self.lock(&app).await?;
        let prepared = async {
            if let Some(existing) = inner.state.load(&app).await.map_err(RolloutError::State)? {
                let deployment = existing.value.record.id;
                return Err(match existing.value.phase {
                    RolloutPhase::Degraded(cause) => RolloutError::Degraded { app: app.clone(), deployment, cause },
                    _ => RolloutError::Unfinished { app: app.clone(), deployment },
                });
            }
            let inspection = self.inspect(&request).await?;
            let mut record = DeploymentRecord::new(
                app.clone(),
                request.environment,
                inspection.from.clone(),
                request.to.clone(),
                request.plan.strategy.as_str(),
            );
            record.committed_at = request.committed_at;
            record.start();
            for note in &inspection.notes {
                record.log(LogLevel::Info, note.to_string());
            }
            let mut state = RolloutState::new(record, TrafficSplit::all(request.plan.old_track));
            state.plan = Some(request.plan.clone());
            state.spec = Some(request.spec.clone());
            state.existed_before = Some(inspection.existed);
            state.written_by = Some(WriteStamp::new(acquired.lease.token.clone(), 1));
            let revision = self.save_first(&app, &state).await?;
            inner.history.record(&state.record).await.map_err(RolloutError::History)?;
            Ok((state, revision, inspection.notes))
        }
        .await;
        let (state, revision, notes) = match prepared {
            Ok(ok) => ok,
            Err(e) => {
                let _ = inner.state.release_lock(&acquired.lease).await;
                return Err(e);
            }
        };
        Ok(self.spawn(state, request.plan, request.spec, Some(revision), acquired, Origin::Start, notes))
    }

    /// Saves a new rollout's first document; a lost answer is recognised by the
    /// document's stamp.
    async fn save_first(&self, app: &AppId, state: &RolloutState) -> Result<Revision, RolloutError> {
        let store = &self.inner.state;
        let policy = self.inner.config.retry;
        let mut tries = 1;
        loop {
            match store.save(app, state, None).await {
                Ok(revision) => return Ok(revision),
                Err(e) => {
                    let stored = store.load(app).await.ok().flatten();
                    if let Some(stored) = &stored
                        && stored.value.written_by.is_some()
                        && stored.value.written_by == state.written_by
                    {
                        return Ok(stored.revision.clone());
                    }
                    match e {
                        StateError::Conflict { .. } => {
                            let deployment = stored.map_or_else(|| state.record.id.clone(), |s| s.value.record.id);
                            return Err(RolloutError::Unfinished { app: app.clone(), deployment });
                        }
                        e if e.is_retryable() && tries < policy.attempts => {
                            tokio::time::sleep(policy.backoff(tries)).await;
                            tries += 1;
                        }
                        e => return Err(RolloutError::State(e)),
                    }
                }
            }
        }
    }

    /// Reads the plan's tracks from the platform (and the router, for a switch):
    /// which exist, which release serves, whether the plan targets the live colour.
    async fn inspect(&self, request: &RolloutRequest) -> Result<Inspection, RolloutError> {
        let app = request.spec.id();
        let plan = &request.plan;
        let (old, new) = (plan.old_track, plan.new_track);
        let mut existed = Vec::new();
        let mut statuses = HashMap::new();
        for track in plan.tracks() {
            let status = self.read_status(&app, track).await?;
            if status.state != TrackState::Absent {
                existed.push(track);
            }
            statuses.insert(track, status);
        }
        let mut notes = Vec::new();
        let old_status = statuses.get(&old).cloned().unwrap_or_else(crate::platform::TrackStatus::absent);
        let running = old_status.release.clone().filter(|_| old_status.state != TrackState::Absent);
        // Blue-green: the plan must not deploy onto the colour that serves.
        let switches = old != new && plan.final_track == new;
        if switches {
            let mut serving_new = false;
            if let Some(router) = &self.inner.router {
                match router.weights(&app).await {
                    Ok(split) => serving_new = split.routes_to(new),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(RolloutError::Router(e)),
                }
            }
            let new_status = statuses.get(&new);
            let new_runs = new_status.is_some_and(|s| s.state != TrackState::Absent && s.desired > 0);
            if serving_new || (new_runs && running.is_none()) {
                return Err(RolloutError::LiveTrackMismatch { app, declared: old, serving: new });
            }
        }
        let from = match (&request.from, running) {
            (None, None) => None,
            (None, Some(version)) => {
                let Some(release) = old_status.running_release() else {
                    return Err(RolloutError::ServingReleaseUnknown { app, track: old, version });
                };
                let note = DecisionKind::AdoptedServingRelease { version, track: old };
                tracing::info!(decision = %note);
                notes.push(note);
                Some(release)
            }
            (Some(from), Some(running)) if from.version == running => Some(from.clone()),
            (Some(from), running) => {
                return Err(RolloutError::FromMismatch { app, track: old, requested: from.version.clone(), running });
            }
        };
        Ok(Inspection { from, existed, notes })
    }

    async fn read_status(&self, app: &AppId, track: Track) -> Result<crate::platform::TrackStatus, RolloutError> {
        let policy = self.inner.config.retry;
        let mut tries = 1;
        loop {
            match self.inner.platform.status(app, track).await {
                Ok(status) => return Ok(status),
                Err(e) if e.is_retryable() && tries < policy.attempts => {
                    tokio::time::sleep(policy.backoff(tries)).await;
                    tries += 1;
                }
                Err(e) => return Err(RolloutError::Platform(e)),
            }
        }
    }

    /// Fails with [`RolloutError::AlreadyRunning`] when this engine runs a rollout
    /// of `app`.
    fn refuse_if_running(&self, app: &AppId) -> Result<(), RolloutError> {
        match self.inner.running().get(app) {
            Some(running) => {
                Err(RolloutError::AlreadyRunning { app: app.clone(), deployment: running.deployment.clone() })
            }
            None => Ok(()),
        }
    }

    /// Takes `app`'s lock with a new token. A held lease is taken over only in the
    /// documented crash takeovers: it is this engine's own lease whose task ended
    /// without releasing it, or this engine saw the same lease record unchanged
    /// for its whole ttl on its own monotonic clock (its holder stopped renewing;
    /// clocks are never compared). Otherwise [`RolloutError::Locked`]; the first
    /// such answer starts the watch, so a caller retrying after the ttl takes over
    /// a dead holder's lease.
    async fn lock(&self, app: &AppId) -> Result<Acquired, RolloutError> {
        let inner = &self.inner;
        let request = LockRequest::new(&inner.config.holder, inner.config.lock_ttl);
        let sent = Instant::now();
        match inner.state.acquire_lock(app, &request).await {
            Ok(lease) => {
                inner.observed().remove(app);
                return Ok(Acquired { lease, sent, takeover: None });
            }
            Err(StateError::LockHeld { .. }) => {}
            Err(e) => {
                // The answer may have been lost: is the stored lease this request's?
                if e.is_retryable()
                    && let Ok(Some(stored)) = inner.state.read_lock(app).await
                    && stored.token == request.token
                {
                    return Ok(Acquired { lease: stored, sent, takeover: None });
                }
                return Err(RolloutError::from_lock(app, e));
            }
        }
        let current = inner.state.read_lock(app).await.map_err(RolloutError::State)?;
        let Some(current) = current else {
            // Released in between: try once more.
            let sent = Instant::now();
            let lease = inner.state.acquire_lock(app, &request).await.map_err(|e| RolloutError::from_lock(app, e))?;
            return Ok(Acquired { lease, sent, takeover: None });
        };
        let orphan = inner.orphans().remove(app).filter(|o| o.same_record(&current));
        let takeover = if orphan.is_some() {
            Some(format!("took over this engine's own lease of {app}: the rollout task that held it ended"))
        } else {
            let now = Instant::now();
            let mut observed = inner.observed();
            match observed.get(app) {
                Some((seen, since)) if seen.same_record(&current) && now.duration_since(*since) >= current.ttl => {
                    Some(format!(
                        "took over the lease of {app} from {}: unchanged for {:?}, longer than its ttl of {:?}",
                        current.holder,
                        now.duration_since(*since),
                        current.ttl
                    ))
                }
                Some((seen, _)) if seen.same_record(&current) => None,
                _ => {
                    observed.insert(app.clone(), (current.clone(), now));
                    None
                }
            }
        };
        let Some(takeover) = takeover else {
            return Err(RolloutError::Locked {
                app: app.clone(),
                holder: current.holder,
                expires_at: current.expires_at,
            });
        };
        let request = request.take_over(current);
        let sent = Instant::now();
        let lease = inner.state.acquire_lock(app, &request).await.map_err(|e| RolloutError::from_lock(app, e))?;
        inner.observed().remove(app);
        tracing::warn!(decision = %takeover);
        Ok(Acquired { lease, sent, takeover: Some(takeover) })
    }

    /// Starts `request` and waits for its end, discarding events.
    pub async fn run(&self, request: RolloutRequest) -> Result<RolloutReport, RolloutError> {
        self.start(request).await?.wait().await
    }

    /// Picks up the saved rollout of `app` that no engine drives any more and
    /// continues from the saved step, or finishes the saved rollback. It ends in
    /// the same state as a rollout that was never interrupted.
    ///
    /// - A rollout this engine runs: [`RolloutError::AlreadyRunning`], nothing
    ///   changes.
    /// - A lease another driver holds: [`RolloutError::Locked`], unless this
    ///   engine has seen that lease unchanged for its whole ttl (call again after
    ///   it) or it is this engine's own lease whose task was killed: the crash
    ///   takeovers of [`RolloutEngine`]'s lock.
    /// - A rollout that was rolling back, whose rollback failed (degraded), or
    ///   whose deployment record already says it ended, is never run forward: its
    ///   rollback is (re)done, or its bookkeeping finished.
    /// - Control requests stored while no engine ran it (pause, abort, promote of
    ///   the step it stopped at) are acted on.
    #[tracing::instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn resume(&self, app: &AppId) -> Result<RolloutHandle, RolloutError> {
        let (state, plan, spec, revision, acquired, notes) = self.take_over(app).await?;
        Ok(self.spawn(state, plan, spec, Some(revision), acquired, Origin::Resume, notes))
    }

    /// Rolls `app`'s rollout back at once, on the caller's word, and returns its
    /// report: no further step, pause or analysis runs; the previous release
    /// serves 100 % again as soon as its track is ready (traffic still only goes
    /// to ready tracks) and the new release is removed (unless
    /// [`EngineConfig::keep_failed_release`]). The report, the deployment record
    /// and the events say `RolledBack` with the cause
    /// [`CauseKind::EmergencyRollback`] and `reason`.
    ///
    /// - A rollout running in this engine is told to stop, as
    ///   [`RolloutHandle::emergency_rollback`] does, and this waits for its end.
    ///   One that is already rolling back just finishes its rollback; one that
    ///   finished first keeps its report.
    /// - A rollout whose process died, or a degraded one, is taken over from its
    ///   saved state under the lock rules of [`RolloutEngine::resume`] and rolled
    ///   back instead of continued; a saved rollback is finished, with the
    ///   emergency noted.
    /// - With neither, it fails with [`RolloutError::NothingToResume`]: there is
    ///   no rollout in progress to roll back.
    #[tracing::instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn emergency_rollback(
        &self,
        app: &AppId,
        reason: impl Into<String>,
    ) -> Result<RolloutReport, RolloutError> {
        let reason = reason.into();
        tracing::warn!(%reason, "emergency rollback requested");
        let here = self.inner.running().get(app).map(|r| (r.controls.clone(), r.done.clone()));
        if let Some((controls, mut done)) = here {
            let _ = controls.send(Control::Emergency(reason.clone()));
            let outcome = done.wait_for(Option::is_some).await.ok().and_then(|o| o.clone());
            match outcome {
                Some(Ok(report)) => return Ok(report),
                Some(Err(reason)) => return Err(RolloutError::Stopped { reason }),
                // Its task was killed before it ended: roll back from the saved state.
                None => {}
            }
        }
        let (mut state, plan, spec, revision, acquired, notes) = self.take_over(app).await?;
        let (step, message) = match &state.phase {
            RolloutPhase::RollingBack(cause) | RolloutPhase::Degraded(cause) => {
                (None, format!("{reason} (it was already rolling back: {cause})"))
            }
            _ => (Some(state.next_step).filter(|s| *s < plan.steps.len()), reason.clone()),
        };
        state.phase = RolloutPhase::RollingBack(FailureCause::new(CauseKind::EmergencyRollback, step, message));
        self.spawn(state, plan, spec, Some(revision), acquired, Origin::Emergency(reason), notes).wait().await
    }

    /// Takes the lock of `app` and loads its saved rollout, turned backward when it
    /// must never run forward again.
    async fn take_over(
        &self,
        app: &AppId,
    ) -> Result<(RolloutState, Plan, AppSpec, Revision, Acquired, Vec<DecisionKind>), RolloutError> {
        self.refuse_if_running(app)?;
        let inner = &self.inner;
        let acquired = self.lock(app).await?;
        let loaded = async {
            let v = inner.state.load(app).await.map_err(RolloutError::State)?;
            let Some(v) = v else { return Err(RolloutError::NothingToResume { app: app.clone() }) };
            let (Some(plan), Some(spec)) = (v.value.plan.clone(), v.value.spec.clone()) else {
                return Err(RolloutError::CorruptState { app: app.clone(), reason: "no plan or spec saved".into() });
            };
            let mut state = v.value;
            let mut notes = Vec::new();
            match state.phase.clone() {
                RolloutPhase::Degraded(cause) => {
                    notes.push(DecisionKind::RollbackRetried { cause: cause.clone() });
                    state.phase = RolloutPhase::RollingBack(cause);
                }
                RolloutPhase::RollingBack(_) => {}
                _ => {
                    // The record is the second memory: a rollout it says ended never runs forward.
                    let recorded = inner.history.get(&state.record.id).await.map_err(RolloutError::History)?;
                    if let Some(recorded) = recorded.filter(|r| r.status.is_terminal()) {
                        if recorded.status == DeploymentStatus::Succeeded {
                            notes.push(DecisionKind::RecordSaysEnded { status: recorded.status, cause: recorded.cause.clone() });
                            state.next_step = plan.steps.len();
                        } else {
                            let decision =
                                DecisionKind::RecordSaysEnded { status: recorded.status, cause: recorded.cause.clone() };
                            let message = decision.to_string();
                            notes.push(decision);
                            state.phase =
                                RolloutPhase::RollingBack(FailureCause::new(CauseKind::StateStore, None, message));
                        }
                    }
                }
            }
            Ok((state, plan, spec, v.revision, notes))
        }
        .await;
        match loaded {
            Ok((state, plan, spec, revision, notes)) => Ok((state, plan, spec, revision, acquired, notes)),
            Err(e) => {
                let _ = inner.state.release_lock(&acquired.lease).await;
                Err(e)
            }
        }
    }

    // ---- control by application, through the state store ----

    /// Asks `app`'s rollout, wherever it runs, to do what `request` says, by
    /// storing the request with its progress (compare-and-swap). A running engine
    /// acts on it at its next check ([`EngineConfig::control_interval`]; at once
    /// when it runs in this engine); an engine that is not running acts on it when
    /// the rollout is resumed. For a CI job or a CLI that started the rollout in
    /// another invocation.
    ///
    /// Fails with [`RolloutError::NoRollout`] when nothing is in progress, and
    /// with [`RolloutError::PromoteRejected`] for a promotion while no pause waits
    /// for it (naming the current step), as Argo Rollouts does.
    #[tracing::instrument(skip_all, fields(deploy.app = %app, request = %request), err)]
    pub async fn control(&self, app: &AppId, request: ControlRequest) -> Result<(), RolloutError> {
        let store = &self.inner.state;
        let here = self.inner.running().get(app).map(|r| (r.controls.clone(), r.progress.clone()));
        let policy = self.inner.config.retry;
        for _ in 0..policy.attempts.max(1) + 4 {
            let Some(v) = store.load(app).await.map_err(RolloutError::State)? else {
                return Err(RolloutError::NoRollout { app: app.clone() });
            };
            let mut state = v.value;
            let request = match request {
                // The step to promote is the pause that runs now.
                ControlRequest::Promote { .. } => {
                    let step = match &here {
                        Some((_, progress)) => progress.borrow().promotable(app)?,
                        None => promotable_from_state(app, &state)?,
                    };
                    ControlRequest::Promote { step }
                }
                ref other => other.clone(),
            };
            if state.phase.is_backward() {
                if matches!(request, ControlRequest::Abort { .. }) {
                    return Ok(()); // it is rolling back already
                }
                if let ControlRequest::Promote { .. } = request {
                    return Err(RolloutError::PromoteRejected {
                        app: app.clone(),
                        step: None,
                        current: "rolling back".to_owned(),
                    });
                }
            }
            state.push_request(request.clone(), Timestamp::now());
            match store.save(app, &state, Some(&v.revision)).await {
                Ok(_) => {
                    if let Some((controls, _)) = &here {
                        let _ = controls.send(Control::Poll);
                    }
                    return Ok(());
                }
                Err(StateError::Conflict { .. }) => {}
                Err(StateError::Deleted { .. }) => return Err(RolloutError::NoRollout { app: app.clone() }),
                Err(e) if e.is_retryable() => tokio::time::sleep(policy.backoff(1)).await,
                Err(e) => return Err(RolloutError::State(e)),
            }
        }
        Err(RolloutError::State(StateError::backend(
            format!("store a control request for {app}"),
            ErrorKind::Conflict,
            "the saved progress kept changing",
        )))
    }

    /// Promotes the pause `app`'s rollout waits in now; see
    /// [`RolloutEngine::control`].
    pub async fn promote(&self, app: &AppId) -> Result<(), RolloutError> {
        self.control(app, ControlRequest::Promote { step: 0 }).await
    }

    /// Aborts `app`'s rollout: it rolls back; see [`RolloutEngine::control`].
    pub async fn abort(&self, app: &AppId, reason: impl Into<String>) -> Result<(), RolloutError> {
        self.control(app, ControlRequest::Abort { reason: reason.into() }).await
    }

    /// Holds `app`'s rollout before its next step until
    /// [`RolloutEngine::unpause`]; see [`RolloutEngine::control`].
    pub async fn pause(&self, app: &AppId) -> Result<(), RolloutError> {
        self.control(app, ControlRequest::Pause).await
    }

    /// Lets `app`'s rollout continue after [`RolloutEngine::pause`] (the resume
    /// of Argo Rollouts' pause; [`RolloutEngine::resume`] picks up a rollout whose
    /// process died); see [`RolloutEngine::control`].
    pub async fn unpause(&self, app: &AppId) -> Result<(), RolloutError> {
        self.control(app, ControlRequest::Resume).await
    }

    #[expect(clippy::too_many_arguments, reason = "the parts of a rollout, passed once")]
    fn spawn(
        &self,
        mut state: RolloutState,
        plan: Plan,
        spec: AppSpec,
        revision: Option<Revision>,
        acquired: Acquired,
        origin: Origin,
        notes: Vec<DecisionKind>,
    ) -> RolloutHandle {
        let (event_tx, event_rx) = event_queue::event_queue(self.inner.config.event_capacity);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let deployment = state.record.id.clone();
        let app = state.record.app.clone();
        let span = tracing::info_span!(
            "rollout",
            deploy.app = %app,
            deploy.strategy = %state.record.strategy,
            release.version = %state.record.to.version,
            deploy.id = %deployment,
        );
        let first = if origin != Origin::Start {
            RolloutEvent::Resumed {
                deployment: deployment.clone(),
                next_step: state.next_step,
                rolling_back: state.phase.is_backward(),
            }
        } else {
            RolloutEvent::Started {
                deployment: deployment.clone(),
                app: app.clone(),
                strategy: plan.strategy,
                from: state.record.from.as_ref().map(|r| r.version.clone()),
                to: state.record.to.version.clone(),
                steps: plan.steps.len(),
            }
        };
        let first_seen = first.clone();
        let _ = event_tx.send(first);
        let mut decisions = Vec::new();
        if let Some(takeover) = &acquired.takeover {
            telemetry::lock_takeover();
            decisions.push(DecisionKind::from(takeover.clone()));
        }
        decisions.extend(notes);
        for kind in decisions {
            if origin != Origin::Start {
                state.record.log(LogLevel::Warn, kind.to_string());
            }
            let _ = event_tx.send(RolloutEvent::Decision { kind });
        }
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let lease = run::LeaseView::new(acquired.lease, acquired.sent, self.inner.config.lock_ttl);
        let book = Arc::new(Mutex::new(run::ControlBook::from_state(&state)));
        let started =
            (self.inner.notifier.is_some() && origin == Origin::Start).then(|| notify::started(&state.record));
        let mut run = run::Run::new(
            Arc::clone(&self.inner),
            state,
            plan,
            spec,
            revision,
            event_tx,
            progress_tx,
            Arc::clone(&lease),
            Arc::clone(&book),
        );
        run.observe(&first_seen);
        if let Origin::Emergency(reason) = origin {
            run.emergency_requested(&reason);
        }
        let keeper = run::LeaseKeeper::new(
            Arc::clone(&self.inner.state),
            Arc::clone(&lease),
            app.clone(),
            self.inner.config.lock_ttl,
        );
        let controls = run::Controls::new(
            control_rx,
            Arc::clone(&self.inner.state),
            app.clone(),
            deployment.clone(),
            book,
            self.inner.config.control_interval,
        );
        let (done_tx, done_rx) = watch::channel(None);
        let registration = Registration {
            inner: Arc::clone(&self.inner),
            app: app.clone(),
            deployment: deployment.clone(),
            done: done_tx,
            lease,
        };
        self.inner.running().insert(
            app.clone(),
            Running {
                deployment: deployment.clone(),
                controls: control_tx.clone(),
                progress: progress_rx.clone(),
                done: done_rx,
            },
        );
        let notifier = self.inner.notifier.clone();
        let task = tokio::spawn(
            async move {
                if let (Some(notifier), Some(started)) = (&notifier, &started) {
                    notify::deliver(notifier.as_ref(), started).await;
                }
                let result = run::drive(run, controls, keeper).await;
                if let (Some(notifier), Ok(report)) = (&notifier, &result) {
                    notify::deliver(notifier.as_ref(), &notify::finished(report)).await;
                }
                registration.publish(&result);
                result
            }
            .instrument(span),
        );
        RolloutHandle { deployment, app, events: event_rx, controls: control_tx, progress: progress_rx, task }
    }
}

/// The pause step a stored rollout waits in, or the error naming where it is.
fn promotable_from_state(app: &AppId, state: &RolloutState) -> Result<usize, RolloutError> {
    let step = state.next_step;
    let plan_step = state.plan.as_ref().and_then(|p| p.steps.get(step));
    // An analysis step waits for a decision when it was inconclusive under the
    // pause policy and nobody has decided yet.
    let undecided = |step: usize| {
        state.record.inconclusive_decisions.last().is_some_and(|d| {
            d.step == step && d.policy == crate::analysis::InconclusivePolicy::Pause && d.resolution.is_none()
        })
    };
    match plan_step {
        Some(Step::Pause(_)) if !state.phase.is_backward() => Ok(step),
        Some(Step::Analyze(_)) if !state.phase.is_backward() && undecided(step) => Ok(step),
        Some(other) if !state.phase.is_backward() => {
            Err(RolloutError::PromoteRejected { app: app.clone(), step: Some(step), current: other.to_string() })
        }
        _ => Err(RolloutError::PromoteRejected {
            app: app.clone(),
            step: None,
            current: if state.phase.is_backward() { "rolling back".to_owned() } else { "its end".to_owned() },
        }),
    }
}
