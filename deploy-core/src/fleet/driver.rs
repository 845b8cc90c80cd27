//! The fleet driver: waves in order, each wave's targets concurrently within the
//! limit, stop-the-line and fleet rollback, every action journaled first.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::{RolloutError, RolloutReport};
use crate::error::Classify;
use crate::model::{AppId, DeploymentId, ValidationError, ValidationErrors};
use crate::state::{LockLease, LockRequest, StateError, StateStore};

use super::events::FleetEvent;
use super::journal::{self, FleetPhase, FleetRequest, Journal, JournalDoc, RunStep};
use super::plan::{FleetPlan, FleetTarget};
use super::record::{FleetRecord, FleetStatus, TargetRun};
use super::rollback;
use super::targets::{self, Found, Guarded};
use super::waves::Gate;
use super::{FleetError, WaveCheck};

/// How the driver behaves; the defaults suit fleets of clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetConfig {
    /// Who holds the fleet's lease (a pod or process name), for people reading it.
    pub holder: String,
    /// The fleet lease's duration; renewed every third of it. A driver that could
    /// not renew it for two thirds of it stops; another takes it over only after
    /// watching it unchanged for all of it.
    pub lease_ttl: Duration,
    /// How often the driver reads control requests from the journal.
    pub control_interval: Duration,
    /// How long to wait for a target's lock that another holder has (at least
    /// two of that target's lease durations, so that a dead driver's lease is
    /// taken over); past it the target is refused and the line stops.
    pub lock_wait: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            holder: format!("deploy-rs-fleet-{}", DeploymentId::generate()),
            lease_ttl: Duration::from_secs(30),
            control_interval: Duration::from_secs(5),
            lock_wait: Duration::from_secs(5 * 60),
        }
    }
}

impl FleetConfig {
    /// Sets the holder's name.
    #[must_use]
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Sets the fleet lease's duration.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets how often control requests are read.
    #[must_use]
    pub fn control_interval(mut self, interval: Duration) -> Self {
        self.control_interval = interval;
        self
    }

    /// Sets how long to wait for a target's lock.
    #[must_use]
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }
}

/// Runs [`FleetPlan`]s, journaling in a [`StateStore`]; see the [module](super).
///
/// [`FleetDriver::run`] is an ordinary future: dropping it is a crash (the
/// target rollouts it runs stop too, as they would with their process), and
/// another driver on the same stores finishes the job.
pub struct FleetDriver {
    store: Arc<dyn StateStore>,
    config: FleetConfig,
    checks: BTreeMap<String, Arc<dyn WaveCheck>>,
    events: Option<mpsc::UnboundedSender<FleetEvent>>,
}

