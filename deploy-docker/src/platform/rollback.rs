//! What a release runs with when it is applied again: the configuration
//! snapshot its `config_checksum` names (see [`crate::config_files`]).
//!
//! The engine restores the previous release by applying it with the current
//! `AppSpec` (a rolling rollback, the old track of a blue-green or canary
//! rollback, a rollback resumed after a crash). The spec's environment is then
//! the failed release's; the snapshot's is the one the previous release ran
//! with, so every apply of a release with a snapshot that recorded an
//! environment uses that one.

use deploy_core::model::{AppId, Release};
use deploy_core::platform::PlatformError;

use super::{DockerPlatform, platform_error};
use crate::config_files::{ConfigSnapshots, Snapshot};

impl DockerPlatform {
    /// The snapshot `release.config_checksum` names, when it exists.
    pub(super) async fn release_snapshot(
        &self,
        app: &AppId,
        release: &Release,
    ) -> Result<Option<Snapshot>, PlatformError> {
        let Some(id) = &release.config_checksum else { return Ok(None) };
        ConfigSnapshots::new(self.docker.clone(), self.config.labels.clone())
            .read(app, id)
            .await
            .map_err(|e| platform_error("read the release's configuration snapshot", e))
    }
}
