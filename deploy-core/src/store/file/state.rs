//! [`FileStateStore`]: rollout progress and the per-app lease in files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Guard, atomic_file, fresh_revision, io_kind, read_optional};
use crate::error::ErrorKind;
use crate::model::AppId;
use crate::state::{LockLease, LockRequest, Revision, RolloutState, StateError, StateStore, Versioned};

/// The progress document as stored: the state is kept as raw JSON so that a
/// document this version cannot parse still has a revision and can be cleared.
#[derive(Serialize, Deserialize)]
struct StoredState {
    revision: String,
    state: serde_json::Value,
}

/// Rollout progress and per-app leases in a directory, safe across processes on
/// one host; see the [module](super) for the layout and guarantees.
///
/// Cheap to clone; clones share nothing but the directory.
#[derive(Debug, Clone)]
pub struct FileStateStore {
    root: Arc<PathBuf>,
}

impl FileStateStore {
    /// A store rooted at `root`, created on first write (mode 0700).
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self { root: Arc::new(root.as_ref().to_path_buf()) }
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: &str, app: &AppId, ext: &str) -> PathBuf {
        self.root.join(kind).join(app.namespace.as_str()).join(format!("{}.{ext}", app.name.as_str()))
    }

    pub(super) fn state_path(&self, app: &AppId) -> PathBuf {
        self.path("state", app, "json")
    }

    fn lock_path(&self, app: &AppId) -> PathBuf {
        self.path("locks", app, "json")
    }

    fn guard_path(&self, app: &AppId) -> PathBuf {
        self.path("guard", app, "lock")
    }

    /// Runs `f` on a blocking thread while holding `app`'s guard.
    async fn guarded<T, F>(&self, app: &AppId, operation: &'static str, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Self) -> Result<T, StateError> + Send + 'static,
    {
        let this = self.clone();
        let guard_path = self.guard_path(app);
        tokio::task::spawn_blocking(move || {
            let _guard = Guard::take(&guard_path).map_err(|e| io_error(operation, e))?;
            f(&this)
        })
        .await
        .map_err(|e| StateError::backend(operation, ErrorKind::Other, e))?
    }

    fn read_state(&self, app: &AppId) -> Result<Option<StoredState>, StateError> {
        let bytes = read_optional(&self.state_path(app)).map_err(|e| io_error("read state", e))?;
        bytes
            .map(|b| {
                serde_json::from_slice(&b).map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })
            })
            .transpose()
    }

    fn read_lease(&self, app: &AppId) -> Result<Option<LockLease>, StateError> {
        let bytes = read_optional(&self.lock_path(app)).map_err(|e| io_error("read lock", e))?;
        bytes
            .map(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| StateError::Corrupt { app: app.clone(), reason: format!("lease record: {e}") })
            })
            .transpose()
    }

    fn write_lease(&self, lease: &LockLease) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(lease)
            .map_err(|e| StateError::Corrupt { app: lease.app.clone(), reason: e.to_string() })?;
        atomic_file::replace(&self.lock_path(&lease.app), &bytes).map_err(|e| io_error("write lock", e))
    }
}

fn io_error(operation: &str, e: std::io::Error) -> StateError {
    StateError::backend(operation, io_kind(&e), e)
}

fn expiry(from: Timestamp, ttl: Duration) -> Timestamp {
    let span = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
    from.checked_add(span).unwrap_or(Timestamp::MAX)
}

#[async_trait]
impl StateStore for FileStateStore {
    async fn load(&self, app: &AppId) -> Result<Option<Versioned<RolloutState>>, StateError> {
        let key = app.clone();
        let stored = self.guarded(app, "load state", move |s| s.read_state(&key)).await?;
        stored
            .map(|doc| {
                serde_json::from_value(doc.state)
                    .map(|state| Versioned::new(state, Revision::new(doc.revision)))
                    .map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })
            })
            .transpose()
    }

    async fn save(
        &self,
        app: &AppId,
        state: &RolloutState,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        let value =
            serde_json::to_value(state).map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })?;
        let key = app.clone();
        let expected = expected.cloned();
        self.guarded(app, "save state", move |s| {
            let actual = s.read_state(&key)?.map(|doc| Revision::new(doc.revision));
            if let (Some(expected), None) = (&expected, &actual) {
                return Err(StateError::Deleted { app: key, expected: expected.clone() });
            }
            if actual != expected {
                return Err(StateError::Conflict { app: key, expected, actual });
            }
            let doc = StoredState { revision: fresh_revision(), state: value };
            let bytes = serde_json::to_vec(&doc)
                .map_err(|e| StateError::Corrupt { app: key.clone(), reason: e.to_string() })?;
            atomic_file::replace(&s.state_path(&key), &bytes).map_err(|e| io_error("save state", e))?;
            Ok(Revision::new(doc.revision))
        })
        .await
    }

    async fn clear(&self, app: &AppId, expected: &Revision) -> Result<(), StateError> {
        let key = app.clone();
        let expected = expected.clone();
        self.guarded(app, "clear state", move |s| match s.read_state(&key)? {
            None => Ok(()),
            Some(doc) if doc.revision == expected.as_str() => {
                atomic_file::remove(&s.state_path(&key)).map_err(|e| io_error("clear state", e))?;
                Ok(())
            }
            Some(doc) => Err(StateError::Conflict {
                app: key,
                expected: Some(expected),
                actual: Some(Revision::new(doc.revision)),
            }),
        })
        .await
    }

    async fn read_lock(&self, app: &AppId) -> Result<Option<LockLease>, StateError> {
        let key = app.clone();
        self.guarded(app, "read lock", move |s| s.read_lease(&key)).await
    }

    async fn acquire_lock(&self, app: &AppId, request: &LockRequest) -> Result<LockLease, StateError> {
        let key = app.clone();
        let request = request.clone();
        self.guarded(app, "take lock", move |s| {
            if let Some(current) = s.read_lease(&key)? {
                let observed = request.take_over.as_ref().is_some_and(|seen| seen.same_record(&current));
                if !observed {
                    return Err(StateError::LockHeld {
                        app: key,
                        holder: current.holder,
                        expires_at: current.expires_at,
                    });
                }
            }
            let lease = LockLease::new(key, &request.holder, request.token.clone(), Timestamp::now(), request.ttl)
                .revision(Revision::new(fresh_revision()));
            s.write_lease(&lease)?;
            Ok(lease)
        })
        .await
    }

    async fn renew_lock(&self, lease: &LockLease, ttl: Duration) -> Result<LockLease, StateError> {
        let lease = lease.clone();
        self.guarded(&lease.app.clone(), "renew lock", move |s| match s.read_lease(&lease.app)? {
            Some(current) if current.token == lease.token => {
                let mut renewed =
                    current.revision(Revision::new(fresh_revision())).expires_at(expiry(Timestamp::now(), ttl));
                renewed.ttl = ttl;
                s.write_lease(&renewed)?;
                Ok(renewed)
            }
            Some(current) => Err(StateError::LockLost { app: lease.app, holder: current.holder }),
            None => Err(StateError::LockLost { app: lease.app, holder: "nobody".to_owned() }),
        })
        .await
    }

    async fn release_lock(&self, lease: &LockLease) -> Result<(), StateError> {
        let lease = lease.clone();
        self.guarded(&lease.app.clone(), "release lock", move |s| {
            if s.read_lease(&lease.app)?.is_some_and(|current| current.token == lease.token) {
                atomic_file::remove(&s.lock_path(&lease.app)).map_err(|e| io_error("release lock", e))?;
            }
            Ok(())
        })
        .await
    }
}
