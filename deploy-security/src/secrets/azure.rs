//! A secret manager on Azure Key Vault's secrets REST API (version 7.4).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use deploy_core::error::{Classify, ErrorKind};
use deploy_core::http_client::{HttpClient, HttpError, HttpPolicy, origin, sensitive_header};
use deploy_core::secret::{PutOptions, Secret, SecretBytes, SecretError, SecretManager, SecretString, validate_key};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use super::azure_auth::{AzureAuth, AzureAuthStats, CachedToken, TokenFetcher};

/// The REST API version every request names.
pub const API_VERSION: &str = "7.4";
/// The tag each version written through the [`SecretManager`] trait carries: its
/// version number, which orders versions created within the same second.
pub const VERSION_TAG: &str = "deploy-rs-version";
/// The content type of a value that is not UTF-8 text, stored as base64.
pub const BASE64_CONTENT_TYPE: &str = "application/octet-stream;base64";

/// Where and how to reach a vault.
///
/// ```
/// use deploy_core::secret::SecretString;
/// use deploy_security::secrets::{AzureAuth, AzureKeyVaultConfig};
/// let config = AzureKeyVaultConfig::new(
///     "https://myvault.vault.azure.net",
///     AzureAuth::client_credentials("tenant", "app", SecretString::from("s3cret")),
/// );
/// assert_eq!(config.max_throttle_retries, 3);
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AzureKeyVaultConfig {
    /// The vault's URI (`https://myvault.vault.azure.net`).
    pub vault_url: String,
    /// How the bearer token is obtained.
    pub auth: AzureAuth,
    /// How many times a throttled request (429) is sent again after waiting its
    /// `Retry-After`, before the throttling is returned as a retryable error.
    pub max_throttle_retries: u32,
    /// The longest `Retry-After` waited out; a longer one fails at once.
    pub max_throttle_wait: Duration,
    /// The client policy: https only (plain `http://` needs
    /// [`HttpPolicy::danger_allow_plain_http`]), no redirects (the bearer token never
    /// follows one), a deadline per request and a cap on each answer (1 MiB).
    pub http: HttpPolicy,
}

impl AzureKeyVaultConfig {
    /// The vault at `vault_url` with `auth`, 10 s requests, answers up to 1 MiB, 3
    /// throttling retries waiting at most 30 s each.
    pub fn new(vault_url: impl Into<String>, auth: AzureAuth) -> Self {
        Self {
            vault_url: vault_url.into(),
            auth,
            max_throttle_retries: 3,
            max_throttle_wait: Duration::from_secs(30),
            http: HttpPolicy::default().timeout(Duration::from_secs(10)).max_body_bytes(1024 * 1024),
        }
    }

    /// Sets the throttling retries and the longest wait.
    #[must_use]
    pub fn throttling(mut self, retries: u32, max_wait: Duration) -> Self {
        self.max_throttle_retries = retries;
        self.max_throttle_wait = max_wait;
        self
    }

    /// Sets the client policy.
    #[must_use]
    pub fn http(mut self, policy: HttpPolicy) -> Self {
        self.http = policy;
        self
    }
}

/// Failures particular to Key Vault, kept as the source of
/// [`SecretError::Backend`] so that callers can downcast to them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AzureKeyVaultError {
    /// The name belongs to a soft-deleted secret: recover or purge it first.
    #[error("secret {name} is deleted but recoverable: recover or purge it before writing it again")]
    DeletedButRecoverable {
        /// The secret's name.
        name: String,
    },
    /// Key Vault kept throttling the request.
    #[error("key vault throttled the request {attempts} times (last Retry-After {retry_after:?})")]
    Throttled {
        /// How many 429 answers were received.
        attempts: u32,
        /// The last `Retry-After`.
        retry_after: Duration,
    },
    /// A paging link led to another origin; it was not followed so that the
    /// bearer token stays with the vault.
    #[error("a nextLink leads to {origin}, not the vault: refused")]
    ForeignNextLink {
        /// The origin of the link.
        origin: String,
    },
    /// Any other error answer.
    #[error("key vault answered {status} ({code}) for {name}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code (`SecretNotFound`, `Forbidden`, ...).
        code: String,
        /// The error message.
        message: String,
        /// The secret's name, or the collection.
        name: String,
    },
}

