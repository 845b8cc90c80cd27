//! [`DockerImageBuilder`]: the engine's classic builder, or BuildKit (feature
//! `buildkit`), behind [`deploy_core::build::ImageBuilder`], with layer reuse from
//! cache images.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use deploy_core::build::{BuildAnalysis, BuildError, BuildEvent, BuildRequest, BuildResult, ImageBuilder, LayerInfo};
use deploy_core::error::ErrorKind;
use deploy_core::model::ImageRef;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{FutureExt, SinkExt, StreamExt};
use tracing::Instrument;

use crate::build_log::{BuildKitLog, BuildLog};
use crate::context::{ChunkSender, ContextError, ContextStats, pack_context};
use crate::error::{bollard_message, classify_bollard};

/// Which of the engine's builders runs a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BuilderBackend {
    /// The classic builder (API 1.41's `/build`), on every engine.
    #[default]
    Classic,
    /// BuildKit through a bollard session, on engines whose API is 1.39 or newer (it
    /// falls back to the classic builder, saying so in an `Output` event, on older
    /// ones). Its per-step cache state comes from BuildKit's own progress, not text.
    #[cfg(feature = "buildkit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "buildkit")))]
    BuildKit,
}

/// Settings of a [`DockerImageBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuilderConfig {
    /// How many lines of output a [`BuildError::StepFailed`] carries.
    pub log_tail_lines: usize,
    /// How many of the largest layers the analysis lists.
    pub largest_layers: usize,
    /// Images whose layers a build may reuse (`--cache-from`): a previous release,
    /// or a cache image pulled from a registry. With the classic builder, naming
    /// any makes the engine match steps against these images only (not the rest of
    /// its local cache); the images must be present in the engine. With BuildKit,
    /// they must carry inline cache metadata (see [`BuilderConfig::inline_cache`]).
    /// Default: none, the engine's local cache.
    pub cache_from: Vec<ImageRef>,
    /// Embed BuildKit's cache metadata in the built image (`BUILDKIT_INLINE_CACHE=1`),
    /// so that the image can serve as a `cache_from` source for later builds,
    /// elsewhere (the `cache-to` of `docker buildx` with `type=inline`). The classic
    /// builder needs no metadata and ignores the argument. Default: false.
    pub inline_cache: bool,
    /// The builder that runs builds. Default: [`BuilderBackend::Classic`].
    pub backend: BuilderBackend,
}

impl Default for BuilderConfig {
    fn default() -> Self {
        Self {
            log_tail_lines: 20,
            largest_layers: 5,
            cache_from: Vec::new(),
            inline_cache: false,
            backend: BuilderBackend::default(),
        }
    }
}

impl BuilderConfig {
    /// Sets how many lines of output a failed step carries.
    #[must_use]
    pub fn log_tail_lines(mut self, lines: usize) -> Self {
        self.log_tail_lines = lines;
        self
    }

    /// Sets how many of the largest layers the analysis lists.
    #[must_use]
    pub fn largest_layers(mut self, count: usize) -> Self {
        self.largest_layers = count;
        self
    }

    /// Adds an image whose layers builds may reuse (see [`BuilderConfig::cache_from`]).
    #[must_use]
    pub fn cache_from(mut self, image: ImageRef) -> Self {
        self.cache_from.push(image);
        self
    }

    /// Sets [`BuilderConfig::inline_cache`].
    #[must_use]
    pub fn inline_cache(mut self, inline: bool) -> Self {
        self.inline_cache = inline;
        self
    }

    /// Sets [`BuilderConfig::backend`].
    #[must_use]
    pub fn backend(mut self, backend: BuilderBackend) -> Self {
        self.backend = backend;
        self
    }
}

/// Where the build's progress is read from.
enum Progress {
    Classic(BuildLog),
    #[cfg_attr(not(feature = "buildkit"), expect(dead_code, reason = "only the BuildKit backend reads vertices"))]
    BuildKit(BuildKitLog),
}

impl Progress {
    fn steps(&self) -> u32 {
        match self {
            Self::Classic(log) => log.steps(),
            Self::BuildKit(log) => log.steps(),
        }
    }

    fn cached_steps(&self) -> u32 {
        match self {
            Self::Classic(log) => log.cached_steps(),
            Self::BuildKit(log) => log.cached_steps(),
        }
    }

    fn finish(&mut self) -> Vec<BuildEvent> {
        match self {
            Self::Classic(log) => log.finish(),
            Self::BuildKit(log) => log.finish(),
        }
    }

