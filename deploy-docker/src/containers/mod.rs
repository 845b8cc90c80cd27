//! Running containers: create and start with ports, environment, volumes, a
//! network with aliases, a restart policy, labels and a health check; read their
//! state and logs; remove them, one by one or by label.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::StreamExt;
use tracing::instrument;

use crate::error::DockerError;
use crate::labels::{label_filters, owned_labels};

mod spec;
mod state;
#[cfg(test)]
mod tests;

pub use spec::{
    ContainerHealthcheck, ContainerSpec, Hardening, Limits, Mount, MountSource, PortMapping, RestartPolicy, VolumeMount,
};
use state::template_from;
pub use state::{ContainerState, ContainerTemplate, Health};

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
