//! Random bits for identifiers and fencing tokens, without a random-number crate.
//!
//! The kernel needs unpredictable values in a few places only: lease tokens
//! ([`LeaseToken::generate`](crate::state::LeaseToken::generate)), store revisions
//! and temp-file names of the file store, CloudEvents ids. None of them is a
//! cryptographic key: they must not collide, and another process must not be able
//! to guess the next one. std's `RandomState` gives that: its SipHash keys are drawn
//! from the operating system's random source once per thread and stepped for every
//! new state, and SipHash under a secret key is a pseudo-random function, so its
//! output cannot be predicted without the keys. A process-wide counter and the
//! clock are mixed in so that two values never come from the same input. This spares
//! every user of the kernel the `rand` crate (the `lb` toolkit feature still uses it
//! for its per-request draws).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 64 unpredictable bits.
pub(crate) fn u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

/// 128 unpredictable bits (two independent 64-bit draws).
pub(crate) fn u128() -> u128 {
    (u128::from(u64()) << 64) | u128::from(u64())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn draws_do_not_repeat_and_use_every_bit() {
        let draws: Vec<u128> = (0..10_000).map(|_| super::u128()).collect();
        let distinct: HashSet<u128> = draws.iter().copied().collect();
        assert_eq!(distinct.len(), draws.len());
        // Every bit position is set in some draw and clear in another: no half of the
        // value is constant.
        let ones = draws.iter().fold(0u128, |acc, d| acc | d);
        let zeros = draws.iter().fold(0u128, |acc, d| acc | !d);
        assert_eq!(ones, u128::MAX);
        assert_eq!(zeros, u128::MAX);
    }

    #[test]
    fn draws_from_other_threads_differ() {
        let here: HashSet<u64> = (0..100).map(|_| super::u64()).collect();
        let there = std::thread::spawn(|| (0..100).map(|_| super::u64()).collect::<HashSet<u64>>());
        let there = there.join().unwrap_or_default();
        assert_eq!(there.len(), 100);
        assert!(here.is_disjoint(&there));
    }
}
