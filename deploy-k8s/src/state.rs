//! deploy-core's [`StateStore`] and [`HistoryStore`] in the cluster: rollout
//! progress in a ConfigMap written with `resourceVersion` compare-and-swap, the
//! per-app lock as a `coordination.k8s.io/v1` Lease, and deployment records as
//! labelled ConfigMaps.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use deploy_core::error::ErrorKind;
use deploy_core::history::{HistoryError, HistoryQuery, HistoryStore};
use deploy_core::model::{AppId, DeploymentId, DeploymentRecord, Namespace};
use deploy_core::state::{
    LeaseToken, LockLease, LockRequest, Revision, RolloutState, StateError, StateStore, Versioned,
};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use tracing::instrument;

use crate::cluster::Cluster;
use crate::error::{is_conflict, is_not_found, kind_of};
use crate::labels;

/// The ConfigMap key that holds the progress document.
pub const STATE_KEY: &str = "state.json";
/// The ConfigMap key that holds a deployment record.
pub const RECORD_KEY: &str = "record.json";
/// The label that marks deployment-record ConfigMaps.
pub const RECORD_LABEL: &str = "deploy-rs.io/record";
/// The Lease annotation that holds the acquisition's fencing token.
pub const LEASE_TOKEN_ANNOTATION: &str = "deploy-rs.io/lease-token";

/// Rollout progress and locks in the app's namespace: ConfigMap
/// `deploy-rs-state-{app}` and Lease `deploy-rs-lock-{app}`.
#[derive(Debug, Clone)]
pub struct KubeStateStore {
    cluster: Cluster,
}

impl KubeStateStore {
    /// A store on `cluster`.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    fn config_maps(&self, app: &AppId) -> Api<ConfigMap> {
        Api::namespaced(self.cluster.client().clone(), app.namespace.as_str())
    }

    fn leases(&self, app: &AppId) -> Api<Lease> {
        Api::namespaced(self.cluster.client().clone(), app.namespace.as_str())
    }

    async fn current_revision(&self, app: &AppId) -> Option<Revision> {
        self.config_maps(app)
            .get_opt(&state_name(app))
            .await
            .ok()
            .flatten()
            .and_then(|c| c.metadata.resource_version)
            .map(Revision::new)
    }
}

/// The ConfigMap holding `app`'s progress.
pub fn state_name(app: &AppId) -> String {
    format!("deploy-rs-state-{}", app.name)
}

/// The Lease locking `app`.
pub fn lock_name(app: &AppId) -> String {
    format!("deploy-rs-lock-{}", app.name)
}

fn state_err(operation: &str, app: &AppId, e: kube::Error) -> StateError {
    StateError::backend(format!("{operation} of {app}"), kind_of(&e), e)
}

fn revision_of(meta: &ObjectMeta) -> Result<Revision, StateError> {
    meta.resource_version.clone().map(Revision::new).ok_or_else(|| {
        StateError::backend("read resourceVersion", ErrorKind::InvalidInput, "the server returned no resourceVersion")
    })
}

#[async_trait]
impl StateStore for KubeStateStore {
    async fn load(&self, app: &AppId) -> Result<Option<Versioned<RolloutState>>, StateError> {
        let Some(cm) =
            self.config_maps(app).get_opt(&state_name(app)).await.map_err(|e| state_err("load state", app, e))?
        else {
            return Ok(None);
        };
        let text = cm.data.as_ref().and_then(|d| d.get(STATE_KEY)).ok_or_else(|| StateError::Corrupt {
            app: app.clone(),
            reason: format!("configmap {} has no {STATE_KEY}", state_name(app)),
        })?;
        let state: RolloutState =
            serde_json::from_str(text).map_err(|e| StateError::Corrupt { app: app.clone(), reason: e.to_string() })?;
        Ok(Some(Versioned::new(state, revision_of(&cm.metadata)?)))
    }

