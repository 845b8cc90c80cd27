//! The Kubernetes Secret manager through `kube::Client` over a scripted `tower-test`
//! API server (kube-rs's ApiServerVerifier pattern) answering with real-shaped JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
#![cfg(feature = "kubernetes")]

use std::time::Duration;

use deploy_core::error::Classify;
use deploy_core::secret::{PutOptions, SecretBytes, SecretError, SecretManager};
use deploy_security::secrets::{KubernetesSecretConfig, KubernetesSecretManager};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn client() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

fn secret_json(name: &str, key: &str, version: u64, value_b64: &str, resource_version: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": name, "namespace": "shop", "uid": "6f1c2d3e-0000-4a5b-8c9d-0123456789ab",
            "resourceVersion": resource_version, "creationTimestamp": "2024-06-12T09:21:33Z",
            "labels": { "app.kubernetes.io/managed-by": "deploy-rs", "deploy-rs.io/secret-store": "default" },
            "annotations": { "deploy-rs.io/secret-key": key, "deploy-rs.io/secret-version": version.to_string() }
        },
        "data": { "value": value_b64 }
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code })
}

/// Expects the next request, checks it, and answers.
async fn expect(handle: &mut Handle, method: &str, path_and_query: &str, answer_status: u16, answer: Value) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("the client sent no request in time")
        .expect("the client hung up");
    assert_eq!(request.method().as_str(), method);
    assert_eq!(request.uri().path_and_query().unwrap().as_str(), path_and_query);
    let body = request.into_body().collect_bytes().await.unwrap();
    let sent = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
    let response = Response::builder()
        .status(StatusCode::from_u16(answer_status).unwrap())
        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
        .unwrap();
    send.send_response(response);
    sent
}

const OBJECT: &str = "/api/v1/namespaces/shop/secrets/deploy-db.password";

