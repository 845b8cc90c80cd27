//! What the engine decided and why: [`DecisionKind`], carried by
//! [`RolloutEvent::Decision`](super::RolloutEvent::Decision).

use std::fmt;

use crate::analysis::AnalysisOutcome;
use crate::model::{AppId, DeploymentStatus, FailureCause, Track, TrafficSplit, Version};
use crate::state::ControlRequest;

/// One decision of the engine, with its data, so that a caller can act on it
/// without parsing English; its `Display` is the sentence the engine logs and
/// writes in the deployment record.
///
/// ```
/// use deploy_core::engine::DecisionKind;
/// let d = DecisionKind::HeldByCaller { before_step: 2 };
/// assert_eq!(d.to_string(), "paused by a caller before step 3");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DecisionKind {
    /// The request named no previous release: the engine adopted the one the old
    /// track runs as the release to restore on failure.
    AdoptedServingRelease {
        /// The version the old track runs.
        version: Version,
        /// The old track.
        track: Track,
    },
    /// A control request of another process, read from the state store.
    ControlRequest {
        /// What was asked.
        request: ControlRequest,
        /// Whether the driver acted on it (a promotion of a step that is not
        /// running is ignored).
        acted: bool,
    },
    /// The caller, through the handle, asked to promote the pause of `step`.
    PromotionAsked {
        /// The pause step, from 0.
        step: usize,
    },
    /// A pause step ended: promoted by the caller, or its duration passed.
    PauseEnded {
        /// Whether the caller's promotion ended it.
        promoted: bool,
    },
    /// A caller's pause request holds the rollout before step `before_step`.
    HeldByCaller {
        /// The step it holds before, from 0.
        before_step: usize,
    },
    /// A caller's resume request released the hold before step `before_step`.
    ReleasedByCaller {
        /// The step it held before, from 0.
        before_step: usize,
    },
    /// An analysis ended (every outcome, including success).
    AnalysisVerdict {
        /// The analysis' name.
        analysis: String,
        /// Its outcome.
        outcome: AnalysisOutcome,
        /// Why.
        reason: String,
    },
    /// An analysis was inconclusive and its policy says to go on.
    InconclusivePromoted {
        /// The analysis' name.
        analysis: String,
        /// Why it was inconclusive.
        reason: String,
    },
    /// An analysis was inconclusive and its policy says to pause until a person
    /// promotes or aborts.
    InconclusivePause {
        /// Why it was inconclusive.
        reason: String,
    },
    /// A resumed rollout goes on waiting for the decision on the pause after the
    /// inconclusive analysis of `step`, without running it again.
    InconclusivePauseResumed {
        /// The analysis step, from 0.
        step: usize,
        /// Why it was inconclusive.
        reason: String,
    },
    /// The caller promoted the pause after an inconclusive analysis.
    InconclusivePauseEnded,
    /// Traffic was set and the router's read-back matches it.
    WeightsVerified {
        /// The split in force.
        split: TrafficSplit,
    },
    /// The router reported other weights than those set: they are set again.
    WeightsReapplied {
        /// The split requested.
        requested: TrafficSplit,
        /// The split the router can produce and should report.
        expected: TrafficSplit,
        /// The split it reported.
        actual: TrafficSplit,
    },
    /// The caller asked for an emergency rollback.
    EmergencyRollback {
        /// The caller's reason.
        reason: String,
    },
    /// A resumed rollout whose rollback failed before retries it.
    RollbackRetried {
        /// Why it was rolling back.
        cause: FailureCause,
    },
    /// A resumed rollout's deployment record says it already ended: it is only
    /// finished (its progress cleared, or its rollback completed), never run
    /// forward.
    RecordSaysEnded {
        /// The status the record holds.
        status: DeploymentStatus,
        /// The cause the record holds.
        cause: Option<FailureCause>,
    },
    /// The saved progress was deleted by someone else: it is written again.
    ProgressDeleted,
    /// The preflight checklist said go.
    PreflightPassed {
        /// The checklist's summary.
        summary: String,
    },
    /// The rollback failed: the application stays degraded in the state store
    /// until a rollback completes (`resume` retries it).
    Degraded {
        /// The application.
        app: AppId,
    },
    /// The driver stops without changing anything more (its lease may be lost,
    /// or the saved progress belongs to another driver).
    Stopping {
        /// Why.
        reason: String,
    },
    /// Any other decision, in a sentence: a retry, a replica ratio, a hook's
    /// result, a skipped removal, a lock taken over.
    Note {
        /// What was decided and why.
        message: String,
    },
}

