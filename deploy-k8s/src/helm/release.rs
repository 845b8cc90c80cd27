//! Helm 3 release records: decoding the storage Secrets and mapping revisions to
//! deployment records.

use std::io::Read;

use base64::Engine as _;
use deploy_core::model::{
    AppId, DeploymentId, DeploymentRecord, DeploymentStatus, Environment, ImageRef, Name, Namespace, Release, Version,
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};

/// The type Helm gives its release Secrets.
const SECRET_TYPE: &str = "helm.sh/release.v1";
/// gzip's magic bytes, which Helm checks before decompressing.
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
/// The largest release JSON accepted after decompression (a Secret holds at most
/// 1 MiB compressed; this bounds a decompression bomb).
const MAX_RELEASE_BYTES: u64 = 64 * 1024 * 1024;

/// Failures to read Helm releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelmError {
    /// The API server failed or could not be reached.
    #[error("failed to list the helm release secrets of {release} in {namespace}: {source}")]
    Api {
        /// The namespace read.
        namespace: String,
        /// The release read.
        release: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A Secret's `release` data is not a release Helm could have written.
    #[error("helm release secret {secret} cannot be decoded: {reason}")]
    Decode {
        /// The Secret's name.
        secret: String,
        /// What was wrong (base64, gzip, JSON and where).
        reason: String,
    },
    /// A release cannot be expressed as a deployment record.
    #[error("helm release {release} revision {revision} cannot be recorded: {reason}")]
    Unmappable {
        /// The release.
        release: String,
        /// The revision.
        revision: u32,
        /// What is missing or invalid (no image in the manifest, a name that is not a DNS label).
        reason: String,
    },
}

/// A revision's state, as Helm writes it (`info.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HelmStatus {
    /// Not known to Helm.
    Unknown,
    /// Serving now.
    Deployed,
    /// Uninstalled.
    Uninstalled,
    /// Replaced by a later revision.
    Superseded,
    /// The install or upgrade failed.
    Failed,
    /// Being uninstalled.
    Uninstalling,
    /// Being installed.
    PendingInstall,
    /// Being upgraded.
    PendingUpgrade,
    /// Being rolled back.
    PendingRollback,
}

/// `info` of a Helm release: when and how it was deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HelmInfo {
    /// When the release's first revision was deployed.
    #[serde(default)]
    pub first_deployed: Option<Timestamp>,
    /// When this revision was deployed.
    #[serde(default)]
    pub last_deployed: Option<Timestamp>,
    /// Helm's description: `Install complete`, `Upgrade complete`, `Rollback to 3`,
    /// or the error of a failed revision.
    #[serde(default)]
    pub description: String,
    /// The revision's state.
    pub status: HelmStatus,
}

/// The chart's metadata as stored in a release (`chart.metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StoredChartMetadata {
    /// The chart's name.
    pub name: String,
    /// The chart's version.
    pub version: String,
    /// The version of the app it ships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

/// The chart part of a stored release (templates and values are not kept here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredChart {
    /// The chart's metadata.
    pub metadata: StoredChartMetadata,
}

/// One revision of a Helm release, as Helm stores it (the fields this crate reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HelmRelease {
    /// The release's name.
    pub name: String,
    /// When and how.
    pub info: HelmInfo,
    /// The chart it was made from.
    pub chart: StoredChart,
    /// The rendered manifest that Helm applied (multi-document YAML).
    #[serde(default)]
    pub manifest: String,
    /// The revision number, from 1.
    pub version: u32,
    /// The namespace it was installed in.
    pub namespace: String,
}

impl HelmRelease {
    /// The container images of the manifest's workloads, in order.
    pub fn images(&self) -> Vec<String> {
        let mut images = Vec::new();
        for document in serde_norway::Deserializer::from_str(&self.manifest) {
            let Ok(value) = serde_json::Value::deserialize(document) else { continue };
            collect_images(&value, &mut images);
        }
        images
    }
}

/// Collects `containers[].image` anywhere under `value` (pod templates, CronJobs).
fn collect_images(value: &serde_json::Value, images: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(containers)) = map.get("containers") {
                for container in containers {
                    if let Some(image) = container.get("image").and_then(serde_json::Value::as_str)
                        && !images.iter().any(|known| known == image)
                    {
                        images.push(image.to_owned());
                    }
                }
            }
            map.values().for_each(|child| collect_images(child, images));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|child| collect_images(child, images)),
        _ => {}
    }
}

/// Decodes a release Secret's `release` data as Helm wrote it: base64 of the
/// gzip-compressed JSON (Helm also reads uncompressed JSON, and so does this).
pub fn decode_release(secret_name: &str, data: &[u8]) -> Result<HelmRelease, HelmError> {
    let fail = |reason: String| HelmError::Decode { secret: secret_name.to_owned(), reason };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data.trim_ascii())
        .map_err(|e| fail(format!("the release is not base64: {e}")))?;
    let json = if raw.starts_with(&GZIP_MAGIC) {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_RELEASE_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|e| fail(format!("the release is not valid gzip: {e}")))?;
        if json.len() as u64 > MAX_RELEASE_BYTES {
            return Err(fail(format!("the release is larger than {MAX_RELEASE_BYTES} bytes uncompressed")));
        }
        json
    } else {
        raw
    };
    let deserializer = &mut serde_json::Deserializer::from_slice(&json);
    serde_path_to_error::deserialize(deserializer)
        .map_err(|e| fail(format!("the release JSON is invalid at {}: {}", e.path(), e.inner())))
}

