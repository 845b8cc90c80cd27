//! A scripted [`HealthCheck`].

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::error::ErrorKind;
use crate::health::{HealthCheck, HealthError, HealthOutcome, HealthTarget};
use crate::model::Track;

/// What the check answers for a track.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthScript {
    /// Healthy.
    Healthy,
    /// Unhealthy, with this detail.
    Unhealthy(String),
    /// The check cannot run.
    Error(ErrorKind),
}

/// A health check whose verdict per track the test sets; healthy by default.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use deploy_core::health::{HealthCheck, HealthTarget};
/// use deploy_core::model::Track;
/// use deploy_core::testkit::{self, HealthScript, TestHealthCheck};
/// let check = TestHealthCheck::new("smoke");
/// check.set(Track::Canary, HealthScript::Unhealthy("503".into()));
/// let (spec, _, v2) = testkit::sample_app(1);
/// let outcome = check.check(&HealthTarget::new(spec.id(), Track::Canary, v2.version)).await.unwrap();
/// assert!(!outcome.healthy);
/// # });
/// ```
#[derive(Debug)]
pub struct TestHealthCheck {
    name: String,
    scripts: Mutex<BTreeMap<Track, HealthScript>>,
}

impl TestHealthCheck {
    /// A check named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), scripts: Mutex::new(BTreeMap::new()) }
    }

    /// Sets the verdict for `track`.
    pub fn set(&self, track: Track, script: HealthScript) {
        self.scripts.lock().unwrap_or_else(PoisonError::into_inner).insert(track, script);
    }
}

#[async_trait]
impl HealthCheck for TestHealthCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, target: &HealthTarget) -> Result<HealthOutcome, HealthError> {
        let script = self.scripts.lock().unwrap_or_else(PoisonError::into_inner).get(&target.track).cloned();
        match script.unwrap_or(HealthScript::Healthy) {
            HealthScript::Healthy => Ok(HealthOutcome::healthy(1, "scripted healthy")),
            HealthScript::Unhealthy(detail) => Ok(HealthOutcome::unhealthy(1, detail)),
            HealthScript::Error(kind) => Err(HealthError::backend("check", kind, "injected by the test kit")),
        }
    }
}
