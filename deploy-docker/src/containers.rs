//! Running containers: create and start with ports, environment, volumes, a
//! network with aliases, a restart policy, labels and a health check; read their
//! state and logs; remove them, one by one or by label.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, HealthConfig, HealthStatusEnum, HostConfig,
    NetworkingConfig, PortBinding, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::StreamExt;
use tracing::instrument;

use crate::error::DockerError;

/// What the engine does when a container's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Always restart, also after the engine restarts.
    Always,
    /// Restart unless a person stopped the container.
    UnlessStopped,
    /// Restart after a non-zero exit, at most `max_retries` times (0: no limit).
    OnFailure {
        /// The retry limit.
        max_retries: u32,
    },
}

/// A published port: `container_port` inside, `host_port` on `host_ip` outside
/// (a free port chosen by the engine when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortMapping {
    /// The port inside the container (TCP).
    pub container_port: u16,
    /// The host port; the engine picks one when `None`.
    pub host_port: Option<u16>,
    /// The host address to bind; `127.0.0.1` keeps the port off other interfaces.
    pub host_ip: String,
}

impl PortMapping {
    /// Publishes `container_port` on a free loopback port.
    pub fn loopback(container_port: u16) -> Self {
        Self { container_port, host_port: None, host_ip: "127.0.0.1".to_owned() }
    }
}

/// A bind mount or named volume at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeMount {
    /// A host path or a volume name.
    pub source: String,
    /// The path inside the container.
    pub target: String,
    /// Mount read-only.
    pub read_only: bool,
}

impl VolumeMount {
    /// A mount of `source` at `target`.
    pub fn new(source: impl Into<String>, target: impl Into<String>, read_only: bool) -> Self {
        Self { source: source.into(), target: target.into(), read_only }
    }
}

/// Where a [`Mount`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountSource {
    /// A named volume, created by the engine when missing.
    Volume(String),
    /// A file or directory of the engine's host.
    Bind(String),
    /// A memory-backed scratch directory that lives as long as the container
    /// (Kubernetes' `emptyDir`), at most `size_bytes` big when set.
    Tmpfs {
        /// The most it may hold.
        size_bytes: Option<u64>,
    },
}

/// A mount of the engine's `Mounts` list: a named volume, a bind or a tmpfs at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mount {
    /// What is mounted.
    pub source: MountSource,
    /// The path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Mount {
    /// `source` at `target`, writable.
    pub fn new(source: MountSource, target: impl Into<String>) -> Self {
        Self { source, target: target.into(), read_only: false }
    }

    /// Mounts it read-only.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    fn to_engine(&self) -> bollard::models::Mount {
        use bollard::models::{MountTmpfsOptions, MountType};
        let (typ, source, tmpfs_options) = match &self.source {
            MountSource::Volume(name) => (MountType::VOLUME, Some(name.clone()), None),
            MountSource::Bind(path) => (MountType::BIND, Some(path.clone()), None),
            MountSource::Tmpfs { size_bytes } => (
                MountType::TMPFS,
                None,
                Some(MountTmpfsOptions {
                    size_bytes: size_bytes.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
                    ..Default::default()
                }),
            ),
        };
        bollard::models::Mount {
            target: Some(self.target.clone()),
            source,
            typ: Some(typ),
            read_only: Some(self.read_only),
            tmpfs_options,
            ..Default::default()
        }
    }

    fn from_engine(mount: &bollard::models::Mount) -> Option<Self> {
        use bollard::models::MountType;
        let source = match mount.typ? {
            MountType::VOLUME => MountSource::Volume(mount.source.clone()?),
            MountType::BIND => MountSource::Bind(mount.source.clone()?),
            MountType::TMPFS => MountSource::Tmpfs {
                size_bytes: mount
                    .tmpfs_options
                    .as_ref()
                    .and_then(|t| t.size_bytes)
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0),
            },
            _ => return None,
        };
        Some(Self { source, target: mount.target.clone()?, read_only: mount.read_only.unwrap_or(false) })
    }
}

