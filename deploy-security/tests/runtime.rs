//! The runtime security monitor on the real Docker engine: a well-behaved container
//! and a badly configured one, both built FROM scratch with Debian's busybox-static.
#![cfg(feature = "docker")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use deploy_core::scan::Severity;
use deploy_security::runtime::{RuntimeError, RuntimeMonitor, RuntimePolicy};
use futures_util::StreamExt;

const BUSYBOX: &str = "/bin/busybox";
const LABEL: &str = "deploy-rs.test";

async fn docker() -> Docker {
    let docker = Docker::connect_with_local_defaults()
        .unwrap_or_else(|e| panic!("these tests need a running Docker engine (start dockerd): {e}"));
    docker.ping().await.unwrap_or_else(|e| panic!("these tests need a running Docker engine (start dockerd): {e}"));
    docker
}

/// Builds `FROM scratch` + busybox (with its applets installed) as `tag`, labelled
/// with `marker` so that no other test shares or removes its layers.
async fn build_busybox_image(docker: &Docker, tag: &str, marker: &str) {
    assert!(
        std::path::Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: these tests need Debian's busybox-static (apt-get install -y busybox-static)"
    );
    let dockerfile = format!(
        "FROM scratch\nLABEL {LABEL}={marker}\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN mkdir -p /www /tmp && echo ok > /www/index.html\n"
    );
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    archive.append_data(&mut header, "Dockerfile", dockerfile.as_bytes()).unwrap();
    archive.append_path_with_name(BUSYBOX, "busybox").unwrap();
    let context = archive.into_inner().unwrap();
    let options = BuildImageOptionsBuilder::new().dockerfile("Dockerfile").t(tag).rm(true).build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        item.unwrap_or_else(|e| panic!("building the test image failed: {e}"));
    }
}

/// Removes the test's containers and image when dropped, even when the test panics.
struct Cleanup {
    containers: Vec<String>,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (containers, image) = (self.containers.clone(), self.image.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let Ok(docker) = Docker::connect_with_local_defaults() else { return };
                for container in containers {
                    let _ = docker
                        .remove_container(&container, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
                        .await;
                }
                let _ =
                    docker.remove_image(&image, Some(RemoveImageOptionsBuilder::new().force(true).build()), None).await;
            });
        })
        .join();
    }
}

async fn run(docker: &Docker, name: &str, body: ContainerCreateBody) -> String {
    let options = CreateContainerOptionsBuilder::new().name(name).build();
    let created = docker.create_container(Some(options), body).await.unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    created.id
}

