//! [`DockerPlatform`]: each track of an application is a set of labelled containers
//! on one engine, behind [`deploy_core::platform::Platform`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use crate::NetworkName;
use bollard::Docker;
use deploy_core::error::{Classify, ErrorKind};
use deploy_core::hook::HookSpec;
use deploy_core::model::{AppId, AppSpec, Release, Track, Version};
use deploy_core::platform::{Platform, PlatformError, TrackStatus};
use deploy_core::secret::SecretManager;
use std::sync::Arc;
use tracing::instrument;

use crate::containers::{ContainerState, Containers, RestartPolicy};
use crate::endpoints::EndpointWatcher;
use crate::error::{DockerError, classify_bollard};
use crate::labels;
use crate::networks::Networks;
use crate::workload::Workload;

mod apply;
mod container_spec;
mod hooks;
mod readiness;
mod rollback;
#[cfg(test)]
mod tests;

use crate::events::{ContainerEvents, DockerEvents};
use container_spec::revision;
pub use readiness::ReadinessCounts;
use readiness::{Counters, Readiness};

/// How a probe becomes a command inside the container: `{port}` and `{path}` are
/// replaced. Docker runs health checks inside the container, so the image must
/// have the program (busybox and most distributions have `wget` and `nc`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeCommands {
    /// For HTTP probes.
    pub http: Vec<String>,
    /// For TCP probes.
    pub tcp: Vec<String>,
}

impl Default for ProbeCommands {
    fn default() -> Self {
        let words = |s: &str| s.split(' ').map(str::to_owned).collect();
        Self {
            http: words("CMD wget -q -O /dev/null http://127.0.0.1:{port}{path}"),
            tcp: words("CMD nc -z 127.0.0.1 {port}"),
        }
    }
}

/// Settings of a [`DockerPlatform`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlatformConfig {
    /// The network every container joins, with the DNS alias `<app>-<track>`;
    /// created when missing.
    pub network: String,
    /// The network where `NetworkAliasRouter` gives ready containers the
    /// alias `<app>`, when traffic is routed by alias; created when missing. New
    /// ready containers of the `stable` and `canary` tracks join it on their own
    /// (canary by replica ratio, as a Kubernetes Service selecting the app would),
    /// and so do new ready containers of a track whose containers already serve.
    pub serving_network: Option<String>,
    /// Labels put on every container and network the platform creates.
    pub labels: BTreeMap<String, String>,
    /// How probes become health-check commands.
    pub probe_commands: ProbeCommands,
    /// The restart policy of every container.
    pub restart: RestartPolicy,
    /// A container restarted this often is in a crash loop: its track failed.
    pub crash_loop_restarts: u32,
    /// How long a container without a health check must run before it counts as
    /// ready (Kubernetes' `minReadySeconds`): a process that crashes at once must
    /// not look ready between two restarts.
    pub min_ready: Duration,
    /// How often state is polled, by an in-place replacement inside
    /// [`Platform::apply`] and by [`Platform::wait_ready`], once the engine's event
    /// stream has dropped more than [`PlatformConfig::event_resubscribes`] times in
    /// a row (or with [`PlatformConfig::readiness_events`] off).
    pub poll_interval: Duration,
    /// How long an in-place rolling replacement inside [`Platform::apply`] may take.
    pub rollout_timeout: Duration,
    /// Pod-template settings per application (see [`Workload`]).
    pub workloads: BTreeMap<AppId, Workload>,
    /// Follow the engine's container events while waiting for readiness (on by
    /// default); polling every [`PlatformConfig::poll_interval`] is then only the
    /// fallback after the event stream drops for good. Off: poll only.
    pub readiness_events: bool,
    /// How many times in a row a wait subscribes to the engine's events again,
    /// from the time of the last event it saw (so none is lost), when the stream
    /// fails or ends without a new event in between; after that it polls. 3 by default.
    pub event_resubscribes: u32,
    /// How many lines of a failed hook container's log its error carries.
    pub hook_log_lines: u32,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            network: "deploy-rs".to_owned(),
            serving_network: None,
            labels: BTreeMap::new(),
            probe_commands: ProbeCommands::default(),
            restart: RestartPolicy::UnlessStopped,
            crash_loop_restarts: 3,
            min_ready: Duration::from_secs(2),
            poll_interval: Duration::from_millis(250),
            rollout_timeout: Duration::from_secs(300),
            workloads: BTreeMap::new(),
            readiness_events: true,
            event_resubscribes: 3,
            hook_log_lines: 20,
        }
    }
}

impl PlatformConfig {
    /// Sets the network.
    #[must_use]
    pub fn network(mut self, network: NetworkName) -> Self {
        self.network = network.as_str().to_owned();
        self
    }

    /// Sets the serving network.
    #[must_use]
    pub fn serving_network(mut self, network: NetworkName) -> Self {
        self.serving_network = Some(network.as_str().to_owned());
        self
    }

