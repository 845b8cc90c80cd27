//! Blue-green on a real Docker engine behind a real nginx, as on one host without a
//! cluster: a before-rollout hook runs as a one-shot container, the new release
//! starts on the idle colour, becomes ready (Docker health checks from the
//! readiness probe, followed through the engine's events), and nginx's upstream
//! moves to it; then a release whose health check fails is rolled back while the
//! old colour keeps serving.
//!
//! Needs a running Docker engine (`DOCKER_HOST` or the default socket), Debian's
//! `busybox-static` and `nginx` (`apt-get install -y busybox-static nginx`): the
//! images are built `FROM scratch` with `/bin/busybox`, whose `httpd` serves
//! `/health` and `/version`, so nothing is pulled. The example starts its own nginx
//! on a free loopback port with a prefix directory of its own and stops it at the
//! end. Containers publish their port on `127.0.0.1` only; nginx proxies to them
//! (`NginxRouter`), and `NginxDrain` takes a container out of nginx before the
//! platform removes it. Everything the example creates carries the label
//! `deploy-rs.example=<random id>` and is removed at the end, also after a failure.
//! Rollout progress and history are kept in a directory by deploy-core's durable
//! file stores (feature `file-store`); see docs/backends.md for several hosts with
//! the Redis stores.
//!
//! Run with `cargo run -p deploy-examples --example docker_blue_green`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::build::{BuildRequest, ImageBuilder};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutRequest};
use deploy_core::hook::{HookSpec, HookWhen};
use deploy_core::model::{
    AppId, AppSpec, DeploymentStatus, HumanDuration, ImageRef, Name, Namespace, Port, Probe, Release, Track,
    TrafficSplit, Version,
};
use deploy_core::plan::Step;
use deploy_core::platform::Platform;
use deploy_core::store::file::{FileHistoryStore, FileStateStore};
use deploy_core::strategy::{BlueGreen, PlanInput, Strategy};
use deploy_core::traffic::TrafficRouter;
use deploy_docker::bollard::Docker;
use deploy_docker::bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};
use deploy_docker::containers::Containers;
use deploy_docker::endpoints::{DockerEndpoints, NginxDrain};
use deploy_docker::nginx::{NginxConfig, NginxRouter};
use deploy_docker::platform::PlatformConfig;
use deploy_docker::{DockerImageBuilder, DockerPlatform, NetworkName};
use deploy_examples::Error;
use deploy_examples::print_rollout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LABEL: &str = "deploy-rs.example";
const BUSYBOX: &str = "/bin/busybox";
const NGINX: &str = "/usr/sbin/nginx";

/// Removes every container, network and image labelled with the example's id
/// when dropped, and the build contexts.
struct Cleanup {
    id: String,
    dirs: Vec<PathBuf>,
    /// The example's own nginx, stopped (`nginx -s quit`) before its directory goes.
    nginx_conf: Option<PathBuf>,
}

impl Cleanup {
    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL.to_owned(), self.id.clone())])
    }

    async fn remove_all(id: String) -> Result<(), Error> {
        let docker = deploy_docker::connect::connect(&Default::default()).await?;
        let labels = BTreeMap::from([(LABEL.to_owned(), id.clone())]);
        Containers::new(docker.clone()).remove_labelled(&labels).await?;
        deploy_docker::networks::Networks::new(docker.clone()).remove_labelled(&labels).await?;
        let filter = HashMap::from([("label".to_owned(), vec![format!("{LABEL}={id}")])]);
        for image in docker.list_images(Some(ListImagesOptionsBuilder::new().filters(&filter).build())).await? {
            docker.remove_image(&image.id, Some(RemoveImageOptionsBuilder::new().force(true).build()), None).await?;
        }
        Ok(())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(conf) = &self.nginx_conf {
            let _ = Command::new(NGINX).args(["-s", "quit", "-c"]).arg(conf).status();
            if let Some(pid) = conf.parent().map(|d| d.join("nginx.pid")) {
                for _ in 0..500 {
                    if !pid.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        let id = self.id.clone();
        // Runs on a runtime of its own: the example's runtime may be the one dropping us.
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(Cleanup::remove_all(id)).map_err(|e| e.to_string())
        })
        .join();
        match outcome {
            Ok(Ok(())) => println!("removed everything labelled {LABEL}={}", self.id),
            Ok(Err(e)) => eprintln!("clean-up of {LABEL}={} failed: {e}", self.id),
            Err(_) => eprintln!("clean-up of {LABEL}={} panicked", self.id),
        }
    }
}