/// Waits until `top` shows a process whose command line contains `needle`.
async fn wait_for_process(docker: &Docker, container: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let top = docker.top_processes(container, None::<bollard::query_parameters::TopOptions>).await.unwrap();
        if top.processes.iter().flatten().any(|row| row.iter().any(|cell| cell.contains(needle))) {
            return;
        }
        assert!(Instant::now() < deadline, "no process matching {needle:?} in {container} within 30 s: {top:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(findings: &[deploy_core::scan::Finding]) -> Vec<&str> {
    let mut ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[tokio::test]
async fn a_well_behaved_container_is_clean_and_a_badly_configured_one_is_reported_for_each_fault() {
    let docker = docker().await;
    let marker = format!("runtime-{:08x}", getrandom::u32().unwrap());
    let image = format!("deploy-rs-test/{marker}:1");
    let host_dir = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup { containers: Vec::new(), image: image.clone() };
    build_busybox_image(&docker, &image, &marker).await;
    let labels = HashMap::from([(LABEL.to_owned(), marker.clone())]);

    // Locked down: non-root, read-only root, every capability dropped, limits set,
    // one process: busybox httpd.
    let good_name = format!("{marker}-good");
    cleanup.containers.push(good_name.clone());
    let good = run(
        &docker,
        &good_name,
        ContainerCreateBody {
            image: Some(image.clone()),
            user: Some("65534:65534".into()),
            cmd: Some(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"].map(String::from).to_vec()),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                memory: Some(64 << 20),
                pids_limit: Some(32),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;

    // Everything wrong that this machine's engine can start (it runs in a sandbox
    // that refuses --privileged, checked below on a created container): extra
    // capabilities, host network and pid namespaces, root, a writable root, host
    // directories mounted, no memory limit, 24 MB written to its /dev/shm
    // (memory), and an extra process started by exec.
    let bad_name = format!("{marker}-bad");
    cleanup.containers.push(bad_name.clone());
    let bad = run(
        &docker,
        &bad_name,
        ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(
                [
                    "/bin/busybox",
                    "sh",
                    "-c",
                    "head -c 25165824 /dev/zero > /dev/shm/fill && exec /bin/busybox sleep 3600",
                ]
                .map(String::from)
                .to_vec(),
            ),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                cap_add: Some(vec!["SYS_ADMIN".into(), "NET_ADMIN".into()]),
                network_mode: Some("host".into()),
                pid_mode: Some("host".into()),
                binds: Some(vec![format!("{}:/data", host_dir.path().display()), "/etc:/host-etc:ro".into()]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    wait_for_process(&docker, &bad, "sleep 3600").await;
    let exec = docker
        .create_exec(
            &bad,
            CreateExecOptions { cmd: Some(vec!["/bin/busybox", "tail", "-f", "/dev/null"]), ..Default::default() },
        )
        .await
        .unwrap();
    docker.start_exec(&exec.id, Some(StartExecOptions { detach: true, ..Default::default() })).await.unwrap();
    wait_for_process(&docker, &bad, "tail -f /dev/null").await;
    wait_for_process(&docker, &good, "httpd").await;

    let policy = RuntimePolicy::default()
        .allow_process("/bin/busybox httpd")
        .allow_process("/bin/busybox sleep")
        .require_memory_limit(true)
        .max_memory_bytes(16 << 20)
        .max_pids(10);
    let monitor = RuntimeMonitor::new(docker.clone(), policy);

    let good_report = monitor.check_container(&good).await.unwrap();
    assert!(good_report.findings.is_empty(), "{:#?}", good_report.findings);
    assert_eq!(good_report.name, good_name);
    let used = good_report.usage.memory_bytes.expect("the engine reports memory use");
    assert!(used < 16 << 20, "busybox httpd uses little memory: {used}");

    let bad_report = monitor.check_container(&bad).await.unwrap();
    let found = ids(&bad_report.findings);
    assert_eq!(
        found,
        [
            "runtime-added-capability",
            "runtime-host-mount",
            "runtime-host-namespace",
            "runtime-memory-over-limit",
            "runtime-no-memory-limit",
            "runtime-runs-as-root",
            "runtime-unexpected-process",
            "runtime-writable-root-fs",
        ],
        "{:#?}",
        bad_report.findings
    );
    let unexpected: Vec<_> = bad_report.findings.iter().filter(|f| f.id == "runtime-unexpected-process").collect();
    assert_eq!(unexpected.len(), 1, "only the exec'd tail: {unexpected:#?}");
    assert!(unexpected[0].message.contains("tail -f /dev/null"), "{}", unexpected[0]);
    let etc = bad_report.findings.iter().find(|f| f.message.contains("host path /etc ")).expect("the /etc mount");
    assert_eq!(etc.severity, Severity::Critical, "{etc}");
    let namespaces = bad_report.findings.iter().filter(|f| f.id == "runtime-host-namespace").count();
    assert_eq!(namespaces, 2, "network and pid");
    assert!(bad_report.usage.memory_bytes.unwrap() > 16 << 20, "{:?}", bad_report.usage);

    // Both running containers of this test, found by their label.
    let all = monitor.check_running(&[(LABEL, marker.as_str())]).await.unwrap();
    let mut names: Vec<&str> = all.iter().map(|report| report.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, [bad_name.as_str(), good_name.as_str()]);

    // A privileged container, created and never started: its configuration alone.
    let privileged_name = format!("{marker}-privileged");
    cleanup.containers.push(privileged_name.clone());
    let options = CreateContainerOptionsBuilder::new().name(&privileged_name).build();
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        user: Some("65534".into()),
        cmd: Some(["/bin/busybox", "sleep", "3600"].map(String::from).to_vec()),
        labels: Some(labels.clone()),
        host_config: Some(HostConfig {
            privileged: Some(true),
            readonly_rootfs: Some(true),
            memory: Some(64 << 20),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker.create_container(Some(options), body).await.unwrap();
    let findings = monitor.check_configuration(&privileged_name).await.unwrap();
    assert_eq!(ids(&findings), ["runtime-privileged"], "{findings:#?}");
    assert_eq!(findings[0].severity, Severity::Critical);

    // A stopped container is a typed error, not an empty report.
    docker.stop_container(&good, None::<bollard::query_parameters::StopContainerOptions>).await.unwrap();
    let err = monitor.check_container(&good).await.unwrap_err();
    assert!(matches!(err, RuntimeError::NotRunning { .. }), "{err:?}");
    let err = monitor.check_container(&format!("{marker}-missing")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::NotFound { .. }), "{err:?}");
}
