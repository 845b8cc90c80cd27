//! Runs an [`AnalysisSpec`] against a track at its interval.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AnalysisOutcome, AnalysisReport, AnalysisSpec, CheckKind, Judge, JudgeInput, JudgeRegistry, Measurement,
    MeasurementOutcome, MultipleTesting, holm,
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
    /// The look (from 1) at which a decisive success settled the check.
    decided_at: Option<u32>,
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
/// use deploy_core::model::{AppId, Name, Namespace, Track, Version};
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
/// let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
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
    ///
    /// As in Argo Rollouts, a measurement that could not be taken (an error) does
    /// not count towards `count`: the check is measured again at the next interval,
    /// until `count` measurements were taken or more than
    /// `consecutive_error_limit` errors came in a row. Each check stops once its
    /// `count` is reached. When several checks pass a limit in the same round, the
    /// worst outcome decides (failed, then error, then inconclusive).
    pub async fn run(&self, mut on_measurement: impl FnMut(&Measurement) + Send) -> AnalysisReport {
        let spec = &self.spec;
        let checks = self.judges.len() + self.health.len();
        let mut tallies = vec![Tally::default(); checks];
        let mut measurements = Vec::new();
        let start = tokio::time::Instant::now() + spec.initial_delay.as_duration();
        let window = if spec.interval.is_zero() { Duration::from_secs(60) } else { spec.interval.as_duration() };
        // Errors add rounds, but a run of more than `consecutive_error_limit` of
        // them ends the analysis, so this bound is never the reason to stop.
        let max_rounds = spec
            .count
            .saturating_mul(spec.consecutive_error_limit.saturating_add(1))
            .saturating_add(spec.consecutive_error_limit.saturating_add(1));
        let mut round = 0;
        while round < max_rounds && tallies.iter().any(|t| !t.done(spec.count)) {
            tokio::time::sleep_until(start + spec.interval.as_duration().saturating_mul(round)).await;
            let mut taken: Vec<(usize, Measurement)> = Vec::with_capacity(checks);
            for (index, (check, judge)) in spec.metrics.iter().zip(&self.judges).enumerate() {
                if tallies[index].done(spec.count) {
                    continue;
                }
                let track = check.track.unwrap_or(self.target.candidate);
                let query = MetricQuery::new(&check.name, &check.query, self.target.app.clone(), track, window);
                let baseline =
                    MetricQuery::new(&check.name, &check.query, self.target.app.clone(), self.target.baseline, window);
                let (outcome, value, detail, mut evidence, decisive) = match &self.metrics {
                    Some(metrics) => {
                        match judge.judge(&JudgeInput::new(metrics.as_ref(), &query, &baseline, round)).await {
                            Ok(v) => (v.outcome, v.value, v.detail, v.evidence.map(Box::new), v.decisive),
                            Err(e) => (MeasurementOutcome::Error, None, format!("query failed: {e}"), None, false),
                        }
                    }
                    None => (MeasurementOutcome::Error, None, "no metrics provider".to_owned(), None, false),
                };
                // Only a verdict (not a missing one) can settle a check.
                let decisive =
                    decisive && matches!(outcome, MeasurementOutcome::Successful | MeasurementOutcome::Failed);
                if let Some(evidence) = &mut evidence {
                    evidence.query.clone_from(&check.query);
                }
                let check = check.name.clone();
                let m =
                    Measurement { check, kind: CheckKind::Metric, round, outcome, value, detail, evidence, decisive };
                taken.push((index, m));
            }
            let target = HealthTarget::new(self.target.app.clone(), self.target.candidate, self.target.release.clone());
            for (offset, check) in self.health.iter().enumerate() {
                let index = self.judges.len() + offset;
                if tallies[index].done(spec.count) {
                    continue;
                }
                let (outcome, detail) = match check.check(&target).await {
                    Ok(o) if o.healthy => (MeasurementOutcome::Successful, o.detail),
                    Ok(o) => (MeasurementOutcome::Failed, o.detail),
                    Err(e) => (MeasurementOutcome::Error, format!("check could not run: {e}")),
                };
                let check = check.name().to_owned();
                taken.push((
                    index,
                    Measurement {
                        check,
                        kind: CheckKind::HealthCheck,
                        round,
                        outcome,
                        value: None,
                        detail,
                        evidence: None,
                        decisive: false,
                    },
                ));
            }
            if spec.multiple_testing == MultipleTesting::Holm {
                let mut metrics: Vec<&mut Measurement> =
                    taken.iter_mut().filter(|(_, m)| m.kind == CheckKind::Metric).map(|(_, m)| m).collect();
                holm::correct_round(&mut metrics);
            }
            let mut verdict: Option<Decision> = None;
            for (index, m) in &taken {
                let tally = &mut tallies[*index];
                tally.record(m.outcome);
                if m.decisive && m.outcome == MeasurementOutcome::Successful {
                    tally.decided_at = Some(round + 1);
                }
                on_measurement(m);
                let Some((outcome, reason)) = tally.breach(spec, m, round + 1) else { continue };
                if verdict.as_ref().is_none_or(|(worst, _, _)| severity(outcome) > severity(*worst)) {
                    verdict = Some((outcome, Some((m.check.clone(), m.kind)), reason));
                }
            }
            measurements.extend(taken.into_iter().map(|(_, m)| m));
            if let Some((outcome, decided_by, reason)) = verdict {
                let looks = round + 1;
                return AnalysisReport { name: spec.name.clone(), outcome, decided_by, reason, measurements, looks };
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
                    looks: round + 1,
                };
            }
            round += 1;
        }
        let looks = round;
        // A check that never had data evaluated nothing: silence is not a pass.
        let silent: Vec<&str> = spec
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .chain(self.health.iter().map(|h| h.name()))
            .zip(&tallies)
            .filter(|(_, t)| t.successful + t.failed == 0)
            .map(|(name, _)| name)
            .collect();
        if let Some(first) = silent.first() {
            let kind = if self.spec.metrics.iter().any(|m| m.name == *first) {
                CheckKind::Metric
            } else {
                CheckKind::HealthCheck
            };
            return AnalysisReport {
                name: spec.name.clone(),
                outcome: AnalysisOutcome::Inconclusive,
                decided_by: Some(((*first).to_owned(), kind)),
                reason: format!("{} evaluated nothing: every measurement had no data", silent.join(", ")),
                measurements,
                looks,
            };
        }
        let errors = measurements.iter().filter(|m| m.outcome == MeasurementOutcome::Error).count();
        let decided: Vec<String> = spec
            .metrics
            .iter()
            .zip(&tallies)
            .filter_map(|(m, t)| t.decided_at.map(|look| format!("{} at look {look}", m.name)))
            .collect();
        let mut reason = if decided.len() == checks {
            format!(
                "every check decided by its sequential test ({}): {looks} of {} looks used",
                decided.join(", "),
                spec.count
            )
        } else if decided.is_empty() {
            format!("{} measurements of every check within limits", spec.count)
        } else {
            format!(
                "every check within limits ({} decided early by its sequential test); {looks} of {} looks used",
                decided.join(", "),
                spec.count
            )
        };
        if errors > 0 {
            reason.push_str(&format!(" ({errors} errors measured again)"));
        }
        AnalysisReport {
            name: spec.name.clone(),
            outcome: AnalysisOutcome::Successful,
            decided_by: None,
            reason,
            measurements,
            looks,
        }
    }
}

