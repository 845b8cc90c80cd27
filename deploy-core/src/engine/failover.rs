//! Failover and fail-back through the engine: a [`FailoverPlan`] run by the
//! [`FailoverDriver`]'s steps under the application's lock, with its deployment
//! record (kind failover or fail-back, its steps, its measured recovery) in the
//! engine's history store, its events and its notifications.
//!
//! Why through the engine: a failover and a rollout of the same application must
//! never run at once (a rollout scaling the primary while the failover scales it
//! down would fight it), and an operator reading the history after an incident
//! must find the failover next to the rollouts, with the time it took to recover.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Acquired, DecisionKind, RolloutEngine, RolloutError, RolloutEvent, notify};
use crate::dr::{FailoverDriver, FailoverPlan, FailoverRecord, FailoverStep, FailoverStepRecord};
use crate::model::{
    AppId, DeploymentRecord, DeploymentStatus, Environment, RecordKind, RecoveryTargets, Release, StepOutcome,
    StepRecord, ValidationError, ValidationErrors,
};
use crate::model::{CauseKind, FailureCause};
use crate::model::{LogLevel, StrategyKind};
use crate::notify::{Notification, NotificationKind};
use crate::state::{LockLease, StateError, StateStore};

/// Which way a failover goes, for its record: away from the primary, or back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FailoverDirection {
    /// From the primary to the standby (the disaster-recovery site).
    #[default]
    Failover,
    /// Back to the primary after a failover.
    FailBack,
}

/// One failover (or fail-back) for [`RolloutEngine::failover`] to carry out.
///
/// ```
/// # use std::sync::Arc;
/// # use deploy_core::dr::{FailoverDriver, FailoverPlan, TrafficSwitch};
/// # use deploy_core::engine::{FailoverDirection, FailoverRequest};
/// # use deploy_core::model::{AppId, Environment, EnvironmentProfile, ImageRef, Name, Namespace, Release, Version};
/// # struct Dns;
/// # #[async_trait::async_trait]
/// # impl TrafficSwitch for Dns {
/// #     async fn switch_to(&self, _: &str) -> Result<(), deploy_core::error::BoxError> { Ok(()) }
/// #     async fn current(&self) -> Result<Option<String>, deploy_core::error::BoxError> { Ok(None) }
/// # }
/// let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
/// let release = Release::new(Version::new("1.0.0").unwrap(), ImageRef::parse("web:1.0.0").unwrap());
/// // The driver holds the sites (their platforms and specs), the switch and the checks.
/// let driver = Arc::new(FailoverDriver::new([], Arc::new(Dns)));
/// let plan = FailoverPlan::failover("eu", "us", 3, false);
/// let targets = EnvironmentProfile::preset(Environment::DisasterRecovery).recovery;
/// let back = FailoverRequest::new(app, driver, plan.fail_back(3, true), release).targets(targets).fail_back();
/// assert_eq!(back.direction, FailoverDirection::FailBack);
/// assert_eq!((back.plan.from.as_str(), back.plan.to.as_str()), ("us", "eu"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FailoverRequest {
    /// The application whose lock the failover takes and under which it is
    /// recorded. The sites' own applications (when their namespaces differ) are
    /// locked too.
    pub app: AppId,
    /// The sites, the traffic switch and the health checks; its steps run the plan.
    pub driver: Arc<FailoverDriver>,
    /// What to do.
    pub plan: FailoverPlan,
    /// The release the sites run.
    pub release: Release,
    /// The recovery objectives the measured time to recover is held against
    /// (usually the disaster-recovery profile's).
    pub targets: Option<RecoveryTargets>,
    /// The environment, for the record (default production).
    pub environment: Environment,
    /// Failover or fail-back, for the record (default failover).
    pub direction: FailoverDirection,
    /// Where the failover's events go, if anywhere.
    pub events: Option<mpsc::UnboundedSender<RolloutEvent>>,
}

impl FailoverRequest {
    /// A failover of `app` by `plan`, with `release` on the sites it scales up.
    pub fn new(app: AppId, driver: Arc<FailoverDriver>, plan: FailoverPlan, release: Release) -> Self {
        Self {
            app,
            driver,
            plan,
            release,
            targets: None,
            environment: Environment::Production,
            direction: FailoverDirection::Failover,
            events: None,
        }
    }

