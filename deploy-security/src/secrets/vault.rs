//! A secret manager on HashiCorp Vault's KV version 2 engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use deploy_core::error::{Classify, ErrorKind};
use deploy_core::http_client::{HttpClient, HttpError, HttpPolicy, sensitive_header};
use deploy_core::secret::{PutOptions, Secret, SecretBytes, SecretError, SecretManager, SecretString, validate_key};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use super::vault_auth::{AuthEnvelope, LeasedToken, VaultAuth, VaultAuthStats};

/// The field a [`SecretManager`] value is stored under when it is UTF-8 text.
pub const VALUE_FIELD: &str = "value";
/// The field a [`SecretManager`] value is stored under (base64) when it is not text.
pub const VALUE_BASE64_FIELD: &str = "value_base64";

/// Where and how to reach Vault.
///
/// ```
/// use deploy_core::secret::SecretString;
/// use deploy_security::secrets::{VaultAuth, VaultConfig};
/// let config = VaultConfig::new("https://vault.example.com:8200", SecretString::from("s.token"))
///     .mount("kv")
///     .prefix("apps/checkout")
///     .namespace("team-a");
/// assert_eq!(config.mount, "kv");
/// assert!(!format!("{config:?}").contains("s.token"));
/// let config = config.auth(VaultAuth::approle("role-id", SecretString::from("secret-id")));
/// assert!(!format!("{config:?}").contains("secret-id\""));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VaultConfig {
    /// The server's address (`https://vault:8200`).
    pub address: String,
    /// How the token sent as `X-Vault-Token` is obtained: a static token, or a
    /// login (AppRole, Kubernetes) whose token is renewed before it expires.
    pub auth: VaultAuth,
    /// The KV v2 mount (`secret`).
    pub mount: String,
    /// A path prefix under the mount that every key lives in (empty for none).
    pub prefix: String,
    /// The Vault Enterprise namespace (`X-Vault-Namespace`), if any.
    pub namespace: Option<String>,
    /// The client policy: https only (a plain `http://` address needs
    /// [`HttpPolicy::danger_allow_plain_http`]), no redirects (the token and a
    /// secret's body never follow one to another host), a deadline per request and a
    /// cap on each answer's size (1 MiB by default).
    pub http: HttpPolicy,
}

impl VaultConfig {
    /// Vault at `address` with `token`, the `secret` mount, no prefix, 10 s
    /// requests, answers up to 1 MiB.
    pub fn new(address: impl Into<String>, token: SecretString) -> Self {
        Self {
            address: address.into(),
            auth: VaultAuth::Token(token),
            mount: "secret".to_owned(),
            prefix: String::new(),
            namespace: None,
            http: HttpPolicy::default().timeout(Duration::from_secs(10)).max_body_bytes(1024 * 1024),
        }
    }

    /// Sets how to authenticate.
    #[must_use]
    pub fn auth(mut self, auth: VaultAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the KV v2 mount.
    #[must_use]
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    /// Sets the path prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the per-request deadline (the policy's timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.http.timeout = timeout;
        self
    }

    /// Sets the client policy.
    #[must_use]
    pub fn http(mut self, policy: HttpPolicy) -> Self {
        self.http = policy;
        self
    }
}

/// The metadata of one version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct VaultVersionMetadata {
    /// When it was written (RFC 3339).
    pub created_time: String,
    /// When it was soft-deleted, or empty.
    #[serde(default)]
    pub deletion_time: String,
    /// Whether its data was destroyed for good.
    #[serde(default)]
    pub destroyed: bool,
}

/// The metadata of a key: its versions and settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct VaultMetadata {
    /// The newest version.
    pub current_version: u64,
    /// The oldest version still kept.
    #[serde(default)]
    pub oldest_version: u64,
    /// How many versions are kept (0: the mount's default).
    #[serde(default)]
    pub max_versions: u64,
    /// Whether every write must use check-and-set.
    #[serde(default)]
    pub cas_required: bool,
    /// Every kept version.
    #[serde(default)]
    pub versions: BTreeMap<u64, VaultVersionMetadata>,
}

/// A secret read from Vault: every field of one version.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VaultSecret {
    /// The fields, each a secret.
    pub fields: BTreeMap<String, SecretString>,
    /// The version read.
    pub version: u64,
}