    /// The error of a failed step: the failed step, the message, the last output.
    fn step_failed(&mut self, message: String) -> BuildError {
        self.finish();
        let (step, log_tail) = match self {
            Self::Classic(log) => (log.current_step().map(str::to_owned), log.tail()),
            Self::BuildKit(log) => {
                (log.failed().map(|(step, _)| step.to_owned()).or(log.current_step().map(str::to_owned)), log.tail())
            }
        };
        BuildError::StepFailed { step: step.unwrap_or_else(|| "(before the first step)".to_owned()), message, log_tail }
    }
}

/// What a build stream item's `aux` carried.
enum Aux {
    ImageId(Option<String>),
    #[cfg(feature = "buildkit")]
    Status(bollard::moby::buildkit::v1::StatusResponse),
}

#[cfg(not(feature = "buildkit"))]
fn read_aux(aux: bollard::models::ImageId) -> Aux {
    Aux::ImageId(aux.id)
}

#[cfg(feature = "buildkit")]
fn read_aux(aux: bollard::models::BuildInfoAux) -> Aux {
    match aux {
        bollard::models::BuildInfoAux::Default(image) => Aux::ImageId(image.id),
        bollard::models::BuildInfoAux::BuildKit(status) => Aux::Status(status),
    }
}

/// The events of one BuildKit status message.
#[cfg(feature = "buildkit")]
fn buildkit_events(log: &mut BuildKitLog, status: &bollard::moby::buildkit::v1::StatusResponse) -> Vec<BuildEvent> {
    use crate::build_log::VertexUpdate;
    let mut events = Vec::new();
    for vertex in &status.vertexes {
        let update = VertexUpdate::new(&vertex.digest, &vertex.name)
            .cached(vertex.cached)
            .completed(vertex.completed.is_some())
            .error(&vertex.error);
        events.extend(log.vertex(update));
    }
    for line in &status.logs {
        events.extend(log.log(&line.msg));
    }
    events
}

/// Builds images with the engine's classic builder (API 1.41), or BuildKit (see
/// [`BuilderBackend`]).
///
/// The context is packed in memory honouring `.dockerignore` (see
/// [`crate::context::pack_context`]); the first tag is given by the build and the
/// others with `tag` afterwards. The result's analysis counts the steps (`FROM`
/// excepted: it makes no layer) and the steps answered from the cache, whose ratio
/// is the cache hit rate (1 for an unchanged rebuild), and reads the image's size,
/// layer count and largest layers from its inspect and history. Layers can come from
/// cache images ([`BuilderConfig::cache_from`]).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::build::{BuildRequest, ImageBuilder};
/// use deploy_core::model::ImageRef;
/// use deploy_docker::DockerImageBuilder;
///
/// let docker = deploy_docker::connect::connect(&Default::default()).await?;
/// let builder = DockerImageBuilder::new(docker.clone());
/// let result = builder
///     .build_to_end(BuildRequest::new("./service").tag(ImageRef::parse("localhost:5000/svc:1.0")?))
///     .await?;
/// println!("{} cached {:.0}%", result.image_id, result.analysis.cache_efficiency * 100.0);
///
/// // A CI runner with an empty cache: reuse the layers of the release it replaces.
/// let config = deploy_docker::BuilderConfig::default().cache_from(ImageRef::parse("localhost:5000/svc:0.9")?);
/// let builder = DockerImageBuilder::with_config(docker, config);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DockerImageBuilder {
    docker: Docker,
    config: BuilderConfig,
}

impl DockerImageBuilder {
    /// A builder with the default settings.
    pub fn new(docker: Docker) -> Self {
        Self::with_config(docker, BuilderConfig::default())
    }

    /// A builder with `config`.
    pub fn with_config(docker: Docker, config: BuilderConfig) -> Self {
        Self { docker, config }
    }

    async fn run(&self, request: BuildRequest, mut events: mpsc::Sender<Result<BuildEvent, BuildError>>) {
        let result = self.run_inner(&request, &mut events).await;
        let last = match result {
            Ok(result) => Ok(BuildEvent::Finished { result }),
            Err(error) => Err(error),
        };
        // A closed receiver means the caller dropped the stream: nothing to report to.
        let _ = events.send(last).await;
    }

