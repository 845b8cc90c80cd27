//! Control of a fleet rollout from another process, through its journal.

use std::sync::Arc;
use std::time::Duration;

use crate::model::AppId;
use crate::state::{StateError, StateStore};

use super::FleetError;
use super::journal::{self, FleetPhase, FleetRequest};
use super::record::FleetRecord;

/// Pause, resume, abort or promote a fleet rollout wherever its driver runs, as
/// [`RolloutEngine::control`](crate::engine::RolloutEngine::control) does for one
/// rollout: the request is stored in the fleet's journal (compare-and-swap) and
/// the driver acts on it at its next check
/// ([`FleetConfig::control_interval`](super::FleetConfig::control_interval)), or
/// when another driver resumes the fleet.
#[derive(Clone)]
pub struct FleetControl {
    store: Arc<dyn StateStore>,
    fleet: AppId,
}

impl std::fmt::Debug for FleetControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetControl").field("fleet", &self.fleet).finish_non_exhaustive()
    }
}

impl FleetControl {
    /// Control of the fleet whose journal is `fleet` in `store`.
    pub fn new(store: Arc<dyn StateStore>, fleet: AppId) -> Self {
        Self { store, fleet }
    }

    /// Starts no new target rollout until [`FleetControl::resume`]; rollouts
    /// running now go on to their end.
    pub async fn pause(&self) -> Result<(), FleetError> {
        self.request(FleetRequest::Pause).await
    }

    /// Continues after [`FleetControl::pause`].
    pub async fn resume(&self) -> Result<(), FleetError> {
        self.request(FleetRequest::Resume).await
    }

    /// Stops the line and rolls back by the plan's policy; running target
    /// rollouts are aborted (and roll themselves back).
    pub async fn abort(&self, reason: impl Into<String>) -> Result<(), FleetError> {
        self.request(FleetRequest::Abort { reason: reason.into() }).await
    }

    /// Passes the approval gate that waits now; fails with
    /// [`FleetError::PromoteRejected`] when none waits (nothing is remembered for
    /// a later gate).
    pub async fn promote(&self) -> Result<(), FleetError> {
        self.request(FleetRequest::Promote { wave: usize::MAX }).await
    }

    /// The fleet's record as its journal says now (the last fleet rollout's, once
    /// it ended), or `None` without a journal.
    pub async fn record(&self) -> Result<Option<FleetRecord>, FleetError> {
        Ok(journal::load(self.store.as_ref(), &self.fleet).await?.map(|(doc, _)| doc.record()))
    }

    async fn request(&self, request: FleetRequest) -> Result<(), FleetError> {
        for attempt in 0..16u64 {
            let Some((mut doc, revision)) = journal::load(self.store.as_ref(), &self.fleet).await? else {
                return Err(FleetError::NoFleet { fleet: self.fleet.clone() });
            };
            if doc.is_finished() {
                return Err(FleetError::NoFleet { fleet: self.fleet.clone() });
            }
            let request = match request {
                FleetRequest::Promote { .. } => match (doc.awaiting_approval, &doc.phase) {
                    (Some(wave), FleetPhase::Running) => FleetRequest::Promote { wave },
                    (_, phase) => {
                        let current = match phase {
                            FleetPhase::RollingBack { .. } => "rolling back".to_owned(),
                            _ => format!("wave {} running", doc.wave + 1),
                        };
                        return Err(FleetError::PromoteRejected { fleet: self.fleet.clone(), current });
                    }
                },
                ref other => other.clone(),
            };
            if matches!(doc.phase, FleetPhase::RollingBack { .. }) && matches!(request, FleetRequest::Abort { .. }) {
                return Ok(()); // rolling back already
            }
            doc.push_request(request.clone());
            let state = doc.encode()?;
            match self.store.save(&self.fleet, &state, Some(&revision)).await {
                Ok(_) => return Ok(()),
                Err(StateError::Conflict { .. }) => {}
                Err(StateError::Deleted { .. }) => return Err(FleetError::NoFleet { fleet: self.fleet.clone() }),
                Err(e) if crate::error::Classify::is_retryable(&e) => {}
                Err(e) => return Err(FleetError::store(&self.fleet, e)),
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
        Err(FleetError::Journal { fleet: self.fleet.clone(), reason: "the journal kept changing".into() })
    }
}