/// Secrets in Vault's KV version 2 engine, over its HTTP API with rustls (ring).
///
/// As a [`SecretManager`], a key is a path under the mount and prefix, and its value is
/// the field `value` (or `value_base64` for bytes that are not text). Versions,
/// check-and-set (`options.cas`), metadata and version history are Vault's own. Beyond
/// the trait: whole field maps ([`VaultSecretManager::read_fields`],
/// [`VaultSecretManager::write_fields`]), [`VaultSecretManager::metadata`], and
/// [`VaultSecretManager::rotate_field`], which replaces one field of a secret with
/// check-and-set so that a concurrent writer is never overwritten.
///
/// Authentication ([`VaultAuth`]): a static token is used as given. A login method
/// (AppRole, Kubernetes) logs in at the first request, renews its token
/// (`auth/token/renew-self`) once two thirds of its lease have passed, and logs in
/// again when Vault refuses the renewal, when the renewed lease is too short to be
/// of use (the role's max TTL), or when a request is refused with 403 (a revoked
/// token; the request is then sent once more with the new token). Errors name the
/// operation and the key's path, never a token or secret id.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::secret::{SecretManager, SecretString};
/// use deploy_security::secrets::{VaultConfig, VaultSecretManager};
/// let token = SecretString::from(std::env::var("VAULT_TOKEN")?);
/// let vault = VaultSecretManager::new(VaultConfig::new("https://vault:8200", token))?;
/// let new_version = vault.rotate_field("checkout/db", "password", None).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct VaultSecretManager {
    client: HttpClient,
    base: reqwest::Url,
    config: Arc<VaultConfig>,
    token: Arc<tokio::sync::Mutex<Option<LeasedToken>>>,
    stats: Arc<std::sync::Mutex<VaultAuthStats>>,
}

impl std::fmt::Debug for VaultSecretManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSecretManager")
            .field("address", &self.base.as_str())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The body of an answer that carries `data`.
#[derive(Deserialize)]
struct DataEnvelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct ReadData {
    data: Option<BTreeMap<String, Value>>,
    metadata: WriteData,
}

#[derive(Deserialize)]
struct WriteData {
    version: u64,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

#[derive(Deserialize)]
struct ListData {
    keys: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

fn http_error(operation: &str, error: HttpError) -> SecretError {
    SecretError::backend(operation, error.kind(), error)
}

/// The class of the server's answer: the suite's one HTTP status table.
fn status_kind(status: StatusCode) -> ErrorKind {
    ErrorKind::from_http_status(status.as_u16())
}

impl VaultSecretManager {
    /// A client for `config` under its [`HttpPolicy`] (rustls on the ring provider,
    /// the platform's verifier and the policy's extra roots). Fails on an address
    /// that is not a URL, or is plain `http://` without the policy's opt-out.
    pub fn new(config: VaultConfig) -> Result<Self, SecretError> {
        let operation = "configure the vault client";
        let base = reqwest::Url::parse(&config.address).map_err(|e| {
            http_error(operation, HttpError::InvalidUrl { reason: format!("the vault address is not a url: {e}") })
        })?;
        if !base.username().is_empty() || base.password().is_some() || base.query().is_some() {
            return Err(http_error(
                operation,
                HttpError::InvalidUrl { reason: "the vault address holds credentials or a query".to_owned() },
            ));
        }
        let client = HttpClient::new(config.http.clone()).map_err(|e| http_error(operation, e))?;
        client.check_url(&base).map_err(|e| http_error(operation, e))?;
        Ok(Self { client, base, config: Arc::new(config), token: Arc::default(), stats: Arc::default() })
    }

    /// What the manager did to keep its token valid.
    pub fn auth_stats(&self) -> VaultAuthStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    fn count(&self, update: impl FnOnce(&mut VaultAuthStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            update(&mut stats);
        }
    }

    /// Forgets the current login token (after Vault refused it).
    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// The token for the next request: the static one, or the login token,
    /// renewed or replaced as its lease requires.
    async fn current_token(&self) -> Result<SecretString, SecretError> {
        if let VaultAuth::Token(token) = &self.config.auth {
            return Ok(token.clone());
        }
        let mut state = self.token.lock().await;
        let now = tokio::time::Instant::now();
        if let Some(leased) = state.as_ref() {
            if leased.fresh(now) {
                return Ok(leased.token.clone());
            }
            if leased.renewable && leased.alive(now) {
                match self.renew(&leased.token).await {
                    Ok(renewed) if renewed.lease_duration >= 2 => {
                        self.count(|s| s.renewals += 1);
                        let renewed = LeasedToken::from_auth(renewed, tokio::time::Instant::now());
                        let token = renewed.token.clone();
                        *state = Some(renewed);
                        return Ok(token);
                    }
                    Ok(_) => {
                        tracing::debug!("vault renewed the token for less than 2 s (its max ttl): logging in anew");
                    }
                    // Renewal only saves a login: whatever stops it (refused, expired,
                    // or OpenBao's 500 "past the max TTL, cannot renew" for a token at
                    // its max TTL), a fresh login decides, and its error is the one returned.
                    Err(e) => {
                        self.count(|s| s.refused_renewals += 1);
                        tracing::debug!(error = %e, "vault did not renew the token: logging in anew");
                    }
                }
            }
        }
        let fresh = self.login().await?;
        self.count(|s| s.logins += 1);
        let fresh = LeasedToken::from_auth(fresh, tokio::time::Instant::now());
        let token = fresh.token.clone();
        *state = Some(fresh);
        Ok(token)
    }

