//! The fleet journal: the driver's progress, written (compare-and-swap) to a
//! [`StateStore`] before and after every action, so that another driver can pick
//! the fleet up where a dead one stopped.
//!
//! The journal is a [`RolloutState`] document of the fleet's own id whose
//! [`RolloutState::extension`] holds the fleet's progress: any store that keeps
//! rollout progress (the test kit's, a Kubernetes ConfigMap, a signed store)
//! keeps a fleet journal with the same guarantees (atomic writes, revisions,
//! fenced leases).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Classify;
use crate::model::{AppId, DeploymentId, DeploymentRecord, Environment, Release, Track, TrafficSplit};
use crate::state::{LeaseToken, Revision, RolloutState, StateError, StateStore, WriteStamp};

use super::FleetError;
use super::plan::FleetPlanDocument;
use super::record::{FleetRecord, FleetStatus, TargetRecord, TargetRun, WaveRecord};
use super::waves::WaveSpec;

/// Where one of a target's rollouts (forward, or back to the previous release) is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "step")]
pub(crate) enum RunStep {
    /// Not begun.
    #[default]
    NotStarted,
    /// The driver is about to call the engine: after a crash here, the target's
    /// own state and history stores tell whether the engine started it.
    Starting { at: Timestamp },
    /// The engine runs it.
    Running { deployment: DeploymentId, since: Timestamp },
    /// It ended so.
    Finished { run: Box<TargetRun> },
    /// The engine refused it (locked by someone else, invalid, degraded).
    Refused { reason: String },
}

impl RunStep {
    pub(crate) fn finished(&self) -> Option<&TargetRun> {
        match self {
            Self::Finished { run } => Some(run),
            _ => None,
        }
    }

    /// When the driver first set out to run it.
    pub(crate) fn since(&self) -> Option<Timestamp> {
        match self {
            Self::Starting { at } | Self::Running { since: at, .. } => Some(*at),
            _ => None,
        }
    }
}

/// A target's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetProgress {
    pub(crate) wave: usize,
    pub(crate) app: AppId,
    #[serde(default)]
    pub(crate) forward: RunStep,
    #[serde(default)]
    pub(crate) revert: RunStep,
}

/// A wave's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct WaveProgress {
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) bake_started_at: Option<Timestamp>,
    pub(crate) gate_passed_at: Option<Timestamp>,
}

/// Where the whole fleet is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub(crate) enum FleetPhase {
    /// Going forward, wave by wave.
    Running,
    /// The line stopped in `wave`; rolling back by the policy; never forward again.
    RollingBack { wave: usize, cause: String },
    /// Ended.
    Finished { status: FleetStatus },
}

/// What another process asks of a fleet, through its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "request")]
#[non_exhaustive]
pub enum FleetRequest {
    /// Start no new target rollout until resumed (running ones go on).
    Pause,
    /// Continue after a pause.
    Resume,
    /// Stop the line and roll back by the plan's policy.
    Abort {
        /// Why, for the record.
        reason: String,
    },
    /// Pass the approval gate after `wave` (from 0); only accepted while it waits.
    Promote {
        /// The wave whose gate is promoted.
        wave: usize,
    },
}

impl fmt::Display for FleetRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pause => f.write_str("pause"),
            Self::Resume => f.write_str("resume"),
            Self::Abort { reason } => write!(f, "abort ({reason})"),
            Self::Promote { wave } => write!(f, "promote the gate after wave {}", wave + 1),
        }
    }
}

/// A stored request with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredRequest {
    pub(crate) id: u64,
    pub(crate) request: FleetRequest,
    pub(crate) at: Timestamp,
}

/// The plan as the journal keeps it: its waves (for the record) and the
/// SHA-256 of the whole plan document, which a driver compares with the plan it
/// was given before it resumes a journal. Each target's own plan is not copied
/// into every journal write: a fleet of many targets would rewrite all their
/// plans at every step (the journal is written before and after every action).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JournalPlan {
    pub(crate) waves: Vec<WaveSpec>,
    pub(crate) digest: String,
}

impl JournalPlan {
    pub(crate) fn of(plan: &FleetPlanDocument) -> Result<Self, FleetError> {
        Ok(Self { waves: plan.waves.clone(), digest: digest(plan)? })
    }
}

/// The hex SHA-256 of `plan`'s JSON (struct fields in order, maps sorted: the
/// same plan gives the same digest in every process).
pub(crate) fn digest(plan: &FleetPlanDocument) -> Result<String, FleetError> {
    let json = serde_json::to_vec(plan).map_err(|e| FleetError::Journal {
        fleet: plan.fleet.clone(),
        reason: format!("cannot encode the plan: {e}"),
    })?;
    Ok(Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect())
}

