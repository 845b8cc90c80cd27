//! HTTP health checks (feature `http`): [`HttpHealthCheck`] asks a URL, retries with
//! exponential backoff and jitter within an overall deadline, and says which attempt
//! failed and why.
//!
//! ```no_run
//! # async fn demo() -> Result<(), deploy_core::health::HealthError> {
//! use std::time::Duration;
//! use deploy_core::health::{HealthCheck, HealthTarget};
//! use deploy_core::http_check::{HttpCheckConfig, HttpHealthCheck};
//! use deploy_core::model::{AppId, Name, Namespace, Track, Version};
//!
//! let check = HttpHealthCheck::new(
//!     "http GET /healthz",
//!     HttpCheckConfig::new("http://{{app}}-{{track}}.{{namespace}}.svc:8080/healthz")
//!         .expect_status([200, 204])
//!         .body_contains("ok")
//!         .attempts(5)
//!         .deadline(Duration::from_secs(30)),
//! )?;
//! let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("checkout").unwrap());
//! let outcome = check.check(&HealthTarget::new(app, Track::Canary, Version::new("2.0.0").unwrap())).await?;
//! println!("{} after {} attempts: {}", outcome.healthy, outcome.attempts, outcome.detail);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::health::{HealthCheck, HealthError, HealthOutcome, HealthTarget};
use crate::http_client::{HttpClient, HttpError, HttpPolicy, sensitive_header};
use crate::secret::SecretString;

/// What an [`HttpHealthCheck`] asks and accepts.
///
/// `url` may hold `{{app}}`, `{{namespace}}`, `{{track}}` and `{{version}}`, filled in
/// from the [`HealthTarget`] of each check, so one check serves every track.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HttpCheckConfig {
    /// The URL template (`http` or `https`).
    pub url: String,
    /// Extra request headers that are not secret, for instance a header route to
    /// the canary.
    pub headers: BTreeMap<String, String>,
    /// Request headers that carry a secret (an API key, a bearer token): sent
    /// marked sensitive, never printed, and only over https unless `http` opts out.
    pub secret_headers: BTreeMap<String, SecretString>,
    /// Accepted status codes; empty accepts any 2xx.
    pub expected_status: Vec<u16>,
    /// Text the body must contain, if any.
    pub body_contains: Option<String>,
    /// The longest one attempt (connect, request, body) may take.
    pub attempt_timeout: Duration,
    /// Attempts in all, the first included; at least 1.
    pub attempts: u32,
    /// The waits between attempts.
    pub backoff: Backoff,
    /// The longest the whole check may take, waits included; no attempt starts or
    /// runs past it.
    pub deadline: Duration,
    /// The client policy: no redirects (a redirect is a failed attempt, and its
    /// target never sees the headers), a connect timeout, a cap on the body read
    /// for `body_contains` (64 KiB by default). Its total timeout is replaced by
    /// `attempt_timeout`. A check with secret headers needs https unless the policy
    /// opts out ([`HttpPolicy::danger_allow_plain_http`]); a check without is free to
    /// use plain http, as checks inside a cluster do.
    pub http: HttpPolicy,
}

impl Default for HttpCheckConfig {
    /// No URL yet, any 2xx, 5 s per attempt, 3 attempts, the default backoff, 30 s in all.
    fn default() -> Self {
        Self {
            url: String::new(),
            headers: BTreeMap::new(),
            secret_headers: BTreeMap::new(),
            expected_status: Vec::new(),
            body_contains: None,
            attempt_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Backoff::default(),
            deadline: Duration::from_secs(30),
            http: HttpPolicy::default().max_body_bytes(64 * 1024),
        }
    }
}

impl HttpCheckConfig {
    /// A check of `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// Adds a request header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Adds a request header that carries a secret.
    #[must_use]
    pub fn secret_header(mut self, name: impl Into<String>, value: impl Into<SecretString>) -> Self {
        self.secret_headers.insert(name.into(), value.into());
        self
    }

    /// Sets the client policy.
    #[must_use]
    pub fn http(mut self, policy: HttpPolicy) -> Self {
        self.http = policy;
        self
    }

