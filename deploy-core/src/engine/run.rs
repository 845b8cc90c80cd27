//! Executing a plan: steps, guards (deadline, controls, lease), rollback and finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, Sleep};
use tracing::Instrument;

use super::handle::Control;
use super::retry::retry;
use super::{CauseKind, FailureCause, Inner, RolloutError, RolloutEvent, RolloutReport};
use crate::analysis::{AnalysisOutcome, AnalysisRunner, AnalysisSpec, AnalysisTarget, CheckKind};
use crate::error::Classify;
use crate::model::record::LogLevel;
use crate::model::{
    AppId, AppSpec, DeploymentStatus, HumanDuration, Percent, Release, RollingUpdateParams, StepOutcome, StepRecord,
    Track, TrafficSplit,
};
use crate::plan::{CanaryScale, PauseKind, Plan, Step, canary_replicas, resolve_rolling};
use crate::platform::{PlatformError, TrackState, TrackStatus};
use crate::state::{LockLease, Revision, RolloutPhase, RolloutState, StateError, StateStore};
use crate::traffic::{HeaderRoute, Mirror, RouterError};

/// Keeps the per-app lease alive while a rollout runs. Its timer is made once and
/// reset after each renewal, not registered anew at every step.
pub(crate) struct LeaseKeeper {
    store: Arc<dyn StateStore>,
    lease: LockLease,
    ttl: Duration,
    next: Pin<Box<Sleep>>,
}

impl LeaseKeeper {
    pub(crate) fn new(store: Arc<dyn StateStore>, lease: LockLease, ttl: Duration) -> Self {
        Self { store, lease, ttl, next: Box::pin(tokio::time::sleep_until(Instant::now() + ttl / 3)) }
    }

    async fn due(&mut self) {
        self.next.as_mut().await;
    }

    async fn renew(&mut self) -> Result<(), RolloutError> {
        match self.store.renew_lock(&self.lease, self.ttl).await {
            Ok(lease) => {
                self.lease = lease;
                self.next.as_mut().reset(Instant::now() + self.ttl / 3);
                Ok(())
            }
            Err(StateError::LockLost { holder, .. }) => {
                Err(RolloutError::LockLost { app: self.lease.app.clone(), holder })
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the rollout lock; trying again soon");
                self.next.as_mut().reset(Instant::now() + self.ttl / 10);
                Ok(())
            }
        }
    }

    async fn release(&self) {
        if let Err(e) = self.store.release_lock(&self.lease).await {
            tracing::warn!(error = %e, "could not release the rollout lock; it lapses with its lease");
        }
    }
}

/// Why a step did not succeed.
pub(crate) enum StepError {
    /// The step failed; roll back.
    Failed(FailureCause),
    /// The caller aborted; roll back.
    Aborted,
    /// The caller asked for an emergency rollback, for this reason; roll back.
    Emergency(String),
    /// Stop touching anything (the lock or the state belongs to someone else now).
    Fatal(RolloutError),
}

struct Controls {
    rx: mpsc::UnboundedReceiver<Control>,
    open: bool,
}

enum Wake<T> {
    Control(Option<Control>),
    Renew,
    Done(Result<T, StepError>),
}

/// Runs `fut` under a deadline while answering the caller's controls and renewing
/// the lease.
async fn guard<T>(
    fut: impl Future<Output = Result<T, StepError>>,
    deadline: Option<Duration>,
    step: Option<usize>,
    keeper: &mut LeaseKeeper,
    mut controls: Option<&mut Controls>,
    promote: &Notify,
    events: &mpsc::UnboundedSender<RolloutEvent>,
) -> Result<T, StepError> {
    let fut = async move {
        match deadline {
            Some(d) => match tokio::time::timeout(d, fut).await {
                Ok(result) => result,
                Err(_) => Err(StepError::Failed(FailureCause::new(
                    CauseKind::StepDeadline,
                    step,
                    format!("no result within {}", HumanDuration::new(d)),
                ))),
            },
            None => fut.await,
        }
    };
    tokio::pin!(fut);
    loop {
        let open = controls.as_ref().is_some_and(|c| c.open);
        let wake = {
            let recv = async {
                match controls.as_mut() {
                    Some(c) => c.rx.recv().await,
                    None => None,
                }
            };
            tokio::select! {
                biased;
                control = recv, if open => Wake::Control(control),
                () = keeper.due() => Wake::Renew,
                result = &mut fut => Wake::Done(result),
            }
        };
        match wake {
            Wake::Control(Some(Control::Abort)) => return Err(StepError::Aborted),
            Wake::Control(Some(Control::Emergency(reason))) => return Err(StepError::Emergency(reason)),
            Wake::Control(Some(Control::Promote)) => {
                promote.notify_one();
                let _ = events.send(RolloutEvent::Decision { message: "the caller asked to promote".to_owned() });
            }
            Wake::Control(None) => {
                if let Some(c) = controls.as_mut() {
                    c.open = false;
                }
            }
            Wake::Renew => keeper.renew().await.map_err(StepError::Fatal)?,
            Wake::Done(result) => return result,
        }
    }
}

