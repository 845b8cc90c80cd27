//! [`SecretManager`](deploy_core::secret::SecretManager) backends: memory, an encrypted
//! file store, Vault KV v2, Azure Key Vault and Kubernetes Secrets.

#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "azure")]
mod azure_auth;
#[cfg(feature = "file")]
mod file;
#[cfg(feature = "kubernetes")]
mod kubernetes;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "vault")]
mod vault;
#[cfg(feature = "vault")]
mod vault_auth;

#[cfg(feature = "azure")]
pub use azure::{
    API_VERSION, AzureDeletedSecret, AzureKeyVaultConfig, AzureKeyVaultError, AzureKeyVaultSecretManager,
    AzureSecretAttributes, AzureSecretVersion, BASE64_CONTENT_TYPE, VERSION_TAG,
};
#[cfg(feature = "azure")]
pub use azure_auth::{
    AzureAuth, AzureAuthStats, DEFAULT_AUTHORITY, DEFAULT_IDENTITY_ENDPOINT, KEY_VAULT_RESOURCE, KEY_VAULT_SCOPE,
    TOKEN_REFRESH_MARGIN,
};
#[cfg(feature = "file")]
pub use file::{FileSecretManager, FileStoreConfig};
#[cfg(feature = "kubernetes")]
pub use kubernetes::{KubernetesSecretConfig, KubernetesSecretManager};
#[cfg(feature = "memory")]
pub use memory::MemorySecretManager;
#[cfg(feature = "vault")]
pub use vault::{
    VALUE_BASE64_FIELD, VALUE_FIELD, VaultConfig, VaultMetadata, VaultSecret, VaultSecretManager, VaultVersionMetadata,
};
#[cfg(feature = "vault")]
pub use vault_auth::{SERVICE_ACCOUNT_TOKEN_PATH, VaultAuth, VaultAuthStats};
