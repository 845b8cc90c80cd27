//! Containers and networks on the real engine, and a daemon that is not there.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Cleanup, build_busybox, docker, http_get};
use deploy_core::error::Classify;
use deploy_docker::DockerError;
use deploy_docker::connect::{ConnectOptions, Endpoint, connect};
use deploy_docker::containers::{
    ContainerHealthcheck, ContainerSpec, Containers, Health, LogOptions, PortMapping, RestartPolicy, VolumeMount,
};
use deploy_docker::networks::{NetworkSpec, Networks};

#[tokio::test]
async fn run_with_ports_env_volumes_network_health_then_logs_and_clean_up_by_label() {
    let docker = docker().await;
    let cleanup = Cleanup::new("run");
    let image = format!("deploy-rs-test/{}:1", cleanup.id);
    build_busybox(&docker, &cleanup, &image, "1", true).await;
    let labels: BTreeMap<String, String> = [cleanup.label()].into_iter().collect();
    let networks = Networks::new(docker.clone());
    let network = format!("{}-net", cleanup.id);
    let network_id = networks.ensure(&NetworkSpec::new(&network).labels(labels.clone())).await.unwrap();
    assert_eq!(networks.ensure(&NetworkSpec::new(&network)).await.unwrap(), network_id, "ensure is idempotent");

    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("motd"), "from the host\n").unwrap();
    let containers = Containers::new(docker.clone());
    let spec = ContainerSpec::new(format!("{}-web", cleanup.id), &image)
        .command(["/bin/sh", "-c", "echo \"greeting=$GREETING\"; cat /shared/motd; exec httpd -f -p 8080 -h /www"])
        .env("GREETING", "hello")
        .port(PortMapping::loopback(8080))
        .volume(VolumeMount::new(shared.path().display().to_string(), "/shared", true))
        .network(&network, ["web"])
        .restart(RestartPolicy::OnFailure { max_retries: 2 })
        .labels(labels.clone())
        .health(
            ContainerHealthcheck::new(vec![
                "CMD".into(),
                "wget".into(),
                "-q".into(),
                "-O".into(),
                "/dev/null".into(),
                "http://127.0.0.1:8080/health".into(),
            ])
            .interval(Duration::from_millis(500)),
        );
    let id = containers.run(&spec).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let state = containers.state(&id).await.unwrap();
        if state.health == Health::Healthy {
            break state;
        }
        assert!(Instant::now() < deadline, "never healthy: {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(state.running);
    assert_eq!(state.labels.get(common::TEST_LABEL), Some(&cleanup.id));
    assert!(state.network_aliases[&network].contains(&"web".to_owned()), "{state:?}");

    // The published port answers on loopback.
    let inspect =
        docker.inspect_container(&id, None::<bollard::query_parameters::InspectContainerOptions>).await.unwrap();
    let ports = inspect.network_settings.unwrap().ports.unwrap();
    let host_port: u16 = ports["8080/tcp"].as_ref().unwrap()[0].host_port.as_ref().unwrap().parse().unwrap();
    assert_eq!(http_get(host_port, "/version").as_deref().map(str::trim), Some("1"));
    assert_eq!(inspect.host_config.unwrap().restart_policy.unwrap().maximum_retry_count, Some(2));

    let logs = containers.logs(&id, &LogOptions::default()).await.unwrap();
    assert!(logs.contains(&"greeting=hello".to_owned()), "{logs:?}");
    assert!(logs.contains(&"from the host".to_owned()), "{logs:?}");

    // Removing a network in use fails; clean-up by label removes container then network.
    assert!(networks.remove(&network).await.is_err());
    let report = containers.remove_labelled(&labels).await.unwrap();
    assert_eq!((report.containers, report.networks), (1, 1));
    assert_eq!(cleanup.leftovers(&docker).await.0, 0);
    assert_eq!(cleanup.leftovers(&docker).await.1, 0);
    assert!(containers.state(&id).await.unwrap_err().is_not_found());
    containers.remove(&id).await.unwrap();
    networks.remove(&network).await.unwrap();
    assert!(containers.remove_labelled(&BTreeMap::new()).await.is_err(), "an empty selector is refused");
}

#[tokio::test]
async fn running_an_unknown_image_is_not_found() {
    let docker = docker().await;
    let cleanup = Cleanup::new("unknown");
    let spec =
        ContainerSpec::new(format!("{}-x", cleanup.id), "deploy-rs-test/never-built:1").labels([cleanup.label()]);
    let err = Containers::new(docker).run(&spec).await.unwrap_err();
    assert!(matches!(&err, DockerError::NotFound { what } if what.contains("never-built")), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_daemon_is_a_typed_retryable_error() {
    let options = ConnectOptions::default().endpoint(Endpoint::Unix("/nonexistent/deploy-rs/docker.sock".into()));
    let err = connect(&options).await.unwrap_err();
    assert!(matches!(&err, DockerError::Unreachable { endpoint, .. } if endpoint.contains("/nonexistent/")), "{err:?}");
    assert!(err.is_retryable());

    // A socket path that exists but where no engine listens.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err =
        connect(&ConnectOptions::default().endpoint(Endpoint::Unix(path.display().to_string()))).await.unwrap_err();
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn clean_up_by_label_leaves_a_foreign_container_with_the_same_labels() {
    let docker = docker().await;
    let cleanup = Cleanup::new("foreign");
    let image = format!("deploy-rs-test/{}:1", cleanup.id);
    build_busybox(&docker, &cleanup, &image, "1", true).await;
    let labels: BTreeMap<String, String> =
        [cleanup.label(), ("team".to_owned(), "payments".to_owned())].into_iter().collect();

    // Ours: created through this crate, so it carries the managed-by mark.
    let containers = Containers::new(docker.clone());
    let ours = containers
        .run(
            &ContainerSpec::new(format!("{}-ours", cleanup.id), &image)
                .command(["/bin/sleep", "300"])
                .labels(labels.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        containers.state(&ours).await.unwrap().labels.get(deploy_docker::labels::MANAGED_BY).map(String::as_str),
        Some(deploy_docker::labels::MANAGER)
    );
    // Someone else's: the same labels, made straight through the engine's API.
    let body = bollard::models::ContainerCreateBody {
        image: Some(image.clone()),
        cmd: Some(vec!["/bin/sleep".to_owned(), "300".to_owned()]),
        labels: Some(labels.clone().into_iter().collect()),
        ..Default::default()
    };
    let options = bollard::query_parameters::CreateContainerOptionsBuilder::new()
        .name(&format!("{}-foreign", cleanup.id))
        .build();
    let foreign = docker.create_container(Some(options), body).await.unwrap().id;
    docker.start_container(&foreign, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();

    let report = containers.remove_labelled(&labels).await.unwrap();
    assert_eq!(report.containers, 1);
    assert!(containers.state(&ours).await.unwrap_err().is_not_found());
    let survivor =
        docker.inspect_container(&foreign, None::<bollard::query_parameters::InspectContainerOptions>).await.unwrap();
    assert_eq!(survivor.state.unwrap().running, Some(true), "the foreign container was touched");
    // The engine-level selector of the caller's labels alone still sees it.
    assert_eq!(cleanup.leftovers(&docker).await.0, 1);
}
