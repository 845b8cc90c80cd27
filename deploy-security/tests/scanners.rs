//! Scanners: the Trivy and Grype parsers on real-shaped reports, the Trivy CLI through
//! a stand-in `trivy` on `PATH`, report files, caching, and the policy gate end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
#![cfg(feature = "scanners")]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deploy_core::cache::{Cache, CacheError, CacheStats};
use deploy_core::error::{Classify, ErrorKind};
use deploy_core::model::{Digest, ImageRef};
use deploy_core::scan::{ScanError, ScanPolicy, ScanReport, Severity, VulnerabilityScanner};
use deploy_security::scan::{
    CachingScanner, CliScannerConfig, GrypeReport, GrypeScanner, ReportFileScanner, ReportFormat, TrivyReport,
    TrivyScanner, to_sarif,
};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(path)
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(data(path)).unwrap()
}

#[test]
fn trivy_report_gives_vulnerabilities_failed_checks_and_secrets_without_their_text() {
    let report = TrivyReport::parse(&read("trivy/nginx.json")).unwrap();
    assert_eq!(report.artifact_name, "nginx:1.25.4");
    let report = report.into_scan_report();
    assert_eq!(report.scanner, "trivy");
    let ids: Vec<_> = report.vulnerabilities.iter().map(|v| (v.id.as_str(), v.package.as_str(), v.severity)).collect();
    assert_eq!(
        ids,
        [
            ("CVE-2024-2511", "libssl3", Severity::High),
            ("CVE-2023-45853", "zlib1g", Severity::Critical),
            ("CVE-2011-3374", "apt", Severity::Low)
        ]
    );
    assert_eq!(report.vulnerabilities[0].fixed_version.as_deref(), Some("3.0.13-1~deb12u1"));
    assert_eq!(report.vulnerabilities[1].fixed_version, None);
    assert!(report.vulnerabilities[0].title.as_deref().unwrap().starts_with("openssl: Unbounded"));
    let misconfigs: Vec<_> = report.misconfigurations.iter().map(|m| (m.id.as_str(), m.severity)).collect();
    assert_eq!(
        misconfigs,
        [("DS002", Severity::High), ("DS026", Severity::Low), ("secret:aws-access-key-id", Severity::Critical)],
        "passed checks are left out"
    );
    assert_eq!(
        report.misconfigurations[0].resolution.as_deref(),
        Some("Add 'USER <non root user name>' line to the Dockerfile")
    );
    let text = format!("{report:?}");
    assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "the matched secret must not be copied");
    assert!(report.misconfigurations[2].message.contains("/etc/app/config.env:3"));
}

