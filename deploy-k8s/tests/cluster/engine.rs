//! deploy-core's rollout engine on the real API server: every strategy × every
//! router that can run there, promoted and rolled back, with the end state read
//! back from the server (Deployments, ReplicaSets, pods, Service, VirtualService,
//! HTTPRoute, Ingress, Lease, state ConfigMap, history).

use std::sync::Arc;
use std::time::Duration;

use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{
    EngineConfig, RetryPolicy, RolloutEngine, RolloutEngineBuilder, RolloutReport, RolloutRequest,
};
use deploy_core::history::HistoryStore;
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, HumanDuration, Percent, Release, Track};
use deploy_core::plan::{Plan, Step};
use deploy_core::platform::Platform;
use deploy_core::strategy::{BlueGreen, Canary, FlaggerAnalysis, PlanInput, RollingUpdate, Strategy};
use deploy_core::testkit::TestKit;
use deploy_core::traffic::TrafficRouter;
use deploy_k8s::labels;
use deploy_k8s::manifest::{ServiceOptions, service};
use deploy_k8s::router::{GatewayRouter, IstioRouter, NginxCanaryRouter, ReplicaRatioRouter, ServiceSelectorRouter};
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore, lock_name, state_name};
use deploy_k8s::{KubePlatform, PlatformOptions};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};

use crate::support::{self, Scratch, eventually};

pub const REPLICAS: u32 = 4;
pub const OLD: &str = "1";
pub const NEW: &str = "2";

/// The strategy of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strat {
    Rolling,
    BlueGreen,
    Canary,
    Flagger,
}

/// How traffic reaches the tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// No router: the engine reaches canary weights by replica counts behind one Service.
    Replicas,
    /// [`ReplicaRatioRouter`].
    ReplicaRatio,
    /// [`ServiceSelectorRouter`].
    ServiceSelector,
    /// [`IstioRouter`] over a VirtualService (upstream Istio CRDs).
    Istio,
    /// [`GatewayRouter`] over an HTTPRoute (upstream Gateway API CRD).
    Gateway,
    /// [`NginxCanaryRouter`] over a canary Ingress.
    Nginx,
}

/// How the new release behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Promoted,
    ImagePull,
    CrashLoop,
    NeverReady,
    FailedAnalysis,
}

impl Outcome {
    fn release(self) -> Release {
        match self {
            Outcome::Promoted | Outcome::FailedAnalysis => support::release(NEW),
            Outcome::ImagePull => support::missing_image_release(NEW),
            Outcome::CrashLoop => support::crash_loop_release(NEW),
            Outcome::NeverReady => support::never_ready_release(NEW),
        }
    }

    fn cause(self) -> Option<CauseKind> {
        match self {
            Outcome::Promoted => None,
            Outcome::ImagePull | Outcome::CrashLoop => Some(CauseKind::Doomed),
            Outcome::NeverReady => Some(CauseKind::ReadinessDeadline),
            Outcome::FailedAnalysis => Some(CauseKind::AnalysisFailed),
        }
    }
}

pub fn secs(s: u64) -> HumanDuration {
    HumanDuration::new(Duration::from_secs(s))
}

fn pct(v: u8) -> Percent {
    Percent::new(v).expect("percent")
}

/// Error rate at most 1 %, measured twice, a second apart.
pub fn analysis() -> AnalysisSpec {
    AnalysisSpec::new("errors")
        .metric(MetricCheck::new("error-rate", "sum(rate(errors[1m]))", JudgeSpec::max(0.01)))
        .interval(secs(1))
        .count(2)
}

pub fn plan(strat: Strat) -> Plan {
    let input = PlanInput::new(REPLICAS);
    match strat {
        Strat::Rolling => RollingUpdate::default().analysis(analysis()).plan(&input),
        Strat::BlueGreen => BlueGreen::default()
            .pre_promotion(analysis())
            .scale_down_delay(HumanDuration::ZERO)
            .plan(&input.live_track(Track::Blue)),
        Strat::Canary => Canary::with_steps(vec![
            Step::SetWeight(pct(25)),
            Step::Analyze(analysis()),
            Step::SetWeight(pct(50)),
            Step::SetWeight(pct(75)),
        ])
        .scale_down_delay(HumanDuration::ZERO)
        .plan(&input),
        Strat::Flagger => {
            Canary::flagger(&FlaggerAnalysis::new(pct(25), pct(50), secs(1), 2).metric(MetricCheck::new(
                "error-rate",
                "sum(rate(errors[1m]))",
                JudgeSpec::max(0.01),
            )))
            .scale_down_delay(HumanDuration::ZERO)
            .plan(&input)
        }
    }
}