fn note_to(events: &mpsc::UnboundedSender<RolloutEvent>, notes: &mut Vec<String>, message: String) {
    tracing::info!(decision = %message);
    if !events.is_closed() {
        let _ = events.send(RolloutEvent::Decision { message: message.clone() });
    }
    notes.push(message);
}

/// One rollout being executed.
pub(crate) struct Run {
    engine: Arc<Inner>,
    state: RolloutState,
    plan: Plan,
    spec: AppSpec,
    app: AppId,
    revision: Option<Revision>,
    events: mpsc::UnboundedSender<RolloutEvent>,
    promote: Arc<Notify>,
    notes: Vec<String>,
    step: Option<usize>,
}

/// Executes the rollout to its end.
pub(crate) async fn drive(
    mut run: Run,
    controls: mpsc::UnboundedReceiver<Control>,
    mut keeper: LeaseKeeper,
) -> Result<RolloutReport, RolloutError> {
    let mut controls = Controls { rx: controls, open: true };
    if let RolloutPhase::RollingBack(cause) = run.state.phase.clone() {
        return run.roll_back(cause, &mut keeper).await;
    }
    while run.state.next_step < run.plan.steps.len() {
        let index = run.state.next_step;
        let step = run.plan.steps[index].clone();
        let description = step.to_string();
        run.step = Some(index);
        run.notes.clear();
        if run.listened() {
            run.emit(RolloutEvent::StepStarted { index, description: description.clone() });
        }
        let started = Timestamp::now();
        let deadline = run.deadline(&step);
        let (promote, events) = (Arc::clone(&run.promote), run.events.clone());
        let span = tracing::info_span!("rollout.step", step.index = index, step.kind = step.kind());
        let result = {
            let fut = run.execute(index, &step).instrument(span);
            guard(fut, deadline, Some(index), &mut keeper, Some(&mut controls), &promote, &events).await
        };
        let outcome = match &result {
            Ok(()) => StepOutcome::Succeeded,
            Err(StepError::Failed(cause)) => StepOutcome::Failed(cause.to_string()),
            Err(StepError::Aborted | StepError::Emergency(_)) => StepOutcome::Aborted,
            Err(StepError::Fatal(e)) => StepOutcome::Failed(e.to_string()),
        };
        if let Err(StepError::Emergency(reason)) = &result {
            run.emergency_requested(reason);
        }
        let mut finished = StepRecord::new(index, description, started, Timestamp::now(), outcome);
        finished.details = std::mem::take(&mut run.notes);
        if run.listened() {
            let (description, outcome) = (finished.description.clone(), finished.outcome.clone());
            run.emit(RolloutEvent::StepFinished { index, description, outcome });
        }
        run.state.record.steps.push(finished);
        match result {
            Ok(()) => {
                run.state.next_step += 1;
                match run.save().await {
                    Ok(()) => {}
                    Err(StepError::Failed(cause)) => return run.roll_back(cause, &mut keeper).await,
                    Err(StepError::Fatal(e)) => return Err(e),
                    Err(StepError::Aborted | StepError::Emergency(_)) => {}
                }
            }
            Err(StepError::Failed(cause)) => return run.roll_back(cause, &mut keeper).await,
            Err(StepError::Aborted) => {
                let cause = FailureCause::new(CauseKind::Aborted, Some(index), "aborted by the caller");
                return run.roll_back(cause, &mut keeper).await;
            }
            Err(StepError::Emergency(reason)) => {
                let cause = FailureCause::new(CauseKind::EmergencyRollback, Some(index), reason);
                return run.roll_back(cause, &mut keeper).await;
            }
            Err(StepError::Fatal(e)) => return Err(e),
        }
    }
    run.step = None;
    run.finish(DeploymentStatus::Succeeded, None, &mut keeper).await
}

