//! What the driver does to one target: start or resume its rollout through its
//! engine (respecting the target's own lock), and find out, after a driver
//! crash, whether a rollout the journal announced was started.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use crate::engine::{RolloutError, RolloutHandle, RolloutReport, RolloutRequest};
use crate::history::HistoryQuery;
use crate::model::{DeploymentRecord, DeploymentStatus, Version};

use super::plan::FleetTarget;

/// How far the clock of the process that wrote a journal's `Starting` mark may
/// be ahead of the one that wrote the target's record (both are the same
/// process's wall clock: the driver's and its engines').
const CLOCK_SLACK: SignedDuration = SignedDuration::from_secs(2);

/// A target rollout's task, killed if the driver stops before it ends (a driver
/// that dies takes its engines' tasks with it; another driver resumes them).
pub(crate) struct Guarded {
    handle: RolloutHandle,
    done: bool,
}

impl Guarded {
    pub(crate) fn new(mut handle: RolloutHandle) -> Self {
        // Nobody reads the target's events: let its engine stop queueing them.
        handle.events.close();
        Self { handle, done: false }
    }

    pub(crate) fn deployment(&self) -> &crate::model::DeploymentId {
        self.handle.deployment()
    }

    /// Waits for the rollout's end.
    pub(crate) async fn finish(mut self) -> Result<RolloutReport, RolloutError> {
        let result = (&mut self.handle.task).await;
        self.done = true;
        match result {
            Ok(result) => result,
            Err(e) => Err(RolloutError::Stopped { reason: e.to_string() }),
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.done {
            self.handle.task.abort();
        }
    }
}

/// What a target's own stores say about a rollout the journal announced.
pub(crate) enum Found {
    /// Its saved progress is there: the engine must resume it.
    InProgress,
    /// It ended with this record.
    Finished(Box<DeploymentRecord>),
    /// Nothing: it was never started.
    NotStarted,
    /// The target runs or ran something else; the driver must not touch it.
    Busy(String),
}

/// Looks up, in `target`'s state and history stores, the rollout of `to` that the
/// journal said was about to start at `since`.
pub(crate) async fn find(target: &FleetTarget, to: &Version, since: Timestamp) -> Result<Found, String> {
    let app = target.spec.id();
    let engine = &target.engine;
    let after = since.checked_sub(CLOCK_SLACK).unwrap_or(since);
    let saved = engine.state_store().load(&app).await.map_err(|e| format!("cannot read the state of {app}: {e}"))?;
    if let Some(saved) = saved {
        let record = &saved.value.record;
        if &record.to.version == to && record.created_at >= after {
            return Ok(Found::InProgress);
        }
        return Ok(Found::Busy(format!(
            "{app} has another rollout in progress: {} to {}",
            record.id, record.to.version
        )));
    }
    let records = engine
        .history_store()
        .list(&HistoryQuery::default().app(app.clone()))
        .await
        .map_err(|e| format!("cannot read the history of {app}: {e}"))?;
    let ours =
        records.into_iter().filter(|r| &r.to.version == to && r.created_at >= after).max_by_key(|r| r.created_at);
    match ours {
        Some(r) if r.status.is_terminal() => Ok(Found::Finished(Box::new(r))),
        Some(r) => {
            Ok(Found::Busy(format!("{app}: deployment {} is recorded {} but has no saved progress", r.id, r.status)))
        }
        None => Ok(Found::NotStarted),
    }
}

/// How long to keep asking for a target's lock held by another driver: at least
/// two of its lease durations, so that a dead driver's lease is taken over.
fn lock_deadline(target: &FleetTarget, lock_wait: Duration) -> Instant {
    Instant::now() + lock_wait.max(target.engine.config().lock_ttl * 2)
}

/// Starts `request` on `target`, waiting while another holder has its lock.
pub(crate) async fn start(
    target: &FleetTarget,
    request: RolloutRequest,
    lock_wait: Duration,
) -> Result<RolloutHandle, RolloutError> {
    let deadline = lock_deadline(target, lock_wait);
    loop {
        match target.engine.start(request.clone()).await {
            Err(RolloutError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(target.engine.config().lock_ttl / 4).await;
            }
            other => return other,
        }
    }
}

/// Resumes `target`'s saved rollout, taking over a dead driver's lease.
pub(crate) async fn resume(target: &FleetTarget, lock_wait: Duration) -> Result<RolloutHandle, RolloutError> {
    let app = target.spec.id();
    let deadline = lock_deadline(target, lock_wait);
    loop {
        match target.engine.resume(&app).await {
            Err(RolloutError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(target.engine.config().lock_ttl / 4).await;
            }
            other => return other,
        }
    }
}

/// Rolls `target`'s saved rollout back at once (the fleet stopped while it ran
/// under a driver that died), taking over a dead driver's lease.
pub(crate) async fn roll_back_saved(
    target: &FleetTarget,
    reason: &str,
    lock_wait: Duration,
) -> Result<RolloutReport, RolloutError> {
    let app = target.spec.id();
    let deadline = lock_deadline(target, lock_wait);
    loop {
        match target.engine.emergency_rollback(&app, reason).await {
            Err(RolloutError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(target.engine.config().lock_ttl / 4).await;
            }
            other => return other,
        }
    }
}

/// Whether a finished target rollout puts the line at risk.
pub(crate) fn failed(record: &DeploymentRecord) -> bool {
    record.status != DeploymentStatus::Succeeded
}
