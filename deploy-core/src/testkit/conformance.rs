//! One conformance suite for every [`StateStore`] and [`HistoryStore`]: the test
//! kit's, the Kubernetes pair, the file pair and the Redis pair all run these
//! same checks, so "passes the suite" means the same contract everywhere.
//!
//! Each function panics with a message naming the broken rule at the first
//! failure, as a test assertion does; call them from a `#[tokio::test]` on a
//! multi-threaded or current-thread runtime with real time (not paused: a real
//! store's I/O does not advance a paused clock).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use deploy_core::testkit::{TestKit, conformance, sample_app};
//!
//! let kit = TestKit::new();
//! let app = sample_app(1).0.id();
//! let store = kit.state_store();
//! conformance::state_store(store.as_ref(), store.as_ref(), &app).await;
//! conformance::history_store(kit.history_store().as_ref(), &app).await;
//! # });
//! ```

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use futures_util::future::join_all;
use jiff::{SignedDuration, Timestamp};

use crate::history::{HistoryQuery, HistoryStore};
use crate::model::{AppId, DeploymentRecord, DeploymentStatus, Environment, Track, TrafficSplit};
use crate::state::{
    ControlRequest, LeaseToken, LockLease, LockRequest, Revision, RolloutState, StateError, StateStore,
};

use super::sample_app;

/// Unwraps `result`, or panics naming the rule `what` that broke.
fn must<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("store conformance: {what}: unexpected error: {e}"),
    }
}

/// Panics naming `what` unless `result` failed as `expected` says.
fn must_fail<T: Debug>(result: Result<T, StateError>, what: &str, expected: impl Fn(&StateError) -> bool) {
    match result {
        Err(e) if expected(&e) => {}
        Err(e) => panic!("store conformance: {what}: wrong error: {e}"),
        Ok(v) => panic!("store conformance: {what}: succeeded, must fail: {v:?}"),
    }
}

fn state_for(app: &AppId, next_step: usize) -> RolloutState {
    let (_, v1, v2) = sample_app(1);
    let record =
        DeploymentRecord::new(app.clone(), Environment::Staging, Some(v1), v2, crate::model::StrategyKind::Canary);
    let mut state = RolloutState::new(record, TrafficSplit::all(Track::Stable));
    state.next_step = next_step;
    state
}

/// Checks the [`StateStore`] contract on a fresh `app` (nothing stored for it):
/// compare-and-swap of progress (create-only, stale revisions, deleted
/// documents, revisions never reused after a clear, one winner among concurrent
/// writers, exact round trip) and the fenced lock (no second acquisition by any
/// holder name, renewal changes the record, takeover only of the exact record
/// observed, one winner among concurrent takeovers, a lost token renews and
/// releases nothing).
///
/// `a` and `b` are two handles on the same store, as two processes would hold
/// (pass one handle twice when the store has no notion of a client).
pub async fn state_store(a: &dyn StateStore, b: &dyn StateStore, app: &AppId) {
    progress(a, b, app).await;
    lock(a, b, app).await;
}

async fn progress(a: &dyn StateStore, b: &dyn StateStore, app: &AppId) {
    assert!(must(a.load(app).await, "load of a fresh app").is_none(), "store conformance: a fresh app has no state");
    must_fail(
        a.save(app, &state_for(app, 0), Some(&Revision::new("1"))).await,
        "save over nothing with a revision",
        |e| matches!(e, StateError::Deleted { .. }),
    );

    let mut first = state_for(app, 1);
    first.paused = true;
    first.push_request(ControlRequest::Abort { reason: "conformance".into() }, Timestamp::UNIX_EPOCH);
    let r1 = must(a.save(app, &first, None).await, "create-only save");
    let loaded = must(b.load(app).await, "load after save")
        .unwrap_or_else(|| panic!("store conformance: saved state is loadable"));
    assert_eq!(loaded.value, first, "store conformance: the state round-trips exactly");
    assert_eq!(loaded.revision, r1, "store conformance: load returns the revision save returned");
    must_fail(a.save(app, &state_for(app, 9), None).await, "create-only save over a stored document", |e| {
        matches!(e, StateError::Conflict { actual: Some(_), .. })
    });

    let r2 = must(b.save(app, &state_for(app, 2), Some(&r1)).await, "save at the current revision");
    assert_ne!(r1, r2, "store conformance: a save changes the revision");
    must_fail(
        a.save(app, &state_for(app, 9), Some(&r1)).await,
        "save at a stale revision",
        |e| matches!(e, StateError::Conflict { actual: Some(actual), .. } if *actual == r2),
    );
    let loaded =
        must(a.load(app).await, "load after a refused save").unwrap_or_else(|| panic!("store conformance: state kept"));
    assert_eq!(loaded.value.next_step, 2, "store conformance: a refused save changes nothing");

    must_fail(a.clear(app, &r1).await, "clear at a stale revision", |e| matches!(e, StateError::Conflict { .. }));
    assert!(must(a.load(app).await, "load").is_some(), "store conformance: a refused clear deletes nothing");
    must(a.clear(app, &r2).await, "clear at the current revision");
    assert!(must(b.load(app).await, "load after clear").is_none(), "store conformance: clear deletes the state");
    must(a.clear(app, &r2).await, "clearing what is gone succeeds");
    must_fail(a.save(app, &state_for(app, 3), Some(&r2)).await, "save at the revision of a cleared document", |e| {
        matches!(e, StateError::Deleted { .. })
    });

    let r3 = must(a.save(app, &state_for(app, 3), None).await, "create again after clear");
    assert!(r3 != r1 && r3 != r2, "store conformance: a revision is never reused after a clear ({r3})");

    // Concurrent writers at one revision: exactly one wins.
    let writers = (0..8).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        let state = state_for(app, 10 + i);
        let expected = r3.clone();
        async move { store.save(app, &state, Some(&expected)).await }
    });
    let results = join_all(writers).await;
    let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "store conformance: exactly one concurrent save wins: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, StateError::Conflict { .. }), "store conformance: losers get a conflict: {e}");
        }
    }
    let loaded =
        must(b.load(app).await, "load after the race").unwrap_or_else(|| panic!("store conformance: state kept"));
    assert_eq!(loaded.value.next_step, 10 + winners[0], "store conformance: the winner's document is stored");
    must(a.clear(app, &loaded.revision).await, "clear at the end");
}

