//! Deployment checklists: items for before, during and after a deployment, each
//! either an automated check or a manual confirmation, run into a go / no-go
//! report.
//!
//! A report's [`ChecklistReport::is_go`] is the gate: a caller (or the rollout
//! engine, through a small adapter) runs the `Pre` phase before starting and refuses
//! to start on no-go, and runs `Post` before calling a deployment done.
//!
//! Automated items are [`Check`]s, the suite's one check trait (module
//! [`check`](crate::check)).
//!
//! ```
//! use deploy_core::check::{CheckOutcome, FnCheck};
//! use deploy_core::checklist::{Checklist, Confirmations, Phase};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let checklist = Checklist::new()
//!     .automated("disk", Phase::Pre, "enough disk on the nodes", FnCheck::new(|| async { CheckOutcome::passed("71% free") }))
//!     .manual("change-approved", Phase::Pre, "change request approved");
//!
//! let report = checklist.run(Phase::Pre, &Confirmations::default()).await;
//! assert!(!report.is_go(), "the manual item is not confirmed yet");
//! let report = checklist.run(Phase::Pre, &Confirmations::default().confirm("change-approved", "alice")).await;
//! assert!(report.is_go());
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::check::{Check, CheckOutcome};

/// When an item applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Before the deployment starts.
    Pre,
    /// While it runs.
    During,
    /// After it ends.
    Post,
}

#[derive(Clone)]
enum ItemKind {
    Automated(Arc<dyn Check>),
    Manual,
}

#[derive(Clone)]
struct Item {
    id: String,
    phase: Phase,
    description: String,
    kind: ItemKind,
    blocking: bool,
}

/// Who confirmed which manual items.
///
/// ```
/// use deploy_core::checklist::Confirmations;
/// let c = Confirmations::default().confirm("backup-taken", "bob");
/// assert_eq!(c.by["backup-taken"], "bob");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Confirmations {
    /// Item id → who confirmed it.
    pub by: BTreeMap<String, String>,
}

impl Confirmations {
    /// Records that `who` confirmed item `id`.
    #[must_use]
    pub fn confirm(mut self, id: impl Into<String>, who: impl Into<String>) -> Self {
        self.by.insert(id.into(), who.into());
        self
    }
}

/// Where an item stands after a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
#[non_exhaustive]
pub enum ItemStatus {
    /// The check passed.
    Passed(String),
    /// The check warned.
    Warning(String),
    /// The check failed or timed out.
    Failed(String),
    /// A person confirmed it; the detail says who.
    Confirmed(String),
    /// Waiting for a person.
    AwaitingConfirmation,
}

/// One item of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ItemReport {
    /// The item's id.
    pub id: String,
    /// What it checks.
    pub description: String,
    /// Whether a failure blocks the deployment.
    pub blocking: bool,
    /// Where it stands.
    pub status: ItemStatus,
}

impl ItemReport {
    /// Whether the item lets the deployment go.
    pub fn is_ok(&self) -> bool {
        !self.blocking
            || matches!(self.status, ItemStatus::Passed(_) | ItemStatus::Warning(_) | ItemStatus::Confirmed(_))
    }
}

/// The result of running one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChecklistReport {
    /// The phase.
    pub phase: Phase,
    /// Every item of the phase, in checklist order.
    pub items: Vec<ItemReport>,
}

impl ChecklistReport {
    /// Go: every blocking item passed, warned or was confirmed.
    pub fn is_go(&self) -> bool {
        self.items.iter().all(ItemReport::is_ok)
    }

    /// The items that block.
    pub fn blockers(&self) -> Vec<&ItemReport> {
        self.items.iter().filter(|i| !i.is_ok()).collect()
    }
}

/// A deployment checklist: data that can be printed, stored and run.
#[derive(Clone)]
pub struct Checklist {
    items: Vec<Item>,
    check_timeout: Duration,
}

impl Default for Checklist {
    fn default() -> Self {
        Self { items: Vec::new(), check_timeout: Duration::from_secs(30) }
    }
}

impl Checklist {
    /// An empty checklist whose checks time out after 30 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The seed inventory's manual items: before (cluster reachable, namespace
    /// exists, image exists, resource quota and capacity), during (error rate and
    /// latency watched, rollback ready) and after (health endpoint, smoke tests,
    /// performance). Replace any with an automated check by adding one with the same
    /// id: it takes the manual item's place.
    pub fn standard() -> Self {
        Self::new()
            .manual("cluster-reachable", Phase::Pre, "the cluster API answers")
            .manual("namespace-exists", Phase::Pre, "the target namespace exists")
            .manual("image-exists", Phase::Pre, "the image is in the registry")
            .manual("capacity", Phase::Pre, "resource quota and node capacity fit the new pods")
            .manual("watching", Phase::During, "someone watches error rate and latency")
            .manual("rollback-ready", Phase::During, "the rollback command is at hand")
            .manual("health", Phase::Post, "the health endpoint answers on every pod")
            .manual("smoke-tests", Phase::Post, "smoke tests passed")
            .manual("performance", Phase::Post, "latency and throughput are at their usual level")
    }

    fn add(mut self, item: Item) -> Self {
        match self.items.iter_mut().find(|i| i.id == item.id) {
            Some(existing) => *existing = item,
            None => self.items.push(item),
        }
        self
    }

