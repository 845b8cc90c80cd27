//! Power of two choices, least request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arc_swap::ArcSwap;
use rand::RngExt;

use super::{Backend, LbError, into_shared};

#[derive(Debug)]
struct Entry {
    backend: Arc<Backend>,
    active: Arc<AtomicU32>,
}

/// Power of two choices, least request (Envoy's `LEAST_REQUEST` with
/// `choice_count: 2`): draw two distinct backends at random and take the one with
/// fewer requests in flight. O(1) per pick, and close to least connections in
/// practice (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing").
///
/// Counters belong to the backend, not the set: after a replacement, backends that
/// stay share their counters with guards taken before it.
///
/// ```
/// use deploy_core::lb::{Backend, PowerOfTwoChoices};
/// let lb = PowerOfTwoChoices::new(vec![Backend::new("a", "a:80"), Backend::new("b", "b:80")]).unwrap();
/// let busy = lb.pick().unwrap();
/// // With two backends both are always drawn, so the idle one wins.
/// assert_ne!(lb.pick().unwrap().backend().id, busy.backend().id);
/// ```
#[derive(Debug)]
pub struct PowerOfTwoChoices {
    set: ArcSwap<Vec<Entry>>,
}

impl PowerOfTwoChoices {
    /// A balancer over `backends`.
    pub fn new(backends: Vec<Backend>) -> Result<Self, LbError> {
        let entries = into_shared(backends)?
            .into_iter()
            .map(|backend| Entry { backend, active: Arc::new(AtomicU32::new(0)) })
            .collect();
        Ok(Self { set: ArcSwap::from_pointee(entries) })
    }

    /// The less loaded of two random backends; counted until the guard drops.
    pub fn pick(&self) -> Result<RequestGuard, LbError> {
        let set = self.set.load();
        let n = set.len();
        let chosen = match n {
            0 => return Err(LbError::NoBackends),
            1 => &set[0],
            _ => {
                let mut rng = rand::rng();
                let i = rng.random_range(0..n);
                // A second, distinct index: shift by 1..n.
                let j = (i + rng.random_range(1..n)) % n;
                let (a, b) = (&set[i], &set[j]);
                if b.active.load(Ordering::Relaxed) < a.active.load(Ordering::Relaxed) { b } else { a }
            }
        };
        chosen.active.fetch_add(1, Ordering::Relaxed);
        Ok(RequestGuard { backend: Arc::clone(&chosen.backend), active: Arc::clone(&chosen.active) })
    }

    /// Replaces the set; backends with the same id keep their counters.
    pub fn replace(&self, backends: Vec<Backend>) -> Result<(), LbError> {
        let backends = into_shared(backends)?;
        let old = self.set.load();
        let by_id: HashMap<&str, &Arc<AtomicU32>> = old.iter().map(|e| (e.backend.id.as_str(), &e.active)).collect();
        let entries = backends
            .into_iter()
            .map(|backend| {
                let active = by_id.get(backend.id.as_str()).map(|a| Arc::clone(a)).unwrap_or_default();
                Entry { backend, active }
            })
            .collect();
        self.set.store(Arc::new(entries));
        Ok(())
    }

    /// The in-flight count of backend `id`.
    pub fn requests(&self, id: &str) -> Result<u32, LbError> {
        self.set
            .load()
            .iter()
            .find(|e| e.backend.id == id)
            .map(|e| e.active.load(Ordering::Relaxed))
            .ok_or_else(|| LbError::UnknownBackend { id: id.to_owned() })
    }
}

/// A request counted against a backend of a [`PowerOfTwoChoices`] balancer until it
/// is dropped.
#[derive(Debug)]
#[must_use = "the request stops counting as soon as the guard is dropped"]
pub struct RequestGuard {
    backend: Arc<Backend>,
    active: Arc<AtomicU32>,
}

impl RequestGuard {
    /// The chosen backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let _ = self.active.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::fixtures::backends;

    #[test]
    fn never_picks_the_busier_of_the_two_and_keeps_load_even() {
        let lb = PowerOfTwoChoices::new(backends(10)).unwrap();
        let held: Vec<_> = (0..1000).map(|_| lb.pick().unwrap()).collect();
        let counts: Vec<u32> = (0..10).map(|i| lb.requests(&format!("b{i}")).unwrap()).collect();
        assert_eq!(counts.iter().sum::<u32>(), 1000);
        // Two choices keep the spread tiny; one random choice would spread by ~±30.
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 6, "{counts:?}");
        drop(held);
        assert!((0..10).all(|i| lb.requests(&format!("b{i}")).unwrap() == 0));
    }

    #[test]
    fn counters_carry_over_by_id() {
        let lb = PowerOfTwoChoices::new(backends(1)).unwrap();
        let g = lb.pick().unwrap();
        lb.replace(backends(2)).unwrap();
        assert_eq!(lb.requests("b0").unwrap(), 1);
        drop(g);
        assert_eq!(lb.requests("b0").unwrap(), 0);
        assert!(PowerOfTwoChoices::new(vec![]).unwrap().pick().is_err());
    }
}
