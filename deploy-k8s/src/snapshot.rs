//! Configuration that rolls back with the image: each release's ConfigMaps and
//! Secrets as immutable, content-addressed copies that only that release's pods
//! reference.
//!
//! Why: a Deployment that mounts `app-config` reads whatever `app-config` holds
//! now, so a rollback restores the image but not the configuration the old
//! release worked with. Here [`ConfigSnapshots::publish`] writes `app-config-<id>`
//! (`immutable: true`), where `<id>` is a keyed checksum of the whole set; the
//! release carries the id as its [`config_checksum`](deploy_core::model::Release::config_checksum);
//! and [`KubePlatform`](crate::KubePlatform), with
//! [`PlatformOptions::config_snapshots`](crate::PlatformOptions::config_snapshots), points
//! every ConfigMap and Secret reference of the pod template that the snapshot
//! covers at the copy. Rolling back re-applies the old release and with it the old
//! copies, which nobody could have changed. [`ConfigSnapshots::collect_garbage`]
//! removes snapshots beyond the newest ones that no Deployment references.
//!
//! The id is an HMAC over every key and value under the caller's
//! [`ChecksumKey`], so object names reveal nothing about secret values; secret
//! data never reaches the release, the state or the history, only the id does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use deploy_core::model::AppId;
use hmac::{Hmac, Mac};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::cluster::Cluster;
use crate::error::{KubeError, Result};
use crate::labels;
use crate::manifest::config::ChecksumKey;
use crate::manifest::deployment::{DeploymentOptions, EnvFrom, VolumeSource};

/// The label naming the snapshot an object belongs to.
pub const SNAPSHOT: &str = "deploy-rs.io/snapshot";
/// The label naming the ConfigMap or Secret an object is a copy of.
pub const SNAPSHOT_OF: &str = "deploy-rs.io/snapshot-of";

/// Hex digits of an id: 40 bits, as kustomize's generated-name suffixes.
const ID_LEN: usize = 10;

/// A snapshot's id: lowercase hex, the suffix of every object of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId(String);

impl SnapshotId {
    /// Reads an id, such as a release's `config_checksum`.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() == ID_LEN && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(text.to_owned()))
        } else {
            Err(KubeError::Invalid {
                what: "config snapshot id".to_owned(),
                reason: format!("{text:?} is not {ID_LEN} lowercase hex digits"),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the copy of `base` in this snapshot.
    pub fn name_of(&self, base: &str) -> String {
        format!("{base}-{}", self.0)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ConfigMaps and Secrets one release runs with.
#[derive(Clone, Default)]
pub struct ConfigSet {
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    secrets: BTreeMap<String, BTreeMap<String, Zeroizing<Vec<u8>>>>,
}

impl fmt::Debug for ConfigSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets: BTreeMap<&String, Vec<&String>> =
            self.secrets.iter().map(|(n, d)| (n, d.keys().collect())).collect();
        f.debug_struct("ConfigSet").field("config_maps", &self.config_maps).field("secret_keys", &secrets).finish()
    }
}

impl ConfigSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the ConfigMap `name` (the name the pod template refers to).
    #[must_use]
    pub fn config_map(mut self, name: impl Into<String>, data: BTreeMap<String, String>) -> Self {
        self.config_maps.insert(name.into(), data);
        self
    }

    /// Adds the Secret `name`; its values are zeroed when the set is dropped.
    #[must_use]
    pub fn secret(mut self, name: impl Into<String>, data: BTreeMap<String, Vec<u8>>) -> Self {
        self.secrets.insert(name.into(), data.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect());
        self
    }

    /// The set's id under `key`: the same content always gives the same id, any
    /// change another.
    pub fn id(&self, key: &ChecksumKey) -> SnapshotId {
        let mut mac = key.mac();
        let mut feed = |parts: &[&[u8]]| {
            for part in parts {
                mac.update(&(part.len() as u64).to_be_bytes());
                mac.update(part);
            }
        };
        for (name, data) in &self.config_maps {
            for (k, v) in data {
                feed(&[b"configmap", name.as_bytes(), k.as_bytes(), v.as_bytes()]);
            }
            feed(&[b"configmap-end", name.as_bytes()]);
        }
        for (name, data) in &self.secrets {
            for (k, v) in data {
                feed(&[b"secret", name.as_bytes(), k.as_bytes(), v.as_slice()]);
            }
            feed(&[b"secret-end", name.as_bytes()]);
        }
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        SnapshotId(hex[..ID_LEN].to_owned())
    }

    fn validate(&self) -> Result<()> {
        for name in self.config_maps.keys().chain(self.secrets.keys()) {
            // The copy's name must still be a DNS subdomain of at most 253 characters.
            let ok = !name.is_empty()
                && name.len() + 1 + ID_LEN <= 253
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !name.starts_with(['-', '.'])
                && !name.ends_with(['-', '.']);
            if !ok {
                return Err(KubeError::Invalid {
                    what: "config snapshot object name".to_owned(),
                    reason: format!("{name:?} is not a DNS subdomain name of at most {} characters", 253 - 1 - ID_LEN),
                });
            }
        }
        Ok(())
    }
}

/// What one snapshot holds, by the names the pod template refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Its id.
    pub id: SnapshotId,
    /// The ConfigMaps it copies.
    pub config_maps: BTreeSet<String>,
    /// The Secrets it copies.
    pub secrets: BTreeSet<String>,
}

