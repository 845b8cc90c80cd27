//! Monitoring configuration for a deployed service: a Prometheus scrape
//! configuration with Kubernetes service discovery, alert rules (error rate, p95
//! latency, custom), a Prometheus Operator `ServiceMonitor`, and a Grafana
//! dashboard (request rate, error rate, latency quantiles).
//!
//! Everything is generated as [`serde_json::Value`] documents; [`to_yaml`] writes
//! them as block YAML for files that Prometheus reads. The crate's tests check the
//! output with `promtool check config`, `promtool check rules` and `promtool test
//! rules`.
//!
//! ```
//! use deploy_core::monitoring::{MonitoringConfig, to_yaml};
//! let m = MonitoringConfig::new("shop", "web").error_rate_threshold(0.02);
//! m.validate().unwrap();
//! let rules = to_yaml(&m.alert_rules());
//! assert!(rules.contains("alert: \"WebHighErrorRate\""));
//! let dashboard = m.grafana_dashboard();
//! assert_eq!(dashboard["title"], "shop/web");
//! ```

mod grafana;
mod prometheus;
mod rollouts;
mod yaml;

pub use prometheus::{AlertRule, ServiceDiscovery};
pub use rollouts::{rollout_alert_rules, rollout_dashboard, rollout_rules};
pub use yaml::to_yaml;

use std::time::Duration;

use crate::model::{ValidationError, ValidationErrors};

/// The metric and label names the service exports; the defaults follow the
/// Prometheus naming conventions most HTTP middlewares use.
///
/// ```
/// use deploy_core::monitoring::MetricNames;
/// let names = MetricNames::default().status_label("code");
/// assert_eq!(names.requests_total, "http_requests_total");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricNames {
    /// A counter of requests, labelled with the status code.
    pub requests_total: String,
    /// A histogram of request durations in seconds (without the `_bucket` suffix).
    pub request_duration: String,
    /// The label holding the HTTP status code.
    pub status_label: String,
}

impl Default for MetricNames {
    fn default() -> Self {
        Self {
            requests_total: "http_requests_total".into(),
            request_duration: "http_request_duration_seconds".into(),
            status_label: "status".into(),
        }
    }
}

impl MetricNames {
    /// Sets the request counter's name.
    #[must_use]
    pub fn requests_total(mut self, name: impl Into<String>) -> Self {
        self.requests_total = name.into();
        self
    }

    /// Sets the duration histogram's name.
    #[must_use]
    pub fn request_duration(mut self, name: impl Into<String>) -> Self {
        self.request_duration = name.into();
        self
    }

    /// Sets the status label's name.
    #[must_use]
    pub fn status_label(mut self, name: impl Into<String>) -> Self {
        self.status_label = name.into();
        self
    }
}

/// What to generate monitoring for: one application in one namespace, selected by
/// the `app` label of its pods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MonitoringConfig {
    /// The namespace.
    pub namespace: String,
    /// The application (the pods' `app` label).
    pub app: String,
    /// Metric and label names.
    pub metrics: MetricNames,
    /// Alert when the share of 5xx responses exceeds this (0 to 1). Default 0.01.
    pub error_rate_threshold: f64,
    /// Alert when the p95 latency exceeds this. Default 500 ms.
    pub p95_latency_threshold: Duration,
    /// The `rate()` window. Default 5 minutes.
    pub rate_window: Duration,
    /// How long a condition must hold before an alert fires. Default 5 minutes.
    pub alert_for: Duration,
    /// How often Prometheus scrapes. Default 15 seconds.
    pub scrape_interval: Duration,
    /// The metrics path. Default `/metrics`.
    pub metrics_path: String,
    /// The name of the container port serving metrics, for the `ServiceMonitor`.
    /// Default `http`.
    pub metrics_port: String,
    /// How Prometheus finds the pods. Default: the Kubernetes API.
    pub discovery: ServiceDiscovery,
    /// Rule files the generated Prometheus configuration loads.
    pub rule_files: Vec<String>,
    /// More alert rules to put in the group.
    pub custom_rules: Vec<AlertRule>,
}

