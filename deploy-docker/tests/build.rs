//! Builds on the real engine: progress, analysis, cache, tags, and the typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use common::{Cleanup, busybox_context, docker};
use deploy_core::build::{BuildError, BuildEvent, BuildRequest, ImageBuilder};
use deploy_core::error::Classify;
use deploy_core::model::ImageRef;
use deploy_docker::DockerImageBuilder;
use futures::StreamExt;

#[tokio::test]
async fn build_streams_progress_and_analyses_the_image_and_the_cache() {
    let docker = docker().await;
    let cleanup = Cleanup::new("build");
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), true, &cleanup.id);
    std::fs::create_dir(dir.path().join("ignored")).unwrap();
    std::fs::write(dir.path().join("ignored/big.bin"), vec![7u8; 1 << 20]).unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "ignored\n").unwrap();
    // The Dockerfile copies the whole context: an ignored directory must not arrive.
    let dockerfile = std::fs::read_to_string(dir.path().join("Dockerfile")).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile.replace("EXPOSE 8080", "COPY . /ctx\nEXPOSE 8080"))
        .unwrap();

    let first = ImageRef::parse(&format!("deploy-rs-test/{}:1", cleanup.id)).unwrap();
    let second = ImageRef::parse(&format!("deploy-rs-test/{}:also", cleanup.id)).unwrap();
    let (key, value) = cleanup.label();
    let request = BuildRequest::new(dir.path())
        .tag(first.clone())
        .tag(second.clone())
        .build_arg("VERSION", "1.0.0")
        .label(key, value)
        .label("org.example.team", "payments");
    let builder = DockerImageBuilder::new(docker.clone());

    let events: Vec<BuildEvent> = builder.build(request.clone()).map(|e| e.unwrap()).collect().await;
    let steps: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Step { instruction, .. } => Some(instruction.as_str()),
            _ => None,
        })
        .collect();
    assert!(steps[0].starts_with("FROM scratch"), "{steps:?}");
    assert!(steps.iter().any(|s| s.starts_with("RUN mkdir -p /www")), "{steps:?}");
    let Some(BuildEvent::Finished { result }) = events.last() else { panic!("no Finished event last: {events:?}") };
    assert!(result.image_id.starts_with("sha256:"), "{}", result.image_id);
    assert_eq!(result.tags, vec![first.clone(), second.clone()]);
    let analysis = &result.analysis;
    assert_eq!(analysis.steps as usize, steps.len() - 1, "every step but FROM, which makes no layer");
    let busybox_size = std::fs::metadata(common::BUSYBOX).unwrap().len();
    assert!(analysis.size_bytes >= busybox_size, "{analysis:?}");
    assert_eq!(analysis.layer_count, 4, "COPY, RUN, RUN, COPY: {analysis:?}");
    let largest = &analysis.largest_layers;
    assert!(largest.windows(2).all(|w| w[0].size_bytes >= w[1].size_bytes), "{analysis:?}");
    let context_copy = largest.iter().find(|l| l.created_by.contains("in /ctx")).unwrap();
    // The context holds busybox, the Dockerfile and .dockerignore, not the ignored megabyte.
    assert!(context_copy.size_bytes >= busybox_size, "{analysis:?}");
    assert!(context_copy.size_bytes < busybox_size + 64 * 1024, "the ignored megabyte was sent: {analysis:?}");

    // Both tags and the labels are on the image.
    let inspect = docker.inspect_image(&second.familiar()).await.unwrap();
    assert_eq!(inspect.id.as_deref(), Some(result.image_id.as_str()));
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(labels.get("org.example.team").map(String::as_str), Some("payments"));

    // The same build again is answered from the cache, every step of it.
    let again = builder.build_to_end(request.clone()).await.unwrap();
    assert_eq!(again.image_id, result.image_id);
    assert_eq!(again.analysis.cached_steps, again.analysis.steps, "{:?}", again.analysis);
    assert_eq!(again.analysis.cache_efficiency, 1.0);

    // no_cache rebuilds every step.
    let fresh = builder.build_to_end(request.no_cache(true)).await.unwrap();
    assert_eq!(fresh.analysis.cached_steps, 0);
}