    fn api_url(&self, path: &str) -> Result<reqwest::Url, SecretError> {
        let url = format!("{}/v1/{path}", self.base.as_str().trim_end_matches('/'));
        reqwest::Url::parse(&url).map_err(|_| {
            http_error("reach vault", HttpError::InvalidUrl { reason: format!("no valid url for {path:?}") })
        })
    }

    /// Posts `body` to `path` (with `token` when given) and returns the `auth` block.
    async fn auth_call(
        &self,
        operation: &str,
        path: &str,
        token: Option<&SecretString>,
        body: Value,
    ) -> Result<super::vault_auth::AuthBlock, SecretError> {
        let mut request =
            self.client.request(Method::POST, self.api_url(path)?).map_err(|e| http_error(operation, e))?.json(&body);
        if let Some(token) = token {
            let token = sensitive_header("X-Vault-Token", token).map_err(|e| http_error(operation, e))?;
            request = request.header("X-Vault-Token", token);
        }
        if let Some(namespace) = &self.config.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let response = self.client.send(request).await.map_err(|e| http_error(operation, e))?;
        let status = response.status();
        let body = self.client.read_body(response).await.map_err(|e| http_error(operation, e))?;
        if !status.is_success() {
            let errors = serde_json::from_slice::<ErrorBody>(&body).unwrap_or_default().errors;
            return Err(SecretError::backend(
                operation,
                status_kind(status),
                format!("vault answered {status} on {path}: {}", errors.join("; ")),
            ));
        }
        serde_json::from_slice::<AuthEnvelope>(&body).ok().and_then(|e| e.auth).ok_or_else(|| {
            SecretError::backend(operation, ErrorKind::Other, format!("vault's answer on {path} has no auth block"))
        })
    }

    async fn login(&self) -> Result<super::vault_auth::AuthBlock, SecretError> {
        let auth = &self.config.auth;
        let operation = format!("log in to vault ({})", auth.method());
        let Some(path) = auth.login_path() else {
            return Err(SecretError::backend(operation, ErrorKind::InvalidInput, "a static token has no login"));
        };
        let body = match auth {
            VaultAuth::AppRole { role_id, secret_id, .. } => {
                json!({ "role_id": role_id, "secret_id": secret_id.expose_secret() })
            }
            VaultAuth::Kubernetes { role, jwt_path, .. } => {
                let jwt = tokio::fs::read_to_string(jwt_path).await.map_err(|e| {
                    SecretError::backend(
                        &operation,
                        ErrorKind::InvalidInput,
                        format!("failed to read the service-account token {}: {e}", jwt_path.display()),
                    )
                })?;
                let jwt = SecretString::new(jwt.trim().to_owned());
                json!({ "role": role, "jwt": jwt.expose_secret() })
            }
            _ => return Err(SecretError::backend(operation, ErrorKind::Unsupported, "unknown auth method")),
        };
        self.auth_call(&operation, &path, None, body).await
    }

    async fn renew(&self, token: &SecretString) -> Result<super::vault_auth::AuthBlock, SecretError> {
        self.auth_call("renew the vault token", "auth/token/renew-self", Some(token), json!({})).await
    }

    fn path(&self, key: &str) -> String {
        let prefix = self.config.prefix.trim_matches('/');
        if prefix.is_empty() { key.to_owned() } else { format!("{prefix}/{key}") }
    }

    fn url(&self, kind: &str, path: &str) -> String {
        format!("{}/v1/{}/{kind}/{path}", self.base.as_str().trim_end_matches('/'), self.config.mount.trim_matches('/'))
    }

