//! nginx's smooth weighted round robin, precomputed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use super::{Backend, LbError, into_shared};

/// The default limit on the schedule length (the sum of weights divided by their
/// greatest common divisor): 4 MiB of `u32` indices.
const DEFAULT_MAX_SCHEDULE: u64 = 1 << 20;

/// One backend set and its precomputed order.
#[derive(Debug)]
struct Schedule {
    backends: Vec<Arc<Backend>>,
    order: Vec<u32>,
}

/// Smooth weighted round robin as nginx does it (`ngx_http_upstream_get_peer`): each
/// round every backend's current weight grows by its weight, the largest wins (the
/// first one on ties) and loses the total. Weights 5, 1, 1 give `a a b a c a a`:
/// heavy backends are spread out instead of picked in bursts.
///
/// The sequence repeats every `sum(weights) / gcd(weights)` picks, so it is computed
/// once per set (in O(period × (distinct weights + log n)), grouping backends of
/// equal weight, whose relative order never changes) and a pick is one atomic
/// increment and an array read. Sets whose period exceeds the limit
/// (2²⁰ picks by default) are refused with [`LbError::ScheduleTooLong`].
///
/// ```
/// use deploy_core::lb::{Backend, SmoothWeightedRoundRobin};
/// let lb = SmoothWeightedRoundRobin::new(vec![
///     Backend::new("a", "a:80").weight(5),
///     Backend::new("b", "b:80").weight(1),
///     Backend::new("c", "c:80").weight(1),
/// ])
/// .unwrap();
/// let seq: String = (0..7).map(|_| lb.pick().unwrap().id.clone()).collect();
/// assert_eq!(seq, "aabacaa");
/// ```
#[derive(Debug)]
pub struct SmoothWeightedRoundRobin {
    schedule: ArcSwap<Schedule>,
    next: AtomicUsize,
    max_schedule: u64,
}

impl SmoothWeightedRoundRobin {
    /// A balancer over `backends`; backends of weight 0 are never picked.
    pub fn new(backends: Vec<Backend>) -> Result<Self, LbError> {
        Self::with_max_schedule(backends, DEFAULT_MAX_SCHEDULE)
    }

    /// A balancer whose schedule may hold at most `max_schedule` picks.
    pub fn with_max_schedule(backends: Vec<Backend>, max_schedule: u64) -> Result<Self, LbError> {
        let schedule = build(into_shared(backends)?, max_schedule)?;
        Ok(Self { schedule: ArcSwap::from_pointee(schedule), next: AtomicUsize::new(0), max_schedule })
    }

