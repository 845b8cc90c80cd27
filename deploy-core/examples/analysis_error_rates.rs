//! The false-rollback and detection rates of canary analysis, by simulation.
//!
//! Runs thousands of A/A canaries (no difference) and A/B canaries (latency shifts
//! of 0.5, 1 and 2 standard deviations; error rates 1.5 and 2 times the baseline's;
//! per-status-class counts with 5xx doubled or 4xx 1.5 times) through the engine's
//! analysis (`AnalysisRunner`, the judges resolved as the engine resolves them,
//! values served by the test kit's metrics provider) with three judges at α = 0.02:
//!
//! - the threshold judge: each look's candidate mean (or error rate) against a
//!   fixed bound set at the 98 % quantile of a good canary's look;
//! - repeated Mann-Whitney: a one-sided test at 98 % confidence of all values so
//!   far, at every look (Kayenta's judgement of a growing window, tolerance 0);
//! - the anytime-valid sequential judge (`JudgeSpec::Sequential`), which ends the
//!   analysis early, passing, once its confidence sequence lies within its margin
//!   (0.5 sd for latency, 0.1 of the candidate's share of errors for counts, about
//!   an error-rate ratio of 1.5), and failing once it excludes no regression; for
//!   status classes, the per-category (multinomial) test (2xx/4xx/5xx), the only
//!   judge of those rows.
//!
//! Each canary is analysed for up to 20 looks with a failure limit of 0; a verdict
//! at look k depends only on the data up to k, so the look at which the analysis
//! ended (failed, or passed early) gives the outcome for every budget of 1, 5, 10
//! and 20 looks. Deterministic: the seed fixes every value. Run:
//!
//! ```text
//! cargo run --release -p deploy-core --features testkit --example analysis_error_rates -- 20261130 4000 1000
//! ```
//!
//! (seed, A/A canaries per judge, A/B canaries per judge and scenario).

use std::sync::Arc;
use std::time::Duration;

use deploy_core::analysis::sequential::{CountCategory, SequentialSpec};
use deploy_core::analysis::{
    AnalysisOutcome, AnalysisRunner, AnalysisSpec, AnalysisTarget, Direction, JudgeRegistry, JudgeSpec,
    MeasurementOutcome, MetricCheck,
};
use deploy_core::metrics::{MetricValue, MetricsProvider};
use deploy_core::model::{HumanDuration, Track};
use deploy_core::testkit::{self, MetricScript, TestKit};

const ALPHA: f64 = 0.02;
const LOOKS: u32 = 20;
const BUDGETS: [u32; 4] = [1, 5, 10, 20];
/// Latency values per track per look (a 30 s window, one value every 3 s).
const VALUES_PER_LOOK: usize = 10;
/// Requests per track per look (10 Mann-Whitney values of 100 requests each).
const REQUESTS_PER_LOOK: u32 = 1_000;
const BASE_ERROR_RATE: f64 = 0.01;
/// Status classes of a good release: 4xx and 5xx rates (the rest is 2xx).
const BASE_CLIENT_RATE: f64 = 0.02;
const BASE_SERVER_RATE: f64 = 0.01;
/// The sequential judges' margins: what counts as clearly no regression.
const LATENCY_MARGIN: f64 = 5.0;
const SHARE_MARGIN: f64 = 0.1;
/// The 98 % quantile of the standard normal.
const Z_98: f64 = 2.053_748_910_631_823;

/// SplitMix64: a small, fully specified generator, so the table does not depend
/// on a library's stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[expect(clippy::cast_precision_loss, reason = "53 bits")]
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn binomial(&mut self, n: u32, p: f64) -> f64 {
        f64::from(u32::try_from((0..n).filter(|_| self.uniform() < p).count()).unwrap_or(u32::MAX))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// Latency shifted by this many standard deviations.
    Latency(f64),
    /// Error rate this many times the baseline's.
    Errors(f64),
    /// Status classes: the 4xx and the 5xx rate this many times the baseline's.
    Statuses(f64, f64),
}

impl Scenario {
    fn label(self) -> String {
        match self {
            Self::Latency(0.0) => "A/A latency".to_owned(),
            Self::Latency(s) => format!("latency +{s} sd"),
            Self::Errors(1.0) => "A/A errors".to_owned(),
            Self::Errors(f) => format!("errors ×{f}"),
            Self::Statuses(1.0, 1.0) => "A/A status classes".to_owned(),
            Self::Statuses(1.0, f) => format!("status classes, 5xx ×{f}"),
            Self::Statuses(f, 1.0) => format!("status classes, 4xx ×{f}"),
            Self::Statuses(c, f) => format!("status classes, 4xx ×{c}, 5xx ×{f}"),
        }
    }

