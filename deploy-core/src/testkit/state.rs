//! The kit's [`StateStore`]: compare-and-swap documents and lease locks on tokio's clock.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use super::KitClock;
use crate::model::AppId;
use crate::state::{LockLease, Revision, RolloutState, StateError, StateStore, Versioned};

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

#[derive(Debug, Default)]
struct Store {
    docs: BTreeMap<AppId, (u64, String)>,
    locks: BTreeMap<AppId, (Instant, LockLease)>,
    last_revision: u64,
    saves: Vec<SavedState>,
    crash_after: Option<usize>,
}

/// Rollout progress kept as JSON documents with revisions, and per-app leases that
/// lapse on tokio's clock (deterministic under a paused clock).
#[derive(Debug)]
pub struct TestStateStore {
    clock: KitClock,
    store: Mutex<Store>,
    crashed: watch::Sender<bool>,
}

impl TestStateStore {
    pub(crate) fn new(clock: KitClock) -> Self {
        Self { clock, store: Mutex::new(Store::default()), crashed: watch::Sender::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn crash_after_saves(&self, n: usize) {
        self.lock().crash_after = Some(n);
        self.crashed.send_replace(false);
    }

    pub(crate) async fn crashed(&self) {
        let mut rx = self.crashed.subscribe();
        let _ = rx.wait_for(|crashed| *crashed).await;
    }

    pub(crate) fn saved(&self) -> Vec<SavedState> {
        self.lock().saves.clone()
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
        let doc = self.lock().docs.get(app).cloned();
        doc.map(|(revision, json)| Self::parse(app, revision, &json)).transpose()
    }

    async fn save(
        &self,
        app: &AppId,
        state: &RolloutState,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        let json = serde_json::to_string(state)
            .map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })?;
        let crash = {
            let mut store = self.lock();
            let actual = store.docs.get(app).map(|(r, _)| Revision::new(r.to_string()));
            if actual.as_ref() != expected {
                return Err(StateError::Conflict { app: app.clone(), expected: expected.cloned(), actual });
            }
            store.last_revision += 1;
            let revision = store.last_revision;
            store.docs.insert(app.clone(), (revision, json.clone()));
            store.saves.push(SavedState { app: app.clone(), revision, json });
            let crash = store.crash_after == Some(store.saves.len());
            if !crash {
                return Ok(Revision::new(revision.to_string()));
            }
            crash
        };
        if crash {
            self.crashed.send_replace(true);
        }
        // The process "died" right after the write reached the store.
        std::future::pending().await
    }

    async fn clear(&self, app: &AppId, expected: &Revision) -> Result<(), StateError> {
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

    async fn acquire_lock(&self, app: &AppId, holder: &str, ttl: Duration) -> Result<LockLease, StateError> {
        let now = Instant::now();
        let mut store = self.lock();
        if let Some((expires, lease)) = store.locks.get(app)
            && lease.holder != holder
            && *expires > now
        {
            return Err(StateError::LockHeld {
                app: app.clone(),
                holder: lease.holder.clone(),
                expires_at: lease.expires_at,
            });
        }
        let lease = LockLease::new(app.clone(), holder, self.clock.timestamp(now), ttl);
        store.locks.insert(app.clone(), (now + ttl, lease.clone()));
        Ok(lease)
    }

    async fn renew_lock(&self, lease: &LockLease, ttl: Duration) -> Result<LockLease, StateError> {
        let now = Instant::now();
        let mut store = self.lock();
        match store.locks.get(&lease.app) {
            Some((_, current)) if current.holder == lease.holder => {
                let renewed = LockLease::new(lease.app.clone(), &lease.holder, self.clock.timestamp(now), ttl);
                store.locks.insert(lease.app.clone(), (now + ttl, renewed.clone()));
                Ok(renewed)
            }
            Some((_, current)) => Err(StateError::LockLost { app: lease.app.clone(), holder: current.holder.clone() }),
            None => Err(StateError::LockLost { app: lease.app.clone(), holder: String::new() }),
        }
    }

    async fn release_lock(&self, lease: &LockLease) -> Result<(), StateError> {
        let mut store = self.lock();
        if store.locks.get(&lease.app).is_some_and(|(_, current)| current.holder == lease.holder) {
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
    async fn leases_lapse_on_the_tokio_clock() {
        let store = TestStateStore::new(KitClock::new());
        let app = sample_app(1).0.id();
        let ttl = Duration::from_secs(30);
        let a = store.acquire_lock(&app, "a", ttl).await.unwrap();
        assert!(matches!(store.acquire_lock(&app, "b", ttl).await, Err(StateError::LockHeld { .. })));
        tokio::time::advance(Duration::from_secs(31)).await;
        let b = store.acquire_lock(&app, "b", ttl).await.unwrap();
        assert_eq!(b.expires_at.duration_since(a.expires_at).as_secs(), 31);
        assert!(matches!(store.renew_lock(&a, ttl).await, Err(StateError::LockLost { .. })));
        store.release_lock(&a).await.unwrap(); // not a's any more: nothing happens
        assert!(matches!(store.acquire_lock(&app, "c", ttl).await, Err(StateError::LockHeld { .. })));
    }
}
