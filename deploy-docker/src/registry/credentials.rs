//! Registry credentials, which never reach logs, `Debug` or `Display`.

use std::fmt;

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
