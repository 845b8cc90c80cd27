//! The Mann-Whitney U test (Wilcoxon rank-sum test) for two independent samples,
//! with the Hodges-Lehmann estimate of the shift between them and its confidence
//! interval: the statistics behind Kayenta's canary judge.
//!
//! p-values are one- or two-sided ([`Alternative`]). Without ties, the exact
//! distribution of U is used whenever it is affordable ([`exact_is_affordable`]:
//! always when one sample has at most 8 values, as SciPy's `method="auto"` does, and
//! beyond that while counting the arrangements stays cheap); with ties, or when
//! counting would cost too much, the normal approximation with tie and continuity
//! corrections, as SciPy's `mannwhitneyu(..., method="asymptotic",
//! use_continuity=True)` and R's `wilcox.test(..., correct = TRUE)` compute it.
//! The p-values agree with SciPy's to 1e-6 (`tests/analysis_scipy.rs`).
//!
//! A test needs enough values to ever reject: with `n` values per side the
//! smallest exact p-value is `1 / C(2n, n)` one-sided (twice that two-sided), so a
//! test at 98 % confidence can never flag anything with 4 or fewer values per side
//! two-sided. [`min_sample_size`] is that floor; [`power`] is the chance to detect
//! a given shift at given sizes.
//!
//! Cost: U comes from the ranks of the pooled samples, O((m + n) log(m + n)). The
//! shift estimate needs order statistics of the m·n pairwise differences; they are
//! selected without listing the differences (a bisection over the values, each step
//! counting in O(m + n) over the sorted samples), so memory stays O(m + n) and time
//! O((m + n) log(m + n) + 64·(m + n)): Prometheus's 11 000 points per series cost
//! milliseconds, not the gigabyte of a 11 000 × 11 000 difference matrix.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::model::analysis::mann_whitney::{Alternative, PValueMethod, ShiftEstimate};

/// The largest sample size, per sample, for which the exact distribution was used
/// before [`exact_is_affordable`]; kept for callers that named it. Samples of up to
/// 20 values each are always exact now (when there are no ties).
pub const EXACT_MAX_SAMPLE: usize = 20;

/// The most additions the exact distribution may cost before the normal
/// approximation is used instead (about 20 ms on one core).
pub const EXACT_MAX_COST: usize = 20_000_000;

/// How the p-value is to be computed (SciPy's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MethodChoice {
    /// Exact without ties when affordable ([`exact_is_affordable`]), else normal.
    #[default]
    Auto,
    /// The exact distribution (ignoring ties, as SciPy does), whatever it costs.
    Exact,
    /// The normal approximation with tie and continuity corrections.
    Asymptotic,
}

/// Whether the exact distribution of U for samples of `m` and `n` values costs at
/// most [`EXACT_MAX_COST`] additions. Every case SciPy's `"auto"` makes exact (one
/// sample of at most 8 values) is affordable up to several hundred values on the
/// other side.
///
/// ```
/// use deploy_core::analysis::mann_whitney::exact_is_affordable;
/// assert!(exact_is_affordable(4, 30));
/// assert!(exact_is_affordable(20, 20));
/// assert!(!exact_is_affordable(500, 500));
/// ```
pub fn exact_is_affordable(m: usize, n: usize) -> bool {
    let small = m.min(n);
    let cost = (m + n).saturating_mul(small).saturating_mul(m.saturating_mul(n));
    m + n <= 1_000 && cost <= EXACT_MAX_COST
}

/// Why a test could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// A sample had no values: there is nothing to rank.
    #[error("the {which} sample is empty: a Mann-Whitney test needs at least one value in each sample")]
    Empty {
        /// `candidate` or `baseline`.
        which: &'static str,
    },
    /// A sample held NaN, which has no rank.
    #[error("the {which} sample holds NaN, which cannot be ranked")]
    NotANumber {
        /// `candidate` or `baseline`.
        which: &'static str,
    },
    /// The confidence level is not strictly between 0 and 1.
    #[error("confidence level {0} is not strictly between 0 and 1")]
    Confidence(String),
}

