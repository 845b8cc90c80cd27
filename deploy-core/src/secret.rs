//! Secrets: values that redact themselves, and the [`SecretManager`] trait.

use std::fmt;

use async_trait::async_trait;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};

/// A secret string: prints as `[redacted]`, zeroes its memory on drop, and gives its
/// value only through [`SecretString::expose_secret`], so that a secret reaches a log
/// line only by an explicit call.
///
/// ```
/// use deploy_core::secret::SecretString;
/// let s = SecretString::from("hunter2");
/// assert_eq!(format!("{s} {s:?}"), "[redacted] SecretString([redacted])");
/// assert_eq!(s.expose_secret(), "hunter2");
/// ```
#[derive(Clone, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself. Every call is a place where it may leak: keep them few.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The length in bytes, which is not secret in practice (and is what an audit of
    /// a too-short JWT secret needs).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Compares in time that depends only on the lengths, not on where the values differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Secret bytes, with the same guarantees as [`SecretString`].
///
/// ```
/// use deploy_core::secret::SecretBytes;
/// let b = SecretBytes::from(vec![1u8, 2, 3]);
/// assert_eq!(format!("{b:?}"), "SecretBytes([redacted; 3 bytes])");
/// assert_eq!(b.expose_secret(), &[1, 2, 3]);
/// ```
#[derive(Clone, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(value: Vec<u8>) -> Self {
        Self(value)
    }

    /// The bytes themselves.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 text, if they are.
    pub fn expose_str(&self) -> Result<&str, SecretError> {
        std::str::from_utf8(&self.0).map_err(|_| SecretError::NotText)
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(value: Vec<u8>) -> Self {
        Self(value)
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(value: &[u8]) -> Self {
        Self(value.to_vec())
    }
}

impl From<SecretString> for SecretBytes {
    fn from(value: SecretString) -> Self {
        Self(value.expose_secret().as_bytes().to_vec())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A stored secret and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Secret {
    /// The value.
    pub value: SecretBytes,
    /// Its version: 1 for the first write, one more for each later write.
    pub version: u64,
}

impl Secret {
    /// A secret at a version.
    pub fn new(value: SecretBytes, version: u64) -> Self {
        Self { value, version }
    }
}

/// Options of [`SecretManager::put`].
///
/// ```
/// use deploy_core::secret::PutOptions;
/// let only_if_new = PutOptions::default().expect_version(0);
/// assert_eq!(only_if_new.expected_version, Some(0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PutOptions {
    /// Write only if the current version is this one (`0`: only if the key does
    /// not exist); `None` writes unconditionally.
    pub expected_version: Option<u64>,
}

impl PutOptions {
    /// Check-and-set on `version`.
    #[must_use]
    pub fn expect_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// A failure of a [`SecretManager`] operation. Messages name keys, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No secret has this key (or this version).
    #[error("secret {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The check-and-set version did not match.
    #[error("secret {key} is at version {actual}, not {expected}")]
    VersionConflict {
        /// The key.
        key: String,
        /// The version the caller expected.
        expected: u64,
        /// The current version.
        actual: u64,
    },
    /// The key is not acceptable.
    #[error("invalid secret key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The stored value could not be decrypted or authenticated (a wrong key, a
    /// tampered file). Deliberately says nothing more.
    #[error("secret could not be decrypted")]
    Decryption,
    /// The value is not UTF-8 text.
    #[error("secret is not valid UTF-8 text")]
    NotText,
    /// The manager's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(SecretError);

impl Classify for SecretError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::VersionConflict { .. } => ErrorKind::Conflict,
            Self::InvalidKey { .. } | Self::Decryption | Self::NotText => ErrorKind::InvalidInput,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// Checks a secret key: 1 to 256 characters of letters, digits, `.`, `_`, `-` and
/// `/`, with no empty, `.` or `..` path segment, so that file and HTTP backends can
/// use keys as paths safely.
///
/// ```
/// use deploy_core::secret::validate_key;
/// assert!(validate_key("db/password").is_ok());
/// assert!(validate_key("../etc/passwd").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<(), SecretError> {
    let invalid = |reason: &str| Err(SecretError::InvalidKey { key: key.to_owned(), reason: reason.to_owned() });
    if key.is_empty() || key.len() > 256 {
        return invalid("must be 1 to 256 characters");
    }
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')) {
        return invalid("may contain only letters, digits, '.', '_', '-' and '/'");
    }
    if key.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return invalid("must not have empty, '.' or '..' path segments");
    }
    Ok(())
}

/// A store of versioned secrets: memory, an encrypted file, Kubernetes, Vault.
#[async_trait]
pub trait SecretManager: Send + Sync {
    /// The latest version of `key`.
    async fn get(&self, key: &str) -> Result<Secret, SecretError>;

    /// A given version of `key`; stores that keep only the latest answer
    /// [`SecretError::NotFound`] for older versions.
    async fn get_version(&self, key: &str, version: u64) -> Result<Secret, SecretError>;

    /// Writes a new version of `key` and returns its number. With
    /// `options.expected_version`, writes only if the current version matches and
    /// fails with [`SecretError::VersionConflict`] otherwise. A write is atomic.
    async fn put(&self, key: &str, value: SecretBytes, options: PutOptions) -> Result<u64, SecretError>;

    /// Deletes every version of `key`. Deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<(), SecretError>;

    /// Every key, sorted.
    async fn list(&self) -> Result<Vec<String>, SecretError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = SecretString::from("p4ss");
        let e = SecretError::VersionConflict { key: "k".into(), expected: 1, actual: 2 };
        for text in [
            format!("{s}"),
            format!("{s:?}"),
            format!("{:?}", Secret::new(SecretBytes::from(b"p4ss".as_slice()), 1)),
            e.to_string(),
        ] {
            assert!(!text.contains("p4ss"), "{text}");
        }
    }

    #[test]
    fn keys_are_checked() {
        for bad in ["", "a//b", "/a", "a/", "a b", "a/../b", "ü"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        for good in ["a", "app/db.password", "A_B-c"] {
            validate_key(good).unwrap();
        }
    }
}
