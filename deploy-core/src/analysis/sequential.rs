//! An anytime-valid sequential judge of canary versus baseline: valid however
//! often it looks, so that `interval × count` looks keep the chance of rolling
//! back a good canary at or below α, where a fixed-sample test repeated at every
//! look does not (Mann-Whitney at α = 0.02 looked at 10 times fails about 10 % of
//! good canaries; see docs/analysis.md for the measured rates).
//!
//! # The statistic
//!
//! Both tests follow Netflix's canary analysis (Lindon, Sanden and Shirikian,
//! "Rapid Regression Detection in Software Deployments through Sequential
//! Testing", KDD 2022, arXiv 2205.14762; Lindon and Malek, "Anytime-Valid Inference
//! for Multinomial Count Data", NeurIPS 2022): a *mixture likelihood ratio* `E`
//! is computed from all data seen so far. Under "no difference" it is a
//! nonnegative martingale with expectation 1, so by Ville's inequality
//! `P(E ever reaches 1/α) ≤ α`: the test may look after every value, and stop at
//! the first look where `E ≥ 1/α`, without inflating its error. The set of
//! differences not rejected is a *confidence sequence*, an interval valid at every
//! look at once; the judge records its bounds.
//!
//! - **Continuous metrics** (latencies; [`SequentialKind::Continuous`]): with `n`
//!   candidate and `m` baseline values, the difference of means
//!   `Δ = x̄ − ȳ` has variance `V = s²ₓ/n + s²ᵧ/m` (sample variances plugged in).
//!   Mixing the likelihood ratio of `N(δ, V)` against `N(0, V)` over a normal prior
//!   `δ ~ N(0, τ²)` gives the closed form
//!   `E = √(V / (V + τ²)) · exp(Δ² τ² / (2 V (V + τ²)))`
//!   (the mixture SPRT the KDD paper's Gaussian tests build on; with plugged-in
//!   variances it is valid as the samples grow, hence a floor of values per side).
//!   `τ = mixing × s` with `s` the baseline's standard deviation: the size of
//!   difference the test is most sensitive to. The confidence sequence is
//!   `Δ ± √(2 V (V + τ²) / τ² · (ln(1/α) + ½ ln((V + τ²) / V)))`.
//! - **Counts** (errors out of requests; [`SequentialKind::Counts`]): if the
//!   candidate's error rate equals the baseline's, each error is the candidate's
//!   with probability `θ₀ = requests_c / (requests_c + requests_b)` (errors as
//!   Poisson processes proportional to traffic, the paper's count model). With `x`
//!   of `N` errors on the candidate, a Beta(`a`, `a`) mixture over θ (the
//!   two-category case of Lindon and Malek's Dirichlet-multinomial test) gives
//!   `E = B(a + x, a + N − x) / B(a, a) / (θ₀ˣ (1 − θ₀)^(N − x))`; the confidence
//!   sequence is the set of θ₀ with `E < 1/α`.
//!
//! - **Counts by category** (2xx/4xx/5xx; [`SequentialKind::Categories`]): within
//!   each category, whether an event is the candidate's is Bernoulli(θₖ), with
//!   θₖ = θ₀ when the candidate behaves like the baseline. Each category has the
//!   Beta mixture above (the two-arm case of Lindon and Malek's
//!   Dirichlet-multinomial test); categories are independent Poisson streams given
//!   the requests, so the product of their mixture likelihood ratios is again a
//!   mixture likelihood ratio (over a product prior) and a martingale under the
//!   truth. The null is that no category is worse by its own direction; the test
//!   rejects once the smallest `E` over that whole null reaches 1/α, which keeps
//!   the chance of failing a canary that is nowhere worse at or below α at every
//!   look. Each category's confidence sequence is recorded at α / k, so that all k
//!   hold together.
//!
//! A test counts only deviations in its `direction` against the candidate (a
//! one-sided rejection of a two-sided e-value, which keeps the bound). Each look
//! returns Failed once `E ≥ 1/α` in the bad direction, Successful otherwise, and
//! Inconclusive while a side has too few values. The test stops early when the
//! evidence is clear either way: a failure, and a success whose confidence
//! sequence already excludes any regression larger than `margin`, are
//! [decisive](super::Verdict::decisive), and the
//! [`AnalysisRunner`](super::AnalysisRunner) ends the analysis on the first (the
//! rollout rolls back, whatever `failure_limit` allows) and stops measuring the
//! check after the second, before `count` looks; the report keeps how many
//! looks were used ([`AnalysisReport::looks`](super::AnalysisReport::looks)).
//! Stopping at a decisive look keeps the guarantees, since both hold at every
//! look at once. Every value the test used is in the verdict's evidence, so
//! [`replay`](super::replay) recomputes it.
//!
//! Looks must see fresh data: the judge appends the values of each look's
//! `lookback` to those of earlier looks, so `lookback` should equal the analysis
//! interval (overlapping windows would count values twice).

