//! What the engine does when an analysis ends inconclusive ([`InconclusivePolicy`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the engine does when an analysis ends [`Inconclusive`]: more measurements
/// had no data than `inconclusive_limit` allows, or no metric could be evaluated
/// at all.
///
/// "Not enough data" is not evidence either way, so by default it decides nothing
/// by itself: the rollout pauses and waits for a person, as Argo Rollouts does on
/// an inconclusive run. A quiet canary is neither rolled back for silence nor
/// promoted on it unless the caller says so.
///
/// ```
/// use deploy_core::analysis::{AnalysisSpec, InconclusivePolicy};
/// assert_eq!(AnalysisSpec::new("a").on_inconclusive, InconclusivePolicy::Pause);
/// let spec = AnalysisSpec::new("a").on_inconclusive(InconclusivePolicy::Rollback);
/// assert_eq!(spec.on_inconclusive.to_string(), "roll back");
/// ```
///
/// [`Inconclusive`]: super::AnalysisOutcome::Inconclusive
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InconclusivePolicy {
    /// Pause until the caller promotes (the step then succeeds and the rollout goes
    /// on) or aborts (it rolls back).
    #[default]
    Pause,
    /// Roll back, as a failed analysis does.
    Rollback,
    /// Go on as if the analysis had succeeded; the record says it was inconclusive.
    Promote,
}

impl fmt::Display for InconclusivePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pause => "pause",
            Self::Rollback => "roll back",
            Self::Promote => "promote",
        })
    }
}
