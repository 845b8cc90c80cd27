//! [`KubePlatform`]: deploy-core's [`Platform`] on Kubernetes, one Deployment per
//! track.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use deploy_core::backoff::Backoff;
use deploy_core::error::ErrorKind;
use deploy_core::hook::HookSpec;
use deploy_core::model::{AppId, AppSpec, Release, Track, Version};
use deploy_core::platform::{Platform, PlatformError, TrackState, TrackStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use tracing::{debug, instrument};

use crate::cluster::HookOptions;
use crate::cluster::{Cluster, get_opt};
use crate::discovery::compatible;
use crate::error::{KubeError, is_conflict, is_not_found, kind_of};
use crate::labels;
use crate::manifest::hook::hook_job_with_volumes;
use crate::manifest::{
    DeploymentOptions, HpaOptions, PodVolume, StatefulSetOptions, deployment, horizontal_pod_autoscaler,
};
use crate::rollout_status::{RolloutStatus, doomed_pod, rollout_status};
use crate::snapshot::{ConfigSnapshots, SnapshotId};

mod stateful;

/// The longest pause between two retries of a write that lost a race.
const MAX_CONFLICT_DELAY: Duration = Duration::from_secs(5);

/// How the platform builds and changes Deployments (and StatefulSets).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlatformOptions {
    /// Kubernetes-only settings for every track's Deployment (node selector,
    /// tolerations, env from ConfigMaps ...); track, release and replicas are set
    /// per call.
    pub deployment: DeploymentOptions,
    /// How often a write that lost a race (409) is retried before failing.
    pub conflict_retries: u32,
    /// The pause before the first retry; doubled each time up to 5 s, each pause
    /// shortened by a random share of up to half ([`Backoff`]'s default jitter) so
    /// that writers that collided do not collide again in step.
    pub retry_delay: Duration,
    /// HPA settings beyond the spec's autoscaling bounds; each track gets its own
    /// HPA `{app}-{track}` built from them when the spec autoscales.
    pub hpa: HpaOptions,
    /// Takes over a Deployment or HPA of a track's name that does not carry the
    /// `app.kubernetes.io/managed-by: deploy-rs` label (off by default: such an
    /// object is someone else's, and `apply` and `remove` refuse to touch it).
    pub adopt_unowned: bool,
    /// Runs each release with its configuration snapshot
    /// ([`crate::snapshot`]): a release whose `config_checksum` names a snapshot
    /// gets a pod template whose ConfigMap and Secret references the snapshot
    /// covers point at its immutable copies; a snapshot that does not exist is
    /// refused before anything is applied. Off by default.
    pub config_snapshots: bool,
    /// The apps that run as one StatefulSet `{app}` instead of a Deployment per
    /// track, with how each is built (volume claims per replica, pod options).
    /// Their canary is a partition of that StatefulSet: see
    /// [`KubePlatform`]'s section on StatefulSets.
    pub stateful_sets: BTreeMap<AppId, StatefulSetOptions>,
    /// Volumes mounted into the Job of a hook, by hook name: a backup hook that
    /// writes to a PersistentVolumeClaim keeps its dump after the Job is gone.
    pub hook_volumes: BTreeMap<String, Vec<PodVolume>>,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self {
            deployment: DeploymentOptions::default(),
            conflict_retries: 5,
            retry_delay: Duration::from_millis(50),
            hpa: HpaOptions::default(),
            adopt_unowned: false,
            config_snapshots: false,
            stateful_sets: BTreeMap::new(),
            hook_volumes: BTreeMap::new(),
        }
    }
}

impl PlatformOptions {
    /// Runs each release with its configuration snapshot (see the field).
    #[must_use]
    pub fn config_snapshots(mut self, on: bool) -> Self {
        self.config_snapshots = on;
        self
    }

    /// Sets the Deployment template options.
    #[must_use]
    pub fn deployment(mut self, options: DeploymentOptions) -> Self {
        self.deployment = options;
        self
    }

