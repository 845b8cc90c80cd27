//! Vulnerability scanning: the [`VulnerabilityScanner`] trait, its reports, and the
//! [`ScanPolicy`] gate that decides whether a report lets an image be deployed.

mod finding;
mod policy;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{Digest, ImageRef, ValidationError};

pub use finding::{Finding, worst_severity};
pub use policy::{AllowlistEntry, PolicyDecision, ScanPolicy, SeverityLimits, Suppressed};

/// How serious a finding is, ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum Severity {
    /// The scanner could not rate it.
    Unknown,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Every severity, least first.
    pub const ALL: [Severity; 5] =
        [Severity::Unknown, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "UNKNOWN",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        })
    }
}

impl FromStr for Severity {
    type Err = ValidationError;
    /// Parses a scanner's severity name, ignoring case (`CRITICAL`, `High`,
    /// `negligible` as low).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "UNKNOWN" => Ok(Self::Unknown),
            "LOW" | "NEGLIGIBLE" => Ok(Self::Low),
            "MEDIUM" | "MODERATE" => Ok(Self::Medium),
            "HIGH" => Ok(Self::High),
            "CRITICAL" => Ok(Self::Critical),
            _ => Err(ValidationError::new("severity", s, "must be one of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL")),
        }
    }
}

/// A vulnerable package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Vulnerability {
    /// The advisory id (`CVE-2024-3094`).
    pub id: String,
    /// The affected package.
    pub package: String,
    /// The installed version.
    pub installed_version: String,
    /// The first version with a fix, if there is one.
    pub fixed_version: Option<String>,
    /// How serious it is.
    pub severity: Severity,
    /// A one-line title.
    pub title: Option<String>,
    /// The advisory's description.
    pub description: Option<String>,
}

impl Vulnerability {
    /// A finding with no title, description or fix.
    pub fn new(
        id: impl Into<String>,
        package: impl Into<String>,
        installed_version: impl Into<String>,
        severity: Severity,
    ) -> Self {
        Self {
            id: id.into(),
            package: package.into(),
            installed_version: installed_version.into(),
            fixed_version: None,
            severity,
            title: None,
            description: None,
        }
    }
}

/// A misconfiguration (compliance) finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Misconfiguration {
    /// The rule id (`DS002`).
    pub id: String,
    /// A one-line title.
    pub title: String,
    /// How serious it is.
    pub severity: Severity,
    /// What was found.
    pub message: String,
    /// How to fix it.
    pub resolution: Option<String>,
}

impl Misconfiguration {
    /// A finding with no resolution.
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Self { id: id.into(), title: title.into(), severity, message: message.into(), resolution: None }
    }
}

/// Findings counted by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SeverityCounts {
    /// Critical findings.
    pub critical: usize,
    /// High findings.
    pub high: usize,
    /// Medium findings.
    pub medium: usize,
    /// Low findings.
    pub low: usize,
    /// Unrated findings.
    pub unknown: usize,
}

impl SeverityCounts {
    /// Counts one finding.
    pub fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Unknown => self.unknown += 1,
        }
    }

    /// The count at `severity`.
    pub fn get(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Unknown => self.unknown,
        }
    }

    /// Findings at `severity` or worse.
    pub fn at_least(&self, severity: Severity) -> usize {
        Severity::ALL.iter().filter(|s| **s >= severity).map(|s| self.get(*s)).sum()
    }

    /// All findings.
    pub fn total(&self) -> usize {
        self.at_least(Severity::Unknown)
    }
}

