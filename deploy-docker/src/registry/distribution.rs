//! Look-ups through the OCI distribution API: `HEAD /v2/<name>/manifests/<ref>`
//! with the manifest media types in `Accept`, and basic or bearer auth as the
//! registry's `WWW-Authenticate` challenge asks, under the shared
//! [`HttpPolicy`](deploy_core::http_client::HttpPolicy): no redirects, timeouts,
//! bounded token answers.
//!
//! Credentials go only where they belong: a registry's own credentials to that
//! registry, and to its token realm only over https (or to a realm that is itself a
//! registry the caller configured as insecure) and only when the realm is on the
//! registry's own host or on a host the caller allowed.

use std::sync::Arc;

use deploy_core::error::{Classify, ErrorKind};
use deploy_core::http_client::{HttpClient, HttpError, HttpPolicy, origin};
use deploy_core::model::{Digest, ImageRef};
use deploy_core::registry::RegistryError;
use reqwest::header::{ACCEPT, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};

use super::challenge::{Challenge, parse_challenge};
use super::credentials::{Credentials, normalize_registry};

/// The manifest types a look-up accepts: OCI and Docker, single images and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Token realms that may receive a registry's credentials besides the registry's
/// own host: Docker Hub's token service.
const BUILT_IN_TOKEN_HOSTS: &[(&str, &str)] = &[("docker.io", "auth.docker.io")];

/// A small client of the distribution API.
#[derive(Debug, Clone)]
pub(crate) struct DistributionClient {
    http: HttpClient,
    insecure: Vec<String>,
    token_hosts: Vec<String>,
}

/// `host[:port]` of a URL, lower case, the default port left out.
fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

fn bare_host(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    }
}

impl DistributionClient {
    pub(crate) fn new(
        policy: HttpPolicy,
        insecure: Vec<String>,
        token_hosts: Vec<String>,
    ) -> Result<Self, RegistryError> {
        // Plain http is decided here per registry (only the insecure ones), so the
        // client itself may speak it.
        let http = HttpClient::new(policy.danger_allow_plain_http())
            .map_err(|e| RegistryError::backend("build the registry http client", e.kind(), e))?;
        let insecure = insecure.iter().map(|h| normalize_registry(h)).collect();
        let token_hosts = token_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        Ok(Self { http, insecure, token_hosts })
    }

    fn is_insecure(&self, host: &str) -> bool {
        let host = normalize_registry(host);
        self.insecure.contains(&host)
    }

    /// `https://host/v2/`, or `http://` for the registries the caller configured
    /// as insecure.
    fn base_url(&self, registry: &str) -> String {
        let api_host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let scheme = if self.is_insecure(registry) { "http" } else { "https" };
        format!("{scheme}://{api_host}/v2/")
    }

    /// Whether `realm` may receive `registry`'s credentials, and why not.
    fn realm_gets_credentials(&self, registry: &str, realm: &Url) -> Result<(), String> {
        let realm_host = host_port(realm);
        let realm_bare = realm.host_str().unwrap_or_default().to_ascii_lowercase();
        match realm.scheme() {
            "https" => {}
            "http" if self.is_insecure(&realm_host) => {}
            _ => return Err(format!("the token realm {} is not https", origin(realm))),
        }
        let registry_host = normalize_registry(registry);
        let own = realm_host == registry_host
            || (registry_host == "docker.io" && realm_bare == "registry-1.docker.io")
            || (realm.port().is_none() && realm_bare == bare_host(&registry_host));
        let built_in = BUILT_IN_TOKEN_HOSTS.iter().any(|(r, h)| *r == registry_host && *h == realm_bare);
        let allowed = self.token_hosts.iter().any(|h| *h == realm_host || *h == realm_bare);
        if own || built_in || allowed {
            Ok(())
        } else {
            Err(format!("the token realm {} is not the registry's host nor an allowed token host", origin(realm)))
        }
    }

    /// The manifest digest of `image`, `None` when the registry answers 404.
    /// `credentials` must be `image`'s registry's own.
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
        let registry = image.registry();
        let url = format!("{}{}/manifests/{reference}", self.base_url(registry), image.repository());
        let url = Url::parse(&url).map_err(|e| {
            RegistryError::backend(format!("query registry {registry}"), ErrorKind::InvalidInput, e.to_string())
        })?;
        let mut response = self.head(&url, Auth::None).await.map_err(|e| transport_error(registry, e))?;
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
            response = self.head(&url, auth).await.map_err(|e| transport_error(registry, e))?;
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

