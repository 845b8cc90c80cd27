//! Executing a plan: steps, guards (deadline, controls, lease), rollback and finish.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tracing::Instrument;

use super::DecisionKind;
use super::event_queue::EventSender;
use super::handle::Progress;
use super::retry::{RetryPolicy, retry};
use crate::model::{CauseKind, FailureCause};

use super::{Inner, RolloutError, RolloutEvent, RolloutReport};
use crate::analysis::{
    AnalysisOutcome, AnalysisRecord, AnalysisRunner, AnalysisSpec, AnalysisTarget, CheckKind, InconclusivePolicy,
};
use crate::error::{Classify, ErrorKind};
use crate::hook::{HookSpec, HookWhen};
use crate::model::{
    AppId, AppSpec, DeploymentStatus, Percent, Release, RollingUpdateParams, StepOutcome, StepRecord, Track,
    TrafficSplit,
};
use crate::model::{InconclusiveDecision, LogLevel};
use crate::plan::{CanaryScale, PauseKind, Plan, Step, canary_replicas, resolve_rolling};
use crate::platform::{PlatformError, TrackState, TrackStatus};
use crate::state::{PendingRequest, Revision, RolloutPhase, RolloutState, StateError, WriteStamp};
use crate::traffic::{HeaderRoute, Mirror, RouterError};

mod control;
mod lease;
mod saves;
mod steps;
#[cfg(test)]
mod tests;

pub(crate) use control::{ControlBook, Controls, StepError};
use control::{act_on, guard};
pub(crate) use lease::{LeaseKeeper, LeaseView};

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
        self.with_retry(
            what,
            |e: &E| e.is_retryable(),
            || {
                let fenced = lease.check();
                let call = op();
                async move {
                    fenced.map_err(|_| fence())?;
                    call.await
                }
            },
        )
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
}
