//! Fixtures shared by the engine's integration tests.
#![allow(dead_code, reason = "each test file uses a part of the fixtures")]

use std::sync::Arc;
use std::time::Duration;

use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{EngineConfig, RetryPolicy, RolloutEngine, RolloutRequest};
use deploy_core::model::{AppSpec, HumanDuration, Percent, Release, Track};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::strategy::{AutoPromotion, BlueGreen, Canary, FlaggerAnalysis, PlanInput, RollingUpdate, Strategy};
use deploy_core::testkit::{self, TestHealthCheck, TestKit};
use deploy_core::traffic::{HeaderMatch, HeaderRoute, RouterCapabilities};

pub const REPLICAS: u32 = 4;
pub const LOCK_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strat {
    Rolling,
    BlueGreen,
    Canary,
    CanaryReplicaRatio,
    Flagger,
}

impl Strat {
    pub const ALL: [Strat; 5] =
        [Strat::Rolling, Strat::BlueGreen, Strat::Canary, Strat::CanaryReplicaRatio, Strat::Flagger];

    /// The router the engine gets, if any.
    pub fn router(self) -> Option<RouterCapabilities> {
        match self {
            Strat::Rolling | Strat::CanaryReplicaRatio => None,
            Strat::BlueGreen | Strat::Canary => Some(RouterCapabilities::full()),
            Strat::Flagger => Some(RouterCapabilities::weights_only()),
        }
    }
}

pub fn secs(s: u64) -> HumanDuration {
    HumanDuration::new(Duration::from_secs(s))
}

pub fn pct(v: u8) -> Percent {
    Percent::new(v).unwrap()
}

/// Error rate at most 1 % and the smoke check, twice, 30 s apart; one silent
/// measurement tolerated.
pub fn analysis(name: &str) -> AnalysisSpec {
    AnalysisSpec::new(name)
        .metric(MetricCheck::new(
            "error-rate",
            "sum(rate(errors{track=\"{{track}}\"}[{{interval}}]))",
            JudgeSpec::max(0.01),
        ))
        .health_check("smoke")
        .interval(secs(30))
        .count(2)
        .inconclusive_limit(1)
}

pub fn plan(strat: Strat) -> Plan {
    plan_for_live(strat, if strat == Strat::BlueGreen { Track::Blue } else { Track::Stable })
}

/// The fixture's plan for `strat`, made as if `live` served (blue-green's colour).
pub fn plan_for_live(strat: Strat, live: Track) -> Plan {
    let input = PlanInput::new(REPLICAS).live_track(live);
    match strat {
        Strat::Rolling => RollingUpdate::default().analysis(analysis("post-update")).plan(&input),
        Strat::BlueGreen => BlueGreen::default()
            .preview("x-preview", HeaderMatch::Exact("1".into()))
            .auto_promotion(AutoPromotion::After(secs(60)))
            .pre_promotion(analysis("pre-promotion"))
            .post_promotion(analysis("post-promotion"))
            .scale_down_delay(secs(30))
            .plan(&input),
        Strat::Canary => {
            let mut steps = vec![Step::HeaderRoute(HeaderRoute::new(
                "x-canary",
                HeaderMatch::Exact("always".into()),
                Track::Canary,
            ))];
            steps.extend(Canary::progressive([10, 25, 50, 75, 100].map(pct), &analysis("canary")).steps);
            steps.insert(3, Step::Pause(PauseKind::Duration(secs(45))));
            Canary::with_steps(steps).scale_down_delay(secs(30)).plan(&input)
        }
        Strat::CanaryReplicaRatio => Canary::progressive([25, 50, 100].map(pct), &analysis("canary")).plan(&input),
        Strat::Flagger => {
            let f = FlaggerAnalysis::new(pct(20), pct(60), secs(30), 2)
                .metric(MetricCheck::new("error-rate", "q", JudgeSpec::max(0.01)))
                .health_check("smoke");
            Canary::flagger(&f).plan(&input)
        }
    }
}

pub struct Fixture {
    pub kit: TestKit,
    pub engine: RolloutEngine,
    pub smoke: Arc<TestHealthCheck>,
    pub spec: AppSpec,
    pub v1: Release,
    pub v2: Release,
    pub plan: Plan,
    pub strat: Strat,
}

pub fn config(holder: &str) -> EngineConfig {
    EngineConfig::default()
        .step_deadline(Duration::from_secs(300))
        .readiness_deadline(Duration::from_secs(120))
        .retry(RetryPolicy::new(3, Duration::from_secs(1), Duration::from_secs(4)))
        .lock_ttl(LOCK_TTL)
        .holder(holder)
}

impl Fixture {
    pub fn new(strat: Strat) -> Self {
        let kit = TestKit::new();
        let (spec, v1, v2) = testkit::sample_app(REPLICAS);
        let plan = plan(strat);
        kit.seed(&spec, plan.old_track, &v1);
        for track in Track::ALL {
            kit.metric_values().set("error-rate", track, 0.001);
        }
        let smoke = Arc::new(TestHealthCheck::new("smoke"));
        let engine = Self::engine_on(&kit, &smoke, strat, "engine-a");
        Self { kit, engine, smoke, spec, v1, v2, plan, strat }
    }

    /// Another engine (another process) on the same world.
    pub fn engine_on(kit: &TestKit, smoke: &Arc<TestHealthCheck>, strat: Strat, holder: &str) -> RolloutEngine {
        let mut builder = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
            .metrics(kit.metrics())
            .health_check(smoke.clone())
            .config(config(holder));
        if strat.router().is_some() {
            builder = builder.router(kit.router());
        }
        builder.build()
    }

    pub fn request(&self) -> RolloutRequest {
        RolloutRequest::new(self.spec.clone(), self.v2.clone(), self.plan.clone()).from(self.v1.clone())
    }
}

/// A kit whose router has `caps` (the default fixture's router can do everything).
pub fn with_caps(strat: Strat, caps: RouterCapabilities) -> Fixture {
    let mut f = Fixture::new(strat);
    let kit = TestKit::with_router_capabilities(caps);
    kit.seed(&f.spec, f.plan.old_track, &f.v1);
    for track in Track::ALL {
        kit.metric_values().set("error-rate", track, 0.001);
    }
    f.engine = Fixture::engine_on(&kit, &f.smoke, strat, "engine-a");
    f.kit = kit;
    f
}

/// Resumes `app` on `engine` as soon as its lock lets it: a lease another engine
/// left is taken over once this engine has seen it unchanged for its ttl.
pub async fn resume_when_free(
    engine: &RolloutEngine,
    app: &deploy_core::model::AppId,
) -> deploy_core::engine::RolloutHandle {
    for _ in 0..600 {
        match engine.resume(app).await {
            Ok(handle) => return handle,
            Err(deploy_core::engine::RolloutError::Locked { .. }) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => panic!("resume failed: {e}"),
        }
    }
    panic!("the lock of {app} never became free")
}