use std::fmt;
use std::sync::{Mutex, PoisonError};

use super::{
    CategoryStatistics, Direction, Evidence, Judge, JudgeInput, JudgeSpec, MeasurementOutcome, Statistics, Verdict,
};
use crate::metrics::{MetricQuery, MetricsError};
use crate::model::HumanDuration;
use async_trait::async_trait;

pub use crate::model::analysis::sequential::{CountCategory, SequentialKind, SequentialSpec};
use crate::model::analysis::sequential::{default_alpha, default_min_samples, default_mixing};

impl CountCategory {
    /// A category whose increase counts against the candidate (an error class).
    pub fn new(name: impl Into<String>, query: impl Into<String>) -> Self {
        Self { name: name.into(), query: query.into(), direction: Direction::Increase }
    }

    /// Sets which deviation counts against the candidate.
    #[must_use]
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }
}

impl SequentialSpec {
    /// A test of a continuous metric, looking back `lookback` (the analysis
    /// interval) at values `step` apart.
    pub fn continuous(direction: Direction, lookback: HumanDuration, step: HumanDuration) -> Self {
        Self {
            kind: SequentialKind::Continuous,
            direction,
            alpha: default_alpha(),
            lookback,
            step,
            mixing: default_mixing(),
            margin: 0.0,
            min_samples: default_min_samples(),
        }
    }

    /// A test of errors (the check's query) out of requests (`total_query`).
    pub fn counts(direction: Direction, total_query: impl Into<String>) -> Self {
        Self {
            kind: SequentialKind::Counts { total_query: total_query.into() },
            direction,
            alpha: default_alpha(),
            lookback: HumanDuration::ZERO,
            step: HumanDuration::ZERO,
            mixing: 1.0,
            margin: 0.0,
            min_samples: 1,
        }
    }

    /// Sets α.
    #[must_use]
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets the mixing scale.
    #[must_use]
    pub fn mixing(mut self, mixing: f64) -> Self {
        self.mixing = mixing;
        self
    }

    /// Sets the floor of values per side.
    #[must_use]
    pub fn min_samples(mut self, n: u32) -> Self {
        self.min_samples = n;
        self
    }