    async fn run_inner(
        &self,
        request: &BuildRequest,
        events: &mut mpsc::Sender<Result<BuildEvent, BuildError>>,
    ) -> Result<BuildResult, BuildError> {
        // A context that cannot be packed at all fails before the engine is asked.
        let (context, dockerfile) = (request.context.clone(), request.dockerfile.clone());
        if !context.is_dir() || !context.join(&dockerfile).is_file() {
            let mut sink = std::io::sink();
            pack_context(&context, &dockerfile, &mut sink).map_err(context_error)?;
        }
        // The context streams to the engine while it is packed: 1 MiB chunks, at most
        // 4 in flight, whatever its size.
        let (mut sender, chunks) = ChunkSender::channel(1024 * 1024, 4);
        let packing = tokio::task::spawn_blocking(move || {
            let result = pack_context(&context, &dockerfile, &mut sender);
            match &result {
                Ok(_) => {
                    let _ = std::io::Write::flush(&mut sender);
                }
                Err(e) => sender.fail(std::io::Error::other(e.to_string())),
            }
            result
        });
        let body = futures::stream::unfold(chunks, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });

        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile(&dockerfile_in_context(&request.dockerfile))
            .nocache(request.no_cache)
            .rm(true)
            .forcerm(true);
        if let Some(first) = request.tags.first() {
            options = options.t(&first.familiar());
        }
        if let Some(target) = &request.target {
            options = options.target(target);
        }
        let mut args: HashMap<&str, &str> = request.build_args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if self.config.inline_cache {
            args.insert("BUILDKIT_INLINE_CACHE", "1");
        }
        if !args.is_empty() {
            options = options.buildargs(&args);
        }
        if !self.config.cache_from.is_empty() {
            let images: Vec<String> = self.config.cache_from.iter().map(ImageRef::familiar).collect();
            options = options.cachefrom(&images);
        }
        let mut progress = match self.buildkit_session().await {
            #[cfg(feature = "buildkit")]
            Some(session) => {
                options = options.version(bollard::query_parameters::BuilderVersion::BuilderBuildKit).session(&session);
                Progress::BuildKit(BuildKitLog::new(self.config.log_tail_lines))
            }
            _ => Progress::Classic(BuildLog::new(self.config.log_tail_lines)),
        };
        if !request.labels.is_empty() {
            let labels: HashMap<&str, &str> = request.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            options = options.labels(&labels);
        }

        let mut image_id = None;
        let mut stream = self.docker.build_image(options.build(), None, Some(bollard::body_try_stream(body)));
        let mut packing = Some(packing);
        while let Some(item) = stream.next().await {
            if item.is_err()
                && packing.as_ref().is_some_and(tokio::task::JoinHandle::is_finished)
                && let Some(handle) = packing.take()
            {
                // A packing failure explains a failed upload better than the upload error.
                packing_result(handle).await?;
            }
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => return Err(progress.step_failed(error)),
                Err(e) => return Err(build_backend("build the image", e)),
            };
            let mut new_events = Vec::new();
            match info.aux.map(read_aux) {
                Some(Aux::ImageId(Some(id))) => image_id = Some(id),
                #[cfg(feature = "buildkit")]
                Some(Aux::Status(status)) => {
                    if let Progress::BuildKit(log) = &mut progress {
                        new_events = buildkit_events(log, &status);
                    }
                }
                _ => {}
            }
            if let (Some(text), Progress::Classic(log)) = (info.stream, &mut progress) {
                new_events.extend(log.feed(&text));
            }
            for event in new_events {
                send(events, Ok(event)).await?;
            }
        }
        if let Some(handle) = packing.take() {
            packing_result(handle).await?;
        }
        for event in progress.finish() {
            send(events, Ok(event)).await?;
        }
        let built_id = match &progress {
            Progress::Classic(log) => log.built_id(),
            Progress::BuildKit(_) => None,
        };
        let image_id = match (image_id, built_id) {
            (Some(id), _) => id,
            (None, Some(short)) => short.to_owned(),
            (None, None) => return Err(BuildError::NoResult),
        };

        for tag in request.tags.iter().skip(1) {
            self.tag(&image_id, tag).await?;
        }
        let analysis = self.analyse(&image_id, &progress).await?;
        let inspect_id = self
            .docker
            .inspect_image(&image_id)
            .await
            .map_err(|e| build_backend("inspect the built image", e))?
            .id
            .unwrap_or(image_id);
        Ok(BuildResult::new(inspect_id, request.tags.clone(), analysis))
    }

    async fn tag(&self, image_id: &str, tag: &ImageRef) -> Result<(), BuildError> {
        let repo = tag.name();
        let mut options = TagImageOptionsBuilder::new().repo(&repo);
        if let Some(t) = tag.tag() {
            options = options.tag(t);
        }
        self.docker.tag_image(image_id, Some(options.build())).await.map_err(|e| build_backend("tag the image", e))
    }

    /// A session id when this build goes through BuildKit: the backend asks for it
    /// and the engine's API (1.39+) has it.
    async fn buildkit_session(&self) -> Option<String> {
        match self.config.backend {
            BuilderBackend::Classic => None,
            #[cfg(feature = "buildkit")]
            BuilderBackend::BuildKit => {
                let api = match self.docker.version().await {
                    Ok(version) => version.api_version.unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(error = %bollard_message(&e), "could not read the engine's version; using the classic builder");
                        return None;
                    }
                };
                if api_at_least(&api, 1, 39) {
                    Some(format!("deploy-rs-{:016x}", rand::random::<u64>()))
                } else {
                    tracing::warn!(engine.api = %api, "the engine has no BuildKit (API 1.39+); using the classic builder");
                    None
                }
            }
        }
    }

    async fn analyse(&self, image_id: &str, log: &Progress) -> Result<BuildAnalysis, BuildError> {
        let inspect = self.docker.inspect_image(image_id).await.map_err(|e| build_backend("inspect the image", e))?;
        let history =
            self.docker.image_history(image_id).await.map_err(|e| build_backend("read the image history", e))?;
        let size = inspect.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        let layer_count = inspect
            .root_fs
            .and_then(|fs| fs.layers)
            .map_or_else(|| history.iter().filter(|h| h.size > 0).count(), |layers| layers.len());
        let mut layers: Vec<LayerInfo> = history
            .into_iter()
            .filter(|h| h.size > 0)
            .map(|h| LayerInfo::new(h.created_by, u64::try_from(h.size).unwrap_or(0)))
            .collect();
        layers.sort_by_key(|layer| std::cmp::Reverse(layer.size_bytes));
        layers.truncate(self.config.largest_layers);
        Ok(BuildAnalysis::new(
            log.steps(),
            log.cached_steps(),
            size,
            u32::try_from(layer_count).unwrap_or(u32::MAX),
            layers,
        ))
    }
}

