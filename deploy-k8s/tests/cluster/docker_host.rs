//! A Docker host as a fleet target: deploy-docker's `DockerPlatform` and
//! `NetworkAliasRouter` on the machine's Docker engine, as deploy-docker's own
//! engine tests use them, with test images built `FROM scratch` from Debian's
//! `busybox-static`. Every container, network and image the test makes carries
//! the label `deploy-rs.test=<id>`, and clean-up removes only what carries it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::build::{BuildRequest, ImageBuilder};
use deploy_core::model::{AppId, ImageRef, Release, Track, TrafficSplit};
use deploy_core::traffic::TrafficRouter;
use deploy_docker::DockerImageBuilder;
use deploy_docker::NetworkName;
use deploy_docker::bollard::Docker;
use deploy_docker::bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use deploy_docker::containers::Containers;
use deploy_docker::labels;
use deploy_docker::platform::{DockerPlatform, PlatformConfig};
use deploy_docker::router::NetworkAliasRouter;

/// The label every Docker object of a test carries (as in deploy-docker's tests).
pub const TEST_LABEL: &str = "deploy-rs.test";

const BUSYBOX: &str = "/bin/busybox";

/// One Docker host of a fleet: its engine, platform and router, and the id its
/// objects are labelled with.
pub struct DockerHost {
    pub docker: Docker,
    pub id: String,
    pub platform: Arc<DockerPlatform>,
    pub router: Arc<NetworkAliasRouter>,
}

impl DockerHost {
    /// Connects to the engine (or fails naming what to start), with networks
    /// and labels of its own for the test `prefix`.
    pub async fn connect(prefix: &str) -> Self {
        let docker = match deploy_docker::connect::connect(&Default::default()).await {
            Ok(docker) => docker,
            Err(e) => panic!(
                "the fleet test's Docker host needs a running Docker engine (start dockerd, or set DOCKER_HOST): {e}"
            ),
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let id = format!("{prefix}-{}-{nanos:08x}", std::process::id());
        let serving = format!("{id}-edge");
        let config = PlatformConfig::default()
            .network(NetworkName::new(format!("{id}-net")).unwrap())
            .serving_network(NetworkName::new(&serving).unwrap())
            .label(TEST_LABEL, &id)
            .poll_interval(Duration::from_millis(100));
        let platform = Arc::new(DockerPlatform::new(docker.clone(), config));
        let label: BTreeMap<String, String> = [(TEST_LABEL.to_owned(), id.clone())].into_iter().collect();
        let router = Arc::new(
            NetworkAliasRouter::new(docker.clone(), deploy_docker::NetworkName::new(serving.clone()).unwrap())
                .network_labels(label),
        );
        Self { docker, id, platform, router }
    }

    /// The image repository of this test's releases (the same name on every
    /// target of the fleet: the API servers' node stand-in runs any image).
    pub fn repository(&self) -> String {
        format!("deploy-rs-test/{}", self.id)
    }

    /// Builds a busybox httpd image of `release` (serving its version at
    /// `/version` and `/health`), labelled for clean-up.
    pub async fn build(&self, release: &Release) {
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing: the fleet test's Docker host needs Debian's busybox-static \
             (apt-get install -y busybox-static; scripts/test.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(BUSYBOX, dir.path().join("busybox")).unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!(
                "FROM scratch\n\
                 LABEL {TEST_LABEL}={id}\n\
                 COPY busybox /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                 ARG VERSION=0\n\
                 RUN mkdir -p /www && echo ok > /www/health && echo \"$VERSION\" > /www/version\n\
                 EXPOSE 8080\n\
                 CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
                id = self.id
            ),
        )
        .unwrap();
        let request = BuildRequest::new(dir.path())
            .tag(release.image.clone())
            .build_arg("VERSION", release.version.to_string())
            .label(TEST_LABEL, &self.id);
        DockerImageBuilder::new(self.docker.clone()).build_to_end(request).await.unwrap();
    }

    /// The track the router sends all traffic of `app` to.
    pub async fn serving_track(&self, app: &AppId) -> Track {
        let split = self.router.weights(app).await.unwrap();
        let track = Track::ALL.into_iter().find(|t| split == TrafficSplit::all(*t));
        track.unwrap_or_else(|| panic!("{app} is split across tracks: {split:?}"))
    }

    /// What `docker inspect` says of every container of `app`'s `track`: the
    /// image reference each was created from, and whether it runs.
    pub async fn inspect(&self, app: &AppId, track: Track) -> Vec<(String, bool)> {
        let ids = Containers::new(self.docker.clone()).list(&labels::track_selector(app, track)).await.unwrap();
        let mut seen = Vec::new();
        for id in ids {
            let c = self.docker.inspect_container(&id, None).await.unwrap();
            let image = c.config.and_then(|c| c.image).unwrap_or_default();
            let running = c.state.and_then(|s| s.running).unwrap_or(false);
            seen.push((image, running));
        }
        seen
    }

    /// The images of every container of `app`, any track.
    pub async fn images_of(&self, app: &AppId) -> Vec<String> {
        let mut images = Vec::new();
        for track in Track::ALL {
            images.extend(self.inspect(app, track).await.into_iter().map(|(image, _)| image));
        }
        images
    }

    /// Removes the containers, networks and images labelled with this test's
    /// id, nothing else, and checks that none is left.
    pub async fn clean_up(&self) {
        remove_labelled(&self.docker, &self.id).await;
        let filter = HashMap::from([("label".to_owned(), vec![format!("{TEST_LABEL}={}", self.id)])]);
        let left = self
            .docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filter).build()))
            .await
            .unwrap()
            .len()
            + self
                .docker
                .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filter).build()))
                .await
                .unwrap()
                .len();
        assert_eq!(left, 0, "clean-up of {} left labelled containers or networks", self.id);
    }

    /// A release of this test's repository.
    pub fn release(&self, version: &str) -> Release {
        let image = ImageRef::parse(&format!("{}:{version}", self.repository())).unwrap();
        Release::new(deploy_core::model::Version::new(version).unwrap(), image)
    }
}

impl Drop for DockerHost {
    /// Removes what the test labelled even when it panicked (on a runtime of
    /// its own: the test's may be the one dropping it).
    fn drop(&mut self) {
        let id = self.id.clone();
        let docker = self.docker.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(remove_labelled(&docker, &id));
        })
        .join();
    }
}

/// Removes, best effort, every container, network and image labelled
/// `deploy-rs.test=<id>`.
async fn remove_labelled(docker: &Docker, id: &str) {
    let filter = HashMap::from([("label".to_owned(), vec![format!("{TEST_LABEL}={id}")])]);
    if let Ok(list) =
        docker.list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filter).build())).await
    {
        for c in list {
            if let Some(cid) = c.id {
                let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
                let _ = docker.remove_container(&cid, Some(options)).await;
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
            let options = RemoveImageOptionsBuilder::new().force(true).build();
            let _ = docker.remove_image(&image.id, Some(options), None).await;
        }
    }
}
