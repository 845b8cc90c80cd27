//! The provided stages: build, security scan, quality gate, push, deploy, rollback,
//! and closures for tests, smoke tests and custom steps.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::artifacts::Artifacts;
use super::stage::{Stage, StageContext, StageError, StageKind, StageOutput};
use crate::build::{BuildEvent, BuildRequest, ImageBuilder};
use crate::model::ImageRef;
use crate::model::LogLevel;
use crate::registry::{ImageRegistry, PushEvent};
use crate::scan::{ScanPolicy, VulnerabilityScanner};

/// How many lines of build output a build stage keeps.
const BUILD_LOG_LINES: usize = 200;

/// Builds an image through an [`ImageBuilder`]. Produces the artifacts
/// [`image_id`](Artifacts::image_id) and, when the request has tags,
/// [`image`](Artifacts::image) (the first tag).
#[derive(Clone)]
pub struct BuildStage {
    builder: Arc<dyn ImageBuilder>,
    request: BuildRequest,
}

impl BuildStage {
    /// A stage that runs `request` on `builder`.
    pub fn new(builder: Arc<dyn ImageBuilder>, request: BuildRequest) -> Self {
        Self { builder, request }
    }
}

#[async_trait]
impl Stage for BuildStage {
    fn name(&self) -> &str {
        "build"
    }

    fn kind(&self) -> StageKind {
        StageKind::Build
    }

    async fn run(&self, _ctx: &StageContext) -> Result<StageOutput, StageError> {
        let mut out = StageOutput::default();
        let mut stream = self.builder.build(self.request.clone());
        while let Some(event) = stream.next().await {
            match event.map_err(StageError::Build)? {
                BuildEvent::Step { index, instruction, .. } => {
                    out = out.log(LogLevel::Info, format!("step {index}: {instruction}"));
                }
                BuildEvent::Output { line } => out = out.log(LogLevel::Info, line),
                BuildEvent::Finished { result } => {
                    if out.logs.len() > BUILD_LOG_LINES {
                        out.logs.drain(..out.logs.len() - BUILD_LOG_LINES);
                    }
                    let mut artifacts = Artifacts::default().image_id(result.image_id);
                    if let Some(tag) = result.tags.first() {
                        artifacts = artifacts.image(tag.clone());
                    }
                    out = out.artifacts(artifacts);
                    return Ok(out);
                }
                _ => {}
            }
        }
        Err(StageError::Build(crate::build::BuildError::NoResult))
    }
}

/// Scans an image through a [`VulnerabilityScanner`] and fails when the report does
/// not pass the [`ScanPolicy`] as of today ([`ScanPolicy::evaluate_now`]). A scan
/// that does not complete fails the stage: it never counts as a clean report, nor
/// does a report that shows the scanner recognised nothing. The image is the one
/// given, or the [`image`](Artifacts::image) artifact. Produces the
/// [`vulnerabilities`](Artifacts::vulnerabilities) that counted, after the
/// policy's allowlist.
///
/// ```
/// use std::sync::Arc;
/// use deploy_core::async_trait;
/// use deploy_core::model::ImageRef;
/// use deploy_core::pipeline::{Artifacts, SecurityScanStage, Stage, StageContext, StageError};
/// use deploy_core::scan::*;
///
/// struct OneHigh;
/// #[async_trait]
/// impl VulnerabilityScanner for OneHigh {
///     async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError> {
///         let mut r = ScanReport::new(image.to_string(), "example");
///         r.os = Some("debian 12.5".into());
///         r.vulnerabilities.push(Vulnerability::new("CVE-1", "openssl", "3.0.1", Severity::High));
///         Ok(r)
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = StageContext::new("main").artifacts(Artifacts::default().image(ImageRef::parse("web:1").unwrap()));
/// let strict = SecurityScanStage::new(Arc::new(OneHigh), ScanPolicy::default());
/// assert!(matches!(strict.run(&ctx).await, Err(StageError::Gate { .. })));
/// let limits = SeverityLimits::none().critical(0).high(1);
/// let lenient = SecurityScanStage::new(Arc::new(OneHigh), ScanPolicy::default().max_vulnerabilities(limits));
/// assert_eq!(lenient.run(&ctx).await.unwrap().artifacts.vulnerabilities.unwrap().high, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct SecurityScanStage {
    scanner: Arc<dyn VulnerabilityScanner>,
    image: Option<ImageRef>,
    policy: ScanPolicy,
}

impl SecurityScanStage {
    /// A stage scanning the [`image`](Artifacts::image) artifact under `policy`.
    pub fn new(scanner: Arc<dyn VulnerabilityScanner>, policy: ScanPolicy) -> Self {
        Self { scanner, image: None, policy }
    }

    /// Scans `image` instead of the [`image`](Artifacts::image) artifact.
    #[must_use]
    pub fn image(mut self, image: ImageRef) -> Self {
        self.image = Some(image);
        self
    }
}

