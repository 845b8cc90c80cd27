//! The Vault KV v2 secret manager against a local HTTP server that implements the KV v2
//! endpoints it uses, answering with Vault's JSON shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
#![cfg(feature = "vault")]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use deploy_core::error::Classify;
use deploy_core::http_client::{HttpError, HttpPolicy};
use deploy_core::secret::{PutOptions, SecretBytes, SecretError, SecretManager, SecretString};
use deploy_security::secrets::{VaultConfig, VaultSecretManager};
use serde_json::{Value, json};

const TOKEN: &str = "hvs.test-token";

/// Versions of each path: `None` for a soft-deleted version.
type Store = Arc<Mutex<HashMap<String, Vec<Option<Value>>>>>;

fn envelope(data: Value) -> Value {
    json!({ "request_id": "5c5c3a3f-8b1e-4b3a-9b0a-3c3f4c9b1e2a", "lease_id": "", "renewable": false,
            "lease_duration": 0, "data": data, "wrap_info": null, "warnings": null, "auth": null, "mount_type": "kv" })
}

fn errors(status: StatusCode, messages: &[&str]) -> Response {
    (status, Json(json!({ "errors": messages }))).into_response()
}

fn version_meta(version: usize, deleted: bool) -> Value {
    json!({ "created_time": "2024-06-12T09:21:33.104882Z", "custom_metadata": null,
            "deletion_time": if deleted { "2024-06-12T10:00:00Z" } else { "" }, "destroyed": false, "version": version })
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("x-vault-token").is_some_and(|v| v == TOKEN)
}

async fn read_data(
    State(store): State<Store>,
    headers: HeaderMap,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    let store = store.lock().unwrap();
    let Some(versions) = store.get(&path) else { return errors(StatusCode::NOT_FOUND, &[]) };
    let version = query.get("version").and_then(|v| v.parse::<usize>().ok()).unwrap_or(versions.len());
    match versions.get(version.wrapping_sub(1)) {
        Some(Some(data)) => {
            Json(envelope(json!({ "data": data, "metadata": version_meta(version, false) }))).into_response()
        }
        Some(None) => {
            (StatusCode::NOT_FOUND, Json(envelope(json!({ "data": null, "metadata": version_meta(version, true) }))))
                .into_response()
        }
        None => errors(StatusCode::NOT_FOUND, &[]),
    }
}

async fn write_data(
    State(store): State<Store>,
    headers: HeaderMap,
    Path(path): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    let mut store = store.lock().unwrap();
    let versions = store.entry(path).or_default();
    if let Some(cas) = body["options"]["cas"].as_u64()
        && cas != versions.len() as u64
    {
        return errors(StatusCode::BAD_REQUEST, &["check-and-set parameter did not match the current version"]);
    }
    versions.push(Some(body["data"].clone()));
    Json(envelope(version_meta(versions.len(), false))).into_response()
}

async fn metadata(
    State(store): State<Store>,
    headers: HeaderMap,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    let store = store.lock().unwrap();
    if query.get("list").is_some_and(|v| v == "true") {
        let folder = format!("{}/", path.trim_end_matches('/'));
        let mut keys: Vec<String> = store
            .keys()
            .filter_map(|k| k.strip_prefix(&folder))
            .map(|rest| match rest.split_once('/') {
                Some((dir, _)) => format!("{dir}/"),
                None => rest.to_owned(),
            })
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return errors(StatusCode::NOT_FOUND, &[]);
        }
        return Json(envelope(json!({ "keys": keys }))).into_response();
    }
    let Some(versions) = store.get(&path) else { return errors(StatusCode::NOT_FOUND, &[]) };
    let listed: serde_json::Map<String, Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut meta = version_meta(i + 1, v.is_none());
            meta.as_object_mut().unwrap().remove("version");
            meta.as_object_mut().unwrap().remove("custom_metadata");
            ((i + 1).to_string(), meta)
        })
        .collect();
    Json(envelope(json!({
        "cas_required": false, "created_time": "2024-06-12T09:21:33.104882Z", "current_version": versions.len(),
        "custom_metadata": null, "delete_version_after": "0s", "max_versions": 0, "oldest_version": 0,
        "updated_time": "2024-06-12T09:21:33.104882Z", "versions": listed
    })))
    .into_response()
}

