//! The Azure Key Vault secret manager against a loopback server built from Key
//! Vault's documented REST API (7.4), Entra ID's token endpoint and the instance
//! metadata service (`keyvault/mod.rs`): no real Key Vault can run here. Each test
//! reads back the server's own store, not only what the client reports.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
#![cfg(feature = "azure")]

mod keyvault;

use std::error::Error as _;
use std::time::{Duration, Instant};

use deploy_core::error::{Classify, ErrorKind};
use deploy_core::http_client::{HttpError, HttpPolicy};
use deploy_core::secret::{PutOptions, SecretBytes, SecretError, SecretManager, SecretString};
use deploy_core::testkit::trace::TraceCapture;
use deploy_security::secrets::{
    AzureAuth, AzureKeyVaultConfig, AzureKeyVaultError, AzureKeyVaultSecretManager, BASE64_CONTENT_TYPE,
};
use keyvault::{CLIENT_ID, CLIENT_SECRET, KeyVault, TENANT};

fn client_credentials(kv: &KeyVault, secret: &str) -> AzureAuth {
    AzureAuth::client_credentials(TENANT, CLIENT_ID, SecretString::from(secret)).endpoint(&kv.base)
}

fn manager_with(kv: &KeyVault, auth: AzureAuth) -> AzureKeyVaultSecretManager {
    // The default policy (10 s, 1 MiB answers, no redirects) with only plain http allowed.
    let config = AzureKeyVaultConfig::new(&kv.base, auth);
    let policy = config.http.clone().danger_allow_plain_http();
    AzureKeyVaultSecretManager::new(config.http(policy)).unwrap()
}

fn manager(kv: &KeyVault) -> AzureKeyVaultSecretManager {
    manager_with(kv, client_credentials(kv, CLIENT_SECRET))
}

fn bytes(text: &str) -> SecretBytes {
    SecretBytes::from(text.as_bytes().to_vec())
}

fn azure_error(error: &SecretError) -> &AzureKeyVaultError {
    error.source().and_then(|s| s.downcast_ref::<AzureKeyVaultError>()).unwrap_or_else(|| panic!("{error:?}"))
}

#[tokio::test]
async fn get_set_versions_list_with_paging_and_delete() {
    let kv = KeyVault::start().await;
    let vault = manager(&kv);

    assert_eq!(vault.put("db-password", bytes("one"), PutOptions::default().expect_version(0)).await.unwrap(), 1);
    assert_eq!(vault.put("db-password", bytes("two"), PutOptions::default().expect_version(1)).await.unwrap(), 2);
    assert_eq!(vault.put("db-password", bytes("three"), PutOptions::default()).await.unwrap(), 3);
    let err = vault.put("db-password", bytes("x"), PutOptions::default().expect_version(1)).await.unwrap_err();
    assert!(matches!(err, SecretError::VersionConflict { expected: 1, actual: 3, .. }), "{err:?}");
    // The server holds three versions, the newest last, each tagged with its number.
    kv.with(|s| {
        let versions = &s.secrets["db-password"];
        assert_eq!(versions.iter().map(|v| v.value.as_str()).collect::<Vec<_>>(), ["one", "two", "three"]);
        assert_eq!(versions[2].tags["deploy-rs-version"], "3");
    });

    let latest = vault.get("db-password").await.unwrap();
    assert_eq!((latest.value.expose_secret(), latest.version), (b"three".as_slice(), 3));
    // All three were created in the same second and listed newest first, with random
    // version ids: the numbers still follow the writes.
    assert_eq!(vault.get_version("db-password", 1).await.unwrap().value.expose_secret(), b"one");
    assert_eq!(vault.get_version("db-password", 2).await.unwrap().value.expose_secret(), b"two");
    assert!(vault.get_version("db-password", 7).await.unwrap_err().is_not_found());
    let versions = vault.versions("db-password").await.unwrap();
    let server_ids: Vec<String> = kv.with(|s| s.secrets["db-password"].iter().map(|v| v.id.clone()).collect());
    assert_eq!(versions.iter().map(|v| v.version.clone()).collect::<Vec<_>>(), server_ids);
    assert_eq!(versions[0].attributes.recovery_level.as_deref(), Some("Recoverable+Purgeable"));
    assert_eq!(versions[0].attributes.enabled, Some(true));

    // Bytes that are not text travel as base64 with a content type.
    vault.put("blob", SecretBytes::from(vec![0u8, 159, 146, 150]), PutOptions::default()).await.unwrap();
    assert_eq!(vault.get("blob").await.unwrap().value.expose_secret(), &[0u8, 159, 146, 150]);
    kv.with(|s| {
        let stored = &s.secrets["blob"][0];
        assert_eq!((stored.value.as_str(), stored.content_type.as_deref()), ("AJ+Slg==", Some(BASE64_CONTENT_TYPE)));
    });

    for name in ["api-key", "web-cert", "zz-last"] {
        vault.put(name, bytes("v"), PutOptions::default()).await.unwrap();
    }
    let before = kv.with(|s| s.log.iter().filter(|l| *l == "GET /secrets").count());
    assert_eq!(vault.list().await.unwrap(), ["api-key", "blob", "db-password", "web-cert", "zz-last"]);
    let pages = kv.with(|s| s.log.iter().filter(|l| *l == "GET /secrets").count()) - before;
    assert_eq!(pages, 3, "5 secrets, 2 a page: three pages followed through nextLink");

    let err = vault.get("db/password").await.unwrap_err();
    assert!(matches!(err, SecretError::InvalidKey { .. }), "{err:?}");
    assert!(vault.get("missing").await.unwrap_err().is_not_found());

    vault.delete("db-password").await.unwrap();
    vault.delete("db-password").await.unwrap();
    vault.delete("never-existed").await.unwrap();
    assert!(vault.get("db-password").await.unwrap_err().is_not_found());
    kv.with(|s| {
        assert!(!s.secrets.contains_key("db-password"));
        assert_eq!(s.deleted["db-password"].len(), 3, "soft-deleted with its versions");
    });
    assert!(!vault.list().await.unwrap().contains(&"db-password".to_owned()));
}

