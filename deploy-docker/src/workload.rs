//! [`Workload`]: the parts of a pod template that an [`AppSpec`](deploy_core::model::AppSpec)
//! does not carry, as the Docker platform reads them.
//!
//! Kubernetes keeps these in `deploy_k8s::manifest::DeploymentOptions`. A Docker
//! host can honour what maps onto one container — the entrypoint and arguments,
//! named volumes, binds of files the caller gives, tmpfs for `emptyDir`, and a
//! release's configuration files — and nothing else. The fields for what only a
//! pod can do (init containers, sidecars, a service account, node selection,
//! tolerations, affinity, topology spread, image pull secrets) exist so that a
//! description written for both platforms reaches this one whole:
//! the Docker platform (`DockerPlatform`) refuses each one that is set, by its
//! field name, before it creates anything.

use std::collections::BTreeMap;

use crate::containers::Mount;

/// Pod-template settings of one application on the Docker platform; set with
/// `PlatformConfig::workload`.
///
/// ```
/// use deploy_docker::containers::{Mount, MountSource};
/// use deploy_docker::workload::Workload;
/// let workload = Workload::default()
///     .command(["/bin/server"])
///     .args(["--port", "8080"])
///     .mount(Mount::new(MountSource::Tmpfs { size_bytes: Some(64 << 20) }, "/tmp"))
///     .mount(Mount::new(MountSource::Volume("shop-data".into()), "/data"))
///     .config_mount("/etc/shop");
/// assert!(workload.kubernetes_only().is_empty());
/// assert_eq!(Workload::default().init_container("migrate").kubernetes_only(), ["init_containers"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Workload {
    /// Replaces the image's entrypoint (Kubernetes' `command`).
    pub command: Option<Vec<String>>,
    /// Replaces the image's command (Kubernetes' `args`).
    pub args: Option<Vec<String>>,
    /// Named volumes, binds of host files or directories, tmpfs scratch space
    /// (Kubernetes' `emptyDir`).
    pub mounts: Vec<Mount>,
    /// Where a release's configuration files are mounted, read-only: a release whose
    /// [`config_checksum`](deploy_core::model::Release::config_checksum) names a
    /// snapshot published with `config_files::ConfigSnapshots` runs with
    /// that snapshot here. A release without a checksum mounts nothing.
    pub config_mount: Option<String>,
    /// Names of init containers. Not on Docker: refused.
    pub init_containers: Vec<String>,
    /// Names of sidecar containers. Not on Docker: refused.
    pub sidecars: Vec<String>,
    /// A service account. Not on Docker: refused.
    pub service_account: Option<String>,
    /// Node labels to select by. Not on Docker: refused.
    pub node_selector: BTreeMap<String, String>,
    /// Taints tolerated, as `key=value:Effect`. Not on Docker: refused.
    pub tolerations: Vec<String>,
    /// Whether the pods carry (anti-)affinity rules. Not on Docker: refused.
    pub affinity: bool,
    /// Whether the pods carry topology spread constraints. Not on Docker: refused.
    pub topology_spread: bool,
    /// Secrets with image pull credentials. Not on Docker (the engine's own
    /// credentials pull): refused.
    pub image_pull_secrets: Vec<String>,
}

impl Workload {
    /// Sets the entrypoint.
    #[must_use]
    pub fn command(mut self, command: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.command = Some(command.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the arguments.
    #[must_use]
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a mount.
    #[must_use]
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Mounts each release's configuration snapshot at `path`.
    #[must_use]
    pub fn config_mount(mut self, path: impl Into<String>) -> Self {
        self.config_mount = Some(path.into());
        self
    }

    /// Adds an init container (refused on Docker).
    #[must_use]
    pub fn init_container(mut self, name: impl Into<String>) -> Self {
        self.init_containers.push(name.into());
        self
    }

    /// Adds a sidecar (refused on Docker).
    #[must_use]
    pub fn sidecar(mut self, name: impl Into<String>) -> Self {
        self.sidecars.push(name.into());
        self
    }

    /// Sets a service account (refused on Docker).
    #[must_use]
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = Some(name.into());
        self
    }

    /// Adds a toleration (refused on Docker).
    #[must_use]
    pub fn toleration(mut self, toleration: impl Into<String>) -> Self {
        self.tolerations.push(toleration.into());
        self
    }

    /// Says the pods carry affinity rules (refused on Docker).
    #[must_use]
    pub fn affinity(mut self) -> Self {
        self.affinity = true;
        self
    }

    /// The names of the fields set that only Kubernetes can honour, in field order.
    pub fn kubernetes_only(&self) -> Vec<&'static str> {
        [
            ("init_containers", !self.init_containers.is_empty()),
            ("sidecars", !self.sidecars.is_empty()),
            ("service_account", self.service_account.is_some()),
            ("node_selector", !self.node_selector.is_empty()),
            ("tolerations", !self.tolerations.is_empty()),
            ("affinity", self.affinity),
            ("topology_spread", self.topology_spread),
            ("image_pull_secrets", !self.image_pull_secrets.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}
