//! Load balancing: choosing the backend for the next request.
//!
//! Every balancer here holds its backend set behind an [`arc_swap::ArcSwap`], so a
//! pick takes no lock: it loads the current set, does O(1) work (or O(log n) with a
//! fixed, small base for [`LeastConnections`]) and returns. Replacing the set
//! (`replace`) builds the new set's tables off the hot path and swaps them in; picks
//! already running finish on the set they loaded.
//!
//! | balancer | picks | cost of a pick |
//! |---|---|---|
//! | [`RoundRobin`] | each backend in turn | O(1) |
//! | [`SmoothWeightedRoundRobin`] | nginx's smooth weighted order (5,1,1 → a a b a c a a) | O(1): the order is precomputed |
//! | [`LeastConnections`] | the backend with the fewest in-flight requests | O(log₈ n) atomic updates |
//! | [`PowerOfTwoChoices`] | the less loaded of two random backends | O(1) |
//! | [`ConsistentHash`] | the owner of a key (client IP, header) on a hash ring | O(1): a fixed-size slot table |
//! | [`HealthBased`] | round robin over healthy, non-ejected backends | O(1) |
//!
//! ```
//! use deploy_core::lb::{Backend, RoundRobin};
//! let lb = RoundRobin::new(vec![Backend::new("a", "10.0.0.1:80"), Backend::new("b", "10.0.0.2:80")]);
//! let picks: Vec<String> = (0..4).map(|_| lb.pick().unwrap().id.clone()).collect();
//! assert_eq!(picks, ["a", "b", "a", "b"]);
//! ```

mod consistent_hash;
mod health_based;
mod least_connections;
mod power_of_two;
mod round_robin;
mod weighted;

pub use consistent_hash::{ConsistentHash, RingConfig, stable_hash};
pub use health_based::{Clock, HealthBased, OutlierDetection, TokioClock};
pub use least_connections::{ConnectionGuard, LeastConnections};
pub use power_of_two::{PowerOfTwoChoices, RequestGuard};
pub use round_robin::RoundRobin;
pub use weighted::SmoothWeightedRoundRobin;

use std::sync::Arc;

use crate::error::{Classify, ErrorKind};

/// One upstream a balancer can choose: an id that stays the same across set
/// replacements (balancers carry per-backend state over by id), an address for the
/// caller to connect to, and a relative weight.
///
/// ```
/// use deploy_core::lb::Backend;
/// let b = Backend::new("web-1", "10.0.0.1:8080").weight(5);
/// assert_eq!((b.id.as_str(), b.weight), ("web-1", 5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Backend {
    /// A stable identity, unique within a set.
    pub id: String,
    /// Where to send requests (`host:port`, a URL; the balancer does not read it).
    pub address: String,
    /// The relative share of requests for weighted balancers; 0 takes the backend
    /// out of weighted rotation. Defaults to 1.
    pub weight: u32,
}

impl Backend {
    /// A backend of weight 1.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> Self {
        Self { id: id.into(), address: address.into(), weight: 1 }
    }

    /// Sets the weight.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

/// Why no backend could be chosen, or a backend set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LbError {
    /// The set is empty (or, for weighted balancers, every weight is 0).
    #[error("no backends to choose from")]
    NoBackends,
    /// Every backend is unhealthy or ejected.
    #[error("no available backend: {unhealthy} unhealthy and {ejected} ejected of {total}")]
    NoAvailableBackend {
        /// Backends in the set.
        total: usize,
        /// Backends marked unhealthy by health checks.
        unhealthy: usize,
        /// Backends ejected as outliers (and not also unhealthy).
        ejected: usize,
    },
    /// Two backends share an id.
    #[error("backend id {id} appears more than once")]
    DuplicateBackend {
        /// The repeated id.
        id: String,
    },
    /// The smooth weighted order would be longer than the configured limit.
    #[error("weighted schedule of {len} picks exceeds the limit of {max}; lower the weights")]
    ScheduleTooLong {
        /// The reduced sum of weights.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A configuration value is out of range.
    #[error("invalid load balancer setting {setting}: {reason}")]
    InvalidConfig {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend is not in the current set.
    #[error("backend {id} is not in the set")]
    UnknownBackend {
        /// The id asked for.
        id: String,
    },
}

impl Classify for LbError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoBackends | Self::NoAvailableBackend { .. } => ErrorKind::Unavailable,
            Self::UnknownBackend { .. } => ErrorKind::NotFound,
            Self::DuplicateBackend { .. } | Self::ScheduleTooLong { .. } | Self::InvalidConfig { .. } => {
                ErrorKind::InvalidInput
            }
        }
    }
}

/// Wraps the backends in `Arc`s and rejects duplicate ids.
fn into_shared(backends: Vec<Backend>) -> Result<Vec<Arc<Backend>>, LbError> {
    let mut seen = std::collections::HashSet::with_capacity(backends.len());
    for b in &backends {
        if !seen.insert(b.id.as_str()) {
            return Err(LbError::DuplicateBackend { id: b.id.clone() });
        }
    }
    Ok(backends.into_iter().map(Arc::new).collect())
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::Backend;

    /// `n` backends named `b0`, `b1`, … of weight 1.
    pub(crate) fn backends(n: usize) -> Vec<Backend> {
        (0..n).map(|i| Backend::new(format!("b{i}"), format!("10.0.{}.{}:80", i / 256, i % 256))).collect()
    }
}
