//! Rollouts tell a notifier how they start and end: through the webhook notifier in
//! the CDEvents format, a receiver on loopback gets one structured CloudEvent per
//! notification and reads each back as a CDEvent with `cdevents-sdk`, as a CDEvents
//! receiver would.
#![expect(clippy::unwrap_used, reason = "test set-up: a failure there is the test failing")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{RolloutEngine, RolloutRequest};
use deploy_core::http_client::HttpPolicy;
use deploy_core::model::{
    AppSpec, DeploymentStatus, HumanDuration, ImageRef, Name, Namespace, Percent, Release, Track, Version,
};
use deploy_core::notify::{Notification, Notifier, NotifyError};
use deploy_core::plan::{Plan, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::TestKit;
use deploy_core::webhook::{WebhookFormat, WebhookNotifier};

/// A receiver on loopback that answers 202 to every request and hands over each
/// body, parsed as JSON.
fn receiver() -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cdevents", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut len = 0;
            let mut content_type = String::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (k, v) = header.split_once(':').unwrap();
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "content-type" => content_type = v.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            write!(stream, "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
            stream.flush().unwrap();
            assert_eq!(content_type, "application/cloudevents+json");
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn image(version: &str) -> ImageRef {
    ImageRef::parse(&format!("registry.example.com/shop/web:{version}")).unwrap()
}

fn release(version: &str) -> Release {
    Release::new(Version::new(version).unwrap(), image(version))
}

fn spec() -> AppSpec {
    AppSpec::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap(), image("1.0.0")).replicas(4)
}

/// A canary with one analysis looking every `interval`.
fn plan(interval: Duration) -> Plan {
    let analysis = AnalysisSpec::new("errors")
        .metric(MetricCheck::new("error-rate", "sum(rate(errors[1m]))", JudgeSpec::max(0.01)))
        .interval(HumanDuration::new(interval))
        .count(2);
    Canary::with_steps(vec![Step::SetWeight(Percent::new(50).unwrap()), Step::Analyze(analysis)])
        .plan(&PlanInput::new(4))
}

fn engine(kit: &TestKit, notifier: Arc<dyn Notifier>) -> RolloutEngine {
    RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .notifier(notifier)
        .build()
}

/// The CDEvent in a received CloudEvent, read with the SDK, and its type.
fn cd_event(cloud_event: &serde_json::Value) -> (String, serde_json::Value) {
    assert_eq!(cloud_event["specversion"], "1.0", "{cloud_event:#}");
    assert_eq!(cloud_event["source"], "/deploy-rs/shop/web");
    let data = cloud_event["data"].clone();
    let parsed: cdevents_sdk::CDEvent = serde_json::from_value(data.clone()).unwrap();
    let ty = parsed.ty().to_owned();
    assert_eq!(ty, cloud_event["type"].as_str().unwrap());
    (ty, data)
}

// On the real clock: the webhook's HTTP timeouts would fire at once on a paused one.
#[tokio::test]
async fn a_promoted_and_a_rolled_back_rollout_reach_a_cdevents_receiver() {
    let (url, received) = receiver();
    let webhook = WebhookNotifier::with_policy(&url, HttpPolicy::default().danger_allow_plain_http())
        .unwrap()
        .format(WebhookFormat::CdEvents);
    let kit = TestKit::new();
    kit.set_ready_delay(Duration::from_millis(20));
    kit.seed(&spec(), Track::Stable, &release("1.0.0"));
    kit.metric_values().set("error-rate", Track::Canary, 0.001);
    let engine = engine(&kit, Arc::new(webhook));

    let quick = Duration::from_millis(100);
    let request = RolloutRequest::new(spec(), release("2.0.0"), plan(quick)).from(release("1.0.0"));
    let report = engine.run(request).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let (ty, data) = cd_event(&received.recv_timeout(Duration::from_secs(10)).unwrap());
    assert!(ty.starts_with("dev.cdevents.pipelinerun.started."), "{ty}");
    assert_eq!(data["subject"]["content"]["pipelineName"], "shop/web 2.0.0 rollout started");
    let (ty, data) = cd_event(&received.recv_timeout(Duration::from_secs(10)).unwrap());
    assert!(ty.starts_with("dev.cdevents.service.upgraded."), "an upgrade from 1.0.0: {ty}");
    assert_eq!(data["subject"]["content"]["artifactId"], image("2.0.0").to_string());

    kit.metric_values().set("error-rate", Track::Canary, 0.5);
    let request = RolloutRequest::new(spec(), release("3.0.0"), plan(quick)).from(release("2.0.0"));
    let report = engine.run(request).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    let (ty, _) = cd_event(&received.recv_timeout(Duration::from_secs(10)).unwrap());
    assert!(ty.starts_with("dev.cdevents.pipelinerun.started."), "{ty}");
    let (ty, data) = cd_event(&received.recv_timeout(Duration::from_secs(10)).unwrap());
    assert!(ty.starts_with("dev.cdevents.service.rolledback."), "{ty}");
    assert_eq!(data["subject"]["content"]["artifactId"], image("3.0.0").to_string());
    assert!(received.recv_timeout(Duration::from_millis(200)).is_err(), "two notifications per rollout");
}

/// Records what it is asked to deliver and fails every delivery.
#[derive(Default)]
struct Failing(std::sync::Mutex<Vec<Notification>>);

#[async_trait]
impl Notifier for Failing {
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push(notification.clone());
        Err(NotifyError::Rejected { status: 500, body: "down".to_owned() })
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_notifier_never_fails_the_rollout_and_hears_its_facts() {
    let kit = TestKit::new();
    kit.seed(&spec(), Track::Stable, &release("1.0.0"));
    kit.metric_values().set("error-rate", Track::Canary, 0.001);
    let failing = Arc::new(Failing::default());
    let engine = engine(&kit, failing.clone());
    let request = RolloutRequest::new(spec(), release("2.0.0"), plan(Duration::from_secs(30))).from(release("1.0.0"));
    let report = engine.run(request).await.unwrap();
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let seen = failing.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let done = &seen[1];
    assert_eq!(done.fields["deployment"], report.record.id.to_string());
    assert_eq!(done.fields["version"], "2.0.0");
    assert_eq!(done.fields["from"], "1.0.0");
    assert_eq!(done.fields["image"], image("2.0.0").to_string());
    assert!(done.fields.contains_key("duration_seconds"), "{:?}", done.fields);
}
