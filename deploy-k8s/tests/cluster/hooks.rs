//! Hook steps as Jobs on the real server: a failing before-rollout hook stops the
//! rollout before anything changes, with the Job's failure in the cause; a
//! succeeding one runs before the first change.

use deploy_core::hook::{HookSpec, HookWhen};
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, ImageRef, Name, Track};
use deploy_core::plan::Step;
use deploy_k8s::manifest::hook::HOOK;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};

use crate::engine::{
    NEW, OLD, Route, Strat, World, assert_lock_and_state_cleared, assert_serves, deployment, served_tracks,
};
use crate::support;

fn backup(tag: &str) -> Step {
    let hook = HookSpec::new(
        Name::new("db-backup").unwrap(),
        ImageRef::parse(&format!("registry.deploy-rs.test/ops/pg-backup:{tag}")).unwrap(),
    )
    .command(["/backup", "--all"]);
    Step::Hook { when: HookWhen::BeforeRollout, hook }
}

async fn backup_jobs(w: &World) -> Vec<Job> {
    let jobs: Api<Job> = w.s.api();
    jobs.list(&ListParams::default().labels(&format!("{HOOK}=db-backup"))).await.unwrap().items
}

fn condition(job: &Job, kind: &str) -> bool {
    job.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == kind && c.status == "True")
}

#[tokio::test]
async fn a_failing_before_rollout_hook_stops_the_rollout_before_anything_changes() {
    let mut w = World::new("hook-fails", Strat::Canary, Route::Istio).await;
    w.error_rate(0.001);
    w.plan.steps.insert(0, backup("hookfail-1"));
    let report = w.engine("hooks").run(w.request(support::release(NEW))).await.expect("a report");
    assert_ne!(report.status, DeploymentStatus::Succeeded);
    let cause = report.cause.expect("a cause");
    assert_eq!(cause.kind, CauseKind::HookFailed, "{cause}");
    let jobs = backup_jobs(&w).await;
    assert_eq!(jobs.len(), 1, "one run of the hook");
    let name = jobs[0].metadata.name.clone().unwrap();
    assert!(condition(&jobs[0], "Failed"), "the Job failed on the server: {:?}", jobs[0].status);
    // The Job's own failure message; the pod's log needs a kubelet, which this
    // cluster does not run (on a cluster with nodes, its tail follows).
    assert!(cause.message.contains(&name) && cause.message.contains("backoff limit"), "{cause}");
    assert!(deployment(&w.s, "canary").await.is_none(), "no canary was deployed");
    assert_serves(&w.s, Track::Stable, OLD, "hook-fails").await;
    assert_eq!(served_tracks(&w).await, ["stable"]);
    assert_lock_and_state_cleared(&w.s, "hook-fails").await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_before_rollout_hook_runs_to_completion_before_the_first_change() {
    let mut w = World::new("hook-runs", Strat::Canary, Route::Istio).await;
    w.error_rate(0.001);
    w.plan.steps.insert(0, backup("16"));
    let report = w.engine("hooks").run(w.request(support::release(NEW))).await.expect("a report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let jobs = backup_jobs(&w).await;
    assert_eq!(jobs.len(), 1);
    assert!(condition(&jobs[0], "Complete"), "{:?}", jobs[0].status);
    let finished = jobs[0].status.as_ref().and_then(|s| s.completion_time.clone()).expect("a completion time");
    let stable = deployment(&w.s, "stable").await.unwrap();
    let changed = support::last_changed_by_deploy_rs(&stable.metadata).expect("deploy-rs changed stable");
    assert!(
        finished.0 <= changed.0,
        "the backup finished ({}) before the rollout changed stable ({})",
        finished.0,
        changed.0
    );
    assert_serves(&w.s, Track::Stable, NEW, "hook-runs").await;
    w.s.cleanup().await;
}
