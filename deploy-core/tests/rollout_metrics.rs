//! The engine's own metrics (feature `metrics`), exported by the `metrics`
//! ecosystem's Prometheus exporter on a loopback port and scraped by a real
//! Prometheus: what its HTTP API returns is what the rollouts did.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures fail loudly")]

#[path = "common/prometheus_server.rs"]
mod prometheus_server;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutRequest};
use deploy_core::model::{DeploymentStatus, HumanDuration, Percent, Track};
use deploy_core::plan::Step;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{self, TestKit};
use metrics_exporter_prometheus::PrometheusBuilder;
use prometheus_server::PrometheusServer;
use serde_json::Value;

/// The value of an instant query, summed over its series; `None` before it has data.
async fn query(prometheus: &str, expr: &str) -> Option<f64> {
    let mut url = reqwest::Url::parse(&format!("{prometheus}/api/v1/query")).ok()?;
    url.query_pairs_mut().append_pair("query", expr);
    let body: Value = serde_json::from_str(&prometheus_server::get(url.as_str()).await?).ok()?;
    let results = body["data"]["result"].as_array()?;
    if results.is_empty() {
        return None;
    }
    Some(results.iter().filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_reads_back_what_the_rollouts_did() {
    let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let exporter: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    PrometheusBuilder::new()
        .with_http_listener(exporter)
        .set_buckets(&[0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0])
        .unwrap()
        .install()
        .expect("the exporter starts");

    // Two canaries on the test kit: one promoted, one rolled back by its analysis.
    let kit = TestKit::new();
    kit.set_ready_delay(Duration::ZERO);
    let (spec, v1, v2) = testkit::sample_app(4);
    kit.seed(&spec, Track::Stable, &v1);
    let analysis = AnalysisSpec::new("errors")
        .metric(MetricCheck::new("error-rate", "q", JudgeSpec::max(0.01)))
        .interval(HumanDuration::new(Duration::from_millis(200)))
        .count(2);
    let plan = Canary::with_steps(vec![
        Step::SetWeight(Percent::new(25).unwrap()),
        Step::Analyze(analysis),
        Step::SetWeight(Percent::new(50).unwrap()),
    ])
    .plan(&PlanInput::new(4));
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .config(EngineConfig::default().holder("metrics-test"))
        .build();
    kit.metric_values().set("error-rate", Track::Canary, 0.001);
    let good = engine.run(RolloutRequest::new(spec.clone(), v2.clone(), plan.clone()).from(v1.clone())).await.unwrap();
    assert_eq!(good.status, DeploymentStatus::Succeeded, "{:?}", good.cause);
    kit.metric_values().set("error-rate", Track::Canary, 0.5);
    let (_, _, v3) = testkit::sample_app(4);
    let v3 = deploy_core::model::Release::new(deploy_core::model::Version::new("3.0.0").unwrap(), v3.image);
    let bad = engine.run(RolloutRequest::new(spec.clone(), v3, plan).from(v2)).await.unwrap();
    assert_eq!(bad.status, DeploymentStatus::RolledBack, "{:?}", bad.cause);

    let mut prometheus = PrometheusServer::start(exporter);
    prometheus.wait_ready(Duration::from_secs(30)).await;
    let url = Arc::new(prometheus.url.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(&url, "deploy_rollouts_finished_total").await.is_none() {
        assert!(Instant::now() < deadline, "no rollout metrics scraped within 30 s:\n{}", prometheus.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let value = |expr: &'static str| {
        let url = Arc::clone(&url);
        async move { query(&url, expr).await.unwrap_or(f64::NAN) }
    };
    assert_eq!(value(r#"deploy_rollouts_started_total{strategy="canary"}"#).await, 2.0);
    assert_eq!(value(r#"deploy_rollouts_finished_total{strategy="canary",status="succeeded"}"#).await, 1.0);
    assert_eq!(value(r#"deploy_rollouts_finished_total{strategy="canary",status="rolled_back"}"#).await, 1.0);
    // Two measurements passed in the good rollout; the bad one failed at its first.
    assert_eq!(value(r#"deploy_analysis_measurements_total{outcome="successful"}"#).await, 2.0);
    assert!(value(r#"deploy_analysis_measurements_total{outcome="failed"}"#).await >= 1.0);
    assert_eq!(value(r#"deploy_rollback_duration_seconds_count{strategy="canary"}"#).await, 1.0);
    // Each rollout's whole duration, by how it ended: the good one waited at least the
    // interval between its two looks.
    assert_eq!(value(r#"deploy_rollout_duration_seconds_count{strategy="canary",status="succeeded"}"#).await, 1.0);
    assert_eq!(value(r#"deploy_rollout_duration_seconds_count{strategy="canary",status="rolled_back"}"#).await, 1.0);
    assert!(value(r#"deploy_rollout_duration_seconds_sum{strategy="canary",status="succeeded"}"#).await >= 0.2);
    assert!(value(r#"deploy_rollout_step_duration_seconds_count{step="set-weight",outcome="succeeded"}"#).await >= 3.0);
    assert_eq!(value(r#"deploy_rollout_canary_weight_percent{app="shop/checkout"}"#).await, 0.0, "no canary left");
}
