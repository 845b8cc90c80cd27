//! [`NetworkAliasRouter`]: traffic follows a DNS alias on a Docker network.

use std::collections::BTreeMap;

use deploy_core::error::{Classify, ErrorKind};
use deploy_core::model::{AppId, Track, TrafficSplit};
use deploy_core::traffic::{RouterCapabilities, RouterError, TrackSet, TrafficRouter, split_of_replicas};
use tracing::instrument;

use crate::containers::Containers;
use crate::error::DockerError;
use crate::labels;
use crate::network_name::NetworkName;
use crate::networks::{NetworkSpec, Networks};
use crate::platform::serves;

/// Routes an application's traffic by giving its containers the DNS alias `<app>`
/// on a serving network: clients on that network call `http://<app>:<port>`, and
/// Docker's embedded DNS answers with every container that has the alias.
///
/// What this can do, and all it declares in [`TrafficRouter::capabilities`]:
///
/// * **switch** (blue-green): [`TrafficRouter::set_weights`] with all traffic on
///   one track gives that track's containers the alias, then takes it from every
///   other track — never a moment with nobody behind the alias;
/// * **replica ratio** (canary): with [`crate::platform::PlatformConfig::serving_network`]
///   set, ready `stable` and `canary` containers share the alias, so the canary's
///   share of traffic is its share of the replicas. The rollout engine reaches a
///   weight by scaling the tracks.
///
/// It cannot set arbitrary weights (DNS round robin has no weights), route by
/// header or mirror, so it declares none of these, and refuses a split across two
/// tracks with [`RouterError::Unsupported`]. Its capabilities say that it serves
/// every ready replica of the tracks that share the alias, so the engine reaches a
/// canary weight by replica ratio, between `stable` and `canary` only (the tracks
/// whose ready containers join the alias on their own); it switches any track. [`TrafficRouter::weights`] reads the
/// split back from the containers' aliases: each track's share of the containers
/// that have the alias.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::model::{AppId, Name, Namespace, Track, TrafficSplit};
/// use deploy_core::traffic::TrafficRouter;
/// use deploy_docker::{NetworkAliasRouter, NetworkName};
///
/// let docker = deploy_docker::connect::connect(&Default::default()).await?;
/// let router = NetworkAliasRouter::new(docker, NetworkName::new("shop-edge")?);
/// let app = AppId::new(Namespace::new("shop")?, Name::new("web")?);
/// router.set_weights(&app, &TrafficSplit::all(Track::Green)).await?;
/// assert_eq!(router.weights(&app).await?, TrafficSplit::all(Track::Green));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NetworkAliasRouter {
    containers: Containers,
    networks: Networks,
    network: NetworkName,
    labels: BTreeMap<String, String>,
}

impl NetworkAliasRouter {
    /// A router on the serving network `network`.
    pub fn new(docker: bollard::Docker, network: NetworkName) -> Self {
        Self {
            containers: Containers::new(docker.clone()),
            networks: Networks::new(docker),
            network,
            labels: BTreeMap::new(),
        }
    }

    /// Labels the serving network with `labels` if the router creates it.
    #[must_use]
    pub fn network_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// The alias that carries `app`'s traffic: its name.
    pub fn alias(app: &AppId) -> String {
        app.name.to_string()
    }

    /// Every container of `app`, with its track, and whether it has the alias.
    async fn members(&self, app: &AppId) -> Result<Vec<(String, Track, bool)>, RouterError> {
        let ids =
            self.containers.list(&labels::app_selector(app)).await.map_err(|e| router_error("list containers", e))?;
        let alias = Self::alias(app);
        let mut members = Vec::new();
        for id in ids {
            let state = match self.containers.state(&id).await {
                Ok(state) => state,
                Err(DockerError::NotFound { .. }) => continue,
                Err(e) => return Err(router_error("inspect container", e)),
            };
            let Some(track) = state.labels.get(labels::TRACK).and_then(|t| t.parse::<Track>().ok()) else { continue };
            members.push((state.id.clone(), track, serves(&state, self.network.as_str(), &alias)));
        }
        Ok(members)
    }
}

