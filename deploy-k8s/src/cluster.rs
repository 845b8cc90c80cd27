//! Cluster operations through `kube`: server-side apply with a field manager,
//! namespaces, ConfigMaps and Secrets, pod logs, scale, CRDs, and hook Jobs.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::instrument;

use crate::discovery::{Compatible, ServedGroups, compatible};
use crate::error::{KubeError, Result, is_not_found};

/// The field manager deploy-rs applies as, unless told otherwise.
pub const FIELD_MANAGER: &str = "deploy-rs";

/// A handle on one cluster: a `kube::Client` and the field manager that owns the
/// fields this crate applies. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    field_manager: String,
    force: bool,
    /// The version discovery chose per `group/Kind` (see [`crate::discovery`]).
    served: Arc<Mutex<BTreeMap<String, &'static str>>>,
}

impl Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("field_manager", &self.field_manager).finish_non_exhaustive()
    }
}

/// Which logs of a pod to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogOptions {
    /// The container; required when the pod has more than one.
    pub container: Option<String>,
    /// Only the last lines.
    pub tail_lines: Option<i64>,
    /// The previous, crashed instance of the container.
    pub previous: bool,
}

impl LogOptions {
    /// The last `lines` lines.
    #[must_use]
    pub fn tail(mut self, lines: i64) -> Self {
        self.tail_lines = Some(lines);
        self
    }

    /// Of `container`.
    #[must_use]
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.container = Some(container.into());
        self
    }

    /// Of the previous instance.
    #[must_use]
    pub fn previous(mut self) -> Self {
        self.previous = true;
        self
    }
}

/// How a hook Job is run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookOptions {
    /// How long the Job may take before the hook fails with a timeout.
    pub deadline: Duration,
    /// Log lines of a failed pod returned with the failure.
    pub log_lines: i64,
}

impl Default for HookOptions {
    fn default() -> Self {
        Self { deadline: Duration::from_secs(600), log_lines: 50 }
    }
}

impl HookOptions {
    /// Sets the deadline.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }
}

impl Cluster {
    /// A cluster reached through `client`, applying as [`FIELD_MANAGER`] and taking
    /// over conflicting fields (`force`), as controllers do.
    pub fn new(client: Client) -> Self {
        Self { client, field_manager: FIELD_MANAGER.to_owned(), force: true, served: Arc::default() }
    }

