//! [`RedisStateStore`]: compare-and-swap progress and a fenced lease in Redis.

use std::time::Duration;

use async_trait::async_trait;
use deploy_core::model::AppId;
use deploy_core::state::{LockLease, LockRequest, Revision, RolloutState, StateError, StateStore, Versioned};
use jiff::{SignedDuration, Timestamp};
use redis::Script;
use redis::aio::ConnectionManager;

use super::{connect, redis_kind};

/// Saves `ARGV[2]` if the stored revision is `ARGV[1]` ('' = nothing stored).
const SAVE: &str = r"
local cur = redis.call('HGET', KEYS[1], 'rev')
if ARGV[1] == '' then
  if cur then return {'conflict', cur} end
else
  if not cur then return {'deleted', ''} end
  if cur ~= ARGV[1] then return {'conflict', cur} end
end
local rev = tostring(redis.call('INCR', KEYS[2]))
redis.call('HSET', KEYS[1], 'rev', rev, 'doc', ARGV[2])
return {'ok', rev}
";

/// Deletes the document if its revision is `ARGV[1]`.
const CLEAR: &str = r"
local cur = redis.call('HGET', KEYS[1], 'rev')
if not cur then return {'ok', ''} end
if cur ~= ARGV[1] then return {'conflict', cur} end
redis.call('DEL', KEYS[1])
return {'ok', ''}
";

/// Takes the lock over if the stored lease has token `ARGV[1]` and revision
/// `ARGV[2]` (or none is stored): writes `ARGV[3]` for `ARGV[4]` ms.
const TAKE_OVER: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local lease = cjson.decode(cur)
  if lease.token ~= ARGV[1] or lease.revision ~= ARGV[2] then return {'held', cur} end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return {'ok', ''}
";

/// Replaces the lease with `ARGV[2]` for `ARGV[3]` ms if its token is `ARGV[1]`.
const RENEW: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return {'lost', ''} end
if cjson.decode(cur).token ~= ARGV[1] then return {'lost', cur} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {'ok', ''}
";

/// Deletes the lease if its token is `ARGV[1]`.
const RELEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur).token == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 'ok'
";

/// Rollout progress and per-app leases in one Redis (a single node or a
/// primary watched by Sentinel; the keys of one app share a hash tag, so a
/// cluster keeps them on one slot).
///
/// The lease key also carries a Redis expiry of twice the lease's ttl: a safety
/// net so that a lock whose holder died and that nobody took over frees itself.
/// It never fences a live holder early: the engine's holder stops changing the
/// platform once its own monotonic clock says its ttl may have run out, long
/// before the key expires on the server's clock. Takeover before that goes
/// through [`LockRequest::take_over`] of the exact record, as on every store.
#[derive(Clone)]
pub struct RedisStateStore {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStateStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisStateStore {
    /// A store on `conn`, with keys under `prefix` (for example `deploy-rs`).
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self { conn, prefix: prefix.into() }
    }

    /// Connects to the Redis at `url` (`redis://host:port/db`).
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, StateError> {
        let conn = connect(url).await.map_err(|e| error("connect to redis", e))?;
        Ok(Self::new(conn, prefix))
    }

    fn key(&self, kind: &str, app: &AppId) -> String {
        format!("{}:{{{}/{}}}:{kind}", self.prefix, app.namespace, app.name)
    }

    async fn script(
        &self,
        source: &str,
        keys: &[String],
        args: &[String],
        op: &str,
    ) -> Result<Vec<String>, StateError> {
        let script = Script::new(source);
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        invocation.invoke_async(&mut conn).await.map_err(|e| error(op, e))
    }

    fn parse_lease(app: &AppId, json: &str) -> Result<LockLease, StateError> {
        serde_json::from_str(json)
            .map_err(|e| StateError::Corrupt { app: app.clone(), reason: format!("lease record: {e}") })
    }

    fn encode(app: &AppId, lease: &LockLease) -> Result<String, StateError> {
        serde_json::to_string(lease).map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })
    }
}

fn error(operation: &str, e: redis::RedisError) -> StateError {
    StateError::backend(operation, redis_kind(&e), e)
}

/// A fresh lease-record revision: 128 random bits (the lease token generator's),
/// so a record is never mistaken for an earlier one.
fn fresh_revision() -> String {
    deploy_core::state::LeaseToken::generate().as_str().to_owned()
}

/// The key's Redis expiry: twice the lease, at least a second.
fn safety_ms(ttl: Duration) -> String {
    ttl.saturating_mul(2).as_millis().max(1_000).to_string()
}

fn expiry(from: Timestamp, ttl: Duration) -> Timestamp {
    from.checked_add(SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX)).unwrap_or(Timestamp::MAX)
}

fn outcome(reply: &[String]) -> (&str, &str) {
    (reply.first().map_or("", String::as_str), reply.get(1).map_or("", String::as_str))
}

