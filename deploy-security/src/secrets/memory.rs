//! A versioned secret store in process memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use deploy_core::secret::{PutOptions, Secret, SecretBytes, SecretError, SecretManager, validate_key};

/// Versioned secrets in memory, zeroed when dropped: for tests, and for single-process
/// programs that load their secrets once.
///
/// Keeps every version until the key is deleted; a deleted key starts again at
/// version 1.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use deploy_core::secret::{PutOptions, SecretBytes, SecretManager};
/// use deploy_security::secrets::MemorySecretManager;
/// let store = MemorySecretManager::new();
/// let v1 = store.put("db/password", SecretBytes::from(b"one".to_vec()), PutOptions::default()).await?;
/// let conflict = store.put("db/password", SecretBytes::from(b"two".to_vec()), PutOptions::default().expect_version(0)).await;
/// assert!(conflict.is_err());
/// assert_eq!(store.get("db/password").await?.version, v1);
/// # Ok::<(), deploy_core::secret::SecretError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct MemorySecretManager {
    secrets: Mutex<BTreeMap<String, Vec<SecretBytes>>>,
}

impl MemorySecretManager {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<SecretBytes>>> {
        // A panic while holding the lock cannot leave a half-written entry: every
        // mutation below is a single push or remove.
        self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SecretManager for MemorySecretManager {
    async fn get(&self, key: &str) -> Result<Secret, SecretError> {
        validate_key(key)?;
        let secrets = self.lock();
        let versions = secrets.get(key).ok_or_else(|| SecretError::NotFound { key: key.to_owned() })?;
        let latest = versions.last().ok_or_else(|| SecretError::NotFound { key: key.to_owned() })?;
        Ok(Secret::new(latest.clone(), versions.len() as u64))
    }

    async fn get_version(&self, key: &str, version: u64) -> Result<Secret, SecretError> {
        validate_key(key)?;
        let secrets = self.lock();
        let value = usize::try_from(version)
            .ok()
            .and_then(|v| v.checked_sub(1))
            .and_then(|index| secrets.get(key)?.get(index))
            .ok_or_else(|| SecretError::NotFound { key: format!("{key}@{version}") })?;
        Ok(Secret::new(value.clone(), version))
    }

    async fn put(&self, key: &str, value: SecretBytes, options: PutOptions) -> Result<u64, SecretError> {
        validate_key(key)?;
        let mut secrets = self.lock();
        let current = secrets.get(key).map_or(0, |v| v.len() as u64);
        if let Some(expected) = options.expected_version
            && expected != current
        {
            return Err(SecretError::VersionConflict { key: key.to_owned(), expected, actual: current });
        }
        let versions = secrets.entry(key.to_owned()).or_default();
        versions.push(value);
        Ok(versions.len() as u64)
    }

    async fn delete(&self, key: &str) -> Result<(), SecretError> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, SecretError> {
        Ok(self.lock().keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> SecretBytes {
        SecretBytes::from(s.as_bytes())
    }

    #[tokio::test]
    async fn versions_check_and_set_and_delete() {
        let store = MemorySecretManager::new();
        assert!(store.get("a").await.unwrap_err().to_string().contains("not found"));
        assert_eq!(store.put("a", bytes("1"), PutOptions::default().expect_version(0)).await.unwrap(), 1);
        assert_eq!(store.put("a", bytes("2"), PutOptions::default().expect_version(1)).await.unwrap(), 2);
        let err = store.put("a", bytes("3"), PutOptions::default().expect_version(1)).await.unwrap_err();
        assert!(matches!(err, SecretError::VersionConflict { expected: 1, actual: 2, .. }));
        assert_eq!(store.get("a").await.unwrap(), Secret::new(bytes("2"), 2));
        assert_eq!(store.get_version("a", 1).await.unwrap(), Secret::new(bytes("1"), 1));
        assert!(store.get_version("a", 3).await.is_err());
        assert!(store.get_version("a", 0).await.is_err());
        store.put("b/c", bytes("x"), PutOptions::default()).await.unwrap();
        assert_eq!(store.list().await.unwrap(), ["a", "b/c"]);
        store.delete("a").await.unwrap();
        store.delete("a").await.unwrap();
        assert!(store.get("a").await.is_err());
        assert!(store.put("../x", bytes("x"), PutOptions::default()).await.is_err());
    }
}