async fn lock(a: &dyn StateStore, b: &dyn StateStore, app: &AppId) {
    let ttl = Duration::from_secs(30);
    assert!(
        must(a.read_lock(app).await, "read of a free lock").is_none(),
        "store conformance: a fresh app is unlocked"
    );

    let request = LockRequest::new("driver-a", ttl);
    let first = must(a.acquire_lock(app, &request).await, "take a free lock");
    assert_eq!(first.token, request.token, "store conformance: the lease carries the request's token");
    assert_eq!(
        (first.holder.as_str(), first.ttl, &first.app),
        ("driver-a", ttl, app),
        "store conformance: lease fields"
    );
    let seen = must(b.read_lock(app).await, "read a held lock")
        .unwrap_or_else(|| panic!("store conformance: the lease is stored"));
    assert!(seen.same_record(&first), "store conformance: read_lock returns the record acquire returned");

    for holder in ["driver-a", "driver-b"] {
        must_fail(b.acquire_lock(app, &LockRequest::new(holder, ttl)).await, "second acquisition", |e| {
            matches!(e, StateError::LockHeld { .. })
        });
    }
    // A takeover of a record that never was stored fails.
    let forged = LockLease::new(app.clone(), "driver-a", LeaseToken::new("forged"), Timestamp::UNIX_EPOCH, ttl);
    must_fail(
        b.acquire_lock(app, &LockRequest::new("driver-b", ttl).take_over(forged)).await,
        "forged takeover",
        |e| matches!(e, StateError::LockHeld { .. }),
    );

    let renewed = must(a.renew_lock(&first, Duration::from_secs(60)).await, "renew a held lease");
    assert_eq!(renewed.token, first.token, "store conformance: renewal keeps the token");
    assert_ne!(renewed.revision, first.revision, "store conformance: renewal changes the record's revision");
    assert_eq!(renewed.ttl, Duration::from_secs(60), "store conformance: renewal sets the new ttl");
    let stored =
        must(b.read_lock(app).await, "read after renewal").unwrap_or_else(|| panic!("store conformance: lease kept"));
    assert!(stored.same_record(&renewed), "store conformance: the renewed record is stored");
    must_fail(
        b.acquire_lock(app, &LockRequest::new("driver-b", ttl).take_over(first.clone())).await,
        "takeover of a record renewed since it was observed",
        |e| matches!(e, StateError::LockHeld { .. }),
    );

    // Two processes take over the same observed record at once: one wins.
    let contenders =
        [LockRequest::new("driver-b", ttl), LockRequest::new("driver-c", ttl)].map(|r| r.take_over(stored.clone()));
    let results = join_all(contenders.iter().zip([a, b]).map(|(r, s)| s.acquire_lock(app, r))).await;
    let won: Vec<&LockLease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "store conformance: exactly one concurrent takeover wins: {results:?}");
    let holder = won[0].clone();
    let stored = must(a.read_lock(app).await, "read after takeover")
        .unwrap_or_else(|| panic!("store conformance: lease stored"));
    assert!(stored.same_record(&holder), "store conformance: the takeover's lease is stored");

    // The fenced-out token renews and releases nothing.
    must_fail(a.renew_lock(&renewed, ttl).await, "renewal by a lost token", |e| {
        matches!(e, StateError::LockLost { .. })
    });
    must(a.release_lock(&renewed).await, "release by a lost token succeeds");
    let stored = must(b.read_lock(app).await, "read after a stale release")
        .unwrap_or_else(|| panic!("store conformance: lease kept"));
    assert!(stored.same_record(&holder), "store conformance: a stale release removes nothing");

    must(b.release_lock(&holder).await, "release by the holder");
    assert!(must(a.read_lock(app).await, "read after release").is_none(), "store conformance: release frees the lock");
    must(b.release_lock(&holder).await, "releasing a free lock succeeds");
    must_fail(b.renew_lock(&holder, ttl).await, "renewal after release", |e| matches!(e, StateError::LockLost { .. }));
    let again = must(a.acquire_lock(app, &LockRequest::new("driver-a", ttl)).await, "take a released lock");
    must(a.release_lock(&again).await, "release at the end");
}