/// One app on the real server, its old release serving, and an engine for it.
pub struct World {
    pub s: Scratch,
    /// Replicas of the app.
    pub replicas: u32,
    pub strat: Strat,
    pub route: Route,
    pub plan: Plan,
    pub kit: TestKit,
    pub history: KubeHistoryStore,
}

/// Readiness waits 30 s: a rolling update missed 15 s once with a load of 28 on 2 CPUs
/// (the never-ready tests wait this long to fail).
pub fn engine_config(holder: &str) -> EngineConfig {
    EngineConfig::default()
        .step_deadline(Duration::from_secs(90))
        .readiness_deadline(Duration::from_secs(30))
        .retry(RetryPolicy::new(3, Duration::from_millis(50), Duration::from_millis(400)))
        .lock_ttl(Duration::from_secs(15))
        .holder(holder)
}

impl World {
    pub async fn new(test: &str, strat: Strat, route: Route) -> Self {
        Self::with_replicas(test, strat, route, REPLICAS).await
    }

    /// The old release running on `replicas` replicas, and a plan for as many.
    pub async fn with_replicas(test: &str, strat: Strat, route: Route, replicas: u32) -> Self {
        let s = Scratch::new(test).await;
        if matches!(route, Route::Istio | Route::Gateway) {
            support::install_crds(s.cluster.client()).await;
        }
        let spec = s.spec().replicas(replicas);
        let old = old_track(strat);
        let platform = KubePlatform::new(s.cluster.clone(), PlatformOptions::default());
        platform.apply(&spec, old, &support::release(OLD), replicas).await.expect("deploy the old release");
        platform.wait_ready(&s.app(), old, Duration::from_secs(60)).await.expect("the old release gets ready");
        let main =
            if strat == Strat::BlueGreen { ServiceOptions::default().track(old) } else { ServiceOptions::default() };
        s.cluster.apply(&service(&spec, &main)).await.expect("the app's Service");
        if matches!(route, Route::Gateway | Route::Nginx) {
            for track in [Track::Stable, Track::Canary] {
                let per_track = ServiceOptions::default().name(labels::workload_name(&s.app(), track)).track(track);
                s.cluster.apply(&service(&spec, &per_track)).await.expect("a track Service");
            }
        }
        match route {
            Route::Istio => create(&s, &VIRTUAL_SERVICE, user_virtual_service(&s.namespace)).await,
            Route::Gateway => create(&s, &HTTP_ROUTE, user_http_route(&s.namespace)).await,
            Route::Nginx => {
                let ingresses: Api<Ingress> = s.api();
                for ingress in user_ingresses(&s.namespace) {
                    let ingress: Ingress = serde_json::from_value(ingress).expect("an Ingress");
                    ingresses.create(&PostParams::default(), &ingress).await.expect("create the Ingresses");
                }
            }
            _ => {}
        }
        let history = KubeHistoryStore::new(s.cluster.clone(), s.ns());
        Self { plan: plan(strat), kit: TestKit::new(), history, s, strat, route, replicas }
    }

    fn router_on(&self, c: deploy_k8s::Cluster) -> Option<Arc<dyn TrafficRouter>> {
        match self.route {
            Route::Replicas => None,
            Route::ReplicaRatio => Some(Arc::new(ReplicaRatioRouter::new(c, self.replicas))),
            Route::ServiceSelector => Some(Arc::new(ServiceSelectorRouter::new(c))),
            Route::Istio => Some(Arc::new(IstioRouter::new(c))),
            Route::Gateway => Some(Arc::new(GatewayRouter::new(c, 80))),
            Route::Nginx => Some(Arc::new(NginxCanaryRouter::new(c))),
        }
    }

    pub fn engine(&self, holder: &str) -> RolloutEngine {
        self.engine_with(engine_config(holder))
    }

    pub fn engine_with(&self, config: EngineConfig) -> RolloutEngine {
        self.engine_on(self.s.cluster.clone(), config)
    }

    /// An engine that signs its saved progress with `key`.
    pub fn signed_engine(&self, holder: &str, key: &[u8]) -> RolloutEngine {
        let key = deploy_core::signed_state::StateKey::new(key.to_vec()).expect("a key");
        self.builder_on(self.s.cluster.clone(), engine_config(holder)).sign_state(key).build()
    }

