//! The guard around every step: its deadline, the caller's controls (through the
//! handle and through the state store) and the lease's renewal.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

use super::super::event_queue::EventSender;
use super::super::handle::Control;
use super::lease::LeaseKeeper;
use super::{DecisionKind, RolloutError, RolloutEvent};
use crate::model::{AppId, CauseKind, FailureCause, HumanDuration};
use crate::state::{ControlRequest, PendingRequest, RolloutState, StateStore};

/// Control requests seen through the state store, shared by the guard (which
/// polls them) and the driver (which saves what it handled).
#[derive(Debug, Default)]
pub(crate) struct ControlBook {
    /// Every stored request not yet pruned.
    requests: Vec<PendingRequest>,
    /// The last one acted on.
    handled: u64,
    /// Paused by a caller until resumed.
    pub(super) paused: bool,
}

impl ControlBook {
    pub(crate) fn from_state(state: &RolloutState) -> Self {
        Self { requests: state.requests.clone(), handled: state.requests_handled, paused: state.paused }
    }

    /// Takes the stored requests in and returns the ones not acted on yet.
    pub(super) fn merge(&mut self, stored: &[PendingRequest]) -> Vec<PendingRequest> {
        self.requests = stored.to_vec();
        let fresh: Vec<PendingRequest> = stored.iter().filter(|r| r.id > self.handled).cloned().collect();
        if let Some(last) = fresh.iter().map(|r| r.id).max() {
            self.handled = last;
        }
        fresh
    }

    pub(super) fn write_into(&self, state: &mut RolloutState) {
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
pub(super) fn act_on(
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
pub(super) async fn guard<T>(
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