/// The result of a scan that ran to completion.
///
/// A scan that fails is a [`ScanError`], never an empty report.
///
/// ```
/// use deploy_core::scan::{ScanReport, Severity, Vulnerability};
/// let mut report = ScanReport::new("nginx:1.27", "trivy");
/// report.vulnerabilities.push(Vulnerability::new("CVE-1", "openssl", "3.0.1", Severity::High));
/// assert_eq!(report.severity_counts().at_least(Severity::High), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanReport {
    /// What was scanned.
    pub target: String,
    /// The scanner that produced it.
    pub scanner: String,
    /// Vulnerable packages.
    pub vulnerabilities: Vec<Vulnerability>,
    /// Misconfigurations.
    pub misconfigurations: Vec<Misconfiguration>,
    /// The image (manifest) digests the report names, from the scanner's own
    /// metadata; a report counts only for an image with one of these digests.
    #[serde(default)]
    pub digests: Vec<Digest>,
    /// The operating system the scanner detected (`debian 12.5`), if any.
    #[serde(default)]
    pub os: Option<String>,
    /// What the scanner examined (OS packages, lock files, config files, matched
    /// packages). Empty together with no `os` means the scanner recognised nothing
    /// (Trivy's "OS not detected"): such a report is not evidence of a clean image.
    #[serde(default)]
    pub scanned_targets: Vec<String>,
}

impl ScanReport {
    /// An empty report of `target` by `scanner`, naming no digest, no OS and no
    /// scanned target (see [`ScanReport::scanned_anything`]).
    pub fn new(target: impl Into<String>, scanner: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            scanner: scanner.into(),
            vulnerabilities: Vec::new(),
            misconfigurations: Vec::new(),
            digests: Vec::new(),
            os: None,
            scanned_targets: Vec::new(),
        }
    }

    /// Whether the report names `digest`.
    pub fn names_digest(&self, digest: &Digest) -> bool {
        self.digests.contains(digest)
    }

    /// Whether the scanner recognised anything: an OS or at least one target.
    ///
    /// ```
    /// use deploy_core::scan::ScanReport;
    /// let mut report = ScanReport::new("app:1", "trivy");
    /// assert!(!report.scanned_anything());
    /// report.os = Some("alpine 3.20.0".into());
    /// assert!(report.scanned_anything());
    /// ```
    pub fn scanned_anything(&self) -> bool {
        self.os.is_some() || !self.scanned_targets.is_empty() || !self.vulnerabilities.is_empty()
    }

    /// Vulnerabilities counted by severity.
    pub fn severity_counts(&self) -> SeverityCounts {
        let mut counts = SeverityCounts::default();
        for v in &self.vulnerabilities {
            counts.add(v.severity);
        }
        counts
    }
}

/// A scan that did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The scanner program is not installed.
    #[error("scanner {scanner} is not installed: {reason}")]
    NotInstalled {
        /// The scanner.
        scanner: String,
        /// How it was looked for.
        reason: String,
    },
    /// The scanner exited with an error.
    #[error("scanner {scanner} failed with {status}: {stderr}")]
    Failed {
        /// The scanner.
        scanner: String,
        /// Its exit status.
        status: String,
        /// The end of its error output.
        stderr: String,
    },
    /// The scanner ran past its deadline and was stopped.
    #[error("scanner {scanner} ran longer than {after:?}")]
    Timeout {
        /// The scanner.
        scanner: String,
        /// The deadline.
        after: Duration,
    },
    /// The report could not be parsed; `path` says where in the document.
    #[error("malformed scan report at {path}: {reason}")]
    Malformed {
        /// Where in the report (a JSON path such as `.Results[2].Vulnerabilities`).
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The scanner wrote more than the configured limit; it was stopped.
    #[error("scanner {scanner} wrote more than the limit of {limit} bytes")]
    OutputTooLarge {
        /// The scanner.
        scanner: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The report cannot vouch for the image: it names another digest (or none), or
    /// it shows neither an OS nor any result.
    #[error("scan report for {target} is not usable: {reason}")]
    Inconclusive {
        /// The image asked about.
        target: String,
        /// Why the report does not count.
        reason: String,
    },
    /// The scanner's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(ScanError);

impl Classify for ScanError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotInstalled { .. } => ErrorKind::Unsupported,
            Self::Failed { .. } => ErrorKind::Other,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Malformed { .. } | Self::Inconclusive { .. } => ErrorKind::InvalidInput,
            Self::OutputTooLarge { .. } => ErrorKind::Other,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// Scans images for known vulnerabilities: Trivy, Grype, stored reports.
#[async_trait]
pub trait VulnerabilityScanner: Send + Sync {
    /// Scans `image`. A scan that cannot complete is an error, never a report with
    /// no findings.
    async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError>;
}
