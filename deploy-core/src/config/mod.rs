//! Layered configuration: defaults, a file, an environment-specific file,
//! environment variables with a prefix, and secrets from a
//! [`SecretManager`](crate::secret::SecretManager), each layer overriding the ones
//! before.
//!
//! - Files are JSON, or TOML with the `toml` feature. YAML is not read: the YAML
//!   crates are either archived (`serde_yaml`) or not trustworthy enough
//!   (`serde_yml`) for a dependency of this crate; a caller who has YAML can parse
//!   it into a [`serde_json::Value`] and add it with [`ConfigLoader::layer`].
//! - Environment variables `APP__DB__HOST=db` become `db.host = "db"` for the
//!   prefix `APP`; `true`, `false` and numbers become booleans and numbers.
//! - Secrets stay [`SecretString`](crate::secret::SecretString)s: `Debug`,
//!   `Display`, diffs and templates never show them.
//! - Loading reports every problem at once (unreadable files, missing required
//!   keys, missing secrets, failed checks) as one [`ValidationErrors`].
//! - [`ConfigHistory`] keeps every version, diffs any two, and rolls back by
//!   adding an old version as the newest.
//!
//! ```
//! use deploy_core::config::ConfigLoader;
//! use serde_json::json;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = ConfigLoader::new()
//!     .defaults(json!({"db": {"host": "localhost", "port": 5432}, "name": "shop"}))
//!     .env_vars("APP", [("APP__DB__HOST".to_string(), "db.internal".to_string())])
//!     .require("db.host")
//!     .load()
//!     .await
//!     .unwrap();
//! assert_eq!(config.get("db.host").unwrap(), "db.internal");
//! assert_eq!(config.get_as::<u16>("db.port").unwrap(), 5432);
//! assert_eq!(config.render("{{name}} at {{db.host}}").unwrap(), "shop at db.internal");
//! # }
//! ```

mod history;
mod loader;
mod tree;

pub use history::{ChangeKind, ConfigChange, ConfigHistory, ConfigVersion};
pub use loader::ConfigLoader;
pub use tree::Config;

use crate::error::{Classify, ErrorKind};
use crate::model::ValidationErrors;
use crate::secret::SecretError;

/// A configuration that could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Every problem found while loading.
    #[error("invalid configuration: {0}")]
    Invalid(#[source] ValidationErrors),
    /// The secret manager failed (other than a missing secret, which is a
    /// validation problem).
    #[error("failed to read secret for {key}: {source}")]
    Secret {
        /// The configuration key.
        key: String,
        /// The manager's error.
        #[source]
        source: SecretError,
    },
    /// A key is missing.
    #[error("configuration key {key} is not set")]
    Missing {
        /// The key.
        key: String,
    },
    /// A value does not have the type asked for.
    #[error("configuration key {key} has the wrong type: {reason}")]
    Type {
        /// The key (empty for the whole tree).
        key: String,
        /// What serde said, unless it would have quoted a secret.
        reason: String,
    },
    /// A template names keys that are not set.
    #[error("template uses unset keys: {}", keys.join(", "))]
    TemplateKeys {
        /// Every unset key.
        keys: Vec<String>,
    },
    /// A template names a secret; use [`Config::render_exposing_secrets`] on purpose.
    #[error("template uses secret {key}")]
    SecretInTemplate {
        /// The key.
        key: String,
    },
    /// No version has this number.
    #[error("configuration version {number} does not exist")]
    UnknownVersion {
        /// The number.
        number: u64,
    },
}

impl Classify for ConfigError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Secret { source, .. } => source.kind(),
            Self::Missing { .. } | Self::UnknownVersion { .. } => ErrorKind::NotFound,
            _ => ErrorKind::InvalidInput,
        }
    }
}
