//! The kit's [`MetricsProvider`].

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::ErrorKind;
use crate::metrics::{MetricQuery, MetricValue, MetricsError, MetricsProvider};
use crate::model::Track;

/// What a metric answers for one track.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetricScript {
    /// Always this value.
    Constant(MetricValue),
    /// One value per query, in order; the last one repeats.
    PerCall(Vec<MetricValue>),
    /// Values by time since the kit was made: the last entry whose time has come
    /// (no data before the first).
    Timeline(Vec<(Duration, MetricValue)>),
    /// Every query fails with this kind.
    Fail(ErrorKind),
    /// One series of values per range query ([`MetricsProvider::query_range`]), in
    /// order; the last one repeats. Instant queries of it have no data.
    Samples(Vec<Vec<f64>>),
}

#[derive(Debug, Default)]
struct Scripts {
    scripts: BTreeMap<(String, Track), MetricScript>,
    calls: BTreeMap<(String, Track), usize>,
}

/// Metric values per metric name and track; unscripted metrics have no data.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use deploy_core::metrics::{MetricQuery, MetricValue, MetricsProvider};
/// use deploy_core::model::Track;
/// use deploy_core::testkit::{self, TestKit};
/// let kit = TestKit::new();
/// kit.metric_values().set("error-rate", Track::Canary, 0.07);
/// let (spec, _, _) = testkit::sample_app(1);
/// let q = MetricQuery::new("error-rate", "q", spec.id(), Track::Canary, std::time::Duration::from_secs(60));
/// assert_eq!(kit.metrics().query(&q).await.unwrap(), MetricValue::Scalar(0.07));
/// let q = MetricQuery::new("error-rate", "q", spec.id(), Track::Stable, std::time::Duration::from_secs(60));
/// assert_eq!(kit.metrics().query(&q).await.unwrap(), MetricValue::Empty);
/// # });
/// ```
#[derive(Debug)]
pub struct TestMetrics {
    start: Instant,
    inner: Mutex<Scripts>,
}

impl TestMetrics {
    pub(crate) fn new() -> Self {
        Self { start: Instant::now(), inner: Mutex::new(Scripts::default()) }
    }

    /// `name` on `track` answers `value` from now on.
    pub fn set(&self, name: &str, track: Track, value: f64) {
        self.script(name, track, MetricScript::Constant(MetricValue::Scalar(value)));
    }

    /// `name` on `track` answers as `script` says from now on.
    pub fn script(&self, name: &str, track: Track, script: MetricScript) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.calls.remove(&(name.to_owned(), track));
        inner.scripts.insert((name.to_owned(), track), script);
    }

    /// How many times `name` on `track` was queried since it was last scripted.
    pub fn queries(&self, name: &str, track: Track) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.calls.get(&(name.to_owned(), track)).copied().unwrap_or(0)
    }
}

#[async_trait]
impl MetricsProvider for TestMetrics {
    async fn query(&self, query: &MetricQuery) -> Result<MetricValue, MetricsError> {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (query.name.clone(), query.track);
        let call = {
            let calls = inner.calls.entry(key.clone()).or_insert(0);
            *calls += 1;
            *calls - 1
        };
        match inner.scripts.get(&key) {
            None => Ok(MetricValue::Empty),
            Some(MetricScript::Constant(v)) => Ok(v.clone()),
            Some(MetricScript::PerCall(values)) => {
                Ok(values.get(call).or_else(|| values.last()).cloned().unwrap_or(MetricValue::Empty))
            }
            Some(MetricScript::Timeline(points)) => {
                Ok(points.iter().rev().find(|(at, _)| *at <= elapsed).map_or(MetricValue::Empty, |(_, v)| v.clone()))
            }
            Some(MetricScript::Fail(kind)) => Err(MetricsError::backend("query", *kind, "injected by the test kit")),
            Some(MetricScript::Samples(_)) => Ok(MetricValue::Empty),
        }
    }

    /// A [`MetricScript::Samples`] script's next series; an instant script's value
    /// as a one-value series (none for no data); the failure of a failing one.
    async fn query_range(
        &self,
        query: &MetricQuery,
        range: Duration,
        step: Duration,
    ) -> Result<Vec<f64>, MetricsError> {
        let _ = (range, step);
        let samples = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (query.name.clone(), query.track);
            let call = {
                let calls = inner.calls.entry(key.clone()).or_insert(0);
                *calls += 1;
                *calls - 1
            };
            match inner.scripts.get(&key) {
                Some(MetricScript::Samples(series)) => {
                    Some(series.get(call).or_else(|| series.last()).cloned().unwrap_or_default())
                }
                Some(MetricScript::Fail(kind)) => {
                    return Err(MetricsError::backend("query range", *kind, "injected by the test kit"));
                }
                _ => {
                    // The instant query below counts this call.
                    if let Some(calls) = inner.calls.get_mut(&key) {
                        *calls -= 1;
                    }
                    None
                }
            }
        };
        match samples {
            Some(series) => Ok(series.into_iter().filter(|v| !v.is_nan()).collect()),
            None => Ok(self.query(query).await?.as_single().into_iter().collect()),
        }
    }
}
