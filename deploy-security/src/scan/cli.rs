//! Scanners that run Trivy or Grype.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use deploy_core::model::ImageRef;
use deploy_core::scan::{ScanError, ScanReport, VulnerabilityScanner};
use tracing::instrument;

use super::command;
use super::grype_report::GrypeReport;
use super::trivy_report::TrivyReport;

/// Settings of a scanner program.
///
/// ```
/// use std::time::Duration;
/// use deploy_security::scan::CliScannerConfig;
/// let config = CliScannerConfig::trivy().timeout(Duration::from_secs(120)).arg("--offline-scan");
/// assert_eq!(config.program.to_str(), Some("trivy"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CliScannerConfig {
    /// The program, looked up on `PATH` unless it is a path.
    pub program: PathBuf,
    /// How long a scan may run before the program is killed.
    pub timeout: Duration,
    /// Arguments added after the scanner's own (`--offline-scan`, `--severity HIGH,CRITICAL`).
    pub extra_args: Vec<OsString>,
    /// Environment variables set for the program (`TRIVY_CACHE_DIR`, proxies). A `PATH`
    /// here is also where the program is looked up.
    pub env: Vec<(OsString, OsString)>,
    /// The most report (standard output) read; beyond it the program is killed and
    /// the scan is [`ScanError::OutputTooLarge`](deploy_core::scan::ScanError::OutputTooLarge).
    /// 256 MiB by default. Of the error output only the last 4 KiB are kept.
    pub max_output_bytes: u64,
}

/// The default [`CliScannerConfig::max_output_bytes`].
const DEFAULT_MAX_OUTPUT: u64 = 256 * 1024 * 1024;

impl CliScannerConfig {
    /// `trivy` on `PATH`, 10 minutes.
    pub fn trivy() -> Self {
        Self {
            program: "trivy".into(),
            timeout: Duration::from_secs(600),
            extra_args: Vec::new(),
            env: Vec::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT,
        }
    }

    /// `grype` on `PATH`, 10 minutes.
    pub fn grype() -> Self {
        Self {
            program: "grype".into(),
            timeout: Duration::from_secs(600),
            extra_args: Vec::new(),
            env: Vec::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT,
        }
    }

    /// Sets the program.
    #[must_use]
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Sets the deadline.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets an environment variable for the program.
    #[must_use]
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets the most report bytes read.
    #[must_use]
    pub fn max_output_bytes(mut self, limit: u64) -> Self {
        self.max_output_bytes = limit;
        self
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// Scans images with the Trivy CLI: `trivy image --format json --quiet
/// --scanners vuln,misconfig,secret [extra args] <image>`.
///
/// A missing program, a non-zero exit, a scan past the deadline or a report that does
/// not parse is an error; there is no path by which a failed scan reads as clean. A
/// report that shows neither an OS nor any result, or (for an image pinned by
/// digest) names only other digests, is [`ScanError::Inconclusive`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_core::{model::ImageRef, scan::VulnerabilityScanner};
/// use deploy_security::scan::{CliScannerConfig, TrivyScanner};
/// let scanner = TrivyScanner::new(CliScannerConfig::trivy());
/// let report = scanner.scan(&ImageRef::parse("nginx:1.27")?).await?;
/// println!("{} critical", report.severity_counts().critical);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TrivyScanner {
    config: CliScannerConfig,
}

impl TrivyScanner {
    /// A scanner with these settings.
    pub fn new(config: CliScannerConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl VulnerabilityScanner for TrivyScanner {
    #[instrument(skip_all, fields(scan.scanner = "trivy", scan.image = %image), err)]
    async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError> {
        let mut args: Vec<OsString> = ["image", "--format", "json", "--quiet", "--scanners", "vuln,misconfig,secret"]
            .into_iter()
            .map(OsString::from)
            .collect();
        args.extend(self.config.extra_args.iter().cloned());
        args.push(image.to_string().into());
        let stdout = command::run("trivy", &self.config, &args).await?;
        let mut report = TrivyReport::parse(&stdout)?.into_scan_report();
        super::check_report(image, &report)?;
        report.target = image.to_string();
        Ok(report)
    }
}

/// Scans images with the Grype CLI: `grype [extra args] -o json <image>`, with the
/// same error guarantees as [`TrivyScanner`].
#[derive(Debug, Clone)]
pub struct GrypeScanner {
    config: CliScannerConfig,
}

impl GrypeScanner {
    /// A scanner with these settings.
    pub fn new(config: CliScannerConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl VulnerabilityScanner for GrypeScanner {
    #[instrument(skip_all, fields(scan.scanner = "grype", scan.image = %image), err)]
    async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError> {
        let mut args: Vec<OsString> = self.config.extra_args.clone();
        args.extend(["-o".into(), "json".into(), image.to_string().into()]);
        let stdout = command::run("grype", &self.config, &args).await?;
        let mut report = GrypeReport::parse(&stdout)?.into_scan_report();
        super::check_report(image, &report)?;
        report.target = image.to_string();
        Ok(report)
    }
}
