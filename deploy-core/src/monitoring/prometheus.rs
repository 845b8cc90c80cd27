//! Prometheus documents: scrape configuration, alert rules, `ServiceMonitor`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{MonitoringConfig, prom_duration};
use crate::model::{ValidationError, ValidationErrors};

/// How the scrape job finds its targets.
///
/// ```
/// use deploy_core::monitoring::{MonitoringConfig, ServiceDiscovery};
/// let m = MonitoringConfig::new("shop", "web").discovery(ServiceDiscovery::Static(vec!["127.0.0.1:9100".into()]));
/// assert_eq!(m.scrape_config()["scrape_configs"][0]["static_configs"][0]["targets"][0], "127.0.0.1:9100");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceDiscovery {
    /// Pods from the Kubernetes API (`kubernetes_sd_configs`, role `pod`), kept by
    /// their `app` label and `prometheus.io/*` annotations.
    Kubernetes,
    /// Fixed `host:port` targets, labelled with the namespace and app.
    Static(Vec<String>),
    /// Targets listed in JSON or YAML files (`file_sd_configs`) that another tool
    /// keeps up to date.
    File(Vec<String>),
}

/// A custom alert rule.
///
/// ```
/// use std::time::Duration;
/// use deploy_core::monitoring::AlertRule;
/// let r = AlertRule::new("WebDown", "up{app=\"web\"} == 0")
///     .for_duration(Duration::from_secs(120))
///     .severity("critical")
///     .summary("web is down");
/// assert_eq!(r.labels["severity"], "critical");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertRule {
    /// The alert's name (letters, digits, `_`).
    pub name: String,
    /// The PromQL condition.
    pub expr: String,
    /// How long it must hold.
    pub for_duration: Option<Duration>,
    /// Labels added to the alert (`severity`).
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `description`).
    pub annotations: BTreeMap<String, String>,
}