    /// Accepts exactly these status codes.
    #[must_use]
    pub fn expect_status(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.expected_status = codes.into_iter().collect();
        self
    }

    /// Requires the body to contain `text`.
    #[must_use]
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    /// Sets the per-attempt timeout.
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets the number of attempts.
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// Sets the backoff between attempts.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the overall deadline.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    fn accepts(&self, status: u16) -> bool {
        if self.expected_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expected_status.contains(&status)
        }
    }

    fn expected(&self) -> String {
        if self.expected_status.is_empty() {
            "2xx".to_owned()
        } else {
            self.expected_status.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
        }
    }

    fn render(&self, target: &HealthTarget) -> String {
        self.url
            .replace("{{app}}", target.app.name.as_str())
            .replace("{{namespace}}", target.app.namespace.as_str())
            .replace("{{track}}", target.track.as_str())
            .replace("{{version}}", target.release.as_str())
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptFailure {
    /// The target answered with a status that is not accepted.
    Status {
        /// The status received.
        got: u16,
        /// The accepted statuses, as text (`200 or 204`, `2xx`).
        expected: String,
    },
    /// The body lacked the required text.
    BodyMismatch {
        /// The text looked for.
        expected: String,
    },
    /// The attempt ran out of time.
    Timeout {
        /// The time it was given.
        after: Duration,
    },
    /// The target redirected and the client policy does not follow it.
    Redirect {
        /// The redirect's status.
        status: u16,
        /// Where it pointed (scheme, host and port only).
        target: String,
    },
    /// The body was larger than the policy's cap.
    BodyTooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// No connection could be made (refused, unreachable, DNS, TLS).
    Connect {
        /// The client's reason.
        reason: String,
    },
    /// The request or the body failed after connecting.
    Request {
        /// The client's reason.
        reason: String,
    },
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { got, expected } => write!(f, "status {got} (expected {expected})"),
            Self::BodyMismatch { expected } => write!(f, "body does not contain {expected:?}"),
            Self::Timeout { after } => write!(f, "no answer within {after:?}"),
            Self::Redirect { status, target } => write!(f, "redirect (http {status}) to {target} not followed"),
            Self::BodyTooLarge { limit } => write!(f, "body larger than the limit of {limit} bytes"),
            Self::Connect { reason } => write!(f, "connection failed: {reason}"),
            Self::Request { reason } => write!(f, "request failed: {reason}"),
        }
    }
}

/// One attempt of a check and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The attempt's number, from 1.
    pub number: u32,
    /// The status, when the target answered.
    pub status: Option<u16>,
    /// Why it failed; `None` for the attempt that passed.
    pub failure: Option<AttemptFailure>,
}

/// Every attempt of one check, for callers that want more than a
/// [`HealthOutcome`]'s sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpCheckReport {
    /// The URL asked, after templating.
    pub url: String,
    /// The attempts in order; the last one decided.
    pub attempts: Vec<Attempt>,
    /// Whether the check gave up because the overall deadline left no time for
    /// another attempt.
    pub deadline_reached: bool,
}

impl HttpCheckReport {
    /// Whether the last attempt passed.
    pub fn healthy(&self) -> bool {
        self.attempts.last().is_some_and(|a| a.failure.is_none())
    }

    /// The report as a [`HealthOutcome`]: the deciding attempt, and the failures
    /// before it.
    pub fn outcome(&self) -> HealthOutcome {
        let made = u32::try_from(self.attempts.len()).unwrap_or(u32::MAX);
        let failures: Vec<String> = self
            .attempts
            .iter()
            .filter_map(|a| a.failure.as_ref().map(|f| format!("attempt {}: {f}", a.number)))
            .collect();
        match self.attempts.last() {
            Some(Attempt { number, status: Some(status), failure: None }) => {
                let mut detail = format!("attempt {number}: status {status} from {}", self.url);
                if !failures.is_empty() {
                    detail.push_str(&format!(" (after {})", failures.join("; ")));
                }
                HealthOutcome::healthy(made, detail)
            }
            _ => {
                let mut detail = match failures.last() {
                    Some(last) => format!("{last} from {}", self.url),
                    None => format!("no attempt could be made on {}", self.url),
                };
                if failures.len() > 1 {
                    detail.push_str(&format!(" (before: {})", failures[..failures.len() - 1].join("; ")));
                }
                if self.deadline_reached {
                    detail.push_str("; overall deadline reached");
                }
                HealthOutcome::unhealthy(made, detail)
            }
        }
    }
}

