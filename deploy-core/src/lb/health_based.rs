//! Health-based selection with outlier ejection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Backend, LbError, into_shared};

/// A monotonic clock, injectable so that ejection times can be tested.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since an arbitrary, fixed origin; never decreases.
    fn now(&self) -> Duration;
}

/// Tokio's clock: follows `tokio::time::pause` and `advance` inside a paused test
/// runtime, and the system's monotonic clock everywhere else.
///
/// ```
/// use deploy_core::lb::{Clock, TokioClock};
/// let clock = TokioClock::new();
/// assert!(clock.now() < std::time::Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self { origin: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

/// Outlier detection as Envoy and Istio define it.
///
/// ```
/// use std::time::Duration;
/// use deploy_core::lb::OutlierDetection;
/// let od = OutlierDetection::default().consecutive_errors(3).max_ejection_percent(50);
/// assert_eq!(od.base_ejection_time, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutlierDetection {
    /// Errors in a row that eject a backend (Envoy's `consecutive_5xx`, Istio's
    /// `consecutiveErrors`). Default 5.
    pub consecutive_errors: u32,
    /// An ejection lasts this long times the backend's ejection count (Envoy's
    /// `base_ejection_time`). Default 30 s.
    pub base_ejection_time: Duration,
    /// The longest one ejection may last (Envoy's `max_ejection_time`); never less
    /// than the base. Default 300 s.
    pub max_ejection_time: Duration,
    /// At most this percentage of the set is ejected at once (Envoy's
    /// `max_ejection_percent`). Default 10. Unlike Envoy, which ejects one backend
    /// even when that exceeds the percentage, this bound is strict: with 10 % of 5
    /// backends nothing is ejected.
    pub max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_errors: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

impl OutlierDetection {
    /// Sets the consecutive error threshold.
    #[must_use]
    pub fn consecutive_errors(mut self, n: u32) -> Self {
        self.consecutive_errors = n;
        self
    }

    /// Sets the base ejection time.
    #[must_use]
    pub fn base_ejection_time(mut self, d: Duration) -> Self {
        self.base_ejection_time = d;
        self
    }

    /// Sets the longest ejection.
    #[must_use]
    pub fn max_ejection_time(mut self, d: Duration) -> Self {
        self.max_ejection_time = d;
        self
    }

    /// Sets the maximum ejected percentage.
    #[must_use]
    pub fn max_ejection_percent(mut self, p: u8) -> Self {
        self.max_ejection_percent = p;
        self
    }

    fn validate(&self) -> Result<(), LbError> {
        if self.consecutive_errors == 0 {
            return Err(LbError::InvalidConfig { setting: "consecutive_errors", reason: "must be at least 1".into() });
        }
        if self.base_ejection_time.is_zero() {
            return Err(LbError::InvalidConfig { setting: "base_ejection_time", reason: "must not be zero".into() });
        }
        if self.max_ejection_percent > 100 {
            return Err(LbError::InvalidConfig {
                setting: "max_ejection_percent",
                reason: "must be at most 100".into(),
            });
        }
        Ok(())
    }
}

const NOT_EJECTED: u64 = 0;

#[derive(Debug)]
struct Member {
    backend: Arc<Backend>,
    healthy: AtomicBool,
    consecutive_errors: AtomicU32,
    /// Clock nanoseconds at which the ejection ends; [`NOT_EJECTED`] when serving.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
    /// Clock nanoseconds of the last return from ejection.
    returned_at: AtomicU64,
}

#[derive(Debug)]
struct Members {
    members: Vec<Member>,
    index_of: HashMap<String, usize>,
}

/// The members and which of them may be picked now, swapped together.
#[derive(Debug)]
struct View {
    members: Arc<Members>,
    available: Vec<u32>,
}