    /// Adds a blocking automated item, or replaces the item with the same id in place.
    #[must_use]
    pub fn automated(
        self,
        id: impl Into<String>,
        phase: Phase,
        description: impl Into<String>,
        check: impl Check + 'static,
    ) -> Self {
        let item = Item {
            id: id.into(),
            phase,
            description: description.into(),
            kind: ItemKind::Automated(Arc::new(check)),
            blocking: true,
        };
        self.add(item)
    }

    /// Adds a blocking manual item, or replaces the item with the same id in place.
    #[must_use]
    pub fn manual(self, id: impl Into<String>, phase: Phase, description: impl Into<String>) -> Self {
        self.add(Item { id: id.into(), phase, description: description.into(), kind: ItemKind::Manual, blocking: true })
    }

    /// Makes the item `id` advisory: its failure shows in the report but does not
    /// block.
    #[must_use]
    pub fn advisory(mut self, id: &str) -> Self {
        self.items.iter_mut().filter(|i| i.id == id).for_each(|i| i.blocking = false);
        self
    }

    /// Sets how long an automated check may take before it counts as failed.
    #[must_use]
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// The ids of the items of `phase`, in order.
    pub fn ids(&self, phase: Phase) -> Vec<&str> {
        self.items.iter().filter(|i| i.phase == phase).map(|i| i.id.as_str()).collect()
    }

    /// Runs the automated items of `phase` concurrently and reads the manual ones
    /// from `confirmations`.
    #[tracing::instrument(skip_all, fields(checklist.phase = ?phase))]
    pub async fn run(&self, phase: Phase, confirmations: &Confirmations) -> ChecklistReport {
        let timeout = self.check_timeout;
        let items = self.items.iter().filter(|i| i.phase == phase).map(|item| async move {
            let status = match &item.kind {
                ItemKind::Manual => match confirmations.by.get(&item.id) {
                    Some(who) => ItemStatus::Confirmed(who.clone()),
                    None => ItemStatus::AwaitingConfirmation,
                },
                ItemKind::Automated(check) => match tokio::time::timeout(timeout, check.check()).await {
                    Ok(CheckOutcome::Passed(d)) => ItemStatus::Passed(d),
                    Ok(CheckOutcome::Warning(d)) => ItemStatus::Warning(d),
                    Ok(CheckOutcome::Failed(d)) => ItemStatus::Failed(d),
                    Err(_) => ItemStatus::Failed(format!("timed out after {timeout:?}")),
                },
            };
            ItemReport { id: item.id.clone(), description: item.description.clone(), blocking: item.blocking, status }
        });
        ChecklistReport { phase, items: join_all(items).await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{FnCheck, ImageExistsCheck};
    use crate::model::{Digest, ImageRef};
    use crate::registry::{ImageRegistry, PushEvent, RegistryError};
    use async_trait::async_trait;
    use futures_core::stream::BoxStream;

    /// A registry that has every image.
    struct FakeRegistry;

    #[async_trait]
    impl ImageRegistry for FakeRegistry {
        async fn exists(&self, _image: &ImageRef) -> Result<bool, RegistryError> {
            Ok(true)
        }

        async fn digest(&self, _image: &ImageRef) -> Result<Option<Digest>, RegistryError> {
            Ok(None)
        }

        fn push(&self, _image: ImageRef) -> BoxStream<'_, Result<PushEvent, RegistryError>> {
            Box::pin(futures_util::stream::empty())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn automated_manual_advisory_and_timeouts() {
        let list = Checklist::standard()
            .automated(
                "image-exists",
                Phase::Pre,
                "image in registry",
                ImageExistsCheck::new(Arc::new(FakeRegistry), ImageRef::parse("web:1").unwrap()),
            )
            .automated(
                "capacity",
                Phase::Pre,
                "capacity",
                FnCheck::new(|| async { CheckOutcome::failed("quota: 2 of 8 cpu left") }),
            )
            .automated(
                "slow",
                Phase::Pre,
                "hangs",
                FnCheck::new(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    CheckOutcome::passed("late")
                }),
            )
            .advisory("slow")
            .check_timeout(Duration::from_secs(5));
        assert_eq!(list.ids(Phase::Pre), ["cluster-reachable", "namespace-exists", "image-exists", "capacity", "slow"]);
        let confirmations =
            Confirmations::default().confirm("cluster-reachable", "ops").confirm("namespace-exists", "ops");
        let report = list.run(Phase::Pre, &confirmations).await;
        assert!(!report.is_go());
        let blockers: Vec<_> = report.blockers().iter().map(|i| i.id.as_str()).collect();
        assert_eq!(blockers, ["capacity"]);
        assert_eq!(report.items[2].status, ItemStatus::Passed("docker.io/library/web:1 exists".into()));
        assert!(matches!(&report.items[4].status, ItemStatus::Failed(d) if d.contains("timed out")));

        let post = list.run(Phase::Post, &Confirmations::default()).await;
        assert_eq!(post.items.len(), 3);
        assert!(post.items.iter().all(|i| i.status == ItemStatus::AwaitingConfirmation));
        let json = serde_json::to_value(&post).unwrap();
        assert_eq!(json["items"][0]["status"]["status"], "awaiting_confirmation");
    }
}