    #[instrument(skip_all, fields(deploy.app = %app, expected = ?expected.map(Revision::as_str)), err)]
    async fn save(
        &self,
        app: &AppId,
        state: &RolloutState,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        let text = serde_json::to_string(state)
            .map_err(|e| StateError::backend("encode rollout state", ErrorKind::InvalidInput, e))?;
        let mut cm = crate::manifest::config_map(
            &app.namespace,
            &state_name(app),
            BTreeMap::from([(STATE_KEY.to_owned(), text)]),
        );
        cm.metadata.labels = Some(labels::pod_labels(app, None, None));
        let api = self.config_maps(app);
        let result = match expected {
            None => api.create(&PostParams::default(), &cm).await,
            Some(revision) => {
                cm.metadata.resource_version = Some(revision.as_str().to_owned());
                api.replace(&state_name(app), &PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(stored) => revision_of(&stored.metadata),
            Err(e) if is_not_found(&e) && expected.is_some() => Err(StateError::Deleted {
                app: app.clone(),
                expected: expected.cloned().unwrap_or_else(|| Revision::new("")),
            }),
            Err(e) if is_conflict(&e) => Err(StateError::Conflict {
                app: app.clone(),
                expected: expected.cloned(),
                actual: self.current_revision(app).await,
            }),
            Err(e) => Err(state_err("save state", app, e)),
        }
    }

    async fn clear(&self, app: &AppId, expected: &Revision) -> Result<(), StateError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions { resource_version: Some(expected.as_str().to_owned()), uid: None }),
            ..DeleteParams::default()
        };
        match self.config_maps(app).delete(&state_name(app), &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if is_conflict(&e) => Err(StateError::Conflict {
                app: app.clone(),
                expected: Some(expected.clone()),
                actual: self.current_revision(app).await,
            }),
            Err(e) => Err(state_err("clear state", app, e)),
        }
    }

    async fn read_lock(&self, app: &AppId) -> Result<Option<LockLease>, StateError> {
        let current = self.leases(app).get_opt(&lock_name(app)).await.map_err(|e| state_err("read lock", app, e))?;
        Ok(current.as_ref().and_then(|l| lease_of(app, l)))
    }

    #[instrument(skip_all, fields(deploy.app = %app, holder = %request.holder, ttl = ?request.ttl), err)]
    async fn acquire_lock(&self, app: &AppId, request: &LockRequest) -> Result<LockLease, StateError> {
        let api = self.leases(app);
        let name = lock_name(app);
        let now = Timestamp::now();
        let existing = api.get_opt(&name).await.map_err(|e| state_err("read lock", app, e))?;
        let next = |rv: Option<String>| lease(app, &request.holder, &request.token, now, now, request.ttl, rv);
        let result = match existing {
            None => api.create(&PostParams::default(), &next(None)).await,
            Some(current) => {
                // A held Lease is never taken by comparing clocks: only as the exact
                // record the caller watched for its whole duration.
                let observed = request
                    .take_over
                    .as_ref()
                    .is_some_and(|seen| lease_of(app, &current).is_some_and(|c| seen.same_record(&c)));
                if let Some((holder, expires_at)) = held_by(&current).filter(|_| !observed) {
                    return Err(StateError::LockHeld { app: app.clone(), holder, expires_at });
                }
                api.replace(&name, &PostParams::default(), &next(current.metadata.resource_version.clone())).await
            }
        };
        match result {
            Ok(stored) => lease_of(app, &stored).ok_or_else(|| {
                StateError::backend(
                    "take lock",
                    ErrorKind::InvalidInput,
                    "the server returned a Lease without a holder",
                )
            }),
            Err(e) if is_conflict(&e) => {
                // Someone else wrote the Lease between our read and write.
                let current = api.get_opt(&name).await.ok().flatten();
                let (other, expires_at) =
                    current.as_ref().and_then(held_by).unwrap_or_else(|| ("unknown".to_owned(), now));
                Err(StateError::LockHeld { app: app.clone(), holder: other, expires_at })
            }
            Err(e) => Err(state_err("take lock", app, e)),
        }
    }

    async fn renew_lock(&self, lease: &LockLease, ttl: Duration) -> Result<LockLease, StateError> {
        let app = &lease.app;
        let api = self.leases(app);
        let name = lock_name(app);
        let current = api.get_opt(&name).await.map_err(|e| state_err("read lock", app, e))?;
        let Some(current) = current else {
            return Err(StateError::LockLost { app: app.clone(), holder: "nobody".to_owned() });
        };
        if token_of(&current).as_ref() != Some(&lease.token) {
            let holder = held_by(&current).map_or_else(|| "nobody".to_owned(), |(h, _)| h);
            return Err(StateError::LockLost { app: app.clone(), holder });
        }
        let now = Timestamp::now();
        let next = self::lease(
            app,
            &lease.holder,
            &lease.token,
            lease.acquired_at,
            now,
            ttl,
            current.metadata.resource_version.clone(),
        );
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(stored) => lease_of(app, &stored).ok_or_else(|| {
                StateError::backend(
                    "renew lock",
                    ErrorKind::InvalidInput,
                    "the server returned a Lease without a holder",
                )
            }),
            Err(e) if is_conflict(&e) => {
                let holder = api
                    .get_opt(&name)
                    .await
                    .ok()
                    .flatten()
                    .as_ref()
                    .and_then(held_by)
                    .map_or_else(|| "unknown".to_owned(), |(h, _)| h);
                Err(StateError::LockLost { app: app.clone(), holder })
            }
            Err(e) => Err(state_err("renew lock", app, e)),
        }
    }

    async fn release_lock(&self, lease: &LockLease) -> Result<(), StateError> {
        let app = &lease.app;
        let api = self.leases(app);
        let name = lock_name(app);
        let Some(current) = api.get_opt(&name).await.map_err(|e| state_err("read lock", app, e))? else {
            return Ok(());
        };
        if token_of(&current).as_ref() != Some(&lease.token) {
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: current.metadata.resource_version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(state_err("release lock", app, e)),
        }
    }
}