/// What the runtime enforces on a container's CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Limits {
    /// CPU ceiling in billionths of a core (`NanoCpus`).
    pub nano_cpus: Option<i64>,
    /// Memory ceiling in bytes (`Memory`).
    pub memory_bytes: Option<i64>,
    /// Memory the engine tries to keep for the container under pressure (`MemoryReservation`).
    pub memory_reservation_bytes: Option<i64>,
    /// Relative CPU weight (`CpuShares`, 1024 a core, as the kubelet maps CPU requests).
    pub cpu_shares: Option<i64>,
}

/// Security settings of a container beyond its user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Hardening {
    /// The root file system is read-only.
    pub read_only_root: bool,
    /// Capabilities dropped (`ALL` drops every one).
    pub cap_drop: Vec<String>,
    /// `no-new-privileges`: no process gains privileges through setuid binaries.
    pub no_new_privileges: bool,
    /// Runs privileged.
    pub privileged: bool,
}

/// A container's `HEALTHCHECK` configuration, which the Docker engine runs inside
/// the container: `test` is the engine's form (`["CMD", "wget", …]` or
/// `["CMD-SHELL", "…"]`). Not deploy-core's `HealthCheck` trait, which judges a
/// track from outside; the Docker platform reads the engine's verdict on this one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerHealthcheck {
    /// The command.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive failures before the container is `unhealthy`.
    pub retries: u32,
    /// Grace period in which failures do not count.
    pub start_period: Duration,
}

impl ContainerHealthcheck {
    /// A check running `test` every 10 s with a 5 s timeout and 3 retries.
    pub fn new(test: Vec<String>) -> Self {
        Self {
            test,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            retries: 3,
            start_period: Duration::ZERO,
        }
    }

    /// Sets the interval.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the retries.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    fn to_config(&self) -> HealthConfig {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        HealthConfig {
            test: Some(self.test.clone()),
            interval: Some(nanos(self.interval)),
            timeout: Some(nanos(self.timeout)),
            retries: Some(i64::from(self.retries)),
            start_period: Some(nanos(self.start_period)),
            start_interval: None,
        }
    }
}

/// Everything needed to run one container.
///
/// ```
/// use deploy_docker::containers::{ContainerSpec, PortMapping, RestartPolicy};
/// let spec = ContainerSpec::new("web-1", "shop/web:1.4.2")
///     .env("RUST_LOG", "info")
///     .port(PortMapping::loopback(8080))
///     .network("shop", ["web"])
///     .restart(RestartPolicy::OnFailure { max_retries: 3 })
///     .label("team", "payments");
/// assert_eq!(spec.network.as_deref(), Some("shop"));
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ContainerSpec {
    /// The container's name.
    pub name: String,
    /// The image reference or id.
    pub image: String,
    /// Overrides the image's command.
    pub command: Option<Vec<String>>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Mounts.
    pub volumes: Vec<VolumeMount>,
    /// The network to join at creation.
    pub network: Option<String>,
    /// DNS aliases on that network.
    pub network_aliases: Vec<String>,
    /// The restart policy.
    pub restart: RestartPolicy,
    /// Labels; the ownership mark [`MANAGED_BY`](crate::labels::MANAGED_BY)` =
    /// `[`MANAGER`](crate::labels::MANAGER) is always added when the container is
    /// created.
    pub labels: BTreeMap<String, String>,
    /// A health check overriding the image's.
    pub health: Option<ContainerHealthcheck>,
    /// The user to run as (`1000:1000`).
    pub user: Option<String>,
    /// Replaces the image's entrypoint (Kubernetes' `command`; [`ContainerSpec::command`]
    /// is its `args`).
    pub entrypoint: Option<Vec<String>>,
    /// Named volumes, binds and tmpfs mounts, in the engine's `Mounts` form.
    pub mounts: Vec<Mount>,
    /// CPU and memory limits.
    pub limits: Limits,
    /// Read-only root, dropped capabilities, no new privileges.
    pub hardening: Hardening,
}

