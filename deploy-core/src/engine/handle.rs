//! The caller's side of a running rollout.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{RolloutError, RolloutEvent, RolloutReport};
use crate::model::{AppId, DeploymentId};

/// What the caller can ask of a running rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Abort,
    /// End the pause of this step.
    Promote(usize),
    /// Roll back at once, on the caller's word, for this reason.
    Emergency(String),
    /// Read the control requests in the state store now.
    Poll,
}

/// Where a running rollout is, for its handle and its engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Progress {
    /// The step running now.
    pub(crate) step: Option<usize>,
    /// What it does.
    pub(crate) description: String,
    /// Whether it is a pause that a promotion may end.
    pub(crate) pause: bool,
}

impl Progress {
    /// Accepts a promotion of the pause running now, or names the step instead.
    pub(crate) fn promotable(&self, app: &AppId) -> Result<usize, RolloutError> {
        match self.step {
            Some(step) if self.pause => Ok(step),
            step => Err(RolloutError::PromoteRejected {
                app: app.clone(),
                step,
                current: if self.description.is_empty() {
                    "between steps".to_owned()
                } else {
                    self.description.clone()
                },
            }),
        }
    }
}

/// A rollout running in its own task: its events, its controls and its result.
///
/// The handle is a [`Stream`](futures_core::Stream) of the rollout's
/// [`RolloutEvent`]s, in order, ending after the last once the rollout has ended
/// ([`RolloutHandle::next_event`] is the same without a stream combinator). The
/// events wait in a bounded queue
/// ([`EngineConfig::event_capacity`](super::EngineConfig::event_capacity)); the
/// rollout never waits for its reader. A reader that falls behind by more than
/// the capacity loses the oldest events and reads one [`RolloutEvent::Lagged`]
/// with their count in their place, then the newest events; the deployment
/// record keeps every decision regardless.
///
/// Dropping the handle does not stop the rollout; it runs to its end and the
/// result is in the history store.
///
/// ```
/// # #[cfg(feature = "testkit")]
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use futures_util::StreamExt;
/// use deploy_core::engine::{RolloutEngine, RolloutEvent, RolloutRequest};
/// use deploy_core::model::{DeploymentStatus, Track};
/// use deploy_core::strategy::{Canary, PlanInput, Strategy};
/// use deploy_core::testkit::{self, TestKit};
///
/// let kit = TestKit::new();
/// let (spec, v1, v2) = testkit::sample_app(4);
/// kit.seed(&spec, Track::Stable, &v1);
/// let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
///     .router(kit.router())
///     .build();
/// let plan = Canary::default().plan(&PlanInput::new(spec.replicas));
/// let mut rollout = engine.start(RolloutRequest::new(spec, v2, plan).from(v1)).await.unwrap();
/// let mut last = None;
/// while let Some(event) = rollout.next().await {
///     last = Some(event);
/// }
/// assert!(matches!(last, Some(RolloutEvent::Finished { status: DeploymentStatus::Succeeded, .. })));
/// # });
/// ```
#[derive(Debug)]
pub struct RolloutHandle {
    pub(crate) deployment: DeploymentId,
    pub(crate) app: AppId,
    pub(crate) events: super::event_queue::EventReceiver,
    pub(crate) controls: mpsc::UnboundedSender<Control>,
    pub(crate) progress: watch::Receiver<Progress>,
    pub(crate) task: JoinHandle<Result<RolloutReport, RolloutError>>,
}

impl RolloutHandle {
    /// The deployment's id.
    pub fn deployment(&self) -> &DeploymentId {
        &self.deployment
    }

    /// The application.
    pub fn app(&self) -> &AppId {
        &self.app
    }

    /// The next event; `None` once the rollout has ended and every event was read.
    /// A [`RolloutEvent::Lagged`] says that older events were dropped because the
    /// reader fell behind.
    pub async fn next_event(&mut self) -> Option<RolloutEvent> {
        self.events.recv().await
    }

    /// An event already emitted, without waiting.
    pub fn try_next_event(&mut self) -> Option<RolloutEvent> {
        self.events.try_recv()
    }

    /// Stops the rollout at its current step and rolls back (skipping any analysis
    /// and pause left); the report says `RolledBack` with the cause `aborted`.
    /// Does nothing once the rollout is rolling back or finished.
    pub fn abort(&self) {
        let _ = self.controls.send(Control::Abort);
    }

    /// Rolls back at once on the caller's word: the current step is interrupted
    /// (a pause, even one until promoted, an analysis, a wait), no further step or
    /// analysis runs, and the previous release serves 100 % again as soon as its
    /// track is ready (traffic still only goes to ready tracks). The report says
    /// `RolledBack` with the cause [`CauseKind::EmergencyRollback`] and `reason`;
    /// the event stream and the deployment record say so too.
    ///
    /// Does nothing once the rollout is rolling back or finished. For a rollout
    /// whose process died, use
    /// [`RolloutEngine::emergency_rollback`](super::RolloutEngine::emergency_rollback).
    ///
    /// [`CauseKind::EmergencyRollback`]: super::CauseKind::EmergencyRollback
    pub fn emergency_rollback(&self, reason: impl Into<String>) {
        let _ = self.controls.send(Control::Emergency(reason.into()));
    }

    /// Ends the pause that runs now, as Argo Rollouts' promote does. Analysis is
    /// never skipped.
    ///
    /// Only accepted while a pause step runs: at any other moment it fails with
    /// [`RolloutError::PromoteRejected`], which names the current step, and
    /// nothing is remembered for a later pause.
    pub fn promote(&self) -> Result<(), RolloutError> {
        let step = self.progress.borrow().promotable(&self.app)?;
        let _ = self.controls.send(Control::Promote(step));
        Ok(())
    }

    /// Waits for the rollout to end. Events not read are dropped.
    pub async fn wait(self) -> Result<RolloutReport, RolloutError> {
        let Self { task, events, .. } = self;
        // Nobody reads them any more: let the rollout stop queueing them.
        drop(events);
        match task.await {
            Ok(result) => result,
            Err(e) => Err(RolloutError::Stopped { reason: e.to_string() }),
        }
    }

    /// Stops the rollout's task at its next wait without any clean-up, as if its
    /// process died: the lease stays stored and the saved state lets
    /// [`RolloutEngine::resume`](super::RolloutEngine::resume) finish the job. This
    /// engine may take its own killed rollout's lease back at once; another engine
    /// only after watching it unchanged for its ttl. For tests of crash recovery
    /// and for hard shutdowns.
    pub fn kill(self) {
        self.task.abort();
    }
}

impl futures_core::Stream for RolloutHandle {
    type Item = RolloutEvent;

    /// The next event, as [`RolloutHandle::next_event`] gives it.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RolloutEvent>> {
        self.get_mut().events.poll_recv(cx)
    }
}