/// How an analysis ended early: the outcome, the deciding check, the reason.
type Decision = (AnalysisOutcome, Option<(String, CheckKind)>, String);

/// How bad an outcome is, as Argo Rollouts ranks them: failed is worse than error,
/// error worse than inconclusive.
fn severity(outcome: AnalysisOutcome) -> u8 {
    match outcome {
        AnalysisOutcome::Failed => 3,
        AnalysisOutcome::Error => 2,
        AnalysisOutcome::Inconclusive => 1,
        _ => 0,
    }
}

impl Tally {
    /// Measurements that count towards `count`: all but errors.
    fn counted(&self) -> u32 {
        self.successful + self.failed + self.inconclusive
    }

    /// Whether the check needs no further measurement: `count` reached, or a
    /// decisive success settled it.
    fn done(&self, count: u32) -> bool {
        self.counted() >= count || self.decided_at.is_some()
    }

    fn record(&mut self, outcome: MeasurementOutcome) {
        match outcome {
            MeasurementOutcome::Successful => self.successful += 1,
            MeasurementOutcome::Failed => self.failed += 1,
            MeasurementOutcome::Inconclusive => self.inconclusive += 1,
            MeasurementOutcome::Error => {}
        }
        if outcome == MeasurementOutcome::Error {
            self.consecutive_errors += 1;
        } else {
            self.consecutive_errors = 0;
        }
    }