impl Run {
    pub(crate) fn new(
        engine: Arc<Inner>,
        state: RolloutState,
        plan: Plan,
        spec: AppSpec,
        revision: Option<Revision>,
        events: mpsc::UnboundedSender<RolloutEvent>,
    ) -> Self {
        let app = state.record.app.clone();
        Self {
            engine,
            state,
            plan,
            spec,
            app,
            revision,
            events,
            promote: Arc::new(Notify::new()),
            notes: Vec::new(),
            step: None,
        }
    }

    /// Notes the caller's emergency rollback in the events, the trace and the record.
    pub(crate) fn emergency_requested(&mut self, reason: &str) {
        let message = format!("emergency rollback requested by the caller: {reason}; no further step or analysis runs");
        tracing::warn!(decision = %message);
        self.emit(RolloutEvent::Decision { message: message.clone() });
        self.state.record.log(LogLevel::Warn, message);
    }

    /// Whether anyone still reads the events (the handle was not dropped or waited
    /// on); events that cost allocations are only built then.
    fn listened(&self) -> bool {
        !self.events.is_closed()
    }

    fn emit(&self, event: RolloutEvent) {
        let _ = self.events.send(event);
    }

    fn note(&mut self, message: String) {
        note_to(&self.events, &mut self.notes, message);
    }

    fn failed(&self, kind: CauseKind, message: String) -> StepError {
        StepError::Failed(FailureCause::new(kind, self.step, message))
    }

    fn weighted(&self) -> bool {
        self.engine.router.as_ref().is_some_and(|r| r.capabilities().weights)
    }

    /// The step's deadline beyond the waits its plan asks for; pauses have none.
    fn deadline(&self, step: &Step) -> Option<Duration> {
        let base = self.engine.config.step_deadline;
        match step {
            Step::Pause(_) => None,
            Step::Analyze(spec) => Some(spec.max_duration() + base),
            Step::ScaleDownAfter(d) => Some(d.as_duration() + base),
            _ => Some(base),
        }
    }

    async fn execute(&mut self, index: usize, step: &Step) -> Result<(), StepError> {
        match step {
            Step::DeployTrack { track, replicas } => {
                let (spec, to) = (self.spec.clone(), self.state.record.to.clone());
                self.apply(&spec, *track, &to, *replicas).await
            }
            Step::RollingUpdate { replicas, max_surge, max_unavailable } => {
                let (mut spec, to) = (self.spec.clone(), self.state.record.to.clone());
                spec.rolling_update = RollingUpdateParams::new(*max_surge, *max_unavailable);
                let (surge, unavailable) = resolve_rolling(*replicas, *max_surge, *max_unavailable);
                self.note(format!(
                    "native rolling update: at most {} pods, at least {} available",
                    replicas.saturating_add(surge),
                    replicas.saturating_sub(unavailable)
                ));
                self.apply(&spec, Track::Stable, &to, *replicas).await
            }
            Step::WaitReady { track } => self.wait_ready(*track).await,
            Step::SetWeight(weight) => self.set_weight(*weight).await,
            Step::SetCanaryScale(scale) => self.set_canary_scale(*scale).await,
            Step::HeaderRoute(route) => self.header_route(route).await,
            Step::Mirror(mirror) => self.mirror(mirror).await,
            Step::Pause(kind) => {
                self.pause(index, *kind).await;
                Ok(())
            }
            Step::Analyze(spec) => self.analyze(spec).await,
            Step::Promote => self.promote_release().await,
            Step::ScaleDownAfter(delay) => {
                if !delay.is_zero() {
                    self.note(format!("keeping the previous tracks for {delay}"));
                    tokio::time::sleep(delay.as_duration()).await;
                }
                self.scale_down().await
            }
        }
    }

    // ---- platform and router calls, with retries ----

    fn platform_failure(&self, what: &str, e: &PlatformError) -> StepError {
        let kind = match e {
            PlatformError::Timeout { .. } => CauseKind::ReadinessDeadline,
            PlatformError::Doomed { .. } => CauseKind::Doomed,
            _ => CauseKind::Platform,
        };
        self.failed(kind, format!("{what}: {e}"))
    }