#[tokio::test]
async fn build_args_and_target_stage_are_honoured() {
    let docker = docker().await;
    let cleanup = Cleanup::new("stage");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::BUSYBOX, dir.path().join("busybox")).unwrap();
    std::fs::write(
        dir.path().join("build.Dockerfile"),
        format!("FROM scratch AS base\nLABEL deploy-rs.test={}\nCOPY busybox /bin/busybox\nARG FLAVOUR=plain\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $FLAVOUR > /flavour\"]\n\
         FROM base AS runtime\nRUN [\"/bin/busybox\", \"touch\", \"/runtime-only\"]\n", cleanup.id),
    )
    .unwrap();
    let (key, value) = cleanup.label();
    let tag = ImageRef::parse(&format!("deploy-rs-test/{}:base", cleanup.id)).unwrap();
    let result = DockerImageBuilder::new(docker.clone())
        .build_to_end(
            BuildRequest::new(dir.path())
                .dockerfile("build.Dockerfile")
                .target("base")
                .build_arg("FLAVOUR", "spicy")
                .tag(tag)
                .label(key, value),
        )
        .await
        .unwrap();
    assert!(result.analysis.steps >= 4, "{:?}", result.analysis);
    let history = docker.image_history(&result.image_id).await.unwrap();
    assert!(history.iter().all(|h| !h.created_by.contains("runtime-only")));
    assert!(history.iter().any(|h| h.created_by.contains("FLAVOUR=spicy")), "{history:?}");
}

#[tokio::test]
async fn a_failing_run_step_carries_its_log_tail() {
    let docker = docker().await;
    let cleanup = Cleanup::new("fail");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::BUSYBOX, dir.path().join("busybox")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM scratch\nLABEL deploy-rs.test={}\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo compiling; echo 'error: missing semicolon' >&2; exit 3\"]\n", cleanup.id),
    )
    .unwrap();
    let (key, value) = cleanup.label();
    let err = DockerImageBuilder::new(docker)
        .build_to_end(BuildRequest::new(dir.path()).label(key, value))
        .await
        .unwrap_err();
    let BuildError::StepFailed { step, message, log_tail } = &err else { panic!("not StepFailed: {err:?}") };
    assert!(step.starts_with("RUN"), "{step}");
    assert!(message.contains("returned a non-zero code: 3"), "{message}");
    assert!(log_tail.iter().any(|l| l.contains("compiling")), "{log_tail:?}");
    assert!(log_tail.iter().any(|l| l.contains("missing semicolon")), "{log_tail:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_missing_dockerfile_or_context_is_input_not_found() {
    let docker = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let builder = DockerImageBuilder::new(docker);
    let err = builder.build_to_end(BuildRequest::new(dir.path())).await.unwrap_err();
    let BuildError::InputNotFound { path } = &err else { panic!("{err:?}") };
    assert!(path.ends_with("Dockerfile"), "{path:?}");
    assert!(err.is_not_found());
    let err = builder.build_to_end(BuildRequest::new(dir.path().join("nowhere"))).await.unwrap_err();
    assert!(matches!(err, BuildError::InputNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unknown_base_image_fails_the_from_step() {
    let docker = docker().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM 127.0.0.1:1/deploy-rs/does-not-exist:never\n").unwrap();
    let err = DockerImageBuilder::new(docker).build_to_end(BuildRequest::new(dir.path())).await.unwrap_err();
    let BuildError::StepFailed { step, message, .. } = &err else { panic!("{err:?}") };
    assert!(step.starts_with("FROM 127.0.0.1:1/deploy-rs/does-not-exist"), "{step}");
    assert!(!message.is_empty());
}
