//! Registry credentials, per registry host, which never reach logs, `Debug` or
//! `Display`: given in code, or read from Docker's `config.json` (`auths`,
//! `credsStore`, `credHelpers`, the last two through the `docker-credential-*`
//! helper protocol).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// A user name and password (or access token) for one registry.
///
/// The secret is zeroed on drop and prints as `[redacted]`.
///
/// ```
/// use deploy_docker::registry::Credentials;
/// let c = Credentials::new("ci", "s3cr3t");
/// assert_eq!(format!("{c:?}"), r#"Credentials { username: "ci", password: "[redacted]" }"#);
/// ```
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: Zeroizing<String>,
}

impl Credentials {
    /// Credentials for basic auth or a token exchange.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self { username: username.into(), password: Zeroizing::new(password.into()) }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The secret; handle with care, never log it.
    pub fn danger_password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"[redacted]").finish()
    }
}

/// Why credentials could not be found. Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// `config.json` could not be read.
    #[error("failed to read docker config {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not Docker's format.
    #[error("docker config {path} is not valid: {reason}")]
    InvalidConfig {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What is wrong (the parser's message, which quotes no value).
        reason: String,
    },
    /// An `auths` entry's `auth` is not base64 of `user:password`.
    #[error("the auths entry for {registry} is not base64 of user:password")]
    InvalidAuth {
        /// The entry's registry.
        registry: String,
    },
    /// A helper name that is not a plain name (it would run another program).
    #[error("credential helper name {name:?} is not a plain name")]
    InvalidHelperName {
        /// The name from the config.
        name: String,
    },
    /// The helper could not be run, ran too long, or failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    Helper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// The registry asked about.
        registry: String,
        /// What happened (never the helper's output).
        reason: String,
    },
    /// The entry holds an identity token (an OAuth refresh token), which this client
    /// does not exchange.
    #[error("the credentials for {registry} are an identity token, which is not supported")]
    IdentityToken {
        /// The registry.
        registry: String,
    },
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Docker Hub's key in `config.json` and towards credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The registry host an `auths` or `credHelpers` key names: `https://host/v1/`,
/// `http://host`, `host` → `host`; Docker Hub's names → `docker.io`.
pub(crate) fn normalize_registry(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" | "registry.hub.docker.com" => "docker.io".to_owned(),
        _ => host,
    }
}

/// What `docker-credential-* get` prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Credentials per registry host. A host's credentials go only to that host (and
/// to the token realms the registry configuration allows); a host without
/// credentials is asked anonymously.
///
/// Look-up order, as the Docker CLI: credentials given in code for the host; then,
/// from `config.json`, the host's `credHelpers` entry, else `credsStore`, else the
/// host's `auths` entry. Hosts are `host[:port]` as in image references;
/// `docker.io` is Docker Hub (`https://index.docker.io/v1/` in `config.json`).
///
/// ```
/// use deploy_docker::registry::{Credentials, RegistryCredentials};
/// let creds = RegistryCredentials::default()
///     .host("ghcr.io", Credentials::new("robot", "ghp_s3cr3t"))
///     .docker_config_json(r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}}}"#)
///     .unwrap();
/// assert!(!format!("{creds:?}").contains("s3cr3t"));
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(creds.lookup("docker.io").await.unwrap().unwrap().username(), "user");
/// assert!(creds.lookup("registry.example.com").await.unwrap().is_none());
/// # });
/// ```
#[derive(Clone, Default)]
pub struct RegistryCredentials {
    hosts: BTreeMap<String, Credentials>,
    config: Option<Arc<ConfigFile>>,
    helper_path: Option<OsString>,
    helper_timeout: Option<Duration>,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut config_hosts: Vec<&str> = Vec::new();
        if let Some(config) = &self.config {
            config_hosts.extend(config.auths.keys().map(String::as_str));
            config_hosts.extend(config.cred_helpers.keys().map(String::as_str));
        }
        f.debug_struct("RegistryCredentials")
            .field("hosts", &self.hosts.keys().collect::<Vec<_>>())
            .field("docker_config_hosts", &config_hosts)
            .field("creds_store", &self.config.as_ref().and_then(|c| c.creds_store.as_deref()))
            .finish_non_exhaustive()
    }
}

