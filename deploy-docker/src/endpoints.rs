//! [`DockerEndpoints`]: where a track's ready containers listen on the host, for
//! the [`NginxRouter`](crate::nginx::NginxRouter).

use std::net::{IpAddr, SocketAddr};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::HealthStatusEnum;
use deploy_core::error::ErrorKind;
use deploy_core::model::{AppId, Track};
use deploy_core::traffic::RouterError;

use crate::containers::Containers;
use crate::labels;
use crate::nginx::EndpointSource;

/// The loopback addresses the [`DockerPlatform`](crate::DockerPlatform) published
/// a track's `container_port` on, for the running containers that are healthy
/// (or have no health check): a replica still starting is never an upstream.
#[derive(Debug, Clone)]
pub struct DockerEndpoints {
    docker: Docker,
    container_port: u16,
}

impl DockerEndpoints {
    /// The addresses of `container_port` (one of the `AppSpec`'s ports).
    pub fn new(docker: Docker, container_port: u16) -> Self {
        Self { docker, container_port }
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
        let mut addrs = Vec::new();
        for id in ids {
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
