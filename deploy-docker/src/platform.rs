//! [`DockerPlatform`]: each track of an application is a set of labelled containers
//! on one engine, behind [`deploy_core::platform::Platform`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use deploy_core::error::{Classify, ErrorKind};
use deploy_core::hook::HookSpec;
use deploy_core::model::app::EnvSource;
use deploy_core::model::{
    AppId, AppSpec, EnvVar, ImageRef, Probe, ProbeAction, Release, Track, ValidationError, ValidationErrors, Version,
};
use deploy_core::platform::{Platform, PlatformError, TrackState, TrackStatus};
use deploy_core::secret::{SecretError, SecretManager};
use futures::StreamExt;
use std::sync::Arc;
use tracing::instrument;

use crate::containers::{
    ContainerSpec, ContainerState, Containers, Hardening, Health, HealthCheck, Limits, LogOptions, Mount, MountSource,
    PortMapping, RestartPolicy,
};
use crate::endpoints::EndpointWatcher;
use crate::error::{DockerError, bollard_message, classify_bollard};
use crate::labels;
use crate::networks::{NetworkSpec, Networks};
use crate::workload::Workload;

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
    /// The network where [`crate::NetworkAliasRouter`] gives ready containers the
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
    /// How often state is polled: by an in-place replacement inside
    /// [`Platform::apply`], and by [`Platform::wait_ready`] once the engine's event
    /// stream has dropped (or with [`PlatformConfig::readiness_events`] off).
    pub poll_interval: Duration,
    /// How long an in-place rolling replacement inside [`Platform::apply`] may take.
    pub rollout_timeout: Duration,
    /// Pod-template settings per application (see [`Workload`]).
    pub workloads: BTreeMap<AppId, Workload>,
    /// Follow the engine's container events while waiting for readiness (on by
    /// default); polling every [`PlatformConfig::poll_interval`] is then only the
    /// fallback after the event stream drops. Off: poll only.
    pub readiness_events: bool,
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
            hook_log_lines: 20,
        }
    }
}

