//! Least connections over a lock-free tournament tree.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::{Backend, LbError, into_shared};

/// Children per tree node: eight packed `u64`s are one cache line.
const ARITY: usize = 8;
/// An empty leaf; larger than every real entry, so it never wins.
const EMPTY: u64 = u64::MAX;
/// One connection, in the packed entry's upper half.
const ONE: u64 = 1 << 32;

/// One backend set and its tree.
///
/// Every node holds `connections << 32 | index` of the least loaded backend below
/// it, so comparing packed values picks the fewest connections and, on ties, the
/// lowest index. Leaves are the backends' own counters.
#[derive(Debug)]
struct Table {
    backends: Vec<Arc<Backend>>,
    index_of: HashMap<String, usize>,
    nodes: Vec<AtomicU64>,
    first_leaf: usize,
}

impl Table {
    fn new(backends: Vec<Arc<Backend>>, counts: impl Fn(&str) -> u32) -> Self {
        let mut leaves = 1;
        let mut internal = 0;
        while leaves < backends.len() {
            internal += leaves;
            leaves *= ARITY;
        }
        let mut nodes: Vec<AtomicU64> = (0..internal + leaves).map(|_| AtomicU64::new(EMPTY)).collect();
        for (i, b) in backends.iter().enumerate() {
            *nodes[internal + i].get_mut() = u64::from(counts(&b.id)) << 32 | i as u64;
        }
        for p in (0..internal).rev() {
            let min = (ARITY * p + 1..=ARITY * p + ARITY).map(|c| *nodes[c].get_mut()).min().unwrap_or(EMPTY);
            *nodes[p].get_mut() = min;
        }
        let index_of = backends.iter().enumerate().map(|(i, b)| (b.id.clone(), i)).collect();
        Self { backends, index_of, nodes, first_leaf: internal }
    }

    fn connections(&self, index: usize) -> u32 {
        (self.nodes[self.first_leaf + index].load(Ordering::SeqCst) >> 32) as u32
    }

    /// Adds one connection to `index` and returns the new count.
    fn acquire(&self, index: usize) {
        let leaf = self.first_leaf + index;
        self.nodes[leaf].fetch_add(ONE, Ordering::SeqCst);
        self.propagate(leaf);
    }

    /// Removes one connection from `index`, never going below zero.
    fn release(&self, index: usize) {
        let leaf = self.first_leaf + index;
        let _ = self.nodes[leaf].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(ONE));
        self.propagate(leaf);
    }

    /// Recomputes the ancestors of `node` until one already holds the right value.
    ///
    /// Each parent is set by compare-and-swap from its children as read after the
    /// child changed; a lost race re-reads them. When a parent already holds the
    /// minimum, whoever wrote it carries the change further up, so this thread stops.
    fn propagate(&self, mut node: usize) {
        while node > 0 {
            let parent = (node - 1) / ARITY;
            let children = &self.nodes[ARITY * parent + 1..=ARITY * parent + ARITY];
            loop {
                let old = self.nodes[parent].load(Ordering::SeqCst);
                let min = children.iter().map(|c| c.load(Ordering::SeqCst)).min().unwrap_or(EMPTY);
                if old == min {
                    return;
                }
                if self.nodes[parent].compare_exchange(old, min, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    break;
                }
            }
            node = parent;
        }
    }
}

/// Least connections: the backend with the fewest requests in flight, found at the
/// root of an 8-ary tournament tree of atomic counters, so a pick reads one value
/// and the bookkeeping is O(log₈ n) compare-and-swaps with no lock. Ties go to the
/// backend listed first.
///
/// A pick returns a [`ConnectionGuard`]; the connection counts until the guard is
/// dropped. Under concurrent picks two callers can see the same minimum and choose
/// the same backend, as with any lock-free least-connections balancer.
///
/// When the set is replaced, backends that stay keep their counts, and guards taken
/// before the replacement release into the new set.
///
/// ```
/// use deploy_core::lb::{Backend, LeastConnections};
/// let lb = LeastConnections::new(vec![Backend::new("a", "a:80"), Backend::new("b", "b:80")]).unwrap();
/// let first = lb.pick().unwrap();
/// let second = lb.pick().unwrap();
/// assert_eq!((first.backend().id.as_str(), second.backend().id.as_str()), ("a", "b"));
/// drop(first);
/// assert_eq!(lb.pick().unwrap().backend().id, "a");
/// ```
#[derive(Debug, Clone)]
pub struct LeastConnections {
    table: Arc<ArcSwap<Table>>,
}

