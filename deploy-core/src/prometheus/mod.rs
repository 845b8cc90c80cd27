//! Metrics from Prometheus (feature `prometheus`): [`PrometheusProvider`] implements
//! [`MetricsProvider`] over the HTTP API, and [`templates`] holds the metric checks
//! Flagger ships built in.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use deploy_core::metrics::{MetricQuery, MetricsProvider};
//! use deploy_core::model::{AppId, Name, Namespace, Track};
//! use deploy_core::prometheus::{PrometheusAuth, PrometheusConfig, PrometheusProvider};
//!
//! let prometheus = PrometheusProvider::new(
//!     PrometheusConfig::new("http://prometheus.monitoring:9090")
//!         .auth(PrometheusAuth::bearer("token-from-a-secret"))
//!         .timeout(Duration::from_secs(10)),
//! )?;
//! let app = AppId::new(Namespace::new("shop")?, Name::new("checkout")?);
//! let query = MetricQuery::new(
//!     "error-rate",
//!     r#"sum(rate(http_requests_total{app="{{app}}",track="{{track}}",status=~"5.."}[{{interval}}]))"#,
//!     app,
//!     Track::Canary,
//!     Duration::from_secs(60),
//! );
//! println!("{:?}", prometheus.query(&query).await?);
//! # Ok(()) }
//! ```

mod response;
pub mod templates;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::error::{Classify, ErrorKind};
use crate::http_client::{HttpClient, HttpError, HttpPolicy};
use crate::metrics::{MetricQuery, MetricValue, MetricsError, MetricsProvider};
use crate::secret::SecretString;
use response::{Data, Envelope};

/// How to authenticate to Prometheus (or the proxy in front of it). Secrets print
/// as `[redacted]`.
///
/// ```
/// use deploy_core::prometheus::PrometheusAuth;
/// let auth = PrometheusAuth::basic("reader", "s3cret");
/// assert!(!format!("{auth:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum PrometheusAuth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretString,
    },
    /// A bearer token.
    Bearer(SecretString),
}

impl PrometheusAuth {
    /// Basic authentication.
    pub fn basic(username: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Self::Basic { username: username.into(), password: password.into() }
    }

    /// A bearer token.
    pub fn bearer(token: impl Into<SecretString>) -> Self {
        Self::Bearer(token.into())
    }
}

/// Where Prometheus is and how to talk to it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PrometheusConfig {
    /// The server's base URL (`http://prometheus:9090`, or with a path prefix).
    /// Credentials belong in `auth`, never in the URL.
    pub url: String,
    /// Credentials.
    pub auth: PrometheusAuth,
    /// The longest one query may take, answer included; also sent to Prometheus as
    /// its evaluation timeout. It replaces the timeout of `http`.
    pub timeout: Duration,
    /// The client policy: no redirects, connect timeout, body cap (16 MiB by
    /// default, room for long range queries). With credentials, https is required
    /// unless the policy opts out ([`HttpPolicy::danger_allow_plain_http`]); without
    /// credentials, plain http is allowed, as most Prometheus servers inside a
    /// cluster serve it.
    pub http: HttpPolicy,
}

impl Default for PrometheusConfig {
    /// `http://localhost:9090`, no credentials, 30 s per query, bodies up to 16 MiB.
    fn default() -> Self {
        Self {
            url: "http://localhost:9090".to_owned(),
            auth: PrometheusAuth::None,
            timeout: Duration::from_secs(30),
            http: HttpPolicy::default().max_body_bytes(16 * 1024 * 1024),
        }
    }
}

