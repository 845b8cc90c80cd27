//! The fleet rollback after the line stopped: settle the failed wave's rollouts,
//! then put finished targets back on the previous release, by policy. Within a
//! wave, up to the plan's `max_concurrent` targets are rolled back at once;
//! waves go latest first, one after the other.

use futures_util::stream::{self, StreamExt};
use jiff::Timestamp;
use tokio::sync::Mutex;

use crate::model::DeploymentStatus;

use super::FleetError;
use super::driver::{FleetDriver, target};
use super::events::FleetEvent;
use super::journal::{Journal, RunStep};
use super::plan::{FleetPlan, FleetTarget};
use super::record::TargetRun;
use super::targets::{self, Found, Guarded};
use super::waves::RollbackPolicy;

/// The journal shared by a wave's concurrent target rollbacks: each holds it only
/// while it changes and commits its own target's entry, so the journal's writes
/// stay one at a time (compare-and-swap, as in a forward wave) while the
/// targets' rollouts run side by side.
type Shared<'j> = Mutex<&'j mut Journal>;

/// Rolls back after the line stopped in wave `failed`: that wave, and by policy
/// every earlier one, latest first; within a wave, up to `max_concurrent`
/// targets at once. Returns whether every target the policy names serves the
/// previous release again (`false`: some rollback failed).
///
/// A journal error (the fleet lost, its store down) ends it at once: target
/// rollbacks still running are dropped as a crashed driver's would be, and the
/// driver that resumes the journal settles them.
pub(crate) async fn roll_back(
    driver: &FleetDriver,
    plan: &FleetPlan,
    journal: &mut Journal,
    failed: usize,
    cause: &str,
) -> Result<bool, FleetError> {
    let waves: Vec<usize> = match plan.rollback {
        RollbackPolicy::FailedWave => vec![failed],
        RollbackPolicy::Fleet => (0..=failed).rev().collect(),
    };
    let shared: Shared<'_> = Mutex::new(journal);
    let mut clean = true;
    for w in waves {
        // The futures are made up front (they start only when polled): a
        // closure in the stream would not be `Send` for every lifetime.
        let mut rollbacks = Vec::with_capacity(plan.waves[w].targets.len());
        for name in &plan.waves[w].targets {
            rollbacks.push(roll_back_target(driver, plan, &shared, target(plan, name)?, cause));
        }
        let mut running = stream::iter(rollbacks).buffer_unordered(plan.max_concurrent.max(1));
        while let Some(result) = running.next().await {
            clean &= result?;
        }
    }
    Ok(clean)
}

/// One target's rollback: its forward rollout settled, then, if it finished the
/// new release, a rollout back to the previous one. Whether it ended clean.
async fn roll_back_target(
    driver: &FleetDriver,
    plan: &FleetPlan,
    journal: &Shared<'_>,
    target: &FleetTarget,
    cause: &str,
) -> Result<bool, FleetError> {
    let mut clean = true;
    let forward = settle_forward(driver, plan, journal, target, cause, &mut clean).await?;
    match forward.finished() {
        Some(record) if record.status == DeploymentStatus::Succeeded => {
            let record = record.clone();
            revert(driver, plan, journal, target, &record, &mut clean).await?;
        }
        // Its engine's own rollback failed: the app stays degraded.
        Some(record) if record.status == DeploymentStatus::Failed => clean = false,
        _ => {}
    }
    Ok(clean)
}