    /// Sets how often a 409 is retried.
    #[must_use]
    pub fn conflict_retries(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// Sets the HPA settings used for every track of an autoscaling spec.
    #[must_use]
    pub fn hpa(mut self, options: HpaOptions) -> Self {
        self.hpa = options;
        self
    }

    /// Lets `apply` and `remove` take over objects without deploy-rs's ownership label.
    #[must_use]
    pub fn adopt_unowned(mut self, adopt: bool) -> Self {
        self.adopt_unowned = adopt;
        self
    }

    /// Runs `app` as a StatefulSet built with `options` (its `partition` is
    /// set per call; the rest, volume claims included, is taken as given).
    #[must_use]
    pub fn stateful_set(mut self, app: AppId, options: StatefulSetOptions) -> Self {
        self.stateful_sets.insert(app, options);
        self
    }

    /// Mounts `volume` into every run of the hook named `hook`.
    #[must_use]
    pub fn hook_volume(mut self, hook: impl Into<String>, volume: PodVolume) -> Self {
        self.hook_volumes.entry(hook.into()).or_default().push(volume);
        self
    }
}

/// Runs each track of an app as its own Deployment `{app}-{track}`, labelled with
/// app, track and version.
///
/// - `apply`: server-side apply of the Deployment built from the spec, as the
///   [`Cluster`]'s field manager with its force setting. When the spec autoscales,
///   the track also gets its own HPA `{app}-{track}` and an existing Deployment
///   keeps the replica count the HPA gave it (the apply sends the live count, so
///   the platform and the HPA never fight).
/// - `wait_ready`: watches the Deployment and its pods (kube-runtime watchers, no
///   polling) and decides as `kubectl rollout status` does, generations first; a
///   pod of the new version in CrashLoopBackOff, ErrImagePull, ImagePullBackOff or
///   CreateContainerConfigError fails at once with [`PlatformError::Doomed`].
/// - `scale`: the scale subresource. `remove`: delete the track's Deployment with
///   a UID precondition (its HPA, owned by it, goes with it); 404 counts as done.
/// - Ownership: a Deployment or HPA of a track's name that lacks the
///   `app.kubernetes.io/managed-by: deploy-rs` label is not taken over or deleted
///   ([`KubeError::NotOwned`], classified as a conflict) unless
///   [`PlatformOptions::adopt_unowned`] says so.
///
/// Writes that get a 409 are retried with backoff.
///
/// # StatefulSets
///
/// An app named in [`PlatformOptions::stateful_sets`] runs as one StatefulSet
/// `{app}` (`OrderedReady`, a claim per replica from its
/// [`StatefulSetOptions::volume_claims`], a headless Service `{app}-headless`
/// owned by it) instead of a Deployment per track. Its tracks are parts of that
/// one set, divided by `updateStrategy.rollingUpdate.partition`:
///
/// - `apply` of canary with `n` replicas puts the new release in the template and
///   sets the partition to `replicas - n`: the highest ordinals run the canary.
///   The set is annotated `deploy-rs.io/canary` (its version) and
///   `deploy-rs.io/partition-before` while the canary runs. A canary needs the set
///   to exist ([`PlatformError::NotFound`] for stable otherwise).
/// - `scale` of either track moves the partition (stable `s` = partition `s`,
///   canary `n` = partition `replicas - n`); a smaller canary's pods are made
///   again from the current revision.
/// - `apply` of stable with the canary's release promotes it: partition 0. With
///   another release it rolls back, in order: the previous template first, under
///   the canary's partition (the ordinals below it already run it and are not
///   touched), then the partition the set had before the canary.
/// - After every such change, once the controller has observed it, pods of the set
///   that block the roll (at an ordinal to update, of another revision, not Running
///   and Ready: a crash-looping canary) are deleted with a UID precondition, as Kubernetes'
///   StatefulSet docs ask for a rollback from a broken template; the controller
///   makes them again from the right revision.
/// - `wait_ready` and `status` decide from the set and its pods, generations
///   first: a track is ready when every ordinal of its part runs its revision
///   (canary: the update revision; stable: the current one) and is Ready, and a
///   pod of that revision in CrashLoopBackOff, ErrImagePull, ImagePullBackOff or
///   CreateContainerConfigError fails at once with [`PlatformError::Doomed`].
///   Stable's release while a canary runs is read from its ControllerRevision.
/// - `remove` of stable deletes the StatefulSet (UID precondition); its
///   PersistentVolumeClaims stay, as Kubernetes keeps them. deploy-rs never deletes
///   a claim.
///
/// Both tracks are pods of one set behind the same selector, so their traffic
/// follows the replica ratio: run StatefulSet canaries without a router (the
/// engine then reaches each weight by replica ratio, through `scale`). The routers
/// of [`crate::router`] select pods by the track label or scale Deployments, so
/// they do not see the canary ordinals. Autoscaling specs and
/// other tracks (blue, green) are refused ([`PlatformError::Unsupported`]).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use deploy_k8s::{Cluster, KubePlatform, PlatformOptions};
/// let client = kube::Client::try_default().await?;
/// let platform = KubePlatform::new(Cluster::new(client), PlatformOptions::default());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KubePlatform {
    cluster: Cluster,
    options: PlatformOptions,
}

