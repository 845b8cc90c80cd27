//! Small in-process collaborators for pipeline tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_core::stream::BoxStream;

use super::{Artifacts, Deployer, StageContext, StageError, StageOutput};
use crate::build::{BuildAnalysis, BuildError, BuildEvent, BuildRequest, BuildResult, ImageBuilder};
use crate::error::ErrorKind;
use crate::model::{DeploymentId, Digest, ImageRef};
use crate::notify::{Notification, Notifier, NotifyError};
use crate::registry::{ImageRegistry, PushEvent, RegistryError};
use crate::scan::{ScanError, ScanReport, Severity, Vulnerability, VulnerabilityScanner};

/// Builds instantly: two steps, then the request's tags.
pub(crate) struct FakeBuilder;

impl ImageBuilder for FakeBuilder {
    fn build(&self, request: BuildRequest) -> BoxStream<'_, Result<BuildEvent, BuildError>> {
        let result = BuildResult::new("sha256:abc", request.tags.clone(), BuildAnalysis::new(2, 1, 10, 2, vec![]));
        Box::pin(futures_util::stream::iter(vec![
            Ok(BuildEvent::Step { index: 1, total: Some(2), instruction: "FROM scratch".into() }),
            Ok(BuildEvent::Output { line: "copying".into() }),
            Ok(BuildEvent::Finished { result }),
        ]))
    }
}

/// Reports the given findings, or fails when `fail` is set.
pub(crate) struct FakeScanner {
    pub(crate) findings: Vec<Severity>,
    pub(crate) fail: bool,
}

#[async_trait]
impl VulnerabilityScanner for FakeScanner {
    async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError> {
        if self.fail {
            return Err(ScanError::Failed { scanner: "fake".into(), status: "exit 2".into(), stderr: "db".into() });
        }
        let mut report = ScanReport::new(image.to_string(), "fake");
        report.os = Some("debian 12.5".into());
        for (i, s) in self.findings.iter().enumerate() {
            report.vulnerabilities.push(Vulnerability::new(format!("CVE-{i}"), "pkg", "1.0", *s));
        }
        Ok(report)
    }
}

pub(crate) fn digest() -> Digest {
    Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap()
}

/// Accepts every push.
pub(crate) struct FakeRegistry;

#[async_trait]
impl ImageRegistry for FakeRegistry {
    async fn exists(&self, _image: &ImageRef) -> Result<bool, RegistryError> {
        Ok(true)
    }

    async fn digest(&self, _image: &ImageRef) -> Result<Option<Digest>, RegistryError> {
        Ok(Some(digest()))
    }

    fn push(&self, _image: ImageRef) -> BoxStream<'_, Result<PushEvent, RegistryError>> {
        Box::pin(futures_util::stream::iter(vec![
            Ok(PushEvent::Status { layer: Some("l1".into()), status: "Pushed".into() }),
            Ok(PushEvent::Pushed { digest: digest() }),
        ]))
    }
}

/// Counts calls; deploys fail when `fail_deploy` is set.
#[derive(Default)]
pub(crate) struct FakeDeployer {
    pub(crate) fail_deploy: bool,
    pub(crate) deploys: AtomicUsize,
    pub(crate) rollbacks: AtomicUsize,
    pub(crate) seen_digest: Mutex<Option<String>>,
}

#[async_trait]
impl Deployer for FakeDeployer {
    async fn deploy(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        self.deploys.fetch_add(1, Ordering::SeqCst);
        *self.seen_digest.lock().unwrap() = ctx.artifacts.digest.as_ref().map(ToString::to_string);
        if self.fail_deploy {
            return Err(StageError::backend("apply", ErrorKind::Unavailable, "cluster away"));
        }
        Ok(StageOutput::default().artifacts(Artifacts::default().deployment(DeploymentId::new("d-1").unwrap())))
    }

    async fn rollback(&self, _ctx: &StageContext) -> Result<StageOutput, StageError> {
        self.rollbacks.fetch_add(1, Ordering::SeqCst);
        Ok(StageOutput::default())
    }
}

/// Keeps every notification.
#[derive(Default)]
pub(crate) struct RecordingNotifier {
    pub(crate) seen: Mutex<Vec<Notification>>,
    pub(crate) fail: bool,
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.seen.lock().unwrap().push(notification.clone());
        if self.fail {
            return Err(NotifyError::Rejected { status: 500, body: "down".into() });
        }
        Ok(())
    }
}