/// The fleet journal document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JournalDoc {
    pub(crate) fleet: AppId,
    pub(crate) release: Release,
    pub(crate) plan: JournalPlan,
    pub(crate) started_at: Timestamp,
    pub(crate) phase: FleetPhase,
    /// The wave running now (or the last one, once every wave passed).
    pub(crate) wave: usize,
    pub(crate) waves: Vec<WaveProgress>,
    pub(crate) targets: BTreeMap<String, TargetProgress>,
    #[serde(default)]
    pub(crate) requests: Vec<StoredRequest>,
    #[serde(default)]
    pub(crate) requests_handled: u64,
    #[serde(default)]
    pub(crate) paused: bool,
    /// The gate that waits for a promotion now, if any.
    #[serde(default)]
    pub(crate) awaiting_approval: Option<usize>,
    #[serde(default)]
    pub(crate) log: Vec<String>,
    /// The complete record, with every target's deployment record, written once
    /// when the fleet rollout ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) final_record: Option<FleetRecord>,
    pub(crate) finished_at: Option<Timestamp>,
    pub(crate) written_by: Option<WriteStamp>,
}

impl JournalDoc {
    pub(crate) fn new(plan: FleetPlanDocument) -> Result<Self, FleetError> {
        let targets = plan
            .waves
            .iter()
            .enumerate()
            .flat_map(|(w, wave)| wave.targets.iter().map(move |t| (w, t)))
            .filter_map(|(w, t)| {
                let app = plan.targets.iter().find(|d| d.name == *t)?.app.clone();
                Some((
                    t.clone(),
                    TargetProgress { wave: w, app, forward: RunStep::NotStarted, revert: RunStep::NotStarted },
                ))
            })
            .collect();
        Ok(Self {
            fleet: plan.fleet.clone(),
            release: plan.release.clone(),
            waves: vec![WaveProgress::default(); plan.waves.len()],
            plan: JournalPlan::of(&plan)?,
            started_at: Timestamp::now(),
            phase: FleetPhase::Running,
            wave: 0,
            targets,
            requests: Vec::new(),
            requests_handled: 0,
            paused: false,
            awaiting_approval: None,
            log: Vec::new(),
            final_record: None,
            finished_at: None,
            written_by: None,
        })
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.phase, FleetPhase::Finished { .. })
    }

    pub(crate) fn push_request(&mut self, request: FleetRequest) -> u64 {
        let id = self.requests.iter().map(|r| r.id).max().unwrap_or(0).max(self.requests_handled) + 1;
        self.requests.push(StoredRequest { id, request, at: Timestamp::now() });
        id
    }

    /// The record this journal describes: the complete one once the rollout
    /// ended, otherwise the progress so far (without deployment records).
    pub(crate) fn record(&self) -> FleetRecord {
        if let Some(record) = &self.final_record {
            return record.clone();
        }
        let status = match &self.phase {
            FleetPhase::Finished { status } => Some(*status),
            _ => None,
        };
        let cause = match &self.phase {
            FleetPhase::RollingBack { cause, .. } => Some(cause.clone()),
            _ => self.log.iter().rev().find_map(|l| l.strip_prefix("stopped: ").map(str::to_owned)),
        };
        let waves = self
            .plan
            .waves
            .iter()
            .zip(&self.waves)
            .map(|(spec, progress)| WaveRecord {
                targets: spec.targets.clone(),
                gate: spec.gate.clone(),
                started_at: progress.started_at,
                gate_passed_at: progress.gate_passed_at,
            })
            .collect();
        let targets = self
            .plan
            .waves
            .iter()
            .flat_map(|w| w.targets.iter())
            .filter_map(|name| {
                let t = self.targets.get(name)?;
                Some(TargetRecord {
                    name: name.clone(),
                    wave: t.wave,
                    app: t.app.clone(),
                    forward: t.forward.finished().cloned(),
                    refused: match &t.forward {
                        RunStep::Refused { reason } => Some(reason.clone()),
                        _ => None,
                    },
                    revert: t.revert.finished().cloned(),
                })
            })
            .collect();
        FleetRecord {
            fleet: self.fleet.clone(),
            release: self.release.clone(),
            status,
            cause,
            started_at: self.started_at,
            finished_at: self.finished_at,
            waves,
            targets,
            log: self.log.clone(),
        }
    }

    /// The document as a rollout state of the fleet's id, for any [`StateStore`].
    pub(crate) fn encode(&self) -> Result<RolloutState, FleetError> {
        let mut record = DeploymentRecord::new(
            self.fleet.clone(),
            Environment::Production,
            None,
            self.release.clone(),
            crate::model::StrategyKind::Fleet,
        );
        record.created_at = self.started_at;
        let mut state = RolloutState::new(record, TrafficSplit::all(Track::Stable));
        state.written_by = self.written_by.clone();
        state.extension = Some(serde_json::to_value(self).map_err(|e| FleetError::Journal {
            fleet: self.fleet.clone(),
            reason: format!("cannot encode the journal: {e}"),
        })?);
        Ok(state)
    }

    /// The document in a rollout state, or why it is not a fleet journal.
    pub(crate) fn decode(fleet: &AppId, state: RolloutState) -> Result<Self, FleetError> {
        let Some(value) = state.extension else {
            return Err(FleetError::Journal {
                fleet: fleet.clone(),
                reason: "the stored document is a rollout's progress, not a fleet journal".into(),
            });
        };
        serde_json::from_value(value)
            .map_err(|e| FleetError::Journal { fleet: fleet.clone(), reason: format!("unreadable journal: {e}") })
    }
}