    /// Sends a request; returns the status and body, or the answer's error.
    async fn send(
        &self,
        operation: &str,
        key: &str,
        method: Method,
        url: String,
        body: Option<Value>,
    ) -> Result<Option<bytes::Bytes>, SecretError> {
        let url = reqwest::Url::parse(&url).map_err(|_| {
            http_error(operation, HttpError::InvalidUrl { reason: format!("no valid url for the path {key:?}") })
        })?;
        let first = self.send_once(operation, key, method.clone(), url.clone(), body.clone()).await;
        match first {
            Err(SecretError::Backend { kind: ErrorKind::Unauthorized, .. })
                if self.config.auth.login_path().is_some() =>
            {
                // A revoked or expired login token: log in anew, try once more.
                self.forget_token().await;
                self.send_once(operation, key, method, url, body).await
            }
            other => other,
        }
    }

    async fn send_once(
        &self,
        operation: &str,
        key: &str,
        method: Method,
        url: reqwest::Url,
        body: Option<Value>,
    ) -> Result<Option<bytes::Bytes>, SecretError> {
        let token = self.current_token().await?;
        let token = sensitive_header("X-Vault-Token", &token).map_err(|e| http_error(operation, e))?;
        let mut request =
            self.client.request(method, url).map_err(|e| http_error(operation, e))?.header("X-Vault-Token", token);
        if let Some(namespace) = &self.config.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = self.client.send(request).await.map_err(|e| http_error(operation, e))?;
        let status = response.status();
        let body = self.client.read_body(response).await.map_err(|e| http_error(operation, e))?;
        if status.is_success() {
            return Ok(if status == StatusCode::NO_CONTENT { None } else { Some(body) });
        }
        if status == StatusCode::NOT_FOUND {
            return Err(SecretError::NotFound { key: key.to_owned() });
        }
        let errors = serde_json::from_slice::<ErrorBody>(&body).unwrap_or_default().errors;
        Err(SecretError::backend(
            operation,
            status_kind(status),
            format!("vault answered {status} for {key}: {}", errors.join("; ")),
        ))
    }

    fn parse<T: for<'de> Deserialize<'de>>(operation: &str, body: Option<bytes::Bytes>) -> Result<T, SecretError> {
        let body = body.unwrap_or_default();
        serde_json::from_slice::<DataEnvelope<T>>(&body)
            .map(|e| e.data)
            .map_err(|e| SecretError::backend(operation, ErrorKind::Other, e))
    }

    /// Every field of `key` at `version` (the newest when `None`).
    #[instrument(skip_all, fields(secret.key = %key), err)]
    pub async fn read_fields(&self, key: &str, version: Option<u64>) -> Result<VaultSecret, SecretError> {
        validate_key(key)?;
        let mut url = self.url("data", &self.path(key));
        if let Some(version) = version {
            url.push_str(&format!("?version={version}"));
        }
        let body = self.send("read a vault secret", key, Method::GET, url, None).await?;
        let data: ReadData = Self::parse("read a vault secret", body)?;
        let Some(fields) = data.data.filter(|_| data.metadata.deletion_time.is_empty() && !data.metadata.destroyed)
        else {
            return Err(SecretError::NotFound { key: format!("{key}@{}", data.metadata.version) });
        };
        let fields = fields
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (name, SecretString::new(text))
            })
            .collect();
        Ok(VaultSecret { fields, version: data.metadata.version })
    }