    /// An engine whose platform, router and stores talk through `c`.
    pub fn engine_on(&self, c: deploy_k8s::Cluster, config: EngineConfig) -> RolloutEngine {
        self.builder_on(c, config).build()
    }

    /// The builder of [`World::engine_on`], for tests that add a part.
    pub fn builder_on(&self, c: deploy_k8s::Cluster, config: EngineConfig) -> RolloutEngineBuilder {
        let c_router = c.clone();
        let mut builder = RolloutEngine::builder(
            Arc::new(KubePlatform::new(c.clone(), PlatformOptions::default())),
            Arc::new(KubeStateStore::new(c.clone())),
            Arc::new(KubeHistoryStore::new(c, self.s.ns())),
        )
        .metrics(self.kit.metrics())
        .config(config);
        if let Some(router) = self.router_on(c_router) {
            builder = builder.router(router);
        }
        builder
    }

    pub fn request(&self, to: Release) -> RolloutRequest {
        RolloutRequest::new(self.s.spec().replicas(self.replicas), to, self.plan.clone()).from(support::release(OLD))
    }

    /// Scripts the error rate the analysis reads for the track under test.
    pub fn error_rate(&self, rate: f64) {
        for track in [Track::Stable, Track::Canary, Track::Blue, Track::Green] {
            self.kit.metric_values().set("error-rate", track, 0.001);
        }
        self.kit.metric_values().set("error-rate", self.plan.new_track, rate);
    }

    pub fn old_track(&self) -> Track {
        old_track(self.strat)
    }
}

fn old_track(strat: Strat) -> Track {
    if strat == Strat::BlueGreen { Track::Blue } else { Track::Stable }
}

// --- user-shaped routing objects ---------------------------------------------

pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

pub const VIRTUAL_SERVICE: Kind =
    Kind { group: "networking.istio.io", version: "v1", kind: "VirtualService", plural: "virtualservices" };
pub const HTTP_ROUTE: Kind =
    Kind { group: "gateway.networking.k8s.io", version: "v1", kind: "HTTPRoute", plural: "httproutes" };

pub fn dynamic(s: &Scratch, kind: &Kind) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(kind.group, kind.version, kind.kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, kind.plural);
    Api::namespaced_with(s.cluster.client().clone(), &s.namespace, &resource)
}

async fn create(s: &Scratch, kind: &Kind, object: Value) {
    let object: DynamicObject = serde_json::from_value(object).expect("a dynamic object");
    dynamic(s, kind).create(&PostParams::default(), &object).await.expect("create the routing object");
}

/// The object as the server holds it, as JSON.
pub async fn read(s: &Scratch, kind: &Kind, name: &str) -> Value {
    let object = dynamic(s, kind).get(name).await.expect("read the routing object");
    serde_json::to_value(object).expect("json")
}

/// A VirtualService the way the router's docs ask a user to write it: a primary
/// route named `primary` with stable and canary subsets.
pub fn user_virtual_service(namespace: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "hosts": ["web"],
            "http": [{
                "name": "primary",
                "route": [
                    {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                    {"destination": {"host": "web", "subset": "canary"}, "weight": 0}
                ]
            }]
        }
    })
}

/// An HTTPRoute with one weighted rule over the track Services.
pub fn user_http_route(namespace: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 100},
                {"name": "web-canary", "port": 80, "weight": 0}
            ]}]
        }
    })
}