#[tokio::test]
async fn soft_deleted_name_conflicts_then_recover_and_purge() {
    let kv = KeyVault::start().await;
    let vault = manager(&kv);
    vault.put("tls-key", bytes("k1"), PutOptions::default()).await.unwrap();
    vault.put("tls-key", bytes("k2"), PutOptions::default()).await.unwrap();

    let deleted = vault.delete_secret("tls-key").await.unwrap();
    assert_eq!(deleted.recovery_id, Some(format!("{}/deletedsecrets/tls-key", kv.base)));
    assert!(deleted.scheduled_purge_date > deleted.deleted_date);

    let err = vault.put("tls-key", bytes("k3"), PutOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "not retryable: {err:?}");
    assert!(
        matches!(azure_error(&err), AzureKeyVaultError::DeletedButRecoverable { name } if name == "tls-key"),
        "{err:?}"
    );
    assert!(err.to_string().contains("tls-key"), "{err}");

    vault.recover("tls-key").await.unwrap();
    let recovered = vault.get("tls-key").await.unwrap();
    assert_eq!((recovered.value.expose_secret(), recovered.version), (b"k2".as_slice(), 2));
    assert_eq!(vault.get_version("tls-key", 1).await.unwrap().value.expose_secret(), b"k1");
    assert!(kv.with(|s| s.deleted.is_empty()));

    vault.delete("tls-key").await.unwrap();
    vault.purge("tls-key").await.unwrap();
    assert!(kv.with(|s| s.deleted.is_empty() && !s.secrets.contains_key("tls-key")));
    assert!(vault.purge("tls-key").await.unwrap_err().is_not_found());
    assert!(vault.recover("tls-key").await.unwrap_err().is_not_found());
    // The name is free again and starts over.
    assert_eq!(vault.put("tls-key", bytes("k3"), PutOptions::default()).await.unwrap(), 1);
    assert_eq!(kv.with(|s| s.secrets["tls-key"].len()), 1);
}

