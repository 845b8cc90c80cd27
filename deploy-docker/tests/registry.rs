//! Pushes through the real engine to a real `docker-registry`, and look-ups through
//! the distribution API with no auth, basic auth and bearer tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use common::{Cleanup, LocalRegistry, build_busybox, docker, free_port};
use deploy_core::error::{Classify, ErrorKind};
use deploy_core::model::ImageRef;
use deploy_core::registry::{ImageRegistry, PushEvent, RegistryError};
use deploy_docker::registry::{Credentials, DockerRegistry, RegistryConfig};
use futures::StreamExt;

#[tokio::test]
async fn push_reports_progress_and_the_digest_that_exists_and_digest_then_see() {
    let docker = docker().await;
    let cleanup = Cleanup::new("push");
    let registry_process = LocalRegistry::start();
    let image_id = build_busybox(&docker, &cleanup, &format!("deploy-rs-test/{}:local", cleanup.id), "1", true).await;
    let target = ImageRef::parse(&format!("{}/deploy-rs-test/{}:1.0", registry_process.host(), cleanup.id)).unwrap();
    let registry = DockerRegistry::new(docker.clone(), RegistryConfig::default()).unwrap();

    assert!(!registry.exists(&target).await.unwrap(), "nothing pushed yet");
    registry.tag(&image_id, &target).await.unwrap();
    let events: Vec<PushEvent> = registry.push(target.clone()).map(|e| e.unwrap()).collect().await;
    assert!(events.iter().any(|e| matches!(e, PushEvent::Status { status, .. } if status == "Pushed")), "{events:?}");
    let Some(PushEvent::Pushed { digest }) = events.last() else { panic!("no digest last: {events:?}") };

    assert!(registry.exists(&target).await.unwrap());
    assert_eq!(registry.digest(&target).await.unwrap().as_ref(), Some(digest));
    assert!(registry.exists(&target.with_digest(digest.clone())).await.unwrap(), "look-up by digest");
    assert!(!registry.exists(&target.with_tag("2.0").unwrap()).await.unwrap(), "unknown tag");
    let other_repo = ImageRef::parse(&format!("{}/deploy-rs-test/never-pushed:1", registry_process.host())).unwrap();
    assert_eq!(registry.digest(&other_repo).await.unwrap(), None);

    // The engine records the same digest for the pushed reference.
    let inspect = docker.inspect_image(&target.familiar()).await.unwrap();
    let repo_digests = inspect.repo_digests.unwrap_or_default();
    assert!(repo_digests.iter().any(|d| d.ends_with(digest.as_str())), "{repo_digests:?} vs {digest}");

    // Pushing again ends with the same digest, the layers already there.
    assert_eq!(&registry.push_to_end(target).await.unwrap(), digest);
}

#[tokio::test]
async fn a_registry_that_is_down_is_an_error_never_false() {
    let docker = docker().await;
    let cleanup = Cleanup::new("down");
    let registry = DockerRegistry::new(docker.clone(), RegistryConfig::default()).unwrap();
    let down = ImageRef::parse(&format!("127.0.0.1:{}/deploy-rs-test/app:1", free_port())).unwrap();

    let err = registry.exists(&down).await.unwrap_err();
    assert!(matches!(err, RegistryError::Backend { kind: ErrorKind::Unavailable, .. }), "{err:?}");
    assert!(err.is_retryable());

    let image_id = build_busybox(&docker, &cleanup, &format!("deploy-rs-test/{}:local", cleanup.id), "1", true).await;
    registry.tag(&image_id, &down).await.unwrap();
    let err = registry.push_to_end(down.clone()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Backend { kind: ErrorKind::Unavailable, .. }), "{err:?}");
    let _ = docker.remove_image(&down.familiar(), None::<bollard::query_parameters::RemoveImageOptions>, None).await;
}

