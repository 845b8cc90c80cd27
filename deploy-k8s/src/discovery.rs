//! Which version of a kind the API server serves.
//!
//! The typed builders of this crate produce the newest stable version of each kind
//! (`autoscaling/v2`, `policy/v1`, `batch/v1` CronJob, `networking.istio.io/v1`).
//! Older servers serve only an earlier version of some of them with the same
//! fields: Kubernetes 1.20 has `autoscaling/v2beta2` and `policy/v1beta1` but
//! neither `autoscaling/v2` nor `policy/v1`; Istio before 1.22 has no
//! `networking.istio.io/v1`. [`Cluster::apply`](crate::Cluster::apply) asks the
//! server's discovery (once per `Cluster`) which of the compatible versions it
//! serves and applies that one, or fails with [`KubeError::Unserved`] naming the
//! kind and the versions the server offers.

use std::collections::BTreeMap;

use kube::Client;

use crate::error::{KubeError, Result};

/// The versions of one group and kind that carry the same fields, newest first;
/// an object built for the first can be sent as any of the others by changing
/// its `apiVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compatible {
    /// The API group (`""` for the core group).
    pub group: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// Versions in order of preference.
    pub versions: &'static [&'static str],
}

/// The kinds this crate builds whose version differs between servers it supports.
pub const COMPATIBLE: &[Compatible] = &[
    Compatible { group: "autoscaling", kind: "HorizontalPodAutoscaler", versions: &["v2", "v2beta2"] },
    Compatible { group: "policy", kind: "PodDisruptionBudget", versions: &["v1", "v1beta1"] },
    Compatible { group: "batch", kind: "CronJob", versions: &["v1", "v1beta1"] },
    Compatible { group: "networking.istio.io", kind: "VirtualService", versions: &["v1", "v1beta1"] },
    Compatible { group: "networking.istio.io", kind: "DestinationRule", versions: &["v1", "v1beta1"] },
    Compatible { group: "networking.istio.io", kind: "Gateway", versions: &["v1", "v1beta1"] },
    Compatible { group: "security.istio.io", kind: "PeerAuthentication", versions: &["v1", "v1beta1"] },
    Compatible { group: "security.istio.io", kind: "AuthorizationPolicy", versions: &["v1", "v1beta1"] },
];

/// The compatibility entry of `group`/`kind`, if versions of it differ between servers.
pub fn compatible(group: &str, kind: &str) -> Option<&'static Compatible> {
    COMPATIBLE.iter().find(|c| c.group == group && c.kind == kind)
}

/// What the server serves of the groups asked about: each group's versions, and
/// the kinds of each version that was looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedGroups {
    groups: BTreeMap<String, Vec<String>>,
    kinds: BTreeMap<String, Vec<String>>,
}

impl ServedGroups {
    /// Asks the server's discovery about `entry`: its group's versions (`/apis`),
    /// then the kinds of each candidate version the group offers
    /// (`/apis/{group}/{version}`); a version can be served without the kind, as
    /// `batch/v1` is without CronJob before 1.21.
    pub async fn discover(client: &Client, entry: &Compatible) -> Result<Self> {
        let list = client.list_api_groups().await.map_err(|e| KubeError::api("discover the served API groups", e))?;
        let mut served = Self::default();
        for group in list.groups.into_iter().filter(|g| g.name == entry.group) {
            served.groups.insert(group.name, group.versions.into_iter().map(|v| v.version).collect());
        }
        for version in entry.versions {
            if !served.versions(entry.group).iter().any(|v| v == version) {
                continue;
            }
            let group_version = format!("{}/{version}", entry.group);
            let resources = client
                .list_api_group_resources(&group_version)
                .await
                .map_err(|e| KubeError::api(format!("discover the kinds of {group_version}"), e))?;
            served.kinds.insert(group_version, resources.resources.into_iter().map(|r| r.kind).collect());
        }
        Ok(served)
    }

    /// A table of served versions and their kinds, for tests and for callers who
    /// know them: `(group, version, kinds)`.
    pub fn from_table<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str, &'a [&'a str])>) -> Self {
        let mut served = Self::default();
        for (group, version, kinds) in rows {
            served.groups.entry(group.to_owned()).or_default().push(version.to_owned());
            served.kinds.insert(format!("{group}/{version}"), kinds.iter().map(|k| (*k).to_owned()).collect());
        }
        served
    }

    /// The versions `group` is served in (empty when the group is not served).
    pub fn versions(&self, group: &str) -> &[String] {
        self.groups.get(group).map(Vec::as_slice).unwrap_or_default()
    }

    /// The first of `entry`'s versions in which the server serves its kind, or
    /// [`KubeError::Unserved`] naming the versions the server offers.
    pub fn pick(&self, entry: &Compatible) -> Result<&'static str> {
        let serves = |version: &str| {
            self.kinds
                .get(&format!("{}/{version}", entry.group))
                .is_some_and(|kinds| kinds.iter().any(|k| k == entry.kind))
        };
        entry.versions.iter().copied().find(|v| serves(v)).ok_or_else(|| KubeError::Unserved {
            kind: format!("{}/{}", entry.group, entry.kind),
            wanted: entry.versions.iter().map(|v| (*v).to_owned()).collect(),
            offered: self.versions(entry.group).iter().filter(|v| serves(v)).cloned().collect(),
            group_offers: self.versions(entry.group).to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_1_20() -> ServedGroups {
        ServedGroups::from_table([
            ("autoscaling", "v1", &["HorizontalPodAutoscaler"][..]),
            ("autoscaling", "v2beta2", &["HorizontalPodAutoscaler"][..]),
            ("policy", "v1beta1", &["PodDisruptionBudget", "PodSecurityPolicy"][..]),
            ("batch", "v1", &["Job"][..]),
            ("batch", "v1beta1", &["CronJob"][..]),
        ])
    }

    #[test]
    fn an_older_server_gets_the_compatible_version_it_serves() {
        let served = server_1_20();
        let hpa = compatible("autoscaling", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(served.pick(hpa).unwrap(), "v2beta2");
        assert_eq!(served.pick(compatible("policy", "PodDisruptionBudget").unwrap()).unwrap(), "v1beta1");
        // batch/v1 is served in 1.20, but without CronJob.
        assert_eq!(served.pick(compatible("batch", "CronJob").unwrap()).unwrap(), "v1beta1");
    }

    #[test]
    fn a_current_server_gets_the_newest() {
        let served = ServedGroups::from_table([
            ("autoscaling", "v1", &["HorizontalPodAutoscaler"][..]),
            ("autoscaling", "v2", &["HorizontalPodAutoscaler"][..]),
            ("policy", "v1", &["PodDisruptionBudget"][..]),
        ]);
        assert_eq!(served.pick(compatible("autoscaling", "HorizontalPodAutoscaler").unwrap()).unwrap(), "v2");
        assert_eq!(served.pick(compatible("policy", "PodDisruptionBudget").unwrap()).unwrap(), "v1");
    }

    #[test]
    fn an_unserved_kind_names_the_versions_offered() {
        let served = ServedGroups::from_table([("autoscaling", "v1", &["HorizontalPodAutoscaler"][..])]);
        let err = served.pick(compatible("autoscaling", "HorizontalPodAutoscaler").unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("autoscaling/HorizontalPodAutoscaler"), "{text}");
        assert!(text.contains("v2, v2beta2") && text.contains("[v1]"), "{text}");
        let none = served.pick(compatible("networking.istio.io", "VirtualService").unwrap()).unwrap_err();
        assert!(none.to_string().contains("offers []"), "{none}");
    }
}
