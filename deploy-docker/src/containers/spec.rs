//! What a container is made of: [`ContainerSpec`] and its parts (ports, mounts,
//! limits, hardening, a health check, a restart policy), and how they become the
//! engine's create body.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicyNameEnum,
};

use crate::labels::owned_labels;

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

    pub(super) fn to_engine(&self) -> bollard::models::Mount {
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

    pub(super) fn from_engine(mount: &bollard::models::Mount) -> Option<Self> {
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

    pub(super) fn to_config(&self) -> HealthConfig {
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

    pub(super) fn to_body(&self) -> ContainerCreateBody {
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