/// The attributes of a secret version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[non_exhaustive]
pub struct AzureSecretAttributes {
    /// Whether it can be read.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Created (unix seconds).
    #[serde(default)]
    pub created: Option<i64>,
    /// Last updated (unix seconds).
    #[serde(default)]
    pub updated: Option<i64>,
    /// The recovery level (`Recoverable+Purgeable`, ...).
    #[serde(default, rename = "recoveryLevel")]
    pub recovery_level: Option<String>,
}

/// One version of a secret, as listed (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AzureSecretVersion {
    /// Key Vault's version id (the last segment of the secret id).
    pub version: String,
    /// Its number in creation order, from 1, as the [`SecretManager`] trait counts.
    pub number: u64,
    /// Its attributes.
    pub attributes: AzureSecretAttributes,
}

/// What a soft delete answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct AzureDeletedSecret {
    /// The id to recover it by.
    #[serde(rename = "recoveryId", default)]
    pub recovery_id: Option<String>,
    /// When it was deleted (unix seconds).
    #[serde(rename = "deletedDate", default)]
    pub deleted_date: Option<i64>,
    /// When Key Vault purges it (unix seconds).
    #[serde(rename = "scheduledPurgeDate", default)]
    pub scheduled_purge_date: Option<i64>,
}

#[derive(Deserialize)]
struct SecretBundle {
    #[serde(default)]
    value: Option<String>,
    id: String,
    #[serde(default, rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct SecretItem {
    id: String,
    #[serde(default)]
    attributes: AzureSecretAttributes,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<SecretItem>,
    #[serde(default, rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn http_error(operation: &str, error: HttpError) -> SecretError {
    SecretError::backend(operation, error.kind(), error)
}

/// The class of the server's answer: the suite's one HTTP status table.
fn status_kind(status: StatusCode) -> ErrorKind {
    ErrorKind::from_http_status(status.as_u16())
}

/// The last path segment of a secret id (`.../secrets/name/version`).
fn last_segment(id: &str) -> String {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned()
}

fn tag_number(tags: Option<&BTreeMap<String, String>>) -> Option<u64> {
    tags?.get(VERSION_TAG)?.parse().ok()
}

/// Checks `key` as a Key Vault secret name: 1 to 127 letters, digits and dashes.
fn secret_name(key: &str) -> Result<&str, SecretError> {
    validate_key(key)?;
    if key.len() > 127 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(SecretError::InvalidKey {
            key: key.to_owned(),
            reason: "a key vault secret name has 1 to 127 letters, digits and dashes".to_owned(),
        });
    }
    Ok(key)
}

/// Secrets in Azure Key Vault, over its REST API (7.4) with rustls (ring).
///
/// As a [`SecretManager`], a key is a secret name (letters, digits, dashes) and a
/// version number counts the secret's versions in creation order from 1 (each
/// version written here carries it in the [`VERSION_TAG`] tag, which orders versions
/// created in the same second). Values that are not UTF-8 text are stored as base64
/// with the content type [`BASE64_CONTENT_TYPE`]. Key Vault has no check-and-set:
/// `options.expected_version` is checked against the versions listed just before
/// the write, which narrows but does not close the race with a concurrent writer.
///
/// Deleting is Key Vault's soft delete: the name stays reserved until it is purged
/// ([`AzureKeyVaultSecretManager::purge`]) or recovered
/// ([`AzureKeyVaultSecretManager::recover`]); writing it meanwhile fails with
/// [`AzureKeyVaultError::DeletedButRecoverable`] (kind `InvalidInput`: retrying cannot help until the name is recovered or purged).
///
/// Authentication ([`AzureAuth`]): tokens are cached until five minutes before they
/// expire; a 401 drops the token and sends the request once more with a new one.
/// A 429 is waited out (`Retry-After`) up to [`AzureKeyVaultConfig::max_throttle_retries`]
/// times. Errors name the operation and the secret, never a token or value.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::secret::SecretManager;
/// use deploy_security::secrets::{AzureAuth, AzureKeyVaultConfig, AzureKeyVaultSecretManager};
/// let vault = AzureKeyVaultSecretManager::new(AzureKeyVaultConfig::new(
///     "https://myvault.vault.azure.net",
///     AzureAuth::managed_identity(),
/// ))?;
/// let password = vault.get("checkout-db-password").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AzureKeyVaultSecretManager {
    client: HttpClient,
    base: reqwest::Url,
    config: Arc<AzureKeyVaultConfig>,
    fetcher: Arc<TokenFetcher>,
    token: Arc<tokio::sync::Mutex<Option<CachedToken>>>,
    stats: Arc<std::sync::Mutex<AzureAuthStats>>,
}