    /// Sets the recovery objectives.
    #[must_use]
    pub fn targets(mut self, targets: Option<RecoveryTargets>) -> Self {
        self.targets = targets;
        self
    }

    /// Sets the environment.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// Records it as a fail-back.
    #[must_use]
    pub fn fail_back(mut self) -> Self {
        self.direction = FailoverDirection::FailBack;
        self
    }

    /// Sends its events to `events`.
    #[must_use]
    pub fn events(mut self, events: mpsc::UnboundedSender<RolloutEvent>) -> Self {
        self.events = Some(events);
        self
    }
}

/// How a failover ended, when the engine could carry it to an end. A failover
/// whose step failed is not an error: it is a report with status `Failed`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FailoverReport {
    /// `Succeeded`, or `Failed` when a step failed.
    pub status: DeploymentStatus,
    /// Why it failed: the step and its reason, and where the traffic is.
    pub cause: Option<FailureCause>,
    /// The deployment record, as stored in the history store.
    pub record: DeploymentRecord,
    /// The driver's view: the sites, the steps and the measured recovery.
    pub failover: FailoverRecord,
}

impl RolloutEngine {
    /// Runs `request`'s failover plan under the application's lock and records it.
    ///
    /// Takes the lock of `request.app` and of the applications of the plan's two
    /// sites from the engine's state store (a failover and a rollout of the same
    /// application never run at once; the crash takeovers of
    /// [`RolloutEngine::resume`] apply), records the failover as started, runs the
    /// plan's steps with the driver (renewing the leases while a step waits, and
    /// stopping before the next change once a lease may lapse), and stores the
    /// record: kind [`RecordKind::Failover`] or [`RecordKind::FailBack`], every
    /// step, and the measured [`Recovery`](crate::model::Recovery) (from the first
    /// step until the traffic reached the verified site) against the RTO.
    ///
    /// A step that fails ends the failover with a report whose status is `Failed`
    /// and whose cause names the step and where the traffic is: before the switch
    /// it stays where it was (the site that was scaled up is left running, for a
    /// retry or for people to look at).
    ///
    /// Fails, having changed nothing, with [`RolloutError::Invalid`] for a plan the
    /// driver cannot run (every problem listed) and [`RolloutError::Locked`] when a
    /// rollout (or another failover) holds a lock, naming its holder; with
    /// [`RolloutError::LockLost`] when a lease was lost mid-way (the record says
    /// where it stopped), and [`RolloutError::History`] when the history store
    /// refused the record.
    #[tracing::instrument(skip_all, fields(deploy.app = %request.app, deploy.failover.from = %request.plan.from, deploy.failover.to = %request.plan.to, release.version = %request.release.version), err)]
    pub async fn failover(&self, request: FailoverRequest) -> Result<FailoverReport, RolloutError> {
        let app = request.app.clone();
        let plan = &request.plan;
        if let Err(problems) = request.driver.check(plan) {
            let mut errors = ValidationErrors::new();
            for problem in problems {
                errors.push(ValidationError::new("failover plan", format!("{} -> {}", plan.from, plan.to), problem));
            }
            return Err(RolloutError::Invalid { app, errors });
        }
        let mut apps = vec![app.clone()];
        for site in [&plan.from, &plan.to] {
            if let Some(site_app) = request.driver.site_app(site)
                && !apps.contains(&site_app)
            {
                apps.push(site_app);
            }
        }
        let mut leases = Leases::new(Arc::clone(&self.inner.state), self.inner.config.lock_ttl);
        let mut notes = Vec::new();
        for locked in &apps {
            match self.lock(locked).await {
                Ok(acquired) => {
                    notes.extend(acquired.takeover.clone());
                    leases.push(acquired);
                }
                Err(e) => {
                    leases.release().await;
                    return Err(e);
                }
            }
        }
        for locked in &apps {
            // A rollout that was interrupted stays as it was saved; say so.
            match self.inner.state.load(locked).await {
                Ok(Some(saved)) => notes.push(format!(
                    "{locked} has an unfinished rollout {} saved; the failover neither resumes nor changes it",
                    saved.value.record.id
                )),
                Ok(None) => {}
                Err(e) => notes.push(format!("could not read the saved progress of {locked}: {e}")),
            }
        }
        let result = self.run_failover(&request, &mut leases, notes).await;
        leases.release().await;
        result
    }

