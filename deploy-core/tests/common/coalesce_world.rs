//! Many canaries judged by one real Prometheus through one [`CoalescingMetrics`]:
//! the scenario of `tests/coalesce.rs` (which asserts it) and `benches/coalesce.rs`
//! (which prints its figures).
#![allow(dead_code, reason = "the test and the benchmark each use a part of it")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutRequest};
use deploy_core::metrics::{
    CoalesceConfig, CoalescingMetrics, MetricQuery, MetricValue, MetricsError, MetricsProvider,
};
use deploy_core::model::{
    AppSpec, DeploymentStatus, HumanDuration, ImageRef, Name, Namespace, Percent, Release, Track, Version,
};
use deploy_core::prometheus::{PrometheusConfig, PrometheusProvider};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::TestKit;

use super::prometheus_server::{PrometheusServer, get};

/// The three questions every rollout asks: they name no app, as a service's shared
/// dependencies (the database's error rate, the edge's latency) do not.
pub const QUERIES: [(&str, &str); 3] =
    [("targets-down", "sum(up == bool 0)"), ("targets", "count(up)"), ("scrapes", "sum(scrape_samples_scraped)")];

/// How many times each rollout looks at the questions.
pub const LOOKS: u32 = 3;

/// The analysis interval of every rollout.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Records when each call to the provider started.
pub struct Recording {
    inner: Arc<dyn MetricsProvider>,
    /// Start of every call, in order.
    pub starts: Mutex<Vec<Instant>>,
}

#[async_trait]
impl MetricsProvider for Recording {
    async fn query(&self, query: &MetricQuery) -> Result<MetricValue, MetricsError> {
        if let Ok(mut starts) = self.starts.lock() {
            starts.push(Instant::now());
        }
        self.inner.query(query).await
    }
}

/// A Prometheus scraping one target that never answers (so `up` is 0 and the
/// queries have data after the first scrape), with a provider for it.
pub async fn prometheus() -> (PrometheusServer, Arc<dyn MetricsProvider>) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut server = PrometheusServer::start(closed);
    server.wait_ready(Duration::from_secs(30)).await;
    let provider: Arc<dyn MetricsProvider> = Arc::new(
        PrometheusProvider::new(PrometheusConfig::new(server.url.clone()).timeout(Duration::from_secs(10))).unwrap(),
    );
    let app = deploy_core::model::AppId::new(Namespace::new("shop").unwrap(), Name::new("probe").unwrap());
    let start = Instant::now();
    loop {
        let mut ready = true;
        for (name, query) in QUERIES {
            let q = MetricQuery::new(name, query, app.clone(), Track::Canary, INTERVAL);
            ready &= provider.query(&q).await.ok().and_then(|v| v.as_single()).is_some();
        }
        if ready {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "prometheus had no `up` series within 30 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (server, provider)
}

/// How many instant queries Prometheus itself has answered, from its own counter.
pub async fn prometheus_query_requests(server: &PrometheusServer) -> u64 {
    let text = get(&format!("{}/metrics", server.url)).await.expect("prometheus /metrics did not answer");
    text.lines()
        .filter(|l| l.starts_with("prometheus_http_requests_total{") && l.contains(r#"handler="/api/v1/query""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until Prometheus's counter shows `expected` queries since `before` (it
/// counts a request after the response has gone out), and returns what it shows.
pub async fn prometheus_queries_since(server: &PrometheusServer, before: u64, expected: u64) -> u64 {
    let start = Instant::now();
    loop {
        let served = prometheus_query_requests(server).await - before;
        if served >= expected || start.elapsed() > Duration::from_secs(5) {
            return served;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one run did.
pub struct Run {
    /// From the first start to the last rollout's end.
    pub wall: Duration,
    /// Questions the rollouts asked.
    pub questions: u64,
    /// Calls that reached Prometheus, with their start times.
    pub starts: Vec<Instant>,
}

impl Run {
    /// The most calls that started within any window of length `window`.
    pub fn max_calls_in(&self, window: Duration) -> usize {
        let mut starts = self.starts.clone();
        starts.sort();
        (0..starts.len())
            .map(|i| starts[i..].iter().take_while(|s| s.duration_since(starts[i]) < window).count())
            .max()
            .unwrap_or(0)
    }
}

fn analysis() -> AnalysisSpec {
    QUERIES
        .iter()
        .fold(AnalysisSpec::new("shared"), |spec, (name, query)| {
            spec.metric(MetricCheck::new(*name, *query, JudgeSpec::max(1e12)))
        })
        .interval(HumanDuration::new(INTERVAL))
        .count(LOOKS)
}

/// Runs `n` canaries (50 %, three looks at the three questions, 100 %) at once,
/// through `coalesce` (or straight to Prometheus when `None`), and checks that all
/// succeed.
pub async fn run(n: usize, provider: Arc<dyn MetricsProvider>, coalesce: Option<CoalesceConfig>) -> Run {
    let recording = Arc::new(Recording { inner: provider, starts: Mutex::new(Vec::new()) });
    let counting = Arc::new(Counting { inner: recording.clone(), questions: Default::default() });
    let metrics: Arc<dyn MetricsProvider> = match coalesce {
        Some(config) => Arc::new(CoalescingMetrics::new(recording.clone(), config)),
        None => recording.clone(),
    };
    let kit = TestKit::new();
    let plan = Canary::progressive([Percent::new(50).unwrap()], &analysis()).plan(&PlanInput::new(2));
    let image = |i: usize, v: &str| ImageRef::parse(&format!("registry.local/shop/app-{i}:{v}")).unwrap();
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(Arc::new(Asking { inner: metrics, counting: counting.clone() }))
        .config(EngineConfig::default().holder("coalesce").step_deadline(Duration::from_secs(120)))
        .build();
    let wall = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let spec = AppSpec::new(Namespace::new("shop").unwrap(), Name::new(format!("app-{i}")).unwrap(), image(i, "1"))
            .replicas(2);
        let v1 = Release::new(Version::new("1.0.0").unwrap(), image(i, "1"));
        let v2 = Release::new(Version::new("2.0.0").unwrap(), image(i, "2"));
        kit.seed(&spec, plan.old_track, &v1);
        handles.push(engine.start(RolloutRequest::new(spec, v2, plan.clone()).from(v1)).await.unwrap());
    }
    for handle in handles {
        let report = handle.wait().await.unwrap();
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    }
    let starts = recording.starts.lock().unwrap().clone();
    Run { wall: wall.elapsed(), questions: counting.questions.load(std::sync::atomic::Ordering::Relaxed), starts }
}

/// Counts the questions the engine asks, before any coalescing.
struct Counting {
    inner: Arc<Recording>,
    questions: std::sync::atomic::AtomicU64,
}

struct Asking {
    inner: Arc<dyn MetricsProvider>,
    counting: Arc<Counting>,
}

#[async_trait]
impl MetricsProvider for Asking {
    async fn query(&self, query: &MetricQuery) -> Result<MetricValue, MetricsError> {
        self.counting.questions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.query(query).await
    }
}