fn image_from(ctx: &StageContext, given: Option<&ImageRef>) -> Result<ImageRef, StageError> {
    match given {
        Some(i) => Ok(i.clone()),
        None => ctx.artifacts.require_image().cloned(),
    }
}

#[async_trait]
impl Stage for SecurityScanStage {
    fn name(&self) -> &str {
        "security-scan"
    }

    fn kind(&self) -> StageKind {
        StageKind::SecurityScan
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let image = image_from(ctx, self.image.as_ref())?;
        let report = self.scanner.scan(&image).await.map_err(StageError::Scan)?;
        let decision = self.policy.evaluate_now(&report);
        if !decision.passed {
            return Err(StageError::Gate { gate: "vulnerability".into(), violations: decision.reasons });
        }
        let counts = decision.vulnerabilities;
        Ok(StageOutput::default()
            .log(LogLevel::Info, format!("{} scanned {image}: {} findings", report.scanner, counts.total()))
            .artifacts(Artifacts::default().vulnerabilities(counts)))
    }
}

/// A rule of a [`QualityGate`].
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    AtLeast(String, f64),
    AtMost(String, f64),
}

/// Checks numbers among the artifacts of earlier stages against thresholds
/// (coverage at least 80, lint warnings at most 0, `vulnerabilities_high` at most
/// 3): [`Artifacts::number`]. A missing or non-numeric artifact fails the gate: it
/// never passes on silence. Every broken rule is reported at once.
///
/// ```
/// use deploy_core::pipeline::{Artifacts, QualityGate, Stage, StageContext};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let gate = QualityGate::new().at_least("coverage", 80.0).at_most("lint_warnings", 0.0);
/// let ctx = StageContext::new("main").artifacts(Artifacts::default().value("coverage", "91.2").value("lint_warnings", "0"));
/// assert!(gate.run(&ctx).await.is_ok());
/// let err = gate.run(&StageContext::new("main").artifacts(Artifacts::default().value("coverage", "50"))).await.unwrap_err();
/// assert!(err.to_string().contains("lint_warnings"));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualityGate {
    rules: Vec<Rule>,
}

impl QualityGate {
    /// A gate with no rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires artifact `key` to be at least `min`.
    #[must_use]
    pub fn at_least(mut self, key: impl Into<String>, min: f64) -> Self {
        self.rules.push(Rule::AtLeast(key.into(), min));
        self
    }

    /// Requires artifact `key` to be at most `max`.
    #[must_use]
    pub fn at_most(mut self, key: impl Into<String>, max: f64) -> Self {
        self.rules.push(Rule::AtMost(key.into(), max));
        self
    }
}

#[async_trait]
impl Stage for QualityGate {
    fn name(&self) -> &str {
        "quality-gate"
    }

    fn kind(&self) -> StageKind {
        StageKind::QualityGate
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let mut violations = Vec::new();
        for rule in &self.rules {
            let (key, bound, at_least) = match rule {
                Rule::AtLeast(k, b) => (k, *b, true),
                Rule::AtMost(k, b) => (k, *b, false),
            };
            match ctx.artifacts.number(key) {
                None if ctx.artifacts.get(key).is_some() => violations.push(format!("{key} is not a number")),
                None => violations.push(format!("{key} is missing")),
                Some(v) if at_least && v < bound => violations.push(format!("{key} is {v}, below {bound}")),
                Some(v) if !at_least && v > bound => violations.push(format!("{key} is {v}, above {bound}")),
                Some(_) => {}
            }
        }
        if violations.is_empty() {
            Ok(StageOutput::default().log(LogLevel::Info, format!("{} rules passed", self.rules.len())))
        } else {
            Err(StageError::Gate { gate: "quality".into(), violations })
        }
    }
}

/// Pushes an image through an [`ImageRegistry`]: the one given, or the
/// [`image`](Artifacts::image) artifact. Produces the [`digest`](Artifacts::digest)
/// and [`image`](Artifacts::image) artifacts.
#[derive(Clone)]
pub struct PushStage {
    registry: Arc<dyn ImageRegistry>,
    image: Option<ImageRef>,
}

impl PushStage {
    /// A stage pushing the [`image`](Artifacts::image) artifact.
    pub fn new(registry: Arc<dyn ImageRegistry>) -> Self {
        Self { registry, image: None }
    }

    /// Pushes `image` instead of the [`image`](Artifacts::image) artifact.
    #[must_use]
    pub fn image(mut self, image: ImageRef) -> Self {
        self.image = Some(image);
        self
    }
}

#[async_trait]
impl Stage for PushStage {
    fn name(&self) -> &str {
        "push"
    }

    fn kind(&self) -> StageKind {
        StageKind::Push
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let image = image_from(ctx, self.image.as_ref())?;
        let mut out = StageOutput::default();
        let mut stream = self.registry.push(image.clone());
        while let Some(event) = stream.next().await {
            match event.map_err(StageError::Registry)? {
                PushEvent::Status { status, layer } => {
                    let line = layer.map_or_else(|| status.clone(), |l| format!("{l}: {status}"));
                    out = out.log(LogLevel::Info, line);
                }
                PushEvent::Pushed { digest } => {
                    return Ok(out.artifacts(Artifacts::default().digest(digest).image(image)));
                }
                _ => {}
            }
        }
        Err(StageError::Registry(crate::registry::RegistryError::NoDigest { image }))
    }
}