/// A build context: busybox httpd FROM scratch answering `/version`, and `/health`
/// only when `healthy`.
fn context(dir: &Path, healthy: bool) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    std::fs::copy(BUSYBOX, dir.join("busybox"))?;
    let health = if healthy { "echo ok > /www/health && " } else { "" };
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM scratch\n\
             COPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             ARG VERSION=0\n\
             RUN mkdir -p /www && {health}echo \"$VERSION\" > /www/version\n\
             USER 65534:65534\n\
             EXPOSE 8080\n\
             CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        ),
    )?;
    Ok(())
}

async fn build(docker: &Docker, cleanup: &mut Cleanup, version: &str, healthy: bool) -> Result<Release, Error> {
    let dir = std::env::temp_dir().join(format!("{}-{version}", cleanup.id));
    cleanup.dirs.push(dir.clone());
    context(&dir, healthy)?;
    let image = ImageRef::parse(&format!("deploy-rs-example/{}:{version}", cleanup.id))?;
    let request = BuildRequest::new(&dir).tag(image.clone()).build_arg("VERSION", version).label(LABEL, &cleanup.id);
    let result = DockerImageBuilder::new(docker.clone()).build_to_end(request).await?;
    println!(
        "built {image}: {} steps, {} layers, {} bytes",
        result.analysis.steps, result.analysis.layer_count, result.analysis.size_bytes
    );
    Ok(Release::new(Version::new(version)?, image))
}

