//! [`RedisHistoryStore`]: deployment records in Redis.

use async_trait::async_trait;
use deploy_core::history::{HistoryError, HistoryQuery, HistoryStore};
use deploy_core::model::{DeploymentId, DeploymentRecord};
use redis::aio::ConnectionManager;

use super::{connect, redis_kind};

/// Deployment records as one JSON key each, indexed by creation time in a sorted
/// set for all records and one per application, so a query reads only the
/// records in its time window.
#[derive(Clone)]
pub struct RedisHistoryStore {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisHistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistoryStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn error(operation: &str, e: redis::RedisError) -> HistoryError {
    HistoryError::backend(operation, redis_kind(&e), e)
}

impl RedisHistoryStore {
    /// A store on `conn`, with keys under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self { conn, prefix: prefix.into() }
    }

    /// Connects to the Redis at `url`.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, HistoryError> {
        let conn = connect(url).await.map_err(|e| error("connect to redis", e))?;
        Ok(Self::new(conn, prefix))
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}:history:record:{id}", self.prefix)
    }

    fn index_key(&self, app: Option<&deploy_core::model::AppId>) -> String {
        match app {
            Some(app) => format!("{}:history:app:{}/{}", self.prefix, app.namespace, app.name),
            None => format!("{}:history:all", self.prefix),
        }
    }
}

fn parse(id: &str, json: &str) -> Result<DeploymentRecord, HistoryError> {
    serde_json::from_str(json).map_err(|e| HistoryError::Corrupt { id: id.to_owned(), reason: e.to_string() })
}

#[async_trait]
impl HistoryStore for RedisHistoryStore {
    async fn record(&self, record: &DeploymentRecord) -> Result<(), HistoryError> {
        let json = serde_json::to_string(record)
            .map_err(|e| HistoryError::Corrupt { id: record.id.to_string(), reason: e.to_string() })?;
        let score = record.created_at.as_millisecond();
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .set(self.record_key(record.id.as_str()), json)
            .ignore()
            .zadd(self.index_key(None), record.id.as_str(), score)
            .ignore()
            .zadd(self.index_key(Some(&record.app)), record.id.as_str(), score)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| error("write a deployment record", e))
    }

    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>, HistoryError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg(self.record_key(id.as_str()))
            .query_async(&mut conn)
            .await
            .map_err(|e| error("read a deployment record", e))?;
        json.map(|j| parse(id.as_str(), &j)).transpose()
    }

    async fn list(&self, query: &HistoryQuery) -> Result<Vec<DeploymentRecord>, HistoryError> {
        let min = query.since.map_or_else(|| "-inf".to_owned(), |t| t.as_millisecond().to_string());
        // Scores are whole milliseconds: the window is widened by one and the
        // exact filter below decides.
        let max = query.until.map_or_else(|| "+inf".to_owned(), |t| (t.as_millisecond() + 1).to_string());
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.index_key(query.app.as_ref()))
            .arg(min)
            .arg(max)
            .query_async(&mut conn)
            .await
            .map_err(|e| error("list deployment records", e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.record_key(id)).collect();
        let docs: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| error("read deployment records", e))?;
        let mut matching = Vec::new();
        for (id, doc) in ids.iter().zip(docs) {
            let Some(doc) = doc else { continue };
            matching.push(parse(id, &doc)?);
        }
        // Listing order is arbitrary: ids break the ties of equal timestamps.
        matching.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        Ok(query.select(matching))
    }
}