impl fmt::Debug for FleetDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetDriver")
            .field("config", &self.config)
            .field("checks", &self.checks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What the control requests read just now ask for.
#[derive(Default)]
pub(crate) struct Asked {
    pub(crate) abort: Option<String>,
    pub(crate) promoted: Option<usize>,
}

impl FleetDriver {
    /// A driver whose journal lives in `store` (the fleet's own store, or one of
    /// its targets').
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store, config: FleetConfig::default(), checks: BTreeMap::new(), events: None }
    }

    /// Sets the configuration.
    #[must_use]
    pub fn config(mut self, config: FleetConfig) -> Self {
        self.config = config;
        self
    }

    /// Registers a [`WaveCheck`] for [`Gate::Check`] gates named `name`.
    #[must_use]
    pub fn check(mut self, name: impl Into<String>, check: Arc<dyn WaveCheck>) -> Self {
        self.checks.insert(name.into(), check);
        self
    }

    /// The stream of [`FleetEvent`]s of the runs to come (one receiver per
    /// driver; a new call replaces it).
    pub fn events(&mut self) -> mpsc::UnboundedReceiver<FleetEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(tx);
        rx
    }

    /// Every problem that would stop `plan` from running on this driver (gates
    /// naming checks it does not have); the plan itself was validated when built.
    pub fn validate(&self, plan: &FleetPlan) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        for (i, wave) in plan.waves.iter().enumerate() {
            if let Gate::Check { name } = &wave.gate
                && !self.checks.contains_key(name)
            {
                errors.push(ValidationError::new(
                    format!("wave {} gate", i + 1),
                    name.clone(),
                    "no wave check of this name is registered with the driver",
                ));
            }
        }
        errors.into_result(())
    }

    pub(crate) fn lock_wait(&self) -> Duration {
        self.config.lock_wait
    }

    pub(crate) fn emit(&self, event: FleetEvent) {
        tracing::info!(fleet.event = %event);
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// Runs `plan`, or resumes its journal when a driver that stopped left one,
    /// and returns the fleet record.
    ///
    /// - A journal of the same plan that ended: its record, nothing runs again.
    /// - A journal of the same plan that did not end: resumed (after taking over
    ///   the dead driver's lease, which takes its ttl), never deploying a target
    ///   twice; a journal that was rolling back only finishes its rollback.
    /// - An unfinished journal of another plan: [`FleetError::Unfinished`].
    #[tracing::instrument(skip_all, fields(fleet = %plan.fleet, release.version = %plan.release.version), err)]
    pub async fn run(&self, plan: &FleetPlan) -> Result<FleetRecord, FleetError> {
        self.validate(plan).map_err(|errors| FleetError::Invalid { fleet: plan.fleet.clone(), errors })?;
        let lease = Arc::new(Mutex::new(self.acquire(&plan.fleet).await?));
        let result = tokio::select! {
            result = self.drive(plan, lease_token(&lease)) => result,
            lost = self.keep_lease(Arc::clone(&lease), &plan.fleet) => Err(lost),
        };
        let held = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let _ = self.store.release_lock(&held).await;
        result
    }

    /// Takes the fleet's lease: a free one at once, a dead driver's after seeing
    /// it unchanged for its ttl; a lease that is renewed meanwhile is a live
    /// driver's: [`FleetError::Locked`].
    async fn acquire(&self, fleet: &AppId) -> Result<LockLease, FleetError> {
        let request = LockRequest::new(&self.config.holder, self.config.lease_ttl);
        let mut observed: Option<(LockLease, Instant)> = None;
        for _ in 0..64 {
            match self.store.acquire_lock(fleet, &request).await {
                Ok(lease) => return Ok(lease),
                Err(StateError::LockHeld { .. }) => {}
                Err(e) if e.is_retryable() => {
                    if let Ok(Some(stored)) = self.store.read_lock(fleet).await
                        && stored.token == request.token
                    {
                        return Ok(stored);
                    }
                    tokio::time::sleep(self.config.lease_ttl / 8).await;
                    continue;
                }
                Err(e) => return Err(FleetError::store(fleet, e)),
            }
            let Some(current) = self.store.read_lock(fleet).await.map_err(|e| FleetError::store(fleet, e))? else {
                continue;
            };
            match &observed {
                Some((seen, since)) if seen.same_record(&current) => {
                    if since.elapsed() >= current.ttl {
                        let take = request.clone().take_over(current);
                        let lease =
                            self.store.acquire_lock(fleet, &take).await.map_err(|e| FleetError::store(fleet, e))?;
                        tracing::warn!(decision = "took over the fleet lease of a driver that stopped renewing it");
                        return Ok(lease);
                    }
                }
                Some(_) => return Err(FleetError::Locked { fleet: fleet.clone(), holder: current.holder }),
                None => observed = Some((current, Instant::now())),
            }
            tokio::time::sleep(self.config.lease_ttl / 8).await;
        }
        Err(FleetError::Locked { fleet: fleet.clone(), holder: "unknown".into() })
    }

    /// Renews the lease every third of its ttl; returns when it is lost or may
    /// lapse, which stops the run before another driver can take over.
    async fn keep_lease(&self, lease: Arc<Mutex<LockLease>>, fleet: &AppId) -> FleetError {
        let ttl = self.config.lease_ttl;
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(ttl / 3).await;
            let current = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
            match self.store.renew_lock(&current, ttl).await {
                Ok(new) => {
                    *lease.lock().unwrap_or_else(PoisonError::into_inner) = new;
                    renewed = Instant::now();
                }
                Err(StateError::LockLost { holder, .. }) => {
                    return FleetError::LostFleet { fleet: fleet.clone(), reason: format!("lease taken by {holder}") };
                }
                Err(e) if renewed.elapsed() >= ttl * 2 / 3 => {
                    return FleetError::LostFleet {
                        fleet: fleet.clone(),
                        reason: format!("could not renew the lease for two thirds of its ttl: {e}"),
                    };
                }
                Err(_) => {}
            }
        }
    }

    async fn drive(&self, plan: &FleetPlan, token: crate::state::LeaseToken) -> Result<FleetRecord, FleetError> {
        let fleet = &plan.fleet;
        let document = plan.document();
        let digest = journal::digest(&document)?;
        let loaded = journal::load(self.store.as_ref(), fleet).await?;
        let (mut journal, resumed) = match loaded {
            Some((doc, _)) if doc.final_record.is_some() && doc.plan.digest == digest => return Ok(doc.record()),
            Some((doc, revision)) if doc.is_finished() && doc.plan.digest != digest => {
                let _ = doc;
                (Journal::new(Arc::clone(&self.store), JournalDoc::new(document)?, Some(revision), token), false)
            }
            Some((doc, revision)) if doc.plan.digest == digest => {
                (Journal::new(Arc::clone(&self.store), doc, Some(revision), token), true)
            }
            Some((doc, _)) => {
                return Err(FleetError::Unfinished { fleet: fleet.clone(), release: doc.release.version.to_string() });
            }
            None => (Journal::new(Arc::clone(&self.store), JournalDoc::new(document)?, None, token), false),
        };
        let what = if resumed { "resumed by" } else { "started by" };
        journal.doc.log.push(format!("{what} {}", self.config.holder));
        journal.commit().await?;
        self.emit(FleetEvent::Started {
            fleet: fleet.to_string(),
            release: plan.release.version.to_string(),
            waves: plan.waves.len(),
            resumed,
        });
        loop {
            match journal.doc.phase.clone() {
                FleetPhase::Finished { .. } => break,
                FleetPhase::RollingBack { wave, cause } => {
                    let clean = rollback::roll_back(self, plan, &mut journal, wave, &cause).await?;
                    let status = if clean { FleetStatus::RolledBack } else { FleetStatus::Failed };
                    journal.doc.phase = FleetPhase::Finished { status };
                    journal.doc.finished_at = Some(Timestamp::now());
                    journal.doc.log.push(format!("stopped: {cause}"));
                    journal.commit().await?;
                    self.emit(FleetEvent::Finished { status });
                }
                FleetPhase::Running if journal.doc.wave >= plan.waves.len() => {
                    journal.doc.phase = FleetPhase::Finished { status: FleetStatus::Succeeded };
                    journal.doc.finished_at = Some(Timestamp::now());
                    journal.commit().await?;
                    self.emit(FleetEvent::Finished { status: FleetStatus::Succeeded });
                }
                FleetPhase::Running => {
                    let wave = journal.doc.wave;
                    let mut stop = self.run_wave(plan, &mut journal, wave).await?;
                    if stop.is_none() {
                        stop = self.pass_gate(plan, &mut journal, wave).await?;
                    }
                    match stop {
                        Some(cause) => {
                            journal.doc.phase = FleetPhase::RollingBack { wave, cause: cause.clone() };
                            journal.doc.awaiting_approval = None;
                            journal.commit().await?;
                            self.emit(FleetEvent::Stopped { wave, cause });
                        }
                        None => {
                            journal.doc.waves[wave].gate_passed_at = Some(Timestamp::now());
                            journal.doc.awaiting_approval = None;
                            journal.doc.wave = wave + 1;
                            journal.commit().await?;
                            self.emit(FleetEvent::GatePassed { wave, gate: plan.waves[wave].gate.clone() });
                        }
                    }
                }
            }
        }
        if journal.doc.final_record.is_none() {
            let record = complete(plan, journal.doc.record()).await;
            journal.doc.final_record = Some(record);
            journal.commit().await?;
        }
        Ok(journal.doc.record())
    }

    /// Acts on the control requests stored since the last read.
    pub(crate) async fn read_requests(&self, journal: &mut Journal) -> Result<Asked, FleetError> {
        journal.refresh_requests().await?;
        let pending: Vec<_> =
            journal.doc.requests.iter().filter(|r| r.id > journal.doc.requests_handled).cloned().collect();
        let mut asked = Asked::default();
        if pending.is_empty() {
            return Ok(asked);
        }
        for r in pending {
            journal.doc.requests_handled = r.id;
            let note = match r.request {
                FleetRequest::Pause => {
                    journal.doc.paused = true;
                    self.emit(FleetEvent::Paused { paused: true });
                    "paused by a control request".to_owned()
                }
                FleetRequest::Resume => {
                    journal.doc.paused = false;
                    self.emit(FleetEvent::Paused { paused: false });
                    "resumed by a control request".to_owned()
                }
                FleetRequest::Abort { reason } => {
                    let note = format!("aborted by a control request: {reason}");
                    asked.abort = Some(note.clone());
                    note
                }
                FleetRequest::Promote { wave } if journal.doc.awaiting_approval == Some(wave) => {
                    asked.promoted = Some(wave);
                    format!("gate after wave {} promoted by a control request", wave + 1)
                }
                FleetRequest::Promote { wave } => {
                    format!("ignored a promotion of the gate after wave {}: it does not wait", wave + 1)
                }
            };
            journal.doc.log.push(note);
        }
        journal.commit().await?;
        Ok(asked)
    }

    /// Runs wave `w`'s targets; returns why the line stopped, if it did.
    async fn run_wave(&self, plan: &FleetPlan, journal: &mut Journal, w: usize) -> Result<Option<String>, FleetError> {
        let wave = &plan.waves[w];
        if journal.doc.waves[w].started_at.is_none() {
            journal.doc.waves[w].started_at = Some(Timestamp::now());
            journal.commit().await?;
            self.emit(FleetEvent::WaveStarted { wave: w, targets: wave.targets.clone() });
        }
        let mut running: FuturesUnordered<BoxFuture<'static, (String, Result<RolloutReport, RolloutError>)>> =
            FuturesUnordered::new();
        let mut stop: Option<String> = None;
        let mut queue = VecDeque::new();
        // A driver that died may have left rollouts announced: settle them first.
        for name in &wave.targets {
            let Some(target) = plan.target(name) else { continue };
            let step = journal.doc.targets.get(name).map(|t| t.forward.clone()).unwrap_or_default();
            match step {
                RunStep::NotStarted => queue.push_back(name.clone()),
                RunStep::Starting { at } | RunStep::Running { since: at, .. } => {
                    match targets::find(target, &plan.release.version, at).await {
                        Ok(Found::NotStarted) => queue.push_back(name.clone()),
                        Ok(Found::InProgress) => match targets::resume(target, self.config.lock_wait).await {
                            Ok(handle) => {
                                let guarded = Guarded::new(handle);
                                self.set_forward(journal, name, running_step(guarded.deployment(), at)).await?;
                                running.push(watch(name.clone(), guarded));
                            }
                            Err(e) => stop = stop.or(Some(self.refuse(journal, name, &e.to_string()).await?)),
                        },
                        Ok(Found::Finished(record)) => {
                            if let Some(cause) = self.finished(journal, name, *record).await? {
                                stop = stop.or(Some(cause));
                            }
                        }
                        Ok(Found::Busy(reason)) | Err(reason) => {
                            stop = stop.or(Some(self.refuse(journal, name, &reason).await?));
                        }
                    }
                }
                RunStep::Finished { run } if run.status != crate::model::DeploymentStatus::Succeeded => {
                    stop = stop.or(Some(format!("{name}: {}", describe(&run))));
                }
                RunStep::Refused { reason } => stop = stop.or(Some(format!("{name}: refused: {reason}"))),
                RunStep::Finished { .. } => {}
            }
        }
        let mut tick = tokio::time::interval(self.config.control_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut aborted = false;
        loop {
            if stop.is_none() {
                let asked = self.read_requests(journal).await?;
                stop = asked.abort;
            }
            while stop.is_none() && !journal.doc.paused && running.len() < plan.max_concurrent {
                let Some(name) = queue.pop_front() else { break };
                let Some(target) = plan.target(&name) else { continue };
                let at = Timestamp::now();
                self.set_forward(journal, &name, RunStep::Starting { at }).await?;
                let request = target.request(&plan.release, plan.from.as_ref());
                match targets::start(target, request, self.config.lock_wait).await {
                    Ok(handle) => {
                        let guarded = Guarded::new(handle);
                        self.set_forward(journal, &name, running_step(guarded.deployment(), at)).await?;
                        running.push(watch(name, guarded));
                    }
                    Err(e) => stop = Some(self.refuse(journal, &name, &e.to_string()).await?),
                }
            }
            if let Some(reason) = &stop
                && !aborted
            {
                aborted = true;
                self.abort_running(plan, journal, w, reason).await;
            }
            if running.is_empty() && (queue.is_empty() || stop.is_some()) {
                break;
            }
            tokio::select! {
                Some((name, result)) = running.next() => match result {
                    Ok(report) => {
                        if let Some(cause) = self.finished(journal, &name, report.record).await? {
                            stop = stop.or(Some(cause));
                        }
                    }
                    Err(e) => {
                        // Its engine stopped without an end (lost its lock): the
                        // rollback settles it from its saved progress.
                        let cause = format!("{name}: its rollout stopped: {e}");
                        journal.doc.log.push(cause.clone());
                        stop = stop.or(Some(cause));
                    }
                },
                _ = tick.tick() => {}
            }
        }
        Ok(stop)
    }

    /// Asks the wave's running target rollouts to abort (they roll themselves back).
    async fn abort_running(&self, plan: &FleetPlan, journal: &Journal, w: usize, reason: &str) {
        for name in &plan.waves[w].targets {
            let open = journal.doc.targets.get(name).is_some_and(|t| matches!(t.forward, RunStep::Running { .. }));
            if let (true, Some(target)) = (open, plan.target(name)) {
                let _ = target.engine.abort(&target.spec.id(), format!("fleet stopped: {reason}")).await;
            }
        }
    }

    async fn set_forward(&self, journal: &mut Journal, name: &str, step: RunStep) -> Result<(), FleetError> {
        if let Some(t) = journal.doc.targets.get_mut(name) {
            t.forward = step.clone();
        }
        journal.commit().await?;
        if let RunStep::Running { deployment, .. } = step {
            self.emit(FleetEvent::TargetStarted { target: name.to_owned(), deployment });
        }
        Ok(())
    }

    /// Journals a target's end; returns the line's stop cause if it failed.
    async fn finished(
        &self,
        journal: &mut Journal,
        name: &str,
        record: crate::model::DeploymentRecord,
    ) -> Result<Option<String>, FleetError> {
        let run = TargetRun::of(&record);
        let cause = targets::failed(&record).then(|| format!("{name}: {}", describe(&run)));
        self.emit(FleetEvent::TargetDone { target: name.to_owned(), status: run.status, cause: run.cause.clone() });
        self.set_forward(journal, name, RunStep::Finished { run: Box::new(run) }).await?;
        Ok(cause)
    }

    async fn refuse(&self, journal: &mut Journal, name: &str, reason: &str) -> Result<String, FleetError> {
        self.set_forward(journal, name, RunStep::Refused { reason: reason.to_owned() }).await?;
        self.emit(FleetEvent::TargetDone {
            target: name.to_owned(),
            status: crate::model::DeploymentStatus::Failed,
            cause: Some(crate::model::FailureCause::unclassified(reason)),
        });
        Ok(format!("{name}: refused: {reason}"))
    }

    /// The bake time and the gate after wave `w`; returns why the line stopped.
    async fn pass_gate(&self, plan: &FleetPlan, journal: &mut Journal, w: usize) -> Result<Option<String>, FleetError> {
        let wave = &plan.waves[w];
        if !wave.bake.is_zero() {
            let started = match journal.doc.waves[w].bake_started_at {
                Some(at) => at,
                None => {
                    let now = Timestamp::now();
                    journal.doc.waves[w].bake_started_at = Some(now);
                    journal.commit().await?;
                    self.emit(FleetEvent::Baking { wave: w, seconds: wave.bake.as_secs_f64() });
                    now
                }
            };
            let elapsed = Timestamp::now().duration_since(started).unsigned_abs();
            let deadline = Instant::now() + wave.bake.saturating_sub(elapsed);
            while Instant::now() < deadline {
                let step = self.config.control_interval.min(deadline - Instant::now());
                tokio::time::sleep(step).await;
                if let Some(cause) = self.read_requests(journal).await?.abort {
                    return Ok(Some(cause));
                }
            }
        }
        let mut waiting = false;
        loop {
            let asked = self.read_requests(journal).await?;
            if let Some(cause) = asked.abort {
                return Ok(Some(cause));
            }
            let passed = match &wave.gate {
                Gate::Open => true,
                Gate::Approval => {
                    if asked.promoted == Some(w) {
                        true
                    } else {
                        if journal.doc.awaiting_approval != Some(w) {
                            journal.doc.awaiting_approval = Some(w);
                            journal.commit().await?;
                        }
                        false
                    }
                }
                Gate::Window { .. } => {
                    let hour = Timestamp::now().as_second().rem_euclid(86_400) / 3_600;
                    wave.gate.window_admits(u8::try_from(hour).unwrap_or(0))
                }
                Gate::Check { name } => {
                    let Some(check) = self.checks.get(name) else {
                        return Ok(Some(format!("gate check {name} is not registered")));
                    };
                    let record = journal.doc.record();
                    let wave_targets: Vec<_> = record.targets.into_iter().filter(|t| t.wave == w).collect();
                    match check.check(w, &wave_targets).await {
                        Ok(()) => true,
                        Err(reason) => {
                            return Ok(Some(format!("gate check {name} after wave {} failed: {reason}", w + 1)));
                        }
                    }
                }
            };
            // A paused fleet does not start its next wave.
            if passed && !journal.doc.paused {
                return Ok(None);
            }
            if !waiting {
                waiting = true;
                self.emit(FleetEvent::GateWaiting { wave: w, gate: wave.gate.clone() });
            }
            tokio::time::sleep(self.config.control_interval).await;
        }
    }
}

