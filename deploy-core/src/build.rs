//! Building images: the [`ImageBuilder`] trait.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use futures_core::stream::BoxStream;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::ImageRef;

/// What to build: options in one struct, as bollard's `BuildImageOptions`.
///
/// ```
/// use deploy_core::build::BuildRequest;
/// use deploy_core::model::ImageRef;
/// let req = BuildRequest::new("./service")
///     .tag(ImageRef::parse("localhost:5000/svc:1.0").unwrap())
///     .build_arg("VERSION", "1.0")
///     .target("runtime");
/// assert_eq!(req.dockerfile.to_str(), Some("Dockerfile"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BuildRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile, relative to the context.
    pub dockerfile: PathBuf,
    /// Tags to give the image.
    pub tags: Vec<ImageRef>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The stage of a multi-stage Dockerfile to stop at.
    pub target: Option<String>,
    /// Ignore the build cache.
    pub no_cache: bool,
    /// Labels to set on the image.
    pub labels: BTreeMap<String, String>,
}

impl BuildRequest {
    /// Builds `context/Dockerfile` with no tags, arguments or labels.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        Self {
            context: context.into(),
            dockerfile: PathBuf::from("Dockerfile"),
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            labels: BTreeMap::new(),
        }
    }

    /// Sets the Dockerfile path, relative to the context.
    #[must_use]
    pub fn dockerfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.dockerfile = path.into();
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: ImageRef) -> Self {
        self.tags.push(tag);
        self
    }

    /// Adds a build argument.
    #[must_use]
    pub fn build_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.insert(key.into(), value.into());
        self
    }

    /// Sets the target stage.
    #[must_use]
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// Ignores the build cache.
    #[must_use]
    pub fn no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// One layer of a built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LayerInfo {
    /// The instruction that made it.
    pub created_by: String,
    /// Its size in bytes.
    pub size_bytes: u64,
}

impl LayerInfo {
    /// A layer.
    pub fn new(created_by: impl Into<String>, size_bytes: u64) -> Self {
        Self { created_by: created_by.into(), size_bytes }
    }
}

/// What the build did and what it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BuildAnalysis {
    /// Build steps run.
    pub steps: u32,
    /// Steps answered from the cache.
    pub cached_steps: u32,
    /// `cached_steps / steps`, from 0 to 1; 0 when there were no steps.
    pub cache_efficiency: f64,
    /// The image's size in bytes.
    pub size_bytes: u64,
    /// The image's layer count.
    pub layer_count: u32,
    /// The largest layers, largest first.
    pub largest_layers: Vec<LayerInfo>,
}

impl BuildAnalysis {
    /// An analysis; the cache efficiency is derived from the step counts, and the
    /// layers are sorted largest first.
    ///
    /// ```
    /// use deploy_core::build::BuildAnalysis;
    /// let a = BuildAnalysis::new(4, 3, 1024, 2, vec![]);
    /// assert_eq!(a.cache_efficiency, 0.75);
    /// ```
    pub fn new(
        steps: u32,
        cached_steps: u32,
        size_bytes: u64,
        layer_count: u32,
        mut largest_layers: Vec<LayerInfo>,
    ) -> Self {
        let cache_efficiency = if steps == 0 { 0.0 } else { f64::from(cached_steps.min(steps)) / f64::from(steps) };
        largest_layers.sort_by_key(|layer| std::cmp::Reverse(layer.size_bytes));
        Self { steps, cached_steps, cache_efficiency, size_bytes, layer_count, largest_layers }
    }
}

/// A finished build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BuildResult {
    /// The image id (`sha256:…`).
    pub image_id: String,
    /// The tags it was given.
    pub tags: Vec<ImageRef>,
    /// What the build did.
    pub analysis: BuildAnalysis,
}

impl BuildResult {
    /// A result.
    pub fn new(image_id: impl Into<String>, tags: Vec<ImageRef>, analysis: BuildAnalysis) -> Self {
        Self { image_id: image_id.into(), tags, analysis }
    }
}

/// Progress of a build, streamed as it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum BuildEvent {
    /// A build step began.
    Step {
        /// The step number, from 1.
        index: u32,
        /// The step count, when known.
        total: Option<u32>,
        /// The instruction (`RUN cargo build --release`).
        instruction: String,
    },
    /// The step just begun was answered from the cache.
    Cached {
        /// The step number.
        index: u32,
    },
    /// A line of build output.
    Output {
        /// The line.
        line: String,
    },
    /// The build ended; always the last event of a successful stream.
    Finished {
        /// The result.
        result: BuildResult,
    },
}

/// A failed build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The context directory or the Dockerfile is missing.
    #[error("build input {path} not found")]
    InputNotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// A build step failed; `log_tail` holds its last lines of output.
    #[error("build step {step} failed: {message}")]
    StepFailed {
        /// The instruction that failed.
        step: String,
        /// The builder's message.
        message: String,
        /// The last lines of output before the failure.
        log_tail: Vec<String>,
    },
    /// The stream ended without a result.
    #[error("the build ended without producing an image")]
    NoResult,
    /// The builder's backend failed.
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

backend_error!(BuildError);

impl Classify for BuildError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InputNotFound { .. } => ErrorKind::NotFound,
            Self::StepFailed { .. } | Self::NoResult => ErrorKind::InvalidInput,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// Builds container images: Docker, BuildKit, the test kit.
#[async_trait]
pub trait ImageBuilder: Send + Sync {
    /// Starts a build and streams its progress. A successful stream ends with
    /// [`BuildEvent::Finished`]; a failure is an `Err` item, after which the stream
    /// ends. Dropping the stream abandons the build.
    fn build(&self, request: BuildRequest) -> BoxStream<'_, Result<BuildEvent, BuildError>>;

    /// Runs a build to its end, ignoring progress.
    async fn build_to_end(&self, request: BuildRequest) -> Result<BuildResult, BuildError> {
        let mut stream = self.build(request);
        while let Some(event) = stream.next().await {
            if let BuildEvent::Finished { result } = event? {
                return Ok(result);
            }
        }
        Err(BuildError::NoResult)
    }
}
