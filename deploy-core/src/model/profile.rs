//! Environment profiles: the presets that differ between development, staging,
//! production and disaster recovery.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::HumanDuration;

use super::{
    AppSpec, Autoscaling, ContainerSecurityContext, Percent, PodSecurityContext, ResourceList, Resources,
    ValidationError,
};

/// The environment a deployment targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Environment {
    /// Local development and unit tests.
    Development,
    /// Integration tests and user acceptance.
    Staging,
    /// Production.
    Production,
    /// A cold standby of production in another region.
    DisasterRecovery,
}

impl Environment {
    /// Every environment, in promotion order.
    pub const ALL: [Environment; 4] =
        [Environment::Development, Environment::Staging, Environment::Production, Environment::DisasterRecovery];

    /// The name used in files, labels and namespaces.
    ///
    /// ```
    /// use deploy_core::model::Environment;
    /// assert_eq!(Environment::DisasterRecovery.as_str(), "disaster_recovery");
    /// assert_eq!("dr".parse::<Environment>().unwrap(), Environment::DisasterRecovery);
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
            Self::DisasterRecovery => "disaster_recovery",
        }
    }

    /// Whether mistakes here hurt users: production and its standby.
    pub fn is_production_like(self) -> bool {
        matches!(self, Self::Production | Self::DisasterRecovery)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "staging" | "stage" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            "disaster_recovery" | "disaster-recovery" | "dr" => Ok(Self::DisasterRecovery),
            _ => Err(ValidationError::new(
                "environment",
                s,
                "must be one of development, staging, production, disaster_recovery",
            )),
        }
    }
}

/// The presets an environment applies to an [`AppSpec`]: replicas, resources,
/// autoscaling and security contexts.
///
/// The presets follow the seed documents: development 1 replica with 100m/128Mi
/// requested and 500m/256Mi limits; staging 2 replicas with the same resources;
/// production 3 replicas with 200m/256Mi requested, 1000m/512Mi limits and
/// autoscaling 3 to 10 at 70 % CPU; disaster recovery production's resources as a
/// cold standby of 1 replica that autoscales 1 to 10 at 70 % CPU when it takes over.
/// Every environment runs non-root with a read-only root filesystem and no privilege
/// escalation; production-like ones also pin user, group and volume group 1000.
///
/// Every field is public and has a setter, so a preset is a starting point:
///
/// ```
/// use deploy_core::model::{Environment, EnvironmentProfile};
/// let profile = EnvironmentProfile::preset(Environment::Production).replicas(5);
/// assert_eq!(profile.replicas, 5);
/// assert_eq!(profile.autoscaling.as_ref().unwrap().max_replicas, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EnvironmentProfile {
    /// The environment this profile is for.
    pub environment: Environment,
    /// Desired replicas.
    pub replicas: u32,
    /// Requests and limits.
    pub resources: Resources,
    /// Horizontal autoscaling, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Pod-level security settings.
    pub pod_security: PodSecurityContext,
    /// Container-level security settings.
    pub container_security: ContainerSecurityContext,
    /// How fast and with how little data loss the environment must recover from
    /// the loss of a site; the disaster-recovery module measures failovers against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryTargets>,
}

/// Recovery objectives: the longest tolerable outage (RTO) and the most data, in
/// time, that may be lost (RPO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecoveryTargets {
    /// Recovery time objective.
    pub rto: HumanDuration,
    /// Recovery point objective.
    pub rpo: HumanDuration,
}

impl RecoveryTargets {
    /// Targets of `rto` and `rpo`.
    pub fn new(rto: HumanDuration, rpo: HumanDuration) -> Self {
        Self { rto, rpo }
    }
}

impl EnvironmentProfile {
    /// The preset for `environment`.
    pub fn preset(environment: Environment) -> Self {
        let small = Resources::new(small_requests(), small_limits());
        let pod_security = PodSecurityContext { run_as_non_root: Some(true), ..PodSecurityContext::default() };
        let base = Self {
            environment,
            replicas: 1,
            resources: small,
            autoscaling: None,
            pod_security,
            container_security: ContainerSecurityContext::restricted(),
            recovery: None,
        };
        // The seeds' disaster-recovery objectives: RTO under 2 hours, RPO under 1 hour.
        let seeds_targets = Some(RecoveryTargets::new(
            HumanDuration::new(std::time::Duration::from_secs(2 * 3600)),
            HumanDuration::new(std::time::Duration::from_secs(3600)),
        ));
        match environment {
            Environment::Development => base,
            Environment::Staging => Self { replicas: 2, ..base },
            Environment::Production => Self {
                replicas: 3,
                resources: production_resources(),
                autoscaling: Some(Autoscaling::cpu(3, 10, seventy_percent())),
                pod_security: PodSecurityContext::restricted(),
                recovery: seeds_targets,
                ..base
            },
            Environment::DisasterRecovery => Self {
                replicas: 1,
                resources: production_resources(),
                autoscaling: Some(Autoscaling::cpu(1, 10, seventy_percent())),
                pod_security: PodSecurityContext::restricted(),
                recovery: seeds_targets,
                ..base
            },
        }
    }