    /// The limit this check has just passed, if any, with the reason.
    fn breach(&self, spec: &AnalysisSpec, m: &Measurement, look: u32) -> Option<(AnalysisOutcome, String)> {
        if m.decisive && m.outcome == MeasurementOutcome::Failed {
            Some((
                AnalysisOutcome::Failed,
                format!("{} failed decisively at look {look} of {}: {}", m.check, spec.count, m.detail),
            ))
        } else if self.consecutive_errors > spec.consecutive_error_limit {
            Some((
                AnalysisOutcome::Error,
                format!(
                    "{} could not be measured {} times in a row (limit {}): {}",
                    m.check, self.consecutive_errors, spec.consecutive_error_limit, m.detail
                ),
            ))
        } else if self.inconclusive > spec.inconclusive_limit {
            Some((
                AnalysisOutcome::Inconclusive,
                format!(
                    "{} was inconclusive {} times (limit {}): {}",
                    m.check, self.inconclusive, spec.inconclusive_limit, m.detail
                ),
            ))
        } else if self.failed > spec.failure_limit {
            Some((
                AnalysisOutcome::Failed,
                format!("{} failed {} times (limit {}): {}", m.check, self.failed, spec.failure_limit, m.detail),
            ))
        } else {
            None
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
    use crate::model::{HumanDuration, Name, Namespace};

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
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
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
        let report = r.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Successful);
        assert_eq!(report.measurements.len(), 6, "two errors measured again, then four counted");
        let (r, _) = runner(spec(10).consecutive_error_limit(2), vec![Err(ErrorKind::Unavailable)]);
        let report = r.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Error);
        assert_eq!(report.measurements.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_do_not_count_towards_count_as_in_argo() {
        let script = vec![Ok(MetricValue::Scalar(0.1)), Err(ErrorKind::Timeout), Ok(MetricValue::Scalar(0.2))];
        let (r, provider) = runner(spec(3), script);
        let t0 = tokio::time::Instant::now();
        let mut seen = Vec::new();
        let report = r.run(|m| seen.push((m.round, m.outcome))).await;
        assert_eq!(report.outcome, AnalysisOutcome::Successful);
        assert_eq!(
            seen,
            [
                (0, MeasurementOutcome::Successful),
                (1, MeasurementOutcome::Error),
                (2, MeasurementOutcome::Successful),
                (3, MeasurementOutcome::Successful)
            ],
            "every measurement is reported, the error included"
        );
        assert_eq!(report.measurements.len(), 4);
        assert!(report.reason.contains("1 errors measured again"), "{}", report.reason);
        let offsets: Vec<u64> = provider.calls.lock().unwrap().iter().map(|t| (*t - t0).as_secs()).collect();
        assert_eq!(offsets, [0, 30, 60, 90]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_worst_outcome_of_a_round_decides() {
        // Check "b" (compared with the baseline) has no candidate data; check "a" fails
        // in the same round. Argo ranks failed above inconclusive, whatever the order.
        let s = AnalysisSpec::new("a")
            .metric(MetricCheck::new("b", "q", JudgeSpec::ratio(crate::analysis::Direction::Increase, 1.5)))
            .metric(MetricCheck::new("a", "q", JudgeSpec::max(1.0)))
            .count(3)
            .interval(HumanDuration::new(Duration::from_secs(30)));
        let script = vec![Ok(MetricValue::Empty), Ok(MetricValue::Scalar(1.0)), Ok(MetricValue::Scalar(2.0))];
        let (r, _) = runner(s, script);
        let report = r.run(|_| {}).await;
        assert_eq!(report.outcome, AnalysisOutcome::Failed, "{}", report.reason);
        assert_eq!(report.decided_by, Some(("a".to_owned(), CheckKind::Metric)));
        let outcomes: Vec<MeasurementOutcome> = report.measurements.iter().map(|m| m.outcome).collect();
        assert_eq!(outcomes, [MeasurementOutcome::Inconclusive, MeasurementOutcome::Failed]);
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
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
        let target = AnalysisTarget::new(app, Track::Canary, Track::Stable, Version::new("2").unwrap());
        let err = AnalysisRunner::new(s, target, None, &JudgeRegistry::new(), &[]).err().unwrap();
        assert_eq!(err.len(), 3, "{err}");
    }
}
