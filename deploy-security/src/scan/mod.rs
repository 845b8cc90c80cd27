//! Vulnerability scanning: Trivy and Grype (CLI and JSON reports), report files,
//! SARIF export, and a caching scanner. The policy gate is deploy-core's
//! [`ScanPolicy`](deploy_core::scan::ScanPolicy).
//!
//! Every scanner implements [`VulnerabilityScanner`](deploy_core::scan::VulnerabilityScanner).
//! A scan that cannot complete is a [`ScanError`], never an
//! empty report.

mod caching;
mod cli;
mod command;
mod grype_report;
mod malformed;
mod report_file;
mod sarif;
mod trivy_report;

pub use caching::CachingScanner;
pub use cli::{CliScannerConfig, GrypeScanner, TrivyScanner};
pub use grype_report::{
    GrypeArtifact, GrypeDistro, GrypeFix, GrypeMatch, GrypeReport, GrypeSource, GrypeVulnerability,
};
pub use report_file::{ReportFileScanner, ReportFormat};
pub use sarif::{SARIF_SCHEMA, sarif_level, to_sarif};
pub use trivy_report::{
    TRIVY_SCHEMA_VERSION, TrivyMetadata, TrivyMisconfiguration, TrivyOs, TrivyReport, TrivyResult, TrivySecret,
    TrivyVulnerability,
};

use deploy_core::model::ImageRef;
use deploy_core::scan::{ScanError, ScanReport};

/// Refuses a report that cannot vouch for `image`: one that shows neither an OS nor
/// any result (the scanner recognised nothing, as Trivy's "OS not detected"), or,
/// when `image` is pinned by digest and the report names digests, one that names
/// other digests only.
pub(crate) fn check_report(image: &ImageRef, report: &ScanReport) -> Result<(), ScanError> {
    let inconclusive = |reason: String| ScanError::Inconclusive { target: image.to_string(), reason };
    if !report.scanned_anything() {
        return Err(inconclusive(
            "the report shows neither an operating system nor any result: the scanner recognised nothing".to_owned(),
        ));
    }
    if let Some(digest) = image.digest()
        && !report.digests.is_empty()
        && !report.names_digest(digest)
    {
        return Err(inconclusive(format!("the report is about {}, not {digest}", digest_list(report))));
    }
    Ok(())
}

pub(crate) fn digest_list(report: &ScanReport) -> String {
    if report.digests.is_empty() {
        "no digest".to_owned()
    } else {
        report.digests.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}
