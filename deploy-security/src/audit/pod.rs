//! The platform-neutral view of a pod that the manifest rules judge.

/// What the rules need to know of a container; `None` means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerView {
    pub name: String,
    pub image: String,
    pub run_as_non_root: Option<bool>,
    pub run_as_user: Option<i64>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub privileged: Option<bool>,
    pub drop_capabilities: Vec<String>,
    pub add_capabilities: Vec<String>,
    pub cpu_request: bool,
    pub memory_request: bool,
    pub cpu_limit: bool,
    pub memory_limit: bool,
    pub liveness_probe: bool,
    pub readiness_probe: bool,
}

/// What the rules need to know of a pod. `Option` fields are `None` where the source
/// cannot say (an `AppSpec` says nothing about host namespaces); their rules are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodView {
    /// `Deployment shop/checkout`.
    pub object: String,
    pub run_as_non_root: Option<bool>,
    pub run_as_user: Option<i64>,
    pub host_network: Option<bool>,
    pub host_pid: Option<bool>,
    pub host_ipc: Option<bool>,
    pub host_path_volumes: Option<Vec<String>>,
    pub automount_service_account_token: Option<Option<bool>>,
    pub containers: Vec<ContainerView>,
}
