//! What the engine says about a container: [`ContainerState`], its [`Health`],
//! and the [`ContainerTemplate`] a sibling can be re-created from.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::spec::{ContainerHealthcheck, Hardening, Limits, Mount};

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

pub(super) fn template_from(
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
