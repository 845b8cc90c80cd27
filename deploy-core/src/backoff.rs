//! Exponential backoff, capped, with jitter: the suite's one way to space retries.
//! The engine's [`RetryPolicy`](crate::engine::RetryPolicy) computes its waits with
//! it, HTTP health checks (`http_check`, feature `http`) wait
//! with it between attempts, and deploy-k8s spaces its retries of writes that lost
//! a race (409) with it.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How long to wait between two attempts: `initial` doubled for each further retry,
/// capped at `max`, then shortened by a random share of up to `jitter` so that many
/// clients started together do not knock on the target in lock step.
///
/// Bounds: [`Backoff::delay`] is never above `max`, and [`Backoff::next_delay`] is
/// between `delay × (1 − jitter)` and `delay`.
///
/// ```
/// use std::time::Duration;
/// use deploy_core::backoff::Backoff;
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).jitter(0.0);
/// assert_eq!(b.delay(1), Duration::from_millis(100));
/// assert_eq!(b.delay(3), Duration::from_millis(400));
/// assert_eq!(b.delay(10), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The wait before the first retry.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The share of the wait, from 0 to 1, that is randomly taken off; 0 waits exactly
    /// the exponential delay, 1 waits anything from zero to it ("full jitter").
    pub jitter: f64,
}

impl Default for Backoff {
    /// 200 ms, doubling up to 5 s, with half of each wait random.
    fn default() -> Self {
        Self { initial: Duration::from_millis(200), max: Duration::from_secs(5), jitter: 0.5 }
    }
}

impl Backoff {
    /// A backoff from `initial` up to `max`, with the default jitter of one half.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, ..Self::default() }
    }

    /// Sets the jitter share; values outside `0..=1` are clamped.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        self
    }

    /// The wait before retry `retry` (from 1) without jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `retry` with `unit` (in `0..1`) as the random draw:
    /// `delay × (1 − jitter × unit)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deploy_core::backoff::Backoff;
    /// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).jitter(0.5);
    /// assert_eq!(b.jittered(2, 0.0), Duration::from_millis(200));
    /// assert_eq!(b.jittered(2, 0.5), Duration::from_millis(150));
    /// ```
    pub fn jittered(&self, retry: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() { 0.0 } else { unit.clamp(0.0, 1.0) };
        self.delay(retry).mul_f64(1.0 - self.jitter.clamp(0.0, 1.0) * unit)
    }

    /// The wait before retry `retry` with a fresh random draw.
    pub fn next_delay(&self, retry: u32) -> Duration {
        self.jittered(retry, unit_random())
    }
}

/// A uniform draw from `0..1`. `RandomState` is seeded from the operating system's
/// randomness once per thread and stepped for every new state, which is plenty for
/// spreading retries and spares a dependency.
fn unit_random() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    let bits = hasher.finish() >> 11;
    #[expect(clippy::cast_precision_loss, reason = "53 random bits fit an f64's mantissa exactly")]
    let unit = bits as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters_within_bounds() {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_millis(300)).jitter(0.5);
        let plain: Vec<u128> = (1..=5).map(|r| b.delay(r).as_millis()).collect();
        assert_eq!(plain, [50, 100, 200, 300, 300]);
        let draws: Vec<Duration> = (0..200).map(|_| b.next_delay(3)).collect();
        assert!(draws.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(200)));
        // The draws are spread, not one value.
        let distinct: std::collections::BTreeSet<Duration> = draws.into_iter().collect();
        assert!(distinct.len() > 50, "{}", distinct.len());
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(300));
        assert_eq!(Backoff::default().jitter(7.0).jitter, 1.0);
    }

    #[test]
    fn never_above_the_cap_and_never_below_the_jitter_floor() {
        let b = Backoff::new(Duration::from_millis(7), Duration::from_secs(2)).jitter(0.25);
        for retry in [0, 1, 2, 5, 9, 10, 20, 31, 32, 64, u32::MAX] {
            let plain = b.delay(retry);
            assert!(plain <= Duration::from_secs(2), "retry {retry}: {plain:?}");
            assert!(plain >= Duration::from_millis(7), "retry {retry}: {plain:?}");
            for unit in [0.0, 0.5, 1.0, f64::NAN, -3.0, 4.0] {
                let jittered = b.jittered(retry, unit);
                assert!(
                    jittered <= plain && jittered >= plain.mul_f64(0.75),
                    "retry {retry} unit {unit}: {jittered:?}"
                );
            }
        }
        // Without jitter the wait is exact, as the engine's retry policy uses it.
        let exact = Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).jitter(0.0);
        assert_eq!((1..=6).map(|r| exact.next_delay(r).as_secs()).collect::<Vec<_>>(), [1, 2, 4, 8, 16, 30]);
    }
}