/// A forward rollout a dead driver left open is finished now: rolled back at
/// once if it runs, or read from the target's history if it ended.
async fn settle_forward(
    driver: &FleetDriver,
    plan: &FleetPlan,
    journal: &Shared<'_>,
    target: &FleetTarget,
    cause: &str,
    clean: &mut bool,
) -> Result<RunStep, FleetError> {
    let name = &target.name;
    let forward = journal.lock().await.doc.targets.get(name).map(|t| t.forward.clone()).unwrap_or_default();
    let Some(since) = forward.since() else { return Ok(forward) };
    let settled = match targets::find(target, &plan.release.version, since).await {
        Ok(Found::NotStarted) => RunStep::NotStarted,
        Ok(Found::Finished(record)) => RunStep::Finished { run: Box::new(TargetRun::of(&record)) },
        Ok(Found::InProgress) => {
            let reason = format!("fleet stopped: {cause}");
            match targets::roll_back_saved(target, &reason, driver_lock_wait(driver)).await {
                Ok(report) => RunStep::Finished { run: Box::new(TargetRun::of(&report.record)) },
                Err(e) => {
                    *clean = false;
                    RunStep::Refused { reason: format!("its rollback could not be run: {e}") }
                }
            }
        }
        Ok(Found::Busy(reason)) => RunStep::Refused { reason },
        Err(reason) => {
            *clean = false;
            RunStep::Refused { reason }
        }
    };
    {
        let mut journal = journal.lock().await;
        if let Some(t) = journal.doc.targets.get_mut(name) {
            t.forward = settled.clone();
        }
        journal.commit().await?;
    }
    if let Some(record) = settled.finished() {
        driver.emit(FleetEvent::TargetDone {
            target: name.clone(),
            status: record.status,
            cause: record.cause.clone(),
        });
    }
    Ok(settled)
}

/// Puts a target that finished the new release back on the previous one, with
/// a rollout of its own (journaled as the forward one is).
async fn revert(
    driver: &FleetDriver,
    plan: &FleetPlan,
    journal: &Shared<'_>,
    target: &FleetTarget,
    forward: &TargetRun,
    clean: &mut bool,
) -> Result<(), FleetError> {
    let name = &target.name;
    let Some(previous) = plan.from.clone().or_else(|| forward.from.clone()) else {
        *clean = false;
        return set_revert(journal, name, RunStep::Refused { reason: "no previous release to go back to".into() })
            .await;
    };
    let mut step = journal.lock().await.doc.targets.get(name).map(|t| t.revert.clone()).unwrap_or_default();
    let mut running: Option<Guarded> = None;
    if let Some(since) = step.since() {
        step = match targets::find(target, &previous.version, since).await {
            Ok(Found::NotStarted) => RunStep::NotStarted,
            Ok(Found::Finished(record)) => RunStep::Finished { run: Box::new(TargetRun::of(&record)) },
            Ok(Found::InProgress) => match targets::resume(target, driver_lock_wait(driver)).await {
                Ok(handle) => {
                    let guarded = Guarded::new(handle);
                    let step = RunStep::Running { deployment: guarded.deployment().clone(), since };
                    running = Some(guarded);
                    step
                }
                Err(e) => RunStep::Refused { reason: e.to_string() },
            },
            Ok(Found::Busy(reason)) | Err(reason) => RunStep::Refused { reason },
        };
        set_revert(journal, name, step.clone()).await?;
    }
    if step == RunStep::NotStarted {
        let at = Timestamp::now();
        set_revert(journal, name, RunStep::Starting { at }).await?;
        let request = target.revert_request(&previous, &forward.to);
        step = match targets::start(target, request, driver_lock_wait(driver)).await {
            Ok(handle) => {
                let guarded = Guarded::new(handle);
                let step = RunStep::Running { deployment: guarded.deployment().clone(), since: at };
                running = Some(guarded);
                step
            }
            Err(e) => RunStep::Refused { reason: e.to_string() },
        };
        set_revert(journal, name, step.clone()).await?;
    }
    if let Some(guarded) = running {
        step = match guarded.finish().await {
            Ok(report) => RunStep::Finished { run: Box::new(TargetRun::of(&report.record)) },
            Err(e) => RunStep::Refused { reason: format!("its rollback stopped: {e}") },
        };
        set_revert(journal, name, step.clone()).await?;
    }
    match &step {
        RunStep::Finished { run: record } => {
            if record.status != DeploymentStatus::Succeeded {
                *clean = false;
            }
            driver.emit(FleetEvent::TargetRolledBack { target: name.clone(), status: record.status });
        }
        _ => {
            *clean = false;
            driver.emit(FleetEvent::TargetRolledBack { target: name.clone(), status: DeploymentStatus::Failed });
        }
    }
    Ok(())
}

async fn set_revert(journal: &Shared<'_>, name: &str, step: RunStep) -> Result<(), FleetError> {
    let mut journal = journal.lock().await;
    if let Some(t) = journal.doc.targets.get_mut(name) {
        t.revert = step;
    }
    journal.commit().await
}

fn driver_lock_wait(driver: &FleetDriver) -> std::time::Duration {
    driver.lock_wait()
}