impl LeastConnections {
    /// A balancer over `backends`, all with no connections.
    pub fn new(backends: Vec<Backend>) -> Result<Self, LbError> {
        let table = Table::new(into_shared(backends)?, |_| 0);
        Ok(Self { table: Arc::new(ArcSwap::from_pointee(table)) })
    }

    /// The least loaded backend, counted as having one more connection until the
    /// guard drops.
    pub fn pick(&self) -> Result<ConnectionGuard, LbError> {
        let table = self.table.load_full();
        let root = table.nodes[0].load(Ordering::SeqCst);
        if root == EMPTY {
            return Err(LbError::NoBackends);
        }
        let index = (root & u64::from(u32::MAX)) as usize;
        table.acquire(index);
        Ok(ConnectionGuard { balancer: Arc::clone(&self.table), table, index })
    }

    /// Replaces the set; backends with the same id keep their in-flight counts.
    pub fn replace(&self, backends: Vec<Backend>) -> Result<(), LbError> {
        let backends = into_shared(backends)?;
        let old = self.table.load();
        let table = Table::new(backends, |id| old.index_of.get(id).map(|i| old.connections(*i)).unwrap_or_default());
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// The in-flight count of backend `id`.
    pub fn connections(&self, id: &str) -> Result<u32, LbError> {
        let table = self.table.load();
        let index = table.index_of.get(id).ok_or_else(|| LbError::UnknownBackend { id: id.to_owned() })?;
        Ok(table.connections(*index))
    }
}

/// A connection counted against a backend of a [`LeastConnections`] balancer until
/// it is dropped.
#[derive(Debug)]
#[must_use = "the connection stops counting as soon as the guard is dropped"]
pub struct ConnectionGuard {
    balancer: Arc<ArcSwap<Table>>,
    table: Arc<Table>,
    index: usize,
}

impl ConnectionGuard {
    /// The chosen backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.table.backends[self.index]
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let current = self.balancer.load();
        if Arc::ptr_eq(&current, &self.table) {
            self.table.release(self.index);
        } else if let Some(i) = current.index_of.get(&self.table.backends[self.index].id) {
            current.release(*i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::fixtures::backends;

    #[test]
    fn always_picks_a_least_loaded_backend() {
        for n in [1, 7, 8, 9, 64, 65, 300] {
            let lb = LeastConnections::new(backends(n)).unwrap();
            let mut held = Vec::new();
            // Fill, then release some in a scattered order, then check every pick.
            for _ in 0..n * 3 {
                held.push(lb.pick().unwrap());
            }
            let mut i = 0;
            held.retain(|_| {
                i += 1;
                i % 3 != 0 && i % 7 != 0
            });
            for _ in 0..n * 2 {
                let min = (0..n).map(|i| lb.connections(&format!("b{i}")).unwrap()).min().unwrap();
                let g = lb.pick().unwrap();
                assert_eq!(lb.connections(&g.backend().id).unwrap(), min + 1, "n={n}");
                held.push(g);
            }
            drop(held);
            assert!((0..n).all(|i| lb.connections(&format!("b{i}")).unwrap() == 0));
        }
    }

    #[test]
    fn counts_survive_a_set_replacement() {
        let lb = LeastConnections::new(backends(2)).unwrap();
        let a = lb.pick().unwrap();
        assert_eq!(a.backend().id, "b0");
        lb.replace(backends(3)).unwrap();
        assert_eq!(lb.connections("b0").unwrap(), 1);
        drop(a);
        assert_eq!(lb.connections("b0").unwrap(), 0);
        assert!(matches!(lb.connections("zz"), Err(LbError::UnknownBackend { .. })));
    }

    #[test]
    fn concurrent_picks_balance_and_return_to_zero() {
        let lb = LeastConnections::new(backends(20)).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let lb = lb.clone();
                s.spawn(move || {
                    for _ in 0..2000 {
                        let g = lb.pick().unwrap();
                        let g2 = lb.pick().unwrap();
                        drop(g);
                        drop(g2);
                    }
                });
            }
        });
        assert!((0..20).all(|i| lb.connections(&format!("b{i}")).unwrap() == 0));
        assert_eq!(lb.pick().unwrap().backend().id, "b0", "the tree settles on the true minimum");
    }

    #[test]
    fn empty_set() {
        assert!(matches!(LeastConnections::new(vec![]).unwrap().pick(), Err(LbError::NoBackends)));
    }
}