impl KubePlatform {
    /// A platform on `cluster` with `options`, fixed for its lifetime
    /// (`PlatformOptions::default()` for the defaults), as
    /// `DockerPlatform::new(docker, PlatformConfig)` in deploy-docker.
    pub fn new(cluster: Cluster, options: PlatformOptions) -> Self {
        Self { cluster, options }
    }

    fn deployments(&self, app: &AppId) -> Api<Deployment> {
        Api::namespaced(self.cluster.client().clone(), app.namespace.as_str())
    }

    /// Runs `op` again on 409, with doubling pauses, up to the configured count.
    async fn retry_conflicts<T, F, Fut>(&self, mut op: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let backoff = Backoff::new(self.options.retry_delay, MAX_CONFLICT_DELAY);
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if is_conflict(&e) && attempt < self.options.conflict_retries => {
                    attempt += 1;
                    debug!(attempt, "conflict, retrying");
                    tokio::time::sleep(backoff.next_delay(attempt)).await;
                }
                other => return other,
            }
        }
    }
}

fn backend(operation: String, error: kube::Error) -> PlatformError {
    PlatformError::backend(operation, kind_of(&error), error)
}

/// The track's status from its Deployment.
pub(crate) fn track_status(d: &Deployment) -> TrackStatus {
    let release = d
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(labels::VERSION))
        .and_then(|v| Version::new(v.clone()).ok());
    let status = d.status.clone().unwrap_or_default();
    let count = |n: Option<i32>| u32::try_from(n.unwrap_or(0)).unwrap_or(0);
    let state = match rollout_status(d, None) {
        RolloutStatus::Complete { .. } => TrackState::Ready,
        RolloutStatus::Failed { message } => TrackState::Failed(message),
        _ => TrackState::Progressing,
    };
    let status = TrackStatus::new(
        release,
        count(d.spec.replicas),
        count(status.updated_replicas),
        count(status.ready_replicas),
        count(status.available_replicas),
        state,
    );
    // The image, so that the engine can adopt a running release nobody named.
    let image = d
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.as_deref())
        .and_then(|i| deploy_core::model::ImageRef::parse(i).ok());
    match image {
        Some(image) => status.with_image(image),
        None => status,
    }
}

/// What the watch loop has seen so far.
#[derive(Default)]
struct Observed {
    version: Option<String>,
    pods: BTreeMap<String, Pod>,
    last: String,
}

impl Observed {
    fn doomed(&self) -> Option<String> {
        let version = self.version.as_ref()?;
        self.pods
            .values()
            .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get(labels::VERSION)) == Some(version))
            .find_map(doomed_pod)
    }
}

enum Seen {
    Deployment(Result<Event<Deployment>, watcher::Error>),
    Pod(Result<Event<Pod>, watcher::Error>),
}

