//! One rollout to carry out: [`RolloutRequest`].

use super::*;

/// One rollout to carry out.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RolloutRequest {
    /// What to run.
    pub spec: AppSpec,
    /// The release that serves now, as the caller believes. The engine reads
    /// the old track from the platform: `None` adopts what runs there (the event
    /// stream and the record say so); a release that differs from what runs is
    /// refused with [`RolloutError::FromMismatch`]. Naming it is still the safe
    /// path: it says which image to restore should the old track need it.
    pub from: Option<Release>,
    /// The release to roll out.
    pub to: Release,
    /// The environment, for the record.
    pub environment: Environment,
    /// The plan a strategy made.
    pub plan: Plan,
    /// When the change was committed, for DORA's lead time.
    pub committed_at: Option<Timestamp>,
}

impl RolloutRequest {
    /// A rollout of `to` by `plan`, in production, from the release the platform
    /// runs on the plan's old track (if any; see [`RolloutRequest::from`]).
    pub fn new(spec: AppSpec, to: Release, plan: Plan) -> Self {
        Self { spec, from: None, to, environment: Environment::Production, plan, committed_at: None }
    }

    /// Sets the release that serves now; the engine checks it against the
    /// platform before it changes anything.
    #[must_use]
    pub fn from(mut self, release: Release) -> Self {
        self.from = Some(release);
        self
    }

    /// Sets the environment.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// Sets the commit time.
    #[must_use]
    pub fn committed_at(mut self, at: Timestamp) -> Self {
        self.committed_at = Some(at);
        self
    }
}
