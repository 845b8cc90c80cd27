use super::Classification::{High, Low, NoData, Pass};
use super::*;

fn jitter(base: f64, n: usize) -> Vec<f64> {
    // A deterministic, noisy-looking sample around `base` (±2 %), no ties.
    (0..n).map(|i| base * (1.0 + 0.02 * ((i as f64 * 2.399).sin()))).collect()
}

#[test]
fn classifies_by_direction() {
    let baseline = jitter(100.0, 30);
    let higher = jitter(130.0, 30);
    let lower = jitter(70.0, 30);
    let c = |d| MannWhitneyClassifier::new(d);
    assert_eq!(c(Direction::Increase).classify(&higher, &baseline).classification, High);
    assert_eq!(c(Direction::Increase).classify(&lower, &baseline).classification, Pass);
    assert_eq!(c(Direction::Decrease).classify(&lower, &baseline).classification, Low);
    assert_eq!(c(Direction::Either).classify(&lower, &baseline).classification, Low);
    assert_eq!(c(Direction::Either).classify(&higher, &baseline).classification, High);
    // The same distribution, shuffled: pass.
    let mut same = baseline.clone();
    same.reverse();
    let r = c(Direction::Either).classify(&same, &baseline);
    assert_eq!(r.classification, Pass, "{r}");
    assert!(r.test.unwrap().p_value > 0.5);
    // Identical samples pass without a test; an effect size can excuse a small shift.
    assert_eq!(c(Direction::Either).classify(&baseline, &baseline).test, None);
    let slightly = jitter(103.0, 30);
    assert_eq!(c(Direction::Increase).classify(&slightly, &baseline).classification, High);
    let lenient = c(Direction::Increase).effect_size(1.1);
    assert_eq!(lenient.classify(&slightly, &baseline).classification, Pass);
    // NaN values are dropped; nothing left is no data.
    assert_eq!(c(Direction::Either).classify(&[f64::NAN], &baseline).classification, NoData);
}

#[test]
fn scores_as_kayenta_does() {
    let scorer = CanaryScorer::new(ScoreThresholds::new(90.0, 50.0));
    let m = |name: &str, c| ScoredMetric::new(name, c);
    let all_pass = scorer.score(&[m("a", Pass), m("b", Pass), m("c", NoData)]);
    assert_eq!((all_pass.score, all_pass.verdict), (100.0, ScoreVerdict::Pass), "no data is left out");
    let half = scorer.score(&[m("a", Pass), m("b", Low)]);
    assert_eq!((half.score, half.verdict), (50.0, ScoreVerdict::Marginal));
    let bad = scorer.score(&[m("a", Pass), m("b", Low), m("c", High)]);
    assert_eq!(bad.verdict, ScoreVerdict::Fail);
    assert_eq!(scorer.score(&[m("a", NoData)]).verdict, ScoreVerdict::NoData);
    let critical = scorer.score(&[m("a", Pass), m("b", Pass), m("c", High).critical()]);
    assert_eq!((critical.score, critical.verdict), (0.0, ScoreVerdict::Fail));
    assert!(critical.reason.contains("critical metric c"));
    // Groups: latency weighs 70 %, errors get the remaining 30 %.
    let grouped = CanaryScorer::new(ScoreThresholds::new(90.0, 50.0)).group_weight("latency", 70.0);
    let s = grouped.score(&[
        m("p50", Pass).group("latency"),
        m("p99", High).group("latency"),
        m("5xx", Pass).group("errors"),
    ]);
    assert_eq!(s.groups["latency"], 50.0);
    assert!((s.score - (50.0 * 0.7 + 100.0 * 0.3)).abs() < 1e-9, "{s:?}");
    assert_eq!(s.verdict, ScoreVerdict::Marginal);
    assert_eq!(ScoreVerdict::Marginal.outcome(), MeasurementOutcome::Inconclusive);
}
