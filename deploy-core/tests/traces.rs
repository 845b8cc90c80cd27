//! No secret in any trace, event, record or error of a full engine run (issue 19):
//! the test kit's platform with a signed state and a spec that carries a secret
//! reference and a literal value, judged by an HTTP health check with a secret
//! header and by Prometheus with a bearer token or basic credentials, both served
//! by a loopback server that checks the secrets arrived. Every level of `tracing`
//! (TRACE included) is captured and grepped, and so is the Debug and Display of
//! every event, the record (JSON too), the report and every error.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deploy_core::analysis::{AnalysisSpec, JudgeSpec, MetricCheck};
use deploy_core::engine::{EngineConfig, RetryPolicy, RolloutEngine, RolloutEvent, RolloutRequest};
use deploy_core::model::{DeploymentStatus, EnvVar, HumanDuration, Name, Percent, Track};
use deploy_core::signed_state::StateKey;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::trace::TraceCapture;
use deploy_core::testkit::{self, TestKit};

/// A value no test would print by chance.
fn distinctive(what: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("s3cr3t-{what}-{nanos:09}-{}", std::process::id())
}

/// What the loopback server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server answering the Prometheus query API (`error_rate`, a
/// vector of one sample) and a health endpoint (`/healthz/<track>`: 200, or 503
/// for the canary while `failing`); one request per connection.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    failing: Arc<AtomicBool>,
    /// Status of every Prometheus answer (200, or 401 to test an error).
    prometheus_status: Arc<Mutex<u16>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let prometheus_status = Arc::new(Mutex::new(200));
        let (s, f, p) = (seen.clone(), failing.clone(), prometheus_status.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (s, f, p) = (s.clone(), f.clone(), p.clone());
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                        }
                    }
                    let line = line.trim_end().to_owned();
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    s.lock().unwrap().push(Seen { line, headers });
                    let (status, body) = if path.starts_with("/api/v1/query") {
                        let status = *p.lock().unwrap();
                        if status == 200 {
                            (
                                200,
                                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.001"]}]}}"#
                                    .to_owned(),
                            )
                        } else {
                            (status, "unauthorized".to_owned())
                        }
                    } else if path == "/healthz/canary" && f.load(Ordering::SeqCst) {
                        (503, "down".to_owned())
                    } else {
                        (200, "ok".to_owned())
                    };
                    let reason = match status {
                        200 => "OK",
                        401 => "Unauthorized",
                        _ => "Service Unavailable",
                    };
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Self { base, seen, failing, prometheus_status }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn secs(s: u64) -> HumanDuration {
    HumanDuration::new(Duration::from_secs(s))
}

fn pct(v: u8) -> Percent {
    Percent::new(v).unwrap()
}

/// Asserts that no secret occurs in `text`, naming where it was found.
fn assert_text_free_of(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "secret {secret:?} is in {what}: {text}");
    }
}

#[cfg(all(feature = "http", feature = "prometheus"))]
mod with_http {
    use super::*;
    use deploy_core::http_check::{HttpCheckConfig, HttpHealthCheck};
    use deploy_core::http_client::HttpPolicy;
    use deploy_core::metrics::{MetricQuery, MetricsProvider};
    use deploy_core::prometheus::{PrometheusAuth, PrometheusConfig, PrometheusProvider};