fn lease(
    app: &AppId,
    holder: &str,
    token: &LeaseToken,
    acquired: Timestamp,
    renewed: Timestamp,
    ttl: Duration,
    resource_version: Option<String>,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(lock_name(app)),
            namespace: Some(app.namespace.to_string()),
            labels: Some(labels::pod_labels(app, None, None)),
            annotations: Some(BTreeMap::from([(LEASE_TOKEN_ANNOTATION.to_owned(), token.as_str().to_owned())])),
            resource_version,
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX)),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }),
    }
}

/// The fencing token of a Lease, if it carries one.
fn token_of(lease: &Lease) -> Option<LeaseToken> {
    lease.metadata.annotations.as_ref()?.get(LEASE_TOKEN_ANNOTATION).map(|t| LeaseToken::new(t.clone()))
}

/// The holder and expiry (holder's clock) of a Lease, if it names a holder.
fn held_by(lease: &Lease) -> Option<(String, Timestamp)> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let duration = jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    Some((holder, renewed.checked_add(duration).unwrap_or(Timestamp::MAX)))
}

/// The Lease as deploy-core's lease record: a Lease written by another tool (no
/// token) gets an empty token, so it can only be taken over as observed.
fn lease_of(app: &AppId, lease: &Lease) -> Option<LockLease> {
    let (holder, expires_at) = held_by(lease)?;
    let spec = lease.spec.as_ref()?;
    let acquired = spec.acquire_time.as_ref().or(spec.renew_time.as_ref())?.0;
    let ttl = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    let token = token_of(lease).unwrap_or_else(|| LeaseToken::new(""));
    let revision = Revision::new(lease.metadata.resource_version.clone().unwrap_or_default());
    let mut out = LockLease::new(app.clone(), holder, token, acquired, ttl).revision(revision).expires_at(expires_at);
    out.ttl = ttl;
    Some(out)
}

/// Deployment records as ConfigMaps `deploy-rs-record-{id}` in one namespace,
/// labelled with [`RECORD_LABEL`], the app and the environment.
#[derive(Debug, Clone)]
pub struct KubeHistoryStore {
    cluster: Cluster,
    namespace: Namespace,
}

impl KubeHistoryStore {
    /// Keeps records in `namespace` (typed, so a validated namespace is all it
    /// can be given).
    pub fn new(cluster: Cluster, namespace: Namespace) -> Self {
        Self { cluster, namespace }
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.cluster.client().clone(), self.namespace.as_str())
    }
}

fn record_name(id: &DeploymentId) -> String {
    format!("deploy-rs-record-{}", id.as_str().to_ascii_lowercase())
}

