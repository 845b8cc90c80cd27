use super::*;

#[test]
fn thinning_keeps_the_spread_and_short_samples_whole() {
    let long: Vec<f64> = (0..100_000).map(f64::from).collect();
    let thinned = thin(long, MAX_JUDGE_SAMPLE);
    assert_eq!(thinned.len(), MAX_JUDGE_SAMPLE);
    assert_eq!(thinned[0], 0.0);
    assert_eq!(thinned[MAX_JUDGE_SAMPLE - 1], 99_995.0);
    assert_eq!(thin(vec![1.0, 2.0], MAX_JUDGE_SAMPLE), [1.0, 2.0]);
}

/// Long series: 60 000 values per track, a canary 30 % higher.
struct LongSeries;

#[async_trait]
impl crate::metrics::MetricsProvider for LongSeries {
    async fn query(&self, _: &crate::metrics::MetricQuery) -> Result<crate::metrics::MetricValue, MetricsError> {
        Ok(crate::metrics::MetricValue::Empty)
    }

    async fn query_range(
        &self,
        query: &crate::metrics::MetricQuery,
        _: std::time::Duration,
        _: std::time::Duration,
    ) -> Result<Vec<f64>, MetricsError> {
        let base = if query.track == crate::model::Track::Canary { 130.0 } else { 100.0 };
        Ok((0..60_000).map(|i| base + f64::from(i % 101) * 0.1).collect())
    }
}

#[tokio::test]
async fn long_series_are_capped_and_judged_off_the_async_thread() {
    use crate::model::{AppId, Name, Namespace, Track};
    let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
    let query = |track| {
        crate::metrics::MetricQuery::new("latency", "q", app.clone(), track, std::time::Duration::from_secs(60))
    };
    let (candidate, baseline) = (query(Track::Canary), query(Track::Stable));
    let judge = MannWhitneyJudge::new(
        MannWhitneyClassifier::new(Direction::Increase),
        "1d".parse().unwrap(),
        "1s".parse().unwrap(),
    );
    // A current-thread runtime: the statistics must not need it to be free.
    let verdict = judge.judge(&JudgeInput::new(&LongSeries, &candidate, &baseline, 0)).await.unwrap();
    assert_eq!(verdict.outcome, MeasurementOutcome::Failed, "{}", verdict.detail);
    assert!(
        verdict.detail.ends_with("samples of 60000 and 60000 values thinned to at most 20000)"),
        "{}",
        verdict.detail
    );
}