#[async_trait]
impl Platform for KubePlatform {
    #[instrument(skip_all, fields(deploy.app = %spec.id(), deploy.track = %track, release.version = %release.version, replicas), err)]
    async fn apply(&self, spec: &AppSpec, track: Track, release: &Release, replicas: u32) -> Result<(), PlatformError> {
        spec.validate().map_err(|errors| PlatformError::Invalid { app: spec.id(), errors })?;
        let app = spec.id();
        if let Some(options) = self.options.stateful_sets.get(&app) {
            return self.apply_stateful(spec, options, track, release, replicas).await;
        }
        let name = labels::workload_name(&app, track);
        let api = self.deployments(&app);
        let operation = format!("apply deployment {}/{name}", app.namespace);
        let live = get_opt(&api, &name, &operation).await.map_err(platform_error)?;
        if let Some(live) = &live {
            self.ensure_owned(&live.metadata, &format!("deployment {}/{name}", app.namespace))?;
        }
        // An HPA owns the replica count of an autoscaled track once it runs.
        let replicas = match (&spec.autoscaling, live.as_ref().and_then(|d| d.spec.replicas)) {
            (Some(_), Some(live)) if live > 0 => u32::try_from(live).unwrap_or(replicas),
            _ => replicas,
        };
        let mut options = self.options.deployment.clone();
        if let (true, Some(checksum)) = (self.options.config_snapshots, &release.config_checksum) {
            let id = SnapshotId::parse(checksum).map_err(platform_error)?;
            let snapshot = ConfigSnapshots::new(self.cluster.clone()).read(&app, &id).await.map_err(platform_error)?;
            options = options.with_config_snapshot(&snapshot);
        }
        let object = deployment(spec, &options.track(track).release(release.clone()).replicas(replicas));
        let params = self.cluster.apply_params();
        let patch = Patch::Apply(&object);
        let applied = self
            .retry_conflicts(|| api.patch(&name, &params, &patch))
            .await
            .map_err(|e| backend(operation.clone(), e))?;
        if let Some(mut hpa) = horizontal_pod_autoscaler(spec, &self.options.hpa.clone().track(track)) {
            let what = format!("horizontalpodautoscaler {}/{name}", app.namespace);
            let entry = compatible("autoscaling", "HorizontalPodAutoscaler").ok_or_else(|| {
                platform_error(KubeError::Incomplete { what: what.clone(), field: "a known API version".into() })
            })?;
            let hpas = self.cluster.served_api(entry, app.namespace.as_str()).await.map_err(platform_error)?;
            if let Some(live) = get_opt(&hpas, &name, &format!("read {what}")).await.map_err(platform_error)? {
                self.ensure_owned(&live.metadata, &what)?;
            }
            // Owned by its track's Deployment: the garbage collector removes it with
            // the track, so `remove` needs no request of its own for it.
            hpa.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "apps/v1".to_owned(),
                kind: "Deployment".to_owned(),
                name: name.clone(),
                uid: applied.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]);
            self.cluster.apply(&hpa).await.map_err(platform_error)?;
        }
        Ok(())
    }

    #[instrument(skip_all, fields(deploy.app = %app, deploy.track = %track, replicas), err)]
    async fn scale(&self, app: &AppId, track: Track, replicas: u32) -> Result<(), PlatformError> {
        if self.options.stateful_sets.contains_key(app) {
            return self.scale_stateful(app, track, replicas).await;
        }
        let name = labels::workload_name(app, track);
        let api = self.deployments(app);
        let body = serde_json::json!({ "spec": { "replicas": replicas } });
        let patch = Patch::Merge(&body);
        let params = PatchParams::default();
        match self.retry_conflicts(|| api.patch_scale(&name, &params, &patch)).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(PlatformError::NotFound { app: app.clone(), track }),
            Err(e) => Err(backend(format!("scale deployment {}/{name}", app.namespace), e)),
        }
    }

    #[instrument(skip_all, fields(deploy.app = %app, deploy.track = %track, ?deadline), err)]
    async fn wait_ready(&self, app: &AppId, track: Track, deadline: Duration) -> Result<(), PlatformError> {
        if self.options.stateful_sets.contains_key(app) {
            return self.wait_ready_stateful(app, track, deadline).await;
        }
        let name = labels::workload_name(app, track);
        let pods: Api<Pod> = Api::namespaced(self.cluster.client().clone(), app.namespace.as_str());
        let deployments =
            watcher(self.deployments(app), watcher::Config::default().fields(&format!("metadata.name={name}")))
                .default_backoff()
                .map(Seen::Deployment);
        let pods = watcher(
            pods,
            watcher::Config::default().labels(&labels::selector_string(&labels::track_selector(app, track))),
        )
        .default_backoff()
        .map(Seen::Pod);
        let mut events = std::pin::pin!(futures::stream::select(deployments, pods));
        let mut observed = Observed { last: "no status seen yet".to_owned(), ..Observed::default() };
        let mut deployment_seen = false;
        let outcome = tokio::time::timeout(deadline, async {
            while let Some(seen) = events.next().await {
                match seen {
                    Seen::Deployment(Ok(Event::Apply(d) | Event::InitApply(d))) => {
                        deployment_seen = true;
                        observed.version = d
                            .spec
                            .template
                            .metadata
                            .as_ref()
                            .and_then(|m| m.labels.as_ref())
                            .and_then(|l| l.get(labels::VERSION).cloned());
                        match rollout_status(&d, None) {
                            RolloutStatus::Complete { .. } => return Ok(()),
                            RolloutStatus::Failed { message } => {
                                return Err(PlatformError::Doomed { app: app.clone(), track, reason: message });
                            }
                            waiting => observed.last = waiting.message().to_owned(),
                        }
                    }
                    Seen::Deployment(Ok(Event::Delete(_))) => {
                        return Err(PlatformError::NotFound { app: app.clone(), track });
                    }
                    Seen::Deployment(Ok(Event::InitDone)) if !deployment_seen => {
                        return Err(PlatformError::NotFound { app: app.clone(), track });
                    }
                    Seen::Pod(Ok(Event::Apply(p) | Event::InitApply(p))) => {
                        if let Some(pod_name) = p.metadata.name.clone() {
                            observed.pods.insert(pod_name, p);
                        }
                    }
                    Seen::Pod(Ok(Event::Delete(p))) => {
                        if let Some(pod_name) = &p.metadata.name {
                            observed.pods.remove(pod_name);
                        }
                    }
                    Seen::Deployment(Err(e)) | Seen::Pod(Err(e)) => {
                        debug!(error = %e, "watch error, the watcher retries");
                        observed.last = format!("watch error: {e}");
                    }
                    _ => {}
                }
                if let Some(reason) = observed.doomed() {
                    return Err(PlatformError::Doomed { app: app.clone(), track, reason });
                }
            }
            Err(PlatformError::backend(
                format!("watch deployment {}/{name}", app.namespace),
                ErrorKind::Unavailable,
                "watch stream ended",
            ))
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => Err(PlatformError::Timeout { app: app.clone(), track, after: deadline, reason: observed.last }),
        }
    }

    #[instrument(skip_all, fields(deploy.app = %app, deploy.track = %track), err)]
    async fn status(&self, app: &AppId, track: Track) -> Result<TrackStatus, PlatformError> {
        if self.options.stateful_sets.contains_key(app) {
            return self.status_stateful(app, track).await;
        }
        let name = labels::workload_name(app, track);
        let operation = format!("read deployment {}/{name}", app.namespace);
        match get_opt(&self.deployments(app), &name, &operation).await {
            Ok(Some(d)) => Ok(track_status(&d)),
            Ok(None) => Ok(TrackStatus::absent()),
            Err(KubeError::Api { operation, kind, source }) => Err(PlatformError::backend(operation, kind, source)),
            Err(other) => Err(PlatformError::backend(operation, ErrorKind::Other, other)),
        }
    }

    fn supports_hooks(&self) -> bool {
        true
    }

    /// Runs the hook as a Job of its own (see [`hook_job_with_volumes`]; the
    /// volumes of [`PlatformOptions::hook_volumes`] for its name) and waits for it
    /// through a watch; a failed Job's reason and the tail of its failed pod's
    /// log come back in [`PlatformError::HookFailed`].
    #[instrument(skip_all, fields(deploy.app = %app, hook = %hook.name), err)]
    async fn run_hook(&self, app: &AppId, hook: &HookSpec) -> Result<(), PlatformError> {
        let name = Self::hook_job_name(app, hook);
        let volumes = self.options.hook_volumes.get(hook.name.as_str()).map(Vec::as_slice).unwrap_or_default();
        let job = hook_job_with_volumes(app, hook, &name, volumes);
        let failed = |reason: String, logs: Option<String>| PlatformError::HookFailed {
            hook: format!("{} of {app}", hook.name),
            reason,
            logs,
        };
        // A little beyond the Job's own deadline, so that its failure is the one seen.
        let wait = hook.deadline.as_duration() + Duration::from_secs(30);
        match self.cluster.run_hook(&job, &HookOptions::default().deadline(wait)).await {
            Ok(_) => Ok(()),
            Err(KubeError::JobFailed { job, reason, logs }) => Err(failed(format!("job {job}: {reason}"), logs)),
            Err(KubeError::Timeout { what, after, last }) => {
                Err(failed(format!("{what} did not finish in {after:?} ({last})"), None))
            }
            Err(other) => Err(platform_error(other)),
        }
    }

    #[instrument(skip_all, fields(deploy.app = %app, deploy.track = %track), err)]
    async fn remove(&self, app: &AppId, track: Track) -> Result<(), PlatformError> {
        if self.options.stateful_sets.contains_key(app) {
            return self.remove_stateful(app, track).await;
        }
        let name = labels::workload_name(app, track);
        self.delete_owned(&self.deployments(app), &name, "deployment", app).await
    }
}