impl std::fmt::Debug for AzureKeyVaultSecretManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeyVaultSecretManager")
            .field("vault_url", &self.base.as_str())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AzureKeyVaultSecretManager {
    /// A client for `config` under its [`HttpPolicy`]. Fails on a vault URL that is
    /// not a URL, holds credentials or a query, or is plain `http://` without the
    /// policy's opt-out, and on a token endpoint the policy refuses.
    pub fn new(config: AzureKeyVaultConfig) -> Result<Self, SecretError> {
        let operation = "configure the key vault client";
        let base = reqwest::Url::parse(&config.vault_url).map_err(|e| {
            http_error(operation, HttpError::InvalidUrl { reason: format!("the vault url is not a url: {e}") })
        })?;
        if !base.username().is_empty() || base.password().is_some() || base.query().is_some() {
            return Err(http_error(
                operation,
                HttpError::InvalidUrl { reason: "the vault url holds credentials or a query".to_owned() },
            ));
        }
        let client = HttpClient::new(config.http.clone()).map_err(|e| http_error(operation, e))?;
        client.check_url(&base).map_err(|e| http_error(operation, e))?;
        let fetcher = TokenFetcher::new(&config.auth, &config.http)?;
        Ok(Self {
            client,
            base,
            config: Arc::new(config),
            fetcher: Arc::new(fetcher),
            token: Arc::default(),
            stats: Arc::default(),
        })
    }

    /// What the manager did to keep its token valid.
    pub fn auth_stats(&self) -> AzureAuthStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    fn count(&self, update: impl FnOnce(&mut AzureAuthStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            update(&mut stats);
        }
    }

    async fn current_token(&self) -> Result<SecretString, SecretError> {
        let mut state = self.token.lock().await;
        if let Some(cached) = state.as_ref().filter(|c| c.fresh(tokio::time::Instant::now())) {
            return Ok(cached.token.clone());
        }
        let fresh = self.fetcher.fetch(&self.config.auth).await?;
        if self.config.auth.fetches() {
            self.count(|s| s.fetches += 1);
        }
        let token = fresh.token.clone();
        *state = Some(fresh);
        Ok(token)
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, SecretError> {
        let url = format!("{}/{path}", self.base.as_str().trim_end_matches('/'));
        let mut url = reqwest::Url::parse(&url).map_err(|_| {
            http_error("reach key vault", HttpError::InvalidUrl { reason: format!("no valid url for {path:?}") })
        })?;
        url.query_pairs_mut().append_pair("api-version", API_VERSION);
        Ok(url)
    }

    /// Sends a request, waiting out throttling and replacing a refused token once;
    /// returns the body of a success, or the answer's error.
    async fn send(
        &self,
        operation: &str,
        name: &str,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, SecretError> {
        let mut throttled = 0u32;
        let mut refetched = false;
        loop {
            let token = self.current_token().await?;
            let header =
                sensitive_header("Authorization", &SecretString::new(format!("Bearer {}", token.expose_secret())))
                    .map_err(|e| http_error(operation, e))?;
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .map_err(|e| http_error(operation, e))?
                .header("Authorization", header);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = self.client.send(request).await.map_err(|e| http_error(operation, e))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs);
            let body = self.client.read_body(response).await.map_err(|e| http_error(operation, e))?;
            if status.is_success() {
                return Ok(body);
            }
            if status == StatusCode::UNAUTHORIZED && self.config.auth.fetches() && !refetched {
                refetched = true;
                self.count(|s| s.rejected += 1);
                *self.token.lock().await = None;
                tracing::debug!("key vault refused the token: fetching a new one");
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                throttled += 1;
                if throttled <= self.config.max_throttle_retries && retry_after <= self.config.max_throttle_wait {
                    tracing::debug!(?retry_after, attempt = throttled, "key vault throttled the request: waiting");
                    tokio::time::sleep(retry_after).await;
                    continue;
                }
                return Err(SecretError::backend(
                    operation,
                    ErrorKind::Unavailable,
                    AzureKeyVaultError::Throttled { attempts: throttled, retry_after },
                ));
            }
            return Err(Self::answer_error(operation, name, status, &body));
        }
    }

    fn answer_error(operation: &str, name: &str, status: StatusCode, body: &[u8]) -> SecretError {
        let detail = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default().error;
        if status == StatusCode::NOT_FOUND {
            return SecretError::NotFound { key: name.to_owned() };
        }
        if status == StatusCode::CONFLICT && detail.message.to_ascii_lowercase().contains("deleted but recoverable") {
            // Not retryable: the name stays taken until someone recovers or purges it.
            return SecretError::backend(
                operation,
                ErrorKind::InvalidInput,
                AzureKeyVaultError::DeletedButRecoverable { name: name.to_owned() },
            );
        }
        SecretError::backend(
            operation,
            status_kind(status),
            AzureKeyVaultError::Api {
                status: status.as_u16(),
                code: detail.code,
                message: detail.message,
                name: name.to_owned(),
            },
        )
    }

    fn parse<T: for<'de> Deserialize<'de>>(operation: &str, body: &[u8]) -> Result<T, SecretError> {
        serde_json::from_slice(body).map_err(|e| SecretError::backend(operation, ErrorKind::Other, e))
    }

    /// Follows `nextLink`s from `first`, refusing any that leaves the vault's origin.
    async fn pages(&self, operation: &str, name: &str, first: reqwest::Url) -> Result<Vec<SecretItem>, SecretError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let vault = origin(&self.base);
        while let Some(url) = next.take() {
            let body = self.send(operation, name, Method::GET, url, None).await?;
            let page: Page = Self::parse(operation, &body)?;
            items.extend(page.value);
            if let Some(link) = page.next_link.filter(|l| !l.is_empty()) {
                let link = reqwest::Url::parse(&link).map_err(|_| {
                    http_error(operation, HttpError::InvalidUrl { reason: "a nextLink is not a url".to_owned() })
                })?;
                if origin(&link) != vault {
                    return Err(SecretError::backend(
                        operation,
                        ErrorKind::Other,
                        AzureKeyVaultError::ForeignNextLink { origin: origin(&link) },
                    ));
                }
                next = Some(link);
            }
        }
        Ok(items)
    }

    /// Every version of `key`, numbered in creation order (oldest is 1).
    #[instrument(skip_all, fields(secret.key = %key), err)]
    pub async fn versions(&self, key: &str) -> Result<Vec<AzureSecretVersion>, SecretError> {
        let name = secret_name(key)?;
        let url = self.url(&format!("secrets/{name}/versions"))?;
        let mut items = self.pages("list key vault secret versions", name, url).await?;
        items.sort_by_key(|i| (i.attributes.created.unwrap_or(0), tag_number(i.tags.as_ref()).unwrap_or(0)));
        Ok(items
            .into_iter()
            .zip(1u64..)
            .map(|(item, number)| AzureSecretVersion {
                version: last_segment(&item.id),
                number,
                attributes: item.attributes,
            })
            .collect())
    }

    async fn read(&self, key: &str, version: Option<&str>) -> Result<(SecretBundle, SecretBytes), SecretError> {
        let operation = "read a key vault secret";
        let name = secret_name(key)?;
        let path = match version {
            Some(v) => format!("secrets/{name}/{v}"),
            None => format!("secrets/{name}"),
        };
        let body = self.send(operation, name, Method::GET, self.url(&path)?, None).await?;
        let mut bundle: SecretBundle = Self::parse(operation, &body)?;
        let text = bundle.value.take().unwrap_or_default();
        let value = if bundle.content_type.as_deref() == Some(BASE64_CONTENT_TYPE) {
            SecretBytes::new(STANDARD.decode(text.as_bytes()).map_err(|_| SecretError::Decryption)?)
        } else {
            SecretBytes::from(SecretString::new(text))
        };
        Ok((bundle, value))
    }

    /// Soft-deletes `key` and returns what Key Vault keeps to recover it.
    #[instrument(skip_all, fields(secret.key = %key), err)]
    pub async fn delete_secret(&self, key: &str) -> Result<AzureDeletedSecret, SecretError> {
        let operation = "delete a key vault secret";
        let name = secret_name(key)?;
        let body = self.send(operation, name, Method::DELETE, self.url(&format!("secrets/{name}"))?, None).await?;
        Self::parse(operation, &body)
    }

    /// Recovers the soft-deleted `key` with all its versions (Key Vault may take a
    /// few seconds before it can be read again).
    #[instrument(skip_all, fields(secret.key = %key), err)]
    pub async fn recover(&self, key: &str) -> Result<(), SecretError> {
        let name = secret_name(key)?;
        let url = self.url(&format!("deletedsecrets/{name}/recover"))?;
        self.send("recover a key vault secret", name, Method::POST, url, None).await.map(|_| ())
    }

    /// Purges the soft-deleted `key` for good, freeing its name.
    #[instrument(skip_all, fields(secret.key = %key), err)]
    pub async fn purge(&self, key: &str) -> Result<(), SecretError> {
        let name = secret_name(key)?;
        let url = self.url(&format!("deletedsecrets/{name}"))?;
        self.send("purge a key vault secret", name, Method::DELETE, url, None).await.map(|_| ())
    }
}

