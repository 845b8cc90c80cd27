//! StatefulSet rollouts on the real API server and controller-manager (its
//! statefulset controller computes every revision and status; the node stand-in
//! plays the kubelet): a partitioned canary moves the highest ordinals first and
//! is promoted; a crash-looping or never-ready canary is rolled back in order with
//! every claim kept; a backup hook mounts a claim before the rollout. Everything is
//! asserted from the server's StatefulSet, ControllerRevisions, pods, claims and Jobs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::{RolloutEngine, RolloutReport, RolloutRequest};
use deploy_core::history::HistoryStore;
use deploy_core::hook::{HookSpec, HookWhen};
use deploy_core::model::CauseKind;
use deploy_core::model::{DeploymentStatus, ImageRef, Name, Percent, Quantity, Release, Track};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::platform::Platform;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::TestKit;
use deploy_k8s::manifest::hook::HOOK;
use deploy_k8s::manifest::{PodVolume, StatefulSetOptions, VolumeClaim, VolumeSource};
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};
use deploy_k8s::{KubePlatform, PlatformOptions, labels};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::engine::{NEW, OLD, assert_lock_and_state_cleared, engine_config};
use crate::support::{self, Scratch, eventually};

const REPLICAS: u32 = 4;
const BACKUPS: &str = "web-backups";

fn pct(v: u8) -> Percent {
    Percent::new(v).unwrap()
}

/// The app `web` as a StatefulSet of 4 with a `data` claim per replica, its old
/// release running, and an engine for it.
struct Stateful {
    s: Scratch,
    options: PlatformOptions,
    kit: TestKit,
    history: KubeHistoryStore,
}

impl Stateful {
    async fn new(test: &str) -> Self {
        let s = Scratch::new(test).await;
        let claim = VolumeClaim::new("data", Quantity::parse("1Gi").unwrap(), "/var/lib/web");
        let backups = PodVolume::new("backups", VolumeSource::PersistentVolumeClaim(BACKUPS.to_owned()), "/backups");
        let options = PlatformOptions::default()
            .stateful_set(s.app(), StatefulSetOptions::default().volume_claim(claim))
            .hook_volume("db-backup", backups);
        let history = KubeHistoryStore::new(s.cluster.clone(), s.ns());
        let w = Self { s, options, kit: TestKit::new(), history };
        let platform = w.platform();
        platform
            .apply(&w.spec(), Track::Stable, &support::release(OLD), REPLICAS)
            .await
            .expect("deploy the old release");
        platform
            .wait_ready(&w.s.app(), Track::Stable, Duration::from_secs(90))
            .await
            .expect("the old release gets ready");
        w
    }

    fn spec(&self) -> deploy_core::model::AppSpec {
        self.s.spec().replicas(REPLICAS)
    }

    fn platform(&self) -> KubePlatform {
        KubePlatform::new(self.s.cluster.clone(), self.options.clone())
    }

    fn engine(&self) -> RolloutEngine {
        let c = self.s.cluster.clone();
        RolloutEngine::builder(
            Arc::new(self.platform()),
            Arc::new(KubeStateStore::new(c.clone())),
            Arc::new(KubeHistoryStore::new(c, self.s.ns())),
        )
        .metrics(self.kit.metrics())
        .config(engine_config("stateful-test"))
        .build()
    }

    /// No `from`: the engine reads the serving release from the StatefulSet.
    fn request(&self, to: Release, plan: Plan) -> RolloutRequest {
        RolloutRequest::new(self.spec(), to, plan)
    }

    async fn set(&self) -> StatefulSet {
        self.s.api::<StatefulSet>().get("web").await.expect("the StatefulSet")
    }

    async fn pods(&self) -> BTreeMap<u32, Pod> {
        let pods: Api<Pod> = self.s.api();
        let list = pods.list(&ListParams::default().labels("app.kubernetes.io/name=web")).await.expect("list pods");
        list.items
            .into_iter()
            .filter_map(|p| {
                let ordinal = p.metadata.name.as_deref()?.strip_prefix("web-")?.parse().ok()?;
                Some((ordinal, p))
            })
            .collect()
    }