    /// Two full canary runs (one promoted, one rolled back by the failing health
    /// check) with every secret in use, then direct calls that fail (401 from
    /// Prometheus, 503 from the check): nothing secret in the trace, the events,
    /// the records, the reports or the errors; the server received every secret.
    #[tokio::test]
    async fn a_full_run_with_secret_header_bearer_token_signed_state_and_secret_env_traces_no_secret() {
        let header = distinctive("header");
        let token = distinctive("bearer");
        let password = distinctive("basic");
        let literal = distinctive("literal");
        let key_text = format!("{}-0123456789abcdef0123456789", distinctive("statekey"));
        let secrets = [header.as_str(), token.as_str(), password.as_str(), literal.as_str(), key_text.as_str()];
        let server = Server::start();

        let capture = TraceCapture::default();
        let _guard = capture.set_default();

        let http = || HttpPolicy::default().danger_allow_plain_http();
        let check = HttpHealthCheck::new(
            "smoke",
            HttpCheckConfig::new(format!("{}/healthz/{{{{track}}}}", server.base))
                .secret_header("X-Api-Key", header.clone())
                .expect_status([200])
                .body_contains("ok")
                .attempts(1)
                .attempt_timeout(Duration::from_secs(5))
                .deadline(Duration::from_secs(10))
                .http(http().max_body_bytes(64 * 1024)),
        )
        .unwrap();
        let bearer = PrometheusProvider::new(
            PrometheusConfig::new(server.base.clone())
                .auth(PrometheusAuth::bearer(token.clone()))
                .timeout(Duration::from_secs(5))
                .http(http()),
        )
        .unwrap();
        let basic = PrometheusProvider::new(
            PrometheusConfig::new(server.base.clone())
                .auth(PrometheusAuth::basic("reader", password.clone()))
                .timeout(Duration::from_secs(5))
                .http(http()),
        )
        .unwrap();
        let check = Arc::new(check);
        let (bearer, basic) = (Arc::new(bearer), Arc::new(basic));
        let mut printed = vec![format!("{check:?}"), format!("{bearer:?}"), format!("{basic:?}")];

        let kit = TestKit::new();
        let (spec, v1, v2) = testkit::sample_app(2);
        let spec = spec
            .env(EnvVar::from_secret("DB_PASSWORD", Name::new("db-creds").unwrap(), "password").unwrap())
            .env(EnvVar::value("FEATURE_FLAGS", literal.clone()).unwrap());
        kit.seed(&spec, Track::Stable, &v1);
        let analysis = AnalysisSpec::new("canary")
            .metric(MetricCheck::new(
                "error-rate",
                "sum(rate(errors{track=\"{{track}}\"}[{{interval}}]))",
                JudgeSpec::max(0.01),
            ))
            .health_check("smoke")
            .interval(secs(1))
            .count(1);
        let plan = Canary::progressive([50, 100].map(pct), &analysis).plan(&PlanInput::new(2));
        let config = EngineConfig::default()
            .step_deadline(Duration::from_secs(60))
            .readiness_deadline(Duration::from_secs(30))
            .retry(RetryPolicy::new(2, Duration::from_millis(100), Duration::from_millis(200)))
            .holder("engine-traces");
        let engine = |metrics: Arc<dyn MetricsProvider>| {
            RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
                .router(kit.router())
                .metrics(metrics)
                .health_check(check.clone())
                .config(config.clone())
                .sign_state(StateKey::new(key_text.clone().into_bytes()).unwrap())
                .build()
        };

        // A promoted run with the bearer token, then a rolled-back one with basic auth.
        let mut statuses = Vec::new();
        for (metrics, failing, from, to) in [
            (bearer.clone() as Arc<dyn MetricsProvider>, false, &v1, &v2),
            (basic.clone() as Arc<dyn MetricsProvider>, true, &v2, &v1),
        ] {
            server.failing.store(failing, Ordering::SeqCst);
            let request = RolloutRequest::new(spec.clone(), to.clone(), plan.clone()).from(from.clone());
            // (The request's Debug shows the spec, literal values included: a literal
            // is the caller's configuration, documented as no place for secrets.)
            let mut handle = engine(metrics).start(request).await.unwrap();
            let mut events: Vec<RolloutEvent> = Vec::new();
            while let Some(e) = handle.next_event().await {
                events.push(e);
            }
            let report = handle.wait().await.unwrap();
            assert!(events.len() > 5, "the run produced events: {events:?}");
            for e in &events {
                printed.push(format!("{e:?}"));
                printed.push(e.to_string());
            }
            printed.push(format!("{report:?}"));
            printed.push(format!("{:?}", report.record));
            printed.push(serde_json::to_string(&report.record).unwrap());
            if let Some(cause) = &report.cause {
                printed.push(format!("{cause:?}"));
                printed.push(cause.to_string());
            }
            statuses.push(report.status);
        }
        assert_eq!(statuses, [DeploymentStatus::Succeeded, DeploymentStatus::RolledBack]);
        for record in kit.history().records() {
            printed.push(format!("{record:?}"));
            printed.push(serde_json::to_string(&record).unwrap());
        }

        // Errors: Prometheus refusing the credentials, a failing check.
        *server.prometheus_status.lock().unwrap() = 401;
        for provider in [&bearer, &basic] {
            let query = MetricQuery::new(
                "error-rate",
                "sum(rate(errors[1m]))",
                spec.id(),
                Track::Canary,
                Duration::from_secs(60),
            );
            let err = provider.query(&query).await.unwrap_err();
            printed.push(format!("{err:?}"));
            printed.push(err.to_string());
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                printed.push(format!("{s:?}"));
                printed.push(s.to_string());
                source = s.source();
            }
        }
        server.failing.store(true, Ordering::SeqCst);
        let target = deploy_core::health::HealthTarget::new(spec.id(), Track::Canary, v2.version.clone());
        let report = check.probe(&target).await;
        assert!(!report.healthy());
        printed.push(format!("{report:?}"));
        printed.push(format!("{:?}", report.outcome()));

        // The secrets were really used: every check carried the header, every query
        // the credentials of its provider.
        let seen = server.seen();
        let checks: Vec<&Seen> = seen.iter().filter(|s| s.line.contains("/healthz/")).collect();
        let queries: Vec<&Seen> = seen.iter().filter(|s| s.line.contains("/api/v1/query")).collect();
        assert!(checks.len() >= 3 && queries.len() >= 3, "{seen:?}");
        assert!(checks.iter().all(|s| s.header("x-api-key") == Some(header.as_str())), "{checks:?}");
        let bearer_header = format!("Bearer {token}");
        let basic_header = format!("Basic {}", base64(&format!("reader:{password}")));
        assert!(queries.iter().any(|s| s.header("authorization") == Some(bearer_header.as_str())), "{queries:?}");
        assert!(queries.iter().any(|s| s.header("authorization") == Some(basic_header.as_str())), "{queries:?}");
        assert!(
            queries
                .iter()
                .all(|s| [Some(bearer_header.as_str()), Some(basic_header.as_str())]
                    .contains(&s.header("authorization"))),
            "{queries:?}"
        );