#[async_trait]
impl SecretManager for AzureKeyVaultSecretManager {
    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn get(&self, key: &str) -> Result<Secret, SecretError> {
        let (bundle, value) = self.read(key, None).await?;
        let number = match tag_number(bundle.tags.as_ref()) {
            Some(n) => n,
            None => {
                let id = last_segment(&bundle.id);
                let versions = self.versions(key).await?;
                versions.iter().find(|v| v.version == id).map_or(versions.len() as u64, |v| v.number)
            }
        };
        Ok(Secret::new(value, number))
    }

    #[instrument(skip_all, fields(secret.key = %key, secret.version = version), err)]
    async fn get_version(&self, key: &str, version: u64) -> Result<Secret, SecretError> {
        let missing = || SecretError::NotFound { key: format!("{key}@{version}") };
        let versions = self.versions(key).await.map_err(|e| if e.is_not_found() { missing() } else { e })?;
        let found = versions.iter().find(|v| v.number == version).ok_or_else(missing)?;
        let (_, value) = self.read(key, Some(&found.version)).await?;
        Ok(Secret::new(value, version))
    }

    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn put(&self, key: &str, value: SecretBytes, options: PutOptions) -> Result<u64, SecretError> {
        let name = secret_name(key)?;
        let current = match self.versions(name).await {
            Ok(versions) => versions.len() as u64,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e),
        };
        if let Some(expected) = options.expected_version.filter(|e| *e != current) {
            return Err(SecretError::VersionConflict { key: key.to_owned(), expected, actual: current });
        }
        let number = current + 1;
        let mut body = match value.expose_str() {
            Ok(text) => json!({ "value": text }),
            Err(_) => json!({ "value": STANDARD.encode(value.expose_secret()), "contentType": BASE64_CONTENT_TYPE }),
        };
        body["tags"] = json!({ VERSION_TAG: number.to_string() });
        let url = self.url(&format!("secrets/{name}"))?;
        self.send("write a key vault secret", name, Method::PUT, url, Some(&body)).await?;
        Ok(number)
    }

    async fn delete(&self, key: &str) -> Result<(), SecretError> {
        match self.delete_secret(key).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    #[instrument(skip_all, err)]
    async fn list(&self) -> Result<Vec<String>, SecretError> {
        let items = self.pages("list key vault secrets", "secrets", self.url("secrets")?).await?;
        let mut names: Vec<String> = items.iter().map(|i| last_segment(&i.id)).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}
