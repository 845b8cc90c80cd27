//! Faults through the engine on the real API server: a crash mid-rollout and a
//! resume by another engine, two engines racing for one app, and progress changed
//! behind the engine's back.

use std::time::Duration;

use deploy_core::engine::RolloutError;
use deploy_core::model::{DeploymentStatus, Track};
use deploy_core::state::{LockRequest, StateError, StateStore};
use deploy_core::strategy::Strategy as _;
use deploy_k8s::state::{KubeStateStore, state_name};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::engine::{
    NEW, OLD, Route, Strat, World, assert_lock_and_state_cleared, assert_nothing_runs, assert_serves, engine_config,
    served_tracks,
};
use crate::support;

/// The crash-free end state of a promoted rollout, read from the server.
async fn assert_promoted(w: &World, context: &str) {
    assert_serves(&w.s, w.plan.final_track, NEW, context).await;
    assert_eq!(served_tracks(w).await, [w.plan.final_track.as_str()], "{context}");
    assert_nothing_runs(&w.s, OLD, context).await;
    assert_lock_and_state_cleared(&w.s, context).await;
}

async fn crash_and_resume(test: &str, strat: Strat, route: Route) {
    let mut w = World::new(test, strat, route).await;
    w.error_rate(0.001);
    // A pause after the middle step: the driver dies while it waits there, so the
    // crash cannot race the rest of a fast rollout to its end.
    let middle = w.plan.steps.len() / 2;
    w.plan.steps.insert(
        middle + 1,
        deploy_core::plan::Step::Pause(deploy_core::plan::PauseKind::Duration(deploy_core::model::HumanDuration::new(
            Duration::from_secs(3),
        ))),
    );
    let ttl = Duration::from_secs(4);
    let first = w.engine_with(engine_config("engine-a").lock_ttl(ttl));
    let mut handle = first.start(w.request(support::release(NEW))).await.expect("start");
    // Let it finish its middle step and enter the pause, then die without clean-up.
    support::until_paused(&mut handle).await;
    let saved = KubeStateStore::new(w.s.cluster.clone()).load(&w.s.app()).await.unwrap();
    assert!(saved.is_some(), "progress is saved on the server when the engine dies");
    handle.kill();
    drop(first);
    let second = w.engine_with(engine_config("engine-b").lock_ttl(ttl));
    // The dead holder's lease must lapse first.
    let early = second.resume(&w.s.app()).await;
    assert!(matches!(early, Err(RolloutError::Locked { .. })), "taken over before expiry: {early:?}");
    let resumed = loop {
        match second.resume(&w.s.app()).await {
            Ok(handle) => break handle,
            Err(RolloutError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => panic!("resume: {e}"),
        }
    };
    let report = resumed.wait().await.expect("the resumed rollout ends");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_promoted(&w, test).await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn canary_istio_crashed_mid_rollout_is_resumed_by_another_engine() {
    crash_and_resume("crash-istio", Strat::Canary, Route::Istio).await;
}

#[tokio::test]
async fn canary_replicas_crashed_mid_rollout_is_resumed_by_another_engine() {
    crash_and_resume("crash-replicas", Strat::Canary, Route::Replicas).await;
}

#[tokio::test]
async fn blue_green_crashed_mid_rollout_is_resumed_by_another_engine() {
    crash_and_resume("crash-bg", Strat::BlueGreen, Route::ServiceSelector).await;
}

#[tokio::test]
async fn two_engines_racing_for_one_app_run_it_once() {
    let w = World::new("race", Strat::Canary, Route::Gateway).await;
    w.error_rate(0.001);
    let (a, b) = (w.engine("engine-a"), w.engine("engine-b"));
    let (ra, rb) = tokio::join!(a.start(w.request(support::release(NEW))), b.start(w.request(support::release(NEW))));
    let (winner, loser) = match (ra, rb) {
        (Ok(h), Err(e)) | (Err(e), Ok(h)) => (h, e),
        (Ok(_), Ok(_)) => panic!("both engines started the rollout"),
        (Err(x), Err(y)) => panic!("neither started: {x}; {y}"),
    };
    assert!(matches!(loser, RolloutError::Locked { .. } | RolloutError::Unfinished { .. }), "{loser}");
    let report = winner.wait().await.expect("the winner finishes");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_promoted(&w, "race").await;
    let records = deploy_core::history::HistoryStore::list(&w.history, &deploy_core::history::HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(records.len(), 1, "one rollout recorded: {records:?}");
    w.s.cleanup().await;
}

#[tokio::test]
async fn progress_changed_behind_the_store_is_a_conflict_and_is_not_overwritten() {
    let w = World::new("state-conflict", Strat::Canary, Route::Replicas).await;
    let store = KubeStateStore::new(w.s.cluster.clone());
    let app = w.s.app();
    let lease = store.acquire_lock(&app, &LockRequest::new("engine-a", Duration::from_secs(30))).await.unwrap();
    let engine = w.engine("engine-a");
    drop(engine);
    // Save a first version of progress as the engine would, then change the
    // ConfigMap as another writer (kubectl edit) would.
    let state = deploy_core::state::RolloutState::new(
        deploy_core::model::DeploymentRecord::new(
            app.clone(),
            deploy_core::model::Environment::Production,
            Some(support::release(OLD)),
            support::release(NEW),
            deploy_core::model::StrategyKind::Canary,
        ),
        deploy_core::model::TrafficSplit::all(Track::Stable),
    );
    let revision = store.save(&app, &state, None).await.unwrap();
    let maps: Api<ConfigMap> = w.s.api();
    let name = state_name(&app);
    maps.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"edited-by": "someone"}}})),
    )
    .await
    .unwrap();
    let edited = maps.get(&name).await.unwrap();
    let again = store.save(&app, &state, Some(&revision)).await;
    assert!(matches!(again, Err(StateError::Conflict { .. })), "{again:?}");
    let after = maps.get(&name).await.unwrap();
    assert_eq!(after.data, edited.data, "the other writer's content is kept");
    assert_eq!(after.metadata.resource_version, edited.metadata.resource_version, "nothing was written");
    let cleared = store.clear(&app, &revision).await;
    assert!(matches!(cleared, Err(StateError::Conflict { .. })), "{cleared:?}");
    assert!(maps.get_opt(&name).await.unwrap().is_some(), "a stale clear deletes nothing");
    store.release_lock(&lease).await.unwrap();
    w.s.cleanup().await;
}