    /// Writes `fields` as a new version of `key`; with `cas`, only if the current
    /// version is `cas` (0: only if the key does not exist). Returns the new version.
    #[instrument(skip_all, fields(secret.key = %key), err)]
    pub async fn write_fields(
        &self,
        key: &str,
        fields: &BTreeMap<String, SecretString>,
        cas: Option<u64>,
    ) -> Result<u64, SecretError> {
        validate_key(key)?;
        let data: serde_json::Map<String, Value> =
            fields.iter().map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_owned()))).collect();
        let mut body = json!({ "data": data });
        if let Some(cas) = cas {
            body["options"] = json!({ "cas": cas });
        }
        let url = self.url("data", &self.path(key));
        let result = self.send("write a vault secret", key, Method::POST, url, Some(body)).await;
        let answer = match result {
            Err(SecretError::Backend { kind: ErrorKind::InvalidInput, source, .. })
                if cas.is_some() && source.to_string().contains("check-and-set") =>
            {
                let actual = self.metadata(key).await.map(|m| m.current_version).unwrap_or_default();
                return Err(SecretError::VersionConflict {
                    key: key.to_owned(),
                    expected: cas.unwrap_or_default(),
                    actual,
                });
            }
            other => other?,
        };
        Ok(Self::parse::<WriteData>("write a vault secret", answer)?.version)
    }

    /// The metadata of `key`: versions, their times, settings.
    #[instrument(skip_all, fields(secret.key = %key), err)]
    pub async fn metadata(&self, key: &str) -> Result<VaultMetadata, SecretError> {
        validate_key(key)?;
        let url = self.url("metadata", &self.path(key));
        let body = self.send("read vault metadata", key, Method::GET, url, None).await?;
        Self::parse("read vault metadata", body)
    }

    /// Replaces one field of `key` with `new_value` (or 32 random bytes as URL-safe
    /// base64 when `None`), keeping the other fields, with check-and-set on the version
    /// read. Returns the new version; a concurrent write is a
    /// [`SecretError::VersionConflict`], never overwritten.
    #[instrument(skip_all, fields(secret.key = %key, secret.field = %field), err)]
    pub async fn rotate_field(
        &self,
        key: &str,
        field: &str,
        new_value: Option<SecretString>,
    ) -> Result<u64, SecretError> {
        let current = self.read_fields(key, None).await?;
        let value = match new_value {
            Some(value) => value,
            None => crate::secure_config::random_token(32)
                .map_err(|e| SecretError::backend("generate a secret", ErrorKind::Other, e))?,
        };
        let mut fields = current.fields;
        fields.insert(field.to_owned(), value);
        self.write_fields(key, &fields, Some(current.version)).await
    }

    async fn list_under(&self, folder: &str, out: &mut Vec<String>) -> Result<(), SecretError> {
        let url = format!("{}?list=true", self.url("metadata", folder));
        let body = match self.send("list vault secrets", folder, Method::GET, url, None).await {
            Err(SecretError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        let list: ListData = Self::parse("list vault secrets", body)?;
        for entry in list.keys {
            let full = if folder.is_empty() { entry.clone() } else { format!("{folder}/{entry}") };
            if let Some(sub) = full.strip_suffix('/') {
                Box::pin(self.list_under(sub, out)).await?;
            } else {
                out.push(full);
            }
        }
        Ok(())
    }

    fn into_secret(key: &str, secret: VaultSecret) -> Result<Secret, SecretError> {
        if let Some(text) = secret.fields.get(VALUE_FIELD) {
            return Ok(Secret::new(SecretBytes::from(text.clone()), secret.version));
        }
        if let Some(encoded) = secret.fields.get(VALUE_BASE64_FIELD) {
            let bytes = STANDARD.decode(encoded.expose_secret()).map_err(|_| SecretError::Decryption)?;
            return Ok(Secret::new(SecretBytes::new(bytes), secret.version));
        }
        Err(SecretError::backend(
            "read a vault secret",
            ErrorKind::InvalidInput,
            format!("secret {key} has neither a {VALUE_FIELD:?} nor a {VALUE_BASE64_FIELD:?} field"),
        ))
    }
}

#[async_trait]
impl SecretManager for VaultSecretManager {
    async fn get(&self, key: &str) -> Result<Secret, SecretError> {
        Self::into_secret(key, self.read_fields(key, None).await?)
    }

    async fn get_version(&self, key: &str, version: u64) -> Result<Secret, SecretError> {
        let secret = self.read_fields(key, Some(version)).await.map_err(|e| match e {
            SecretError::NotFound { .. } => SecretError::NotFound { key: format!("{key}@{version}") },
            other => other,
        })?;
        if secret.version != version {
            return Err(SecretError::NotFound { key: format!("{key}@{version}") });
        }
        Self::into_secret(key, secret)
    }

    async fn put(&self, key: &str, value: SecretBytes, options: PutOptions) -> Result<u64, SecretError> {
        let mut fields = BTreeMap::new();
        match value.expose_str() {
            Ok(text) => fields.insert(VALUE_FIELD.to_owned(), SecretString::from(text)),
            Err(_) => {
                fields.insert(VALUE_BASE64_FIELD.to_owned(), SecretString::new(STANDARD.encode(value.expose_secret())))
            }
        };
        self.write_fields(key, &fields, options.expected_version).await
    }

    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn delete(&self, key: &str) -> Result<(), SecretError> {
        validate_key(key)?;
        let url = self.url("metadata", &self.path(key));
        match self.send("delete a vault secret", key, Method::DELETE, url, None).await {
            Ok(_) | Err(SecretError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self) -> Result<Vec<String>, SecretError> {
        let prefix = self.config.prefix.trim_matches('/').to_owned();
        let mut keys = Vec::new();
        self.list_under(&prefix, &mut keys).await?;
        let mut keys: Vec<String> = keys
            .into_iter()
            .map(|k| if prefix.is_empty() { k } else { k.strip_prefix(&format!("{prefix}/")).unwrap_or(&k).to_owned() })
            .collect();
        keys.sort();
        Ok(keys)
    }
}