impl DeploymentOptions {
    /// Points every ConfigMap and Secret reference that `snapshot` covers
    /// (volumes and `envFrom` of the app's container) at the snapshot's copy;
    /// references to objects outside the snapshot are left as they are.
    #[must_use]
    pub fn with_config_snapshot(mut self, snapshot: &Snapshot) -> Self {
        let id = &snapshot.id;
        for volume in &mut self.volumes {
            match &mut volume.source {
                VolumeSource::ConfigMap(name) if snapshot.config_maps.contains(name) => *name = id.name_of(name),
                VolumeSource::Secret(name) if snapshot.secrets.contains(name) => *name = id.name_of(name),
                _ => {}
            }
        }
        for source in &mut self.env_from {
            match source {
                EnvFrom::ConfigMap(name) if snapshot.config_maps.contains(name) => *name = id.name_of(name),
                EnvFrom::Secret(name) if snapshot.secrets.contains(name) => *name = id.name_of(name),
                _ => {}
            }
        }
        self
    }
}

/// Publishes, reads and collects the configuration snapshots of applications.
#[derive(Clone)]
pub struct ConfigSnapshots {
    cluster: Cluster,
}

impl ConfigSnapshots {
    /// Snapshots in `cluster`.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    fn meta(app: &AppId, id: &SnapshotId, base: &str) -> ObjectMeta {
        let labels = BTreeMap::from([
            (labels::APP.to_owned(), app.name.to_string()),
            (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
            (SNAPSHOT.to_owned(), id.to_string()),
            (SNAPSHOT_OF.to_owned(), base.to_owned()),
        ]);
        ObjectMeta {
            name: Some(id.name_of(base)),
            namespace: Some(app.namespace.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    /// Writes `set` as immutable copies for `app` and returns its id, which the
    /// release then names (`Release::config_checksum(id.as_str())`). Publishing
    /// the same set again changes nothing.
    pub async fn publish(&self, app: &AppId, set: &ConfigSet, key: &ChecksumKey) -> Result<SnapshotId> {
        set.validate()?;
        let id = set.id(key);
        for (base, data) in &set.config_maps {
            let object = ConfigMap {
                metadata: Self::meta(app, &id, base),
                data: Some(data.clone()),
                immutable: Some(true),
                ..ConfigMap::default()
            };
            self.cluster.apply(&object).await?;
        }
        for (base, data) in &set.secrets {
            let object = Secret {
                metadata: Self::meta(app, &id, base),
                type_: Some("Opaque".to_owned()),
                data: Some(data.iter().map(|(k, v)| (k.clone(), ByteString(v.to_vec()))).collect()),
                immutable: Some(true),
                ..Secret::default()
            };
            self.cluster.apply(&object).await?;
        }
        Ok(id)
    }

    fn selector(app: &AppId) -> String {
        format!("{}={},{}={},{SNAPSHOT}", labels::APP, app.name, labels::MANAGED_BY, labels::MANAGER)
    }

    /// What snapshot `id` of `app` holds; [`KubeError::NotFound`] when nothing of
    /// it exists (never published, or collected).
    pub async fn read(&self, app: &AppId, id: &SnapshotId) -> Result<Snapshot> {
        let selector = format!("{},{SNAPSHOT}={id}", Self::selector(app));
        let params = ListParams::default().labels(&selector);
        let namespace = app.namespace.as_str();
        let operation = format!("list config snapshot {id} of {app}");
        let maps: Api<ConfigMap> = Api::namespaced(self.cluster.client().clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(self.cluster.client().clone(), namespace);
        let config_maps = copied_names(&maps, &params, &operation).await?;
        let secret_names = copied_names(&secrets, &params, &operation).await?;
        if config_maps.is_empty() && secret_names.is_empty() {
            return Err(KubeError::NotFound { what: format!("config snapshot {id} of {app}") });
        }
        Ok(Snapshot { id: id.clone(), config_maps, secrets: secret_names })
    }

    /// Deletes the snapshots of `app` beyond the `keep` newest that no Deployment
    /// of the app references (a rollback target stays as long as a track runs
    /// it), with UID preconditions; returns the names deleted.
    pub async fn collect_garbage(&self, app: &AppId, keep: usize) -> Result<Vec<String>> {
        let namespace = app.namespace.as_str();
        let client = self.cluster.client().clone();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let app_selector = format!("{}={}", labels::APP, app.name);
        let operation = format!("collect config snapshots of {app}");
        let api = |e| KubeError::api(operation.clone(), e);
        let referenced: BTreeSet<String> = deployments
            .list(&ListParams::default().labels(&app_selector))
            .await
            .map_err(api)?
            .items
            .iter()
            .filter_map(|d| d.spec.template.spec.as_ref())
            .flat_map(referenced_names)
            .collect();
        let params = ListParams::default().labels(&Self::selector(app));
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client, namespace);
        let map_metas = maps.list_metadata(&params).await.map_err(api)?.items;
        let secret_metas = secrets.list_metadata(&params).await.map_err(api)?.items;
        // Snapshots newest first, by their oldest object's creation time.
        let mut created: BTreeMap<String, String> = BTreeMap::new();
        for meta in map_metas.iter().map(|m| &m.metadata).chain(secret_metas.iter().map(|m| &m.metadata)) {
            let (Some(id), Some(at)) = (meta.labels.as_ref().and_then(|l| l.get(SNAPSHOT)), &meta.creation_timestamp)
            else {
                continue;
            };
            let at = at.0.to_string();
            let entry = created.entry(id.clone()).or_insert_with(|| at.clone());
            if at < *entry {
                *entry = at;
            }
        }
        let mut ids: Vec<(String, String)> = created.into_iter().map(|(id, at)| (at, id)).collect();
        ids.sort_by(|a, b| b.cmp(a));
        let newest: BTreeSet<String> = ids.into_iter().take(keep).map(|(_, id)| id).collect();
        let doomed = |meta: &ObjectMeta| {
            let id = meta.labels.as_ref().and_then(|l| l.get(SNAPSHOT));
            let name = meta.name.as_deref().unwrap_or_default();
            id.is_some_and(|id| !newest.contains(id)) && !referenced.contains(name)
        };
        let mut deleted = Vec::new();
        for meta in map_metas.iter().map(|m| &m.metadata).filter(|m| doomed(m)) {
            delete(&maps, meta, &operation).await?;
            deleted.push(meta.name.clone().unwrap_or_default());
        }
        for meta in secret_metas.iter().map(|m| &m.metadata).filter(|m| doomed(m)) {
            delete(&secrets, meta, &operation).await?;
            deleted.push(meta.name.clone().unwrap_or_default());
        }
        Ok(deleted)
    }
}

/// The names the objects `params` selects are copies of (their `snapshot-of` label).
async fn copied_names<K>(api: &Api<K>, params: &ListParams, operation: &str) -> Result<BTreeSet<String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    let listed = api.list_metadata(params).await.map_err(|e| KubeError::api(operation.to_owned(), e))?;
    Ok(listed.items.iter().filter_map(|m| m.metadata.labels.as_ref()?.get(SNAPSHOT_OF).cloned()).collect())
}

/// Deletes the object `meta` describes unless it was re-created since (UID
/// precondition); gone already counts as done.
async fn delete<K>(api: &Api<K>, meta: &ObjectMeta, operation: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    let name = meta.name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: meta.uid.clone(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(KubeError::api(format!("{operation}: delete {name}"), e)),
    }
}

/// Every ConfigMap and Secret a pod spec names: volumes, `envFrom` and `env`
/// references of all its containers.
fn referenced_names(spec: &PodSpec) -> Vec<String> {
    let mut names = Vec::new();
    for volume in spec.volumes.iter().flatten() {
        names.extend(volume.config_map.as_ref().map(|c| c.name.clone()));
        names.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
    }
    for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for from in container.env_from.iter().flatten() {
            names.extend(from.config_map_ref.as_ref().map(|c| c.name.clone()));
            names.extend(from.secret_ref.as_ref().map(|s| s.name.clone()));
        }
        for var in container.env.iter().flatten() {
            let source = var.value_from.as_ref();
            names.extend(source.and_then(|s| s.config_map_key_ref.as_ref()).map(|c| c.name.clone()));
            names.extend(source.and_then(|s| s.secret_key_ref.as_ref()).map(|s| s.name.clone()));
        }
    }
    names
}

impl ChecksumKey {
    /// A MAC keyed with this key.
    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this arm never runs.
        Hmac::<Sha256>::new_from_slice(self.bytes()).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChecksumKey {
        ChecksumKey::new(vec![7; 32]).unwrap()
    }

