//! A runtime security monitor for running Docker containers (feature `docker`):
//! what a container is allowed to do on its host (privileged mode, capabilities,
//! host mounts and namespaces, root, a writable root file system), what it runs
//! (processes outside an allow-list, from `top`) and what it uses (memory, CPU and
//! tasks over a policy's limits, from `stats`), reported as audit [`Finding`]s.
//!
//! It reads the engine's API only (inspect, top, stats): it changes nothing and
//! needs no agent in the container. It samples: a process that starts and ends
//! between two calls is not seen. Network connections and file permissions inside
//! the container are not checked.

mod checks;
mod usage;

use std::collections::HashMap;

pub use bollard;
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, StatsOptionsBuilder};
use deploy_core::error::{BoxError, Classify, ErrorKind};
use futures_util::StreamExt;
use tracing::instrument;

pub use self::usage::ResourceUsage;
use deploy_core::scan::Finding;

/// What running containers may do and use. The defaults check everything that
/// needs no app-specific knowledge: the process allow-list and resource limits are
/// off until set.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct RuntimePolicy {
    /// Processes the container may run: a program name (`httpd` allows
    /// `/usr/sbin/httpd -f`) or leading words of the command line
    /// (`/bin/busybox httpd`). Empty: every process is allowed.
    pub allowed_processes: Vec<String>,
    /// Capabilities that may be added (`NET_BIND_SERVICE`), with or without `CAP_`.
    pub allowed_capabilities: Vec<String>,
    /// Host paths that may be bind-mounted (a path allows what is below it).
    pub allowed_host_paths: Vec<String>,
    /// Do not report a writable root file system.
    pub allow_writable_root_fs: bool,
    /// Do not report a container running as root.
    pub allow_root: bool,
    /// Report a container that has no memory limit.
    pub require_memory_limit: bool,
    /// Memory above which the container is reported.
    pub max_memory_bytes: Option<u64>,
    /// CPU use (percent of one CPU) above which the container is reported.
    pub max_cpu_percent: Option<f64>,
    /// Processes and threads above which the container is reported.
    pub max_pids: Option<u64>,
}

impl RuntimePolicy {
    /// Allows a process (see [`RuntimePolicy::allowed_processes`]).
    #[must_use]
    pub fn allow_process(mut self, entry: impl Into<String>) -> Self {
        self.allowed_processes.push(entry.into());
        self
    }

    /// Allows an added capability.
    #[must_use]
    pub fn allow_capability(mut self, capability: impl Into<String>) -> Self {
        self.allowed_capabilities.push(capability.into());
        self
    }

    /// Allows bind mounts of `path` and below.
    #[must_use]
    pub fn allow_host_path(mut self, path: impl Into<String>) -> Self {
        self.allowed_host_paths.push(path.into());
        self
    }

    /// Sets [`RuntimePolicy::allow_writable_root_fs`].
    #[must_use]
    pub fn allow_writable_root_fs(mut self, allow: bool) -> Self {
        self.allow_writable_root_fs = allow;
        self
    }

    /// Sets [`RuntimePolicy::allow_root`].
    #[must_use]
    pub fn allow_root(mut self, allow: bool) -> Self {
        self.allow_root = allow;
        self
    }

    /// Sets [`RuntimePolicy::require_memory_limit`].
    #[must_use]
    pub fn require_memory_limit(mut self, require: bool) -> Self {
        self.require_memory_limit = require;
        self
    }

    /// Sets [`RuntimePolicy::max_memory_bytes`].
    #[must_use]
    pub fn max_memory_bytes(mut self, bytes: u64) -> Self {
        self.max_memory_bytes = Some(bytes);
        self
    }

    /// Sets [`RuntimePolicy::max_cpu_percent`].
    #[must_use]
    pub fn max_cpu_percent(mut self, percent: f64) -> Self {
        self.max_cpu_percent = Some(percent);
        self
    }

    /// Sets [`RuntimePolicy::max_pids`].
    #[must_use]
    pub fn max_pids(mut self, pids: u64) -> Self {
        self.max_pids = Some(pids);
        self
    }
}

/// A failure to read a container's state from the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The container does not exist (any more).
    #[error("container {container} not found")]
    NotFound {
        /// The id or name asked for.
        container: String,
    },
    /// The container exists but is not running: `top` and `stats` need it running.
    #[error("container {container} is not running")]
    NotRunning {
        /// The id or name asked for.
        container: String,
    },
    /// The engine failed or could not be reached.
    #[error("failed to {operation} for container {container}: {source}")]
    Engine {
        /// What was being done (`inspect`, `list processes`, `read stats`).
        operation: &'static str,
        /// The id or name asked for (empty when listing).
        container: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The engine's error (boxed: this type does not name bollard's).
        #[source]
        source: BoxError,
    },
}

impl Classify for RuntimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::NotRunning { .. } => ErrorKind::Conflict,
            Self::Engine { kind, .. } => *kind,
        }
    }
}

