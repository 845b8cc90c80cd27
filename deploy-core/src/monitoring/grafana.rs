//! Grafana dashboards.

use serde_json::{Value, json};

use super::MonitoringConfig;

impl MonitoringConfig {
    /// A Grafana dashboard (schema version 39) with three time-series panels on a
    /// `datasource` variable of type Prometheus: request rate, error rate (with the
    /// alert threshold drawn), and latency p50 / p95 / p99 (with the p95 threshold).
    pub fn grafana_dashboard(&self) -> Value {
        let ds = json!({"type": "prometheus", "uid": "${datasource}"});
        let target = |expr: String, legend: &str, ref_id: &str| json!({"datasource": ds, "expr": expr, "legendFormat": legend, "refId": ref_id});
        let threshold = |value: f64| {
            json!({
                "mode": "absolute",
                "steps": [{"color": "green", "value": null}, {"color": "red", "value": value}]
            })
        };
        let panel =
            |id: u32, title: &str, unit: &str, x: u32, w: u32, y: u32, targets: Vec<Value>, steps: Option<Value>| {
                let mut defaults = json!({"unit": unit});
                if let Some(steps) = steps {
                    defaults["thresholds"] = steps;
                    defaults["custom"] = json!({"thresholdsStyle": {"mode": "line"}});
                }
                json!({
                    "id": id,
                    "type": "timeseries",
                    "title": title,
                    "datasource": ds,
                    "gridPos": {"h": 8, "w": w, "x": x, "y": y},
                    "fieldConfig": {"defaults": defaults, "overrides": []},
                    "targets": targets
                })
            };
        json!({
            "title": format!("{}/{}", self.namespace, self.app),
            "uid": format!("deploy-{}-{}", self.namespace, self.app).chars().take(40).collect::<String>(),
            "tags": ["deploy-rs", self.namespace, self.app],
            "timezone": "browser",
            "schemaVersion": 39,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [{
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus"
            }]},
            "panels": [
                panel(1, "Request rate", "reqps", 0, 12, 0, vec![target(self.request_rate_query(), "requests/s", "A")], None),
                panel(2, "Error rate (5xx)", "percentunit", 12, 12, 0,
                    vec![target(self.error_rate_query(), "5xx share", "A")],
                    Some(threshold(self.error_rate_threshold))),
                panel(3, "Latency", "s", 0, 24, 8, vec![
                    target(self.latency_quantile_query(0.5), "p50", "A"),
                    target(self.latency_quantile_query(0.95), "p95", "B"),
                    target(self.latency_quantile_query(0.99), "p99", "C"),
                ], Some(threshold(self.p95_latency_threshold.as_secs_f64()))),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_has_rate_errors_and_latency_quantiles() {
        let d = MonitoringConfig::new("shop", "web").grafana_dashboard();
        let panels = d["panels"].as_array().unwrap();
        let titles: Vec<_> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["Request rate", "Error rate (5xx)", "Latency"]);
        let latency: Vec<_> =
            panels[2]["targets"].as_array().unwrap().iter().map(|t| t["legendFormat"].clone()).collect();
        assert_eq!(latency, ["p50", "p95", "p99"]);
        assert!(panels[2]["targets"][1]["expr"].as_str().unwrap().starts_with("histogram_quantile(0.95,"));
        assert_eq!(panels[1]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"], 0.01);
        let ids: std::collections::HashSet<_> = panels.iter().map(|p| p["id"].as_u64()).collect();
        assert_eq!(ids.len(), 3);
    }
}
