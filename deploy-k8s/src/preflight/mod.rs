//! Pre-deployment checks that return a report: API server reachable (with its
//! version), namespace exists, the requested resources fit the namespace's
//! ResourceQuotas (requests, limits, pod and Deployment counts) and what the nodes
//! have left once the pods already bound to them are counted, and the image exists.
//!
//! A check that cannot be carried out fails; nothing passes on silence.
//!
//! Each check is a [`deploy_core::check::Check`], the suite's one check
//! vocabulary, and answers a [`CheckOutcome`]: [`preflight`] runs them in order into
//! a report, [`preflight_checklist`] makes them a checklist, and [`KubePreflight`]
//! hands them to the rollout engine to run before a rollout changes anything.
//!
//! The checks are in `checks.rs`; this file holds the request, the report and the
//! two ways to run them.

mod checks;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deploy_core::check::{Check, CheckOutcome, ImageExistsCheck};
use deploy_core::checklist::{Checklist, Phase};
use deploy_core::engine::{Preflight, PreflightInput};
use deploy_core::model::{ImageRef, Namespace, ResourceList};
use deploy_core::plan::{Step, resolve_rolling};
use deploy_core::registry::ImageRegistry;
use tracing::instrument;

use crate::cluster::Cluster;

pub use checks::{ApiServerCheck, CapacityCheck, NamespaceCheck, QuotaCheck};

/// What is about to be deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreflightRequest {
    /// The target namespace.
    pub namespace: Namespace,
    /// The image to run.
    pub image: ImageRef,
    /// Requests of one pod.
    pub pod_requests: ResourceList,
    /// Limits of one pod, if it sets any; a quota on `limits.*` needs them.
    pub pod_limits: Option<ResourceList>,
    /// How many pods at most run at once (replicas plus surge, or both tracks of a
    /// blue-green rollout).
    pub pods: u32,
    /// How many Deployments the rollout creates (1 for a new track, 0 for a rolling
    /// update in place), for a `count/deployments.apps` quota.
    pub new_deployments: u32,
}

impl PreflightRequest {
    /// A request for `pods` pods of `image`, each requesting `pod_requests`, in one
    /// new Deployment.
    pub fn new(namespace: Namespace, image: ImageRef, pod_requests: ResourceList, pods: u32) -> Self {
        Self { namespace, image, pod_requests, pod_limits: None, pods, new_deployments: 1 }
    }

    /// Sets the limits of one pod.
    #[must_use]
    pub fn limits(mut self, limits: ResourceList) -> Self {
        self.pod_limits = Some(limits);
        self
    }

    /// Sets how many Deployments the rollout creates.
    #[must_use]
    pub fn new_deployments(mut self, count: u32) -> Self {
        self.new_deployments = count;
        self
    }
}

/// The preflight's checks, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckName {
    /// `api-server`: [`ApiServerCheck`].
    ApiServer,
    /// `namespace`: [`NamespaceCheck`].
    Namespace,
    /// `quota`: [`QuotaCheck`].
    Quota,
    /// `capacity`: [`CapacityCheck`].
    Capacity,
    /// `image`: the registry has the image.
    Image,
}

impl CheckName {
    /// The id of the check in reports and checklists.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiServer => "api-server",
            Self::Namespace => "namespace",
            Self::Quota => "quota",
            Self::Capacity => "capacity",
            Self::Image => "image",
        }
    }
}

/// One named check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckResult {
    /// `api-server`, `namespace`, `quota`, `capacity` or `image`.
    pub name: &'static str,
    /// What happened.
    pub outcome: CheckOutcome,
}

impl CheckResult {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, CheckOutcome::Passed(_))
    }
}

/// Every check, in the order run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PreflightReport {
    /// The checks.
    pub checks: Vec<CheckResult>,
}

impl PreflightReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(CheckResult::passed)
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for PreflightReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            match &c.outcome {
                CheckOutcome::Passed(d) => writeln!(f, "[pass] {}: {d}", c.name)?,
                CheckOutcome::Warning(d) => writeln!(f, "[warn] {}: {d}", c.name)?,
                CheckOutcome::Failed(d) => writeln!(f, "[FAIL] {}: {d}", c.name)?,
                other => writeln!(f, "[????] {}: {other:?}", c.name)?,
            }
        }
        Ok(())
    }
}

