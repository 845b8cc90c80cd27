//! A [`Notifier`] that posts each notification as JSON to a webhook (feature
//! `http`: reqwest with rustls, under the [`HttpPolicy`] of
//! [`http_client`](crate::http_client)).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Classify, ErrorKind};
use crate::http_client::{HttpClient, HttpError, HttpPolicy, sensitive_header};
use crate::notify::{Notification, Notifier, NotifyError};
use crate::secret::SecretString;

/// How much of a rejecting receiver's answer an error keeps.
const BODY_SHOWN: usize = 512;

/// Posts [`Notification`]s as JSON to a URL, in the [`WebhookFormat`] the receiver
/// reads: Slack (Block Kit), Microsoft Teams (a MessageCard) or the generic form (the
/// notification's serde form: `kind`, `title`, `message`, `app`, `environment`,
/// `fields`, `at`; the default). A 2xx answer is delivery; any other status is [`NotifyError::Rejected`], classified by
/// [`ErrorKind::from_http_status`](crate::error::ErrorKind::from_http_status) (retryable for 408, 409,
/// 412, 429 and 5xx but 501); a connection failure or timeout is a retryable backend error.
///
/// The URL and the headers are treated as secrets (webhook URLs often carry a
/// token): `Debug` shows only the host, errors never include the URL, header values
/// are sent marked sensitive. The client follows the [`HttpPolicy`]: https only
/// (unless the policy opts out with [`HttpPolicy::danger_allow_plain_http`]), no
/// redirects (a redirect is an error, and the other host never sees the headers or
/// the body), bounded reads of the receiver's answer.
///
/// ```no_run
/// use deploy_core::notify::{Notification, NotificationKind, Notifier};
/// use deploy_core::webhook::WebhookNotifier;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hook = WebhookNotifier::new("https://hooks.example.com/T000/B000/XXXX")?
///     .header("Authorization", "Bearer s3cr3t");
/// hook.notify(&Notification::new(NotificationKind::RolledBack, "web rolled back", "error rate 7%")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebhookNotifier {
    client: HttpClient,
    url: reqwest::Url,
    headers: Vec<(String, SecretString)>,
    timeout: Duration,
    format: WebhookFormat,
}

/// The payload a webhook receiver reads.
///
/// ```
/// use deploy_core::notify::{Notification, NotificationKind};
/// use deploy_core::webhook::WebhookFormat;
/// let n = Notification::new(NotificationKind::RolledBack, "web 2.0.0 rolled back", "error rate 7% > 1%");
/// let slack = WebhookFormat::Slack.payload(&n);
/// assert_eq!(slack["blocks"][0]["type"], "header");
/// assert_eq!(slack["blocks"][1]["text"]["text"], "error rate 7% &gt; 1%");
/// let teams = WebhookFormat::TeamsMessageCard.payload(&n);
/// assert_eq!(teams["@type"], "MessageCard");
/// assert_eq!(teams["summary"], "web 2.0.0 rolled back");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WebhookFormat {
    /// The notification's own serde form.
    #[default]
    Generic,
    /// A Slack incoming-webhook message: `text` (the fallback for notifications)
    /// and Block Kit `blocks`: a `header` with the title, a `section` with the
    /// message, a `section` of up to 10 `fields` (app, environment, then the
    /// notification's fields), and a `context` with the kind and time. Text is cut to
    /// Slack's limits (150 characters for the header, 3000 for a section, 2000 for
    /// a field) and `&`, `<`, `>` are escaped as Slack's mrkdwn requires.
    Slack,
    /// A Microsoft Teams (Office 365 connector) `MessageCard`: `@type`, `@context`,
    /// `summary`, `themeColor` by kind, `title`, `text`, and one section of `facts`.
    TeamsMessageCard,
    /// A [CDEvent](https://cdevents.dev) (spec 0.5) as a CloudEvent 1.0 in structured
    /// JSON (`application/cloudevents+json`), built with `cdevents-sdk` (feature
    /// `cdevents`): a succeeded deployment is `service.upgraded` (or
    /// `service.deployed` when the notification names no previous `from` release),
    /// a rolled-back one `service.rolledback`, a started deployment
    /// `pipelinerun.started`, a failed deployment and the pipeline notifications
    /// `pipelinerun.finished` with their outcome. The subject is the application
    /// (`namespace/name`), the artifact the `image` field (or the `version` field),
    /// the environment the notification's; the source is `/deploy-rs/<namespace>/<name>`.
    #[cfg(feature = "cdevents")]
    CdEvents,
}

