//! Analysis judges at work in the engine, on the test kit with a paused clock:
//! the sequential judge ends an analysis early when its confidence sequence
//! excludes the threshold (a regression, or clearly none beyond the margin), and
//! the record shows the looks used; the per-category (multinomial) sequential
//! count test; and Kayenta's canary score over several metrics as a judge, with
//! critical metrics. Every record is replayed.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::{Fixture, Strat, pct, secs};
use deploy_core::analysis::kayenta::{ScoreSpec, ScoreThresholds, ScoredCheck};
use deploy_core::analysis::sequential::{CountCategory, SequentialSpec};
use deploy_core::analysis::{
    AnalysisOutcome, AnalysisSpec, Direction, JudgeSpec, MeasurementOutcome, MetricCheck, replay,
};
use deploy_core::engine::{RolloutEvent, RolloutRequest};
use deploy_core::model::{DeploymentRecord, DeploymentStatus, Track};
use deploy_core::plan::PauseKind;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::MetricScript;

/// A deterministic, noisy-looking series around `centre` (uniform, ±10).
fn series(centre: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            #[expect(clippy::cast_precision_loss, reason = "test noise")]
            let unit = (state % 10_000) as f64 / 10_000.0;
            centre + (unit - 0.5) * 20.0
        })
        .collect()
}

/// `looks` windows of 10 values around `centre`, one per range query.
fn windows(centre: f64, looks: u64, seed: u64) -> MetricScript {
    MetricScript::Samples((0..looks).map(|look| series(centre, 10, seed * 1_000 + look)).collect())
}

/// Runs a canary (50 %, then 100 %) whose analyses are `analysis`; returns the
/// stored record.
async fn rollout(f: &Fixture, analysis: &AnalysisSpec) -> DeploymentRecord {
    let plan = Canary::progressive([50, 100].map(pct), analysis).plan(&PlanInput::new(common::REPLICAS));
    let run = f.engine.run(RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone()));
    // A rollout that pauses for a decision would wait for ever: fail instead.
    let Ok(report) = tokio::time::timeout(std::time::Duration::from_secs(6 * 3600), run).await else {
        panic!("the rollout did not end within six hours: it paused for a decision");
    };
    let report = report.unwrap();
    f.kit.history().records().into_iter().find(|r| r.id == report.record.id).unwrap()
}

fn assert_replays(record: &DeploymentRecord) {
    let report = replay(record);
    assert!(report.reproduced(), "{report}: {:?}", report.differences);
    assert_eq!(report.not_replayable, 0, "{report}");
    assert!(report.checked > 0);
    // Through the store's JSON (floats may move by an ulp, which no verdict here
    // is close enough to a threshold to notice).
    let back: DeploymentRecord = serde_json::from_str(&serde_json::to_string(record).unwrap()).unwrap();
    let again = replay(&back);
    assert!(again.reproduced() && again.checked == report.checked, "{again}");
    let looks = |r: &DeploymentRecord| r.analyses.iter().map(|a| a.report.looks).collect::<Vec<u32>>();
    assert_eq!(looks(&back), looks(record));
}

fn latency_analysis(margin: f64) -> AnalysisSpec {
    let judge = SequentialSpec::continuous(Direction::Increase, secs(30), secs(3)).margin(margin);
    AnalysisSpec::new("latency")
        .metric(MetricCheck::new("latency", "histogram_quantile(0.5, latency)", JudgeSpec::Sequential(judge)))
        .interval(secs(30))
        .count(20)
        .failure_limit(3)
}

#[tokio::test(start_paused = true)]
async fn a_clear_regression_ends_the_analysis_at_once_whatever_the_failure_limit() {
    let f = Fixture::new(Strat::Canary);
    let m = f.kit.metric_values();
    m.script("latency", Track::Stable, windows(100.0, 40, 1));
    m.script("latency", Track::Canary, windows(130.0, 40, 2));
    let started = tokio::time::Instant::now();
    let record = rollout(&f, &latency_analysis(0.0)).await;
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    assert!(record.cause.as_ref().unwrap().message.contains("failed decisively"), "{:?}", record.cause);
    let analysis = &record.analyses[0];
    assert_eq!(analysis.report.outcome, AnalysisOutcome::Failed);
    // One look of the 20, although the failure limit (3) would allow three more failures.
    assert_eq!(analysis.report.looks, 1, "{}", analysis.report.reason);
    assert_eq!(analysis.report.measurements.len(), 1);
    assert!(analysis.report.measurements[0].decisive);
    assert!(analysis.report.reason.contains("failed decisively at look 1 of 20"), "{}", analysis.report.reason);
    assert_eq!(m.queries("latency", Track::Canary), 1, "no look after the decision");
    assert!(started.elapsed() < std::time::Duration::from_secs(20 * 30), "it did not wait out the analysis");
    assert_replays(&record);
}

