//! Plain round robin.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use super::{Backend, LbError, into_shared};

/// Each backend in turn, ignoring weights: one atomic increment per pick.
///
/// ```
/// use deploy_core::lb::{Backend, RoundRobin};
/// let lb = RoundRobin::new(vec![Backend::new("a", "a:80"), Backend::new("b", "b:80")]);
/// assert_eq!(lb.pick().unwrap().id, "a");
/// assert_eq!(lb.pick().unwrap().id, "b");
/// ```
#[derive(Debug)]
pub struct RoundRobin {
    set: ArcSwap<Vec<Arc<Backend>>>,
    next: AtomicUsize,
}

impl RoundRobin {
    /// A balancer over `backends`. Duplicate ids are not checked here (a set with
    /// duplicates just visits that address more often); [`RoundRobin::replace`] checks.
    pub fn new(backends: Vec<Backend>) -> Self {
        let set = backends.into_iter().map(Arc::new).collect();
        Self { set: ArcSwap::from_pointee(set), next: AtomicUsize::new(0) }
    }

    /// The next backend, or [`LbError::NoBackends`] for an empty set.
    pub fn pick(&self) -> Result<Arc<Backend>, LbError> {
        let set = self.set.load();
        if set.is_empty() {
            return Err(LbError::NoBackends);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % set.len();
        Ok(Arc::clone(&set[i]))
    }

    /// Replaces the set; rotation continues from where it was.
    pub fn replace(&self, backends: Vec<Backend>) -> Result<(), LbError> {
        self.set.store(Arc::new(into_shared(backends)?));
        Ok(())
    }

    /// How many backends are in the set.
    pub fn len(&self) -> usize {
        self.set.load().len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::fixtures::backends;

    #[test]
    fn visits_every_backend_equally() {
        let lb = RoundRobin::new(backends(3));
        let mut counts = std::collections::HashMap::new();
        for _ in 0..300 {
            *counts.entry(lb.pick().unwrap().id.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|c| *c == 100), "{counts:?}");
    }

    #[test]
    fn empty_set_is_an_error_and_duplicates_are_refused() {
        let lb = RoundRobin::new(vec![]);
        assert_eq!(lb.pick(), Err(LbError::NoBackends));
        let dup = vec![Backend::new("a", "x"), Backend::new("a", "y")];
        assert_eq!(lb.replace(dup), Err(LbError::DuplicateBackend { id: "a".into() }));
        lb.replace(backends(2)).unwrap();
        assert_eq!(lb.len(), 2);
    }
}
