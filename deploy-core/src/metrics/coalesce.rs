//! Identical analysis queries made once: a [`MetricsProvider`] wrapper that shares
//! one provider call among every rollout asking the same question at about the same
//! time, under a rate limit the caller sets.
//!
//! Why: a thousand canaries of one service measuring the same error rate each
//! interval would send a thousand identical PromQL queries; Argo Rollouts' users
//! report metric providers rate-limiting concurrent analyses (argo-rollouts#2578).
//! Two questions are "the same" when their rendered query text, their window and (for
//! range queries) their range and step are equal: the rendered text already holds
//! the app and track a template names, so queries of different apps are never mixed.
//!
//! Time is cut into fixed windows of [`CoalesceConfig::window`] (counted from when the
//! wrapper was made): the first caller of a question in a window makes the call,
//! every later caller in that window shares its answer. So each question reaches the
//! provider at most once per window, and a rollout that looks once per analysis
//! interval (at least one window) never receives the same answer twice: two looks
//! a window apart always fall into different windows. Failures are shared only with
//! the callers already waiting (the next caller asks again), so an outage is not
//! remembered.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::rate_limit::{Limiter, RateLimit};
use super::{MetricQuery, MetricValue, MetricsError, MetricsProvider};
use crate::error::{Classify, ErrorKind};

/// How a [`CoalescingMetrics`] shares and limits calls.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoalesceConfig {
    /// The length of the sharing windows. At most the shortest analysis interval of
    /// the rollouts sharing the wrapper, so that each of their looks gets a fresh
    /// answer; an answer is at most this old. Default: 1 second.
    pub window: Duration,
    /// The provider's limit on calls; `None` (the default) is no limit.
    pub rate_limit: Option<RateLimit>,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self { window: Duration::from_secs(1), rate_limit: None }
    }
}

impl CoalesceConfig {
    /// Shares answers within windows of `window`.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Never starts more calls than `limit` allows.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }
}

/// What a wrapper has done, for dashboards and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CoalesceStats {
    /// Questions asked of the wrapper.
    pub requests: u64,
    /// Calls made to the wrapped provider.
    pub provider_calls: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Question {
    Instant { query: String, interval: Duration },
    Range { query: String, interval: Duration, range: Duration, step: Duration },
}

#[derive(Debug, Clone)]
enum Answer {
    Instant(MetricValue),
    Range(Vec<f64>),
}

/// A failure as every waiting caller receives it (a provider's error is not `Clone`:
/// the classification and message are kept, the source is not).
#[derive(Debug, Clone)]
struct SharedFailure {
    kind: ErrorKind,
    error: CloneableError,
}

#[derive(Debug, Clone)]
enum CloneableError {
    BadQuery { query: String, reason: String },
    Malformed { query: String, reason: String },
    Unsupported { what: String },
    Backend { operation: String, message: String },
}

/// The message of a backend failure that another caller's call ran into.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SharedMessage(String);

impl From<&MetricsError> for SharedFailure {
    fn from(error: &MetricsError) -> Self {
        let kind = error.kind();
        let error = match error {
            MetricsError::BadQuery { query, reason } => {
                CloneableError::BadQuery { query: query.clone(), reason: reason.clone() }
            }
            MetricsError::Malformed { query, reason } => {
                CloneableError::Malformed { query: query.clone(), reason: reason.clone() }
            }
            MetricsError::Unsupported { what } => CloneableError::Unsupported { what: what.clone() },
            MetricsError::Backend { operation, source, .. } => {
                CloneableError::Backend { operation: operation.clone(), message: source.to_string() }
            }
        };
        Self { kind, error }
    }
}

impl From<SharedFailure> for MetricsError {
    fn from(failure: SharedFailure) -> Self {
        match failure.error {
            CloneableError::BadQuery { query, reason } => Self::BadQuery { query, reason },
            CloneableError::Malformed { query, reason } => Self::Malformed { query, reason },
            CloneableError::Unsupported { what } => Self::Unsupported { what },
            CloneableError::Backend { operation, message } => {
                Self::Backend { operation, kind: failure.kind, source: Box::new(SharedMessage(message)) }
            }
        }
    }
}

/// A provider call not yet started.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

type Outcome = Result<Answer, SharedFailure>;

/// One question's shared call.
type Slot = Arc<OnceCell<Outcome>>;

/// A [`MetricsProvider`] that makes each identical question once and shares the
/// answer (see the module docs).
///
/// ```
/// # use std::{num::NonZeroU32, sync::Arc, time::Duration};
/// # use deploy_core::metrics::{CoalesceConfig, CoalescingMetrics, MetricsProvider, RateLimit};
/// # fn wrap(prometheus: Arc<dyn MetricsProvider>) -> Arc<dyn MetricsProvider> {
/// let limit = RateLimit::per_second(NonZeroU32::new(20).unwrap());
/// Arc::new(CoalescingMetrics::new(prometheus, CoalesceConfig::default().rate_limit(limit)))
/// # }
/// ```
pub struct CoalescingMetrics {
    inner: Arc<dyn MetricsProvider>,
    config: CoalesceConfig,
    limiter: Option<Limiter>,
    /// Where window 0 starts.
    epoch: Instant,
    slots: Mutex<HashMap<(u64, Question), Slot>>,
    requests: AtomicU64,
    provider_calls: AtomicU64,
}

