//! A fleet plan as data: the targets with their engines, the waves, the gates,
//! the limits and the rollback policy. It validates every target's rollout
//! against that target's own engine and router before anything runs, prints, and
//! serialises (without the engines) into the journal and for `--dry-run`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{RolloutEngine, RolloutRequest};
use crate::model::{AppId, AppSpec, Name, Release, ValidationError, ValidationErrors};
use crate::plan::Plan;

use super::waves::{Gate, RollbackPolicy, WavePolicy, WaveSpec};

/// One cluster or host of the fleet: its name, its labels, its engine (its
/// platform, router, state and history stores) and what to run there.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FleetTarget {
    /// Unique in the fleet; a valid [`Name`].
    pub name: String,
    /// Labels such as `region` or `tier`, for wave policies.
    pub labels: BTreeMap<String, String>,
    /// The engine of this cluster or host.
    pub engine: Arc<RolloutEngine>,
    /// The application as it runs on this target.
    pub spec: AppSpec,
    /// The plan of the rollout of the new release on this target.
    pub plan: Plan,
    /// The plan that puts a target that finished back on the previous release
    /// when the fleet rolls back; `None`: the forward plan.
    pub rollback_plan: Option<Plan>,
}

impl FleetTarget {
    /// A target named `name`, rolled out by `engine` with `plan`.
    pub fn new(name: impl Into<String>, engine: Arc<RolloutEngine>, spec: AppSpec, plan: Plan) -> Self {
        Self { name: name.into(), labels: BTreeMap::new(), engine, spec, plan, rollback_plan: None }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the plan used to put the target back on the previous release.
    #[must_use]
    pub fn rollback_plan(mut self, plan: Plan) -> Self {
        self.rollback_plan = Some(plan);
        self
    }

    /// The request of the rollout of `to` on this target.
    pub(crate) fn request(&self, to: &Release, from: Option<&Release>) -> RolloutRequest {
        let request = RolloutRequest::new(self.spec.clone(), to.clone(), self.plan.clone());
        match from {
            Some(from) => request.from(from.clone()),
            None => request,
        }
    }

    /// The request that puts the target back from `new` on `previous`.
    pub(crate) fn revert_request(&self, previous: &Release, new: &Release) -> RolloutRequest {
        let plan = self.rollback_plan.clone().unwrap_or_else(|| self.plan.clone());
        RolloutRequest::new(self.spec.clone(), previous.clone(), plan).from(new.clone())
    }
}

/// A validated fleet rollout: [`FleetPlan::builder`] makes one, the
/// [`FleetDriver`](super::FleetDriver) runs it.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    pub(crate) fleet: AppId,
    pub(crate) release: Release,
    pub(crate) from: Option<Release>,
    pub(crate) targets: Vec<FleetTarget>,
    pub(crate) waves: Vec<WaveSpec>,
    pub(crate) max_concurrent: usize,
    pub(crate) rollback: RollbackPolicy,
}

impl FleetPlan {
    /// A builder of the rollout of `release` to the fleet whose journal is kept
    /// under `fleet` (a namespace and a name in the journal's store).
    pub fn builder(fleet: AppId, release: Release) -> FleetPlanBuilder {
        FleetPlanBuilder {
            fleet,
            release,
            from: None,
            targets: Vec::new(),
            policy: None,
            bake: Duration::ZERO,
            gate: Gate::Open,
            gates: BTreeMap::new(),
            max_concurrent: 10,
            rollback: RollbackPolicy::default(),
        }
    }

    /// The fleet's id.
    pub fn fleet(&self) -> &AppId {
        &self.fleet
    }

    /// The release rolled out.
    pub fn release(&self) -> &Release {
        &self.release
    }

    /// The waves.
    pub fn waves(&self) -> &[WaveSpec] {
        &self.waves
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&FleetTarget> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The plan as data, without the engines: what the journal keeps and
    /// `--dry-run` prints.
    pub fn document(&self) -> FleetPlanDocument {
        FleetPlanDocument {
            fleet: self.fleet.clone(),
            release: self.release.clone(),
            from: self.from.clone(),
            waves: self.waves.clone(),
            targets: self
                .targets
                .iter()
                .map(|t| TargetDocument {
                    name: t.name.clone(),
                    labels: t.labels.clone(),
                    app: t.spec.id(),
                    plan: t.plan.clone(),
                })
                .collect(),
            max_concurrent: self.max_concurrent,
            rollback: self.rollback,
        }
    }
}

impl fmt::Display for FleetPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.document().fmt(f)
    }
}

/// A fleet plan as data (serde): the fleet, the release, the waves with their
/// bake times and gates, each target's application and plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FleetPlanDocument {
    /// The fleet's id.
    pub fleet: AppId,
    /// The release rolled out.
    pub release: Release,
    /// The release that serves now, when the caller named it.
    pub from: Option<Release>,
    /// The waves, in order.
    pub waves: Vec<WaveSpec>,
    /// Every target.
    pub targets: Vec<TargetDocument>,
    /// How many target rollouts run at once within a wave (and how many target
    /// rollbacks when the fleet rolls back).
    pub max_concurrent: usize,
    /// What a failure rolls back.
    pub rollback: RollbackPolicy,
}

/// One target of a [`FleetPlanDocument`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TargetDocument {
    /// The target's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its application.
    pub app: AppId,
    /// Its plan.
    pub plan: Plan,
}

