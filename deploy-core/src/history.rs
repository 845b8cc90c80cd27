//! Past deployments: the [`HistoryStore`] trait.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{AppId, DeploymentId, DeploymentRecord, Environment};

/// Which records to list; every field narrows the result, `None` means any.
///
/// ```
/// use deploy_core::history::HistoryQuery;
/// use deploy_core::model::Environment;
/// let q = HistoryQuery::default().environment(Environment::Production).limit(50);
/// assert_eq!(q.limit, Some(50));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// Only this application.
    pub app: Option<AppId>,
    /// Only this environment.
    pub environment: Option<Environment>,
    /// Only records created at or after this time.
    pub since: Option<Timestamp>,
    /// Only records created before this time.
    pub until: Option<Timestamp>,
    /// At most this many, the most recent ones.
    pub limit: Option<usize>,
}

impl HistoryQuery {
    /// Only `app`.
    #[must_use]
    pub fn app(mut self, app: AppId) -> Self {
        self.app = Some(app);
        self
    }

    /// Only `environment`.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Only records created in `[since, until)`.
    #[must_use]
    pub fn between(mut self, since: Timestamp, until: Timestamp) -> Self {
        self.since = Some(since);
        self.until = Some(until);
        self
    }

    /// At most `limit` records.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The records that pass the filters, oldest first (ties in the order given),
    /// cut to the newest `limit`: what [`HistoryStore::list`] answers, for stores
    /// that filter in memory.
    pub fn select(&self, records: impl IntoIterator<Item = DeploymentRecord>) -> Vec<DeploymentRecord> {
        let mut matching: Vec<DeploymentRecord> = records.into_iter().filter(|r| self.matches(r)).collect();
        matching.sort_by_key(|r| r.created_at);
        if let Some(limit) = self.limit {
            let skip = matching.len().saturating_sub(limit);
            matching.drain(..skip);
        }
        matching
    }

    /// Whether `record` passes every filter (the limit aside).
    pub fn matches(&self, record: &DeploymentRecord) -> bool {
        self.app.as_ref().is_none_or(|a| *a == record.app)
            && self.environment.is_none_or(|e| e == record.environment)
            && self.since.is_none_or(|s| record.created_at >= s)
            && self.until.is_none_or(|u| record.created_at < u)
    }
}

/// A failure of a [`HistoryStore`] operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// A stored record cannot be read.
    #[error("stored deployment record {id} is corrupt: {reason}")]
    Corrupt {
        /// The record's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(HistoryError);

impl Classify for HistoryError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Corrupt { .. } => ErrorKind::InvalidInput,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// Where deployment records are kept, for audits and DORA metrics.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// Stores `record`, replacing any record with the same id (the engine records
    /// a deployment when it starts and again when it ends).
    async fn record(&self, record: &DeploymentRecord) -> Result<(), HistoryError>;

    /// The record with `id`, if any.
    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>, HistoryError>;

    /// The records that match `query`, oldest first; with a limit, the most recent
    /// `limit` of them, still oldest first.
    async fn list(&self, query: &HistoryQuery) -> Result<Vec<DeploymentRecord>, HistoryError>;
}
