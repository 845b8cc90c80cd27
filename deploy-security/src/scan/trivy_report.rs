//! Trivy's JSON report (`trivy image --format json`, schema version 2).

use deploy_core::model::Digest;
use deploy_core::scan::{Misconfiguration, ScanError, ScanReport, Severity, Vulnerability};
use serde::{Deserialize, Deserializer};

use super::malformed::parse_json;

/// The schema version this parser reads.
pub const TRIVY_SCHEMA_VERSION: u32 = 2;

/// A Trivy JSON report, with the fields a deployment gate needs; everything else in the
/// document is skipped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct TrivyReport {
    /// The report schema's version (2 since Trivy 0.20).
    pub schema_version: u32,
    /// What was scanned (`nginx:1.27`).
    #[serde(default)]
    pub artifact_name: String,
    /// The kind of artifact (`container_image`).
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// What Trivy learned about the image: its OS and digests.
    #[serde(default)]
    pub metadata: TrivyMetadata,
    /// One result per scanned target (OS packages, a language lock file, a Dockerfile).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub results: Vec<TrivyResult>,
}

/// The image metadata of a Trivy report.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct TrivyMetadata {
    /// The detected OS; missing when Trivy did not detect one.
    #[serde(default, rename = "OS")]
    pub os: Option<TrivyOs>,
    /// `repository@sha256:…` for each registry the image was pulled from.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub repo_digests: Vec<String>,
}

/// An OS detected by Trivy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct TrivyOs {
    /// `debian`, `alpine`.
    #[serde(default)]
    pub family: String,
    /// The version (`12.5`).
    #[serde(default)]
    pub name: String,
}

/// The digests of `repository@sha256:…` entries; other entries are skipped.
pub(crate) fn repo_digests<'a>(entries: impl IntoIterator<Item = &'a str>) -> Vec<Digest> {
    let mut digests: Vec<Digest> = entries
        .into_iter()
        .filter_map(|entry| Digest::parse(entry.rsplit_once('@').map_or(entry, |(_, d)| d)).ok())
        .collect();
    digests.sort();
    digests.dedup();
    digests
}

/// The findings for one target inside the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct TrivyResult {
    /// The target (`nginx:1.27 (debian 12.5)`, `app/Cargo.lock`).
    pub target: String,
    /// `os-pkgs`, `lang-pkgs`, `config`, `secret`.
    #[serde(default)]
    pub class: Option<String>,
    /// Vulnerable packages.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub vulnerabilities: Vec<TrivyVulnerability>,
    /// Misconfiguration checks (passed and failed).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub misconfigurations: Vec<TrivyMisconfiguration>,
    /// Secrets found in files of the image.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub secrets: Vec<TrivySecret>,
}

/// One vulnerable package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct TrivyVulnerability {
    /// `CVE-2024-3094`, `GHSA-…`.
    #[serde(rename = "VulnerabilityID")]
    pub vulnerability_id: String,
    /// The package.
    pub pkg_name: String,
    /// Its installed version.
    pub installed_version: String,
    /// The first fixed version, if any.
    #[serde(default)]
    pub fixed_version: Option<String>,
    /// `fixed`, `affected`, `will_not_fix`, …
    #[serde(default)]
    pub status: Option<String>,
    /// `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`, `UNKNOWN`.
    #[serde(deserialize_with = "severity")]
    pub severity: Severity,
    /// A one-line title.
    #[serde(default)]
    pub title: Option<String>,
    /// The advisory text.
    #[serde(default)]
    pub description: Option<String>,
    /// The advisory's main URL.
    #[serde(default, rename = "PrimaryURL")]
    pub primary_url: Option<String>,
}

/// One misconfiguration check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct TrivyMisconfiguration {
    /// The check (`DS002`, `KSV012`).
    #[serde(rename = "ID")]
    pub id: String,
    /// A one-line title.
    pub title: String,
    /// What was found.
    #[serde(default)]
    pub message: String,
    /// How to fix it.
    #[serde(default)]
    pub resolution: Option<String>,
    /// How serious it is.
    #[serde(deserialize_with = "severity")]
    pub severity: Severity,
    /// `FAIL` or `PASS` (with `--include-non-failures`).
    #[serde(default)]
    pub status: Option<String>,
}