/// Round robin over the backends that are healthy (as health checks report with
/// [`HealthBased::set_healthy`]) and not ejected as outliers (as request outcomes
/// report with [`HealthBased::report_success`] / [`HealthBased::report_error`]).
///
/// The list of available backends is rebuilt when a backend changes state, which is
/// rare; a pick reads the clock, one atomic and the list, without a lock. Expired
/// ejections end at the first pick after they expire.
///
/// ```
/// use deploy_core::lb::{Backend, HealthBased, OutlierDetection};
/// let lb = HealthBased::new(
///     vec![Backend::new("a", "a:80"), Backend::new("b", "b:80")],
///     OutlierDetection::default().consecutive_errors(2).max_ejection_percent(50),
/// )
/// .unwrap();
/// lb.report_error("a").unwrap();
/// lb.report_error("a").unwrap();
/// assert!(lb.is_ejected("a").unwrap());
/// assert!((0..4).all(|_| lb.pick().unwrap().id == "b"));
/// ```
#[derive(Debug)]
pub struct HealthBased {
    view: ArcSwap<View>,
    next: AtomicUsize,
    next_expiry: AtomicU64,
    transitions: Mutex<()>,
    config: OutlierDetection,
    clock: Arc<dyn Clock>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl HealthBased {
    /// A balancer over `backends`, all healthy, on [`TokioClock`].
    pub fn new(backends: Vec<Backend>, config: OutlierDetection) -> Result<Self, LbError> {
        Self::with_clock(backends, config, Arc::new(TokioClock::new()))
    }

    /// A balancer reading time from `clock`.
    pub fn with_clock(
        backends: Vec<Backend>,
        config: OutlierDetection,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LbError> {
        config.validate()?;
        let members = Arc::new(members(into_shared(backends)?, None));
        let available = (0..members.members.len() as u32).collect();
        Ok(Self {
            view: ArcSwap::from_pointee(View { members, available }),
            next: AtomicUsize::new(0),
            next_expiry: AtomicU64::new(u64::MAX),
            transitions: Mutex::new(()),
            config,
            clock,
        })
    }

    fn now(&self) -> u64 {
        // Shifted by one so that no real time equals NOT_EJECTED.
        nanos(self.clock.now()).saturating_add(1)
    }

    /// The next available backend.
    pub fn pick(&self) -> Result<Arc<Backend>, LbError> {
        let now = self.now();
        if now >= self.next_expiry.load(Ordering::Acquire) {
            self.end_expired_ejections(now);
        }
        let view = self.view.load();
        if view.available.is_empty() {
            let total = view.members.members.len();
            if total == 0 {
                return Err(LbError::NoBackends);
            }
            let unhealthy = view.members.members.iter().filter(|m| !m.healthy.load(Ordering::Acquire)).count();
            return Err(LbError::NoAvailableBackend { total, unhealthy, ejected: total - unhealthy });
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % view.available.len();
        Ok(Arc::clone(&view.members.members[view.available[i] as usize].backend))
    }

    fn member<T>(&self, id: &str, f: impl FnOnce(&View, usize) -> T) -> Result<T, LbError> {
        let view = self.view.load();
        let index = *view.members.index_of.get(id).ok_or_else(|| LbError::UnknownBackend { id: id.to_owned() })?;
        Ok(f(&view, index))
    }

    /// Records a successful request: the consecutive error count starts again.
    pub fn report_success(&self, id: &str) -> Result<(), LbError> {
        self.member(id, |v, i| v.members.members[i].consecutive_errors.store(0, Ordering::Release))
    }

    /// Records a failed request; the error that reaches the threshold ejects the
    /// backend, unless that would eject more than the maximum percentage. Returns
    /// whether this call ejected it.
    pub fn report_error(&self, id: &str) -> Result<bool, LbError> {
        let index = self.member(id, |v, i| {
            let m = &v.members.members[i];
            let errors = m.consecutive_errors.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            (errors >= self.config.consecutive_errors && m.ejected_until.load(Ordering::Acquire) == NOT_EJECTED)
                .then_some(i)
        })?;
        Ok(match index {
            Some(i) => self.eject(i),
            None => false,
        })
    }

    fn eject(&self, index: usize) -> bool {
        let _lock = self.transitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.now();
        let view = self.view.load();
        let all = &view.members.members;
        let m = &all[index];
        if m.ejected_until.load(Ordering::Acquire) != NOT_EJECTED {
            return false;
        }
        let ejected = all.iter().filter(|m| m.ejected_until.load(Ordering::Acquire) != NOT_EJECTED).count();
        let allowed = all.len() * usize::from(self.config.max_ejection_percent) / 100;
        if ejected + 1 > allowed {
            tracing::debug!(lb.backend = %m.backend.id, ejected, allowed, "outlier not ejected: at the maximum ejection percentage");
            return false;
        }
        // The multiplier decays by one for every base ejection time spent serving
        // since the last return, as Envoy decrements it while a host stays healthy.
        let base = nanos(self.config.base_ejection_time);
        let returned = m.returned_at.load(Ordering::Acquire);
        let decay = if returned == 0 { 0 } else { (now - returned.min(now)) / base };
        let previous = u64::from(m.ejections.load(Ordering::Acquire)).saturating_sub(decay);
        let count = previous + 1;
        let longest = nanos(self.config.max_ejection_time.max(self.config.base_ejection_time));
        let until = now.saturating_add(base.saturating_mul(count).min(longest));
        m.ejections.store(u32::try_from(count).unwrap_or(u32::MAX), Ordering::Release);
        m.ejected_until.store(until, Ordering::Release);
        m.consecutive_errors.store(0, Ordering::Release);
        self.next_expiry.fetch_min(until, Ordering::AcqRel);
        tracing::info!(lb.backend = %m.backend.id, ejections = count, "outlier ejected");
        self.rebuild(&view.members);
        true
    }

    fn end_expired_ejections(&self, now: u64) {
        // Whoever holds the lock will see the expiry too.
        let Ok(_lock) = self.transitions.try_lock() else { return };
        let view = self.view.load();
        let mut next = u64::MAX;
        for m in &view.members.members {
            let until = m.ejected_until.load(Ordering::Acquire);
            if until == NOT_EJECTED {
                continue;
            }
            if until <= now {
                m.ejected_until.store(NOT_EJECTED, Ordering::Release);
                m.returned_at.store(now, Ordering::Release);
            } else {
                next = next.min(until);
            }
        }
        self.next_expiry.store(next, Ordering::Release);
        self.rebuild(&view.members);
    }

    fn rebuild(&self, members: &Arc<Members>) {
        let available = members
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                m.healthy.load(Ordering::Acquire) && m.ejected_until.load(Ordering::Acquire) == NOT_EJECTED
            })
            .map(|(i, _)| i as u32)
            .collect();
        self.view.store(Arc::new(View { members: Arc::clone(members), available }));
    }

    /// Marks a backend healthy or not, as an active health check found it.
    pub fn set_healthy(&self, id: &str, healthy: bool) -> Result<(), LbError> {
        let _lock = self.transitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let view = self.view.load();
        let index = *view.members.index_of.get(id).ok_or_else(|| LbError::UnknownBackend { id: id.to_owned() })?;
        view.members.members[index].healthy.store(healthy, Ordering::Release);
        self.rebuild(&view.members);
        Ok(())
    }

    /// Whether backend `id` is ejected now.
    pub fn is_ejected(&self, id: &str) -> Result<bool, LbError> {
        let now = self.now();
        self.member(id, |v, i| {
            let until = v.members.members[i].ejected_until.load(Ordering::Acquire);
            until != NOT_EJECTED && until > now
        })
    }

    /// How many backends are ejected now.
    pub fn ejected_count(&self) -> usize {
        let now = self.now();
        self.view
            .load()
            .members
            .members
            .iter()
            .filter(|m| {
                let until = m.ejected_until.load(Ordering::Acquire);
                until != NOT_EJECTED && until > now
            })
            .count()
    }

    /// Replaces the set; backends with the same id keep their health and ejection
    /// state.
    pub fn replace(&self, backends: Vec<Backend>) -> Result<(), LbError> {
        let backends = into_shared(backends)?;
        let _lock = self.transitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.view.load();
        let members = Arc::new(members(backends, Some(&old.members)));
        let next = members
            .members
            .iter()
            .map(|m| m.ejected_until.load(Ordering::Acquire))
            .filter(|u| *u != NOT_EJECTED)
            .min()
            .unwrap_or(u64::MAX);
        self.next_expiry.store(next, Ordering::Release);
        self.rebuild(&members);
        Ok(())
    }
}

fn members(backends: Vec<Arc<Backend>>, old: Option<&Members>) -> Members {
    let members: Vec<Member> = backends
        .into_iter()
        .map(|backend| {
            let prev = old.and_then(|o| o.index_of.get(&backend.id).map(|i| &o.members[*i]));
            let load32 = |f: fn(&Member) -> &AtomicU32| prev.map(|p| f(p).load(Ordering::Acquire)).unwrap_or(0);
            let load64 = |f: fn(&Member) -> &AtomicU64| prev.map(|p| f(p).load(Ordering::Acquire)).unwrap_or(0);
            Member {
                healthy: AtomicBool::new(prev.is_none_or(|p| p.healthy.load(Ordering::Acquire))),
                consecutive_errors: AtomicU32::new(load32(|m| &m.consecutive_errors)),
                ejected_until: AtomicU64::new(load64(|m| &m.ejected_until)),
                ejections: AtomicU32::new(load32(|m| &m.ejections)),
                returned_at: AtomicU64::new(load64(|m| &m.returned_at)),
                backend,
            }
        })
        .collect();
    let index_of = members.iter().enumerate().map(|(i, m)| (m.backend.id.clone(), i)).collect();
    Members { members, index_of }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::fixtures::backends;

    fn fail(lb: &HealthBased, id: &str, times: u32) -> bool {
        (0..times).map(|_| lb.report_error(id).unwrap()).fold(false, |a, b| a | b)
    }

    #[tokio::test(start_paused = true)]
    async fn never_ejects_more_than_the_maximum_percent() {
        let od = OutlierDetection::default().consecutive_errors(3).max_ejection_percent(30);
        let lb = HealthBased::new(backends(10), od).unwrap();
        for i in 0..10 {
            fail(&lb, &format!("b{i}"), 3);
            assert!(lb.ejected_count() <= 3, "{} ejected", lb.ejected_count());
        }
        assert_eq!(lb.ejected_count(), 3);
        let picked: std::collections::HashSet<_> = (0..20).map(|_| lb.pick().unwrap().id.clone()).collect();
        assert_eq!(picked.len(), 7);
        assert!(!picked.contains("b0") && !picked.contains("b2"));

        // A strict bound: 10 % of 5 backends is none.
        let small = HealthBased::new(backends(5), OutlierDetection::default().consecutive_errors(1)).unwrap();
        assert!(!fail(&small, "b0", 10));
        assert_eq!(small.ejected_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_the_ejection_count_and_is_capped() {
        let base = Duration::from_secs(30);
        let od = OutlierDetection::default()
            .consecutive_errors(2)
            .max_ejection_percent(100)
            .max_ejection_time(Duration::from_secs(75));
        let lb = HealthBased::new(backends(2), od).unwrap();
        let ms = Duration::from_millis(1);

        // First ejection: 1 × base.
        assert!(fail(&lb, "b0", 2));
        tokio::time::advance(base - ms).await;
        assert!(lb.is_ejected("b0").unwrap());
        tokio::time::advance(2 * ms).await;
        assert_eq!(lb.pick().unwrap().id, "b0", "returns at the first pick after expiry");
        assert!(!lb.is_ejected("b0").unwrap());

        // Second, right away: 2 × base.
        assert!(fail(&lb, "b0", 2));
        tokio::time::advance(2 * base - ms).await;
        let _ = lb.pick();
        assert!(lb.is_ejected("b0").unwrap());
        tokio::time::advance(2 * ms).await;
        let _ = lb.pick();
        assert!(!lb.is_ejected("b0").unwrap());

        // Third: 3 × base = 90 s, capped at 75 s.
        assert!(fail(&lb, "b0", 2));
        tokio::time::advance(Duration::from_secs(75) - ms).await;
        let _ = lb.pick();
        assert!(lb.is_ejected("b0").unwrap());
        tokio::time::advance(2 * ms).await;
        let _ = lb.pick();
        assert!(!lb.is_ejected("b0").unwrap());

        // A long healthy spell decays the multiplier back to 1.
        tokio::time::advance(10 * base).await;
        assert!(fail(&lb, "b0", 2));
        tokio::time::advance(base - ms).await;
        assert!(lb.is_ejected("b0").unwrap());
        tokio::time::advance(2 * ms).await;
        let _ = lb.pick();
        assert!(!lb.is_ejected("b0").unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn successes_reset_the_error_streak_and_health_counts() {
        let od = OutlierDetection::default().consecutive_errors(3).max_ejection_percent(100);
        let lb = HealthBased::new(backends(3), od).unwrap();
        fail(&lb, "b1", 2);
        lb.report_success("b1").unwrap();
        assert!(!fail(&lb, "b1", 2));
        assert!(fail(&lb, "b1", 1));

        lb.set_healthy("b0", false).unwrap();
        assert!((0..6).all(|_| lb.pick().unwrap().id == "b2"));
        lb.set_healthy("b2", false).unwrap();
        assert_eq!(lb.pick(), Err(LbError::NoAvailableBackend { total: 3, unhealthy: 2, ejected: 1 }));

        // State carries over a replacement by id.
        lb.replace(backends(4)).unwrap();
        assert!(lb.is_ejected("b1").unwrap());
        assert!((0..6).all(|_| lb.pick().unwrap().id == "b3"));
        assert!(matches!(lb.report_error("nope"), Err(LbError::UnknownBackend { .. })));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(HealthBased::new(backends(1), OutlierDetection::default().consecutive_errors(0)).is_err());
        assert!(HealthBased::new(backends(1), OutlierDetection::default().max_ejection_percent(101)).is_err());
        assert_eq!(HealthBased::new(vec![], OutlierDetection::default()).unwrap().pick(), Err(LbError::NoBackends));
    }
}
