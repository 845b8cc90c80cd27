//! The driver's lease: what it knows of it, and the keeper that renews it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::RolloutError;
use crate::model::AppId;
use crate::state::{LockLease, StateError, StateStore};

/// What the driver knows of its lease, shared by the lease keeper (which renews
/// it) and the driver (which checks it before every platform or router change).
#[derive(Debug)]
pub(crate) struct LeaseView {
    inner: Mutex<LeaseState>,
}

#[derive(Debug)]
struct LeaseState {
    /// The lease as last written; `None` once released.
    lease: Option<LockLease>,
    /// Until when the driver may change the platform: two thirds of the lease
    /// after the last successful renewal was *sent*, on this process' monotonic
    /// clock, so nobody can take over before it stops (nor with a skewed clock).
    safe_until: Instant,
    /// When the lease may have lapsed for others: a full ttl after that send.
    hard_until: Instant,
    /// Why the lease is lost, once it is.
    lost: Option<(String, String)>,
}

impl LeaseView {
    pub(crate) fn new(lease: LockLease, sent: Instant, ttl: Duration) -> Arc<Self> {
        let state =
            LeaseState { lease: Some(lease), safe_until: sent + safe_part(ttl), hard_until: sent + ttl, lost: None };
        Arc::new(Self { inner: Mutex::new(state) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lease as last written, unless released.
    pub(crate) fn lease(&self) -> Option<LockLease> {
        self.lock().lease.clone()
    }

    /// `Ok` while the driver may still change the platform; otherwise the holder
    /// (if known) and why not.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let mut state = self.lock();
        if let Some(lost) = &state.lost {
            return Err(lost.clone());
        }
        if Instant::now() >= state.safe_until {
            let lost = ("unknown".to_owned(), "the lease could not be renewed in time and may lapse".to_owned());
            state.lost = Some(lost.clone());
            return Err(lost);
        }
        Ok(())
    }

    /// Whether a write now still lands before anyone could take the lease over.
    pub(super) fn may_write(&self) -> bool {
        Instant::now() < self.lock().hard_until
    }
}

/// The share of a lease the driver may use after a renewal was sent (client-go's
/// renew deadline against its lease duration).
pub(super) fn safe_part(ttl: Duration) -> Duration {
    ttl.saturating_mul(2) / 3
}

/// Keeps the per-app lease alive while a rollout runs: renews it every third of
/// its ttl, retries failed renewals every tenth, and declares it lost when it
/// could not renew before the driver's safe deadline. Its timer is made once and
/// reset after each renewal.
pub(crate) struct LeaseKeeper {
    store: Arc<dyn StateStore>,
    app: AppId,
    ttl: Duration,
    next: Pin<Box<Sleep>>,
    view: Arc<LeaseView>,
}

impl LeaseKeeper {
    pub(crate) fn new(store: Arc<dyn StateStore>, view: Arc<LeaseView>, app: AppId, ttl: Duration) -> Self {
        let first = view.lock().safe_until.min(Instant::now() + ttl / 3);
        Self { store, app, ttl, next: Box::pin(tokio::time::sleep_until(first)), view }
    }

    pub(super) async fn due(&mut self) {
        self.next.as_mut().await;
    }

    pub(super) fn lost(&self, (holder, reason): (String, String)) -> RolloutError {
        RolloutError::LockLost { app: self.app.clone(), holder, reason }
    }

    pub(super) async fn renew(&mut self) -> Result<(), RolloutError> {
        self.view.check().map_err(|l| self.lost(l))?;
        let Some(lease) = self.view.lease() else {
            return Err(self.lost(("nobody".to_owned(), "the lease was released".to_owned())));
        };
        let sent = Instant::now();
        let safe_until = self.view.lock().safe_until;
        let renewal =
            tokio::time::timeout(safe_until.saturating_duration_since(sent), self.store.renew_lock(&lease, self.ttl));
        match renewal.await {
            Ok(Ok(lease)) => {
                let mut state = self.view.lock();
                state.lease = Some(lease);
                state.safe_until = sent + safe_part(self.ttl);
                state.hard_until = sent + self.ttl;
                drop(state);
                self.next.as_mut().reset(Instant::now() + self.ttl / 3);
                Ok(())
            }
            Ok(Err(StateError::LockLost { holder, .. })) => {
                let lost = (holder, "another holder has the lease".to_owned());
                self.view.lock().lost = Some(lost.clone());
                Err(self.lost(lost))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not renew the rollout lock; trying again soon");
                self.retry_soon()
            }
            Err(_) => {
                tracing::warn!("renewing the rollout lock did not answer in time");
                self.retry_soon()
            }
        }
    }

    pub(super) fn retry_soon(&mut self) -> Result<(), RolloutError> {
        self.view.check().map_err(|l| self.lost(l))?;
        let safe_until = self.view.lock().safe_until;
        self.next.as_mut().reset((Instant::now() + self.ttl / 10).min(safe_until));
        Ok(())
    }

    pub(super) async fn release(&self) {
        let Some(lease) = self.view.lease() else { return };
        match self.store.release_lock(&lease).await {
            Ok(()) => self.view.lock().lease = None,
            Err(e) => tracing::warn!(error = %e, "could not release the rollout lock; it lapses with its lease"),
        }
    }
}
