//! Runs an [`AnalysisSpec`] against a track at its interval.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AnalysisOutcome, AnalysisReport, AnalysisSpec, CheckKind, Judge, JudgeInput, JudgeRegistry, Measurement,
    MeasurementOutcome,
};
use crate::health::{HealthCheck, HealthTarget};
use crate::metrics::{MetricQuery, MetricsProvider};
use crate::model::{AppId, Track, ValidationError, ValidationErrors, Version};

/// What an analysis looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnalysisTarget {
    /// The application.
    pub app: AppId,
    /// The track that runs the new release.
    pub candidate: Track,
    /// The track that runs the previous release (for comparing judges).
    pub baseline: Track,
    /// The new release's version, for health checks.
    pub release: Version,
}

impl AnalysisTarget {
    /// A target.
    pub fn new(app: AppId, candidate: Track, baseline: Track, release: Version) -> Self {
        Self { app, candidate, baseline, release }
    }
}

/// Per-check tallies, in the order of the spec.
#[derive(Debug, Default, Clone)]
struct Tally {
    failed: u32,
    inconclusive: u32,
    consecutive_errors: u32,
    successful: u32,
}

/// Measures every check of a spec `count` times, `interval` apart, and stops as soon
/// as a limit is passed. Waits use `tokio::time`, so under a paused clock an
/// analysis of an hour runs at once.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use deploy_core::analysis::*;
/// use deploy_core::metrics::{MetricQuery, MetricValue, MetricsError, MetricsProvider};
/// use deploy_core::model::{AppId, Name, Track, Version};
///
/// struct Constant(f64);
/// #[deploy_core::async_trait]
/// impl MetricsProvider for Constant {
///     async fn query(&self, _: &MetricQuery) -> Result<MetricValue, MetricsError> {
///         Ok(MetricValue::Scalar(self.0))
///     }
/// }
/// let spec = AnalysisSpec::new("errors")
///     .metric(MetricCheck::new("error-rate", "q", JudgeSpec::max(0.01)))
///     .count(3)
///     .failure_limit(1);
/// let app = AppId::new(Name::new("shop").unwrap(), Name::new("web").unwrap());
/// let target = AnalysisTarget::new(app, Track::Canary, Track::Stable, Version::new("2.0.0").unwrap());
/// let runner = AnalysisRunner::new(spec, target, Some(Arc::new(Constant(0.05))), &JudgeRegistry::new(), &[]).unwrap();
/// let report = runner.run(|_| {}).await;
/// assert_eq!(report.outcome, AnalysisOutcome::Failed);
/// assert_eq!(report.measurements.len(), 2); // stopped once the limit of 1 was passed
/// # });
/// ```
pub struct AnalysisRunner {
    spec: AnalysisSpec,
    target: AnalysisTarget,
    metrics: Option<Arc<dyn MetricsProvider>>,
    judges: Vec<Arc<dyn Judge>>,
    health: Vec<Arc<dyn HealthCheck>>,
}

impl AnalysisRunner {
    /// A runner for `spec`; fails with every problem when a judge is unknown, a named
    /// health check is not among `health_checks`, or metrics are asked for without a
    /// provider.
    pub fn new(
        spec: AnalysisSpec,
        target: AnalysisTarget,
        metrics: Option<Arc<dyn MetricsProvider>>,
        judges: &JudgeRegistry,
        health_checks: &[Arc<dyn HealthCheck>],
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        spec.collect_problems(&format!("analysis {}", spec.name), &mut errors);
        if !spec.metrics.is_empty() && metrics.is_none() {
            errors.push(ValidationError::new(
                format!("analysis {}", spec.name),
                spec.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(","),
                "has metric checks but the engine has no metrics provider",
            ));
        }
        let mut resolved = Vec::new();
        for check in &spec.metrics {
            match judges.resolve(&check.judge) {
                Ok(judge) => resolved.push(judge),
                Err(reason) => errors.push(ValidationError::new(
                    format!("analysis {} metric {}", spec.name, check.name),
                    check.judge.to_string(),
                    reason,
                )),
            }
        }
        let mut health = Vec::new();
        for name in &spec.health_checks {
            match health_checks.iter().find(|h| h.name() == name) {
                Some(check) => health.push(Arc::clone(check)),
                None => errors.push(ValidationError::new(
                    format!("analysis {} health check", spec.name),
                    name.clone(),
                    "is not among the engine's health checks",
                )),
            }
        }
        errors.into_result(Self { spec, target, metrics, judges: resolved, health })
    }

