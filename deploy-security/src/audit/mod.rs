//! Audits: Kubernetes manifests and app specs (in the spirit of kube-score and
//! Polaris) and environment variables, reporting deploy-core's [`Finding`](deploy_core::scan::Finding)s
//! with rule ids and severities.

mod environment;
mod manifest;
mod pod;
mod rules;

pub use environment::{MIN_JWT_SECRET_BYTES, audit_environment};
pub use manifest::{ManifestError, audit_app_spec, audit_manifest_json};
pub use rules::MANIFEST_RULES;
