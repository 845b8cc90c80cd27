//! How a rollout ended ([`RolloutReport`]) and why the engine could not carry one
//! ([`RolloutError`]).

use super::*;

/// How a rollout ended, when the engine could carry it to an end.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RolloutReport {
    /// `Succeeded`, `RolledBack`, or `Failed` when even the rollback failed.
    pub status: DeploymentStatus,
    /// Why it did not succeed.
    pub cause: Option<FailureCause>,
    /// The deployment record, as stored in the history store.
    pub record: DeploymentRecord,
}

/// Why the engine could not start, resume or finish a rollout. A rollout that ran
/// and rolled back is not an error: it is a [`RolloutReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// Another driver holds the application's lock; nothing was changed. A
    /// driver that died is taken over by a later call once this engine has seen
    /// its lease unchanged for the lease's ttl.
    #[error("{app} is locked by {holder} until {expires_at} (holder's clock)")]
    Locked {
        /// The application.
        app: AppId,
        /// The current holder.
        holder: String,
        /// When its lease lapses, by its holder's clock (informational: nobody
        /// compares it with their own clock).
        expires_at: Timestamp,
    },
    /// The spec or plan is invalid, or needs what the engine does not have.
    #[error("invalid rollout of {app}: {errors}")]
    Invalid {
        /// The application.
        app: AppId,
        /// Every problem.
        errors: ValidationErrors,
    },
    /// A rollout of the application was interrupted and must be resumed first.
    #[error("{app} has an unfinished rollout {deployment}; resume it first")]
    Unfinished {
        /// The application.
        app: AppId,
        /// The interrupted deployment.
        deployment: DeploymentId,
    },
    /// There is no saved rollout to resume.
    #[error("{app} has no rollout to resume")]
    NothingToResume {
        /// The application.
        app: AppId,
    },
    /// The saved state cannot be resumed.
    #[error("saved rollout of {app} cannot be resumed: {reason}")]
    CorruptState {
        /// The application.
        app: AppId,
        /// What is missing.
        reason: String,
    },
    /// The driver's lease is lost (another holder has it) or may lapse (renewals
    /// kept failing): the rollout stopped before the lease could lapse, without
    /// touching the platform or the router further, and saved its progress when it
    /// still could. Another engine resumes it.
    #[error("lost the lock of {app} (holder now {holder}): {reason}")]
    LockLost {
        /// The application.
        app: AppId,
        /// The new holder, `unknown` when renewals failed.
        holder: String,
        /// What happened.
        reason: String,
    },
    /// This engine already runs a rollout of the application; the request changed
    /// nothing.
    #[error("{app} is already being rolled out by this engine: deployment {deployment}")]
    AlreadyRunning {
        /// The application.
        app: AppId,
        /// The running deployment.
        deployment: DeploymentId,
    },
    /// A rollback of the application failed earlier; until a rollback completes
    /// ([`RolloutEngine::resume`] retries it, [`RolloutEngine::emergency_rollback`]
    /// forces it) no new rollout starts.
    #[error("{app} is degraded: the rollback of {deployment} failed ({cause}); resume it to retry the rollback")]
    Degraded {
        /// The application.
        app: AppId,
        /// The deployment whose rollback failed.
        deployment: DeploymentId,
        /// Why.
        cause: FailureCause,
    },
    /// The request's `from` is not the release the platform runs on the old track.
    #[error("refusing to roll out {app}: the request says {requested} serves, but {track} runs {}", running.as_ref().map_or_else(|| "nothing".to_owned(), ToString::to_string))]
    FromMismatch {
        /// The application.
        app: AppId,
        /// The plan's old track.
        track: Track,
        /// The release the request named.
        requested: Version,
        /// The release the track runs, if any.
        running: Option<Version>,
    },
    /// The old track runs a release the request did not name, and the platform
    /// does not report its image, so it could not be restored: name it as `from`.
    #[error("{track} of {app} runs {version}, whose image the platform does not report; pass it as the request's from")]
    ServingReleaseUnknown {
        /// The application.
        app: AppId,
        /// The plan's old track.
        track: Track,
        /// The version it runs.
        version: Version,
    },
    /// The plan would deploy the new release onto the track that serves traffic
    /// (a blue-green plan made for the wrong live colour).
    #[error("refusing to deploy {app} onto {serving}: it serves traffic now (the plan says {declared} is live)")]
    LiveTrackMismatch {
        /// The application.
        app: AppId,
        /// The live track the plan was made for.
        declared: Track,
        /// The track that serves, which the plan would deploy onto.
        serving: Track,
    },
    /// A promotion was asked for while no pause waits for one.
    #[error("promote of {app} refused: no pause waits for it (the rollout is at {})", describe_step(*step, current))]
    PromoteRejected {
        /// The application.
        app: AppId,
        /// The step it is at, when known.
        step: Option<usize>,
        /// What that step does, or the phase.
        current: String,
    },
    /// There is no rollout of the application in progress to control.
    #[error("{app} has no rollout in progress")]
    NoRollout {
        /// The application.
        app: AppId,
    },
    /// The platform failed while the engine checked what runs.
    #[error("platform failed: {0}")]
    Platform(#[source] PlatformError),
    /// The router failed while the engine checked what serves.
    #[error("traffic router failed: {0}")]
    Router(#[source] RouterError),
    /// The state store failed.
    #[error("state store failed: {0}")]
    State(#[source] StateError),
    /// The history store failed.
    #[error("history store failed: {0}")]
    History(#[source] HistoryError),
    /// The rollout's task stopped (it was killed or panicked).
    #[error("rollout task stopped: {reason}")]
    Stopped {
        /// What the runtime said.
        reason: String,
    },
}

impl Classify for RolloutError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Locked { .. }
            | Self::Unfinished { .. }
            | Self::LockLost { .. }
            | Self::AlreadyRunning { .. }
            | Self::Degraded { .. }
            | Self::FromMismatch { .. }
            | Self::LiveTrackMismatch { .. }
            | Self::PromoteRejected { .. } => ErrorKind::Conflict,
            Self::Invalid { .. } | Self::CorruptState { .. } | Self::ServingReleaseUnknown { .. } => {
                ErrorKind::InvalidInput
            }
            Self::NothingToResume { .. } | Self::NoRollout { .. } => ErrorKind::NotFound,
            Self::Platform(e) => e.kind(),
            Self::Router(e) => e.kind(),
            Self::State(e) => e.kind(),
            Self::History(e) => e.kind(),
            Self::Stopped { .. } => ErrorKind::Other,
        }
    }
}

impl RolloutError {
    pub(super) fn from_lock(app: &AppId, e: StateError) -> Self {
        match e {
            StateError::LockHeld { app, holder, expires_at } => Self::Locked { app, holder, expires_at },
            StateError::LockLost { holder, .. } => {
                Self::LockLost { app: app.clone(), holder, reason: "another holder has the lease".to_owned() }
            }
            other => Self::State(other),
        }
    }
}

fn describe_step(step: Option<usize>, current: &str) -> String {
    match step {
        Some(step) => format!("step {}: {current}", step + 1),
        None => current.to_owned(),
    }
}
