//! Namespaces, ConfigMaps and Secrets, and the checksums that restart pods when the
//! configuration they read changes.

use std::collections::BTreeMap;

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
pub fn config_map(namespace: &str, name: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// An `Opaque` Secret. The values travel base64-encoded in `data`, as the API
/// stores them; `Debug` of the result shows them, so never log it.
pub fn secret(namespace: &str, name: &str, data: BTreeMap<String, Vec<u8>>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
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

/// The SHA-256 of a Secret's data and string data, in key order, as hex. The
/// checksum reveals nothing usable about the values.
pub fn secret_checksum(secret: &Secret) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in secret.data.iter().flatten() {
        feed(&mut hasher, b"d", key, &value.0);
    }
    for (key, value) in secret.string_data.iter().flatten() {
        feed(&mut hasher, b"d", key, value.as_bytes());
    }
    hex(&hasher.finalize())
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
        let a = config_map("shop", "web", data(&[("LOG_LEVEL", "info"), ("PORT", "8080")]));
        let same = config_map("other", "renamed", data(&[("PORT", "8080"), ("LOG_LEVEL", "info")]));
        let changed = config_map("shop", "web", data(&[("LOG_LEVEL", "debug"), ("PORT", "8080")]));
        let shifted = config_map("shop", "web", data(&[("LOG_LEVE", "Linfo"), ("PORT", "8080")]));
        assert_eq!(config_map_checksum(&a), config_map_checksum(&same));
        assert_ne!(config_map_checksum(&a), config_map_checksum(&changed));
        assert_ne!(config_map_checksum(&a), config_map_checksum(&shifted));
        assert_eq!(config_map_checksum(&a).len(), 64);
    }

    #[test]
    fn secret_checksum_covers_data_and_string_data_alike() {
        let s = secret("shop", "db", BTreeMap::from([("password".to_owned(), b"hunter2".to_vec())]));
        let mut as_string = secret("shop", "db", BTreeMap::new());
        as_string.string_data = Some(data(&[("password", "hunter2")]));
        assert_eq!(secret_checksum(&s), secret_checksum(&as_string));
        assert!(!secret_checksum(&s).contains("hunter2"));
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
    }

    #[test]
    fn namespace_keeps_its_labels() {
        let ns = namespace("shop", data(&[("environment", "production")]));
        assert_eq!(ns.metadata.labels.unwrap()["environment"], "production");
    }
}
