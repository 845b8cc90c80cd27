//! Rollout progress and the per-app lock: the [`StateStore`] trait.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::FailureCause;
use crate::model::{AppId, AppSpec, DeploymentRecord, Percent, Track, TrafficSplit};
use crate::plan::{CanaryScale, Plan};
use crate::traffic::HeaderRoute;

/// The progress of a rollout, saved after every step so that another process can
/// resume it or roll it back after a crash.
///
/// Stores treat it as an opaque serde document: they serialize it, store the
/// bytes under compare-and-swap and give it back; its fields are the engine's
/// (private, so that an engine change does not break a store), and the accessors
/// below are what stores, tools and tests read. Fields added later default to empty
/// so documents written without them still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RolloutState {
    /// The deployment being carried out, with its steps so far.
    pub(crate) record: DeploymentRecord,
    /// The index of the next step to run.
    pub(crate) next_step: usize,
    /// The traffic split last set and verified.
    pub(crate) traffic: TrafficSplit,
    /// The plan being executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plan: Option<Plan>,
    /// The application spec being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spec: Option<AppSpec>,
    /// Whether the rollout is going forward or rolling back.
    #[serde(default)]
    pub(crate) phase: RolloutPhase,
    /// The canary's traffic weight last set.
    #[serde(default)]
    pub(crate) canary_weight: Percent,
    /// An explicit canary scale in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) canary_scale: Option<CanaryScale>,
    /// Header routes set so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) header_routes: Vec<HeaderRoute>,
    /// The plan's tracks that existed on the platform before the rollout began; a
    /// rollback never removes them (it only takes the new release off them).
    /// `None` in documents written before this was recorded: the rollback then
    /// keeps the old track whatever `from` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) existed_before: Option<Vec<Track>>,
    /// Control requests of other processes ([`ControlRequest`]), oldest first; the
    /// driver acts on those with an id above [`RolloutState::requests_handled`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) requests: Vec<PendingRequest>,
    /// The id of the last control request the driver acted on.
    #[serde(default)]
    pub(crate) requests_handled: u64,
    /// Paused by a [`ControlRequest::Pause`] until a [`ControlRequest::Resume`].
    #[serde(default)]
    pub(crate) paused: bool,
    /// Who wrote this document, so that a driver whose save answer was lost
    /// recognises its own write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) written_by: Option<WriteStamp>,
    /// A document of a driver built on top of the engine (the fleet journal of
    /// `deploy_core::fleet`), kept under the same compare-and-swap and lock contract;
    /// the engine neither reads nor writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) extension: Option<serde_json::Value>,
    /// HMAC-SHA-256 of the rest of the document, hex, written and checked by a
    /// `SignedStateStore` (module `signed_state`); `None` when
    /// progress is not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<String>,
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
            existed_before: None,
            requests: Vec::new(),
            requests_handled: 0,
            paused: false,
            written_by: None,
            extension: None,
            signature: None,
        }
    }

    /// The deployment being carried out, with its steps so far.
    pub fn record(&self) -> &DeploymentRecord {
        &self.record
    }

    /// The application being rolled out (the record's).
    pub fn app(&self) -> &AppId {
        &self.record.app
    }

    /// Whether the rollout is going forward, rolling back, or degraded.
    pub fn phase(&self) -> &RolloutPhase {
        &self.phase
    }

    /// The index (from 0) of the next step to run.
    pub fn next_step(&self) -> usize {
        self.next_step
    }

    /// The traffic split last set and verified.
    pub fn traffic(&self) -> &TrafficSplit {
        &self.traffic
    }

    /// The plan being executed (`None` in documents written before plans were saved).
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// The application spec being rolled out (`None` in documents written before
    /// specs were saved).
    pub fn spec(&self) -> Option<&AppSpec> {
        self.spec.as_ref()
    }

    /// The canary's traffic weight last set (what the plan asked; the split in
    /// force is [`RolloutState::traffic`]).
    pub fn canary_weight(&self) -> Percent {
        self.canary_weight
    }

    /// Whether a caller's pause request holds the rollout.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Who wrote this document (the lease token and its save count).
    pub fn written_by(&self) -> Option<&WriteStamp> {
        self.written_by.as_ref()
    }

    /// The HMAC signature a `SignedStateStore` (module `signed_state`) wrote, hex;
    /// `None` when progress is not signed.
    pub fn signature(&self) -> Option<&str> {
        self.signature.as_deref()
    }

    /// The same document advanced to step `next_step` with `traffic` in force: what
    /// a driver that crashed there leaves behind, for tests of stores and of
    /// recovery.
    #[must_use]
    pub fn at_step(mut self, next_step: usize, traffic: TrafficSplit) -> Self {
        self.next_step = next_step;
        self.traffic = traffic;
        self
    }

    /// Control requests not acted on yet, oldest first.
    pub fn pending_requests(&self) -> impl Iterator<Item = &PendingRequest> {
        self.requests.iter().filter(|r| r.id > self.requests_handled)
    }

    /// Appends a control request from another process and returns its id.
    pub fn push_request(&mut self, request: ControlRequest, at: Timestamp) -> u64 {
        let id =
            self.requests.iter().map(|r| r.id).max().unwrap_or(self.requests_handled).max(self.requests_handled) + 1;
        self.requests.push(PendingRequest { id, request, requested_at: at });
        id
    }
}

