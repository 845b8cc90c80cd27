//! [`DockerRegistry`]: pushes through the engine, look-ups through the OCI
//! distribution API, behind [`deploy_core::registry::ImageRegistry`].

pub mod challenge;
mod credentials;
mod distribution;

use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use deploy_core::error::ErrorKind;
use deploy_core::http_client::HttpPolicy;
use deploy_core::model::{Digest, ImageRef};
use deploy_core::registry::{ImageRegistry, PushEvent, RegistryError};
use futures::StreamExt;
use futures::stream::BoxStream;
use tracing::instrument;

pub use credentials::{CredentialError, Credentials, RegistryCredentials};
pub use distribution::MANIFEST_ACCEPT;

use crate::error::{bollard_message, classify_bollard};
use distribution::DistributionClient;

/// Settings of a [`DockerRegistry`].
///
/// ```
/// use deploy_docker::registry::{Credentials, RegistryConfig, RegistryCredentials};
/// let config = RegistryConfig::default()
///     .credentials(RegistryCredentials::default().host("ghcr.io", Credentials::new("robot", "ghp_x")))
///     .insecure_registry("127.0.0.1:5000")
///     .allow_token_host("login.example.com");
/// assert_eq!(config.insecure_registries, ["127.0.0.1:5000"]);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Credentials per registry host, for pushes and look-ups alike; each host's go
    /// to that host only (see [`RegistryCredentials`]).
    pub credentials: RegistryCredentials,
    /// Registries (`host:port`) reached over plain HTTP, as the engine's
    /// `insecure-registries`; every other registry, loopback ones included, is
    /// reached over https.
    pub insecure_registries: Vec<String>,
    /// Hosts (`host` or `host:port`) that may receive a registry's credentials as its
    /// token realm besides the registry's own host (Docker Hub's `auth.docker.io` is
    /// built in). A realm elsewhere is asked for an anonymous token.
    pub token_hosts: Vec<String>,
    /// How long one look-up may take; 30 s when unset (it replaces the timeout of
    /// `http`).
    pub timeout: Option<Duration>,
    /// The client policy of look-ups: no redirects, connect timeout, token answers
    /// capped (1 MiB by default).
    pub http: Option<HttpPolicy>,
}

impl RegistryConfig {
    /// Sets the credentials.
    #[must_use]
    pub fn credentials(mut self, credentials: RegistryCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Adds credentials for one registry host.
    #[must_use]
    pub fn credentials_for(mut self, host: &str, credentials: Credentials) -> Self {
        self.credentials = self.credentials.host(host, credentials);
        self
    }

    /// Adds a registry reached over plain HTTP (the test registry on loopback).
    #[must_use]
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure_registries.push(host.into());
        self
    }

    /// Lets `host` receive credentials as a token realm.
    #[must_use]
    pub fn allow_token_host(mut self, host: impl Into<String>) -> Self {
        self.token_hosts.push(host.into());
        self
    }

    /// Sets the look-up timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the client policy of look-ups.
    #[must_use]
    pub fn http(mut self, policy: HttpPolicy) -> Self {
        self.http = Some(policy);
        self
    }
}

/// An OCI registry reached two ways: pushes go through the Docker engine (which
/// holds the image), look-ups go straight to the registry with
/// `HEAD /v2/<name>/manifests/<reference>`.
///
/// A push reports the engine's progress and ends with the digest the registry
/// stored; an error reported mid-push is an `Err` item. A registry that cannot be
/// reached is an error from `exists` and `digest`, never `false`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::model::ImageRef;
/// use deploy_core::registry::ImageRegistry;
/// use deploy_docker::registry::{Credentials, DockerRegistry, RegistryConfig};
///
/// let docker = deploy_docker::connect::connect(&Default::default()).await?;
/// let config = RegistryConfig::default().credentials_for("registry.example.com", Credentials::new("ci", "token"));
/// let registry = DockerRegistry::new(docker, config)?;
/// let image = ImageRef::parse("registry.example.com/shop/web:1.4.2")?;
/// let digest = registry.push_to_end(image.clone()).await?;
/// assert!(registry.exists(&image.with_digest(digest)).await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DockerRegistry {
    docker: Docker,
    credentials: RegistryCredentials,
    distribution: DistributionClient,
}

impl DockerRegistry {
    /// A registry client; fails only if the HTTP client cannot be set up.
    pub fn new(docker: Docker, config: RegistryConfig) -> Result<Self, RegistryError> {
        let policy = config
            .http
            .unwrap_or_else(|| HttpPolicy::default().max_body_bytes(1024 * 1024))
            .timeout(config.timeout.unwrap_or(Duration::from_secs(30)));
        let distribution = DistributionClient::new(policy, config.insecure_registries, config.token_hosts)?;
        Ok(Self { docker, credentials: config.credentials, distribution })
    }

    /// The credentials of `image`'s registry, if any.
    async fn credentials_for(&self, image: &ImageRef) -> Result<Option<Credentials>, RegistryError> {
        let registry = image.registry();
        self.credentials.lookup(registry).await.map_err(|e| {
            RegistryError::backend(format!("find the credentials of registry {registry}"), ErrorKind::Unauthorized, e)
        })
    }

    /// Gives the local image `source` (an id or a reference) the name `target`, so
    /// that it can be pushed there.
    #[instrument(skip_all, fields(image.source = source, image.target = %target), err)]
    pub async fn tag(&self, source: &str, target: &ImageRef) -> Result<(), RegistryError> {
        let repo = target.name();
        let mut options = TagImageOptionsBuilder::new().repo(&repo);
        if let Some(tag) = target.tag() {
            options = options.tag(tag);
        }
        self.docker.tag_image(source, Some(options.build())).await.map_err(|e| {
            if classify_bollard(&e) == ErrorKind::NotFound {
                RegistryError::NotFound { image: target.clone() }
            } else {
                RegistryError::backend(format!("tag {source} as {target}"), classify_bollard(&e), e)
            }
        })
    }

