//! A scanner that reads a report a CI step already wrote.

use std::path::PathBuf;

use async_trait::async_trait;
use deploy_core::error::ErrorKind;
use deploy_core::model::ImageRef;
use deploy_core::scan::{ScanError, ScanReport, VulnerabilityScanner};
use tracing::instrument;

use super::grype_report::GrypeReport;
use super::trivy_report::TrivyReport;

/// The format of a report file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportFormat {
    /// `trivy image --format json` (schema version 2).
    Trivy,
    /// `grype -o json`.
    Grype,
}

impl ReportFormat {
    /// Parses a report of this format into the scanner-neutral form.
    pub fn parse(self, bytes: &[u8]) -> Result<ScanReport, ScanError> {
        match self {
            Self::Trivy => Ok(TrivyReport::parse(bytes)?.into_scan_report()),
            Self::Grype => Ok(GrypeReport::parse(bytes)?.into_scan_report()),
        }
    }
}

/// Answers scans from a report file written by an earlier pipeline step (for example a
/// `trivy image --format json -o report.json` job), so that the gate runs where the
/// scanner is not installed.
///
/// The file is read on every scan. A missing or unreadable file, a malformed report, or
/// a report that is not bound to the image is an error: the image must be pinned by
/// digest (`repo@sha256:…`) and the report must name that digest (Trivy's
/// `Metadata.RepoDigests`, Grype's `source.target.manifestDigest` / `repoDigests`),
/// since a tag can point at another image by the time the report is used. A report
/// that shows neither an OS nor any result is [`ScanError::Inconclusive`], never
/// clean.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::{model::ImageRef, scan::VulnerabilityScanner};
/// use deploy_security::scan::{ReportFileScanner, ReportFormat};
/// let scanner = ReportFileScanner::new(ReportFormat::Trivy, "target/trivy.json");
/// let image = ImageRef::parse(&format!("shop/checkout:1.4.2@sha256:{}", "a".repeat(64)))?;
/// let report = scanner.scan(&image).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReportFileScanner {
    format: ReportFormat,
    path: PathBuf,
}

impl ReportFileScanner {
    /// Reads `path` in `format`.
    pub fn new(format: ReportFormat, path: impl Into<PathBuf>) -> Self {
        Self { format, path: path.into() }
    }
}

#[async_trait]
impl VulnerabilityScanner for ReportFileScanner {
    #[instrument(skip_all, fields(scan.image = %image, scan.report = %self.path.display()), err)]
    async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError> {
        let bytes = tokio::fs::read(&self.path).await.map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Other };
            ScanError::backend(format!("read scan report {}", self.path.display()), kind, e)
        })?;
        let mut report = self.format.parse(&bytes)?;
        let Some(digest) = image.digest() else {
            return Err(ScanError::Inconclusive {
                target: image.to_string(),
                reason: format!("a report file ({}) counts only for an image pinned by digest", self.path.display()),
            });
        };
        if !report.names_digest(digest) {
            return Err(ScanError::Inconclusive {
                target: image.to_string(),
                reason: format!(
                    "report {} is about {}, not {digest}",
                    self.path.display(),
                    super::digest_list(&report)
                ),
            });
        }
        super::check_report(image, &report)?;
        report.target = image.to_string();
        Ok(report)
    }
}