/// Encodes a release as Helm's storage driver does (JSON, gzip, base64): the value
/// of a release Secret's `release` key, before the Secret's own base64.
pub fn encode_release(release: &HelmRelease) -> Result<Vec<u8>, HelmError> {
    use std::io::Write;
    let fail = |reason: String| HelmError::Decode { secret: release.name.clone(), reason };
    let json = serde_json::to_vec(release).map_err(|e| fail(e.to_string()))?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&json).map_err(|e| fail(e.to_string()))?;
    let gzip = encoder.finish().map_err(|e| fail(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(gzip).into_bytes())
}

/// Reads Helm releases from their storage Secrets.
///
/// ```no_run
/// # async fn run(client: kube::Client) -> Result<(), deploy_k8s::helm::HelmError> {
/// use deploy_core::dora::{DoraAccumulator, DoraWindow};
/// use deploy_core::model::Environment;
/// use deploy_k8s::helm::HelmReleases;
///
/// let records = HelmReleases::new(client).records("shop", "web", Environment::Production).await?;
/// let mut dora = DoraAccumulator::new(DoraWindow::all());
/// records.iter().for_each(|record| dora.add(record));
/// println!("{:?}", dora.metrics(Some(Environment::Production)).change_failure_rate);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HelmReleases {
    client: kube::Client,
}

impl std::fmt::Debug for HelmReleases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmReleases").finish_non_exhaustive()
    }
}

impl HelmReleases {
    /// A reader on `client`. It needs `list` on Secrets in the namespaces it reads.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// Every stored revision of `release` in `namespace`, oldest first. Secrets
    /// labelled like Helm's but of another type are left out. An unknown release is
    /// an empty list (Helm keeps no record of it).
    pub async fn revisions(&self, namespace: &str, release: &str) -> Result<Vec<HelmRelease>, HelmError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(&format!("owner=helm,name={release}"));
        let secrets = api.list(&params).await.map_err(|source| HelmError::Api {
            namespace: namespace.to_owned(),
            release: release.to_owned(),
            source,
        })?;
        let mut revisions = Vec::new();
        for secret in secrets.items {
            if secret.type_.as_deref() != Some(SECRET_TYPE) {
                continue;
            }
            let name = secret.metadata.name.clone().unwrap_or_default();
            let data = secret.data.as_ref().and_then(|data| data.get("release")).ok_or_else(|| HelmError::Decode {
                secret: name.clone(),
                reason: "it has no `release` key".to_owned(),
            })?;
            revisions.push(decode_release(&name, &data.0)?);
        }
        revisions.sort_by_key(|revision| revision.version);
        Ok(revisions)
    }

    /// The revisions of `release` as deployment records in `environment`, oldest
    /// first (see [`records_from_revisions`]).
    pub async fn records(
        &self,
        namespace: &str,
        release: &str,
        environment: Environment,
    ) -> Result<Vec<DeploymentRecord>, HelmError> {
        records_from_revisions(&self.revisions(namespace, release).await?, environment)
    }
}