/// The result of [`mann_whitney_u`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MannWhitney {
    /// U of the candidate sample: the number of (candidate, baseline) pairs in which
    /// the candidate value is larger, ties counting one half. SciPy's `statistic`.
    pub u: f64,
    /// U of the baseline sample; `u + u_baseline = n_candidate × n_baseline`.
    pub u_baseline: f64,
    /// The p-value of "both samples come from one distribution" against
    /// `alternative`.
    pub p_value: f64,
    /// The alternative the p-value is for.
    #[serde(default)]
    pub alternative: Alternative,
    /// How the p-value was computed.
    pub method: PValueMethod,
    /// The standard score of U under the normal approximation (continuity
    /// corrected, signed: positive when the candidate is larger); `None` for exact
    /// p-values and for samples with no variance.
    pub z: Option<f64>,
    /// Whether the pooled values had ties.
    pub ties: bool,
    /// The sample sizes, candidate first.
    pub sizes: (usize, usize),
}

impl fmt::Display for MannWhitney {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match self.method {
            PValueMethod::Exact => "exact",
            PValueMethod::Normal => "normal approximation",
        };
        write!(f, "U = {}, p = {:.4} ({method}, n = {} vs {})", self.u, self.p_value, self.sizes.0, self.sizes.1)
    }
}

fn check(sample: &[f64], which: &'static str) -> Result<(), SampleError> {
    if sample.is_empty() {
        return Err(SampleError::Empty { which });
    }
    if sample.iter().any(|v| v.is_nan()) {
        return Err(SampleError::NotANumber { which });
    }
    Ok(())
}

#[expect(clippy::cast_precision_loss, reason = "sample sizes are far below 2^52")]
fn as_f64(n: usize) -> f64 {
    n as f64
}

/// Ranks of the pooled samples (average ranks for ties), the candidate's rank sum
/// and the tie term Σ(t³ − t) over groups of t equal values.
fn rank_sum(candidate: &[f64], baseline: &[f64]) -> (f64, f64) {
    let mut pooled: Vec<(f64, bool)> =
        candidate.iter().map(|v| (*v, true)).chain(baseline.iter().map(|v| (*v, false))).collect();
    pooled.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    let mut rank_sum = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i + 1;
        while j < pooled.len() && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        // Positions i..j (ranks i+1..=j) share the average rank.
        let average = as_f64(i + 1 + j) / 2.0;
        let in_candidate = pooled[i..j].iter().filter(|(_, c)| *c).count();
        rank_sum += average * as_f64(in_candidate);
        let t = as_f64(j - i);
        tie_term += t * t * t - t;
        i = j;
    }
    (rank_sum, tie_term)
}

/// The two-sided Mann-Whitney U test of `candidate` against `baseline`, exact when
/// affordable and without ties ([`mann_whitney_test`] with
/// [`Alternative::TwoSided`] and [`MethodChoice::Auto`]).
///
/// An empty sample or NaN is an error: "no data" must be decided by the caller,
/// not hidden in a p-value.
///
/// ```
/// use deploy_core::analysis::mann_whitney::{mann_whitney_u, PValueMethod, SampleError};
/// // Every candidate value is below every baseline value: U = 0, and one
/// // arrangement in C(4, 2) = 6 is as extreme on each side, so p = 2/6.
/// let r = mann_whitney_u(&[1.0, 2.0], &[3.0, 4.0]).unwrap();
/// assert_eq!((r.u, r.method), (0.0, PValueMethod::Exact));
/// assert!((r.p_value - 1.0 / 3.0).abs() < 1e-12);
/// assert_eq!(mann_whitney_u(&[], &[1.0]).unwrap_err(), SampleError::Empty { which: "candidate" });
/// ```
pub fn mann_whitney_u(candidate: &[f64], baseline: &[f64]) -> Result<MannWhitney, SampleError> {
    mann_whitney_test(candidate, baseline, Alternative::TwoSided, MethodChoice::Auto)
}

