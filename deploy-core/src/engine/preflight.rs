//! Checks the engine runs before a rollout changes anything, as a
//! [`Checklist`]: one check vocabulary for the whole suite (the Kubernetes
//! backend's quota, capacity and namespace checks are [`Check`](crate::check::Check)s too).
//!
//! Why a factory and not a fixed checklist: what to check depends on the rollout
//! (its image, how many pods it runs at once, its namespace), which only the
//! request knows.

use async_trait::async_trait;

use crate::checklist::{Checklist, ChecklistReport, Confirmations, ItemStatus, Phase};
use crate::model::{AppSpec, Release};
use crate::plan::Plan;

/// The rollout a preflight checks.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PreflightInput<'a> {
    /// The application as it will run.
    pub spec: &'a AppSpec,
    /// The release about to be rolled out.
    pub release: &'a Release,
    /// The plan that will run.
    pub plan: &'a Plan,
}

impl<'a> PreflightInput<'a> {
    /// The input for one rollout.
    pub fn new(spec: &'a AppSpec, release: &'a Release, plan: &'a Plan) -> Self {
        Self { spec, release, plan }
    }
}

/// Makes the checklist for one rollout; the engine runs its [`Phase::Pre`] items.
///
/// Manual items are never confirmed by the engine: a checklist with a manual
/// `Pre` item is always no-go here, so keep those for the caller's own gate.
#[async_trait]
pub trait Preflight: Send + Sync {
    /// The checklist for `input`.
    async fn checklist(&self, input: PreflightInput<'_>) -> Checklist;
}

/// Runs `preflight` for `input`: `Ok` with a one-line summary on go, `Err` naming
/// every blocking item on no-go.
pub(crate) async fn run(preflight: &dyn Preflight, input: PreflightInput<'_>) -> Result<String, String> {
    let report = preflight.checklist(input).await.run(Phase::Pre, &Confirmations::default()).await;
    let summary = summarize(&report);
    if report.is_go() { Ok(summary) } else { Err(summary) }
}

fn summarize(report: &ChecklistReport) -> String {
    let shown: Vec<String> = report
        .items
        .iter()
        .map(|item| {
            let (word, detail) = match &item.status {
                ItemStatus::Passed(d) => ("passed", d.as_str()),
                ItemStatus::Warning(d) => ("warned", d.as_str()),
                ItemStatus::Failed(d) => ("FAILED", d.as_str()),
                ItemStatus::Confirmed(who) => ("confirmed", who.as_str()),
                ItemStatus::AwaitingConfirmation => ("NOT CONFIRMED", "a manual item the engine cannot confirm"),
            };
            format!("{} {word}: {detail}", item.id)
        })
        .collect();
    if report.is_go() {
        format!("preflight go ({} checks): {}", report.items.len(), shown.join("; "))
    } else {
        let blockers: Vec<&str> = report.blockers().iter().map(|i| i.id.as_str()).collect();
        format!("preflight no-go, blocked by {}: {}", blockers.join(", "), shown.join("; "))
    }
}
