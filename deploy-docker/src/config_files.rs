//! Configuration that rolls back with the image, on Docker: each release's
//! configuration files and environment in a labelled, content-addressed volume
//! that only that release's containers use.
//!
//! Why: a container that bind-mounts `/etc/shop` reads whatever the host holds
//! now, and a rollback that re-creates the previous release's containers from
//! the current `AppSpec` gives them the current environment; so a rollback would
//! restore the image but not the configuration the old release ran with. Here
//! [`ConfigSnapshots::publish_config`] writes a [`ReleaseConfig`] (files, and
//! optionally the environment) into a volume named after a hash of all of it
//! ([`volume_name`], [`config_id`]); the release carries the id as its
//! [`config_checksum`](deploy_core::model::Release::config_checksum); and the
//! Docker platform (`DockerPlatform`), for every release whose checksum names a
//! snapshot:
//!
//! * runs its containers with the snapshot's environment instead of the
//!   `AppSpec`'s, when the snapshot recorded one; secret variables are recorded
//!   as references (secret and key, never the value) and read from the
//!   platform's `SecretManager` each time a container is created;
//! * mounts the files read-only where the app's
//!   [`Workload::config_mount`](crate::workload::Workload::config_mount) says.
//!
//! Every path that re-creates the previous release (a rolling rollback, the old
//! track of a blue-green or canary rollback, a rollback resumed after a crash)
//! applies that release, and with it its snapshot, which nothing rewrites with
//! other contents (its name is its contents' hash; the environment is in the
//! volume's labels, which the engine never changes). A release naming a snapshot
//! that does not exist is refused before anything is created when the app mounts
//! files; without a config mount, a checksum naming no snapshot is an opaque
//! label and the spec's environment is used. [`ConfigSnapshots::collect_garbage`]
//! removes the older snapshots that no container uses.
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
use deploy_core::model::{AppId, EnvVar};
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::error::DockerError;
use crate::labels::{self, label_filters, owned_labels};

/// The label with a snapshot volume's creation time (milliseconds since the
/// epoch, zero-padded), for ordering whatever bollard's features make of `CreatedAt`.
const PUBLISHED_AT: &str = "deploy-rs.published-at";

/// Hex digits of an id (64 bits).
const ID_LEN: usize = 16;

/// The label with a snapshot's recorded environment, as JSON (plain values and
/// references to secrets, never a secret's value).
const ENV: &str = "deploy-rs.env";

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
    hash_files(&mut hash, files);
    hex_id(hash)
}

fn hash_files(hash: &mut Sha256, files: &BTreeMap<String, Vec<u8>>) {
    for (path, content) in files {
        hash.update((path.len() as u64).to_be_bytes());
        hash.update(path.as_bytes());
        hash.update((content.len() as u64).to_be_bytes());
        hash.update(content);
    }
}

fn hex_id(hash: Sha256) -> String {
    let digest = hash.finalize();
    digest.iter().take(ID_LEN / 2).map(|b| format!("{b:02x}")).collect()
}

/// What a release runs with besides its image: configuration files and, when
/// recorded, its environment.
///
/// ```
/// use deploy_core::model::{EnvVar, Name};
/// use deploy_docker::config_files::{ReleaseConfig, config_id};
/// let v1 = ReleaseConfig::new().file("app.conf", b"greeting = hello\n".to_vec()).env(vec![
///     EnvVar::value("FOO", "1").unwrap(),
///     EnvVar::from_secret("DB_PASSWORD", Name::new("db").unwrap(), "password").unwrap(),
/// ]);
/// let v2 = v1.clone().env(vec![EnvVar::value("FOO", "2").unwrap()]);
/// assert_ne!(config_id(&v1), config_id(&v2), "the environment is part of the id");
/// // Files alone have the id they always had.
/// let files = ReleaseConfig::new().file("app.conf", b"greeting = hello\n".to_vec());
/// assert_eq!(config_id(&files), deploy_docker::config_files::snapshot_id(&files.files));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReleaseConfig {
    /// Files by relative path (`/`-separated, no `.` or `..` segments).
    pub files: BTreeMap<String, Vec<u8>>,
    /// The release's environment, which then replaces the `AppSpec`'s for every
    /// container of the release; `None` records none (the spec's is used).
    /// Secret variables are references: their values are never recorded.
    pub env: Option<Vec<EnvVar>>,
}

impl ReleaseConfig {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file.
    #[must_use]
    pub fn file(mut self, path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.into(), content.into());
        self
    }

    /// Records `env` as the release's environment (pass the `AppSpec`'s `env`).
    #[must_use]
    pub fn env(mut self, env: Vec<EnvVar>) -> Self {
        self.env = Some(env);
        self
    }
}

/// The id of a release's configuration: [`snapshot_id`] of the files when no
/// environment is recorded; otherwise the first 16 hex digits of a SHA-256 over
/// the files (as there) and the environment's JSON.
pub fn config_id(config: &ReleaseConfig) -> String {
    let Some(env) = &config.env else { return snapshot_id(&config.files) };
    let mut hash = Sha256::new();
    hash_files(&mut hash, &config.files);
    let json = serde_json::to_vec(env).unwrap_or_default();
    hash.update(b"\0deploy-rs.env\0");
    hash.update((json.len() as u64).to_be_bytes());
    hash.update(&json);
    hex_id(hash)
}

/// A published snapshot, as read back from the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Its id (the release's `config_checksum`).
    pub id: String,
    /// The volume holding its files.
    pub volume: String,
    /// The recorded environment, if any (secret variables as references).
    pub env: Option<Vec<EnvVar>>,
}