    fn router_failure(&self, what: &str, e: &RouterError) -> StepError {
        self.failed(CauseKind::Router, format!("{what}: {e}"))
    }

    async fn apply(&mut self, spec: &AppSpec, track: Track, release: &Release, replicas: u32) -> Result<(), StepError> {
        let platform = Arc::clone(&self.engine.platform);
        let policy = self.engine.config.retry;
        let what = || format!("apply {} to {track} with {replicas} replicas", release.version);
        let result = retry(
            &policy,
            &what,
            |e: &PlatformError| e.is_retryable(),
            &mut |m| note_to(&self.events, &mut self.notes, m),
            || platform.apply(spec, track, release, replicas),
        )
        .await;
        result.map_err(|e| self.platform_failure(&what(), &e))?;
        self.emit(RolloutEvent::Scaled { track, replicas });
        Ok(())
    }

    async fn scale(&mut self, track: Track, replicas: u32) -> Result<(), StepError> {
        let platform = Arc::clone(&self.engine.platform);
        let (policy, app) = (self.engine.config.retry, self.app.clone());
        let what = || format!("scale {track} to {replicas}");
        let result = retry(
            &policy,
            &what,
            |e: &PlatformError| e.is_retryable(),
            &mut |m| note_to(&self.events, &mut self.notes, m),
            || platform.scale(&app, track, replicas),
        )
        .await;
        result.map_err(|e| self.platform_failure(&what(), &e))?;
        self.emit(RolloutEvent::Scaled { track, replicas });
        Ok(())
    }

    async fn wait_ready(&mut self, track: Track) -> Result<(), StepError> {
        let platform = Arc::clone(&self.engine.platform);
        let (policy, app, deadline) =
            (self.engine.config.retry, self.app.clone(), self.engine.config.readiness_deadline);
        let what = || format!("wait for {track} to be ready");
        // A passed deadline or a doomed track is final; only transient errors are retried.
        let retryable = |e: &PlatformError| e.is_retryable() && !matches!(e, PlatformError::Timeout { .. });
        let result = retry(&policy, &what, retryable, &mut |m| note_to(&self.events, &mut self.notes, m), || {
            platform.wait_ready(&app, track, deadline)
        })
        .await;
        result.map_err(|e| self.platform_failure(&what(), &e))
    }

    async fn status(&mut self, track: Track) -> Result<TrackStatus, StepError> {
        let platform = Arc::clone(&self.engine.platform);
        let (policy, app) = (self.engine.config.retry, self.app.clone());
        let what = || format!("read the status of {track}");
        let result = retry(
            &policy,
            &what,
            |e: &PlatformError| e.is_retryable(),
            &mut |m| note_to(&self.events, &mut self.notes, m),
            || platform.status(&app, track),
        )
        .await;
        result.map_err(|e| self.platform_failure(&what(), &e))
    }

    async fn remove(&mut self, track: Track) -> Result<(), StepError> {
        let platform = Arc::clone(&self.engine.platform);
        let (policy, app) = (self.engine.config.retry, self.app.clone());
        let what = || format!("remove {track}");
        let result = retry(
            &policy,
            &what,
            |e: &PlatformError| e.is_retryable(),
            &mut |m| note_to(&self.events, &mut self.notes, m),
            || platform.remove(&app, track),
        )
        .await;
        result.map_err(|e| self.platform_failure(&what(), &e))?;
        self.note(format!("removed {track}"));
        Ok(())
    }

    /// Waits for `track` unless it is ready already; fails on a track that is
    /// absent or doomed.
    async fn ensure_ready(&mut self, track: Track) -> Result<(), StepError> {
        let status = self.status(track).await?;
        match status.state {
            TrackState::Ready => Ok(()),
            TrackState::Absent => {
                Err(self.failed(CauseKind::Platform, format!("{track} does not exist; no traffic is sent to it")))
            }
            TrackState::Failed(reason) => {
                Err(self.failed(CauseKind::Doomed, format!("{track} cannot become ready: {reason}")))
            }
            _ => {
                self.note(format!("{track} is not ready yet; waiting before routing traffic to it"));
                self.wait_ready(track).await
            }
        }
    }