    /// Adds a label to everything the platform creates.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the restart policy.
    #[must_use]
    pub fn restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the crash-loop threshold.
    #[must_use]
    pub fn crash_loop_restarts(mut self, restarts: u32) -> Self {
        self.crash_loop_restarts = restarts;
        self
    }

    /// Sets how long a container without a health check must run to be ready.
    #[must_use]
    pub fn min_ready(mut self, min_ready: Duration) -> Self {
        self.min_ready = min_ready;
        self
    }

    /// Sets the poll interval.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets the in-place rollout timeout.
    #[must_use]
    pub fn rollout_timeout(mut self, timeout: Duration) -> Self {
        self.rollout_timeout = timeout;
        self
    }

    /// Sets the probe commands.
    #[must_use]
    pub fn probe_commands(mut self, commands: ProbeCommands) -> Self {
        self.probe_commands = commands;
        self
    }

    /// Sets the pod-template settings of `app`.
    #[must_use]
    pub fn workload(mut self, app: AppId, workload: Workload) -> Self {
        self.workloads.insert(app, workload);
        self
    }

    /// Turns following container events while waiting for readiness on or off.
    #[must_use]
    pub fn readiness_events(mut self, on: bool) -> Self {
        self.readiness_events = on;
        self
    }

    /// Sets how many times in a row a dropped event stream is subscribed again.
    #[must_use]
    pub fn event_resubscribes(mut self, attempts: u32) -> Self {
        self.event_resubscribes = attempts;
        self
    }
}

/// A Docker engine as a [`Platform`].
///
/// A track is the set of containers labelled with the application, the track, the
/// version and a revision hash (see [`crate::labels`]). Docker has no controller,
/// so the platform is one:
///
/// * [`Platform::apply`] on a track that runs another revision replaces its
///   containers in place, honouring `spec.rolling_update`: at most
///   `replicas + max_surge` containers exist and at least
///   `replicas - max_unavailable` are ready at every moment; it waits for new
///   containers to turn healthy before removing old ones, up to
///   [`PlatformConfig::rollout_timeout`]. On a new track it creates the containers
///   and returns without waiting.
/// * Readiness is Docker's health status (the readiness probe, else the liveness
///   probe, else the image's own `HEALTHCHECK`; a container without any is ready
///   when it has run for [`PlatformConfig::min_ready`]), followed through the
///   engine's events. An exited container, one restarted
///   [`PlatformConfig::crash_loop_restarts`] times, an unhealthy one and an
///   image that does not exist fail the track at once.
/// * [`Platform::scale`] to 0 stops the containers and keeps them.
/// * What of the spec and the app's [`Workload`] maps onto a container is
///   honoured (limits, user, entrypoint and args, mounts, hardening, secret env
///   through [`DockerPlatform::secrets`], the release's configuration snapshot);
///   what does not is refused by field name before anything is created.
/// * Hooks ([`Platform::run_hook`]) run as one-shot labelled containers.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_docker::NetworkName;
/// use deploy_docker::platform::{DockerPlatform, PlatformConfig};
/// let docker = deploy_docker::connect::connect(&Default::default()).await?;
/// let platform = DockerPlatform::new(
///     docker,
///     PlatformConfig::default().network(NetworkName::new("shop")?).serving_network(NetworkName::new("shop-edge")?),
/// );
/// # let _ = platform; Ok(()) }
/// ```
#[derive(Debug)]
pub struct DockerPlatform {
    docker: Docker,
    containers: Containers,
    networks: Networks,
    config: PlatformConfig,
    desired: Mutex<HashMap<(AppId, Track), u32>>,
    watcher: Watcher,
    secrets: Secrets,
    events: Arc<dyn ContainerEvents>,
    counters: Counters,
}

/// The optional [`SecretManager`] that secret environment variables are read from.
#[derive(Default)]
struct Secrets(Option<Arc<dyn SecretManager>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(SecretManager)" } else { "None" })
    }
}

/// The optional [`EndpointWatcher`], told before containers that may serve go.
#[derive(Default)]
struct Watcher(Option<Arc<dyn EndpointWatcher>>);

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(EndpointWatcher)" } else { "None" })
    }
}

/// One container of a track, with the labels that place it.
#[derive(Debug, Clone)]
struct Member {
    state: ContainerState,
    revision: String,
    version: Option<Version>,
}

impl DockerPlatform {
    /// A platform on `docker`.
    pub fn new(docker: Docker, config: PlatformConfig) -> Self {
        Self {
            containers: Containers::new(docker.clone()),
            networks: Networks::new(docker.clone()),
            config,
            desired: Mutex::new(HashMap::new()),
            watcher: Watcher::default(),
            secrets: Secrets::default(),
            events: Arc::new(DockerEvents::new(docker.clone())),
            counters: Counters::default(),
            docker,
        }
    }

