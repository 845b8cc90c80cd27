//! Retries with exponential backoff for errors that may pass.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::backoff::Backoff;

/// How often and how patiently the engine retries a retryable failure
/// ([`Classify::is_retryable`](crate::error::Classify::is_retryable)).
///
/// ```
/// use std::time::Duration;
/// use deploy_core::engine::RetryPolicy;
/// let p = RetryPolicy::default();
/// assert_eq!(p.backoff(1), Duration::from_secs(1));
/// assert_eq!(p.backoff(3), Duration::from_secs(4));
/// assert_eq!(p.backoff(30), p.max_backoff);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Tries in all, the first included; 1 means no retry.
    pub attempts: u32,
    /// The wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Four tries, waiting 1 s, 2 s and 4 s.
    fn default() -> Self {
        Self { attempts: 4, initial_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// A policy.
    pub fn new(attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        Self { attempts, initial_backoff, max_backoff }
    }

    /// The policy's waits as the suite's [`Backoff`], without jitter: the engine is
    /// the only client of its backends in a rollout, so it waits exactly.
    pub fn as_backoff(&self) -> Backoff {
        Backoff::new(self.initial_backoff, self.max_backoff).jitter(0.0)
    }

    /// The wait before retry number `retry` (from 1).
    pub fn backoff(&self, retry: u32) -> Duration {
        self.as_backoff().delay(retry)
    }
}

/// Runs `op` until it succeeds, fails with an error `retryable` rejects, or the
/// policy's tries are used up; each retry is reported to `note`, naming the
/// operation by `what` (only built then: the common path formats nothing).
pub(crate) async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &(dyn Fn() -> String + Sync),
    retryable: impl Fn(&E) -> bool,
    note: &mut (dyn FnMut(String) + Send),
    mut op: F,
) -> Result<T, E>
where
    E: Display + crate::error::Classify,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut tries = 1;
    loop {
        let result = op().await;
        if let Err(e) = &result {
            super::telemetry::backend_error::<E>(e.kind());
        }
        match result {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && tries < policy.attempts => {
                let wait = policy.backoff(tries);
                note(format!("{} failed ({e}); retry {tries} of {} in {wait:?}", what(), policy.attempts - 1));
                tokio::time::sleep(wait).await;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