#[async_trait::async_trait]
impl ImageBuilder for DockerImageBuilder {
    fn build(&self, request: BuildRequest) -> BoxStream<'_, Result<BuildEvent, BuildError>> {
        let span = tracing::info_span!(
            "docker.build",
            build.context = %request.context.display(),
            build.tags = request.tags.len(),
        );
        let (sender, receiver) = mpsc::channel(64);
        let driver = self.run(request, sender).instrument(span);
        futures::stream::select(receiver.map(Some), driver.into_stream().map(|()| None))
            .filter_map(futures::future::ready)
            .boxed()
    }
}

async fn send(
    events: &mut mpsc::Sender<Result<BuildEvent, BuildError>>,
    event: Result<BuildEvent, BuildError>,
) -> Result<(), BuildError> {
    events.send(event).await.map_err(|e| BuildError::backend("report build progress", ErrorKind::Other, e))
}

/// Whether the API version `api` (`1.41`) is `major.minor` or newer.
#[cfg_attr(not(feature = "buildkit"), expect(dead_code, reason = "only the BuildKit backend checks the API"))]
fn api_at_least(api: &str, major: u32, minor: u32) -> bool {
    let mut parts = api.trim().split('.').map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(have_major), Some(have_minor)) => (have_major, have_minor) >= (major, minor),
        _ => false,
    }
}

fn dockerfile_in_context(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/").trim_start_matches("./").to_owned()
}

fn context_error(error: ContextError) -> BuildError {
    match error {
        ContextError::NotADirectory { path } | ContextError::DockerfileNotFound { path } => {
            BuildError::InputNotFound { path }
        }
        other @ ContextError::Ignore(_) => BuildError::backend("read .dockerignore", ErrorKind::InvalidInput, other),
        other => BuildError::backend("pack the build context", ErrorKind::Other, other),
    }
}

fn build_backend(operation: &str, error: bollard::errors::Error) -> BuildError {
    let kind = classify_bollard(&error);
    tracing::debug!(message = %bollard_message(&error), "docker build request failed");
    BuildError::backend(operation, kind, error)
}

/// The outcome of the packing task.
async fn packing_result(
    handle: tokio::task::JoinHandle<Result<ContextStats, ContextError>>,
) -> Result<ContextStats, BuildError> {
    handle.await.map_err(|e| BuildError::backend("pack the build context", ErrorKind::Other, e))?.map_err(context_error)
}