impl From<String> for DecisionKind {
    /// A decision known only as its sentence ([`DecisionKind::Note`]).
    fn from(message: String) -> Self {
        Self::Note { message }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AdoptedServingRelease { version, track } => write!(
                f,
                "the request named no previous release; adopted {version}, which {track} runs now, as the release to \
                 restore on failure"
            ),
            Self::ControlRequest { request, acted } => match request {
                ControlRequest::Promote { step } if *acted => {
                    write!(f, "another process asked to promote step {}", step + 1)
                }
                ControlRequest::Promote { step } => {
                    write!(f, "ignored a promotion of step {}: the rollout is elsewhere", step + 1)
                }
                ControlRequest::Abort { reason } => write!(f, "another process asked to abort: {reason}"),
                ControlRequest::Pause => f.write_str("another process asked to pause before the next step"),
                ControlRequest::Resume => f.write_str("another process asked to resume"),
            },
            Self::PromotionAsked { .. } => f.write_str("the caller asked to promote"),
            Self::PauseEnded { promoted: true } => f.write_str("the caller promoted: pause ended"),
            Self::PauseEnded { promoted: false } => f.write_str("pause ended"),
            Self::HeldByCaller { before_step } => write!(f, "paused by a caller before step {}", before_step + 1),
            Self::ReleasedByCaller { before_step } => write!(f, "resumed by a caller before step {}", before_step + 1),
            Self::AnalysisVerdict { analysis, outcome, reason } => write!(f, "analysis {analysis} {outcome}: {reason}"),
            Self::InconclusivePromoted { analysis, reason } => write!(
                f,
                "analysis {analysis} inconclusive ({reason}): going on, as its policy on inconclusive analyses says"
            ),
            Self::InconclusivePause { reason } => write!(
                f,
                "analysis inconclusive ({reason}): pausing until the caller promotes (the rollout goes on) or aborts \
                 (it rolls back); not enough data decides nothing by itself"
            ),
            Self::InconclusivePauseResumed { step, reason } => write!(
                f,
                "resumed while paused after the inconclusive analysis of step {} ({reason}): its outcome is kept, the \
                 analysis is not run again; waiting until the caller promotes or aborts",
                step + 1
            ),
            Self::InconclusivePauseEnded => {
                f.write_str("the caller promoted after the inconclusive analysis: going on")
            }
            Self::WeightsVerified { split } => write!(f, "traffic {split}, read back and verified"),
            Self::WeightsReapplied { requested, expected, actual } => write!(
                f,
                "the router reports {actual} after {requested} was set (expected {expected}); setting it again"
            ),
            Self::EmergencyRollback { reason } => {
                write!(f, "emergency rollback requested by the caller: {reason}; no further step or analysis runs")
            }
            Self::RollbackRetried { cause } => write!(f, "its rollback failed before ({cause}); retrying the rollback"),
            Self::RecordSaysEnded { status: DeploymentStatus::Succeeded, .. } => {
                f.write_str("its record says it succeeded; only clearing its saved progress")
            }
            Self::RecordSaysEnded { status, cause } => {
                let cause = cause.as_ref().map_or_else(|| "no cause recorded".to_owned(), ToString::to_string);
                write!(
                    f,
                    "its record says it ended {status} ({cause}); finishing the rollback, never running it forward"
                )
            }
            Self::ProgressDeleted => f.write_str("the saved progress was deleted by someone else; writing it again"),
            Self::PreflightPassed { summary } => f.write_str(summary),
            Self::Degraded { app } => {
                write!(f, "the rollback failed; {app} stays degraded until a rollback completes (resume retries it)")
            }
            Self::Stopping { reason } => write!(f, "stopping without further changes: {reason}"),
            Self::Note { message } => f.write_str(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CauseKind, Name, Namespace};

    #[test]
    fn decisions_say_what_was_decided_in_the_sentence_the_record_keeps() {
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
        let cases = [
            (
                DecisionKind::ControlRequest { request: ControlRequest::Promote { step: 1 }, acted: false },
                "ignored a promotion of step 2: the rollout is elsewhere",
            ),
            (
                DecisionKind::ControlRequest { request: ControlRequest::Abort { reason: "bad".into() }, acted: true },
                "another process asked to abort: bad",
            ),
            (
                DecisionKind::Degraded { app },
                "the rollback failed; shop/web stays degraded until a rollback completes (resume retries it)",
            ),
            (
                DecisionKind::RecordSaysEnded {
                    status: DeploymentStatus::RolledBack,
                    cause: Some(FailureCause::new(CauseKind::Aborted, None, "stop")),
                },
                "its record says it ended rolled back (aborted: stop); finishing the rollback, never running it forward",
            ),
            (DecisionKind::from("hook ran".to_owned()), "hook ran"),
        ];
        for (decision, sentence) in cases {
            assert_eq!(decision.to_string(), sentence);
        }
    }
}
