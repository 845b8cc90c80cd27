//! Secrets for a new deployment, drawn from the operating system's random source.

use std::io;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use deploy_core::secret::SecretString;
use zeroize::Zeroizing;

/// How much randomness each generated secret gets.
///
/// ```
/// use deploy_security::secure_config::SecureConfigOptions;
/// let opts = SecureConfigOptions::default().jwt_secret_bytes(128);
/// assert_eq!(opts.jwt_secret_bytes, 128);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecureConfigOptions {
    /// Bytes of the JWT HMAC secret; raised to 32 (HS256's minimum) if lower.
    pub jwt_secret_bytes: usize,
    /// Bytes of the session secret; raised to 32 if lower.
    pub session_secret_bytes: usize,
    /// Bytes of each salt; raised to 16 if lower.
    pub salt_bytes: usize,
}

impl Default for SecureConfigOptions {
    fn default() -> Self {
        Self { jwt_secret_bytes: 64, session_secret_bytes: 32, salt_bytes: 16 }
    }
}

impl SecureConfigOptions {
    /// Sets the JWT secret's size.
    #[must_use]
    pub fn jwt_secret_bytes(mut self, bytes: usize) -> Self {
        self.jwt_secret_bytes = bytes;
        self
    }

    /// Sets the session secret's size.
    #[must_use]
    pub fn session_secret_bytes(mut self, bytes: usize) -> Self {
        self.session_secret_bytes = bytes;
        self
    }

    /// Sets each salt's size.
    #[must_use]
    pub fn salt_bytes(mut self, bytes: usize) -> Self {
        self.salt_bytes = bytes;
        self
    }
}

/// The secrets a new service needs, each from the OS random source (`getrandom`), each
/// redacted in `Debug` and zeroed on drop.
///
/// ```
/// use deploy_security::secure_config::SecureConfig;
/// let config = SecureConfig::generate()?;
/// assert_eq!(config.encryption_key.len(), 44); // a Fernet key
/// assert!(!format!("{config:?}").contains(config.jwt_secret.expose_secret()));
/// let names: Vec<_> = config.to_env().into_iter().map(|(name, _)| name).collect();
/// assert_eq!(names, ["ENCRYPTION_KEY", "JWT_SECRET", "SESSION_SECRET", "PASSWORD_SALT", "API_KEY_SALT"]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SecureConfig {
    /// A Fernet key (32 bytes, URL-safe base64 with padding).
    pub encryption_key: SecretString,
    /// A JWT HMAC secret (URL-safe base64, no padding).
    pub jwt_secret: SecretString,
    /// A session-cookie signing secret (URL-safe base64, no padding).
    pub session_secret: SecretString,
    /// A salt for password hashing (hex).
    pub password_salt: SecretString,
    /// A salt for API key hashing (hex).
    pub api_key_salt: SecretString,
}

impl SecureConfig {
    /// Generates every secret with the default sizes.
    pub fn generate() -> io::Result<Self> {
        Self::generate_with(SecureConfigOptions::default())
    }

    /// Generates every secret with the given sizes (never below the minimums).
    pub fn generate_with(options: SecureConfigOptions) -> io::Result<Self> {
        Ok(Self {
            encryption_key: SecretString::new(URL_SAFE.encode(random_bytes(32)?.as_slice())),
            jwt_secret: random_token(options.jwt_secret_bytes.max(32))?,
            session_secret: random_token(options.session_secret_bytes.max(32))?,
            password_salt: random_hex(options.salt_bytes.max(16))?,
            api_key_salt: random_hex(options.salt_bytes.max(16))?,
        })
    }

    /// The secrets as environment variables, in a fixed order.
    pub fn to_env(&self) -> Vec<(&'static str, SecretString)> {
        vec![
            ("ENCRYPTION_KEY", self.encryption_key.clone()),
            ("JWT_SECRET", self.jwt_secret.clone()),
            ("SESSION_SECRET", self.session_secret.clone()),
            ("PASSWORD_SALT", self.password_salt.clone()),
            ("API_KEY_SALT", self.api_key_salt.clone()),
        ]
    }
}

/// `len` bytes from the OS random source.
pub fn random_bytes(len: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(&mut bytes).map_err(io::Error::from)?;
    Ok(bytes)
}

/// `len` random bytes as URL-safe base64 without padding: for tokens and HMAC secrets.
pub fn random_token(len: usize) -> io::Result<SecretString> {
    Ok(SecretString::new(URL_SAFE_NO_PAD.encode(random_bytes(len)?.as_slice())))
}

/// `len` random bytes as lower-case hex: for salts.
pub fn random_hex(len: usize) -> io::Result<SecretString> {
    use std::fmt::Write;
    let bytes = random_bytes(len)?;
    let mut hex = String::with_capacity(len * 2);
    for b in bytes.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(SecretString::new(hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_meet_the_minimums_and_values_differ() {
        let small = SecureConfigOptions::default().jwt_secret_bytes(8).session_secret_bytes(1).salt_bytes(2);
        let config = SecureConfig::generate_with(small).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(config.jwt_secret.expose_secret()).unwrap().len(), 32);
        assert_eq!(URL_SAFE_NO_PAD.decode(config.session_secret.expose_secret()).unwrap().len(), 32);
        assert_eq!(config.password_salt.len(), 32);
        assert!(config.password_salt.expose_secret().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(URL_SAFE.decode(config.encryption_key.expose_secret()).unwrap().len(), 32);
        let other = SecureConfig::generate().unwrap();
        assert_ne!(config.jwt_secret, other.jwt_secret);
        assert_ne!(config.password_salt, config.api_key_salt);
        assert_eq!(URL_SAFE_NO_PAD.decode(other.jwt_secret.expose_secret()).unwrap().len(), 64);
    }

    #[cfg(feature = "fernet")]
    #[test]
    fn the_encryption_key_is_a_working_fernet_key() {
        let config = SecureConfig::generate().unwrap();
        let key = crate::fernet::FernetKey::from_base64(&config.encryption_key).unwrap();
        let token = key.encrypt(b"x").unwrap();
        assert!(key.decrypt(&token, crate::fernet::DecryptOptions::default()).is_ok());
    }

    #[test]
    fn generated_secrets_pass_the_environment_audit() {
        let config = SecureConfig::generate().unwrap();
        let env: Vec<(&str, String)> =
            config.to_env().into_iter().map(|(k, v)| (k, v.expose_secret().to_owned())).collect();
        let findings = crate::audit::audit_environment(
            env.iter().map(|(k, v)| (*k, v.as_str())).chain([("RATE_LIMIT_PER_MINUTE", "100")]),
            deploy_core::model::Environment::Production,
        );
        assert!(findings.is_empty(), "{findings:?}");
    }
}
