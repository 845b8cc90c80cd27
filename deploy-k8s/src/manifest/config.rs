//! Namespaces, ConfigMaps and Secrets, and the checksums that restart pods when the
//! configuration they read changes.

use deploy_core::model::Namespace as ModelNamespace;
use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use zeroize::Zeroizing;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::manifest::deployment::non_empty;

/// A Namespace with labels (for example `environment: production`, or Pod Security
/// Admission's `pod-security.kubernetes.io/enforce: restricted`).
pub fn namespace(name: &str, labels: BTreeMap<String, String>) -> Namespace {
    Namespace {
        metadata: ObjectMeta { name: Some(name.to_owned()), labels: non_empty(labels), ..ObjectMeta::default() },
        spec: None,
        status: None,
    }
}

/// A ConfigMap of string data.
pub fn config_map(namespace: &ModelNamespace, name: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.as_str().to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// An `Opaque` Secret. The values travel base64-encoded in `data`, as the API
/// stores them; `Debug` of the result shows them, so never log it.
pub fn secret(namespace: &ModelNamespace, name: &str, data: BTreeMap<String, Vec<u8>>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.as_str().to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    }
}

/// The SHA-256 of a ConfigMap's data and binary data, in key order, as hex: the
/// same content gives the same checksum, any change gives another.
pub fn config_map_checksum(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config_map.data.iter().flatten() {
        feed(&mut hasher, b"d", key, value.as_bytes());
    }
    for (key, value) in config_map.binary_data.iter().flatten() {
        feed(&mut hasher, b"b", key, &value.0);
    }
    hex(&hasher.finalize())
}

/// The secret key of Secret checksums: at least 32 bytes, kept by the caller (for
/// instance in the deploy tool's own secret store), zeroed on drop, never printed.
///
/// ```
/// use deploy_k8s::manifest::ChecksumKey;
/// let key = ChecksumKey::new(vec![7u8; 32]).unwrap();
/// assert_eq!(format!("{key:?}"), "ChecksumKey([redacted])");
/// assert!(ChecksumKey::new(b"short".to_vec()).is_err());
/// ```
#[derive(Clone)]
pub struct ChecksumKey(Zeroizing<Vec<u8>>);

/// A checksum key that is too short to be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a secret checksum key needs at least {min} bytes, got {got}")]
#[non_exhaustive]
pub struct ChecksumKeyError {
    /// The least length accepted.
    pub min: usize,
    /// The length given.
    pub got: usize,
}

impl ChecksumKey {
    /// The least key length, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key of at least [`ChecksumKey::MIN_LEN`] bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, ChecksumKeyError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < Self::MIN_LEN {
            return Err(ChecksumKeyError { min: Self::MIN_LEN, got: bytes.len() });
        }
        Ok(Self(bytes))
    }

    /// The key's bytes, for MACs within the crate.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ChecksumKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChecksumKey([redacted])")
    }
}

/// The HMAC-SHA-256 under `key` of a Secret's data and string data, in key order,
/// as hex: the same content gives the same checksum, any change gives another, and
/// without the key the annotation cannot be used to test guesses of the values
/// (an unsalted hash of a short password can be, by anyone who can read
/// Deployments).
pub fn secret_checksum(secret: &Secret, key: &ChecksumKey) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else { return String::new() };
    let mut feed_mac = |tag: &[u8], name: &str, value: &[u8]| {
        mac.update(tag);
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(&(value.len() as u64).to_be_bytes());
        mac.update(value);
    };
    for (name, value) in secret.data.iter().flatten() {
        feed_mac(b"d", name, &value.0);
    }
    for (name, value) in secret.string_data.iter().flatten() {
        feed_mac(b"d", name, value.as_bytes());
    }
    hex(&mac.finalize().into_bytes())
}

/// A checksum of a Secret *as stored in the cluster*, from its UID and
/// resourceVersion only: it changes whenever the Secret is written (or replaced),
/// and says nothing about the values. `None` for a Secret that was not read back
/// from the API server (no UID or resourceVersion yet).
pub fn secret_revision_checksum(secret: &Secret) -> Option<String> {
    let uid = secret.metadata.uid.as_deref()?;
    let version = secret.metadata.resource_version.as_deref()?;
    let mut hasher = Sha256::new();
    feed(&mut hasher, b"u", uid, version.as_bytes());
    Some(hex(&hasher.finalize()))
}