impl KubePlatform {
    /// The name of a new run of `hook`: the app, the hook and the run's start
    /// (milliseconds, base 36), within the 63 characters of a label value.
    fn hook_job_name(app: &AppId, hook: &HookSpec) -> String {
        let mut millis = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        let mut suffix = Vec::new();
        while millis > 0 {
            let digit = u8::try_from(millis % 36).unwrap_or(0);
            suffix.push(if digit < 10 { b'0' + digit } else { b'a' + digit - 10 });
            millis /= 36;
        }
        suffix.reverse();
        let suffix = String::from_utf8(suffix).unwrap_or_default();
        let mut base = format!("{}-{}", app.name, hook.name);
        base.truncate(63 - suffix.len() - 1);
        format!("{}-{suffix}", base.trim_end_matches('-'))
    }

    /// Refuses an object this platform does not own, unless adoption is on.
    fn ensure_owned(&self, meta: &ObjectMeta, what: &str) -> Result<(), PlatformError> {
        let owned = meta.labels.as_ref().and_then(|l| l.get(labels::MANAGED_BY)).is_some_and(|m| m == labels::MANAGER);
        if owned || self.options.adopt_unowned {
            return Ok(());
        }
        Err(platform_error(KubeError::NotOwned { what: what.to_owned() }))
    }

    /// Deletes `name` if it exists and this platform owns it, with a UID
    /// precondition so that an object re-created in between is left alone.
    async fn delete_owned<K>(&self, api: &Api<K>, name: &str, kind: &str, app: &AppId) -> Result<(), PlatformError>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let what = format!("{kind} {}/{name}", app.namespace);
        let Some(live) = get_opt(api, name, &format!("read {what}")).await.map_err(platform_error)? else {
            return Ok(());
        };
        self.ensure_owned(live.meta(), &what)?;
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: live.meta().uid.clone(), resource_version: None }),
            ..DeleteParams::background()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend(format!("delete {what}"), e)),
        }
    }
}

/// A cluster error as a platform error, its class kept.
fn platform_error(error: KubeError) -> PlatformError {
    let kind = deploy_core::error::Classify::kind(&error);
    match error {
        KubeError::Api { operation, kind, source } => PlatformError::backend(operation, kind, source),
        other => PlatformError::backend(other.to_string(), kind, other),
    }
}

#[cfg(test)]
mod tests;