    /// Routes traffic as `split` says, only to ready tracks, and checks the weights
    /// the router reads back.
    async fn route(&mut self, split: TrafficSplit) -> Result<(), StepError> {
        let Some(router) = self.engine.router.clone() else { return Ok(()) };
        for (track, _) in split.iter().collect::<Vec<_>>() {
            self.ensure_ready(track).await?;
        }
        let (policy, app) = (self.engine.config.retry, self.app.clone());
        // What the router can really produce (a replica ratio rounds); that is what
        // is read back and recorded, next to what was asked.
        let effective = router.effective_split(&split);
        if effective != split {
            self.note(format!("traffic {split} requested; the router can produce {effective}"));
        }
        for _ in 0..policy.attempts.max(1) {
            let what = || format!("set traffic {split}");
            let set = retry(
                &policy,
                &what,
                |e: &RouterError| e.is_retryable(),
                &mut |m| note_to(&self.events, &mut self.notes, m),
                || router.set_weights(&app, &split),
            )
            .await;
            set.map_err(|e| self.router_failure(&what(), &e))?;
            let read = retry(
                &policy,
                &|| "read traffic back".to_owned(),
                |e: &RouterError| e.is_retryable(),
                &mut |m| note_to(&self.events, &mut self.notes, m),
                || router.weights(&app),
            )
            .await;
            let actual = read.map_err(|e| self.router_failure("read traffic back", &e))?;
            if actual == effective {
                self.note(format!("traffic {effective}, read back and verified"));
                self.state.traffic = effective.clone();
                self.emit(RolloutEvent::WeightChanged { split: effective });
                return Ok(());
            }
            self.note(format!(
                "the router reports {actual} after {split} was set (expected {effective}); setting it again"
            ));
        }
        Err(self
            .failed(CauseKind::WeightMismatch, format!("the router never reported {effective} (requested {split})")))
    }

    async fn clear_header_routes(&mut self) -> Result<(), StepError> {
        let Some(router) = self.engine.router.clone() else { return Ok(()) };
        let (policy, app) = (self.engine.config.retry, self.app.clone());
        let result = retry(
            &policy,
            &|| "clear header routes".to_owned(),
            |e: &RouterError| e.is_retryable(),
            &mut |m| note_to(&self.events, &mut self.notes, m),
            || router.clear_header_routes(&app),
        )
        .await;
        result.map_err(|e| self.router_failure("clear header routes", &e))?;
        if !self.state.header_routes.is_empty() {
            self.note("header routes removed".to_owned());
            self.state.header_routes.clear();
        }
        // Mirroring ends where header routes do: at promotion and on rollback.
        if router.capabilities().mirroring && self.plan.steps.iter().any(|s| matches!(s, Step::Mirror(_))) {
            let result = retry(
                &policy,
                &|| "stop mirroring".to_owned(),
                |e: &RouterError| e.is_retryable(),
                &mut |m| note_to(&self.events, &mut self.notes, m),
                || router.clear_mirror(&app),
            )
            .await;
            result.map_err(|e| self.router_failure("stop mirroring", &e))?;
        }
        Ok(())
    }

    // ---- steps ----

    fn canary_target(&self, weight: Percent) -> u32 {
        let total = self.plan.replicas;
        let n = match self.state.canary_scale {
            Some(CanaryScale::Replicas(n)) => n,
            Some(CanaryScale::Weight(w)) => canary_replicas(total, w),
            _ => canary_replicas(total, weight),
        };
        if weight > Percent::ZERO { n.max(1) } else { n }
    }

    async fn set_weight(&mut self, weight: Percent) -> Result<(), StepError> {
        let (old, new, total) = (self.plan.old_track, self.plan.new_track, self.plan.replicas);
        if self.weighted() {
            let n = self.canary_target(weight);
            self.scale(new, n).await?;
            if n > 0 {
                self.wait_ready(new).await?;
            }
            self.route(TrafficSplit::between(old, new, weight)).await?;
        } else {
            let n = canary_replicas(total, weight);
            let s = total - n.min(total);
            self.note(format!(
                "no weighted router: {weight} by replica ratio, {new} {n} and {old} {s} of {total} ({}% effective)",
                u64::from(n.min(total)) * 100 / u64::from(total.max(1))
            ));
            let current_old = self.status(old).await?.desired;
            if s > current_old {
                // Grow before shrinking, so capacity never drops.
                self.scale(old, s).await?;
                self.wait_ready(old).await?;
                self.scale(new, n).await?;
            } else {
                self.scale(new, n).await?;
                if n > 0 {
                    self.wait_ready(new).await?;
                }
                self.scale(old, s).await?;
            }
        }
        self.state.canary_weight = weight;
        Ok(())
    }

