use super::*;

/// Reference values from SciPy 1.17.1,
/// `scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method=M, use_continuity=True)`,
/// as (statistic, pvalue); the hand-derived ones are worked out in the comments.
const SMALL_X: [f64; 5] = [1.1, 2.3, 3.5, 4.2, 5.9];
const SMALL_Y: [f64; 6] = [6.1, 7.4, 8.0, 3.9, 9.2, 10.5];
/// method="exact"
const SMALL_REF: (f64, f64) = (2.0, 0.017_316_017_316_017_316);
const TIES_X: [f64; 8] = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0];
const TIES_Y: [f64; 9] = [3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 7.0, 7.0, 8.0];
/// method="asymptotic" (ties force the normal approximation)
const TIES_REF: (f64, f64) = (7.5, 0.006_373_133_838_085_873);
/// method="exact", x = 1..=20, y = 5.5..=24.5
const EXACT_20_REF: (f64, f64) = (120.0, 0.030_411_256_038_764_864);
/// method="asymptotic", x and y drawn once with numpy (seed 7), rounded to 3 digits.
const LARGE_X: [f64; 25] = [
    100.012, 102.987, 97.259, 91.094, 95.453, 90.084, 100.601, 113.402, 95.078, 93.795, 104.898, 103.569, 101.054,
    90.695, 99.707, 106.953, 86.558, 95.424, 80.988, 87.105, 81.583, 97.649, 87.326, 102.713, 101.568,
];
const LARGE_Y: [f64; 30] = [
    106.131, 82.832, 102.613, 107.515, 109.133, 92.699, 103.222, 98.215, 99.912, 118.609, 99.925, 107.675, 116.844,
    102.164, 106.883, 109.105, 108.638, 95.749, 108.761, 121.588, 92.529, 116.594, 109.194, 101.585, 128.004, 115.623,
    96.007, 108.745, 113.767, 106.112,
];
const LARGE_REF: (f64, f64) = (150.0, 0.000_147_796_704_087_549_28);

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

#[test]
fn exact_small_samples_match_scipy() {
    let r = mann_whitney_u(&SMALL_X, &SMALL_Y).unwrap();
    assert_eq!(r.method, PValueMethod::Exact);
    assert_eq!(r.u, SMALL_REF.0);
    assert_eq!(r.u_baseline, 28.0);
    assert!(close(r.p_value, SMALL_REF.1, 1e-12), "{r}");
    // Swapping the samples swaps U and keeps p.
    let s = mann_whitney_u(&SMALL_Y, &SMALL_X).unwrap();
    assert_eq!((s.u, s.u_baseline), (28.0, 2.0));
    assert!(close(s.p_value, r.p_value, 1e-12));

    let x: Vec<f64> = (1..=20).map(f64::from).collect();
    let y: Vec<f64> = (5..25).map(|v| f64::from(v) + 0.5).collect();
    let r = mann_whitney_u(&x, &y).unwrap();
    assert_eq!(r.method, PValueMethod::Exact);
    assert_eq!(r.u, EXACT_20_REF.0);
    assert!(close(r.p_value, EXACT_20_REF.1, 1e-12), "{r}");
}

#[test]
fn samples_of_size_one_are_exact() {
    // One candidate value among six baseline values: U counts the baseline values
    // below it (4 here) and is uniform on 0..=6 under the null, so
    // p = 2 · P(U ≥ 4) = 2 · 3/7 = 6/7 (SciPy agrees: 0.8571428571428571).
    let r = mann_whitney_u(&[5.0], &[1.0, 2.0, 3.0, 4.0, 6.0, 7.0]).unwrap();
    assert_eq!(r.u, 4.0);
    assert!(close(r.p_value, 6.0 / 7.0, 1e-12), "{r}");
    // One value each: p = 2 · 1/2 = 1.
    let r = mann_whitney_u(&[1.0], &[2.0]).unwrap();
    assert_eq!((r.u, r.p_value), (0.0, 1.0));
}