impl MonitoringConfig {
    /// Defaults for `app` in `namespace`.
    pub fn new(namespace: impl Into<String>, app: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            app: app.into(),
            metrics: MetricNames::default(),
            error_rate_threshold: 0.01,
            p95_latency_threshold: Duration::from_millis(500),
            rate_window: Duration::from_secs(300),
            alert_for: Duration::from_secs(300),
            scrape_interval: Duration::from_secs(15),
            metrics_path: "/metrics".into(),
            metrics_port: "http".into(),
            discovery: ServiceDiscovery::Kubernetes,
            rule_files: Vec::new(),
            custom_rules: Vec::new(),
        }
    }

    /// Sets the metric names.
    #[must_use]
    pub fn metrics(mut self, metrics: MetricNames) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets the error-rate threshold.
    #[must_use]
    pub fn error_rate_threshold(mut self, threshold: f64) -> Self {
        self.error_rate_threshold = threshold;
        self
    }

    /// Sets the p95 latency threshold.
    #[must_use]
    pub fn p95_latency_threshold(mut self, threshold: Duration) -> Self {
        self.p95_latency_threshold = threshold;
        self
    }

    /// Sets the rate window.
    #[must_use]
    pub fn rate_window(mut self, window: Duration) -> Self {
        self.rate_window = window;
        self
    }

    /// Sets how long a condition must hold.
    #[must_use]
    pub fn alert_for(mut self, d: Duration) -> Self {
        self.alert_for = d;
        self
    }

    /// Sets the scrape interval.
    #[must_use]
    pub fn scrape_interval(mut self, d: Duration) -> Self {
        self.scrape_interval = d;
        self
    }

    /// Sets the metrics path.
    #[must_use]
    pub fn metrics_path(mut self, path: impl Into<String>) -> Self {
        self.metrics_path = path.into();
        self
    }

    /// Sets the metrics port name.
    #[must_use]
    pub fn metrics_port(mut self, port: impl Into<String>) -> Self {
        self.metrics_port = port.into();
        self
    }

    /// Sets the service discovery.
    #[must_use]
    pub fn discovery(mut self, discovery: ServiceDiscovery) -> Self {
        self.discovery = discovery;
        self
    }

    /// Adds a rule file to the Prometheus configuration.
    #[must_use]
    pub fn rule_file(mut self, path: impl Into<String>) -> Self {
        self.rule_files.push(path.into());
        self
    }

    /// Adds a custom alert rule.
    #[must_use]
    pub fn custom_rule(mut self, rule: AlertRule) -> Self {
        self.custom_rules.push(rule);
        self
    }

    /// Checks every setting and reports every problem at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let label_value = |field: &str, v: &str, errors: &mut ValidationErrors| {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                errors.push(ValidationError::new(field, v, "must be letters, digits, '-', '_' or '.'"));
            }
        };
        label_value("namespace", &self.namespace, &mut errors);
        label_value("app", &self.app, &mut errors);
        for (field, name) in [
            ("requests_total", &self.metrics.requests_total),
            ("request_duration", &self.metrics.request_duration),
            ("status_label", &self.metrics.status_label),
        ] {
            let mut chars = name.chars();
            let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                errors.push(ValidationError::new(field, name.as_str(), "must be a Prometheus metric or label name"));
            }
        }
        if !(self.error_rate_threshold > 0.0 && self.error_rate_threshold < 1.0) {
            errors.push(ValidationError::new(
                "error_rate_threshold",
                self.error_rate_threshold.to_string(),
                "must be between 0 and 1",
            ));
        }
        for (field, d) in [
            ("p95_latency_threshold", self.p95_latency_threshold),
            ("rate_window", self.rate_window),
            ("scrape_interval", self.scrape_interval),
        ] {
            if d.is_zero() {
                errors.push(ValidationError::new(field, "0s", "must be positive"));
            }
        }
        if self.rate_window < 2 * self.scrape_interval {
            errors.push(ValidationError::new(
                "rate_window",
                prom_duration(self.rate_window),
                "must cover at least two scrape intervals",
            ));
        }
        if !self.metrics_path.starts_with('/') {
            errors.push(ValidationError::new("metrics_path", self.metrics_path.as_str(), "must start with '/'"));
        }
        for rule in &self.custom_rules {
            rule.check(&mut errors);
        }
        errors.into_result(())
    }

    /// The selector matching this application's series.
    fn selector(&self, extra: &str) -> String {
        format!("namespace=\"{}\",app=\"{}\"{extra}", promql_escape(&self.namespace), promql_escape(&self.app))
    }

    /// The alert name prefix: the app name in CamelCase (`checkout-api` →
    /// `CheckoutApi`).
    fn alert_prefix(&self) -> String {
        self.app
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect()
    }
}

/// A duration in Prometheus's notation (`90s`, `5m`, `250ms`).
fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Escapes a PromQL string literal's content.
fn promql_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_reports_every_problem() {
        let mut m = MonitoringConfig::new("shop", "we b").error_rate_threshold(1.5).metrics_path("metrics");
        m.metrics = MetricNames::default().requests_total("9bad");
        m.scrape_interval = Duration::from_secs(300);
        let errors = m.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["app", "requests_total", "error_rate_threshold", "rate_window", "metrics_path"]);
    }

    #[test]
    fn durations_use_prometheus_units() {
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prom_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(prom_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(MonitoringConfig::new("a", "checkout-api").alert_prefix(), "CheckoutApi");
    }
}