    /// Reads the engine's events from `events` instead of from the engine's own
    /// stream ([`DockerEvents`]): for a source that wraps it (to record or to cut
    /// the stream in a test).
    #[must_use]
    pub fn event_source(mut self, events: Arc<dyn ContainerEvents>) -> Self {
        self.events = events;
        self
    }

    /// Reads environment variables that reference a secret
    /// ([`EnvVar::from_secret`](deploy_core::model::EnvVar::from_secret)) from `secrets`, under the key `<secret>/<key>`, when
    /// a container is created (the app's and a hook's). Values reach only the
    /// engine's container config, never a log, an error or the revision hash; a
    /// replica added by a later scale copies its sibling's values, so a rotated
    /// secret reaches the containers with the next release. Without a manager such
    /// variables are refused.
    #[must_use]
    pub fn secrets(mut self, secrets: Arc<dyn SecretManager>) -> Self {
        self.secrets = Secrets(Some(secrets));
        self
    }

    /// Tells `watcher` (an [`NginxDrain`](crate::endpoints::NginxDrain)) which
    /// containers are about to be removed, and waits for it, before any container
    /// is removed by a rolling replacement or a scale-down: a proxy that addresses
    /// containers by their published ports then stops using them first.
    #[must_use]
    pub fn endpoint_watcher(mut self, watcher: Arc<dyn EndpointWatcher>) -> Self {
        self.watcher = Watcher(Some(watcher));
        self
    }

