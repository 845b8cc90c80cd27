//! Every verdict the engine records can be recomputed offline from the record's
//! evidence: `replay` reproduces 100 % of the verdicts of records written by the
//! engine (threshold, comparison, Mann-Whitney with Holm's correction, sequential
//! tests of values and of counts), also after a JSON round trip, and reports a
//! tampered record as differing.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::{Fixture, Strat, pct, secs};
use deploy_core::analysis::sequential::SequentialSpec;
use deploy_core::analysis::{AnalysisSpec, Direction, JudgeSpec, MeasurementOutcome, MetricCheck, replay};
use deploy_core::engine::RolloutRequest;
use deploy_core::model::{DeploymentRecord, DeploymentStatus, Track};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::MetricScript;

/// A deterministic, noisy-looking series around `centre`.
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

fn looks(centre: f64, seed: u64) -> MetricScript {
    MetricScript::Samples((0..6).map(|look| series(centre, 12, seed * 100 + look)).collect())
}

fn analysis() -> AnalysisSpec {
    let window = secs(30);
    AnalysisSpec::new("evidence")
        .metric(MetricCheck::new("error-rate", "q", JudgeSpec::max(0.01)))
        .metric(MetricCheck::new("error-vs-baseline", "q", JudgeSpec::ratio(Direction::Increase, 1.5)))
        .metric(MetricCheck::new(
            "latency",
            "histogram_quantile(0.5, latency)",
            JudgeSpec::mann_whitney(Direction::Increase, window, secs(1)),
        ))
        .metric(MetricCheck::new(
            "latency-p90",
            "histogram_quantile(0.9, latency)",
            JudgeSpec::mann_whitney(Direction::Increase, window, secs(1)),
        ))
        .metric(MetricCheck::new(
            "latency-sequential",
            "histogram_quantile(0.5, latency)",
            JudgeSpec::Sequential(SequentialSpec::continuous(Direction::Increase, window, secs(1))),
        ))
        .metric(MetricCheck::new(
            "errors-sequential",
            "sum(increase(errors[1m]))",
            JudgeSpec::Sequential(SequentialSpec::counts(Direction::Increase, "sum(increase(requests[1m]))")),
        ))
        .interval(window)
        .count(3)
        .failure_limit(1)
}

/// Runs one rollout whose canary's latency is `shift` higher and whose errors are
/// `error_factor` times the baseline's; returns the stored record.
async fn rollout(shift: f64, error_factor: f64, seed: u64) -> DeploymentRecord {
    let f = Fixture::new(Strat::Canary);
    let m = f.kit.metric_values();
    for track in Track::ALL {
        m.set("error-rate", track, 0.001);
        m.set("error-vs-baseline", track, 0.001);
        m.set("errors-sequential-total", track, 10_000.0);
        m.set("errors-sequential", track, 50.0);
    }
    m.set("errors-sequential", Track::Canary, 50.0 * error_factor);
    for (name, offset) in [("latency", 0), ("latency-p90", 1), ("latency-sequential", 2)] {
        m.script(name, Track::Stable, looks(100.0, seed * 10 + offset));
        m.script(name, Track::Canary, looks(100.0 + shift, seed * 10 + offset + 5));
    }
    let plan = Canary::progressive([50, 100].map(pct), &analysis()).plan(&PlanInput::new(common::REPLICAS));
    let report =
        f.engine.run(RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone())).await.unwrap();
    f.kit.history().records().into_iter().find(|r| r.id == report.record.id).unwrap()
}

#[tokio::test(start_paused = true)]
async fn replay_reproduces_every_verdict_the_engine_records() {
    let mut records = Vec::new();
    for (seed, (shift, errors)) in
        [(0.0, 1.0), (0.5, 1.0), (20.0, 1.0), (0.0, 2.0), (15.0, 3.0)].into_iter().enumerate()
    {
        records.push(rollout(shift, errors, seed as u64 + 1).await);
    }
    assert!(records.iter().any(|r| r.status == DeploymentStatus::Succeeded));
    assert!(records.iter().any(|r| r.status == DeploymentStatus::RolledBack));
    let mut checked = 0;
    let mut outcomes = Vec::new();
    for record in &records {
        let report = replay(record);
        assert!(report.reproduced(), "{report}: {:?}", report.differences);
        assert_eq!(report.not_replayable, 0, "{report}");
        checked += report.checked;
        // The evidence survives the store's JSON (floats may move by an ulp, which
        // no verdict here is close enough to a threshold to notice).
        let back: DeploymentRecord = serde_json::from_str(&serde_json::to_string(record).unwrap()).unwrap();
        assert_eq!(back.analyses.len(), record.analyses.len());
        let again = replay(&back);
        assert!(again.reproduced() && again.checked == report.checked, "{again}");
        for a in &record.analyses {
            for m in &a.report.measurements {
                let e = m.evidence.as_ref().unwrap();
                assert!(!e.query.is_empty());
                outcomes.push((m.check.clone(), m.outcome));
            }
        }
    }
    assert!(checked >= 5 * 6, "{checked} verdicts");
    assert!(outcomes.iter().any(|(_, o)| *o == MeasurementOutcome::Failed), "{outcomes:?}");
    // Holm was applied where several tests ran in one round.
    let holm = records
        .iter()
        .flat_map(|r| &r.analyses)
        .flat_map(|a| &a.report.measurements)
        .filter_map(|m| m.evidence.as_ref()?.holm)
        .count();
    assert!(holm > 0);
}

#[tokio::test(start_paused = true)]
async fn a_tampered_record_is_reported() {
    let record = rollout(20.0, 1.0, 42).await;
    assert!(replay(&record).reproduced());
    // Someone edits the latency samples of a failed Mann-Whitney verdict to look good.
    let mut tampered = record.clone();
    let m = tampered
        .analyses
        .iter_mut()
        .flat_map(|a| a.report.measurements.iter_mut())
        .find(|m| m.check == "latency" && m.outcome == MeasurementOutcome::Failed)
        .expect("the shifted canary fails the latency test");
    let evidence = m.evidence.as_mut().unwrap();
    evidence.candidate = evidence.baseline.clone();
    let report = replay(&tampered);
    assert_eq!(report.differences.len(), 1, "{report}");
    let d = &report.differences[0];
    assert_eq!(
        (d.check.as_str(), d.recorded, d.replayed),
        ("latency", MeasurementOutcome::Failed, MeasurementOutcome::Successful)
    );
    // A changed threshold is caught as well.
    let mut tampered = record;
    let m = tampered.analyses[0].report.measurements.iter_mut().find(|m| m.check == "error-rate").unwrap();
    m.evidence.as_mut().unwrap().judge = JudgeSpec::max(0.0001);
    assert!(!replay(&tampered).reproduced());
}