#[test]
fn ties_use_the_corrected_normal_approximation() {
    let r = mann_whitney_u(&TIES_X, &TIES_Y).unwrap();
    assert!(r.ties);
    assert_eq!(r.method, PValueMethod::Normal);
    assert_eq!(r.u, TIES_REF.0);
    assert!(close(r.p_value, TIES_REF.1, 1e-6), "{r} vs {}", TIES_REF.1);
    assert!(r.z.unwrap() < 0.0, "the candidate is smaller");
    // Everything tied: no variance, no evidence (SciPy: U = 3, p = 1).
    let r = mann_whitney_u(&[2.0, 2.0, 2.0], &[2.0, 2.0]).unwrap();
    assert_eq!((r.u, r.p_value, r.z), (3.0, 1.0, None));
}

#[test]
fn large_samples_use_the_normal_approximation() {
    // 25 against 30 is affordable exactly; the approximation is asked for.
    assert_eq!(mann_whitney_u(&LARGE_X, &LARGE_Y).unwrap().method, PValueMethod::Exact);
    let r = mann_whitney_test(&LARGE_X, &LARGE_Y, Alternative::TwoSided, MethodChoice::Asymptotic).unwrap();
    assert!(!r.ties);
    assert_eq!(r.method, PValueMethod::Normal);
    assert_eq!(r.u, LARGE_REF.0);
    assert!(close(r.p_value, LARGE_REF.1, 1e-6), "{r} vs {}", LARGE_REF.1);
}

#[test]
fn empty_samples_and_nan_are_clear_errors() {
    assert_eq!(mann_whitney_u(&[1.0], &[]).unwrap_err(), SampleError::Empty { which: "baseline" });
    let e = mann_whitney_u(&[], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the candidate sample is empty: a Mann-Whitney test needs at least one value in each sample"
    );
    assert_eq!(mann_whitney_u(&[f64::NAN], &[1.0]).unwrap_err(), SampleError::NotANumber { which: "candidate" });
    assert!(shift_estimate(&[], &[1.0], 0.9).is_err());
    assert!(matches!(shift_estimate(&[1.0], &[1.0], 1.0), Err(SampleError::Confidence(_))));
}

/// The order statistics the old code listed: every difference, sorted.
fn brute_shift(candidate: &[f64], baseline: &[f64], k: usize) -> (f64, f64, f64) {
    let mut diffs: Vec<f64> = candidate.iter().flat_map(|x| baseline.iter().map(move |y| x - y)).collect();
    diffs.sort_by(f64::total_cmp);
    let total = diffs.len();
    let estimate =
        if total % 2 == 1 { diffs[total / 2] } else { f64::midpoint(diffs[total / 2 - 1], diffs[total / 2]) };
    (estimate, diffs[k - 1], diffs[total - k])
}

#[test]
fn selected_differences_match_the_listed_ones() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..200 {
        let m = usize::try_from(next() % 40).unwrap() + 1;
        let n = usize::try_from(next() % 40).unwrap() + 1;
        // Every third round draws from few values, so that ties and equal
        // differences are common; negative values and zero included.
        let draw = |v: u64| if round % 3 == 0 { (v % 7) as f64 - 3.0 } else { (v % 100_000) as f64 / 37.0 - 900.0 };
        let x: Vec<f64> = (0..m).map(|_| draw(next())).collect();
        let y: Vec<f64> = (0..n).map(|_| draw(next())).collect();
        let mut xs = x.clone();
        let mut ys = y.clone();
        xs.sort_by(f64::total_cmp);
        ys.sort_by(f64::total_cmp);
        let total = m * n;
        for k in [1, total / 3 + 1, total / 2 + 1, total] {
            let (_, lower, _) = brute_shift(&x, &y, k);
            assert_eq!(kth_difference(&xs, &ys, k), lower, "k={k} of {total}, x={x:?}, y={y:?}");
        }
        let s = shift_estimate(&x, &y, 0.9).unwrap();
        let mut diffs: Vec<f64> = x.iter().flat_map(|a| y.iter().map(move |b| a - b)).collect();
        diffs.sort_by(f64::total_cmp);
        let k = diffs.iter().position(|d| *d == s.lower).unwrap() + 1;
        let (estimate, lower, _) = brute_shift(&x, &y, k);
        assert_eq!((s.estimate, s.lower), (estimate, lower));
        assert!(diffs.contains(&s.upper));
    }
}

