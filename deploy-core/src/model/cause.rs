//! Why a rollout did not succeed: [`FailureCause`] and its [`CauseKind`], stored in
//! deployment records and in saved progress.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, in a form a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CauseKind {
    /// A platform call failed (after retries).
    Platform,
    /// A router call failed (after retries).
    Router,
    /// A track was not ready by the readiness deadline.
    ReadinessDeadline,
    /// A track can never become ready (crash loop, missing image).
    Doomed,
    /// A step ran past the step deadline.
    StepDeadline,
    /// An analysis failed.
    AnalysisFailed,
    /// An analysis had no data more often than its limit allows.
    AnalysisInconclusive,
    /// An analysis could not measure.
    AnalysisError,
    /// A health check found the new release unhealthy.
    HealthCheckFailed,
    /// The router reported other weights than those set.
    WeightMismatch,
    /// The state store failed.
    StateStore,
    /// The caller aborted the rollout.
    Aborted,
    /// The caller asked for an emergency rollback; the message is their reason.
    EmergencyRollback,
    /// A hook step failed; the message carries the platform's reason and log tail.
    HookFailed,
    /// The preflight checklist said no-go before anything changed; the message
    /// names every blocking item.
    PreflightFailed,
    /// A cause known only as text: records written before causes were typed, and
    /// records of tools that do not classify their failures (Helm's history).
    Unclassified,
}

impl fmt::Display for CauseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Platform => "platform error",
            Self::Router => "router error",
            Self::ReadinessDeadline => "readiness deadline passed",
            Self::Doomed => "track cannot become ready",
            Self::StepDeadline => "step deadline passed",
            Self::AnalysisFailed => "analysis failed",
            Self::AnalysisInconclusive => "analysis inconclusive",
            Self::AnalysisError => "analysis could not measure",
            Self::HealthCheckFailed => "health check failed",
            Self::WeightMismatch => "weights read back differ",
            Self::StateStore => "state store error",
            Self::Aborted => "aborted",
            Self::EmergencyRollback => "emergency rollback",
            Self::HookFailed => "hook failed",
            Self::PreflightFailed => "preflight checks failed",
            Self::Unclassified => "failed",
        })
    }
}

/// Why a rollout did not succeed: the kind, the step and the details.
///
/// ```
/// use deploy_core::model::{CauseKind, FailureCause};
/// let c = FailureCause::new(CauseKind::AnalysisFailed, Some(3), "error-rate 0.07 > 0.01");
/// assert_eq!(c.to_string(), "analysis failed at step 4: error-rate 0.07 > 0.01");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredCause")]
#[non_exhaustive]
pub struct FailureCause {
    /// The kind of failure.
    pub kind: CauseKind,
    /// The step's index, from 0, when a step failed.
    pub step: Option<usize>,
    /// The details.
    pub message: String,
}

impl FailureCause {
    /// A cause.
    pub fn new(kind: CauseKind, step: Option<usize>, message: impl Into<String>) -> Self {
        Self { kind, step, message: message.into() }
    }

    /// A cause known only as text ([`CauseKind::Unclassified`]): what a record
    /// written before causes were typed reads back as, and what a tool that does not
    /// classify its failures (Helm) records.
    ///
    /// ```
    /// use deploy_core::model::{CauseKind, FailureCause};
    /// let c = FailureCause::unclassified("rolled back by revision 3");
    /// assert_eq!(c.kind, CauseKind::Unclassified);
    /// assert_eq!(c.to_string(), "rolled back by revision 3");
    /// ```
    pub fn unclassified(message: impl Into<String>) -> Self {
        Self::new(CauseKind::Unclassified, None, message)
    }
}

/// A cause as stored: the typed form, or the bare text of records written before
/// causes were typed (they stay readable).
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredCause {
    Typed {
        kind: CauseKind,
        #[serde(default)]
        step: Option<usize>,
        message: String,
    },
    Text(String),
}

impl From<StoredCause> for FailureCause {
    fn from(stored: StoredCause) -> Self {
        match stored {
            StoredCause::Typed { kind, step, message } => Self { kind, step, message },
            StoredCause::Text(message) => Self::unclassified(message),
        }
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            _ if self.kind == CauseKind::Unclassified => f.write_str(&self.message),
            Some(step) => write!(f, "{} at step {}: {}", self.kind, step + 1, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_cause_round_trips_and_a_bare_text_reads_as_unclassified() {
        let cause = FailureCause::new(CauseKind::WeightMismatch, Some(2), "canary=30% read back as 10%");
        let json = serde_json::to_string(&cause).unwrap();
        assert_eq!(json, r#"{"kind":"weight_mismatch","step":2,"message":"canary=30% read back as 10%"}"#);
        assert_eq!(serde_json::from_str::<FailureCause>(&json).unwrap(), cause);
        let old: FailureCause = serde_json::from_str(r#""error rate 7% above 1%""#).unwrap();
        assert_eq!(old, FailureCause::unclassified("error rate 7% above 1%"));
        assert_eq!(old.to_string(), "error rate 7% above 1%");
        assert!(serde_json::from_str::<FailureCause>(r#"{"kind":"no_such_kind","message":"x"}"#).is_err());
    }
}
