//! Executing a plan: steps, guards (deadline, controls, lease), rollback and finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};
use tracing::Instrument;

use super::event_queue::EventSender;
use super::handle::{Control, Progress};
use super::retry::{RetryPolicy, retry};
use super::DecisionKind;
use crate::model::{CauseKind, FailureCause};

use super::{Inner, RolloutError, RolloutEvent, RolloutReport};
use crate::analysis::{
    AnalysisOutcome, AnalysisRecord, AnalysisRunner, AnalysisSpec, AnalysisTarget, CheckKind, InconclusivePolicy,
};
use crate::error::{Classify, ErrorKind};
use crate::hook::{HookSpec, HookWhen};
use crate::model::record::{InconclusiveDecision, LogLevel};
use crate::model::{
    AppId, AppSpec, DeploymentStatus, HumanDuration, Percent, Release, RollingUpdateParams, StepOutcome, StepRecord,
    Track, TrafficSplit,
};
use crate::plan::{CanaryScale, PauseKind, Plan, Step, canary_replicas, resolve_rolling};
use crate::platform::{PlatformError, TrackState, TrackStatus};
use crate::state::{
    ControlRequest, LockLease, PendingRequest, Revision, RolloutPhase, RolloutState, StateError, StateStore, WriteStamp,
};
use crate::traffic::{HeaderRoute, Mirror, RouterError};

/// What the driver knows of its lease, shared by the lease keeper (which renews
/// it) and the driver (which checks it before every platform or router change).
#[derive(Debug)]
pub(crate) struct LeaseView {
    inner: Mutex<LeaseState>,
}

#[derive(Debug)]
struct LeaseState {
    /// The lease as last written; `None` once released.
    lease: Option<LockLease>,
    /// Until when the driver may change the platform: two thirds of the lease
    /// after the last successful renewal was *sent*, on this process' monotonic
    /// clock, so nobody can take over before it stops (nor with a skewed clock).
    safe_until: Instant,
    /// When the lease may have lapsed for others: a full ttl after that send.
    hard_until: Instant,
    /// Why the lease is lost, once it is.
    lost: Option<(String, String)>,
}

