//! Disaster recovery: failing an application over to another site and back, as a
//! plan that is data (like a rollout [`Plan`](crate::plan::Plan)) run by a driver
//! that measures the time to recover against the environment's RTO.
//!
//! A site is one place the application can run (a region, a cluster, a namespace),
//! with its own [`Platform`]; a [`TrafficSwitch`] says which site receives the
//! traffic (DNS, a global load balancer, an `ExternalName` Service). A failover
//! scales the standby up, waits until it is ready, verifies it with health checks,
//! switches the traffic, and then scales the old primary down or keeps it warm;
//! failing back is the same plan with the sites swapped. Traffic moves only after
//! the new site has passed every check, and a failure before the switch leaves the
//! traffic where it was.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::BoxError;
use crate::health::{HealthCheck, HealthTarget};
use crate::model::{AppSpec, Recovery, RecoveryTargets, Release, Track};
use crate::platform::{Platform, PlatformError};

/// One step of a failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
#[non_exhaustive]
pub enum FailoverStep {
    /// Runs the release on `site` with `replicas` replicas.
    ScaleUp {
        /// The site.
        site: String,
        /// How many replicas.
        replicas: u32,
    },
    /// Waits until `site` is ready.
    WaitReady {
        /// The site.
        site: String,
    },
    /// Runs every health check of the driver against `site`; one unhealthy answer
    /// stops the failover before the traffic moves.
    Verify {
        /// The site.
        site: String,
    },
    /// Sends the traffic to `site`.
    SwitchTraffic {
        /// The site.
        site: String,
    },
    /// Scales `site` to zero replicas (its objects stay, for a fail-back).
    ScaleDown {
        /// The site.
        site: String,
    },
}

impl fmt::Display for FailoverStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ScaleUp { site, replicas } => write!(f, "scale {site} up to {replicas} replicas"),
            Self::WaitReady { site } => write!(f, "wait until {site} is ready"),
            Self::Verify { site } => write!(f, "verify {site} with the health checks"),
            Self::SwitchTraffic { site } => write!(f, "switch the traffic to {site}"),
            Self::ScaleDown { site } => write!(f, "scale {site} down to zero"),
        }
    }
}

/// A failover from one site to another, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailoverPlan {
    /// The site that serves now.
    pub from: String,
    /// The site that serves afterwards.
    pub to: String,
    /// The steps, in order.
    pub steps: Vec<FailoverStep>,
}

impl FailoverPlan {
    /// The usual failover: scale `to` up to `replicas`, wait, verify, switch, and
    /// scale `from` down unless `keep_from` (a warm standby for the fail-back).
    pub fn failover(from: impl Into<String>, to: impl Into<String>, replicas: u32, keep_from: bool) -> Self {
        let (from, to) = (from.into(), to.into());
        let mut steps = vec![
            FailoverStep::ScaleUp { site: to.clone(), replicas },
            FailoverStep::WaitReady { site: to.clone() },
            FailoverStep::Verify { site: to.clone() },
            FailoverStep::SwitchTraffic { site: to.clone() },
        ];
        if !keep_from {
            steps.push(FailoverStep::ScaleDown { site: from.clone() });
        }
        Self { from, to, steps }
    }

    /// The way back: the same plan with the sites swapped.
    pub fn fail_back(&self, replicas: u32, keep_standby: bool) -> Self {
        Self::failover(self.to.clone(), self.from.clone(), replicas, keep_standby)
    }

    /// Every problem at once: unknown sites, a switch to a site that was not
    /// verified first, a scale-down of the site that serves, no switch at all. (The
    /// driver also refuses a `Verify` when it has no health check: a verification
    /// that checks nothing would pass in silence.)
    pub fn validate(&self, sites: &[&str]) -> Result<(), Vec<String>> {
        self.validate_with(sites, true)
    }