/// A secret found in the image. Its matched text is deliberately not read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct TrivySecret {
    /// The rule (`aws-access-key-id`).
    #[serde(rename = "RuleID")]
    pub rule_id: String,
    /// The rule's category (`AWS`).
    #[serde(default)]
    pub category: Option<String>,
    /// A one-line title.
    pub title: String,
    /// How serious it is.
    #[serde(deserialize_with = "severity")]
    pub severity: Severity,
    /// The first line of the match.
    #[serde(default)]
    pub start_line: Option<u64>,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Reads a severity name; an unknown name is an error (with its JSON path), never
/// silently "unknown".
pub(crate) fn severity<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
    let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    name.parse().map_err(|_| serde::de::Error::custom(format!("unknown severity {name:?}")))
}

impl TrivyReport {
    /// Parses a report; malformed JSON, a missing required field, an unknown severity or
    /// another schema version gives [`ScanError::Malformed`] with the JSON path.
    ///
    /// ```
    /// use deploy_security::scan::TrivyReport;
    /// let json = br#"{"SchemaVersion": 2, "ArtifactName": "nginx:1.27", "Results": [{"Target": "x",
    ///   "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "openssl",
    ///   "InstalledVersion": "3.0.1", "Severity": "HIGH"}]}]}"#;
    /// let report = TrivyReport::parse(json).unwrap().into_scan_report();
    /// assert_eq!(report.vulnerabilities[0].id, "CVE-1");
    /// let err = TrivyReport::parse(br#"{"SchemaVersion": 2, "Results": [{"Target": 7}]}"#).unwrap_err();
    /// assert!(err.to_string().contains(".Results[0].Target"));
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Self, ScanError> {
        let report: Self = parse_json(bytes)?;
        if report.schema_version != TRIVY_SCHEMA_VERSION {
            return Err(ScanError::Malformed {
                path: ".SchemaVersion".to_owned(),
                reason: format!("schema version {} is not supported (expected 2)", report.schema_version),
            });
        }
        Ok(report)
    }

    /// The report in the scanner-neutral form: every vulnerability, every failed
    /// misconfiguration, and every secret as a misconfiguration `secret:<rule>` (without
    /// the matched text).
    pub fn into_scan_report(self) -> ScanReport {
        let mut report = ScanReport::new(self.artifact_name, "trivy");
        report.digests = repo_digests(self.metadata.repo_digests.iter().map(String::as_str));
        report.os = self
            .metadata
            .os
            .filter(|os| !os.family.is_empty())
            .map(|os| format!("{} {}", os.family, os.name).trim().to_owned());
        report.scanned_targets = self.results.iter().map(|r| r.target.clone()).collect();
        for result in self.results {
            for v in result.vulnerabilities {
                let mut vulnerability =
                    Vulnerability::new(v.vulnerability_id, v.pkg_name, v.installed_version, v.severity);
                vulnerability.fixed_version = v.fixed_version.filter(|f| !f.is_empty());
                vulnerability.title = v.title;
                vulnerability.description = v.description;
                report.vulnerabilities.push(vulnerability);
            }
            for m in result.misconfigurations {
                if m.status.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("FAIL")) {
                    continue;
                }
                let mut finding =
                    Misconfiguration::new(m.id, m.title, m.severity, format!("{}: {}", result.target, m.message));
                finding.resolution = m.resolution;
                report.misconfigurations.push(finding);
            }
            for s in result.secrets {
                let place = match s.start_line {
                    Some(line) => format!("{}:{line}", result.target),
                    None => result.target.clone(),
                };
                let mut finding = Misconfiguration::new(
                    format!("secret:{}", s.rule_id),
                    s.title,
                    s.severity,
                    format!("secret found in {place}"),
                );
                finding.resolution = Some("remove the secret from the image and rotate it".to_owned());
                report.misconfigurations.push(finding);
            }
        }
        report
    }
}
