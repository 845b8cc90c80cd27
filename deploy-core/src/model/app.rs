//! The application spec: what to run and how, independent of the platform.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::workload::{one, validate_env_name};
use super::{
    Autoscaling, ContainerSecurityContext, EnvVar, HumanDuration, ImageRef, Name, Namespace, PodSecurityContext, Port,
    Probe, Resources, RollingUpdateParams, ValidationError, ValidationErrors,
};

/// The identity of an application: its namespace and its name.
///
/// Backends key everything (workloads, locks, progress, history) by this pair.
/// The namespace has its own type, so the two cannot be swapped by mistake; the
/// serialized form is `{"namespace": "shop", "name": "checkout"}`.
///
/// ```
/// use deploy_core::model::{AppId, Name, Namespace};
/// let id = AppId::new(Namespace::new("shop").unwrap(), Name::new("checkout").unwrap());
/// assert_eq!(id.to_string(), "shop/checkout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppId {
    /// The namespace the application lives in.
    pub namespace: Namespace,
    /// The application's name.
    pub name: Name,
}

impl AppId {
    /// An application identity from its namespace and name.
    pub fn new(namespace: Namespace, name: Name) -> Self {
        Self { namespace, name }
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything needed to run an application, independent of the platform.
///
/// Build one with [`AppSpec::new`] and the setters, or deserialize one from a file;
/// either way call [`AppSpec::validate`] (the rollout engine does) to see every
/// problem at once.
///
/// ```
/// use deploy_core::model::{AppSpec, ImageRef, Name, Namespace, Port, Probe};
/// let spec = AppSpec::new(
///     Namespace::new("shop").unwrap(),
///     Name::new("checkout").unwrap(),
///     ImageRef::parse("registry.local:5000/shop/checkout:1.4.2").unwrap(),
/// )
/// .replicas(3)
/// .port(Port::tcp("http", 8080).unwrap())
/// .readiness(Probe::http("/ready", 8080));
/// assert!(spec.validate().is_ok());
/// assert_eq!(spec.id().to_string(), "shop/checkout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppSpec {
    /// The application's name.
    pub name: Name,
    /// The namespace it runs in.
    pub namespace: Namespace,
    /// The image of the current release.
    pub image: ImageRef,
    /// Desired replicas when not autoscaled.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Ports the application listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Requests and limits.
    #[serde(default)]
    pub resources: Resources,
    /// Restarts the container when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// Decides when the container may receive traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Holds back the other probes until a slow start is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
    /// Horizontal autoscaling, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Labels added to every object of the application.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every object of the application.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Pod-level security settings.
    #[serde(default)]
    pub pod_security: PodSecurityContext,
    /// Container-level security settings.
    #[serde(default)]
    pub container_security: ContainerSecurityContext,
    /// Parameters of the platform's native rolling update.
    #[serde(default)]
    pub rolling_update: RollingUpdateParams,
    /// A sleep before the container is stopped, so load balancers stop sending it
    /// traffic first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop_delay: Option<HumanDuration>,
}

impl AppSpec {
    /// A spec with one replica and no ports, probes or limits: add them with the
    /// setters. Namespace first, then name, as in [`AppId::new`] and in the
    /// `namespace/name` the id prints.
    pub fn new(namespace: Namespace, name: Name, image: ImageRef) -> Self {
        Self {
            name,
            namespace,
            image,
            replicas: 1,
            ports: Vec::new(),
            env: Vec::new(),
            resources: Resources::default(),
            liveness: None,
            readiness: None,
            startup: None,
            autoscaling: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            pod_security: PodSecurityContext::default(),
            container_security: ContainerSecurityContext::default(),
            rolling_update: RollingUpdateParams::default(),
            pre_stop_delay: None,
        }
    }

    /// The application's identity.
    pub fn id(&self) -> AppId {
        AppId::new(self.namespace.clone(), self.name.clone())
    }

    /// Sets the desired replicas.
    #[must_use]
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// Adds a port.
    #[must_use]
    pub fn port(mut self, port: Port) -> Self {
        self.ports.push(port);
        self
    }

    /// Adds an environment variable.
    #[must_use]
    pub fn env(mut self, var: EnvVar) -> Self {
        self.env.push(var);
        self
    }

    /// Sets requests and limits.
    #[must_use]
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Sets the liveness probe.
    #[must_use]
    pub fn liveness(mut self, probe: Probe) -> Self {
        self.liveness = Some(probe);
        self
    }

    /// Sets the readiness probe.
    #[must_use]
    pub fn readiness(mut self, probe: Probe) -> Self {
        self.readiness = Some(probe);
        self
    }

    /// Sets the startup probe.
    #[must_use]
    pub fn startup(mut self, probe: Probe) -> Self {
        self.startup = Some(probe);
        self
    }