    fn validate_with(&self, sites: &[&str], has_checks: bool) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for site in [&self.from, &self.to] {
            if !sites.contains(&site.as_str()) {
                problems.push(format!("site {site:?} is not one of the driver's sites ({})", sites.join(", ")));
            }
        }
        if self.from == self.to {
            problems.push(format!("a failover from {0} to {0} moves nothing", self.from));
        }
        let (mut verified, mut serving) = (Vec::<&str>::new(), self.from.as_str());
        let mut switched = false;
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                FailoverStep::ScaleUp { site, replicas } if *replicas == 0 => {
                    problems.push(format!("step {} scales {site} up to 0 replicas", i + 1));
                }
                FailoverStep::Verify { site } => {
                    if !has_checks {
                        problems.push(format!("step {} verifies {site} with no health check to run", i + 1));
                    }
                    verified.push(site);
                }
                FailoverStep::SwitchTraffic { site } => {
                    if !verified.contains(&site.as_str()) {
                        problems.push(format!("step {} switches to {site} before verifying it", i + 1));
                    }
                    serving = site;
                    switched = true;
                }
                FailoverStep::ScaleDown { site } if site == serving => {
                    problems.push(format!("step {} scales down {site}, which serves the traffic then", i + 1));
                }
                _ => {}
            }
            let named = match step {
                FailoverStep::ScaleUp { site, .. }
                | FailoverStep::WaitReady { site }
                | FailoverStep::Verify { site }
                | FailoverStep::SwitchTraffic { site }
                | FailoverStep::ScaleDown { site } => site,
            };
            if named != &self.from && named != &self.to {
                problems.push(format!("step {} names {named:?}, neither {} nor {}", i + 1, self.from, self.to));
            }
        }
        if !switched || serving != self.to {
            problems.push(format!("the plan never leaves the traffic on {}", self.to));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// Which site receives the traffic.
#[async_trait]
pub trait TrafficSwitch: Send + Sync {
    /// Sends the traffic to `site`, and returns once the switch reads it back.
    async fn switch_to(&self, site: &str) -> Result<(), BoxError>;

    /// The site that receives the traffic now, if any.
    async fn current(&self) -> Result<Option<String>, BoxError>;
}

/// One place the application can run.
#[derive(Clone)]
pub struct Site {
    /// Its name in plans (`eu-west`).
    pub name: String,
    /// Its platform.
    pub platform: Arc<dyn Platform>,
    /// The application as it runs there (its namespace may differ per site).
    pub spec: AppSpec,
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Site").field("name", &self.name).field("app", &self.spec.id()).finish()
    }
}

/// Why a failover stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FailoverError {
    /// The plan cannot run; every problem is listed.
    #[error("invalid failover plan: {}", problems.join("; "))]
    InvalidPlan {
        /// What is wrong.
        problems: Vec<String>,
    },
    /// A step failed; the traffic is where the record's last switch left it.
    #[error("step {step} ({description}) failed: {reason}")]
    StepFailed {
        /// The step's number, from 1.
        step: usize,
        /// What it did.
        description: String,
        /// Why it failed.
        reason: String,
        /// What was done up to the failure.
        record: Box<FailoverRecord>,
    },
}

/// One finished step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailoverStepRecord {
    /// What it did.
    pub description: String,
    /// How long it took.
    pub took: Duration,
    /// What it found (health check details).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// What a failover did and how long recovery took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailoverRecord {
    /// The site that served before.
    pub from: String,
    /// The site that serves after.
    pub to: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// The steps that ran.
    pub steps: Vec<FailoverStepRecord>,
    /// From the start until the traffic reached the verified site: the measured
    /// recovery time.
    pub time_to_recover: Option<Duration>,
    /// The environment's targets, if it has them.
    pub targets: Option<RecoveryTargets>,
}

impl FailoverRecord {
    /// Whether the measured recovery time met the RTO (`None` without a target or
    /// a recovery).
    pub fn met_rto(&self) -> Option<bool> {
        Some(self.time_to_recover? <= self.targets.as_ref()?.rto.as_duration())
    }

    /// The measured recovery as a deployment record keeps it (`None` until the
    /// traffic reached the verified site).
    pub fn recovery(&self) -> Option<Recovery> {
        Some(Recovery::new(self.time_to_recover?, self.targets.map(|t| t.rto)))
    }
}

/// Runs failover plans across sites.
pub struct FailoverDriver {
    sites: BTreeMap<String, Site>,
    switch: Arc<dyn TrafficSwitch>,
    health: Vec<Arc<dyn HealthCheck>>,
    readiness_deadline: Duration,
}

impl fmt::Debug for FailoverDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverDriver").field("sites", &self.sites.keys()).finish()
    }
}

impl FailoverDriver {
    /// A driver over `sites` that moves traffic with `switch`; sites with the same
    /// name replace each other.
    pub fn new(sites: impl IntoIterator<Item = Site>, switch: Arc<dyn TrafficSwitch>) -> Self {
        Self {
            sites: sites.into_iter().map(|s| (s.name.clone(), s)).collect(),
            switch,
            health: Vec::new(),
            readiness_deadline: Duration::from_secs(300),
        }
    }

    /// Adds a health check that `Verify` runs.
    #[must_use]
    pub fn health_check(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.health.push(check);
        self
    }