/// Checks the [`HistoryStore`] contract with records of `app` (none stored for
/// it yet): a record replaces the one with its id, `get` returns it exactly,
/// `list` filters by app, environment and time, sorts oldest first and keeps
/// the most recent `limit`.
pub async fn history_store(store: &dyn HistoryStore, app: &AppId) {
    let (_, v1, v2) = sample_app(1);
    // Whole seconds in the past: a store may keep timestamps at any precision
    // down to nanoseconds, and none reorders them.
    let base = Timestamp::from_second(Timestamp::now().as_second() - 3_600).unwrap_or(Timestamp::UNIX_EPOCH);
    let at = |s: i64| base.checked_add(SignedDuration::from_secs(s)).unwrap_or(base);
    let make = |env: Environment, s: i64| {
        let mut r =
            DeploymentRecord::new(app.clone(), env, Some(v1.clone()), v2.clone(), crate::model::StrategyKind::Canary);
        r.created_at = at(s);
        r
    };
    let (first, mut second, third) =
        (make(Environment::Staging, 0), make(Environment::Production, 10), make(Environment::Staging, 20));

    assert!(
        must(store.get(&first.id).await, "get of an unknown id").is_none(),
        "store conformance: an unknown id has no record"
    );
    // Written out of order: listing sorts by creation time, not by write order.
    for r in [&third, &first, &second] {
        must(store.record(r).await, "record");
    }
    second.start();
    second.finish(DeploymentStatus::RolledBack, Some(crate::model::FailureCause::unclassified("conformance")));
    must(store.record(&second).await, "record again with the same id");
    assert_eq!(
        must(store.get(&second.id).await, "get").as_ref(),
        Some(&second),
        "store conformance: get returns the latest write exactly"
    );

    let ids = |records: Vec<DeploymentRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = must(store.list(&HistoryQuery::default().app(app.clone())).await, "list by app");
    assert_eq!(all.len(), 3, "store conformance: a second write replaces, never duplicates");
    assert_eq!(all[1].status, DeploymentStatus::RolledBack, "store conformance: list shows the replaced record");
    assert_eq!(ids(all), [first.id.clone(), second.id.clone(), third.id.clone()], "store conformance: oldest first");
    let last_two = must(store.list(&HistoryQuery::default().app(app.clone()).limit(2)).await, "list with a limit");
    assert_eq!(
        ids(last_two),
        [second.id.clone(), third.id.clone()],
        "store conformance: the most recent, oldest first"
    );
    let staging = must(
        store.list(&HistoryQuery::default().app(app.clone()).environment(Environment::Staging)).await,
        "list by environment",
    );
    assert_eq!(ids(staging), [first.id.clone(), third.id.clone()], "store conformance: environment filter");
    let window =
        must(store.list(&HistoryQuery::default().app(app.clone()).between(at(5), at(20))).await, "list by time");
    assert_eq!(ids(window), [second.id.clone()], "store conformance: since is inclusive, until exclusive");
    let others: BTreeSet<_> = must(store.list(&HistoryQuery::default()).await, "list everything")
        .into_iter()
        .filter(|r| &r.app == app)
        .map(|r| r.id)
        .collect();
    assert_eq!(others.len(), 3, "store conformance: an unfiltered list includes the app's records");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestKit;

    #[tokio::test]
    async fn the_test_kit_stores_pass() {
        let kit = TestKit::new();
        let app = sample_app(1).0.id();
        let (a, b) = (kit.state_store(), kit.state_store_with_clock_offset(SignedDuration::from_secs(90)));
        state_store(a.as_ref(), b.as_ref(), &app).await;
        history_store(kit.history_store().as_ref(), &app).await;
    }
}
