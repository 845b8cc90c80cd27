//! Consistent hashing on a ring with virtual nodes, looked up through a slot table.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Backend, LbError, into_shared};

/// A 64-bit hash that is the same in every process and every release of this crate
/// (FNV-1a followed by the SplitMix64 finalizer), so that several balancer instances
/// map a key to the same backend.
///
/// ```
/// use deploy_core::lb::stable_hash;
/// assert_eq!(stable_hash(b"10.0.0.7"), stable_hash(b"10.0.0.7"));
/// assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
/// ```
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Ring settings, as Envoy's ring hash and Maglev expose them.
///
/// ```
/// use deploy_core::lb::RingConfig;
/// let c = RingConfig::default().virtual_nodes(50).table_bits(18);
/// assert_eq!((c.virtual_nodes, c.table_bits), (50, 18));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingConfig {
    /// Points on the ring per unit of weight (a backend of weight 2 gets twice as
    /// many). More points spread keys more evenly. Default 100.
    pub virtual_nodes: u32,
    /// The slot table has 2^`table_bits` entries (default 16: 65,536 slots, 256 KiB).
    /// A backend's share is quantised to whole slots, so keep the table at least 100
    /// times the backend count for shares within about 10 %, as Maglev advises.
    pub table_bits: u8,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self { virtual_nodes: 100, table_bits: 16 }
    }
}

impl RingConfig {
    /// Sets the virtual nodes per unit of weight.
    #[must_use]
    pub fn virtual_nodes(mut self, n: u32) -> Self {
        self.virtual_nodes = n;
        self
    }

    /// Sets the slot table size to 2^`bits`.
    #[must_use]
    pub fn table_bits(mut self, bits: u8) -> Self {
        self.table_bits = bits;
        self
    }
}

#[derive(Debug)]
struct Ring {
    backends: Vec<Arc<Backend>>,
    /// For each slot, the index of the backend owning the slot's first hash.
    slots: Vec<u32>,
    shift: u32,
}

/// Consistent hashing of a key (client IP, a header, a session id) to a backend.
///
/// Each backend puts `virtual_nodes × weight` points on a 64-bit hash ring. The key
/// space is cut into 2^`table_bits` slots, and each slot belongs to the owner of the
/// first ring point at or after the slot's start; a pick hashes the key and reads
/// one slot, so its cost does not depend on the backend count. Adding a backend
/// moves to it exactly the slots whose successor point is now one of its own, and
/// nothing else moves: about 1/(n+1) of keys when one backend joins n. Removing a
/// backend moves only its own keys.
///
/// ```
/// use deploy_core::lb::{Backend, ConsistentHash, RingConfig};
/// let backends = vec![Backend::new("a", "a:80"), Backend::new("b", "b:80")];
/// let lb = ConsistentHash::new(backends, RingConfig::default()).unwrap();
/// let owner = lb.pick(b"203.0.113.9").unwrap();
/// assert_eq!(lb.pick(b"203.0.113.9").unwrap().id, owner.id);
/// ```
#[derive(Debug)]
pub struct ConsistentHash {
    ring: ArcSwap<Ring>,
    config: RingConfig,
}

impl ConsistentHash {
    /// A ring over `backends`; backends of weight 0 own no keys.
    pub fn new(backends: Vec<Backend>, config: RingConfig) -> Result<Self, LbError> {
        let ring = build(into_shared(backends)?, config)?;
        Ok(Self { ring: ArcSwap::from_pointee(ring), config })
    }

    /// The backend that owns `key`.
    pub fn pick(&self, key: &[u8]) -> Result<Arc<Backend>, LbError> {
        self.pick_hash(stable_hash(key))
    }

    /// The backend that owns a key already hashed with [`stable_hash`] (or any hash
    /// spread over all 64 bits).
    pub fn pick_hash(&self, hash: u64) -> Result<Arc<Backend>, LbError> {
        let ring = self.ring.load();
        if ring.slots.is_empty() {
            return Err(LbError::NoBackends);
        }
        let slot = (hash >> ring.shift) as usize;
        Ok(Arc::clone(&ring.backends[ring.slots[slot] as usize]))
    }

    /// Replaces the set, rebuilding the ring.
    pub fn replace(&self, backends: Vec<Backend>) -> Result<(), LbError> {
        let ring = build(into_shared(backends)?, self.config)?;
        self.ring.store(Arc::new(ring));
        Ok(())
    }
}