impl PlatformConfig {
    /// Sets the network.
    #[must_use]
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }

    /// Sets the serving network.
    #[must_use]
    pub fn serving_network(mut self, network: impl Into<String>) -> Self {
        self.serving_network = Some(network.into());
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
/// use deploy_docker::platform::{DockerPlatform, PlatformConfig};
/// let docker = deploy_docker::connect::connect(&Default::default()).await?;
/// let platform = DockerPlatform::new(docker, PlatformConfig::default().network("shop").serving_network("shop-edge"));
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

/// Why an image could not be made present.
enum Pull {
    /// The registry does not have it.
    Missing(String),
    /// Anything else.
    Failed(PlatformError),
}

enum Readiness {
    Ready,
    Pending,
    Doomed(String),
}

impl DockerPlatform {
    /// A platform on `docker`.
    pub fn new(docker: Docker, config: PlatformConfig) -> Self {
        Self {
            containers: Containers::new(docker.clone()),
            networks: Networks::new(docker.clone()),
            docker,
            config,
            desired: Mutex::new(HashMap::new()),
            watcher: Watcher::default(),
            secrets: Secrets::default(),
        }
    }

    /// Reads environment variables that reference a secret
    /// ([`EnvVar::from_secret`]) from `secrets`, under the key `<secret>/<key>`, when
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

    fn readiness(&self, state: &ContainerState) -> Readiness {
        if state.restart_count >= self.config.crash_loop_restarts {
            return Readiness::Doomed(format!(
                "container {} restarted {} times (crash loop, last exit code {})",
                state.name, state.restart_count, state.exit_code
            ));
        }
        if state.exited {
            let error = state.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
            return Readiness::Doomed(format!("container {} exited with code {}{error}", state.name, state.exit_code));
        }
        if !state.running {
            return Readiness::Pending;
        }
        match &state.health {
            Health::Healthy => Readiness::Ready,
            Health::None => {
                let ran_for = state.started_at.map(|t| jiff::Timestamp::now().duration_since(t));
                let min_ready =
                    jiff::SignedDuration::try_from(self.config.min_ready).unwrap_or(jiff::SignedDuration::MAX);
                if ran_for.is_some_and(|d| d >= min_ready) { Readiness::Ready } else { Readiness::Pending }
            }
            Health::Starting => Readiness::Pending,
            Health::Unhealthy { output } => {
                Readiness::Doomed(format!("container {} is unhealthy: {}", state.name, first_line(output)))
            }
        }
    }

    /// Makes sure the image is on the engine, pulling it when it is not; an image
    /// that the registry does not have dooms the track.
    async fn ensure_image(&self, app: &AppId, track: Track, release: &Release) -> Result<(), PlatformError> {
        match self.pull_if_missing(&release.image).await {
            Ok(()) => Ok(()),
            Err(Pull::Missing(reason)) => Err(PlatformError::Doomed { app: app.clone(), track, reason }),
            Err(Pull::Failed(e)) => Err(e),
        }
    }

    async fn pull_if_missing(&self, image_ref: &ImageRef) -> Result<(), Pull> {
        let image = image_ref.familiar();
        match self.docker.inspect_image(&image).await {
            Ok(_) => return Ok(()),
            Err(e) if classify_bollard(&e) == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Pull::Failed(PlatformError::backend(
                    format!("inspect image {image}"),
                    classify_bollard(&e),
                    e,
                )));
            }
        }
        let mut options = CreateImageOptionsBuilder::new().from_image(&image_ref.name());
        if let Some(tag) = image_ref.tag() {
            options = options.tag(tag);
        }
        if let Some(digest) = image_ref.digest() {
            options = CreateImageOptionsBuilder::new().from_image(&format!("{}@{digest}", image_ref.name()));
        }
        let mut pull = self.docker.create_image(Some(options.build()), None, None);
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                let message = bollard_message(&e);
                let lower = message.to_ascii_lowercase();
                let missing =
                    ["not found", "manifest unknown", "does not exist", "pull access denied", "no such image"];
                if missing.iter().any(|m| lower.contains(m)) {
                    return Err(Pull::Missing(format!("image {image} does not exist: {message}")));
                }
                let kind = match classify_bollard(&e) {
                    ErrorKind::Other => ErrorKind::Unavailable,
                    kind => kind,
                };
                return Err(Pull::Failed(PlatformError::backend(format!("pull image {image}"), kind, e)));
            }
        }
        Ok(())
    }

    /// The container of one replica of `track`, with everything of `spec` and the
    /// app's [`Workload`] that maps onto a container; what does not map is refused
    /// here, by name, before anything is created.
    async fn container_spec(
        &self,
        spec: &AppSpec,
        track: Track,
        release: &Release,
        revision: &str,
    ) -> Result<ContainerSpec, PlatformError> {
        let app = spec.id();
        let mut errors = ValidationErrors::new();
        let workload = self.config.workloads.get(&app).cloned().unwrap_or_default();
        refuse_unmappable(spec, &workload, &mut errors);
        let mut container = ContainerSpec::new(container_name(&app, track), release.image.familiar())
            .network(self.config.network.clone(), [Self::track_alias(&app, track)])
            .restart(self.config.restart)
            .labels(self.config.labels.clone())
            .labels(spec.labels.clone())
            .labels(labels::track_selector(&app, track))
            .label(labels::VERSION, release.version.as_str())
            .label(labels::REVISION, revision);
        // Published on loopback only: a proxy on the host (NginxRouter) reaches them.
        for port in &spec.ports {
            container = container.port(PortMapping::loopback(port.container_port));
        }
        if !spec.ports.is_empty() {
            let list: Vec<String> = spec.ports.iter().map(|p| p.container_port.to_string()).collect();
            container = container.label(labels::PORTS, list.join(","));
        }
        for (name, value) in self.resolve_env(&spec.env, "env", &mut errors).await? {
            container = container.env(name, value);
        }
        if let Some(probe) = spec.readiness.as_ref().or(spec.liveness.as_ref()).or(spec.startup.as_ref()) {
            let mut check = self.health_check(probe);
            // A startup probe holds the others back: its whole budget is the grace period.
            if let Some(startup) = &spec.startup {
                let budget = startup.initial_delay.as_duration()
                    + startup.period.as_duration().saturating_mul(startup.failure_threshold.max(1));
                check.start_period = check.start_period.max(budget);
            }
            container = container.health(check);
        }
        container = container.limits(limits(spec)).hardening(hardening(spec));
        if let Some(command) = &workload.command {
            container = container.entrypoint(command.clone());
        }
        if let Some(args) = &workload.args {
            container = container.command(args.clone());
        }
        for mount in &workload.mounts {
            container = container.mount(mount.clone());
        }
        if let (Some(target), Some(id)) = (&workload.config_mount, &release.config_checksum) {
            let snapshots = crate::config_files::ConfigSnapshots::new(self.docker.clone(), self.config.labels.clone());
            match snapshots.exists(&app, id).await {
                Ok(true) => {
                    let volume = crate::config_files::volume_name(&app, id);
                    container = container.mount(Mount::new(MountSource::Volume(volume), target.clone()).read_only());
                }
                Ok(false) => errors.push(ValidationError::new(
                    "release.config_checksum",
                    id.clone(),
                    "no configuration snapshot of the app has this id; publish it with ConfigSnapshots first",
                )),
                Err(e) => return Err(platform_error("look up the release's configuration snapshot", e)),
            }
        }
        if let Some(uid) = spec.pod_security.run_as_user {
            let user = match spec.pod_security.run_as_group {
                Some(gid) => format!("{uid}:{gid}"),
                None => uid.to_string(),
            };
            container = container.user(user);
        }
        errors.into_result(container).map_err(|errors| PlatformError::Invalid { app, errors })
    }

    /// Literal values as they are, secret references read from the manager;
    /// config map references and secrets without a manager are refused into `errors`.
    async fn resolve_env(
        &self,
        vars: &[EnvVar],
        field: &str,
        errors: &mut ValidationErrors,
    ) -> Result<Vec<(String, String)>, PlatformError> {
        let mut resolved = Vec::with_capacity(vars.len());
        for var in vars {
            match &var.source {
                EnvSource::Value(value) => resolved.push((var.name.clone(), value.clone())),
                EnvSource::Secret { name, key } => {
                    let Some(manager) = &self.secrets.0 else {
                        errors.push(ValidationError::new(
                            format!("{field}.{}", var.name),
                            "secret reference",
                            "the Docker platform has no SecretManager to read it from (DockerPlatform::secrets)",
                        ));
                        continue;
                    };
                    let path = format!("{name}/{key}");
                    match manager.get(&path).await {
                        Ok(secret) => match secret.value.expose_str() {
                            Ok(text) => resolved.push((var.name.clone(), text.to_owned())),
                            Err(_) => errors.push(ValidationError::new(
                                format!("{field}.{}", var.name),
                                path,
                                "the secret is not UTF-8 text",
                            )),
                        },
                        Err(SecretError::NotFound { .. }) => errors.push(ValidationError::new(
                            format!("{field}.{}", var.name),
                            path,
                            "no such secret in the secret manager",
                        )),
                        Err(e) => {
                            let kind = e.kind();
                            return Err(PlatformError::backend(format!("read secret {path}"), kind, e));
                        }
                    }
                }
                EnvSource::ConfigMap { .. } => errors.push(ValidationError::new(
                    format!("{field}.{}", var.name),
                    "config map reference",
                    "Docker has no config maps: use literal values, or configuration files (Workload::config_mount)",
                )),
                _ => errors.push(ValidationError::new(
                    format!("{field}.{}", var.name),
                    "unknown source",
                    "the Docker platform cannot read this kind of value",
                )),
            }
        }
        Ok(resolved)
    }

    fn health_check(&self, probe: &Probe) -> HealthCheck {
        let fill = |template: &[String], port: u16, path: &str| -> Vec<String> {
            template.iter().map(|w| w.replace("{port}", &port.to_string()).replace("{path}", path)).collect()
        };
        let test = match &probe.action {
            ProbeAction::Http { path, port } => fill(&self.config.probe_commands.http, *port, path),
            ProbeAction::Tcp { port } => fill(&self.config.probe_commands.tcp, *port, ""),
            ProbeAction::Exec { command } => std::iter::once("CMD".to_owned()).chain(command.iter().cloned()).collect(),
            _ => Vec::new(),
        };
        let mut check = HealthCheck::new(test).interval(probe.period.as_duration()).retries(probe.failure_threshold);
        check.timeout = probe.timeout.as_duration();
        check.start_period = probe.initial_delay.as_duration();
        check
    }

    async fn ensure_networks(&self) -> Result<(), PlatformError> {
        let names = std::iter::once(&self.config.network).chain(self.config.serving_network.as_ref());
        for name in names {
            self.networks
                .ensure(&NetworkSpec::new(name.clone()).labels(self.config.labels.clone()))
                .await
                .map_err(|e| platform_error("create network", e))?;
        }
        Ok(())
    }

    async fn start_one(&self, spec: &ContainerSpec, app: &AppId, track: Track) -> Result<(), PlatformError> {
        let mut spec = spec.clone();
        spec.name = container_name(app, track);
        match self.containers.run(&spec).await {
            Ok(_) => Ok(()),
            Err(DockerError::NotFound { what }) => {
                Err(PlatformError::Doomed { app: app.clone(), track, reason: format!("{what} does not exist") })
            }
            Err(e) => Err(platform_error("run container", e)),
        }
    }

    /// The serving network's aliases `state` should get once ready, if any.
    fn serving_aliases(&self, app: &AppId, track: Track, members: &[Member]) -> Option<(String, Vec<String>)> {
        let network = self.config.serving_network.clone()?;
        let alias = app.name.to_string();
        let track_serves = members.iter().any(|m| serves(&m.state, &network, &alias));
        let automatic = matches!(track, Track::Stable | Track::Canary);
        (automatic || track_serves).then(|| (network, vec![alias]))
    }

    /// Gives ready members that should serve their serving alias.
    async fn join_serving(&self, app: &AppId, track: Track, members: &[Member]) -> Result<(), PlatformError> {
        let Some((network, aliases)) = self.serving_aliases(app, track, members) else { return Ok(()) };
        for member in members {
            let ready = matches!(self.readiness(&member.state), Readiness::Ready);
            if ready && !member.state.network_aliases.contains_key(&network) {
                self.networks
                    .connect(&network, &member.state.id, &aliases)
                    .await
                    .map_err(|e| platform_error("attach a ready container to the serving network", e))?;
            }
        }
        Ok(())
    }

    async fn rolling_replace(
        &self,
        spec: &AppSpec,
        track: Track,
        container: &ContainerSpec,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let app = spec.id();
        let (surge, unavailable) = spec.rolling_update.resolve(replicas);
        let deadline = Instant::now() + self.config.rollout_timeout;
        loop {
            let members = self.members(&app, track).await?;
            let (new, old): (Vec<&Member>, Vec<&Member>) = members.iter().partition(|m| m.revision == revision);
            for member in &new {
                if let Readiness::Doomed(reason) = self.readiness(&member.state) {
                    return Err(PlatformError::Doomed { app: app.clone(), track, reason });
                }
            }
            let total = u32::try_from(members.len()).unwrap_or(u32::MAX);
            let count = |list: &[&Member]| u32::try_from(list.len()).unwrap_or(u32::MAX);
            let ready = |list: &[&Member]| {
                u32::try_from(list.iter().filter(|m| matches!(self.readiness(&m.state), Readiness::Ready)).count())
                    .unwrap_or(u32::MAX)
            };
            if old.is_empty() {
                return self.converge(&app, track, container, &members, replicas).await;
            }
            // New ready containers serve where the old ones did before any old one goes.
            self.join_serving(&app, track, &members).await?;

            let mut acted = false;
            let room = (replicas + surge).saturating_sub(total);
            let to_create = room.min(replicas.saturating_sub(count(&new)));
            for _ in 0..to_create {
                self.start_one(container, &app, track).await?;
                acted = true;
            }
            // Old containers that are not ready cost no availability: they go first.
            let (old_ready, old_unready): (Vec<&&Member>, Vec<&&Member>) =
                old.iter().partition(|m| matches!(self.readiness(&m.state), Readiness::Ready));
            let available = ready(&new) + u32::try_from(old_ready.len()).unwrap_or(u32::MAX);
            let removable = available.saturating_sub(replicas.saturating_sub(unavailable));
            let removable = usize::try_from(removable).unwrap_or(usize::MAX).min(old_ready.len());
            let leaving: Vec<String> =
                old_unready.iter().chain(old_ready.iter().take(removable)).map(|m| m.state.id.clone()).collect();
            self.draining(&app, track, &leaving).await?;
            for member in &old_unready {
                self.remove_container(&member.state.id).await?;
                acted = true;
            }
            for member in old_ready.iter().take(removable) {
                self.remove_container(&member.state.id).await?;
                acted = true;
            }
            if !acted {
                if Instant::now() >= deadline {
                    return Err(PlatformError::Timeout {
                        app,
                        track,
                        after: self.config.rollout_timeout,
                        reason: format!("{} of {replicas} new containers ready, {} old left", ready(&new), old.len()),
                    });
                }
                tokio::time::sleep(self.config.poll_interval).await;
            }
        }
    }

    /// Brings a track whose containers all run the current revision to `replicas`.
    async fn converge(
        &self,
        app: &AppId,
        track: Track,
        container: &ContainerSpec,
        members: &[Member],
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let target = usize::try_from(replicas).unwrap_or(usize::MAX);
        // Stopped containers (a scale to 0) are replaced by fresh ones.
        let mut live = Vec::new();
        for member in members {
            if member.state.running || member.state.restarting {
                live.push(member);
            } else {
                self.remove_container(&member.state.id).await?;
            }
        }
        for _ in live.len()..target {
            self.start_one(container, app, track).await?;
        }
        // The newest go first when scaling down: the oldest have proven themselves.
        let leaving: Vec<String> = live.iter().skip(target).map(|m| m.state.id.clone()).collect();
        self.draining(app, track, &leaving).await?;
        for member in live.iter().skip(target).rev() {
            self.remove_container(&member.state.id).await?;
        }
        Ok(())
    }

    /// The status of a track from its members.
    fn status_of(&self, app: &AppId, track: Track, members: &[Member]) -> TrackStatus {
        let Some(newest) = members.last() else { return TrackStatus::absent() };
        let current: Vec<&Member> = members.iter().filter(|m| m.revision == newest.revision).collect();
        let stopped_by_scale =
            |m: &&Member| !m.state.running && !m.state.restarting && matches!(m.state.exit_code, 0 | 137 | 143);
        let desired = self.known_desired(app, track).unwrap_or_else(|| {
            u32::try_from(current.iter().filter(|m| !stopped_by_scale(m)).count()).unwrap_or(u32::MAX)
        });
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let ready = count(members.iter().filter(|m| matches!(self.readiness(&m.state), Readiness::Ready)).count());
        let updated = count(current.len());
        let updated_ready =
            count(current.iter().filter(|m| matches!(self.readiness(&m.state), Readiness::Ready)).count());
        let state = if desired == 0 {
            TrackState::Ready
        } else if let Some(reason) = current.iter().find_map(|m| match self.readiness(&m.state) {
            Readiness::Doomed(reason) => Some(reason),
            _ => None,
        }) {
            TrackState::Failed(reason)
        } else if updated == desired && updated_ready == desired && count(members.len()) == desired {
            TrackState::Ready
        } else {
            TrackState::Progressing
        };
        TrackStatus::new(newest.version.clone(), desired, updated, ready, ready, state)
    }

    /// When a waiting track must be re-read without an event: once the youngest
    /// running container without a health check has run for
    /// [`PlatformConfig::min_ready`]; otherwise after a long safety interval.
    fn recheck_after(&self, members: &[Member]) -> Duration {
        const SAFETY: Duration = Duration::from_secs(5);
        let now = jiff::Timestamp::now();
        members
            .iter()
            .filter(|m| m.state.running && m.state.health == Health::None)
            .filter_map(|m| m.state.started_at)
            .map(|t| Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO))
            // Only those still waiting on the clock: one that is ready already needs no wake-up.
            .filter(|ran| *ran < self.config.min_ready)
            .map(|ran| self.config.min_ready.saturating_sub(ran) + Duration::from_millis(20))
            .min()
            .unwrap_or(SAFETY)
            .min(SAFETY)
    }

    /// The engine's events about the track's containers.
    fn track_events(
        &self,
        app: &AppId,
        track: Track,
    ) -> std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<bollard::models::EventMessage, bollard::errors::Error>> + Send>,
    > {
        let mut filters = crate::containers::label_filters(&labels::track_selector(app, track));
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        // Not the exec events of every health check run: only changes of state.
        let changes = ["health_status", "start", "restart", "die", "oom", "stop", "kill", "destroy", "create"];
        filters.insert("event".to_owned(), changes.iter().map(|e| (*e).to_owned()).collect());
        let options = bollard::query_parameters::EventsOptionsBuilder::new().filters(&filters).build();
        Box::pin(self.docker.events(Some(options)))
    }

    async fn remove_container(&self, id: &str) -> Result<(), PlatformError> {
        self.containers.remove(id).await.map_err(|e| platform_error("remove container", e))
    }
}

