//! The fleet record: how a fleet rollout ended, with every target's deployment
//! records.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::{AppId, DeploymentId, DeploymentRecord, DeploymentStatus, Release};

use super::waves::Gate;

/// How a fleet rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FleetStatus {
    /// Every target runs the new release.
    Succeeded,
    /// The line stopped; the targets the rollback policy names serve the previous
    /// release again, and no later wave was touched.
    RolledBack,
    /// The line stopped and at least one target's rollback failed: look at the
    /// targets' records (their apps stay degraded in their state stores).
    Failed,
}

impl fmt::Display for FleetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled back",
            Self::Failed => "failed",
        })
    }
}

/// One target in the fleet record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TargetRecord {
    /// The target's name.
    pub name: String,
    /// Its wave, from 0.
    pub wave: usize,
    /// Its application.
    pub app: AppId,
    /// Its rollout of the new release, if it ended.
    pub forward: Option<TargetRun>,
    /// Why it was not deployed although its wave ran (the engine refused it).
    pub refused: Option<String>,
    /// The rollout that put it back on the previous release, if one ended.
    pub revert: Option<TargetRun>,
}

impl TargetRecord {
    /// Whether the target ends on the new release.
    pub fn runs_new_release(&self) -> bool {
        self.forward.as_ref().is_some_and(|r| r.status == DeploymentStatus::Succeeded)
            && !self.revert.as_ref().is_some_and(|r| r.status == DeploymentStatus::Succeeded)
    }
}

/// One target rollout that ended, as the journal keeps it; the finished fleet
/// record adds the deployment record from the target's history store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TargetRun {
    /// The deployment.
    pub deployment: DeploymentId,
    /// How it ended.
    pub status: DeploymentStatus,
    /// Why it did not succeed (journals written before causes were typed hold a
    /// sentence, read back as [`CauseKind::Unclassified`](crate::model::CauseKind::Unclassified)).
    pub cause: Option<crate::model::FailureCause>,
    /// The release that served before it.
    pub from: Option<Release>,
    /// The release it rolled out.
    pub to: Release,
    /// Its deployment record (steps, logs, timings), read from the target's
    /// history store when the fleet rollout ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<DeploymentRecord>,
}

impl TargetRun {
    /// The summary of `record`.
    pub fn of(record: &DeploymentRecord) -> Self {
        Self {
            deployment: record.id.clone(),
            status: record.status,
            cause: record.cause.clone(),
            from: record.from.clone(),
            to: record.to.clone(),
            record: None,
        }
    }
}

/// One wave in the fleet record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WaveRecord {
    /// The wave's targets.
    pub targets: Vec<String>,
    /// Its gate.
    pub gate: Gate,
    /// When it started, if it did.
    pub started_at: Option<Timestamp>,
    /// When its gate passed, if it did.
    pub gate_passed_at: Option<Timestamp>,
}

/// How a fleet rollout went: kept in the journal at the end, returned by the
/// driver and readable later with [`FleetControl::record`](super::FleetControl::record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FleetRecord {
    /// The fleet (its journal's id).
    pub fleet: AppId,
    /// The release rolled out.
    pub release: Release,
    /// How it ended; `None` while it runs.
    pub status: Option<FleetStatus>,
    /// Why it stopped, if it did.
    pub cause: Option<String>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Every wave.
    pub waves: Vec<WaveRecord>,
    /// Every target, in wave order.
    pub targets: Vec<TargetRecord>,
    /// Every decision and control request, in order.
    pub log: Vec<String>,
}

impl FleetRecord {
    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&TargetRecord> {
        self.targets.iter().find(|t| t.name == name)
    }
}