/// Starts an nginx master on a free loopback port with `dir` as its prefix: its
/// `nginx.conf` includes `dir/conf.d/*.conf`, where the router writes the app's file.
fn start_nginx(dir: &Path) -> Result<(NginxConfig, u16), Error> {
    if !Path::new(NGINX).exists() {
        return Err(format!("{NGINX} is missing: install Debian's nginx (apt-get install -y nginx)").into());
    }
    for sub in ["conf.d", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let p = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nworker_processes 1;\nevents {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {p}/tmp; proxy_temp_path {p}/tmp;\n    \
             fastcgi_temp_path {p}/tmp; uwsgi_temp_path {p}/tmp; scgi_temp_path {p}/tmp;\n    \
             include {p}/conf.d/*.conf;\n}}\n"
        ),
    )?;
    let status =
        Command::new(NGINX).args(["-e", &format!("{p}/error.log"), "-c"]).arg(dir.join("nginx.conf")).status()?;
    if !status.success() {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        return Err(format!("nginx did not start: {log}").into());
    }
    let config = NginxConfig::new(dir.join("nginx.conf"), dir.join("conf.d")).pid_file(dir.join("nginx.pid"));
    Ok((config, port))
}

/// Asks `/version` through nginx.
async fn ask(port: u16) -> Result<String, Error> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"GET /version HTTP/1.0\r\nHost: web\r\n\r\n").await?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut reply)).await??;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((reply.as_str(), ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        return Ok(format!("({status})"));
    }
    Ok(body.trim().to_owned())
}

async fn run() -> Result<(), Error> {
    if !Path::new(BUSYBOX).exists() {
        return Err(format!(
            "{BUSYBOX} is missing: install Debian's busybox-static (apt-get install -y busybox-static)"
        )
        .into());
    }
    let docker = deploy_docker::connect::connect(&Default::default())
        .await
        .map_err(|e| format!("this example needs a running Docker engine (start dockerd, or set DOCKER_HOST): {e}"))?;
    let mut cleanup = Cleanup { id: format!("bg-{:08x}", rand_id()), dirs: Vec::new(), nginx_conf: None };

    let v1 = build(&docker, &mut cleanup, "1.0.0", true).await?;
    let v2 = build(&docker, &mut cleanup, "2.0.0", true).await?;
    let bad = build(&docker, &mut cleanup, "3.0.0", false).await?;

    // nginx in front, on a loopback port, configured by the router.
    let nginx_dir = std::env::temp_dir().join(format!("deploy-rs-{}-nginx", cleanup.id));
    cleanup.dirs.push(nginx_dir.clone());
    let (nginx, port) = start_nginx(&nginx_dir)?;
    cleanup.nginx_conf = Some(nginx.main_config.clone());

    let mut config = PlatformConfig::default().network(NetworkName::new(format!("{}-net", cleanup.id))?);
    for (key, value) in cleanup.labels() {
        config = config.label(key, value);
    }
    let endpoints = Arc::new(DockerEndpoints::new(docker.clone(), 8080));
    let router = Arc::new(NginxRouter::new(nginx, endpoints.clone()));
    let drain = Arc::new(NginxDrain::new(endpoints, router.clone()));
    let platform = Arc::new(DockerPlatform::new(docker.clone(), config).endpoint_watcher(drain));
    let app = AppId::new(Namespace::new("shop")?, Name::new("web")?);
    router.serve(&app, SocketAddr::from(([127, 0, 0, 1], port))).await;
    let probe = Probe::http("/health", 8080).period(HumanDuration::new(Duration::from_millis(500)));
    let spec = AppSpec::new(app.namespace.clone(), app.name.clone(), v1.image.clone())
        .port(Port::tcp("http", 8080)?)
        .readiness(probe)
        .replicas(2);

    // 1.0.0 serves from blue, through nginx on 127.0.0.1:<port>.
    platform.apply(&spec, Track::Blue, &v1, spec.replicas).await?;
    platform.wait_ready(&app, Track::Blue, Duration::from_secs(60)).await?;
    router.set_weights(&app, &TrafficSplit::all(Track::Blue)).await?;
    println!("before: nginx on 127.0.0.1:{port} answers {}", ask(port).await?);

    // Durable progress and history in a directory: a driver killed mid-rollout is
    // resumed from it by the next process (`engine.resume(&app)`).
    let store_dir = std::env::temp_dir().join(format!("deploy-rs-{}-store", cleanup.id));
    cleanup.dirs.push(store_dir.clone());
    let engine = RolloutEngine::builder(
        platform.clone(),
        Arc::new(FileStateStore::new(&store_dir)),
        Arc::new(FileHistoryStore::new(&store_dir)),
    )
    .router(router.clone())
    .config(EngineConfig::default().readiness_deadline(Duration::from_secs(60)).holder("docker-blue-green-example"))
    .build();
    let plan = |live: Track| {
        BlueGreen::default().scale_down_delay(HumanDuration::ZERO).plan(&PlanInput::new(spec.replicas).live_track(live))
    };

    println!("\nblue-green 1.0.0 (blue) -> 2.0.0 (green), after a backup hook:");
    // A one-shot container before anything changes; had it failed, nothing would have.
    let backup = HookSpec::new(Name::new("backup")?, v1.image.clone())
        .command(["/bin/sh", "-c", "echo backing up the shop"])
        .deadline(HumanDuration::new(Duration::from_secs(60)));
    let mut first_plan = plan(Track::Blue);
    first_plan.steps.insert(0, Step::Hook { when: HookWhen::BeforeRollout, hook: backup });
    let request = RolloutRequest::new(spec.clone(), v2.clone(), first_plan).from(v1);
    let first = print_rollout(engine.start(request).await?).await?;
    println!("after: nginx answers {}", ask(port).await?);

    println!("\nblue-green 2.0.0 (green) -> 3.0.0 (blue), whose health check fails:");
    let request = RolloutRequest::new(spec.clone(), bad, plan(Track::Green)).from(v2);
    let second = print_rollout(engine.start(request).await?).await?;
    let answer = ask(port).await?;
    println!("after: nginx answers {answer}");

    platform.remove_app(&app).await?;
    let expected = first.status == DeploymentStatus::Succeeded
        && second.status == DeploymentStatus::RolledBack
        && answer == "2.0.0";
    if !expected {
        return Err(format!("unexpected end: {} then {}, nginx answers {answer:?}", first.status, second.status).into());
    }
    Ok(())
}

/// A random id, so that two runs never share names.
fn rand_id() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id()) as u32
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run().await
}