#[tokio::test]
async fn pushing_an_image_that_does_not_exist_locally_is_not_found() {
    let docker = docker().await;
    let registry_process = LocalRegistry::start();
    let registry = DockerRegistry::new(docker, RegistryConfig::default()).unwrap();
    let missing = ImageRef::parse(&format!("{}/deploy-rs-test/nothing-here:1", registry_process.host())).unwrap();
    let err = registry.push_to_end(missing.clone()).await.unwrap_err();
    assert!(matches!(&err, RegistryError::NotFound { image } if *image == missing), "{err:?}");
    let err = registry.tag("sha256:0000000000000000000000000000000000000000000000000000000000000000", &missing).await;
    assert!(err.unwrap_err().is_not_found());
}

#[tokio::test]
async fn basic_auth_registry_needs_the_credentials_for_push_and_look_up() {
    let docker = docker().await;
    let cleanup = Cleanup::new("auth");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("ci:{}\n", bcrypt::hash("s3cret-pass", 4).unwrap())).unwrap();
    let registry_process = LocalRegistry::start_with(Some(&htpasswd));
    let target = ImageRef::parse(&format!("{}/deploy-rs-test/{}:1.0", registry_process.host(), cleanup.id)).unwrap();

    let anonymous = DockerRegistry::new(docker.clone(), RegistryConfig::default()).unwrap();
    let err = anonymous.exists(&target).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let wrong =
        DockerRegistry::new(docker.clone(), RegistryConfig::default().credentials(Credentials::new("ci", "nope")))
            .unwrap();
    assert!(matches!(wrong.exists(&target).await.unwrap_err(), RegistryError::Unauthorized { .. }));

    let image_id = build_busybox(&docker, &cleanup, &format!("deploy-rs-test/{}:local", cleanup.id), "1", true).await;
    anonymous.tag(&image_id, &target).await.unwrap();
    let err = anonymous.push_to_end(target.clone()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    let authed = DockerRegistry::new(
        docker.clone(),
        RegistryConfig::default().credentials(Credentials::new("ci", "s3cret-pass")),
    )
    .unwrap();
    let digest = authed.push_to_end(target.clone()).await.unwrap();
    assert_eq!(authed.digest(&target).await.unwrap(), Some(digest));
    assert!(!format!("{authed:?}").contains("s3cret-pass"), "the password leaked into Debug");
}

/// A registry that wants bearer tokens, as Docker Hub and GHCR do. The real
/// `docker-registry` needs a separate token service for this, so a scripted HTTP
/// server plays both parts and checks what the client sends.
#[tokio::test]
async fn bearer_challenge_is_answered_with_a_token_for_the_pull_scope() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let digest = format!("sha256:{}", "b".repeat(64));
    let server_digest = digest.clone();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 8192];
            let n = socket.read(&mut buffer).await.unwrap();
            let request = String::from_utf8_lossy(&buffer[..n]).to_string();
            let first = request.lines().next().unwrap_or_default().to_owned();
            let response = if first.starts_with("GET /token?") {
                assert!(first.contains("scope=repository%3Ashop%2Fweb%3Apull"), "{first}");
                assert!(first.contains("service=test-registry"), "{first}");
                assert!(request.to_ascii_lowercase().contains("authorization: basic "), "{request}");
                let body = r#"{"token":"t0k3n"}"#;
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else if request.to_ascii_lowercase().contains("authorization: bearer t0k3n") {
                assert!(first.starts_with("HEAD /v2/shop/web/manifests/1.0 "), "{first}");
                assert!(request.contains("application/vnd.oci.image.index.v1+json"), "{request}");
                format!(
                    "HTTP/1.1 200 OK\r\ndocker-content-digest: {server_digest}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
            } else {
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\",scope=\"repository:shop/web:pull\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
            };
            socket.write_all(response.as_bytes()).await.unwrap();
            seen.push(first);
        }
        seen
    });
    let registry =
        DockerRegistry::new(docker().await, RegistryConfig::default().credentials(Credentials::new("robot", "pat")))
            .unwrap();
    let image = ImageRef::parse(&format!("127.0.0.1:{port}/shop/web:1.0")).unwrap();
    let found =
        tokio::time::timeout(std::time::Duration::from_secs(10), registry.digest(&image)).await.unwrap().unwrap();
    assert_eq!(found.map(|d| d.to_string()), Some(digest));
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 3, "challenge, token, authorised retry: {seen:?}");
}
