//! Kubernetes backend of deploy-rs on [`kube`]: manifests built from an
//! [`AppSpec`](deploy_core::model::AppSpec), cluster operations, pre-deployment
//! checks, and the `deploy-core` traits implemented over the API server.
//!
//! - [`manifest`]: pure builders (Deployment, Service, HPA, PDB, Ingress,
//!   NetworkPolicy, Namespace, ConfigMap, Secret, CRD, Istio kinds, Gateway API
//!   HTTPRoute) and rendering as multi-document YAML or a JSON `List`.
//! - [`cluster`]: server-side apply, namespaces, ConfigMaps and Secrets, pod logs,
//!   scale, CRDs, hook Jobs.
//! - [`preflight`]: pre-deployment checks that return a report.
//! - [`rollout_status`]: `kubectl rollout status` as a pure function.
//! - [`platform::KubePlatform`]: deploy-core's `Platform`, one Deployment per track,
//!   readiness from watches.
//! - [`router`]: deploy-core's `TrafficRouter` over a Service selector, replica
//!   ratio, Istio, Gateway API and NGINX canary Ingress.
//! - [`state`]: deploy-core's `StateStore` (ConfigMap with `resourceVersion` CAS,
//!   Lease lock) and `HistoryStore`.
//! - [`revisions`]: `kubectl rollout history` / `undo`.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cluster;
pub mod error;
pub mod labels;
pub mod manifest;
pub mod platform;
pub mod preflight;
pub mod revisions;
pub mod rollout_status;
pub mod router;
pub mod state;

pub use cluster::Cluster;
pub use error::{KubeError, Result};
pub use platform::{KubePlatform, PlatformOptions};

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod flow_tests;
