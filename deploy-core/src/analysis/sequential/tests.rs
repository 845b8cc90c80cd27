use super::*;

fn spec() -> SequentialSpec {
    SequentialSpec::continuous(Direction::Increase, "1m".parse().unwrap(), "5s".parse().unwrap())
}

#[test]
fn ln_gamma_is_accurate() {
    assert!((ln_gamma(1.0)).abs() < 1e-13);
    assert!((ln_gamma(5.0) - 24.0_f64.ln()).abs() < 1e-12);
    assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
}

#[test]
fn a_clear_shift_fails_and_the_same_values_pass() {
    let base: Vec<f64> = (0..40).map(|i| 100.0 + f64::from(i % 7) - 3.0).collect();
    let worse: Vec<f64> = base.iter().map(|v| v + 10.0).collect();
    let v = spec().judge_values(&worse, &base);
    assert_eq!(v.outcome, MeasurementOutcome::Failed, "{}", v.detail);
    let v = spec().judge_values(&base, &base);
    assert_eq!(v.outcome, MeasurementOutcome::Successful, "{}", v.detail);
    // Better is never a regression for an increase test.
    let better: Vec<f64> = base.iter().map(|v| v - 10.0).collect();
    assert_eq!(spec().judge_values(&better, &base).outcome, MeasurementOutcome::Successful);
    // Too few values: inconclusive, not a verdict.
    assert_eq!(spec().judge_values(&worse[..3], &base[..3]).outcome, MeasurementOutcome::Inconclusive);
}

#[test]
fn the_confidence_sequence_and_the_e_value_agree() {
    let base: Vec<f64> = (0..30).map(|i| f64::from(i % 5)).collect();
    let cand: Vec<f64> = base.iter().map(|v| v + 1.2).collect();
    let v = spec().judge_values(&cand, &base);
    let s = &v.evidence.unwrap().statistics;
    let (lo, hi) = s.bounds.unwrap();
    // E ≥ 1/α exactly when 0 is outside the bounds.
    assert_eq!(s.e_value.unwrap() >= 50.0, lo > 0.0 || hi < 0.0, "{lo} {hi} {:?}", s.e_value);
}

#[test]
fn counts_flag_a_doubled_error_rate() {
    let counts = SequentialSpec::counts(Direction::Increase, "requests");
    // Equal traffic; candidate 2 % errors, baseline 1 %, 10 000 requests each.
    let v = counts.judge_values(&[200.0, 10_000.0], &[100.0, 10_000.0]);
    assert_eq!(v.outcome, MeasurementOutcome::Failed, "{}", v.detail);
    let v = counts.judge_values(&[100.0, 10_000.0], &[104.0, 10_000.0]);
    assert_eq!(v.outcome, MeasurementOutcome::Successful, "{}", v.detail);
    // Half the traffic and half the errors: the same rate.
    let v = counts.judge_values(&[50.0, 5_000.0], &[100.0, 10_000.0]);
    assert_eq!(v.outcome, MeasurementOutcome::Successful, "{}", v.detail);
    assert_eq!(counts.judge_values(&[0.0, 0.0], &[1.0, 10.0]).outcome, MeasurementOutcome::Inconclusive);
}
