//! Look-ups through the OCI distribution API: `HEAD /v2/<name>/manifests/<ref>`
//! with the manifest media types in `Accept`, and basic or bearer auth as the
//! registry's `WWW-Authenticate` challenge asks.

use std::sync::Arc;
use std::time::Duration;

use deploy_core::error::ErrorKind;
use deploy_core::model::{Digest, ImageRef};
use deploy_core::registry::RegistryError;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, WWW_AUTHENTICATE};

use super::challenge::{Challenge, parse_challenge};
use super::credentials::Credentials;

/// The manifest types a look-up accepts: OCI and Docker, single images and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A small client of the distribution API.
#[derive(Debug, Clone)]
pub(crate) struct DistributionClient {
    http: reqwest::Client,
    plain_http_hosts: Vec<String>,
}

impl DistributionClient {
    pub(crate) fn new(timeout: Duration, plain_http_hosts: Vec<String>) -> Result<Self, RegistryError> {
        let tls = rustls_config()?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .build()
            .map_err(|e| RegistryError::backend("build the registry http client", ErrorKind::Other, e))?;
        Ok(Self { http, plain_http_hosts })
    }

    /// `https://host/v2/`, or `http://` for loopback registries and the hosts the
    /// caller listed, as the Docker engine treats insecure registries.
    fn base_url(&self, registry: &str) -> String {
        let api_host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let plain = is_loopback(registry) || self.plain_http_hosts.iter().any(|h| h == registry);
        format!("{}://{api_host}/v2/", if plain { "http" } else { "https" })
    }

    /// The manifest digest of `image`, `None` when the registry answers 404.
    pub(crate) async fn manifest_digest(
        &self,
        image: &ImageRef,
        credentials: Option<&Credentials>,
    ) -> Result<Option<Digest>, RegistryError> {
        let reference = match (image.digest(), image.tag()) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        let url = format!("{}{}/manifests/{reference}", self.base_url(image.registry()), image.repository());
        let head = |auth: Auth| {
            let request = self.http.head(&url).header(ACCEPT, MANIFEST_ACCEPT);
            let request = match auth {
                Auth::None => request,
                Auth::Basic(c) => request.basic_auth(c.username(), Some(c.danger_password())),
                Auth::Bearer(token) => request.bearer_auth(token.as_str()),
            };
            request.send()
        };
        let registry = image.registry();
        let mut response = head(Auth::None).await.map_err(|e| transport_error(registry, e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge);
            let auth = match challenge {
                Some(Challenge::Basic) => match credentials {
                    Some(c) => Auth::Basic(c),
                    None => return Err(RegistryError::Unauthorized { registry: registry.to_owned() }),
                },
                Some(Challenge::Bearer { realm, service, scope }) => {
                    let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", image.repository()));
                    Auth::Bearer(Arc::new(self.token(registry, &realm, service.as_deref(), &scope, credentials).await?))
                }
                None => return Err(RegistryError::Unauthorized { registry: registry.to_owned() }),
            };
            response = head(auth).await.map_err(|e| transport_error(registry, e))?;
        }
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => digest_header(response.headers(), image).map(Some),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(RegistryError::Unauthorized { registry: registry.to_owned() })
            }
            status => Err(status_error(registry, status)),
        }
    }

    async fn token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some(c) = credentials {
            request = request.basic_auth(c.username(), Some(c.danger_password()));
        }
        let response = request.send().await.map_err(|e| transport_error(registry, e))?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(RegistryError::Unauthorized { registry: registry.to_owned() });
            }
            status => return Err(status_error(registry, status)),
        }
        let body: TokenResponse = json_body(response)
            .await
            .map_err(|e| RegistryError::backend(format!("read a token from {realm}"), ErrorKind::Other, e))?;
        body.token.or(body.access_token).ok_or_else(|| {
            RegistryError::backend(
                format!("read a token from {realm}"),
                ErrorKind::Other,
                "the token endpoint answered without a token",
            )
        })
    }
}

enum Auth<'a> {
    None,
    Basic(&'a Credentials),
    Bearer(Arc<String>),
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

async fn json_body<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, deploy_core::error::BoxError> {
    let bytes = response.bytes().await?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn digest_header(headers: &HeaderMap, image: &ImageRef) -> Result<Digest, RegistryError> {
    match headers.get("docker-content-digest").and_then(|v| v.to_str().ok()) {
        Some(value) => Digest::parse(value.trim())
            .map_err(|e| RegistryError::backend(format!("read the digest of {image}"), ErrorKind::Other, e)),
        // A registry that leaves the header out still answered for this exact digest.
        None => image.digest().cloned().ok_or_else(|| {
            RegistryError::backend(
                format!("read the digest of {image}"),
                ErrorKind::Unsupported,
                "the registry sent no Docker-Content-Digest header",
            )
        }),
    }
}

fn transport_error(registry: &str, error: reqwest::Error) -> RegistryError {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_connect() || error.is_request() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Other
    };
    RegistryError::backend(format!("reach registry {registry}"), kind, error)
}

fn status_error(registry: &str, status: StatusCode) -> RegistryError {
    let kind = match status.as_u16() {
        429 | 500.. => ErrorKind::Unavailable,
        400..=499 => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    };
    RegistryError::backend(format!("query registry {registry}"), kind, format!("the registry answered {status}"))
}

/// Whether `registry` (with its port) is on the loopback interface.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn rustls_config() -> Result<rustls::ClientConfig, RegistryError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::backend("configure TLS", ErrorKind::Other, e))?
        .with_platform_verifier()
        .map_err(|e| RegistryError::backend("load the platform's trusted certificates", ErrorKind::Other, e))
        .map(|builder| builder.with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("10.0.0.1:5000"));
        let client = DistributionClient::new(Duration::from_secs(1), vec!["registry.lan:5000".into()]).unwrap();
        assert_eq!(client.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000/v2/");
        assert_eq!(client.base_url("registry.lan:5000"), "http://registry.lan:5000/v2/");
        assert_eq!(client.base_url("ghcr.io"), "https://ghcr.io/v2/");
        assert_eq!(client.base_url("docker.io"), "https://registry-1.docker.io/v2/");
    }
}