        drop(_guard);
        let text = capture.text();
        // The run was captured: the engine's decisions, the checks' and queries' spans.
        assert!(text.contains("check=smoke"), "the health check was traced: {text}");
        assert!(text.contains("rolling back"), "the rollback was traced: {text}");
        capture.assert_free_of(&secrets);
        let basic_encoded = base64(&format!("reader:{password}"));
        capture.assert_free_of(&[basic_encoded.as_str()]);
        for p in &printed {
            assert_text_free_of("a printed event, record, report or error", p, &secrets);
            assert_text_free_of("a printed event, record, report or error", p, &[basic_encoded.as_str()]);
        }
    }

    /// Standard base64 with padding, as HTTP basic authentication sends it.
    fn base64(text: &str) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// The engine alone on the test kit (paused clock): a promoted and a rolled-back
/// rollout with a signed state and a spec with a secret reference and a literal
/// value; no event, record, report or trace line shows the state key or the value.
#[tokio::test(start_paused = true)]
async fn engine_events_records_and_traces_carry_no_state_key_or_env_value() {
    let literal = distinctive("literal");
    let key_text = format!("{}-0123456789abcdef0123456789", distinctive("statekey"));
    let secrets = [literal.as_str(), key_text.as_str()];
    let capture = TraceCapture::default();
    let _guard = capture.set_default();

    let kit = TestKit::new();
    let (spec, v1, v2) = testkit::sample_app(2);
    let spec = spec
        .env(EnvVar::from_secret("DB_PASSWORD", Name::new("db-creds").unwrap(), "password").unwrap())
        .env(EnvVar::value("FEATURE_FLAGS", literal.clone()).unwrap());
    kit.seed(&spec, Track::Stable, &v1);
    for track in Track::ALL {
        kit.metric_values().set("error-rate", track, 0.001);
    }
    let smoke = Arc::new(testkit::TestHealthCheck::new("smoke"));
    let analysis = AnalysisSpec::new("canary")
        .metric(MetricCheck::new("error-rate", "q", JudgeSpec::max(0.01)))
        .health_check("smoke")
        .interval(secs(30))
        .count(2);
    let plan = Canary::progressive([25, 50, 100].map(pct), &analysis).plan(&PlanInput::new(2));
    let key = StateKey::new(key_text.clone().into_bytes()).unwrap();
    let mut printed = vec![format!("{key:?}")];
    let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
        .router(kit.router())
        .metrics(kit.metrics())
        .health_check(smoke.clone())
        .config(EngineConfig::default().holder("engine-traces"))
        .sign_state(key)
        .build();
    let mut statuses = Vec::new();
    for (bad, from, to) in [(false, &v1, &v2), (true, &v2, &v1)] {
        if bad {
            kit.metric_values().set("error-rate", Track::Canary, 0.5);
        }
        let request = RolloutRequest::new(spec.clone(), to.clone(), plan.clone()).from(from.clone());
        let mut handle = engine.start(request).await.unwrap();
        let mut events = Vec::new();
        while let Some(e) = handle.next_event().await {
            events.push(e);
        }
        let report = handle.wait().await.unwrap();
        assert!(events.len() > 5, "{events:?}");
        for e in &events {
            printed.push(format!("{e:?}"));
            printed.push(e.to_string());
        }
        printed.push(format!("{report:?}"));
        printed.push(serde_json::to_string(&report.record).unwrap());
        if let Some(cause) = &report.cause {
            printed.push(cause.to_string());
        }
        statuses.push(report.status);
    }
    assert_eq!(statuses, [DeploymentStatus::Succeeded, DeploymentStatus::RolledBack]);
    // The signed state really used the key: the saved progress carries a signature.
    let saved = kit.state_store().load(&spec.id()).await.unwrap();
    if let Some(saved) = &saved {
        assert!(saved.value.signature().is_some(), "progress is saved signed");
    }
    for record in kit.history().records() {
        printed.push(format!("{record:?}"));
        printed.push(serde_json::to_string(&record).unwrap());
    }
    // A resume refused because nothing is in progress: its error too.
    if let Err(e) = engine.resume(&spec.id()).await {
        printed.push(format!("{e:?}"));
        printed.push(e.to_string());
    }
    drop(_guard);
    capture.assert_free_of(&secrets);
    for p in &printed[1..] {
        assert_text_free_of("a printed event, record, report or error", p, &secrets);
    }
    // The key's Debug is redacted.
    assert_text_free_of("the state key's Debug", &printed[0], &secrets);
}