#[async_trait::async_trait]
impl Platform for DockerPlatform {
    #[instrument(skip_all, fields(deploy.app = %spec.id(), deploy.track = %track, release.version = %release.version, replicas), err)]
    async fn apply(&self, spec: &AppSpec, track: Track, release: &Release, replicas: u32) -> Result<(), PlatformError> {
        let app = spec.id();
        let revision = revision(spec, release, self.config.workloads.get(&app));
        let container = self.container_spec(spec, track, release, &revision).await?;
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
    /// ends, the wait goes on by polling every [`PlatformConfig::poll_interval`]
    /// (logged once as a warning).
    #[instrument(skip_all, fields(deploy.app = %app, deploy.track = %track), err)]
    async fn wait_ready(&self, app: &AppId, track: Track, deadline: Duration) -> Result<(), PlatformError> {
        let started = Instant::now();
        // Subscribed before the first read, so that no change falls between the two.
        let mut events = self.config.readiness_events.then(|| self.track_events(app, track));
        loop {
            let members = self.members(app, track).await?;
            let status = self.status_of(app, track, &members);
            match &status.state {
                TrackState::Ready => return self.join_serving(app, track, &members).await,
                TrackState::Failed(reason) => {
                    return Err(PlatformError::Doomed { app: app.clone(), track, reason: reason.clone() });
                }
                TrackState::Absent => return Err(PlatformError::NotFound { app: app.clone(), track }),
                _ => {}
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(PlatformError::Timeout {
                    app: app.clone(),
                    track,
                    after: deadline,
                    reason: format!("{} of {} ready", status.ready, status.desired),
                });
            }
            match events.as_mut() {
                Some(stream) => {
                    let recheck = self.recheck_after(&members).min(left);
                    tokio::select! {
                        item = stream.next() => match item {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "the engine's event stream failed; polling instead");
                                events = None;
                            }
                            None => {
                                tracing::warn!("the engine's event stream ended; polling instead");
                                events = None;
                            }
                        },
                        () = tokio::time::sleep(recheck) => {}
                    }
                }
                None => tokio::time::sleep(self.config.poll_interval.min(left)).await,
            }
        }
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
        let hook_name = format!("{} of {app}", hook.name);
        let failed =
            |reason: String, logs: Option<String>| PlatformError::HookFailed { hook: hook_name.clone(), reason, logs };
        let mut errors = ValidationErrors::new();
        let env = self.resolve_env(&hook.env, "hook.env", &mut errors).await?;
        errors.into_result(()).map_err(|errors| PlatformError::Invalid { app: app.clone(), errors })?;
        let deadline = Instant::now() + hook.deadline.as_duration();
        match self.pull_if_missing(&hook.image).await {
            Ok(()) => {}
            Err(Pull::Missing(reason)) => return Err(failed(reason, None)),
            Err(Pull::Failed(e)) => return Err(e),
        }
        self.ensure_networks().await?;
        let mut spec = ContainerSpec::new(String::new(), hook.image.familiar())
            .network(self.config.network.clone(), Vec::<String>::new())
            .restart(RestartPolicy::No)
            .labels(self.config.labels.clone())
            .labels(labels::app_selector(app))
            .label(labels::HOOK, hook.name.as_str());
        if !hook.command.is_empty() {
            spec = spec.entrypoint(hook.command.clone());
        }
        for (name, value) in env {
            spec = spec.env(name, value);
        }
        let runs = hook.retries.saturating_add(1);
        for run in 1..=runs {
            spec.name = format!("{}-{}-hook-{}-{:08x}", app.namespace, app.name, hook.name, rand::random::<u32>());
            let id = match self.containers.run(&spec).await {
                Ok(id) => id,
                Err(DockerError::NotFound { what }) => return Err(failed(format!("{what} does not exist"), None)),
                Err(e) => return Err(platform_error("run hook container", e)),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let exit = tokio::time::timeout(remaining, self.exit_code(&id)).await;
            let logs = self
                .containers
                .logs(&id, &LogOptions::default().tail(Some(self.config.hook_log_lines)))
                .await
                .ok()
                .map(|lines| bounded_tail(&lines, self.config.hook_log_lines));
            self.remove_container(&id).await?;
            match exit {
                Err(_) => {
                    return Err(failed(
                        format!(
                            "container {} did not finish within the hook's deadline of {:?} (run {run} of {runs})",
                            spec.name,
                            hook.deadline.as_duration()
                        ),
                        logs,
                    ));
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(code)) if run == runs => {
                    return Err(failed(
                        format!("container {} exited with code {code} (run {run} of {runs})", spec.name),
                        logs,
                    ));
                }
                Ok(Ok(code)) => {
                    tracing::info!(hook = %hook.name, run, code, "hook run failed; retrying");
                }
            }
        }
        Err(failed("no run was made".to_owned(), None))
    }
}