    /// Applies as another field manager.
    #[must_use]
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = manager.into();
        self
    }

    /// Whether server-side apply takes over fields another manager owns; when
    /// `false`, such a conflict is a 409 error.
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Server-side apply parameters with this cluster's field manager and force setting.
    pub(crate) fn apply_params(&self) -> PatchParams {
        let params = PatchParams::apply(&self.field_manager);
        if self.force { params.force() } else { params }
    }

    /// Server-side applies a namespaced object (its metadata names the namespace)
    /// and returns what the server stored.
    #[instrument(skip_all, fields(kind = %K::kind(&()), name = ?object.meta().name), err)]
    pub async fn apply<K>(&self, object: &K) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    {
        let (namespace, name) = names(object)?;
        if let Some(entry) = compatible(&K::group(&()), &K::kind(&())) {
            let version = self.served_version(entry).await?;
            if version != K::version(&()) {
                return self.apply_as(object, entry, version, &namespace, &name).await;
            }
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        api.patch(&name, &self.apply_params(), &Patch::Apply(object))
            .await
            .map_err(|e| KubeError::api(format!("apply {} {namespace}/{name}", K::kind(&())), e))
    }

    /// The version of `entry` this cluster serves, asked once per `Cluster`.
    pub async fn served_version(&self, entry: &Compatible) -> Result<&'static str> {
        let key = format!("{}/{}", entry.group, entry.kind);
        if let Some(version) = self.served.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(version);
        }
        let version = ServedGroups::discover(&self.client, entry).await?.pick(entry)?;
        self.served.lock().unwrap_or_else(PoisonError::into_inner).insert(key, version);
        Ok(version)
    }

    /// An API for `entry`'s kind in `namespace`, in the version this cluster serves.
    pub async fn served_api(&self, entry: &Compatible, namespace: &str) -> Result<Api<DynamicObject>> {
        let version = self.served_version(entry).await?;
        let resource = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(entry.group, version, entry.kind));
        Ok(Api::namespaced_with(self.client.clone(), namespace, &resource))
    }

    /// Applies `object` as `version` of its kind (same fields, older `apiVersion`)
    /// and returns what the server stored, read back as `K`.
    async fn apply_as<K>(&self, object: &K, entry: &Compatible, version: &str, namespace: &str, name: &str) -> Result<K>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let what = format!("{}.{}/{version} {namespace}/{name}", entry.kind, entry.group);
        let encode = |source| KubeError::Encode { what: what.clone(), source };
        let api_version = format!("{}/{version}", entry.group);
        let mut value = serde_json::to_value(object).map_err(encode)?;
        value["apiVersion"] = serde_json::Value::String(api_version.clone());
        let resource = ApiResource {
            group: entry.group.to_owned(),
            version: version.to_owned(),
            api_version,
            kind: entry.kind.to_owned(),
            plural: K::plural(&()).into_owned(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
        let stored = api
            .patch(name, &self.apply_params(), &Patch::Apply(&value))
            .await
            .map_err(|e| KubeError::api(format!("apply {what}"), e))?;
        let mut value = serde_json::to_value(stored).map_err(encode)?;
        value["apiVersion"] = serde_json::Value::String(K::api_version(&()).into_owned());
        serde_json::from_value(value).map_err(encode)
    }

    /// Server-side applies a cluster-scoped object (Namespace, CRD).
    #[instrument(skip_all, fields(kind = %K::kind(&()), name = ?object.meta().name), err)]
    pub async fn apply_cluster_scoped<K>(&self, object: &K) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    {
        let name = object.meta().name.clone().ok_or_else(|| incomplete::<K>("metadata.name"))?;
        let api: Api<K> = Api::all(self.client.clone());
        api.patch(&name, &self.apply_params(), &Patch::Apply(object))
            .await
            .map_err(|e| KubeError::api(format!("apply {} {name}", K::kind(&())), e))
    }

    /// Creates or updates the namespace `name` with `labels`.
    pub async fn ensure_namespace(&self, name: &str, labels: BTreeMap<String, String>) -> Result<Namespace> {
        self.apply_cluster_scoped(&crate::manifest::namespace(name, labels)).await
    }

    /// The namespace `name`, if it exists.
    pub async fn namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.get_opt(name).await.map_err(|e| KubeError::api(format!("read namespace {name}"), e))
    }

    /// Creates a ConfigMap; fails with a conflict ([`Classify::is_conflict`]) if it
    /// exists.
    ///
    /// [`Classify::is_conflict`]: deploy_core::error::Classify::is_conflict
    pub async fn create_config_map(&self, config_map: &ConfigMap) -> Result<ConfigMap> {
        let (namespace, name) = names(config_map)?;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), config_map)
            .await
            .map_err(|e| KubeError::api(format!("create configmap {namespace}/{name}"), e))
    }

    /// Merges `data` into the ConfigMap's data (JSON merge patch): listed keys are
    /// set, other keys kept. Fails with not-found if the ConfigMap does not exist.
    pub async fn merge_config_map(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<ConfigMap> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({ "data": data });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeError::api(format!("update configmap {namespace}/{name}"), e))
    }

    /// The ConfigMap, if it exists.
    pub async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|e| KubeError::api(format!("read configmap {namespace}/{name}"), e))
    }

    /// Creates a Secret; fails with a conflict if it exists.
    pub async fn create_secret(&self, secret: &Secret) -> Result<Secret> {
        let (namespace, name) = names(secret)?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), secret)
            .await
            .map_err(|e| KubeError::api(format!("create secret {namespace}/{name}"), e))
    }

    /// Merges `data` into the Secret's data; other keys are kept.
    pub async fn merge_secret(&self, namespace: &str, name: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Secret> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let data: BTreeMap<&String, k8s_openapi::ByteString> =
            data.iter().map(|(k, v)| (k, k8s_openapi::ByteString(v.clone()))).collect();
        let patch = serde_json::json!({ "data": data });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeError::api(format!("update secret {namespace}/{name}"), e))
    }

    /// The Secret, if it exists.
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|e| KubeError::api(format!("read secret {namespace}/{name}"), e))
    }

    /// A pod's logs.
    pub async fn pod_logs(&self, namespace: &str, pod: &str, options: &LogOptions) -> Result<String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: options.container.clone(),
            tail_lines: options.tail_lines,
            previous: options.previous,
            ..LogParams::default()
        };
        api.logs(pod, &params).await.map_err(|e| KubeError::api(format!("read logs of pod {namespace}/{pod}"), e))
    }

    /// Sets a Deployment's replicas through its scale subresource.
    #[instrument(skip_all, fields(namespace, deployment, replicas), err)]
    pub async fn scale(&self, namespace: &str, deployment: &str, replicas: u32) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        api.patch_scale(deployment, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| KubeError::api(format!("scale deployment {namespace}/{deployment}"), e))
    }

    /// Applies a CRD and waits (watching) until the API server reports it
    /// `Established`, at most `deadline`.
    #[instrument(skip_all, fields(crd = ?crd.metadata.name), err)]
    pub async fn apply_crd(
        &self,
        crd: &CustomResourceDefinition,
        deadline: Duration,
    ) -> Result<CustomResourceDefinition> {
        let applied = self.apply_cluster_scoped(crd).await?;
        let name = applied.metadata.name.clone().unwrap_or_default();
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let what = format!("customresourcedefinition {name}");
        match tokio::time::timeout(deadline, await_condition(api, &name, conditions::is_crd_established())).await {
            Err(_) => Err(KubeError::Timeout { what, after: deadline, last: "not established".to_owned() }),
            Ok(Err(e)) => Err(wait_error(what, e)),
            Ok(Ok(Some(crd))) => Ok(crd),
            Ok(Ok(None)) => Err(KubeError::NotFound { what }),
        }
    }

    /// Runs a hook Job (a database backup before a rollout, a migration after it):
    /// creates it and waits, watching, until it completes or fails. A failed Job
    /// returns [`KubeError::JobFailed`] with the last log lines of a failed pod.
    #[instrument(skip_all, fields(job = ?job.metadata.name), err)]
    pub async fn run_hook(&self, job: &Job, options: &HookOptions) -> Result<Job> {
        let (namespace, name) = names(job)?;
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), job)
            .await
            .map_err(|e| KubeError::api(format!("create job {namespace}/{name}"), e))?;
        let what = format!("job {namespace}/{name}");
        let done = await_condition(api, &name, |job: Option<&Job>| job_finished(job).is_some());
        let job = match tokio::time::timeout(options.deadline, done).await {
            Err(_) => {
                return Err(KubeError::Timeout { what, after: options.deadline, last: "still running".to_owned() });
            }
            Ok(Err(e)) => return Err(wait_error(what, e)),
            Ok(Ok(None)) => return Err(KubeError::NotFound { what }),
            Ok(Ok(Some(job))) => job,
        };
        match job_finished(Some(&job)) {
            Some(JobOutcome::Failed(reason)) => {
                let logs = self.failed_pod_logs(&namespace, &name, options.log_lines).await;
                Err(KubeError::JobFailed { job: name, reason, logs })
            }
            _ => Ok(job),
        }
    }

    /// The tail of the log of a failed pod of `job`; `None` when none can be read
    /// (the failure is still reported, with no logs).
    async fn failed_pod_logs(&self, namespace: &str, job: &str, lines: i64) -> Option<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let list = pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await.ok()?;
        let pod = list
            .items
            .iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
            .or(list.items.first())?;
        let pod_name = pod.metadata.name.clone()?;
        self.pod_logs(namespace, &pod_name, &LogOptions::default().tail(lines)).await.ok()
    }
}

