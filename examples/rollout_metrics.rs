//! Rollout metrics: the engine records them through the `metrics` facade (feature
//! `metrics` of deploy-core); this program installs the `metrics` ecosystem's
//! Prometheus exporter on a loopback port, runs a promoted and a rolled-back canary
//! on the in-memory test kit, and prints what a Prometheus scraping that port reads.
//!
//! Run with `cargo run -p deploy-examples --example rollout_metrics`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutRequest};
use deploy_core::model::{HumanDuration, ImageRef, Percent, Release, Track, Version};
use deploy_core::plan::Step;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{self, TestKit};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Error = Box<dyn std::error::Error>;

/// What the exporter serves at `/metrics`, read as Prometheus would.
async fn scrape(addr: SocketAddr) -> Result<String, Error> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0])?
        .install()?;
    println!("exporter on http://{addr}/metrics");

    let kit = TestKit::new();
    kit.set_ready_delay(Duration::ZERO);
    let (spec, v1, v2) = testkit::sample_app(4);
    kit.seed(&spec, Track::Stable, &v1);
    let analysis = AnalysisSpec::new("errors")
        .metric(MetricCheck::new("error-rate", "sum(rate(errors[1m]))", JudgeSpec::max(0.01)))
        .interval(HumanDuration::new(Duration::from_millis(100)))
        .count(2);
    let plan = Canary::with_steps(vec![
        Step::SetWeight(Percent::new(25)?),
        Step::Analyze(analysis),
        Step::SetWeight(Percent::new(50)?),
    ])
    .plan(&PlanInput::new(4));
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .config(EngineConfig::default().holder("rollout-metrics"))
        .build();

    kit.metric_values().set("error-rate", Track::Canary, 0.001);
    let good = engine.run(RolloutRequest::new(spec.clone(), v2.clone(), plan.clone()).from(v1)).await?;
    println!("{} -> {}: {}", good.record.from.as_ref().map_or("-", |r| r.version.as_str()), v2.version, good.status);
    kit.metric_values().set("error-rate", Track::Canary, 0.2);
    let v3 = Release::new(Version::new("3.0.0")?, ImageRef::parse("registry.local/shop/checkout:3.0.0")?);
    let bad = engine.run(RolloutRequest::new(spec, v3.clone(), plan).from(v2.clone())).await?;
    println!("{} -> {}: {}", v2.version, v3.version, bad.status);

    let body = scrape(addr).await?;
    println!("\nwhat Prometheus reads at /metrics (counters and gauges):");
    for line in body.lines().filter(|l| l.starts_with("deploy_") && !l.contains("_bucket")) {
        println!("  {line}");
    }
    if !body.contains("deploy_rollouts_finished_total") {
        return Err("the exporter served no rollout metrics".into());
    }
    Ok(())
}