impl RuntimeError {
    fn engine(operation: &'static str, container: &str, source: bollard::errors::Error) -> Self {
        match &source {
            bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
                Self::NotFound { container: container.to_owned() }
            }
            bollard::errors::Error::DockerResponseServerError { status_code: 409, .. } => {
                Self::NotRunning { container: container.to_owned() }
            }
            _ => {
                let kind = match &source {
                    bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
                        ErrorKind::from_http_status(*status_code)
                    }
                    bollard::errors::Error::RequestTimeoutError => ErrorKind::Timeout,
                    bollard::errors::Error::SocketNotFoundError(_)
                    | bollard::errors::Error::HyperResponseError { .. }
                    | bollard::errors::Error::IOError { .. } => ErrorKind::Unavailable,
                    _ => ErrorKind::Other,
                };
                Self::Engine { operation, container: container.to_owned(), kind, source: Box::new(source) }
            }
        }
    }
}

/// What the monitor found for one container.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ContainerReport {
    /// The container's id.
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// What is wrong; empty when nothing is.
    pub findings: Vec<Finding>,
    /// The resource use sampled.
    pub usage: ResourceUsage,
}

/// Checks running containers against a [`RuntimePolicy`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_security::runtime::{RuntimeMonitor, RuntimePolicy};
///
/// let docker = bollard::Docker::connect_with_local_defaults()?;
/// let policy = RuntimePolicy::default().allow_process("nginx").max_memory_bytes(512 << 20);
/// let monitor = RuntimeMonitor::new(docker, policy);
/// for report in monitor.check_running(&[("app", "checkout")]).await? {
///     for finding in &report.findings {
///         println!("{}: {finding}", report.name);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RuntimeMonitor {
    docker: Docker,
    policy: RuntimePolicy,
}

impl RuntimeMonitor {
    /// A monitor that checks containers on `docker` against `policy`.
    pub fn new(docker: Docker, policy: RuntimePolicy) -> Self {
        Self { docker, policy }
    }

    /// Checks the configuration of a container in any state (created, running,
    /// stopped): privileges, capabilities, mounts, namespaces, user, root file system
    /// and memory limit. A gate before `start` can use it.
    #[instrument(skip_all, fields(container = container), err)]
    pub async fn check_configuration(&self, container: &str) -> Result<Vec<Finding>, RuntimeError> {
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| RuntimeError::engine("inspect", container, e))?;
        let name = inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_owned();
        Ok(checks::configuration_findings(&format!("container {name}"), &inspect, &self.policy))
    }

    /// Checks one running container: its configuration, its processes and one
    /// sample of its resource use.
    #[instrument(skip_all, fields(container = container), err)]
    pub async fn check_container(&self, container: &str) -> Result<ContainerReport, RuntimeError> {
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| RuntimeError::engine("inspect", container, e))?;
        if inspect.state.as_ref().and_then(|state| state.running) != Some(true) {
            return Err(RuntimeError::NotRunning { container: container.to_owned() });
        }
        let id = inspect.id.clone().unwrap_or_else(|| container.to_owned());
        let name = inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_owned();
        let subject = format!("container {name}");
        let mut findings = checks::configuration_findings(&subject, &inspect, &self.policy);

        let top = self
            .docker
            .top_processes(&id, None::<bollard::query_parameters::TopOptions>)
            .await
            .map_err(|e| RuntimeError::engine("list processes", container, e))?;
        findings.extend(checks::process_findings(&subject, &checks::processes(&top), &self.policy));

        let stats = self
            .docker
            .stats(&id, Some(StatsOptionsBuilder::new().stream(false).build()))
            .next()
            .await
            .transpose()
            .map_err(|e| RuntimeError::engine("read stats", container, e))?;
        let usage = stats.as_ref().map(ResourceUsage::from_stats).unwrap_or_default();
        findings.extend(checks::usage_findings(&subject, &usage, &self.policy));
        Ok(ContainerReport { id, name, findings, usage })
    }

    /// Checks every running container that carries all of `labels` (all running
    /// containers when empty). A container that stops while it is checked is left
    /// out.
    #[instrument(skip_all, fields(labels = labels.len()), err)]
    pub async fn check_running(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerReport>, RuntimeError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("status".to_owned(), vec!["running".to_owned()]);
        if !labels.is_empty() {
            filters.insert("label".to_owned(), labels.iter().map(|(k, v)| format!("{k}={v}")).collect());
        }
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| RuntimeError::engine("list containers", "", e))?;
        let mut reports = Vec::new();
        for container in containers {
            let Some(id) = container.id else { continue };
            match self.check_container(&id).await {
                Ok(report) => reports.push(report),
                Err(RuntimeError::NotFound { .. } | RuntimeError::NotRunning { .. }) => {
                    tracing::debug!(container = %id, "container stopped while it was checked");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(reports)
    }
}