/// While the engine waits at a pause, another writer replaces the app's progress
/// ConfigMap with a rollout of its own: at its next save the engine stops without
/// overwriting it, and the other writer's document is what the server holds.
#[tokio::test]
async fn progress_replaced_while_the_engine_runs_stops_it_without_overwriting() {
    let mut w = World::new("engine-conflict", Strat::Canary, Route::Replicas).await;
    w.plan = deploy_core::strategy::Canary::with_steps(vec![
        deploy_core::plan::Step::SetWeight(deploy_core::model::Percent::new(25).expect("25")),
        deploy_core::plan::Step::Pause(deploy_core::plan::PauseKind::UntilPromoted),
        deploy_core::plan::Step::SetWeight(deploy_core::model::Percent::new(50).expect("50")),
    ])
    .plan(&deploy_core::strategy::PlanInput::new(crate::engine::REPLICAS));
    let engine = w.engine("engine-conflict");
    let mut handle = engine.start(w.request(support::release(NEW))).await.expect("the rollout starts");
    support::until_paused(&mut handle).await;

    let store = KubeStateStore::new(w.s.cluster.clone());
    let app = w.s.app();
    let stored = store.load(&app).await.unwrap().expect("the engine saved its progress");
    let other = deploy_core::state::RolloutState::new(
        deploy_core::model::DeploymentRecord::new(
            app.clone(),
            deploy_core::model::Environment::Production,
            Some(support::release(OLD)),
            support::release("9"),
            deploy_core::model::StrategyKind::Canary,
        ),
        deploy_core::model::TrafficSplit::all(Track::Stable),
    );
    store.save(&app, &other, Some(&stored.revision)).await.unwrap();
    let maps: Api<ConfigMap> = w.s.api();
    let written = maps.get(&state_name(&app)).await.unwrap();

    // The engine may already have seen the replacement while it polled for controls.
    let _ = handle.promote();
    let result = tokio::time::timeout(Duration::from_secs(60), handle.wait()).await.expect("the engine stops");
    assert!(
        matches!(&result, Err(RolloutError::State(StateError::Conflict { .. }))),
        "the engine stops on the conflict: {result:?}"
    );
    let after = maps.get(&state_name(&app)).await.unwrap();
    assert_eq!(after.data, written.data, "the other writer's progress is kept");
    assert_eq!(after.metadata.resource_version, written.metadata.resource_version, "nothing was written over it");
    w.s.cleanup().await;
}