#[test]
fn prometheus_sized_samples_need_no_difference_matrix() {
    // 11 000 points per series (a day at 8 s): the listed differences would take
    // 968 MB; the selection keeps two sorted copies.
    let x: Vec<f64> = (0..11_000).map(|i| f64::from(i % 997) * 0.001 + 1.0).collect();
    let y: Vec<f64> = (0..11_000).map(|i| f64::from(i % 991) * 0.001).collect();
    let started = std::time::Instant::now();
    let shift = shift_estimate(&x, &y, 0.98).unwrap();
    let test = mann_whitney_u(&x, &y).unwrap();
    assert!(shift.lower <= shift.estimate && shift.estimate <= shift.upper, "{shift:?}");
    assert!((shift.estimate - 1.003).abs() < 0.01, "{shift:?}");
    assert!(test.p_value < 1e-6);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn order_keys_follow_the_numbers() {
    let values = [f64::NEG_INFINITY, -1e300, -2.5, -0.0, 0.0, 1e-300, 3.0, f64::INFINITY];
    for pair in values.windows(2) {
        assert!(order_key(pair[0]) < order_key(pair[1]), "{pair:?}");
    }
    for v in values {
        assert_eq!(from_order_key(order_key(v)).to_bits(), v.to_bits());
    }
}

#[test]
fn exact_counts_are_the_gaussian_binomial() {
    // [4 choose 2]_q = 1 + q + 2q^2 + q^3 + q^4, by hand.
    assert_eq!(exact_counts(2, 2), [1.0, 1.0, 2.0, 1.0, 1.0]);
    let c = exact_counts(20, 20);
    assert_eq!(c.iter().sum::<f64>(), 137_846_528_820.0, "C(40, 20)");
    assert!(c.iter().zip(c.iter().rev()).all(|(a, b)| a == b), "symmetric");
}

#[test]
fn normal_tail_is_accurate() {
    // Φ(−1.959964) = 0.025 and Φ(−3) = 0.0013498980316301 (standard tables).
    assert!(close(normal_upper_tail(1.959_963_984_540_054), 0.025, 1e-6));
    assert!(close(normal_upper_tail(3.0), 0.001_349_898_031_630_094_6, 1e-6));
    assert!(close(normal_upper_quantile(0.025), 1.959_963_984_540_054, 1e-6));
}

#[test]
fn shift_interval_matches_the_exact_inversion() {
    // Reference: the exact U distribution of 5 + 6 values enumerated in Python
    // (all C(11, 5) rank sets), k = the smallest u with P(U ≤ u) ≥ α/2
    // (R's qwilcox), interval [d(k), d(30 + 1 − k)] over the sorted differences:
    // 90 %: k = 6, [-6.9, -1.6]; 95 %: k = 4, [-7.0, -0.4]; estimate -4.2.
    let s = shift_estimate(&SMALL_X, &SMALL_Y, 0.9).unwrap();
    assert!(close(s.estimate, -4.2, 1e-12) && close(s.lower, -6.9, 1e-12) && close(s.upper, -1.6, 1e-12), "{s:?}");
    let s = shift_estimate(&SMALL_X, &SMALL_Y, 0.95).unwrap();
    assert!(close(s.lower, -7.0, 1e-12) && close(s.upper, -0.4, 1e-9), "{s:?}");
    // Identical samples: a zero shift inside its interval.
    let s = shift_estimate(&LARGE_X, &LARGE_X, 0.98).unwrap();
    assert!(s.estimate == 0.0 && s.lower < 0.0 && s.upper > 0.0, "{s:?}");
}