impl fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Environment values may be secrets: print only the names.
        f.debug_struct("ContainerSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("ports", &self.ports)
            .field("volumes", &self.volumes)
            .field("network", &self.network)
            .field("network_aliases", &self.network_aliases)
            .field("restart", &self.restart)
            .field("labels", &self.labels)
            .field("health", &self.health)
            .field("user", &self.user)
            .field("entrypoint", &self.entrypoint)
            .field("mounts", &self.mounts)
            .field("limits", &self.limits)
            .field("hardening", &self.hardening)
            .finish()
    }
}

impl ContainerSpec {
    /// A container `name` running `image`.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self { name: name.into(), image: image.into(), ..Self::default() }
    }

    /// Overrides the command.
    #[must_use]
    pub fn command(mut self, command: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.command = Some(command.into_iter().map(Into::into).collect());
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Publishes a port.
    #[must_use]
    pub fn port(mut self, port: PortMapping) -> Self {
        self.ports.push(port);
        self
    }

    /// Adds a mount.
    #[must_use]
    pub fn volume(mut self, volume: VolumeMount) -> Self {
        self.volumes.push(volume);
        self
    }

    /// Joins `network` with `aliases`.
    #[must_use]
    pub fn network(mut self, network: impl Into<String>, aliases: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.network = Some(network.into());
        self.network_aliases = aliases.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the restart policy.
    #[must_use]
    pub fn restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = restart;
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds labels.
    #[must_use]
    pub fn labels(mut self, labels: impl IntoIterator<Item = (String, String)>) -> Self {
        self.labels.extend(labels);
        self
    }

    /// Sets the health check.
    #[must_use]
    pub fn health(mut self, health: ContainerHealthcheck) -> Self {
        self.health = Some(health);
        self
    }

    /// Sets the user.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Replaces the image's entrypoint.
    #[must_use]
    pub fn entrypoint(mut self, entrypoint: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.entrypoint = Some(entrypoint.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a named volume, bind or tmpfs mount.
    #[must_use]
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Sets the CPU and memory limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the security settings.
    #[must_use]
    pub fn hardening(mut self, hardening: Hardening) -> Self {
        self.hardening = hardening;
        self
    }

    fn to_body(&self) -> ContainerCreateBody {
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = self
            .ports
            .iter()
            .map(|p| {
                let binding = PortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.host_port.map(|port| port.to_string()).unwrap_or_default()),
                };
                (format!("{}/tcp", p.container_port), Some(vec![binding]))
            })
            .collect();
        let binds: Vec<String> = self
            .volumes
            .iter()
            .map(|v| format!("{}:{}{}", v.source, v.target, if v.read_only { ":ro" } else { "" }))
            .collect();
        let restart_policy = bollard::models::RestartPolicy {
            name: Some(match self.restart {
                RestartPolicy::No => RestartPolicyNameEnum::NO,
                RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
                RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
                RestartPolicy::OnFailure { .. } => RestartPolicyNameEnum::ON_FAILURE,
            }),
            maximum_retry_count: match self.restart {
                RestartPolicy::OnFailure { max_retries } => Some(i64::from(max_retries)),
                _ => None,
            },
        };
        let networking_config = self.network.as_ref().map(|network| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings { aliases: Some(self.network_aliases.clone()), ..Default::default() },
            )])),
        });
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.command.clone(),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            exposed_ports: Some(self.ports.iter().map(|p| format!("{}/tcp", p.container_port)).collect()),
            labels: Some(owned_labels(&self.labels).into_iter().collect()),
            healthcheck: self.health.as_ref().map(ContainerHealthcheck::to_config),
            user: self.user.clone(),
            entrypoint: self.entrypoint.clone(),
            host_config: Some(HostConfig {
                port_bindings: Some(port_bindings),
                binds: Some(binds),
                mounts: (!self.mounts.is_empty()).then(|| self.mounts.iter().map(Mount::to_engine).collect()),
                restart_policy: Some(restart_policy),
                network_mode: self.network.clone(),
                nano_cpus: self.limits.nano_cpus,
                memory: self.limits.memory_bytes,
                memory_reservation: self.limits.memory_reservation_bytes,
                cpu_shares: self.limits.cpu_shares,
                readonly_rootfs: self.hardening.read_only_root.then_some(true),
                cap_drop: (!self.hardening.cap_drop.is_empty()).then(|| self.hardening.cap_drop.clone()),
                security_opt: self.hardening.no_new_privileges.then(|| vec!["no-new-privileges:true".to_owned()]),
                privileged: self.hardening.privileged.then_some(true),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        }
    }
}

