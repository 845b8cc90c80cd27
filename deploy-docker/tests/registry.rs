//! Pushes through the real engine to a real `docker-registry`, and look-ups through
//! the distribution API with no auth, basic auth and bearer tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;
use deploy_core::testkit::trace as trace_capture;

use common::{Cleanup, LocalRegistry, build_busybox, docker, free_port};
use deploy_core::error::{Classify, ErrorKind};
use deploy_core::model::ImageRef;
use deploy_core::registry::{ImageRegistry, PushEvent, RegistryError};
use deploy_docker::registry::{Credentials, DockerRegistry, RegistryConfig, RegistryCredentials};
use futures::StreamExt;

#[tokio::test]
async fn push_reports_progress_and_the_digest_that_exists_and_digest_then_see() {
    let docker = docker().await;
    let cleanup = Cleanup::new("push");
    let registry_process = LocalRegistry::start();
    let image_id = build_busybox(&docker, &cleanup, &format!("deploy-rs-test/{}:local", cleanup.id), "1", true).await;
    let target = ImageRef::parse(&format!("{}/deploy-rs-test/{}:1.0", registry_process.host(), cleanup.id)).unwrap();
    let registry =
        DockerRegistry::new(docker.clone(), RegistryConfig::default().insecure_registry(registry_process.host()))
            .unwrap();

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
    let port = free_port();
    let registry =
        DockerRegistry::new(docker.clone(), RegistryConfig::default().insecure_registry(format!("127.0.0.1:{port}")))
            .unwrap();
    let down = ImageRef::parse(&format!("127.0.0.1:{port}/deploy-rs-test/app:1")).unwrap();

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
    let registry =
        DockerRegistry::new(docker, RegistryConfig::default().insecure_registry(registry_process.host())).unwrap();
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

    let insecure = RegistryConfig::default().insecure_registry(registry_process.host());
    let anonymous = DockerRegistry::new(docker.clone(), insecure.clone()).unwrap();
    let err = anonymous.exists(&target).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let wrong = DockerRegistry::new(
        docker.clone(),
        insecure.clone().credentials_for(&registry_process.host(), Credentials::new("ci", "nope")),
    )
    .unwrap();
    assert!(matches!(wrong.exists(&target).await.unwrap_err(), RegistryError::Unauthorized { .. }));

    let image_id = build_busybox(&docker, &cleanup, &format!("deploy-rs-test/{}:local", cleanup.id), "1", true).await;
    anonymous.tag(&image_id, &target).await.unwrap();
    let err = anonymous.push_to_end(target.clone()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    // The credentials come from Docker's config.json, keyed by the registry's host.
    let config_json = format!(
        r#"{{"auths":{{"http://{}/v2/":{{"auth":"{}"}}}}}}"#,
        registry_process.host(),
        base64_encode(b"ci:s3cret-pass")
    );
    let authed = DockerRegistry::new(
        docker.clone(),
        insecure.clone().credentials(RegistryCredentials::default().docker_config_json(&config_json).unwrap()),
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
    let host = format!("127.0.0.1:{port}");
    let registry = DockerRegistry::new(
        docker().await,
        RegistryConfig::default().insecure_registry(&host).credentials_for(&host, Credentials::new("robot", "pat")),
    )
    .unwrap();
    let image = ImageRef::parse(&format!("{host}/shop/web:1.0")).unwrap();
    let found =
        tokio::time::timeout(std::time::Duration::from_secs(10), registry.digest(&image)).await.unwrap().unwrap();
    assert_eq!(found.map(|d| d.to_string()), Some(digest));
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 3, "challenge, token, authorised retry: {seen:?}");
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One request as a stand-in server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// The request line, for failure messages.
    #[allow(dead_code, reason = "shown by Debug when an assertion fails")]
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<Seen>>>;

/// A stand-in HTTP server on loopback: `answer` turns each request into a response
/// (status line, headers, body); every request is logged.
async fn stand_in(answer: impl Fn(&Seen) -> String + Send + Sync + 'static) -> (String, Log) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let log: Log = Log::default();
    let seen_log = log.clone();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = seen_log.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buffer).to_string();
                let mut lines = text.split("\r\n");
                let line = lines.next().unwrap_or_default().to_owned();
                let headers = lines
                    .take_while(|l| !l.is_empty())
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let seen = Seen { line, headers };
                let response = answer(&seen);
                log.lock().unwrap().push(seen);
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (host, log)
}

fn respond(status: &str, headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
}

/// A registry that asks for basic auth and accepts `expected`.
fn basic_registry(expected: &'static str) -> impl Fn(&Seen) -> String + Send + Sync + 'static {
    move |seen| {
        if seen.header("authorization") == Some(expected) {
            respond("200 OK", &format!("docker-content-digest: sha256:{}\r\n", "c".repeat(64)), "")
        } else {
            respond("401 Unauthorized", "www-authenticate: Basic realm=\"registry\"\r\n", "")
        }
    }
}

#[tokio::test]
async fn credentials_reach_only_their_own_registry() {
    // base64("alice:a-secret")
    let (a, a_log) = stand_in(basic_registry("Basic YWxpY2U6YS1zZWNyZXQ=")).await;
    let (b, b_log) = stand_in(basic_registry("never")).await;
    let registry = DockerRegistry::new(
        docker().await,
        RegistryConfig::default()
            .insecure_registry(&a)
            .insecure_registry(&b)
            .credentials_for(&a, Credentials::new("alice", "a-secret")),
    )
    .unwrap();
    let on_a = ImageRef::parse(&format!("{a}/shop/web:1")).unwrap();
    let on_b = ImageRef::parse(&format!("{b}/shop/web:1")).unwrap();
    assert!(registry.exists(&on_a).await.unwrap());
    let err = registry.exists(&on_b).await.unwrap_err();
    assert!(matches!(&err, RegistryError::Unauthorized { registry } if *registry == b), "{err:?}");
    // What each server received: A the credentials on the retry, B never any.
    let a_seen = a_log.lock().unwrap().clone();
    assert_eq!(a_seen.len(), 2, "{a_seen:?}");
    assert_eq!(a_seen[1].header("authorization"), Some("Basic YWxpY2U6YS1zZWNyZXQ="));
    let b_seen = b_log.lock().unwrap().clone();
    assert!(!b_seen.is_empty());
    assert!(b_seen.iter().all(|s| s.header("authorization").is_none()), "{b_seen:?}");
}

#[tokio::test]
async fn a_registry_not_configured_insecure_is_never_asked_over_plain_http() {
    let (a, a_log) = stand_in(basic_registry("never")).await;
    let registry = DockerRegistry::new(
        docker().await,
        RegistryConfig::default().credentials_for(&a, Credentials::new("alice", "a-secret")),
    )
    .unwrap();
    // https to a plain-http server: the TLS handshake fails; no request line is ever read.
    let err = registry.exists(&ImageRef::parse(&format!("{a}/shop/web:1")).unwrap()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Backend { .. }), "{err:?}");
    assert!(a_log.lock().unwrap().is_empty(), "{:?}", a_log.lock().unwrap());
}

/// A bearer registry whose token realm is `realm`; it accepts the token `t0k3n`.
fn bearer_registry(realm: String) -> impl Fn(&Seen) -> String + Send + Sync + 'static {
    move |seen| {
        if seen.header("authorization") == Some("Bearer t0k3n") {
            respond("200 OK", &format!("docker-content-digest: sha256:{}\r\n", "d".repeat(64)), "")
        } else {
            respond(
                "401 Unauthorized",
                &format!(
                    "www-authenticate: Bearer realm=\"{realm}\",service=\"reg\",scope=\"repository:shop/web:pull\"\r\n"
                ),
                "",
            )
        }
    }
}

