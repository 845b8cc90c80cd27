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

mod builder;
mod config;
mod control;
mod decision;
mod error;
mod event_queue;
mod events;
mod failover;
mod handle;
mod notify;
mod preflight;
mod request;
mod resume;
mod retry;
mod run;
mod spawn;
mod start;
mod telemetry;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

pub use builder::RolloutEngineBuilder;
pub use config::EngineConfig;
pub use decision::DecisionKind;
pub use error::{RolloutError, RolloutReport};
pub use events::RolloutEvent;
pub use failover::{FailoverDirection, FailoverReport, FailoverRequest};
pub use handle::RolloutHandle;
pub use preflight::{Preflight, PreflightInput};
pub use request::RolloutRequest;
pub use retry::RetryPolicy;

use handle::{Control, Progress};

use crate::analysis::{AnalysisRunner, AnalysisTarget, JudgeFactory, JudgeRegistry};
use crate::error::{Classify, ErrorKind};
use crate::health::HealthCheck;
use crate::history::{HistoryError, HistoryStore};
use crate::metrics::MetricsProvider;
use crate::model::LogLevel;
use crate::model::{
    AppId, AppSpec, CauseKind, DeploymentId, DeploymentRecord, DeploymentStatus, Environment, FailureCause, Release,
    Track, TrafficSplit, ValidationError, ValidationErrors, Version,
};
use crate::plan::{Plan, Step};
use crate::platform::{Platform, PlatformError, TrackState};
use crate::state::{
    ControlRequest, LockLease, LockRequest, Revision, RolloutPhase, RolloutState, StateError, StateStore, WriteStamp,
};
use crate::traffic::{RouterError, TrafficRouter};

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
            errors.extend(ValidationErrors::from(e));
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
                // The spec's own problems were already reported by the plan's
                // validation (as `PlanProblemKind::Analysis`); the runner repeats
                // them, under the same field, before what the engine lacks. Drop
                // the repeats by value, not by their wording.
                let mut repeated = ValidationErrors::new();
                spec.collect_problems(&format!("analysis {}", spec.name), &mut repeated);
                errors.extend(e.into_iter().filter(|e| !repeated.iter().any(|r| r == e)));
            }
        }
        errors.into_result(())
    }

    /// Starts `request` and waits for its end, discarding events.
    pub async fn run(&self, request: RolloutRequest) -> Result<RolloutReport, RolloutError> {
        self.start(request).await?.wait().await
    }
}
