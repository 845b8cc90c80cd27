//! How the Vault secret manager gets its token: a static token, or a login (AppRole,
//! Kubernetes service account) whose token is renewed before it expires and
//! replaced by a new login when renewal is refused.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use deploy_core::secret::SecretString;
use serde::Deserialize;
use tokio::time::Instant;

/// Where the default Kubernetes service-account token is mounted in a pod.
pub const SERVICE_ACCOUNT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How to authenticate to Vault. Secrets print as `[redacted]`.
///
/// ```
/// use deploy_core::secret::SecretString;
/// use deploy_security::secrets::VaultAuth;
/// let auth = VaultAuth::approle("6f1c…-role-id", SecretString::from("s3cret-id"));
/// assert!(!format!("{auth:?}").contains("s3cret-id"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum VaultAuth {
    /// A token obtained elsewhere, used as is (never renewed: its owner manages it).
    Token(SecretString),
    /// AppRole login (`POST auth/<mount>/login` with `role_id` and `secret_id`).
    AppRole {
        /// Where the AppRole method is mounted (`approle`).
        mount: String,
        /// The role id (not secret by itself).
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
    },
    /// Kubernetes service-account login (`POST auth/<mount>/login` with `role` and
    /// the service-account JWT, read from `jwt_path` at each login so that a
    /// rotated projected token is picked up).
    Kubernetes {
        /// Where the Kubernetes method is mounted (`kubernetes`).
        mount: String,
        /// The Vault role bound to the service account.
        role: String,
        /// The file holding the service-account token.
        jwt_path: PathBuf,
    },
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token([redacted])"),
            Self::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .field("secret_id", &"[redacted]")
                .finish(),
            Self::Kubernetes { mount, role, jwt_path } => f
                .debug_struct("Kubernetes")
                .field("mount", mount)
                .field("role", role)
                .field("jwt_path", jwt_path)
                .finish(),
        }
    }
}

impl VaultAuth {
    /// A static token.
    pub fn token(token: impl Into<SecretString>) -> Self {
        Self::Token(token.into())
    }

    /// AppRole on the `approle` mount.
    pub fn approle(role_id: impl Into<String>, secret_id: impl Into<SecretString>) -> Self {
        Self::AppRole { mount: "approle".to_owned(), role_id: role_id.into(), secret_id: secret_id.into() }
    }

    /// Kubernetes auth on the `kubernetes` mount with the pod's own service-account
    /// token ([`SERVICE_ACCOUNT_TOKEN_PATH`]).
    pub fn kubernetes(role: impl Into<String>) -> Self {
        Self::Kubernetes {
            mount: "kubernetes".to_owned(),
            role: role.into(),
            jwt_path: PathBuf::from(SERVICE_ACCOUNT_TOKEN_PATH),
        }
    }

    /// Sets the mount of a login method (no effect on a static token).
    #[must_use]
    pub fn at_mount(mut self, new_mount: impl Into<String>) -> Self {
        match &mut self {
            Self::Token(_) => {}
            Self::AppRole { mount, .. } | Self::Kubernetes { mount, .. } => *mount = new_mount.into(),
        }
        self
    }

    /// Sets the service-account token file of Kubernetes auth (no effect otherwise).
    #[must_use]
    pub fn jwt_path(mut self, path: impl Into<PathBuf>) -> Self {
        if let Self::Kubernetes { jwt_path, .. } = &mut self {
            *jwt_path = path.into();
        }
        self
    }

    /// The login path under `v1/`, `None` for a static token.
    pub(crate) fn login_path(&self) -> Option<String> {
        match self {
            Self::Token(_) => None,
            Self::AppRole { mount, .. } | Self::Kubernetes { mount, .. } => {
                Some(format!("auth/{}/login", mount.trim_matches('/')))
            }
        }
    }

    /// The name of the method, for errors.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::AppRole { .. } => "approle",
            Self::Kubernetes { .. } => "kubernetes",
        }
    }
}

/// The `auth` block of a login or renewal answer.
#[derive(Deserialize)]
pub(crate) struct AuthBlock {
    pub(crate) client_token: String,
    #[serde(default)]
    pub(crate) lease_duration: u64,
    #[serde(default)]
    pub(crate) renewable: bool,
}

#[derive(Deserialize)]
pub(crate) struct AuthEnvelope {
    pub(crate) auth: Option<AuthBlock>,
}

/// A token in use and when to renew it.
pub(crate) struct LeasedToken {
    pub(crate) token: SecretString,
    /// `None`: it does not expire (a root token, a static token).
    pub(crate) expires_at: Option<Instant>,
    /// When to renew: two thirds into its lease.
    pub(crate) renew_at: Option<Instant>,
    pub(crate) renewable: bool,
}

impl LeasedToken {
    pub(crate) fn from_auth(block: AuthBlock, now: Instant) -> Self {
        let lease = Duration::from_secs(block.lease_duration);
        let (expires_at, renew_at) =
            if block.lease_duration == 0 { (None, None) } else { (Some(now + lease), Some(now + lease * 2 / 3)) };
        Self { token: SecretString::new(block.client_token), expires_at, renew_at, renewable: block.renewable }
    }

    /// Whether it may be used as it is at `now`.
    pub(crate) fn fresh(&self, now: Instant) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }

    /// Whether it is still valid at `now` (so that renewing it can work).
    pub(crate) fn alive(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now + Duration::from_millis(250) < at)
    }
}

/// What the manager did to keep its token valid, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VaultAuthStats {
    /// Logins made (the first one included).
    pub logins: u64,
    /// Successful renewals of the current token.
    pub renewals: u64,
    /// Renewals that failed, refused or otherwise (each followed by a new login).
    pub refused_renewals: u64,
}