/// A [`HealthCheck`] over HTTP(S) with reqwest and rustls.
///
/// Contract: a target that answers badly, slowly or not at all is `Ok` with
/// `healthy: false` and a detail naming the deciding attempt and its reason, plus
/// the earlier failures; `Err` only when the templated URL is not a valid
/// `http`/`https` URL. Attempts run until one passes, `attempts` are used up, or the
/// next wait would pass the overall deadline; each attempt's timeout is cut to the
/// time left before the deadline.
///
/// Timeouts and waits use `tokio::time`: under a paused test clock, time jumps ahead
/// while a real request is in flight, so test against real servers with a running
/// clock and short durations.
pub struct HttpHealthCheck {
    name: String,
    config: HttpCheckConfig,
    client: HttpClient,
}

impl fmt::Debug for HttpHealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHealthCheck")
            .field("name", &self.name)
            .field("url", &self.config.url)
            .field("expected_status", &self.config.expected_status)
            .field("attempts", &self.config.attempts)
            .field("secret_headers", &self.config.secret_headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl HttpHealthCheck {
    /// A check named `name` (the name analyses refer to); fails with
    /// [`HealthError::Misconfigured`] on a URL template that cannot become a URL, no
    /// attempts, a zero timeout or deadline, a header that is not valid HTTP, or
    /// secret headers on a plain `http` URL without the policy's opt-out.
    pub fn new(name: impl Into<String>, config: HttpCheckConfig) -> Result<Self, HealthError> {
        let name = name.into();
        let bad = |reason: String| HealthError::Misconfigured { check: name.clone(), reason };
        let probe = config
            .url
            .replace("{{app}}", "app")
            .replace("{{namespace}}", "namespace")
            .replace("{{track}}", "canary")
            .replace("{{version}}", "1.0.0");
        let probe_url = match reqwest::Url::parse(&probe) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(url) => return Err(bad(format!("url scheme {} is not http or https", url.scheme()))),
            Err(e) => return Err(bad(format!("url {:?} is not valid: {e}", config.url))),
        };
        if config.attempts == 0 {
            return Err(bad("needs at least one attempt".to_owned()));
        }
        if config.attempt_timeout.is_zero() || config.deadline.is_zero() {
            return Err(bad("attempt timeout and deadline must be positive".to_owned()));
        }
        for (header, value) in &config.headers {
            if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err(bad(format!("header {header:?} is not valid HTTP")));
            }
        }
        for (header, value) in &config.secret_headers {
            if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err()
                || sensitive_header(header, value).is_err()
            {
                return Err(bad(format!("header {header:?} is not valid HTTP")));
            }
        }
        let mut policy = config.http.clone().timeout(config.attempt_timeout);
        if config.secret_headers.is_empty() {
            policy = policy.danger_allow_plain_http();
        }
        let client = HttpClient::new(policy)
            .map_err(|e| HealthError::backend("build the http client", crate::error::ErrorKind::Other, e))?;
        client.check_url(&probe_url).map_err(|e| bad(e.to_string()))?;
        Ok(Self { name, config, client })
    }

    /// The configuration.
    pub fn config(&self) -> &HttpCheckConfig {
        &self.config
    }

    /// Runs the check and returns every attempt.
    #[tracing::instrument(skip_all, fields(check = %self.name, deploy.app = %target.app, deploy.track = %target.track))]
    pub async fn probe(&self, target: &HealthTarget) -> HttpCheckReport {
        let url = self.config.render(target);
        let deadline = Instant::now() + self.config.deadline;
        let mut report = HttpCheckReport { url: url.clone(), attempts: Vec::new(), deadline_reached: false };
        for number in 1..=self.config.attempts {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                report.deadline_reached = true;
                break;
            }
            let timeout = self.config.attempt_timeout.min(left);
            let attempt = match tokio::time::timeout(timeout, self.attempt(&url)).await {
                Ok((status, failure)) => Attempt { number, status, failure },
                Err(_) => Attempt { number, status: None, failure: Some(AttemptFailure::Timeout { after: timeout }) },
            };
            let passed = attempt.failure.is_none();
            if let Some(failure) = &attempt.failure {
                tracing::debug!(attempt = number, %failure, "health check attempt failed");
            }
            report.attempts.push(attempt);
            if passed || number == self.config.attempts {
                break;
            }
            let wait = self.config.backoff.next_delay(number);
            if Instant::now() + wait >= deadline {
                report.deadline_reached = true;
                break;
            }
            tokio::time::sleep(wait).await;
        }
        report
    }

    async fn attempt(&self, url: &str) -> (Option<u16>, Option<AttemptFailure>) {
        let request = reqwest::Url::parse(url)
            .map_err(|e| HttpError::InvalidUrl { reason: e.to_string() })
            .and_then(|url| self.client.request(reqwest::Method::GET, url));
        let mut request = match request {
            Ok(r) => r,
            Err(e) => return (None, Some(policy_failure(e))),
        };
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        for (name, value) in &self.config.secret_headers {
            match sensitive_header(name, value) {
                Ok(value) => request = request.header(name, value),
                Err(e) => return (None, Some(policy_failure(e))),
            }
        }
        let response = match self.client.send(request).await {
            Ok(r) => r,
            Err(e) => return (None, Some(policy_failure(e))),
        };
        let status = response.status().as_u16();
        if !self.config.accepts(status) {
            return (Some(status), Some(AttemptFailure::Status { got: status, expected: self.config.expected() }));
        }
        if let Some(needle) = &self.config.body_contains {
            match self.client.read_body(response).await {
                Ok(body) if String::from_utf8_lossy(&body).contains(needle.as_str()) => {}
                Ok(_) => return (Some(status), Some(AttemptFailure::BodyMismatch { expected: needle.clone() })),
                Err(e) => return (Some(status), Some(policy_failure(e))),
            }
        }
        (Some(status), None)
    }
}

