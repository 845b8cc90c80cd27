//! Any bytes given to the Trivy and Grype parsers and the manifest audit: an error or a
//! report, never a panic.
#![no_main]

use deploy_security::audit::audit_manifest_json;
use deploy_security::scan::{GrypeReport, TrivyReport, to_sarif};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = TrivyReport::parse(data) {
        let report = report.into_scan_report();
        let _ = to_sarif(&report);
    }
    if let Ok(report) = GrypeReport::parse(data) {
        let _ = report.into_scan_report();
    }
    let _ = audit_manifest_json(data);
});