impl LeaseView {
    pub(crate) fn new(lease: LockLease, sent: Instant, ttl: Duration) -> Arc<Self> {
        let state =
            LeaseState { lease: Some(lease), safe_until: sent + safe_part(ttl), hard_until: sent + ttl, lost: None };
        Arc::new(Self { inner: Mutex::new(state) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lease as last written, unless released.
    pub(crate) fn lease(&self) -> Option<LockLease> {
        self.lock().lease.clone()
    }

    /// `Ok` while the driver may still change the platform; otherwise the holder
    /// (if known) and why not.
    fn check(&self) -> Result<(), (String, String)> {
        let mut state = self.lock();
        if let Some(lost) = &state.lost {
            return Err(lost.clone());
        }
        if Instant::now() >= state.safe_until {
            let lost = ("unknown".to_owned(), "the lease could not be renewed in time and may lapse".to_owned());
            state.lost = Some(lost.clone());
            return Err(lost);
        }
        Ok(())
    }

    /// Whether a write now still lands before anyone could take the lease over.
    fn may_write(&self) -> bool {
        Instant::now() < self.lock().hard_until
    }
}

/// The share of a lease the driver may use after a renewal was sent (client-go's
/// renew deadline against its lease duration).
fn safe_part(ttl: Duration) -> Duration {
    ttl.saturating_mul(2) / 3
}

/// Keeps the per-app lease alive while a rollout runs: renews it every third of
/// its ttl, retries failed renewals every tenth, and declares it lost when it
/// could not renew before the driver's safe deadline. Its timer is made once and
/// reset after each renewal.
pub(crate) struct LeaseKeeper {
    store: Arc<dyn StateStore>,
    app: AppId,
    ttl: Duration,
    next: Pin<Box<Sleep>>,
    view: Arc<LeaseView>,
}

impl LeaseKeeper {
    pub(crate) fn new(store: Arc<dyn StateStore>, view: Arc<LeaseView>, app: AppId, ttl: Duration) -> Self {
        let first = view.lock().safe_until.min(Instant::now() + ttl / 3);
        Self { store, app, ttl, next: Box::pin(tokio::time::sleep_until(first)), view }
    }

    async fn due(&mut self) {
        self.next.as_mut().await;
    }

    fn lost(&self, (holder, reason): (String, String)) -> RolloutError {
        RolloutError::LockLost { app: self.app.clone(), holder, reason }
    }

    async fn renew(&mut self) -> Result<(), RolloutError> {
        self.view.check().map_err(|l| self.lost(l))?;
        let Some(lease) = self.view.lease() else {
            return Err(self.lost(("nobody".to_owned(), "the lease was released".to_owned())));
        };
        let sent = Instant::now();
        let safe_until = self.view.lock().safe_until;
        let renewal =
            tokio::time::timeout(safe_until.saturating_duration_since(sent), self.store.renew_lock(&lease, self.ttl));
        match renewal.await {
            Ok(Ok(lease)) => {
                let mut state = self.view.lock();
                state.lease = Some(lease);
                state.safe_until = sent + safe_part(self.ttl);
                state.hard_until = sent + self.ttl;
                drop(state);
                self.next.as_mut().reset(Instant::now() + self.ttl / 3);
                Ok(())
            }
            Ok(Err(StateError::LockLost { holder, .. })) => {
                let lost = (holder, "another holder has the lease".to_owned());
                self.view.lock().lost = Some(lost.clone());
                Err(self.lost(lost))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not renew the rollout lock; trying again soon");
                self.retry_soon()
            }
            Err(_) => {
                tracing::warn!("renewing the rollout lock did not answer in time");
                self.retry_soon()
            }
        }
    }

    fn retry_soon(&mut self) -> Result<(), RolloutError> {
        self.view.check().map_err(|l| self.lost(l))?;
        let safe_until = self.view.lock().safe_until;
        self.next.as_mut().reset((Instant::now() + self.ttl / 10).min(safe_until));
        Ok(())
    }

    async fn release(&self) {
        let Some(lease) = self.view.lease() else { return };
        match self.store.release_lock(&lease).await {
            Ok(()) => self.view.lock().lease = None,
            Err(e) => tracing::warn!(error = %e, "could not release the rollout lock; it lapses with its lease"),
        }
    }
}

/// Control requests seen through the state store, shared by the guard (which
/// polls them) and the driver (which saves what it handled).
#[derive(Debug, Default)]
pub(crate) struct ControlBook {
    /// Every stored request not yet pruned.
    requests: Vec<PendingRequest>,
    /// The last one acted on.
    handled: u64,
    /// Paused by a caller until resumed.
    paused: bool,
}

impl ControlBook {
    pub(crate) fn from_state(state: &RolloutState) -> Self {
        Self { requests: state.requests.clone(), handled: state.requests_handled, paused: state.paused }
    }

    /// Takes the stored requests in and returns the ones not acted on yet.
    fn merge(&mut self, stored: &[PendingRequest]) -> Vec<PendingRequest> {
        self.requests = stored.to_vec();
        let fresh: Vec<PendingRequest> = stored.iter().filter(|r| r.id > self.handled).cloned().collect();
        if let Some(last) = fresh.iter().map(|r| r.id).max() {
            self.handled = last;
        }
        fresh
    }

    fn write_into(&self, state: &mut RolloutState) {
        state.requests = self.requests.iter().filter(|r| r.id > self.handled).cloned().collect();
        state.requests_handled = self.handled;
        state.paused = self.paused;
    }
}

/// Why a step did not succeed.
pub(crate) enum StepError {
    /// The step failed; roll back.
    Failed(FailureCause),
    /// The caller aborted, for this reason; roll back.
    Aborted(String),
    /// The caller asked for an emergency rollback, for this reason; roll back.
    Emergency(String),
    /// Stop touching anything (the lock or the state belongs to someone else now).
    Fatal(RolloutError),
}

pub(crate) struct Controls {
    rx: mpsc::UnboundedReceiver<Control>,
    open: bool,
    /// The state store, polled for other processes' requests.
    store: Arc<dyn StateStore>,
    app: AppId,
    deployment: crate::model::DeploymentId,
    book: Arc<Mutex<ControlBook>>,
    interval: Duration,
    poll: Pin<Box<Sleep>>,
}

impl Controls {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Control>,
        store: Arc<dyn StateStore>,
        app: AppId,
        deployment: crate::model::DeploymentId,
        book: Arc<Mutex<ControlBook>>,
        interval: Duration,
    ) -> Self {
        let poll = Box::pin(tokio::time::sleep(interval));
        Self { rx, open: true, store, app, deployment, book, interval, poll }
    }
}

enum Wake<T> {
    Control(Option<Control>),
    Poll,
    Renew,
    Done(Result<T, StepError>),
}

/// Acts on control requests; returns the abort, if one was asked for.
fn act_on(
    requests: &[PendingRequest],
    book: &Mutex<ControlBook>,
    step: Option<usize>,
    promote: &watch::Sender<Option<usize>>,
    events: &EventSender,
) -> Option<String> {
    let mut abort = None;
    for r in requests {
        let acted = match &r.request {
            ControlRequest::Promote { step: asked } if Some(*asked) == step => {
                promote.send_replace(Some(*asked));
                true
            }
            ControlRequest::Promote { .. } => false,
            ControlRequest::Abort { reason } => {
                abort = Some(reason.clone());
                true
            }
            ControlRequest::Pause => {
                book.lock().unwrap_or_else(PoisonError::into_inner).paused = true;
                true
            }
            ControlRequest::Resume => {
                book.lock().unwrap_or_else(PoisonError::into_inner).paused = false;
                true
            }
        };
        let kind = DecisionKind::ControlRequest { request: r.request.clone(), acted };
        tracing::info!(decision = %kind);
        let _ = events.send(RolloutEvent::Decision { kind });
    }
    abort
}

/// Runs `fut` under a deadline while answering the caller's controls (through the
/// handle and through the state store) and renewing the lease.
async fn guard<T>(
    fut: impl Future<Output = Result<T, StepError>>,
    deadline: Option<Duration>,
    step: Option<usize>,
    keeper: &mut LeaseKeeper,
    mut controls: Option<&mut Controls>,
    promote: &watch::Sender<Option<usize>>,
    events: &EventSender,
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
        let polling = controls.is_some();
        let wake = {
            let (recv, poll) = match controls.as_mut() {
                Some(c) => {
                    let Controls { rx, poll, .. } = &mut **c;
                    (Some(rx), Some(poll))
                }
                None => (None, None),
            };
            let recv = async {
                match recv {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let poll = async {
                match poll {
                    Some(p) => p.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = keeper.due() => Wake::Renew,
                control = recv, if open => Wake::Control(control),
                () = poll, if polling => Wake::Poll,
                result = &mut fut => Wake::Done(result),
            }
        };
        match wake {
            Wake::Control(Some(Control::Abort)) => return Err(StepError::Aborted("aborted by the caller".to_owned())),
            Wake::Control(Some(Control::Emergency(reason))) => return Err(StepError::Emergency(reason)),
            Wake::Control(Some(Control::Promote(asked))) => {
                if Some(asked) == step {
                    promote.send_replace(Some(asked));
                    let _ = events.send(RolloutEvent::Decision { kind: DecisionKind::PromotionAsked { step: asked } });
                }
            }
            Wake::Control(Some(Control::Poll)) => {
                if let Some(c) = controls.as_mut() {
                    c.poll.as_mut().reset(Instant::now());
                }
            }
            Wake::Control(None) => {
                if let Some(c) = controls.as_mut() {
                    c.open = false;
                }
            }
            Wake::Poll => {
                let Some(c) = controls.as_mut() else { continue };
                let next = Instant::now() + c.interval;
                c.poll.as_mut().reset(next);
                let fresh = match c.store.load(&c.app).await {
                    Ok(Some(v)) if v.value.record.id == c.deployment => {
                        c.book.lock().unwrap_or_else(PoisonError::into_inner).merge(&v.value.requests)
                    }
                    Ok(_) => Vec::new(),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not read control requests; trying at the next check");
                        Vec::new()
                    }
                };
                if let Some(reason) = act_on(&fresh, &c.book, step, promote, events) {
                    return Err(StepError::Aborted(reason));
                }
            }
            Wake::Renew => keeper.renew().await.map_err(StepError::Fatal)?,
            Wake::Done(result) => return result,
        }
    }
}

/// The error a fenced platform call returns without being sent (not retryable).
fn fence_error() -> PlatformError {
    PlatformError::backend("change the platform", ErrorKind::Other, "the rollout's lease may have lapsed")
}

/// The error a fenced router call returns without being sent (not retryable).
fn router_fence_error() -> RouterError {
    RouterError::backend("change the traffic router", ErrorKind::Other, "the rollout's lease may have lapsed")
}

/// A decision taken within a step: in the trace, the events and the step's notes
/// (its record's details).
fn note_to(events: &EventSender, notes: &mut Vec<String>, kind: DecisionKind) {
    tracing::info!(decision = %kind);
    let message = kind.to_string();
    if !events.is_closed() {
        let _ = events.send(RolloutEvent::Decision { kind });
    }
    notes.push(message);
}

/// The engine's one call-with-retry: runs `op` under `policy`, retrying the errors
/// `retryable` accepts, and notes each retry as a decision (in the events and in
/// `notes`). [`Run::with_retry`] and [`Run::change_with_retry`] use it with the
/// run's own policy and notes; it is free for the calls that borrow other fields
/// of the run in `op`.
async fn retry_noted<T, E, F, Fut>(
    policy: &RetryPolicy,
    events: &EventSender,
    notes: &mut Vec<String>,
    what: &(dyn Fn() -> String + Sync),
    retryable: impl Fn(&E) -> bool,
    op: F,
) -> Result<T, E>
where
    E: std::fmt::Display + Classify,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry(policy, what, retryable, &mut |m| note_to(events, notes, DecisionKind::from(m)), op).await
}

/// One rollout being executed.
pub(crate) struct Run {
    engine: Arc<Inner>,
    /// Boxed: the run lives inside the rollout's task for as long as the rollout
    /// waits, and the state is most of its size.
    state: Box<RolloutState>,
    plan: Plan,
    spec: Box<AppSpec>,
    app: AppId,
    revision: Option<Revision>,
    events: EventSender,
    /// The pause step a promotion was asked for.
    promote: Arc<watch::Sender<Option<usize>>>,
    progress: watch::Sender<Progress>,
    notes: Vec<String>,
    step: Option<usize>,
    lease: Arc<LeaseView>,
    book: Arc<Mutex<ControlBook>>,
    /// The stamp of this driver's last save that reached the store.
    stamp: Option<WriteStamp>,
    sequence: u64,
    telemetry: super::telemetry::RolloutTelemetry,
}

/// Executes the rollout to its end.
pub(crate) async fn drive(
    mut run: Run,
    mut controls: Controls,
    mut keeper: LeaseKeeper,
) -> Result<RolloutReport, RolloutError> {
    // Every phase and step is boxed (here, in `drive_inner` and in `execute`): an
    // async fn's future is as large as its largest state, so without the boxes a
    // rollout waiting at a pause would hold the space of an analysis, a rollback and
    // every other step for as long as it waits (17 KB of 45 KB per waiting rollout,
    // measured with massif in benches/many_rollouts.rs). A box per step costs one
    // allocation against the network calls every step makes.
    let result = Box::pin(drive_inner(&mut run, &mut controls, &mut keeper)).await;
    match result {
        Outcome::Report(report) => *report,
        Outcome::RollBack(cause) => Box::pin(run.roll_back(cause, &mut keeper)).await,
        Outcome::Stop(e) => Err(Box::pin(run.stop(e)).await),
    }
}

enum Outcome {
    Report(Box<Result<RolloutReport, RolloutError>>),
    RollBack(FailureCause),
    Stop(RolloutError),
}

async fn drive_inner(run: &mut Run, controls: &mut Controls, keeper: &mut LeaseKeeper) -> Outcome {
    if let RolloutPhase::RollingBack(cause) | RolloutPhase::Degraded(cause) = run.state.phase.clone() {
        return Outcome::RollBack(cause);
    }
    // Requests stored while no engine ran it (an abort, a pause) count now.
    let pending: Vec<PendingRequest> = run.state.pending_requests().cloned().collect();
    let stored = run.state.requests.clone();
    run.book.lock().unwrap_or_else(PoisonError::into_inner).merge(&stored);
    let index = run.state.next_step;
    if let Some(reason) = act_on(&pending, &run.book, Some(index), &run.promote, &run.events) {
        return Outcome::RollBack(FailureCause::new(CauseKind::Aborted, Some(index), reason));
    }
    if index == 0
        && run.state.record.steps.is_empty()
        && let Err(cause) = Box::pin(run.preflight()).await
    {
        return Outcome::RollBack(cause);
    }
    while run.state.next_step < run.plan.steps.len() {
        let index = run.state.next_step;
        if let Err(e) = Box::pin(run.hold_while_paused(index, controls, keeper)).await {
            match e {
                StepError::Fatal(e) => return Outcome::Stop(e),
                StepError::Aborted(reason) => {
                    return Outcome::RollBack(FailureCause::new(CauseKind::Aborted, Some(index), reason));
                }
                StepError::Emergency(reason) => {
                    run.emergency_requested(&reason);
                    return Outcome::RollBack(FailureCause::new(CauseKind::EmergencyRollback, Some(index), reason));
                }
                StepError::Failed(cause) => return Outcome::RollBack(cause),
            }
        }
        let step = run.plan.steps[index].clone();
        let description = step.to_string();
        run.step = Some(index);
        run.notes.clear();
        run.progress.send_replace(Progress {
            step: Some(index),
            description: description.clone(),
            pause: matches!(step, Step::Pause(_)),
        });
        if run.listened() {
            run.emit(RolloutEvent::StepStarted { index, description: description.clone() });
        }
        let started = Timestamp::now();
        let deadline = run.deadline(&step);
        let (promote, events) = (Arc::clone(&run.promote), run.events.clone());
        let span = tracing::info_span!("rollout.step", step.index = index, step.kind = step.kind());
        let result = if let Some(reason) = run.undecided_inconclusive_pause(index, &step) {
            // Resumed while it waited for a decision after an inconclusive
            // analysis: the saved state keeps that analysis' outcome, so it is not
            // run again (no new metric queries); the wait goes on.
            Box::pin(run.resume_inconclusive_pause(index, &description, &reason, controls, keeper)).await
        } else {
            let result = {
                let fut = run.execute(index, &step).instrument(span);
                Box::pin(guard(fut, deadline, Some(index), keeper, Some(controls), &promote, &events)).await
            };
            match result {
                Err(StepError::Failed(cause)) if pauses_when_inconclusive(&step, &cause) => {
                    Box::pin(run.pause_on_inconclusive(index, &description, &cause, controls, keeper)).await
                }
                other => other,
            }
        };
        run.progress.send_replace(Progress { step: Some(index), description: description.clone(), pause: false });
        let outcome = match &result {
            Ok(()) => StepOutcome::Succeeded,
            Err(StepError::Failed(cause)) => StepOutcome::Failed(cause.to_string()),
            Err(StepError::Aborted(_) | StepError::Emergency(_)) => StepOutcome::Aborted,
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
                match Box::pin(run.save()).await {
                    Ok(()) => {}
                    Err(StepError::Failed(cause)) => return Outcome::RollBack(cause),
                    Err(StepError::Fatal(e)) => return Outcome::Stop(e),
                    Err(StepError::Aborted(_) | StepError::Emergency(_)) => {}
                }
            }
            Err(StepError::Failed(cause)) => return Outcome::RollBack(cause),
            Err(StepError::Aborted(reason)) => {
                return Outcome::RollBack(FailureCause::new(CauseKind::Aborted, Some(index), reason));
            }
            Err(StepError::Emergency(reason)) => {
                return Outcome::RollBack(FailureCause::new(CauseKind::EmergencyRollback, Some(index), reason));
            }
            Err(StepError::Fatal(e)) => return Outcome::Stop(e),
        }
    }
    run.step = None;
    Outcome::Report(Box::new(Box::pin(run.finish_in_place(DeploymentStatus::Succeeded, None, keeper)).await))
}

/// Whether `step` failed only because its analysis was inconclusive and its spec
/// asks to pause for a decision then.
fn pauses_when_inconclusive(step: &Step, cause: &FailureCause) -> bool {
    cause.kind == CauseKind::AnalysisInconclusive
        && matches!(step, Step::Analyze(spec) if spec.on_inconclusive == InconclusivePolicy::Pause)
}

impl Run {
    #[expect(clippy::too_many_arguments, reason = "the parts of a run, built once by the engine")]
    pub(crate) fn new(
        engine: Arc<Inner>,
        state: RolloutState,
        plan: Plan,
        spec: AppSpec,
        revision: Option<Revision>,
        events: EventSender,
        progress: watch::Sender<Progress>,
        lease: Arc<LeaseView>,
        book: Arc<Mutex<ControlBook>>,
    ) -> Self {
        let app = state.record.app.clone();
        let stamp = state.written_by.clone();
        let sequence = stamp.as_ref().map_or(0, |s| s.sequence);
        let telemetry = super::telemetry::RolloutTelemetry::new(&app, &plan);
        Self {
            telemetry,
            engine,
            state: Box::new(state),
            plan,
            spec: Box::new(spec),
            app,
            revision,
            events,
            promote: Arc::new(watch::Sender::new(None)),
            progress,
            notes: Vec::new(),
            step: None,
            lease,
            book,
            stamp,
            sequence,
        }
    }