async fn delete_metadata(State(store): State<Store>, headers: HeaderMap, Path(path): Path<String>) -> Response {
    if !authorized(&headers) {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    store.lock().unwrap().remove(&path);
    StatusCode::NO_CONTENT.into_response()
}

/// A KV v2 server on a free loopback port; stops when the test's runtime ends.
async fn start_vault() -> (String, Store) {
    let store: Store = Arc::default();
    let app = axum::Router::new()
        .route("/v1/secret/data/{*path}", get(read_data).post(write_data))
        .route("/v1/secret/metadata/{*path}", get(metadata).delete(delete_metadata))
        .with_state(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, store)
}

fn manager(address: &str, token: &str) -> VaultSecretManager {
    VaultSecretManager::new(
        VaultConfig::new(address, SecretString::from(token))
            .prefix("apps")
            .http(HttpPolicy::default().danger_allow_plain_http()),
    )
    .unwrap()
}

#[tokio::test]
async fn put_get_versions_check_and_set_list_delete() {
    let (address, store) = start_vault().await;
    let vault = manager(&address, TOKEN);

    assert_eq!(
        vault
            .put("checkout/db", SecretBytes::from(b"one".to_vec()), PutOptions::default().expect_version(0))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        vault
            .put("checkout/db", SecretBytes::from(b"two".to_vec()), PutOptions::default().expect_version(1))
            .await
            .unwrap(),
        2
    );
    let err = vault
        .put("checkout/db", SecretBytes::from(b"x".to_vec()), PutOptions::default().expect_version(1))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretError::VersionConflict { expected: 1, actual: 2, .. }), "{err:?}");

    let latest = vault.get("checkout/db").await.unwrap();
    assert_eq!((latest.value.expose_secret(), latest.version), (b"two".as_slice(), 2));
    assert_eq!(vault.get_version("checkout/db", 1).await.unwrap().value.expose_secret(), b"one");
    assert!(vault.get_version("checkout/db", 7).await.unwrap_err().is_not_found());

    // Bytes that are not text travel as base64.
    vault.put("checkout/blob", SecretBytes::from(vec![0u8, 159, 146, 150]), PutOptions::default()).await.unwrap();
    assert_eq!(vault.get("checkout/blob").await.unwrap().value.expose_secret(), &[0u8, 159, 146, 150]);
    assert!(store.lock().unwrap()["apps/checkout/blob"][0].as_ref().unwrap()["value_base64"].is_string());

    vault.put("web", SecretBytes::from(b"w".to_vec()), PutOptions::default()).await.unwrap();
    assert_eq!(vault.list().await.unwrap(), ["checkout/blob", "checkout/db", "web"]);

    let meta = vault.metadata("checkout/db").await.unwrap();
    assert_eq!(meta.current_version, 2);
    assert_eq!(meta.versions.keys().copied().collect::<Vec<_>>(), [1, 2]);

    vault.delete("checkout/db").await.unwrap();
    vault.delete("checkout/db").await.unwrap();
    assert!(vault.get("checkout/db").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn soft_deleted_versions_are_not_found() {
    let (address, store) = start_vault().await;
    let vault = manager(&address, TOKEN);
    vault.put("a", SecretBytes::from(b"1".to_vec()), PutOptions::default()).await.unwrap();
    vault.put("a", SecretBytes::from(b"2".to_vec()), PutOptions::default()).await.unwrap();
    store.lock().unwrap().get_mut("apps/a").unwrap()[0] = None;
    assert!(vault.get_version("a", 1).await.unwrap_err().is_not_found());
    assert!(vault.metadata("a").await.unwrap().versions[&1].deletion_time.starts_with("2024"));
}

#[tokio::test]
async fn rotate_one_field_keeps_the_others_and_uses_check_and_set() {
    let (address, _store) = start_vault().await;
    let vault = manager(&address, TOKEN);
    let fields = BTreeMap::from([
        ("username".to_owned(), SecretString::from("checkout")),
        ("password".to_owned(), SecretString::from("old-password")),
    ]);
    assert_eq!(vault.write_fields("checkout/db", &fields, Some(0)).await.unwrap(), 1);

    assert_eq!(vault.rotate_field("checkout/db", "password", None).await.unwrap(), 2);
    let rotated = vault.read_fields("checkout/db", None).await.unwrap();
    assert_eq!(rotated.fields["username"].expose_secret(), "checkout");
    let password = rotated.fields["password"].expose_secret();
    assert_ne!(password, "old-password");
    assert_eq!(password.len(), 43, "32 random bytes, URL-safe base64");

    assert_eq!(vault.rotate_field("checkout/db", "password", Some(SecretString::from("chosen"))).await.unwrap(), 3);
    assert_eq!(vault.read_fields("checkout/db", None).await.unwrap().fields["password"].expose_secret(), "chosen");
    assert_eq!(
        vault.read_fields("checkout/db", Some(1)).await.unwrap().fields["password"].expose_secret(),
        "old-password"
    );
    assert!(vault.rotate_field("missing", "password", None).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_the_token_never_prints() {
    let (address, _store) = start_vault().await;
    let vault = manager(&address, "hvs.wrong");
    let err = vault.get("a").await.unwrap_err();
    assert_eq!(err.kind(), deploy_core::error::ErrorKind::Unauthorized);
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(!format!("{err:?} {vault:?}").contains("hvs.wrong"));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = manager(&address, TOKEN).get("a").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

/// A server that answers every request with `status` and a `Location` on `target`.
async fn start_redirector(status: StatusCode, target: String) -> String {
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (status, [("location", format!("{target}/v1/secret/data/apps/stolen"))]).into_response() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// Every request another host receives: its headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

async fn start_collector() -> (String, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((headers, body));
            Json(envelope(version_meta(1, false)))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, received)
}

#[tokio::test]
async fn a_redirect_to_another_host_never_sees_the_token_or_the_secret() {
    let (elsewhere, received) = start_collector().await;
    for status in [StatusCode::TEMPORARY_REDIRECT, StatusCode::PERMANENT_REDIRECT, StatusCode::FOUND] {
        let address = start_redirector(status, elsewhere.clone()).await;
        let vault = manager(&address, TOKEN);
        let err = vault
            .put("checkout/db", SecretBytes::from(b"the-secret-value".to_vec()), PutOptions::default())
            .await
            .unwrap_err();
        let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<HttpError>());
        assert!(
            matches!(source, Some(HttpError::RedirectRefused { status: s, .. }) if *s == status.as_u16()),
            "{err:?}"
        );
        let text = format!("{err} {err:?}");
        assert!(!text.contains(TOKEN) && !text.contains("the-secret-value"), "{text}");
        assert!(vault.get("checkout/db").await.is_err());
    }
    assert!(received.lock().unwrap().is_empty(), "the other host received {:?}", received.lock().unwrap());
}

#[tokio::test]
async fn a_plain_http_address_needs_the_named_opt_out() {
    let err = VaultSecretManager::new(VaultConfig::new("http://vault.example.com:8200", SecretString::from(TOKEN)))
        .unwrap_err();
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<HttpError>());
    assert!(matches!(source, Some(HttpError::PlainHttpRefused { .. })), "{err:?}");
    VaultSecretManager::new(VaultConfig::new("https://vault.example.com:8200", SecretString::from(TOKEN))).unwrap();
}

#[tokio::test]
async fn an_answer_over_the_cap_is_the_typed_error() {
    let (address, _store) = start_vault().await;
    let vault = VaultSecretManager::new(
        VaultConfig::new(&address, SecretString::from(TOKEN))
            .http(HttpPolicy::default().danger_allow_plain_http().max_body_bytes(512)),
    )
    .unwrap();
    vault.put("big", SecretBytes::from(vec![b'x'; 2048]), PutOptions::default()).await.unwrap();
    let err = vault.get("big").await.unwrap_err();
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<HttpError>());
    assert!(matches!(source, Some(HttpError::BodyTooLarge { limit: 512 })), "{err:?}");
    assert!(err.to_string().contains("read a vault secret"), "{err}");
}