/// How a Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    Complete,
    Failed(String),
}

/// The Job's end, from its `Complete` / `Failed` conditions; `None` while running.
pub(crate) fn job_finished(job: Option<&Job>) -> Option<JobOutcome> {
    let conditions = job?.status.as_ref()?.conditions.as_ref()?;
    for c in conditions {
        if c.status == "True" {
            match c.type_.as_str() {
                "Complete" => return Some(JobOutcome::Complete),
                "Failed" => {
                    let reason = c.message.clone().or_else(|| c.reason.clone()).unwrap_or_else(|| "failed".to_owned());
                    return Some(JobOutcome::Failed(reason));
                }
                _ => {}
            }
        }
    }
    None
}

fn wait_error(what: String, error: kube::runtime::wait::Error) -> KubeError {
    let kube::runtime::wait::Error::ProbeFailed(source) = error;
    KubeError::Watch { what, source }
}

fn incomplete<K: Resource<DynamicType = ()>>(field: &str) -> KubeError {
    KubeError::Incomplete { what: K::kind(&()).to_string(), field: field.to_owned() }
}

/// The namespace and name of a namespaced object, both required.
pub(crate) fn names<K: Resource<DynamicType = ()>>(object: &K) -> Result<(String, String)> {
    let meta = object.meta();
    let namespace = meta.namespace.clone().ok_or_else(|| incomplete::<K>("metadata.namespace"))?;
    let name = meta.name.clone().ok_or_else(|| incomplete::<K>("metadata.name"))?;
    Ok((namespace, name))
}

/// Reads an object, `None` on 404.
pub(crate) async fn get_opt<K>(api: &Api<K>, name: &str, operation: &str) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.get(name).await {
        Ok(object) => Ok(Some(object)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(KubeError::api(operation, e)),
    }
}

#[cfg(test)]
mod tests;
