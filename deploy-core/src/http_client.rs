//! One HTTP client policy for every client of the suite that carries a secret (feature
//! `http`): Vault, the registry's look-ups, webhooks, HTTP health checks with secret
//! headers, Prometheus with credentials.
//!
//! An [`HttpPolicy`] says what such a client may do, and [`HttpClient`] enforces it:
//!
//! - **No redirects** by default; at most one hop to the *same origin* over https
//!   with [`Redirects::SameOriginHttps`]. A redirect the policy refuses is never
//!   followed: the secret header and a `307`/`308` request body never reach another
//!   host, and the caller gets [`HttpError::RedirectRefused`] (reqwest's default
//!   follows ten redirects across hosts, keeping every header but `Authorization`
//!   and cookies).
//! - **https required**: a plain `http://` URL is [`HttpError::PlainHttpRefused`]
//!   unless the caller opts out by name with [`HttpPolicy::danger_allow_plain_http`]
//!   (test servers on loopback do).
//! - **Timeouts**: one for connecting, one for the whole exchange, body included.
//! - **Bounded reads**: [`HttpClient::read_body`] stops at
//!   [`HttpPolicy::max_body_bytes`] with [`HttpError::BodyTooLarge`], which names the
//!   limit, before buffering more than the limit.
//! - **Sensitive headers**: [`sensitive_header`] marks a secret header value as
//!   sensitive (`HeaderValue::set_sensitive`), so that reqwest and hyper never print
//!   it and HTTP/2 never puts it into its compression table.
//! - TLS is rustls on the ring provider with the platform's verifier, plus the
//!   extra roots the policy names.
//!
//! ```
//! use std::time::Duration;
//! use deploy_core::http_client::{HttpClient, HttpError, HttpPolicy};
//!
//! let client = HttpClient::new(HttpPolicy::default().timeout(Duration::from_secs(5))).unwrap();
//! let url = reqwest::Url::parse("http://vault.example.com:8200/v1/sys/health").unwrap();
//! assert!(matches!(client.check_url(&url), Err(HttpError::PlainHttpRefused { .. })));
//! ```

#[cfg(test)]
pub(crate) mod fixtures;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::HeaderValue;
use reqwest::{Response, StatusCode, Url};

use crate::error::{BoxError, Classify, ErrorKind};
use crate::secret::SecretString;

/// Which redirects a client follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Redirects {
    /// None: a redirect is [`HttpError::RedirectRefused`].
    #[default]
    Refuse,
    /// One hop, and only to the same scheme, host and port over https (a path
    /// moved on the same server). Anything else is refused.
    SameOriginHttps,
}

/// What a client that carries a secret may do. See the [module](self) docs.
///
/// ```
/// use std::time::Duration;
/// use deploy_core::http_client::{HttpPolicy, Redirects};
/// let policy = HttpPolicy::default()
///     .connect_timeout(Duration::from_secs(3))
///     .max_body_bytes(64 * 1024)
///     .redirects(Redirects::SameOriginHttps);
/// assert!(!policy.danger_plain_http);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpPolicy {
    /// The longest connecting (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// The longest one exchange may take, from sending the request to the last
    /// byte of the body.
    pub timeout: Duration,
    /// The largest body [`HttpClient::read_body`] reads.
    pub max_body_bytes: u64,
    /// Which redirects are followed.
    pub redirects: Redirects,
    /// Whether plain `http://` URLs are allowed; set it only through
    /// [`HttpPolicy::danger_allow_plain_http`], for servers on loopback or a network
    /// the caller trusts.
    pub danger_plain_http: bool,
    /// Extra trusted root certificates (DER), next to the platform's.
    pub extra_roots_der: Vec<Vec<u8>>,
}

impl Default for HttpPolicy {
    /// No redirects, https only, 10 s to connect, 30 s per exchange, 4 MiB bodies.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_body_bytes: 4 * 1024 * 1024,
            redirects: Redirects::Refuse,
            danger_plain_http: false,
            extra_roots_der: Vec::new(),
        }
    }
}

impl fmt::Debug for HttpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPolicy")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("redirects", &self.redirects)
            .field("danger_plain_http", &self.danger_plain_http)
            .field("extra_roots", &self.extra_roots_der.len())
            .finish()
    }
}

impl HttpPolicy {
    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the timeout of one exchange, body included.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest body read.
    #[must_use]
    pub fn max_body_bytes(mut self, limit: u64) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Sets which redirects are followed.
    #[must_use]
    pub fn redirects(mut self, redirects: Redirects) -> Self {
        self.redirects = redirects;
        self
    }

