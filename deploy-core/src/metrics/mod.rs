//! Evidence for analysis: the [`MetricsProvider`] trait, and [`CoalescingMetrics`],
//! which makes identical queries of many rollouts once under a rate limit.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{AppId, Track};

mod coalesce;
mod rate_limit;

pub use coalesce::{CoalesceConfig, CoalesceStats, CoalescingMetrics};
pub use rate_limit::RateLimit;

/// One metric to measure for one track.
///
/// `query` is in the provider's language (PromQL for Prometheus) and may hold the
/// placeholders `{{app}}`, `{{namespace}}`, `{{track}}` and `{{interval}}`, which
/// the provider fills in with [`MetricQuery::render`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricQuery {
    /// The metric's name in events and records (`request-success-rate`).
    pub name: String,
    /// The query template.
    pub query: String,
    /// The application measured.
    pub app: AppId,
    /// The track measured.
    pub track: Track,
    /// The window the query looks back over.
    pub interval: Duration,
}

impl MetricQuery {
    /// A query of `query` for `track` of `app` over `interval`.
    pub fn new(
        name: impl Into<String>,
        query: impl Into<String>,
        app: AppId,
        track: Track,
        interval: Duration,
    ) -> Self {
        Self { name: name.into(), query: query.into(), app, track, interval }
    }

    /// The query with its placeholders filled in; `{{interval}}` becomes whole
    /// seconds (`60s`), which every PromQL range accepts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deploy_core::metrics::MetricQuery;
    /// use deploy_core::model::{AppId, Name, Namespace, Track};
    /// let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
    /// let q = MetricQuery::new("rps", r#"rate(x{app="{{app}}",track="{{track}}"}[{{interval}}])"#, app, Track::Canary, Duration::from_secs(60));
    /// assert_eq!(q.render(), r#"rate(x{app="web",track="canary"}[60s])"#);
    /// ```
    pub fn render(&self) -> String {
        self.query
            .replace("{{app}}", self.app.name.as_str())
            .replace("{{namespace}}", self.app.namespace.as_str())
            .replace("{{track}}", self.track.as_str())
            .replace("{{interval}}", &format!("{}s", self.interval.as_secs().max(1)))
    }
}

/// One labelled sample of a vector result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sample {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A sample.
    pub fn new(labels: BTreeMap<String, String>, value: f64) -> Self {
        Self { labels, value }
    }
}

/// What a query returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
#[non_exhaustive]
pub enum MetricValue {
    /// A single number.
    Scalar(f64),
    /// One value per series.
    Vector(Vec<Sample>),
    /// No data: the series does not exist yet or had no traffic. Judges report this
    /// as inconclusive, never as a pass or a failure.
    Empty,
}

impl MetricValue {
    /// The single value a threshold judge compares: a scalar, or a one-series
    /// vector; `None` for empty results, several series, and NaN.
    ///
    /// ```
    /// use deploy_core::metrics::MetricValue;
    /// assert_eq!(MetricValue::Scalar(0.99).as_single(), Some(0.99));
    /// assert_eq!(MetricValue::Scalar(f64::NAN).as_single(), None);
    /// assert_eq!(MetricValue::Empty.as_single(), None);
    /// ```
    pub fn as_single(&self) -> Option<f64> {
        let value = match self {
            Self::Scalar(v) => *v,
            Self::Vector(samples) if samples.len() == 1 => samples[0].value,
            _ => return None,
        };
        (!value.is_nan()).then_some(value)
    }
}

/// A failure of a [`MetricsProvider`] query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The provider rejected the query itself (a PromQL syntax error).
    #[error("query {query:?} was rejected: {reason}")]
    BadQuery {
        /// The rendered query.
        query: String,
        /// The provider's reason.
        reason: String,
    },
    /// The answer could not be understood.
    #[error("malformed answer to {query:?}: {reason}")]
    Malformed {
        /// The rendered query.
        query: String,
        /// What was wrong.
        reason: String,
    },
    /// The provider does not support this kind of query.
    #[error("the metrics provider does not support {what}")]
    Unsupported {
        /// What was asked.
        what: String,
    },
    /// The provider's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(MetricsError);

impl Classify for MetricsError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::BadQuery { .. } | Self::Malformed { .. } => ErrorKind::InvalidInput,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// A source of measurements: Prometheus, the test kit.
#[async_trait]
pub trait MetricsProvider: Send + Sync {
    /// Evaluates `query` now. No data is [`MetricValue::Empty`], not an error.
    async fn query(&self, query: &MetricQuery) -> Result<MetricValue, MetricsError>;

    /// Evaluates `query` at every `step` over the last `range` and returns the
    /// values in time order, for judges that compare distributions (Mann-Whitney).
    /// NaN values are dropped. Providers without history answer
    /// [`MetricsError::Unsupported`].
    async fn query_range(
        &self,
        query: &MetricQuery,
        range: Duration,
        step: Duration,
    ) -> Result<Vec<f64>, MetricsError> {
        let _ = (query, range, step);
        Err(MetricsError::Unsupported { what: "range queries".to_owned() })
    }
}