    /// Pauses after the inconclusive analysis of step `index` until the caller
    /// promotes (the step then succeeds) or aborts (the rollout rolls back), through
    /// the same controls as a pause step. No deadline: a person decides.
    async fn pause_on_inconclusive(
        &mut self,
        index: usize,
        description: &str,
        cause: &FailureCause,
        controls: &mut Controls,
        keeper: &mut LeaseKeeper,
    ) -> Result<(), StepError> {
        self.decide_in_step(LogLevel::Warn, DecisionKind::InconclusivePause { reason: cause.message.clone() });
        self.state.record.inconclusive_decisions.push(InconclusiveDecision::new(
            index,
            cause.message.clone(),
            InconclusivePolicy::Pause,
        ));
        self.save().await?;
        // A promotion sent before the analysis ended does not count for its pause.
        self.promote.send_replace(None);
        self.wait_for_decision(index, description, controls, keeper).await
    }

    /// The reason of the inconclusive analysis of step `index` whose pause still
    /// waits for a decision in the saved state: the step is an analysis that
    /// pauses when inconclusive, the record keeps its analysis (inconclusive) and
    /// its last decision is that pause, unresolved. `None` otherwise (the
    /// analysis runs).
    fn undecided_inconclusive_pause(&self, index: usize, step: &Step) -> Option<String> {
        let Step::Analyze(spec) = step else { return None };
        if spec.on_inconclusive != InconclusivePolicy::Pause {
            return None;
        }
        let record = &self.state.record;
        let analysed = record
            .analyses
            .last()
            .is_some_and(|a| a.step == index && a.report.outcome == AnalysisOutcome::Inconclusive);
        let decision = record.inconclusive_decisions.last()?;
        (analysed
            && decision.step == index
            && decision.policy == InconclusivePolicy::Pause
            && decision.resolution.is_none())
        .then(|| decision.reason.clone())
    }