impl std::fmt::Debug for CoalescingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoalescingMetrics").field("config", &self.config).field("stats", &self.stats()).finish()
    }
}

impl CoalescingMetrics {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn MetricsProvider>, config: CoalesceConfig) -> Self {
        let limiter = config.rate_limit.map(Limiter::new);
        Self {
            inner,
            config,
            limiter,
            epoch: Instant::now(),
            slots: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            provider_calls: AtomicU64::new(0),
        }
    }

    /// Questions asked and provider calls made so far.
    pub fn stats(&self) -> CoalesceStats {
        CoalesceStats {
            requests: self.requests.load(Ordering::Relaxed),
            provider_calls: self.provider_calls.load(Ordering::Relaxed),
        }
    }

    /// The sharing window `at` falls in, counted from when the wrapper was made.
    pub fn window_of(&self, at: Instant) -> u64 {
        let window = self.config.window.as_nanos().max(1);
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos() / window).unwrap_or(u64::MAX)
    }

    /// The slot that answers `question` in the current window: the window's own,
    /// or a new one when there is none or its call failed. Slots of past windows
    /// are dropped here (unless still in flight), so the map holds at most one
    /// window's questions.
    fn slot(&self, question: Question) -> Slot {
        let window = self.window_of(Instant::now());
        let Ok(mut slots) = self.slots.lock() else {
            // A panic while the lock was held: share nothing rather than fail.
            return Arc::new(OnceCell::new());
        };
        let key = (window, question);
        if let Some(slot) = slots.get(&key).filter(|s| !matches!(s.get(), Some(Err(_)))) {
            return slot.clone();
        }
        slots.retain(|(w, _), slot| (*w == window && !matches!(slot.get(), Some(Err(_)))) || slot.get().is_none());
        let slot: Slot = Arc::new(OnceCell::new());
        slots.insert(key, slot.clone());
        slot
    }

    /// Answers `question` from its slot, running `call` (lazy until polled) only when
    /// no other caller's call answers it.
    async fn ask(&self, question: Question, call: BoxFuture<'_, Result<Answer, MetricsError>>) -> Outcome {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot(question);
        // If the caller that runs the call is cancelled, the next waiter runs it.
        let outcome = slot
            .get_or_init(|| async {
                if let Some(limiter) = &self.limiter {
                    limiter.acquire().await;
                }
                self.provider_calls.fetch_add(1, Ordering::Relaxed);
                call.await.map_err(|error| SharedFailure::from(&error))
            })
            .await;
        outcome.clone()
    }
}

#[async_trait]
impl MetricsProvider for CoalescingMetrics {
    async fn query(&self, query: &MetricQuery) -> Result<MetricValue, MetricsError> {
        let question = Question::Instant { query: query.render(), interval: query.interval };
        match self.ask(question, Box::pin(async { self.inner.query(query).await.map(Answer::Instant) })).await {
            Ok(Answer::Instant(value)) => Ok(value),
            Ok(Answer::Range(_)) => Err(MetricsError::Malformed {
                query: query.render(),
                reason: "a shared answer of the wrong kind (a coalescer bug)".to_owned(),
            }),
            Err(failure) => Err(failure.into()),
        }
    }

    async fn query_range(
        &self,
        query: &MetricQuery,
        range: Duration,
        step: Duration,
    ) -> Result<Vec<f64>, MetricsError> {
        let question = Question::Range { query: query.render(), interval: query.interval, range, step };
        match self
            .ask(question, Box::pin(async move { self.inner.query_range(query, range, step).await.map(Answer::Range) }))
            .await
        {
            Ok(Answer::Range(values)) => Ok(values),
            Ok(Answer::Instant(_)) => Err(MetricsError::Malformed {
                query: query.render(),
                reason: "a shared answer of the wrong kind (a coalescer bug)".to_owned(),
            }),
            Err(failure) => Err(failure.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::model::{AppId, Name, Namespace, Track};

    /// A provider that answers after `delay` with the number of calls made so far,
    /// and fails while `failing` is set.
    #[derive(Default)]
    struct Counting {
        calls: AtomicU64,
        delay: Duration,
        failing: AtomicBool,
    }

    #[async_trait]
    impl MetricsProvider for Counting {
        async fn query(&self, query: &MetricQuery) -> Result<MetricValue, MetricsError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(MetricsError::Backend {
                    operation: format!("query {}", query.name),
                    kind: ErrorKind::Unavailable,
                    source: Box::new(SharedMessage("connection refused".to_owned())),
                });
            }
            Ok(MetricValue::Scalar(n as f64))
        }

        async fn query_range(&self, _: &MetricQuery, range: Duration, _: Duration) -> Result<Vec<f64>, MetricsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(vec![range.as_secs_f64()])
        }
    }

