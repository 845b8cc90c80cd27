//! The rollout engine: executes a [`Plan`] against a [`Platform`] and a
//! [`TrafficRouter`], judges each step, saves progress, and rolls back on its own.
//!
//! See the [`testkit`](crate::testkit) module (feature `testkit`) for a complete
//! rollout on in-memory backends.
//!
//! # Guarantees
//! - Traffic only goes to tracks the platform reports ready; weights are read back
//!   and compared after every change.
//! - Progress is saved (compare-and-swap) after every step; a rollout whose process
//!   died is finished by [`RolloutEngine::resume`] to the same end state.
//! - One rollout per application at a time: the second fails at once with
//!   [`RolloutError::Locked`].
//! - On any failure the previous release serves 100 % again and the new release's
//!   tracks are removed (unless [`EngineConfig::keep_failed_release`]).
//!
//! [`Platform`]: crate::platform::Platform
//! [`TrafficRouter`]: crate::traffic::TrafficRouter

mod events;
mod handle;
mod retry;
mod run;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

pub use events::RolloutEvent;
pub use handle::RolloutHandle;
pub use retry::RetryPolicy;

use handle::Control;

use crate::analysis::{AnalysisRunner, AnalysisTarget, JudgeFactory, JudgeRegistry};
use crate::error::{Classify, ErrorKind};
use crate::health::HealthCheck;
use crate::history::{HistoryError, HistoryStore};
use crate::metrics::MetricsProvider;
use crate::model::{
    AppId, AppSpec, DeploymentId, DeploymentRecord, DeploymentStatus, Environment, Release, TrafficSplit,
    ValidationErrors,
};
use crate::plan::{Plan, Step};
use crate::platform::Platform;
use crate::state::{RolloutPhase, RolloutState, StateError, StateStore};
use crate::traffic::TrafficRouter;

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
    /// The lease of the per-app lock; renewed every third of it while running.
    pub lock_ttl: Duration,
    /// Who holds the lock (a pod or process name); unique per process.
    pub holder: String,
    /// After a failure, keep the new release's tracks (without traffic) for
    /// debugging instead of removing them.
    pub keep_failed_release: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            step_deadline: Duration::from_secs(15 * 60),
            readiness_deadline: Duration::from_secs(10 * 60),
            retry: RetryPolicy::default(),
            lock_ttl: Duration::from_secs(60),
            holder: format!("deploy-rs-{}", DeploymentId::generate()),
            keep_failed_release: false,
        }
    }
}

impl EngineConfig {
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

    /// Keeps a failed release's tracks instead of removing them.
    #[must_use]
    pub fn keep_failed_release(mut self, keep: bool) -> Self {
        self.keep_failed_release = keep;
        self
    }
}

/// What went wrong, in a form a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CauseKind {
    /// A platform call failed (after retries).
    Platform,
    /// A router call failed (after retries).
    Router,
    /// A track was not ready by the readiness deadline.
    ReadinessDeadline,
    /// A track can never become ready (crash loop, missing image).
    Doomed,
    /// A step ran past the step deadline.
    StepDeadline,
    /// An analysis failed.
    AnalysisFailed,
    /// An analysis had no data more often than its limit allows.
    AnalysisInconclusive,
    /// An analysis could not measure.
    AnalysisError,
    /// A health check found the new release unhealthy.
    HealthCheckFailed,
    /// The router reported other weights than those set.
    WeightMismatch,
    /// The state store failed.
    StateStore,
    /// The caller aborted the rollout.
    Aborted,
    /// The caller asked for an emergency rollback; the message is their reason.
    EmergencyRollback,
}

impl fmt::Display for CauseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Platform => "platform error",
            Self::Router => "router error",
            Self::ReadinessDeadline => "readiness deadline passed",
            Self::Doomed => "track cannot become ready",
            Self::StepDeadline => "step deadline passed",
            Self::AnalysisFailed => "analysis failed",
            Self::AnalysisInconclusive => "analysis inconclusive",
            Self::AnalysisError => "analysis could not measure",
            Self::HealthCheckFailed => "health check failed",
            Self::WeightMismatch => "weights read back differ",
            Self::StateStore => "state store error",
            Self::Aborted => "aborted",
            Self::EmergencyRollback => "emergency rollback",
        })
    }
}

/// Why a rollout did not succeed: the kind, the step and the details.
///
/// ```
/// use deploy_core::engine::{CauseKind, FailureCause};
/// let c = FailureCause::new(CauseKind::AnalysisFailed, Some(3), "error-rate 0.07 > 0.01");
/// assert_eq!(c.to_string(), "analysis failed at step 4: error-rate 0.07 > 0.01");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailureCause {
    /// The kind of failure.
    pub kind: CauseKind,
    /// The step's index, from 0, when a step failed.
    pub step: Option<usize>,
    /// The details.
    pub message: String,
}