#[tokio::test(start_paused = true)]
async fn clearly_no_regression_ends_each_analysis_early_and_the_record_shows_the_looks() {
    let f = Fixture::new(Strat::Canary);
    let m = f.kit.metric_values();
    m.script("latency", Track::Stable, windows(100.0, 40, 3));
    m.script("latency", Track::Canary, windows(100.0, 40, 4));
    let record = rollout(&f, &latency_analysis(5.0)).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded, "{:?}", record.cause);
    assert!(record.analyses.len() >= 2, "{:?}", record.analyses);
    let mut used = 0;
    for analysis in &record.analyses {
        let report = &analysis.report;
        assert_eq!(report.outcome, AnalysisOutcome::Successful);
        assert!(report.looks > 1 && report.looks < 20, "decided early: {} looks ({})", report.looks, report.reason);
        assert_eq!(report.measurements.len() as u32, report.looks);
        let last = report.measurements.last().unwrap();
        assert!(last.decisive && last.outcome == MeasurementOutcome::Successful, "{}", last.detail);
        assert!(report.measurements.iter().rev().skip(1).all(|m| !m.decisive));
        assert!(report.reason.contains(&format!("{} of 20 looks used", report.looks)), "{}", report.reason);
        // The confidence sequence lies within the margin at the deciding look.
        let bounds = last.evidence.as_ref().unwrap().statistics.bounds.unwrap();
        assert!(bounds.1 <= 5.0, "{bounds:?}");
        used += report.looks as usize;
    }
    assert_eq!(m.queries("latency", Track::Canary), used, "one query per look used, none after");
    // Without a margin nothing is clear early: all 20 looks are taken.
    let f = Fixture::new(Strat::Canary);
    let m = f.kit.metric_values();
    m.script("latency", Track::Stable, windows(100.0, 40, 3));
    m.script("latency", Track::Canary, windows(100.0, 40, 4));
    let strict = rollout(&f, &latency_analysis(0.0)).await;
    assert_eq!(strict.analyses[0].report.looks, 20);
    assert_replays(&record);
    assert_replays(&strict);
}

fn status_analysis() -> AnalysisSpec {
    let categories = SequentialSpec::categories([
        CountCategory::new("2xx", "sum(increase(http_requests_total{code=~\"2..\"}[1m]))")
            .direction(Direction::Decrease),
        CountCategory::new("4xx", "sum(increase(http_requests_total{code=~\"4..\"}[1m]))"),
        CountCategory::new("5xx", "sum(increase(http_requests_total{code=~\"5..\"}[1m]))"),
    ]);
    AnalysisSpec::new("status")
        .metric(MetricCheck::new("status", "sum(increase(http_requests_total[1m]))", JudgeSpec::Sequential(categories)))
        .interval(secs(30))
        .count(5)
}

fn set_status(f: &Fixture, track: Track, ok: f64, client: f64, server: f64) {
    let m = f.kit.metric_values();
    m.set("status", track, ok + client + server);
    m.set("status-2xx", track, ok);
    m.set("status-4xx", track, client);
    m.set("status-5xx", track, server);
}

#[tokio::test(start_paused = true)]
async fn per_category_counts_pass_a_like_canary_and_fail_on_doubled_5xx() {
    let f = Fixture::new(Strat::Canary);
    for track in Track::ALL {
        set_status(&f, track, 9_700.0, 200.0, 100.0);
    }
    let record = rollout(&f, &status_analysis()).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded, "{:?}", record.cause);
    let first = &record.analyses[0].report.measurements[0];
    let stats = &first.evidence.as_ref().unwrap().statistics;
    let names: Vec<&str> = stats.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["2xx", "4xx", "5xx"]);
    assert_eq!(first.evidence.as_ref().unwrap().candidate, [10_000.0, 9_700.0, 200.0, 100.0]);
    assert_replays(&record);

    let f = Fixture::new(Strat::Canary);
    for track in Track::ALL {
        set_status(&f, track, 9_700.0, 200.0, 100.0);
    }
    set_status(&f, Track::Canary, 9_600.0, 200.0, 200.0);
    let record = rollout(&f, &status_analysis()).await;
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    let report = &record.analyses[0].report;
    assert_eq!((report.outcome, report.looks), (AnalysisOutcome::Failed, 1), "{}", report.reason);
    // Fewer 2xx is worse too (its direction is a decrease).
    assert!(report.reason.contains("regression in 2xx, 5xx"), "{}", report.reason);
    assert_replays(&record);

    // Fewer errors than the baseline is no regression, however clear.
    let f = Fixture::new(Strat::Canary);
    for track in Track::ALL {
        set_status(&f, track, 9_700.0, 200.0, 100.0);
    }
    set_status(&f, Track::Canary, 9_850.0, 100.0, 50.0);
    let record = rollout(&f, &status_analysis()).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded, "{:?}", record.cause);
}

