//! A versioned secret store in Fernet-encrypted files.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use deploy_core::error::ErrorKind;
use deploy_core::secret::{PutOptions, Secret, SecretBytes, SecretError, SecretManager, validate_key};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::fernet::{DecryptOptions, KeyRing};
use deploy_core::store::file::atomic_file;

/// The format tag of a secret file.
const FORMAT: &str = "deploy-security/fernet-secret/v1";
/// What every secret file's name ends with.
const SUFFIX: &str = ".secret";
/// The lock file that serialises writers across processes.
const LOCK_FILE: &str = ".lock";

/// Settings of a [`FileSecretManager`].
///
/// ```
/// use deploy_security::secrets::FileStoreConfig;
/// let config = FileStoreConfig::default().max_versions(3);
/// assert_eq!(config.max_versions, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStoreConfig {
    /// How many versions of a key are kept (at least 1); older ones are dropped on write.
    pub max_versions: usize,
}

impl Default for FileStoreConfig {
    fn default() -> Self {
        Self { max_versions: 10 }
    }
}

impl FileStoreConfig {
    /// Sets how many versions of a key are kept.
    #[must_use]
    pub fn max_versions(mut self, max_versions: usize) -> Self {
        self.max_versions = max_versions.max(1);
        self
    }
}

/// One file: the versions of one key, each its own Fernet token.
#[derive(Debug, Serialize, Deserialize)]
struct SecretFile {
    format: String,
    versions: Vec<StoredVersion>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredVersion {
    version: u64,
    token: String,
}

/// Secrets in files under a directory, one file per key (`db/password` is
/// `<root>/db/password.secret`), each version encrypted as a Fernet token with the
/// newest key of a [`KeyRing`].
///
/// - Writes are atomic: temp file (mode 0600), fsync, rename, fsync of the directory;
///   a crash at any moment leaves the old or the new file, never a torn one.
/// - Check-and-set holds across processes: writers take an exclusive lock on
///   `<root>/.lock`; readers need no lock.
/// - Key rotation: open with a ring whose newest key is new and call
///   [`FileSecretManager::reencrypt_all`]; the older keys can then be dropped.
/// - Key names are file names and so are not secret; values and versions' contents are.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::secret::{PutOptions, SecretBytes, SecretManager, SecretString};
/// use deploy_security::fernet::{FernetKey, KeyRing};
/// use deploy_security::secrets::{FileSecretManager, FileStoreConfig};
/// let key = FernetKey::from_base64(&SecretString::from(std::env::var("SECRETS_KEY")?))?;
/// let store = FileSecretManager::open("/var/lib/app/secrets", KeyRing::new(key), FileStoreConfig::default())?;
/// store.put("db/password", SecretBytes::from(b"hunter2".to_vec()), PutOptions::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileSecretManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    ring: KeyRing,
    config: FileStoreConfig,
}

fn io_error(operation: &str, error: io::Error) -> SecretError {
    let kind = match error.kind() {
        io::ErrorKind::PermissionDenied => ErrorKind::Unauthorized,
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::TimedOut | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    SecretError::backend(operation, kind, error)
}

impl FileSecretManager {
    /// Opens (creating with mode 0700 if needed) the store under `root`.
    pub fn open(root: impl Into<PathBuf>, ring: KeyRing, config: FileStoreConfig) -> Result<Self, SecretError> {
        let root = root.into();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| io_error("create the store directory", e))?;
        let config = FileStoreConfig { max_versions: config.max_versions.max(1), ..config };
        Ok(Self { inner: Arc::new(Inner { root, ring, config }) })
    }

    /// The directory of the store.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Re-encrypts every version of every key under the ring's newest key, one atomic
    /// file replacement per key, keeping each token's timestamp. Returns how many
    /// versions were re-encrypted.
    #[instrument(skip_all, fields(store.root = %self.inner.root.display()), err)]
    pub async fn reencrypt_all(&self) -> Result<usize, SecretError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let _lock = inner.lock()?;
            let mut count = 0;
            for key in inner.keys()? {
                let path = inner.path(&key);
                let Some(mut file) = inner.read(&path)? else { continue };
                for version in &mut file.versions {
                    version.token = inner
                        .ring
                        .reencrypt(&version.token, DecryptOptions::default())
                        .map_err(|_| SecretError::Decryption)?;
                    count += 1;
                }
                inner.write(&path, &file)?;
            }
            Ok(count)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SecretError> + Send + 'static,
) -> Result<T, SecretError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SecretError::backend("run file i/o", ErrorKind::Other, e))?
}