    /// Sets the margin: the largest harmless difference. Once the confidence
    /// sequence lies within it, the verdict is decisive and the analysis stops
    /// measuring the check.
    #[must_use]
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }

    /// A test of requests by category: `requests` (the check's query) counts
    /// requests, each of `categories` one class of them; α 0.02 and a uniform
    /// Beta(1, 1) mixture per category.
    ///
    /// ```
    /// use deploy_core::analysis::{Direction, MeasurementOutcome};
    /// use deploy_core::analysis::sequential::{CountCategory, SequentialSpec};
    /// let spec = SequentialSpec::categories([
    ///     CountCategory::new("4xx", "sum(increase(http_requests_total{code=~\"4..\"}[{{interval}}]))"),
    ///     CountCategory::new("5xx", "sum(increase(http_requests_total{code=~\"5..\"}[{{interval}}]))"),
    /// ]);
    /// // Per track and look: [requests, 4xx, 5xx]. The candidate's 5xx doubled.
    /// let v = spec.judge_values(&[10_000.0, 200.0, 200.0], &[10_000.0, 200.0, 100.0]);
    /// assert_eq!(v.outcome, MeasurementOutcome::Failed);
    /// assert!(v.decisive);
    /// ```
    pub fn categories(categories: impl IntoIterator<Item = CountCategory>) -> Self {
        Self {
            kind: SequentialKind::Categories { categories: categories.into_iter().collect() },
            direction: Direction::Increase,
            alpha: default_alpha(),
            lookback: HumanDuration::ZERO,
            step: HumanDuration::ZERO,
            mixing: 1.0,
            margin: 0.0,
            min_samples: 1,
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err("alpha must lie strictly between 0 and 1".into());
        }
        if !(self.mixing.is_finite() && self.mixing > 0.0) {
            return Err("mixing must be a positive number".into());
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err("margin must be a number of at least 0".into());
        }
        match &self.kind {
            SequentialKind::Continuous
                if self.step.is_zero() || self.lookback.as_duration() < self.step.as_duration() =>
            {
                Err("step must be positive and lookback at least one step".into())
            }
            SequentialKind::Continuous if self.min_samples < 2 => Err("min samples must be at least 2".into()),
            SequentialKind::Counts { total_query } if total_query.trim().is_empty() => {
                Err("a count test needs a total query".into())
            }
            SequentialKind::Categories { categories } => {
                if categories.is_empty() {
                    return Err("a category test needs at least one category".into());
                }
                let mut names = std::collections::BTreeSet::new();
                for c in categories {
                    if c.name.trim().is_empty() || c.query.trim().is_empty() {
                        return Err("every category needs a name and a query".into());
                    }
                    if !names.insert(c.name.as_str()) {
                        return Err(format!("category {} is named twice", c.name));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The verdict on all values seen so far: for continuous data the samples;
    /// for counts `[errors, requests]` pairs, one per look; for categories
    /// `[requests, category 1, …, category k]`, one group per look.
    ///
    /// The verdict is [decisive](Verdict::decisive) once the confidence sequence
    /// excludes the threshold: a regression (`E ≥ 1/α`), or clearly none beyond
    /// the margin.
    pub fn judge_values(&self, candidate: &[f64], baseline: &[f64]) -> Verdict {
        let (outcome, statistics, detail, decisive) = match &self.kind {
            SequentialKind::Continuous => self.continuous_test(candidate, baseline),
            SequentialKind::Counts { .. } => self.count_test(candidate, baseline),
            SequentialKind::Categories { categories } => self.category_test(categories, candidate, baseline),
        };
        let evidence =
            Evidence::new(JudgeSpec::Sequential(self.clone()), candidate.to_vec(), baseline.to_vec(), statistics);
        let value = evidence.statistics.e_value;
        Verdict::new(outcome, value, detail).with_evidence(evidence).decisive(decisive)
    }

    fn bad(&self, difference: f64) -> bool {
        bad_in(self.direction, difference)
    }

    /// Whether `bounds` (of the difference) lie within the margin on the side
    /// that counts against the candidate.
    fn clear(&self, direction: Direction, bounds: (f64, f64)) -> bool {
        match direction {
            Direction::Increase => bounds.1 <= self.margin,
            Direction::Decrease => bounds.0 >= -self.margin,
            Direction::Either => bounds.0 >= -self.margin && bounds.1 <= self.margin,
        }
    }

    fn decide(&self, e: f64, difference: f64, bounds: (f64, f64), what: String) -> (MeasurementOutcome, String, bool) {
        let threshold = 1.0 / self.alpha;
        if e >= threshold && self.bad(difference) {
            return (MeasurementOutcome::Failed, format!("regression: {what}, e = {e:.3} ≥ {threshold}"), true);
        }
        let clear = self.clear(self.direction, bounds);
        let note =
            if clear { "clearly no regression beyond the margin (decided)" } else { "no regression detected yet" };
        (MeasurementOutcome::Successful, format!("{note}: {what}, e = {e:.3} < {threshold}"), clear)
    }

    fn continuous_test(&self, candidate: &[f64], baseline: &[f64]) -> (MeasurementOutcome, Statistics, String, bool) {
        let floor = self.min_samples as usize;
        let mut stats = Statistics { alpha: Some(self.alpha), min_samples: Some(floor), ..Statistics::default() };
        if candidate.len() < floor || baseline.len() < floor {
            let detail = format!(
                "not enough data: {} candidate and {} baseline values, {floor} needed per side",
                candidate.len(),
                baseline.len()
            );
            return (MeasurementOutcome::Inconclusive, stats, detail, false);
        }
        let (mx, vx) = mean_var(candidate);
        let (my, vy) = mean_var(baseline);
        let v = vx / len(candidate) + vy / len(baseline);
        let tau2 = (self.mixing * vy.max(vx).sqrt()).powi(2);
        let difference = mx - my;
        if v <= 0.0 || tau2 <= 0.0 {
            let detail = format!("no variance: candidate mean {mx}, baseline mean {my}");
            let outcome = if difference == 0.0 || !self.bad(difference) {
                MeasurementOutcome::Successful
            } else {
                MeasurementOutcome::Failed
            };
            return (outcome, stats, detail, false);
        }
        let log_e = 0.5 * (v / (v + tau2)).ln() + difference * difference * tau2 / (2.0 * v * (v + tau2));
        let e = log_e.exp().min(f64::MAX);
        let radius = (2.0 * v * (v + tau2) / tau2 * ((1.0 / self.alpha).ln() + 0.5 * ((v + tau2) / v).ln())).sqrt();
        let bounds = (difference - radius, difference + radius);
        stats.e_value = Some(e);
        stats.p_value = Some((1.0 / e).min(1.0));
        stats.bounds = Some(bounds);
        let what = format!(
            "difference {difference:.4} in [{:.4}, {:.4}], {} vs {} values",
            bounds.0,
            bounds.1,
            candidate.len(),
            baseline.len()
        );
        let (outcome, detail, decisive) = self.decide(e, difference, bounds, what);
        (outcome, stats, detail, decisive)
    }

    fn count_test(&self, candidate: &[f64], baseline: &[f64]) -> (MeasurementOutcome, Statistics, String, bool) {
        let mut stats = Statistics { alpha: Some(self.alpha), ..Statistics::default() };
        let sum = |s: &[f64]| -> (f64, f64) {
            s.chunks(2).fold((0.0, 0.0), |(e, t), c| (e + c[0], t + c.get(1).copied().unwrap_or(0.0)))
        };
        let ((xc, nc), (xb, nb)) = (sum(candidate), sum(baseline));
        if nc <= 0.0 || nb <= 0.0 {
            let detail = format!("not enough data: {nc} candidate and {nb} baseline requests");
            return (MeasurementOutcome::Inconclusive, stats, detail, false);
        }
        let theta0 = nc / (nc + nb);
        let split = BetaSplit { candidate: xc, baseline: xb, a: self.mixing };
        let e = split.log_e(theta0).exp().min(f64::MAX);
        let share = split.share().unwrap_or(theta0);
        let bounds = split.confidence_sequence(theta0, (1.0 / self.alpha).ln());
        stats.e_value = Some(e);
        stats.p_value = Some((1.0 / e).min(1.0));
        stats.bounds = Some((bounds.0 - theta0, bounds.1 - theta0));
        let what = format!(
            "{xc} errors in {nc} candidate requests vs {xb} in {nb} baseline requests; candidate share of errors \
             {share:.4} (null {theta0:.4}) in [{:.4}, {:.4}]",
            bounds.0, bounds.1
        );
        let (outcome, detail, decisive) = self.decide(e, share - theta0, (bounds.0 - theta0, bounds.1 - theta0), what);
        (outcome, stats, detail, decisive)
    }

    /// The per-category test: within each category, whether an event is the
    /// candidate's is Bernoulli(θₖ), and θₖ = θ₀ (the candidate's share of
    /// requests) when it behaves like the baseline. Each category's Beta(a, a)
    /// mixture likelihood ratio `Eₖ(θ)` is the two-arm case of Lindon and Malek's
    /// Dirichlet-multinomial test; categories are independent Poisson streams
    /// given the requests, so `E(θ) = Πₖ Eₖ(θₖ)` (a mixture over a product prior)
    /// is a martingale under the truth. The null is that no category is worse by
    /// its direction (θₖ ≤ θ₀ for `Increase`, ≥ for `Decrease`, = for `Either`);
    /// the test rejects once the infimum of `E` over that null reaches 1/α, i.e.
    /// once the confidence sequence of θ excludes the whole null, which keeps the
    /// chance of failing a canary that is nowhere worse at or below α at every
    /// look. "Clearly no regression" needs every category's confidence sequence,
    /// at α/k each (so that all hold together), within the margin.
    fn category_test(
        &self,
        categories: &[CountCategory],
        candidate: &[f64],
        baseline: &[f64],
    ) -> (MeasurementOutcome, Statistics, String, bool) {
        let mut stats = Statistics { alpha: Some(self.alpha), ..Statistics::default() };
        let k = categories.len();
        let sums = |s: &[f64]| -> Vec<f64> {
            let mut sums = vec![0.0; k + 1];
            for group in s.chunks(k + 1) {
                for (total, v) in sums.iter_mut().zip(group) {
                    *total += v;
                }
            }
            sums
        };
        let (c, b) = (sums(candidate), sums(baseline));
        let (nc, nb) = (c[0], b[0]);
        if nc <= 0.0 || nb <= 0.0 || !candidate.len().is_multiple_of(k + 1) || !baseline.len().is_multiple_of(k + 1) {
            let detail = format!("not enough data: {nc} candidate and {nb} baseline requests");
            return (MeasurementOutcome::Inconclusive, stats, detail, false);
        }
        let theta0 = nc / (nc + nb);
        #[expect(clippy::cast_precision_loss, reason = "a handful of categories")]
        let pass_limit = (k as f64 / self.alpha).ln();
        let mut log_e_null = 0.0;
        let mut parts = Vec::with_capacity(k);
        let mut worse = Vec::new();
        let mut all_clear = true;
        for (i, category) in categories.iter().enumerate() {
            let split = BetaSplit { candidate: c[i + 1], baseline: b[i + 1], a: self.mixing };
            let share = split.share();
            // The smallest E over this category's null: at θ₀ when the estimate
            // lies outside the null, at the estimate (the likelihood's peak) inside.
            let inside = share.is_none_or(|s| !bad_in(category.direction, s - theta0));
            let log_e = match share {
                Some(s) if inside => split.log_e(s),
                _ => split.log_e(theta0),
            };
            log_e_null += log_e;
            if !inside {
                worse.push(category.name.as_str());
            }
            let bounds = split.confidence_sequence(theta0, pass_limit);
            let difference = (bounds.0 - theta0, bounds.1 - theta0);
            all_clear &= self.clear(category.direction, difference);
            parts.push(CategoryStatistics {
                name: category.name.clone(),
                candidate: c[i + 1],
                baseline: b[i + 1],
                e_value: log_e.exp().min(f64::MAX),
                bounds: difference,
            });
        }
        let e = log_e_null.exp().min(f64::MAX);
        stats.e_value = Some(e);
        stats.p_value = Some((1.0 / e).min(1.0));
        stats.categories = parts;
        let threshold = 1.0 / self.alpha;
        let summary: Vec<String> =
            stats.categories.iter().map(|p| format!("{} {} vs {}", p.name, p.candidate, p.baseline)).collect();
        let what = format!("{nc} candidate vs {nb} baseline requests (null share {theta0:.4}); {}", summary.join(", "));
        if e >= threshold {
            let detail = format!("regression in {}: {what}, e = {e:.3} ≥ {threshold}", worse.join(", "));
            return (MeasurementOutcome::Failed, stats, detail, true);
        }
        let note = if all_clear {
            "clearly no regression beyond the margin in any category (decided)"
        } else {
            "no regression detected yet"
        };
        (MeasurementOutcome::Successful, stats, format!("{note}: {what}, e = {e:.3} < {threshold}"), all_clear)
    }
}

/// Whether `difference` (candidate − baseline) counts against the candidate.
fn bad_in(direction: Direction, difference: f64) -> bool {
    match direction {
        Direction::Increase => difference > 0.0,
        Direction::Decrease => difference < 0.0,
        Direction::Either => difference != 0.0,
    }
}

/// How the events of one count split between the tracks, with a Beta(a, a)
/// mixture over the candidate's share θ.
struct BetaSplit {
    candidate: f64,
    baseline: f64,
    a: f64,
}

impl BetaSplit {
    /// ln E(θ): the mixture likelihood ratio against the share θ.
    fn log_e(&self, theta: f64) -> f64 {
        let (x, y, a) = (self.candidate, self.baseline, self.a);
        let term = |n: f64, p: f64| if n > 0.0 { n * p.ln() } else { 0.0 };
        ln_beta(a + x, a + y) - ln_beta(a, a) - (term(x, theta) + term(y, 1.0 - theta))
    }

    /// The candidate's share of the events, if there were any.
    fn share(&self) -> Option<f64> {
        let total = self.candidate + self.baseline;
        (total > 0.0).then(|| self.candidate / total)
    }

    /// The shares θ with ln E(θ) below `limit`, as an interval around the
    /// estimate (`centre` when there were no events).
    fn confidence_sequence(&self, centre: f64, limit: f64) -> (f64, f64) {
        let centre = self.share().unwrap_or(centre).clamp(1e-12, 1.0 - 1e-12);
        let edge = |inside: f64, outside: f64| {
            let (mut lo, mut hi) = (inside, outside);
            for _ in 0..60 {
                let mid = f64::midpoint(lo, hi);
                if self.log_e(mid) < limit {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        if self.log_e(centre) < limit { (edge(centre, 1e-12), edge(centre, 1.0 - 1e-12)) } else { (centre, centre) }
    }
}

impl fmt::Display for SequentialSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            SequentialKind::Continuous => "values".to_owned(),
            SequentialKind::Counts { total_query } => format!("errors out of {total_query}"),
            SequentialKind::Categories { categories } => {
                let names: Vec<&str> = categories.iter().map(|c| c.name.as_str()).collect();
                format!("requests by category {}", names.join("/"))
            }
        };
        let phrase = match self.direction {
            Direction::Increase => "not higher than",
            Direction::Decrease => "not lower than",
            Direction::Either => "close to",
        };
        write!(f, "{phrase} baseline (anytime-valid sequential test of {what}, α = {})", self.alpha)
    }
}

#[expect(clippy::cast_precision_loss, reason = "sample sizes are far below 2^52")]
fn len(s: &[f64]) -> f64 {
    s.len() as f64
}

fn mean_var(s: &[f64]) -> (f64, f64) {
    let n = len(s);
    let mean = s.iter().sum::<f64>() / n;
    let var = if s.len() > 1 { s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-14).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        #[expect(clippy::cast_precision_loss, reason = "i < 9")]
        let k = i as f64;
        a += c / (x + k);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The [`Judge`] for [`JudgeSpec::Sequential`]: each look fetches the newest
/// values of both tracks, adds them to those of earlier looks of this analysis,
/// and judges them all with [`SequentialSpec::judge_values`].
#[derive(Debug)]
pub struct SequentialJudge {
    spec: SequentialSpec,
    seen: Mutex<(Vec<f64>, Vec<f64>)>,
}

impl SequentialJudge {
    /// A judge with no values yet.
    pub fn new(spec: SequentialSpec) -> Self {
        Self { spec, seen: Mutex::new((Vec::new(), Vec::new())) }
    }
}

#[async_trait]
impl Judge for SequentialJudge {
    fn name(&self) -> &str {
        "sequential"
    }

    async fn judge(&self, input: &JudgeInput<'_>) -> Result<Verdict, MetricsError> {
        let (candidate, baseline) = match &self.spec.kind {
            SequentialKind::Continuous => {
                let (range, step) = (self.spec.lookback.as_duration(), self.spec.step.as_duration());
                let c = input.metrics.query_range(input.candidate, range, step).await?;
                let b = input.metrics.query_range(input.baseline, range, step).await?;
                (c, b)
            }
            SequentialKind::Counts { total_query } => {
                let total = |q: &MetricQuery| MetricQuery {
                    query: total_query.clone(),
                    name: format!("{}-total", q.name),
                    ..q.clone()
                };
                let count = |v: crate::metrics::MetricValue| v.as_single().filter(|x| *x >= 0.0);
                let errors_c = count(input.metrics.query(input.candidate).await?);
                let errors_b = count(input.metrics.query(input.baseline).await?);
                let total_c = count(input.metrics.query(&total(input.candidate)).await?);
                let total_b = count(input.metrics.query(&total(input.baseline)).await?);
                match (errors_c, total_c, errors_b, total_b) {
                    (Some(ec), Some(tc), Some(eb), Some(tb)) => (vec![ec, tc], vec![eb, tb]),
                    _ => (Vec::new(), Vec::new()),
                }
            }
            SequentialKind::Categories { categories } => {
                let count = |v: crate::metrics::MetricValue| v.as_single().filter(|x| *x >= 0.0);
                let mut c = vec![count(input.metrics.query(input.candidate).await?)];
                let mut b = vec![count(input.metrics.query(input.baseline).await?)];
                for category in categories {
                    let of = |q: &MetricQuery| MetricQuery {
                        query: category.query.clone(),
                        name: format!("{}-{}", q.name, category.name),
                        ..q.clone()
                    };
                    c.push(count(input.metrics.query(&of(input.candidate)).await?));
                    b.push(count(input.metrics.query(&of(input.baseline)).await?));
                }
                // A look counts only when every number of it is there.
                match (c.into_iter().collect::<Option<Vec<f64>>>(), b.into_iter().collect::<Option<Vec<f64>>>()) {
                    (Some(c), Some(b)) => (c, b),
                    _ => (Vec::new(), Vec::new()),
                }
            }
        };
        let (c, b) = {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.0.extend(candidate.into_iter().filter(|v| !v.is_nan()));
            seen.1.extend(baseline.into_iter().filter(|v| !v.is_nan()));
            (seen.0.clone(), seen.1.clone())
        };
        Ok(self.spec.judge_values(&c, &b))
    }
}

#[cfg(test)]
mod tests;