impl PrometheusConfig {
    /// A configuration for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// Sets the credentials.
    #[must_use]
    pub fn auth(mut self, auth: PrometheusAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the per-query timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the client policy.
    #[must_use]
    pub fn http(mut self, policy: HttpPolicy) -> Self {
        self.http = policy;
        self
    }
}

/// What went wrong talking to Prometheus; the `source` of
/// [`MetricsError::Backend`], whose [`ErrorKind`] tells whether to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// Prometheus answered with an API error.
    #[error("prometheus answered {error_type} (http {status}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// Prometheus' `errorType` (`bad_data`, `timeout`, `internal`, ...).
        error_type: String,
        /// Prometheus' `error`.
        message: String,
    },
    /// Something answered with an HTTP error that is not the Prometheus API (a proxy,
    /// a wrong path).
    #[error("http {status} from {url}: {body}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The URL asked, without the query.
        url: String,
        /// The start of the body.
        body: String,
    },
    /// No answer within the configured timeout.
    #[error("no answer within {after:?}")]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The request could not be sent or its answer not read, or broke the client
    /// policy (a redirect, a body over the cap, plain http with credentials).
    #[error("request to prometheus failed")]
    Transport(#[source] HttpError),
    /// The configuration cannot work.
    #[error("invalid prometheus configuration: {0}")]
    Config(String),
}

/// A [`MetricsProvider`] over the Prometheus HTTP API.
///
/// Contract: queries are rendered with [`MetricQuery::render`] and evaluated at the
/// current time. An empty answer, and NaN (`0 / 0` on a track without traffic), are
/// [`MetricValue::Empty`], which judges call inconclusive. A query Prometheus
/// rejects (`bad_data`, `execution`) is [`MetricsError::BadQuery`], not retryable;
/// server errors (5xx, `internal`, `unavailable`), Prometheus' own `timeout`, and
/// timeouts and connection failures of the request are
/// [`MetricsError::Backend`] with a retryable kind; 401 and 403 are
/// [`ErrorKind::Unauthorized`]. The timeout runs on `tokio::time` (see
/// [`HttpHealthCheck`](crate::http_check::HttpHealthCheck) on paused test clocks).
pub struct PrometheusProvider {
    base: reqwest::Url,
    config: PrometheusConfig,
    client: HttpClient,
}

impl fmt::Debug for PrometheusProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusProvider")
            .field("url", &self.base.as_str())
            .field("auth", &self.config.auth)
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { format!("{s:.0}") } else { format!("{s:.3}") }
}