/// The health Docker reports for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// The container has no health check.
    None,
    /// No check has passed yet, and the failures are within the retries.
    Starting,
    /// The last check passed.
    Healthy,
    /// `retries` checks in a row failed; `output` is what the last one printed.
    Unhealthy {
        /// The last check's output.
        output: String,
    },
}

/// What a container is doing, from its inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerState {
    /// The container's id.
    pub id: String,
    /// The container's name, without the leading `/`.
    pub name: String,
    /// Its process runs.
    pub running: bool,
    /// The engine is restarting it after an exit.
    pub restarting: bool,
    /// Its process exited (or died) and is not being restarted.
    pub exited: bool,
    /// The last exit code.
    pub exit_code: i64,
    /// How often the engine restarted it.
    pub restart_count: u32,
    /// When its process last started.
    pub started_at: Option<jiff::Timestamp>,
    /// The engine's error, such as a missing executable.
    pub error: Option<String>,
    /// The health check's verdict.
    pub health: Health,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// DNS aliases per network it is attached to.
    pub network_aliases: BTreeMap<String, Vec<String>>,
    /// What it takes to create a container like this one, from its config.
    pub template: Option<ContainerTemplate>,
}

/// The parts of a container's config that recreate it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerTemplate {
    /// The image.
    pub image: String,
    /// The command, when set.
    pub command: Option<Vec<String>>,
    /// The environment (the image's and the container's).
    pub env: BTreeMap<String, String>,
    /// The health check set on the container, if any.
    pub health: Option<ContainerHealthcheck>,
    /// The user, when set.
    pub user: Option<String>,
    /// The entrypoint set on the container, when set.
    pub entrypoint: Option<Vec<String>>,
    /// Named volumes, binds and tmpfs mounts of its host config.
    pub mounts: Vec<Mount>,
    /// Its CPU and memory limits.
    pub limits: Limits,
    /// Its security settings.
    pub hardening: Hardening,
}

impl fmt::Debug for ContainerTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerTemplate")
            .field("image", &self.image)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("health", &self.health)
            .field("user", &self.user)
            .field("entrypoint", &self.entrypoint)
            .field("mounts", &self.mounts)
            .field("limits", &self.limits)
            .field("hardening", &self.hardening)
            .finish()
    }
}

fn template_from(
    config: &bollard::models::ContainerConfig,
    host: Option<&bollard::models::HostConfig>,
) -> Option<ContainerTemplate> {
    let duration = |nanos: Option<i64>| Duration::from_nanos(nanos.and_then(|n| u64::try_from(n).ok()).unwrap_or(0));
    let health = config.healthcheck.as_ref().and_then(|h| {
        let test = h.test.clone().filter(|t| !t.is_empty() && t[0] != "NONE")?;
        Some(ContainerHealthcheck {
            test,
            interval: duration(h.interval),
            timeout: duration(h.timeout),
            retries: h.retries.and_then(|r| u32::try_from(r).ok()).unwrap_or(3),
            start_period: duration(h.start_period),
        })
    });
    Some(ContainerTemplate {
        image: config.image.clone()?,
        command: config.cmd.clone(),
        env: config
            .env
            .iter()
            .flatten()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
        health,
        user: config.user.clone().filter(|u| !u.is_empty()),
        entrypoint: config.entrypoint.clone().filter(|e| !e.is_empty()),
        mounts: host.and_then(|h| h.mounts.as_ref()).into_iter().flatten().filter_map(Mount::from_engine).collect(),
        limits: Limits {
            nano_cpus: host.and_then(|h| h.nano_cpus).filter(|n| *n > 0),
            memory_bytes: host.and_then(|h| h.memory).filter(|n| *n > 0),
            memory_reservation_bytes: host.and_then(|h| h.memory_reservation).filter(|n| *n > 0),
            cpu_shares: host.and_then(|h| h.cpu_shares).filter(|n| *n > 0),
        },
        hardening: Hardening {
            read_only_root: host.and_then(|h| h.readonly_rootfs).unwrap_or(false),
            cap_drop: host.and_then(|h| h.cap_drop.clone()).unwrap_or_default(),
            no_new_privileges: host
                .and_then(|h| h.security_opt.as_ref())
                .is_some_and(|o| o.iter().any(|o| o.starts_with("no-new-privileges"))),
            privileged: host.and_then(|h| h.privileged).unwrap_or(false),
        },
    })
}