#[tokio::test]
async fn throttling_waits_retry_after_then_gives_a_retryable_error() {
    let kv = KeyVault::start().await;
    let vault = manager(&kv);
    vault.put("rate", bytes("r"), PutOptions::default()).await.unwrap();

    kv.with(|s| (s.throttle, s.retry_after) = (2, 1));
    let started = Instant::now();
    let before = kv.with(|s| s.log.len());
    assert_eq!(vault.get("rate").await.unwrap().value.expose_secret(), b"r");
    assert!(started.elapsed() >= Duration::from_secs(2), "waited {:?}, not Retry-After twice", started.elapsed());
    assert_eq!(kv.with(|s| s.log.len()) - before, 3, "two throttled requests, then the one that passed");

    let limited = AzureKeyVaultSecretManager::new(
        AzureKeyVaultConfig::new(&kv.base, client_credentials(&kv, CLIENT_SECRET))
            .throttling(2, Duration::from_secs(5))
            .http(HttpPolicy::default().danger_allow_plain_http()),
    )
    .unwrap();
    kv.with(|s| (s.throttle, s.retry_after) = (100, 0));
    let err = limited.get("rate").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(matches!(azure_error(&err), AzureKeyVaultError::Throttled { attempts: 3, .. }), "{err:?}");

    // A Retry-After beyond the longest wait fails at once.
    kv.with(|s| (s.throttle, s.retry_after) = (100, 3600));
    let started = Instant::now();
    let err = limited.get("rate").await.unwrap_err();
    assert!(matches!(azure_error(&err), AzureKeyVaultError::Throttled { attempts: 1, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn client_credential_tokens_are_cached_refreshed_near_expiry_and_after_a_401() {
    let kv = KeyVault::start().await;
    let vault = manager(&kv);
    vault.put("a", bytes("1"), PutOptions::default()).await.unwrap();
    vault.get("a").await.unwrap();
    vault.list().await.unwrap();
    assert_eq!(kv.with(|s| s.client_credential_requests), 1, "a 3599 s token is reused");
    assert_eq!(vault.auth_stats().fetches, 1);

    // The vault stops accepting the token (revoked): one 401, a new token, success.
    kv.with(|s| s.valid_tokens.clear());
    assert_eq!(vault.get("a").await.unwrap().value.expose_secret(), b"1");
    assert_eq!(kv.with(|s| s.client_credential_requests), 2);
    let stats = vault.auth_stats();
    assert_eq!((stats.fetches, stats.rejected), (2, 1));

    // Tokens that expire within the refresh margin (5 min) are replaced at each use.
    kv.with(|s| s.token_expires_in = 120);
    let short = manager(&kv);
    for _ in 0..3 {
        short.get("a").await.unwrap();
    }
    assert_eq!(kv.with(|s| s.client_credential_requests), 2 + 3);

    // A wrong client secret is refused by the token endpoint: Unauthorized, secret not named.
    let wrong = manager_with(&kv, client_credentials(&kv, "wr0ng-cl1ent-secret"));
    let err = wrong.get("a").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err:?}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!format!("{err:?}{err}").contains("wr0ng-cl1ent-secret"));

    // A static token the vault refuses is not retried: there is nothing to fetch.
    let fixed = manager_with(&kv, AzureAuth::access_token(SecretString::from("not-a-valid-token")));
    let err = fixed.get("a").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert_eq!(fixed.auth_stats().fetches, 0);
}

#[tokio::test]
async fn managed_identity_tokens_come_from_the_metadata_endpoint() {
    let kv = KeyVault::start().await;
    let vault = manager_with(&kv, AzureAuth::managed_identity().endpoint(kv.identity_endpoint()));
    vault.put("mi", bytes("from-imds"), PutOptions::default()).await.unwrap();
    assert_eq!(vault.get("mi").await.unwrap().value.expose_secret(), b"from-imds");
    kv.with(|s| {
        assert_eq!(s.identity_requests.len(), 1, "the 86399 s token is cached: {:?}", s.identity_requests);
        assert_eq!(s.client_credential_requests, 0);
        assert_eq!(s.secrets["mi"][0].value, "from-imds");
    });

    let user_assigned =
        manager_with(&kv, AzureAuth::managed_identity().endpoint(kv.identity_endpoint()).user_assigned("mi-client-7"));
    user_assigned.get("mi").await.unwrap();
    assert!(kv.with(|s| s.identity_requests[1].contains("mi-client-7")));

    // Plain http to the metadata service is allowed only on link-local or loopback.
    let policy = HttpPolicy::default();
    let err = AzureKeyVaultSecretManager::new(
        AzureKeyVaultConfig::new(
            "https://myvault.vault.azure.net",
            AzureAuth::managed_identity().endpoint("http://10.1.2.3/token"),
        )
        .http(policy.clone()),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    AzureKeyVaultSecretManager::new(AzureKeyVaultConfig::new(
        "https://myvault.vault.azure.net",
        AzureAuth::managed_identity(),
    ))
    .unwrap();
}

#[tokio::test]
async fn policy_refuses_plain_http_and_foreign_paging_links() {
    let kv = KeyVault::start().await;
    let err =
        AzureKeyVaultSecretManager::new(AzureKeyVaultConfig::new(&kv.base, client_credentials(&kv, CLIENT_SECRET)))
            .unwrap_err();
    let source = err.source().and_then(|s| s.downcast_ref::<HttpError>());
    assert!(matches!(source, Some(HttpError::PlainHttpRefused { .. })), "{err:?}");

    let vault = manager(&kv);
    for name in ["a", "b", "c"] {
        vault.put(name, bytes("v"), PutOptions::default()).await.unwrap();
    }
    kv.with(|s| s.foreign_next_link = true);
    let before = kv.with(|s| s.log.len());
    let err = vault.list().await.unwrap_err();
    assert!(
        matches!(azure_error(&err), AzureKeyVaultError::ForeignNextLink { origin } if origin == "https://attacker.example:443"),
        "{err:?}"
    );
    assert_eq!(kv.with(|s| s.log.len()) - before, 1, "only the first page was asked for");
}

#[tokio::test]
async fn no_token_client_secret_or_value_is_traced() {
    let kv = KeyVault::start().await;
    let capture = TraceCapture::default();
    let _guard = capture.set_default();
    let vault = manager(&kv);
    vault.put("traced", bytes("v4lue-s3cret"), PutOptions::default()).await.unwrap();
    vault.get("traced").await.unwrap();
    vault.get_version("traced", 1).await.unwrap();
    kv.with(|s| s.valid_tokens.clear());
    vault.get("traced").await.unwrap();
    let _ = vault.put("traced", bytes("v4lue-s3cret"), PutOptions::default().expect_version(7)).await;
    vault.delete("traced").await.unwrap();
    let _ = vault.put("traced", bytes("v4lue-s3cret"), PutOptions::default()).await;
    let _ = manager_with(&kv, client_credentials(&kv, "wr0ng-cl1ent-secret")).get("traced").await;
    let _ = manager_with(&kv, AzureAuth::access_token(SecretString::from("st4tic-t0ken"))).get("traced").await;
    let issued = kv.with(|s| s.issued.clone());
    assert_eq!(issued.len(), 2);
    assert!(!format!("{vault:?}").contains(CLIENT_SECRET));
    let mut secrets = vec![CLIENT_SECRET, "wr0ng-cl1ent-secret", "st4tic-t0ken", "v4lue-s3cret"];
    secrets.extend(issued.iter().map(String::as_str));
    capture.assert_free_of(&secrets);
}

#[tokio::test]
async fn redirects_are_refused_and_bodies_bounded() {
    let kv = KeyVault::start().await;
    let elsewhere = KeyVault::start().await;
    let vault = manager(&kv);
    kv.insert("big", &"x".repeat(1536 * 1024));
    let err = vault.get_version("big", 1).await.unwrap_err();
    let source = err.source().and_then(|s| s.downcast_ref::<HttpError>());
    assert!(matches!(source, Some(HttpError::BodyTooLarge { limit: 1_048_576 })), "{err:?}");

    kv.with(|s| s.redirect_to = Some(format!("{}/secrets/big?api-version=7.4", elsewhere.base)));
    let err = vault.get("big").await.unwrap_err();
    let source = err.source().and_then(|s| s.downcast_ref::<HttpError>());
    assert!(matches!(source, Some(HttpError::RedirectRefused { status: 307, .. })), "{err:?}");
    assert!(elsewhere.with(|s| s.log.is_empty()), "the bearer token followed a redirect");
}

#[tokio::test]
async fn a_metadata_token_with_only_expires_on_is_cached_until_then() {
    let kv = KeyVault::start().await;
    kv.with(|s| s.identity_omits_expires_in = true);
    let vault = manager_with(&kv, AzureAuth::managed_identity().endpoint(kv.identity_endpoint()));
    vault.put("on", bytes("1"), PutOptions::default()).await.unwrap();
    vault.get("on").await.unwrap();
    assert_eq!(kv.with(|s| s.identity_requests.len()), 1);

    // expires_on 2 minutes away: within the refresh margin, so fetched at each use.
    kv.with(|s| s.token_expires_in = 120);
    let short = manager_with(&kv, AzureAuth::managed_identity().endpoint(kv.identity_endpoint()));
    short.get("on").await.unwrap();
    short.get("on").await.unwrap();
    assert_eq!(kv.with(|s| s.identity_requests.len()), 3);
}
