//! [`FileHistoryStore`]: one file per deployment record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{atomic_file, io_kind, read_optional};
use crate::error::ErrorKind;
use crate::history::{HistoryError, HistoryQuery, HistoryStore};
use crate::model::{DeploymentId, DeploymentRecord};

/// Deployment records as `history/<id>.json` under a directory, each replaced
/// atomically; see the [module](super).
///
/// A record id is lower-case letters, digits and `-` ([`DeploymentId`]), so it is
/// a safe file name as it is. Listing reads every record: fine for the thousands
/// of records a host accumulates, not meant for millions.
#[derive(Debug, Clone)]
pub struct FileHistoryStore {
    dir: Arc<PathBuf>,
}

impl FileHistoryStore {
    /// A store rooted at `root` (the same root as a
    /// [`FileStateStore`](super::FileStateStore) is fine: they use different
    /// sub-directories).
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self { dir: Arc::new(root.as_ref().join("history")) }
    }

    fn path(&self, id: &DeploymentId) -> PathBuf {
        self.dir.join(format!("{}.json", id.as_str()))
    }

    async fn blocking<T, F>(&self, operation: &'static str, f: F) -> Result<T, HistoryError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, HistoryError> + Send + 'static,
    {
        let dir = Arc::clone(&self.dir);
        tokio::task::spawn_blocking(move || f(&dir))
            .await
            .map_err(|e| HistoryError::backend(operation, ErrorKind::Other, e))?
    }
}

fn io_error(operation: &str, e: std::io::Error) -> HistoryError {
    HistoryError::backend(operation, io_kind(&e), e)
}

fn parse(id: &str, bytes: &[u8]) -> Result<DeploymentRecord, HistoryError> {
    serde_json::from_slice(bytes).map_err(|e| HistoryError::Corrupt { id: id.to_owned(), reason: e.to_string() })
}

#[async_trait]
impl HistoryStore for FileHistoryStore {
    async fn record(&self, record: &DeploymentRecord) -> Result<(), HistoryError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| HistoryError::Corrupt { id: record.id.to_string(), reason: e.to_string() })?;
        let path = self.path(&record.id);
        self.blocking("write a deployment record", move |_| {
            atomic_file::replace(&path, &bytes).map_err(|e| io_error("write a deployment record", e))
        })
        .await
    }

    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>, HistoryError> {
        let path = self.path(id);
        let id = id.to_string();
        self.blocking("read a deployment record", move |_| {
            read_optional(&path)
                .map_err(|e| io_error("read a deployment record", e))?
                .map(|bytes| parse(&id, &bytes))
                .transpose()
        })
        .await
    }

    async fn list(&self, query: &HistoryQuery) -> Result<Vec<DeploymentRecord>, HistoryError> {
        let query = query.clone();
        self.blocking("list deployment records", move |dir| {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error("list deployment records", e)),
            };
            let mut matching = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| io_error("list deployment records", e))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Some(id) = name.strip_suffix(".json") else { continue };
                if atomic_file::is_temp_name(&name) {
                    continue;
                }
                // A record deleted between the listing and the read is skipped.
                let Some(bytes) = read_optional(&entry.path()).map_err(|e| io_error("read a deployment record", e))?
                else {
                    continue;
                };
                matching.push(parse(id, &bytes)?);
            }
            // Listing order is arbitrary: ids break the ties of equal timestamps.
            matching.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
            Ok(query.select(matching))
        })
        .await
    }
}