/// The Mann-Whitney U test of `candidate` against `baseline` for `alternative`,
/// computed as `method` says; SciPy's `mannwhitneyu(candidate, baseline,
/// alternative=..., method=..., use_continuity=True)`.
///
/// ```
/// use deploy_core::analysis::mann_whitney::{mann_whitney_test, Alternative, MethodChoice, PValueMethod};
/// // 4 values against 30 larger ones: exact, as SciPy's "auto" chooses.
/// let x = [1.0, 2.0, 3.0, 4.0];
/// let y: Vec<f64> = (0..30).map(|i| 10.0 + f64::from(i)).collect();
/// let r = mann_whitney_test(&x, &y, Alternative::TwoSided, MethodChoice::Auto).unwrap();
/// assert_eq!(r.method, PValueMethod::Exact);
/// assert!((r.p_value - 2.0 / 46_376.0).abs() < 1e-12); // 2 / C(34, 4)
/// let less = mann_whitney_test(&x, &y, Alternative::Less, MethodChoice::Auto).unwrap();
/// assert!((less.p_value - 1.0 / 46_376.0).abs() < 1e-12);
/// ```
pub fn mann_whitney_test(
    candidate: &[f64],
    baseline: &[f64],
    alternative: Alternative,
    method: MethodChoice,
) -> Result<MannWhitney, SampleError> {
    check(candidate, "candidate")?;
    check(baseline, "baseline")?;
    let (n1, n2) = (candidate.len(), baseline.len());
    let (m, n) = (as_f64(n1), as_f64(n2));
    let (ranks, tie_term) = rank_sum(candidate, baseline);
    let u = ranks - m * (m + 1.0) / 2.0;
    let u_baseline = m * n - u;
    let ties = tie_term > 0.0;
    let exact = match method {
        MethodChoice::Exact => true,
        MethodChoice::Asymptotic => false,
        MethodChoice::Auto => !ties && exact_is_affordable(n1, n2),
    };
    let (p_value, method, z) = if exact {
        let counts = exact_counts(n1, n2);
        let total: f64 = counts.iter().sum();
        // With ties U may be a half; SciPy rounds the tail's start as below.
        let at_least = |v: f64| -> f64 {
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0 <= v <= mn")]
            let from = v.ceil().max(0.0) as usize;
            counts.iter().skip(from).sum::<f64>() / total
        };
        let greater = at_least(u);
        let less = at_least(u_baseline);
        let p = match alternative {
            Alternative::Greater => greater,
            Alternative::Less => less,
            Alternative::TwoSided => 2.0 * greater.min(less),
        };
        (p.clamp(0.0, 1.0), PValueMethod::Exact, None)
    } else {
        let total = m + n;
        let variance = m * n / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
        if variance <= 0.0 {
            (1.0, PValueMethod::Normal, None)
        } else {
            let sd = variance.sqrt();
            let statistic = match alternative {
                Alternative::Greater => u,
                Alternative::Less => u_baseline,
                Alternative::TwoSided => u.max(u_baseline),
            };
            let z_stat = (statistic - m * n / 2.0 - 0.5) / sd;
            let mut p = normal_upper_tail(z_stat);
            if alternative == Alternative::TwoSided {
                p *= 2.0;
            }
            let z = (u - m * n / 2.0 - 0.5 * (u - m * n / 2.0).signum()) / sd;
            (p.clamp(0.0, 1.0), PValueMethod::Normal, Some(z))
        }
    };
    Ok(MannWhitney { u, u_baseline, p_value, alternative, method, z, ties, sizes: (n1, n2) })
}

/// How many of the C(m + n, m) arrangements of two samples of sizes `m` and `n`
/// give each value of U, from 0 to m·n: the coefficients of the Gaussian binomial
/// coefficient [m + n choose m], built by q-Pascal's rule
/// [N, k] = [N − 1, k − 1] + q^k [N − 1, k], with additions only, so that the
/// counts stay exact to the last bit of a double as long as they fit.
fn exact_counts(m: usize, n: usize) -> Vec<f64> {
    let k_max = m.min(n);
    // row[k] is [N choose k] as a polynomial in q, for the current N.
    let mut row: Vec<Vec<f64>> = vec![vec![1.0]];
    for big_n in 1..=m + n {
        let top = k_max.min(big_n);
        if row.len() <= top {
            row.push(vec![0.0]);
        }
        for k in (1..=top).rev() {
            let degree = k * (big_n - k);
            let mut next = vec![0.0; degree + 1];
            for (i, c) in row[k - 1].iter().enumerate() {
                next[i] += c;
            }
            if k < big_n {
                for (i, c) in row[k].iter().enumerate() {
                    if i + k <= degree {
                        next[i + k] += c;
                    }
                }
            }
            row[k] = next;
        }
    }
    row.swap_remove(k_max)
}