    /// Goes on waiting, in a resumed rollout, for the decision on the pause after
    /// the inconclusive analysis of step `index` (`reason`), without running the
    /// analysis again.
    async fn resume_inconclusive_pause(
        &mut self,
        index: usize,
        description: &str,
        reason: &str,
        controls: &mut Controls,
        keeper: &mut LeaseKeeper,
    ) -> Result<(), StepError> {
        let decision = DecisionKind::InconclusivePauseResumed { step: index, reason: reason.to_owned() };
        self.decide_in_step(LogLevel::Warn, decision);
        self.wait_for_decision(index, description, controls, keeper).await
    }

    /// Waits, paused, until the caller promotes step `index` (it then succeeds)
    /// or aborts; records how the pause ended.
    async fn wait_for_decision(
        &mut self,
        index: usize,
        description: &str,
        controls: &mut Controls,
        keeper: &mut LeaseKeeper,
    ) -> Result<(), StepError> {
        self.progress.send_replace(Progress { step: Some(index), description: description.to_owned(), pause: true });
        self.emit(RolloutEvent::Paused { index, kind: PauseKind::UntilPromoted });
        let mut promoted_rx = self.promote.subscribe();
        let promoted = async move {
            let _ = promoted_rx.wait_for(|asked| *asked == Some(index)).await;
            Ok(())
        };
        let (promote, events) = (Arc::clone(&self.promote), self.events.clone());
        guard(promoted, None, Some(index), keeper, Some(controls), &promote, &events).await?;
        self.emit(RolloutEvent::Promoted { index });
        self.decide_in_step(LogLevel::Info, DecisionKind::InconclusivePauseEnded);
        if let Some(last) = self.state.record.inconclusive_decisions.last_mut() {
            last.resolution = Some("promoted by the caller".to_owned());
        }
        Ok(())
    }

    /// Holds before step `index` while a caller's pause request is in force.
    async fn hold_while_paused(
        &mut self,
        index: usize,
        controls: &mut Controls,
        keeper: &mut LeaseKeeper,
    ) -> Result<(), StepError> {
        if !self.book.lock().unwrap_or_else(PoisonError::into_inner).paused {
            return Ok(());
        }
        self.emit(RolloutEvent::Decision { kind: DecisionKind::HeldByCaller { before_step: index } });
        self.save().await?;
        let book = Arc::clone(&self.book);
        let interval = self.engine.config.control_interval;
        let (promote, events) = (Arc::clone(&self.promote), self.events.clone());
        let wait = async move {
            while book.lock().unwrap_or_else(PoisonError::into_inner).paused {
                tokio::time::sleep(interval).await;
            }
            Ok(())
        };
        // A promotion of the step it stands before counts for that step's pause.
        guard(wait, None, Some(index), keeper, Some(controls), &promote, &events).await?;
        self.emit(RolloutEvent::Decision { kind: DecisionKind::ReleasedByCaller { before_step: index } });
        self.save().await
    }