#[tokio::test]
async fn create_then_read_then_update_with_check_and_set() {
    let (client, mut handle) = client();
    let store = KubernetesSecretManager::new(client, KubernetesSecretConfig::new("shop"));

    let server = tokio::spawn(async move {
        // put, key absent: GET 404, then POST.
        expect(&mut handle, "GET", OBJECT, 404, status(404, "NotFound", "secrets \"deploy-db.password\" not found"))
            .await;
        let created = expect(
            &mut handle,
            "POST",
            "/api/v1/namespaces/shop/secrets?",
            201,
            secret_json("deploy-db.password", "db/password", 1, "aHVudGVyMg==", "1001"),
        )
        .await;
        assert_eq!(created["metadata"]["name"], "deploy-db.password");
        assert_eq!(created["metadata"]["annotations"]["deploy-rs.io/secret-key"], "db/password");
        assert_eq!(created["metadata"]["annotations"]["deploy-rs.io/secret-version"], "1");
        assert_eq!(created["metadata"]["labels"]["deploy-rs.io/secret-store"], "default");
        assert_eq!(created["data"]["value"], "aHVudGVyMg==", "hunter2, base64");
        assert_eq!(created["type"], "Opaque");

        // get.
        expect(
            &mut handle,
            "GET",
            OBJECT,
            200,
            secret_json("deploy-db.password", "db/password", 1, "aHVudGVyMg==", "1001"),
        )
        .await;

        // put with expected version 1: GET, then PUT carrying the resourceVersion.
        expect(
            &mut handle,
            "GET",
            OBJECT,
            200,
            secret_json("deploy-db.password", "db/password", 1, "aHVudGVyMg==", "1001"),
        )
        .await;
        let replaced = expect(
            &mut handle,
            "PUT",
            &format!("{OBJECT}?"),
            200,
            secret_json("deploy-db.password", "db/password", 2, "bmV3", "1002"),
        )
        .await;
        assert_eq!(replaced["metadata"]["resourceVersion"], "1001");
        assert_eq!(replaced["metadata"]["annotations"]["deploy-rs.io/secret-version"], "2");

        // put with a stale expected version: only the GET, no write.
        expect(&mut handle, "GET", OBJECT, 200, secret_json("deploy-db.password", "db/password", 2, "bmV3", "1002"))
            .await;
        handle
    });

    let v = store
        .put("db/password", SecretBytes::from(b"hunter2".to_vec()), PutOptions::default().expect_version(0))
        .await
        .unwrap();
    assert_eq!(v, 1);
    let secret = store.get("db/password").await.unwrap();
    assert_eq!((secret.value.expose_secret(), secret.version), (b"hunter2".as_slice(), 1));
    assert_eq!(
        store
            .put("db/password", SecretBytes::from(b"new".to_vec()), PutOptions::default().expect_version(1))
            .await
            .unwrap(),
        2
    );
    let err = store
        .put("db/password", SecretBytes::from(b"x".to_vec()), PutOptions::default().expect_version(1))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretError::VersionConflict { expected: 1, actual: 2, .. }), "{err:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn a_concurrent_writer_makes_the_api_server_answer_409_which_is_a_version_conflict() {
    let (client, mut handle) = client();
    let store = KubernetesSecretManager::new(client, KubernetesSecretConfig::new("shop"));
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", OBJECT, 200, secret_json("deploy-db.password", "db/password", 3, "YQ==", "77"))
            .await;
        expect(&mut handle, "PUT", &format!("{OBJECT}?"), 409, status(409, "Conflict",
            "Operation cannot be fulfilled on secrets \"deploy-db.password\": the object has been modified; please apply your changes to the latest version and try again")).await;
    });
    let err = store.put("db/password", SecretBytes::from(b"b".to_vec()), PutOptions::default()).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn list_by_store_label_and_delete_only_what_belongs_to_the_key() {
    let (client, mut handle) = client();
    let store = KubernetesSecretManager::new(client, KubernetesSecretConfig::new("shop"));
    let server = tokio::spawn(async move {
        let list = json!({ "apiVersion": "v1", "kind": "SecretList", "metadata": { "resourceVersion": "900" }, "items": [
            secret_json("deploy-web", "web", 1, "YQ==", "10"),
            secret_json("deploy-db.password", "db/password", 4, "YQ==", "11"),
        ]});
        expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/shop/secrets?&labelSelector=deploy-rs.io%2Fsecret-store%3Ddefault",
            200,
            list,
        )
        .await;

        expect(&mut handle, "GET", OBJECT, 200, secret_json("deploy-db.password", "db/password", 4, "YQ==", "11"))
            .await;
        let params = expect(&mut handle, "DELETE", &format!("{OBJECT}?"), 200, status(200, "", "")).await;
        assert_eq!(params["preconditions"]["uid"], "6f1c2d3e-0000-4a5b-8c9d-0123456789ab");

        // A Secret of that name that belongs to another key is not touched.
        expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/shop/secrets/deploy-web",
            200,
            secret_json("deploy-web", "WEB", 1, "YQ==", "12"),
        )
        .await;
        // Deleting a missing key succeeds.
        expect(&mut handle, "GET", OBJECT, 404, status(404, "NotFound", "not found")).await;
    });
    assert_eq!(store.list().await.unwrap(), ["db/password", "web"]);
    store.delete("db/password").await.unwrap();
    let err = store.delete("web").await.unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    store.delete("db/password").await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn keys_that_cannot_be_object_names_are_invalid() {
    let (client, _handle) = client();
    let store = KubernetesSecretManager::new(client, KubernetesSecretConfig::new("shop"));
    assert_eq!(store.object_name("db/Password_1").unwrap(), "deploy-db.password-1");
    for bad in ["a/-b", "a/b-", "../x"] {
        assert!(matches!(store.object_name(bad), Err(SecretError::InvalidKey { .. })), "{bad}");
    }
}