const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;
const SLACK_FIELDS_MAX: usize = 10;

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn escaping of the three control characters.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The facts of a notification, in order: app, environment, then its fields.
fn facts(notification: &Notification) -> Vec<(String, String)> {
    let mut facts = Vec::new();
    if let Some(app) = &notification.app {
        facts.push(("app".to_owned(), app.to_string()));
    }
    if let Some(environment) = &notification.environment {
        facts.push(("environment".to_owned(), environment.to_string()));
    }
    facts.extend(notification.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    facts
}

fn kind_name(kind: crate::notify::NotificationKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn theme_color(kind: crate::notify::NotificationKind) -> &'static str {
    use crate::notify::NotificationKind as K;
    match kind {
        K::DeploymentSucceeded | K::PipelineSucceeded => "2EB886",
        K::DeploymentFailed | K::PipelineFailed => "D00000",
        K::RolledBack => "E8912D",
        _ => "439FE0",
    }
}

impl WebhookFormat {
    /// The JSON body for `notification`.
    pub fn payload(self, notification: &Notification) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::Generic => serde_json::to_value(notification).unwrap_or(serde_json::Value::Null),
            Self::Slack => {
                let mut blocks = vec![
                    json!({ "type": "header", "text": { "type": "plain_text", "text": cut(&notification.title, SLACK_HEADER_MAX), "emoji": false } }),
                ];
                if !notification.message.is_empty() {
                    blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": cut(&slack_escape(&notification.message), SLACK_SECTION_MAX) } }));
                }
                let fields: Vec<serde_json::Value> = facts(notification)
                    .into_iter()
                    .take(SLACK_FIELDS_MAX)
                    .map(|(name, value)| {
                        let text = format!("*{}*\n{}", slack_escape(&name), slack_escape(&value));
                        json!({ "type": "mrkdwn", "text": cut(&text, SLACK_FIELD_MAX) })
                    })
                    .collect();
                if !fields.is_empty() {
                    blocks.push(json!({ "type": "section", "fields": fields }));
                }
                blocks.push(json!({ "type": "context", "elements": [
                    { "type": "mrkdwn", "text": format!("{} · {}", kind_name(notification.kind), notification.at) }
                ] }));
                json!({ "text": cut(&slack_escape(&notification.title), SLACK_SECTION_MAX), "blocks": blocks })
            }
            Self::TeamsMessageCard => {
                let facts: Vec<serde_json::Value> = facts(notification)
                    .into_iter()
                    .map(|(name, value)| json!({ "name": name, "value": value }))
                    .collect();
                let mut card = json!({
                    "@type": "MessageCard",
                    "@context": "https://schema.org/extensions",
                    "summary": notification.title,
                    "themeColor": theme_color(notification.kind),
                    "title": notification.title,
                    "text": notification.message,
                });
                let mut section =
                    json!({ "activitySubtitle": format!("{} · {}", kind_name(notification.kind), notification.at) });
                if !facts.is_empty() {
                    section["facts"] = serde_json::Value::Array(facts);
                }
                card["sections"] = json!([section]);
                card
            }
            #[cfg(feature = "cdevents")]
            Self::CdEvents => crate::cdevents::cloud_event(notification).unwrap_or(serde_json::Value::Null),
        }
    }

    /// The content type of [`WebhookFormat::payload`].
    pub fn content_type(self) -> &'static str {
        match self {
            #[cfg(feature = "cdevents")]
            Self::CdEvents => "application/cloudevents+json",
            _ => "application/json",
        }
    }
}

impl WebhookNotifier {
    /// The body for `notification`; a CDEvent that cannot be built is an error,
    /// never an empty post.
    fn payload(&self, notification: &Notification) -> Result<serde_json::Value, NotifyError> {
        #[cfg(feature = "cdevents")]
        if self.format == WebhookFormat::CdEvents {
            return crate::cdevents::cloud_event(notification)
                .map_err(|e| NotifyError::backend("build the CDEvent", ErrorKind::InvalidInput, e));
        }
        Ok(self.format.payload(notification))
    }
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("host", &self.url.host_str().unwrap_or(""))
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier posting to `url` (https) with a 10 s timeout and the default
    /// [`HttpPolicy`].
    pub fn new(url: &str) -> Result<Self, NotifyError> {
        Self::with_policy(url, HttpPolicy::default().timeout(Duration::from_secs(10)))
    }

    /// A notifier posting to `url` under `policy` (its timeout is the per-request
    /// timeout until [`WebhookNotifier::timeout`] changes it). A plain `http://` URL
    /// needs [`HttpPolicy::danger_allow_plain_http`].
    pub fn with_policy(url: &str, policy: HttpPolicy) -> Result<Self, NotifyError> {
        // The parser's message does not quote the URL.
        let url = reqwest::Url::parse(url)
            .map_err(|e| NotifyError::backend("parse the webhook URL", ErrorKind::InvalidInput, e))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NotifyError::backend(
                "parse the webhook URL",
                ErrorKind::InvalidInput,
                format!("scheme {} is not http or https", url.scheme()),
            ));
        }
        let timeout = policy.timeout;
        let client = HttpClient::new(policy).map_err(|e| http_error("build the webhook client", e))?;
        client.check_url(&url).map_err(|e| http_error("parse the webhook URL", e))?;
        Ok(Self { client, url, headers: Vec::new(), timeout, format: WebhookFormat::Generic })
    }

    /// Sets the payload format.
    #[must_use]
    pub fn format(mut self, format: WebhookFormat) -> Self {
        self.format = format;
        self
    }

    /// Adds a header to every request; its value is kept as a secret.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<SecretString>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the per-request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

fn http_error(operation: &str, e: HttpError) -> NotifyError {
    NotifyError::backend(operation, e.kind(), e)
}

#[async_trait]
impl Notifier for WebhookNotifier {
    #[tracing::instrument(skip_all, fields(notify.kind = ?notification.kind, webhook.host = self.url.host_str().unwrap_or("")), err)]
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let mut request = self
            .client
            .request(reqwest::Method::POST, self.url.clone())
            .map_err(|e| http_error("post the webhook", e))?
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, self.format.content_type())
            .json(&self.payload(notification)?);
        for (name, value) in &self.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| http_error("post the webhook", HttpError::InvalidHeader { name: name.clone() }))?;
            let value = sensitive_header(name.as_str(), value).map_err(|e| http_error("post the webhook", e))?;
            request = request.header(name, value);
        }
        let response = self.client.send(request).await.map_err(|e| http_error("post the webhook", e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The answer to a rejection is shown in part; a body over the cap shows nothing.
        let body = self.client.read_body(response).await.unwrap_or_default();
        let body: String = String::from_utf8_lossy(&body).chars().take(BODY_SHOWN).collect();
        Err(NotifyError::Rejected { status: status.as_u16(), body })
    }
}