    fn is_null(self) -> bool {
        matches!(self, Self::Latency(0.0) | Self::Errors(1.0) | Self::Statuses(1.0, 1.0))
    }

    fn data(self) -> Data {
        match self {
            Self::Latency(_) => Data::Latency,
            Self::Errors(_) => Data::Errors,
            Self::Statuses(..) => Data::Statuses,
        }
    }

    fn judges(self) -> &'static [JudgeKind] {
        match self {
            Self::Statuses(..) => &[JudgeKind::Sequential],
            _ => &[JudgeKind::Threshold, JudgeKind::MannWhitney, JudgeKind::Sequential],
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Data {
    Latency,
    Errors,
    Statuses,
}

#[derive(Clone, Copy, PartialEq)]
enum JudgeKind {
    Threshold,
    MannWhitney,
    Sequential,
}

impl JudgeKind {
    fn label(self, data: Data) -> &'static str {
        match (self, data) {
            (Self::Threshold, _) => "threshold",
            (Self::MannWhitney, _) => "repeated Mann-Whitney",
            (Self::Sequential, Data::Statuses) => "sequential, per category",
            (Self::Sequential, _) => "sequential",
        }
    }
}

/// Per look, for (candidate, baseline): latency values, error counts,
/// per-value error rates, and [2xx, 4xx, 5xx] counts.
struct Look {
    latency: (Vec<f64>, Vec<f64>),
    errors: (f64, f64),
    error_rates: (Vec<f64>, Vec<f64>),
    statuses: ([f64; 3], [f64; 3]),
}

/// `REQUESTS_PER_LOOK` requests sorted into 2xx, 4xx and 5xx.
fn statuses(rng: &mut Rng, client: f64, server: f64) -> [f64; 3] {
    let mut counts = [0.0; 3];
    for _ in 0..REQUESTS_PER_LOOK {
        let u = rng.uniform();
        let class = if u < server {
            2
        } else if u < server + client {
            1
        } else {
            0
        };
        counts[class] += 1.0;
    }
    counts
}

fn draw(rng: &mut Rng, scenario: Scenario) -> Vec<Look> {
    if let Scenario::Statuses(client, server) = scenario {
        return (0..LOOKS)
            .map(|_| {
                let c = statuses(rng, BASE_CLIENT_RATE * client, BASE_SERVER_RATE * server);
                let b = statuses(rng, BASE_CLIENT_RATE, BASE_SERVER_RATE);
                Look {
                    latency: (Vec::new(), Vec::new()),
                    errors: (0.0, 0.0),
                    error_rates: (Vec::new(), Vec::new()),
                    statuses: (c, b),
                }
            })
            .collect();
    }
    let (shift, factor) = match scenario {
        Scenario::Latency(s) => (s, 1.0),
        Scenario::Errors(f) => (0.0, f),
        Scenario::Statuses(..) => (0.0, 1.0),
    };
    let per_value = REQUESTS_PER_LOOK / 10;
    (0..LOOKS)
        .map(|_| {
            let c: Vec<f64> = (0..VALUES_PER_LOOK).map(|_| 100.0 + 10.0 * (rng.normal() + shift)).collect();
            let b: Vec<f64> = (0..VALUES_PER_LOOK).map(|_| 100.0 + 10.0 * rng.normal()).collect();
            let cv: Vec<f64> = (0..10).map(|_| rng.binomial(per_value, BASE_ERROR_RATE * factor)).collect();
            let bv: Vec<f64> = (0..10).map(|_| rng.binomial(per_value, BASE_ERROR_RATE)).collect();
            let rate = |v: Vec<f64>| v.into_iter().map(|n| n / f64::from(per_value)).collect::<Vec<f64>>();
            Look {
                latency: (c, b),
                errors: (cv.iter().sum(), bv.iter().sum()),
                error_rates: (rate(cv), rate(bv)),
                statuses: ([0.0; 3], [0.0; 3]),
            }
        })
        .collect()
}

fn spec(judge: JudgeKind, data: Data) -> AnalysisSpec {
    let errors = data != Data::Latency;
    let window = HumanDuration::new(Duration::from_secs(30));
    let step = HumanDuration::new(Duration::from_secs(3));
    #[expect(clippy::cast_precision_loss, reason = "10")]
    let n = VALUES_PER_LOOK as f64;
    let judge = match (judge, errors) {
        (_, true) if data == Data::Statuses => JudgeSpec::Sequential(
            SequentialSpec::categories([
                CountCategory::new("2xx", "2xx").direction(Direction::Decrease),
                CountCategory::new("4xx", "4xx"),
                CountCategory::new("5xx", "5xx"),
            ])
            .alpha(ALPHA)
            .margin(SHARE_MARGIN),
        ),
        (JudgeKind::Threshold, false) => JudgeSpec::max(100.0 + Z_98 * 10.0 / n.sqrt()),
        (JudgeKind::Threshold, true) => {
            let requests = f64::from(REQUESTS_PER_LOOK);
            JudgeSpec::max(BASE_ERROR_RATE + Z_98 * (BASE_ERROR_RATE * (1.0 - BASE_ERROR_RATE) / requests).sqrt())
        }
        (JudgeKind::MannWhitney, _) => {
            let mut spec = JudgeSpec::mann_whitney(Direction::Increase, window, step);
            if let JudgeSpec::MannWhitney { tolerance, .. } = &mut spec {
                *tolerance = 0.0;
            }
            spec
        }
        (JudgeKind::Sequential, false) => JudgeSpec::Sequential(
            SequentialSpec::continuous(Direction::Increase, window, step).alpha(ALPHA).margin(LATENCY_MARGIN),
        ),
        (JudgeKind::Sequential, true) => JudgeSpec::Sequential(
            SequentialSpec::counts(Direction::Increase, "requests").alpha(ALPHA).margin(SHARE_MARGIN),
        ),
    };
    AnalysisSpec::new("simulation").metric(MetricCheck::new("m", "q", judge)).interval(window).count(LOOKS)
}

/// Scripts the kit with one canary's data for `judge`.
fn script(kit: &TestKit, looks: &[Look], judge: JudgeKind, data: Data) {
    let errors = data != Data::Latency;
    let m = kit.metric_values();
    for (track, candidate) in [(Track::Canary, true), (Track::Stable, false)] {
        if data == Data::Statuses {
            let side = |l: &Look| if candidate { l.statuses.0 } else { l.statuses.1 };
            let per_look =
                |i: usize| MetricScript::PerCall(looks.iter().map(|l| MetricValue::Scalar(side(l)[i])).collect());
            m.set("m", track, f64::from(REQUESTS_PER_LOOK));
            for (i, class) in ["m-2xx", "m-4xx", "m-5xx"].into_iter().enumerate() {
                m.script(class, track, per_look(i));
            }
            continue;
        }
        let side = |pair: &(Vec<f64>, Vec<f64>)| if candidate { pair.0.clone() } else { pair.1.clone() };
        let count = |pair: (f64, f64)| if candidate { pair.0 } else { pair.1 };
        let script = match (judge, errors) {
            (JudgeKind::Threshold, false) => {
                MetricScript::PerCall(looks.iter().map(|l| MetricValue::Scalar(mean(&side(&l.latency)))).collect())
            }
            (JudgeKind::Threshold, true) => MetricScript::PerCall(
                looks.iter().map(|l| MetricValue::Scalar(count(l.errors) / f64::from(REQUESTS_PER_LOOK))).collect(),
            ),
            (JudgeKind::MannWhitney, _) => {
                // Every value so far, at every look.
                let mut so_far = Vec::new();
                let mut series = Vec::new();
                for l in looks {
                    so_far.extend(if errors { side(&l.error_rates) } else { side(&l.latency) });
                    series.push(so_far.clone());
                }
                MetricScript::Samples(series)
            }
            (JudgeKind::Sequential, false) => MetricScript::Samples(looks.iter().map(|l| side(&l.latency)).collect()),
            (JudgeKind::Sequential, true) => {
                m.set("m-total", track, f64::from(REQUESTS_PER_LOOK));
                MetricScript::PerCall(looks.iter().map(|l| MetricValue::Scalar(count(l.errors))).collect())
            }
        };
        m.script("m", track, script);
    }
}

#[expect(clippy::cast_precision_loss, reason = "a few values")]
fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// How one canary's analysis ended: the look (from 1) at which it failed, if it
/// did, and the looks it used (fewer than 20 when it was decided early).
async fn analyse(spec: &AnalysisSpec, metrics: &Arc<dyn MetricsProvider>) -> (Option<u32>, u32) {
    let (app, _, v2) = testkit::sample_app(1);
    let target = AnalysisTarget::new(app.id(), Track::Canary, Track::Stable, v2.version);
    let runner = match AnalysisRunner::new(spec.clone(), target, Some(Arc::clone(metrics)), &JudgeRegistry::new(), &[])
    {
        Ok(runner) => runner,
        Err(e) => panic!("the simulation's spec is invalid: {e}"),
    };
    let report = runner.run(|_| {}).await;
    let failed = (report.outcome == AnalysisOutcome::Failed).then(|| {
        let last = report.measurements.iter().rev().find(|m| m.outcome == MeasurementOutcome::Failed);
        last.map_or(LOOKS, |m| m.round + 1)
    });
    (failed, report.looks)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let seed = arg(1, 20_261_130);
    let aa = u32::try_from(arg(2, 2_000)).unwrap_or(2_000);
    let ab = u32::try_from(arg(3, 500)).unwrap_or(500);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build() {
        Ok(rt) => rt,
        Err(e) => panic!("no runtime: {e}"),
    };
    let scenarios = [
        Scenario::Latency(0.0),
        Scenario::Latency(0.5),
        Scenario::Latency(1.0),
        Scenario::Latency(2.0),
        Scenario::Errors(1.0),
        Scenario::Errors(1.5),
        Scenario::Errors(2.0),
        Scenario::Statuses(1.0, 1.0),
        Scenario::Statuses(1.0, 2.0),
        Scenario::Statuses(1.5, 1.0),
    ];
    let mut rows = Vec::new();
    runtime.block_on(async {
        let kit = TestKit::new();
        let metrics = kit.metrics();
        for (s, scenario) in (0u64..).zip(scenarios) {
            let data = scenario.data();
            let judges = scenario.judges();
            let runs = if scenario.is_null() { aa } else { ab };
            let mut failures: Vec<Vec<u32>> = judges.iter().map(|_| Vec::new()).collect();
            let mut decided: Vec<Vec<u32>> = judges.iter().map(|_| Vec::new()).collect();
            // One stream per scenario: every judge sees the same canaries.
            let mut rng = Rng(seed ^ s.wrapping_mul(0xd1b5_4a32_d192_ed03));
            for _ in 0..runs {
                let looks = draw(&mut rng, scenario);
                for (j, judge) in judges.iter().enumerate() {
                    script(&kit, &looks, *judge, data);
                    let (failed, used) = analyse(&spec(*judge, data), &metrics).await;
                    if let Some(look) = failed {
                        failures[j].push(look);
                    }
                    decided[j].push(used);
                }
            }
            for ((judge, f), d) in judges.iter().zip(failures).zip(decided) {
                rows.push((scenario, *judge, runs, f, d));
            }
        }
    });
    println!("seed {seed}, {aa} A/A and {ab} A/B canaries per judge and scenario, α = {ALPHA}, up to {LOOKS} looks");
    println!();
    let budgets: Vec<String> = BUDGETS.iter().map(|b| format!("{b} look{}", if *b == 1 { "" } else { "s" })).collect();
    println!("| scenario | judge | {} | median looks to a decision (of 20) | passed early |", budgets.join(" | "));
    println!("|---|---|{}---|---|", "---|".repeat(BUDGETS.len()));
    for (scenario, judge, runs, looks, mut used) in rows {
        let cells: Vec<String> = BUDGETS
            .iter()
            .map(|b| {
                let k = u32::try_from(looks.iter().filter(|l| **l <= *b).count()).unwrap_or(u32::MAX);
                let p = f64::from(k) / f64::from(runs);
                let se = (p * (1.0 - p) / f64::from(runs)).sqrt();
                format!("{:.1} % ± {:.1}", p * 100.0, se * 100.0)
            })
            .collect();
        // A decision: the look at which the analysis failed or passed early; an
        // analysis that ran out of looks decided at look 20.
        let passed_early = used.iter().filter(|u| **u < LOOKS).count() - looks.iter().filter(|l| **l < LOOKS).count();
        used.sort_unstable();
        let median = used.get(used.len() / 2).map_or_else(|| "–".to_owned(), ToString::to_string);
        let share = f64::from(u32::try_from(passed_early).unwrap_or(u32::MAX)) / f64::from(runs) * 100.0;
        println!(
            "| {} | {} | {} | {median} | {share:.1} % |",
            scenario.label(),
            judge.label(scenario.data()),
            cells.join(" | ")
        );
    }
}