/// Length-prefixed, so that `{"ab": "c"}` and `{"a": "bc"}` differ.
fn feed(hasher: &mut Sha256, tag: &[u8], key: &str, value: &[u8]) {
    hasher.update(tag);
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn checksum_changes_with_content_only() {
        let a = config_map(&"shop".parse().unwrap(), "web", data(&[("LOG_LEVEL", "info"), ("PORT", "8080")]));
        let same = config_map(&"other".parse().unwrap(), "renamed", data(&[("PORT", "8080"), ("LOG_LEVEL", "info")]));
        let changed = config_map(&"shop".parse().unwrap(), "web", data(&[("LOG_LEVEL", "debug"), ("PORT", "8080")]));
        let shifted = config_map(&"shop".parse().unwrap(), "web", data(&[("LOG_LEVE", "Linfo"), ("PORT", "8080")]));
        assert_eq!(config_map_checksum(&a), config_map_checksum(&same));
        assert_ne!(config_map_checksum(&a), config_map_checksum(&changed));
        assert_ne!(config_map_checksum(&a), config_map_checksum(&shifted));
        assert_eq!(config_map_checksum(&a).len(), 64);
    }

    fn key(byte: u8) -> ChecksumKey {
        ChecksumKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn secret_checksum_covers_data_and_string_data_alike() {
        let s = secret(&"shop".parse().unwrap(), "db", BTreeMap::from([("password".to_owned(), b"hunter2".to_vec())]));
        let mut as_string = secret(&"shop".parse().unwrap(), "db", BTreeMap::new());
        as_string.string_data = Some(data(&[("password", "hunter2")]));
        assert_eq!(secret_checksum(&s, &key(1)), secret_checksum(&as_string, &key(1)));
        assert!(!secret_checksum(&s, &key(1)).contains("hunter2"));
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
    }

    #[test]
    fn secret_checksum_is_keyed_so_a_guess_cannot_be_checked_without_the_key() {
        let s = secret(&"shop".parse().unwrap(), "db", BTreeMap::from([("password".to_owned(), b"hunter2".to_vec())]));
        let annotation = secret_checksum(&s, &key(1));
        assert_eq!(annotation.len(), 64);
        // What someone reading the Deployment could compute from a guessed value:
        // the unsalted hash of the old scheme, or the HMAC under another key.
        let mut unsalted = Sha256::new();
        feed(&mut unsalted, b"d", "password", b"hunter2");
        assert_ne!(annotation, hex(&unsalted.finalize()));
        assert_ne!(annotation, secret_checksum(&s, &key(2)));
        let changed =
            secret(&"shop".parse().unwrap(), "db", BTreeMap::from([("password".to_owned(), b"hunter3".to_vec())]));
        assert_ne!(annotation, secret_checksum(&changed, &key(1)));
        assert_eq!(ChecksumKey::new(vec![0; 31]).unwrap_err(), ChecksumKeyError { min: 32, got: 31 });
    }

    #[test]
    fn the_revision_checksum_uses_uid_and_resource_version_only() {
        let mut s =
            secret(&"shop".parse().unwrap(), "db", BTreeMap::from([("password".to_owned(), b"hunter2".to_vec())]));
        assert_eq!(secret_revision_checksum(&s), None, "not read back from the cluster");
        s.metadata.uid = Some("6c1b1d4e-0000-4000-8000-000000000001".to_owned());
        s.metadata.resource_version = Some("4711".to_owned());
        let first = secret_revision_checksum(&s).unwrap();
        s.data = None;
        assert_eq!(secret_revision_checksum(&s).unwrap(), first, "the values play no part");
        s.metadata.resource_version = Some("4712".to_owned());
        assert_ne!(secret_revision_checksum(&s).unwrap(), first);
    }

    #[test]
    fn namespace_keeps_its_labels() {
        let ns = namespace("shop", data(&[("environment", "production")]));
        assert_eq!(ns.metadata.labels.unwrap()["environment"], "production");
    }
}