impl RegistryCredentials {
    /// Credentials for one registry host (`ghcr.io`, `registry.lan:5000`,
    /// `docker.io`), ahead of anything in `config.json`.
    #[must_use]
    pub fn host(mut self, host: &str, credentials: Credentials) -> Self {
        self.hosts.insert(normalize_registry(host), credentials);
        self
    }

    /// Uses Docker's `config.json` given as text.
    pub fn docker_config_json(mut self, json: &str) -> Result<Self, CredentialError> {
        let config: ConfigFile = serde_json::from_str(json).map_err(|e| CredentialError::InvalidConfig {
            path: PathBuf::from("<memory>"),
            reason: format!("line {} column {}: {}", e.line(), e.column(), e.classify_name()),
        })?;
        self.config = Some(Arc::new(config));
        Ok(self)
    }

    /// Uses the Docker `config.json` at `path`.
    pub fn docker_config_file(self, path: impl AsRef<Path>) -> Result<Self, CredentialError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| CredentialError::ReadConfig { path: path.to_owned(), source })?;
        self.docker_config_json(&text).map_err(|e| match e {
            CredentialError::InvalidConfig { reason, .. } => {
                CredentialError::InvalidConfig { path: path.to_owned(), reason }
            }
            other => other,
        })
    }

    /// Uses the Docker CLI's own `config.json`: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`; a missing file means no credentials.
    pub fn docker_config_default(self) -> Result<Self, CredentialError> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")));
        match dir.map(|d| d.join("config.json")) {
            Some(path) if path.exists() => self.docker_config_file(path),
            _ => Ok(self),
        }
    }

    /// The `PATH` credential helpers are looked up in (the process's own by default).
    #[must_use]
    pub fn helper_path(mut self, path: impl Into<OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    /// The longest a credential helper may run; 30 s by default.
    #[must_use]
    pub fn helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = Some(timeout);
        self
    }

    /// The credentials for `registry` (`host[:port]` as in an image reference),
    /// `None` when there are none for exactly that host.
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credentials>, CredentialError> {
        let host = normalize_registry(registry);
        if let Some(credentials) = self.hosts.get(&host) {
            return Ok(Some(credentials.clone()));
        }
        let Some(config) = &self.config else { return Ok(None) };
        let helper = config
            .cred_helpers
            .iter()
            .find(|(key, _)| normalize_registry(key) == host)
            .map(|(_, helper)| helper)
            .or(config.creds_store.as_ref());
        if let Some(helper) = helper {
            let server = if host == "docker.io" { DOCKER_HUB_KEY.to_owned() } else { host.clone() };
            return self.run_helper(helper, &server, &host).await;
        }
        let Some(entry) = config.auths.iter().find(|(key, _)| normalize_registry(key) == host).map(|(_, e)| e) else {
            return Ok(None);
        };
        if entry.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(CredentialError::IdentityToken { registry: host });
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = Zeroizing::new(
                STANDARD.decode(auth.trim()).map_err(|_| CredentialError::InvalidAuth { registry: host.clone() })?,
            );
            let text =
                std::str::from_utf8(&decoded).map_err(|_| CredentialError::InvalidAuth { registry: host.clone() })?;
            let (user, password) =
                text.split_once(':').ok_or_else(|| CredentialError::InvalidAuth { registry: host.clone() })?;
            return Ok(Some(Credentials::new(user, password)));
        }
        match (&entry.username, &entry.password) {
            (Some(user), Some(password)) if !user.is_empty() => Ok(Some(Credentials::new(user, password.as_str()))),
            _ => Ok(None),
        }
    }

    /// `docker-credential-<helper> get`, the server URL on stdin, JSON on stdout.
    async fn run_helper(&self, helper: &str, server: &str, host: &str) -> Result<Option<Credentials>, CredentialError> {
        if helper.is_empty() || !helper.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(CredentialError::InvalidHelperName { name: helper.to_owned() });
        }
        let failed =
            |reason: String| CredentialError::Helper { helper: helper.to_owned(), registry: host.to_owned(), reason };
        let mut command = tokio::process::Command::new(format!("docker-credential-{helper}"));
        command.arg("get").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        if let Some(path) = &self.helper_path {
            // On Unix, a PATH set for the child is also where the program is looked up.
            command.env("PATH", path);
        }
        let mut child = command.spawn().map_err(|e| failed(format!("could not start it: {e}")))?;
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(server.as_bytes()).await.map_err(|e| failed(format!("writing its input: {e}")))?;
            }
            let mut out = Zeroizing::new(Vec::new());
            if let Some(stdout) = child.stdout.take() {
                stdout
                    .take(64 * 1024)
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| failed(format!("reading its output: {e}")))?;
            }
            let status = child.wait().await.map_err(|e| failed(format!("waiting for it: {e}")))?;
            Ok::<_, CredentialError>((status, out))
        };
        let timeout = self.helper_timeout.unwrap_or(Duration::from_secs(30));
        let (status, out) =
            tokio::time::timeout(timeout, run).await.map_err(|_| failed(format!("no answer within {timeout:?}")))??;
        if !status.success() {
            // The protocol's "not found" answer is an exit status 1 with this text.
            if String::from_utf8_lossy(&out).contains("credentials not found") {
                return Ok(None);
            }
            return Err(failed(format!("it exited with {status}")));
        }
        let answer: HelperAnswer = serde_json::from_slice(&out)
            .map_err(|e| failed(format!("its answer is not the helper protocol's json: {}", e.classify_name())))?;
        let secret = Zeroizing::new(answer.secret);
        let username = answer.username;
        if username == "<token>" {
            return Err(CredentialError::IdentityToken { registry: host.to_owned() });
        }
        if username.is_empty() && secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credentials::new(username, secret.as_str())))
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    /// The parser's class of error, without the message (which can quote input).
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "i/o error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_are_normalized_to_hosts() {
        assert_eq!(normalize_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_registry("http://Registry.LAN:5000/v2/"), "registry.lan:5000");
        assert_eq!(normalize_registry("ghcr.io"), "ghcr.io");
    }

    #[tokio::test]
    async fn auths_entries_answer_only_their_own_host() {
        let creds = RegistryCredentials::default()
            .docker_config_json(
                r#"{"auths":{"registry.a:5000":{"auth":"YWxpY2U6YS1wYXNz"},"https://b.example/v1/":{"username":"bob","password":"b-pass"},"c.example":{}}}"#,
            )
            .unwrap();
        let a = creds.lookup("registry.a:5000").await.unwrap().unwrap();
        assert_eq!((a.username(), a.danger_password()), ("alice", "a-pass"));
        assert_eq!(creds.lookup("b.example").await.unwrap().unwrap().danger_password(), "b-pass");
        assert!(creds.lookup("registry.a").await.unwrap().is_none(), "another port is another host");
        assert!(creds.lookup("c.example").await.unwrap().is_none());
        assert!(creds.lookup("docker.io").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn helper_names_cannot_run_other_programs_and_bad_json_quotes_nothing() {
        let creds = RegistryCredentials::default().docker_config_json(r#"{"credsStore":"../../bin/sh"}"#).unwrap();
        assert!(matches!(creds.lookup("x").await, Err(CredentialError::InvalidHelperName { .. })));
        let err = RegistryCredentials::default().docker_config_json(r#"{"auths": "hunter2"#).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let creds = RegistryCredentials::default()
            .docker_config_json(r#"{"auths":{"x":{"auth":"bm90LWEtcGFpcg=="}}}"#)
            .unwrap();
        assert!(matches!(creds.lookup("x").await, Err(CredentialError::InvalidAuth { .. })));
    }
}