    /// Allows plain `http://`: secrets then cross the network unencrypted. For test
    /// servers on loopback, or a network the caller trusts with the secret.
    #[must_use]
    pub fn danger_allow_plain_http(mut self) -> Self {
        self.danger_plain_http = true;
        self
    }

    /// Trusts `der`, a root certificate in DER form, next to the platform's roots.
    #[must_use]
    pub fn extra_root_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots_der.push(der.into());
        self
    }
}

/// Why an HTTP exchange under an [`HttpPolicy`] failed. Never holds a URL's path or
/// query, a header value or a body: only hosts, statuses and limits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL is plain `http://` and the policy requires https.
    #[error("refusing plain http to {host}: https is required (HttpPolicy::danger_allow_plain_http opts out)")]
    PlainHttpRefused {
        /// The host (and port) of the URL.
        host: String,
    },
    /// The URL is neither `http` nor `https`, or cannot be used.
    #[error("unusable url: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The server redirected and the policy does not follow that redirect.
    #[error("refused to follow a redirect (http {status}) to {target}")]
    RedirectRefused {
        /// The redirect's status.
        status: u16,
        /// Where it pointed: scheme, host and port only, or `an invalid location`.
        target: String,
    },
    /// The body is larger than the policy allows.
    #[error("response body larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// No complete answer within the policy's timeout.
    #[error("no answer within {after:?}")]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// A header name or value is not valid HTTP (the value is not shown).
    #[error("header {name:?} is not valid http")]
    InvalidHeader {
        /// The header's name.
        name: String,
    },
    /// TLS could not be set up.
    #[error("failed to set up tls: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
    /// The request could not be sent or its answer not read (connection refused,
    /// reset, DNS, TLS handshake). The HTTP library's error is the source, boxed, so
    /// that this type does not tie callers to one reqwest version; it was classified
    /// when it was wrapped ([`HttpError::transport`]).
    #[error("http transport failed")]
    Transport {
        /// The class of the failure.
        kind: ErrorKind,
        /// Whether no connection was made (refused, DNS, TLS handshake): the request
        /// never reached the server.
        connect: bool,
        /// The HTTP library's error, without the URL.
        #[source]
        source: BoxError,
    },
}

impl HttpError {
    /// A reqwest error as an [`HttpError::Transport`]: the suite's one classification
    /// of reqwest's failures, which every HTTP client of the suite (Vault, Azure, the
    /// OCI registry look-ups, webhooks, health checks, Prometheus) reaches through
    /// [`HttpClient`]. A timeout is [`ErrorKind::Timeout`]; a failure to connect, to
    /// send the request or to read the body is [`ErrorKind::Unavailable`] (the same
    /// request may pass later); anything else (a redirect loop, a body that does not
    /// decode) is [`ErrorKind::Other`]. The URL is dropped: its path and query may
    /// carry secrets.
    pub fn transport(error: reqwest::Error) -> Self {
        let kind = if error.is_timeout() {
            ErrorKind::Timeout
        } else if error.is_connect() || error.is_request() || error.is_body() {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Other
        };
        Self::Transport { kind, connect: error.is_connect(), source: Box::new(error.without_url()) }
    }
}

impl Classify for HttpError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::PlainHttpRefused { .. } | Self::InvalidUrl { .. } | Self::InvalidHeader { .. } => {
                ErrorKind::InvalidInput
            }
            Self::RedirectRefused { .. } | Self::BodyTooLarge { .. } | Self::Tls { .. } => ErrorKind::Other,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Transport { kind, .. } => *kind,
        }
    }
}

/// A header value holding a secret, marked sensitive.
///
/// ```
/// use deploy_core::http_client::sensitive_header;
/// use deploy_core::secret::SecretString;
/// let value = sensitive_header("X-Vault-Token", &SecretString::from("hvs.s3cret")).unwrap();
/// assert!(value.is_sensitive());
/// assert!(!format!("{value:?}").contains("s3cret"));
/// ```
pub fn sensitive_header(name: &str, secret: &SecretString) -> Result<HeaderValue, HttpError> {
    let mut value = HeaderValue::from_str(secret.expose_secret())
        .map_err(|_| HttpError::InvalidHeader { name: name.to_owned() })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The origin of `url` as text: `scheme://host:port`, never the path or query.
pub fn origin(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => format!("{}://", url.scheme()),
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// Whether `redirects` lets a request that went to `previous` (the first URL and
/// the hops since) go on to `next`.
fn redirect_allowed(redirects: Redirects, previous: &[Url], next: &Url) -> bool {
    match redirects {
        Redirects::Refuse => false,
        Redirects::SameOriginHttps => {
            previous.len() == 1
                && next.scheme() == "https"
                && previous.first().is_some_and(|first| same_origin(first, next))
        }
    }
}

/// A reqwest client bound to an [`HttpPolicy`]. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    policy: Arc<HttpPolicy>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").field("policy", &self.policy).finish_non_exhaustive()
    }
}