    /// Runs the analysis, calling `on_measurement` for each measurement as it is
    /// taken, and returns the report with every measurement.
    pub async fn run(&self, mut on_measurement: impl FnMut(&Measurement) + Send) -> AnalysisReport {
        let spec = &self.spec;
        let checks = self.judges.len() + self.health.len();
        let mut tallies = vec![Tally::default(); checks];
        let mut measurements = Vec::new();
        let start = tokio::time::Instant::now() + spec.initial_delay.as_duration();
        let window = if spec.interval.is_zero() { Duration::from_secs(60) } else { spec.interval.as_duration() };
        for round in 0..spec.count {
            tokio::time::sleep_until(start + spec.interval.as_duration().saturating_mul(round)).await;
            let mut taken = Vec::with_capacity(checks);
            for (check, judge) in spec.metrics.iter().zip(&self.judges) {
                let track = check.track.unwrap_or(self.target.candidate);
                let query = MetricQuery::new(&check.name, &check.query, self.target.app.clone(), track, window);
                let baseline =
                    MetricQuery::new(&check.name, &check.query, self.target.app.clone(), self.target.baseline, window);
                let (outcome, value, detail) = match &self.metrics {
                    Some(metrics) => {
                        match judge.judge(&JudgeInput::new(metrics.as_ref(), &query, &baseline, round)).await {
                            Ok(v) => (v.outcome, v.value, v.detail),
                            Err(e) => (MeasurementOutcome::Error, None, format!("query failed: {e}")),
                        }
                    }
                    None => (MeasurementOutcome::Error, None, "no metrics provider".to_owned()),
                };
                taken.push(Measurement {
                    check: check.name.clone(),
                    kind: CheckKind::Metric,
                    round,
                    outcome,
                    value,
                    detail,
                });
            }
            let target = HealthTarget::new(self.target.app.clone(), self.target.candidate, self.target.release.clone());
            for check in &self.health {
                let (outcome, detail) = match check.check(&target).await {
                    Ok(o) if o.healthy => (MeasurementOutcome::Successful, o.detail),
                    Ok(o) => (MeasurementOutcome::Failed, o.detail),
                    Err(e) => (MeasurementOutcome::Error, format!("check could not run: {e}")),
                };
                taken.push(Measurement {
                    check: check.name().to_owned(),
                    kind: CheckKind::HealthCheck,
                    round,
                    outcome,
                    value: None,
                    detail,
                });
            }
            for (m, tally) in taken.iter().zip(tallies.iter_mut()) {
                match m.outcome {
                    MeasurementOutcome::Successful => tally.successful += 1,
                    MeasurementOutcome::Failed => tally.failed += 1,
                    MeasurementOutcome::Inconclusive => tally.inconclusive += 1,
                    MeasurementOutcome::Error => {}
                }
                if m.outcome == MeasurementOutcome::Error {
                    tally.consecutive_errors += 1;
                } else {
                    tally.consecutive_errors = 0;
                }
                on_measurement(m);
            }
            let verdict = taken.iter().zip(&tallies).find_map(|(m, t)| {
                let decided = Some((m.check.clone(), m.kind));
                if t.failed > spec.failure_limit {
                    Some((
                        AnalysisOutcome::Failed,
                        decided,
                        format!("{} failed {} times (limit {}): {}", m.check, t.failed, spec.failure_limit, m.detail),
                    ))
                } else if t.consecutive_errors > spec.consecutive_error_limit {
                    Some((
                        AnalysisOutcome::Error,
                        decided,
                        format!(
                            "{} could not be measured {} times in a row (limit {}): {}",
                            m.check, t.consecutive_errors, spec.consecutive_error_limit, m.detail
                        ),
                    ))
                } else if t.inconclusive > spec.inconclusive_limit {
                    Some((
                        AnalysisOutcome::Inconclusive,
                        decided,
                        format!("{} had no data {} times (limit {})", m.check, t.inconclusive, spec.inconclusive_limit),
                    ))
                } else {
                    None
                }
            });
            measurements.extend(taken);
            if let Some((outcome, decided_by, reason)) = verdict {
                return AnalysisReport { name: spec.name.clone(), outcome, decided_by, reason, measurements };
            }
            if let Some(limit) = spec.success_limit
                && tallies.iter().all(|t| t.successful >= limit)
            {
                let reason = format!("every check succeeded {limit} times");
                return AnalysisReport {
                    name: spec.name.clone(),
                    outcome: AnalysisOutcome::Successful,
                    decided_by: None,
                    reason,
                    measurements,
                };
            }
        }
        let reason = format!("{} measurements within limits", spec.count);
        AnalysisReport {
            name: spec.name.clone(),
            outcome: AnalysisOutcome::Successful,
            decided_by: None,
            reason,
            measurements,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::analysis::{JudgeSpec, MetricCheck};
    use crate::error::ErrorKind;
    use crate::metrics::{MetricValue, MetricsError};
    use crate::model::{HumanDuration, Name};

    /// Answers from a script, one entry per call; records when each call came.
    struct Scripted {
        values: Mutex<Vec<Result<MetricValue, ErrorKind>>>,
        calls: Mutex<Vec<tokio::time::Instant>>,
    }

    #[async_trait::async_trait]
    impl MetricsProvider for Scripted {
        async fn query(&self, _: &MetricQuery) -> Result<MetricValue, MetricsError> {
            self.calls.lock().unwrap().push(tokio::time::Instant::now());
            let mut values = self.values.lock().unwrap();
            let next = if values.len() > 1 { values.remove(0) } else { values[0].clone() };
            next.map_err(|kind| MetricsError::backend("query", kind, "scripted"))
        }
    }

    fn runner(spec: AnalysisSpec, values: Vec<Result<MetricValue, ErrorKind>>) -> (AnalysisRunner, Arc<Scripted>) {
        let provider = Arc::new(Scripted { values: Mutex::new(values), calls: Mutex::new(Vec::new()) });
        let app = AppId::new(Name::new("shop").unwrap(), Name::new("web").unwrap());
        let target = AnalysisTarget::new(app, Track::Canary, Track::Stable, Version::new("2").unwrap());
        let metrics: Arc<dyn MetricsProvider> = provider.clone();
        (AnalysisRunner::new(spec, target, Some(metrics), &JudgeRegistry::new(), &[]).unwrap(), provider)
    }

    fn spec(count: u32) -> AnalysisSpec {
        AnalysisSpec::new("a")
            .metric(MetricCheck::new("m", "q", JudgeSpec::max(1.0)))
            .count(count)
            .interval(HumanDuration::new(Duration::from_secs(30)))
    }

    #[tokio::test(start_paused = true)]
    async fn measures_at_the_interval_and_succeeds() {
        let (runner, provider) = runner(spec(4), vec![Ok(MetricValue::Scalar(0.5))]);
        let t0 = tokio::time::Instant::now();
        let report = runner.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Successful);
        assert_eq!(report.measurements.len(), 4);
        let offsets: Vec<u64> = provider.calls.lock().unwrap().iter().map(|t| (*t - t0).as_secs()).collect();
        assert_eq!(offsets, [0, 30, 60, 90]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_data_is_inconclusive_with_its_own_limit() {
        let s = spec(5).inconclusive_limit(2);
        let (r, _) = runner(s.clone(), vec![Ok(MetricValue::Empty)]);
        let report = r.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Inconclusive);
        assert_eq!(report.measurements.len(), 3);
        // Two silent rounds within the limit, then data: not a failure, not a pass on silence.
        let (r, _) = runner(s, vec![Ok(MetricValue::Empty), Ok(MetricValue::Empty), Ok(MetricValue::Scalar(0.1))]);
        let report = r.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Successful);
        assert_eq!(report.measurements.iter().filter(|m| m.outcome == MeasurementOutcome::Inconclusive).count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_limit_and_consecutive_errors() {
        let (r, _) = runner(
            spec(5).failure_limit(1),
            vec![Ok(MetricValue::Scalar(2.0)), Ok(MetricValue::Scalar(0.1)), Ok(MetricValue::Scalar(3.0))],
        );
        let report = r.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Failed);
        assert_eq!(report.measurements.len(), 3);
        assert_eq!(report.decided_by, Some(("m".to_owned(), CheckKind::Metric)));
        assert!(report.reason.contains("3 > 1"), "{}", report.reason);

        // Errors reset when a measurement succeeds; only a run of them counts.
        let errs = vec![Err(ErrorKind::Unavailable), Err(ErrorKind::Unavailable), Ok(MetricValue::Scalar(0.1))];
        let (r, _) = runner(spec(4).consecutive_error_limit(2), errs);
        assert_eq!(r.run(|_| {}).await.outcome, AnalysisOutcome::Successful);
        let (r, _) = runner(spec(10).consecutive_error_limit(2), vec![Err(ErrorKind::Unavailable)]);
        let report = r.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Error);
        assert_eq!(report.measurements.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn success_limit_ends_early() {
        let (r, provider) = runner(spec(10).success_limit(1), vec![Ok(MetricValue::Scalar(0.1))]);
        let report = r.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Successful);
        assert_eq!(provider.calls.lock().unwrap().len(), 1);
    }

    #[test]
    fn unknown_judges_and_health_checks_are_rejected_together() {
        let s = AnalysisSpec::new("a")
            .metric(MetricCheck::new("m", "q", JudgeSpec::custom("mann-whitney", serde_json::Value::Null)))
            .health_check("http");
        let app = AppId::new(Name::new("shop").unwrap(), Name::new("web").unwrap());
        let target = AnalysisTarget::new(app, Track::Canary, Track::Stable, Version::new("2").unwrap());
        let err = AnalysisRunner::new(s, target, None, &JudgeRegistry::new(), &[]).err().unwrap();
        assert_eq!(err.len(), 3, "{err}");
    }
}
