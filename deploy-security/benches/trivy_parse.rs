//! Parsing a generated 50 MB Trivy report into `TrivyReport` against parsing the same
//! bytes into `serde_json::Value`, measured in the same run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deploy_security::scan::TrivyReport;
use serde_json::json;

/// A real-shaped report of about `target` bytes: many OS-package results, each with
/// vulnerabilities carrying the full set of fields Trivy writes.
fn report(target: usize) -> Vec<u8> {
    let mut results = Vec::new();
    let mut size = 0;
    let mut n = 0u64;
    while size < target {
        let vulnerabilities: Vec<_> = (0..50)
            .map(|i| {
                n += 1;
                json!({
                    "VulnerabilityID": format!("CVE-2024-{n:05}"),
                    "PkgID": format!("libpkg{i}@1.2.{n}"),
                    "PkgName": format!("libpkg{i}"),
                    "PkgIdentifier": { "PURL": format!("pkg:deb/debian/libpkg{i}@1.2.{n}?arch=amd64&distro=debian-12.5") },
                    "InstalledVersion": format!("1.2.{n}"),
                    "FixedVersion": if n % 3 == 0 { String::new() } else { format!("1.2.{}", n + 1) },
                    "Status": if n % 3 == 0 { "affected" } else { "fixed" },
                    "Layer": { "Digest": "sha256:09f376ebb190216b0459f470e71bec7b5dfa611d66bf008492b40dcc5f1d8eae", "DiffID": "sha256:5d4427064ecc46e3c2add169e9b5eafc7ed2be7861081ec925938ab628ac0e25" },
                    "SeveritySource": "nvd",
                    "PrimaryURL": format!("https://avd.aquasec.com/nvd/cve-2024-{n:05}"),
                    "DataSource": { "ID": "debian", "Name": "Debian Security Tracker", "URL": "https://salsa.debian.org/security-tracker-team/security-tracker" },
                    "Title": "openssl: Unbounded memory growth with session handling in TLSv1.3",
                    "Description": "Issue summary: Some non-default TLS server configurations can cause unbounded memory growth when processing TLSv1.3 sessions. Impact summary: An attacker may exploit certain server configurations to trigger unbounded memory growth that would lead to a Denial of Service.",
                    "Severity": ["LOW", "MEDIUM", "HIGH", "CRITICAL", "UNKNOWN"][(n % 5) as usize],
                    "CweIDs": ["CWE-1325"],
                    "VendorSeverity": { "debian": 1, "nvd": 3, "redhat": 1 },
                    "CVSS": { "nvd": { "V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", "V3Score": 7.5 } },
                    "References": ["http://www.openwall.com/lists/oss-security/2024/04/08/5", "https://github.com/openssl/openssl/commit/7e4d731b1c07201ad9374c1cd9ac5263bdf35bce"],
                    "PublishedDate": "2024-04-08T14:15:07.66Z",
                    "LastModifiedDate": "2024-05-03T13:15:21.93Z"
                })
            })
            .collect();
        let result = json!({ "Target": format!("layer-{n}"), "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": vulnerabilities });
        size += serde_json::to_vec(&result).unwrap().len();
        results.push(result);
    }
    serde_json::to_vec(&json!({
        "SchemaVersion": 2, "CreatedAt": "2024-06-12T09:21:33.104882+02:00", "ArtifactName": "nginx:1.25.4",
        "ArtifactType": "container_image", "Metadata": { "OS": { "Family": "debian", "Name": "12.5" } }, "Results": results
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let bytes = report(50 * 1024 * 1024);
    let mut group = c.benchmark_group("trivy_parse_50MB");
    group.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("TrivyReport::parse", |b| b.iter(|| TrivyReport::parse(black_box(&bytes)).unwrap()));
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