    fn query(app: &str, text: &str) -> MetricQuery {
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new(app).unwrap());
        MetricQuery::new("m", text, app, Track::Canary, Duration::from_secs(60))
    }

    fn wrap(inner: &Arc<Counting>, config: CoalesceConfig) -> Arc<CoalescingMetrics> {
        Arc::new(CoalescingMetrics::new(inner.clone(), config))
    }

    #[tokio::test(start_paused = true)]
    async fn a_thousand_callers_of_three_questions_make_three_calls() {
        let inner = Arc::new(Counting { delay: Duration::from_millis(50), ..Default::default() });
        let metrics = wrap(&inner, CoalesceConfig::default());
        let texts = ["sum(rate(errors[1m]))", "histogram_quantile(0.99, x)", "sum(rate(requests[1m]))"];
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let metrics = metrics.clone();
                let q = query(&format!("app-{i}"), texts[i % 3]);
                tokio::spawn(async move { metrics.query(&q).await })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await.unwrap(), Ok(MetricValue::Scalar(_))));
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.stats(), CoalesceStats { requests: 1000, provider_calls: 3 });
    }

    #[tokio::test(start_paused = true)]
    async fn queries_naming_different_apps_are_never_mixed() {
        let inner = Arc::new(Counting::default());
        let metrics = wrap(&inner, CoalesceConfig::default());
        let template = r#"sum(rate(errors{app="{{app}}"}[1m]))"#;
        let a = metrics.query(&query("a", template)).await.unwrap();
        let b = metrics.query(&query("b", template)).await.unwrap();
        assert_ne!(a, b, "app b was handed app a's answer");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        let range = metrics.query_range(&query("a", template), Duration::from_secs(300), Duration::from_secs(30)).await;
        assert_eq!(range.unwrap(), vec![300.0], "a range query is a different question from an instant one");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollout_looking_once_per_window_never_gets_the_same_answer_twice() {
        let inner = Arc::new(Counting::default());
        let metrics = wrap(&inner, CoalesceConfig::default().window(Duration::from_secs(1)));
        let q = query("a", "up");
        tokio::time::advance(Duration::from_millis(900)).await;
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(metrics.query(&q).await.unwrap());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let expected: Vec<_> = (1..=5).map(|n| MetricValue::Scalar(f64::from(n))).collect();
        assert_eq!(seen, expected, "every look one window apart gets its own answer");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_shared_within_its_window_and_then_asked_again() {
        let inner = Arc::new(Counting::default());
        let metrics = wrap(&inner, CoalesceConfig::default().window(Duration::from_secs(2)));
        let q = query("a", "up");
        assert_eq!(metrics.query(&q).await.unwrap(), MetricValue::Scalar(1.0));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(metrics.query(&q).await.unwrap(), MetricValue::Scalar(1.0));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(metrics.query(&q).await.unwrap(), MetricValue::Scalar(2.0));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_reaches_the_waiting_callers_but_is_not_remembered() {
        let inner = Arc::new(Counting { delay: Duration::from_millis(10), ..Default::default() });
        inner.failing.store(true, Ordering::SeqCst);
        let metrics = wrap(&inner, CoalesceConfig::default());
        let q = query("a", "up");
        let (first, second) = tokio::join!(metrics.query(&q), metrics.query(&q));
        for result in [first, second] {
            let error = result.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unavailable);
            assert!(error.to_string().contains("connection refused"), "{error}");
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        inner.failing.store(false, Ordering::SeqCst);
        assert_eq!(metrics.query(&q).await.unwrap(), MetricValue::Scalar(2.0), "the outage was remembered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_caller_hands_the_call_to_the_next_one() {
        let inner = Arc::new(Counting { delay: Duration::from_secs(1), ..Default::default() });
        let metrics = wrap(&inner, CoalesceConfig::default());
        let q = query("a", "up");
        let leader = tokio::time::timeout(Duration::from_millis(100), metrics.query(&q)).await;
        assert!(leader.is_err(), "the first caller gives up");
        assert_eq!(metrics.query(&q).await.unwrap(), MetricValue::Scalar(2.0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_holds_across_distinct_questions() {
        let inner = Arc::new(Counting::default());
        let limit = RateLimit::new(NonZeroU32::new(2).unwrap(), Duration::from_secs(1));
        let metrics = wrap(&inner, CoalesceConfig::default().rate_limit(limit));
        let start = Instant::now();
        for i in 0..6 {
            metrics.query(&query("a", &format!("q{i}"))).await.unwrap();
        }
        // Six distinct questions at two per second: the last starts after two seconds.
        assert!(start.elapsed() >= Duration::from_secs(2), "{:?}", start.elapsed());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 6);
    }
}
