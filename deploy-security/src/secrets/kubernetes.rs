//! A secret manager on Kubernetes Secrets, directly on `kube` and `k8s-openapi`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deploy_core::error::ErrorKind;
use deploy_core::secret::{PutOptions, Secret, SecretBytes, SecretError, SecretManager, validate_key};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as K8sSecret;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Client};
use tracing::instrument;

/// The annotation that holds the store's key of a Secret.
pub const KEY_ANNOTATION: &str = "deploy-rs.io/secret-key";
/// The annotation that holds a Secret's version in the store.
pub const VERSION_ANNOTATION: &str = "deploy-rs.io/secret-version";
/// The label that marks a Secret as part of a store (its value is the store's name).
pub const STORE_LABEL: &str = "deploy-rs.io/secret-store";
/// The data field that holds the value.
pub const DATA_FIELD: &str = "value";

/// Where the store's Secrets live.
///
/// ```
/// use deploy_security::secrets::KubernetesSecretConfig;
/// let config = KubernetesSecretConfig::new("shop").store("checkout");
/// assert_eq!(config.name_prefix, "checkout-");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubernetesSecretConfig {
    /// The namespace.
    pub namespace: String,
    /// The store's name: the value of the store label on each Secret.
    pub store: String,
    /// Prefixed to every Secret's name.
    pub name_prefix: String,
}

impl KubernetesSecretConfig {
    /// The `default` store in `namespace`, Secrets named `deploy-<key>`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), store: "default".to_owned(), name_prefix: "deploy-".to_owned() }
    }

    /// Sets the store's name and uses `<store>-` as the name prefix.
    #[must_use]
    pub fn store(mut self, store: impl Into<String>) -> Self {
        self.store = store.into();
        self.name_prefix = format!("{}-", self.store);
        self
    }
}

/// Secrets as Kubernetes `Secret` objects (type `Opaque`), one per key, the value in
/// data field `value`.
///
/// Kubernetes keeps no history, so only the latest version exists: the version is an
/// annotation that each write increments, and [`SecretManager::get_version`] answers
/// older versions with `NotFound`. Check-and-set compares that version and then
/// replaces the object with its `resourceVersion`, so a concurrent writer makes the API
/// server answer 409, reported as [`SecretError::VersionConflict`]. The key
/// `db/password` becomes the object `<prefix>db.password` (lower case, `/` as `.`,
/// `_` as `-`); the original key is kept in an annotation and checked on every read,
/// so two keys that map to one name cannot silently share it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::secret::{PutOptions, SecretBytes, SecretManager};
/// use deploy_security::secrets::{KubernetesSecretConfig, KubernetesSecretManager};
/// let client = kube::Client::try_default().await?;
/// let store = KubernetesSecretManager::new(client, KubernetesSecretConfig::new("shop"));
/// store.put("db/password", SecretBytes::from(b"hunter2".to_vec()), PutOptions::default().expect_version(0)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KubernetesSecretManager {
    api: Api<K8sSecret>,
    config: KubernetesSecretConfig,
}

impl std::fmt::Debug for KubernetesSecretManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSecretManager").field("config", &self.config).finish_non_exhaustive()
    }
}

