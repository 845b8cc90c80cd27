//! The scan policy gate: may this image be deployed? The one policy the suite
//! has: the pipeline's `SecurityScanStage` and deploy-security's scanners are judged by it.

use std::fmt;

use jiff::civil::Date;

use super::{ScanReport, Severity, SeverityCounts};
use crate::model::ImageRef;
use serde::{Deserialize, Serialize};

/// The most findings allowed at each severity; `None` means no limit.
///
/// ```
/// use deploy_core::scan::SeverityLimits;
/// let limits = SeverityLimits::none().critical(0).high(3);
/// assert_eq!(limits.high, Some(3));
/// assert_eq!(limits.medium, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SeverityLimits {
    /// Critical findings allowed.
    pub critical: Option<usize>,
    /// High findings allowed.
    pub high: Option<usize>,
    /// Medium findings allowed.
    pub medium: Option<usize>,
    /// Low findings allowed.
    pub low: Option<usize>,
    /// Unrated findings allowed.
    pub unknown: Option<usize>,
}

impl SeverityLimits {
    /// No limit at any severity.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets the critical limit.
    #[must_use]
    pub fn critical(mut self, max: usize) -> Self {
        self.critical = Some(max);
        self
    }

    /// Sets the high limit.
    #[must_use]
    pub fn high(mut self, max: usize) -> Self {
        self.high = Some(max);
        self
    }

    /// Sets the medium limit.
    #[must_use]
    pub fn medium(mut self, max: usize) -> Self {
        self.medium = Some(max);
        self
    }

    /// Sets the low limit.
    #[must_use]
    pub fn low(mut self, max: usize) -> Self {
        self.low = Some(max);
        self
    }

    /// Sets the unknown-severity limit.
    #[must_use]
    pub fn unknown(mut self, max: usize) -> Self {
        self.unknown = Some(max);
        self
    }

    /// The limit at `severity`.
    pub fn get(&self, severity: Severity) -> Option<usize> {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            _ => self.unknown,
        }
    }
}

/// An accepted risk: findings with this id (optionally only in one package) do not
/// count, until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AllowlistEntry {
    /// The advisory or rule id (`CVE-2024-3094`, `DS002`).
    pub id: String,
    /// Only in this package; `None` for every package.
    #[serde(default)]
    pub package: Option<String>,
    /// Why the risk is accepted: shown in every decision that uses the entry.
    pub reason: String,
    /// The last day the entry applies; after it, the finding counts again and the
    /// decision says the entry expired.
    #[serde(default)]
    pub expires: Option<Date>,
}

impl AllowlistEntry {
    /// Accepts `id` for `reason`, without expiry.
    pub fn new(id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { id: id.into(), package: None, reason: reason.into(), expires: None }
    }

    /// Ends the entry after `date`.
    #[must_use]
    pub fn expires(mut self, date: Date) -> Self {
        self.expires = Some(date);
        self
    }

    /// Applies only to `package`.
    #[must_use]
    pub fn package(mut self, package: impl Into<String>) -> Self {
        self.package = Some(package.into());
        self
    }

    fn matches(&self, id: &str, package: Option<&str>) -> bool {
        self.id == id && self.package.as_deref().is_none_or(|p| Some(p) == package)
    }
}

/// The rules a scan report must pass before an image may be deployed.
///
/// The default blocks any critical or high vulnerability and any critical
/// misconfiguration, counts unfixed vulnerabilities, and has an empty allowlist.
///
/// ```
/// use deploy_core::scan::{ScanReport, Severity, Vulnerability};
/// use deploy_core::scan::{AllowlistEntry, ScanPolicy, SeverityLimits};
/// let mut report = ScanReport::new("shop/checkout:1.4.2", "trivy");
/// report.os = Some("alpine 3.20.0".into());
/// report.vulnerabilities.push(Vulnerability::new("CVE-1", "openssl", "3.0.1", Severity::Critical));
///
/// let today = jiff::civil::date(2025, 6, 1);
/// let strict = ScanPolicy::default();
/// assert!(!strict.evaluate(&report, today).passed);
///
/// let waived = strict.allow(AllowlistEntry::new("CVE-1", "not reachable").expires(jiff::civil::date(2025, 7, 1)));
/// assert!(waived.evaluate(&report, today).passed);
/// assert!(!waived.evaluate(&report, jiff::civil::date(2025, 7, 2)).passed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanPolicy {
    /// Limits on vulnerabilities.
    pub max_vulnerabilities: SeverityLimits,
    /// Limits on misconfigurations (including secrets found in the image).
    pub max_misconfigurations: SeverityLimits,
    /// Do not count vulnerabilities that have no fixed version yet.
    pub ignore_unfixed: bool,
    /// Accepted risks.
    pub allowlist: Vec<AllowlistEntry>,
}

impl Default for ScanPolicy {
    fn default() -> Self {
        Self {
            max_vulnerabilities: SeverityLimits::none().critical(0).high(0),
            max_misconfigurations: SeverityLimits::none().critical(0),
            ignore_unfixed: false,
            allowlist: Vec::new(),
        }
    }
}

