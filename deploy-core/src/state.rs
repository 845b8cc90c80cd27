//! Rollout progress and the per-app lock: the [`StateStore`] trait.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::FailureCause;
use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{AppId, AppSpec, DeploymentRecord, Percent, TrafficSplit};
use crate::plan::{CanaryScale, Plan};
use crate::traffic::HeaderRoute;

/// The progress of a rollout, saved after every step so that another process can
/// resume it or roll it back after a crash.
///
/// Stores treat it as an opaque serde document. The fields after `traffic` are
/// what the rollout engine needs to resume; they default to empty so documents
/// written without them still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RolloutState {
    /// The deployment being carried out, with its steps so far.
    pub record: DeploymentRecord,
    /// The index of the next step to run.
    pub next_step: usize,
    /// The traffic split last set and verified.
    pub traffic: TrafficSplit,
    /// The plan being executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// The application spec being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<AppSpec>,
    /// Whether the rollout is going forward or rolling back.
    #[serde(default)]
    pub phase: RolloutPhase,
    /// The canary's traffic weight last set.
    #[serde(default)]
    pub canary_weight: Percent,
    /// An explicit canary scale in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_scale: Option<CanaryScale>,
    /// Header routes set so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_routes: Vec<HeaderRoute>,
}

impl RolloutState {
    /// The state of a rollout about to run its first step.
    pub fn new(record: DeploymentRecord, traffic: TrafficSplit) -> Self {
        Self {
            record,
            next_step: 0,
            traffic,
            plan: None,
            spec: None,
            phase: RolloutPhase::Running,
            canary_weight: Percent::ZERO,
            canary_scale: None,
            header_routes: Vec::new(),
        }
    }
}

/// Whether a saved rollout was going forward or rolling back when it was saved.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase", content = "cause")]
#[non_exhaustive]
pub enum RolloutPhase {
    /// Running its plan.
    #[default]
    Running,
    /// Restoring the previous release because of the cause.
    RollingBack(FailureCause),
}

/// An opaque version of a stored document, for compare-and-swap (a Kubernetes
/// `resourceVersion`, a counter).
///
/// ```
/// use deploy_core::state::Revision;
/// assert_eq!(Revision::new("42").as_str(), "42");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revision(String);

impl Revision {
    /// A revision from the store's own token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The store's token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value with the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its revision, to pass back to [`StateStore::save`].
    pub revision: Revision,
}

impl<T> Versioned<T> {
    /// A value at a revision.
    pub fn new(value: T, revision: Revision) -> Self {
        Self { value, revision }
    }
}

/// The per-app lock, held by one rollout at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LockLease {
    /// The locked application.
    pub app: AppId,
    /// Who holds it (a process or pod name plus a random part).
    pub holder: String,
    /// When it was taken.
    pub acquired_at: Timestamp,
    /// When it lapses unless renewed; after that anyone may take it.
    pub expires_at: Timestamp,
}

impl LockLease {
    /// A lease of `app` held by `holder` from `acquired_at` for `ttl`.
    pub fn new(app: AppId, holder: impl Into<String>, acquired_at: Timestamp, ttl: Duration) -> Self {
        let ttl = jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
        let expires_at = acquired_at.checked_add(ttl).unwrap_or(Timestamp::MAX);
        Self { app, holder: holder.into(), acquired_at, expires_at }
    }
}

/// A failure of a [`StateStore`] operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The stored revision is not the one expected: someone else wrote first.
    #[error("state of {app} changed concurrently (expected revision {expected:?}, found {actual:?})")]
    Conflict {
        /// The application.
        app: AppId,
        /// The revision the caller read, `None` for "must not exist".
        expected: Option<Revision>,
        /// The revision in the store, `None` when absent.
        actual: Option<Revision>,
    },
    /// Another holder has the lock and it has not expired.
    #[error("{app} is locked by {holder} until {expires_at}")]
    LockHeld {
        /// The application.
        app: AppId,
        /// The current holder.
        holder: String,
        /// When its lease lapses.
        expires_at: Timestamp,
    },
    /// The caller's lease expired and someone else took the lock.
    #[error("lock of {app} was lost to {holder}")]
    LockLost {
        /// The application.
        app: AppId,
        /// The new holder, if known.
        holder: String,
    },
    /// The stored document cannot be read.
    #[error("stored state of {app} is corrupt: {reason}")]
    Corrupt {
        /// The application.
        app: AppId,
        /// What is wrong with it.
        reason: String,
    },
    /// The store's backend failed.
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

backend_error!(StateError);

impl Classify for StateError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Conflict { .. } | Self::LockHeld { .. } | Self::LockLost { .. } => ErrorKind::Conflict,
            Self::Corrupt { .. } => ErrorKind::InvalidInput,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// Durable rollout progress and a per-app lock.
///
/// Writes are compare-and-swap on a [`Revision`], so two processes never overwrite
/// each other's progress, and a write is atomic: a reader sees the old or the new
/// document, never a mix.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The saved progress of `app`'s rollout, if any.
    async fn load(&self, app: &AppId) -> Result<Option<Versioned<RolloutState>>, StateError>;

    /// Saves progress if the stored revision is `expected` (`None`: nothing may be
    /// stored yet) and returns the new revision; otherwise fails with
    /// [`StateError::Conflict`] and changes nothing.
    async fn save(
        &self,
        app: &AppId,
        state: &RolloutState,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError>;

    /// Deletes the progress of a finished rollout if the stored revision is
    /// `expected`. Clearing what is already gone succeeds.
    async fn clear(&self, app: &AppId, expected: &Revision) -> Result<(), StateError>;

    /// Takes `app`'s lock for `ttl`. Fails at once with [`StateError::LockHeld`] if
    /// another holder has an unexpired lease; an expired lease is taken over. The
    /// same holder taking it again renews it.
    async fn acquire_lock(&self, app: &AppId, holder: &str, ttl: Duration) -> Result<LockLease, StateError>;

    /// Extends a lease the caller holds by `ttl` from now; fails with
    /// [`StateError::LockLost`] if someone else holds it now.
    async fn renew_lock(&self, lease: &LockLease, ttl: Duration) -> Result<LockLease, StateError>;

    /// Gives the lock up. Releasing a lock the caller no longer holds does nothing
    /// and succeeds, so it is safe in clean-up paths.
    async fn release_lock(&self, lease: &LockLease) -> Result<(), StateError>;
}