    fn set(greeting: &str, token: &[u8]) -> ConfigSet {
        ConfigSet::new()
            .config_map("app-config", BTreeMap::from([("greeting".to_owned(), greeting.to_owned())]))
            .secret("app-secret", BTreeMap::from([("token".to_owned(), token.to_vec())]))
    }

    #[test]
    fn the_id_follows_every_value_and_the_key() {
        let a = set("hello", b"s1").id(&key());
        assert_eq!(a, set("hello", b"s1").id(&key()), "same content, same id");
        assert_ne!(a, set("hallo", b"s1").id(&key()), "a ConfigMap value");
        assert_ne!(a, set("hello", b"s2").id(&key()), "a Secret value");
        assert_ne!(a, set("hello", b"s1").id(&ChecksumKey::new(vec![8; 32]).unwrap()), "the key");
        // Moving a key from one object to another is a change.
        let moved = ConfigSet::new()
            .config_map("a", BTreeMap::from([("k".to_owned(), "v".to_owned())]))
            .config_map("b", BTreeMap::new());
        let other = ConfigSet::new()
            .config_map("a", BTreeMap::new())
            .config_map("b", BTreeMap::from([("k".to_owned(), "v".to_owned())]));
        assert_ne!(moved.id(&key()), other.id(&key()));
        assert_eq!(SnapshotId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn bad_ids_and_names_are_refused_and_secrets_stay_out_of_debug() {
        for bad in ["", "ABCDEF0123", "abc", "0123456789a", "g123456789"] {
            assert!(SnapshotId::parse(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(243);
        let too_long = ConfigSet::new().config_map(long, BTreeMap::new());
        assert!(too_long.validate().is_err());
        assert!(ConfigSet::new().secret("Bad_Name", BTreeMap::new()).validate().is_err());
        let shown = format!("{:?}", set("hello", b"s3cr3t-value"));
        assert!(!shown.contains("s3cr3t-value") && shown.contains("token"), "{shown}");
    }

    #[test]
    fn only_the_references_a_snapshot_covers_are_pointed_at_its_copies() {
        use crate::manifest::deployment::PodVolume;
        let snapshot = Snapshot {
            id: SnapshotId::parse("0123456789").unwrap(),
            config_maps: BTreeSet::from(["app-config".to_owned()]),
            secrets: BTreeSet::from(["app-secret".to_owned()]),
        };
        let options = DeploymentOptions::default()
            .volume(PodVolume::new("config", VolumeSource::ConfigMap("app-config".into()), "/etc/app"))
            .volume(PodVolume::new("ca", VolumeSource::ConfigMap("shared-ca".into()), "/etc/ca"))
            .env_from(EnvFrom::Secret("app-secret".into()))
            .env_from(EnvFrom::ConfigMap("shared-env".into()))
            .with_config_snapshot(&snapshot);
        let sources: Vec<_> = options.volumes.iter().map(|v| v.source.clone()).collect();
        assert_eq!(
            sources,
            [VolumeSource::ConfigMap("app-config-0123456789".into()), VolumeSource::ConfigMap("shared-ca".into())]
        );
        assert_eq!(
            options.env_from,
            [EnvFrom::Secret("app-secret-0123456789".into()), EnvFrom::ConfigMap("shared-env".into())]
        );
    }
}
