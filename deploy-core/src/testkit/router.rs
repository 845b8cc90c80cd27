//! The kit's [`TrafficRouter`].

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Fault, Method, Shared, fault_kind};
use crate::model::{AppId, Track, TrafficSplit};
use crate::platform::TrackState;
use crate::traffic::{HeaderRoute, Mirror, RouterCapabilities, RouterError, TrafficRouter};

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

    async fn set_mirror(&self, app: &AppId, track: Track, mirror: &Mirror) -> Result<(), RouterError> {
        let seq = self.enter(Method::SetMirror, "set mirror", format!("{mirror} -> {track}")).await?;
        let caps = self.capabilities();
        if !caps.mirroring || !caps.tracks.contains(track) {
            return Err(RouterError::Unsupported { capability: format!("mirror traffic to {track}") });
        }
        self.unready(app, std::iter::once(track), seq);
        self.shared.lock().mirrors.insert(app.clone(), (track, mirror.clone()));
        Ok(())
    }

    async fn clear_mirror(&self, app: &AppId) -> Result<(), RouterError> {
        self.enter(Method::ClearMirror, "clear mirror", String::new()).await?;
        self.shared.lock().mirrors.remove(app);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{RolloutEngine, RolloutEvent, RolloutRequest};
    use crate::model::{DeploymentStatus, Percent};
    use crate::strategy::{Canary, PlanInput, Strategy};
    use crate::testkit::{TestKit, sample_app};
    use crate::traffic::{HeaderMatch, HeaderMatchKind, HeaderMatchKinds, TrackSet};

    fn pct(v: u8) -> Percent {
        Percent::new(v).unwrap()
    }

    /// Issue 17: the default canary (10 → 25 → 50 → 75 → 100) behind a router that
    /// divides replicas succeeds at 4 and at 10 replicas; the engine records the
    /// requested and the effective split, and checks the read-back against the latter.
    #[tokio::test(start_paused = true)]
    async fn default_canary_succeeds_behind_a_replica_ratio_router_at_4_and_10_replicas() {
        for (replicas, expected) in [
            (4, ["stable=75% canary=25%", "stable=75% canary=25%", "stable=50% canary=50%", "stable=25% canary=75%"]),
            (10, ["stable=90% canary=10%", "stable=70% canary=30%", "stable=50% canary=50%", "stable=30% canary=70%"]),
        ] {
            let kit = TestKit::with_router_capabilities(RouterCapabilities::replica_ratio(replicas));
            let (spec, v1, v2) = sample_app(replicas);
            kit.seed(&spec, Track::Stable, &v1);
            let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
                .router(kit.router())
                .build();
            let plan = Canary::default().plan(&PlanInput::new(replicas));
            let request = RolloutRequest::new(spec.clone(), v2.clone(), plan).from(v1);
            assert!(engine.validate(&request).is_ok(), "{replicas} replicas: {:?}", engine.validate(&request));
            let mut handle = engine.start(request).await.unwrap();
            let mut events = Vec::new();
            while let Some(e) = handle.next_event().await {
                events.push(e);
            }
            let report = handle.wait().await.unwrap();
            assert_eq!(report.status, DeploymentStatus::Succeeded, "{replicas} replicas: {:?}", report.cause);
            let weights: Vec<String> = events
                .iter()
                .filter_map(
                    |e| if let RolloutEvent::WeightChanged { split } = e { Some(split.to_string()) } else { None },
                )
                .collect();
            assert_eq!(weights[..4], expected, "{replicas} replicas");
            assert_eq!(weights[4..], ["canary=100%", "stable=100%"], "{replicas} replicas");
            let decisions: Vec<String> = events
                .iter()
                .filter_map(|e| if let RolloutEvent::Decision { kind } = e { Some(kind.to_string()) } else { None })
                .collect();
            let requested_25 = "traffic stable=75% canary=25% requested; the router can produce";
            if replicas == 10 {
                assert!(decisions.iter().any(|d| d.starts_with(requested_25)), "{decisions:#?}");
                let step = report.record.steps.iter().find(|s| s.description == "set canary weight to 25%").unwrap();
                assert!(step.details.iter().any(|d| d.starts_with(requested_25)), "{:?}", step.details);
                assert!(step.details.iter().any(|d| d == "traffic stable=70% canary=30%, read back and verified"));
            }
            assert_eq!(kit.snapshot(&spec.id()).weights, Some(TrafficSplit::all(Track::Stable)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_plan_the_replica_ratio_cannot_carry_is_refused_before_anything_runs() {
        let kit = TestKit::with_router_capabilities(RouterCapabilities::replica_ratio(1));
        let (spec, v1, v2) = sample_app(1);
        kit.seed(&spec, Track::Stable, &v1);
        let engine =
            RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store()).router(kit.router()).build();
        let request = RolloutRequest::new(spec, v2, Canary::default().plan(&PlanInput::new(1))).from(v1);
        let err = engine.start(request).await.unwrap_err().to_string();
        assert!(err.contains("10% with 1 replica"), "{err}");
        assert!(err.contains("needs at least 2 replicas"), "{err}");
        assert!(kit.calls().is_empty(), "nothing ran: {:?}", kit.calls());
    }

    /// Issue 17, item 4: a mirror step copies the listed methods to the new track
    /// until promotion; behind a router without mirroring the plan is refused.
    #[tokio::test(start_paused = true)]
    async fn a_mirror_step_runs_until_promotion_and_needs_a_router_that_mirrors() {
        use crate::plan::Step;
        let plan = |replicas| {
            let steps = vec![
                Step::Mirror(crate::traffic::Mirror::new(pct(50))),
                Step::SetWeight(pct(50)),
                Step::Pause(crate::plan::PauseKind::Duration(crate::model::HumanDuration::new(
                    std::time::Duration::from_secs(60),
                ))),
            ];
            Canary::with_steps(steps).plan(&PlanInput::new(replicas))
        };
        let kit = TestKit::new();
        let (spec, v1, v2) = sample_app(4);
        kit.seed(&spec, Track::Stable, &v1);
        let engine =
            RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store()).router(kit.router()).build();
        let request = RolloutRequest::new(spec.clone(), v2.clone(), plan(4)).from(v1.clone());
        let mut handle = engine.start(request).await.unwrap();
        loop {
            match handle.next_event().await {
                Some(RolloutEvent::Paused { .. }) => break,
                Some(_) => {}
                None => panic!("ended before the pause"),
            }
        }
        let (track, mirror) = kit.mirror(&spec.id()).expect("mirroring during the canary");
        assert_eq!(
            (track, mirror.methods.as_slice()),
            (Track::Canary, ["GET".to_owned(), "HEAD".to_owned()].as_slice())
        );
        let report = handle.wait().await.unwrap();
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
        assert_eq!(kit.mirror(&spec.id()), None, "mirroring stopped at promotion");

        let weights_only = TestKit::with_router_capabilities(RouterCapabilities::weights_only());
        weights_only.seed(&spec, Track::Stable, &v1);
        let engine =
            RolloutEngine::builder(weights_only.platform(), weights_only.state_store(), weights_only.history_store())
                .router(weights_only.router())
                .build();
        let err = engine.start(RolloutRequest::new(spec, v2, plan(4)).from(v1)).await.unwrap_err().to_string();
        assert!(err.contains("cannot mirror traffic"), "{err}");
        assert!(weights_only.calls().is_empty());
    }

    /// Issue 17, item 3: through the engine, every capability the plan needs and the
    /// router lacks is listed at once, and nothing runs.
    #[tokio::test(start_paused = true)]
    async fn the_engine_refuses_a_plan_beyond_its_router_listing_every_problem_before_anything_runs() {
        use crate::plan::Step;
        let nginx_like = RouterCapabilities::weights_only()
            .with_tracks(TrackSet::of([Track::Stable, Track::Canary]))
            .with_header_routes()
            .with_header_matches(HeaderMatchKinds::of([HeaderMatchKind::Exact, HeaderMatchKind::Regex]))
            .with_header_route_tracks(TrackSet::of([Track::Canary]))
            .with_max_header_routes(1);
        let kit = TestKit::with_router_capabilities(nginx_like);
        let (spec, v1, v2) = sample_app(4);
        kit.seed(&spec, Track::Stable, &v1);
        let engine =
            RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store()).router(kit.router()).build();
        let steps = vec![
            Step::HeaderRoute(HeaderRoute::new("x-beta", HeaderMatch::Prefix("yes".into()), Track::Canary)),
            Step::HeaderRoute(HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Canary)),
            Step::Mirror(crate::traffic::Mirror::new(pct(10))),
            Step::SetWeight(pct(20)),
        ];
        let plan = Canary::with_steps(steps).plan(&PlanInput::new(4));
        let err = engine.start(RolloutRequest::new(spec, v2, plan).from(v1)).await.unwrap_err();
        let text = err.to_string();
        for expected in
            ["cannot match a header by prefix", "2 header routes (x-beta, x-canary)", "cannot mirror traffic"]
        {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        assert!(kit.calls().is_empty(), "nothing ran: {:?}", kit.calls());
    }

    /// The kit's router does what its capabilities declare and refuses the rest.
    #[tokio::test(start_paused = true)]
    async fn the_kit_router_refuses_what_its_capabilities_do_not_declare() {
        let caps = RouterCapabilities::weights_only()
            .with_tracks(TrackSet::of([Track::Stable, Track::Canary]))
            .with_header_routes()
            .with_header_matches(HeaderMatchKinds::of([HeaderMatchKind::Exact]))
            .with_header_route_tracks(TrackSet::of([Track::Canary]))
            .with_max_header_routes(1);
        let kit = TestKit::with_router_capabilities(caps);
        let (spec, v1, _) = sample_app(2);
        kit.seed(&spec, Track::Stable, &v1);
        kit.seed(&spec, Track::Canary, &v1);
        let (router, app) = (kit.router(), spec.id());
        router.set_weights(&app, &TrafficSplit::canary(pct(10))).await.unwrap();
        assert_eq!(router.weights(&app).await.unwrap(), TrafficSplit::canary(pct(10)));
        let blue = TrafficSplit::between(Track::Blue, Track::Green, pct(10));
        assert!(matches!(router.set_weights(&app, &blue).await, Err(RouterError::Unsupported { .. })));
        let exact = HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Canary);
        router.set_header_route(&app, &exact).await.unwrap();
        router.set_header_route(&app, &exact).await.unwrap();
        for refused in [
            HeaderRoute::new("x-canary", HeaderMatch::Prefix("1".into()), Track::Canary),
            HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Stable),
            HeaderRoute::new("x-other", HeaderMatch::Exact("1".into()), Track::Canary),
        ] {
            let err = router.set_header_route(&app, &refused).await.unwrap_err();
            assert!(matches!(err, RouterError::Unsupported { .. }), "{refused}: {err}");
        }
        assert_eq!(kit.snapshot(&app).header_routes, [exact]);

        let switch = TestKit::with_router_capabilities(RouterCapabilities::switch_only());
        switch.seed(&spec, Track::Stable, &v1);
        let router = switch.router();
        assert!(matches!(
            router.set_weights(&app, &TrafficSplit::canary(pct(10))).await,
            Err(RouterError::Unsupported { .. })
        ));
        let any = HeaderRoute::new("x-canary", HeaderMatch::Exact("1".into()), Track::Canary);
        assert!(matches!(router.set_header_route(&app, &any).await, Err(RouterError::Unsupported { .. })));
        let _ = Arc::clone(&router);
    }
}
