//! The webhook notifier against a real HTTP server on loopback.
#![expect(clippy::unwrap_used, reason = "the test server's helpers panic on any I/O failure, failing the test")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use deploy_core::error::Classify;
use deploy_core::http_client::{HttpError, HttpPolicy};
use deploy_core::model::{AppId, Environment, Name, Namespace};
use deploy_core::notify::{Notification, NotificationKind, Notifier, NotifyError};
use deploy_core::webhook::{WebhookFormat, WebhookNotifier};

use deploy_core::testkit::trace as trace_capture;

/// What the server saw of one request.
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A notifier for a test receiver on loopback, which speaks plain http.
fn loopback(url: &str) -> Result<WebhookNotifier, NotifyError> {
    WebhookNotifier::with_policy(url, HttpPolicy::default().danger_allow_plain_http())
}

/// Serves one request on a free loopback port, answering `status` and `body`.
fn serve_once(status: &'static str, reply: &'static str) -> (String, mpsc::Receiver<Seen>) {
    serve_once_with(status, String::new(), reply)
}

/// As [`serve_once`], with extra response header lines (each ending in `\r\n`).
fn serve_once_with(status: &'static str, extra: String, reply: &'static str) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/T0/B0/tok3n", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse().unwrap()).unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
        stream.flush().unwrap();
        tx.send(Seen { request_line: request_line.trim_end().to_owned(), headers, body }).unwrap();
    });
    (url, rx)
}

fn notification() -> Notification {
    Notification::new(NotificationKind::PipelineFailed, "pipeline pl-1 failed", "stage deploy failed: timeout")
        .app(AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap()))
        .environment(Environment::Production)
        .field("pipeline", "pl-1")
}

#[tokio::test]
async fn posts_the_notification_as_json() {
    let (url, seen) = serve_once("204 No Content", "");
    let hook = loopback(&url).unwrap().header("Authorization", "Bearer s3cr3t");
    assert!(!format!("{hook:?}").contains("tok3n") && !format!("{hook:?}").contains("s3cr3t"), "{hook:?}");
    hook.notify(&notification()).await.unwrap();

    let seen = seen.recv().unwrap();
    assert_eq!(seen.request_line, "POST /hooks/T0/B0/tok3n HTTP/1.1");
    let header = |name: &str| seen.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("authorization"), Some("Bearer s3cr3t"));
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["kind"], "pipeline_failed");
    assert_eq!(body["title"], "pipeline pl-1 failed");
    assert_eq!(body["environment"], "production");
    assert_eq!(body["app"]["name"], "web");
    assert_eq!(body["fields"]["pipeline"], "pl-1");
    // The body is the notification's own serde form.
    let back: Notification = serde_json::from_value(body).unwrap();
    assert_eq!(back.message, "stage deploy failed: timeout");
}

#[tokio::test]
async fn rejections_and_unreachable_receivers_are_classified() {
    let (url, _seen) = serve_once("503 Service Unavailable", "maintenance");
    let err = loopback(&url).unwrap().notify(&notification()).await.unwrap_err();
    assert!(matches!(&err, NotifyError::Rejected { status: 503, body } if body == "maintenance"), "{err:?}");
    assert!(err.is_retryable());

    let (url, _seen) = serve_once("400 Bad Request", "bad payload");
    let err = loopback(&url).unwrap().notify(&notification()).await.unwrap_err();
    assert!(!err.is_retryable());

    // A port nobody listens on: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = loopback(&format!("http://127.0.0.1:{port}/hooks/secret-token"))
        .unwrap()
        .notify(&notification())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("secret-token"), "{err:?}");

    assert!(WebhookNotifier::new("ftp://example.com/x").is_err());
    assert!(WebhookNotifier::new("not a url").is_err());
}

#[tokio::test]
async fn a_redirect_to_another_host_is_an_error_and_the_other_host_sees_nothing() {
    let (elsewhere, stolen) = serve_once("200 OK", "thanks");
    let (url, seen) = serve_once_with("307 Temporary Redirect", format!("location: {elsewhere}\r\n"), "");
    let hook = loopback(&url).unwrap().header("X-Api-Key", "k3y-s3cret");
    let err = hook.notify(&notification()).await.unwrap_err();
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<HttpError>());
    assert!(matches!(source, Some(HttpError::RedirectRefused { status: 307, .. })), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("k3y-s3cret"));
    // The first receiver got the key; the one it pointed to never got a request.
    let first = seen.recv().unwrap();
    assert!(first.headers.iter().any(|(k, v)| k == "x-api-key" && v == "k3y-s3cret"));
    assert!(stolen.recv_timeout(std::time::Duration::from_millis(300)).is_err());
}

