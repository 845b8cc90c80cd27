//! [`DockerEndpoints`]: where a track's ready containers listen on the host, for
//! the [`NginxRouter`].

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::HealthStatusEnum;
use deploy_core::error::ErrorKind;
use deploy_core::model::{AppId, Track};
use deploy_core::traffic::RouterError;

use crate::containers::Containers;
use crate::labels;
use crate::nginx::{EndpointSource, NginxRouter};

/// The loopback addresses the `DockerPlatform` published
/// a track's `container_port` on, for the running containers that are healthy
/// (or have no health check): a replica still starting is never an upstream.
///
/// Containers named by [`DockerEndpoints::drain`] are left out even while they
/// still run: the platform is about to remove them.
#[derive(Debug)]
pub struct DockerEndpoints {
    docker: Docker,
    container_port: u16,
    draining: Mutex<HashSet<String>>,
}

impl DockerEndpoints {
    /// The addresses of `container_port` (one of the `AppSpec`'s ports).
    pub fn new(docker: Docker, container_port: u16) -> Self {
        Self { docker, container_port, draining: Mutex::default() }
    }

    /// Leaves the containers `ids` out from now on.
    pub fn drain(&self, ids: &[String]) {
        self.draining.lock().unwrap_or_else(PoisonError::into_inner).extend(ids.iter().cloned());
    }
}

/// Told by the `DockerPlatform` before it removes
/// containers that may serve, so that whatever sends them requests stops first.
#[async_trait]
pub trait EndpointWatcher: Send + Sync {
    /// The containers `ids` of `track` are about to be removed; returns once no
    /// new request goes to them.
    async fn leaving(&self, app: &AppId, track: Track, ids: &[String]) -> Result<(), RouterError>;
}

/// The [`EndpointWatcher`] for an [`NginxRouter`]: drains the containers from
/// [`DockerEndpoints`] and rewrites the app's nginx file (reload, and with a
/// pid file the wait for the old workers) when the track has traffic.
#[derive(Debug)]
pub struct NginxDrain {
    endpoints: Arc<DockerEndpoints>,
    router: Arc<NginxRouter>,
}

impl NginxDrain {
    /// A watcher over `endpoints`, which `router` reads.
    pub fn new(endpoints: Arc<DockerEndpoints>, router: Arc<NginxRouter>) -> Self {
        Self { endpoints, router }
    }
}

#[async_trait]
impl EndpointWatcher for NginxDrain {
    async fn leaving(&self, app: &AppId, track: Track, ids: &[String]) -> Result<(), RouterError> {
        self.endpoints.drain(ids);
        self.router.refresh(app, track).await
    }
}

fn backend(operation: &str, e: impl Into<deploy_core::error::BoxError>) -> RouterError {
    RouterError::backend(operation, ErrorKind::Unavailable, e)
}

#[async_trait]
impl EndpointSource for DockerEndpoints {
    async fn endpoints(&self, app: &AppId, track: Track) -> Result<Vec<SocketAddr>, RouterError> {
        let ids = Containers::new(self.docker.clone())
            .list(&labels::track_selector(app, track))
            .await
            .map_err(|e| backend("list a track's containers", e))?;
        let key = format!("{}/tcp", self.container_port);
        let draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut addrs = Vec::new();
        for id in ids.into_iter().filter(|id| !draining.contains(id)) {
            let info = match self.docker.inspect_container(&id, None).await {
                Ok(info) => info,
                // Removed between the listing and the look: not an endpoint.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => continue,
                Err(e) => return Err(backend("inspect a container", e)),
            };
            let state = info.state.unwrap_or_default();
            let healthy = state.health.and_then(|h| h.status).is_none_or(|s| s == HealthStatusEnum::HEALTHY);
            if state.running != Some(true) || !healthy {
                continue;
            }
            let bindings = info.network_settings.and_then(|n| n.ports).and_then(|mut p| p.remove(&key)).flatten();
            for b in bindings.into_iter().flatten() {
                let ip: Option<IpAddr> = b.host_ip.as_deref().and_then(|ip| ip.parse().ok());
                let port: Option<u16> = b.host_port.as_deref().and_then(|p| p.parse().ok());
                if let (Some(ip), Some(port)) = (ip, port) {
                    addrs.push(SocketAddr::new(ip, port));
                }
            }
        }
        addrs.sort();
        Ok(addrs)
    }
}