/// What a caller without the rollout's handle (a CLI, a CI job) asks of it, through
/// the state store: the driver sees it at its next check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "request")]
#[non_exhaustive]
pub enum ControlRequest {
    /// End the pause of step `step` (from 0); only accepted while that pause waits.
    Promote {
        /// The pause step being promoted.
        step: usize,
    },
    /// Stop and roll back.
    Abort {
        /// Why, for the record.
        reason: String,
    },
    /// Hold before the next step until resumed.
    Pause,
    /// Continue after a [`ControlRequest::Pause`].
    Resume,
}

impl fmt::Display for ControlRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Promote { step } => write!(f, "promote the pause of step {}", step + 1),
            Self::Abort { reason } => write!(f, "abort ({reason})"),
            Self::Pause => f.write_str("pause"),
            Self::Resume => f.write_str("resume"),
        }
    }
}

/// A control request as stored, with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingRequest {
    /// Grows with each request of one rollout.
    pub id: u64,
    /// What was asked.
    pub request: ControlRequest,
    /// When it was asked (the requester's clock; informational).
    pub requested_at: Timestamp,
}

/// The lease token and write sequence of the driver that saved a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WriteStamp {
    /// The token of the driver's lease.
    pub token: LeaseToken,
    /// The driver's count of saves.
    pub sequence: u64,
}

impl WriteStamp {
    /// A stamp.
    pub fn new(token: LeaseToken, sequence: u64) -> Self {
        Self { token, sequence }
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
    /// A rollback is required and under way because of the cause: saved before
    /// anything is restored, so a rollout in this phase is never resumed forward.
    RollingBack(FailureCause),
    /// The rollback failed: the application may be half restored. The document
    /// stays (the lock does not) until a rollback completes; `resume` retries it
    /// and a new rollout is refused meanwhile.
    Degraded(FailureCause),
}

impl RolloutPhase {
    /// Whether the rollout must go back, never forward.
    pub fn is_backward(&self) -> bool {
        matches!(self, Self::RollingBack(_) | Self::Degraded(_))
    }
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

/// The secret of one lock acquisition (a fencing token): random, made by the
/// acquirer, compared by the store on every renewal and release, so a second
/// acquisition by the same holder name is a different lease.
///
/// ```
/// use deploy_core::state::LeaseToken;
/// assert_ne!(LeaseToken::generate(), LeaseToken::generate());
/// assert_eq!(LeaseToken::new("t-1").as_str(), "t-1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// A fresh random token (128 bits, hex).
    pub fn generate() -> Self {
        Self(format!("{:032x}", crate::random::u128()))
    }

    /// A token from its stored form.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The per-app lock, held by one rollout at a time.
///
/// Its timestamps are the writer's wall clock and only informational: nobody
/// decides that a lease expired by comparing them with their own clock. A lease
/// is taken over only by someone who saw the same `token` and `revision` for
/// `ttl` on their own monotonic clock ([`LockRequest::take_over`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LockLease {
    /// The locked application.
    pub app: AppId,
    /// Who holds it (a process or pod name).
    pub holder: String,
    /// This acquisition's token.
    pub token: LeaseToken,
    /// How long the lease lasts after each renewal, as its holder declared.
    pub ttl: Duration,
    /// When it was taken (holder's clock).
    pub acquired_at: Timestamp,
    /// When it lapses unless renewed (holder's clock; informational).
    pub expires_at: Timestamp,
    /// The store's version of the lease record; it changes on every renewal.
    pub revision: Revision,
}

impl LockLease {
    /// A lease of `app` held by `holder` with `token` from `acquired_at` for `ttl`,
    /// at revision `0` (stores set their own with [`LockLease::revision`]).
    pub fn new(
        app: AppId,
        holder: impl Into<String>,
        token: LeaseToken,
        acquired_at: Timestamp,
        ttl: Duration,
    ) -> Self {
        let span = jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
        let expires_at = acquired_at.checked_add(span).unwrap_or(Timestamp::MAX);
        Self { app, holder: holder.into(), token, ttl, acquired_at, expires_at, revision: Revision::new("0") }
    }