    fn docker_credentials(image: &ImageRef, credentials: Option<&Credentials>) -> Option<DockerCredentials> {
        credentials.map(|c| DockerCredentials {
            username: Some(c.username().to_owned()),
            password: Some(c.danger_password().to_owned()),
            serveraddress: Some(image.registry().to_owned()),
            ..Default::default()
        })
    }
}

#[async_trait::async_trait]
impl ImageRegistry for DockerRegistry {
    #[instrument(skip_all, fields(image = %image), err)]
    async fn exists(&self, image: &ImageRef) -> Result<bool, RegistryError> {
        Ok(self.digest(image).await?.is_some())
    }

    #[instrument(skip_all, fields(image = %image), err)]
    async fn digest(&self, image: &ImageRef) -> Result<Option<Digest>, RegistryError> {
        let credentials = self.credentials_for(image).await?;
        self.distribution.manifest_digest(image, credentials.as_ref()).await
    }

    fn push(&self, image: ImageRef) -> BoxStream<'_, Result<PushEvent, RegistryError>> {
        let start = async move {
            // The engine gets the credentials of the image's own registry only.
            let credentials = match self.credentials_for(&image).await {
                Ok(credentials) => credentials,
                Err(e) => return futures::stream::once(futures::future::ready(Err(e))).boxed(),
            };
            let mut options = PushImageOptionsBuilder::new();
            if let Some(tag) = image.tag() {
                options = options.tag(tag);
            }
            let name = image.name();
            let auth = Self::docker_credentials(&image, credentials.as_ref());
            let stream = self.docker.push_image(&name, Some(options.build()), auth);
            let mut finished = false;
            stream
                .scan(image, move |image, item| {
                    if finished {
                        return futures::future::ready(None);
                    }
                    let event = match item {
                        Ok(info) => Ok(push_event(info)),
                        Err(error) => {
                            finished = true;
                            Err(push_error(image, error))
                        }
                    };
                    futures::future::ready(Some(event))
                })
                .filter_map(|event| futures::future::ready(event.transpose()))
                .boxed()
        };
        futures::stream::once(start).flatten().boxed()
    }
}

/// One line of the engine's push output as an event; `None` for lines without content.
fn push_event(info: bollard::models::PushImageInfo) -> Option<PushEvent> {
    let status = info.status?;
    if let Some(digest) = pushed_digest(&status) {
        return Some(PushEvent::Pushed { digest });
    }
    // bollard 0.21's push model drops the layer id the engine sends, so layers are
    // unnamed here.
    match info.progress_detail {
        Some(bollard::models::ProgressDetail { current: Some(current), total }) if status == "Pushing" => {
            Some(PushEvent::Progress {
                layer: String::new(),
                current: u64::try_from(current).unwrap_or(0),
                total: total.and_then(|t| u64::try_from(t).ok()),
            })
        }
        _ => Some(PushEvent::Status { layer: None, status }),
    }
}

/// `1.0: digest: sha256:… size: 527` → the digest.
fn pushed_digest(status: &str) -> Option<Digest> {
    let rest = status.split_once("digest: ")?.1;
    let digest = rest.split_whitespace().next()?;
    Digest::parse(digest).ok()
}

fn push_error(image: &ImageRef, error: bollard::errors::Error) -> RegistryError {
    let message = bollard_message(&error);
    let lower = message.to_ascii_lowercase();
    let registry = image.registry().to_owned();
    if lower.contains("does not exist locally") || lower.contains("no such image") {
        return RegistryError::NotFound { image: image.clone() };
    }
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("denied")
    {
        return RegistryError::Unauthorized { registry };
    }
    if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("i/o timeout")
        || lower.contains("connection reset")
    {
        return RegistryError::backend(format!("push to registry {registry}"), ErrorKind::Unavailable, error);
    }
    match error {
        bollard::errors::Error::DockerStreamError { error } => {
            RegistryError::PushFailed { image: image.clone(), message: error }
        }
        other => {
            let kind = classify_bollard(&other);
            if kind == ErrorKind::NotFound {
                RegistryError::NotFound { image: image.clone() }
            } else {
                RegistryError::backend(format!("push {image}"), kind, other)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_status_line_carries_the_digest() {
        let hex = "a".repeat(64);
        let digest = pushed_digest(&format!("1.0: digest: sha256:{hex} size: 527")).unwrap();
        assert_eq!(digest.hex(), hex);
        assert_eq!(pushed_digest("Layer already exists"), None);
    }

    #[test]
    fn push_errors_are_classified_from_the_engine_message() {
        let image = ImageRef::parse("127.0.0.1:5999/a/b:1").unwrap();
        let stream = |m: &str| bollard::errors::Error::DockerStreamError { error: m.to_owned() };
        let refused = push_error(
            &image,
            stream("Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused"),
        );
        assert!(matches!(&refused, RegistryError::Backend { kind: ErrorKind::Unavailable, .. }), "{refused:?}");
        let auth = push_error(&image, stream("unauthorized: authentication required"));
        assert!(matches!(auth, RegistryError::Unauthorized { .. }));
        let other = push_error(&image, stream("blob upload invalid"));
        assert!(matches!(other, RegistryError::PushFailed { .. }));
        let missing = push_error(
            &image,
            bollard::errors::Error::DockerResponseServerError { status_code: 404, message: "No such image: x".into() },
        );
        assert!(matches!(missing, RegistryError::NotFound { .. }));
    }
}