    /// `Ok` while the lease lets the driver change the platform and the router.
    fn fenced(&self) -> Result<(), StepError> {
        self.lease.check().map_err(|(holder, reason)| {
            StepError::Fatal(RolloutError::LockLost { app: self.app.clone(), holder, reason })
        })
    }

    /// Ends the run without touching the platform again: the lease is lost or the
    /// state belongs to someone else. Saves the progress if the lease cannot have
    /// lapsed yet, so another engine resumes from here.
    async fn stop(&mut self, e: RolloutError) -> RolloutError {
        let kind = DecisionKind::Stopping { reason: e.to_string() };
        tracing::error!(decision = %kind);
        let message = kind.to_string();
        self.emit(RolloutEvent::Decision { kind });
        self.state.record.log(LogLevel::Error, message);
        if matches!(e, RolloutError::LockLost { .. }) && self.lease.may_write() && self.revision.is_some() {
            self.sequence += 1;
            if let Some(lease) = self.lease.lease() {
                self.state.written_by = Some(WriteStamp::new(lease.token, self.sequence));
            }
            self.book.lock().unwrap_or_else(PoisonError::into_inner).write_into(&mut self.state);
            let saved = self.engine.state.save(&self.app, &self.state, self.revision.as_ref()).await;
            if let Err(save) = saved {
                tracing::warn!(error = %save, "could not save the progress before stopping");
            }
        }
        e
    }

    /// Notes the caller's emergency rollback in the events, the trace and the record.
    pub(crate) fn emergency_requested(&mut self, reason: &str) {
        let kind = DecisionKind::EmergencyRollback { reason: reason.to_owned() };
        tracing::warn!(decision = %kind);
        let message = kind.to_string();
        self.emit(RolloutEvent::Decision { kind });
        self.state.record.log(LogLevel::Warn, message);
    }

    /// Whether anyone still reads the events (the handle was not dropped or waited
    /// on); events that cost allocations are only built then.
    /// Whether events are worth building: someone reads them, or the `metrics`
    /// feature records them.
    fn listened(&self) -> bool {
        cfg!(feature = "metrics") || !self.events.is_closed()
    }

    fn emit(&self, event: RolloutEvent) {
        self.telemetry.observe(&event, &self.plan);
        let _ = self.events.send(event);
    }

    /// Records the first event, which the engine sends before the run starts.
    pub(crate) fn observe(&self, event: &RolloutEvent) {
        self.telemetry.observe(event, &self.plan);
    }

    /// A decision outside any step: in the events, the trace and the record's log.
    fn decide(&mut self, level: LogLevel, kind: DecisionKind) {
        tracing::info!(decision = %kind);
        let message = kind.to_string();
        self.emit(RolloutEvent::Decision { kind });
        self.state.record.log(level, message);
    }

    /// A decision of the step running now: in the events, the trace and the
    /// step's notes.
    fn note(&mut self, kind: impl Into<DecisionKind>) {
        note_to(&self.events, &mut self.notes, kind.into());
    }

    /// A decision of the step running now that also goes to the record's log;
    /// emitted once.
    fn decide_in_step(&mut self, level: LogLevel, kind: DecisionKind) {
        let message = kind.to_string();
        self.decide(level, kind);
        self.notes.push(message);
    }

    /// [`retry_noted`] with the engine's retry policy and this run's notes: for
    /// reads, and for calls the lease need not fence.
    async fn with_retry<T, E, Fut>(
        &mut self,
        what: &(dyn Fn() -> String + Sync),
        retryable: impl Fn(&E) -> bool,
        op: impl FnMut() -> Fut,
    ) -> Result<T, E>
    where
        E: std::fmt::Display + Classify,
        Fut: Future<Output = Result<T, E>>,
    {
        let policy = self.engine.config.retry;
        retry_noted(&policy, &self.events, &mut self.notes, what, retryable, op).await
    }

    /// A change of the platform or the router, retried as [`Run::with_retry`]
    /// does, each try sent only while the lease lets this driver change things: a
    /// try after that fails with `fence()`'s error, which is not retried. The
    /// caller checks the lease again ([`Run::fenced`]) once it returns.
    async fn change_with_retry<T, E, Fut>(
        &mut self,
        what: &(dyn Fn() -> String + Sync),
        fence: fn() -> E,
        mut op: impl FnMut() -> Fut,
    ) -> Result<T, E>
    where
        E: std::fmt::Display + Classify,
        Fut: Future<Output = Result<T, E>>,
    {
        let lease = Arc::clone(&self.lease);
        self.with_retry(what, |e: &E| e.is_retryable(), || {
            let fenced = lease.check();
            let call = op();
            async move {
                fenced.map_err(|_| fence())?;
                call.await
            }
        })
        .await
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
            Step::Hook { hook, .. } => Some(hook.deadline.as_duration() + base),
            _ => Some(base),
        }
    }

    async fn execute(&mut self, index: usize, step: &Step) -> Result<(), StepError> {
        match step {
            Step::DeployTrack { track, replicas } => {
                let (spec, to) = (self.spec.clone(), self.state.record.to.clone());
                Box::pin(self.apply(&spec, *track, &to, *replicas)).await
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
                Box::pin(self.apply(&spec, Track::Stable, &to, *replicas)).await
            }
            Step::WaitReady { track } => Box::pin(self.wait_ready(*track)).await,
            Step::SetWeight(weight) => Box::pin(self.set_weight(*weight)).await,
            Step::SetCanaryScale(scale) => Box::pin(self.set_canary_scale(*scale)).await,
            Step::HeaderRoute(route) => Box::pin(self.header_route(route)).await,
            Step::Mirror(mirror) => Box::pin(self.mirror(mirror)).await,
            Step::Pause(kind) => {
                Box::pin(self.pause(index, *kind)).await;
                Ok(())
            }
            Step::Analyze(spec) => Box::pin(self.analyze(spec)).await,
            Step::Promote => Box::pin(self.promote_release()).await,
            Step::ScaleDownAfter(delay) => {
                if !delay.is_zero() {
                    self.note(format!("keeping the previous tracks for {delay}"));
                    tokio::time::sleep(delay.as_duration()).await;
                }
                Box::pin(self.scale_down()).await
            }
            Step::Hook { when: HookWhen::OnRollback, hook } => {
                self.note(format!("{hook} runs only if the rollout rolls back"));
                Ok(())
            }
            Step::Hook { hook, .. } => Box::pin(self.run_hook(hook)).await,
        }
    }

