//! Grype's JSON report (`grype <image> -o json`).

use deploy_core::scan::{ScanError, ScanReport, Severity, Vulnerability};
use serde::Deserialize;

use super::malformed::parse_json;
use super::trivy_report::severity;

/// A Grype JSON report, with the fields a deployment gate needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GrypeReport {
    /// One entry per vulnerable package match.
    pub matches: Vec<GrypeMatch>,
    /// What was scanned.
    #[serde(default)]
    pub source: Option<GrypeSource>,
    /// The detected distribution; missing or empty when Grype detected none.
    #[serde(default)]
    pub distro: Option<GrypeDistro>,
}

/// A distribution detected by Grype.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GrypeDistro {
    /// `debian`, `alpine`; empty when none was detected.
    #[serde(default)]
    pub name: String,
    /// The version.
    #[serde(default)]
    pub version: String,
}

/// A vulnerability matched to a package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GrypeMatch {
    /// The advisory.
    pub vulnerability: GrypeVulnerability,
    /// The package.
    pub artifact: GrypeArtifact,
}

/// A Grype advisory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GrypeVulnerability {
    /// `CVE-2024-3094`, `GHSA-…`.
    pub id: String,
    /// `Critical`, `High`, `Medium`, `Low`, `Negligible`, `Unknown`.
    #[serde(deserialize_with = "severity")]
    pub severity: Severity,
    /// The advisory text.
    #[serde(default)]
    pub description: Option<String>,
    /// The fix, if one is known.
    #[serde(default)]
    pub fix: Option<GrypeFix>,
}

/// Grype's fix information.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GrypeFix {
    /// Versions that fix it.
    #[serde(default)]
    pub versions: Vec<String>,
    /// `fixed`, `not-fixed`, `wont-fix`, `unknown`.
    #[serde(default)]
    pub state: String,
}

/// The matched package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GrypeArtifact {
    /// The package.
    pub name: String,
    /// Its installed version.
    pub version: String,
}

/// What Grype scanned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GrypeSource {
    /// `image`, `directory`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// For images, `{"userInput": "nginx:1.27", …}`.
    #[serde(default)]
    pub target: serde_json::Value,
}

impl GrypeReport {
    /// Parses a report; errors are [`ScanError::Malformed`] with the JSON path.
    ///
    /// ```
    /// use deploy_security::scan::GrypeReport;
    /// let json = br#"{"matches": [{"vulnerability": {"id": "CVE-1", "severity": "Negligible"},
    ///   "artifact": {"name": "zlib", "version": "1.2"}}]}"#;
    /// let report = GrypeReport::parse(json).unwrap().into_scan_report();
    /// assert_eq!(report.vulnerabilities[0].severity, deploy_core::scan::Severity::Low);
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Self, ScanError> {
        parse_json(bytes)
    }

    /// The image reference the user asked Grype to scan, when the report says.
    pub fn target(&self) -> Option<&str> {
        let source = self.source.as_ref()?;
        source.target.get("userInput").and_then(|v| v.as_str()).or_else(|| source.target.as_str())
    }

    /// The report in the scanner-neutral form.
    pub fn into_scan_report(self) -> ScanReport {
        let target = self.target().unwrap_or_default().to_owned();
        let mut report = ScanReport::new(target, "grype");
        if let Some(source) = &self.source {
            let mut entries: Vec<&str> = Vec::new();
            entries.extend(source.target.get("manifestDigest").and_then(|v| v.as_str()));
            if let Some(list) = source.target.get("repoDigests").and_then(|v| v.as_array()) {
                entries.extend(list.iter().filter_map(|v| v.as_str()));
            }
            report.digests = super::trivy_report::repo_digests(entries);
        }
        report.os = self
            .distro
            .as_ref()
            .filter(|d| !d.name.is_empty())
            .map(|d| format!("{} {}", d.name, d.version).trim().to_owned());
        let mut packages: Vec<String> =
            self.matches.iter().map(|m| format!("{}@{}", m.artifact.name, m.artifact.version)).collect();
        packages.dedup();
        report.scanned_targets = packages;
        for m in self.matches {
            let v = m.vulnerability;
            let mut vulnerability = Vulnerability::new(v.id, m.artifact.name, m.artifact.version, v.severity);
            vulnerability.fixed_version =
                v.fix.filter(|fix| fix.state == "fixed").and_then(|fix| fix.versions.into_iter().next());
            vulnerability.description = v.description;
            report.vulnerabilities.push(vulnerability);
        }
        report
    }
}
