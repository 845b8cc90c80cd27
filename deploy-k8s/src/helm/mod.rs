//! Helm interop without Helm: read the revisions of a release that Helm 3 shipped
//! from its storage Secrets, as the suite's [`DeploymentRecord`]s (so DORA metrics and
//! history include releases shipped with Helm), and export an app's manifests as a
//! minimal chart for teams that ship through Helm.
//!
//! Helm's Secret storage driver keeps one Secret per revision, named
//! `sh.helm.release.v1.<release>.v<revision>`, of type `helm.sh/release.v1`, labelled
//! `owner=helm`, `name=<release>`, `status`, `version`; its `release` key holds the
//! release as JSON, gzip-compressed and base64-encoded (inside the Secret's own base64).
//! Only that driver is read: the ConfigMap and SQL drivers are not.
//!
//! [`DeploymentRecord`]: deploy_core::model::DeploymentRecord

mod chart;
mod release;

pub use chart::{ChartMetadata, HelmChart, export_chart};
pub use release::{
    HelmError, HelmInfo, HelmRelease, HelmReleases, HelmStatus, StoredChart, StoredChartMetadata, decode_release,
    encode_release, records_from_revisions,
};