#[async_trait]
impl StateStore for RedisStateStore {
    async fn load(&self, app: &AppId) -> Result<Option<Versioned<RolloutState>>, StateError> {
        let mut conn = self.conn.clone();
        let (rev, doc): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key("state", app))
            .arg("rev")
            .arg("doc")
            .query_async(&mut conn)
            .await
            .map_err(|e| error("load state", e))?;
        match (rev, doc) {
            (Some(rev), Some(doc)) => serde_json::from_str(&doc)
                .map(|state| Some(Versioned::new(state, Revision::new(rev))))
                .map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() }),
            (None, None) => Ok(None),
            _ => Err(StateError::Corrupt { app: app.clone(), reason: "revision or document missing".into() }),
        }
    }

    async fn save(
        &self,
        app: &AppId,
        state: &RolloutState,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        let doc = serde_json::to_string(state)
            .map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })?;
        let keys = [self.key("state", app), self.key("revision", app)];
        let args = [expected.map(|r| r.as_str().to_owned()).unwrap_or_default(), doc];
        let reply = self.script(SAVE, &keys, &args, "save state").await?;
        match outcome(&reply) {
            ("ok", rev) => Ok(Revision::new(rev)),
            ("deleted", _) => Err(StateError::Deleted {
                app: app.clone(),
                expected: expected.cloned().unwrap_or_else(|| Revision::new("")),
            }),
            (_, actual) => Err(StateError::Conflict {
                app: app.clone(),
                expected: expected.cloned(),
                actual: Some(Revision::new(actual)),
            }),
        }
    }

    async fn clear(&self, app: &AppId, expected: &Revision) -> Result<(), StateError> {
        let reply =
            self.script(CLEAR, &[self.key("state", app)], &[expected.as_str().to_owned()], "clear state").await?;
        match outcome(&reply) {
            ("ok", _) => Ok(()),
            (_, actual) => Err(StateError::Conflict {
                app: app.clone(),
                expected: Some(expected.clone()),
                actual: Some(Revision::new(actual)),
            }),
        }
    }

    async fn read_lock(&self, app: &AppId) -> Result<Option<LockLease>, StateError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg(self.key("lock", app))
            .query_async(&mut conn)
            .await
            .map_err(|e| error("read lock", e))?;
        json.map(|j| Self::parse_lease(app, &j)).transpose()
    }

    async fn acquire_lock(&self, app: &AppId, request: &LockRequest) -> Result<LockLease, StateError> {
        let lease = LockLease::new(app.clone(), &request.holder, request.token.clone(), Timestamp::now(), request.ttl)
            .revision(Revision::new(fresh_revision()));
        let json = Self::encode(app, &lease)?;
        let key = self.key("lock", app);
        let taken = match &request.take_over {
            None => {
                let mut conn = self.conn.clone();
                let ok: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&json)
                    .arg("NX")
                    .arg("PX")
                    .arg(safety_ms(request.ttl))
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| error("take lock", e))?;
                ok.is_some()
            }
            Some(seen) => {
                let args =
                    [seen.token.as_str().to_owned(), seen.revision.as_str().to_owned(), json, safety_ms(request.ttl)];
                let reply = self.script(TAKE_OVER, &[key], &args, "take lock over").await?;
                outcome(&reply).0 == "ok"
            }
        };
        if taken {
            return Ok(lease);
        }
        match self.read_lock(app).await? {
            Some(current) => {
                Err(StateError::LockHeld { app: app.clone(), holder: current.holder, expires_at: current.expires_at })
            }
            // Released between the two calls: the caller may simply try again.
            None => Err(StateError::LockHeld {
                app: app.clone(),
                holder: "nobody (just released)".into(),
                expires_at: Timestamp::now(),
            }),
        }
    }

    async fn renew_lock(&self, lease: &LockLease, ttl: Duration) -> Result<LockLease, StateError> {
        let mut renewed =
            lease.clone().revision(Revision::new(fresh_revision())).expires_at(expiry(Timestamp::now(), ttl));
        renewed.ttl = ttl;
        let json = Self::encode(&lease.app, &renewed)?;
        let args = [lease.token.as_str().to_owned(), json, safety_ms(ttl)];
        let reply = self.script(RENEW, &[self.key("lock", &lease.app)], &args, "renew lock").await?;
        match outcome(&reply) {
            ("ok", _) => Ok(renewed),
            (_, "") => Err(StateError::LockLost { app: lease.app.clone(), holder: "nobody".into() }),
            (_, current) => Err(StateError::LockLost {
                app: lease.app.clone(),
                holder: Self::parse_lease(&lease.app, current).map_or_else(|_| "unknown".into(), |l| l.holder),
            }),
        }
    }

    async fn release_lock(&self, lease: &LockLease) -> Result<(), StateError> {
        let script = Script::new(RELEASE);
        let mut conn = self.conn.clone();
        let _: String = script
            .key(self.key("lock", &lease.app))
            .arg(lease.token.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| error("release lock", e))?;
        Ok(())
    }
}
