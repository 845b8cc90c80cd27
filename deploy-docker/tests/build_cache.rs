//! Build caches on the real engine: an unchanged rebuild is all cache hits, layers
//! are reused only from the images named in `cache_from` when some are, and BuildKit
//! (feature `buildkit`) reports its cache hits from its own progress.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use common::{Cleanup, busybox_context, docker};
use deploy_core::build::{BuildEvent, BuildRequest, ImageBuilder};
use deploy_core::model::ImageRef;
use deploy_docker::{BuilderConfig, DockerImageBuilder};
use futures::StreamExt;

fn request(dir: &std::path::Path, cleanup: &Cleanup, tag: &str) -> BuildRequest {
    let (key, value) = cleanup.label();
    BuildRequest::new(dir)
        .tag(ImageRef::parse(&format!("deploy-rs-test/{}:{tag}", cleanup.id)).unwrap())
        .label(key, value)
}

/// A second context whose layers share nothing with `busybox_context`'s.
fn unrelated_context(dir: &std::path::Path, marker: &str) {
    std::fs::copy(common::BUSYBOX, dir.join("sh")).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM scratch\nLABEL unrelated={marker}\nCOPY sh /sh\n")).unwrap();
}

#[tokio::test]
async fn an_unchanged_rebuild_reports_every_step_cached_and_cache_from_limits_reuse_to_the_named_images() {
    let docker = docker().await;
    let cleanup = Cleanup::new("cache");
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), true, &cleanup.id);
    let builder = DockerImageBuilder::new(docker.clone());

    let first = builder.build_to_end(request(dir.path(), &cleanup, "first")).await.unwrap();
    assert_eq!(first.analysis.cached_steps, 0, "a new marker makes every layer new: {:?}", first.analysis);
    assert!(first.analysis.steps >= 5, "{:?}", first.analysis);

    let events: Vec<BuildEvent> =
        builder.build(request(dir.path(), &cleanup, "again")).map(|event| event.unwrap()).collect().await;
    let cached_events = events.iter().filter(|event| matches!(event, BuildEvent::Cached { .. })).count();
    let Some(BuildEvent::Finished { result: again }) = events.last() else { panic!("no result: {events:?}") };
    assert_eq!(again.analysis.cached_steps, again.analysis.steps, "{:?}", again.analysis);
    assert_eq!(again.analysis.cache_efficiency, 1.0);
    assert_eq!(cached_events as u32, again.analysis.steps);
    assert_eq!(again.image_id, first.image_id, "the engine made no new image");

    // An unrelated image as the only cache source: the engine may not reuse the
    // layers of `first`, so every step runs again.
    let other_dir = tempfile::tempdir().unwrap();
    unrelated_context(other_dir.path(), &cleanup.id);
    let unrelated = builder.build_to_end(request(other_dir.path(), &cleanup, "unrelated")).await.unwrap();
    let unrelated_ref = unrelated.tags[0].clone();
    let limited = DockerImageBuilder::with_config(docker.clone(), BuilderConfig::default().cache_from(unrelated_ref));
    let rebuilt = limited.build_to_end(request(dir.path(), &cleanup, "limited")).await.unwrap();
    assert_eq!(rebuilt.analysis.cached_steps, 0, "{:?}", rebuilt.analysis);
    assert_ne!(rebuilt.image_id, first.image_id, "the engine built new layers");

    // The previous release as the cache source: every layer is reused from it.
    let from_previous =
        DockerImageBuilder::with_config(docker.clone(), BuilderConfig::default().cache_from(first.tags[0].clone()));
    let reused = from_previous.build_to_end(request(dir.path(), &cleanup, "reused")).await.unwrap();
    assert_eq!(reused.analysis.cached_steps, reused.analysis.steps, "{:?}", reused.analysis);
    assert_eq!(reused.image_id, first.image_id, "the engine answered with the previous image");
}

#[cfg(feature = "buildkit")]
#[tokio::test]
async fn buildkit_builds_and_reports_an_unchanged_rebuild_as_all_cache_hits() {
    use deploy_docker::BuilderBackend;

    let docker = docker().await;
    let cleanup = Cleanup::new("buildkit");
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), true, &cleanup.id);
    // BuildKit's cache keys ignore LABEL: a file unique to this test makes its layers
    // its own, so that another build of busybox on this engine cannot answer them.
    std::fs::write(dir.path().join("marker"), &cleanup.id).unwrap();
    let dockerfile = std::fs::read_to_string(dir.path().join("Dockerfile")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        dockerfile.replace("COPY busybox /bin/busybox", "COPY busybox marker /bin/"),
    )
    .unwrap();
    let builder = DockerImageBuilder::with_config(
        docker.clone(),
        BuilderConfig::default().backend(BuilderBackend::BuildKit).inline_cache(true),
    );

    let first = builder.build_to_end(request(dir.path(), &cleanup, "kit1")).await.unwrap();
    assert!(first.image_id.starts_with("sha256:"), "{}", first.image_id);
    // COPY, RUN, RUN: LABEL, ARG, EXPOSE and CMD are metadata, not BuildKit vertices.
    assert_eq!(first.analysis.steps, 3, "{:?}", first.analysis);
    assert_eq!(first.analysis.cached_steps, 0, "{:?}", first.analysis);
    assert_eq!(first.analysis.layer_count, 3, "{:?}", first.analysis);

    // What the engine stored: the RUN step wrote the version file inside the image.
    let inspect = docker.inspect_image(&first.tags[0].familiar()).await.unwrap();
    assert_eq!(inspect.id.as_deref(), Some(first.image_id.as_str()));
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(labels.get(common::TEST_LABEL), Some(&cleanup.id));

    let again = builder.build_to_end(request(dir.path(), &cleanup, "kit2")).await.unwrap();
    assert_eq!(again.analysis.steps, 3, "{:?}", again.analysis);
    assert_eq!(again.analysis.cached_steps, 3, "{:?}", again.analysis);
    assert_eq!(again.analysis.cache_efficiency, 1.0);

    // A changed file invalidates its step and every later one.
    std::fs::write(
        dir.path().join("Dockerfile"),
        std::fs::read_to_string(dir.path().join("Dockerfile")).unwrap().replace("ARG VERSION=0", "ARG VERSION=1"),
    )
    .unwrap();
    let changed = builder.build_to_end(request(dir.path(), &cleanup, "kit3")).await.unwrap();
    assert_eq!((changed.analysis.steps, changed.analysis.cached_steps), (3, 2), "{:?}", changed.analysis);
}

#[cfg(feature = "buildkit")]
#[tokio::test]
async fn a_failing_buildkit_step_is_named_with_its_output() {
    use deploy_core::build::BuildError;
    use deploy_docker::BuilderBackend;

    let docker = docker().await;
    let cleanup = Cleanup::new("buildkit-fail");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::BUSYBOX, dir.path().join("busybox")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo about to fail {id}; exit 3\"]\n",
            id = cleanup.id
        ),
    )
    .unwrap();
    let builder =
        DockerImageBuilder::with_config(docker.clone(), BuilderConfig::default().backend(BuilderBackend::BuildKit));
    let err = builder.build_to_end(request(dir.path(), &cleanup, "fail")).await.unwrap_err();
    let BuildError::StepFailed { step, message, log_tail } = &err else { panic!("{err:?}") };
    assert!(step.starts_with("RUN"), "{err:?}");
    assert!(message.contains("exit code: 3"), "{err:?}");
    assert!(log_tail.iter().any(|line| line.contains(&format!("about to fail {}", cleanup.id))), "{err:?}");
}
