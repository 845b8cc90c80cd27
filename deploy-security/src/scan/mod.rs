//! Vulnerability scanning: Trivy and Grype (CLI and JSON reports), report files, the
//! policy gate, SARIF export, and a caching scanner.
//!
//! Every scanner implements [`VulnerabilityScanner`](deploy_core::scan::VulnerabilityScanner).
//! A scan that cannot complete is a [`ScanError`](deploy_core::scan::ScanError), never an
//! empty report.

mod caching;
mod cli;
mod command;
mod grype_report;
mod malformed;
mod policy;
mod report_file;
mod sarif;
mod trivy_report;

pub use caching::CachingScanner;
pub use cli::{CliScannerConfig, GrypeScanner, TrivyScanner};
pub use grype_report::{GrypeArtifact, GrypeFix, GrypeMatch, GrypeReport, GrypeSource, GrypeVulnerability};
pub use policy::{AllowlistEntry, PolicyDecision, ScanPolicy, SeverityLimits, Suppressed};
pub use report_file::{ReportFileScanner, ReportFormat};
pub use sarif::{SARIF_SCHEMA, sarif_level, to_sarif};
pub use trivy_report::{
    TRIVY_SCHEMA_VERSION, TrivyMisconfiguration, TrivyReport, TrivyResult, TrivySecret, TrivyVulnerability,
};
