//! [`Artifacts`]: what stages hand to the stages after them, typed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::stage::StageError;
use crate::model::{DeploymentId, DeploymentStatus, Digest, ImageRef, Version};
use crate::scan::{Severity, SeverityCounts};

/// What the stages of a run produced, for the stages after them and the report.
///
/// The provided stages write typed fields, each documented with the stage that
/// writes it; a stage of the caller's own (tests, coverage, smoke tests) adds
/// named [`values`](Artifacts::values) for a [`QualityGate`](super::QualityGate) or
/// a later stage. Later stages override earlier ones field by field
/// ([`Artifacts::merge`]).
///
/// ```
/// use deploy_core::model::ImageRef;
/// use deploy_core::pipeline::Artifacts;
/// let built = Artifacts::default().image(ImageRef::parse("web:1").unwrap()).value("coverage", "87.5");
/// assert_eq!(built.require_image().unwrap().to_string(), "docker.io/library/web:1");
/// assert_eq!(built.number("coverage"), Some(87.5));
/// assert!(built.require_digest().is_err(), "nothing was pushed");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Artifacts {
    /// The image: the first tag a [`BuildStage`](super::BuildStage) built, the one a
    /// [`PushStage`](super::PushStage) pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// The builder's id of the image ([`BuildStage`](super::BuildStage)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The digest of the pushed manifest ([`PushStage`](super::PushStage)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The vulnerabilities that counted under the scan policy, by severity
    /// ([`SecurityScanStage`](super::SecurityScanStage)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerabilities: Option<SeverityCounts>,
    /// The deployment record of the last rollout (deployers; after a revert, the
    /// revert's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentId>,
    /// The release a deployer rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Version>,
    /// How the deployer's rollout ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_status: Option<DeploymentStatus>,
    /// The release that serves again after a rollback stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<Version>,
    /// Named values of the caller's own stages (`coverage`, `lint_warnings`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

impl Artifacts {
    /// Sets the image.
    #[must_use]
    pub fn image(mut self, image: ImageRef) -> Self {
        self.image = Some(image);
        self
    }

    /// Sets the builder's image id.
    #[must_use]
    pub fn image_id(mut self, id: impl Into<String>) -> Self {
        self.image_id = Some(id.into());
        self
    }

    /// Sets the pushed digest.
    #[must_use]
    pub fn digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }

    /// Sets the vulnerability counts.
    #[must_use]
    pub fn vulnerabilities(mut self, counts: SeverityCounts) -> Self {
        self.vulnerabilities = Some(counts);
        self
    }

    /// Sets the deployment record's id.
    #[must_use]
    pub fn deployment(mut self, id: DeploymentId) -> Self {
        self.deployment = Some(id);
        self
    }

    /// Sets the release rolled out.
    #[must_use]
    pub fn release(mut self, version: Version) -> Self {
        self.release = Some(version);
        self
    }

    /// Sets how the rollout ended.
    #[must_use]
    pub fn rollout_status(mut self, status: DeploymentStatus) -> Self {
        self.rollout_status = Some(status);
        self
    }

    /// Sets the release restored by a rollback.
    #[must_use]
    pub fn restored(mut self, version: Version) -> Self {
        self.restored = Some(version);
        self
    }

    /// Adds the named value `key`.
    #[must_use]
    pub fn value(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }

    /// The named value `key`, if a stage set it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The named value `key`, or [`StageError::MissingArtifact`].
    pub fn require(&self, key: &str) -> Result<&str, StageError> {
        self.get(key).ok_or_else(|| missing(key))
    }

    /// The image, or [`StageError::MissingArtifact`] naming `image`.
    pub fn require_image(&self) -> Result<&ImageRef, StageError> {
        self.image.as_ref().ok_or_else(|| missing("image"))
    }

    /// The pushed digest, or [`StageError::MissingArtifact`] naming `digest`.
    pub fn require_digest(&self) -> Result<&Digest, StageError> {
        self.digest.as_ref().ok_or_else(|| missing("digest"))
    }

    /// The deployment record's id, or [`StageError::MissingArtifact`] naming
    /// `deployment`.
    pub fn require_deployment(&self) -> Result<&DeploymentId, StageError> {
        self.deployment.as_ref().ok_or_else(|| missing("deployment"))
    }

    /// A number for a [`QualityGate`](super::QualityGate): the named value `key`
    /// parsed, or for `vulnerabilities_<severity>` (`vulnerabilities_critical`,
    /// `_high`, `_medium`, `_low`, `_unknown`) the scan's count. `None` when it is
    /// missing or not a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        if let Some(value) = self.get(key) {
            return value.trim().parse().ok();
        }
        let severity: Severity = key.strip_prefix("vulnerabilities_")?.parse().ok()?;
        #[expect(clippy::cast_precision_loss, reason = "finding counts are far below 2^52")]
        let count = self.vulnerabilities?.get(severity) as f64;
        Some(count)
    }

    /// Takes every field `later` set, and its named values over these.
    pub fn merge(&mut self, later: Artifacts) {
        let Artifacts {
            image,
            image_id,
            digest,
            vulnerabilities,
            deployment,
            release,
            rollout_status,
            restored,
            values,
        } = later;
        self.image = image.or(self.image.take());
        self.image_id = image_id.or(self.image_id.take());
        self.digest = digest.or(self.digest.take());
        self.vulnerabilities = vulnerabilities.or(self.vulnerabilities);
        self.deployment = deployment.or(self.deployment.take());
        self.release = release.or(self.release.take());
        self.rollout_status = rollout_status.or(self.rollout_status);
        self.restored = restored.or(self.restored.take());
        self.values.extend(values);
    }
}