fn tls_config(policy: &HttpPolicy) -> Result<rustls::ClientConfig, HttpError> {
    let tls = |e: rustls::Error| HttpError::Tls { reason: e.to_string() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = policy.extra_roots_der.iter().map(|der| rustls::pki_types::CertificateDer::from(der.clone()));
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots, Arc::clone(&provider)).map_err(tls)?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

impl HttpClient {
    /// A client enforcing `policy`; fails only when TLS cannot be set up (an extra
    /// root that is not a certificate, no platform roots).
    pub fn new(policy: HttpPolicy) -> Result<Self, HttpError> {
        let redirects = policy.redirects;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            // Stopping hands the 3xx answer back, and `send` turns it into an error.
            if redirect_allowed(redirects, attempt.previous(), attempt.url()) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let inner = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&policy)?)
            .redirect(redirect)
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .https_only(!policy.danger_plain_http)
            .referer(false)
            .build()
            .map_err(HttpError::transport)?;
        Ok(Self { inner, policy: Arc::new(policy) })
    }

    /// The policy.
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Whether the policy lets a request go to `url`: `https`, or `http` with the
    /// opt-out.
    pub fn check_url(&self, url: &Url) -> Result<(), HttpError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.policy.danger_plain_http => Ok(()),
            "http" => Err(HttpError::PlainHttpRefused { host: origin(url).trim_start_matches("http://").to_owned() }),
            other => Err(HttpError::InvalidUrl { reason: format!("scheme {other} is not http or https") }),
        }
    }

    /// A request builder for `method` on `url`, after [`HttpClient::check_url`].
    pub fn request(&self, method: reqwest::Method, url: Url) -> Result<reqwest::RequestBuilder, HttpError> {
        self.check_url(&url)?;
        Ok(self.inner.request(method, url))
    }

    /// Sends `request`; a redirect the policy did not follow is
    /// [`HttpError::RedirectRefused`], a timeout [`HttpError::Timeout`]. Other
    /// statuses are the caller's to judge.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, HttpError> {
        let response = request.send().await.map_err(|e| self.timed_out(HttpError::transport(e)))?;
        if is_redirect(response.status()) {
            let target = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| response.url().join(l).ok())
                .map_or_else(|| "an invalid location".to_owned(), |u| origin(&u));
            return Err(HttpError::RedirectRefused { status: response.status().as_u16(), target });
        }
        Ok(response)
    }

    /// Reads the body of `response`, at most [`HttpPolicy::max_body_bytes`]: a
    /// declared or actual length above it is [`HttpError::BodyTooLarge`], and no
    /// more than the limit (plus one chunk) is ever buffered.
    pub async fn read_body(&self, response: Response) -> Result<Bytes, HttpError> {
        read_limited(response, self.policy.max_body_bytes).await.map_err(|e| self.timed_out(e))
    }

    /// A transport timeout as [`HttpError::Timeout`] naming the policy's timeout.
    fn timed_out(&self, e: HttpError) -> HttpError {
        match e {
            HttpError::Transport { kind: ErrorKind::Timeout, .. } => HttpError::Timeout { after: self.policy.timeout },
            other => other,
        }
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Reads at most `limit` bytes of `response`'s body.
pub async fn read_limited(mut response: Response, limit: u64) -> Result<Bytes, HttpError> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(HttpError::BodyTooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(HttpError::transport)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(HttpError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::fixtures::{Reply, ScriptedServer};
    use super::*;

    fn loopback() -> HttpClient {
        HttpClient::new(HttpPolicy::default().danger_allow_plain_http().timeout(Duration::from_secs(2))).unwrap()
    }

    #[tokio::test]
    async fn plain_http_is_refused_without_the_opt_out() {
        let client = HttpClient::new(HttpPolicy::default()).unwrap();
        let url = Url::parse("http://127.0.0.1:9/x?token=abc").unwrap();
        let err = client.request(reqwest::Method::GET, url).unwrap_err();
        assert!(matches!(&err, HttpError::PlainHttpRefused { host } if host == "127.0.0.1:9"), "{err:?}");
        assert!(!err.to_string().contains("abc"));
        let ftp = Url::parse("ftp://host/x").unwrap();
        assert!(matches!(client.check_url(&ftp), Err(HttpError::InvalidUrl { .. })));
    }

    #[tokio::test]
    async fn a_cross_host_redirect_is_refused_and_not_followed() {
        let other = ScriptedServer::start(vec![Reply::text(200, "stolen")]).await;
        let location = other.url("/collect");
        let server = ScriptedServer::start(vec![Reply::redirect(307, &location)]).await;
        let client = loopback();
        let request = client.request(reqwest::Method::POST, Url::parse(&server.url("/v1/x")).unwrap()).unwrap();
        let request = request
            .header("x-vault-token", sensitive_header("x-vault-token", &SecretString::from("hvs.t0ken")).unwrap())
            .body("secret body");
        let err = client.send(request).await.unwrap_err();
        assert!(
            matches!(&err, HttpError::RedirectRefused { status: 307, target } if *target == format!("http://{}", other.addr)),
            "{err:?}"
        );
        assert!(other.requests().is_empty(), "the other host was asked: {:?}", other.requests());
        assert_eq!(server.requests()[0].header("x-vault-token"), Some("hvs.t0ken"));
    }

    #[tokio::test]
    async fn bodies_over_the_cap_fail_with_the_limit() {
        let server = ScriptedServer::start(vec![Reply::text(200, &"x".repeat(5000))]).await;
        let client = HttpClient::new(
            HttpPolicy::default().danger_allow_plain_http().max_body_bytes(4096).timeout(Duration::from_secs(2)),
        )
        .unwrap();
        let request = client.request(reqwest::Method::GET, Url::parse(&server.url("/")).unwrap()).unwrap();
        let response = client.send(request).await.unwrap();
        let err = client.read_body(response).await.unwrap_err();
        assert!(matches!(err, HttpError::BodyTooLarge { limit: 4096 }), "{err:?}");
        assert_eq!(err.to_string(), "response body larger than the limit of 4096 bytes");
        // Without a content-length, the stream itself is cut at the limit.
        let server = ScriptedServer::start(vec![Reply::Chunked { status: 200, body: "y".repeat(5000) }]).await;
        let request = client.request(reqwest::Method::GET, Url::parse(&server.url("/")).unwrap()).unwrap();
        let response = client.send(request).await.unwrap();
        assert!(matches!(client.read_body(response).await, Err(HttpError::BodyTooLarge { limit: 4096 })));
        let server = ScriptedServer::start(vec![Reply::text(200, "small")]).await;
        let request = client.request(reqwest::Method::GET, Url::parse(&server.url("/")).unwrap()).unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(client.read_body(response).await.unwrap(), "small");
    }

    #[tokio::test]
    async fn a_hanging_server_is_a_timeout() {
        let server = ScriptedServer::start(vec![Reply::Hang]).await;
        let client =
            HttpClient::new(HttpPolicy::default().danger_allow_plain_http().timeout(Duration::from_millis(200)))
                .unwrap();
        let request = client.request(reqwest::Method::GET, Url::parse(&server.url("/")).unwrap()).unwrap();
        let err = client.send(request).await.unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err:?}");
        assert!(err.is_timeout());
    }

    #[test]
    fn one_same_origin_https_hop_at_most() {
        let url = |s: &str| Url::parse(s).unwrap();
        let first = [url("https://vault.example.com/v1/secret/data/a")];
        let same = url("https://vault.example.com:443/v1/secret/data/b");
        assert!(redirect_allowed(Redirects::SameOriginHttps, &first, &same));
        assert!(!redirect_allowed(Redirects::Refuse, &first, &same));
        for next in [
            "http://vault.example.com/v1/x",
            "https://evil.example.com/v1/x",
            "https://vault.example.com:8200/v1/x",
            "https://sub.vault.example.com/v1/x",
        ] {
            assert!(!redirect_allowed(Redirects::SameOriginHttps, &first, &url(next)), "{next}");
        }
        let two_hops = [first[0].clone(), same.clone()];
        assert!(!redirect_allowed(Redirects::SameOriginHttps, &two_hops, &same), "a second hop");
        let plain = [url("http://127.0.0.1:8200/a")];
        assert!(!redirect_allowed(Redirects::SameOriginHttps, &plain, &url("http://127.0.0.1:8200/b")));
    }

    #[test]
    fn origins_never_show_paths_or_queries() {
        let url = Url::parse("https://user:pw@vault.example.com/v1/secret?token=x").unwrap();
        assert_eq!(origin(&url), "https://vault.example.com:443");
    }
}
