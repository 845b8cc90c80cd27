//! The kit's [`StateStore`]: compare-and-swap documents and lease locks on tokio's
//! clock, with injected faults and per-process clock skew.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Fault, KitClock, fault_kind};
use crate::model::AppId;
use crate::state::{LockLease, LockRequest, Revision, RolloutState, StateError, StateStore, Versioned};

/// One saved document, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SavedState {
    /// The application.
    pub app: AppId,
    /// The revision it was saved at; revisions only grow.
    pub revision: u64,
    /// The document, as JSON.
    pub json: String,
}

/// A [`StateStore`] method, for fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StateMethod {
    /// [`StateStore::load`].
    Load,
    /// [`StateStore::save`].
    Save,
    /// [`StateStore::clear`].
    Clear,
    /// [`StateStore::read_lock`].
    ReadLock,
    /// [`StateStore::acquire_lock`].
    AcquireLock,
    /// [`StateStore::renew_lock`].
    RenewLock,
    /// [`StateStore::release_lock`].
    ReleaseLock,
}

/// Which calls of a state-store method an injected fault hits.
#[derive(Debug, Clone, Copy)]
enum Hits {
    /// The nth call (from 1, counted since the kit was made).
    Nth(u32),
    /// Every call until this moment on tokio's clock.
    Until(Instant),
    /// Every call from the nth on, `count` of them.
    Run { from: u32, count: u32 },
}

#[derive(Debug, Default)]
struct Store {
    docs: BTreeMap<AppId, (u64, String)>,
    locks: BTreeMap<AppId, LockLease>,
    lock_revision: u64,
    last_revision: u64,
    saves: Vec<SavedState>,
    /// Saves so far (kept apart from `saves`, which a kit without observations
    /// leaves empty).
    save_count: usize,
    forget_saves: bool,
    crash_after: Option<usize>,
    counts: BTreeMap<StateMethod, u32>,
    faults: Vec<(StateMethod, Hits, Fault)>,
    lost_responses: Vec<u32>,
}

#[derive(Debug)]
struct StoreShared {
    clock: KitClock,
    store: Mutex<Store>,
    crashed: watch::Sender<bool>,
}

/// Rollout progress kept as JSON documents with revisions, and per-app leases
/// (deterministic under a paused tokio clock).
///
/// Clones share the store. A clone made with
/// [`TestKit::state_store_with_clock_offset`](super::TestKit::state_store_with_clock_offset)
/// stamps leases with a skewed wall clock, as a second process whose clock is off
/// would.
#[derive(Debug, Clone)]
pub struct TestStateStore {
    shared: Arc<StoreShared>,
    offset: SignedDuration,
}

impl TestStateStore {
    pub(crate) fn new(clock: KitClock) -> Self {
        let shared = StoreShared { clock, store: Mutex::new(Store::default()), crashed: watch::Sender::new(false) };
        Self { shared: Arc::new(shared), offset: SignedDuration::ZERO }
    }