fn missing(name: &str) -> StageError {
    StageError::MissingArtifact { name: name.to_owned() }
}

/// `key=value` pairs, typed fields first, for reports.
impl fmt::Display for Artifacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut field = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                parts.push(format!("{name}={value}"));
            }
        };
        field("image", self.image.as_ref().map(ToString::to_string));
        field("image_id", self.image_id.clone());
        field("digest", self.digest.as_ref().map(ToString::to_string));
        field(
            "vulnerabilities",
            self.vulnerabilities.map(|c| {
                Severity::ALL.iter().rev().map(|s| format!("{}:{}", s, c.get(*s))).collect::<Vec<_>>().join(",")
            }),
        );
        field("deployment", self.deployment.as_ref().map(ToString::to_string));
        field("release", self.release.as_ref().map(ToString::to_string));
        field("rollout_status", self.rollout_status.map(|s| s.to_string()));
        field("restored", self.restored.as_ref().map(ToString::to_string));
        for (key, value) in &self.values {
            parts.push(format!("{key}={value}"));
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_stages_override_field_by_field_and_gates_read_numbers() {
        let image = ImageRef::parse("web:1").unwrap();
        let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let mut counts = SeverityCounts::default();
        counts.add(Severity::High);
        let mut all = Artifacts::default().image(image.clone()).value("coverage", "80").value("lint", "x");
        all.merge(Artifacts::default().digest(digest.clone()).vulnerabilities(counts).value("coverage", "91.5"));
        assert_eq!(all.require_image().unwrap(), &image, "a later stage that sets no image keeps it");
        assert_eq!(all.require_digest().unwrap(), &digest);
        assert_eq!(all.number("coverage"), Some(91.5));
        assert_eq!(all.number("lint"), None, "not a number");
        assert_eq!(all.number("vulnerabilities_high"), Some(1.0));
        assert_eq!(all.number("vulnerabilities_critical"), Some(0.0));
        assert_eq!(all.number("vulnerabilities_severe"), None);
        assert_eq!(all.number("missing"), None);
        let err = all.require_deployment().unwrap_err();
        assert!(matches!(&err, StageError::MissingArtifact { name } if name == "deployment"), "{err}");
        let json = serde_json::to_value(&all).unwrap();
        assert_eq!(json["image"], "docker.io/library/web:1");
        assert_eq!(serde_json::from_value::<Artifacts>(json).unwrap(), all);
    }
}
