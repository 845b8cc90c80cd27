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
//!
//! Manifests need no cluster: every builder is a pure function of the spec.
//!
//! ```
//! use deploy_core::model::{AppSpec, ImageRef, Name, Namespace, Port, Release, Track, Version};
//! use deploy_k8s::manifest::{DeploymentOptions, ManifestSet, ServiceOptions, deployment, service};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let image = ImageRef::parse("registry.example.com/shop/checkout:1.4.2")?;
//! let spec = AppSpec::new(Namespace::new("shop")?, Name::new("checkout")?, image.clone())
//!     .port(Port::tcp("http", 8080)?)
//!     .replicas(3);
//! let release = Release::new(Version::new("1.4.2")?, image);
//! let mut set = ManifestSet::new();
//! set.push(&service(&spec, &ServiceOptions::default()))?;
//! set.push(&deployment(&spec, &DeploymentOptions::default().track(Track::Stable).release(release)))?;
//! let yaml = set.to_yaml()?;
//! assert!(yaml.contains("kind: Deployment") && yaml.contains("kind: Service"));
//! assert!(yaml.contains("image: registry.example.com/shop/checkout:1.4.2"));
//! # Ok(()) }
//! ```
//!
//! On a cluster, the platform, a router and the stores go to deploy-core's rollout
//! engine (`kube::Client::try_default` reads `KUBECONFIG`, or the service account
//! when running in a pod; the RBAC it needs is in `docs/kubernetes.md`):
//!
//! ```no_run
//! use std::sync::Arc;
//! use deploy_core::engine::{RolloutEngine, RolloutRequest};
//! use deploy_core::model::{AppSpec, ImageRef, Name, Namespace, Release, Version};
//! use deploy_core::strategy::{BlueGreen, PlanInput, Strategy};
//! use deploy_k8s::router::ServiceSelectorRouter;
//! use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};
//! use deploy_k8s::{Cluster, KubePlatform, PlatformOptions};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = Cluster::new(kube::Client::try_default().await?);
//! let engine = RolloutEngine::builder(
//!     Arc::new(KubePlatform::new(cluster.clone(), PlatformOptions::default())),
//!     Arc::new(KubeStateStore::new(cluster.clone())),
//!     Arc::new(KubeHistoryStore::new(cluster.clone(), Namespace::new("deploy-rs")?)),
//! )
//! .router(Arc::new(ServiceSelectorRouter::new(cluster)))
//! .build();
//! let image = ImageRef::parse("registry.example.com/shop/checkout:1.4.3")?;
//! let spec = AppSpec::new(Namespace::new("shop")?, Name::new("checkout")?, image.clone());
//! let plan = BlueGreen::default().plan(&PlanInput::new(spec.replicas));
//! let report = engine.run(RolloutRequest::new(spec, Release::new(Version::new("1.4.3")?, image), plan)).await?;
//! println!("{}: {}", report.record.id, report.status);
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cluster;
pub mod discovery;
pub mod error;
pub mod failover;
pub mod helm;
pub mod labels;
pub mod manifest;
pub mod platform;
pub mod preflight;
pub mod revisions;
pub mod rollout_status;
pub mod router;
pub mod snapshot;
pub mod state;

pub use cluster::Cluster;
pub use error::{KubeError, Result};
pub use platform::{KubePlatform, PlatformOptions};

// The libraries this crate's API is made of, re-exported so that users need not pin
// their own copies (as `kube` re-exports `kube_core`).
pub use deploy_core;
pub use k8s_openapi;
pub use kube;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod flow_tests;
