//! Configuration that rolls back with the image, on Docker: each release's
//! configuration files in a labelled, content-addressed volume that only that
//! release's containers mount.
//!
//! Why: a container that bind-mounts `/etc/shop` reads whatever the host holds
//! now, so a rollback restores the image but not the files the old release ran
//! with. Here [`ConfigSnapshots::publish`] writes the files into a volume named
//! after a hash of their paths and contents ([`volume_name`]); the release carries
//! the id as its [`config_checksum`](deploy_core::model::Release::config_checksum);
//! and [`DockerPlatform`](crate::DockerPlatform), for an app whose
//! [`Workload::config_mount`](crate::workload::Workload::config_mount) is set, mounts
//! that volume read-only there. Rolling back re-applies the old release and with it
//! the old volume, which nothing rewrites with other contents (its name is its
//! contents' hash). A release naming a snapshot that does not exist is refused
//! before anything is created. [`ConfigSnapshots::collect_garbage`] removes the
//! older snapshots that no container uses.
//!
//! The id is a SHA-256 of the contents: it reveals nothing of them, but a guessable
//! secret file can be confirmed from it, and the volume holds the files as they are
//! on the engine's disk. Keep secrets in a [`SecretManager`](deploy_core::secret::SecretManager)
//! and pass them as secret environment variables instead.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use deploy_core::model::AppId;
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::containers::{label_filters, owned_labels};
use crate::error::DockerError;
use crate::labels;

/// The label with a snapshot volume's creation time (milliseconds since the
/// epoch, zero-padded), for ordering whatever bollard's features make of `CreatedAt`.
const PUBLISHED_AT: &str = "deploy-rs.published-at";

/// Hex digits of an id (64 bits).
const ID_LEN: usize = 16;

/// Where the carrier container sees the volume while the files are written.
const CARRIER_PATH: &str = "/deploy-rs-config";

/// The volume holding snapshot `id` of `app`: `deploy-rs-config-<namespace>-<app>-<id>`.
///
/// ```
/// use deploy_core::model::{AppId, Name, Namespace};
/// let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
/// assert_eq!(deploy_docker::config_files::volume_name(&app, "0123456789abcdef"), "deploy-rs-config-shop-web-0123456789abcdef");
/// ```
pub fn volume_name(app: &AppId, id: &str) -> String {
    format!("deploy-rs-config-{}-{}-{id}", app.namespace, app.name)
}

/// The id of a set of files: the first 16 hex digits of a SHA-256 over every
/// path and content, in path order, each length-prefixed.
///
/// ```
/// use std::collections::BTreeMap;
/// use deploy_docker::config_files::snapshot_id;
/// let a = BTreeMap::from([("app.toml".to_owned(), b"port = 8080\n".to_vec())]);
/// let b = BTreeMap::from([("app.toml".to_owned(), b"port = 9090\n".to_vec())]);
/// assert_eq!(snapshot_id(&a).len(), 16);
/// assert_ne!(snapshot_id(&a), snapshot_id(&b));
/// ```
pub fn snapshot_id(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut hash = Sha256::new();
    for (path, content) in files {
        hash.update((path.len() as u64).to_be_bytes());
        hash.update(path.as_bytes());
        hash.update((content.len() as u64).to_be_bytes());
        hash.update(content);
    }
    let digest = hash.finalize();
    digest.iter().take(ID_LEN / 2).map(|b| format!("{b:02x}")).collect()
}

/// Configuration snapshots of applications on one engine.
#[derive(Debug, Clone)]
pub struct ConfigSnapshots {
    docker: Docker,
    labels: BTreeMap<String, String>,
}

impl ConfigSnapshots {
    /// Snapshots on `docker`; every volume and carrier container also gets `labels`
    /// (pass the platform's [`PlatformConfig::labels`](crate::platform::PlatformConfig::labels)).
    pub fn new(docker: Docker, labels: BTreeMap<String, String>) -> Self {
        Self { docker, labels }
    }

