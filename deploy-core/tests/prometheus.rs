//! The canary engine judged by a real Prometheus: the test starts Debian's
//! `prometheus` on a loopback port, scraping every second a test exporter that
//! serves two applications, each with a stable and a canary track. The canary of
//! `checkout` fails 0.5 % of its requests like its stable track; the canary of
//! `payments` fails 10 %. Rolled out at the same time with the built-in Flagger
//! metrics, a canary-versus-baseline comparison and a Mann-Whitney judge, the first
//! is promoted and the second rolled back.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures fail loudly")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy_core::analysis::{AnalysisSpec, Direction, JudgeSpec, MeasurementOutcome, MetricCheck};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutEvent, RolloutRequest};
use deploy_core::metrics::{MetricQuery, MetricsProvider};
use deploy_core::model::CauseKind;
use deploy_core::model::{
    AppSpec, DeploymentStatus, HumanDuration, ImageRef, Name, Namespace, Percent, Release, Track, TrafficSplit, Version,
};
use deploy_core::prometheus::templates::BuiltinMetrics;
use deploy_core::prometheus::{PrometheusConfig, PrometheusProvider};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::TestKit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "common/prometheus_server.rs"]
mod prometheus_server;
use prometheus_server::PrometheusServer;

const NAMESPACE: &str = "shop";
/// Requests per track and scrape; failures per scrape are 5 (0.5 %) or 100 (10 %).
const REQUESTS_PER_SCRAPE: u64 = 1000;
/// Latency buckets (upper bounds in seconds) and how many of each scrape's requests
/// fall at or below each: p99 lies in (0.1, 0.25], about 200 ms.
const BUCKETS: [(&str, u64); 6] =
    [("0.05", 900), ("0.1", 980), ("0.25", 995), ("0.5", 1000), ("1", 1000), ("+Inf", 1000)];

/// Counters of one (app, track).
#[derive(Default, Clone, Copy)]
struct Series {
    scrapes: u64,
    failures_per_scrape: u64,
}

