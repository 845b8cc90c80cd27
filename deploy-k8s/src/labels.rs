//! The labels and names this crate puts on objects, so that every part (builders,
//! platform, routers) selects the same pods.

use std::collections::BTreeMap;

use deploy_core::model::{AppId, Track, Version};

/// The application's name (`app.kubernetes.io/name`).
pub const APP: &str = "app.kubernetes.io/name";
/// The release's version (`app.kubernetes.io/version`); on pods only, never in a
/// selector, because a Deployment's selector cannot change.
pub const VERSION: &str = "app.kubernetes.io/version";
/// Who manages the object (`app.kubernetes.io/managed-by`).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The track a workload runs (`deploy-rs.io/track`).
pub const TRACK: &str = "deploy-rs.io/track";
/// The value of [`MANAGED_BY`].
pub const MANAGER: &str = "deploy-rs";
/// The change cause shown by `kubectl rollout history`.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The revision of a ReplicaSet or Deployment.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The checksum of the release's configuration, on the pod template.
pub const CONFIG_CHECKSUM: &str = "deploy-rs.io/config-checksum";
/// On a StatefulSet while a partitioned canary runs: the canary's version.
pub const STATEFUL_CANARY: &str = "deploy-rs.io/canary";
/// On a StatefulSet while a partitioned canary runs: the partition before it,
/// which a rollback restores.
pub const PARTITION_BEFORE: &str = "deploy-rs.io/partition-before";
/// The label the StatefulSet controller puts on each pod: the name of the
/// ControllerRevision the pod was made from.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// The name of the workload of `app` on `track`: `{app}-{track}`.
pub fn workload_name(app: &AppId, track: Track) -> String {
    format!("{}-{}", app.name, track)
}

/// Labels that select every pod of `app`, whatever the track.
pub fn app_selector(app: &AppId) -> BTreeMap<String, String> {
    BTreeMap::from([(APP.to_owned(), app.name.to_string())])
}

/// Labels that select the pods of one track of `app`.
pub fn track_selector(app: &AppId, track: Track) -> BTreeMap<String, String> {
    let mut labels = app_selector(app);
    labels.insert(TRACK.to_owned(), track.as_str().to_owned());
    labels
}

/// The labels of a track's pods: the track selector plus version and manager.
pub fn pod_labels(app: &AppId, track: Option<Track>, version: Option<&Version>) -> BTreeMap<String, String> {
    let mut labels = match track {
        Some(track) => track_selector(app, track),
        None => app_selector(app),
    };
    labels.insert(MANAGED_BY.to_owned(), MANAGER.to_owned());
    if let Some(version) = version {
        labels.insert(VERSION.to_owned(), version.as_str().to_owned());
    }
    labels
}

/// A label selector string (`a=b,c=d`) for list and watch calls.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_core::model::{Name, Namespace};

    #[test]
    fn track_pods_carry_selector_version_and_manager() {
        // Built here, not taken from the test fixtures: the fixtures build on these
        // labels, and the modules do not import each other.
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
        let labels = pod_labels(&app, Some(Track::Canary), Some(&Version::new("1.4.2").unwrap()));
        assert_eq!(labels[APP], "web");
        assert_eq!(labels[TRACK], "canary");
        assert_eq!(labels[VERSION], "1.4.2");
        assert_eq!(labels[MANAGED_BY], "deploy-rs");
        assert_eq!(
            selector_string(&track_selector(&app, Track::Blue)),
            "app.kubernetes.io/name=web,deploy-rs.io/track=blue"
        );
        assert_eq!(workload_name(&app, Track::Green), "web-green");
    }
}