    async fn run_failover(
        &self,
        request: &FailoverRequest,
        leases: &mut Leases,
        notes: Vec<String>,
    ) -> Result<FailoverReport, RolloutError> {
        let (plan, driver, release) = (&request.plan, &request.driver, &request.release);
        let events = |event: RolloutEvent| {
            if let Some(tx) = &request.events {
                let _ = tx.send(event);
            }
        };
        let (kind, label) = match request.direction {
            FailoverDirection::Failover => {
                (RecordKind::Failover { from: plan.from.clone(), to: plan.to.clone() }, StrategyKind::Failover)
            }
            FailoverDirection::FailBack => {
                (RecordKind::FailBack { from: plan.from.clone(), to: plan.to.clone() }, StrategyKind::FailBack)
            }
        };
        let mut record = DeploymentRecord::new(
            request.app.clone(),
            request.environment,
            Some(release.clone()),
            release.clone(),
            label,
        );
        record.kind = kind;
        record.start();
        let opening = format!(
            "{label} {} of {} from {} to {} with {}: {} steps",
            record.id,
            request.app,
            plan.from,
            plan.to,
            release.version,
            plan.steps.len()
        );
        record.log(LogLevel::Info, opening.clone());
        events(RolloutEvent::Decision { kind: DecisionKind::from(opening) });
        for note in notes {
            tracing::warn!(decision = %note);
            record.log(LogLevel::Warn, note.clone());
            events(RolloutEvent::Decision { kind: DecisionKind::from(note) });
        }
        self.store_record(&record).await?;
        if let Some(notifier) = &self.inner.notifier {
            notify::deliver(notifier.as_ref(), &notification(&record, None, NotificationKind::DeploymentStarted)).await;
        }

        let started = Instant::now();
        let mut failover = FailoverRecord {
            from: plan.from.clone(),
            to: plan.to.clone(),
            started_at: record.started_at.unwrap_or_else(Timestamp::now),
            finished_at: None,
            steps: Vec::new(),
            time_to_recover: None,
            targets: request.targets,
        };
        let mut cause = None;
        let mut lost = None;
        for (index, step) in plan.steps.iter().enumerate() {
            let description = step.to_string();
            let (step_started_at, step_started) = (Timestamp::now(), Instant::now());
            // Fencing: no change once a lease may lapse.
            let result = match leases.check() {
                Ok(()) => {
                    events(RolloutEvent::StepStarted { index, description: description.clone() });
                    leases.keep_during(driver.execute(step, release)).await
                }
                Err(e) => Err(e),
            };
            let (outcome, details) = match result {
                Ok(Ok(details)) => (StepOutcome::Succeeded, details),
                Ok(Err(reason)) => {
                    let where_traffic = match (&failover.time_to_recover, step) {
                        (Some(_), _) => format!("the traffic serves from {}", plan.to),
                        // The switch may have moved it without reading it back.
                        (None, FailoverStep::SwitchTraffic { .. }) => {
                            format!("the switch did not read back {}: check which site the traffic reaches", plan.to)
                        }
                        (None, _) => format!("the traffic stays on {}", plan.from),
                    };
                    let message = format!("{reason}; {where_traffic}");
                    cause = Some(FailureCause::new(cause_kind(step), Some(index), message));
                    (StepOutcome::Failed(reason), Vec::new())
                }
                Err(e) => {
                    let traffic = if failover.time_to_recover.is_some() { &plan.to } else { &plan.from };
                    let message = format!(
                        "{e}; stopped this step's change (it may have begun); the traffic was last seen on {traffic}"
                    );
                    cause = Some(FailureCause::new(CauseKind::StateStore, Some(index), message.clone()));
                    lost = Some(e);
                    (StepOutcome::Failed(message), Vec::new())
                }
            };
            let mut step_record =
                StepRecord::new(index, description.clone(), step_started_at, Timestamp::now(), outcome.clone());
            step_record.details = details.clone();
            record.steps.push(step_record);
            events(RolloutEvent::StepFinished { index, description: description.clone(), outcome: outcome.clone() });
            if outcome != StepOutcome::Succeeded {
                break;
            }
            failover.steps.push(FailoverStepRecord { description, took: step_started.elapsed(), details });
            if matches!(step, FailoverStep::SwitchTraffic { site } if *site == plan.to) {
                let took = started.elapsed();
                failover.time_to_recover = Some(took);
                let message = format!("the traffic reached {} after {:.3} s", plan.to, took.as_secs_f64());
                record.log(LogLevel::Info, message.clone());
                events(RolloutEvent::Decision { kind: DecisionKind::from(message) });
            }
        }
        failover.finished_at = Some(Timestamp::now());
        record.recovery = failover.recovery();
        if let Some(recovery) = &record.recovery
            && let (Some(rto), Some(false)) = (recovery.rto, recovery.met)
        {
            record.log(
                LogLevel::Warn,
                format!("recovery took {:?}, longer than the RTO of {rto}", recovery.time_to_recover),
            );
        }
        let status = if cause.is_some() { DeploymentStatus::Failed } else { DeploymentStatus::Succeeded };
        if let Some(cause) = &cause {
            record.log(LogLevel::Error, cause.to_string());
        }
        record.finish(status, cause.clone());
        let stored = self.store_record(&record).await;
        events(RolloutEvent::Finished { status, cause: cause.clone() });
        if let Some(lost) = lost {
            return Err(lost);
        }
        stored?;
        if let Some(notifier) = &self.inner.notifier {
            let kind = if status == DeploymentStatus::Succeeded {
                NotificationKind::DeploymentSucceeded
            } else {
                NotificationKind::DeploymentFailed
            };
            notify::deliver(notifier.as_ref(), &notification(&record, cause.as_ref(), kind)).await;
        }
        Ok(FailoverReport { status, cause, record, failover })
    }

