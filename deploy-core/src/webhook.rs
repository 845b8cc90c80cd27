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

/// Posts [`Notification`]s as JSON (the notification's serde form: `kind`, `title`,
/// `message`, `app`, `environment`, `fields`, `at`) to a URL. A 2xx answer is
/// delivery; any other status is [`NotifyError::Rejected`] (retryable for 429 and
/// 5xx); a connection failure or timeout is a retryable backend error.
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
        Ok(Self { client, url, headers: Vec::new(), timeout })
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
            .json(notification);
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
