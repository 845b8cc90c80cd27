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

/// bollard, whose `Docker` handle [`runtime::RuntimeMonitor::new`] takes,
/// re-exported so that users need not pin their own copy.
#[cfg(feature = "docker")]
#[cfg_attr(docsrs, doc(cfg(feature = "docker")))]
pub use bollard;

/// kube, whose `Client` the Kubernetes secret manager takes, re-exported so that
/// users need not pin their own copy.
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub use kube;

/// k8s-openapi, the Kubernetes API types under kube, at the one API version the
/// workspace selects.
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub use k8s_openapi;