    /// Stores `record`, retrying retryable failures by the engine's policy.
    async fn store_record(&self, record: &DeploymentRecord) -> Result<(), RolloutError> {
        let policy = self.inner.config.retry;
        let mut tries = 1;
        loop {
            match self.inner.history.record(record).await {
                Ok(()) => return Ok(()),
                Err(e) if crate::error::Classify::is_retryable(&e) && tries < policy.attempts => {
                    tracing::warn!(error = %e, "could not store the failover record; retrying");
                    tokio::time::sleep(policy.backoff(tries)).await;
                    tries += 1;
                }
                Err(e) => return Err(RolloutError::History(e)),
            }
        }
    }
}

/// The cause kind of a failed step.
fn cause_kind(step: &FailoverStep) -> CauseKind {
    match step {
        FailoverStep::WaitReady { .. } => CauseKind::ReadinessDeadline,
        FailoverStep::Verify { .. } => CauseKind::HealthCheckFailed,
        FailoverStep::SwitchTraffic { .. } => CauseKind::Router,
        _ => CauseKind::Platform,
    }
}

/// A failover's notification: the record's facts, the sites and the recovery. It
/// names no `from` release, so a CDEvents receiver reads a success as the service
/// deployed to the site's environment, not as an upgrade.
fn notification(record: &DeploymentRecord, cause: Option<&FailureCause>, kind: NotificationKind) -> Notification {
    let (operation, from, to) = match &record.kind {
        RecordKind::FailBack { from, to } => ("fail-back", from.as_str(), to.as_str()),
        RecordKind::Failover { from, to } => ("failover", from.as_str(), to.as_str()),
        _ => ("failover", "", ""),
    };
    let (title, message) = match kind {
        NotificationKind::DeploymentStarted => (
            format!("{} {operation} from {from} to {to} started", record.app),
            format!("{operation} of {} {} from {from} to {to}", record.app, record.to.version),
        ),
        NotificationKind::DeploymentSucceeded => {
            (format!("{} {operation} to {to} done", record.app), format!("{} serves from {to}", record.app))
        }
        _ => {
            (format!("{} {operation} to {to} failed", record.app), cause.map_or_else(String::new, ToString::to_string))
        }
    };
    let mut n = Notification::new(kind, title, message)
        .app(record.app.clone())
        .environment(record.environment)
        .field("deployment", record.id.to_string())
        .field("strategy", record.strategy.as_str())
        .field("operation", operation)
        .field("from_site", from)
        .field("to_site", to)
        .field("version", record.to.version.to_string())
        .field("image", record.to.image.to_string());
    if let Some(recovery) = &record.recovery {
        n = n.field("time_to_recover_seconds", format!("{:.3}", recovery.time_to_recover.as_secs_f64()));
        if let Some(met) = recovery.met {
            n = n.field("met_rto", met.to_string());
        }
    }
    n
}