impl DockerPlatform {
    /// Waits for the container to stop and returns its exit code.
    async fn exit_code(&self, id: &str) -> Result<i64, PlatformError> {
        let options = bollard::query_parameters::WaitContainerOptionsBuilder::new().condition("not-running").build();
        let mut wait = self.docker.wait_container(id, Some(options));
        match wait.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(PlatformError::backend("wait for hook container", classify_bollard(&e), e)),
            None => {
                // The stream ended without an answer: read the exit code from the container.
                let state = self.containers.state(id).await.map_err(|e| platform_error("inspect hook container", e))?;
                Ok(state.exit_code)
            }
        }
    }
}

impl DockerPlatform {
    /// A container spec that recreates `member`'s container: its image, command,
    /// environment, labels, health check and user, on the platform network.
    fn template_of(&self, member: &Member) -> Result<ContainerSpec, PlatformError> {
        let state = &member.state;
        let (Some(app), Some(namespace), Some(track)) = (
            state.labels.get(labels::APP),
            state.labels.get(labels::NAMESPACE),
            state.labels.get(labels::TRACK).and_then(|t| t.parse::<Track>().ok()),
        ) else {
            return Err(PlatformError::backend(
                "read a track's container",
                ErrorKind::InvalidInput,
                format!("container {} lacks the deploy-rs labels", state.name),
            ));
        };
        let template = state.template.clone().ok_or_else(|| {
            PlatformError::backend("read a track's container", ErrorKind::Other, "the container has no config")
        })?;
        let app_id = AppId::new(
            namespace.parse().map_err(|e| PlatformError::backend("read labels", ErrorKind::InvalidInput, e))?,
            app.parse().map_err(|e| PlatformError::backend("read labels", ErrorKind::InvalidInput, e))?,
        );
        let mut spec = ContainerSpec::new(container_name(&app_id, track), template.image)
            .network(self.config.network.clone(), [Self::track_alias(&app_id, track)])
            .restart(self.config.restart)
            .labels(state.labels.clone());
        spec.command = template.command;
        spec.env = template.env;
        spec.health = template.health;
        spec.user = template.user;
        spec.entrypoint = template.entrypoint;
        spec.mounts = template.mounts;
        spec.limits = template.limits;
        spec.hardening = template.hardening;
        let ports = state.labels.get(labels::PORTS).map(String::as_str).unwrap_or_default();
        for port in ports.split(',').filter_map(|p| p.parse::<u16>().ok()) {
            spec = spec.port(PortMapping::loopback(port));
        }
        Ok(spec)
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

/// A stable hash of what makes the release's containers: version, image, config
/// checksum, environment, probes, ports and user. FNV-1a, so it is the same in
/// every process and Rust version.
fn revision(spec: &AppSpec, release: &Release, workload: Option<&Workload>) -> String {
    let mut material = serde_json::json!({
        "version": release.version,
        "image": release.image,
        "config": release.config_checksum,
        "env": spec.env,
        "readiness": spec.readiness,
        "liveness": spec.liveness,
        "ports": spec.ports,
        "user": spec.pod_security.run_as_user,
        "group": spec.pod_security.run_as_group,
    });
    // Added only when set, so that containers made before these existed keep their revision.
    if spec.resources != Default::default() || spec.container_security != Default::default() || spec.startup.is_some() {
        material["resources"] = serde_json::json!(spec.resources);
        material["security"] = serde_json::json!(spec.container_security);
        material["startup"] = serde_json::json!(spec.startup);
    }
    if let Some(workload) = workload.filter(|w| **w != Workload::default()) {
        material["workload"] = serde_json::Value::String(format!("{workload:?}"));
    }
    let material = material.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in material.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Refuses, by field name, what the spec or the workload asks for that a Docker
/// container cannot do.
fn refuse_unmappable(spec: &AppSpec, workload: &Workload, errors: &mut ValidationErrors) {
    for field in workload.kubernetes_only() {
        errors.push(ValidationError::new(
            format!("workload.{field}"),
            "set",
            "a Kubernetes pod-template feature with no Docker equivalent",
        ));
    }
    if spec.autoscaling.is_some() {
        errors.push(ValidationError::new("autoscaling", "set", "Docker has no autoscaler; set replicas instead"));
    }
    if spec.pod_security.fs_group.is_some() {
        errors.push(ValidationError::new(
            "pod_security.fs_group",
            "set",
            "Docker does not change the group of mounted volumes",
        ));
    }
    if spec.pod_security.run_as_non_root == Some(true) && spec.pod_security.run_as_user.is_none_or(|u| u == 0) {
        errors.push(ValidationError::new(
            "pod_security.run_as_non_root",
            "true",
            "Docker cannot enforce it: set pod_security.run_as_user to a non-zero user",
        ));
    }
    if spec.pre_stop_delay.is_some() {
        errors.push(ValidationError::new(
            "pre_stop_delay",
            "set",
            "Docker has no pre-stop hook; take leaving containers out of the proxy with an EndpointWatcher (NginxDrain)",
        ));
    }
    for mount in &workload.mounts {
        if !mount.target.starts_with('/') {
            errors.push(ValidationError::new(
                "workload.mounts",
                mount.target.clone(),
                "a mount target must be an absolute path",
            ));
        }
        if let MountSource::Bind(path) = &mount.source
            && !path.starts_with('/')
        {
            errors.push(ValidationError::new(
                "workload.mounts",
                path.clone(),
                "a bind source must be an absolute path on the engine's host",
            ));
        }
    }
}

/// CPU and memory limits (`NanoCpus`, `Memory`) and requests (`CpuShares` as the
/// kubelet maps them, `MemoryReservation`) from the spec's resources.
fn limits(spec: &AppSpec) -> Limits {
    let bytes = |q: &deploy_core::model::Quantity| {
        let nano = q.to_nano_units();
        i64::try_from((nano + 999_999_999) / 1_000_000_000).unwrap_or(i64::MAX)
    };
    Limits {
        nano_cpus: spec.resources.limits.cpu.as_ref().map(|q| i64::try_from(q.to_nano_units()).unwrap_or(i64::MAX)),
        memory_bytes: spec.resources.limits.memory.as_ref().map(bytes),
        memory_reservation_bytes: spec.resources.requests.memory.as_ref().map(bytes),
        cpu_shares: spec.resources.requests.cpu.as_ref().map(|q| {
            let shares = q.to_nano_units().saturating_mul(1024) / 1_000_000_000;
            i64::try_from(shares).unwrap_or(i64::MAX).max(2)
        }),
    }
}

/// The container security settings that Docker has.
fn hardening(spec: &AppSpec) -> Hardening {
    let security = &spec.container_security;
    Hardening {
        read_only_root: security.read_only_root_filesystem == Some(true),
        cap_drop: security.drop_capabilities.clone(),
        no_new_privileges: security.allow_privilege_escalation == Some(false),
        privileged: security.privileged == Some(true),
    }
}

/// The last `lines` lines of a log, at most 4 KiB of them.
fn bounded_tail(lines: &[String], max_lines: u32) -> String {
    const MAX_BYTES: usize = 4096;
    let skip = lines.len().saturating_sub(usize::try_from(max_lines).unwrap_or(usize::MAX));
    let text = lines[skip..].join("\n");
    if text.len() <= MAX_BYTES {
        return text;
    }
    let mut start = text.len() - MAX_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[…]{}", &text[start..])
}

fn platform_error(operation: &str, error: DockerError) -> PlatformError {
    use deploy_core::error::Classify;
    let kind = error.kind();
    PlatformError::backend(operation, kind, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_core::model::{EnvVar, ImageRef, Name, Namespace};

    fn spec() -> AppSpec {
        AppSpec::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap(), ImageRef::parse("shop/web:1").unwrap())
    }

    fn release(v: &str) -> Release {
        Release::new(Version::new(v).unwrap(), ImageRef::parse(&format!("shop/web:{v}")).unwrap())
    }

    #[test]
    fn revision_changes_with_what_makes_the_container_only() {
        let a = revision(&spec(), &release("1"), None);
        assert_eq!(a, revision(&spec(), &release("1"), Some(&Workload::default())));
        assert_ne!(a, revision(&spec(), &release("2"), None));
        assert_ne!(a, revision(&spec().env(EnvVar::value("A", "1").unwrap()), &release("1"), None));
        assert_eq!(a, revision(&spec().replicas(7), &release("1"), None), "replicas do not change the containers");
        assert_ne!(a, revision(&spec(), &release("1"), Some(&Workload::default().args(["-v"]))));
        let limited = spec().resources(deploy_core::model::Resources::new(
            Default::default(),
            deploy_core::model::ResourceList::new("500m", "64Mi").unwrap(),
        ));
        assert_ne!(a, revision(&limited, &release("1"), None));
    }

    #[test]
    fn resources_become_limits() {
        let limited = spec().resources(deploy_core::model::Resources::new(
            deploy_core::model::ResourceList::new("250m", "32Mi").unwrap(),
            deploy_core::model::ResourceList::new("1500m", "64Mi").unwrap(),
        ));
        let l = limits(&limited);
        assert_eq!(l.nano_cpus, Some(1_500_000_000));
        assert_eq!(l.memory_bytes, Some(64 * 1024 * 1024));
        assert_eq!(l.memory_reservation_bytes, Some(32 * 1024 * 1024));
        assert_eq!(l.cpu_shares, Some(256));
    }

    #[test]
    fn log_tails_are_bounded() {
        let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        assert_eq!(bounded_tail(&lines, 2), "line 98\nline 99");
        let long = vec!["x".repeat(10_000)];
        assert!(bounded_tail(&long, 5).len() <= 4096 + "[…]".len());
    }

    #[tokio::test]
    async fn probes_become_health_checks_and_secrets_are_refused() {
        let docker = Docker::connect_with_http("tcp://127.0.0.1:1", 1, bollard::API_DEFAULT_VERSION).unwrap();
        let platform = DockerPlatform::new(docker, PlatformConfig::default().network("n"));
        let probe = Probe::http("/health", 8080).period(std::time::Duration::from_secs(2).into());
        let check = platform.health_check(&probe);
        assert_eq!(check.test.join(" "), "CMD wget -q -O /dev/null http://127.0.0.1:8080/health");
        assert_eq!(check.interval, Duration::from_secs(2));
        assert_eq!(check.retries, 3);

        let with_secret = spec().env(EnvVar::from_secret("DB", Name::new("db").unwrap(), "password").unwrap());
        let err = platform.container_spec(&with_secret, Track::Stable, &release("1"), "r").await.unwrap_err();
        assert!(matches!(err, PlatformError::Invalid { .. }), "{err:?}");
        let ok = platform.container_spec(&spec().readiness(probe), Track::Blue, &release("1"), "r").await.unwrap();
        assert_eq!(ok.network_aliases, ["web-blue"]);
        assert_eq!(ok.labels[labels::TRACK], "blue");
        assert_eq!(ok.labels[labels::VERSION], "1");
        assert!(ok.health.is_some());
    }
}
