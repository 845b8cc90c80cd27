//! An Argo CD `Application` (`argoproj.io/v1alpha1`, typed from the upstream CRD),
//! for teams that ship the manifests of this crate through Git.

use deploy_core::model::Namespace as ModelNamespace;
use serde::{Deserialize, Serialize};

use crate::manifest::custom::custom_kind;

custom_kind!(
    /// `argoproj.io/v1alpha1` Application: a Git path Argo CD keeps applied to a cluster.
    Application, ApplicationSpec, "argoproj.io", "v1alpha1", "applications"
);

/// Application `spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApplicationSpec {
    /// The Argo CD project.
    pub project: String,
    /// Where the manifests are.
    pub source: ApplicationSource,
    /// Where they go.
    pub destination: ApplicationDestination,
    /// How Argo CD syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
}

/// The Git source of an Application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApplicationSource {
    /// The repository URL (`repoURL` on the wire, as Argo CD spells it).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// The branch, tag or commit.
    pub target_revision: String,
    /// The directory in the repository.
    pub path: String,
}

/// The cluster and namespace of an Application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApplicationDestination {
    /// The API server URL (`https://kubernetes.default.svc` is Argo CD's own cluster).
    pub server: String,
    /// The namespace.
    pub namespace: String,
}

/// Automated sync of an Application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SyncPolicy {
    /// Sync on every change of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<AutomatedSync>,
    /// Options such as `CreateNamespace=true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
}

/// What automated sync may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AutomatedSync {
    /// Delete what disappeared from the source.
    pub prune: bool,
    /// Revert changes made in the cluster.
    pub self_heal: bool,
}

/// An Application `name` in Argo CD's namespace `argocd_namespace` that keeps
/// `path` of `repo_url` at `revision` applied to `namespace` of Argo CD's own
/// cluster, syncing automatically without pruning (deletions stay a person's
/// decision) and creating the namespace.
pub fn argo_application(
    argocd_namespace: &ModelNamespace,
    name: &str,
    repo_url: &str,
    revision: &str,
    path: &str,
    namespace: &ModelNamespace,
) -> Application {
    Application::new(
        argocd_namespace,
        name,
        ApplicationSpec {
            project: "default".to_owned(),
            source: ApplicationSource {
                repo_url: repo_url.to_owned(),
                target_revision: revision.to_owned(),
                path: path.to_owned(),
            },
            destination: ApplicationDestination {
                server: "https://kubernetes.default.svc".to_owned(),
                namespace: namespace.as_str().to_owned(),
            },
            sync_policy: Some(SyncPolicy {
                automated: Some(AutomatedSync { prune: false, self_heal: true }),
                sync_options: vec!["CreateNamespace=true".to_owned()],
            }),
        },
    )
}
