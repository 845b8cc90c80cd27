//! How the engine behaves: [`EngineConfig`].

use std::time::Duration;

use super::RetryPolicy;
use crate::model::DeploymentId;

/// How the engine behaves; the defaults suit a production cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The longest one step may take beyond the waits its plan asks for (a pause's
    /// or an analysis' own duration); past it the step fails and the rollout rolls back.
    pub step_deadline: Duration,
    /// The deadline given to [`Platform::wait_ready`](crate::platform::Platform::wait_ready).
    pub readiness_deadline: Duration,
    /// Retries of retryable platform, router and store errors.
    pub retry: RetryPolicy,
    /// The lease of the per-app lock; renewed every third of it while running. A
    /// driver that could not renew it for two thirds of it stops changing the
    /// platform; another engine takes it over only after watching it unchanged for
    /// all of it.
    pub lock_ttl: Duration,
    /// Who holds the lock (a pod or process name), for people reading it; each
    /// acquisition is told apart by its own token, not by this name.
    pub holder: String,
    /// How often a running rollout reads control requests of other processes
    /// from the state store.
    pub control_interval: Duration,
    /// After a failure, keep the new release's tracks (without traffic) for
    /// debugging instead of removing them.
    pub keep_failed_release: bool,
    /// How many events a rollout's handle queues for its reader (at least one;
    /// default [`EngineConfig::DEFAULT_EVENT_CAPACITY`]). The engine never waits
    /// for the reader: when the queue is full the oldest event is dropped, and the
    /// reader gets one [`RolloutEvent::Lagged`](super::RolloutEvent::Lagged) with the count in their place, then
    /// the newest events. A rollout emits a few events per step, so the default
    /// is lost only by a reader that stopped reading; the deployment record keeps
    /// every decision whatever the reader does.
    pub event_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            step_deadline: Duration::from_secs(15 * 60),
            readiness_deadline: Duration::from_secs(10 * 60),
            retry: RetryPolicy::default(),
            lock_ttl: Duration::from_secs(60),
            holder: format!("deploy-rs-{}", DeploymentId::generate()),
            control_interval: Duration::from_secs(5),
            keep_failed_release: false,
            event_capacity: Self::DEFAULT_EVENT_CAPACITY,
        }
    }
}

impl EngineConfig {
    /// The default of [`EngineConfig::event_capacity`]: 256 events, the most a
    /// rollout whose reader stopped reading keeps queued.
    pub const DEFAULT_EVENT_CAPACITY: usize = 256;

    /// Sets how many events the handle queues before the oldest are dropped
    /// ([`EngineConfig::event_capacity`]; 0 counts as 1).
    ///
    /// ```
    /// use deploy_core::engine::EngineConfig;
    /// let config = EngineConfig::default().event_capacity(16);
    /// assert_eq!(config.event_capacity, 16);
    /// assert_eq!(EngineConfig::default().event_capacity, EngineConfig::DEFAULT_EVENT_CAPACITY);
    /// ```
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Sets the step deadline.
    #[must_use]
    pub fn step_deadline(mut self, deadline: Duration) -> Self {
        self.step_deadline = deadline;
        self
    }

    /// Sets the readiness deadline.
    #[must_use]
    pub fn readiness_deadline(mut self, deadline: Duration) -> Self {
        self.readiness_deadline = deadline;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the lock's lease.
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Sets the lock holder's name.
    #[must_use]
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Sets how often a running rollout reads control requests.
    #[must_use]
    pub fn control_interval(mut self, interval: Duration) -> Self {
        self.control_interval = interval;
        self
    }

    /// Keeps a failed release's tracks instead of removing them.
    #[must_use]
    pub fn keep_failed_release(mut self, keep: bool) -> Self {
        self.keep_failed_release = keep;
        self
    }
}