fn parse_record(cm: &ConfigMap) -> Result<DeploymentRecord, HistoryError> {
    let id = cm.metadata.name.clone().unwrap_or_default();
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(RECORD_KEY))
        .ok_or_else(|| HistoryError::Corrupt { id: id.clone(), reason: format!("no {RECORD_KEY}") })?;
    serde_json::from_str(text).map_err(|e| HistoryError::Corrupt { id, reason: e.to_string() })
}

#[async_trait]
impl HistoryStore for KubeHistoryStore {
    async fn record(&self, record: &DeploymentRecord) -> Result<(), HistoryError> {
        let text = serde_json::to_string(record)
            .map_err(|e| HistoryError::backend("encode deployment record", ErrorKind::InvalidInput, e))?;
        let mut cm = crate::manifest::config_map(
            &self.namespace,
            &record_name(&record.id),
            BTreeMap::from([(RECORD_KEY.to_owned(), text)]),
        );
        let mut record_labels = labels::app_selector(&record.app);
        record_labels.insert(RECORD_LABEL.to_owned(), "true".to_owned());
        record_labels.insert("deploy-rs.io/environment".to_owned(), record.environment.as_str().to_owned());
        cm.metadata.labels = Some(record_labels);
        let params = kube::api::PatchParams::apply(crate::cluster::FIELD_MANAGER).force();
        self.api()
            .patch(&record_name(&record.id), &params, &kube::api::Patch::Apply(&cm))
            .await
            .map(drop)
            .map_err(|e| HistoryError::backend(format!("store record {}", record.id.as_str()), kind_of(&e), e))
    }

    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>, HistoryError> {
        match self.api().get_opt(&record_name(id)).await {
            Ok(Some(cm)) => parse_record(&cm).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(HistoryError::backend(format!("read record {}", id.as_str()), kind_of(&e), e)),
        }
    }