impl fmt::Display for FleetPlanDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = self.from.as_ref().map_or_else(|| "what each target runs".to_owned(), |r| r.version.to_string());
        writeln!(
            f,
            "fleet {}: {} -> {}, {} targets in {} waves, at most {} at once, on failure roll back {}",
            self.fleet,
            from,
            self.release.version,
            self.targets.len(),
            self.waves.len(),
            self.max_concurrent,
            match self.rollback {
                RollbackPolicy::FailedWave => "the failed wave",
                RollbackPolicy::Fleet => "every wave",
            }
        )?;
        for (i, wave) in self.waves.iter().enumerate() {
            writeln!(f, "wave {} ({} targets, bake {:?}, gate {}):", i + 1, wave.targets.len(), wave.bake, wave.gate)?;
            for name in &wave.targets {
                let Some(t) = self.targets.iter().find(|t| t.name == *name) else { continue };
                let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(
                    f,
                    "  {name} [{}] {}: {} plan, {} steps",
                    labels.join(","),
                    t.app,
                    t.plan.strategy,
                    t.plan.steps.len()
                )?;
            }
        }
        Ok(())
    }
}

/// Builds a [`FleetPlan`]; [`FleetPlanBuilder::build`] validates it all.
#[derive(Debug)]
#[must_use]
pub struct FleetPlanBuilder {
    fleet: AppId,
    release: Release,
    from: Option<Release>,
    targets: Vec<FleetTarget>,
    policy: Option<WavePolicy>,
    bake: Duration,
    gate: Gate,
    gates: BTreeMap<usize, (Option<Duration>, Gate)>,
    max_concurrent: usize,
    rollback: RollbackPolicy,
}

impl FleetPlanBuilder {
    /// The release that serves on every target now; each engine checks it
    /// against its platform. Without it each target adopts what it runs.
    pub fn from(mut self, release: Release) -> Self {
        self.from = Some(release);
        self
    }

    /// Adds a target.
    pub fn target(mut self, target: FleetTarget) -> Self {
        self.targets.push(target);
        self
    }

    /// How the targets are grouped into waves (required).
    pub fn waves(mut self, policy: WavePolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The bake time after every wave (zero by default).
    pub fn bake(mut self, bake: Duration) -> Self {
        self.bake = bake;
        self
    }

    /// The gate after every wave but the last ([`Gate::Open`] by default).
    pub fn gate(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    /// The bake time and gate after wave `wave` (from 0), overriding the defaults.
    pub fn wave_gate(mut self, wave: usize, bake: Option<Duration>, gate: Gate) -> Self {
        self.gates.insert(wave, (bake, gate));
        self
    }

    /// How many target rollouts run at once within a wave, and target
    /// rollbacks within a wave when the fleet rolls back (10 by default).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n;
        self
    }

    /// What a failure rolls back ([`RollbackPolicy::FailedWave`] by default).
    pub fn rollback(mut self, policy: RollbackPolicy) -> Self {
        self.rollback = policy;
        self
    }

    /// Validates everything (names, waves, every target's rollout against its own
    /// engine and router) and returns the plan, or every problem found.
    pub fn build(self) -> Result<FleetPlan, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let mut names = BTreeSet::new();
        for t in &self.targets {
            if let Err(e) = Name::with_field(t.name.clone(), "target name") {
                errors.push(e);
            }
            if !names.insert(t.name.clone()) {
                errors.push(ValidationError::new("target name", t.name.clone(), "is used by two targets"));
            }
            if let Err(e) = t.engine.validate(&t.request(&self.release, self.from.as_ref())) {
                for mut e in e.errors {
                    e.field = format!("target {}: {}", t.name, e.field);
                    errors.push(e);
                }
            }
            if let Some(plan) = &t.rollback_plan
                && let Err(e) = plan.validate(None)
            {
                for mut e in crate::model::ValidationErrors::from(e) {
                    e.field = format!("target {} rollback plan: {}", t.name, e.field);
                    errors.push(e);
                }
            }
        }
        if self.targets.is_empty() {
            errors.push(ValidationError::new("targets", "", "a fleet needs at least one target"));
        }
        if self.max_concurrent == 0 {
            errors.push(ValidationError::new("max_concurrent", "0", "must be at least 1"));
        }
        let order: Vec<String> = self.targets.iter().map(|t| t.name.clone()).collect();
        let label = |name: &str, key: &str| -> Option<String> {
            self.targets.iter().find(|t| t.name == name).and_then(|t| t.labels.get(key).cloned())
        };
        let lists = match &self.policy {
            None => {
                errors.push(ValidationError::new("waves", "", "no wave policy given"));
                Vec::new()
            }
            Some(policy) => policy.waves(&order, &label).unwrap_or_else(|e| {
                for e in e {
                    errors.push(e);
                }
                Vec::new()
            }),
        };
        for wave in self.gates.keys() {
            if *wave >= lists.len() && !lists.is_empty() {
                errors.push(ValidationError::new("wave gate", wave.to_string(), "there is no such wave"));
            }
        }
        let count = lists.len();
        let waves = lists
            .into_iter()
            .enumerate()
            .map(|(i, targets)| {
                let (bake, gate) = match self.gates.get(&i) {
                    Some((bake, gate)) => (bake.unwrap_or(self.bake), gate.clone()),
                    None if i + 1 == count => (self.bake, Gate::Open),
                    None => (self.bake, self.gate.clone()),
                };
                if let Gate::Window { from_hour, to_hour } = gate
                    && (from_hour > 23 || to_hour > 24 || from_hour == to_hour)
                {
                    errors.push(ValidationError::new(
                        format!("wave {} gate", i + 1),
                        gate.to_string(),
                        "a window needs 0 <= from < 24, to <= 24 and from != to",
                    ));
                }
                WaveSpec { targets, bake, gate }
            })
            .collect();
        errors.into_result(FleetPlan {
            fleet: self.fleet,
            release: self.release,
            from: self.from,
            targets: self.targets,
            waves,
            max_concurrent: self.max_concurrent,
            rollback: self.rollback,
        })
    }
}
