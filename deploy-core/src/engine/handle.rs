//! The caller's side of a running rollout.

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
/// Dropping the handle does not stop the rollout; it runs to its end and the
/// result is in the history store.
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
