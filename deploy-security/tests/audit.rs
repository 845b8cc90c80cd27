//! The manifest audit on real-shaped workload manifests and on app specs.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly on any error")]

use deploy_core::model::{
    AppSpec, ContainerSecurityContext, Environment, EnvironmentProfile, ImageRef, Name, Namespace, PodSecurityContext,
    Probe,
};
use deploy_core::scan::Severity;
use deploy_core::scan::{Finding, worst_severity};
use deploy_security::audit::{ManifestError, audit_app_spec, audit_manifest_json};

fn manifest(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/manifests/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn ids_for<'a>(findings: &'a [Finding], subject_suffix: &str) -> Vec<&'a str> {
    findings.iter().filter(|f| f.subject.ends_with(subject_suffix)).map(|f| f.id.as_str()).collect()
}

#[test]
fn an_insecure_deployment_fails_every_rule_it_breaks() {
    let findings = audit_manifest_json(&manifest("insecure-deployment.json")).unwrap();
    assert_eq!(
        ids_for(&findings, "Deployment shop/legacy-api"),
        ["host-pid", "host-path-volume", "service-account-token-automount"]
    );
    assert!(findings.iter().any(|f| f.message.contains("/var/run/docker.sock")));
    assert_eq!(
        ids_for(&findings, "container api"),
        [
            "privileged",
            "run-as-non-root",
            "privilege-escalation-allowed",
            "read-only-root-filesystem",
            "capabilities-not-dropped",
            "dangerous-capabilities",
            "memory-request-missing",
            "cpu-limit-missing",
            "memory-limit-missing",
            "liveness-probe-missing",
            "readiness-probe-missing",
            "image-tag-latest",
        ]
    );
    let dangerous = findings.iter().find(|f| f.id == "dangerous-capabilities").unwrap();
    assert_eq!(dangerous.message, "adds NET_ADMIN, SYS_ADMIN");
    assert!(ids_for(&findings, "container migrate (init)").is_empty(), "the init container is hardened");
    assert_eq!(worst_severity(&findings), Some(Severity::Critical));
}

#[test]
fn a_hardened_deployment_has_no_findings() {
    let findings = audit_manifest_json(&manifest("hardened-deployment.json")).unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn cron_jobs_and_pods_are_read_through_their_templates() {
    let cron = br#"{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup"},
      "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"hostNetwork": true,
      "restartPolicy": "OnFailure", "containers": [{"name": "pg-dump", "image": "postgres:16"}]}}}}}}"#;
    let findings = audit_manifest_json(cron).unwrap();
    assert_eq!(findings[0].id, "host-network");
    assert_eq!(findings[0].subject, "CronJob backup");
}

#[test]
fn malformed_manifests_name_the_path_and_other_kinds_are_refused() {
    let bad = br#"{"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [{"name": "a", "securityContext": {"privileged": "yes"}}]}}}}"#;
    match audit_manifest_json(bad).unwrap_err() {
        ManifestError::Malformed { path, .. } => {
            assert_eq!(path, ".spec.template.spec.containers[0].securityContext.privileged")
        }
        other => panic!("{other:?}"),
    }
    let no_template = br#"{"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": 1}}"#;
    assert!(
        matches!(audit_manifest_json(no_template), Err(ManifestError::Malformed { path, .. }) if path == ".spec.template")
    );
    let service = br#"{"kind": "Service", "metadata": {"name": "x"}, "spec": {}}"#;
    assert!(matches!(audit_manifest_json(service), Err(ManifestError::UnsupportedKind { kind }) if kind == "Service"));
}

#[test]
fn the_production_profile_passes_the_seed_pod_security_rules() {
    let spec = AppSpec::new(
        Namespace::new("shop").unwrap(),
        Name::new("checkout").unwrap(),
        ImageRef::parse("registry.local:5000/shop/checkout:1.4.2").unwrap(),
    )
    .readiness(Probe::http("/ready", 8080))
    .liveness(Probe::http("/healthz", 8080));
    let bare: Vec<String> = audit_app_spec(&spec).into_iter().map(|f| f.id).collect();
    for rule in ["run-as-non-root", "read-only-root-filesystem", "privilege-escalation-allowed"] {
        assert!(bare.contains(&rule.to_owned()), "{rule} in {bare:?}");
    }
    let production = EnvironmentProfile::preset(Environment::Production).apply_to(spec.clone());
    let ids: Vec<String> = audit_app_spec(&production).into_iter().map(|f| f.id).collect();
    for rule in ["run-as-non-root", "read-only-root-filesystem", "privilege-escalation-allowed", "privileged"] {
        assert!(!ids.contains(&rule.to_owned()), "{rule} in {ids:?}");
    }
    let mut privileged = ContainerSecurityContext::restricted();
    privileged.privileged = Some(true);
    let root = spec.pod_security(PodSecurityContext::default()).container_security(privileged);
    let findings = audit_app_spec(&root);
    assert_eq!(findings[0].id, "privileged");
    assert_eq!(findings[0].subject, "AppSpec shop/checkout container checkout");
}