/// The part of a journal that [`Journal::refresh_requests`] reads.
#[derive(Deserialize)]
struct RequestsView {
    #[serde(default)]
    requests: Vec<StoredRequest>,
    written_by: Option<WriteStamp>,
}

/// Reads the journal of `fleet`, if any.
pub(crate) async fn load(store: &dyn StateStore, fleet: &AppId) -> Result<Option<(JournalDoc, Revision)>, FleetError> {
    let Some(v) = store.load(fleet).await.map_err(|e| FleetError::store(fleet, e))? else { return Ok(None) };
    Ok(Some((JournalDoc::decode(fleet, v.value)?, v.revision)))
}

/// The driver's handle on its journal: every change goes through
/// [`Journal::commit`], which merges control requests written meanwhile by other
/// processes and fails once another driver owns the journal.
pub(crate) struct Journal {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) doc: JournalDoc,
    pub(crate) revision: Option<Revision>,
    token: LeaseToken,
    /// The token of the driver that wrote the journal before this one took it
    /// over: its stamp stays on the document until this driver's first write, so
    /// a control request stored meanwhile carries it.
    previous: Option<LeaseToken>,
    sequence: u64,
}

impl Journal {
    pub(crate) fn new(
        store: Arc<dyn StateStore>,
        doc: JournalDoc,
        revision: Option<Revision>,
        token: LeaseToken,
    ) -> Self {
        let previous = doc.written_by.as_ref().map(|s| s.token.clone());
        Self { store, doc, revision, token, previous, sequence: 0 }
    }

    /// Writes the document; on a concurrent write of a control request it merges
    /// the requests and writes again. A journal another driver wrote since is
    /// never overwritten: [`FleetError::LostFleet`].
    pub(crate) async fn commit(&mut self) -> Result<(), FleetError> {
        let fleet = self.doc.fleet.clone();
        let mut tries = 0u32;
        loop {
            tries += 1;
            self.sequence += 1;
            self.doc.written_by = Some(WriteStamp::new(self.token.clone(), self.sequence));
            let state = self.doc.encode()?;
            match self.store.save(&fleet, &state, self.revision.as_ref()).await {
                Ok(revision) => {
                    self.revision = Some(revision);
                    self.previous = None;
                    return Ok(());
                }
                Err(e) => {
                    let stored = load(self.store.as_ref(), &fleet).await;
                    let retryable = e.is_retryable();
                    match stored {
                        Ok(Some((doc, revision))) => {
                            if doc.written_by == self.doc.written_by {
                                // Our write landed; its answer was lost.
                                self.revision = Some(revision);
                                self.previous = None;
                                return Ok(());
                            }
                            let writer = doc.written_by.as_ref().map(|s| &s.token);
                            // Another driver's journal (or a journal created meanwhile) is never overwritten.
                            if writer != Some(&self.token) && writer != self.previous.as_ref() {
                                return Err(FleetError::LostFleet {
                                    fleet,
                                    reason: "another driver wrote the journal".into(),
                                });
                            }
                            if !matches!(e, StateError::Conflict { .. }) && !retryable {
                                return Err(FleetError::store(&fleet, e));
                            }
                            // A control request was stored meanwhile: keep it.
                            self.doc.requests = doc.requests;
                            self.revision = Some(revision);
                        }
                        Ok(None) if self.revision.is_some() => {
                            return Err(FleetError::LostFleet { fleet, reason: "the journal was deleted".into() });
                        }
                        Ok(None) => {}
                        Err(_) if retryable => {}
                        Err(_) => return Err(FleetError::store(&fleet, e)),
                    }
                    if tries >= 8 {
                        return Err(FleetError::store(&fleet, e));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(tries))).await;
                }
            }
        }
    }

    /// Reads the requests stored by other processes since the last read (only
    /// the requests and the writer's stamp are decoded).
    pub(crate) async fn refresh_requests(&mut self) -> Result<(), FleetError> {
        let fleet = self.doc.fleet.clone();
        let Some(v) = self.store.load(&fleet).await.map_err(|e| FleetError::store(&fleet, e))? else {
            return Ok(());
        };
        let Some(extension) = v.value.extension else {
            return Err(FleetError::Journal {
                fleet,
                reason: "the stored document is a rollout's progress, not a fleet journal".into(),
            });
        };
        let view: RequestsView = serde_json::from_value(extension)
            .map_err(|e| FleetError::Journal { fleet: fleet.clone(), reason: format!("unreadable journal: {e}") })?;
        if view.written_by.as_ref().map(|s| &s.token) != Some(&self.token) {
            return Err(FleetError::LostFleet { fleet, reason: "another driver wrote the journal".into() });
        }
        self.doc.requests = view.requests;
        self.revision = Some(v.revision);
        Ok(())
    }
}