fn score_analysis() -> AnalysisSpec {
    let score = ScoreSpec::new(
        [
            ScoredCheck::new("p50", "histogram_quantile(0.5, latency)").group("latency"),
            ScoredCheck::new("p99", "histogram_quantile(0.99, latency)").group("latency"),
            ScoredCheck::new("errors", "sum(rate(errors[1m]))").critical(),
        ],
        secs(30),
        secs(3),
    )
    .thresholds(ScoreThresholds::new(90.0, 50.0));
    AnalysisSpec::new("kayenta")
        .metric(MetricCheck::new("canary-score", "kayenta", JudgeSpec::CanaryScore(score)))
        .interval(secs(30))
        .count(3)
        .failure_limit(2)
}

/// Scripts the three scored metrics; `worse` are those whose canary is 30 higher.
fn score_world(worse: &[&str]) -> Fixture {
    let f = Fixture::new(Strat::Canary);
    let m = f.kit.metric_values();
    for (i, name) in (0u64..).zip(["p50", "p99", "errors"]) {
        let shift = if worse.contains(&name) { 30.0 } else { 0.0 };
        m.script(name, Track::Stable, windows(100.0, 10, 10 + i));
        // The same noise on both tracks: a metric without a shift is like the baseline.
        m.script(name, Track::Canary, windows(100.0 + shift, 10, 10 + i));
    }
    f
}

#[tokio::test(start_paused = true)]
async fn the_canary_score_judges_several_metrics_and_a_critical_one_fails_the_run() {
    // Every metric like the baseline: score 100, the rollout succeeds.
    let f = score_world(&[]);
    let record = rollout(&f, &score_analysis()).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded, "{:?}", record.cause);
    let m = &record.analyses[0].report.measurements[0];
    assert_eq!((m.outcome, m.value), (MeasurementOutcome::Successful, Some(100.0)), "{}", m.detail);
    let evidence = m.evidence.as_ref().unwrap();
    assert_eq!(evidence.metrics.len(), 3);
    // Identical samples pass without a test.
    assert!(evidence.metrics.iter().all(|e| e.candidate.len() == 10 && e.candidate == e.baseline));
    assert_replays(&record);

    // The critical metric deviates: the whole analysis fails at its first look,
    // although the failure limit (2) tolerates failed measurements.
    let f = score_world(&["errors"]);
    let record = rollout(&f, &score_analysis()).await;
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    assert!(record.cause.as_ref().unwrap().message.contains("failed decisively"), "{:?}", record.cause);
    let report = &record.analyses[0].report;
    assert_eq!((report.outcome, report.looks), (AnalysisOutcome::Failed, 1), "{}", report.reason);
    let m = &report.measurements[0];
    assert!(m.decisive && m.value == Some(0.0), "{}", m.detail);
    assert!(m.detail.contains("critical metric errors did not pass"), "{}", m.detail);
    assert_replays(&record);
    // Someone edits the critical metric's samples: replay reports it.
    let mut tampered = record.clone();
    let e = tampered.analyses[0].report.measurements[0].evidence.as_mut().unwrap();
    e.metrics[2].candidate = e.metrics[2].baseline.clone();
    let differences = replay(&tampered).differences;
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0].replayed, MeasurementOutcome::Successful);
}

#[tokio::test(start_paused = true)]
async fn a_marginal_score_is_inconclusive_and_pauses_for_a_decision() {
    // p99 deviates (not critical): latency group 50, the errors group 100, score 75:
    // marginal between 50 and 90.
    let f = score_world(&["p99"]);
    let plan = Canary::progressive([50, 100].map(pct), &score_analysis()).plan(&PlanInput::new(common::REPLICAS));
    let mut handle =
        f.engine.start(RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone())).await.unwrap();
    let mut marginal = None;
    while let Some(e) = handle.next_event().await {
        match e {
            RolloutEvent::Measurement { measurement, .. } => marginal = Some(measurement),
            RolloutEvent::Paused { kind: PauseKind::UntilPromoted, .. } => break,
            RolloutEvent::Finished { .. } => panic!("ended without pausing"),
            _ => {}
        }
    }
    let m = marginal.unwrap();
    assert_eq!((m.outcome, m.value), (MeasurementOutcome::Inconclusive, Some(75.0)), "{}", m.detail);
    assert!(m.detail.starts_with("marginal 75.0"), "{}", m.detail);
    handle.abort();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, DeploymentStatus::RolledBack);
    assert_eq!(report.record.inconclusive_decisions.len(), 1);
    assert_replays(&report.record);
}
