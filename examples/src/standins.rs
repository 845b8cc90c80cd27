//! In-process stand-ins for the pipeline's build, scan and push systems.
//!
//! They keep the contracts of the traits they implement (a push ends with the
//! digest, `exists` answers from what was really pushed, a scan that was told to
//! fail is an error, never an empty report), so the pipeline behaves as it would on
//! Docker, Trivy and a registry. They are examples, not a test kit: use
//! `deploy-docker` and `deploy-security` for the real systems.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use deploy_core::build::{BuildAnalysis, BuildError, BuildEvent, BuildRequest, BuildResult, ImageBuilder};
use deploy_core::model::{Digest, ImageRef};
use deploy_core::registry::{ImageRegistry, PushEvent, RegistryError};
use deploy_core::scan::{ScanError, ScanReport, Severity, Vulnerability, VulnerabilityScanner};
use futures::stream::{self, BoxStream};

/// A deterministic stand-in digest: `sha256:` and the 64-hex-digit rendering of a
/// hash of `text` (not SHA-256; the stand-ins only need distinct, valid digests).
fn digest_of(text: &str) -> Result<Digest, deploy_core::model::ValidationError> {
    use std::hash::{Hash, Hasher};
    let mut parts = String::new();
    for salt in 0u8..4 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (salt, text).hash(&mut hasher);
        parts.push_str(&format!("{:016x}", hasher.finish()));
    }
    Digest::parse(&format!("sha256:{parts}"))
}

/// Builds instantly: one event per Dockerfile instruction it pretends to run, then
/// a result carrying the request's tags.
#[derive(Debug, Clone)]
pub struct InstantBuilder {
    instructions: Vec<String>,
}

impl InstantBuilder {
    /// A builder that "runs" these Dockerfile instructions.
    pub fn new(instructions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { instructions: instructions.into_iter().map(Into::into).collect() }
    }
}

impl ImageBuilder for InstantBuilder {
    fn build(&self, request: BuildRequest) -> BoxStream<'_, Result<BuildEvent, BuildError>> {
        let total = self.instructions.len();
        let mut events: Vec<Result<BuildEvent, BuildError>> = self
            .instructions
            .iter()
            .enumerate()
            .map(|(i, instruction)| {
                Ok(BuildEvent::Step {
                    index: i as u32 + 1,
                    total: Some(total as u32),
                    instruction: instruction.clone(),
                })
            })
            .collect();
        let tags = request.tags.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let id = digest_of(&tags).map(|d| d.to_string()).unwrap_or_default();
        let analysis = BuildAnalysis::new(total as u32, 0, 4 << 20, total as u32, vec![]);
        events.push(Ok(BuildEvent::Finished { result: BuildResult::new(id, request.tags, analysis) }));
        Box::pin(stream::iter(events))
    }
}

/// Reports the findings it was given for each image (none for other images).
#[derive(Debug, Default)]
pub struct ScriptedScanner {
    findings: Mutex<BTreeMap<String, Vec<Severity>>>,
}

impl ScriptedScanner {
    /// A scanner that finds nothing until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, scanning `image` reports one finding per entry of `severities`.
    pub fn set_findings(&self, image: &ImageRef, severities: Vec<Severity>) {
        self.findings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(image.to_string(), severities);
    }
}

#[async_trait]
impl VulnerabilityScanner for ScriptedScanner {
    async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError> {
        let findings = self.findings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut report = ScanReport::new(image.to_string(), "scripted");
        report.scanned_targets.push(format!("{image} (scratch)"));
        for (i, severity) in findings.get(&image.to_string()).into_iter().flatten().enumerate() {
            report.vulnerabilities.push(Vulnerability::new(
                format!("CVE-2026-{:04}", i + 1),
                "libexample",
                "1.0.0",
                *severity,
            ));
        }
        Ok(report)
    }
}

/// A registry in memory: `exists` and `digest` answer from what was pushed.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    images: Mutex<BTreeMap<String, Digest>>,
}

impl InMemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The images pushed so far, with their digests.
    pub fn images(&self) -> BTreeMap<String, Digest> {
        self.images.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl ImageRegistry for InMemoryRegistry {
    async fn exists(&self, image: &ImageRef) -> Result<bool, RegistryError> {
        Ok(self.images.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(&image.to_string()))
    }

    async fn digest(&self, image: &ImageRef) -> Result<Option<Digest>, RegistryError> {
        Ok(self.images.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&image.to_string()).cloned())
    }

    fn push(&self, image: ImageRef) -> BoxStream<'_, Result<PushEvent, RegistryError>> {
        let digest = match digest_of(&image.to_string()) {
            Ok(digest) => digest,
            Err(e) => {
                let error = RegistryError::backend("push", deploy_core::error::ErrorKind::InvalidInput, e);
                return Box::pin(stream::iter(vec![Err(error)]));
            }
        };
        self.images.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(image.to_string(), digest.clone());
        Box::pin(stream::iter(vec![
            Ok(PushEvent::Status { layer: Some("layer-1".into()), status: "Pushed".into() }),
            Ok(PushEvent::Pushed { digest }),
        ]))
    }
}
