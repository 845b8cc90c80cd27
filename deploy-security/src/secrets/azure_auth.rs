//! How the Azure Key Vault secret manager gets its bearer token: a token obtained
//! elsewhere, Microsoft Entra ID client credentials, or a managed identity (the
//! instance metadata service). Tokens are cached until shortly before they expire.

use std::fmt;
use std::time::Duration;

use deploy_core::error::{Classify, ErrorKind};
use deploy_core::http_client::{HttpClient, HttpError, HttpPolicy};
use deploy_core::secret::{SecretError, SecretString};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

/// The Microsoft Entra ID authority of the public cloud.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The instance metadata service's token endpoint (reached over plain http on a
/// link-local address, as Azure documents).
pub const DEFAULT_IDENTITY_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// The scope asked for with client credentials.
pub const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";
/// The resource asked for from a managed identity.
pub const KEY_VAULT_RESOURCE: &str = "https://vault.azure.net";
/// How long before its expiry a cached token is replaced (as Azure's SDKs do).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How to authenticate to Key Vault. Secrets print as `[redacted]`.
///
/// ```
/// use deploy_core::secret::SecretString;
/// use deploy_security::secrets::AzureAuth;
/// let auth = AzureAuth::client_credentials("tenant", "app-id", SecretString::from("s3cret"));
/// assert!(!format!("{auth:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum AzureAuth {
    /// A bearer token obtained elsewhere, used as is (its owner refreshes it).
    AccessToken(SecretString),
    /// The OAuth 2.0 client-credentials grant of an app registration.
    ClientCredentials {
        /// The directory (tenant) id.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret.
        client_secret: SecretString,
        /// The authority ([`DEFAULT_AUTHORITY`]; another for sovereign clouds or tests).
        authority: String,
    },
    /// A managed identity through the instance metadata service (header `Metadata: true`).
    ManagedIdentity {
        /// The token endpoint ([`DEFAULT_IDENTITY_ENDPOINT`]). Plain http is allowed
        /// only for the link-local metadata address and loopback.
        endpoint: String,
        /// The client id of a user-assigned identity; `None` for the system-assigned one.
        client_id: Option<String>,
    },
}

impl fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccessToken(_) => f.write_str("AccessToken([redacted])"),
            Self::ClientCredentials { tenant_id, client_id, authority, .. } => f
                .debug_struct("ClientCredentials")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .field("authority", authority)
                .finish(),
            Self::ManagedIdentity { endpoint, client_id } => {
                f.debug_struct("ManagedIdentity").field("endpoint", endpoint).field("client_id", client_id).finish()
            }
        }
    }
}

impl AzureAuth {
    /// A bearer token used as given.
    pub fn access_token(token: impl Into<SecretString>) -> Self {
        Self::AccessToken(token.into())
    }

    /// Client credentials against the public cloud's authority.
    pub fn client_credentials(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        Self::ClientCredentials {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            authority: DEFAULT_AUTHORITY.to_owned(),
        }
    }

    /// The system-assigned managed identity at the default metadata endpoint.
    pub fn managed_identity() -> Self {
        Self::ManagedIdentity { endpoint: DEFAULT_IDENTITY_ENDPOINT.to_owned(), client_id: None }
    }

    /// Sets the authority of client credentials, or the endpoint of a managed
    /// identity (no effect on a static token): sovereign clouds, tests.
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        match &mut self {
            Self::AccessToken(_) => {}
            Self::ClientCredentials { authority, .. } => *authority = url.into(),
            Self::ManagedIdentity { endpoint, .. } => *endpoint = url.into(),
        }
        self
    }

    /// Uses the user-assigned managed identity `client_id` (no effect otherwise).
    #[must_use]
    pub fn user_assigned(mut self, id: impl Into<String>) -> Self {
        if let Self::ManagedIdentity { client_id, .. } = &mut self {
            *client_id = Some(id.into());
        }
        self
    }

    /// Whether the token is fetched (and so may be fetched again after a 401).
    pub(crate) fn fetches(&self) -> bool {
        !matches!(self, Self::AccessToken(_))
    }
}

/// What the manager did to keep its token valid, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AzureAuthStats {
    /// Tokens fetched (the first one included).
    pub fetches: u64,
    /// Tokens dropped because Key Vault answered 401 with them.
    pub rejected: u64,
}

/// A token and when to replace it.
pub(crate) struct CachedToken {
    pub(crate) token: SecretString,
    pub(crate) refresh_at: Instant,
}

impl CachedToken {
    pub(crate) fn fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

/// Either of the two answers: `expires_in` (seconds, a number from Entra ID, a
/// string from the metadata service) or `expires_on` (unix seconds).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    expires_on: Option<Value>,
}

#[derive(Deserialize, Default)]
struct TokenErrorBody {
    #[serde(default)]
    error: Option<Value>,
}

fn number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn auth_error(reason: impl Into<deploy_core::error::BoxError>, kind: ErrorKind) -> SecretError {
    SecretError::backend("get an azure access token", kind, reason)
}

fn transport(error: HttpError) -> SecretError {
    let kind = error.kind();
    auth_error(error, kind)
}