    async fn set_canary_scale(&mut self, scale: CanaryScale) -> Result<(), StepError> {
        self.state.canary_scale = match scale {
            CanaryScale::MatchTrafficWeight => None,
            other => Some(other),
        };
        let n = self.canary_target(self.state.canary_weight);
        let new = self.plan.new_track;
        self.scale(new, n).await?;
        if n > 0 {
            self.wait_ready(new).await?;
        }
        Ok(())
    }

    async fn header_route(&mut self, route: &HeaderRoute) -> Result<(), StepError> {
        self.ensure_ready(route.track).await?;
        let Some(router) = self.engine.router.clone() else {
            return Err(self.failed(CauseKind::Router, "header routes need a traffic router".to_owned()));
        };
        let (policy, app) = (self.engine.config.retry, self.app.clone());
        let what = || format!("route {route}");
        let result = retry(
            &policy,
            &what,
            |e: &RouterError| e.is_retryable(),
            &mut |m| note_to(&self.events, &mut self.notes, m),
            || router.set_header_route(&app, route),
        )
        .await;
        result.map_err(|e| self.router_failure(&what(), &e))?;
        self.state.header_routes.push(route.clone());
        self.note(format!("header route {route} in force"));
        Ok(())
    }

    async fn mirror(&mut self, mirror: &Mirror) -> Result<(), StepError> {
        let new = self.plan.new_track;
        self.ensure_ready(new).await?;
        let Some(router) = self.engine.router.clone() else {
            return Err(self.failed(CauseKind::Router, "mirroring needs a traffic router".to_owned()));
        };
        let (policy, app) = (self.engine.config.retry, self.app.clone());
        let what = || format!("mirror {mirror} to {new}");
        let result = retry(
            &policy,
            &what,
            |e: &RouterError| e.is_retryable(),
            &mut |m| note_to(&self.events, &mut self.notes, m),
            || router.set_mirror(&app, new, mirror),
        )
        .await;
        result.map_err(|e| self.router_failure(&what(), &e))?;
        self.note(format!("mirroring {mirror} to {new}; their answers are discarded"));
        Ok(())
    }

    async fn pause(&mut self, index: usize, kind: PauseKind) {
        self.emit(RolloutEvent::Paused { index, kind });
        let promote = Arc::clone(&self.promote);
        let promoted = match kind {
            PauseKind::Duration(d) => {
                tokio::select! {
                    () = tokio::time::sleep(d.as_duration()) => false,
                    () = promote.notified() => true,
                }
            }
            PauseKind::UntilPromoted => {
                promote.notified().await;
                true
            }
        };
        if promoted {
            self.emit(RolloutEvent::Promoted { index });
            self.note("the caller promoted: pause ended".to_owned());
        } else {
            self.note("pause ended".to_owned());
        }
    }

    async fn analyze(&mut self, spec: &AnalysisSpec) -> Result<(), StepError> {
        let target = AnalysisTarget::new(
            self.app.clone(),
            self.plan.new_track,
            self.plan.old_track,
            self.state.record.to.version.clone(),
        );
        let engine = Arc::clone(&self.engine);
        let runner = AnalysisRunner::new(spec.clone(), target, engine.metrics.clone(), &engine.judges, &engine.health)
            .map_err(|e| self.failed(CauseKind::AnalysisError, e.to_string()))?;
        let events = self.events.clone();
        let name = spec.name.clone();
        let report = runner
            .run(|m| {
                let _ = events.send(RolloutEvent::Measurement { analysis: name.clone(), measurement: m.clone() });
            })
            .await;
        for m in &report.measurements {
            let value = m.value.map(|v| format!(" value {v}")).unwrap_or_default();
            self.notes.push(format!(
                "{} #{} {}: {}{value} ({})",
                report.name,
                m.round + 1,
                m.check,
                m.outcome,
                m.detail
            ));
        }
        self.emit(RolloutEvent::AnalysisFinished {
            analysis: report.name.clone(),
            outcome: report.outcome,
            reason: report.reason.clone(),
        });
        self.note(format!("analysis {} {}: {}", report.name, report.outcome, report.reason));
        let kind = match report.outcome {
            AnalysisOutcome::Successful => return Ok(()),
            AnalysisOutcome::Failed if matches!(report.decided_by, Some((_, CheckKind::HealthCheck))) => {
                CauseKind::HealthCheckFailed
            }
            AnalysisOutcome::Failed => CauseKind::AnalysisFailed,
            AnalysisOutcome::Inconclusive => CauseKind::AnalysisInconclusive,
            AnalysisOutcome::Error => CauseKind::AnalysisError,
        };
        Err(self.failed(kind, format!("{}: {}", report.name, report.reason)))
    }