impl Inner {
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(format!("{key}{SUFFIX}"))
    }

    fn lock(&self) -> Result<File, SecretError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.root.join(LOCK_FILE))
            .map_err(|e| io_error("open the store lock", e))?;
        file.lock().map_err(|e| io_error("lock the store", e))?;
        Ok(file)
    }

    fn read(&self, path: &Path) -> Result<Option<SecretFile>, SecretError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read a secret file", e)),
        };
        let file: SecretFile = serde_json::from_slice(&bytes)
            .map_err(|e| SecretError::backend("parse a secret file", ErrorKind::Other, e))?;
        if file.format != FORMAT {
            return Err(SecretError::backend(
                "parse a secret file",
                ErrorKind::Unsupported,
                format!("unknown format {:?}", file.format),
            ));
        }
        Ok(Some(file))
    }

    fn write(&self, path: &Path, file: &SecretFile) -> Result<(), SecretError> {
        let bytes =
            serde_json::to_vec(file).map_err(|e| SecretError::backend("encode a secret file", ErrorKind::Other, e))?;
        atomic_file::replace(path, &bytes).map_err(|e| io_error("write a secret file", e))
    }

    fn decrypt(&self, version: &StoredVersion) -> Result<Secret, SecretError> {
        let plain =
            self.ring.decrypt_bytes(&version.token, DecryptOptions::default()).map_err(|_| SecretError::Decryption)?;
        Ok(Secret::new(plain, version.version))
    }

    /// Every key, sorted, found by walking the directory.
    fn keys(&self) -> Result<Vec<String>, SecretError> {
        let mut keys = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = fs::read_dir(&dir).map_err(|e| io_error("list the store", e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_error("list the store", e))?;
                let kind = entry.file_type().map_err(|e| io_error("list the store", e))?;
                let path = entry.path();
                if kind.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if !kind.is_file() || atomic_file::is_temp_name(name) || !name.ends_with(SUFFIX) {
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&self.root) else { continue };
                let Some(relative) = relative.to_str() else { continue };
                if let Some(key) = relative.strip_suffix(SUFFIX)
                    && validate_key(key).is_ok()
                {
                    keys.push(key.to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[async_trait]
impl SecretManager for FileSecretManager {
    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn get(&self, key: &str) -> Result<Secret, SecretError> {
        validate_key(key)?;
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        blocking(move || {
            let file = inner.read(&inner.path(&key))?;
            let latest = file.as_ref().and_then(|f| f.versions.last());
            let latest = latest.ok_or_else(|| SecretError::NotFound { key: key.clone() })?;
            inner.decrypt(latest)
        })
        .await
    }

    #[instrument(skip_all, fields(secret.key = %key, secret.version = version), err)]
    async fn get_version(&self, key: &str, version: u64) -> Result<Secret, SecretError> {
        validate_key(key)?;
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        blocking(move || {
            let file = inner.read(&inner.path(&key))?;
            let stored = file.as_ref().and_then(|f| f.versions.iter().find(|v| v.version == version));
            let stored = stored.ok_or_else(|| SecretError::NotFound { key: format!("{key}@{version}") })?;
            inner.decrypt(stored)
        })
        .await
    }

    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn put(&self, key: &str, value: SecretBytes, options: PutOptions) -> Result<u64, SecretError> {
        validate_key(key)?;
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        blocking(move || {
            let token = inner
                .ring
                .encrypt(value.expose_secret())
                .map_err(|e| SecretError::backend("encrypt a secret", ErrorKind::Other, e))?;
            let _lock = inner.lock()?;
            let path = inner.path(&key);
            let mut file =
                inner.read(&path)?.unwrap_or_else(|| SecretFile { format: FORMAT.to_owned(), versions: Vec::new() });
            let current = file.versions.last().map_or(0, |v| v.version);
            if let Some(expected) = options.expected_version
                && expected != current
            {
                return Err(SecretError::VersionConflict { key, expected, actual: current });
            }
            let version = current + 1;
            file.versions.push(StoredVersion { version, token });
            let excess = file.versions.len().saturating_sub(inner.config.max_versions);
            file.versions.drain(..excess);
            inner.write(&path, &file)?;
            Ok(version)
        })
        .await
    }

    #[instrument(skip_all, fields(secret.key = %key), err)]
    async fn delete(&self, key: &str) -> Result<(), SecretError> {
        validate_key(key)?;
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        blocking(move || {
            let _lock = inner.lock()?;
            atomic_file::remove(&inner.path(&key)).map_err(|e| io_error("delete a secret file", e))?;
            Ok(())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<String>, SecretError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.keys()).await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::fernet::FernetKey;

    fn bytes(s: &str) -> SecretBytes {
        SecretBytes::from(s.as_bytes())
    }

    fn store(dir: &Path, ring: KeyRing) -> FileSecretManager {
        FileSecretManager::open(dir, ring, FileStoreConfig::default().max_versions(2)).unwrap()
    }

    #[tokio::test]
    async fn versions_check_and_set_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), KeyRing::new(FernetKey::generate().unwrap()));
        assert_eq!(store.put("db/password", bytes("one"), PutOptions::default().expect_version(0)).await.unwrap(), 1);
        assert_eq!(store.put("db/password", bytes("two"), PutOptions::default()).await.unwrap(), 2);
        let err = store.put("db/password", bytes("x"), PutOptions::default().expect_version(1)).await.unwrap_err();
        assert!(matches!(err, SecretError::VersionConflict { expected: 1, actual: 2, .. }));
        assert_eq!(store.put("db/password", bytes("three"), PutOptions::default().expect_version(2)).await.unwrap(), 3);
        assert_eq!(store.get("db/password").await.unwrap(), Secret::new(bytes("three"), 3));
        assert_eq!(store.get_version("db/password", 2).await.unwrap(), Secret::new(bytes("two"), 2));
        assert!(store.get_version("db/password", 1).await.unwrap_err().to_string().contains("not found"), "pruned");
        store.put("api", bytes("k"), PutOptions::default()).await.unwrap();
        assert_eq!(store.list().await.unwrap(), ["api", "db/password"]);
        store.delete("api").await.unwrap();
        store.delete("api").await.unwrap();
        assert_eq!(store.list().await.unwrap(), ["db/password"]);

        let path = dir.path().join("db/password.secret");
        let raw = fs::read_to_string(&path).unwrap();
        assert!(!raw.contains("three") && raw.contains("gAAAAA"), "values are encrypted: {raw}");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(dir.path().join("db")).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[tokio::test]
    async fn a_wrong_key_or_tampered_file_is_a_decryption_error() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), KeyRing::new(FernetKey::generate().unwrap()))
            .put("k", bytes("v"), PutOptions::default())
            .await
            .unwrap();
        let other = store(dir.path(), KeyRing::new(FernetKey::generate().unwrap()));
        assert!(matches!(other.get("k").await, Err(SecretError::Decryption)));
        fs::write(dir.path().join("k.secret"), b"{not json").unwrap();
        assert!(matches!(other.get("k").await, Err(SecretError::Backend { .. })));
    }

    #[tokio::test]
    async fn rotation_reencrypts_every_version_under_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = FernetKey::generate().unwrap();
        let first = store(dir.path(), KeyRing::new(old.clone()));
        first.put("a", bytes("1"), PutOptions::default()).await.unwrap();
        first.put("a", bytes("2"), PutOptions::default()).await.unwrap();
        first.put("b/c", bytes("3"), PutOptions::default()).await.unwrap();

        let new = FernetKey::generate().unwrap();
        let rotating = store(dir.path(), KeyRing::from_keys(vec![new.clone(), old]).unwrap());
        assert_eq!(rotating.reencrypt_all().await.unwrap(), 3);

        let only_new = store(dir.path(), KeyRing::new(new));
        assert_eq!(only_new.get_version("a", 1).await.unwrap().value, bytes("1"));
        assert_eq!(only_new.get("b/c").await.unwrap(), Secret::new(bytes("3"), 1));
    }

    #[tokio::test]
    async fn concurrent_check_and_set_admits_one_writer_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), KeyRing::new(FernetKey::generate().unwrap()));
        let writers = (0..8).map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { store.put("k", bytes(&i.to_string()), PutOptions::default().expect_version(0)).await },
            )
        });
        let results = futures_results(writers).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(
            results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, SecretError::VersionConflict { .. }))
        );
    }

    async fn futures_results(
        handles: impl Iterator<Item = tokio::task::JoinHandle<Result<u64, SecretError>>>,
    ) -> Vec<Result<u64, SecretError>> {
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }
}