/// The exporter: every scrape adds one batch of requests to every track, so rates
/// and ratios do not depend on timing.
struct Exporter {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    async fn start(tracks: Vec<(&'static str, &'static str, u64)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<BTreeMap<(&'static str, &'static str), Series>>> = Arc::new(Mutex::new(
            tracks
                .into_iter()
                .map(|(app, track, failures)| ((app, track), Series { scrapes: 0, failures_per_scrape: failures }))
                .collect(),
        ));
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = {
                        let mut state = state.lock().unwrap();
                        state.values_mut().for_each(|s| s.scrapes += 1);
                        exposition(&state)
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Prometheus text exposition format of every series.
fn exposition(state: &BTreeMap<(&str, &str), Series>) -> String {
    let mut out = String::from("# TYPE http_requests_total counter\n");
    for ((app, track), s) in state {
        let labels = format!(r#"namespace="{NAMESPACE}",app="{app}",track="{track}""#);
        let failed = s.scrapes * s.failures_per_scrape;
        let ok = s.scrapes * REQUESTS_PER_SCRAPE - failed;
        writeln!(out, r#"http_requests_total{{{labels},status="200"}} {ok}"#).unwrap();
        writeln!(out, r#"http_requests_total{{{labels},status="503"}} {failed}"#).unwrap();
    }
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for ((app, track), s) in state {
        let labels = format!(r#"namespace="{NAMESPACE}",app="{app}",track="{track}""#);
        for (le, count) in BUCKETS {
            writeln!(out, r#"http_request_duration_seconds_bucket{{{labels},le="{le}"}} {}"#, s.scrapes * count)
                .unwrap();
        }
        writeln!(out, "http_request_duration_seconds_sum{{{labels}}} {}", s.scrapes * 60).unwrap();
        writeln!(out, "http_request_duration_seconds_count{{{labels}}} {}", s.scrapes * REQUESTS_PER_SCRAPE).unwrap();
    }
    out
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn app(app: &str) -> (AppSpec, Release, Release) {
    let image = |v: &str| ImageRef::parse(&format!("registry.local/shop/{app}:{v}")).unwrap();
    let spec = AppSpec::new(Namespace::new(NAMESPACE).unwrap(), name(app), image("1.0.0")).replicas(2);
    let v1 = Release::new(Version::new("1.0.0").unwrap(), image("1.0.0"));
    let v2 = Release::new(Version::new("2.0.0").unwrap(), image("2.0.0"));
    (spec, v1, v2)
}

fn secs(s: u64) -> HumanDuration {
    HumanDuration::new(Duration::from_secs(s))
}

/// Flagger's built-in checks, the success rate against the baseline's, and a
/// Mann-Whitney test of the success rate's last 10 s against the baseline's.
fn analysis() -> AnalysisSpec {
    let builtins = BuiltinMetrics::default();
    let success = builtins.success_rate_query();
    AnalysisSpec::new("canary")
        .metric(builtins.success_rate())
        .metric(builtins.duration())
        .metric(MetricCheck::new(
            "success-vs-baseline",
            success.clone(),
            JudgeSpec::difference(Direction::Decrease, 2.0),
        ))
        .metric(MetricCheck::new(
            "success-mann-whitney",
            success,
            JudgeSpec::mann_whitney(Direction::Decrease, secs(10), secs(1)).with_effect_size(1.01),
        ))
        .interval(secs(3))
        .count(2)
        .inconclusive_limit(1)
}

async fn wait_for_series(provider: &PrometheusProvider, apps: &[&AppSpec], deadline: Duration) {
    let start = Instant::now();
    let template = BuiltinMetrics::default().success_rate_query();
    loop {
        let mut missing = Vec::new();
        for spec in apps {
            for track in [Track::Stable, Track::Canary] {
                let q = MetricQuery::new("probe", &template, spec.id(), track, Duration::from_secs(3));
                let value = provider.query(&q).await.ok().and_then(|v| v.as_single());
                if value.is_none() {
                    missing.push(format!("{}/{track}", spec.name));
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "prometheus had no success rate for {} within {deadline:?}",
            missing.join(", ")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn roll_out(
    provider: Arc<dyn MetricsProvider>,
    (spec, v1, v2): (AppSpec, Release, Release),
) -> (TestKit, AppSpec, deploy_core::engine::RolloutReport, Vec<RolloutEvent>) {
    let kit = TestKit::new();
    let plan = Canary::progressive([50, 100].map(|w| Percent::new(w).unwrap()), &analysis()).plan(&PlanInput::new(2));
    kit.seed(&spec, plan.old_track, &v1);
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(provider)
        .config(EngineConfig::default().holder(format!("test-{}", spec.name)).step_deadline(Duration::from_secs(30)))
        .build();
    let mut handle = engine.start(RolloutRequest::new(spec.clone(), v2, plan).from(v1)).await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = handle.next_event().await {
        events.push(e);
    }
    let report = handle.wait().await.unwrap();
    (kit, spec, report, events)
}

fn measurements<'a>(
    events: &'a [RolloutEvent],
    check: &'a str,
) -> impl Iterator<Item = &'a deploy_core::analysis::Measurement> {
    events.iter().filter_map(move |e| match e {
        RolloutEvent::Measurement { measurement, .. } if measurement.check == check => Some(measurement),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evidence_promotes_the_healthy_canary_and_rolls_back_the_unhealthy_one() {
    let exporter = Exporter::start(vec![
        ("checkout", "stable", 5),
        ("checkout", "canary", 5),
        ("payments", "stable", 5),
        ("payments", "canary", 100),
    ])
    .await;
    let mut prometheus = PrometheusServer::start(exporter.addr);
    prometheus.wait_ready(Duration::from_secs(20)).await;
    let provider = Arc::new(
        PrometheusProvider::new(PrometheusConfig::new(prometheus.url.clone()).timeout(Duration::from_secs(5))).unwrap(),
    );
    let (healthy, unhealthy) = (app("checkout"), app("payments"));
    wait_for_series(&provider, &[&healthy.0, &unhealthy.0], Duration::from_secs(20)).await;

    let ((kit_ok, spec_ok, ok, ok_events), (kit_bad, spec_bad, bad, bad_events)) =
        tokio::join!(roll_out(provider.clone(), healthy), roll_out(provider.clone(), unhealthy));

    // The healthy canary is promoted: every analysis passed on Prometheus' numbers.
    assert_eq!(ok.status, DeploymentStatus::Succeeded, "{:?}\n{}", ok.cause, prometheus.log());
    let rates: Vec<f64> = measurements(&ok_events, "request-success-rate").filter_map(|m| m.value).collect();
    assert!(!rates.is_empty());
    assert!(rates.iter().all(|r| (r - 99.5).abs() < 0.01), "success rates {rates:?}");
    let p99: Vec<f64> = measurements(&ok_events, "request-duration").filter_map(|m| m.value).collect();
    assert!(!p99.is_empty() && p99.iter().all(|ms| *ms > 100.0 && *ms <= 250.0), "p99 {p99:?}");
    let world = kit_ok.snapshot(&spec_ok.id());
    assert_eq!(world.weights, Some(TrafficSplit::all(Track::Stable)));
    assert!(world.tracks[&Track::Stable].version.as_str() == "2.0.0");

    // The unhealthy canary is rolled back at its first analysis, on its success rate.
    assert_eq!(bad.status, DeploymentStatus::RolledBack, "{}", prometheus.log());
    let cause = bad.cause.unwrap();
    assert_eq!(cause.kind, CauseKind::AnalysisFailed, "{cause}");
    assert!(cause.message.contains("request-success-rate"), "{cause}");
    let first: Vec<_> = bad_events
        .iter()
        .filter_map(|e| if let RolloutEvent::Measurement { measurement, .. } = e { Some(measurement) } else { None })
        .filter(|m| m.round == 0)
        .collect();
    let outcome = |check: &str| first.iter().find(|m| m.check == check).map(|m| (m.outcome, m.value));
    let (rate_outcome, rate) = outcome("request-success-rate").unwrap();
    assert_eq!(rate_outcome, MeasurementOutcome::Failed);
    assert!((rate.unwrap() - 90.0).abs() < 0.01, "{rate:?}");
    assert_eq!(outcome("request-duration").unwrap().0, MeasurementOutcome::Successful);
    assert_eq!(outcome("success-vs-baseline").unwrap().0, MeasurementOutcome::Failed);
    assert_eq!(outcome("success-mann-whitney").unwrap().0, MeasurementOutcome::Failed, "{first:?}");
    let world = kit_bad.snapshot(&spec_bad.id());
    assert_eq!(world.weights, Some(TrafficSplit::all(Track::Stable)));
    assert!(!world.tracks.contains_key(&Track::Canary));
    assert_eq!(world.tracks[&Track::Stable].version.as_str(), "1.0.0");
}