    /// Claim name → UID.
    async fn claims(&self) -> BTreeMap<String, String> {
        let claims: Api<PersistentVolumeClaim> = self.s.api();
        let list = claims.list(&ListParams::default()).await.expect("list claims");
        list.items
            .into_iter()
            .map(|c| (c.metadata.name.unwrap_or_default(), c.metadata.uid.unwrap_or_default()))
            .collect()
    }

    /// Revision name → revision number.
    async fn revisions(&self) -> BTreeMap<String, i64> {
        let revisions: Api<ControllerRevision> = self.s.api();
        let list = revisions.list(&ListParams::default()).await.expect("list ControllerRevisions");
        list.items.into_iter().map(|r| (r.metadata.name.unwrap_or_default(), r.revision.unwrap_or_default())).collect()
    }
}

fn partition(set: &StatefulSet) -> i32 {
    set.spec.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref()?.partition).unwrap_or(0)
}

fn annotation(set: &StatefulSet, key: &str) -> Option<String> {
    set.metadata.annotations.as_ref()?.get(key).cloned()
}

fn revisions_of(set: &StatefulSet) -> (String, String) {
    let status = set.status.clone().expect("a status");
    (status.current_revision.expect("a current revision"), status.update_revision.expect("an update revision"))
}

fn revision_of(pod: &Pod) -> String {
    pod.metadata.labels.as_ref().and_then(|l| l.get(labels::REVISION_HASH)).cloned().unwrap_or_default()
}

fn version_of(pod: &Pod) -> String {
    pod.metadata.labels.as_ref().and_then(|l| l.get(labels::VERSION)).cloned().unwrap_or_default()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Every ordinal below `partition` runs `old` and every one at or above runs
/// `new`, each Ready, as the server's pods say.
async fn assert_split(w: &Stateful, partition: u32, old: (&str, &str), new: (&str, &str), context: &str) {
    let pods = w.pods().await;
    assert_eq!(pods.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3], "{context}: one pod per ordinal");
    for (ordinal, pod) in &pods {
        let (revision, version) = if *ordinal >= partition { new } else { old };
        assert_eq!(revision_of(pod), revision, "{context}: revision of web-{ordinal}");
        assert_eq!(version_of(pod), version, "{context}: version of web-{ordinal}");
        assert!(ready(pod), "{context}: web-{ordinal} is Ready");
    }
}

/// The StatefulSet runs `version` from `revision` on all 4 Ready pods, partition
/// 0, no canary, as the controller reports it.
async fn assert_settled(w: &Stateful, revision: &str, version: &str, context: &str) {
    eventually(
        &format!("{context}: web runs {version} at {revision} on 4 Ready pods"),
        Duration::from_secs(60),
        || async {
            let set = w.set().await;
            let status = set.status.clone().unwrap_or_default();
            let pods = w.pods().await;
            status.observed_generation >= set.metadata.generation
                && status.current_revision.as_deref() == Some(revision)
                && status.update_revision.as_deref() == Some(revision)
                && status.ready_replicas == Some(4)
                && pods.len() == 4
                && pods.values().all(|p| revision_of(p) == revision && version_of(p) == version && ready(p))
        },
    )
    .await;
    let set = w.set().await;
    assert_eq!(partition(&set), 0, "{context}: partition back to 0");
    assert_eq!(annotation(&set, labels::STATEFUL_CANARY), None, "{context}: no canary runs");
    assert_eq!(annotation(&set, labels::PARTITION_BEFORE), None, "{context}");
}

