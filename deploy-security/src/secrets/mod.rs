//! [`SecretManager`](deploy_core::secret::SecretManager) backends: memory, an encrypted
//! file store, Vault KV v2 and Kubernetes Secrets.

#[cfg(feature = "file")]
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
