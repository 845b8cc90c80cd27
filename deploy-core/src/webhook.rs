//! A [`Notifier`] that posts each notification as JSON to a webhook (feature
//! `http`: reqwest with rustls).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::ErrorKind;
use crate::notify::{Notification, Notifier, NotifyError};
use crate::secret::SecretString;

/// How much of a rejecting receiver's answer an error keeps.
const BODY_SHOWN: usize = 512;

/// Posts [`Notification`]s as JSON (the notification's serde form: `kind`, `title`,
/// `message`, `app`, `environment`, `fields`, `at`) to a URL. A 2xx answer is
/// delivery; any other status is [`NotifyError::Rejected`] (retryable for 429 and
/// 5xx); a connection failure or timeout is a retryable backend error.
///
/// The URL and the headers are treated as secrets (webhook URLs often carry a
/// token): `Debug` shows only the host, and errors never include the URL.
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
    client: reqwest::Client,
    url: reqwest::Url,
    headers: Vec<(String, SecretString)>,
    timeout: Duration,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("host", &self.url.host_str().unwrap_or(""))
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier posting to `url` (http or https) with a 10 s timeout.
    pub fn new(url: &str) -> Result<Self, NotifyError> {
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
        Ok(Self { client: reqwest::Client::new(), url, headers: Vec::new(), timeout: Duration::from_secs(10) })
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

    /// Uses `client` (proxies, custom roots) instead of a default one.
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }
}

fn transport_error(operation: &str, e: reqwest::Error) -> NotifyError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() || e.is_request() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Other
    };
    NotifyError::backend(operation, kind, e.without_url())
}

#[async_trait]
impl Notifier for WebhookNotifier {
    #[tracing::instrument(skip_all, fields(notify.kind = ?notification.kind, webhook.host = self.url.host_str().unwrap_or("")), err)]
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let mut request = self.client.post(self.url.clone()).timeout(self.timeout).json(notification);
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.expose_secret());
        }
        let response = request.send().await.map_err(|e| transport_error("post the webhook", e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(BODY_SHOWN).collect();
        Err(NotifyError::Rejected { status: status.as_u16(), body })
    }
}