    /// The next backend in the smooth order.
    pub fn pick(&self) -> Result<Arc<Backend>, LbError> {
        let s = self.schedule.load();
        if s.order.is_empty() {
            return Err(LbError::NoBackends);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % s.order.len();
        Ok(Arc::clone(&s.backends[s.order[i] as usize]))
    }

    /// Replaces the set and restarts the sequence from its beginning.
    pub fn replace(&self, backends: Vec<Backend>) -> Result<(), LbError> {
        let schedule = build(into_shared(backends)?, self.max_schedule)?;
        self.schedule.store(Arc::new(schedule));
        self.next.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The period of the sequence (sum of weights over their gcd).
    pub fn period(&self) -> usize {
        self.schedule.load().order.len()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Backends of one weight, least picked (then lowest index) first: `(picks, index)`.
type PickHeap = BinaryHeap<Reverse<(u64, u32)>>;

/// Computes one period of nginx's sequence.
///
/// At round `t` (from 1) backend `i`'s current weight is `t·wᵢ − T·pᵢ`, where `pᵢ`
/// counts its earlier picks. Within a group of equal weight the largest current
/// weight is the smallest `(pᵢ, i)`, so each group is a min-heap, and a round
/// compares only the heads of the groups.
fn build(backends: Vec<Arc<Backend>>, max_schedule: u64) -> Result<Schedule, LbError> {
    let g = backends.iter().map(|b| u64::from(b.weight)).fold(0, gcd);
    if g == 0 {
        return Ok(Schedule { backends, order: Vec::new() });
    }
    let total: u64 = backends.iter().map(|b| u64::from(b.weight) / g).sum();
    if total > max_schedule {
        return Err(LbError::ScheduleTooLong { len: total, max: max_schedule });
    }
    let mut groups: BTreeMap<u64, PickHeap> = BTreeMap::new();
    for (i, b) in backends.iter().enumerate() {
        if b.weight > 0 {
            let index = u32::try_from(i).map_err(|_| LbError::InvalidConfig {
                setting: "backends",
                reason: "more than 2^32 backends".into(),
            })?;
            groups.entry(u64::from(b.weight) / g).or_default().push(Reverse((0, index)));
        }
    }
    let mut groups: Vec<(u64, PickHeap)> = groups.into_iter().collect();
    let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let total_i = i128::from(total);
    for t in 1..=i128::from(total) {
        // (current weight, Reverse(index)) of the best head; larger is better.
        let mut best: Option<(i128, Reverse<u32>, usize)> = None;
        for (gi, (w, heap)) in groups.iter().enumerate() {
            if let Some(Reverse((picks, index))) = heap.peek() {
                let current = t * i128::from(*w) - total_i * i128::from(*picks);
                let cand = (current, Reverse(*index), gi);
                if best.is_none_or(|b| (cand.0, cand.1) > (b.0, b.1)) {
                    best = Some(cand);
                }
            }
        }
        let Some((_, Reverse(index), gi)) = best else { break };
        let heap = &mut groups[gi].1;
        if let Some(Reverse((picks, _))) = heap.pop() {
            heap.push(Reverse((picks + 1, index)));
        }
        order.push(index);
    }
    Ok(Schedule { backends, order })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's algorithm, step by step, as the reference.
    fn nginx(weights: &[u32], rounds: usize) -> Vec<usize> {
        let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut out = Vec::new();
        for _ in 0..rounds {
            let mut best: Option<usize> = None;
            for (i, w) in weights.iter().enumerate() {
                if *w == 0 {
                    continue;
                }
                current[i] += i64::from(*w);
                if best.is_none_or(|b| current[i] > current[b]) {
                    best = Some(i);
                }
            }
            let b = best.unwrap();
            current[b] -= total;
            out.push(b);
        }
        out
    }

    fn lb(weights: &[u32]) -> SmoothWeightedRoundRobin {
        let backends = weights.iter().enumerate().map(|(i, w)| Backend::new(format!("{i}"), "x").weight(*w)).collect();
        SmoothWeightedRoundRobin::new(backends).unwrap()
    }

    #[test]
    fn reproduces_nginx_for_5_1_1() {
        let lb = lb(&[5, 1, 1]);
        let names = ["a", "b", "c"];
        let seq: Vec<&str> = (0..14).map(|_| names[lb.pick().unwrap().id.parse::<usize>().unwrap()]).collect();
        assert_eq!(seq.concat(), "aabacaaaabacaa");
        assert_eq!(lb.period(), 7);
    }

    proptest::proptest! {
        #[test]
        fn matches_the_step_by_step_algorithm(weights in proptest::collection::vec(0u32..12, 1..9)) {
            let lb = lb(&weights);
            let period = lb.period();
            let expected = if period == 0 { vec![] } else { nginx(&weights, period * 2) };
            let got: Vec<usize> = (0..expected.len()).map(|_| lb.pick().unwrap().id.parse().unwrap()).collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn zero_weights_and_limits() {
        let zero = lb(&[0, 0]);
        assert_eq!(zero.pick(), Err(LbError::NoBackends));
        let too_long = SmoothWeightedRoundRobin::with_max_schedule(
            vec![Backend::new("a", "x").weight(7), Backend::new("b", "x")],
            4,
        );
        assert_eq!(too_long.err(), Some(LbError::ScheduleTooLong { len: 8, max: 4 }));
        // Common factors are divided out: 10, 20 has period 3.
        assert_eq!(lb(&[10, 20]).period(), 3);
    }
}
