//! Fleet rollouts: one release in waves across many clusters and hosts, with
//! stop-the-line and fleet rollback, on top of one [`RolloutEngine`] per target.
//!
//! - A [`FleetPlan`] is data: targets (each with its own engine: platform, router,
//!   state and history stores), waves chosen by a [`WavePolicy`] (explicit lists,
//!   by label, or "1, then 10 %, then the rest"), a bake time and a [`Gate`] after
//!   each wave, a limit on concurrent target rollouts and a [`RollbackPolicy`].
//!   [`FleetPlanBuilder::build`] validates every target's rollout against its own
//!   engine and router before anything runs; the plan prints and serialises.
//! - The [`FleetDriver`] runs the waves in order, each wave's targets
//!   concurrently within the limit. A failure of any target stops the line: no
//!   target of a later wave is touched, the failed wave is rolled back (running
//!   rollouts aborted, finished ones put back on the previous release), and, by
//!   policy, the earlier waves too, latest first, each wave's targets rolled
//!   back concurrently within the same limit. It emits [`FleetEvent`]s and keeps a
//!   [`FleetRecord`] with every target's deployment record.
//! - A journal in a [`StateStore`], written before and after every action, makes
//!   it crash-safe: a driver that died is resumed by another (after watching its
//!   fenced lease unchanged for its ttl) and ends as an uninterrupted run would.
//!   A target whose start the journal announced is looked up in its own state
//!   and history stores before anything is done to it, so no target is deployed
//!   twice; each target's own lock is taken by its engine as for any rollout.
//! - [`FleetControl`]: pause, resume, abort and promote-the-gate from another
//!   process, through the journal, as [`RolloutEngine::control`] does for one
//!   rollout.
//!
//! See `docs/fleet.md` for the model and the guarantees, and the `fleet` example
//! program.
//!
//! # Example
//!
//! Three test-kit clusters, "1, then the rest", with the `testkit` feature:
//!
//! ```
//! # #[cfg(feature = "testkit")]
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use deploy_core::engine::RolloutEngine;
//! use deploy_core::fleet::{FleetDriver, FleetPlan, FleetStatus, FleetTarget, WavePolicy, WaveSize};
//! use deploy_core::model::{AppId, Name, Namespace, Track};
//! use deploy_core::strategy::{Canary, PlanInput, Strategy};
//! use deploy_core::testkit::{self, TestKit};
//!
//! let (spec, v1, v2) = testkit::sample_app(2);
//! let plan = Canary::default().plan(&PlanInput::new(spec.replicas));
//! let kits: Vec<TestKit> = (0..3).map(|_| TestKit::new()).collect();
//! let fleet = AppId::new(Namespace::new("fleets").unwrap(), Name::new("checkout").unwrap());
//! let mut builder = FleetPlan::builder(fleet, v2.clone())
//!     .from(v1.clone())
//!     .waves(WavePolicy::Progressive(vec![WaveSize::Count(1), WaveSize::Rest]));
//! for (i, kit) in kits.iter().enumerate() {
//!     kit.seed(&spec, Track::Stable, &v1);
//!     let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
//!         .router(kit.router())
//!         .build();
//!     builder = builder.target(FleetTarget::new(format!("c{i}"), Arc::new(engine), spec.clone(), plan.clone()));
//! }
//! let plan = builder.build().unwrap();
//! assert!(plan.to_string().contains("3 targets in 2 waves"));
//!
//! let journal = TestKit::new();
//! let record = FleetDriver::new(journal.state_store()).run(&plan).await.unwrap();
//! assert_eq!(record.status, Some(FleetStatus::Succeeded));
//! assert!(kits.iter().all(|k| k.snapshot(&spec.id()).tracks[&Track::Stable].version == v2.version));
//! # });
//! ```
//!
//! [`RolloutEngine`]: crate::engine::RolloutEngine
//! [`RolloutEngine::control`]: crate::engine::RolloutEngine::control
//! [`StateStore`]: crate::state::StateStore

