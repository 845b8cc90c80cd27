//! Alert rules and a Grafana dashboard for the rollouts themselves, on the metrics
//! the engine records with the `metrics` feature (see `deploy_core::engine`'s
//! crate docs for the table of names and labels).

use std::time::Duration;

use serde_json::{Value, json};

use super::AlertRule;

/// The rollout alerts:
/// - `DeployRolloutStuck`: more rollouts started than finished, without a break,
///   for `stuck_after` (a rollout that hangs, or a pause nobody promotes);
/// - `DeployRollbackRateHigh`: over a day, more than `rollback_ratio` of the
///   finished rollouts rolled back;
/// - `DeployRollbackFailed`: a rollout ended `failed` (its rollback failed too:
///   the application is degraded until a rollback completes);
/// - `DeployAnalysisInconclusive`: analyses found no data to judge in the last
///   30 minutes (a quiet canary, or a broken query).
pub fn rollout_rules(stuck_after: Duration, rollback_ratio: f64) -> Vec<AlertRule> {
    vec![
        AlertRule::new(
            "DeployRolloutStuck",
            "sum by (strategy) (deploy_rollouts_started_total) \
             - sum by (strategy) (deploy_rollouts_finished_total or deploy_rollouts_started_total * 0) > 0",
        )
        .for_duration(stuck_after)
        .severity("warning")
        .summary("A {{ $labels.strategy }} rollout has been running for a long time")
        .annotation(
            "description",
            "{{ $value }} rollout(s) started and not finished; a pause may be waiting for promotion.",
        ),
        AlertRule::new(
            "DeployRollbackRateHigh",
            format!(
                "sum(increase(deploy_rollouts_finished_total{{status=\"rolled_back\"}}[1d])) \
                 / sum(increase(deploy_rollouts_finished_total[1d])) > {rollback_ratio}"
            ),
        )
        .for_duration(Duration::from_secs(600))
        .severity("warning")
        .summary("Many rollouts are rolled back")
        .annotation("description", "{{ $value | humanizePercentage }} of the rollouts of the last day rolled back."),
        AlertRule::new("DeployRollbackFailed", "increase(deploy_rollouts_finished_total{status=\"failed\"}[1h]) > 0")
            .severity("critical")
            .summary("A rollback failed: the application stays degraded until a rollback completes")
            .annotation("description", "Resume the rollout to retry its rollback."),
        AlertRule::new(
            "DeployAnalysisInconclusive",
            "sum(increase(deploy_analysis_measurements_total{outcome=\"inconclusive\"}[30m])) > 0",
        )
        .severity("info")
        .summary("Rollout analyses found no data to judge")
        .annotation(
            "description",
            "{{ $value }} inconclusive measurement(s) in 30 minutes: check the canary's traffic and queries.",
        ),
    ]
}

/// A Prometheus rule file with one group holding [`rollout_rules`].
pub fn rollout_alert_rules(stuck_after: Duration, rollback_ratio: f64) -> Value {
    let rules: Vec<Value> = rollout_rules(stuck_after, rollback_ratio).iter().map(AlertRule::to_value).collect();
    json!({"groups": [{"name": "deploy-rs-rollouts", "rules": rules}]})
}

/// A Grafana dashboard (schema version 39) of the rollouts: finished rollouts by
/// status, the rollback ratio, mean step duration by step, canary weight by app,
/// backend errors by backend and kind, and analysis measurements by outcome.
pub fn rollout_dashboard() -> Value {
    let ds = json!({"type": "prometheus", "uid": "${datasource}"});
    let panel = |id: u32, title: &str, unit: &str, x: u32, y: u32, expr: &str, legend: &str| {
        json!({
            "id": id,
            "type": "timeseries",
            "title": title,
            "datasource": ds,
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"datasource": ds, "expr": expr, "legendFormat": legend, "refId": "A"}]
        })
    };
    json!({
        "title": "deploy-rs rollouts",
        "uid": "deploy-rs-rollouts",
        "tags": ["deploy-rs"],
        "schemaVersion": 39,
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": [
            panel(1, "Finished rollouts", "short", 0, 0,
                "sum by (strategy, status) (increase(deploy_rollouts_finished_total[1h]))", "{{strategy}} {{status}}"),
            panel(2, "Rollback ratio", "percentunit", 12, 0,
                "sum(increase(deploy_rollouts_finished_total{status=\"rolled_back\"}[1d])) / sum(increase(deploy_rollouts_finished_total[1d]))",
                "rolled back"),
            panel(3, "Mean step duration", "s", 0, 8,
                "sum by (step) (rate(deploy_rollout_step_duration_seconds_sum[1h])) / sum by (step) (rate(deploy_rollout_step_duration_seconds_count[1h]))",
                "{{step}}"),
            panel(4, "Canary weight", "percent", 12, 8, "max by (app) (deploy_rollout_canary_weight_percent)", "{{app}}"),
            panel(5, "Backend errors", "short", 0, 16,
                "sum by (backend, kind) (increase(deploy_backend_errors_total[1h]))", "{{backend}} {{kind}}"),
            panel(6, "Analysis measurements", "short", 12, 16,
                "sum by (outcome) (increase(deploy_analysis_measurements_total[1h]))", "{{outcome}}")
        ]
    })
}
