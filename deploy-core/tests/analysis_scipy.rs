//! deploy-core's Mann-Whitney p-values against SciPy's `mannwhitneyu`, exact and
//! asymptotic, one- and two-sided, with ties and unequal sizes. The table was
//! computed once with SciPy (`tests/data/mannwhitneyu_scipy.py`, the command is in
//! its header) and is committed, so this test needs no Python.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use deploy_core::analysis::mann_whitney::{Alternative, MethodChoice, PValueMethod, mann_whitney_test};

/// One row of SciPy's answers.
struct ScipyCase {
    name: &'static str,
    candidate: &'static [f64],
    baseline: &'static [f64],
    alternative: &'static str,
    method: &'static str,
    statistic: f64,
    pvalue: f64,
}

mod table {
    use super::ScipyCase;
    include!("data/mannwhitneyu_scipy.rs");
}

fn alternative(name: &str) -> Alternative {
    match name {
        "two-sided" => Alternative::TwoSided,
        "greater" => Alternative::Greater,
        "less" => Alternative::Less,
        other => panic!("unknown alternative {other}"),
    }
}

#[test]
fn p_values_agree_with_scipy_to_1e_6() {
    let cases = table::CASES;
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut worst = (0.0_f64, "");
    for case in cases {
        let method = if case.method == "exact" { MethodChoice::Exact } else { MethodChoice::Asymptotic };
        let r = mann_whitney_test(case.candidate, case.baseline, alternative(case.alternative), method).unwrap();
        let label = format!("{} {} {}", case.name, case.alternative, case.method);
        assert_eq!(r.u, case.statistic, "{label}: U");
        let expected_method = if case.method == "exact" { PValueMethod::Exact } else { PValueMethod::Normal };
        assert_eq!(r.method, expected_method, "{label}");
        // Absolute 1e-6, and relative 1e-6 for small p-values (they decide).
        let error = (r.p_value - case.pvalue).abs();
        assert!(
            error <= 1e-6 * case.pvalue.max(1e-3),
            "{label}: p = {} but SciPy says {} (error {error:e})",
            r.p_value,
            case.pvalue
        );
        if error > worst.0 {
            worst = (error, case.name);
        }
    }
    eprintln!("{} cases, largest absolute difference {:e} ({})", cases.len(), worst.0, worst.1);
}

#[test]
fn the_table_covers_what_it_claims() {
    let cases = table::CASES;
    let has = |f: &dyn Fn(&ScipyCase) -> bool| cases.iter().any(f);
    assert!(has(&|c| c.method == "exact" && c.alternative == "greater"));
    assert!(has(&|c| c.method == "exact" && c.alternative == "two-sided"));
    assert!(has(&|c| c.method == "asymptotic" && c.alternative == "less"));
    let tied = |c: &ScipyCase| {
        let mut all: Vec<f64> = c.candidate.iter().chain(c.baseline).copied().collect();
        all.sort_by(f64::total_cmp);
        all.windows(2).any(|w| w[0] == w[1])
    };
    assert!(cases.iter().filter(|c| tied(c)).count() >= 9, "ties");
    assert!(has(&|c| c.candidate.len() * 3 < c.baseline.len()), "unequal sizes");
}

#[test]
fn auto_is_exact_where_scipy_is_and_the_issue_example_holds() {
    // 4 against 30 separated values: SciPy's default is exact, 4.3e-5 two-sided
    // (the normal approximation said 1.5e-3).
    let case = table::CASES
        .iter()
        .find(|c| c.name == "four_vs_thirty" && c.method == "exact" && c.alternative == "two-sided")
        .unwrap();
    let r = mann_whitney_test(case.candidate, case.baseline, Alternative::TwoSided, MethodChoice::Auto).unwrap();
    assert_eq!(r.method, PValueMethod::Exact);
    assert!((r.p_value - 4.3e-5).abs() < 1e-6, "{}", r.p_value);
    // With ties, auto takes the corrected normal approximation, as SciPy does.
    let tied = table::CASES.iter().find(|c| c.name == "ties_small").unwrap();
    let r = mann_whitney_test(tied.candidate, tied.baseline, Alternative::TwoSided, MethodChoice::Auto).unwrap();
    assert_eq!(r.method, PValueMethod::Normal);
}