impl ScanPolicy {
    /// Sets the vulnerability limits.
    #[must_use]
    pub fn max_vulnerabilities(mut self, limits: SeverityLimits) -> Self {
        self.max_vulnerabilities = limits;
        self
    }

    /// Sets the misconfiguration limits.
    #[must_use]
    pub fn max_misconfigurations(mut self, limits: SeverityLimits) -> Self {
        self.max_misconfigurations = limits;
        self
    }

    /// Sets whether unfixed vulnerabilities are ignored.
    #[must_use]
    pub fn ignore_unfixed(mut self, ignore: bool) -> Self {
        self.ignore_unfixed = ignore;
        self
    }

    /// Adds an allowlist entry.
    #[must_use]
    pub fn allow(mut self, entry: AllowlistEntry) -> Self {
        self.allowlist.push(entry);
        self
    }

    /// Judges `report` for `image` as of `today`: [`ScanPolicy::evaluate`], and the
    /// report must name `image`'s digest (an image not pinned by digest fails: a tag
    /// is not bound to what was scanned).
    pub fn evaluate_for(&self, image: &ImageRef, report: &ScanReport, today: Date) -> PolicyDecision {
        let mut decision = self.evaluate(report, today);
        match image.digest() {
            None => decision.reasons.push(format!("{image} is not pinned by digest, so no report can vouch for it")),
            Some(digest) if !report.names_digest(digest) => {
                decision.reasons.push(format!("the report is about {}, not {digest}", digest_list(report)))
            }
            Some(_) => {}
        }
        decision.passed = decision.reasons.is_empty();
        decision
    }

    /// Judges `report` as of `today` (allowlist expiry is by calendar day, inclusive).
    /// A report that shows neither an OS nor any result fails: the scanner
    /// recognised nothing, which is not a clean image.
    pub fn evaluate(&self, report: &ScanReport, today: Date) -> PolicyDecision {
        let mut decision = PolicyDecision::default();
        if !report.scanned_anything() {
            decision.reasons.push(
                "the report shows neither an operating system nor any result: the scanner recognised nothing"
                    .to_owned(),
            );
        }
        let mut expired_used = Vec::new();
        let mut waive = |id: &str, package: Option<&str>, decision: &mut PolicyDecision| -> bool {
            let Some(entry) = self.allowlist.iter().find(|e| e.matches(id, package)) else { return false };
            match entry.expires {
                Some(expires) if expires < today => {
                    if !expired_used.contains(&entry.id) {
                        expired_used.push(entry.id.clone());
                        decision.notes.push(format!(
                            "allowlist entry for {} expired on {expires} and no longer applies",
                            entry.id
                        ));
                    }
                    false
                }
                _ => {
                    decision.suppressed.push(Suppressed { id: id.to_owned(), why: entry.reason.clone() });
                    true
                }
            }
        };

        for v in &report.vulnerabilities {
            if self.ignore_unfixed && v.fixed_version.is_none() {
                decision.suppressed.push(Suppressed { id: v.id.clone(), why: "no fix is available yet".to_owned() });
                continue;
            }
            if !waive(&v.id, Some(&v.package), &mut decision) {
                decision.vulnerabilities.add(v.severity);
            }
        }
        for m in &report.misconfigurations {
            if !waive(&m.id, None, &mut decision) {
                decision.misconfigurations.add(m.severity);
            }
        }
        for (what, counts, limits) in [
            ("vulnerabilities", decision.vulnerabilities, self.max_vulnerabilities),
            ("misconfigurations", decision.misconfigurations, self.max_misconfigurations),
        ] {
            for severity in Severity::ALL.into_iter().rev() {
                if let Some(max) = limits.get(severity)
                    && counts.get(severity) > max
                {
                    decision.reasons.push(format!("{} {severity} {what}, at most {max} allowed", counts.get(severity)));
                }
            }
        }
        decision.passed = decision.reasons.is_empty();
        decision
    }

    /// [`ScanPolicy::evaluate`] as of today in the system time zone.
    pub fn evaluate_now(&self, report: &ScanReport) -> PolicyDecision {
        self.evaluate(report, jiff::Zoned::now().date())
    }
}

/// The digests a report names, for messages.
fn digest_list(report: &ScanReport) -> String {
    if report.digests.is_empty() {
        "no digest".to_owned()
    } else {
        report.digests.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// A finding the policy did not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Suppressed {
    /// The finding's id.
    pub id: String,
    /// The allowlist reason, or why it was ignored.
    pub why: String,
}

/// The gate's verdict, with everything that led to it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PolicyDecision {
    /// Whether the image may be deployed.
    pub passed: bool,
    /// Each limit that was exceeded; empty when `passed`.
    pub reasons: Vec<String>,
    /// The vulnerabilities that counted, by severity.
    pub vulnerabilities: SeverityCounts,
    /// The misconfigurations that counted, by severity.
    pub misconfigurations: SeverityCounts,
    /// Findings that did not count.
    pub suppressed: Vec<Suppressed>,
    /// Things worth knowing that did not decide anything (expired allowlist entries).
    pub notes: Vec<String>,
}

