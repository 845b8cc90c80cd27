//! Is the new release answering? The [`HealthCheck`] trait.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{AppId, Track, Version};

/// What a health check looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthTarget {
    /// The application.
    pub app: AppId,
    /// The track under test.
    pub track: Track,
    /// The release the track runs.
    pub release: Version,
}

impl HealthTarget {
    /// A target.
    pub fn new(app: AppId, track: Track, release: Version) -> Self {
        Self { app, track, release }
    }
}

/// The verdict of a health check that ran.
///
/// ```
/// use deploy_core::health::HealthOutcome;
/// let o = HealthOutcome::unhealthy(3, "attempt 3: status 503");
/// assert!(!o.healthy);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthOutcome {
    /// Whether the target is healthy.
    pub healthy: bool,
    /// How many attempts the check made.
    pub attempts: u32,
    /// What the last attempt saw, or why the check gave up.
    pub detail: String,
}

impl HealthOutcome {
    /// A healthy verdict.
    pub fn healthy(attempts: u32, detail: impl Into<String>) -> Self {
        Self { healthy: true, attempts, detail: detail.into() }
    }

    /// An unhealthy verdict.
    pub fn unhealthy(attempts: u32, detail: impl Into<String>) -> Self {
        Self { healthy: false, attempts, detail: detail.into() }
    }
}

/// A health check that could not run at all (as opposed to a target that is unhealthy).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// The check is misconfigured (a bad URL, an unknown target).
    #[error("health check {check} is misconfigured: {reason}")]
    Misconfigured {
        /// The check's name.
        check: String,
        /// What is wrong.
        reason: String,
    },
    /// The check's overall deadline passed.
    #[error("health check {check} gave no verdict within {after:?}")]
    Timeout {
        /// The check's name.
        check: String,
        /// The deadline.
        after: Duration,
    },
    /// The check's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(HealthError);

impl Classify for HealthError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Misconfigured { .. } => ErrorKind::InvalidInput,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// Checks whether a track answers as it should: an HTTP endpoint, a smoke test.
///
/// Contract: a target that answers badly or not at all after the check's own retries
/// is `Ok` with `healthy: false` and the reason in `detail`; `Err` means the check
/// itself could not run. The engine treats both as a failed step, but only an
/// unhealthy verdict is evidence against the release.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A short name for events and records (`http GET /healthz`).
    fn name(&self) -> &str;

    /// Runs the check against `target`, with whatever retries and deadline the check
    /// was configured with.
    async fn check(&self, target: &HealthTarget) -> Result<HealthOutcome, HealthError>;
}