    /// How long `WaitReady` waits (default 5 minutes).
    #[must_use]
    pub fn readiness_deadline(mut self, deadline: Duration) -> Self {
        self.readiness_deadline = deadline;
        self
    }

    /// Every problem that stops `plan` from running on this driver (as
    /// [`FailoverPlan::validate`], and a `Verify` with no health check to run).
    pub(crate) fn check(&self, plan: &FailoverPlan) -> Result<(), Vec<String>> {
        let names: Vec<&str> = self.sites.keys().map(String::as_str).collect();
        plan.validate_with(&names, !self.health.is_empty())
    }

    /// The application as it runs on the site `name`, if the driver has it.
    pub(crate) fn site_app(&self, name: &str) -> Option<crate::model::AppId> {
        self.sites.get(name).map(|s| s.spec.id())
    }

    /// Runs `plan` with `release` on the sites it scales up, measuring the time to
    /// recover against `targets`. Outside the engine: no lock, no history record;
    /// the engine's `RolloutEngine::failover` runs the same steps under the
    /// application's lock and records them.
    pub async fn run(
        &self,
        plan: &FailoverPlan,
        release: &Release,
        targets: Option<RecoveryTargets>,
    ) -> Result<FailoverRecord, FailoverError> {
        self.check(plan).map_err(|problems| FailoverError::InvalidPlan { problems })?;
        let started = Instant::now();
        let mut record = FailoverRecord {
            from: plan.from.clone(),
            to: plan.to.clone(),
            started_at: Timestamp::now(),
            finished_at: None,
            steps: Vec::new(),
            time_to_recover: None,
            targets,
        };
        for (i, step) in plan.steps.iter().enumerate() {
            let step_started = Instant::now();
            let result = self.execute(step, release).await;
            match result {
                Ok(details) => {
                    record.steps.push(FailoverStepRecord {
                        description: step.to_string(),
                        took: step_started.elapsed(),
                        details,
                    });
                    if matches!(step, FailoverStep::SwitchTraffic { site } if *site == plan.to) {
                        record.time_to_recover = Some(started.elapsed());
                    }
                }
                Err(reason) => {
                    record.finished_at = Some(Timestamp::now());
                    return Err(FailoverError::StepFailed {
                        step: i + 1,
                        description: step.to_string(),
                        reason,
                        record: Box::new(record),
                    });
                }
            }
        }
        record.finished_at = Some(Timestamp::now());
        Ok(record)
    }

    fn site(&self, name: &str) -> Result<&Site, String> {
        self.sites.get(name).ok_or_else(|| format!("no site {name:?}"))
    }

    /// Runs one step; `Ok` carries what it found, `Err` why it failed.
    pub(crate) async fn execute(&self, step: &FailoverStep, release: &Release) -> Result<Vec<String>, String> {
        let platform_failed = |e: PlatformError| e.to_string();
        match step {
            FailoverStep::ScaleUp { site, replicas } => {
                let site = self.site(site)?;
                site.platform.apply(&site.spec, Track::Stable, release, *replicas).await.map_err(platform_failed)?;
                Ok(Vec::new())
            }
            FailoverStep::WaitReady { site } => {
                let site = self.site(site)?;
                let app = site.spec.id();
                site.platform
                    .wait_ready(&app, Track::Stable, self.readiness_deadline)
                    .await
                    .map_err(platform_failed)?;
                Ok(Vec::new())
            }
            FailoverStep::Verify { site } => {
                let site = self.site(site)?;
                let target = HealthTarget::new(site.spec.id(), Track::Stable, release.version.clone());
                let mut details = Vec::new();
                for check in &self.health {
                    let outcome = check.check(&target).await.map_err(|e| format!("{}: {e}", check.name()))?;
                    if !outcome.healthy {
                        return Err(format!("{} found {} unhealthy: {}", check.name(), site.name, outcome.detail));
                    }
                    details.push(format!("{}: {}", check.name(), outcome.detail));
                }
                Ok(details)
            }
            FailoverStep::SwitchTraffic { site } => {
                self.site(site)?;
                self.switch.switch_to(site).await.map_err(|e| format!("switch to {site}: {e}"))?;
                match self.switch.current().await {
                    Ok(Some(now)) if now == *site => Ok(vec![format!("the switch reads back {now}")]),
                    Ok(other) => Err(format!("the switch reads back {other:?} after switching to {site}")),
                    Err(e) => Err(format!("read the switch back: {e}")),
                }
            }
            FailoverStep::ScaleDown { site } => {
                let site = self.site(site)?;
                site.platform.scale(&site.spec.id(), Track::Stable, 0).await.map_err(platform_failed)?;
                Ok(Vec::new())
            }
        }
    }
}