/// An attempt's failure from the client: a refused redirect, a body over the cap, a
/// timeout, or a transport failure described with its whole chain of causes (the
/// useful part, "Connection refused", is usually at the bottom).
fn policy_failure(e: HttpError) -> AttemptFailure {
    match e {
        HttpError::RedirectRefused { status, target } => AttemptFailure::Redirect { status, target },
        HttpError::BodyTooLarge { limit } => AttemptFailure::BodyTooLarge { limit },
        HttpError::Timeout { after } => AttemptFailure::Timeout { after },
        HttpError::Transport { connect, source, .. } => {
            let mut reason = source.to_string();
            let mut cause = source.source();
            while let Some(s) = cause {
                reason.push_str(": ");
                reason.push_str(&s.to_string());
                cause = s.source();
            }
            if connect { AttemptFailure::Connect { reason } } else { AttemptFailure::Request { reason } }
        }
        other => AttemptFailure::Request { reason: other.to_string() },
    }
}

#[async_trait]
impl HealthCheck for HttpHealthCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, target: &HealthTarget) -> Result<HealthOutcome, HealthError> {
        let url = self.config.render(target);
        if reqwest::Url::parse(&url).is_err() {
            return Err(HealthError::Misconfigured {
                check: self.name.clone(),
                reason: format!("url {url:?} is not valid for {}", target.track),
            });
        }
        Ok(self.probe(target).await.outcome())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_client::fixtures::{Reply, ScriptedServer, closed_port};
    use crate::model::{AppId, Name, Namespace, Track, Version};