    /// Sets the store's revision of the record.
    #[must_use]
    pub fn revision(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// Sets when it lapses (the holder's clock).
    #[must_use]
    pub fn expires_at(mut self, at: Timestamp) -> Self {
        self.expires_at = at;
        self
    }

    /// Whether `other` is the same record: the same acquisition, not renewed since.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deploy_core::model::{AppId, Name, Namespace};
    /// use deploy_core::state::{LeaseToken, LockLease, Revision};
    /// let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
    /// let a = LockLease::new(app, "pod-a", LeaseToken::new("t"), jiff::Timestamp::UNIX_EPOCH, Duration::from_secs(30));
    /// assert!(a.same_record(&a.clone()));
    /// assert!(!a.same_record(&a.clone().revision(Revision::new("2"))));
    /// ```
    pub fn same_record(&self, other: &LockLease) -> bool {
        self.token == other.token && self.revision == other.revision
    }
}

/// How to take a lock: [`StateStore::acquire_lock`]'s argument.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockRequest {
    /// Who asks (a process or pod name).
    pub holder: String,
    /// The new acquisition's token, made by the caller so that it can recognise
    /// its lease after a lost answer.
    pub token: LeaseToken,
    /// The lease's duration.
    pub ttl: Duration,
    /// The lease record the caller saw unchanged for its whole `ttl` on its own
    /// monotonic clock (its holder stopped renewing: the crash takeover); `None`:
    /// only a free lock may be taken.
    pub take_over: Option<LockLease>,
}

impl LockRequest {
    /// A request for a free lock by `holder` for `ttl`, with a fresh token.
    pub fn new(holder: impl Into<String>, ttl: Duration) -> Self {
        Self { holder: holder.into(), token: LeaseToken::generate(), ttl, take_over: None }
    }

    /// Takes over `observed` if it is still the stored record.
    #[must_use]
    pub fn take_over(mut self, observed: LockLease) -> Self {
        self.take_over = Some(observed);
        self
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
    /// The document was deleted while the caller held a revision of it (someone
    /// removed it by hand); nothing was written.
    #[error("state of {app} was deleted (expected revision {expected})")]
    Deleted {
        /// The application.
        app: AppId,
        /// The revision the caller read.
        expected: Revision,
    },
    /// Someone holds the lock: its lease was not released, nor taken over.
    #[error("{app} is locked by {holder} until {expires_at} (holder's clock)")]
    LockHeld {
        /// The application.
        app: AppId,
        /// The current holder.
        holder: String,
        /// When its lease lapses.
        expires_at: Timestamp,
    },
    /// The caller's lease is not the stored one any more (another token holds it,
    /// or none does).
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
            Self::Deleted { .. } => ErrorKind::NotFound,
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
///
/// The lock is fenced: every acquisition carries its own [`LeaseToken`], compared
/// on renewal and release, and a held lease is never taken by comparing clocks:
/// only by [`LockRequest::take_over`] of the exact record the caller watched for
/// a whole lease duration (as Kubernetes leader election does).
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The saved progress of `app`'s rollout, if any.
    async fn load(&self, app: &AppId) -> Result<Option<Versioned<RolloutState>>, StateError>;

    /// Saves progress if the stored revision is `expected` (`None`: nothing may be
    /// stored yet) and returns the new revision. Otherwise changes nothing and
    /// fails with [`StateError::Conflict`] (another revision is stored) or
    /// [`StateError::Deleted`] (`expected` is set and nothing is stored).
    async fn save(
        &self,
        app: &AppId,
        state: &RolloutState,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError>;

    /// Deletes the progress of a finished rollout if the stored revision is
    /// `expected`. Clearing what is already gone succeeds.
    async fn clear(&self, app: &AppId, expected: &Revision) -> Result<(), StateError>;

    /// The lease record of `app`'s lock as stored now, if any.
    async fn read_lock(&self, app: &AppId) -> Result<Option<LockLease>, StateError>;

    /// Takes `app`'s lock with the request's token and ttl.
    ///
    /// Without [`LockRequest::take_over`] it succeeds only when no lease is
    /// stored; a stored lease fails it with [`StateError::LockHeld`] whoever holds
    /// it, the same holder name included, and however old its timestamps are.
    /// With it, it succeeds only if the stored record is still the observed one
    /// (same token and revision), atomically.
    async fn acquire_lock(&self, app: &AppId, request: &LockRequest) -> Result<LockLease, StateError>;

    /// Extends the caller's lease by `ttl` and returns the new record; fails with
    /// [`StateError::LockLost`] if the stored lease has another token or none.
    async fn renew_lock(&self, lease: &LockLease, ttl: Duration) -> Result<LockLease, StateError>;

    /// Gives the lock up if the stored lease has the caller's token. Releasing a
    /// lock the caller no longer holds does nothing and succeeds, so it is safe in
    /// clean-up paths.
    async fn release_lock(&self, lease: &LockLease) -> Result<(), StateError>;
}
