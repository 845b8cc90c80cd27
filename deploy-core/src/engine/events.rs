//! What the engine tells its caller while it works.

use std::fmt;

use crate::analysis::{AnalysisOutcome, Measurement};
use crate::model::{
    AppId, DeploymentId, DeploymentStatus, FailureCause, StepOutcome, StrategyKind, Track, TrafficSplit, Version,
};
use crate::plan::PauseKind;

use super::DecisionKind;

/// One thing that happened in a rollout, in order; render them as progress bars or
/// logs. Every decision the engine makes appears here and in the deployment record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RolloutEvent {
    /// The rollout began.
    Started {
        /// The deployment's id.
        deployment: DeploymentId,
        /// The application.
        app: AppId,
        /// The strategy.
        strategy: StrategyKind,
        /// The release that served before.
        from: Option<Version>,
        /// The release being rolled out.
        to: Version,
        /// How many steps the plan has.
        steps: usize,
    },
    /// A rollout whose process died was picked up again.
    Resumed {
        /// The deployment's id.
        deployment: DeploymentId,
        /// The step it continues with.
        next_step: usize,
        /// Whether it was rolling back.
        rolling_back: bool,
    },
    /// A step began.
    StepStarted {
        /// The step's index, from 0.
        index: usize,
        /// What it does.
        description: String,
    },
    /// A step ended.
    StepFinished {
        /// The step's index.
        index: usize,
        /// What it did.
        description: String,
        /// How it ended.
        outcome: StepOutcome,
    },
    /// Traffic was routed and read back.
    WeightChanged {
        /// The split now in force.
        split: TrafficSplit,
    },
    /// A track's replicas changed.
    Scaled {
        /// The track.
        track: Track,
        /// Its replicas now.
        replicas: u32,
    },
    /// An analysis took a measurement.
    Measurement {
        /// The analysis' name.
        analysis: String,
        /// The measurement.
        measurement: Measurement,
    },
    /// An analysis ended.
    AnalysisFinished {
        /// The analysis' name.
        analysis: String,
        /// How it ended.
        outcome: AnalysisOutcome,
        /// Why.
        reason: String,
    },
    /// The rollout is pausing.
    Paused {
        /// The step's index.
        index: usize,
        /// For how long.
        kind: PauseKind,
    },
    /// The caller's promotion ended a pause.
    Promoted {
        /// The step's index.
        index: usize,
    },
    /// A decision: what was decided and why, with its data; its `Display` is the
    /// sentence the record keeps.
    Decision {
        /// The decision.
        kind: DecisionKind,
    },
    /// The engine began restoring the previous release.
    RollbackStarted {
        /// Why.
        cause: FailureCause,
    },
    /// The reader fell behind: the queue (of
    /// [`EngineConfig::event_capacity`](super::EngineConfig::event_capacity) events)
    /// was full, and the engine, which never waits for its reader, dropped the
    /// `missed` oldest events in this event's place. The events after it are the
    /// newest, in order. The deployment record keeps every decision regardless.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
    /// The rollout ended.
    Finished {
        /// How it ended.
        status: DeploymentStatus,
        /// Why it did not succeed, if it did not.
        cause: Option<FailureCause>,
    },
}

impl fmt::Display for RolloutEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started { deployment, app, strategy, from, to, steps } => {
                let from = from.as_ref().map_or_else(|| "nothing".to_owned(), ToString::to_string);
                write!(f, "started {strategy} rollout {deployment} of {app}: {from} -> {to}, {steps} steps")
            }
            Self::Resumed { deployment, next_step, rolling_back } => {
                let what = if *rolling_back { "its rollback".to_owned() } else { format!("step {}", next_step + 1) };
                write!(f, "resumed {deployment} at {what}")
            }
            Self::StepStarted { index, description } => write!(f, "step {}: {description}", index + 1),
            Self::StepFinished { index, outcome, .. } => match outcome {
                StepOutcome::Succeeded => write!(f, "step {} done", index + 1),
                StepOutcome::Failed(reason) => write!(f, "step {} failed: {reason}", index + 1),
                StepOutcome::Skipped(reason) => write!(f, "step {} skipped: {reason}", index + 1),
                StepOutcome::Aborted => write!(f, "step {} aborted", index + 1),
            },
            Self::WeightChanged { split } => write!(f, "traffic {split}"),
            Self::Scaled { track, replicas } => write!(f, "{track} scaled to {replicas}"),
            Self::Measurement { analysis, measurement: m } => {
                write!(f, "{analysis} #{} {}: {} ({})", m.round + 1, m.check, m.outcome, m.detail)
            }
            Self::AnalysisFinished { analysis, outcome, reason } => {
                write!(f, "analysis {analysis} {outcome}: {reason}")
            }
            Self::Paused { kind: PauseKind::Duration(d), .. } => write!(f, "paused for {d}"),
            Self::Paused { .. } => f.write_str("paused until promoted"),
            Self::Promoted { .. } => f.write_str("promoted by the caller"),
            Self::Decision { kind } => kind.fmt(f),
            Self::Lagged { missed } => write!(f, "{missed} events missed: the reader fell behind"),
            Self::RollbackStarted { cause } => write!(f, "rolling back: {cause}"),
            Self::Finished { status, cause: Some(cause) } => write!(f, "finished: {status} ({cause})"),
            Self::Finished { status, cause: None } => write!(f, "finished: {status}"),
        }
    }
}
