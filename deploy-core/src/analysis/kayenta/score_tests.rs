use super::*;

#[test]
fn score_evidence_round_trips_through_json() {
    let spec = ScoreSpec::new(
        [ScoredCheck::new("a", "q").group("g"), ScoredCheck::new("b", "q").critical()],
        "1m".parse().unwrap(),
        "5s".parse().unwrap(),
    );
    let base = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02];
    let v = spec.judge_samples(&[(&base[..], &base[..]), (&base[..], &base[..])]);
    let evidence = v.evidence.unwrap();
    let json = serde_json::to_string(&evidence).unwrap();
    let back: Evidence = serde_json::from_str(&json).unwrap();
    assert_eq!(back.metrics.len(), 2, "{json}");
}
