//! The kit's [`HistoryStore`].

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::history::{HistoryError, HistoryQuery, HistoryStore};
use crate::model::{DeploymentId, DeploymentRecord};

/// Deployment records in memory; also keeps every write, to check that a rollout
/// was recorded when it started and when it ended.
#[derive(Debug, Default)]
pub struct TestHistoryStore {
    records: Mutex<Vec<DeploymentRecord>>,
    writes: Mutex<Vec<DeploymentRecord>>,
}

impl TestHistoryStore {
    /// Every record written, in order, including replaced versions.
    pub fn writes(&self) -> Vec<DeploymentRecord> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The current records, oldest first.
    pub fn records(&self) -> Vec<DeploymentRecord> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl HistoryStore for TestHistoryStore {
    async fn record(&self, record: &DeploymentRecord) -> Result<(), HistoryError> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner).push(record.clone());
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        match records.iter_mut().find(|r| r.id == record.id) {
            Some(existing) => *existing = record.clone(),
            None => records.push(record.clone()),
        }
        Ok(())
    }

    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>, HistoryError> {
        Ok(self.records.lock().unwrap_or_else(PoisonError::into_inner).iter().find(|r| &r.id == id).cloned())
    }

    async fn list(&self, query: &HistoryQuery) -> Result<Vec<DeploymentRecord>, HistoryError> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(query.select(records.iter().cloned()))
    }
}
