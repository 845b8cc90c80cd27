//! Shared set-up of the tests that run against the real Docker engine and a real
//! registry: connection, test images built FROM scratch with busybox, a local
//! `docker-registry`, and a guard that removes everything a test labelled.
#![allow(dead_code, reason = "each test binary uses a different part of this module")]

pub mod nginx_server;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use deploy_core::build::{BuildRequest, ImageBuilder};
use deploy_core::model::ImageRef;
use deploy_docker::DockerImageBuilder;

/// The label every object a test creates carries.
pub const TEST_LABEL: &str = "deploy-rs.test";

pub const BUSYBOX: &str = "/bin/busybox";

/// Connects to the engine, failing with what to do when it is missing.
pub async fn docker() -> Docker {
    match deploy_docker::connect::connect(&Default::default()).await {
        Ok(docker) => docker,
        Err(e) => panic!(
            "these tests need a running Docker engine (start dockerd, or set DOCKER_HOST): {e}\n\
             on Debian: apt-get install -y docker.io && dockerd &"
        ),
    }
}

/// A random id for names and labels, unique per test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Removes every container, network and image labelled `deploy-rs.test=<id>` when
/// dropped, even when the test panics.
pub struct Cleanup {
    pub id: String,
}

impl Cleanup {
    pub fn new(prefix: &str) -> Self {
        Self { id: unique(prefix) }
    }

    pub fn label(&self) -> (String, String) {
        (TEST_LABEL.to_owned(), self.id.clone())
    }

    pub fn filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_owned(), vec![format!("{TEST_LABEL}={}", self.id)])])
    }

    /// What is still labelled with this test's id: containers, networks, images.
    pub async fn leftovers(&self, docker: &Docker) -> (usize, usize, usize) {
        let containers = docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&self.filter()).build()))
            .await
            .unwrap();
        let networks = docker
            .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&self.filter()).build()))
            .await
            .unwrap();
        let images =
            docker.list_images(Some(ListImagesOptionsBuilder::new().filters(&self.filter()).build())).await.unwrap();
        (containers.len(), networks.len(), images.len())
    }

    async fn remove_all(id: String) {
        let Ok(docker) = deploy_docker::connect::connect(&Default::default()).await else { return };
        let filter = HashMap::from([("label".to_owned(), vec![format!("{TEST_LABEL}={id}")])]);
        if let Ok(list) =
            docker.list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filter).build())).await
        {
            for c in list {
                if let Some(cid) = c.id {
                    let _ = docker
                        .remove_container(&cid, Some(RemoveContainerOptionsBuilder::new().force(true).v(true).build()))
                        .await;
                }
            }
        }
        if let Ok(list) = docker.list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filter).build())).await {
            for n in list {
                if let Some(nid) = n.id {
                    let _ = docker.remove_network(&nid).await;
                }
            }
        }
        if let Ok(list) = docker.list_images(Some(ListImagesOptionsBuilder::new().filters(&filter).build())).await {
            for image in list {
                let _ = docker
                    .remove_image(&image.id, Some(RemoveImageOptionsBuilder::new().force(true).build()), None)
                    .await;
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let id = self.id.clone();
        // The test's runtime may be the one dropping us: clean up on a runtime of our own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(Cleanup::remove_all(id));
        })
        .join();
    }
}

/// Fails with the package to install when a binary is missing.
pub fn require_binary(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: these tests need Debian's {package} (apt-get install -y {package})"
    );
}

/// A build context for a busybox httpd image FROM scratch. `healthy` decides whether
/// `/health` exists; the image serves its version at `/version`. `marker` makes the
/// layers unique to one test, so that a concurrent test's clean-up never removes
/// a cached layer this test's build stands on.
pub fn busybox_context(dir: &Path, healthy: bool, marker: &str) -> PathBuf {
    require_binary(BUSYBOX, "busybox-static");
    std::fs::copy(BUSYBOX, dir.join("busybox")).unwrap();
    let health = if healthy { "echo ok > /www/health && " } else { "" };
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM scratch\n\
             LABEL deploy-rs.test={marker}\n\
             COPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             ARG VERSION=0\n\
             RUN mkdir -p /www && {health}echo \"$VERSION\" > /www/version\n\
             EXPOSE 8080\n\
             CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        ),
    )
    .unwrap();
    dir.to_path_buf()
}

/// Builds a busybox httpd image tagged `tag`, labelled for clean-up.
pub async fn build_busybox(docker: &Docker, cleanup: &Cleanup, tag: &str, version: &str, healthy: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), healthy, &cleanup.id);
    let (key, value) = cleanup.label();
    let request = BuildRequest::new(dir.path())
        .tag(ImageRef::parse(tag).unwrap())
        .build_arg("VERSION", version)
        .label(key, value);
    DockerImageBuilder::new(docker.clone()).build_to_end(request).await.unwrap().image_id
}

/// A local `docker-registry` on a free loopback port, killed on drop.
pub struct LocalRegistry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a registry; with `htpasswd`, basic auth is required with that file.
    pub fn start_with(htpasswd: Option<&Path>) -> Self {
        require_binary("/usr/bin/docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth = match htpasswd {
            Some(path) => format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", path.display()),
            None => String::new(),
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n{auth}http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Self { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on 127.0.0.1:{port} within 10s");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `cmd` in a running container and returns its standard output.
pub async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> String {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures::StreamExt;
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await.unwrap() {
        while let Some(Ok(chunk)) = output.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
    }
    text
}

/// A plain HTTP GET to a loopback port; the body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}
