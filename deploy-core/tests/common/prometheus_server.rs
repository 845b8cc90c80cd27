//! A real Prometheus on a loopback port for the tests that need one.
#![allow(dead_code, reason = "each test uses a part of it")]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The body of a plain-http GET of `url` on loopback, `None` unless it answers 2xx.
pub async fn get(url: &str) -> Option<String> {
    let policy = deploy_core::http_client::HttpPolicy::default().danger_allow_plain_http();
    let client = deploy_core::http_client::HttpClient::new(policy).ok()?;
    let request = client.request(reqwest::Method::GET, reqwest::Url::parse(url).ok()?).ok()?;
    let response = client.send(request).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = client.read_body(response).await.ok()?;
    String::from_utf8(body.to_vec()).ok()
}

/// A Prometheus server on a loopback port; killed, and its data removed, on drop.
pub struct PrometheusServer {
    child: Child,
    dir: PathBuf,
    /// Its HTTP API, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl PrometheusServer {
    /// The binary: Debian's, or one on `PATH`.
    pub fn binary() -> PathBuf {
        let candidates = [PathBuf::from("/usr/bin/prometheus")];
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join("prometheus")).collect::<Vec<_>>())
            .unwrap_or_default();
        candidates.into_iter().chain(on_path).find(|p| p.is_file()).unwrap_or_else(|| {
            panic!(
                "the prometheus binary is missing: this test needs a real Prometheus. \
                 Install Debian's package: apt-get install -y prometheus"
            )
        })
    }

    /// Starts Prometheus scraping `target` every second.
    pub fn start(target: SocketAddr) -> Self {
        let port = {
            let l = StdListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("deploy-core-prometheus-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: exporter\n    scrape_interval: 1s\n    scrape_timeout: 1s\n\
             \x20   static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(Self::binary())
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus could not be started");
        Self { child, dir, url: format!("http://127.0.0.1:{port}") }
    }

    /// What Prometheus logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Waits until it answers `/-/ready`.
    pub async fn wait_ready(&mut self, deadline: Duration) {
        // The workspace's reqwest has no default TLS provider: use the crate's client.
        let start = Instant::now();
        loop {
            if get(&format!("{}/-/ready", self.url)).await.is_some() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status} before it was ready:\n{}", self.log());
            }
            assert!(start.elapsed() < deadline, "prometheus was not ready within {deadline:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
