//! The Redis state and history stores pass deploy-core's one conformance suite
//! against a real redis-server, through two connections (two "hosts").

use deploy_cache::store::{RedisHistoryStore, RedisStateStore};
use deploy_core::model::{AppId, Name, Namespace};
use deploy_core::state::{LockRequest, StateStore};
use deploy_core::testkit::conformance;

use crate::support::RedisServer;

fn app(name: &str) -> AppId {
    AppId::new(Namespace::new("shop").unwrap(), Name::new(name).unwrap())
}

#[tokio::test]
async fn redis_stores_pass_the_conformance_suite() {
    let server = RedisServer::start();
    let a = RedisStateStore::connect(&server.url(), "deploy-rs").await.unwrap();
    let b = RedisStateStore::connect(&server.url(), "deploy-rs").await.unwrap();
    conformance::state_store(&a, &b, &app("web")).await;
    let history = RedisHistoryStore::connect(&server.url(), "deploy-rs").await.unwrap();
    conformance::history_store(&history, &app("web")).await;
}

#[tokio::test]
async fn the_lease_key_is_set_nx_with_an_expiry_of_twice_the_ttl() {
    let server = RedisServer::start();
    let store = RedisStateStore::connect(&server.url(), "p").await.unwrap();
    let lease =
        store.acquire_lock(&app("api"), &LockRequest::new("a", std::time::Duration::from_secs(30))).await.unwrap();
    // Read back from Redis itself: the key holds the lease with its token and a PX expiry.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = "p:{shop/api}:lock";
    let json: String = redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap();
    assert!(json.contains(lease.token.as_str()), "{json}");
    let pttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
    assert!((55_000..=60_000).contains(&pttl), "expiry {pttl} ms");
    store.release_lock(&lease).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await.unwrap();
    assert_eq!(exists, 0);
}
