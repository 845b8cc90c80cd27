//! The sequential judge keeps its promise: looked at after every batch of values,
//! it rolls back at most α of good canaries (within Monte Carlo error), while a
//! fixed-sample Mann-Whitney test repeated at every look does not; and it finds
//! clear regressions within a few looks. The full table is docs/analysis.md.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
#![allow(clippy::cast_precision_loss, reason = "counts of a few hundred as rates")]

use deploy_core::analysis::kayenta::{Classification, MannWhitneyClassifier};
use deploy_core::analysis::sequential::SequentialSpec;
use deploy_core::analysis::{Direction, MeasurementOutcome};

/// SplitMix64 and Box-Muller: deterministic normal values.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

const LOOKS: usize = 20;
const PER_LOOK: usize = 10;
const CANARIES: usize = 400;
const ALPHA: f64 = 0.02;

/// The first look (from 1) at which each judge rejects, for one canary.
fn first_rejections(rng: &mut Rng, shift: f64) -> (Option<usize>, Option<usize>) {
    let spec = SequentialSpec::continuous(Direction::Increase, "30s".parse().unwrap(), "3s".parse().unwrap());
    let mw = MannWhitneyClassifier::new(Direction::Increase).tolerance(0.0);
    let (mut c, mut b) = (Vec::new(), Vec::new());
    let (mut seq, mut rep) = (None, None);
    for look in 1..=LOOKS {
        c.extend((0..PER_LOOK).map(|_| 100.0 + 10.0 * (rng.normal() + shift)));
        b.extend((0..PER_LOOK).map(|_| 100.0 + 10.0 * rng.normal()));
        if seq.is_none() && spec.judge_values(&c, &b).outcome == MeasurementOutcome::Failed {
            seq = Some(look);
        }
        // The repeated test is only needed for its first 10 looks (it is the slow one).
        if rep.is_none() && look <= 10 && mw.classify(&c, &b).classification == Classification::High {
            rep = Some(look);
        }
    }
    (seq, rep)
}

#[test]
fn anytime_valid_where_repeated_mann_whitney_is_not() {
    let mut rng = Rng(20_261_130);
    let runs: Vec<_> = (0..CANARIES).map(|_| first_rejections(&mut rng, 0.0)).collect();
    let n = CANARIES as f64;
    let bound = ALPHA + 3.0 * (ALPHA * (1.0 - ALPHA) / n).sqrt();
    let sequential = runs.iter().filter(|(s, _)| s.is_some()).count() as f64 / n;
    let repeated = runs.iter().filter(|(_, r)| r.is_some()).count() as f64 / n;
    assert!(sequential <= bound, "sequential false rollbacks {sequential} > {bound}");
    assert!(repeated > ALPHA * 2.0, "repeated Mann-Whitney over 10 looks {repeated}: the inflation it should show");
    eprintln!("false rollbacks: sequential {sequential} (20 looks), repeated Mann-Whitney {repeated} (10 looks)");
}

#[test]
fn a_two_sd_regression_is_found_within_a_few_looks() {
    let mut rng = Rng(7);
    let runs: Vec<_> = (0..200).map(|_| first_rejections(&mut rng, 2.0)).collect();
    let within_five = runs.iter().filter(|(s, _)| s.is_some_and(|l| l <= 5)).count();
    assert!(within_five >= 190, "{within_five} of 200 found within 5 looks");
}

#[test]
fn counts_stay_valid_over_many_looks() {
    let mut rng = Rng(11);
    let spec = SequentialSpec::counts(Direction::Increase, "requests");
    let mut false_rollbacks = 0;
    for _ in 0..CANARIES {
        let (mut c, mut b) = (Vec::new(), Vec::new());
        for _ in 0..LOOKS {
            let errors = |rng: &mut Rng| (0..1_000).filter(|_| rng.uniform() < 0.01).count() as f64;
            c.extend([errors(&mut rng), 1_000.0]);
            b.extend([errors(&mut rng), 1_000.0]);
            if spec.judge_values(&c, &b).outcome == MeasurementOutcome::Failed {
                false_rollbacks += 1;
                break;
            }
        }
    }
    let rate = f64::from(false_rollbacks) / CANARIES as f64;
    assert!(rate <= ALPHA + 3.0 * (ALPHA * (1.0 - ALPHA) / CANARIES as f64).sqrt(), "{rate}");
}

/// Per-category counts (2xx/4xx/5xx, 1 000 requests per look and track): a good
/// canary is failed at most α of the time over 20 looks; 5xx doubled is found.
#[test]
fn per_category_counts_stay_valid_over_many_looks_and_find_doubled_5xx() {
    use deploy_core::analysis::sequential::CountCategory;
    let spec = SequentialSpec::categories([
        CountCategory::new("2xx", "q").direction(Direction::Decrease),
        CountCategory::new("4xx", "q"),
        CountCategory::new("5xx", "q"),
    ]);
    let look = |rng: &mut Rng, server: f64| {
        let mut counts = [1_000.0, 0.0, 0.0, 0.0];
        for _ in 0..1_000 {
            let u = rng.uniform();
            let class = if u < server {
                3
            } else if u < server + 0.02 {
                2
            } else {
                1
            };
            counts[class] += 1.0;
        }
        counts
    };
    let run = |rng: &mut Rng, server: f64| {
        let (mut c, mut b) = (Vec::new(), Vec::new());
        for n in 1..=LOOKS {
            c.extend(look(rng, server));
            b.extend(look(rng, 0.01));
            let v = spec.judge_values(&c, &b);
            if v.outcome == MeasurementOutcome::Failed {
                assert!(v.decisive);
                return Some(n);
            }
        }
        None
    };
    let mut rng = Rng(13);
    let false_rollbacks = (0..CANARIES).filter(|_| run(&mut rng, 0.01).is_some()).count();
    let rate = false_rollbacks as f64 / CANARIES as f64;
    assert!(rate <= ALPHA + 3.0 * (ALPHA * (1.0 - ALPHA) / CANARIES as f64).sqrt(), "{rate}");
    let found = (0..100).filter(|_| run(&mut rng, 0.02).is_some()).count();
    assert!(found >= 90, "{found} of 100 doubled-5xx canaries found within {LOOKS} looks");
}

/// With a margin, a good canary's test becomes decisive (clearly no regression)
/// once its confidence sequence lies within it, before the last look.
#[test]
fn a_margin_lets_a_good_canary_be_decided_early() {
    let mut rng = Rng(17);
    let with_margin =
        SequentialSpec::continuous(Direction::Increase, "30s".parse().unwrap(), "3s".parse().unwrap()).margin(5.0);
    let (mut c, mut b) = (Vec::new(), Vec::new());
    let mut decided = None;
    for n in 1..=LOOKS {
        c.extend((0..PER_LOOK).map(|_| 100.0 + 10.0 * rng.normal()));
        b.extend((0..PER_LOOK).map(|_| 100.0 + 10.0 * rng.normal()));
        let v = with_margin.judge_values(&c, &b);
        if v.decisive {
            assert_eq!(v.outcome, MeasurementOutcome::Successful, "{}", v.detail);
            assert!(v.evidence.unwrap().statistics.bounds.unwrap().1 <= 5.0);
            decided = Some(n);
            break;
        }
    }
    assert!(decided.is_some_and(|n| n < LOOKS), "decided at {decided:?}");
}
