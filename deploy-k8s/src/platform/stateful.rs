//! The StatefulSet path of [`KubePlatform`]: one StatefulSet `{app}` whose stable
//! track is its current revision on the ordinals below the partition, and whose
//! canary is its update revision on the ordinals at or above it.
//!
//! The StatefulSet controller never replaces a pod that is not Running and Ready
//! while it rolls with `OrderedReady` (Kubernetes' "forced rollback" caveat): a
//! template put back over a crash-looping pod waits for ever. So after every
//! change of the template or the partition, once the controller has observed it,
//! the pods that block it (at an ordinal it must update, not of the update
//! revision, not Running and Ready) are deleted with a UID precondition; the
//! controller makes them again from the right revision. Claims are never deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use deploy_core::error::ErrorKind;
use deploy_core::model::{AppId, AppSpec, ImageRef, Release, Track, Version};
use deploy_core::platform::{PlatformError, TrackState, TrackStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use tracing::{debug, info};

use super::{KubePlatform, backend, platform_error};
use crate::cluster::get_opt;
use crate::error::is_not_found;
use crate::labels;
use crate::manifest::{StatefulSetOptions, headless_service, stateful_set};
use crate::rollout_status::doomed_pod;
use crate::snapshot::{ConfigSnapshots, SnapshotId};

/// How long a change waits for the StatefulSet controller to observe it before
/// the pods that block it are looked for.
const OBSERVE_DEADLINE: Duration = Duration::from_secs(30);

fn annotation<'a>(set: &'a StatefulSet, key: &str) -> Option<&'a str> {
    set.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The canary's version while a partitioned canary runs.
fn canary_of(set: &StatefulSet) -> Option<&str> {
    annotation(set, labels::STATEFUL_CANARY)
}

fn count(n: Option<i32>) -> u32 {
    u32::try_from(n.unwrap_or(0)).unwrap_or(0)
}

fn partition_of(set: &StatefulSet) -> u32 {
    count(set.spec.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref()?.partition))
}

fn replicas_of(set: &StatefulSet) -> u32 {
    count(Some(set.spec.replicas.unwrap_or(1)))
}

fn observed(set: &StatefulSet) -> bool {
    let observed = set.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
    set.metadata.generation.unwrap_or(0) <= observed && set.status.is_some()
}

fn template_version(set: &StatefulSet) -> Option<String> {
    set.spec.template.metadata.as_ref()?.labels.as_ref()?.get(labels::VERSION).cloned()
}

fn template_image(set: &StatefulSet) -> Option<String> {
    set.spec.template.spec.as_ref()?.containers.first()?.image.clone()
}

