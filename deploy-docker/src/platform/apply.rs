//! Applying a release to a track: the image, the networks, and the in-place
//! rolling replacement of the track's containers.

use std::time::Instant;

use bollard::query_parameters::CreateImageOptionsBuilder;
use deploy_core::error::ErrorKind;
use deploy_core::model::{AppId, AppSpec, ImageRef, Release, Track};
use deploy_core::platform::PlatformError;
use futures::StreamExt;

use super::readiness::Follower;
use super::{DockerPlatform, Member, Readiness, container_name, platform_error, serves};
use crate::containers::{ContainerSpec, PortMapping};
use crate::error::{DockerError, bollard_message, classify_bollard};
use crate::labels;
use crate::networks::NetworkSpec;

/// Why an image could not be made present.
pub(super) enum Pull {
    /// The registry does not have it.
    Missing(String),
    /// Anything else.
    Failed(PlatformError),
}

impl DockerPlatform {
    /// Makes sure the image is on the engine, pulling it when it is not; an image
    /// that the registry does not have dooms the track.
    pub(super) async fn ensure_image(&self, app: &AppId, track: Track, release: &Release) -> Result<(), PlatformError> {
        match self.pull_if_missing(&release.image).await {
            Ok(()) => Ok(()),
            Err(Pull::Missing(reason)) => Err(PlatformError::Doomed { app: app.clone(), track, reason }),
            Err(Pull::Failed(e)) => Err(e),
        }
    }

    pub(super) async fn pull_if_missing(&self, image_ref: &ImageRef) -> Result<(), Pull> {
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

    pub(super) async fn ensure_networks(&self) -> Result<(), PlatformError> {
        let names = std::iter::once(&self.config.network).chain(self.config.serving_network.as_ref());
        for name in names {
            self.networks
                .ensure(&NetworkSpec::new(name.clone()).labels(self.config.labels.clone()))
                .await
                .map_err(|e| platform_error("create network", e))?;
        }
        Ok(())
    }

    pub(super) async fn start_one(&self, spec: &ContainerSpec, app: &AppId, track: Track) -> Result<(), PlatformError> {
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
    pub(super) fn serving_aliases(
        &self,
        app: &AppId,
        track: Track,
        members: &[Member],
    ) -> Option<(String, Vec<String>)> {
        let network = self.config.serving_network.clone()?;
        let alias = app.name.to_string();
        let track_serves = members.iter().any(|m| serves(&m.state, &network, &alias));
        let automatic = matches!(track, Track::Stable | Track::Canary);
        (automatic || track_serves).then(|| (network, vec![alias]))
    }

    /// Gives ready members that should serve their serving alias.
    pub(super) async fn join_serving(
        &self,
        app: &AppId,
        track: Track,
        members: &[Member],
    ) -> Result<(), PlatformError> {
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

    pub(super) async fn rolling_replace(
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
        // Subscribed before the first read, so that no change falls between the two:
        // new containers turning healthy (or dying) wake the loop, not a poll.
        let mut follower = Follower::new(self, &app, track);
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
                let left = deadline.saturating_duration_since(Instant::now());
                follower.next_change(self.recheck_after(&members), left).await;
            }
        }
    }

    /// Brings a track whose containers all run the current revision to `replicas`.
    pub(super) async fn converge(
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

    pub(super) async fn remove_container(&self, id: &str) -> Result<(), PlatformError> {
        self.containers.remove(id).await.map_err(|e| platform_error("remove container", e))
    }
}

impl DockerPlatform {
    /// A container spec that recreates `member`'s container: its image, command,
    /// environment, labels, health check and user, on the platform network.
    pub(super) fn template_of(&self, member: &Member) -> Result<ContainerSpec, PlatformError> {
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