fn kube_error(operation: &str, key: &str, error: kube::Error) -> SecretError {
    let kind = match &error {
        kube::Error::Api(status) => match status.code {
            404 => return SecretError::NotFound { key: key.to_owned() },
            code => ErrorKind::from_http_status(code),
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    SecretError::backend(operation, kind, error)
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

impl KubernetesSecretManager {
    /// A store in `config.namespace`, reached through `client`.
    pub fn new(client: Client, config: KubernetesSecretConfig) -> Self {
        Self { api: Api::namespaced(client, &config.namespace), config }
    }

    /// The name of the Secret that holds `key`, or an error if the key cannot be one.
    pub fn object_name(&self, key: &str) -> Result<String, SecretError> {
        validate_key(key)?;
        let name: String = format!("{}{}", self.config.name_prefix, key)
            .chars()
            .map(|c| match c {
                '/' => '.',
                '_' => '-',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        let valid = name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && label.ends_with(|c: char| c.is_ascii_alphanumeric())
            });
        if !valid {
            return Err(SecretError::InvalidKey {
                key: key.to_owned(),
                reason: format!("{name:?} is not a valid Kubernetes object name"),
            });
        }
        Ok(name)
    }

    /// The current Secret of `key`, checked to belong to this store and this key.
    async fn current(&self, key: &str) -> Result<Option<(K8sSecret, u64)>, SecretError> {
        let name = self.object_name(key)?;
        let Some(secret) = self.api.get_opt(&name).await.map_err(|e| kube_error("read a kubernetes secret", key, e))?
        else {
            return Ok(None);
        };
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        if annotations.get(KEY_ANNOTATION).map(String::as_str) != Some(key) {
            return Err(SecretError::backend(
                "read a kubernetes secret",
                ErrorKind::Conflict,
                format!("secret {name} exists but does not belong to key {key} of this store"),
            ));
        }
        let version = annotations.get(VERSION_ANNOTATION).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Some((secret, version)))
    }

    fn object(
        &self,
        key: &str,
        name: String,
        version: u64,
        value: &SecretBytes,
        resource_version: Option<String>,
    ) -> K8sSecret {
        K8sSecret {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.config.namespace.clone()),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/managed-by".to_owned(), "deploy-rs".to_owned()),
                    (STORE_LABEL.to_owned(), self.config.store.clone()),
                ])),
                annotations: Some(BTreeMap::from([
                    (KEY_ANNOTATION.to_owned(), key.to_owned()),
                    (VERSION_ANNOTATION.to_owned(), version.to_string()),
                ])),
                resource_version,
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([(DATA_FIELD.to_owned(), ByteString(value.expose_secret().to_vec()))])),
            ..K8sSecret::default()
        }
    }
}

#[async_trait]
impl SecretManager for KubernetesSecretManager {
    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn get(&self, key: &str) -> Result<Secret, SecretError> {
        let (secret, version) =
            self.current(key).await?.ok_or_else(|| SecretError::NotFound { key: key.to_owned() })?;
        let value = secret
            .data
            .and_then(|mut data| data.remove(DATA_FIELD))
            .ok_or_else(|| SecretError::NotFound { key: key.to_owned() })?;
        Ok(Secret::new(SecretBytes::new(value.0), version))
    }

    async fn get_version(&self, key: &str, version: u64) -> Result<Secret, SecretError> {
        let secret = self.get(key).await?;
        if secret.version == version {
            Ok(secret)
        } else {
            Err(SecretError::NotFound { key: format!("{key}@{version}") })
        }
    }

    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn put(&self, key: &str, value: SecretBytes, options: PutOptions) -> Result<u64, SecretError> {
        let name = self.object_name(key)?;
        let current = self.current(key).await?;
        let actual = current.as_ref().map_or(0, |(_, v)| *v);
        if let Some(expected) = options.expected_version
            && expected != actual
        {
            return Err(SecretError::VersionConflict { key: key.to_owned(), expected, actual });
        }
        let version = actual + 1;
        let conflict = |e: kube::Error| {
            if is_conflict(&e) {
                SecretError::VersionConflict { key: key.to_owned(), expected: actual, actual: actual + 1 }
            } else {
                kube_error("write a kubernetes secret", key, e)
            }
        };
        match current {
            None => {
                let object = self.object(key, name, version, &value, None);
                self.api.create(&PostParams::default(), &object).await.map_err(conflict)?;
            }
            Some((existing, _)) => {
                let object = self.object(key, name.clone(), version, &value, existing.metadata.resource_version);
                self.api.replace(&name, &PostParams::default(), &object).await.map_err(conflict)?;
            }
        }
        Ok(version)
    }

    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn delete(&self, key: &str) -> Result<(), SecretError> {
        let name = self.object_name(key)?;
        // Only delete an object that belongs to this key of this store.
        let Some((existing, _)) = self.current(key).await? else { return Ok(()) };
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: existing.metadata.uid, resource_version: None }),
            ..DeleteParams::default()
        };
        match self.api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(kube_error("delete a kubernetes secret", key, e)),
        }
    }

    async fn list(&self) -> Result<Vec<String>, SecretError> {
        let selector = format!("{STORE_LABEL}={}", self.config.store);
        let list = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| kube_error("list kubernetes secrets", "*", e))?;
        let mut keys: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|s| s.metadata.annotations?.remove(KEY_ANNOTATION))
            .filter(|k| validate_key(k).is_ok())
            .collect();
        keys.sort();
        Ok(keys)
    }
}
