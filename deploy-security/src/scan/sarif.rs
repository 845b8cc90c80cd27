//! SARIF 2.1.0 export, for code-scanning dashboards (GitHub, GitLab, Azure DevOps).

use std::collections::BTreeMap;

use deploy_core::scan::{ScanReport, Severity};
use serde_json::{Value, json};

/// The SARIF schema this export follows.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The SARIF level of a severity: critical and high are `error`, medium `warning`,
/// low and unknown `note`.
pub fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        _ => "note",
    }
}

/// GitHub's `security-severity` score for a severity (its bands: critical ≥ 9.0,
/// high ≥ 7.0, medium ≥ 4.0, low > 0).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
        _ => "0.0",
    }
}

/// The report as one SARIF 2.1.0 run: one rule per distinct finding id, one result per
/// finding, each located at the scanned image.
///
/// ```
/// use deploy_core::scan::{ScanReport, Severity, Vulnerability};
/// let mut report = ScanReport::new("nginx:1.27", "trivy");
/// report.vulnerabilities.push(Vulnerability::new("CVE-1", "openssl", "3.0.1", Severity::High));
/// let sarif = deploy_security::scan::to_sarif(&report);
/// assert_eq!(sarif["version"], "2.1.0");
/// assert_eq!(sarif["runs"][0]["results"][0]["level"], "error");
/// ```
pub fn to_sarif(report: &ScanReport) -> Value {
    let mut rules: BTreeMap<&str, (usize, Value)> = BTreeMap::new();
    let mut results = Vec::new();
    let location = json!([{ "physicalLocation": { "artifactLocation": { "uri": report.target } } }]);

    for v in &report.vulnerabilities {
        let title = v.title.clone().unwrap_or_else(|| format!("{} in {}", v.id, v.package));
        let rule = json!({
            "id": v.id,
            "name": v.id,
            "shortDescription": { "text": title },
            "fullDescription": { "text": v.description.clone().unwrap_or_else(|| title.clone()) },
            "defaultConfiguration": { "level": sarif_level(v.severity) },
            "properties": {
                "tags": ["vulnerability", "security", v.severity.to_string()],
                "security-severity": security_severity(v.severity),
            },
        });
        let next = rules.len();
        let index = rules.entry(v.id.as_str()).or_insert((next, rule)).0;
        let fixed = v.fixed_version.as_deref().unwrap_or("none");
        results.push(json!({
            "ruleId": v.id,
            "ruleIndex": index,
            "level": sarif_level(v.severity),
            "message": { "text": format!(
                "Package: {}\nInstalled Version: {}\nVulnerability {}\nSeverity: {}\nFixed Version: {fixed}",
                v.package, v.installed_version, v.id, v.severity
            ) },
            "locations": location,
        }));
    }
    for m in &report.misconfigurations {
        let rule = json!({
            "id": m.id,
            "name": m.id,
            "shortDescription": { "text": m.title },
            "fullDescription": { "text": m.resolution.clone().unwrap_or_else(|| m.title.clone()) },
            "defaultConfiguration": { "level": sarif_level(m.severity) },
            "properties": {
                "tags": ["misconfiguration", "security", m.severity.to_string()],
                "security-severity": security_severity(m.severity),
            },
        });
        let next = rules.len();
        let index = rules.entry(m.id.as_str()).or_insert((next, rule)).0;
        results.push(json!({
            "ruleId": m.id,
            "ruleIndex": index,
            "level": sarif_level(m.severity),
            "message": { "text": m.message },
            "locations": location,
        }));
    }
    let mut ordered: Vec<(usize, Value)> = rules.into_values().collect();
    ordered.sort_by_key(|(index, _)| *index);
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": report.scanner,
                "informationUri": "https://github.com/deploy-rs/deploy-rs",
                "rules": ordered.into_iter().map(|(_, rule)| rule).collect::<Vec<_>>(),
            } },
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use deploy_core::scan::{Misconfiguration, Vulnerability};

    use super::*;

    #[test]
    fn rules_are_deduplicated_and_results_point_at_them() {
        let mut report = ScanReport::new("docker.io/library/nginx:1.27", "trivy");
        let mut fixed = Vulnerability::new("CVE-1", "openssl", "3.0.1", Severity::Critical);
        fixed.fixed_version = Some("3.0.2".into());
        report.vulnerabilities = vec![fixed, Vulnerability::new("CVE-1", "libssl", "3.0.1", Severity::Critical)];
        report.misconfigurations = vec![Misconfiguration::new("DS002", "root", Severity::Low, "no USER")];
        let sarif = to_sarif(&report);
        let run = &sarif["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], "trivy");
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        assert_eq!(rules.iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>(), ["CVE-1", "DS002"]);
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[1]["ruleIndex"], 0);
        assert_eq!(results[2]["ruleIndex"], 1);
        assert_eq!(results[2]["level"], "note");
        assert!(results[0]["message"]["text"].as_str().unwrap().contains("Fixed Version: 3.0.2"));
        assert_eq!(
            results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(rules[0]["properties"]["security-severity"], "9.5");
    }
}
