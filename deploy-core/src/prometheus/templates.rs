//! The metric checks Flagger ships built in, on the metric names of the seed
//! (`http_requests_total`, `http_request_duration_seconds_bucket`): request success
//! rate (at least 99 %) and request duration p99 (at most 500 ms). Every part is
//! overridable: metric names, label selector, error statuses, quantile and bounds.
//!
//! ```
//! use deploy_core::prometheus::templates::BuiltinMetrics;
//! let checks = BuiltinMetrics::default().checks();
//! assert_eq!(checks[0].name, "request-success-rate");
//! assert_eq!(checks[0].judge.to_string(), "≥ 99");
//! assert_eq!(checks[1].name, "request-duration");
//! assert_eq!(checks[1].judge.to_string(), "≤ 500");
//! ```

use crate::analysis::{JudgeSpec, MetricCheck};

/// The built-in checks' parts; the defaults are Flagger's.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BuiltinMetrics {
    /// The request counter, with a status label.
    pub requests_total: String,
    /// The request duration histogram's buckets, in seconds.
    pub duration_bucket: String,
    /// The label matchers that pick one track of one application; may use the
    /// placeholders of [`MetricQuery`](crate::metrics::MetricQuery).
    pub selector: String,
    /// The matcher of failed requests.
    pub error_matcher: String,
    /// The lowest acceptable success rate, in per cent.
    pub min_success_rate: f64,
    /// The duration quantile, from 0 to 1.
    pub duration_quantile: f64,
    /// The highest acceptable duration at that quantile, in milliseconds.
    pub max_duration_ms: f64,
}

impl Default for BuiltinMetrics {
    fn default() -> Self {
        Self {
            requests_total: "http_requests_total".to_owned(),
            duration_bucket: "http_request_duration_seconds_bucket".to_owned(),
            selector: r#"namespace="{{namespace}}",app="{{app}}",track="{{track}}""#.to_owned(),
            error_matcher: r#"status=~"5..""#.to_owned(),
            min_success_rate: 99.0,
            duration_quantile: 0.99,
            max_duration_ms: 500.0,
        }
    }
}

impl BuiltinMetrics {
    /// Sets the request counter's name.
    #[must_use]
    pub fn requests_total(mut self, name: impl Into<String>) -> Self {
        self.requests_total = name.into();
        self
    }

    /// Sets the duration histogram's bucket series name.
    #[must_use]
    pub fn duration_bucket(mut self, name: impl Into<String>) -> Self {
        self.duration_bucket = name.into();
        self
    }

    /// Sets the label selector.
    #[must_use]
    pub fn selector(mut self, selector: impl Into<String>) -> Self {
        self.selector = selector.into();
        self
    }

    /// Sets the matcher of failed requests.
    #[must_use]
    pub fn error_matcher(mut self, matcher: impl Into<String>) -> Self {
        self.error_matcher = matcher.into();
        self
    }

    /// Sets the lowest acceptable success rate, in per cent.
    #[must_use]
    pub fn min_success_rate(mut self, percent: f64) -> Self {
        self.min_success_rate = percent;
        self
    }

    /// Sets the duration quantile.
    #[must_use]
    pub fn duration_quantile(mut self, quantile: f64) -> Self {
        self.duration_quantile = quantile;
        self
    }

    /// Sets the highest acceptable duration, in milliseconds.
    #[must_use]
    pub fn max_duration_ms(mut self, ms: f64) -> Self {
        self.max_duration_ms = ms;
        self
    }

    /// The success-rate query: the per cent of requests over `{{interval}}` that did
    /// not fail. Without traffic it has no value (no data, so inconclusive); a track
    /// whose every request fails is 0, not missing.
    pub fn success_rate_query(&self) -> String {
        let (m, sel, err) = (&self.requests_total, &self.selector, &self.error_matcher);
        let total = format!("sum(rate({m}{{{sel}}}[{{{{interval}}}}]))");
        // `or vector(0)`: no failed request is zero failures, not missing data.
        let failed = format!("sum(rate({m}{{{sel},{err}}}[{{{{interval}}}}]) or vector(0))");
        format!("({total} - {failed})\n/ {total} * 100")
    }

    /// The duration query: the quantile of the histogram over `{{interval}}`, in
    /// milliseconds.
    pub fn duration_query(&self) -> String {
        let (m, sel, q) = (&self.duration_bucket, &self.selector, self.duration_quantile);
        format!("histogram_quantile({q}, sum by (le) (rate({m}{{{sel}}}[{{{{interval}}}}]))) * 1000")
    }

    /// `request-success-rate`: at least `min_success_rate` per cent.
    pub fn success_rate(&self) -> MetricCheck {
        MetricCheck::new("request-success-rate", self.success_rate_query(), JudgeSpec::min(self.min_success_rate))
    }

    /// `request-duration`: the quantile at most `max_duration_ms`.
    pub fn duration(&self) -> MetricCheck {
        MetricCheck::new("request-duration", self.duration_query(), JudgeSpec::max(self.max_duration_ms))
    }

    /// Both checks, success rate first.
    pub fn checks(&self) -> Vec<MetricCheck> {
        vec![self.success_rate(), self.duration()]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::MetricQuery;
    use crate::model::{AppId, Name, Namespace, Track};

    fn render(template: &str) -> String {
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("checkout").unwrap());
        MetricQuery::new("m", template, app, Track::Canary, Duration::from_secs(60)).render()
    }

    #[test]
    fn queries_render_to_flaggers_promql() {
        let b = BuiltinMetrics::default();
        assert_eq!(
            render(&b.success_rate_query()),
            "(sum(rate(http_requests_total{namespace=\"shop\",app=\"checkout\",track=\"canary\"}[60s])) \
             - sum(rate(http_requests_total{namespace=\"shop\",app=\"checkout\",track=\"canary\",status=~\"5..\"}[60s]) or vector(0)))\n\
             / sum(rate(http_requests_total{namespace=\"shop\",app=\"checkout\",track=\"canary\"}[60s])) * 100"
        );
        assert_eq!(
            render(&b.duration_query()),
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket\
             {namespace=\"shop\",app=\"checkout\",track=\"canary\"}[60s]))) * 1000"
        );
    }

    #[test]
    fn every_part_is_overridable() {
        let b = BuiltinMetrics::default()
            .requests_total("requests")
            .duration_bucket("latency_bucket")
            .selector(r#"service="{{app}}-{{track}}""#)
            .error_matcher(r#"code=~"5.*""#)
            .min_success_rate(99.9)
            .duration_quantile(0.95)
            .max_duration_ms(250.0);
        let checks = b.checks();
        assert_eq!(checks[0].judge, JudgeSpec::min(99.9));
        assert_eq!(checks[1].judge, JudgeSpec::max(250.0));
        assert!(render(&checks[0].query).contains(r#"requests{service="checkout-canary",code=~"5.*"}[60s]"#));
        assert!(
            render(&checks[1].query)
                .starts_with("histogram_quantile(0.95, sum by (le) (rate(latency_bucket{service=\"checkout-canary\"}")
        );
    }
}
