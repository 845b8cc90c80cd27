//! A generated multi-stage Dockerfile builds on the real engine and its image runs
//! as the non-root user with a working health check.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, build_busybox, docker};
use deploy_core::build::{BuildRequest, ImageBuilder};
use deploy_core::model::ImageRef;
use deploy_docker::DockerImageBuilder;
use deploy_docker::containers::{ContainerSpec, Containers, Health};
use deploy_docker::dockerfile::{CompileStage, DockerfileSpec, Healthcheck, RuntimeUser, lint};

#[tokio::test]
async fn a_generated_dockerfile_builds_and_runs_non_root_and_healthy() {
    let docker = docker().await;
    let cleanup = Cleanup::new("generated");
    // No base image can be pulled here: both stages start from a local busybox image.
    let base = format!("deploy-rs-test/{}:base", cleanup.id);
    build_busybox(&docker, &cleanup, &base, "base", true).await;

    let mut spec = DockerfileSpec::new(&base, ["httpd", "-f", "-p", "8080", "-h", "/srv/www"])
        .builder(CompileStage::new(
            &base,
            ["mkdir -p /out/www && cp index.html /out/www/ && echo ok > /out/www/health"],
        ))
        .user(RuntimeUser::new("app", 10001))
        .label("deploy-rs.test", &cleanup.id)
        .expose(8080)
        .healthcheck(Healthcheck::new(["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]));
    spec.artifacts.push(("/out/www".to_owned(), "/srv/www".to_owned()));
    spec.workdir = "/srv".to_owned();
    let mut healthcheck = spec.healthcheck.clone().unwrap();
    healthcheck.interval = Duration::from_secs(1);
    healthcheck.start_period = Duration::ZERO;
    spec.healthcheck = Some(healthcheck);
    let text = spec.render();
    assert!(lint(&text).iter().all(|f| f.id != "DL3002" && f.id != "DRS001" && f.id != "DRS002"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), &text).unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>generated</h1>\n").unwrap();
    let tag = ImageRef::parse(&format!("deploy-rs-test/{}:generated", cleanup.id)).unwrap();
    let (key, value) = cleanup.label();
    let result = DockerImageBuilder::new(docker.clone())
        .build_to_end(BuildRequest::new(dir.path()).tag(tag.clone()).label(key, value))
        .await
        .unwrap();
    let config = docker.inspect_image(&result.image_id).await.unwrap().config.unwrap();
    assert_eq!(config.user.as_deref(), Some("10001"));
    assert!(config.healthcheck.unwrap().test.unwrap().contains(&"http://127.0.0.1:8080/health".to_owned()));

    let containers = Containers::new(docker.clone());
    let id = containers
        .run(&ContainerSpec::new(format!("{}-gen", cleanup.id), tag.familiar()).labels([cleanup.label()]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = containers.state(&id).await.unwrap();
        if state.health == Health::Healthy {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy: {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let whoami = common::exec(&docker, &id, &["id", "-u"]).await;
    assert_eq!(whoami.trim(), "10001");
}