    /// Runs the engine's preflight, if it has one, before the first step: nothing
    /// has changed yet, so a no-go leaves the platform as it was.
    async fn preflight(&mut self) -> Result<(), FailureCause> {
        let Some(preflight) = self.engine.preflight.clone() else { return Ok(()) };
        let (spec, release) = (self.spec.clone(), self.state.record.to.clone());
        let input = super::preflight::PreflightInput::new(&spec, &release, &self.plan);
        match super::preflight::run(preflight.as_ref(), input).await {
            Ok(summary) => {
                self.decide(LogLevel::Info, DecisionKind::PreflightPassed { summary });
                Ok(())
            }
            Err(summary) => Err(FailureCause::new(CauseKind::PreflightFailed, None, summary)),
        }
    }

    /// Runs `hook` on the platform, once: a hook is not idempotent, so a failed
    /// run is not retried here (the hook's own `retries` are the platform's).
    async fn run_hook(&mut self, hook: &HookSpec) -> Result<(), StepError> {
        self.fenced()?;
        let started = std::time::Instant::now();
        let result = self.engine.platform.run_hook(&self.app, hook).await;
        self.fenced()?;
        match result {
            Ok(()) => {
                self.note(format!("{hook} succeeded in {:.1} s", started.elapsed().as_secs_f64()));
                Ok(())
            }
            Err(e) => Err(self.failed(CauseKind::HookFailed, format!("run {hook}: {e}"))),
        }
    }

