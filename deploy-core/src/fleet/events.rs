//! What a fleet driver tells its caller while it works.

use std::fmt;

use crate::model::{DeploymentId, DeploymentStatus};

use super::record::FleetStatus;
use super::waves::Gate;

/// One thing that happened in a fleet rollout, in order; every decision of the
/// driver (a stop, a rollback, a gate) is here and in the fleet record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FleetEvent {
    /// The fleet rollout began, or was picked up from its journal.
    Started {
        /// The fleet's name.
        fleet: String,
        /// The release being rolled out.
        release: String,
        /// How many waves.
        waves: usize,
        /// Whether a journal of a driver that stopped was resumed.
        resumed: bool,
    },
    /// A wave began.
    WaveStarted {
        /// The wave, from 0.
        wave: usize,
        /// Its targets.
        targets: Vec<String>,
    },
    /// A target's rollout began (or was resumed from its own saved progress).
    TargetStarted {
        /// The target.
        target: String,
        /// Its deployment.
        deployment: DeploymentId,
    },
    /// A target's rollout ended.
    TargetDone {
        /// The target.
        target: String,
        /// How it ended.
        status: DeploymentStatus,
        /// Why it did not succeed, if it did not.
        cause: Option<crate::model::FailureCause>,
    },
    /// A wave's bake time began.
    Baking {
        /// The wave.
        wave: usize,
        /// For how long, in seconds.
        seconds: f64,
    },
    /// The gate after a wave waits (for an approval, a window, a check).
    GateWaiting {
        /// The wave.
        wave: usize,
        /// The gate.
        gate: Gate,
    },
    /// The gate after a wave passed; the next wave may start.
    GatePassed {
        /// The wave.
        wave: usize,
        /// The gate.
        gate: Gate,
    },
    /// The fleet was paused or resumed by a control request.
    Paused {
        /// `true` when paused, `false` when resumed.
        paused: bool,
    },
    /// The line stopped: no later wave will be touched.
    Stopped {
        /// The wave that failed.
        wave: usize,
        /// Why.
        cause: String,
    },
    /// A target was put back on the previous release.
    TargetRolledBack {
        /// The target.
        target: String,
        /// How its rollback ended (`Succeeded` when it serves the previous release).
        status: DeploymentStatus,
    },
    /// The fleet rollout ended.
    Finished {
        /// How it ended.
        status: FleetStatus,
    },
}

impl fmt::Display for FleetEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started { fleet, release, waves, resumed } => {
                let how = if *resumed { "resumed" } else { "started" };
                write!(f, "{how} fleet rollout of {fleet} to {release} in {waves} waves")
            }
            Self::WaveStarted { wave, targets } => write!(f, "wave {} started: {}", wave + 1, targets.join(", ")),
            Self::TargetStarted { target, deployment } => write!(f, "{target}: deployment {deployment}"),
            Self::TargetDone { target, status, cause: Some(cause) } => write!(f, "{target}: {status} ({cause})"),
            Self::TargetDone { target, status, cause: None } => write!(f, "{target}: {status}"),
            Self::Baking { wave, seconds } => write!(f, "wave {} baking for {seconds} s", wave + 1),
            Self::GateWaiting { wave, gate } => write!(f, "gate after wave {} waits: {gate}", wave + 1),
            Self::GatePassed { wave, gate } => write!(f, "gate after wave {} passed: {gate}", wave + 1),
            Self::Paused { paused: true } => f.write_str("fleet paused"),
            Self::Paused { paused: false } => f.write_str("fleet resumed"),
            Self::Stopped { wave, cause } => write!(f, "line stopped in wave {}: {cause}", wave + 1),
            Self::TargetRolledBack { target, status } => write!(f, "{target}: rollback {status}"),
            Self::Finished { status } => write!(f, "fleet finished: {status}"),
        }
    }
}
