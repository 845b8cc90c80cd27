//! Blue-green on a real Docker engine: the new release starts on the idle colour,
//! becomes ready (Docker health checks from the readiness probe), and the network
//! alias `web` moves to it; then a release whose health check fails is rolled back
//! while the old colour keeps serving.
//!
//! Needs a running Docker engine (`DOCKER_HOST` or the default socket) and Debian's
//! `busybox-static` (`apt-get install -y busybox-static`): the images are built
//! `FROM scratch` with `/bin/busybox`, whose `httpd` serves `/health` and
//! `/version`, so nothing is pulled. Everything the example creates carries the
//! label `deploy-rs.example=<random id>` and is removed at the end, also after a
//! failure. Rollout progress and history are kept in a directory by deploy-core's
//! durable file stores (feature `file-store`), as on a host without a cluster; see
//! docs/backends.md for nginx in front and for several hosts with the Redis stores.
//!
//! Run with `cargo run -p deploy-examples --example docker_blue_green`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};
use deploy_core::build::{BuildRequest, ImageBuilder};
use deploy_core::engine::{EngineConfig, RolloutEngine, RolloutRequest};
use deploy_core::model::{
    AppId, AppSpec, DeploymentStatus, HumanDuration, ImageRef, Name, Probe, Release, Track, TrafficSplit, Version,
};
use deploy_core::platform::Platform;
use deploy_core::store::file::{FileHistoryStore, FileStateStore};
use deploy_core::strategy::{BlueGreen, PlanInput, Strategy};
use deploy_core::traffic::TrafficRouter;
use deploy_docker::containers::{ContainerSpec, Containers};
use deploy_docker::platform::PlatformConfig;
use deploy_docker::{DockerImageBuilder, DockerPlatform, NetworkAliasRouter};
use deploy_examples::{Error, print_rollout};
use futures::StreamExt;

const LABEL: &str = "deploy-rs.example";
const BUSYBOX: &str = "/bin/busybox";

/// Removes every container, network and image labelled with the example's id
/// when dropped, and the build contexts.
struct Cleanup {
    id: String,
    dirs: Vec<PathBuf>,
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

/// Asks `web:8080/version` from a client container on the serving network. Busybox
/// from Debian is linked statically with glibc, whose name lookup crashes without
/// its NSS libraries (`wget http://web/` dies with SIGSEGV): the client resolves the
/// alias with busybox's own `nslookup` against Docker's DNS and speaks HTTP with `nc`.
async fn ask(docker: &Docker, client: &str) -> Result<String, Error> {
    let script = r#"ip=$(nslookup web 127.0.0.11 | awk '/^Address/ {a=$NF} END {print a}')
printf 'GET /version HTTP/1.0\r\n\r\n' | nc -w 2 "$ip" 8080 | tail -n 1"#;
    let cmd = ["sh", "-c", script];
    let exec = docker
        .create_exec(
            client,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await? {
        while let Some(chunk) = output.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
        }
    }
    Ok(text.trim().to_owned())
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
    let mut cleanup = Cleanup { id: format!("bg-{:08x}", rand_id()), dirs: Vec::new() };

    let v1 = build(&docker, &mut cleanup, "1.0.0", true).await?;
    let v2 = build(&docker, &mut cleanup, "2.0.0", true).await?;
    let bad = build(&docker, &mut cleanup, "3.0.0", false).await?;

    let serving = format!("{}-edge", cleanup.id);
    let mut config = PlatformConfig::default().network(format!("{}-net", cleanup.id)).serving_network(&serving);
    for (key, value) in cleanup.labels() {
        config = config.label(key, value);
    }
    let platform = Arc::new(DockerPlatform::new(docker.clone(), config));
    let router = Arc::new(NetworkAliasRouter::new(docker.clone(), &serving).network_labels(cleanup.labels()));
    let app = AppId::new(Name::new("shop")?, Name::new("web")?);
    let probe = Probe::http("/health", 8080).period(HumanDuration::new(Duration::from_millis(500)));
    let spec = AppSpec::new(app.name.clone(), app.namespace.clone(), v1.image.clone()).readiness(probe).replicas(2);

    // 1.0.0 serves from blue; a client container on the serving network asks `web`.
    platform.apply(&spec, Track::Blue, &v1, spec.replicas).await?;
    platform.wait_ready(&app, Track::Blue, Duration::from_secs(60)).await?;
    router.set_weights(&app, &TrafficSplit::all(Track::Blue)).await?;
    let client = ContainerSpec::new(format!("{}-client", cleanup.id), v1.image.to_string())
        .command(["sleep", "600"])
        .network(&serving, Vec::<String>::new())
        .labels(cleanup.labels());
    let client = Containers::new(docker.clone()).run(&client).await?;
    println!("before: web answers {}", ask(&docker, &client).await?);

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

    println!("\nblue-green 1.0.0 (blue) -> 2.0.0 (green):");
    let request = RolloutRequest::new(spec.clone(), v2.clone(), plan(Track::Blue)).from(v1);
    let first = print_rollout(engine.start(request).await?).await?;
    println!("after: web answers {}", ask(&docker, &client).await?);

    println!("\nblue-green 2.0.0 (green) -> 3.0.0 (blue), whose health check fails:");
    let request = RolloutRequest::new(spec.clone(), bad, plan(Track::Green)).from(v2);
    let second = print_rollout(engine.start(request).await?).await?;
    let answer = ask(&docker, &client).await?;
    println!("after: web answers {answer}");

    platform.remove_app(&app).await?;
    let expected = first.status == DeploymentStatus::Succeeded
        && second.status == DeploymentStatus::RolledBack
        && answer == "2.0.0";
    if !expected {
        return Err(format!("unexpected end: {} then {}, web answers {answer:?}", first.status, second.status).into());
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