/// The ordinal of `pod` in the StatefulSet `set`, from its name `{set}-{n}`.
fn ordinal(set: &str, pod: &Pod) -> Option<u32> {
    pod.metadata.name.as_deref()?.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// Whether the StatefulSet `set` controls `pod` (only its pods are ever deleted).
fn controlled_by(set: &str, pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "StatefulSet" && o.name == set && o.controller == Some(true))
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(labels::REVISION_HASH).map(String::as_str)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Running and Ready, as the StatefulSet controller asks before it goes on.
fn running_and_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pods a track consists of: ordinals `from..to`, made from `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) revision: Option<String>,
}

/// The part of `set` that runs `track`; `None` when the track does not exist (no
/// canary runs, or a track a StatefulSet does not have).
pub(crate) fn part(set: &StatefulSet, track: Track) -> Option<Part> {
    let status = set.status.clone().unwrap_or_default();
    let total = replicas_of(set);
    let partition = partition_of(set).min(total);
    match (track, canary_of(set).is_some()) {
        (Track::Canary, true) => Some(Part { from: partition, to: total, revision: status.update_revision }),
        (Track::Stable, true) => Some(Part { from: 0, to: partition, revision: status.current_revision }),
        (Track::Stable, false) => Some(Part { from: 0, to: total, revision: status.update_revision }),
        _ => None,
    }
}

/// Where a track of a StatefulSet stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Every pod of the part runs its revision and is Ready.
    Ready,
    /// Still rolling; what it waits for.
    Waiting(String),
    /// A pod of the part cannot become ready (crash loop, missing image ...).
    Doomed(String),
}

/// Decides the readiness of `track` from the StatefulSet and its pods, generations
/// first (right after a change the status still describes the previous one);
/// `None` when the track does not exist.
pub(crate) fn readiness<'a>(
    set: &StatefulSet,
    pods: impl IntoIterator<Item = &'a Pod> + Clone,
    track: Track,
) -> Option<Readiness> {
    let name = set.metadata.name.as_deref().unwrap_or_default();
    if !observed(set) {
        return Some(Readiness::Waiting("Waiting for statefulset spec update to be observed...".to_owned()));
    }
    let part = part(set, track)?;
    let Some(revision) = part.revision.as_deref() else {
        return Some(Readiness::Waiting(format!("Waiting for statefulset \"{name}\" to report its revisions...")));
    };
    let in_part = |pod: &&Pod| ordinal(name, pod).is_some_and(|o| (part.from..part.to).contains(&o));
    let mine = |pod: &&Pod| revision_of(pod) == Some(revision) && !terminating(pod);
    if let Some(reason) = pods.clone().into_iter().filter(in_part).filter(mine).find_map(doomed_pod) {
        return Some(Readiness::Doomed(reason));
    }
    let ready = pods.clone().into_iter().filter(in_part).filter(mine).filter(|p| running_and_ready(p)).count();
    let wanted = usize::try_from(part.to - part.from).unwrap_or(usize::MAX);
    if ready < wanted {
        return Some(Readiness::Waiting(format!(
            "Waiting for partitioned roll out to finish: {ready} of {wanted} pods of {track} (ordinals {} to {}) \
             are ready at revision {revision}...",
            part.from,
            part.to.saturating_sub(1)
        )));
    }
    let total = replicas_of(set);
    let extra = pods.into_iter().filter(|p| ordinal(name, p).is_some_and(|o| o >= total)).count();
    if track == Track::Stable && extra > 0 {
        return Some(Readiness::Waiting(format!(
            "Waiting for statefulset \"{name}\" to finish: {extra} pods above the replica count are pending termination..."
        )));
    }
    Some(Readiness::Ready)
}

enum Seen {
    Set(Result<Event<StatefulSet>, watcher::Error>),
    Pod(Result<Event<Pod>, watcher::Error>),
}

impl KubePlatform {
    fn stateful_sets(&self, app: &AppId) -> Api<StatefulSet> {
        Api::namespaced(self.cluster.client().clone(), app.namespace.as_str())
    }

    fn app_pods(&self, app: &AppId) -> Api<Pod> {
        Api::namespaced(self.cluster.client().clone(), app.namespace.as_str())
    }

    async fn list_pods(&self, app: &AppId) -> Result<Vec<Pod>, PlatformError> {
        let selector = labels::selector_string(&labels::app_selector(app));
        self.app_pods(app)
            .list(&ListParams::default().labels(&selector))
            .await
            .map(|l| l.items)
            .map_err(|e| backend(format!("list the pods of {app}"), e))
    }

    /// `apply` for an app that runs as a StatefulSet.
    pub(super) async fn apply_stateful(
        &self,
        spec: &AppSpec,
        options: &StatefulSetOptions,
        track: Track,
        release: &Release,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let app = spec.id();
        let name = app.name.to_string();
        if spec.autoscaling.is_some() {
            return Err(PlatformError::Unsupported {
                what: format!("autoscale the StatefulSet {}/{name} (no HPA is built for a StatefulSet)", app.namespace),
            });
        }
        if !matches!(track, Track::Stable | Track::Canary) {
            return Err(PlatformError::Unsupported {
                what: format!(
                    "run track {track} of the StatefulSet {}/{name}: it has stable and a partitioned canary only",
                    app.namespace
                ),
            });
        }
        let api = self.stateful_sets(&app);
        let what = format!("statefulset {}/{name}", app.namespace);
        let live = get_opt(&api, &name, &format!("read {what}")).await.map_err(platform_error)?;
        if let Some(live) = &live {
            self.ensure_owned(&live.metadata, &what)?;
        }
        let mut pod = options.pod.clone().release(release.clone());
        if let (true, Some(checksum)) = (self.options.config_snapshots, &release.config_checksum) {
            let id = SnapshotId::parse(checksum).map_err(platform_error)?;
            let snapshot = ConfigSnapshots::new(self.cluster.clone()).read(&app, &id).await.map_err(platform_error)?;
            pod = pod.with_config_snapshot(&snapshot);
        }
        let build = |partition: u32, total: u32, canary: Option<(&str, u32)>| {
            let built = options.clone().pod(pod.clone().replicas(total)).partition(partition);
            let mut set = stateful_set(spec, &built);
            if let Some((version, before)) = canary {
                let annotations = set.metadata.annotations.get_or_insert_with(BTreeMap::new);
                annotations.insert(labels::STATEFUL_CANARY.to_owned(), version.to_owned());
                annotations.insert(labels::PARTITION_BEFORE.to_owned(), before.to_string());
            }
            set
        };
        match (track, live) {
            (Track::Canary, None) => Err(PlatformError::NotFound { app, track: Track::Stable }),
            (Track::Canary, Some(live)) => {
                // The highest ordinals first: ordinals at or above the partition run the canary.
                let total = replicas_of(&live);
                let partition = total - replicas.min(total);
                let before = match canary_of(&live) {
                    Some(_) => annotation(&live, labels::PARTITION_BEFORE).and_then(|b| b.parse().ok()).unwrap_or(0),
                    None => partition_of(&live),
                };
                let object = build(partition, total, Some((release.version.as_str(), before)));
                self.apply_set(&api, &name, &object).await?;
                self.unstick(&app, track, partition).await
            }
            (_, Some(live))
                if canary_of(&live).is_some()
                    && template_version(&live).as_deref() != Some(release.version.as_str()) =>
            {
                // A rollback of a partitioned canary, in order: the previous template
                // first, under the canary's partition (ordinals below it already run
                // it and are left alone), then the partition it had before.
                let canary = canary_of(&live).unwrap_or_default().to_owned();
                let (partition, total) = (partition_of(&live), replicas_of(&live));
                let before = annotation(&live, labels::PARTITION_BEFORE).and_then(|b| b.parse().ok()).unwrap_or(0);
                info!(
                    decision = %format!(
                        "rolling {what} back to {}: template first under partition {partition}, then partition {before}",
                        release.version
                    )
                );
                let object = build(partition, total, Some((canary.as_str(), before)));
                self.apply_set(&api, &name, &object).await?;
                self.unstick(&app, Track::Stable, partition).await?;
                let object = build(before, replicas, None);
                let applied = self.apply_set(&api, &name, &object).await?;
                self.unstick(&app, Track::Stable, before).await?;
                self.apply_headless(spec, &applied).await
            }
            (_, _) => {
                // A promotion (the canary's template on every ordinal), a rolling
                // update, or the first deployment.
                let applied = self.apply_set(&api, &name, &build(0, replicas, None)).await?;
                self.unstick(&app, Track::Stable, 0).await?;
                self.apply_headless(spec, &applied).await
            }
        }
    }

    async fn apply_set(
        &self,
        api: &Api<StatefulSet>,
        name: &str,
        object: &StatefulSet,
    ) -> Result<StatefulSet, PlatformError> {
        let params = self.cluster.apply_params();
        let patch = Patch::Apply(object);
        self.retry_conflicts(|| api.patch(name, &params, &patch))
            .await
            .map_err(|e| backend(format!("apply statefulset {}/{name}", api.namespace().unwrap_or_default()), e))
    }

    /// The headless Service that names the pods, owned by the StatefulSet (the
    /// garbage collector removes it with the set).
    async fn apply_headless(&self, spec: &AppSpec, set: &StatefulSet) -> Result<(), PlatformError> {
        let app = spec.id();
        let mut svc = headless_service(spec);
        let name = svc.metadata.name.clone().unwrap_or_default();
        let what = format!("service {}/{name}", app.namespace);
        let services: Api<Service> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        if let Some(live) = get_opt(&services, &name, &format!("read {what}")).await.map_err(platform_error)? {
            self.ensure_owned(&live.metadata, &what)?;
        }
        svc.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".to_owned(),
            kind: "StatefulSet".to_owned(),
            name: app.name.to_string(),
            uid: set.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        self.cluster.apply(&svc).await.map(|_| ()).map_err(platform_error)
    }

    /// Waits until the controller observed the latest change, then deletes the
    /// pods at or above `from` that do not run the update revision and are not
    /// Running and Ready: the controller would wait on them for ever.
    async fn unstick(&self, app: &AppId, track: Track, from: u32) -> Result<(), PlatformError> {
        let name = app.name.to_string();
        let api = self.stateful_sets(app);
        let cond = |s: Option<&StatefulSet>| s.is_none_or(observed);
        let set = match tokio::time::timeout(OBSERVE_DEADLINE, kube::runtime::wait::await_condition(api, &name, cond))
            .await
        {
            Ok(Ok(Some(set))) => set,
            Ok(Ok(None)) => return Err(PlatformError::NotFound { app: app.clone(), track }),
            Ok(Err(e)) => {
                return Err(PlatformError::backend(
                    format!("watch statefulset {}/{name}", app.namespace),
                    ErrorKind::Unavailable,
                    e,
                ));
            }
            Err(_) => {
                return Err(PlatformError::Timeout {
                    app: app.clone(),
                    track,
                    after: OBSERVE_DEADLINE,
                    reason: format!("the StatefulSet controller did not observe the change of {name}"),
                });
            }
        };
        let Some(update) = set.status.as_ref().and_then(|s| s.update_revision.clone()) else { return Ok(()) };
        let total = replicas_of(&set);
        for pod in self.list_pods(app).await? {
            let Some(o) = ordinal(&name, &pod) else { continue };
            if o < from || o >= total || revision_of(&pod) == Some(update.as_str()) {
                continue;
            }
            if terminating(&pod) || running_and_ready(&pod) || !controlled_by(&name, &pod) {
                continue;
            }
            self.delete_pod(app, &pod, &format!("it blocks the roll to revision {update}")).await?;
        }
        Ok(())
    }

    /// Deletes `pod` (UID precondition; gone already counts as done).
    async fn delete_pod(&self, app: &AppId, pod: &Pod, why: &str) -> Result<(), PlatformError> {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        info!(decision = %format!("deleting pod {}/{pod_name}: {why}; the StatefulSet controller makes it again", app.namespace));
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.app_pods(app).delete(&pod_name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || crate::error::is_conflict(&e) => Ok(()),
            Err(e) => Err(backend(format!("delete pod {}/{pod_name}", app.namespace), e)),
        }
    }

    /// `scale` for a StatefulSet app: while a canary runs, both tracks share the
    /// replicas and the partition divides them; otherwise stable's replica count.
    pub(super) async fn scale_stateful(&self, app: &AppId, track: Track, replicas: u32) -> Result<(), PlatformError> {
        let name = app.name.to_string();
        let api = self.stateful_sets(app);
        let what = format!("statefulset {}/{name}", app.namespace);
        let Some(live) = get_opt(&api, &name, &format!("read {what}")).await.map_err(platform_error)? else {
            return Err(PlatformError::NotFound { app: app.clone(), track });
        };
        self.ensure_owned(&live.metadata, &what)?;
        let total = replicas_of(&live);
        let partition = match (track, canary_of(&live).is_some()) {
            (Track::Canary, false) if replicas == 0 => return Ok(()),
            (Track::Canary, true) => total - replicas.min(total),
            (Track::Stable, true) => replicas.min(total),
            (Track::Stable, false) => {
                let body = serde_json::json!({ "spec": { "replicas": replicas } });
                let patch = Patch::Merge(&body);
                let params = PatchParams::default();
                return match self.retry_conflicts(|| api.patch_scale(&name, &params, &patch)).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Err(PlatformError::NotFound { app: app.clone(), track }),
                    Err(e) => Err(backend(format!("scale {what}"), e)),
                };
            }
            _ => return Err(PlatformError::NotFound { app: app.clone(), track }),
        };
        let before = partition_of(&live);
        if partition == before {
            return Ok(());
        }
        let body = serde_json::json!({ "spec": { "updateStrategy": {
            "type": "RollingUpdate", "rollingUpdate": { "partition": partition } } } });
        let patch = Patch::Merge(&body);
        let params = PatchParams::default();
        self.retry_conflicts(|| api.patch(&name, &params, &patch))
            .await
            .map_err(|e| backend(format!("set the partition of {what} to {partition}"), e))?;
        if partition > before {
            // A smaller canary: the ordinals that go back below the partition are
            // made again from the current revision (the controller never moves a
            // pod below the partition by itself).
            self.unstick(app, track, partition).await?;
            let update = live.status.as_ref().and_then(|s| s.update_revision.clone());
            for pod in self.list_pods(app).await? {
                let back = ordinal(&name, &pod).is_some_and(|o| (before..partition).contains(&o));
                let of_update = revision_of(&pod).is_some() && revision_of(&pod) == update.as_deref();
                if back && of_update && !terminating(&pod) && controlled_by(&name, &pod) {
                    self.delete_pod(app, &pod, "its ordinal is below the partition again").await?;
                }
            }
        }
        Ok(())
    }

    /// `wait_ready` for a StatefulSet app, from watches of the set and its pods.
    pub(super) async fn wait_ready_stateful(
        &self,
        app: &AppId,
        track: Track,
        deadline: Duration,
    ) -> Result<(), PlatformError> {
        let name = app.name.to_string();
        let sets =
            watcher(self.stateful_sets(app), watcher::Config::default().fields(&format!("metadata.name={name}")))
                .default_backoff()
                .map(Seen::Set);
        let selector = labels::selector_string(&labels::app_selector(app));
        let pods =
            watcher(self.app_pods(app), watcher::Config::default().labels(&selector)).default_backoff().map(Seen::Pod);
        let mut events = std::pin::pin!(futures::stream::select(sets, pods));
        let mut set: Option<StatefulSet> = None;
        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut last = "no status seen yet".to_owned();
        let outcome = tokio::time::timeout(deadline, async {
            while let Some(seen) = events.next().await {
                match seen {
                    Seen::Set(Ok(Event::Apply(s) | Event::InitApply(s))) => set = Some(s),
                    Seen::Set(Ok(Event::Delete(_))) => return Err(PlatformError::NotFound { app: app.clone(), track }),
                    Seen::Set(Ok(Event::InitDone)) if set.is_none() => {
                        return Err(PlatformError::NotFound { app: app.clone(), track });
                    }
                    Seen::Pod(Ok(Event::Apply(p) | Event::InitApply(p))) => {
                        if let Some(pod_name) = p.metadata.name.clone() {
                            pods.insert(pod_name, p);
                        }
                    }
                    Seen::Pod(Ok(Event::Delete(p))) => {
                        if let Some(pod_name) = &p.metadata.name {
                            pods.remove(pod_name);
                        }
                    }
                    Seen::Set(Err(e)) | Seen::Pod(Err(e)) => {
                        debug!(error = %e, "watch error, the watcher retries");
                        last = format!("watch error: {e}");
                    }
                    _ => {}
                }
                let Some(s) = &set else { continue };
                match readiness(s, pods.values(), track) {
                    None => return Err(PlatformError::NotFound { app: app.clone(), track }),
                    Some(Readiness::Ready) => return Ok(()),
                    Some(Readiness::Doomed(reason)) => {
                        return Err(PlatformError::Doomed { app: app.clone(), track, reason });
                    }
                    Some(Readiness::Waiting(message)) => last = message,
                }
            }
            Err(PlatformError::backend(
                format!("watch statefulset {}/{name}", app.namespace),
                ErrorKind::Unavailable,
                "watch stream ended",
            ))
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => Err(PlatformError::Timeout { app: app.clone(), track, after: deadline, reason: last }),
        }
    }

    /// `status` for a StatefulSet app. Stable's release, while a canary runs, is
    /// the one its current ControllerRevision was made from.
    pub(super) async fn status_stateful(&self, app: &AppId, track: Track) -> Result<TrackStatus, PlatformError> {
        let name = app.name.to_string();
        let what = format!("statefulset {}/{name}", app.namespace);
        let Some(set) =
            get_opt(&self.stateful_sets(app), &name, &format!("read {what}")).await.map_err(platform_error)?
        else {
            return Ok(TrackStatus::absent());
        };
        let Some(part) = part(&set, track) else { return Ok(TrackStatus::absent()) };
        let pods = self.list_pods(app).await?;
        let (version, image) = if track == Track::Stable && canary_of(&set).is_some() {
            self.revision_release(app, part.revision.as_deref()).await?
        } else {
            (template_version(&set), template_image(&set))
        };
        let mine: Vec<&Pod> = pods
            .iter()
            .filter(|p| ordinal(&name, p).is_some_and(|o| (part.from..part.to).contains(&o)))
            .filter(|p| part.revision.is_some() && revision_of(p) == part.revision.as_deref() && !terminating(p))
            .collect();
        let updated = u32::try_from(mine.len()).unwrap_or(u32::MAX);
        let ready = u32::try_from(mine.iter().filter(|p| running_and_ready(p)).count()).unwrap_or(u32::MAX);
        let state = match readiness(&set, &pods, track) {
            Some(Readiness::Ready) => TrackState::Ready,
            Some(Readiness::Doomed(reason)) => TrackState::Failed(reason),
            _ => TrackState::Progressing,
        };
        let status = TrackStatus::new(
            version.and_then(|v| Version::new(v).ok()),
            part.to - part.from,
            updated,
            ready,
            ready,
            state,
        );
        Ok(match image.and_then(|i| ImageRef::parse(&i).ok()) {
            Some(image) => status.with_image(image),
            None => status,
        })
    }

    /// The version and image of the pod template in ControllerRevision `revision`.
    async fn revision_release(
        &self,
        app: &AppId,
        revision: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), PlatformError> {
        let Some(revision) = revision else { return Ok((None, None)) };
        let api: Api<ControllerRevision> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        let what = format!("read controllerrevision {}/{revision}", app.namespace);
        let Some(found) = get_opt(&api, revision, &what).await.map_err(platform_error)? else {
            return Ok((None, None));
        };
        let template = &found.data.0["spec"]["template"];
        let version = template["metadata"]["labels"][labels::VERSION].as_str().map(str::to_owned);
        let image = template["spec"]["containers"][0]["image"].as_str().map(str::to_owned);
        Ok((version, image))
    }

    /// `remove` for a StatefulSet app: stable deletes the StatefulSet (its claims
    /// stay, as Kubernetes keeps them); a canary that no longer runs is gone
    /// already; a running one is undone by applying stable with the previous
    /// release, never by deleting anything.
    pub(super) async fn remove_stateful(&self, app: &AppId, track: Track) -> Result<(), PlatformError> {
        let name = app.name.to_string();
        let api = self.stateful_sets(app);
        let what = format!("statefulset {}/{name}", app.namespace);
        if track != Track::Stable {
            let Some(live) = get_opt(&api, &name, &format!("read {what}")).await.map_err(platform_error)? else {
                return Ok(());
            };
            if canary_of(&live).is_none() || track != Track::Canary {
                return Ok(());
            }
            return Err(PlatformError::Unsupported {
                what: format!(
                    "remove the running canary of {what} on its own: apply stable with the previous release, which \
                     restores the template and then the partition"
                ),
            });
        }
        self.delete_owned(&api, &name, "statefulset", app).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(generation: i64, observed: i64, partition: i32, canary: bool) -> StatefulSet {
        let mut annotations = json!({});
        if canary {
            annotations = json!({labels::STATEFUL_CANARY: "2", labels::PARTITION_BEFORE: "0"});
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "generation": generation, "annotations": annotations,
                "labels": {labels::MANAGED_BY: labels::MANAGER}},
            "spec": {"replicas": 4, "serviceName": "web-headless", "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
                "template": {"metadata": {"labels": {"app.kubernetes.io/version": "2"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:2"}]}}},
            "status": {"observedGeneration": observed, "replicas": 4, "currentRevision": "web-old", "updateRevision": "web-new"}
        }))
        .unwrap()
    }

    fn pod(ordinal: u32, revision: &str, ready: bool, waiting: Option<&str>) -> Pod {
        let mut container = json!({"name": "web", "image": "x", "ready": ready, "restartCount": 0, "imageID": "",
            "state": {"running": {}}});
        if let Some(reason) = waiting {
            container["state"] = json!({"waiting": {"reason": reason, "message": "back-off"}});
        }
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{ordinal}"), "labels": {labels::REVISION_HASH: revision},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [container]}
        }))
        .unwrap()
    }

    #[test]
    fn the_canary_is_the_highest_ordinals_at_the_update_revision() {
        let s = set(3, 3, 3, true);
        assert_eq!(part(&s, Track::Canary), Some(Part { from: 3, to: 4, revision: Some("web-new".into()) }));
        assert_eq!(part(&s, Track::Stable), Some(Part { from: 0, to: 3, revision: Some("web-old".into()) }));
        assert_eq!(part(&set(3, 3, 0, false), Track::Canary), None, "no canary runs");
        assert_eq!(part(&s, Track::Blue), None);
        let pods = [pod(0, "web-old", true, None), pod(1, "web-old", true, None), pod(2, "web-old", true, None)];
        let waiting = readiness(&s, &pods, Track::Canary).unwrap();
        assert!(matches!(&waiting, Readiness::Waiting(m) if m.contains("0 of 1 pods of canary")), "{waiting:?}");
        assert_eq!(readiness(&s, &pods, Track::Stable), Some(Readiness::Ready));
        let pods = [pods[0].clone(), pods[1].clone(), pods[2].clone(), pod(3, "web-new", true, None)];
        assert_eq!(readiness(&s, &pods, Track::Canary), Some(Readiness::Ready));
    }

    #[test]
    fn generations_come_first_and_doomed_pods_of_the_part_fail_fast() {
        let pods = [pod(3, "web-new", true, None)];
        assert!(
            matches!(readiness(&set(4, 3, 3, true), &pods, Track::Canary), Some(Readiness::Waiting(m)) if m.contains("observed"))
        );
        let crashing = [pod(3, "web-new", false, Some("CrashLoopBackOff"))];
        assert!(
            matches!(readiness(&set(3, 3, 3, true), &crashing, Track::Canary), Some(Readiness::Doomed(r)) if r.contains("web-3") && r.contains("CrashLoopBackOff"))
        );
        // A crash-looping pod of another revision or another part dooms nothing here.
        let old_crashing = [pod(3, "web-old", false, Some("CrashLoopBackOff"))];
        assert!(matches!(readiness(&set(3, 3, 3, true), &old_crashing, Track::Canary), Some(Readiness::Waiting(_))));
        assert!(matches!(readiness(&set(3, 3, 3, true), &crashing, Track::Stable), Some(Readiness::Waiting(_))));
    }

    #[tokio::test]
    async fn what_a_stateful_set_cannot_do_is_refused_before_anything_is_written() {
        use crate::fixtures::{self, mock::*};
        use crate::{Cluster, PlatformOptions};
        use deploy_core::model::Autoscaling;
        use deploy_core::platform::Platform;
        const SET: &str = "/apis/apps/v1/namespaces/shop/statefulsets/web";
        let running = serde_json::to_value(set(3, 3, 3, true)).unwrap();
        let (client, mock) = start(vec![
            Expect::get(SET).status(404, "NotFound", "statefulsets.apps \"web\" not found"),
            Expect::get(SET).ok(running.clone()),
            Expect::get(SET).ok(serde_json::to_value(set(3, 3, 0, false)).unwrap()),
        ]);
        let options = PlatformOptions::default().stateful_set(fixtures::app_id(), StatefulSetOptions::default());
        let p = KubePlatform::new(Cluster::new(client), options);
        let (spec, release) = (fixtures::spec(), fixtures::release("1.4.2"));
        let err = within(p.apply(&spec, Track::Blue, &release, 4)).await.unwrap_err();
        assert!(
            matches!(&err, PlatformError::Unsupported { what } if what.contains("stable and a partitioned canary")),
            "{err}"
        );
        let autoscaled =
            spec.clone().autoscaling(Autoscaling::cpu(2, 6, deploy_core::model::Percent::new(70).unwrap()));
        let err = within(p.apply(&autoscaled, Track::Stable, &release, 4)).await.unwrap_err();
        assert!(matches!(err, PlatformError::Unsupported { .. }), "{err}");
        // A canary needs the set to run stable first.
        let err = within(p.apply(&spec, Track::Canary, &release, 1)).await.unwrap_err();
        assert!(matches!(err, PlatformError::NotFound { track: Track::Stable, .. }), "{err}");
        // A running canary is undone by applying stable, never deleted on its own.
        let err = within(p.remove(&fixtures::app_id(), Track::Canary)).await.unwrap_err();
        assert!(matches!(&err, PlatformError::Unsupported { what } if what.contains("apply stable")), "{err}");
        within(p.remove(&fixtures::app_id(), Track::Canary)).await.expect("no canary runs: nothing to remove");
        drop(p);
        let seen = mock.finish().await;
        assert!(seen.iter().all(|r| r.method == http::Method::GET), "nothing written or deleted: {seen:#?}");
    }

    #[tokio::test]
    async fn a_rollback_puts_the_template_back_under_the_partition_unblocks_then_restores_the_partition() {
        use crate::fixtures::{self, mock::*};
        use crate::{Cluster, PlatformOptions};
        use deploy_core::platform::Platform;
        const SETS: &str = "/apis/apps/v1/namespaces/shop/statefulsets";
        const SET: &str = "/apis/apps/v1/namespaces/shop/statefulsets/web";
        const PODS: &str = "/api/v1/namespaces/shop/pods";
        const HEADLESS: &str = "/api/v1/namespaces/shop/services/web-headless";
        let live = serde_json::to_value(set(3, 3, 3, true)).unwrap();
        // Observed after the revert: the old revision is the update revision again.
        let mut reverted = set(4, 4, 3, true);
        reverted.metadata.uid = Some("5e7a1c9e-0000-4000-8000-000000000001".into());
        if let Some(status) = reverted.status.as_mut() {
            status.update_revision = Some("web-old".into());
        }
        let reverted = serde_json::to_value(reverted).unwrap();
        let mut crashing = serde_json::to_value(pod(3, "web-new", false, Some("CrashLoopBackOff"))).unwrap();
        crashing["metadata"]["uid"] = json!("0c0c0c0c-0000-4000-8000-000000000003");
        let stable = serde_json::to_value(pod(2, "web-old", true, None)).unwrap();
        let template_version =
            |b: &serde_json::Value| b["spec"]["template"]["metadata"]["labels"][labels::VERSION].clone();
        let (client, mock) = start(vec![
            Expect::get(SET).ok(live),
            Expect::patch(SET)
                .body(move |b| {
                    assert_eq!(template_version(b), "1", "the previous template first");
                    assert_eq!(b["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 3, "under the canary's partition");
                    assert_eq!(b["metadata"]["annotations"][labels::STATEFUL_CANARY], "2");
                })
                .ok(reverted.clone()),
            Expect::get(SETS).query("fieldSelector", "metadata.name=web").ok(list("StatefulSetList", "apps/v1", "7", vec![reverted.clone()])).repeat(),
            Expect::get(SETS).watch().hang().optional().repeat(),
            Expect::get(PODS).query("labelSelector", "app.kubernetes.io/name=web").ok(list("PodList", "v1", "8", vec![stable, crashing])).repeat(),
            Expect::delete(&format!("{PODS}/web-3"))
                .body(|b| assert_eq!(b["preconditions"]["uid"], "0c0c0c0c-0000-4000-8000-000000000003"))
                .ok(json!({})),
            Expect::patch(SET)
                .body(move |b| {
                    assert_eq!(template_version(b), "1");
                    assert_eq!(b["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0, "then the partition before the canary");
                    assert!(b["metadata"]["annotations"].get(labels::STATEFUL_CANARY).is_none(), "no canary runs any more");
                })
                .ok(reverted),
            Expect::delete(&format!("{PODS}/web-3")).ok(json!({})),
            Expect::get(HEADLESS).status(404, "NotFound", "services \"web-headless\" not found"),
            Expect::patch(HEADLESS)
                .body(|b| assert_eq!(b["metadata"]["ownerReferences"][0]["kind"], "StatefulSet"))
                .ok(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-headless", "namespace": "shop"}})),
        ]);
        let options = PlatformOptions::default().stateful_set(fixtures::app_id(), StatefulSetOptions::default());
        let p = KubePlatform::new(Cluster::new(client), options);
        within(p.apply(&fixtures::spec(), Track::Stable, &fixtures::release("1"), 4)).await.expect("the rollback");
        drop(p);
        let seen = mock.finish().await;
        let writes: Vec<String> =
            seen.iter().filter(|r| r.method != http::Method::GET).map(|r| format!("{} {}", r.method, r.path)).collect();
        // The scripted pod list never changes, so the second look still finds web-3.
        let expected = [
            format!("PATCH {SET}"),
            format!("DELETE {PODS}/web-3"),
            format!("PATCH {SET}"),
            format!("DELETE {PODS}/web-3"),
            format!("PATCH {HEADLESS}"),
        ];
        assert_eq!(writes, expected, "template under the partition, unblock, then the partition, in this order");
    }

    #[test]
    fn ordinals_come_from_the_pod_name() {
        assert_eq!(ordinal("web", &pod(12, "r", true, None)), Some(12));
        let other: Pod = serde_json::from_value(json!({"metadata": {"name": "web-canary-7d9f-abcde"}})).unwrap();
        assert_eq!(ordinal("web", &other), None);
    }
}
