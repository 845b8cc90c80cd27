//! Connecting to the Docker engine: one place that opens the socket, negotiates the
//! API version and turns "no daemon" into a typed error.

use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};
use tracing::instrument;

use crate::error::DockerError;

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Endpoint {
    /// `DOCKER_HOST` if set, else the platform's default socket, as the docker CLI does.
    #[default]
    LocalDefaults,
    /// A Unix socket path such as `/var/run/docker.sock`.
    Unix(String),
    /// A plain-HTTP address such as `tcp://127.0.0.1:2375`.
    Http(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LocalDefaults => f.write_str("the local default socket"),
            Self::Unix(path) => write!(f, "unix://{path}"),
            Self::Http(addr) => f.write_str(addr),
        }
    }
}

/// How to connect to the engine.
///
/// ```
/// use deploy_docker::connect::{ConnectOptions, Endpoint};
/// use std::time::Duration;
/// let options = ConnectOptions::default()
///     .endpoint(Endpoint::Unix("/var/run/docker.sock".into()))
///     .timeout(Duration::from_secs(60));
/// assert_eq!(options.timeout, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Where the engine listens.
    pub endpoint: Endpoint,
    /// How long one request may take (builds and pushes stream, and count each
    /// read against it).
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { endpoint: Endpoint::LocalDefaults, timeout: Duration::from_secs(120) }
    }
}

impl ConnectOptions {
    /// Sets the endpoint.
    #[must_use]
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Sets the request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Connects to the engine, checks that it answers, and negotiates the API version
/// down to the engine's (a 20.10 engine speaks 1.41).
///
/// Fails with [`DockerError::Unreachable`] when there is no socket, nothing
/// listens on it, or the engine does not answer the version request.
///
/// ```no_run
/// # async fn run() -> Result<(), deploy_docker::DockerError> {
/// let docker = deploy_docker::connect::connect(&Default::default()).await?;
/// # let _ = docker; Ok(()) }
/// ```
#[instrument(skip_all, fields(docker.endpoint = %options.endpoint), err)]
pub async fn connect(options: &ConnectOptions) -> Result<Docker, DockerError> {
    let unreachable = |source: bollard::errors::Error| DockerError::Unreachable {
        endpoint: options.endpoint.to_string(),
        source: Box::new(source),
    };
    let timeout = options.timeout.as_secs().max(1);
    let docker = match &options.endpoint {
        Endpoint::LocalDefaults => Docker::connect_with_local_defaults(),
        Endpoint::Unix(path) => Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION),
        Endpoint::Http(addr) => Docker::connect_with_http(addr, timeout, API_DEFAULT_VERSION),
    }
    .map_err(unreachable)?;
    let docker = docker.with_timeout(options.timeout);
    docker.negotiate_version().await.map_err(unreachable)
}