/// Issue 19: the store against the project's real test API server
/// (`DEPLOY_RS_KUBECONFIG`, started by scripts/test.sh): write, rewrite with
/// check-and-set, read, read a version, list, a conflict, delete, a missing key. The
/// server holds the value as the Secret's data; no trace line (every level, TRACE
/// included: kube's and hyper's), no error and no Debug shows a value (raw or
/// base64, as the API carries it) or the client's bearer token.
#[tokio::test]
async fn a_full_run_on_the_real_api_server_traces_no_value_or_token() {
    use base64::Engine as _;
    use k8s_openapi::api::core::v1::{Namespace, Secret as KubeSecret};
    use kube::api::{Api, DeleteParams, PostParams};
    const MISSING: &str = "the Kubernetes test cluster is not available: `./scripts/test.sh` builds and starts it \
        (or `scripts/kube-test-cluster.sh start` and set DEPLOY_RS_KUBECONFIG to its kubeconfig); see docs/kubernetes.md";
    let path = std::env::var_os("DEPLOY_RS_KUBECONFIG").unwrap_or_else(|| panic!("{MISSING}"));
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("{MISSING}: {e}"));
    let client_token = kubeconfig.auth_infos[0]
        .auth_info
        .as_ref()
        .and_then(|a| a.token.as_ref())
        .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned());
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{MISSING}: {e}"));
    let capture = deploy_core::testkit::trace::TraceCapture::default();
    let guard = capture.set_default();
    let client = kube::Client::try_from(config).unwrap();
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).unwrap();
    let tag = format!("{:08x}", u32::from_le_bytes(bytes));
    let namespace = format!("t-secret-traces-{tag}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": namespace } })).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap_or_else(|e| panic!("{MISSING}: {e}"));

    let (first, second) = (format!("s3cr3t-first-{tag}"), format!("s3cr3t-second-{tag}"));
    let store = KubernetesSecretManager::new(client.clone(), KubernetesSecretConfig::new(&namespace));
    let mut printed = vec![format!("{store:?}")];
    let v1 =
        store.put("db/password", SecretBytes::from(first.as_bytes().to_vec()), PutOptions::default()).await.unwrap();
    let v2 = store
        .put("db/password", SecretBytes::from(second.as_bytes().to_vec()), PutOptions::default().expect_version(v1))
        .await
        .unwrap();
    assert!(v2 > v1);
    let read = store.get("db/password").await.unwrap();
    assert_eq!(read.value.expose_secret(), second.as_bytes());
    printed.push(format!("{read:?}"));
    if let Ok(old) = store.get_version("db/password", v1).await {
        printed.push(format!("{old:?}"));
    }
    assert_eq!(store.list().await.unwrap(), ["db/password"]);
    // The server holds the value as the Secret's data.
    let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), &namespace);
    let name = store.object_name("db/password").unwrap();
    let on_server = secrets.get(&name).await.unwrap().data.unwrap_or_default();
    assert!(on_server.values().any(|v| v.0 == second.as_bytes()), "the server holds the value: {:?}", on_server.keys());
    // Errors: a stale check-and-set, a missing key.
    let conflict = store
        .put("db/password", SecretBytes::from(first.as_bytes().to_vec()), PutOptions::default().expect_version(v1))
        .await
        .unwrap_err();
    assert!(conflict.is_conflict(), "{conflict}");
    store.delete("db/password").await.unwrap();
    let missing = store.get("db/password").await.unwrap_err();
    for err in [&conflict, &missing] {
        printed.push(format!("{err:?}"));
        printed.push(err.to_string());
    }
    let _ = namespaces.delete(&namespace, &DeleteParams::background()).await;
    drop(guard);

    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let mut secrets = vec![first.clone(), second.clone(), b64(&first), b64(&second)];
    secrets.extend(client_token);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let text = capture.text();
    assert!(text.contains("event TRACE hyper"), "the API exchanges were traced at TRACE: {text}");
    capture.assert_free_of(&secrets);
    for p in &printed {
        for secret in &secrets {
            assert!(!p.contains(secret), "a secret is in a printed value, record or error: {p}");
        }
    }
}