/// Options of [`Containers::logs`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// Only the last `tail` lines; all lines when `None`.
    pub tail: Option<u32>,
    /// Include standard error.
    pub stderr: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self { tail: Some(100), stderr: true }
    }
}

impl LogOptions {
    /// Sets the tail.
    #[must_use]
    pub fn tail(mut self, tail: Option<u32>) -> Self {
        self.tail = tail;
        self
    }
}

/// What a clean-up removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Containers removed.
    pub containers: usize,
    /// Networks removed.
    pub networks: usize,
}

/// Container operations on one engine.
#[derive(Debug, Clone)]
pub struct Containers {
    docker: Docker,
}

impl Containers {
    /// Container operations on `docker`.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }

    /// Creates and starts a container; returns its id. A missing image is
    /// [`DockerError::NotFound`] (the engine does not pull on create).
    #[instrument(skip_all, fields(container.name = %spec.name, container.image = %spec.image), err)]
    pub async fn run(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        let created = self
            .docker
            .create_container(Some(options), spec.to_body())
            .await
            .map_err(|e| DockerError::from_bollard("create container", || format!("image {}", spec.image), e))?;
        if let Err(e) =
            self.docker.start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>).await
        {
            // Leave nothing half-made behind.
            let _ = self.remove(&created.id).await;
            return Err(DockerError::from_bollard("start container", || format!("container {}", spec.name), e));
        }
        Ok(created.id)
    }

    /// Stops and removes a container and its anonymous volumes; removing one that
    /// does not exist succeeds.
    #[instrument(skip_all, fields(container = id), err)]
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if crate::error::is_not_found(&e) => Ok(()),
            // Removal already under way (a concurrent clean-up): the end state is the same.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message })
                if message.contains("already in progress") =>
            {
                Ok(())
            }
            Err(e) => Err(DockerError::from_bollard("remove container", || format!("container {id}"), e)),
        }
    }

    /// The state of one container.
    pub async fn state(&self, id: &str) -> Result<ContainerState, DockerError> {
        let inspect = self
            .docker
            .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .map_err(|e| DockerError::from_bollard("inspect container", || format!("container {id}"), e))?;
        let state = inspect.state.unwrap_or_default();
        let health = match state.health {
            None => Health::None,
            Some(h) => match h.status {
                Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
                Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy {
                    output: h
                        .log
                        .and_then(|log| log.last().and_then(|l| l.output.clone()))
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                },
                Some(HealthStatusEnum::STARTING) => Health::Starting,
                _ => Health::None,
            },
        };
        let status = state.status;
        let network_aliases = inspect
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .map(|(network, endpoint)| (network, endpoint.aliases.unwrap_or_default()))
            .collect();
        Ok(ContainerState {
            id: inspect.id.unwrap_or_else(|| id.to_owned()),
            name: inspect.name.unwrap_or_default().trim_start_matches('/').to_owned(),
            running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
            restarting: state.restarting.unwrap_or(false),
            exited: matches!(status, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)),
            exit_code: state.exit_code.unwrap_or(0),
            restart_count: inspect.restart_count.and_then(|c| u32::try_from(c).ok()).unwrap_or(0),
            started_at: state.started_at.as_deref().and_then(|t| t.parse().ok()),
            error: state.error.filter(|e| !e.is_empty()),
            health,
            template: inspect.config.as_ref().and_then(|c| template_from(c, inspect.host_config.as_ref())),
            labels: inspect.config.and_then(|c| c.labels).unwrap_or_default().into_iter().collect(),
            network_aliases,
        })
    }

    /// Ids of the containers (running or not) whose labels include every pair of
    /// `labels`, oldest first.
    pub async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<String>, DockerError> {
        let filters = label_filters(labels);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let mut list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::from_bollard("list containers", String::new, e))?;
        list.sort_by_key(|c| (c.created.unwrap_or(0), c.names.clone()));
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// The container's output, standard output and (by default) standard error
    /// interleaved, one entry per line.
    #[instrument(skip_all, fields(container = id), err)]
    pub async fn logs(&self, id: &str, options: &LogOptions) -> Result<Vec<String>, DockerError> {
        let tail = options.tail.map_or_else(|| "all".to_owned(), |t| t.to_string());
        let query = LogsOptionsBuilder::new().stdout(true).stderr(options.stderr).tail(&tail).build();
        let mut stream = self.docker.logs(id, Some(query));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DockerError::from_bollard("read logs", || format!("container {id}"), e))?;
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok(text.lines().map(str::to_owned).collect())
    }

    /// Removes every container and then every network that this crate created
    /// (they carry [`MANAGED_BY`](crate::labels::MANAGED_BY)` =
    /// `[`MANAGER`](crate::labels::MANAGER), which the selector always includes) and
    /// whose labels include all of `labels`. A container someone else made with the
    /// same labels is left alone. An empty selector is refused: it would match
    /// everything this crate made.
    #[instrument(skip_all, fields(labels = ?labels), err)]
    pub async fn remove_labelled(&self, labels: &BTreeMap<String, String>) -> Result<CleanupReport, DockerError> {
        if labels.is_empty() {
            return Err(DockerError::Invalid {
                operation: "remove labelled objects".to_owned(),
                message: "an empty label selector would remove everything".to_owned(),
            });
        }
        let labels = &owned_labels(labels);
        let mut report = CleanupReport::default();
        for id in self.list(labels).await? {
            self.remove(&id).await?;
            report.containers += 1;
        }
        report.networks = crate::networks::Networks::new(self.docker.clone()).remove_labelled(labels).await?;
        Ok(report)
    }
}