#[tokio::test]
async fn a_partitioned_canary_moves_the_highest_ordinals_first_and_is_promoted() {
    let w = Stateful::new("sts-canary").await;
    let (old_revision, _) = revisions_of(&w.set().await);
    let claims = w.claims().await;
    assert_eq!(
        claims.keys().map(String::as_str).collect::<Vec<_>>(),
        ["data-web-0", "data-web-1", "data-web-2", "data-web-3"],
        "a claim per replica from the volumeClaimTemplates"
    );
    let plan = Canary::with_steps(vec![
        Step::SetWeight(pct(25)),
        Step::Pause(PauseKind::UntilPromoted),
        Step::SetWeight(pct(50)),
        Step::Pause(PauseKind::UntilPromoted),
    ])
    .plan(&PlanInput::new(REPLICAS));
    let engine = w.engine();
    let mut handle = engine.start(w.request(support::release(NEW), plan)).await.expect("the rollout starts");

    support::until_paused(&mut handle).await;
    let set = w.set().await;
    assert_eq!(partition(&set), 3, "25 % of 4: only ordinal 3 runs the canary");
    assert_eq!(annotation(&set, labels::STATEFUL_CANARY).as_deref(), Some(NEW));
    let (current, update) = revisions_of(&set);
    assert_eq!(current, old_revision, "stable is still the old revision");
    assert_ne!(update, old_revision, "the canary is a new ControllerRevision");
    assert_split(&w, 3, (&old_revision, OLD), (&update, NEW), "at 25 %").await;
    handle.promote().expect("promote the first pause");

    support::until_paused(&mut handle).await;
    assert_eq!(partition(&w.set().await), 2, "50 % of 4: ordinals 2 and 3");
    assert_split(&w, 2, (&old_revision, OLD), (&update, NEW), "at 50 %").await;
    handle.promote().expect("promote the second pause");

    let report: RolloutReport = handle.wait().await.expect("a report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_settled(&w, &update, NEW, "promoted").await;
    let revisions = w.revisions().await;
    assert_eq!(revisions.len(), 2, "the old and the new revision: {revisions:?}");
    assert!(revisions[&update] > revisions[&old_revision], "{revisions:?}");
    assert_eq!(w.claims().await, claims, "the same claims, none made again");
    let record = w.history.get(&report.record.id).await.expect("read history").expect("the record is stored");
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    assert_eq!(
        record.from.map(|r| r.version.to_string()).as_deref(),
        Some(OLD),
        "the serving release was read from the set"
    );
    assert_lock_and_state_cleared(&w.s, "promoted").await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_smaller_canary_makes_its_ordinals_stable_again() {
    let w = Stateful::new("sts-shrink").await;
    let (old_revision, _) = revisions_of(&w.set().await);
    let plan = Canary::with_steps(vec![
        Step::SetWeight(pct(50)),
        Step::Pause(PauseKind::UntilPromoted),
        Step::SetWeight(pct(25)),
        Step::Pause(PauseKind::UntilPromoted),
    ])
    .plan(&PlanInput::new(REPLICAS));
    let engine = w.engine();
    let mut handle = engine.start(w.request(support::release(NEW), plan)).await.expect("the rollout starts");
    support::until_paused(&mut handle).await;
    let (_, update) = revisions_of(&w.set().await);
    assert_split(&w, 2, (&old_revision, OLD), (&update, NEW), "at 50 %").await;
    handle.promote().expect("promote the first pause");
    support::until_paused(&mut handle).await;
    assert_eq!(partition(&w.set().await), 3, "25 %: the partition went up");
    assert_split(&w, 3, (&old_revision, OLD), (&update, NEW), "back at 25 %: web-2 runs the old revision again").await;
    handle.promote().expect("promote the second pause");
    let report = handle.wait().await.expect("a report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    assert_settled(&w, &update, NEW, "promoted").await;
    w.s.cleanup().await;
}

/// A canary of 2 (partition 2) whose pods never become ready; the rollback puts
/// the old template back, unblocks the controller and restores partition 0.
async fn doomed(test: &str, to: Release, cause: CauseKind) {
    let w = Stateful::new(test).await;
    let set = w.set().await;
    let (old_revision, _) = revisions_of(&set);
    let claims = w.claims().await;
    let before: BTreeMap<u32, String> =
        w.pods().await.into_iter().map(|(o, p)| (o, p.metadata.uid.unwrap_or_default())).collect();
    let plan = Canary::with_steps(vec![Step::SetWeight(pct(50)), Step::Pause(PauseKind::UntilPromoted)])
        .plan(&PlanInput::new(REPLICAS));
    let report = w.engine().run(w.request(to.clone(), plan)).await.expect("a report");
    assert_eq!(report.status, DeploymentStatus::RolledBack, "{test}: {:?}", report.cause);
    assert_eq!(report.cause.as_ref().map(|c| c.kind), Some(cause), "{test}: {:?}", report.cause);

    assert_settled(&w, &old_revision, OLD, test).await;
    let revisions = w.revisions().await;
    assert_eq!(revisions.len(), 2, "{test}: the old revision was reused, the bad one kept as history: {revisions:?}");
    let bad = revisions.keys().find(|r| **r != old_revision).expect("the canary's revision");
    assert!(
        revisions[&old_revision] > revisions[bad],
        "{test}: the old revision is the newest again (rolled back, not rebuilt): {revisions:?}"
    );
    let after = w.pods().await;
    for ordinal in 0..2 {
        assert_eq!(
            after[&ordinal].metadata.uid.as_deref(),
            Some(before[&ordinal].as_str()),
            "{test}: web-{ordinal}, below the canary's partition, was never touched"
        );
    }
    assert!(after.values().all(|p| version_of(p) != to.version.as_str()), "{test}: nothing of {} runs", to.version);
    assert_eq!(w.claims().await, claims, "{test}: every claim kept, with its UID");
    let record = w.history.get(&report.record.id).await.expect("read history").expect("the record is stored");
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    assert_lock_and_state_cleared(&w.s, test).await;
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_crash_looping_canary_fails_fast_and_rolls_back_in_order_keeping_its_claims() {
    doomed("sts-crash", support::crash_loop_release(NEW), CauseKind::Doomed).await;
}

#[tokio::test]
async fn a_never_ready_canary_rolls_back_in_order_keeping_its_claims() {
    doomed("sts-unready", support::never_ready_release(NEW), CauseKind::ReadinessDeadline).await;
}

fn backup(tag: &str) -> Step {
    let hook = HookSpec::new(
        Name::new("db-backup").unwrap(),
        ImageRef::parse(&format!("registry.deploy-rs.test/ops/pg-backup:{tag}")).unwrap(),
    )
    .command(["sh", "-c", "pg_dump -Fc -f /backups/web-$(date +%s).dump"]);
    Step::Hook { when: HookWhen::BeforeRollout, hook }
}

/// The user's claim the backups go to.
async fn backup_claim(w: &Stateful) -> String {
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": BACKUPS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    let claims: Api<PersistentVolumeClaim> = w.s.api();
    claims.create(&PostParams::default(), &claim).await.expect("create the backup claim").metadata.uid.unwrap()
}

async fn backup_jobs(w: &Stateful) -> Vec<Job> {
    let jobs: Api<Job> = w.s.api();
    jobs.list(&ListParams::default().labels(&format!("{HOOK}=db-backup"))).await.unwrap().items
}

fn condition(job: &Job, kind: &str) -> bool {
    job.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == kind && c.status == "True")
}

/// The Job's pod template mounts the backup claim at /backups.
fn assert_mounts_the_claim(job: &Job) {
    let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a pod template");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == "backups").expect("the backups volume");
    assert_eq!(volume.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()), Some(BACKUPS));
    let mount = pod.containers[0].volume_mounts.iter().flatten().find(|m| m.name == "backups").expect("a mount");
    assert_eq!(mount.mount_path, "/backups");
}

#[tokio::test]
async fn a_backup_hook_mounts_its_claim_completes_and_the_rollout_proceeds() {
    let w = Stateful::new("sts-backup").await;
    let claim = backup_claim(&w).await;
    let mut plan = Canary::with_steps(vec![Step::SetWeight(pct(50))]).plan(&PlanInput::new(REPLICAS));
    plan.steps.insert(0, backup("16"));
    let report = w.engine().run(w.request(support::release(NEW), plan)).await.expect("a report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{:?}", report.cause);
    let jobs = backup_jobs(&w).await;
    assert_eq!(jobs.len(), 1, "one run of the backup");
    assert_mounts_the_claim(&jobs[0]);
    assert!(condition(&jobs[0], "Complete"), "{:?}", jobs[0].status);
    let finished = jobs[0].status.as_ref().and_then(|s| s.completion_time.clone()).expect("a completion time");
    let set = w.set().await;
    let changed = support::last_changed_by_deploy_rs(&set.metadata).expect("deploy-rs changed the StatefulSet");
    assert!(
        finished.0 <= changed.0,
        "the backup finished ({}) before the rollout changed the set ({})",
        finished.0,
        changed.0
    );
    let (_, update) = revisions_of(&set);
    assert_settled(&w, &update, NEW, "after the backup").await;
    let claims = w.claims().await;
    assert_eq!(claims.get(BACKUPS), Some(&claim), "the backup claim outlives the Job, untouched");
    w.s.cleanup().await;
}

#[tokio::test]
async fn a_failing_backup_stops_the_stateful_rollout_before_anything_changes() {
    let w = Stateful::new("sts-backup-fails").await;
    let claim = backup_claim(&w).await;
    let set = w.set().await;
    let (old_revision, _) = revisions_of(&set);
    let pods: BTreeMap<u32, Option<String>> = w.pods().await.into_iter().map(|(o, p)| (o, p.metadata.uid)).collect();
    let mut plan = Canary::with_steps(vec![Step::SetWeight(pct(50))]).plan(&PlanInput::new(REPLICAS));
    plan.steps.insert(0, backup("hookfail-1"));
    let report = w.engine().run(w.request(support::release(NEW), plan)).await.expect("a report");
    assert_ne!(report.status, DeploymentStatus::Succeeded);
    assert_eq!(report.cause.as_ref().map(|c| c.kind), Some(CauseKind::HookFailed), "{:?}", report.cause);
    let jobs = backup_jobs(&w).await;
    assert_eq!(jobs.len(), 1);
    assert_mounts_the_claim(&jobs[0]);
    assert!(condition(&jobs[0], "Failed"), "{:?}", jobs[0].status);
    let after = w.set().await;
    assert_eq!(after.metadata.generation, set.metadata.generation, "the StatefulSet was not changed");
    // Its status may still move (the controller settles after the pods got ready):
    // compare what deploy-rs writes, spec, metadata and its managed fields.
    assert_eq!(serde_json::to_value(&after.spec).unwrap(), serde_json::to_value(&set.spec).unwrap(), "the same spec");
    assert_eq!(after.metadata.labels, set.metadata.labels);
    assert_eq!(after.metadata.annotations, set.metadata.annotations);
    let deploy_rs = |s: &StatefulSet| {
        let fields = s.metadata.managed_fields.iter().flatten();
        fields.filter(|m| m.manager.as_deref() == Some("deploy-rs")).map(|m| m.time.clone()).collect::<Vec<_>>()
    };
    assert_eq!(deploy_rs(&after), deploy_rs(&set), "deploy-rs wrote nothing to the StatefulSet");
    assert_eq!(revisions_of(&after), (old_revision.clone(), old_revision), "no new revision");
    let now: BTreeMap<u32, Option<String>> = w.pods().await.into_iter().map(|(o, p)| (o, p.metadata.uid)).collect();
    assert_eq!(now, pods, "the same pods");
    assert_eq!(w.claims().await.get(BACKUPS), Some(&claim));
    assert_lock_and_state_cleared(&w.s, "backup fails").await;
    w.s.cleanup().await;
}