    /// Sets horizontal autoscaling.
    #[must_use]
    pub fn autoscaling(mut self, autoscaling: Autoscaling) -> Self {
        self.autoscaling = Some(autoscaling);
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Sets the pod security context.
    #[must_use]
    pub fn pod_security(mut self, context: PodSecurityContext) -> Self {
        self.pod_security = context;
        self
    }

    /// Sets the container security context.
    #[must_use]
    pub fn container_security(mut self, context: ContainerSecurityContext) -> Self {
        self.container_security = context;
        self
    }

    /// Sets the rolling-update parameters.
    #[must_use]
    pub fn rolling_update(mut self, params: RollingUpdateParams) -> Self {
        self.rolling_update = params;
        self
    }

    /// Sets the pre-stop delay.
    #[must_use]
    pub fn pre_stop_delay(mut self, delay: HumanDuration) -> Self {
        self.pre_stop_delay = Some(delay);
        self
    }

    /// Checks the spec as a whole and reports every problem at once.
    ///
    /// Single values (names, images, quantities) are already valid by construction;
    /// this checks how they fit together: unique port names and numbers, requests
    /// under limits, sane probes and autoscaling bounds, unique environment names.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.replicas == 0 && self.autoscaling.is_none() {
            errors.push(ValidationError::new("replicas", "0", "must be at least 1"));
        }
        let mut port_names = BTreeSet::new();
        let mut port_numbers = BTreeSet::new();
        for port in &self.ports {
            if port.container_port == 0 {
                errors.push(ValidationError::new("ports.container_port", "0", "must be between 1 and 65535"));
            }
            if !port_names.insert(port.name.as_str()) {
                errors.push(ValidationError::new("ports.name", port.name.as_str(), "is used twice"));
            }
            if !port_numbers.insert((port.container_port, port.protocol)) {
                errors.push(ValidationError::new(
                    "ports.container_port",
                    port.container_port.to_string(),
                    "is used twice",
                ));
            }
        }
        let mut env_names = BTreeSet::new();
        for var in &self.env {
            if let Err(e) = validate_env_name(&var.name) {
                errors.push(e);
            }
            if !env_names.insert(var.name.as_str()) {
                errors.push(ValidationError::new("env.name", &var.name, "is set twice"));
            }
        }
        self.resources.validate(&mut errors);
        for (field, probe) in [("liveness", &self.liveness), ("readiness", &self.readiness), ("startup", &self.startup)]
        {
            if let Some(probe) = probe {
                probe.validate(field, &mut errors);
            }
        }
        if let Some(autoscaling) = &self.autoscaling {
            autoscaling.validate(&mut errors);
        }
        errors.into_result(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IntOrPercent, Percent, ResourceList};

    fn spec() -> AppSpec {
        AppSpec::new(
            Namespace::new("default").unwrap(),
            Name::new("web").unwrap(),
            ImageRef::parse("nginx:1.27").unwrap(),
        )
    }

    #[test]
    fn validate_reports_every_problem_at_once() {
        let mut s = spec()
            .port(Port::tcp("http", 80).unwrap())
            .port(Port::tcp("http", 80).unwrap())
            .resources(Resources::new(ResourceList::new("2", "1Gi").unwrap(), ResourceList::new("1", "512Mi").unwrap()))
            .autoscaling(Autoscaling::cpu(5, 2, Percent::new(70).unwrap()));
        s.readiness = Some(Probe::http("healthz", 8080));
        let errors = s.validate().unwrap_err();
        let fields: Vec<_> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"ports.name"), "{fields:?}");
        assert!(fields.contains(&"ports.container_port"), "{fields:?}");
        assert!(fields.contains(&"resources.requests.cpu"), "{fields:?}");
        assert!(fields.contains(&"resources.requests.memory"), "{fields:?}");
        assert!(fields.contains(&"autoscaling.min_replicas"), "{fields:?}");
        assert!(fields.contains(&"readiness.path"), "{fields:?}");
        assert_eq!(errors.len(), 6, "{errors}");
    }

    #[test]
    fn zero_replicas_without_autoscaling_is_rejected() {
        let err = spec().replicas(0).validate().unwrap_err();
        assert_eq!(err.errors[0].field, "replicas");
    }

    #[test]
    fn rolling_update_rounds_like_kubernetes() {
        let params = RollingUpdateParams::default();
        assert_eq!(params.resolve(10), (3, 2));
        assert_eq!(params.resolve(1), (1, 0));
        let none = RollingUpdateParams::new(IntOrPercent::Int(0), IntOrPercent::Percent(Percent::new(10).unwrap()));
        assert_eq!(none.resolve(3), (0, 1), "both zero becomes one unavailable");
    }

    #[test]
    fn spec_deserializes_with_defaults_and_rejects_bad_values() {
        let json = r#"{"name":"web","namespace":"prod","image":"nginx",
            "rolling_update":{"max_surge":"50%","max_unavailable":0}}"#;
        let s: AppSpec = serde_json::from_str(json).unwrap();
        assert_eq!(s.replicas, 1);
        assert_eq!(s.image.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(s.rolling_update.max_surge, IntOrPercent::Percent(Percent::new(50).unwrap()));
        assert_eq!(s.rolling_update.max_unavailable, IntOrPercent::Int(0));

        let bad = r#"{"name":"Web","namespace":"prod","image":"nginx"}"#;
        let err = serde_json::from_str::<AppSpec>(bad).unwrap_err().to_string();
        assert!(err.contains("Web"), "{err}");
    }

    #[test]
    fn app_ids_keep_their_stored_form() {
        // The form every store has written so far: a plain string per field.
        let stored = r#"{"namespace":"shop","name":"checkout"}"#;
        let id: AppId = serde_json::from_str(stored).unwrap();
        assert_eq!(id, AppId::new(Namespace::new("shop").unwrap(), Name::new("checkout").unwrap()));
        assert_eq!(serde_json::to_string(&id).unwrap(), stored);
        let err = serde_json::from_str::<AppId>(r#"{"namespace":"Shop","name":"checkout"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid namespace \"Shop\""), "{err}");
    }

    #[test]
    fn env_names_are_checked() {
        assert!(EnvVar::value("A_B.c-d", "1").is_ok());
        assert!(EnvVar::value("", "1").is_err());
        assert!(EnvVar::value("A B", "1").is_err());
    }
}