/// The smallest `k` with P(U ≤ k) ≥ `p` under the exact distribution (R's `qwilcox`).
fn exact_quantile(m: usize, n: usize, p: f64) -> usize {
    let counts = exact_counts(m, n);
    let total: f64 = counts.iter().sum();
    let mut cumulative = 0.0;
    for (k, c) in counts.iter().enumerate() {
        cumulative += c;
        if cumulative / total >= p - 1e-12 {
            return k;
        }
    }
    m * n
}

/// The complementary error function, with a fractional error below 1.2e-7
/// everywhere (the Chebyshev fit of Numerical Recipes, `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// P(Z ≥ z) for a standard normal Z.
pub(crate) fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The z with P(Z ≥ z) = `p`, by bisection (for confidence intervals; `p` in (0, 1)).
pub(crate) fn normal_upper_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0_f64, 40.0_f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if normal_upper_tail(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The smallest number of values per side at which a test at level `alpha` can
/// reject at all: the `n` whose most extreme arrangement has an exact p-value of
/// `1 / C(2n, n)` (one-sided) or `2 / C(2n, n)` (two-sided) at most `alpha`.
/// Below it every outcome is "not significant" whatever the data, so a judge
/// calls such samples inconclusive rather than passing them.
///
/// ```
/// use deploy_core::analysis::mann_whitney::{min_sample_size, Alternative};
/// assert_eq!(min_sample_size(0.02, Alternative::TwoSided), 5); // 2/C(8,4) = 0.029 > 0.02
/// assert_eq!(min_sample_size(0.02, Alternative::Greater), 4); // 1/C(8,4) = 0.014
/// assert_eq!(min_sample_size(0.05, Alternative::TwoSided), 4);
/// ```
pub fn min_sample_size(alpha: f64, alternative: Alternative) -> usize {
    let sides = if alternative == Alternative::TwoSided { 2.0 } else { 1.0 };
    let mut choose = 2.0; // C(2, 1)
    for n in 1..=64_usize {
        if sides / choose <= alpha {
            return n;
        }
        // C(2n + 2, n + 1) = C(2n, n) · (2n + 1)(2n + 2) / (n + 1)².
        let nf = as_f64(n);
        choose *= (2.0 * nf + 1.0) * (2.0 * nf + 2.0) / ((nf + 1.0) * (nf + 1.0));
    }
    64
}

/// The approximate power of the Mann-Whitney test at level `alpha` with `m` and
/// `n` values to detect a shift of `shift_sd` standard deviations of normally
/// distributed values (Noether's formula, with P(X > Y) = Φ(shift / √2)).
/// A judge reports it so that "no difference found" can be read against the
/// difference it could have found.
///
/// ```
/// use deploy_core::analysis::mann_whitney::{power, Alternative};
/// let weak = power(5, 5, 0.02, Alternative::Greater, 1.0);
/// let strong = power(50, 50, 0.02, Alternative::Greater, 1.0);
/// assert!(weak < 0.3 && strong > 0.95, "{weak} {strong}");
/// ```
pub fn power(m: usize, n: usize, alpha: f64, alternative: Alternative, shift_sd: f64) -> f64 {
    if m == 0 || n == 0 || !(alpha > 0.0 && alpha < 1.0) {
        return 0.0;
    }
    let tail = if alternative == Alternative::TwoSided { alpha / 2.0 } else { alpha };
    let z_alpha = normal_upper_quantile(tail);
    let p_greater = 1.0 - normal_upper_tail(shift_sd.abs() / std::f64::consts::SQRT_2);
    let (mf, nf) = (as_f64(m), as_f64(n));
    let z = (12.0 * mf * nf / (mf + nf + 1.0)).sqrt() * (p_greater - 0.5);
    normal_upper_tail(z_alpha - z)
}

/// The shift of `candidate` against `baseline` with a `confidence` interval.
///
/// The interval is `[d(k), d(mn + 1 − k)]` over the sorted pairwise differences,
/// with `k` the `(1 − confidence) / 2` quantile of U: exact for small samples without
/// ties, from the normal approximation (with ties) otherwise.
///
/// ```
/// use deploy_core::analysis::mann_whitney::shift_estimate;
/// let s = shift_estimate(&[1.0, 2.0, 3.0], &[1.5, 2.5], 0.9).unwrap();
/// assert_eq!(s.estimate, 0.0); // differences -1.5 -0.5 -0.5 0.5 0.5 1.5
/// ```
pub fn shift_estimate(candidate: &[f64], baseline: &[f64], confidence: f64) -> Result<ShiftEstimate, SampleError> {
    check(candidate, "candidate")?;
    check(baseline, "baseline")?;
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(SampleError::Confidence(confidence.to_string()));
    }
    let (m, n) = (candidate.len(), baseline.len());
    let mut x = candidate.to_vec();
    let mut y = baseline.to_vec();
    x.sort_by(f64::total_cmp);
    y.sort_by(f64::total_cmp);
    let total = m * n;
    let kth = |k: usize| kth_difference(&x, &y, k);
    let estimate = if total % 2 == 1 { kth(total / 2 + 1) } else { f64::midpoint(kth(total / 2), kth(total / 2 + 1)) };
    let alpha = 1.0 - confidence;
    let (_, tie_term) = rank_sum(candidate, baseline);
    let k = if tie_term == 0.0 && m <= EXACT_MAX_SAMPLE && n <= EXACT_MAX_SAMPLE {
        exact_quantile(m, n, alpha / 2.0)
    } else {
        let (mf, nf) = (as_f64(m), as_f64(n));
        let all = mf + nf;
        let variance = mf * nf / 12.0 * ((all + 1.0) - tie_term / (all * (all - 1.0)));
        let k = mf * nf / 2.0 - normal_upper_quantile(alpha / 2.0) * variance.max(0.0).sqrt();
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "clamped to 0..=mn first")]
        let k = k.floor().clamp(0.0, as_f64(total)) as usize;
        k
    };
    let k = k.clamp(1, total);
    Ok(ShiftEstimate { estimate, lower: kth(k), upper: kth(total + 1 - k), confidence })
}