impl FailureCause {
    /// A cause.
    pub fn new(kind: CauseKind, step: Option<usize>, message: impl Into<String>) -> Self {
        Self { kind, step, message: message.into() }
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "{} at step {}: {}", self.kind, step + 1, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
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
    /// Another rollout of the application holds the lock.
    #[error("{app} is locked by {holder} until {expires_at}")]
    Locked {
        /// The application.
        app: AppId,
        /// The current holder.
        holder: String,
        /// When its lease lapses.
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
    /// Another holder took the lock (this process stalled past its lease); the
    /// rollout stopped without touching anything further.
    #[error("lost the lock of {app} to {holder}")]
    LockLost {
        /// The application.
        app: AppId,
        /// The new holder.
        holder: String,
    },
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
            Self::Locked { .. } | Self::Unfinished { .. } | Self::LockLost { .. } => ErrorKind::Conflict,
            Self::Invalid { .. } | Self::CorruptState { .. } => ErrorKind::InvalidInput,
            Self::NothingToResume { .. } => ErrorKind::NotFound,
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
            StateError::LockLost { holder, .. } => Self::LockLost { app: app.clone(), holder },
            other => Self::State(other),
        }
    }
}

/// One rollout to carry out.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RolloutRequest {
    /// What to run.
    pub spec: AppSpec,
    /// The release that serves now, if any.
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
    /// A rollout of `to` by `plan`, in production, from nothing.
    pub fn new(spec: AppSpec, to: Release, plan: Plan) -> Self {
        Self { spec, from: None, to, environment: Environment::Production, plan, committed_at: None }
    }

    /// Sets the release that serves now.
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
    /// The rollouts this engine runs now, so that a caller without the handle can
    /// still reach them ([`RolloutEngine::emergency_rollback`]).
    running: Mutex<HashMap<AppId, Running>>,
}

/// How a rollout that ran in this engine ended, for callers without its handle.
type Outcome = Option<Result<RolloutReport, String>>;

/// A rollout running in this engine.
struct Running {
    deployment: DeploymentId,
    controls: mpsc::UnboundedSender<Control>,
    done: watch::Receiver<Outcome>,
}

impl Inner {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<AppId, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lists a rollout as running in its engine while its task lives; publishes its
/// outcome and unlists it when the task ends or is dropped (killed).
struct Registration {
    inner: Arc<Inner>,
    app: AppId,
    deployment: DeploymentId,
    done: watch::Sender<Outcome>,
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
                running: Mutex::new(HashMap::new()),
            },
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
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

    /// Validates `request`, takes the application's lock, saves the initial state,
    /// records the deployment as started and runs it in a new task.
    ///
    /// Fails at once with [`RolloutError::Locked`] when another rollout of the
    /// application holds the lock, and with [`RolloutError::Unfinished`] when an
    /// interrupted rollout must be resumed first.
    #[tracing::instrument(skip_all, fields(deploy.app = %request.spec.id(), deploy.strategy = %request.plan.strategy, release.version = %request.to.version), err)]
    pub async fn start(&self, request: RolloutRequest) -> Result<RolloutHandle, RolloutError> {
        let app = request.spec.id();
        self.validate(&request).map_err(|errors| RolloutError::Invalid { app: app.clone(), errors })?;
        let inner = &self.inner;
        let lease = inner
            .state
            .acquire_lock(&app, &inner.config.holder, inner.config.lock_ttl)
            .await
            .map_err(|e| RolloutError::from_lock(&app, e))?;
        let prepared = async {
            if let Some(existing) = inner.state.load(&app).await.map_err(RolloutError::State)? {
                return Err(RolloutError::Unfinished { app: app.clone(), deployment: existing.value.record.id });
            }
            let mut record = DeploymentRecord::new(
                app.clone(),
                request.environment,
                request.from.clone(),
                request.to.clone(),
                request.plan.strategy.as_str(),
            );
            record.committed_at = request.committed_at;
            record.start();
            let mut state = RolloutState::new(record, TrafficSplit::all(request.plan.old_track));
            state.plan = Some(request.plan.clone());
            state.spec = Some(request.spec.clone());
            let revision = inner.state.save(&app, &state, None).await.map_err(|e| match e {
                StateError::Conflict { .. } => {
                    RolloutError::Unfinished { app: app.clone(), deployment: state.record.id.clone() }
                }
                other => RolloutError::State(other),
            })?;
            inner.history.record(&state.record).await.map_err(RolloutError::History)?;
            Ok((state, revision))
        }
        .await;
        let (state, revision) = match prepared {
            Ok(ok) => ok,
            Err(e) => {
                let _ = inner.state.release_lock(&lease).await;
                return Err(e);
            }
        };
        Ok(self.spawn(state, request.plan, request.spec, Some(revision), lease, Origin::Start))
    }