#[tokio::test]
async fn plain_http_needs_the_named_opt_out() {
    let err = WebhookNotifier::new("http://hooks.example.com/T0/B0/tok3n").unwrap_err();
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<HttpError>());
    assert!(matches!(source, Some(HttpError::PlainHttpRefused { host }) if host == "hooks.example.com:80"), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("tok3n"));
    WebhookNotifier::new("https://hooks.example.com/T0/B0/tok3n").unwrap();
}

/// Checks `payload` against Slack's documented incoming-webhook message shape
/// (api.slack.com/reference/block-kit/blocks): a string `text`, at most 50 blocks,
/// each a known type with its required parts and length limits.
fn assert_slack_message(payload: &serde_json::Value) {
    assert!(payload["text"].is_string(), "a top-level text is the notification fallback: {payload}");
    let blocks = payload["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    for block in blocks {
        match block["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(block["text"]["type"], "plain_text", "a header's text is plain_text");
                assert!(block["text"]["text"].as_str().unwrap().chars().count() <= 150);
            }
            "section" => {
                assert!(block.get("text").is_some() || block.get("fields").is_some(), "a section needs text or fields");
                if let Some(text) = block.get("text") {
                    assert!(matches!(text["type"].as_str(), Some("mrkdwn" | "plain_text")));
                    assert!(text["text"].as_str().unwrap().chars().count() <= 3000);
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().unwrap();
                    assert!(!fields.is_empty() && fields.len() <= 10, "at most 10 fields");
                    for field in fields {
                        assert!(matches!(field["type"].as_str(), Some("mrkdwn" | "plain_text")));
                        assert!(field["text"].as_str().unwrap().chars().count() <= 2000);
                    }
                }
            }
            "context" => {
                let elements = block["elements"].as_array().unwrap();
                assert!(!elements.is_empty() && elements.len() <= 10);
            }
            other => panic!("unexpected block type {other}"),
        }
        for (key, _) in block.as_object().unwrap() {
            assert!(["type", "text", "fields", "elements", "block_id"].contains(&key.as_str()), "unknown key {key}");
        }
    }
}

/// Checks `payload` against the documented legacy actionable message card
/// (learn.microsoft.com, "Legacy actionable message card reference"): `@type`
/// MessageCard, `@context`, a `summary` (required when there is no `text`), a hex
/// `themeColor`, and sections whose facts are `name`/`value` strings.
fn assert_teams_message_card(payload: &serde_json::Value) {
    assert_eq!(payload["@type"], "MessageCard");
    assert_eq!(payload["@context"], "https://schema.org/extensions");
    assert!(payload["summary"].as_str().is_some_and(|s| !s.is_empty()), "summary is required");
    let color = payload["themeColor"].as_str().unwrap();
    assert!(color.len() == 6 && color.chars().all(|c| c.is_ascii_hexdigit()), "{color}");
    for section in payload["sections"].as_array().unwrap() {
        for fact in section["facts"].as_array().into_iter().flatten() {
            assert!(fact["name"].is_string() && fact["value"].is_string(), "{fact}");
        }
    }
}

#[tokio::test]
async fn slack_receives_block_kit_within_its_limits_with_mrkdwn_escaped() {
    let (url, seen) = serve_once("200 OK", "ok");
    let mut long = notification();
    long.title = "t".repeat(400);
    long.message = format!("<!channel> & {}", "m".repeat(5000));
    for i in 0..14 {
        long.fields.insert(format!("f{i:02}"), "v".repeat(2500));
    }
    loopback(&url).unwrap().format(WebhookFormat::Slack).notify(&long).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&seen.recv().unwrap().body).unwrap();
    assert_slack_message(&body);
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let message = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(message.starts_with("&lt;!channel&gt; &amp; "), "a message cannot ping the channel: {message}");
    assert_eq!(blocks[2]["fields"][0]["text"], "*app*\nshop/web");
    assert_eq!(blocks[2]["fields"][1]["text"], "*environment*\nproduction");

    // The usual notification, to the letter.
    let (url, seen) = serve_once("200 OK", "ok");
    loopback(&url).unwrap().format(WebhookFormat::Slack).notify(&notification()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&seen.recv().unwrap().body).unwrap();
    assert_slack_message(&body);
    assert_eq!(body["text"], "pipeline pl-1 failed");
    assert_eq!(body["blocks"][0]["text"]["text"], "pipeline pl-1 failed");
    assert_eq!(body["blocks"][1]["text"]["text"], "stage deploy failed: timeout");
    assert_eq!(body["blocks"][2]["fields"][2]["text"], "*pipeline*\npl-1");
    assert!(body["blocks"][3]["elements"][0]["text"].as_str().unwrap().starts_with("pipeline_failed · "));
}

