//! The engine's preflight: a checklist made for the rollout and run before its
//! first step. A no-go stops every strategy before anything changes and names
//! each blocking item; a go is logged in the record; manual items block.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{Fixture, Strat, config};
use deploy_core::check::{CheckOutcome, FnCheck};
use deploy_core::checklist::{Checklist, Phase};
use deploy_core::engine::{Preflight, PreflightInput, RolloutEngine};
use deploy_core::model::CauseKind;
use deploy_core::model::DeploymentStatus;
use deploy_core::testkit::Method;

/// Checks that the release's image is the one the test allows and that the app
/// asks for at most `max_pods` replicas; records every input it saw.
struct Gate {
    allowed_tag: &'static str,
    max_pods: u32,
    manual: bool,
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl Preflight for Gate {
    async fn checklist(&self, input: PreflightInput<'_>) -> Checklist {
        self.seen.lock().unwrap().push(format!("{} {}", input.release.version, input.plan.steps.len()));
        let image = input.release.image.to_string();
        let allowed = self.allowed_tag;
        let (pods, max) = (input.spec.replicas, self.max_pods);
        let mut checklist = Checklist::new()
            .automated(
                "image-allowed",
                Phase::Pre,
                "the image is allowed",
                FnCheck::new(move || {
                    let image = image.clone();
                    async move {
                        if image.ends_with(allowed) {
                            CheckOutcome::passed(format!("{image} allowed"))
                        } else {
                            CheckOutcome::failed(format!("{image} is not :{allowed}"))
                        }
                    }
                }),
            )
            .automated(
                "capacity",
                Phase::Pre,
                "the pods fit",
                FnCheck::new(move || async move {
                    if pods <= max {
                        CheckOutcome::passed(format!("{pods} of {max} pods"))
                    } else {
                        CheckOutcome::failed(format!("{pods} pods do not fit in {max}"))
                    }
                }),
            )
            .automated(
                "after",
                Phase::Post,
                "never run by the engine",
                FnCheck::new(|| async { CheckOutcome::failed("a post item ran before the rollout") }),
            );
        if self.manual {
            checklist = checklist.manual("change-approved", Phase::Pre, "change request approved");
        }
        checklist
    }
}

fn gate(allowed_tag: &'static str, max_pods: u32, manual: bool) -> Arc<Gate> {
    Arc::new(Gate { allowed_tag, max_pods, manual, seen: Mutex::new(Vec::new()) })
}

fn engine(f: &Fixture, preflight: Arc<Gate>) -> RolloutEngine {
    let mut builder = RolloutEngine::builder(f.kit.platform(), f.kit.state_store(), f.kit.history_store())
        .metrics(f.kit.metrics())
        .health_check(f.smoke.clone())
        .config(config("engine-a"))
        .preflight(preflight);
    if f.strat.router().is_some() {
        builder = builder.router(f.kit.router());
    }
    builder.build()
}

#[tokio::test(start_paused = true)]
async fn a_no_go_stops_every_strategy_before_anything_changes_and_names_each_blocker() {
    for strat in Strat::ALL {
        let f = Fixture::new(strat);
        let gate = gate(":9.9.9", 2, false);
        let report = engine(&f, gate.clone()).run(f.request()).await.unwrap();
        assert_ne!(report.status, DeploymentStatus::Succeeded, "{strat:?}");
        let cause = report.cause.unwrap();
        assert_eq!(cause.kind, CauseKind::PreflightFailed, "{strat:?}: {cause}");
        assert!(cause.message.contains("blocked by image-allowed, capacity"), "{strat:?}: {cause}");
        assert!(cause.message.contains("4 pods do not fit in 2"), "{strat:?}: {cause}");
        assert!(!cause.message.contains("post item"), "{strat:?}: only the Pre phase runs: {cause}");
        let applied: Vec<_> = f.kit.calls().into_iter().filter(|c| c.method == Method::Apply).collect();
        assert!(applied.is_empty(), "{strat:?}: nothing was applied: {applied:?}");
        let snapshot = f.kit.snapshot(&f.spec.id());
        assert!(snapshot.runs(&f.v1.version) && !snapshot.runs(&f.v2.version), "{strat:?}");
        assert_eq!(gate.seen.lock().unwrap().len(), 1, "{strat:?}: checked once");
    }
}

#[tokio::test(start_paused = true)]
async fn a_go_runs_the_rollout_and_is_in_the_record() {
    for strat in Strat::ALL {
        let f = Fixture::new(strat);
        let gate = gate(":2.0.0", 4, false);
        let report = engine(&f, gate.clone()).run(f.request()).await.unwrap();
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{strat:?}: {:?}", report.cause);
        let logged = report.record.logs.iter().any(|l| l.message.contains("preflight go (2 checks)"));
        assert!(logged, "{strat:?}: {:?}", report.record.logs);
        assert_eq!(gate.seen.lock().unwrap()[0], format!("2.0.0 {}", f.plan.steps.len()), "{strat:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_manual_item_is_never_confirmed_by_the_engine() {
    let f = Fixture::new(Strat::Canary);
    let report = engine(&f, gate(":2.0.0", 4, true)).run(f.request()).await.unwrap();
    let cause = report.cause.unwrap();
    assert_eq!(cause.kind, CauseKind::PreflightFailed);
    assert!(cause.message.contains("change-approved NOT CONFIRMED"), "{cause}");
}