/// `labels` plus the ownership mark every object this crate creates carries.
pub(crate) fn owned_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut owned = labels.clone();
    owned.insert(crate::labels::MANAGED_BY.to_owned(), crate::labels::MANAGER.to_owned());
    owned
}

/// `{"label": ["k=v", …]}` for list filters.
pub(crate) fn label_filters(labels: &BTreeMap<String, String>) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), labels.iter().map(|(k, v)| format!("{k}={v}")).collect())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_becomes_the_engine_body() {
        let spec = ContainerSpec::new("web-1", "shop/web:1")
            .env("A", "1")
            .port(PortMapping::loopback(8080))
            .volume(VolumeMount::new("/srv/data", "/data", true))
            .network("shop", ["web", "web-blue"])
            .restart(RestartPolicy::OnFailure { max_retries: 2 })
            .health(ContainerHealthcheck::new(vec!["CMD".into(), "true".into()]).interval(Duration::from_secs(1)));
        let body = spec.to_body();
        let host = body.host_config.clone().unwrap();
        assert_eq!(body.env, Some(vec!["A=1".to_owned()]));
        assert_eq!(host.binds, Some(vec!["/srv/data:/data:ro".to_owned()]));
        let binding = &host.port_bindings.unwrap()["8080/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(host.restart_policy.unwrap().maximum_retry_count, Some(2));
        assert_eq!(host.network_mode.as_deref(), Some("shop"));
        let endpoint = &body.networking_config.unwrap().endpoints_config.unwrap()["shop"];
        assert_eq!(endpoint.aliases.as_deref(), Some(&["web".to_owned(), "web-blue".to_owned()][..]));
        assert_eq!(body.healthcheck.unwrap().interval, Some(1_000_000_000));
    }

    #[test]
    fn debug_hides_environment_values() {
        let spec = ContainerSpec::new("x", "y").env("DATABASE_PASSWORD", "hunter2");
        let debug = format!("{spec:?}");
        assert!(debug.contains("DATABASE_PASSWORD") && !debug.contains("hunter2"), "{debug}");
    }
}