mod control;
mod driver;
mod events;
mod journal;
mod plan;
mod record;
mod rollback;
mod targets;
mod waves;

use async_trait::async_trait;

pub use control::FleetControl;
pub use driver::{FleetConfig, FleetDriver};
pub use events::FleetEvent;
pub use journal::FleetRequest;
pub use plan::{FleetPlan, FleetPlanBuilder, FleetPlanDocument, FleetTarget, TargetDocument};
pub use record::{FleetRecord, FleetStatus, TargetRecord, TargetRun, WaveRecord};
pub use waves::{Gate, RollbackPolicy, WavePolicy, WaveSize, WaveSpec};

use crate::error::{Classify, ErrorKind};
use crate::model::{AppId, ValidationErrors};
use crate::state::StateError;

/// A check across a wave's targets, for [`Gate::Check`]: an analysis of their
/// metrics, an alert query, a synthetic test. Registered with the driver by name.
#[async_trait]
pub trait WaveCheck: Send + Sync {
    /// Judges wave `wave` (from 0) once its bake time is over, given its
    /// targets' records; `Err(reason)` stops the line. Called again after a
    /// driver crash if its verdict was not journaled yet.
    async fn check(&self, wave: usize, targets: &[TargetRecord]) -> Result<(), String>;
}

/// Why a fleet rollout could not start, resume or go on. A fleet rollout that
/// stopped the line and rolled back is not an error: it is a [`FleetRecord`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The plan is invalid.
    #[error("invalid fleet plan {fleet}: {errors}")]
    Invalid {
        /// The fleet.
        fleet: AppId,
        /// Every problem.
        errors: ValidationErrors,
    },
    /// Another driver holds the fleet's lease and keeps renewing it.
    #[error("fleet {fleet} is driven by {holder}")]
    Locked {
        /// The fleet.
        fleet: AppId,
        /// The driver that holds it.
        holder: String,
    },
    /// The journal holds an unfinished rollout of another release or plan.
    #[error("fleet {fleet} has an unfinished rollout of {release}; finish or abort it first")]
    Unfinished {
        /// The fleet.
        fleet: AppId,
        /// The release of the unfinished rollout.
        release: String,
    },
    /// The journal cannot be read or written as a fleet journal.
    #[error("journal of fleet {fleet}: {reason}")]
    Journal {
        /// The fleet.
        fleet: AppId,
        /// What is wrong.
        reason: String,
    },
    /// The journal's store failed.
    #[error("journal store of fleet {fleet} failed: {source}")]
    Store {
        /// The fleet.
        fleet: AppId,
        /// The store's error.
        #[source]
        source: Box<StateError>,
    },
    /// This driver lost the fleet (its lease, or another driver wrote the
    /// journal): it stopped without touching any target further.
    #[error("lost fleet {fleet}: {reason}")]
    LostFleet {
        /// The fleet.
        fleet: AppId,
        /// What happened.
        reason: String,
    },
    /// There is no fleet rollout in progress to control.
    #[error("fleet {fleet} has no rollout in progress")]
    NoFleet {
        /// The fleet.
        fleet: AppId,
    },
    /// A promotion was asked for while no approval gate waits.
    #[error("promote of fleet {fleet} refused: no approval gate waits ({current})")]
    PromoteRejected {
        /// The fleet.
        fleet: AppId,
        /// Where the fleet is.
        current: String,
    },
}

impl FleetError {
    pub(crate) fn store(fleet: &AppId, source: StateError) -> Self {
        Self::Store { fleet: fleet.clone(), source: Box::new(source) }
    }
}

impl Classify for FleetError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } | Self::Journal { .. } => ErrorKind::InvalidInput,
            Self::Locked { .. } | Self::Unfinished { .. } | Self::LostFleet { .. } | Self::PromoteRejected { .. } => {
                ErrorKind::Conflict
            }
            Self::NoFleet { .. } => ErrorKind::NotFound,
            Self::Store { source, .. } => source.kind(),
        }
    }
}