/// Whether plain http to `url` is acceptable for a metadata endpoint: the
/// link-local metadata address or loopback, never a routable host.
fn local_metadata_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip == std::net::Ipv4Addr::new(169, 254, 169, 254),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Fetches tokens for one [`AzureAuth`] under the manager's policy.
pub(crate) struct TokenFetcher {
    client: HttpClient,
    url: Option<reqwest::Url>,
}

impl TokenFetcher {
    pub(crate) fn new(auth: &AzureAuth, policy: &HttpPolicy) -> Result<Self, SecretError> {
        let bad = |e: HttpError| auth_error(e, ErrorKind::InvalidInput);
        let parse = |s: &str| {
            reqwest::Url::parse(s).map_err(|e| bad(HttpError::InvalidUrl { reason: format!("token endpoint: {e}") }))
        };
        let (url, policy) = match auth {
            AzureAuth::AccessToken(_) => (None, policy.clone()),
            AzureAuth::ClientCredentials { tenant_id, authority, .. } => {
                if tenant_id.is_empty() || !tenant_id.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c)) {
                    return Err(auth_error(format!("invalid tenant id {tenant_id:?}"), ErrorKind::InvalidInput));
                }
                let url = parse(&format!("{}/{tenant_id}/oauth2/v2.0/token", authority.trim_end_matches('/')))?;
                (Some(url), policy.clone())
            }
            AzureAuth::ManagedIdentity { endpoint, client_id } => {
                let mut url = parse(endpoint)?;
                url.query_pairs_mut()
                    .append_pair("api-version", "2018-02-01")
                    .append_pair("resource", KEY_VAULT_RESOURCE);
                if let Some(id) = client_id {
                    url.query_pairs_mut().append_pair("client_id", id);
                }
                let policy = if url.scheme() == "http" && local_metadata_host(&url) {
                    policy.clone().danger_allow_plain_http()
                } else {
                    policy.clone()
                };
                (Some(url), policy)
            }
        };
        let client = HttpClient::new(policy).map_err(bad)?;
        if let Some(url) = &url {
            client.check_url(url).map_err(bad)?;
        }
        Ok(Self { client, url })
    }

    /// A new token for `auth`, to be replaced [`TOKEN_REFRESH_MARGIN`] before it expires.
    pub(crate) async fn fetch(&self, auth: &AzureAuth) -> Result<CachedToken, SecretError> {
        let (url, request) = match (auth, &self.url) {
            (AzureAuth::AccessToken(token), _) => {
                // Never expires from our side: its owner replaces it.
                let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
                return Ok(CachedToken { token: token.clone(), refresh_at: far });
            }
            (_, None) => return Err(auth_error("no token endpoint", ErrorKind::InvalidInput)),
            (AzureAuth::ClientCredentials { client_id, client_secret, .. }, Some(url)) => {
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose_secret()),
                    ("scope", KEY_VAULT_SCOPE),
                ];
                let request = self.client.request(Method::POST, url.clone()).map_err(transport)?;
                let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
                let request =
                    request.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(encoded);
                (url, request)
            }
            (AzureAuth::ManagedIdentity { .. }, Some(url)) => {
                let request = self.client.request(Method::GET, url.clone()).map_err(transport)?;
                (url, request.header("Metadata", "true"))
            }
        };
        let started = Instant::now();
        let response = self.client.send(request).await.map_err(transport)?;
        let status = response.status();
        let body = self.client.read_body(response).await.map_err(transport)?;
        let endpoint = deploy_core::http_client::origin(url);
        if !status.is_success() {
            // Only the error code: descriptions may echo request details.
            let code = serde_json::from_slice::<TokenErrorBody>(&body)
                .ok()
                .and_then(|b| b.error)
                .map(|e| match e {
                    Value::String(s) => s,
                    Value::Object(o) => o.get("code").and_then(Value::as_str).unwrap_or("unknown").to_owned(),
                    _ => "unknown".to_owned(),
                })
                .unwrap_or_else(|| "unknown".to_owned());
            // A token endpoint's 400 is a refused grant (wrong secret, unknown
            // client): the credentials, not the request, are wrong.
            let kind = match status.as_u16() {
                400 => ErrorKind::Unauthorized,
                code => ErrorKind::from_http_status(code),
            };
            return Err(auth_error(format!("{endpoint} answered {status} ({code})"), kind));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| auth_error(format!("{endpoint} answered no token: {e}"), ErrorKind::Other))?;
        let lifetime = number(answer.expires_in.as_ref())
            .or_else(|| {
                let on = number(answer.expires_on.as_ref())?;
                let now = jiff::Timestamp::now().as_second();
                Some(on - now)
            })
            .ok_or_else(|| auth_error(format!("{endpoint} answered a token with no expiry"), ErrorKind::Other))?;
        let lifetime = Duration::from_secs(u64::try_from(lifetime).unwrap_or(0));
        let refresh_at = (started + lifetime).checked_sub(TOKEN_REFRESH_MARGIN).unwrap_or(started);
        Ok(CachedToken { token: SecretString::new(answer.access_token), refresh_at })
    }
}