impl AlertRule {
    /// A rule firing as soon as `expr` returns a series.
    pub fn new(name: impl Into<String>, expr: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            expr: expr.into(),
            for_duration: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// Sets how long the condition must hold.
    #[must_use]
    pub fn for_duration(mut self, d: Duration) -> Self {
        self.for_duration = Some(d);
        self
    }

    /// Sets the `severity` label.
    #[must_use]
    pub fn severity(self, severity: impl Into<String>) -> Self {
        self.label("severity", severity)
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the `summary` annotation.
    #[must_use]
    pub fn summary(self, text: impl Into<String>) -> Self {
        self.annotation("summary", text)
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub(super) fn check(&self, errors: &mut ValidationErrors) {
        let mut chars = self.name.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            errors.push(ValidationError::new("alert name", self.name.as_str(), "must be letters, digits and '_'"));
        }
        if self.expr.trim().is_empty() {
            errors.push(ValidationError::new("alert expr", self.expr.as_str(), "must not be empty"));
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut rule = serde_json::Map::new();
        rule.insert("alert".into(), json!(self.name));
        rule.insert("expr".into(), json!(self.expr));
        if let Some(d) = self.for_duration {
            rule.insert("for".into(), json!(prom_duration(d)));
        }
        if !self.labels.is_empty() {
            rule.insert("labels".into(), json!(self.labels));
        }
        if !self.annotations.is_empty() {
            rule.insert("annotations".into(), json!(self.annotations));
        }
        Value::Object(rule)
    }
}

impl MonitoringConfig {
    /// The PromQL share of 5xx responses over the rate window, by namespace and app.
    pub fn error_rate_query(&self) -> String {
        let m = &self.metrics;
        let w = prom_duration(self.rate_window);
        format!(
            "sum by (namespace, app) (rate({}{{{}}}[{w}])) / sum by (namespace, app) (rate({}{{{}}}[{w}]))",
            m.requests_total,
            self.selector(&format!(",{}=~\"5..\"", m.status_label)),
            m.requests_total,
            self.selector(""),
        )
    }

    /// The PromQL latency quantile `q` (0.95 for p95) in seconds, by namespace and app.
    pub fn latency_quantile_query(&self, q: f64) -> String {
        format!(
            "histogram_quantile({q}, sum by (namespace, app, le) (rate({}_bucket{{{}}}[{}])))",
            self.metrics.request_duration,
            self.selector(""),
            prom_duration(self.rate_window)
        )
    }

    /// The PromQL request rate per second, by namespace and app.
    pub fn request_rate_query(&self) -> String {
        format!(
            "sum by (namespace, app) (rate({}{{{}}}[{}]))",
            self.metrics.requests_total,
            self.selector(""),
            prom_duration(self.rate_window)
        )
    }

    /// The built-in rules (`<App>HighErrorRate`, `<App>HighLatencyP95`) and the
    /// custom ones.
    pub fn rules(&self) -> Vec<AlertRule> {
        let prefix = self.alert_prefix();
        let target = format!("{}/{}", self.namespace, self.app);
        let latency = self.p95_latency_threshold.as_secs_f64();
        let mut rules = vec![
            AlertRule::new(
                format!("{prefix}HighErrorRate"),
                format!("{} > {}", self.error_rate_query(), self.error_rate_threshold),
            )
            .for_duration(self.alert_for)
            .severity("critical")
            .summary(format!("High error rate on {target}"))
            .annotation(
                "description",
                format!(
                    "{{{{ $value | humanizePercentage }}}} of requests failed with 5xx over {}, above {}.",
                    prom_duration(self.rate_window),
                    self.error_rate_threshold
                ),
            ),
            AlertRule::new(
                format!("{prefix}HighLatencyP95"),
                format!("{} > {latency}", self.latency_quantile_query(0.95)),
            )
            .for_duration(self.alert_for)
            .severity("warning")
            .summary(format!("High p95 latency on {target}"))
            .annotation(
                "description",
                format!("p95 latency is {{{{ $value | humanizeDuration }}}}, above {latency}s."),
            ),
        ];
        rules.extend(self.custom_rules.iter().cloned());
        rules
    }

    /// A Prometheus rule file with one group holding [`MonitoringConfig::rules`].
    pub fn alert_rules(&self) -> Value {
        let rules: Vec<Value> = self.rules().iter().map(AlertRule::to_value).collect();
        json!({"groups": [{"name": format!("{}-{}", self.namespace, self.app), "rules": rules}]})
    }

    /// A complete `prometheus.yml`: global intervals, the rule files, and one scrape
    /// job for this application. With [`ServiceDiscovery::Kubernetes`] the job
    /// discovers pods through the Kubernetes API (role `pod` in the namespace), keeps
    /// those labelled `app=<app>` and annotated `prometheus.io/scrape: "true"`,
    /// honours the `prometheus.io/path` and `prometheus.io/port` annotations, and
    /// labels series with namespace, app and pod.
    pub fn scrape_config(&self) -> Value {
        let interval = prom_duration(self.scrape_interval);
        let mut job = json!({
            "job_name": format!("{}/{}", self.namespace, self.app),
            "scrape_interval": interval,
            "metrics_path": self.metrics_path,
        });
        let labels = json!({"namespace": self.namespace, "app": self.app});
        match &self.discovery {
            ServiceDiscovery::Kubernetes => {
                job["kubernetes_sd_configs"] = json!([{"role": "pod", "namespaces": {"names": [self.namespace]}}]);
                job["relabel_configs"] = kubernetes_relabeling(&self.app);
            }
            ServiceDiscovery::Static(targets) => {
                job["static_configs"] = json!([{"targets": targets, "labels": labels}]);
            }
            ServiceDiscovery::File(files) => {
                job["file_sd_configs"] = json!([{"files": files}]);
                job["relabel_configs"] = json!([
                    {"target_label": "namespace", "replacement": self.namespace, "action": "replace"},
                    {"target_label": "app", "replacement": self.app, "action": "replace"}
                ]);
            }
        }
        json!({
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": self.rule_files,
            "scrape_configs": [job]
        })
    }

    /// A Prometheus Operator `ServiceMonitor` (`monitoring.coreos.com/v1`) selecting
    /// the Services labelled `app=<app>` in the namespace and scraping their
    /// metrics port.
    pub fn service_monitor(&self) -> Value {
        json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": self.app, "namespace": self.namespace, "labels": {"app": self.app}},
            "spec": {
                "selector": {"matchLabels": {"app": self.app}},
                "namespaceSelector": {"matchNames": [self.namespace]},
                "endpoints": [{
                    "port": self.metrics_port,
                    "path": self.metrics_path,
                    "interval": prom_duration(self.scrape_interval)
                }]
            }
        })
    }
}

fn kubernetes_relabeling(app: &str) -> Value {
    json!([
        {"source_labels": ["__meta_kubernetes_pod_label_app"], "regex": regex_escape(app), "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "regex": "true", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "regex": "(.+)", "target_label": "__metrics_path__", "action": "replace"},
        {
            "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
            "regex": "([^:]+)(?::\\d+)?;(\\d+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
            "action": "replace"
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace", "action": "replace"},
        {"source_labels": ["__meta_kubernetes_pod_label_app"], "target_label": "app", "action": "replace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod", "action": "replace"}
    ])
}

/// Escapes regular-expression metacharacters (relabel regexes are anchored RE2).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_select_the_app_and_escape_it() {
        let m = MonitoringConfig::new("shop", "web.v2");
        assert_eq!(
            m.error_rate_query(),
            "sum by (namespace, app) (rate(http_requests_total{namespace=\"shop\",app=\"web.v2\",status=~\"5..\"}[5m])) \
             / sum by (namespace, app) (rate(http_requests_total{namespace=\"shop\",app=\"web.v2\"}[5m]))"
        );
        assert_eq!(m.scrape_config()["scrape_configs"][0]["relabel_configs"][0]["regex"], "web\\.v2");
        let sm = m.service_monitor();
        assert_eq!(sm["spec"]["selector"]["matchLabels"]["app"], "web.v2");
        assert_eq!(sm["spec"]["endpoints"][0]["interval"], "15s");
    }

    #[test]
    fn custom_rules_join_the_group() {
        let m = MonitoringConfig::new("shop", "web").custom_rule(AlertRule::new("WebDown", "up == 0").severity("page"));
        let group = &m.alert_rules()["groups"][0];
        assert_eq!(group["rules"].as_array().unwrap().len(), 3);
        assert_eq!(group["rules"][2]["labels"]["severity"], "page");
        assert!(group["rules"][2].get("for").is_none());
    }
}
