//! A [`StateStore`](crate::state::StateStore) and a
//! [`HistoryStore`](crate::history::HistoryStore) in a directory, for drivers on
//! one host without a cluster or a Redis (feature `file-store`).
//!
//! Every write goes through [`atomic_file::replace`] (temp file, fsync, rename,
//! fsync of the directory), so a crash at any point leaves the old document or
//! the new one. Compare-and-swap and the lock are made safe across processes by
//! an advisory `flock` on a guard file per application, held only for the
//! read-compare-write of one call: the kernel drops it when its process dies,
//! so a driver killed with `SIGKILL` never leaves the store wedged. The lease
//! record itself stays on disk after its holder dies, and is only taken over by
//! [`LockRequest::take_over`](crate::state::LockRequest::take_over) of the exact
//! record, as on every other store: nobody compares wall clocks.
//!
//! Layout under the root directory:
//!
//! ```text
//! state/<namespace>/<name>.json    rollout progress with its revision
//! locks/<namespace>/<name>.json    the lease record
//! guard/<namespace>/<name>.lock    flock target, never deleted
//! history/<deployment id>.json     one deployment record each
//! ```
//!
//! The directory must be on a local file system: `flock` over NFS is not
//! reliable, and several hosts coordinate through the Redis pair of
//! `deploy-cache` instead.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use deploy_core::state::{LockRequest, StateStore};
//! use deploy_core::store::file::FileStateStore;
//! use deploy_core::model::{AppId, Name, Namespace};
//!
//! let dir = std::env::temp_dir().join(format!("deploy-rs-doc-{}", std::process::id()));
//! let store = FileStateStore::new(&dir);
//! let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
//! let lease = store.acquire_lock(&app, &LockRequest::new("host-a", std::time::Duration::from_secs(30))).await.unwrap();
//! // A second process (here: a second handle) is refused while the lease is stored.
//! let other = FileStateStore::new(&dir);
//! assert!(other.acquire_lock(&app, &LockRequest::new("host-b", std::time::Duration::from_secs(30))).await.is_err());
//! store.release_lock(&lease).await.unwrap();
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # });
//! ```

pub mod atomic_file;
mod history;
mod state;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

pub use history::FileHistoryStore;
pub use state::FileStateStore;

use crate::error::ErrorKind;

/// Holds the exclusive `flock` of `path` (created if missing) until dropped.
struct Guard(File);

impl Guard {
    fn take(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        file.lock()?;
        Ok(Self(file))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first is only prompt.
        let _ = self.0.unlock();
    }
}

/// Reads `path`, `None` when it does not exist.
fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The class of an I/O failure, for [`crate::error::Classify`].
fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::Unauthorized,
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// A fresh revision: 128 random bits, so a document deleted and written again
/// never reuses a revision a stale reader still holds.
fn fresh_revision() -> String {
    format!("{:032x}", crate::random::u128())
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::testkit::{conformance, sample_app};

    #[tokio::test]
    async fn file_stores_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (FileStateStore::new(dir.path()), FileStateStore::new(dir.path()));
        let app = sample_app(1).0.id();
        conformance::state_store(&a, &b, &app).await;
        conformance::history_store(&FileHistoryStore::new(dir.path()), &app).await;
    }

    #[tokio::test]
    async fn a_corrupt_document_is_reported_and_can_be_cleared() {
        use crate::state::StateStore;
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path());
        let app = sample_app(1).0.id();
        let path = store.state_path(&app);
        atomic_file::replace(&path, br#"{"revision":"r1","state":{"not":"a state"}}"#).unwrap();
        assert!(matches!(store.load(&app).await, Err(crate::state::StateError::Corrupt { .. })));
        store.clear(&app, &crate::state::Revision::new("r1")).await.unwrap();
        assert!(store.load(&app).await.unwrap().is_none());
    }
}