fn token_service(seen: &Seen) -> String {
    let _ = seen;
    respond("200 OK", "content-type: application/json\r\n", r#"{"token":"t0k3n"}"#)
}

#[tokio::test]
async fn a_token_realm_on_another_host_gets_no_credentials() {
    // The realm is reachable (configured insecure, so plain http may be used) but it
    // is not the registry's host and not an allowed token host: it is asked for an
    // anonymous token.
    let (realm, realm_log) = stand_in(token_service).await;
    let (registry_host, _log) = stand_in(bearer_registry(format!("http://{realm}/token"))).await;
    let config = RegistryConfig::default()
        .insecure_registry(&registry_host)
        .insecure_registry(&realm)
        .credentials_for(&registry_host, Credentials::new("robot", "pat-s3cret"));
    let registry = DockerRegistry::new(docker().await, config.clone()).unwrap();
    let image = ImageRef::parse(&format!("{registry_host}/shop/web:1")).unwrap();
    assert!(registry.exists(&image).await.unwrap());
    let seen = realm_log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].header("authorization").is_none(), "the realm received {:?}", seen[0].header("authorization"));

    // Once the caller allows that host, it gets them.
    let registry = DockerRegistry::new(docker().await, config.allow_token_host(&realm)).unwrap();
    assert!(registry.exists(&image).await.unwrap());
    let seen = realm_log.lock().unwrap().clone();
    // base64("robot:pat-s3cret")
    assert_eq!(seen[1].header("authorization"), Some("Basic cm9ib3Q6cGF0LXMzY3JldA=="));
}

