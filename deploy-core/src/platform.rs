//! Where workloads run: the [`Platform`] trait.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{AppId, AppSpec, ImageRef, Release, Track, ValidationErrors, Version};

/// The observed state of one track of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrackStatus {
    /// The release the track runs, if it exists.
    pub release: Option<Version>,
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas that run the track's current release.
    pub updated: u32,
    /// Replicas that pass their readiness check.
    pub ready: u32,
    /// Replicas ready for at least the platform's minimum ready time.
    pub available: u32,
    /// The summary the engine acts on.
    pub state: TrackState,
    /// The image the track runs, when the platform knows it; the engine needs it
    /// to adopt a running release the caller did not name.
    pub image: Option<ImageRef>,
}

impl TrackStatus {
    /// A status from the platform's counts and its summary.
    pub fn new(
        release: Option<Version>,
        desired: u32,
        updated: u32,
        ready: u32,
        available: u32,
        state: TrackState,
    ) -> Self {
        Self { release, desired, updated, ready, available, state, image: None }
    }

    /// Sets the image the track runs.
    #[must_use]
    pub fn with_image(mut self, image: ImageRef) -> Self {
        self.image = Some(image);
        self
    }

    /// The release the track runs, when both its version and image are known.
    ///
    /// ```
    /// use deploy_core::model::{ImageRef, Version};
    /// use deploy_core::platform::{TrackState, TrackStatus};
    /// let image = ImageRef::parse("registry.local/shop/web:1.0.0").unwrap();
    /// let status = TrackStatus::new(Some(Version::new("1.0.0").unwrap()), 3, 3, 3, 3, TrackState::Ready);
    /// assert!(status.running_release().is_none(), "the image is unknown");
    /// let release = status.with_image(image).running_release().unwrap();
    /// assert_eq!(release.version.as_str(), "1.0.0");
    /// ```
    pub fn running_release(&self) -> Option<Release> {
        Some(Release::new(self.release.clone()?, self.image.clone()?))
    }

    /// The status of a track that does not exist.
    ///
    /// ```
    /// use deploy_core::platform::{TrackState, TrackStatus};
    /// assert_eq!(TrackStatus::absent().state, TrackState::Absent);
    /// ```
    pub fn absent() -> Self {
        Self { release: None, desired: 0, updated: 0, ready: 0, available: 0, state: TrackState::Absent, image: None }
    }
}

/// Whether a track can take traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
#[non_exhaustive]
pub enum TrackState {
    /// No workload exists for the track.
    Absent,
    /// The workload is converging on its spec.
    Progressing,
    /// Every desired replica runs the current release and is available.
    Ready,
    /// The workload cannot become ready without a change (crash loops, an image
    /// that does not exist, a bad config reference, a progress deadline passed).
    Failed(String),
}

/// A failure of a [`Platform`] operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The track's workload does not exist.
    #[error("track {track} of {app} not found")]
    NotFound {
        /// The application.
        app: AppId,
        /// The track.
        track: Track,
    },
    /// The track did not become ready before the deadline.
    #[error("track {track} of {app} was not ready after {after:?}: {reason}")]
    Timeout {
        /// The application.
        app: AppId,
        /// The track.
        track: Track,
        /// How long the platform waited.
        after: Duration,
        /// The last status seen.
        reason: String,
    },
    /// The track can never become ready as it is (a crash loop, a missing image);
    /// reported as soon as it is seen instead of waiting out the deadline.
    #[error("track {track} of {app} cannot become ready: {reason}")]
    Doomed {
        /// The application.
        app: AppId,
        /// The track.
        track: Track,
        /// What the platform saw.
        reason: String,
    },
    /// The spec cannot be run on this platform.
    #[error("invalid spec for {app}: {errors}")]
    Invalid {
        /// The application.
        app: AppId,
        /// Every problem found.
        errors: ValidationErrors,
    },
    /// The platform's backend failed.
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

backend_error!(PlatformError);

impl Classify for PlatformError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Doomed { .. } | Self::Invalid { .. } => ErrorKind::InvalidInput,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// A place that runs workloads: a Kubernetes cluster, a Docker engine, the test kit.
///
/// A platform runs each *track* of an application (stable, canary, blue, green) as
/// its own set of replicas. It knows nothing of traffic: a [`TrafficRouter`] decides
/// which track receives requests, and the rollout engine makes sure no traffic goes to
/// a track that is not ready.
///
/// Every method is idempotent: calling it again with the same arguments after a
/// failure or a crash converges on the same state.
///
/// [`TrafficRouter`]: crate::traffic::TrafficRouter
#[async_trait]
pub trait Platform: Send + Sync {
    /// Creates or updates the workload of `track` so that it runs `release` with
    /// `replicas` replicas and the rest of `spec`.
    ///
    /// Returns once the platform has accepted the change, not when it is ready: call
    /// [`Platform::wait_ready`] for that. Updating a track in place uses the
    /// platform's native rolling update with `spec.rolling_update`.
    async fn apply(&self, spec: &AppSpec, track: Track, release: &Release, replicas: u32) -> Result<(), PlatformError>;

    /// Changes the replica count of an existing track; `0` keeps the workload but
    /// stops its replicas. Fails with [`PlatformError::NotFound`] if the track does
    /// not exist.
    async fn scale(&self, app: &AppId, track: Track, replicas: u32) -> Result<(), PlatformError>;

    /// Waits until the track is *ready*: every desired replica runs the track's
    /// current release and is available, and the platform has observed the latest
    /// change (generations compared first, so the previous rollout's state is never
    /// mistaken for this one's).
    ///
    /// Fails fast with [`PlatformError::Doomed`] when the platform reports a state that
    /// cannot resolve itself, and with [`PlatformError::Timeout`] when `deadline`
    /// passes; in both cases the workload is left as it is for the caller to roll back.
    /// Implementations wait on events (watches) where the platform has them.
    async fn wait_ready(&self, app: &AppId, track: Track, deadline: Duration) -> Result<(), PlatformError>;

    /// The track's current state; [`TrackState::Absent`] when it does not exist.
    async fn status(&self, app: &AppId, track: Track) -> Result<TrackStatus, PlatformError>;

    /// Deletes the track's workload. Removing a track that does not exist succeeds.
    async fn remove(&self, app: &AppId, track: Track) -> Result<(), PlatformError>;
}
