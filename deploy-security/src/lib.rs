//! Security for deploy-rs: Fernet encryption with key rotation, secret managers,
//! vulnerability scanners with a policy gate and SARIF export, manifest and
//! environment audits, secure config generation, and security headers.
//!
//! The feature table and an example follow (from the crate README). Secrets are
//! [`SecretString`](deploy_core::secret::SecretString) /
//! [`SecretBytes`](deploy_core::secret::SecretBytes) everywhere: redacted in `Debug`
//! and `Display`, zeroed on drop, exposed only by an explicit call.
#![cfg_attr(all(feature = "fernet", feature = "scanners"), doc = include_str!("../README.md"))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
#[cfg(feature = "fernet")]
pub mod fernet;
pub mod headers;
#[cfg(feature = "docker")]
pub mod runtime;
#[cfg(feature = "scanners")]
pub mod scan;
#[cfg(any(feature = "memory", feature = "file", feature = "vault", feature = "azure", feature = "kubernetes"))]
pub mod secrets;
pub mod secure_config;

/// deploy-core, whose traits (`SecretManager`, `VulnerabilityScanner`) this crate
/// implements, re-exported so that users need not pin their own copy.
pub use deploy_core;