/// A total order on the bits of non-NaN floats: `a < b` exactly when
/// `order_key(a) < order_key(b)` (with −0 just below +0).
fn order_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

fn from_order_key(key: u64) -> f64 {
    if key >> 63 == 1 { f64::from_bits(key & !(1 << 63)) } else { f64::from_bits(!key) }
}

/// How many differences `x[i] − y[j]` are at most `t`, for `x` and `y` sorted
/// ascending: one pass with two pointers, O(m + n).
fn count_at_most(x: &[f64], y: &[f64], t: f64) -> usize {
    let mut count = 0;
    let mut j = 0;
    for xi in x {
        // x[i] − y[j] falls as j grows; the first j where it is ≤ t only moves right
        // as x[i] grows.
        while j < y.len() && xi - y[j] > t {
            j += 1;
        }
        count += y.len() - j;
    }
    count
}

/// The `k`-th smallest (from 1) of the differences `x[i] − y[j]`, for `x` and `y`
/// sorted ascending and not empty, without listing them: the smallest float `t`
/// with at least `k` differences ≤ `t`, found by bisection over the floats' order
/// (at most 64 steps). That `t` is itself one of the differences.
fn kth_difference(x: &[f64], y: &[f64], k: usize) -> f64 {
    let (Some(&x_min), Some(&x_max), Some(&y_min), Some(&y_max)) = (x.first(), x.last(), y.first(), y.last()) else {
        return f64::NAN;
    };
    let (mut lo, mut hi) = (order_key(x_min - y_max), order_key(x_max - y_min));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_at_most(x, y, from_order_key(mid)) >= k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    from_order_key(lo)
}

#[cfg(test)]
mod tests;