    async fn head(&self, url: &Url, auth: Auth<'_>) -> Result<reqwest::Response, HttpError> {
        let request = self.http.request(Method::HEAD, url.clone())?.header(ACCEPT, MANIFEST_ACCEPT);
        let request = match auth {
            Auth::None => request,
            Auth::Basic(c) => request.basic_auth(c.username(), Some(c.danger_password())),
            Auth::Bearer(token) => request.bearer_auth(token.as_str()),
        };
        self.http.send(request).await
    }

    async fn token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let operation = || format!("get a token for registry {registry}");
        let realm = Url::parse(realm).map_err(|e| {
            RegistryError::backend(operation(), ErrorKind::InvalidInput, format!("the token realm is not a url: {e}"))
        })?;
        let credentials = match (credentials, self.realm_gets_credentials(registry, &realm)) {
            (Some(c), Ok(())) => Some(c),
            (Some(_), Err(why)) => {
                tracing::warn!(registry, realm = %origin(&realm), "credentials withheld from the token realm: {why}");
                None
            }
            (None, _) => None,
        };
        // An anonymous token request still needs a realm the policy may reach.
        if realm.scheme() != "https" && !self.is_insecure(&host_port(&realm)) {
            return Err(RegistryError::backend(
                operation(),
                ErrorKind::InvalidInput,
                format!("refusing the plain http token realm {}", origin(&realm)),
            ));
        }
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request =
            self.http.request(Method::GET, realm.clone()).map_err(|e| transport_error(registry, e))?.query(&query);
        if let Some(c) = credentials {
            request = request.basic_auth(c.username(), Some(c.danger_password()));
        }
        let response = self.http.send(request).await.map_err(|e| transport_error(registry, e))?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(RegistryError::Unauthorized { registry: registry.to_owned() });
            }
            status => return Err(status_error(registry, status)),
        }
        let body = self.http.read_body(response).await.map_err(|e| transport_error(registry, e))?;
        let body: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            RegistryError::backend(operation(), ErrorKind::Other, "the token endpoint's answer is not json")
        })?;
        body.token.or(body.access_token).ok_or_else(|| {
            RegistryError::backend(operation(), ErrorKind::Other, "the token endpoint answered without a token")
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

fn transport_error(registry: &str, error: HttpError) -> RegistryError {
    RegistryError::backend(format!("reach registry {registry}"), error.kind(), error)
}

fn status_error(registry: &str, status: StatusCode) -> RegistryError {
    let kind = ErrorKind::from_http_status(status.as_u16());
    RegistryError::backend(format!("query registry {registry}"), kind, format!("the registry answered {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(insecure: &[&str], token_hosts: &[&str]) -> DistributionClient {
        DistributionClient::new(
            HttpPolicy::default(),
            insecure.iter().map(|s| (*s).to_owned()).collect(),
            token_hosts.iter().map(|s| (*s).to_owned()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn only_insecure_registries_use_plain_http() {
        let client = client(&["registry.lan:5000", "127.0.0.1:5000"], &[]);
        assert_eq!(client.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000/v2/");
        assert_eq!(client.base_url("registry.lan:5000"), "http://registry.lan:5000/v2/");
        assert_eq!(client.base_url("127.0.0.1:5001"), "https://127.0.0.1:5001/v2/", "loopback is not enough");
        assert_eq!(client.base_url("ghcr.io"), "https://ghcr.io/v2/");
        assert_eq!(client.base_url("docker.io"), "https://registry-1.docker.io/v2/");
    }

    #[test]
    fn token_realms_get_credentials_only_over_https_on_the_registrys_or_an_allowed_host() {
        let client = client(&["127.0.0.1:5000"], &["login.example.com"]);
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(client.realm_gets_credentials("ghcr.io", &url("https://ghcr.io/token")).is_ok());
        assert!(client.realm_gets_credentials("docker.io", &url("https://auth.docker.io/token")).is_ok());
        assert!(client.realm_gets_credentials("ghcr.io", &url("https://login.example.com/t")).is_ok());
        assert!(client.realm_gets_credentials("127.0.0.1:5000", &url("http://127.0.0.1:5000/token")).is_ok());
        for (registry, realm) in [
            ("ghcr.io", "http://ghcr.io/token"),
            ("ghcr.io", "https://evil.example/token"),
            ("registry.example.com", "https://auth.docker.io/token"),
            ("127.0.0.1:5000", "http://127.0.0.1:6000/token"),
            ("127.0.0.1:5000", "https://127.0.0.1:6000/token"),
        ] {
            assert!(client.realm_gets_credentials(registry, &url(realm)).is_err(), "{registry} -> {realm}");
        }
    }
}