    /// Sets the replicas.
    #[must_use]
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets the resources.
    #[must_use]
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Sets or clears autoscaling.
    #[must_use]
    pub fn autoscaling(mut self, autoscaling: Option<Autoscaling>) -> Self {
        self.autoscaling = autoscaling;
        self
    }

    /// Applies the profile to a spec: its replicas, resources, autoscaling and
    /// security contexts replace the spec's.
    ///
    /// ```
    /// use deploy_core::model::{AppSpec, Environment, EnvironmentProfile, ImageRef, Name, Namespace};
    /// let spec = AppSpec::new(Namespace::new("prod").unwrap(), Name::new("api").unwrap(), ImageRef::parse("api:1").unwrap());
    /// let spec = EnvironmentProfile::preset(Environment::Production).apply_to(spec);
    /// assert_eq!(spec.replicas, 3);
    /// assert_eq!(spec.pod_security.run_as_user, Some(1000));
    /// ```
    pub fn apply_to(&self, mut spec: AppSpec) -> AppSpec {
        spec.replicas = self.replicas;
        spec.resources = self.resources.clone();
        spec.autoscaling = self.autoscaling.clone();
        spec.pod_security = self.pod_security.clone();
        spec.container_security = self.container_security.clone();
        spec
    }
}

#[expect(clippy::expect_used, reason = "preset literals, pinned by presets_match_the_seed")]
fn quantity(value: &'static str) -> super::Quantity {
    value.parse().expect("preset quantity literal")
}

fn small_requests() -> ResourceList {
    ResourceList { cpu: Some(quantity("100m")), memory: Some(quantity("128Mi")) }
}

fn small_limits() -> ResourceList {
    ResourceList { cpu: Some(quantity("500m")), memory: Some(quantity("256Mi")) }
}

fn production_resources() -> Resources {
    Resources::new(
        ResourceList { cpu: Some(quantity("200m")), memory: Some(quantity("256Mi")) },
        ResourceList { cpu: Some(quantity("1000m")), memory: Some(quantity("512Mi")) },
    )
}

#[expect(clippy::expect_used, reason = "literal in range")]
fn seventy_percent() -> Percent {
    Percent::new(70).expect("70 is a percentage")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(r: &Option<super::super::Quantity>) -> String {
        r.as_ref().unwrap().to_string()
    }

    #[test]
    fn presets_match_the_seed() {
        let dev = EnvironmentProfile::preset(Environment::Development);
        assert_eq!(
            (dev.replicas, q(&dev.resources.requests.cpu), q(&dev.resources.limits.memory)),
            (1, "100m".into(), "256Mi".into())
        );
        assert!(dev.autoscaling.is_none());

        let staging = EnvironmentProfile::preset(Environment::Staging);
        assert_eq!(staging.replicas, 2);
        assert_eq!(q(&staging.resources.requests.memory), "128Mi");

        let prod = EnvironmentProfile::preset(Environment::Production);
        assert_eq!(prod.replicas, 3);
        assert_eq!(q(&prod.resources.requests.cpu), "200m");
        assert_eq!(q(&prod.resources.requests.memory), "256Mi");
        assert_eq!(q(&prod.resources.limits.cpu), "1000m");
        assert_eq!(q(&prod.resources.limits.memory), "512Mi");
        let hpa = prod.autoscaling.unwrap();
        assert_eq!((hpa.min_replicas, hpa.max_replicas, hpa.target_cpu.unwrap().value()), (3, 10, 70));
        assert_eq!(prod.pod_security, PodSecurityContext::restricted());

        let dr = EnvironmentProfile::preset(Environment::DisasterRecovery);
        assert_eq!(dr.resources, EnvironmentProfile::preset(Environment::Production).resources);
        assert_eq!(dr.replicas, 1);
    }

    #[test]
    fn every_preset_is_secure_and_valid() {
        for env in Environment::ALL {
            let p = EnvironmentProfile::preset(env);
            assert_eq!(p.pod_security.run_as_non_root, Some(true), "{env}");
            assert_eq!(p.container_security.allow_privilege_escalation, Some(false), "{env}");
            assert_eq!(p.container_security.read_only_root_filesystem, Some(true), "{env}");
            let spec = p.apply_to(AppSpec::new(
                super::super::Namespace::new("b").unwrap(),
                super::super::Name::new("a").unwrap(),
                super::super::ImageRef::parse("a:1").unwrap(),
            ));
            spec.validate().unwrap();
        }
    }

    #[test]
    fn environment_names_round_trip() {
        for env in Environment::ALL {
            assert_eq!(env.as_str().parse::<Environment>().unwrap(), env);
            let json = serde_json::to_string(&env).unwrap();
            assert_eq!(serde_json::from_str::<Environment>(&json).unwrap(), env);
        }
        assert!("qa".parse::<Environment>().is_err());
    }
}