    /// Writes `files` (relative paths, `/`-separated, no `..`) into the snapshot
    /// volume of `app` and returns its id, to put in the release's
    /// `config_checksum`. `carrier_image` must be on the engine: a container is
    /// created from it (never started) only to write into the volume, and removed.
    /// Publishing the same files again rewrites the same bytes into the same
    /// volume, so a publish interrupted by a crash is repaired by publishing again.
    #[instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn publish(
        &self,
        app: &AppId,
        files: &BTreeMap<String, Vec<u8>>,
        carrier_image: &str,
    ) -> Result<String, DockerError> {
        for path in files.keys() {
            let bad = path.is_empty()
                || path.starts_with('/')
                || path.split('/').any(|s| s.is_empty() || s == "." || s == "..");
            if bad {
                return Err(DockerError::Invalid {
                    operation: "publish configuration files".to_owned(),
                    message: format!("{path:?} is not a relative path without '.' or '..' segments"),
                });
            }
        }
        let id = snapshot_id(files);
        let volume = volume_name(app, &id);
        let mut volume_labels = owned_labels(&self.labels);
        volume_labels.extend(labels::app_selector(app));
        volume_labels.insert(labels::CONFIG_SNAPSHOT.to_owned(), id.clone());
        let mut volume_only = volume_labels.clone();
        volume_only.insert(PUBLISHED_AT.to_owned(), format!("{:020}", jiff::Timestamp::now().as_millisecond()));
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(volume_only.into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(|e| DockerError::from_bollard("create configuration volume", || format!("volume {volume}"), e))?;

        let archive = tar_of(files).map_err(|e| DockerError::Invalid {
            operation: "pack configuration files".to_owned(),
            message: e.to_string(),
        })?;
        let carrier = format!("{volume}-carrier-{:08x}", rand::random::<u32>());
        let body = ContainerCreateBody {
            image: Some(carrier_image.to_owned()),
            labels: Some(volume_labels.into_iter().collect()),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:{CARRIER_PATH}")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::new().name(&carrier).build()), body)
            .await
            .map_err(|e| {
                DockerError::from_bollard("create configuration carrier", || format!("image {carrier_image}"), e)
            })?;
        let upload = self
            .docker
            .upload_to_container(
                &created.id,
                Some(UploadToContainerOptionsBuilder::new().path(CARRIER_PATH).build()),
                bollard::body_full(archive.into()),
            )
            .await;
        let removed = self
            .docker
            .remove_container(&created.id, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
            .await;
        upload.map_err(|e| DockerError::from_bollard("write configuration files", || format!("volume {volume}"), e))?;
        removed.map_err(|e| {
            DockerError::from_bollard("remove configuration carrier", || format!("container {carrier}"), e)
        })?;
        Ok(id)
    }

    /// Whether snapshot `id` of `app` exists (a volume of that name that this
    /// crate made for that app).
    pub async fn exists(&self, app: &AppId, id: &str) -> Result<bool, DockerError> {
        Ok(self.list(app).await?.iter().any(|(name, _)| *name == volume_name(app, id)))
    }

    /// The snapshot volumes of `app`: name and publication time, oldest first.
    async fn list(&self, app: &AppId) -> Result<Vec<(String, String)>, DockerError> {
        let mut selector = labels::app_selector(app);
        selector.extend(self.labels.clone());
        let mut filters: HashMap<String, Vec<String>> = label_filters(&selector);
        if let Some(list) = filters.get_mut("label") {
            list.push(labels::CONFIG_SNAPSHOT.to_owned());
        }
        let answer = self
            .docker
            .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| DockerError::from_bollard("list configuration volumes", String::new, e))?;
        let mut volumes: Vec<(String, String)> = answer
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                let published = v.labels.get(PUBLISHED_AT).cloned().unwrap_or_default();
                (v.name, published)
            })
            .collect();
        volumes.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(volumes)
    }

    /// Removes the snapshots of `app` older than the `keep` newest that no
    /// container uses (the engine refuses to remove a volume in use; such a
    /// volume stays). Returns how many were removed.
    #[instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn collect_garbage(&self, app: &AppId, keep: usize) -> Result<usize, DockerError> {
        let volumes = self.list(app).await?;
        let old = volumes.len().saturating_sub(keep);
        let mut removed = 0;
        for (name, _) in volumes.into_iter().take(old) {
            match self.docker.remove_volume(&name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
                Ok(()) => removed += 1,
                Err(e) if crate::error::is_not_found(&e) => {}
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
                Err(e) => {
                    return Err(DockerError::from_bollard(
                        "remove configuration volume",
                        || format!("volume {name}"),
                        e,
                    ));
                }
            }
        }
        Ok(removed)
    }
}

/// A tar archive of `files`, read-only for everyone.
fn tar_of(files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for path in files.keys() {
        let mut prefix = String::new();
        for segment in path.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            prefix = if prefix.is_empty() { (*segment).to_owned() } else { format!("{prefix}/{segment}") };
            dirs.insert(prefix.clone());
        }
    }
    for dir in dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder.append_data(&mut header, format!("{dir}/"), std::io::empty())?;
    }
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o444);
        header.set_size(content.len() as u64);
        builder.append_data(&mut header, path, content.as_slice())?;
    }
    builder.into_inner()
}
