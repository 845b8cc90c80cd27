//! Saved progress signed by the engines' key: a document changed in the store (a
//! new image, say) is refused at resume, and nothing is deployed.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use common::{Fixture, Strat};
use deploy_core::engine::{RolloutEngine, RolloutError, RolloutEvent};
use deploy_core::model::ImageRef;
use deploy_core::signed_state::StateKey;
use deploy_core::state::{RolloutState, StateError};
use deploy_core::testkit::Method;

fn signed(f: &Fixture, holder: &str, key: &[u8]) -> RolloutEngine {
    RolloutEngine::builder(f.kit.platform(), f.kit.state_store(), f.kit.history_store())
        .router(f.kit.router())
        .metrics(f.kit.metrics())
        .health_check(f.smoke.clone())
        .config(common::config(holder))
        .sign_state(StateKey::new(key.to_vec()).unwrap())
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_tampered_saved_state_is_refused_at_resume_and_nothing_is_deployed() {
    let f = Fixture::new(Strat::Canary);
    let key = [7u8; 32];
    let first = signed(&f, "engine-a", &key);
    let mut handle = first.start(f.request()).await.unwrap();
    while let Some(e) = handle.next_event().await {
        if matches!(e, RolloutEvent::StepFinished { index: 2, .. }) {
            break;
        }
    }
    handle.kill();
    let store = f.kit.state_store();
    let saved = store.load(&f.spec.id()).await.unwrap().unwrap();
    assert!(saved.value.signature().is_some(), "progress is saved signed");
    // Someone with write access to the store swaps the image.
    let evil = ImageRef::parse("registry.evil.example/miner:latest").unwrap();
    // The document is opaque to the store: the attacker edits its bytes.
    let mut doc = serde_json::to_value(&saved.value).unwrap();
    doc["record"]["to"]["image"] = serde_json::Value::String(evil.to_string());
    let tampered: RolloutState = serde_json::from_value(doc).unwrap();
    assert_eq!(tampered.record().to.image, evil, "the edit took");
    store.save(&f.spec.id(), &tampered, Some(&saved.revision)).await.unwrap();
    let applies_before = f.kit.calls().iter().filter(|c| c.method == Method::Apply).count();

    let second = signed(&f, "engine-b", &key);
    let err = loop {
        match second.resume(&f.spec.id()).await {
            Err(RolloutError::Locked { .. }) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
            Err(e) => break e,
            Ok(_) => panic!("a tampered state was resumed"),
        }
    };
    let text = err.to_string();
    assert!(
        matches!(err, RolloutError::State(StateError::Corrupt { .. }) | RolloutError::CorruptState { .. }),
        "{text}"
    );
    assert!(text.contains("changed outside the engine"), "says why: {text}");
    let applies_after = f.kit.calls().iter().filter(|c| c.method == Method::Apply).count();
    assert_eq!(applies_before, applies_after, "nothing was deployed");
    assert!(f.kit.calls().iter().all(|c| !c.detail.contains("miner")), "the swapped image never ran");

    // An engine without the key, or with another, refuses it too.
    let other = signed(&f, "engine-c", &[9u8; 32]);
    assert!(other.resume(&f.spec.id()).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn signed_rollouts_run_and_resume_as_unsigned_ones_do() {
    let f = Fixture::new(Strat::BlueGreen);
    let report = signed(&f, "engine-a", &[1u8; 40]).run(f.request()).await.unwrap();
    assert_eq!(report.status, deploy_core::model::DeploymentStatus::Succeeded, "{:?}", report.cause);
}

#[test]
fn short_keys_are_refused_and_keys_never_print() {
    assert!(StateKey::new(vec![0u8; 16]).is_err());
    let key = StateKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap();
    assert!(!format!("{key:?}").contains("0123"), "{key:?}");
}
