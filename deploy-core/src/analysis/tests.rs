use super::*;

#[test]
fn validation_lists_every_problem() {
    let spec = AnalysisSpec::new("")
        .count(0)
        .metric(MetricCheck::new("", "", JudgeSpec::Threshold { min: Some(2.0), max: Some(1.0) }))
        .metric(MetricCheck::new("latency", "q", JudgeSpec::Threshold { min: None, max: None }))
        .metric(MetricCheck::new("nan", "q", JudgeSpec::max(f64::NAN)));
    let errors = spec.validate("step 2 analysis").unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.len(), 7, "{text}");
    for needle in ["name", "count", "metric name", "query", "min must not be above max", "a min, a max", "finite"] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    assert!(errors.iter().all(|e| e.field.starts_with("step 2 analysis")));
}

#[test]
fn spec_without_checks_or_interval_is_incomplete() {
    let spec = AnalysisSpec::new("a").count(3).interval(HumanDuration::ZERO);
    let text = spec.validate("a").unwrap_err().to_string();
    assert!(text.contains("at least one metric or health check") && text.contains("interval"), "{text}");
}

#[test]
fn spec_round_trips_through_json_with_defaults() {
    let json = r#"{"name":"sr","metrics":[{"name":"sr","query":"q","judge":{"kind":"threshold","min":0.99}}],
        "interval":"30s","count":3}"#;
    let spec: AnalysisSpec = serde_json::from_str(json).unwrap();
    assert_eq!(spec.consecutive_error_limit, 4);
    assert_eq!(spec.metrics[0].judge, JudgeSpec::min(0.99));
    let back: AnalysisSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
    assert_eq!(spec.max_duration(), std::time::Duration::from_secs(60));
}