/// The main Ingress and the canary Ingress that ingress-nginx pairs by host and path.
pub fn user_ingresses(namespace: &str) -> Vec<Value> {
    let ingress = |name: &str, backend: &str, annotations: Value| {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": backend, "port": {"number": 80}}}}
            ]}}]}
        })
    };
    vec![
        ingress("web", "web-stable", json!({})),
        ingress(
            "web-canary",
            "web-canary",
            json!({"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "0"}),
        ),
    ]
}

// --- reading the end state back -------------------------------------------------

/// The tracks that receive traffic at the end, as the routing objects on the server say.
pub async fn served_tracks(w: &World) -> Vec<String> {
    let s = &w.s;
    let mut tracks: Vec<String> = match w.route {
        Route::ServiceSelector => {
            let svc: Service = s.api().get("web").await.expect("the Service");
            let selector = svc.spec.and_then(|sp| sp.selector).unwrap_or_default();
            selector.get(labels::TRACK).cloned().into_iter().collect()
        }
        Route::Replicas | Route::ReplicaRatio => {
            let mut running = Vec::new();
            for track in ["stable", "canary", "blue", "green"] {
                if replicas(s, track).await.is_some_and(|n| n > 0) {
                    running.push(track.to_owned());
                }
            }
            running
        }
        Route::Istio => {
            let vs = read(s, &VIRTUAL_SERVICE, "web").await;
            let primary = vs["spec"]["http"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == "primary")
                .cloned()
                .expect("the primary route survives");
            primary["route"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["weight"].as_i64().is_none_or(|w| w > 0))
                .filter_map(|d| d["destination"]["subset"].as_str().map(str::to_owned))
                .collect()
        }
        Route::Gateway => {
            let route = read(s, &HTTP_ROUTE, "web").await;
            let rule = route["spec"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["matches"].as_array().is_none_or(|m| m.iter().all(|m| m["headers"].is_null())))
                .cloned()
                .expect("the weighted rule survives");
            rule["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["weight"].as_i64().is_none_or(|w| w > 0))
                .filter_map(|b| b["name"].as_str().and_then(|n| n.strip_prefix("web-")).map(str::to_owned))
                .collect()
        }
        Route::Nginx => {
            let canary: Ingress = s.api().get("web-canary").await.expect("the canary Ingress");
            let annotations = canary.metadata.annotations.unwrap_or_default();
            let weight: u32 =
                annotations.get("nginx.ingress.kubernetes.io/canary-weight").and_then(|w| w.parse().ok()).unwrap_or(0);
            let mut t = Vec::new();
            if weight < 100 {
                t.push("stable".to_owned());
            }
            if weight > 0 {
                t.push("canary".to_owned());
            }
            t
        }
    };
    tracks.sort();
    tracks
}

pub async fn deployment(s: &Scratch, track: &str) -> Option<Deployment> {
    let api: Api<Deployment> = s.api();
    api.get_opt(&format!("web-{track}")).await.expect("read a Deployment")
}

async fn replicas(s: &Scratch, track: &str) -> Option<i32> {
    deployment(s, track).await.map(|d| d.spec.replicas.unwrap_or(1))
}

pub fn version_of(d: &Deployment) -> Option<String> {
    d.spec.template.metadata.as_ref()?.labels.as_ref()?.get(labels::VERSION).cloned()
}

/// Whether the Deployment is complete as the controllers report it: observed,
/// every replica updated, ready and available.
pub fn complete(d: &Deployment, replicas: i32) -> bool {
    let Some(status) = &d.status else { return false };
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(replicas)
        && status.ready_replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
        && status.replicas == Some(replicas)
}

/// The track runs `version` on all its replicas, Ready, as the server reports.
pub async fn assert_serves(s: &Scratch, track: Track, version: &str, context: &str) {
    let track = track.as_str().to_owned();
    let version = version.to_owned();
    eventually(
        &format!("{context}: web-{track} runs {version} on {REPLICAS} ready replicas"),
        Duration::from_secs(30),
        || {
            let track = track.clone();
            let version = version.clone();
            async move {
                deployment(s, &track).await.is_some_and(|d| {
                    version_of(&d).as_deref() == Some(version.as_str()) && complete(&d, REPLICAS as i32)
                })
            }
        },
    )
    .await;
}

/// Nothing of `version` runs: no ReplicaSet with replicas, no pod.
pub async fn assert_nothing_runs(s: &Scratch, version: &str, context: &str) {
    let selector = format!("{}={}", labels::VERSION, version);
    let rs: Api<ReplicaSet> = s.api();
    let pods: Api<Pod> = s.api();
    eventually(&format!("{context}: nothing of {version} runs"), Duration::from_secs(30), || {
        let (rs, pods, selector) = (rs.clone(), pods.clone(), selector.clone());
        async move {
            let lp = ListParams::default().labels(&selector);
            let sets = rs.list(&lp).await.expect("list ReplicaSets");
            let running = pods.list(&lp).await.expect("list pods");
            sets.items.iter().all(|r| r.spec.replicas.unwrap_or(0) == 0) && running.items.is_empty()
        }
    })
    .await;
}

/// The Lease is released and the progress cleared, on the server.
pub async fn assert_lock_and_state_cleared(s: &Scratch, context: &str) {
    let leases: Api<Lease> = s.api();
    let lease = leases.get_opt(&lock_name(&s.app())).await.expect("read the Lease");
    let holder = lease.and_then(|l| l.spec).and_then(|sp| sp.holder_identity);
    assert!(holder.as_ref().is_none_or(String::is_empty), "{context}: the Lease is still held by {holder:?}");
    let maps: Api<ConfigMap> = s.api();
    let state = maps.get_opt(&state_name(&s.app())).await.expect("read the state ConfigMap");
    assert!(state.is_none(), "{context}: progress left behind: {:?}", state.and_then(|c| c.data));
}

/// Runs the rollout and checks every end state the issue names.
pub async fn check(test: &str, strat: Strat, route: Route, outcome: Outcome) {
    let w = World::new(test, strat, route).await;
    w.error_rate(if outcome == Outcome::FailedAnalysis { 0.5 } else { 0.001 });
    let engine = w.engine("real-cluster-test");
    let to = outcome.release();
    let report: RolloutReport = engine.run(w.request(to.clone())).await.expect("the engine returns a report");
    let context = format!("{strat:?} × {route:?} × {outcome:?}");
    let record = w.history.get(&report.record.id).await.expect("read history").expect("the record is stored");
    assert_eq!(record.status, report.status, "{context}: the stored record says what the report says");
    match outcome.cause() {
        None => {
            assert_eq!(report.status, DeploymentStatus::Succeeded, "{context}: {:?}", report.cause);
            let final_track = w.plan.final_track;
            assert_serves(&w.s, final_track, NEW, &context).await;
            assert_eq!(served_tracks(&w).await, [final_track.as_str()], "{context}: all traffic to {final_track}");
            for track in w.plan.tracks().into_iter().filter(|t| *t != final_track) {
                let left = replicas(&w.s, track.as_str()).await;
                assert!(left.is_none_or(|n| n == 0), "{context}: {track} still runs {left:?} replicas");
            }
            assert_nothing_runs(&w.s, OLD, &context).await;
        }
        Some(kind) => {
            assert_eq!(report.status, DeploymentStatus::RolledBack, "{context}: {:?}", report.cause);
            let cause = report.cause.as_ref().expect("a rolled-back rollout says why");
            assert_eq!(cause.kind, kind, "{context}: {cause:?}");
            let stored = record.cause.clone().expect("the stored record carries the cause");
            assert_eq!(&stored, cause, "{context}: the history keeps the typed cause");
            let old = w.old_track();
            assert_serves(&w.s, old, OLD, &context).await;
            assert_eq!(served_tracks(&w).await, [old.as_str()], "{context}: all traffic back to {old}");
            assert_nothing_runs(&w.s, to.version.as_str(), &context).await;
        }
    }
    assert_lock_and_state_cleared(&w.s, &context).await;
    w.s.cleanup().await;
}

macro_rules! matrix {
    ($($name:ident: $strat:ident with $route:ident;)*) => {
        $(
            mod $name {
                use super::{check, Outcome, Route, Strat};
                #[tokio::test]
                async fn promoted() {
                    check(concat!(stringify!($name), "-ok"), Strat::$strat, Route::$route, Outcome::Promoted).await;
                }
                #[tokio::test]
                async fn image_pull_failure_rolls_back() {
                    check(concat!(stringify!($name), "-pull"), Strat::$strat, Route::$route, Outcome::ImagePull).await;
                }
                #[tokio::test]
                async fn crash_loop_rolls_back() {
                    check(concat!(stringify!($name), "-crash"), Strat::$strat, Route::$route, Outcome::CrashLoop).await;
                }
                #[tokio::test]
                async fn never_ready_rolls_back() {
                    check(concat!(stringify!($name), "-unready"), Strat::$strat, Route::$route, Outcome::NeverReady).await;
                }
                #[tokio::test]
                async fn failed_analysis_rolls_back() {
                    check(concat!(stringify!($name), "-analysis"), Strat::$strat, Route::$route, Outcome::FailedAnalysis).await;
                }
            }
        )*
    };
}

matrix! {
    rolling: Rolling with Replicas;
    blue_green_service_selector: BlueGreen with ServiceSelector;
    canary_replicas: Canary with Replicas;
    canary_replica_ratio_router: Canary with ReplicaRatio;
    canary_istio: Canary with Istio;
    canary_gateway: Canary with Gateway;
    canary_nginx: Canary with Nginx;
    flagger_istio: Flagger with Istio;
    flagger_gateway: Flagger with Gateway;
    flagger_nginx: Flagger with Nginx;
}