#[async_trait::async_trait]
impl TrafficRouter for NetworkAliasRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::default().with_split_tracks(TrackSet::of([Track::Stable, Track::Canary]))
    }

    #[instrument(skip_all, fields(deploy.app = %app, traffic = %split), err)]
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let tracks: Vec<Track> = split.iter().map(|(t, _)| t).collect();
        if tracks.len() > 1 {
            return Err(RouterError::Unsupported {
                capability: format!("split traffic by weight ({split}); scale the tracks for a replica ratio"),
            });
        }
        self.networks
            .ensure(&NetworkSpec::new(self.network.as_str()).labels(self.labels.clone()))
            .await
            .map_err(|e| router_error("create the serving network", e))?;
        let members = self.members(app).await?;
        let alias = vec![Self::alias(app)];
        // Add first, then take away: the alias is never empty in between.
        for (id, track, serving) in &members {
            if tracks.contains(track) && !serving {
                self.networks
                    .connect(self.network.as_str(), id, &alias)
                    .await
                    .map_err(|e| router_error("attach container", e))?;
            }
        }
        for (id, track, serving) in &members {
            if !tracks.contains(track) && *serving {
                self.networks
                    .disconnect(self.network.as_str(), id)
                    .await
                    .map_err(|e| router_error("detach container", e))?;
            }
        }
        Ok(())
    }

    #[instrument(skip_all, fields(deploy.app = %app), err)]
    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        let mut counts: BTreeMap<Track, u64> = BTreeMap::new();
        for (_, track, serving) in self.members(app).await? {
            if serving {
                *counts.entry(track).or_default() += 1;
            }
        }
        split_from_counts(&counts).ok_or_else(|| RouterError::NotFound {
            app: app.clone(),
            what: format!("alias {} on network {}", Self::alias(app), self.network),
        })
    }
}

/// Each track's share of `counts`, in whole percent summing to 100 (the largest
/// remainders get the rounding); `None` when nothing serves.
fn split_from_counts(counts: &BTreeMap<Track, u64>) -> Option<TrafficSplit> {
    let counts = counts.iter().map(|(t, n)| (*t, u32::try_from(*n).unwrap_or(u32::MAX))).collect();
    split_of_replicas(&counts)
}

fn router_error(operation: &str, error: DockerError) -> RouterError {
    let kind = error.kind();
    let kind = if kind == ErrorKind::NotFound { ErrorKind::Other } else { kind };
    RouterError::backend(operation, kind, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_core::model::Percent;

    #[test]
    fn counts_become_whole_percent_summing_to_100() {
        let split = split_from_counts(&BTreeMap::from([(Track::Stable, 2), (Track::Canary, 1)])).unwrap();
        assert_eq!(split.weight(Track::Stable).value(), 67);
        assert_eq!(split.weight(Track::Canary).value(), 33);
        assert_eq!(split_from_counts(&BTreeMap::from([(Track::Blue, 3)])).unwrap(), TrafficSplit::all(Track::Blue));
        assert_eq!(split_from_counts(&BTreeMap::new()), None);
    }

    /// What the router does not declare it refuses without touching Docker.
    #[tokio::test]
    async fn undeclared_capabilities_are_refused() {
        use deploy_core::model::{Name, Namespace};
        use deploy_core::traffic::{HeaderMatch, HeaderRoute, Mirror};
        let docker = bollard::Docker::connect_with_http("tcp://127.0.0.1:1", 1, bollard::API_DEFAULT_VERSION).unwrap();
        let router = NetworkAliasRouter::new(docker, NetworkName::new("n").unwrap());
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
        let unsupported = |r: Result<(), RouterError>| matches!(r, Err(RouterError::Unsupported { .. }));
        assert!(unsupported(router.set_weights(&app, &TrafficSplit::canary(Percent::new(10).unwrap())).await));
        let route = HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Canary);
        assert!(unsupported(router.set_header_route(&app, &route).await));
        assert!(unsupported(router.set_mirror(&app, Track::Canary, &Mirror::new(Percent::new(10).unwrap())).await));
    }

    #[test]
    fn capabilities_are_honest() {
        let docker = bollard::Docker::connect_with_http("tcp://127.0.0.1:1", 1, bollard::API_DEFAULT_VERSION).unwrap();
        let caps = NetworkAliasRouter::new(docker, NetworkName::new("n").unwrap()).capabilities();
        assert!(!caps.weights && !caps.header_routes && !caps.mirroring && !caps.switch_only);
        assert!(caps.supports_split(&TrafficSplit::all(Track::Green)));
        assert!(!caps.supports_split(&TrafficSplit::canary(Percent::new(10).unwrap())));
        // Canary weights by replica ratio between stable and canary only; any track is switched to.
        assert_eq!(caps.split_tracks, TrackSet::of([Track::Stable, Track::Canary]));
        assert_eq!(caps.tracks, TrackSet::ALL);
        let bg_canary = deploy_core::plan::Plan::new(
            deploy_core::model::StrategyKind::Canary,
            4,
            Track::Blue,
            Track::Green,
            Track::Blue,
        )
        .step(deploy_core::plan::Step::SetWeight(Percent::new(10).unwrap()))
        .step(deploy_core::plan::Step::Promote);
        let err = bg_canary.validate(Some(caps)).unwrap_err();
        assert!(err.to_string().contains("cannot split traffic to blue"), "{err}");
        let canary = deploy_core::plan::Plan::new(
            deploy_core::model::StrategyKind::Canary,
            4,
            Track::Stable,
            Track::Canary,
            Track::Stable,
        )
        .step(deploy_core::plan::Step::SetWeight(Percent::new(10).unwrap()))
        .step(deploy_core::plan::Step::Promote);
        assert!(canary.validate(Some(caps)).is_ok());
    }
}