    /// Starts `request` and waits for its end, discarding events.
    pub async fn run(&self, request: RolloutRequest) -> Result<RolloutReport, RolloutError> {
        self.start(request).await?.wait().await
    }

    /// Picks up the saved rollout of `app` whose process died: takes the lock (fails
    /// with [`RolloutError::Locked`] while the dead holder's lease has not lapsed,
    /// unless this engine has the same holder name) and continues from the saved
    /// step, or finishes the saved rollback. It ends in the same state as a
    /// rollout that was never interrupted.
    #[tracing::instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn resume(&self, app: &AppId) -> Result<RolloutHandle, RolloutError> {
        let (state, plan, spec, revision, lease) = self.take_over(app).await?;
        Ok(self.spawn(state, plan, spec, Some(revision), lease, Origin::Resume))
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
    /// - A rollout whose process died is taken over from its saved state, as
    ///   [`RolloutEngine::resume`] does (so it fails with
    ///   [`RolloutError::Locked`] while the dead holder's lease has not lapsed,
    ///   unless this engine has the same holder name), and rolled back instead of
    ///   continued; a saved rollback is finished, with the emergency noted.
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
        let (mut state, plan, spec, revision, lease) = self.take_over(app).await?;
        let (step, message) = match &state.phase {
            RolloutPhase::RollingBack(cause) => (None, format!("{reason} (it was already rolling back: {cause})")),
            _ => (Some(state.next_step).filter(|s| *s < plan.steps.len()), reason.clone()),
        };
        state.phase = RolloutPhase::RollingBack(FailureCause::new(CauseKind::EmergencyRollback, step, message));
        self.spawn(state, plan, spec, Some(revision), lease, Origin::Emergency(reason)).wait().await
    }

    /// Takes the lock of `app` and loads its saved rollout.
    async fn take_over(
        &self,
        app: &AppId,
    ) -> Result<(RolloutState, Plan, AppSpec, crate::state::Revision, crate::state::LockLease), RolloutError> {
        let inner = &self.inner;
        let lease = inner
            .state
            .acquire_lock(app, &inner.config.holder, inner.config.lock_ttl)
            .await
            .map_err(|e| RolloutError::from_lock(app, e))?;
        let loaded = match inner.state.load(app).await {
            Ok(Some(v)) => match (v.value.plan.clone(), v.value.spec.clone()) {
                (Some(plan), Some(spec)) => Ok((v.value, plan, spec, v.revision)),
                _ => Err(RolloutError::CorruptState { app: app.clone(), reason: "no plan or spec saved".into() }),
            },
            Ok(None) => Err(RolloutError::NothingToResume { app: app.clone() }),
            Err(e) => Err(RolloutError::State(e)),
        };
        match loaded {
            Ok((state, plan, spec, revision)) => Ok((state, plan, spec, revision, lease)),
            Err(e) => {
                let _ = inner.state.release_lock(&lease).await;
                Err(e)
            }
        }
    }

    fn spawn(
        &self,
        state: RolloutState,
        plan: Plan,
        spec: AppSpec,
        revision: Option<crate::state::Revision>,
        lease: crate::state::LockLease,
        origin: Origin,
    ) -> RolloutHandle {
        let (event_tx, event_rx) = mpsc::unbounded_channel();
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
                rolling_back: matches!(state.phase, RolloutPhase::RollingBack(_)),
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
        let _ = event_tx.send(first);
        let mut run = run::Run::new(Arc::clone(&self.inner), state, plan, spec, revision, event_tx);
        if let Origin::Emergency(reason) = origin {
            run.emergency_requested(&reason);
        }
        let keeper = run::LeaseKeeper::new(Arc::clone(&self.inner.state), lease, self.inner.config.lock_ttl);
        let (done_tx, done_rx) = watch::channel(None);
        let registration = Registration {
            inner: Arc::clone(&self.inner),
            app: app.clone(),
            deployment: deployment.clone(),
            done: done_tx,
        };
        self.inner.running().insert(
            app.clone(),
            Running { deployment: deployment.clone(), controls: control_tx.clone(), done: done_rx },
        );
        let task = tokio::spawn(
            async move {
                let result = run::drive(run, control_rx, keeper).await;
                registration.publish(&result);
                result
            }
            .instrument(span),
        );
        RolloutHandle { deployment, app, events: event_rx, controls: control_tx, task }
    }
}
