//! A sliding-window limit on how many calls start, shared by every caller of one
//! provider.
//!
//! Why a sliding log and not a token bucket: a provider's limit is usually stated as
//! "at most N requests per second", and a token bucket with a burst allows up to
//! `burst + rate × window` in some window. Remembering the start times of the last N
//! calls makes the stated limit hold in *every* window, at the price of N instants.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `calls` calls start in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    calls: NonZeroU32,
    per: Duration,
}

impl RateLimit {
    /// At most `calls` calls in any window of length `per`. A zero `per` is no limit
    /// in practice: every window is empty.
    pub fn new(calls: NonZeroU32, per: Duration) -> Self {
        Self { calls, per }
    }

    /// At most `calls` calls in any one-second window.
    pub fn per_second(calls: NonZeroU32) -> Self {
        Self::new(calls, Duration::from_secs(1))
    }

    /// How many calls a window admits.
    pub fn calls(&self) -> u32 {
        self.calls.get()
    }

    /// The window's length.
    pub fn per(&self) -> Duration {
        self.per
    }
}

/// The limiter: waiting callers queue in arrival order (tokio's mutex is fair).
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: RateLimit,
    starts: Mutex<VecDeque<Instant>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self { limit, starts: Mutex::new(VecDeque::with_capacity(limit.calls() as usize)) }
    }

    /// Waits until one more call may start without exceeding the limit, and counts it.
    pub(crate) async fn acquire(&self) {
        let mut starts = self.starts.lock().await;
        let window = self.limit.per();
        loop {
            let now = Instant::now();
            while starts.front().is_some_and(|s| now.duration_since(*s) >= window) {
                starts.pop_front();
            }
            if starts.len() < self.limit.calls() as usize {
                starts.push_back(now);
                return;
            }
            // Full: the oldest start leaves the window first. Holding the lock while
            // sleeping keeps the queue in order.
            if let Some(oldest) = starts.front().copied() {
                tokio::time::sleep_until(oldest + window).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_window_ever_holds_more_than_the_limit() {
        let limiter = std::sync::Arc::new(Limiter::new(RateLimit::new(
            NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            Duration::from_millis(100),
        )));
        let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (limiter, started) = (limiter.clone(), started.clone());
                tokio::spawn(async move {
                    limiter.acquire().await;
                    started.lock().map(|mut s| s.push(Instant::now())).ok();
                })
            })
            .collect();
        for task in tasks {
            task.await.ok();
        }
        let mut started = started.lock().map(|s| s.clone()).unwrap_or_default();
        started.sort();
        assert_eq!(started.len(), 20);
        for (i, start) in started.iter().enumerate() {
            let in_window =
                started[i..].iter().take_while(|s| s.duration_since(*start) < Duration::from_millis(100)).count();
            assert!(in_window <= 3, "{in_window} calls started within 100 ms of call {i}");
        }
        // 20 calls at 3 per 100 ms need at least 6 full windows.
        let span = started[19].duration_since(started[0]);
        assert!(span >= Duration::from_millis(600), "20 calls took only {span:?}");
    }
}