    /// Runs the plan's on-rollback hooks after a rollback restored the previous
    /// release; a failure is noted, it does not undo the rollback.
    async fn run_rollback_hooks(&mut self) {
        let hooks: Vec<HookSpec> = self
            .plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Hook { when: HookWhen::OnRollback, hook } => Some(hook.clone()),
                _ => None,
            })
            .collect();
        for hook in hooks {
            if self.fenced().is_err() {
                self.note(format!("{hook} not run: the lease may have expired"));
                return;
            }
            match self.engine.platform.run_hook(&self.app, &hook).await {
                Ok(()) => self.note(format!("{hook} ran after the rollback")),
                Err(e) => {
                    let message = format!("{hook} failed after the rollback: {e}");
                    self.state.record.log(LogLevel::Warn, message.clone());
                    self.note(message);
                }
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
        let what = || format!("apply {} to {track} with {replicas} replicas", release.version);
        let result =
            self.change_with_retry(&what, fence_error, || platform.apply(spec, track, release, replicas)).await;
        self.fenced()?;
        result.map_err(|e| self.platform_failure(&what(), &e))?;
        self.emit(RolloutEvent::Scaled { track, replicas });
        Ok(())
    }

    async fn scale(&mut self, track: Track, replicas: u32) -> Result<(), StepError> {
        let (platform, app) = (Arc::clone(&self.engine.platform), self.app.clone());
        let what = || format!("scale {track} to {replicas}");
        let result = self.change_with_retry(&what, fence_error, || platform.scale(&app, track, replicas)).await;
        self.fenced()?;
        result.map_err(|e| self.platform_failure(&what(), &e))?;
        self.emit(RolloutEvent::Scaled { track, replicas });
        Ok(())
    }

    async fn wait_ready(&mut self, track: Track) -> Result<(), StepError> {
        let platform = Arc::clone(&self.engine.platform);
        let (app, deadline) = (self.app.clone(), self.engine.config.readiness_deadline);
        let what = || format!("wait for {track} to be ready");
        // A passed deadline or a doomed track is final; only transient errors are retried.
        let retryable = |e: &PlatformError| e.is_retryable() && !matches!(e, PlatformError::Timeout { .. });
        let result = self.with_retry(&what, retryable, || platform.wait_ready(&app, track, deadline)).await;
        result.map_err(|e| self.platform_failure(&what(), &e))
    }

    async fn status(&mut self, track: Track) -> Result<TrackStatus, StepError> {
        let (platform, app) = (Arc::clone(&self.engine.platform), self.app.clone());
        let what = || format!("read the status of {track}");
        let result = self.with_retry(&what, |e: &PlatformError| e.is_retryable(), || platform.status(&app, track)).await;
        result.map_err(|e| self.platform_failure(&what(), &e))
    }

    async fn remove(&mut self, track: Track) -> Result<(), StepError> {
        let (platform, app) = (Arc::clone(&self.engine.platform), self.app.clone());
        let what = || format!("remove {track}");
        let result = self.change_with_retry(&what, fence_error, || platform.remove(&app, track)).await;
        self.fenced()?;
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
            let set = self.change_with_retry(&what, router_fence_error, || router.set_weights(&app, &split)).await;
            self.fenced()?;
            set.map_err(|e| self.router_failure(&what(), &e))?;
            let read = self
                .with_retry(&|| "read traffic back".to_owned(), |e: &RouterError| e.is_retryable(), || router.weights(&app))
                .await;
            let actual = read.map_err(|e| self.router_failure("read traffic back", &e))?;
            if actual == effective {
                self.note(DecisionKind::WeightsVerified { split: effective.clone() });
                self.state.traffic = effective.clone();
                self.emit(RolloutEvent::WeightChanged { split: effective });
                return Ok(());
            }
            self.note(DecisionKind::WeightsReapplied {
                requested: split.clone(),
                expected: effective.clone(),
                actual,
            });
        }
        Err(self
            .failed(CauseKind::WeightMismatch, format!("the router never reported {effective} (requested {split})")))
    }

    async fn clear_header_routes(&mut self) -> Result<(), StepError> {
        let Some(router) = self.engine.router.clone() else { return Ok(()) };
        let app = self.app.clone();
        let result = self
            .change_with_retry(&|| "clear header routes".to_owned(), router_fence_error, || {
                router.clear_header_routes(&app)
            })
            .await;
        self.fenced()?;
        result.map_err(|e| self.router_failure("clear header routes", &e))?;
        if !self.state.header_routes.is_empty() {
            self.note("header routes removed".to_owned());
            self.state.header_routes.clear();
        }
        // Mirroring ends where header routes do: at promotion and on rollback.
        if router.capabilities().mirroring && self.plan.steps.iter().any(|s| matches!(s, Step::Mirror(_))) {
            let result = self
                .change_with_retry(&|| "stop mirroring".to_owned(), router_fence_error, || router.clear_mirror(&app))
                .await;
            self.fenced()?;
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
        let app = self.app.clone();
        let what = || format!("route {route}");
        let result = self.change_with_retry(&what, router_fence_error, || router.set_header_route(&app, route)).await;
        self.fenced()?;
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
        let app = self.app.clone();
        let what = || format!("mirror {mirror} to {new}");
        // A change of the router like any other: fenced by the lease (it was not).
        let result = self.change_with_retry(&what, router_fence_error, || router.set_mirror(&app, new, mirror)).await;
        self.fenced()?;
        result.map_err(|e| self.router_failure(&what(), &e))?;
        self.note(format!("mirroring {mirror} to {new}; their answers are discarded"));
        Ok(())
    }

    async fn pause(&mut self, index: usize, kind: PauseKind) {
        self.emit(RolloutEvent::Paused { index, kind });
        let mut promoted_rx = self.promote.subscribe();
        let promoted = async move {
            // Only a promotion of this very step ends it: one sent earlier was refused.
            let _ = promoted_rx.wait_for(|asked| *asked == Some(index)).await;
        };
        let promoted = match kind {
            PauseKind::Duration(d) => {
                tokio::select! {
                    () = tokio::time::sleep(d.as_duration()) => false,
                    () = promoted => true,
                }
            }
            PauseKind::UntilPromoted => {
                promoted.await;
                true
            }
        };
        if promoted {
            self.emit(RolloutEvent::Promoted { index });
            self.note(DecisionKind::PauseEnded { promoted: true });
        } else {
            self.note(DecisionKind::PauseEnded { promoted: false });
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
            self.telemetry.measurement(m.outcome);
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
        self.note(DecisionKind::AnalysisVerdict {
            analysis: report.name.clone(),
            outcome: report.outcome,
            reason: report.reason.clone(),
        });
        let step = self.step.unwrap_or_default();
        self.state.record.analyses.push(AnalysisRecord::new(step, spec.clone(), report.clone()));
        let kind = match report.outcome {
            AnalysisOutcome::Successful => return Ok(()),
            AnalysisOutcome::Failed if matches!(report.decided_by, Some((_, CheckKind::HealthCheck))) => {
                CauseKind::HealthCheckFailed
            }
            AnalysisOutcome::Failed => CauseKind::AnalysisFailed,
            AnalysisOutcome::Inconclusive if spec.on_inconclusive == InconclusivePolicy::Promote => {
                let decision =
                    DecisionKind::InconclusivePromoted { analysis: report.name.clone(), reason: report.reason.clone() };
                self.decide_in_step(LogLevel::Warn, decision);
                self.state.record.inconclusive_decisions.push(InconclusiveDecision::new(
                    step,
                    format!("{}: {}", report.name, report.reason),
                    InconclusivePolicy::Promote,
                ));
                return Ok(());
            }
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

    /// Saves the progress (compare-and-swap). A save whose answer was lost and that
    /// then meets a conflict is recognised by its stamp; requests other processes
    /// stored meanwhile are merged in; a document deleted behind the engine's back
    /// is written again.
    async fn save(&mut self) -> Result<(), StepError> {
        let Some(lease) = self.lease.lease() else {
            return Err(StepError::Fatal(RolloutError::LockLost {
                app: self.app.clone(),
                holder: "nobody".to_owned(),
                reason: "the lease was released".to_owned(),
            }));
        };
        self.sequence += 1;
        let stamp = WriteStamp::new(lease.token, self.sequence);
        self.state.written_by = Some(stamp.clone());
        let store = Arc::clone(&self.engine.state);
        let policy = self.engine.config.retry;
        let retryable = |e: &StateError| e.is_retryable() && !matches!(e, StateError::Conflict { .. });
        for _ in 0..policy.attempts.max(1) + 2 {
            self.book.lock().unwrap_or_else(PoisonError::into_inner).write_into(&mut self.state);
            let (app, state, revision) = (&self.app, &self.state, &self.revision);
            let result = retry_noted(
                &policy,
                &self.events,
                &mut self.notes,
                &|| "save progress".to_owned(),
                retryable,
                || store.save(app, state, revision.as_ref()),
            )
            .await;
            match result {
                Ok(revision) => {
                    self.revision = Some(revision);
                    self.stamp = Some(stamp);
                    return Ok(());
                }
                Err(StateError::Deleted { .. }) => {
                    self.decide(LogLevel::Warn, DecisionKind::ProgressDeleted);
                    self.revision = None;
                }
                Err(e @ StateError::Conflict { .. }) => {
                    let stored = match store.load(&self.app).await {
                        Ok(stored) => stored,
                        Err(load) => {
                            return Err(self.failed(CauseKind::StateStore, format!("save progress: {e}; then {load}")));
                        }
                    };
                    let Some(stored) = stored else {
                        self.revision = None;
                        continue;
                    };
                    if stored.value.written_by.as_ref() == Some(&stamp) {
                        self.decide(
                            LogLevel::Info,
                            DecisionKind::from(
                                "the answer to a save was lost; the stored progress is this engine's own".to_owned(),
                            ),
                        );
                        self.revision = Some(stored.revision);
                        self.stamp = Some(stamp);
                        return Ok(());
                    }
                    let ours = stored.value.record.id == self.state.record.id
                        && stored.value.written_by.is_some()
                        && stored.value.written_by == self.stamp;
                    if !ours {
                        return Err(StepError::Fatal(RolloutError::State(e)));
                    }
                    // Another process stored a control request: keep it and write again.
                    let fresh = self.book.lock().unwrap_or_else(PoisonError::into_inner).merge(&stored.value.requests);
                    let step = self.step;
                    if let Some(reason) = act_on(&fresh, &self.book, step, &self.promote, &self.events) {
                        self.revision = Some(stored.revision);
                        self.book.lock().unwrap_or_else(PoisonError::into_inner).write_into(&mut self.state);
                        let _ = store
                            .save(&self.app, &self.state, self.revision.as_ref())
                            .await
                            .map(|r| self.revision = Some(r));
                        return Err(StepError::Aborted(reason));
                    }
                    self.revision = Some(stored.revision);
                }
                Err(e) => return Err(self.failed(CauseKind::StateStore, format!("save progress: {e}"))),
            }
        }
        Err(self.failed(CauseKind::StateStore, "save progress: the stored progress kept changing".to_owned()))
    }

    pub(crate) async fn roll_back(
        &mut self,
        cause: FailureCause,
        keeper: &mut LeaseKeeper,
    ) -> Result<RolloutReport, RolloutError> {
        self.step = None;
        self.notes.clear();
        tracing::warn!(%cause, "rolling back");
        self.emit(RolloutEvent::RollbackStarted { cause: cause.clone() });
        self.state.record.log(LogLevel::Warn, format!("rolling back: {cause}"));
        // The "rollback required" marker goes to the store before anything is
        // restored, so that nobody resumes this rollout forward.
        self.state.phase = RolloutPhase::RollingBack(cause.clone());
        match self.save().await {
            Ok(()) | Err(StepError::Aborted(_) | StepError::Emergency(_)) => {}
            Err(StepError::Fatal(e)) => return Err(self.stop(e).await),
            Err(StepError::Failed(e)) => {
                // The record is the second memory: marked failed until the rollback
                // completes, so a resume from the stale progress never runs forward.
                let mut marker = self.state.record.clone();
                marker.finish(
                    DeploymentStatus::Failed,
                    Some(cause.clone()),
                );
                let recorded = self.engine.history.record(&marker).await;
                self.note(format!(
                    "could not save the rollback marker ({e}); rolling back anyway, with the deployment record \
                     marked failed until the rollback completes{}",
                    recorded.err().map(|h| format!(" (recording that failed too: {h})")).unwrap_or_default()
                ));
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
            let fut = async {
                self.restore().await?;
                self.run_rollback_hooks().await;
                Ok(())
            }
            .instrument(tracing::info_span!("rollout.rollback"));
            guard(fut, Some(deadline), None, keeper, None, &promote, &events).await
        };
        let outcome = match &result {
            Ok(()) => StepOutcome::Succeeded,
            Err(StepError::Failed(c)) => StepOutcome::Failed(c.to_string()),
            Err(StepError::Fatal(e)) => StepOutcome::Failed(e.to_string()),
            Err(StepError::Aborted(_) | StepError::Emergency(_)) => StepOutcome::Aborted,
        };
        let mut record = StepRecord::new(self.plan.steps.len(), description, started, Timestamp::now(), outcome);
        record.details = std::mem::take(&mut self.notes);
        self.state.record.steps.push(record);
        match result {
            Ok(()) => self.finish_in_place(DeploymentStatus::RolledBack, Some(cause), keeper).await,
            Err(StepError::Fatal(e)) => Err(self.stop(e).await),
            Err(StepError::Failed(second)) => {
                let mut cause = cause;
                cause.message = format!("{}; the rollback failed too: {second}", cause.message);
                self.degraded(cause, keeper).await
            }
            Err(StepError::Aborted(_) | StepError::Emergency(_)) => self.degraded(cause, keeper).await,
        }
    }

    /// The rollback failed: the application is marked degraded in the store (the
    /// document stays, the lock goes), so `resume` retries the rollback and no new
    /// rollout starts on a half-restored application.
    async fn degraded(&mut self, cause: FailureCause, keeper: &mut LeaseKeeper) -> Result<RolloutReport, RolloutError> {
        let status = DeploymentStatus::Failed;
        let kind = DecisionKind::Degraded { app: self.app.clone() };
        tracing::error!(decision = %kind);
        let message = kind.to_string();
        self.emit(RolloutEvent::Decision { kind });
        self.state.record.finish(status, Some(cause.clone()));
        self.state.record.log(LogLevel::Error, message);
        self.state.phase = RolloutPhase::Degraded(cause.clone());
        let saved = self.save().await;
        self.record_history().await?;
        match saved {
            Ok(()) | Err(StepError::Aborted(_) | StepError::Emergency(_)) => {}
            Err(StepError::Fatal(e)) => return Err(self.stop(e).await),
            Err(StepError::Failed(e)) => {
                tracing::error!(cause = %e, "could not save the degraded phase; the record says the deployment failed");
            }
        }
        keeper.release().await;
        self.emit(RolloutEvent::Finished { status, cause: Some(cause.clone()) });
        Ok(RolloutReport { status, cause: Some(cause), record: self.state.record.clone() })
    }

    /// Makes the previous release serve 100 % and takes the new release off the
    /// platform: tracks this rollout created are removed, tracks that existed
    /// before are kept (scaled to zero when they run the new release).
    async fn restore(&mut self) -> Result<(), StepError> {
        let (old, total) = (self.plan.old_track, self.plan.replicas);
        let keep = self.engine.config.keep_failed_release;
        let from = self.state.record.from.clone();
        let existed = self.state.existed_before.clone();
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
            let created = match &existed {
                Some(existed) => !existed.contains(&track),
                // Recorded before tracks were: never remove the old track.
                None => track != old,
            };
            if !created {
                let status = self.status(track).await?;
                let runs_new = status.release.as_ref() == Some(&self.state.record.to.version);
                if runs_new && status.desired > 0 {
                    self.note(format!("{track} existed before this rollout: scaled to 0 instead of removed"));
                    self.scale(track, 0).await?;
                } else {
                    self.note(format!("{track} existed before this rollout and is kept"));
                }
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

    async fn record_history(&mut self) -> Result<(), RolloutError> {
        let history = Arc::clone(&self.engine.history);
        let policy = self.engine.config.retry;
        let record = self.state.record.clone();
        let mut ignored = Vec::new();
        let recorded = retry_noted(
            &policy,
            &self.events,
            &mut ignored,
            &|| "record the deployment".to_owned(),
            |e: &crate::history::HistoryError| e.is_retryable(),
            || history.record(&record),
        )
        .await;
        recorded.map_err(|e| {
            tracing::error!(error = %e, "could not record the finished deployment");
            RolloutError::History(e)
        })
    }

    pub(crate) async fn finish_in_place(
        &mut self,
        status: DeploymentStatus,
        cause: Option<FailureCause>,
        keeper: &mut LeaseKeeper,
    ) -> Result<RolloutReport, RolloutError> {
        self.state.record.finish(status, cause.clone());
        let level = if status == DeploymentStatus::Succeeded { LogLevel::Info } else { LogLevel::Error };
        self.state.record.log(level, format!("finished: {status}"));
        self.record_history().await?;
        let record = self.state.record.clone();
        if let Some(revision) = self.revision.clone() {
            let store = Arc::clone(&self.engine.state);
            let (app, policy) = (self.app.clone(), self.engine.config.retry);
            let mut ignored = Vec::new();
            let cleared = retry_noted(
                &policy,
                &self.events,
                &mut ignored,
                &|| "clear progress".to_owned(),
                |e: &StateError| e.is_retryable() && !matches!(e, StateError::Conflict { .. }),
                || store.clear(&app, &revision),
            )
            .await;
            if let Err(e) = cleared {
                // The record says how it ended, so a resume only finishes the
                // bookkeeping and never runs the rollout forward again.
                let kind = DecisionKind::from(format!("could not clear the saved progress ({e}); a resume will clear it"));
                tracing::warn!(decision = %kind);
                self.emit(RolloutEvent::Decision { kind });
            }
        }
        keeper.release().await;
        self.emit(RolloutEvent::Finished { status, cause: cause.clone() });
        Ok(RolloutReport { status, cause, record })
    }
}
#[cfg(test)]
mod size {
    /// A run lives in its rollout's task for as long as the rollout waits (hours at a
    /// pause, a thousand at once): its state and spec are boxed so that the task's
    /// resident part stays small (it was 2,976 B inline; benches/many_rollouts.rs
    /// measures the whole rollout).
    #[test]
    fn a_run_keeps_its_large_parts_on_the_heap() {
        let size = std::mem::size_of::<super::Run>();
        assert!(size <= 512, "Run is {size} B");
    }
}