/// Configuration snapshots of applications on one engine.
#[derive(Debug, Clone)]
pub struct ConfigSnapshots {
    docker: Docker,
    labels: BTreeMap<String, String>,
}

impl ConfigSnapshots {
    /// Snapshots on `docker`; every volume and carrier container also gets `labels`
    /// (pass the platform's `PlatformConfig::labels`).
    pub fn new(docker: Docker, labels: BTreeMap<String, String>) -> Self {
        Self { docker, labels }
    }

    /// Writes `files` (relative paths, `/`-separated, no `..`) into the snapshot
    /// volume of `app` and returns its id, to put in the release's
    /// `config_checksum`; records no environment (see
    /// [`ConfigSnapshots::publish_config`]).
    pub async fn publish(
        &self,
        app: &AppId,
        files: &BTreeMap<String, Vec<u8>>,
        carrier_image: &str,
    ) -> Result<String, DockerError> {
        self.publish_config(app, &ReleaseConfig { files: files.clone(), env: None }, carrier_image).await
    }

    /// Writes `config` into the snapshot volume of `app` (the files into the
    /// volume, the environment into its labels) and returns its id
    /// ([`config_id`]), to put in the release's `config_checksum`.
    /// `carrier_image` must be on the engine when there are files: a container
    /// is created from it (never started) only to write into the volume, and
    /// removed. Publishing the same configuration again rewrites the same bytes
    /// into the same volume, so a publish interrupted by a crash is repaired by
    /// publishing again. A volume of that name whose recorded environment is not
    /// `config`'s is refused.
    #[instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn publish_config(
        &self,
        app: &AppId,
        config: &ReleaseConfig,
        carrier_image: &str,
    ) -> Result<String, DockerError> {
        let files = &config.files;
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
        let id = config_id(config);
        let volume = volume_name(app, &id);
        let env_json = match &config.env {
            Some(env) => Some(serde_json::to_string(env).map_err(|e| DockerError::Invalid {
                operation: "record the release's environment".to_owned(),
                message: e.to_string(),
            })?),
            None => None,
        };
        let mut volume_labels = owned_labels(&self.labels);
        volume_labels.extend(labels::app_selector(app));
        volume_labels.insert(labels::CONFIG_SNAPSHOT.to_owned(), id.clone());
        let mut volume_only = volume_labels.clone();
        volume_only.insert(PUBLISHED_AT.to_owned(), format!("{:020}", jiff::Timestamp::now().as_millisecond()));
        if let Some(json) = &env_json {
            volume_only.insert(ENV.to_owned(), json.clone());
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(volume_only.into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(|e| DockerError::from_bollard("create configuration volume", || format!("volume {volume}"), e))?;
        // The engine answers an existing volume's name with that volume, labels unchanged.
        let written = self.read(app, &id).await?;
        if written.as_ref().map(|s| &s.env) != Some(&config.env) {
            return Err(DockerError::Invalid {
                operation: "publish configuration".to_owned(),
                message: format!("volume {volume} exists with another recorded environment or owner"),
            });
        }
        if files.is_empty() {
            return Ok(id);
        }

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
        Ok(self.read(app, id).await?.is_some())
    }

    /// Snapshot `id` of `app` with its recorded environment; `None` when no
    /// volume of that name carries this crate's and the app's labels and the id.
    #[instrument(skip_all, fields(deploy.app = %app, config.id = %id), err)]
    pub async fn read(&self, app: &AppId, id: &str) -> Result<Option<Snapshot>, DockerError> {
        // Only ids this module makes name a snapshot: any other checksum is an
        // opaque label (and may not even be a valid volume name).
        if id.len() != ID_LEN || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Ok(None);
        }
        let volume = volume_name(app, id);
        let found = match self.docker.inspect_volume(&volume).await {
            Ok(found) => found,
            Err(e) if crate::error::is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(DockerError::from_bollard("read configuration volume", || format!("volume {volume}"), e));
            }
        };
        let mut expected = owned_labels(&self.labels);
        expected.extend(labels::app_selector(app));
        expected.insert(labels::CONFIG_SNAPSHOT.to_owned(), id.to_owned());
        if expected.iter().any(|(k, v)| found.labels.get(k) != Some(v)) {
            return Ok(None);
        }
        let env = match found.labels.get(ENV) {
            Some(json) => Some(serde_json::from_str::<Vec<EnvVar>>(json).map_err(|e| DockerError::Invalid {
                operation: "read the release's recorded environment".to_owned(),
                message: format!("volume {volume}: {e}"),
            })?),
            None => None,
        };
        Ok(Some(Snapshot { id: id.to_owned(), volume, env }))
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
        let in_use = self.used_by_containers(app).await?;
        let mut removed = 0;
        for (name, _) in volumes.into_iter().take(old) {
            // A snapshot that only records an environment is mounted by no
            // container: the label its release's containers carry keeps it.
            if in_use.iter().any(|id| volume_name(app, id) == name) {
                continue;
            }
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

impl ConfigSnapshots {
    /// The snapshot ids that containers of `app` (running or not) are labelled with.
    async fn used_by_containers(&self, app: &AppId) -> Result<Vec<String>, DockerError> {
        let mut filters = label_filters(&owned_labels(&labels::app_selector(app)));
        if let Some(list) = filters.get_mut("label") {
            list.push(labels::CONFIG_SNAPSHOT.to_owned());
        }
        let options =
            bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let containers =
            self.docker.list_containers(Some(options)).await.map_err(|e| {
                DockerError::from_bollard("list the containers of configuration snapshots", String::new, e)
            })?;
        Ok(containers
            .into_iter()
            .filter_map(|c| c.labels.and_then(|mut l| l.remove(labels::CONFIG_SNAPSHOT)))
            .collect())
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