/// The share of a lease a driver may use after a renewal was sent (as the
/// rollout driver: client-go's renew deadline against its lease duration).
fn safe_part(ttl: Duration) -> Duration {
    ttl.saturating_mul(2) / 3
}

/// The leases a failover holds, renewed every third of their ttl while a step
/// waits; a lease that could not be renewed before two thirds of it passed stops
/// the failover before its next change.
struct Leases {
    store: Arc<dyn StateStore>,
    ttl: Duration,
    held: Vec<Held>,
    next_renewal: Instant,
}

struct Held {
    lease: LockLease,
    safe_until: Instant,
}

impl Leases {
    fn new(store: Arc<dyn StateStore>, ttl: Duration) -> Self {
        Self { store, ttl, held: Vec::new(), next_renewal: Instant::now() + ttl / 3 }
    }

    fn push(&mut self, acquired: Acquired) {
        let safe_until = acquired.sent + safe_part(self.ttl);
        self.next_renewal = self.next_renewal.min(acquired.sent + self.ttl / 3);
        self.held.push(Held { lease: acquired.lease, safe_until });
    }

    /// `Ok` while every lease is safe to act under.
    fn check(&self) -> Result<(), RolloutError> {
        let now = Instant::now();
        match self.held.iter().find(|h| now >= h.safe_until) {
            Some(h) => Err(RolloutError::LockLost {
                app: h.lease.app.clone(),
                holder: "unknown".to_owned(),
                reason: "the lease could not be renewed in time and may lapse".to_owned(),
            }),
            None => Ok(()),
        }
    }

    async fn renew(&mut self) -> Result<(), RolloutError> {
        self.check()?;
        let mut failed = false;
        for held in &mut self.held {
            let sent = Instant::now();
            let renewal = tokio::time::timeout(
                held.safe_until.saturating_duration_since(sent),
                self.store.renew_lock(&held.lease, self.ttl),
            );
            match renewal.await {
                Ok(Ok(lease)) => {
                    held.lease = lease;
                    held.safe_until = sent + safe_part(self.ttl);
                }
                Ok(Err(StateError::LockLost { holder, .. })) => {
                    return Err(RolloutError::LockLost {
                        app: held.lease.app.clone(),
                        holder,
                        reason: "another holder has the lease".to_owned(),
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not renew the failover's lock; trying again soon");
                    failed = true;
                }
                Err(_) => {
                    tracing::warn!("renewing the failover's lock did not answer in time");
                    failed = true;
                }
            }
        }
        let now = Instant::now();
        self.next_renewal = if failed { now + self.ttl / 10 } else { now + self.ttl / 3 };
        self.check()
    }

    /// Runs `fut`, renewing the leases when due; a lease lost drops `fut` (its
    /// change stops) and returns the error.
    async fn keep_during<T>(&mut self, fut: impl Future<Output = T>) -> Result<T, RolloutError> {
        let mut fut = pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                () = tokio::time::sleep_until(self.next_renewal) => self.renew().await?,
            }
        }
    }

    async fn release(&mut self) {
        for held in self.held.drain(..) {
            if let Err(e) = self.store.release_lock(&held.lease).await {
                tracing::warn!(error = %e, app = %held.lease.app, "could not release the failover's lock; it lapses with its lease");
            }
        }
    }
}