#[tokio::test]
async fn teams_receives_a_message_card() {
    let (url, seen) = serve_once("200 OK", "1");
    loopback(&url).unwrap().format(WebhookFormat::TeamsMessageCard).notify(&notification()).await.unwrap();
    let seen = seen.recv().unwrap();
    assert!(seen.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_teams_message_card(&body);
    assert_eq!(body["summary"], "pipeline pl-1 failed");
    assert_eq!(body["title"], "pipeline pl-1 failed");
    assert_eq!(body["text"], "stage deploy failed: timeout");
    assert_eq!(body["themeColor"], "D00000", "failures are red");
    let facts = body["sections"][0]["facts"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> =
        facts.iter().map(|f| (f["name"].as_str().unwrap(), f["value"].as_str().unwrap())).collect();
    assert_eq!(pairs, [("app", "shop/web"), ("environment", "production"), ("pipeline", "pl-1")]);
}

#[tokio::test]
async fn a_run_with_secret_urls_and_headers_traces_no_secret() {
    let capture = trace_capture::TraceCapture::default();
    let _guard = capture.set_default();
    let (url, _seen) = serve_once("204 No Content", "");
    let hook = loopback(&url).unwrap().header("X-Api-Key", "k3y-in-header").format(WebhookFormat::Slack);
    hook.notify(&notification()).await.unwrap();
    let (url, _seen) = serve_once("403 Forbidden", "no");
    let _ = loopback(&url).unwrap().header("X-Api-Key", "k3y-in-header").notify(&notification()).await;
    let (elsewhere, _stolen) = serve_once("200 OK", "");
    let (url, _seen) = serve_once_with("307 Temporary Redirect", format!("location: {elsewhere}\r\n"), "");
    let _ = loopback(&url).unwrap().header("X-Api-Key", "k3y-in-header").notify(&notification()).await;
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _ = loopback(&format!("http://127.0.0.1:{port}/hooks/T0/B0/tok3n")).unwrap().notify(&notification()).await;
    // The receivers' URLs end in the token `tok3n`.
    capture.assert_free_of(&["tok3n", "k3y-in-header"]);
}

#[cfg(feature = "cdevents")]
#[tokio::test]
async fn cdevents_reach_the_receiver_as_structured_cloudevents_for_every_kind() {
    let cases = [
        (NotificationKind::DeploymentStarted, false, "dev.cdevents.pipelinerun.started."),
        (NotificationKind::DeploymentSucceeded, false, "dev.cdevents.service.deployed."),
        (NotificationKind::DeploymentSucceeded, true, "dev.cdevents.service.upgraded."),
        (NotificationKind::RolledBack, true, "dev.cdevents.service.rolledback."),
        (NotificationKind::DeploymentFailed, true, "dev.cdevents.pipelinerun.finished."),
        (NotificationKind::PipelineSucceeded, false, "dev.cdevents.pipelinerun.finished."),
    ];
    let mut ids = std::collections::BTreeSet::new();
    for (kind, with_from, type_prefix) in cases {
        let (url, seen) = serve_once("202 Accepted", "");
        let hook = loopback(&url).unwrap().format(WebhookFormat::CdEvents);
        let mut n = Notification::new(kind, "web 2.0.0", "canary analysis failed")
            .app(AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap()))
            .environment(Environment::Production)
            .field("image", "registry.example.com/shop/web:2.0.0")
            .field("version", "2.0.0");
        if with_from {
            n = n.field("from", "1.9.0");
        }
        hook.notify(&n).await.unwrap();
        let seen = seen.recv().unwrap();
        let header = |name: &str| seen.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(header("content-type").as_deref(), Some("application/cloudevents+json"), "{kind:?}");
        let event: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        // CloudEvents 1.0 attributes, as the receiver reads them.
        assert_eq!(event["specversion"], "1.0", "{event:#}");
        let ty = event["type"].as_str().unwrap();
        assert!(ty.starts_with(type_prefix), "{kind:?}: {ty}");
        assert_eq!(event["source"], "/deploy-rs/shop/web");
        let id = event["id"].as_str().unwrap().to_owned();
        assert!(!id.is_empty() && ids.insert(id), "ids are unique");
        assert!(event["time"].is_string());
        // The CDEvent in `data`: context and subject as the CDEvents spec lays them out.
        let data = &event["data"];
        assert_eq!(data["context"]["type"], ty);
        assert_eq!(data["context"]["source"], "/deploy-rs/shop/web");
        assert_eq!(data["subject"]["id"], "shop/web");
        let content = &data["subject"]["content"];
        if ty.contains(".service.") {
            assert_eq!(content["artifactId"], "registry.example.com/shop/web:2.0.0", "{kind:?}");
            assert_eq!(content["environment"]["id"], "production", "{kind:?}");
        } else if ty.contains("pipelinerun.finished") {
            let outcome = if kind == NotificationKind::PipelineSucceeded { "success" } else { "failure" };
            assert_eq!(content["outcome"], outcome, "{kind:?}");
            assert_eq!(content["pipelineName"], "web 2.0.0");
        } else {
            assert_eq!(content["pipelineName"], "web 2.0.0");
            assert!(content["uri"].as_str().unwrap().starts_with("https://"));
        }
    }
}