    async fn list(&self, query: &HistoryQuery) -> Result<Vec<DeploymentRecord>, HistoryError> {
        let mut selector = format!("{RECORD_LABEL}=true");
        if let Some(app) = &query.app {
            selector.push_str(&format!(",{}={}", labels::APP, app.name));
        }
        let list = self
            .api()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| HistoryError::backend("list records", kind_of(&e), e))?;
        let records = list.items.iter().map(parse_record).collect::<Result<Vec<_>, _>>()?;
        Ok(query.select(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, mock::*};
    use deploy_core::error::Classify;
    use deploy_core::model::{Environment, TrafficSplit};
    use serde_json::{Value, json};

    const CMS: &str = "/api/v1/namespaces/shop/configmaps";
    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";

    fn record() -> DeploymentRecord {
        DeploymentRecord::new(
            fixtures::app_id(),
            Environment::Production,
            None,
            fixtures::release("1.4.2"),
            deploy_core::model::StrategyKind::Canary,
        )
    }

    fn state() -> RolloutState {
        RolloutState::new(record(), TrafficSplit::all(deploy_core::model::Track::Stable))
    }

    fn state_cm(rv: &str, text: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "deploy-rs-state-web", "namespace": "shop", "resourceVersion": rv},
            "data": {"state.json": text}})
    }

    #[tokio::test]
    async fn progress_is_saved_with_compare_and_swap() {
        let original = state();
        let saved = serde_json::to_string(&original).unwrap();
        let (client, mock) = start(vec![
            Expect::post(CMS)
                .body(|b| {
                    assert_eq!(b["metadata"]["name"], "deploy-rs-state-web");
                    assert!(b["metadata"]["resourceVersion"].is_null(), "create must not carry a version");
                    let inner: RolloutState = serde_json::from_str(b["data"]["state.json"].as_str().unwrap()).unwrap();
                    assert_eq!(inner.next_step(), 0);
                })
                .reply(201, state_cm("501", &saved)),
            Expect::put(&format!("{CMS}/deploy-rs-state-web"))
                .body(|b| assert_eq!(b["metadata"]["resourceVersion"], "501"))
                .status(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled on configmaps \"deploy-rs-state-web\": the object has been modified",
                ),
            Expect::get(&format!("{CMS}/deploy-rs-state-web")).ok(state_cm("502", &saved)),
            Expect::post(CMS).status(409, "AlreadyExists", "configmaps \"deploy-rs-state-web\" already exists"),
            Expect::get(&format!("{CMS}/deploy-rs-state-web")).ok(state_cm("502", &saved)),
            Expect::get(&format!("{CMS}/deploy-rs-state-web")).ok(state_cm("502", &saved)),
            Expect::delete(&format!("{CMS}/deploy-rs-state-web"))
                .body(|b| assert_eq!(b["preconditions"]["resourceVersion"], "502"))
                .ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})),
            Expect::delete(&format!("{CMS}/deploy-rs-state-web")).status(
                404,
                "NotFound",
                "configmaps \"deploy-rs-state-web\" not found",
            ),
            Expect::get(&format!("{CMS}/deploy-rs-state-web")).ok(state_cm("503", "{not json")),
        ]);
        let store = KubeStateStore::new(Cluster::new(client));
        let app = fixtures::app_id();
        let rev = within(store.save(&app, &original, None)).await.unwrap();
        assert_eq!(rev, Revision::new("501"));
        match within(store.save(&app, &original, Some(&rev))).await.unwrap_err() {
            StateError::Conflict { expected, actual, .. } => {
                assert_eq!(expected, Some(Revision::new("501")));
                assert_eq!(actual, Some(Revision::new("502")));
            }
            other => panic!("expected Conflict, got {other}"),
        }
        let err = within(store.save(&app, &original, None)).await.unwrap_err();
        assert!(err.is_conflict(), "must-not-exist loses to an existing document: {err}");
        let loaded = within(store.load(&app)).await.unwrap().unwrap();
        assert_eq!(loaded.revision, Revision::new("502"));
        assert_eq!(loaded.value, original);
        within(store.clear(&app, &Revision::new("502"))).await.unwrap();
        within(store.clear(&app, &Revision::new("502"))).await.unwrap();
        assert!(matches!(within(store.load(&app)).await, Err(StateError::Corrupt { .. })));
        drop(store);
        mock.finish().await;
    }

    fn lease_json(holder: &str, token: &str, renewed: Timestamp, seconds: i64, rv: &str) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "deploy-rs-lock-web", "namespace": "shop", "resourceVersion": rv,
                         "annotations": {"deploy-rs.io/lease-token": token}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds,
                     "acquireTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                     "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}})
    }

    fn request(holder: &str, token: &str) -> LockRequest {
        let mut request = LockRequest::new(holder, Duration::from_secs(30));
        request.token = LeaseToken::new(token);
        request
    }

    #[tokio::test]
    async fn lock_is_a_fenced_lease_taken_over_only_as_observed() {
        let now = Timestamp::now();
        let long_ago = now.checked_sub(jiff::SignedDuration::from_secs(600)).unwrap();
        let path = format!("{LEASES}/deploy-rs-lock-web");
        let (client, mock) = start(vec![
            Expect::get(&path).status(404, "NotFound", "leases.coordination.k8s.io \"deploy-rs-lock-web\" not found"),
            Expect::post(LEASES)
                .body(|b| {
                    assert_eq!(b["spec"]["holderIdentity"], "ci-1");
                    assert_eq!(b["spec"]["leaseDurationSeconds"], 30);
                    assert_eq!(b["metadata"]["annotations"]["deploy-rs.io/lease-token"], "tok-1");
                })
                .reply(201, lease_json("ci-1", "tok-1", now, 30, "1")),
            // The same holder name with a new token: held, however old the timestamps.
            Expect::get(&path).ok(lease_json("ci-1", "tok-1", long_ago, 30, "1")),
            // A takeover of the record as observed, guarded by its version.
            Expect::get(&path).ok(lease_json("ci-1", "tok-1", long_ago, 30, "1")),
            Expect::put(&path)
                .body(|b| {
                    assert_eq!(b["metadata"]["resourceVersion"], "1", "take-over guarded by the version read");
                    assert_eq!(b["spec"]["holderIdentity"], "ci-2");
                    assert_eq!(b["metadata"]["annotations"]["deploy-rs.io/lease-token"], "tok-2");
                })
                .ok(lease_json("ci-2", "tok-2", now, 30, "2")),
            // A takeover of a record that changed since: held.
            Expect::get(&path).ok(lease_json("ci-2", "tok-2", now, 30, "3")),
            // Renewal and release compare the token.
            Expect::get(&path).ok(lease_json("ci-3", "tok-3", now, 30, "4")),
            Expect::get(&path).ok(lease_json("ci-3", "tok-3", now, 30, "4")),
        ]);
        let store = KubeStateStore::new(Cluster::new(client));
        let app = fixtures::app_id();
        let first = within(store.acquire_lock(&app, &request("ci-1", "tok-1"))).await.unwrap();
        assert_eq!((first.holder.as_str(), first.token.as_str(), first.revision.as_str()), ("ci-1", "tok-1", "1"));
        match within(store.acquire_lock(&app, &request("ci-1", "tok-9"))).await.unwrap_err() {
            StateError::LockHeld { holder, .. } => assert_eq!(holder, "ci-1"),
            other => panic!("expected LockHeld, got {other}"),
        }
        let taken = within(store.acquire_lock(&app, &request("ci-2", "tok-2").take_over(first.clone()))).await.unwrap();
        assert_eq!((taken.holder.as_str(), taken.token.as_str()), ("ci-2", "tok-2"));
        let stale = within(store.acquire_lock(&app, &request("ci-4", "tok-4").take_over(taken.clone()))).await;
        assert!(matches!(stale, Err(StateError::LockHeld { .. })), "{stale:?}");
        match within(store.renew_lock(&taken, Duration::from_secs(30))).await.unwrap_err() {
            StateError::LockLost { holder, .. } => assert_eq!(holder, "ci-3"),
            other => panic!("expected LockLost, got {other}"),
        }
        within(store.release_lock(&taken)).await.unwrap();
        drop(store);
        let seen = mock.finish().await;
        assert!(!seen.iter().any(|r| r.method == http::Method::DELETE), "a lock someone else holds is never deleted");
    }

    #[tokio::test]
    async fn a_deleted_state_document_is_reported_as_deleted_not_as_a_conflict() {
        let (client, mock) = start(vec![Expect::put(&format!("{CMS}/deploy-rs-state-web")).status(
            404,
            "NotFound",
            "configmaps \"deploy-rs-state-web\" not found",
        )]);
        let store = KubeStateStore::new(Cluster::new(client));
        let err = within(store.save(&fixtures::app_id(), &state(), Some(&Revision::new("7")))).await.unwrap_err();
        assert!(matches!(&err, StateError::Deleted { expected, .. } if expected.as_str() == "7"), "{err}");
        assert!(err.is_not_found() && !err.is_conflict());
        drop(store);
        mock.finish().await;
    }

    #[tokio::test]
    async fn history_records_are_applied_and_listed_oldest_first() {
        let mut older = record();
        older.created_at = Timestamp::from_second(1_750_000_000).unwrap();
        let newer = record();
        let cm = |r: &DeploymentRecord| {
            json!({"metadata": {"name": format!("deploy-rs-record-{}", r.id.as_str().to_ascii_lowercase()), "namespace": "deploy-rs"},
            "data": {"record.json": serde_json::to_string(r).unwrap()}})
        };
        let id = newer.id.clone();
        let (client, mock) = start(vec![
            Expect::patch(&format!(
                "/api/v1/namespaces/deploy-rs/configmaps/deploy-rs-record-{}",
                id.as_str().to_ascii_lowercase()
            ))
            .query("fieldManager", "deploy-rs")
            .body(|b| {
                assert_eq!(b["metadata"]["labels"]["deploy-rs.io/record"], "true");
                assert_eq!(b["metadata"]["labels"]["deploy-rs.io/environment"], "production");
            })
            .ok(cm(&newer)),
            Expect::get("/api/v1/namespaces/deploy-rs/configmaps")
                .query("labelSelector", "deploy-rs.io/record=true,app.kubernetes.io/name=web")
                .ok(list("ConfigMapList", "v1", "9", vec![cm(&newer), cm(&older)])),
        ]);
        let store = KubeHistoryStore::new(Cluster::new(client), Namespace::new("deploy-rs").unwrap());
        within(store.record(&newer)).await.unwrap();
        let listed = within(store.list(&HistoryQuery::default().app(fixtures::app_id()).limit(5))).await.unwrap();
        assert_eq!(listed, vec![older, newer]);
        drop(store);
        mock.finish().await;
    }
}