/// Deploys and rolls back for a pipeline. [`EngineDeployer`](super::EngineDeployer)
/// does it through the rollout engine; other deployers (a script, another tool)
/// implement this trait. The context carries the artifacts of the stages before.
///
/// ```
/// use std::sync::Arc;
/// use deploy_core::async_trait;
/// use deploy_core::model::ImageRef;
/// use deploy_core::pipeline::*;
///
/// struct Rollout; // would hold the engine and the app's spec
///
/// #[async_trait]
/// impl Deployer for Rollout {
///     async fn deploy(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
///         let image = ctx.artifacts.require_image()?;
///         Ok(StageOutput::default().value("deployed", image.to_string()))
///     }
///     async fn rollback(&self, _ctx: &StageContext) -> Result<StageOutput, StageError> {
///         Ok(StageOutput::default())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let rollout = Arc::new(Rollout);
/// let pipeline = Pipeline::builder()
///     .stage(FnStage::new("tag", StageKind::Custom, |_| async {
///         Ok(StageOutput::default().artifacts(Artifacts::default().image(ImageRef::parse("web:2").unwrap())))
///     }))
///     .stage(DeployStage::new(rollout.clone()))
///     .rollback(RollbackStage::new(rollout))
///     .build();
/// let run = pipeline.run(RunOptions::new("main")).await;
/// assert_eq!(run.stages[1].artifacts.get("deployed"), Some("docker.io/library/web:2"));
/// # }
/// ```
#[async_trait]
pub trait Deployer: Send + Sync {
    /// Deploys; an `Err` fails the deploy stage and triggers the rollback stage.
    /// The error is reported as it is, with its logs ([`StageError::with_logs`]):
    /// an engine error converts with `?` ([`StageError::Rollout`]), any other
    /// collaborator's with [`StageError::backend`].
    async fn deploy(&self, ctx: &StageContext) -> Result<StageOutput, StageError>;

    /// Restores the release that served before [`Deployer::deploy`] was called.
    async fn rollback(&self, ctx: &StageContext) -> Result<StageOutput, StageError>;
}

/// The deploy stage: calls [`Deployer::deploy`].
#[derive(Clone)]
pub struct DeployStage {
    deployer: Arc<dyn Deployer>,
}

impl DeployStage {
    /// A stage deploying through `deployer`.
    pub fn new(deployer: Arc<dyn Deployer>) -> Self {
        Self { deployer }
    }
}

#[async_trait]
impl Stage for DeployStage {
    fn name(&self) -> &str {
        "deploy"
    }

    fn kind(&self) -> StageKind {
        StageKind::Deploy
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        self.deployer.deploy(ctx).await
    }
}

/// The rollback stage: calls [`Deployer::rollback`].
#[derive(Clone)]
pub struct RollbackStage {
    deployer: Arc<dyn Deployer>,
}

impl RollbackStage {
    /// A stage rolling back through `deployer`.
    pub fn new(deployer: Arc<dyn Deployer>) -> Self {
        Self { deployer }
    }
}

#[async_trait]
impl Stage for RollbackStage {
    fn name(&self) -> &str {
        "rollback"
    }

    fn kind(&self) -> StageKind {
        StageKind::Rollback
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        self.deployer.rollback(ctx).await
    }
}

type StageFn = dyn Fn(StageContext) -> BoxFuture<'static, Result<StageOutput, StageError>> + Send + Sync;

/// A stage from a closure: tests, smoke tests and custom steps.
///
/// ```
/// use deploy_core::pipeline::{FnStage, Stage, StageError, StageKind, StageOutput};
/// let smoke = FnStage::new("smoke", StageKind::SmokeTest, |ctx| async move {
///     if ctx.artifacts.digest.is_some() {
///         Ok(StageOutput::default())
///     } else {
///         Err(StageError::failed("nothing was pushed"))
///     }
/// });
/// assert_eq!(smoke.kind(), StageKind::SmokeTest);
/// ```
#[derive(Clone)]
pub struct FnStage {
    name: String,
    kind: StageKind,
    f: Arc<StageFn>,
}

impl FnStage {
    /// A stage named `name` of `kind` running `f` on a copy of the context.
    pub fn new<F, Fut>(name: impl Into<String>, kind: StageKind, f: F) -> Self
    where
        F: Fn(StageContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<StageOutput, StageError>> + Send + 'static,
    {
        Self { name: name.into(), kind, f: Arc::new(move |ctx| Box::pin(f(ctx))) }
    }
}

#[async_trait]
impl Stage for FnStage {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> StageKind {
        self.kind
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput, StageError> {
        (self.f)(ctx.clone()).await
    }
}
