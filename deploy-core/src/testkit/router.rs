//! The kit's [`TrafficRouter`].

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Fault, Method, Shared, fault_kind};
use crate::model::{AppId, Track, TrafficSplit};
use crate::platform::TrackState;
use crate::traffic::{HeaderRoute, RouterCapabilities, RouterError, TrafficRouter};

/// Weights and header routes kept in memory, with the kit's capabilities, which it
/// enforces as a real router does: a split or header route they do not declare is
/// refused with [`RouterError::Unsupported`], and with
/// [`RouterCapabilities::replica_ratio`] the stored split is rounded to replicas
/// ([`RouterCapabilities::effective_split`]). Every routing call records which
/// tracks it sent traffic to that were not ready.
#[derive(Debug)]
pub struct TestRouter {
    shared: Arc<Shared>,
}

impl TestRouter {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn enter(&self, method: Method, operation: &str, detail: String) -> Result<usize, RouterError> {
        match self.shared.enter(method, detail).await {
            (seq, None) => Ok(seq),
            (_, Some(Fault::Hang)) => std::future::pending().await,
            (_, Some(fault)) => Err(RouterError::backend(operation, fault_kind(fault), "injected by the test kit")),
        }
    }

    fn unready(&self, app: &AppId, tracks: impl Iterator<Item = Track>, seq: usize) {
        let now = Instant::now();
        let mut world = self.shared.lock();
        let unready: Vec<Track> = tracks.filter(|t| world.track_state(app, *t, now) != TrackState::Ready).collect();
        if let Some(call) = world.log.get_mut(seq) {
            call.unready = unready;
        }
    }
}

#[async_trait]
impl TrafficRouter for TestRouter {
    fn capabilities(&self) -> RouterCapabilities {
        self.shared.lock().caps
    }

    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let seq = self.enter(Method::SetWeights, "set weights", split.to_string()).await?;
        let caps = self.capabilities();
        if !caps.supports_split(split) {
            return Err(RouterError::Unsupported { capability: format!("split traffic {split}") });
        }
        // A router that divides replicas produces the rounded split, as a real one does.
        let split = &caps.effective_split(split);
        self.unready(app, split.iter().map(|(t, _)| t), seq);
        let mut world = self.shared.lock();
        if let Some(previous) = world.weights.insert(app.clone(), split.clone())
            && previous != *split
        {
            world.stale_weights.insert(app.clone(), previous);
        }
        Ok(())
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        self.enter(Method::Weights, "read weights", String::new()).await?;
        let mut world = self.shared.lock();
        if world.misreport > 0 {
            world.misreport -= 1;
            if let Some(stale) = world.stale_weights.get(app) {
                return Ok(stale.clone());
            }
        }
        Ok(world.weights.get(app).cloned().unwrap_or_else(|| TrafficSplit::all(Track::Stable)))
    }

    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        let seq = self.enter(Method::SetHeaderRoute, "set header route", route.to_string()).await?;
        let caps = self.capabilities();
        if !caps.supports_header_route(route.matches.kind(), route.track) {
            return Err(RouterError::Unsupported {
                capability: format!("route by header {} match to {}", route.matches.kind(), route.track),
            });
        }
        self.unready(app, std::iter::once(route.track), seq);
        let mut world = self.shared.lock();
        let routes = world.header_routes.entry(app.clone()).or_default();
        routes.retain(|r| r.header != route.header);
        if caps.max_header_routes.is_some_and(|max| routes.len() >= usize::try_from(max).unwrap_or(usize::MAX)) {
            return Err(RouterError::Unsupported {
                capability: format!("hold more than {} header routes", routes.len()),
            });
        }
        routes.push(route.clone());
        Ok(())
    }

    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        self.enter(Method::ClearHeaderRoutes, "clear header routes", String::new()).await?;
        self.shared.lock().header_routes.remove(app);
        Ok(())
    }
}