    pub(crate) fn with_offset(&self, offset: SignedDuration) -> Self {
        Self { shared: Arc::clone(&self.shared), offset }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This process' wall clock: tokio's clock plus its skew.
    fn now(&self) -> Timestamp {
        let t = self.shared.clock.timestamp(Instant::now());
        t.checked_add(self.offset).unwrap_or(t)
    }

    pub(crate) fn crash_after_saves(&self, n: usize) {
        self.lock().crash_after = Some(n);
        self.shared.crashed.send_replace(false);
    }

    pub(crate) async fn crashed(&self) {
        let mut rx = self.shared.crashed.subscribe();
        let _ = rx.wait_for(|crashed| *crashed).await;
    }

    pub(crate) fn forget_saves(&self) {
        self.lock().forget_saves = true;
    }

    pub(crate) fn saved(&self) -> Vec<SavedState> {
        self.lock().saves.clone()
    }

    pub(crate) fn fail_call(&self, method: StateMethod, nth: u32, fault: Fault) {
        self.lock().faults.push((method, Hits::Nth(nth), fault));
    }

    pub(crate) fn fail_for(&self, method: StateMethod, duration: Duration, fault: Fault) {
        self.lock().faults.push((method, Hits::Until(Instant::now() + duration), fault));
    }

    pub(crate) fn fail_calls(&self, method: StateMethod, from: u32, count: u32, fault: Fault) {
        self.lock().faults.push((method, Hits::Run { from, count }, fault));
    }

    pub(crate) fn calls_of(&self, method: StateMethod) -> u32 {
        self.lock().counts.get(&method).copied().unwrap_or(0)
    }

    pub(crate) fn lose_save_response(&self, nth: u32) {
        self.lock().lost_responses.push(nth);
    }

    pub(crate) fn lease(&self, app: &AppId) -> Option<LockLease> {
        self.lock().locks.get(app).cloned()
    }

    pub(crate) fn delete_state(&self, app: &AppId) {
        self.lock().docs.remove(app);
    }

    /// Counts the call and applies the fault that hits it, if any.
    async fn enter(&self, method: StateMethod, operation: &str) -> Result<u32, StateError> {
        tokio::task::yield_now().await;
        let (n, fault) = {
            let mut store = self.lock();
            let count = store.counts.entry(method).or_insert(0);
            *count += 1;
            let n = *count;
            let now = Instant::now();
            store.faults.retain(|(m, hits, _)| match hits {
                Hits::Until(until) => *until > now,
                Hits::Nth(nth) => *m != method || *nth >= n,
                Hits::Run { from, count } => *m != method || from.saturating_add(*count) > n,
            });
            let fault = store.faults.iter().find_map(|(m, hits, fault)| {
                let hit = *m == method
                    && match hits {
                        Hits::Nth(nth) => *nth == n,
                        Hits::Until(until) => *until > now,
                        Hits::Run { from, count } => n >= *from && n < from.saturating_add(*count),
                    };
                hit.then_some(*fault)
            });
            (n, fault)
        };
        match fault {
            None => Ok(n),
            Some(Fault::Hang) => std::future::pending().await,
            Some(fault) => Err(StateError::backend(operation, fault_kind(fault), "injected by the test kit")),
        }
    }

    fn parse(app: &AppId, revision: u64, json: &str) -> Result<Versioned<RolloutState>, StateError> {
        serde_json::from_str(json)
            .map(|state| Versioned::new(state, Revision::new(revision.to_string())))
            .map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })
    }
}

#[async_trait]
impl StateStore for TestStateStore {
    async fn load(&self, app: &AppId) -> Result<Option<Versioned<RolloutState>>, StateError> {
        self.enter(StateMethod::Load, "load state").await?;
        let doc = self.lock().docs.get(app).cloned();
        doc.map(|(revision, json)| Self::parse(app, revision, &json)).transpose()
    }