fn build(backends: Vec<Arc<Backend>>, config: RingConfig) -> Result<Ring, LbError> {
    if !(1..=24).contains(&config.table_bits) {
        return Err(LbError::InvalidConfig { setting: "table_bits", reason: "must be 1 to 24".into() });
    }
    if config.virtual_nodes == 0 {
        return Err(LbError::InvalidConfig { setting: "virtual_nodes", reason: "must be at least 1".into() });
    }
    let mut points: Vec<(u64, u32)> = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let index = u32::try_from(i)
            .map_err(|_| LbError::InvalidConfig { setting: "backends", reason: "more than 2^32 backends".into() })?;
        let base = stable_hash(b.id.as_bytes());
        let count = u64::from(config.virtual_nodes) * u64::from(b.weight);
        for v in 0..count {
            points.push((mix(base ^ mix(v.wrapping_add(0x9e37_79b9_7f4a_7c15))), index));
        }
    }
    if points.is_empty() {
        return Ok(Ring { backends, slots: Vec::new(), shift: 64 - u32::from(config.table_bits) });
    }
    // Ties (vanishingly rare) go to the smaller backend id, whatever the set's order.
    points
        .sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| backends[a.1 as usize].id.cmp(&backends[b.1 as usize].id)));
    let shift = 64 - u32::from(config.table_bits);
    let table_len = 1usize << config.table_bits;
    let mut slots = Vec::with_capacity(table_len);
    let mut next = 0;
    for slot in 0..table_len as u64 {
        let start = slot << shift;
        while next < points.len() && points[next].0 < start {
            next += 1;
        }
        slots.push(points.get(next).unwrap_or(&points[0]).1);
    }
    Ok(Ring { backends, slots, shift })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::fixtures::backends;

    fn owners(lb: &ConsistentHash, keys: usize) -> Vec<String> {
        (0..keys).map(|k| lb.pick(format!("client-{k}").as_bytes()).unwrap().id.clone()).collect()
    }

    #[test]
    fn adding_one_backend_moves_about_one_in_n_keys_and_only_to_it() {
        const KEYS: usize = 50_000;
        for n in [4usize, 10, 50] {
            let lb = ConsistentHash::new(backends(n), RingConfig::default()).unwrap();
            let before = owners(&lb, KEYS);
            lb.replace(backends(n + 1)).unwrap();
            let after = owners(&lb, KEYS);
            let newcomer = format!("b{n}");
            let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
            assert!(moved.iter().all(|(_, a)| **a == newcomer), "a key moved between old backends");
            let fraction = moved.len() as f64 / KEYS as f64;
            let ideal = 1.0 / (n + 1) as f64;
            assert!(fraction <= ideal * 1.3 && fraction >= ideal * 0.7, "n={n}: moved {fraction}, ideal {ideal}");
        }
    }

    #[test]
    fn removing_a_backend_moves_only_its_keys_and_load_is_even() {
        let lb = ConsistentHash::new(backends(10), RingConfig::default()).unwrap();
        let before = owners(&lb, 20_000);
        let mut counts = std::collections::HashMap::new();
        for o in &before {
            *counts.entry(o.clone()).or_insert(0usize) += 1;
        }
        assert!(counts.values().all(|c| (1400..=2600).contains(c)), "{counts:?}");
        let mut fewer = backends(10);
        fewer.remove(3);
        lb.replace(fewer).unwrap();
        let after = owners(&lb, 20_000);
        for (b, a) in before.iter().zip(&after) {
            if b != "b3" {
                assert_eq!(b, a);
            } else {
                assert_ne!(a, "b3");
            }
        }
    }

    #[test]
    fn order_of_the_set_does_not_matter_and_weights_count() {
        let mut reversed = backends(5);
        reversed.reverse();
        let a = ConsistentHash::new(backends(5), RingConfig::default()).unwrap();
        let b = ConsistentHash::new(reversed, RingConfig::default()).unwrap();
        assert_eq!(owners(&a, 2000), owners(&b, 2000));

        let heavy = vec![Backend::new("h", "x").weight(3), Backend::new("l", "x")];
        let lb = ConsistentHash::new(heavy, RingConfig::default()).unwrap();
        let h = owners(&lb, 20_000).iter().filter(|o| *o == "h").count();
        assert!((13_500..=16_500).contains(&h), "{h}");
    }

    #[test]
    fn bad_settings_and_empty_rings() {
        assert!(ConsistentHash::new(backends(1), RingConfig::default().table_bits(0)).is_err());
        assert!(ConsistentHash::new(backends(1), RingConfig::default().virtual_nodes(0)).is_err());
        let empty = ConsistentHash::new(vec![], RingConfig::default()).unwrap();
        assert_eq!(empty.pick(b"k"), Err(LbError::NoBackends));
    }
}
