//! Hook steps: a job before the rollout (its failure stops the rollout before
//! anything changes), after promotion, and on rollback; plans that put them where
//! they cannot hold are refused.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]

mod common;

use common::{Fixture, Strat};
use deploy_core::engine::RolloutRequest;
use deploy_core::hook::{HookSpec, HookWhen};
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, ImageRef, Name};
use deploy_core::plan::{Plan, Step};
use deploy_core::testkit::Method;

fn hook(name: &str) -> HookSpec {
    HookSpec::new(Name::new(name).unwrap(), ImageRef::parse("registry.example.com/ops/pg-backup:16").unwrap())
        .command(["/backup", "--all"])
}

fn with_hooks(plan: &Plan, before: Option<&str>, after: Option<&str>, on_rollback: Option<&str>) -> Plan {
    let mut plan = plan.clone();
    if let Some(name) = before {
        plan.steps.insert(0, Step::Hook { when: HookWhen::BeforeRollout, hook: hook(name) });
    }
    if let Some(name) = after {
        let promoted = plan
            .steps
            .iter()
            .rposition(|s| matches!(s, Step::Promote | Step::RollingUpdate { .. } | Step::WaitReady { .. }))
            .unwrap();
        plan.steps.insert(promoted + 1, Step::Hook { when: HookWhen::AfterPromotion, hook: hook(name) });
    }
    if let Some(name) = on_rollback {
        plan.steps.push(Step::Hook { when: HookWhen::OnRollback, hook: hook(name) });
    }
    plan
}

fn request(f: &Fixture, plan: Plan) -> RolloutRequest {
    RolloutRequest::new(f.spec.clone(), f.v2.clone(), plan).from(f.v1.clone())
}

fn calls(f: &Fixture, method: Method) -> Vec<String> {
    f.kit.calls().into_iter().filter(|c| c.method == method).map(|c| c.detail).collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_before_rollout_hook_stops_every_strategy_before_anything_changes() {
    for strat in Strat::ALL {
        let f = Fixture::new(strat);
        f.kit.fail_hook("db-backup", "pg_dump: error: connection to server failed");
        let report = f.engine.run(request(&f, with_hooks(&f.plan, Some("db-backup"), None, None))).await.unwrap();
        assert_ne!(report.status, DeploymentStatus::Succeeded, "{strat:?}");
        let cause = report.cause.unwrap();
        assert_eq!(cause.kind, CauseKind::HookFailed, "{strat:?}: {cause}");
        assert!(
            cause.message.contains("pg_dump: error: connection to server failed"),
            "the log is in the cause: {cause}"
        );
        assert!(calls(&f, Method::Apply).is_empty(), "{strat:?}: nothing was applied: {:?}", f.kit.calls());
        let serving = f.kit.snapshot(&f.spec.id()).serving();
        assert!(serving.len() == 1 && serving.contains(&f.v1.version), "{strat:?}: no traffic moved: {serving:?}");
        assert!(f.kit.snapshot(&f.spec.id()).runs(&f.v1.version), "{strat:?}: the old release still runs");
        assert!(!f.kit.snapshot(&f.spec.id()).runs(&f.v2.version), "{strat:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn hooks_run_where_the_plan_puts_them() {
    for strat in Strat::ALL {
        let f = Fixture::new(strat);
        let plan = with_hooks(&f.plan, Some("db-backup"), Some("warm-cache"), Some("page-oncall"));
        let report = f.engine.run(request(&f, plan)).await.unwrap();
        assert_eq!(report.status, DeploymentStatus::Succeeded, "{strat:?}: {:?}", report.cause);
        assert_eq!(calls(&f, Method::RunHook), ["db-backup", "warm-cache"], "{strat:?}: on-rollback did not run");
        let log = f.kit.calls();
        let backup = log.iter().position(|c| c.method == Method::RunHook).unwrap();
        let first_apply = log.iter().position(|c| c.method == Method::Apply).unwrap();
        assert!(backup < first_apply, "{strat:?}: the backup ran before the first change");
    }
}

#[tokio::test(start_paused = true)]
async fn on_rollback_hooks_run_after_the_previous_release_serves_again() {
    for strat in Strat::ALL {
        let f = Fixture::new(strat);
        f.kit.doomed(&f.v2.version, "CrashLoopBackOff");
        f.kit.fail_hook("page-oncall", "webhook returned 500");
        let plan = with_hooks(&f.plan, None, None, Some("page-oncall"));
        let report = f.engine.run(request(&f, plan)).await.unwrap();
        assert_eq!(
            report.status,
            DeploymentStatus::RolledBack,
            "{strat:?}: a failing on-rollback hook does not undo it"
        );
        assert_eq!(calls(&f, Method::RunHook), ["page-oncall"], "{strat:?}");
        let log = f.kit.calls();
        let hook_at = log.iter().position(|c| c.method == Method::RunHook).unwrap();
        assert!(
            log[..hook_at].iter().any(|c| matches!(c.method, Method::Apply | Method::SetWeights | Method::Remove)),
            "{strat:?}: the hook ran after the restore"
        );
        assert!(
            report
                .record
                .logs
                .iter()
                .any(|l| l.message.contains("page-oncall") && l.message.contains("webhook returned 500")),
            "{strat:?}: the failure is in the record"
        );
    }
}

#[test]
fn hooks_where_they_cannot_hold_are_refused_with_every_problem() {
    let f = Fixture::new(Strat::Canary);
    let mut plan = f.plan.clone();
    plan.steps.push(Step::Hook { when: HookWhen::BeforeRollout, hook: hook("late-backup") });
    plan.steps.insert(0, Step::Hook { when: HookWhen::AfterPromotion, hook: hook("early-warmup") });
    plan.steps.insert(0, Step::Hook { when: HookWhen::BeforeRollout, hook: hook("early-warmup") });
    let errors = plan.validate(None).unwrap_err().to_string();
    assert!(errors.contains("before-rollout hook must come before every step"), "{errors}");
    assert!(errors.contains("after-promotion hook must come after"), "{errors}");
    assert!(errors.contains("hook names must be unique"), "{errors}");
}