impl fmt::Display for PolicyDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed {
            write!(f, "passed ({} findings suppressed)", self.suppressed.len())
        } else {
            write!(f, "failed: {}", self.reasons.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use crate::scan::{Misconfiguration, Vulnerability};

    use super::*;

    fn vuln(id: &str, package: &str, severity: Severity, fixed: Option<&str>) -> Vulnerability {
        let mut v = Vulnerability::new(id, package, "1.0", severity);
        v.fixed_version = fixed.map(str::to_owned);
        v
    }

    fn report() -> ScanReport {
        let mut r = ScanReport::new("app:1", "trivy");
        r.os = Some("debian 12.5".to_owned());
        r.vulnerabilities = vec![
            vuln("CVE-A", "openssl", Severity::Critical, Some("3.0.2")),
            vuln("CVE-B", "zlib", Severity::High, None),
            vuln("CVE-C", "curl", Severity::Medium, Some("8.0")),
            vuln("CVE-C", "libcurl", Severity::Medium, Some("8.0")),
        ];
        r.misconfigurations = vec![Misconfiguration::new("DS002", "root user", Severity::High, "USER missing")];
        r
    }

    #[test]
    fn limits_per_severity_give_one_reason_each() {
        let today = date(2025, 1, 1);
        let decision = ScanPolicy::default().evaluate(&report(), today);
        assert!(!decision.passed);
        assert_eq!(
            decision.reasons,
            ["1 CRITICAL vulnerabilities, at most 0 allowed", "1 HIGH vulnerabilities, at most 0 allowed"]
        );
        assert_eq!(decision.vulnerabilities.total(), 4);

        let lenient = ScanPolicy::default()
            .max_vulnerabilities(SeverityLimits::none().critical(1).high(1).medium(1))
            .max_misconfigurations(SeverityLimits::none().high(0));
        let decision = lenient.evaluate(&report(), today);
        assert_eq!(
            decision.reasons,
            ["2 MEDIUM vulnerabilities, at most 1 allowed", "1 HIGH misconfigurations, at most 0 allowed"]
        );
    }

    #[test]
    fn unfixed_and_allowlisted_findings_are_suppressed_with_their_reason() {
        let policy = ScanPolicy::default()
            .ignore_unfixed(true)
            .allow(AllowlistEntry::new("CVE-A", "only in the build stage").expires(date(2025, 3, 31)))
            .allow(AllowlistEntry::new("CVE-C", "curl is not used").package("curl"));
        let decision = policy.evaluate(&report(), date(2025, 3, 31));
        assert!(decision.passed, "{decision}");
        assert_eq!(decision.vulnerabilities.medium, 1, "libcurl is not covered by the curl entry");
        let whys: Vec<_> = decision.suppressed.iter().map(|s| (s.id.as_str(), s.why.as_str())).collect();
        assert_eq!(
            whys,
            [("CVE-A", "only in the build stage"), ("CVE-B", "no fix is available yet"), ("CVE-C", "curl is not used")]
        );

        let later = policy.evaluate(&report(), date(2025, 4, 1));
        assert!(!later.passed);
        assert_eq!(later.notes, ["allowlist entry for CVE-A expired on 2025-03-31 and no longer applies"]);
    }

    #[test]
    fn a_report_that_scanned_nothing_fails_and_a_clean_one_passes() {
        let nothing = ScanPolicy::default().evaluate(&ScanReport::new("a:1", "trivy"), date(2025, 1, 1));
        assert!(!nothing.passed);
        assert!(nothing.reasons[0].contains("neither an operating system nor any result"), "{nothing}");
        let mut clean = ScanReport::new("a:1", "trivy");
        clean.scanned_targets.push("a:1 (alpine 3.20.0)".to_owned());
        assert!(ScanPolicy::default().evaluate(&clean, date(2025, 1, 1)).passed);
    }

    #[test]
    fn evaluate_for_binds_the_report_to_the_image_digest() {
        let digest = crate::model::Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let other = crate::model::Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap();
        let mut report = ScanReport::new("app:1", "trivy");
        report.os = Some("alpine 3.20.0".to_owned());
        report.digests = vec![digest.clone()];
        let today = date(2025, 1, 1);
        let policy = ScanPolicy::default();
        let image = ImageRef::parse("app:1").unwrap();
        let by_tag = policy.evaluate_for(&image, &report, today);
        assert!(!by_tag.passed && by_tag.reasons[0].contains("not pinned by digest"), "{by_tag}");
        assert!(policy.evaluate_for(&image.with_digest(digest), &report, today).passed);
        let wrong = policy.evaluate_for(&image.with_digest(other), &report, today);
        assert!(!wrong.passed && wrong.reasons[0].contains("not sha256:bbbb"), "{wrong}");
    }

    #[test]
    fn policies_round_trip_through_json() {
        let policy = ScanPolicy::default().allow(AllowlistEntry::new("CVE-1", "x").expires(date(2026, 1, 2)));
        let json = serde_json::to_string(&policy).unwrap();
        assert!(json.contains("2026-01-02"));
        assert_eq!(serde_json::from_str::<ScanPolicy>(&json).unwrap(), policy);
    }
}