    fn target(track: Track) -> HealthTarget {
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("checkout").unwrap());
        HealthTarget::new(app, track, Version::new("2.0.0").unwrap())
    }

    fn quick(url: String) -> HttpCheckConfig {
        HttpCheckConfig::new(url)
            .attempt_timeout(Duration::from_millis(300))
            .backoff(Backoff::new(Duration::from_millis(10), Duration::from_millis(40)))
            .deadline(Duration::from_secs(5))
    }

    #[tokio::test]
    async fn two_503s_then_200_is_healthy_on_the_third_attempt() {
        let server = ScriptedServer::start(vec![
            Reply::text(503, "warming up"),
            Reply::text(503, "warming up"),
            Reply::text(200, "ok"),
        ])
        .await;
        let check = HttpHealthCheck::new(
            "http",
            quick(server.url("/{{track}}/healthz")).attempts(5).expect_status([200]).body_contains("ok"),
        )
        .unwrap();
        let report = check.probe(&target(Track::Canary)).await;
        assert!(report.healthy());
        let statuses: Vec<Option<u16>> = report.attempts.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
        let outcome = check.check(&target(Track::Canary)).await.unwrap();
        assert!(outcome.healthy, "{outcome:?}");
        // The second check's first request already gets 200 (the script's last reply repeats).
        assert_eq!(outcome.attempts, 1);
        assert!(report.outcome().detail.starts_with("attempt 3: status 200"), "{}", report.outcome().detail);
        assert!(report.outcome().detail.contains("attempt 2: status 503 (expected 200)"));
        let seen = server.requests();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0].line, "GET /canary/healthz HTTP/1.1");
    }

    #[tokio::test]
    async fn only_503s_fail_naming_the_last_attempt() {
        let server = ScriptedServer::start(vec![Reply::text(503, "down")]).await;
        let check = HttpHealthCheck::new("http", quick(server.url("/healthz")).attempts(3)).unwrap();
        let outcome = check.check(&target(Track::Stable)).await.unwrap();
        assert!(!outcome.healthy);
        assert_eq!(outcome.attempts, 3);
        assert!(outcome.detail.starts_with("attempt 3: status 503 (expected 2xx)"), "{}", outcome.detail);
        assert!(outcome.detail.contains("before: attempt 1: status 503"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn a_hanging_server_times_out_each_attempt() {
        let server = ScriptedServer::start(vec![Reply::Hang]).await;
        let check = HttpHealthCheck::new(
            "http",
            quick(server.url("/healthz")).attempts(2).attempt_timeout(Duration::from_millis(150)),
        )
        .unwrap();
        let report = check.probe(&target(Track::Canary)).await;
        assert!(!report.healthy());
        assert_eq!(report.attempts.len(), 2);
        assert!(
            report
                .attempts
                .iter()
                .all(|a| a.failure == Some(AttemptFailure::Timeout { after: Duration::from_millis(150) })),
            "{report:?}"
        );
        assert!(
            report.outcome().detail.starts_with("attempt 2: no answer within 150ms"),
            "{}",
            report.outcome().detail
        );
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_a_connection_failure() {
        let addr = closed_port().await;
        let check = HttpHealthCheck::new("http", quick(format!("http://{addr}/healthz")).attempts(2)).unwrap();
        let outcome = check.check(&target(Track::Canary)).await.unwrap();
        assert!(!outcome.healthy);
        assert_eq!(outcome.attempts, 2);
        assert!(outcome.detail.starts_with("attempt 2: connection failed"), "{}", outcome.detail);
        assert!(outcome.detail.to_lowercase().contains("refused"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn the_deadline_stops_retries_and_cuts_the_attempt_timeout() {
        let server = ScriptedServer::start(vec![Reply::Hang]).await;
        let config = quick(server.url("/healthz"))
            .attempts(10)
            .attempt_timeout(Duration::from_secs(10))
            .deadline(Duration::from_millis(200));
        let check = HttpHealthCheck::new("http", config).unwrap();
        let report = check.probe(&target(Track::Canary)).await;
        assert_eq!(report.attempts.len(), 1, "{report:?}");
        // The attempt got what was left of the 200 ms deadline, not its own 10 s.
        match &report.attempts[0].failure {
            Some(AttemptFailure::Timeout { after }) => {
                assert!(*after <= Duration::from_millis(200) && *after > Duration::from_millis(150), "{after:?}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(report.deadline_reached);
        assert!(report.outcome().detail.ends_with("overall deadline reached"));
    }

    #[tokio::test]
    async fn body_must_match_and_headers_are_sent() {
        let server = ScriptedServer::start(vec![Reply::text(200, "degraded")]).await;
        let config = quick(server.url("/healthz")).attempts(1).body_contains("ok").header("x-canary", "always");
        let check = HttpHealthCheck::new("http", config).unwrap();
        let outcome = check.check(&target(Track::Canary)).await.unwrap();
        assert!(!outcome.healthy);
        assert!(outcome.detail.contains("body does not contain \"ok\""), "{}", outcome.detail);
        assert_eq!(server.requests()[0].header("x-canary"), Some("always"));
    }

    #[tokio::test]
    async fn a_cross_host_redirect_fails_the_attempt_and_never_sees_the_secret_header() {
        let other = ScriptedServer::start(vec![Reply::text(200, "ok")]).await;
        let server = ScriptedServer::start(vec![Reply::redirect(302, &other.url("/steal"))]).await;
        let config = quick(server.url("/healthz"))
            .attempts(1)
            .secret_header("x-api-key", "k3y-value")
            .http(HttpPolicy::default().danger_allow_plain_http());
        let check = HttpHealthCheck::new("http", config).unwrap();
        assert!(!format!("{check:?} {:?}", check.config()).contains("k3y-value"));
        let report = check.probe(&target(Track::Canary)).await;
        assert_eq!(
            report.attempts[0].failure,
            Some(AttemptFailure::Redirect { status: 302, target: format!("http://{}", other.addr) })
        );
        assert_eq!(server.requests()[0].header("x-api-key"), Some("k3y-value"));
        assert!(other.requests().is_empty(), "{:?}", other.requests());
    }

    #[tokio::test]
    async fn a_body_over_the_cap_fails_the_attempt_naming_the_limit() {
        let server = ScriptedServer::start(vec![Reply::text(200, &format!("{} ok", "x".repeat(2000)))]).await;
        let config = quick(server.url("/healthz"))
            .attempts(1)
            .body_contains("ok")
            .http(HttpPolicy::default().max_body_bytes(1024));
        let outcome = HttpHealthCheck::new("http", config).unwrap().check(&target(Track::Canary)).await.unwrap();
        assert!(!outcome.healthy);
        assert!(outcome.detail.contains("body larger than the limit of 1024 bytes"), "{}", outcome.detail);
    }

    #[test]
    fn secret_headers_need_https_unless_the_policy_opts_out() {
        let config = HttpCheckConfig::new("http://{{app}}:8080/healthz").secret_header("authorization", "Bearer t");
        let err = HttpHealthCheck::new("http", config.clone()).unwrap_err();
        assert!(err.to_string().contains("https is required"), "{err}");
        HttpHealthCheck::new("http", config.http(HttpPolicy::default().danger_allow_plain_http())).unwrap();
        HttpHealthCheck::new("http", HttpCheckConfig::new("https://{{app}}/h").secret_header("authorization", "t"))
            .unwrap();
        // Without a secret, plain http is fine: the usual in-cluster check.
        HttpHealthCheck::new("http", HttpCheckConfig::new("http://{{app}}:8080/healthz").header("x-canary", "1"))
            .unwrap();
    }

    #[test]
    fn misconfigurations_are_rejected() {
        for config in [
            HttpCheckConfig::new("not a url"),
            HttpCheckConfig::new("ftp://host/x"),
            HttpCheckConfig::new("http://host/x").attempts(0),
            HttpCheckConfig::new("http://host/x").deadline(Duration::ZERO),
            HttpCheckConfig::new("http://host/x").header("bad header", "v"),
        ] {
            let err = HttpHealthCheck::new("http", config).unwrap_err();
            assert!(matches!(err, HealthError::Misconfigured { .. }), "{err}");
        }
        let ok =
            HttpHealthCheck::new("http", HttpCheckConfig::new("https://{{app}}.{{namespace}}/v/{{version}}")).unwrap();
        assert_eq!(ok.config().render(&target(Track::Blue)), "https://checkout.shop/v/2.0.0");
    }
}
