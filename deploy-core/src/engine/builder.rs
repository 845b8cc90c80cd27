//! Building an engine: [`RolloutEngineBuilder`].

use super::*;

/// Builds a [`RolloutEngine`]; the platform and both stores are required, the rest
/// optional.
#[must_use]
pub struct RolloutEngineBuilder {
    pub(super) inner: Inner,
}

impl RolloutEngineBuilder {
    /// Signs saved progress with `key` and refuses progress whose signature does
    /// not match ([`SignedStateStore`](crate::signed_state::SignedStateStore)): a
    /// document changed outside the engines is never resumed. Every engine that
    /// drives or controls the same applications needs the same key.
    pub fn sign_state(mut self, key: crate::signed_state::StateKey) -> Self {
        self.inner.state = Arc::new(crate::signed_state::SignedStateStore::new(self.inner.state, key));
        self
    }

    /// Routes traffic with `router`; without one, canary weights are reached by
    /// replica ratio and blue-green plans are rejected.
    pub fn router(mut self, router: Arc<dyn TrafficRouter>) -> Self {
        self.inner.router = Some(router);
        self
    }

    /// Measures analysis metrics with `metrics`.
    pub fn metrics(mut self, metrics: Arc<dyn MetricsProvider>) -> Self {
        self.inner.metrics = Some(metrics);
        self
    }

    /// Runs `preflight`'s checklist (its `Pre` phase) before a rollout changes
    /// anything: a no-go fails the rollout with [`CauseKind::PreflightFailed`],
    /// naming every blocking item, and leaves the platform as it was.
    pub fn preflight(mut self, preflight: Arc<dyn Preflight>) -> Self {
        self.inner.preflight = Some(preflight);
        self
    }

    /// Tells `notifier` of every rollout this engine starts (`DeploymentStarted`)
    /// and of how each rollout it drives ends (`DeploymentSucceeded`, `RolledBack`,
    /// `DeploymentFailed`), with the deployment id, versions, image and strategy as
    /// fields: a [`WebhookNotifier`](crate::webhook::WebhookNotifier) in the CDEvents
    /// format turns them into `pipelinerun.started`, `service.deployed` /
    /// `service.upgraded`, `service.rolledback` and `pipelinerun.finished`. Best
    /// effort: a notification that fails or takes over 10 s is logged and the rollout
    /// goes on; the end is told before [`RolloutHandle::wait`] returns.
    pub fn notifier(mut self, notifier: Arc<dyn crate::notify::Notifier>) -> Self {
        self.inner.notifier = Some(notifier);
        self
    }

    /// Makes a health check available to analyses by its name.
    pub fn health_check(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.inner.health.push(check);
        self
    }

    /// Registers a judge for [`JudgeSpec::Custom`](crate::analysis::JudgeSpec::Custom).
    pub fn judge(mut self, name: impl Into<String>, factory: Arc<dyn JudgeFactory>) -> Self {
        self.inner.judges.register(name, factory);
        self
    }

    /// Sets the configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.inner.config = config;
        self
    }

    /// The engine.
    pub fn build(self) -> RolloutEngine {
        RolloutEngine { inner: Arc::new(self.inner) }
    }
}