    async fn promote_release(&mut self) -> Result<(), StepError> {
        let (old, new, fin, total) =
            (self.plan.old_track, self.plan.new_track, self.plan.final_track, self.plan.replicas);
        let to = self.state.record.to.clone();
        let spec = self.spec.clone();
        if fin != new {
            self.note(format!("promotion: {fin} updated in place to {} with {total} replicas", to.version));
            self.apply(&spec, fin, &to, total).await?;
            self.wait_ready(fin).await?;
            if self.weighted() {
                self.route(TrafficSplit::all(fin)).await?;
            } else {
                self.note(format!("no weighted router: {new} scaled to 0 so {fin} serves alone"));
                self.scale(new, 0).await?;
            }
        } else if new != old {
            if self.status(new).await?.desired < total {
                self.apply(&spec, new, &to, total).await?;
            }
            self.route(TrafficSplit::all(new)).await?;
        }
        self.clear_header_routes().await
    }

    async fn scale_down(&mut self) -> Result<(), StepError> {
        let fin = self.plan.final_track;
        for track in self.plan.tracks() {
            if track == fin {
                continue;
            }
            if self.state.traffic.routes_to(track) {
                self.note(format!("{track} still receives traffic; sending all of it to {fin} first"));
                self.route(TrafficSplit::all(fin)).await?;
            }
            self.remove(track).await?;
        }
        Ok(())
    }

    // ---- saving, rolling back, finishing ----

    async fn save(&mut self) -> Result<(), StepError> {
        let store = Arc::clone(&self.engine.state);
        let policy = self.engine.config.retry;
        let retryable = |e: &StateError| e.is_retryable() && !matches!(e, StateError::Conflict { .. });
        let (app, state, revision) = (&self.app, &self.state, &self.revision);
        let result = retry(
            &policy,
            &|| "save progress".to_owned(),
            retryable,
            &mut |m| note_to(&self.events, &mut self.notes, m),
            || store.save(app, state, revision.as_ref()),
        )
        .await;
        match result {
            Ok(revision) => {
                self.revision = Some(revision);
                Ok(())
            }
            Err(e @ StateError::Conflict { .. }) => Err(StepError::Fatal(RolloutError::State(e))),
            Err(e) => Err(self.failed(CauseKind::StateStore, format!("save progress: {e}"))),
        }
    }