/// Every preflight check as a [`Checklist`] of `Pre` items (`api-server`,
/// `namespace`, `quota`, `capacity`, `image`), for a caller's own gate or, through
/// [`KubePreflight`], the rollout engine's.
pub fn preflight_checklist(
    cluster: &Cluster,
    registry: Arc<dyn ImageRegistry>,
    request: &PreflightRequest,
) -> Checklist {
    let c = || cluster.clone();
    Checklist::new()
        .automated("api-server", Phase::Pre, "the API server answers", ApiServerCheck::new(c()))
        .automated("namespace", Phase::Pre, "the namespace exists", NamespaceCheck::new(c(), request.namespace.clone()))
        .automated(
            "quota",
            Phase::Pre,
            "the rollout fits the namespace's quotas",
            QuotaCheck::new(c(), request.clone()),
        )
        .automated("capacity", Phase::Pre, "the pods fit the nodes", CapacityCheck::new(c(), request.clone()))
        .automated("image", Phase::Pre, "the image exists", ImageExistsCheck::new(registry, request.image.clone()))
}

/// Runs every check, one after the other. Later checks still run when an earlier
/// one fails, so the report lists every problem at once.
#[instrument(skip_all, fields(namespace = %request.namespace, image = %request.image))]
pub async fn preflight(cluster: &Cluster, registry: &dyn ImageRegistry, request: &PreflightRequest) -> PreflightReport {
    let c = || cluster.clone();
    let mut checks = Vec::new();
    let mut push = |name: &'static str, outcome: CheckOutcome| checks.push(CheckResult { name, outcome });
    push("api-server", ApiServerCheck::new(c()).check().await);
    push("namespace", NamespaceCheck::new(c(), request.namespace.clone()).check().await);
    push("quota", QuotaCheck::new(c(), request.clone()).check().await);
    push("capacity", CapacityCheck::new(c(), request.clone()).check().await);
    push(
        "image",
        match registry.exists(&request.image).await {
            Ok(true) => CheckOutcome::passed(format!("{} exists", request.image)),
            Ok(false) => CheckOutcome::failed(format!("{} does not exist in its registry", request.image)),
            Err(e) => CheckOutcome::failed(format!("the registry could not be asked: {e}")),
        },
    );
    PreflightReport { checks }
}

/// The preflight the rollout engine runs before a rollout changes anything
/// ([`RolloutEngineBuilder::preflight`](deploy_core::engine::RolloutEngineBuilder::preflight)):
/// the checks of [`preflight_checklist`] for the app's namespace, the release's
/// image, the app's requests and limits, and as many pods as the plan runs at once.
#[derive(Clone)]
pub struct KubePreflight {
    cluster: Cluster,
    registry: Arc<dyn ImageRegistry>,
    advisory: Vec<&'static str>,
}

impl KubePreflight {
    /// Checks against `cluster`, asking `registry` whether images exist; every
    /// check blocks.
    pub fn new(cluster: Cluster, registry: Arc<dyn ImageRegistry>) -> Self {
        Self { cluster, registry, advisory: Vec::new() }
    }

    /// Reports `check` without letting it block: [`CheckName::Capacity`] on a
    /// cluster whose autoscaler adds nodes on demand, for example.
    #[must_use]
    pub fn advisory(mut self, check: CheckName) -> Self {
        self.advisory.push(check.as_str());
        self
    }

    /// What a rollout asks of the cluster: the pods that run at once (the old
    /// track's replicas next to the most the plan gives the new one, or the
    /// replicas plus the surge of a rolling update) and the Deployments it creates.
    pub fn request_for(input: &PreflightInput<'_>) -> PreflightRequest {
        let (spec, plan) = (input.spec, input.plan);
        let mut new_pods = 0u32;
        let mut new_tracks = std::collections::BTreeSet::new();
        for step in &plan.steps {
            match step {
                Step::DeployTrack { track, replicas } => {
                    new_pods = new_pods.max(*replicas);
                    new_tracks.insert(*track);
                }
                Step::RollingUpdate { replicas, max_surge, max_unavailable } => {
                    let (surge, _) = resolve_rolling(*replicas, *max_surge, *max_unavailable);
                    new_pods = new_pods.max(surge);
                }
                _ => {}
            }
        }
        let mut request = PreflightRequest::new(
            spec.namespace.clone(),
            input.release.image.clone(),
            spec.resources.requests.clone(),
            spec.replicas.saturating_add(new_pods),
        )
        .new_deployments(u32::try_from(new_tracks.len()).unwrap_or(u32::MAX));
        if spec.resources.limits != ResourceList::default() {
            request = request.limits(spec.resources.limits.clone());
        }
        request
    }
}

#[async_trait]
impl Preflight for KubePreflight {
    async fn checklist(&self, input: PreflightInput<'_>) -> Checklist {
        let checklist = preflight_checklist(&self.cluster, self.registry.clone(), &Self::request_for(&input));
        self.advisory.iter().fold(checklist, |checklist, id| checklist.advisory(id))
    }
}
