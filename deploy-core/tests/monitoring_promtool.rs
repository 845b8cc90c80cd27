//! The generated Prometheus documents, checked by Prometheus's own `promtool`.
//!
//! Needs Debian's `prometheus` package (`apt-get install -y prometheus`); without
//! `promtool` on `PATH` these tests fail, they never skip.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deploy_core::monitoring::{AlertRule, MonitoringConfig, ServiceDiscovery, to_yaml};

fn promtool(args: &[&str], dir: &Path) -> String {
    let output = Command::new("promtool").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!(
            "promtool is not runnable ({e}): install Debian's prometheus package with `apt-get install -y prometheus`"
        )
    });
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn config() -> MonitoringConfig {
    MonitoringConfig::new("shop", "checkout-api")
        .error_rate_threshold(0.05)
        .p95_latency_threshold(Duration::from_millis(500))
        .alert_for(Duration::from_secs(180))
        .rule_file("rules.yml")
        .custom_rule(
            AlertRule::new("CheckoutApiDown", "up{namespace=\"shop\",app=\"checkout-api\"} == 0")
                .for_duration(Duration::from_secs(60))
                .severity("critical")
                .summary("checkout-api is down"),
        )
}

#[test]
fn rules_and_config_pass_promtool_check() {
    let dir = tempfile::tempdir().unwrap();
    let m = config();
    m.validate().unwrap();
    std::fs::write(dir.path().join("rules.yml"), to_yaml(&m.alert_rules())).unwrap();
    let out = promtool(&["check", "rules", "rules.yml"], dir.path());
    assert!(out.contains("SUCCESS: 3 rules found"), "{out}");

    std::fs::write(dir.path().join("targets.json"), r#"[{"targets": ["127.0.0.1:9100"]}]"#).unwrap();
    for discovery in
        [ServiceDiscovery::Static(vec!["127.0.0.1:9100".into()]), ServiceDiscovery::File(vec!["targets.json".into()])]
    {
        let m = config().discovery(discovery);
        std::fs::write(dir.path().join("prometheus.yml"), to_yaml(&m.scrape_config())).unwrap();
        let out = promtool(&["check", "config", "prometheus.yml"], dir.path());
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[test]
fn kubernetes_scrape_config_passes_promtool_check() {
    // Debian's prometheus is built without Kubernetes service discovery, so its
    // promtool rejects the `kubernetes_sd_configs` field itself. The job is checked
    // twice: whole, accepting only that one complaint (an upstream promtool passes
    // it), and with the discovery block swapped for file discovery, so that every
    // other part (relabelling included) is checked by any promtool.
    let dir = tempfile::tempdir().unwrap();
    let config = config().scrape_config();
    std::fs::write(dir.path().join("prometheus.yml"), to_yaml(&config)).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("promtool is not runnable ({e}): `apt-get install -y prometheus`"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || text.contains("field kubernetes_sd_configs not found in type config.ScrapeConfig"),
        "{text}"
    );

    let mut swapped = config.clone();
    let job = &mut swapped["scrape_configs"][0];
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    assert_eq!(job["kubernetes_sd_configs"][0]["namespaces"]["names"][0], "shop");
    job.as_object_mut().unwrap().remove("kubernetes_sd_configs");
    job["file_sd_configs"] = serde_json::json!([{"files": ["targets.json"]}]);
    std::fs::write(dir.path().join("targets.json"), "[]").unwrap();
    std::fs::write(dir.path().join("rules.yml"), to_yaml(&self::config().alert_rules())).unwrap();
    std::fs::write(dir.path().join("swapped.yml"), to_yaml(&swapped)).unwrap();
    let out = promtool(&["check", "config", "swapped.yml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // promtool has no dashboard check; recording rules made of the panels' queries
    // put every expression through Prometheus's parser.
    let dir = tempfile::tempdir().unwrap();
    let d = config().grafana_dashboard();
    let mut rules = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for (i, t) in panel["targets"].as_array().unwrap().iter().enumerate() {
            rules.push(serde_json::json!({"record": format!("panel_{}_{i}", panel["id"]), "expr": t["expr"]}));
        }
    }
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("dashboard.yml"), to_yaml(&file)).unwrap();
    let out = promtool(&["check", "rules", "dashboard.yml"], dir.path());
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
}

#[test]
fn alerts_fire_on_errors_and_slow_requests_and_not_before_their_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), to_yaml(&config().alert_rules())).unwrap();
    let sel = r#"namespace="shop",app="checkout-api""#;
    let series = |name: &str, labels: &str, values: &str| serde_json::json!({"series": format!("{name}{{{sel}{labels}}}"), "values": values});
    let labels = serde_json::json!({"namespace": "shop", "app": "checkout-api"});
    let with = |severity: &str| {
        let mut l = labels.clone();
        l["severity"] = severity.into();
        l
    };
    let unit = serde_json::json!({
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                // 10 % of 100 requests a minute fail.
                series("http_requests_total", r#",status="500""#, "0+10x30"),
                series("http_requests_total", r#",status="200""#, "0+90x30"),
                // 20 % of requests within 0.1 s, 80 % by 1 s: p95 ≈ 0.97 s.
                series("http_request_duration_seconds_bucket", r#",le="0.1""#, "0+20x30"),
                series("http_request_duration_seconds_bucket", r#",le="0.5""#, "0+20x30"),
                series("http_request_duration_seconds_bucket", r#",le="1""#, "0+100x30"),
                series("http_request_duration_seconds_bucket", r#",le="+Inf""#, "0+100x30"),
                series("up", "", "1x30"),
            ],
            "alert_rule_test": [
                // rate() needs two samples and `for` is 3m: pending, not firing, at 3m.
                {"eval_time": "3m", "alertname": "CheckoutApiHighErrorRate", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "CheckoutApiHighErrorRate", "exp_alerts": [{
                    "exp_labels": with("critical"),
                    "exp_annotations": {
                        "summary": "High error rate on shop/checkout-api",
                        "description": "10% of requests failed with 5xx over 5m, above 0.05."
                    }
                }]},
                {"eval_time": "10m", "alertname": "CheckoutApiHighLatencyP95", "exp_alerts": [{
                    "exp_labels": with("warning"),
                    "exp_annotations": {
                        "summary": "High p95 latency on shop/checkout-api",
                        "description": "p95 latency is 968.8ms, above 0.5s."
                    }
                }]},
                {"eval_time": "10m", "alertname": "CheckoutApiDown", "exp_alerts": []},
            ]
        }]
    });
    std::fs::write(dir.path().join("tests.yml"), to_yaml(&unit)).unwrap();
    let out = promtool(&["test", "rules", "tests.yml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn rollout_rules_and_dashboard_pass_promtool_and_the_failed_rollback_alert_fires() {
    use deploy_core::monitoring::{rollout_alert_rules, rollout_dashboard};
    let dir = tempfile::tempdir().unwrap();
    let rules = rollout_alert_rules(Duration::from_secs(7200), 0.2);
    std::fs::write(dir.path().join("rollouts.yml"), to_yaml(&rules)).unwrap();
    let out = promtool(&["check", "rules", "rollouts.yml"], dir.path());
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");

    let d = rollout_dashboard();
    let mut recorded = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for (i, t) in panel["targets"].as_array().unwrap().iter().enumerate() {
            recorded.push(serde_json::json!({"record": format!("panel_{}_{i}", panel["id"]), "expr": t["expr"]}));
        }
    }
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": recorded}]});
    std::fs::write(dir.path().join("dashboard.yml"), to_yaml(&file)).unwrap();
    let out = promtool(&["check", "rules", "dashboard.yml"], dir.path());
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");

    // A failed rollback fires at once; a rollout stuck for 2 h fires only after 2 h.
    let test = serde_json::json!({
        "rule_files": ["rollouts.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": "deploy_rollouts_finished_total{strategy=\"canary\",status=\"failed\"}", "values": "0 0 1 1 1"},
                {"series": "deploy_rollouts_started_total{strategy=\"blue-green\"}", "values": "1x180"}
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "DeployRollbackFailed", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "DeployRollbackFailed", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "strategy": "canary", "status": "failed"},
                    "exp_annotations": {
                        "summary": "A rollback failed: the application stays degraded until a rollback completes",
                        "description": "Resume the rollout to retry its rollback."
                    }
                }]},
                {"eval_time": "60m", "alertname": "DeployRolloutStuck", "exp_alerts": []},
                {"eval_time": "150m", "alertname": "DeployRolloutStuck", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "strategy": "blue-green"},
                    "exp_annotations": {
                        "summary": "A blue-green rollout has been running for a long time",
                        "description": "1 rollout(s) started and not finished; a pause may be waiting for promotion."
                    }
                }]}
            ]
        }]
    });
    std::fs::write(dir.path().join("test.yml"), to_yaml(&test)).unwrap();
    let out = promtool(&["test", "rules", "test.yml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");
}