    async fn roll_back(mut self, cause: FailureCause, keeper: &mut LeaseKeeper) -> Result<RolloutReport, RolloutError> {
        self.step = None;
        self.notes.clear();
        tracing::warn!(%cause, "rolling back");
        self.emit(RolloutEvent::RollbackStarted { cause: cause.clone() });
        self.state.record.log(LogLevel::Warn, format!("rolling back: {cause}"));
        self.state.phase = RolloutPhase::RollingBack(cause.clone());
        match self.save().await {
            Ok(()) | Err(StepError::Aborted | StepError::Emergency(_)) => {}
            Err(StepError::Fatal(e)) => return Err(e),
            Err(StepError::Failed(e)) => {
                self.note(format!("could not save the rollback phase ({e}); rolling back anyway"))
            }
        }
        let started = Timestamp::now();
        let config = &self.engine.config;
        let deadline = config.step_deadline * 2 + config.readiness_deadline;
        let (promote, events) = (Arc::clone(&self.promote), self.events.clone());
        let description = match &self.state.record.from {
            Some(from) => format!("roll back to {}", from.version),
            None => "roll back: remove the new release".to_owned(),
        };
        let result = {
            let fut = self.restore().instrument(tracing::info_span!("rollout.rollback"));
            guard(fut, Some(deadline), None, keeper, None, &promote, &events).await
        };
        let outcome = match &result {
            Ok(()) => StepOutcome::Succeeded,
            Err(StepError::Failed(c)) => StepOutcome::Failed(c.to_string()),
            Err(StepError::Fatal(e)) => StepOutcome::Failed(e.to_string()),
            Err(StepError::Aborted | StepError::Emergency(_)) => StepOutcome::Aborted,
        };
        let mut record = StepRecord::new(self.plan.steps.len(), description, started, Timestamp::now(), outcome);
        record.details = std::mem::take(&mut self.notes);
        self.state.record.steps.push(record);
        match result {
            Ok(()) => self.finish(DeploymentStatus::RolledBack, Some(cause), keeper).await,
            Err(StepError::Fatal(e)) => Err(e),
            Err(StepError::Failed(second)) => {
                let mut cause = cause;
                cause.message = format!("{}; the rollback failed too: {second}", cause.message);
                self.finish(DeploymentStatus::Failed, Some(cause), keeper).await
            }
            Err(StepError::Aborted | StepError::Emergency(_)) => {
                self.finish(DeploymentStatus::Failed, Some(cause), keeper).await
            }
        }
    }

    /// Makes the previous release serve 100 % and removes the new release's tracks.
    async fn restore(&mut self) -> Result<(), StepError> {
        let (old, total) = (self.plan.old_track, self.plan.replicas);
        let keep = self.engine.config.keep_failed_release;
        let from = self.state.record.from.clone();
        if let Some(from) = &from {
            let status = self.status(old).await?;
            let intact = status.release.as_ref() == Some(&from.version)
                && status.desired >= total
                && status.state == TrackState::Ready;
            if intact {
                self.note(format!("{old} still runs {} and is ready", from.version));
            } else {
                self.note(format!("restoring {} on {old} with {total} replicas", from.version));
                let spec = self.spec.clone();
                self.apply(&spec, old, from, total).await?;
                self.wait_ready(old).await?;
            }
            self.route(TrafficSplit::all(old)).await?;
        }
        self.clear_header_routes().await?;
        for track in self.plan.tracks() {
            if from.is_some() && track == old {
                continue;
            }
            if keep {
                if self.engine.router.is_none() || !self.weighted() {
                    // Without a router the platform sends traffic to every ready pod.
                    self.scale(track, 0).await?;
                }
                self.note(format!("keeping {track} without traffic, as asked"));
                continue;
            }
            self.remove(track).await?;
        }
        Ok(())
    }

    async fn finish(
        mut self,
        status: DeploymentStatus,
        cause: Option<FailureCause>,
        keeper: &mut LeaseKeeper,
    ) -> Result<RolloutReport, RolloutError> {
        self.state.record.finish(status, cause.as_ref().map(ToString::to_string));
        let level = if status == DeploymentStatus::Succeeded { LogLevel::Info } else { LogLevel::Error };
        self.state.record.log(level, format!("finished: {status}"));
        let history = Arc::clone(&self.engine.history);
        let policy = self.engine.config.retry;
        let record = self.state.record.clone();
        let mut ignored = Vec::new();
        let recorded = retry(
            &policy,
            &|| "record the deployment".to_owned(),
            |e: &crate::history::HistoryError| e.is_retryable(),
            &mut |m| note_to(&self.events, &mut ignored, m),
            || history.record(&record),
        )
        .await;
        if let Err(e) = recorded {
            tracing::error!(error = %e, "could not record the finished deployment");
            return Err(RolloutError::History(e));
        }
        if let Some(revision) = self.revision.clone() {
            let store = Arc::clone(&self.engine.state);
            let app = self.app.clone();
            let cleared = retry(
                &policy,
                &|| "clear progress".to_owned(),
                |e: &StateError| e.is_retryable() && !matches!(e, StateError::Conflict { .. }),
                &mut |m| note_to(&self.events, &mut ignored, m),
                || store.clear(&app, &revision),
            )
            .await;
            if let Err(e) = cleared {
                return Err(RolloutError::State(e));
            }
        }
        keeper.release().await;
        self.emit(RolloutEvent::Finished { status, cause: cause.clone() });
        Ok(RolloutReport { status, cause, record })
    }
}