impl PrometheusProvider {
    /// A provider; fails on a URL that is not `http`/`https`, a URL with
    /// credentials in it, plain http with credentials (unless the policy opts out),
    /// or a zero timeout.
    pub fn new(config: PrometheusConfig) -> Result<Self, MetricsError> {
        let invalid = |reason: String| {
            MetricsError::backend("configure prometheus", ErrorKind::InvalidInput, PrometheusError::Config(reason))
        };
        let mut base = reqwest::Url::parse(&config.url).map_err(|e| invalid(format!("url is not valid: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!("url scheme {} is not http or https", base.scheme())));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid("the url holds credentials; give them as auth instead".to_owned()));
        }
        if config.timeout.is_zero() {
            return Err(invalid("timeout must be positive".to_owned()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut policy = config.http.clone().timeout(config.timeout);
        if config.auth == PrometheusAuth::None {
            // Nothing secret travels: plain http is the caller's choice of URL.
            policy = policy.danger_allow_plain_http();
        }
        let client = HttpClient::new(policy)
            .map_err(|e| MetricsError::backend("build the http client", e.kind(), PrometheusError::Transport(e)))?;
        client
            .check_url(&base)
            .map_err(|e| MetricsError::backend("configure prometheus", e.kind(), PrometheusError::Transport(e)))?;
        Ok(Self { base, config, client })
    }

    /// The configuration.
    pub fn config(&self) -> &PrometheusConfig {
        &self.config
    }

    async fn get(&self, endpoint: &str, params: &[(&str, String)], query: &str) -> Result<Data, MetricsError> {
        let operation = format!("query prometheus {endpoint}");
        let url = self.base.join(endpoint).map_err(|e| {
            MetricsError::backend(&operation, ErrorKind::InvalidInput, PrometheusError::Config(e.to_string()))
        })?;
        let transport = |e: HttpError| {
            let kind = e.kind();
            MetricsError::backend(&operation, kind, PrometheusError::Transport(e))
        };
        let mut request = self
            .client
            .request(reqwest::Method::GET, url.clone())
            .map_err(transport)?
            .query(params)
            .query(&[("timeout", seconds(self.config.timeout))]);
        request = match &self.config.auth {
            PrometheusAuth::None => request,
            PrometheusAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            PrometheusAuth::Bearer(token) => request.bearer_auth(token.expose_secret()),
        };
        let timeout = self.config.timeout;
        let timed_out =
            || MetricsError::backend(&operation, ErrorKind::Timeout, PrometheusError::Timeout { after: timeout });
        let exchange = async {
            let response = self.client.send(request).await?;
            let status = response.status().as_u16();
            let body = self.client.read_body(response).await?;
            Ok::<_, HttpError>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        let (status, body) = match tokio::time::timeout(timeout, exchange).await {
            Err(_) | Ok(Err(HttpError::Timeout { .. })) => return Err(timed_out()),
            Ok(Err(e)) => return Err(transport(e)),
            Ok(Ok(answer)) => answer,
        };
        let envelope = serde_json::from_str::<Envelope>(&body);
        let Ok(envelope) = envelope else {
            let kind = match status {
                401 | 403 => ErrorKind::Unauthorized,
                404 => ErrorKind::NotFound,
                500..=599 => ErrorKind::Unavailable,
                _ => {
                    return Err(MetricsError::Malformed {
                        query: query.to_owned(),
                        reason: format!("http {status} with a body that is not the prometheus api: {}", snippet(&body)),
                    });
                }
            };
            let url = url.as_str().to_owned();
            return Err(MetricsError::backend(
                &operation,
                kind,
                PrometheusError::Http { status, url, body: snippet(&body) },
            ));
        };
        if envelope.status != "success" {
            let error_type = envelope.error_type.unwrap_or_else(|| "unknown".to_owned());
            let message = envelope.error.unwrap_or_default();
            let kind = match (error_type.as_str(), status) {
                ("bad_data" | "execution", _) => {
                    return Err(MetricsError::BadQuery {
                        query: query.to_owned(),
                        reason: format!("{error_type}: {message}"),
                    });
                }
                ("timeout", _) => ErrorKind::Timeout,
                ("canceled" | "internal" | "unavailable", _) | (_, 500..=599) => ErrorKind::Unavailable,
                ("not_found", _) | (_, 404) => ErrorKind::NotFound,
                (_, 401 | 403) => ErrorKind::Unauthorized,
                _ => ErrorKind::Other,
            };
            return Err(MetricsError::backend(&operation, kind, PrometheusError::Api { status, error_type, message }));
        }
        envelope.data.ok_or_else(|| MetricsError::Malformed {
            query: query.to_owned(),
            reason: "a success without data".to_owned(),
        })
    }
}

fn snippet(body: &str) -> String {
    let mut s: String = body.chars().take(200).collect();
    if body.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

#[async_trait]
impl MetricsProvider for PrometheusProvider {
    #[tracing::instrument(skip_all, fields(metric = %query.name, deploy.app = %query.app, deploy.track = %query.track), err)]
    async fn query(&self, query: &MetricQuery) -> Result<MetricValue, MetricsError> {
        let rendered = query.render();
        let data = self.get("api/v1/query", &[("query", rendered.clone())], &rendered).await?;
        data.into_value().map_err(|reason| MetricsError::Malformed { query: rendered, reason })
    }

    #[tracing::instrument(skip_all, fields(metric = %query.name, deploy.app = %query.app, deploy.track = %query.track), err)]
    async fn query_range(
        &self,
        query: &MetricQuery,
        range: Duration,
        step: Duration,
    ) -> Result<Vec<f64>, MetricsError> {
        if step.is_zero() {
            return Err(MetricsError::BadQuery {
                query: query.render(),
                reason: "the step must be positive".to_owned(),
            });
        }
        let rendered = query.render();
        let end = now_unix();
        let start = end - range.as_secs_f64();
        let params = [
            ("query", rendered.clone()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", seconds(step)),
        ];
        let data = self.get("api/v1/query_range", &params, &rendered).await?;
        data.into_series().map_err(|reason| MetricsError::Malformed { query: rendered, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Classify;
    use crate::http_client::fixtures::{Reply, ScriptedServer, closed_port};
    use crate::model::{AppId, Name, Namespace, Track};

    fn query(template: &str) -> MetricQuery {
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("checkout").unwrap());
        MetricQuery::new("m", template, app, Track::Canary, Duration::from_secs(30))
    }

    fn provider(url: String) -> PrometheusProvider {
        PrometheusProvider::new(PrometheusConfig::new(url).timeout(Duration::from_millis(500))).unwrap()
    }

    /// The query string of a request line, percent-decoded.
    fn params(line: &str) -> Vec<(String, String)> {
        let target = line.split(' ').nth(1).unwrap();
        let query = target.split_once('?').unwrap().1;
        reqwest::Url::parse(&format!("http://x/?{query}")).unwrap().query_pairs().into_owned().collect()
    }

    #[tokio::test]
    async fn instant_queries_are_rendered_sent_and_parsed() {
        let server = ScriptedServer::start(vec![Reply::json(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"99.5"]}]}}"#,
        )])
        .await;
        let p = provider(server.url("/prom"));
        let v = p
            .query(&query(r#"sum(x{app="{{app}}",namespace="{{namespace}}",track="{{track}}"}[{{interval}}])"#))
            .await
            .unwrap();
        assert_eq!(v.as_single(), Some(99.5));
        let seen = server.requests();
        assert!(seen[0].line.starts_with("GET /prom/api/v1/query?"), "{}", seen[0].line);
        let params = params(&seen[0].line);
        assert!(
            params.contains(&("query".into(), r#"sum(x{app="checkout",namespace="shop",track="canary"}[30s])"#.into()))
        );
        assert!(params.contains(&("timeout".into(), "0.500".into())));
    }

    #[tokio::test]
    async fn range_queries_cover_the_range_at_the_step() {
        let server = ScriptedServer::start(vec![Reply::json(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"0.1"],[2,"0.2"]]}]}}"#,
        )])
        .await;
        let p = provider(server.url(""));
        let values = p.query_range(&query("q"), Duration::from_secs(300), Duration::from_secs(15)).await.unwrap();
        assert_eq!(values, [0.1, 0.2]);
        let params = params(&server.requests()[0].line);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).unwrap().1.parse::<f64>().unwrap();
        assert!((get("end") - get("start") - 300.0).abs() < 1e-6);
        assert_eq!(get("step"), 15.0);
    }

    #[tokio::test]
    async fn errors_are_typed_and_classified() {
        let cases = [
            (
                Reply::json(400, r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#),
                ErrorKind::InvalidInput,
                "parse error",
            ),
            (
                Reply::json(422, r#"{"status":"error","errorType":"execution","error":"many-to-many matching"}"#),
                ErrorKind::InvalidInput,
                "many-to-many",
            ),
            (
                Reply::json(503, r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#),
                ErrorKind::Timeout,
                "timed out",
            ),
            (
                Reply::json(500, r#"{"status":"error","errorType":"internal","error":"boom"}"#),
                ErrorKind::Unavailable,
                "boom",
            ),
            (Reply::text(502, "<html>bad gateway</html>"), ErrorKind::Unavailable, "bad gateway"),
            (Reply::text(401, "unauthorized"), ErrorKind::Unauthorized, "401"),
            (Reply::text(200, "not json"), ErrorKind::InvalidInput, "not the prometheus api"),
        ];
        for (reply, kind, needle) in cases {
            let server = ScriptedServer::start(vec![reply]).await;
            let err = provider(server.url("")).query(&query("q")).await.unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
            let text =
                format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
            assert!(text.contains(needle), "{needle} not in {text}");
            assert_eq!(err.is_retryable(), matches!(kind, ErrorKind::Timeout | ErrorKind::Unavailable));
        }
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_are_retryable() {
        let server = ScriptedServer::start(vec![Reply::Hang]).await;
        let err = provider(server.url("")).query(&query("q")).await.unwrap_err();
        assert!(err.is_timeout() && err.is_retryable(), "{err}");
        let addr = closed_port().await;
        let err = provider(format!("http://{addr}")).query(&query("q")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }

    #[tokio::test]
    async fn credentials_are_sent_and_never_printed() {
        let ok = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#;
        let server = ScriptedServer::start(vec![Reply::json(200, ok)]).await;
        let loopback = || HttpPolicy::default().danger_allow_plain_http();
        let basic = PrometheusProvider::new(
            PrometheusConfig::new(server.url("")).auth(PrometheusAuth::basic("reader", "open sesame")).http(loopback()),
        )
        .unwrap();
        basic.query(&query("q")).await.unwrap();
        let bearer = PrometheusProvider::new(
            PrometheusConfig::new(server.url("")).auth(PrometheusAuth::bearer("t0ken")).http(loopback()),
        )
        .unwrap();
        bearer.query(&query("q")).await.unwrap();
        let seen = server.requests();
        // base64("reader:open sesame")
        assert_eq!(seen[0].header("authorization"), Some("Basic cmVhZGVyOm9wZW4gc2VzYW1l"));
        assert_eq!(seen[1].header("authorization"), Some("Bearer t0ken"));
        for printed in [format!("{basic:?}"), format!("{bearer:?}")] {
            assert!(
                !printed.contains("open sesame") && !printed.contains("t0ken") && printed.contains("redacted"),
                "{printed}"
            );
        }
        let err = PrometheusProvider::new(PrometheusConfig::new("http://u:p@host:9090")).unwrap_err();
        assert!(err.to_string().contains("configure prometheus"), "{err}");
        assert!(PrometheusProvider::new(PrometheusConfig::new("ftp://host")).is_err());
        // Credentials over plain http need the policy's opt-out.
        let err = PrometheusProvider::new(PrometheusConfig::new(server.url("")).auth(PrometheusAuth::bearer("t0ken")))
            .unwrap_err();
        let source = std::error::Error::source(&err).and_then(std::error::Error::source).map(ToString::to_string);
        assert!(source.unwrap_or_default().contains("https is required"), "{err:?}");
    }

    #[tokio::test]
    async fn redirects_and_oversized_answers_are_refused() {
        let other = ScriptedServer::start(vec![Reply::json(200, "{}")]).await;
        let server = ScriptedServer::start(vec![Reply::redirect(307, &other.url("/api/v1/query"))]).await;
        let p = PrometheusProvider::new(
            PrometheusConfig::new(server.url(""))
                .auth(PrometheusAuth::bearer("t0ken"))
                .http(HttpPolicy::default().danger_allow_plain_http()),
        )
        .unwrap();
        let err = p.query(&query("q")).await.unwrap_err();
        let Some(PrometheusError::Transport(HttpError::RedirectRefused { status: 307, .. })) =
            std::error::Error::source(&err).and_then(|s| s.downcast_ref::<PrometheusError>())
        else {
            panic!("{err:?}")
        };
        assert!(other.requests().is_empty());

        let big =
            format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{}"]}}}}"#, "1".repeat(3000));
        let server = ScriptedServer::start(vec![Reply::json(200, &big)]).await;
        let p = PrometheusProvider::new(
            PrometheusConfig::new(server.url("")).http(HttpPolicy::default().max_body_bytes(2048)),
        )
        .unwrap();
        let err = p.query(&query("q")).await.unwrap_err();
        let Some(PrometheusError::Transport(HttpError::BodyTooLarge { limit: 2048 })) =
            std::error::Error::source(&err).and_then(|s| s.downcast_ref::<PrometheusError>())
        else {
            panic!("{err:?}")
        };
    }
}
