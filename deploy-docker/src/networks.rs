//! Networks: create (idempotently) and remove user-defined bridge networks, and
//! attach running containers with DNS aliases.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use tracing::instrument;

use crate::error::{DockerError, is_not_found};
use crate::labels::{label_filters, owned_labels};

/// A user-defined bridge network to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NetworkSpec {
    /// The network's name.
    pub name: String,
    /// Labels; the ownership mark [`MANAGED_BY`](crate::labels::MANAGED_BY) is
    /// always added when the network is created.
    pub labels: BTreeMap<String, String>,
    /// No route to the outside.
    pub internal: bool,
}

impl NetworkSpec {
    /// A bridge network called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    /// Adds labels.
    #[must_use]
    pub fn labels(mut self, labels: impl IntoIterator<Item = (String, String)>) -> Self {
        self.labels.extend(labels);
        self
    }

    /// Makes the network internal.
    #[must_use]
    pub fn internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }
}

/// Network operations on one engine.
#[derive(Debug, Clone)]
pub struct Networks {
    docker: Docker,
}

impl Networks {
    /// Network operations on `docker`.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }

    /// Creates the network unless one with that name exists; returns its id.
    #[instrument(skip_all, fields(network = %spec.name), err)]
    pub async fn ensure(&self, spec: &NetworkSpec) -> Result<String, DockerError> {
        if let Some(id) = self.find(&spec.name).await? {
            return Ok(id);
        }
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".to_owned()),
            internal: Some(spec.internal),
            labels: Some(owned_labels(&spec.labels).into_iter().collect()),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(created) => Ok(created.id),
            // Another caller created it between our look-up and our create.
            Err(e) if crate::error::classify_bollard(&e) == deploy_core::error::ErrorKind::Conflict => self
                .find(&spec.name)
                .await?
                .ok_or_else(|| DockerError::NotFound { what: format!("network {}", spec.name) }),
            Err(e) => Err(DockerError::from_bollard("create network", || format!("network {}", spec.name), e)),
        }
    }

    /// The id of the network called exactly `name`.
    pub async fn find(&self, name: &str) -> Result<Option<String>, DockerError> {
        let filters = std::collections::HashMap::from([("name".to_owned(), vec![name.to_owned()])]);
        let list = self
            .docker
            .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| DockerError::from_bollard("list networks", String::new, e))?;
        // The engine's name filter matches substrings.
        Ok(list.into_iter().find(|n| n.name.as_deref() == Some(name)).and_then(|n| n.id))
    }

    /// Removes a network; removing one that does not exist succeeds.
    #[instrument(skip_all, fields(network = name), err)]
    pub async fn remove(&self, name: &str) -> Result<(), DockerError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(DockerError::from_bollard("remove network", || format!("network {name}"), e)),
        }
    }

    /// Removes every network this crate created (the selector always includes
    /// [`MANAGED_BY`](crate::labels::MANAGED_BY)) whose labels include all of
    /// `labels`; returns how many. An empty selector is refused.
    pub async fn remove_labelled(&self, labels: &BTreeMap<String, String>) -> Result<usize, DockerError> {
        if labels.is_empty() {
            return Err(DockerError::Invalid {
                operation: "remove labelled networks".to_owned(),
                message: "an empty label selector would remove every network this crate made".to_owned(),
            });
        }
        let labels = owned_labels(labels);
        let options = ListNetworksOptionsBuilder::new().filters(&label_filters(&labels)).build();
        let list = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| DockerError::from_bollard("list networks", String::new, e))?;
        let mut removed = 0;
        for id in list.into_iter().filter_map(|n| n.id) {
            self.remove(&id).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Attaches a running container to `network` with DNS `aliases`.
    #[instrument(skip_all, fields(network, container), err)]
    pub async fn connect(&self, network: &str, container: &str, aliases: &[String]) -> Result<(), DockerError> {
        let request = NetworkConnectRequest {
            container: container.to_owned(),
            endpoint_config: Some(EndpointSettings { aliases: Some(aliases.to_vec()), ..Default::default() }),
        };
        self.docker
            .connect_network(network, request)
            .await
            .map_err(|e| DockerError::from_bollard("connect container to network", || format!("network {network}"), e))
    }

    /// Detaches a container from `network`; succeeds when it was not attached.
    #[instrument(skip_all, fields(network, container), err)]
    pub async fn disconnect(&self, network: &str, container: &str) -> Result<(), DockerError> {
        let request = NetworkDisconnectRequest { container: container.to_owned(), force: Some(true) };
        match self.docker.disconnect_network(network, request).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 403 | 500, message })
                if message.contains("is not connected") =>
            {
                Ok(())
            }
            Err(e) => Err(DockerError::from_bollard("disconnect container", || format!("network {network}"), e)),
        }
    }
}