    async fn save(
        &self,
        app: &AppId,
        state: &RolloutState,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        let n = self.enter(StateMethod::Save, "save state").await?;
        let json = serde_json::to_string(state)
            .map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })?;
        let (crash, lost) = {
            let mut store = self.lock();
            let actual = store.docs.get(app).map(|(r, _)| Revision::new(r.to_string()));
            if let (Some(expected), None) = (expected, &actual) {
                return Err(StateError::Deleted { app: app.clone(), expected: expected.clone() });
            }
            if actual.as_ref() != expected {
                return Err(StateError::Conflict { app: app.clone(), expected: expected.cloned(), actual });
            }
            store.last_revision += 1;
            let revision = store.last_revision;
            store.docs.insert(app.clone(), (revision, json.clone()));
            store.save_count += 1;
            if !store.forget_saves {
                store.saves.push(SavedState { app: app.clone(), revision, json });
            }
            let crash = store.crash_after == Some(store.save_count);
            let lost = store.lost_responses.contains(&n);
            if !crash && !lost {
                return Ok(Revision::new(revision.to_string()));
            }
            (crash, lost)
        };
        if lost && !crash {
            // The write reached the store; its answer did not reach the caller.
            return Err(StateError::backend(
                "save state",
                crate::error::ErrorKind::Unavailable,
                "connection reset (response lost, injected by the test kit)",
            ));
        }
        self.shared.crashed.send_replace(true);
        // The process "died" right after the write reached the store.
        std::future::pending().await
    }

    async fn clear(&self, app: &AppId, expected: &Revision) -> Result<(), StateError> {
        self.enter(StateMethod::Clear, "clear state").await?;
        let mut store = self.lock();
        let actual = store.docs.get(app).map(|(r, _)| Revision::new(r.to_string()));
        match actual {
            None => Ok(()),
            Some(actual) if &actual == expected => {
                store.docs.remove(app);
                Ok(())
            }
            Some(actual) => {
                Err(StateError::Conflict { app: app.clone(), expected: Some(expected.clone()), actual: Some(actual) })
            }
        }
    }

    async fn read_lock(&self, app: &AppId) -> Result<Option<LockLease>, StateError> {
        self.enter(StateMethod::ReadLock, "read lock").await?;
        Ok(self.lock().locks.get(app).cloned())
    }

    async fn acquire_lock(&self, app: &AppId, request: &LockRequest) -> Result<LockLease, StateError> {
        self.enter(StateMethod::AcquireLock, "take lock").await?;
        let now = self.now();
        let mut store = self.lock();
        if let Some(current) = store.locks.get(app) {
            let observed = request.take_over.as_ref().is_some_and(|seen| seen.same_record(current));
            if !observed {
                return Err(StateError::LockHeld {
                    app: app.clone(),
                    holder: current.holder.clone(),
                    expires_at: current.expires_at,
                });
            }
        }
        store.lock_revision += 1;
        let revision = Revision::new(store.lock_revision.to_string());
        let lease =
            LockLease::new(app.clone(), &request.holder, request.token.clone(), now, request.ttl).revision(revision);
        store.locks.insert(app.clone(), lease.clone());
        Ok(lease)
    }

    async fn renew_lock(&self, lease: &LockLease, ttl: Duration) -> Result<LockLease, StateError> {
        self.enter(StateMethod::RenewLock, "renew lock").await?;
        let now = self.now();
        let mut store = self.lock();
        match store.locks.get(&lease.app) {
            Some(current) if current.token == lease.token => {
                let acquired = current.acquired_at;
                store.lock_revision += 1;
                let revision = Revision::new(store.lock_revision.to_string());
                let span = jiff::SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
                let mut renewed = LockLease::new(lease.app.clone(), &lease.holder, lease.token.clone(), acquired, ttl)
                    .revision(revision)
                    .expires_at(now.checked_add(span).unwrap_or(Timestamp::MAX));
                renewed.ttl = ttl;
                store.locks.insert(lease.app.clone(), renewed.clone());
                Ok(renewed)
            }
            Some(current) => Err(StateError::LockLost { app: lease.app.clone(), holder: current.holder.clone() }),
            None => Err(StateError::LockLost { app: lease.app.clone(), holder: "nobody".to_owned() }),
        }
    }

    async fn release_lock(&self, lease: &LockLease) -> Result<(), StateError> {
        self.enter(StateMethod::ReleaseLock, "release lock").await?;
        let mut store = self.lock();
        if store.locks.get(&lease.app).is_some_and(|current| current.token == lease.token) {
            store.locks.remove(&lease.app);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::sample_app;

    #[tokio::test(start_paused = true)]
    async fn leases_are_fenced_by_their_token_and_never_lapse_by_clock() {
        let store = TestStateStore::new(KitClock::new());
        let app = sample_app(1).0.id();
        let ttl = Duration::from_secs(30);
        let a = store.acquire_lock(&app, &LockRequest::new("a", ttl)).await.unwrap();
        // A second acquisition fails whoever asks, the same holder name included.
        for holder in ["a", "b"] {
            let err = store.acquire_lock(&app, &LockRequest::new(holder, ttl)).await.unwrap_err();
            assert!(matches!(err, StateError::LockHeld { .. }), "{err}");
        }
        // Old timestamps do not free it.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(store.acquire_lock(&app, &LockRequest::new("b", ttl)).await.is_err());
        // A takeover must name the record as stored now.
        let seen = store.read_lock(&app).await.unwrap().unwrap();
        let renewed = store.renew_lock(&a, ttl).await.unwrap();
        let stale = LockRequest::new("b", ttl).take_over(seen);
        assert!(store.acquire_lock(&app, &stale).await.is_err(), "renewed since it was observed");
        let b = store.acquire_lock(&app, &LockRequest::new("b", ttl).take_over(renewed.clone())).await.unwrap();
        // A's token no longer renews or releases anything.
        assert!(matches!(store.renew_lock(&renewed, ttl).await, Err(StateError::LockLost { .. })));
        store.release_lock(&renewed).await.unwrap();
        assert_eq!(store.read_lock(&app).await.unwrap(), Some(b.clone()));
        store.release_lock(&b).await.unwrap();
        assert_eq!(store.read_lock(&app).await.unwrap(), None);
    }
}
