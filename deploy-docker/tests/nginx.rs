//! [`NginxRouter`] against a real nginx (Debian's `nginx`) that the test starts
//! on a loopback port with a configuration directory it owns, in front of two
//! busybox httpd backends on loopback that answer their version. What the tests
//! assert is what a client sees through nginx, and the split nginx reads.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::nginx_server::Nginx;
use common::{BUSYBOX, free_port, http_get, require_binary};
use deploy_core::model::{AppId, Name, Namespace, Percent, Track, TrafficSplit};
use deploy_core::traffic::{HeaderMatch, HeaderRoute, RouterError, TrafficRouter};
use deploy_docker::nginx::{NginxRouter, STATUS_PATH, StaticEndpoints};

/// A busybox httpd on loopback answering `version` at `/version`, killed on drop.
struct Backend(Child, u16, #[allow(dead_code, reason = "kept alive while the server runs")] tempfile::TempDir);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn backend(version: &str) -> Backend {
    require_binary(BUSYBOX, "busybox-static");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("version"), format!("{version}\n")).unwrap();
    let port = free_port();
    let child = Command::new(BUSYBOX)
        .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&format!("backend {version}"), || http_get(port, "/version").is_some());
    Backend(child, port, dir)
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what} not ready within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` answers from nginx at `/version`, with `header` if given.
fn answers(port: u16, n: usize, header: Option<(&str, &str)>) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut req = ureq_like(port, header);
            req.pop();
            req
        })
        .collect()
}

/// One GET of /version through nginx, with an optional header, by hand.
fn ureq_like(port: u16, header: Option<(&str, &str)>) -> String {
    use std::io::{Read, Write};
    // Until a reload has bound the app's port, a refused connection is an answer too.
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return "connection refused\n".to_owned();
    };
    let extra = header.map(|(k, v)| format!("{k}: {v}\r\n")).unwrap_or_default();
    write!(stream, "GET /version HTTP/1.0\r\nHost: x\r\n{extra}\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

fn app() -> AppId {
    AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap())
}

/// Waits until nginx's workers serve `expect` (a reload is graceful, so old
/// workers may answer a few more requests).
fn until_serving(port: u16, expect: &[&str]) {
    wait_for(&format!("nginx serving only {expect:?}"), || {
        answers(port, 10, None).iter().all(|a| expect.contains(&a.as_str()))
    });
}

#[tokio::test]
async fn weights_and_header_routes_reach_clients_through_a_real_nginx() {
    let (v1, v2) = (backend("1.0.0"), backend("2.0.0"));
    let nginx = Nginx::start();
    let endpoints = Arc::new(StaticEndpoints::default());
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    endpoints.set(&app(), Track::Stable, vec![addr(v1.1)]);
    endpoints.set(&app(), Track::Canary, vec![addr(v2.1)]);
    let router = NginxRouter::new(nginx.config(), endpoints);
    router.serve(&app(), addr(nginx.port)).await;

    router.set_weights(&app(), &TrafficSplit::all(Track::Stable)).await.unwrap();
    until_serving(nginx.port, &["1.0.0"]);
    assert_eq!(router.weights(&app()).await.unwrap(), TrafficSplit::all(Track::Stable));

    let half = TrafficSplit::canary(Percent::new(50).unwrap());
    router.set_weights(&app(), &half).await.unwrap();
    assert_eq!(router.weights(&app()).await.unwrap(), half, "read back from the file nginx loaded");
    wait_for("both versions answer", || {
        let seen = answers(nginx.port, 40, None);
        seen.iter().any(|a| a == "1.0.0") && seen.iter().any(|a| a == "2.0.0")
    });

    // A header route sends every matching request to the canary, whatever the weights.
    router.set_weights(&app(), &TrafficSplit::all(Track::Stable)).await.unwrap();
    let route = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
    router.set_header_route(&app(), &route).await.unwrap();
    until_serving(nginx.port, &["1.0.0"]);
    wait_for("the header route", || answers(nginx.port, 20, Some(("X-Canary", "always"))).iter().all(|a| a == "2.0.0"));
    assert!(answers(nginx.port, 20, Some(("X-Canary", "never"))).iter().all(|a| a == "1.0.0"));
    router.clear_header_routes(&app()).await.unwrap();
    wait_for("the route cleared", || {
        answers(nginx.port, 20, Some(("X-Canary", "always"))).iter().all(|a| a == "1.0.0")
    });
}

#[tokio::test]
async fn a_configuration_nginx_refuses_is_not_loaded_and_the_previous_file_stays() {
    let v1 = backend("1.0.0");
    let nginx = Nginx::start();
    let endpoints = Arc::new(StaticEndpoints::default());
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    endpoints.set(&app(), Track::Stable, vec![addr(v1.1)]);
    let router = NginxRouter::new(nginx.config(), endpoints);
    router.serve(&app(), addr(nginx.port)).await;
    router.set_weights(&app(), &TrafficSplit::all(Track::Stable)).await.unwrap();
    let before = std::fs::read_to_string(router.file(&app())).unwrap();

    // An unbalanced regular expression: nginx -t refuses it.
    let bad = HeaderRoute::new("x-canary", HeaderMatch::Regex("(unclosed".into()), Track::Stable);
    let err = router.set_header_route(&app(), &bad).await.unwrap_err();
    assert!(matches!(err, RouterError::Backend { .. }), "{err}");
    assert!(err.to_string().contains("validate nginx configuration"), "{err}");
    assert_eq!(std::fs::read_to_string(router.file(&app())).unwrap(), before, "previous file restored");
    until_serving(nginx.port, &["1.0.0"]);

    // A track without endpoints is refused before nginx sees anything.
    let err = router.set_weights(&app(), &TrafficSplit::canary(Percent::new(10).unwrap())).await.unwrap_err();
    assert!(matches!(err, RouterError::NotFound { .. }), "{err}");
    assert_eq!(router.weights(&app()).await.unwrap(), TrafficSplit::all(Track::Stable));
}

#[tokio::test]
async fn with_the_status_endpoint_the_split_is_read_from_what_nginx_runs_not_from_the_file() {
    let (v1, v2) = (backend("1.0.0"), backend("2.0.0"));
    let nginx = Nginx::start();
    let endpoints = Arc::new(StaticEndpoints::default());
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    endpoints.set(&app(), Track::Stable, vec![addr(v1.1)]);
    endpoints.set(&app(), Track::Canary, vec![addr(v2.1)]);
    let router = NginxRouter::new(nginx.config().status_endpoint(true), endpoints);
    router.serve(&app(), addr(nginx.port)).await;

    let quarter = TrafficSplit::canary(Percent::new(25).unwrap());
    router.set_weights(&app(), &quarter).await.unwrap();
    assert_eq!(router.weights(&app()).await.unwrap(), quarter);
    assert_eq!(http_get(nginx.port, STATUS_PATH).unwrap(), "stable=75,canary=25");

    // The file changed behind nginx's back, not reloaded: the read-back still
    // reports what the workers route.
    let file = router.file(&app());
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replace("75% ", "10% ").replace("25% ", "90% ");
    assert_ne!(edited, text, "the file's split was edited");
    std::fs::write(&file, edited).unwrap();
    assert_eq!(router.weights(&app()).await.unwrap(), quarter, "the live split, not the edited file");

    router.set_weights(&app(), &TrafficSplit::all(Track::Stable)).await.unwrap();
    assert_eq!(router.weights(&app()).await.unwrap(), TrafficSplit::all(Track::Stable));
    until_serving(nginx.port, &["1.0.0"]);
}