/// Deployment records of a release's revisions (sorted by revision):
///
/// - the app is `<namespace>/<release>`; the release's version is the chart's
///   `appVersion` (else the chart version), its image the manifest's first container
///   image; the strategy is `helm`; the id is `helm-<release>-v<revision>`;
/// - `deployed` and `superseded` revisions succeeded, `failed` ones failed, pending
///   ones are in progress; a revision that a later `Rollback to N` revision replaced
///   is rolled back, and the rollback itself is a successful deployment;
/// - start and end are the revision's `last_deployed` (Helm records no end);
/// - `from` is the previous revision's release.
pub fn records_from_revisions(
    revisions: &[HelmRelease],
    environment: Environment,
) -> Result<Vec<DeploymentRecord>, HelmError> {
    let mut records: Vec<DeploymentRecord> = Vec::with_capacity(revisions.len());
    let mut previous: Option<Release> = None;
    for (index, revision) in revisions.iter().enumerate() {
        let unmappable = |reason: String| HelmError::Unmappable {
            release: revision.name.clone(),
            revision: revision.version,
            reason,
        };
        let name = |value: &str, what: &str| Name::new(value).map_err(|e| unmappable(format!("{what}: {e}")));
        let namespace =
            Namespace::new(revision.namespace.as_str()).map_err(|e| unmappable(format!("namespace: {e}")))?;
        let app = AppId::new(namespace, name(&revision.name, "release name")?);
        let metadata = &revision.chart.metadata;
        let version_text = metadata.app_version.clone().unwrap_or_else(|| metadata.version.clone());
        let version = Version::new(version_text).map_err(|e| unmappable(format!("version: {e}")))?;
        let image_text = revision
            .images()
            .into_iter()
            .next()
            .ok_or_else(|| unmappable("its manifest runs no container".to_owned()))?;
        let image = ImageRef::parse(&image_text).map_err(|e| unmappable(format!("image: {e}")))?;
        let to = Release::new(version, image).change_cause(revision.info.description.clone());

        let mut record = DeploymentRecord::new(
            app,
            environment,
            previous.clone(),
            to.clone(),
            deploy_core::model::StrategyKind::Helm,
        );
        let mut id = format!("helm-{}-v{}", revision.name, revision.version);
        id.truncate(63);
        record.id = DeploymentId::new(id).map_err(|e| unmappable(format!("id: {e}")))?;
        let rolled_back =
            revisions[index + 1..].first().is_some_and(|next| next.info.description.starts_with("Rollback to "));
        record.status = match revision.info.status {
            HelmStatus::PendingInstall | HelmStatus::PendingUpgrade | HelmStatus::PendingRollback => {
                DeploymentStatus::InProgress
            }
            HelmStatus::Failed => DeploymentStatus::Failed,
            _ if rolled_back => DeploymentStatus::RolledBack,
            HelmStatus::Unknown => DeploymentStatus::Pending,
            _ => DeploymentStatus::Succeeded,
        };
        if record.status.is_failure() {
            // Helm says why only in a sentence: the cause is unclassified text.
            record.cause = Some(deploy_core::model::FailureCause::unclassified(
                if rolled_back && revision.info.status != HelmStatus::Failed {
                    format!("rolled back by revision {}", revision.version + 1)
                } else {
                    revision.info.description.clone()
                },
            ));
        }
        if let Some(at) = revision.info.last_deployed {
            record.created_at = at;
            record.started_at = Some(at);
            if record.status.is_terminal() {
                record.finished_at = Some(at);
            }
        }
        previous = Some(to);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(version: u32, status: HelmStatus, description: &str, image: &str) -> HelmRelease {
        HelmRelease {
            name: "web".into(),
            info: HelmInfo {
                first_deployed: Some("2026-01-01T10:00:00Z".parse().unwrap()),
                last_deployed: Some(format!("2026-01-0{version}T10:00:00Z").parse().unwrap()),
                description: description.into(),
                status,
            },
            chart: StoredChart {
                metadata: StoredChartMetadata {
                    name: "web".into(),
                    version: "0.1.0".into(),
                    app_version: Some(format!("1.{version}.0")),
                },
            },
            manifest: format!(
                "---\n# Source: web/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: {image}\n"
            ),
            version,
            namespace: "shop".into(),
        }
    }

    #[test]
    fn what_helm_writes_decodes_and_gzip_is_optional() {
        let release = revision(1, HelmStatus::Deployed, "Install complete", "registry.example/web:1.1.0");
        let encoded = encode_release(&release).unwrap();
        let raw = base64::engine::general_purpose::STANDARD.decode(&encoded).unwrap();
        assert_eq!(raw[..3], GZIP_MAGIC);
        assert_eq!(decode_release("s", &encoded).unwrap(), release);
        let plain = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&release).unwrap());
        assert_eq!(decode_release("s", plain.as_bytes()).unwrap(), release);
        let err = decode_release("sh.helm.release.v1.web.v1", b"not base64!").unwrap_err();
        assert!(err.to_string().contains("sh.helm.release.v1.web.v1") && err.to_string().contains("base64"), "{err}");
        let bad_json =
            base64::engine::general_purpose::STANDARD.encode(br#"{"name":"web","info":{"status":"deployed"}}"#);
        let err = decode_release("s", bad_json.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("chart"), "names the missing field: {err}");
    }

    #[test]
    fn a_rolled_back_revision_and_a_failed_one_are_failures_and_the_rollback_succeeds() {
        let revisions = [
            revision(1, HelmStatus::Superseded, "Install complete", "web:1.1.0"),
            revision(2, HelmStatus::Superseded, "Upgrade complete", "web:1.2.0"),
            revision(3, HelmStatus::Superseded, "Rollback to 1", "web:1.1.0"),
            revision(4, HelmStatus::Failed, "Upgrade \"web\" failed: timed out", "web:1.4.0"),
            revision(5, HelmStatus::Deployed, "Upgrade complete", "web:1.5.0"),
        ];
        let records = records_from_revisions(&revisions, Environment::Production).unwrap();
        let statuses: Vec<DeploymentStatus> = records.iter().map(|r| r.status).collect();
        use DeploymentStatus::*;
        assert_eq!(statuses, [Succeeded, RolledBack, Succeeded, Failed, Succeeded]);
        assert_eq!(records[1].id.as_str(), "helm-web-v2");
        assert_eq!(records[1].cause.as_ref().map(|c| c.message.as_str()), Some("rolled back by revision 3"));
        assert_eq!(
            records[3].cause.as_ref().map(ToString::to_string).as_deref(),
            Some("Upgrade \"web\" failed: timed out")
        );
        assert_eq!(records[2].from.as_ref().unwrap().image.to_string(), records[1].to.image.to_string());
        assert_eq!(records[4].to.version.as_str(), "1.5.0");
        assert_eq!(records[0].app.to_string(), "shop/web");
    }
}
