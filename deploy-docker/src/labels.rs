//! The labels that make a set of containers a track of an application.

use std::collections::{BTreeMap, HashMap};

use deploy_core::model::{AppId, Track};

/// Marks every object the platform created.
pub const MANAGED_BY: &str = "deploy-rs.managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGER: &str = "deploy-docker";
/// The application's namespace.
pub const NAMESPACE: &str = "deploy-rs.namespace";
/// The application's name.
pub const APP: &str = "deploy-rs.app";
/// The track (`stable`, `canary`, `blue`, `green`).
pub const TRACK: &str = "deploy-rs.track";
/// The release version.
pub const VERSION: &str = "deploy-rs.version";
/// A hash of everything that makes a container of this release: two containers
/// with the same revision are interchangeable.
pub const REVISION: &str = "deploy-rs.revision";
/// The container ports published on loopback, comma-separated, so that a
/// replica added by a scale publishes the same ones as those the spec made.
pub const PORTS: &str = "deploy-rs.ports";

/// The hook a one-shot hook container runs (its name).
pub const HOOK: &str = "deploy-rs.hook";
/// The id of the configuration snapshot a volume holds.
pub const CONFIG_SNAPSHOT: &str = "deploy-rs.config-snapshot";

/// The labels that select every container of `app`.
pub fn app_selector(app: &AppId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (NAMESPACE.to_owned(), app.namespace.to_string()),
        (APP.to_owned(), app.name.to_string()),
    ])
}

/// The labels that select every container of one track of `app`.
///
/// ```
/// use deploy_core::model::{AppId, Name, Namespace, Track};
/// let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
/// let labels = deploy_docker::labels::track_selector(&app, Track::Blue);
/// assert_eq!(labels["deploy-rs.track"], "blue");
/// assert_eq!(labels["deploy-rs.app"], "web");
/// ```
pub fn track_selector(app: &AppId, track: Track) -> BTreeMap<String, String> {
    let mut labels = app_selector(app);
    labels.insert(TRACK.to_owned(), track.as_str().to_owned());
    labels
}

/// `labels` plus the ownership mark every object this crate creates carries.
pub(crate) fn owned_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut owned = labels.clone();
    owned.insert(MANAGED_BY.to_owned(), MANAGER.to_owned());
    owned
}

/// `{"label": ["k=v", …]}` for list filters.
pub(crate) fn label_filters(labels: &BTreeMap<String, String>) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), labels.iter().map(|(k, v)| format!("{k}={v}")).collect())])
}