/// Adds every target's deployment records, read from its history store (a
/// store that fails leaves that record out and says so in the log).
async fn complete(plan: &FleetPlan, mut record: FleetRecord) -> FleetRecord {
    let mut notes = Vec::new();
    for t in &mut record.targets {
        let Some(target) = plan.target(&t.name) else { continue };
        for run in [t.forward.as_mut(), t.revert.as_mut()].into_iter().flatten() {
            match target.engine.history_store().get(&run.deployment).await {
                Ok(found) => run.record = found,
                Err(e) => notes.push(format!("{}: record {} unreadable: {e}", t.name, run.deployment)),
            }
        }
    }
    record.log.extend(notes);
    record
}

fn lease_token(lease: &Arc<Mutex<LockLease>>) -> crate::state::LeaseToken {
    lease.lock().unwrap_or_else(PoisonError::into_inner).token.clone()
}

fn running_step(deployment: &DeploymentId, since: Timestamp) -> RunStep {
    RunStep::Running { deployment: deployment.clone(), since }
}

pub(crate) fn watch(
    name: String,
    guarded: Guarded,
) -> BoxFuture<'static, (String, Result<RolloutReport, RolloutError>)> {
    Box::pin(async move { (name, guarded.finish().await) })
}

pub(crate) fn describe(record: &TargetRun) -> String {
    match &record.cause {
        Some(cause) => format!("{} ({cause})", record.status),
        None => record.status.to_string(),
    }
}

/// The target named `name` of `plan`; journals and plans are checked equal
/// before a run, so a missing one is a bug, reported as a journal error.
pub(crate) fn target<'p>(plan: &'p FleetPlan, name: &str) -> Result<&'p FleetTarget, FleetError> {
    plan.target(name).ok_or_else(|| FleetError::Journal {
        fleet: plan.fleet.clone(),
        reason: format!("the journal names target {name}, which the plan does not have"),
    })
}