#[test]
fn malformed_reports_name_the_json_path() {
    let cases: [(&[u8], &str); 6] = [
        (br#"{"SchemaVersion": 2, "Results": [{"Target": "a"}, {"Target": "b", "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "x", "InstalledVersion": "1", "Severity": "SEVERE"}]}]}"#, ".Results[1].Vulnerabilities[0].Severity"),
        (br#"{"SchemaVersion": 2, "Results": [{"Target": "a", "Vulnerabilities": [{"PkgName": "x", "InstalledVersion": "1", "Severity": "LOW"}]}]}"#, ".Results[0].Vulnerabilities[0]"),
        (br#"{"SchemaVersion": 2, "Results": {"Target": "a"}}"#, ".Results"),
        (br#"{"SchemaVersion": 1, "Results": []}"#, ".SchemaVersion"),
        (br#"{"SchemaVersion": 2, "Results": [{"Target": "a""#, ".Results[0]"),
        (b"", "."),
    ];
    for (json, path) in cases {
        match TrivyReport::parse(json) {
            Err(ScanError::Malformed { path: got, .. }) => assert!(got.starts_with(path), "{got} vs {path}"),
            other => panic!("expected Malformed at {path}, got {other:?}"),
        }
    }
    let err = GrypeReport::parse(
        br#"{"matches": [{"vulnerability": {"id": "CVE-1", "severity": "High"}, "artifact": {"name": 3}}]}"#,
    )
    .unwrap_err();
    assert!(matches!(&err, ScanError::Malformed { path, .. } if path == ".matches[0].artifact.name"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn grype_report_maps_negligible_to_low_and_only_fixed_states_to_a_fix() {
    let report = GrypeReport::parse(&read("grype/nginx.json")).unwrap();
    assert_eq!(report.target(), Some("nginx:1.25.4"));
    let report = report.into_scan_report();
    let got: Vec<_> = report
        .vulnerabilities
        .iter()
        .map(|v| (v.id.as_str(), v.package.as_str(), v.severity, v.fixed_version.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("CVE-2024-2511", "libssl3", Severity::High, Some("3.0.13-1~deb12u1")),
            ("CVE-2023-45853", "zlib1g", Severity::Critical, None),
            ("CVE-2011-3374", "apt", Severity::Low, None)
        ]
    );
}

/// A directory holding a stand-in `trivy` (or `grype`) shell script.
struct StandIn {
    dir: tempfile::TempDir,
}

impl StandIn {
    fn new(name: &str, script: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    /// The scanner's settings, with this directory (then /bin for `cat`, `sleep`) as PATH.
    fn config(&self, base: CliScannerConfig) -> CliScannerConfig {
        base.env("PATH", format!("{}:/bin:/usr/bin", self.dir.path().display()))
            .env("STANDIN_DIR", self.dir.path())
            .timeout(Duration::from_secs(20))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn image() -> ImageRef {
    ImageRef::parse("nginx:1.25.4").unwrap()
}

#[tokio::test]
async fn trivy_cli_success_parses_its_output_and_passes_the_arguments() {
    let report = data("trivy/nginx.json");
    let stand_in = StandIn::new("trivy", &format!("echo \"$@\" > \"$STANDIN_DIR/args\"\ncat '{}'", report.display()));
    let scanner = TrivyScanner::new(stand_in.config(CliScannerConfig::trivy().arg("--offline-scan")));
    let report = scanner.scan(&image()).await.unwrap();
    assert_eq!(report.vulnerabilities.len(), 3);
    assert_eq!(report.target, "docker.io/library/nginx:1.25.4");
    let args = std::fs::read_to_string(stand_in.file("args")).unwrap();
    assert_eq!(
        args.trim(),
        "image --format json --quiet --scanners vuln,misconfig,secret --offline-scan docker.io/library/nginx:1.25.4"
    );
}

#[tokio::test]
async fn trivy_cli_failure_is_an_error_with_its_stderr_never_an_empty_report() {
    let stand_in = StandIn::new(
        "trivy",
        "echo '2024-06-12T09:21:33Z\tFATAL\timage scan error: unable to find the specified image \"nginx:1.25.4\"' >&2\nexit 1",
    );
    let err = TrivyScanner::new(stand_in.config(CliScannerConfig::trivy())).scan(&image()).await.unwrap_err();
    match err {
        ScanError::Failed { scanner, status, stderr } => {
            assert_eq!(scanner, "trivy");
            assert!(status.contains('1'), "{status}");
            assert!(stderr.contains("unable to find the specified image"), "{stderr}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn trivy_cli_exit_zero_without_a_report_is_malformed_not_clean() {
    let stand_in = StandIn::new("trivy", "exit 0");
    let err = TrivyScanner::new(stand_in.config(CliScannerConfig::trivy())).scan(&image()).await.unwrap_err();
    assert!(matches!(err, ScanError::Malformed { .. }), "{err:?}");
}

#[tokio::test]
async fn trivy_cli_that_hangs_is_killed_at_the_deadline() {
    let stand_in = StandIn::new("trivy", "echo $$ > \"$STANDIN_DIR/pid\"\nexec sleep 30");
    let config = stand_in.config(CliScannerConfig::trivy()).timeout(Duration::from_millis(500));
    let err = TrivyScanner::new(config).scan(&image()).await.unwrap_err();
    assert!(matches!(err, ScanError::Timeout { after, .. } if after == Duration::from_millis(500)), "{err:?}");
    assert!(err.is_retryable());
    let pid = std::fs::read_to_string(stand_in.file("pid")).unwrap();
    assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists(), "the scanner process {pid} was killed and reaped");
}

#[tokio::test]
async fn trivy_not_on_path_is_not_installed() {
    let empty = tempfile::tempdir().unwrap();
    let config = CliScannerConfig::trivy().env("PATH", empty.path());
    let err = TrivyScanner::new(config).scan(&image()).await.unwrap_err();
    assert!(matches!(&err, ScanError::NotInstalled { scanner, .. } if scanner == "trivy"), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn grype_cli_success() {
    let report = data("grype/nginx.json");
    let stand_in = StandIn::new("grype", &format!("cat '{}'", report.display()));
    let report = GrypeScanner::new(stand_in.config(CliScannerConfig::grype())).scan(&image()).await.unwrap();
    assert_eq!(report.scanner, "grype");
    assert_eq!(report.severity_counts().critical, 1);
}

/// The digest the nginx reports name.
const NGINX_DIGEST: &str = "sha256:6db391d1c0cfb30588ba0bf72ea999404f2764febf0f1f196acd5867ac7efa7e";

fn pinned(reference: &str, digest: &str) -> ImageRef {
    ImageRef::parse(reference).unwrap().with_digest(Digest::parse(digest).unwrap())
}

#[tokio::test]
async fn report_files_count_only_for_the_digest_they_name() {
    let scanner = ReportFileScanner::new(ReportFormat::Trivy, data("trivy/nginx.json"));
    assert_eq!(scanner.scan(&pinned("nginx:1.25.4", NGINX_DIGEST)).await.unwrap().vulnerabilities.len(), 3);
    // The same tag with another digest: the report is not about that image.
    let other = format!("sha256:{}", "e".repeat(64));
    let err = scanner.scan(&pinned("nginx:1.25.4", &other)).await.unwrap_err();
    assert!(matches!(err, ScanError::Inconclusive { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("is about {NGINX_DIGEST}, not {other}")), "{err}");
    // A tag alone binds nothing.
    let err = scanner.scan(&image()).await.unwrap_err();
    assert!(err.to_string().contains("pinned by digest"), "{err}");
    // Grype's manifest digest binds its report the same way.
    let grype = ReportFileScanner::new(ReportFormat::Grype, data("grype/nginx.json"));
    assert_eq!(grype.scan(&pinned("nginx:1.25.4", NGINX_DIGEST)).await.unwrap().severity_counts().critical, 1);
    assert!(grype.scan(&pinned("nginx:1.25.4", &other)).await.is_err());

    let missing = ReportFileScanner::new(ReportFormat::Grype, data("grype/missing.json"));
    assert!(missing.scan(&pinned("nginx:1.25.4", NGINX_DIGEST)).await.unwrap_err().is_not_found());
    let clean = ReportFileScanner::new(ReportFormat::Trivy, data("trivy/clean.json"));
    let report = clean
        .scan(&pinned("registry.local:5000/shop/checkout:1.4.2", &format!("sha256:{}", "c".repeat(64))))
        .await
        .unwrap();
    assert!(report.vulnerabilities.is_empty() && report.misconfigurations.is_empty());
    assert_eq!(report.os.as_deref(), Some("alpine 3.20.0"));
    assert!(ScanPolicy::default().evaluate(&report, jiff::civil::date(2024, 6, 12)).passed);
}

#[tokio::test]
async fn a_report_with_neither_an_os_nor_any_result_is_an_error_not_clean() {
    let digest = format!("sha256:{}", "d".repeat(64));
    let image = pinned("registry.local:5000/shop/static:2.0.0", &digest);
    let err = ReportFileScanner::new(ReportFormat::Trivy, data("trivy/no-os.json")).scan(&image).await.unwrap_err();
    assert!(matches!(err, ScanError::Inconclusive { .. }), "{err:?}");
    assert!(err.to_string().contains("neither an operating system nor any result"), "{err}");

    let report = data("trivy/no-os.json");
    let stand_in = StandIn::new("trivy", &format!("cat '{}'", report.display()));
    let err = TrivyScanner::new(stand_in.config(CliScannerConfig::trivy())).scan(&image).await.unwrap_err();
    assert!(matches!(err, ScanError::Inconclusive { .. }), "{err:?}");

    // The parsed report itself, judged by the gate, fails too.
    let parsed = ReportFormat::Trivy.parse(&read("trivy/no-os.json")).unwrap();
    let decision = ScanPolicy::default().evaluate(&parsed, jiff::civil::date(2024, 6, 12));
    assert!(!decision.passed, "{decision}");
}

#[tokio::test]
async fn a_cli_scan_of_a_pinned_image_that_reports_another_digest_is_refused() {
    let report = data("trivy/nginx.json");
    let stand_in = StandIn::new("trivy", &format!("cat '{}'", report.display()));
    let scanner = TrivyScanner::new(stand_in.config(CliScannerConfig::trivy()));
    let err = scanner.scan(&pinned("nginx:1.25.4", &format!("sha256:{}", "f".repeat(64)))).await.unwrap_err();
    assert!(matches!(err, ScanError::Inconclusive { .. }), "{err:?}");
    let report = scanner.scan(&pinned("nginx:1.25.4", NGINX_DIGEST)).await.unwrap();
    assert_eq!(report.digests, [Digest::parse(NGINX_DIGEST).unwrap()]);
}

#[tokio::test]
async fn the_default_policy_blocks_the_nginx_report_and_sarif_lists_every_finding() {
    let image = pinned("nginx:1.25.4", NGINX_DIGEST);
    let report = ReportFileScanner::new(ReportFormat::Trivy, data("trivy/nginx.json")).scan(&image).await.unwrap();
    let decision = ScanPolicy::default().evaluate(&report, jiff::civil::date(2024, 6, 12));
    assert!(!decision.passed);
    assert_eq!(
        decision.reasons,
        [
            "1 CRITICAL vulnerabilities, at most 0 allowed",
            "1 HIGH vulnerabilities, at most 0 allowed",
            "1 CRITICAL misconfigurations, at most 0 allowed"
        ]
    );
    let sarif = to_sarif(&report);
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 6);
}

/// An in-memory cache that counts calls and can be switched to fail.
#[derive(Default)]
struct TestCache {
    entries: Mutex<HashMap<String, Bytes>>,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Cache for TestCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(CacheError::backend("get", ErrorKind::Unavailable, "down"));
        }
        Ok(self.entries.lock().unwrap().get(key).cloned())
    }
    async fn set(&self, key: &str, value: Bytes, _ttl: Option<Duration>) -> Result<(), CacheError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(CacheError::backend("set", ErrorKind::Unavailable, "down"));
        }
        self.entries.lock().unwrap().insert(key.to_owned(), value);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.entries.lock().unwrap().remove(key).is_some())
    }
    fn stats(&self) -> CacheStats {
        CacheStats::default()
    }
}

/// A scanner that counts its scans and fails on demand.
struct CountingScanner {
    scans: Arc<AtomicUsize>,
    fail: bool,
}

#[async_trait]
impl VulnerabilityScanner for CountingScanner {
    async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(ScanError::Timeout { scanner: "x".into(), after: Duration::from_secs(1) });
        }
        let mut report = TrivyReport::parse(&read("trivy/nginx.json")).unwrap().into_scan_report();
        report.target = image.to_string();
        Ok(report)
    }
}

#[tokio::test]
async fn caching_scanner_caches_by_digest_only_and_never_caches_errors() {
    let cache = Arc::new(TestCache::default());
    let scans = Arc::new(AtomicUsize::new(0));
    let failing =
        CachingScanner::new(CountingScanner { scans: scans.clone(), fail: true }, cache.clone(), "trivy-test");
    let pinned =
        ImageRef::parse("nginx:1.25.4@sha256:6db391d1c0cfb30588ba0bf72ea999404f2764febf0f1f196acd5867ac7efa7e")
            .unwrap();

    assert!(failing.scan(&pinned).await.is_err(), "a failing scan is an error");
    assert!(cache.entries.lock().unwrap().is_empty(), "errors are not cached");

    let scanner =
        CachingScanner::new(CountingScanner { scans: scans.clone(), fail: false }, cache.clone(), "trivy-test");
    let first = scanner.scan(&pinned).await.unwrap();
    let second = scanner.scan(&pinned).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(scans.load(Ordering::SeqCst), 2, "one failed scan, one real scan, one cache hit");
    let key = scanner.cache_key(&pinned).unwrap();
    assert_eq!(key, "scan:v1:trivy-test:sha256:6db391d1c0cfb30588ba0bf72ea999404f2764febf0f1f196acd5867ac7efa7e");
    assert!(cache.entries.lock().unwrap().contains_key(&key));

    // Tags move: never cached.
    assert_eq!(scanner.cache_key(&image()), None);
    scanner.scan(&image()).await.unwrap();
    scanner.scan(&image()).await.unwrap();
    assert_eq!(scans.load(Ordering::SeqCst), 4);

    // A cache outage falls back to scanning.
    cache.failing.store(true, Ordering::SeqCst);
    assert_eq!(scanner.scan(&pinned).await.unwrap(), first);
    assert_eq!(scans.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_scanner_that_writes_past_the_limit_is_stopped_with_the_typed_error() {
    // An endless report: `yes` never stops on its own.
    let stand_in = StandIn::new("trivy", "echo $$ > \"$STANDIN_DIR/pid\"\nexec yes '{\"SchemaVersion\": 2}'");
    let config = stand_in.config(CliScannerConfig::trivy()).max_output_bytes(64 * 1024);
    let err = TrivyScanner::new(config).scan(&image()).await.unwrap_err();
    assert!(matches!(&err, ScanError::OutputTooLarge { limit: 65536, .. }), "{err:?}");
    assert_eq!(err.to_string(), "scanner trivy wrote more than the limit of 65536 bytes");
    let pid = std::fs::read_to_string(stand_in.file("pid")).unwrap();
    assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists(), "the scanner {pid} was killed and reaped");
}

#[tokio::test]
async fn only_the_end_of_a_long_error_output_is_kept() {
    let stand_in = StandIn::new("trivy", "yes 'noise' | head -c 5000000 >&2\necho 'FATAL the real reason' >&2\nexit 3");
    let err = TrivyScanner::new(stand_in.config(CliScannerConfig::trivy())).scan(&image()).await.unwrap_err();
    let ScanError::Failed { stderr, .. } = err else { panic!("{err:?}") };
    assert!(stderr.len() <= 4096 && stderr.ends_with("FATAL the real reason"), "{}", stderr.len());
}