#[tokio::test]
async fn a_plain_http_token_realm_is_refused_and_never_contacted() {
    let (realm, realm_log) = stand_in(token_service).await;
    let (registry_host, _log) = stand_in(bearer_registry(format!("http://{realm}/token"))).await;
    let registry = DockerRegistry::new(
        docker().await,
        RegistryConfig::default()
            .insecure_registry(&registry_host)
            .allow_token_host(&realm)
            .credentials_for(&registry_host, Credentials::new("robot", "pat-s3cret")),
    )
    .unwrap();
    let err = registry.exists(&ImageRef::parse(&format!("{registry_host}/shop/web:1")).unwrap()).await.unwrap_err();
    assert!(format!("{err}").contains("plain http token realm"), "{err}");
    assert!(!format!("{err:?}").contains("pat-s3cret"));
    assert!(realm_log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn credential_helpers_from_config_json_are_asked_for_their_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let asked = dir.path().join("asked");
    let helper = dir.path().join("docker-credential-standin");
    // The docker-credential-* protocol: `get`, the server URL on stdin, JSON out;
    // "credentials not found" and status 1 for an unknown server.
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\necho \"$server\" >> {asked}\n\
             case \"$server\" in\n  *helper-host*|127.0.0.1:*) printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"a-secret\"}}' \"$server\" ;;\n\
             *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
            asked = asked.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (a, a_log) = stand_in(basic_registry("Basic YWxpY2U6YS1zZWNyZXQ=")).await;
    let (b, b_log) = stand_in(basic_registry("never")).await;
    let config_json = format!(r#"{{"auths":{{"{b}":{{}}}},"credHelpers":{{"{a}":"standin"}}}}"#);
    let credentials = RegistryCredentials::default()
        .docker_config_json(&config_json)
        .unwrap()
        .helper_path(format!("{}:/usr/bin:/bin", dir.path().display()));
    let registry = DockerRegistry::new(
        docker().await,
        RegistryConfig::default().insecure_registry(&a).insecure_registry(&b).credentials(credentials.clone()),
    )
    .unwrap();
    assert!(registry.exists(&ImageRef::parse(&format!("{a}/shop/web:1")).unwrap()).await.unwrap());
    assert!(registry.exists(&ImageRef::parse(&format!("{b}/shop/web:1")).unwrap()).await.is_err());
    assert_eq!(std::fs::read_to_string(&asked).unwrap().trim(), a, "the helper was asked about its own host only");
    assert_eq!(a_log.lock().unwrap()[1].header("authorization"), Some("Basic YWxpY2U6YS1zZWNyZXQ="));
    assert!(b_log.lock().unwrap().iter().all(|s| s.header("authorization").is_none()));

    // credsStore: one helper for every host; an unknown host is "not found", no credentials.
    let store = RegistryCredentials::default()
        .docker_config_json(r#"{"credsStore":"standin"}"#)
        .unwrap()
        .helper_path(format!("{}:/usr/bin:/bin", dir.path().display()));
    assert_eq!(store.lookup("helper-host.example").await.unwrap().unwrap().username(), "alice");
    assert!(store.lookup("elsewhere.example").await.unwrap().is_none());
    assert!(store.lookup("docker.io").await.unwrap().is_none());
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert!(asked.contains("https://index.docker.io/v1/"), "Docker Hub is asked by its index URL: {asked}");
    assert!(!format!("{store:?}").contains("a-secret"));
}

#[tokio::test]
async fn look_ups_trace_no_credentials() {
    let capture = trace_capture::TraceCapture::default();
    let _guard = capture.set_default();
    let (realm, _realm_log) = stand_in(token_service).await;
    let (bearer_host, _log) = stand_in(bearer_registry(format!("http://{realm}/token"))).await;
    // base64("alice:a-secret")
    let (basic_host, _basic_log) = stand_in(basic_registry("Basic YWxpY2U6YS1zZWNyZXQ=")).await;
    let config = RegistryConfig::default()
        .insecure_registry(&bearer_host)
        .insecure_registry(&realm)
        .insecure_registry(&basic_host)
        .credentials_for(&bearer_host, Credentials::new("robot", "pat-s3cret"))
        .credentials_for(&basic_host, Credentials::new("alice", "a-secret"));
    let registry = DockerRegistry::new(docker().await, config).unwrap();
    registry.exists(&ImageRef::parse(&format!("{bearer_host}/shop/web:1")).unwrap()).await.unwrap();
    registry.exists(&ImageRef::parse(&format!("{basic_host}/shop/web:1")).unwrap()).await.unwrap();
    let _ = registry.exists(&ImageRef::parse(&format!("127.0.0.1:{}/shop/web:1", free_port())).unwrap()).await;
    capture.assert_free_of(&["pat-s3cret", "a-secret", "YWxpY2U6YS1zZWNyZXQ=", "t0k3n"]);
}