    async fn draining(&self, app: &AppId, track: Track, ids: &[String]) -> Result<(), PlatformError> {
        match (&self.watcher.0, ids.is_empty()) {
            (Some(watcher), false) => watcher
                .leaving(app, track, ids)
                .await
                .map_err(|e| PlatformError::backend("take leaving containers out of the proxy", e.kind(), e)),
            _ => Ok(()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PlatformConfig {
        &self.config
    }

    /// The DNS alias of one track on the platform network: `<app>-<track>`.
    pub fn track_alias(app: &AppId, track: Track) -> String {
        format!("{}-{}", app.name, track.as_str())
    }

    /// Removes every container of `app`, all tracks.
    #[instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn remove_app(&self, app: &AppId) -> Result<(), PlatformError> {
        for track in Track::ALL {
            self.remove(app, track).await?;
        }
        Ok(())
    }

    /// Removes every container the platform created (any app) and its networks,
    /// when they carry [`PlatformConfig::labels`]. Refuses to run without labels,
    /// which would select every managed object on the engine.
    #[instrument(skip_all, err)]
    pub async fn remove_everything_labelled(&self) -> Result<crate::containers::CleanupReport, PlatformError> {
        if self.config.labels.is_empty() {
            return Err(PlatformError::backend(
                "remove labelled objects",
                ErrorKind::InvalidInput,
                "the platform has no labels of its own to select by",
            ));
        }
        self.containers.remove_labelled(&self.config.labels).await.map_err(|e| platform_error("clean up", e))
    }

    fn set_desired(&self, app: &AppId, track: Track, replicas: Option<u32>) {
        if let Ok(mut desired) = self.desired.lock() {
            match replicas {
                Some(n) => desired.insert((app.clone(), track), n),
                None => desired.remove(&(app.clone(), track)),
            };
        }
    }

    fn known_desired(&self, app: &AppId, track: Track) -> Option<u32> {
        self.desired.lock().ok().and_then(|d| d.get(&(app.clone(), track)).copied())
    }

    async fn members(&self, app: &AppId, track: Track) -> Result<Vec<Member>, PlatformError> {
        let ids = self
            .containers
            .list(&labels::track_selector(app, track))
            .await
            .map_err(|e| platform_error("list containers", e))?;
        let mut members = Vec::with_capacity(ids.len());
        for id in ids {
            let state = match self.containers.state(&id).await {
                Ok(state) => state,
                // Removed between the list and the inspect.
                Err(DockerError::NotFound { .. }) => continue,
                Err(e) => return Err(platform_error("inspect container", e)),
            };
            let revision = state.labels.get(labels::REVISION).cloned().unwrap_or_default();
            let version = state.labels.get(labels::VERSION).and_then(|v| Version::new(v.as_str()).ok());
            members.push(Member { state, revision, version });
        }
        Ok(members)
    }
}

#[async_trait::async_trait]
impl Platform for DockerPlatform {
    #[instrument(skip_all, fields(deploy.app = %spec.id(), deploy.track = %track, release.version = %release.version, replicas), err)]
    async fn apply(&self, spec: &AppSpec, track: Track, release: &Release, replicas: u32) -> Result<(), PlatformError> {
        let app = spec.id();
        let snapshot = self.release_snapshot(&app, release).await?;
        let env = snapshot.as_ref().and_then(|s| s.env.as_deref()).unwrap_or(&spec.env);
        let revision = revision(spec, env, release, self.config.workloads.get(&app));
        let container = self.container_spec(spec, env, snapshot.as_ref(), track, release, &revision).await?;
        self.ensure_networks().await?;
        self.ensure_image(&app, track, release).await?;
        self.set_desired(&app, track, Some(replicas));
        self.rolling_replace(spec, track, &container, &revision, replicas).await
    }

    #[instrument(skip_all, fields(deploy.app = %app, deploy.track = %track, replicas), err)]
    async fn scale(&self, app: &AppId, track: Track, replicas: u32) -> Result<(), PlatformError> {
        let members = self.members(app, track).await?;
        let Some(newest) = members.last() else {
            return Err(PlatformError::NotFound { app: app.clone(), track });
        };
        self.set_desired(app, track, Some(replicas));
        if replicas == 0 {
            for member in &members {
                self.docker
                    .stop_container(&member.state.id, None::<bollard::query_parameters::StopContainerOptions>)
                    .await
                    .or_else(|e| if crate::error::is_not_found(&e) { Ok(()) } else { Err(e) })
                    .map_err(|e| PlatformError::backend("stop container", classify_bollard(&e), e))?;
            }
            return Ok(());
        }
        let template = self.template_of(newest)?;
        let current: Vec<Member> = members.iter().filter(|m| m.revision == newest.revision).cloned().collect();
        self.converge(app, track, &template, &current, replicas).await
    }

    /// Follows the engine's events for the track's containers (`health_status`,
    /// `die`, `start`, ...) and re-reads the track on each one, instead of polling;
    /// a container without a health check is re-read when its
    /// [`PlatformConfig::min_ready`] has passed. When the event stream fails or
    /// ends, the wait subscribes again from the time of the last event it saw, up
    /// to [`PlatformConfig::event_resubscribes`] times in a row; then it goes on by
    /// polling every [`PlatformConfig::poll_interval`] (logged as a warning).
    /// [`DockerPlatform::readiness_counts`] says which of these happened.
    #[instrument(skip_all, fields(deploy.app = %app, deploy.track = %track), err)]
    async fn wait_ready(&self, app: &AppId, track: Track, deadline: Duration) -> Result<(), PlatformError> {
        self.wait_track_ready(app, track, deadline).await
    }

    async fn status(&self, app: &AppId, track: Track) -> Result<TrackStatus, PlatformError> {
        let members = self.members(app, track).await?;
        Ok(self.status_of(app, track, &members))
    }

    #[instrument(skip_all, fields(deploy.app = %app, deploy.track = %track), err)]
    async fn remove(&self, app: &AppId, track: Track) -> Result<(), PlatformError> {
        let ids = self
            .containers
            .list(&labels::track_selector(app, track))
            .await
            .map_err(|e| platform_error("list containers", e))?;
        for id in ids {
            self.remove_container(&id).await?;
        }
        self.set_desired(app, track, None);
        Ok(())
    }

    fn supports_hooks(&self) -> bool {
        true
    }

    /// Runs the hook as a one-shot container on the platform network, labelled
    /// as the platform's and with [`labels::HOOK`]: its image (pulled when
    /// missing), its command as the entrypoint, its environment (secrets through
    /// [`DockerPlatform::secrets`]), never restarted by the engine. Exit code 0
    /// is success; another code is a failed run, retried as a fresh container up to
    /// `hook.retries` times; the whole hook must end within `hook.deadline`. Every
    /// run's container is removed once it ended and its log was read (Docker has
    /// no TTL controller, so `keep_for` is not honoured: the failed run's log tail
    /// is in [`PlatformError::HookFailed`] instead, at most
    /// [`PlatformConfig::hook_log_lines`] lines and 4 KiB).
    #[instrument(skip_all, fields(deploy.app = %app, hook = %hook.name), err)]
    async fn run_hook(&self, app: &AppId, hook: &HookSpec) -> Result<(), PlatformError> {
        self.run_hook_containers(app, hook).await
    }
}

/// Whether the container has `alias` on `network`.
pub(crate) fn serves(state: &ContainerState, network: &str, alias: &str) -> bool {
    state.network_aliases.get(network).is_some_and(|aliases| aliases.iter().any(|a| a == alias))
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim()
}

/// `<namespace>-<app>-<track>-<8 hex>`: unique, and readable in `docker ps`.
fn container_name(app: &AppId, track: Track) -> String {
    format!("{}-{}-{}-{:08x}", app.namespace, app.name, track.as_str(), rand::random::<u32>())
}

fn platform_error(operation: &str, error: DockerError) -> PlatformError {
    use deploy_core::error::Classify;
    let kind = error.kind();
    PlatformError::backend(operation, kind, error)
}
