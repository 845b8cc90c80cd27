//! [`DockerImageBuilder`]: the engine's classic builder behind
//! [`deploy_core::build::ImageBuilder`].

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

use crate::build_log::BuildLog;
use crate::context::{ChunkSender, ContextError, ContextStats, pack_context};
use crate::error::{bollard_message, classify_bollard};

/// Settings of a [`DockerImageBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuilderConfig {
    /// How many lines of output a [`BuildError::StepFailed`] carries.
    pub log_tail_lines: usize,
    /// How many of the largest layers the analysis lists.
    pub largest_layers: usize,
}

impl Default for BuilderConfig {
    fn default() -> Self {
        Self { log_tail_lines: 20, largest_layers: 5 }
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
}

/// Builds images with the engine's classic builder (API 1.41).
///
/// The context is packed in memory honouring `.dockerignore` (see
/// [`crate::context::pack_context`]); the first tag is given by the build and the
/// others with `tag` afterwards. The result's analysis counts the steps and the
/// steps answered from the cache, and reads the image's size, layer count and
/// largest layers from its inspect and history.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::build::{BuildRequest, ImageBuilder};
/// use deploy_core::model::ImageRef;
/// use deploy_docker::DockerImageBuilder;
///
/// let docker = deploy_docker::connect::connect(&Default::default()).await?;
/// let builder = DockerImageBuilder::new(docker);
/// let result = builder
///     .build_to_end(BuildRequest::new("./service").tag(ImageRef::parse("localhost:5000/svc:1.0")?))
///     .await?;
/// println!("{} cached {:.0}%", result.image_id, result.analysis.cache_efficiency * 100.0);
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
        if !request.build_args.is_empty() {
            let args: HashMap<&str, &str> = request.build_args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            options = options.buildargs(&args);
        }
        if !request.labels.is_empty() {
            let labels: HashMap<&str, &str> = request.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            options = options.labels(&labels);
        }

        let mut log = BuildLog::new(self.config.log_tail_lines);
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
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    log.finish();
                    return Err(BuildError::StepFailed {
                        step: log.current_step().unwrap_or("(before the first step)").to_owned(),
                        message: error,
                        log_tail: log.tail(),
                    });
                }
                Err(e) => return Err(build_backend("build the image", e)),
            };
            if let Some(id) = info.aux.and_then(|aux| aux.id) {
                image_id = Some(id);
            }
            if let Some(text) = info.stream {
                for event in log.feed(&text) {
                    send(events, Ok(event)).await?;
                }
            }
        }
        if let Some(handle) = packing.take() {
            packing_result(handle).await?;
        }
        for event in log.finish() {
            send(events, Ok(event)).await?;
        }
        let image_id = match (image_id, log.built_id()) {
            (Some(id), _) => id,
            (None, Some(short)) => short.to_owned(),
            (None, None) => return Err(BuildError::NoResult),
        };

        for tag in request.tags.iter().skip(1) {
            self.tag(&image_id, tag).await?;
        }
        let analysis = self.analyse(&image_id, &log).await?;
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

    async fn analyse(&self, image_id: &str, log: &BuildLog) -> Result<BuildAnalysis, BuildError> {
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
