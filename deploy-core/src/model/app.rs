//! The application spec: what to run and how, independent of the platform.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{HumanDuration, ImageRef, Name, Namespace, Percent, Quantity, ValidationError, ValidationErrors};

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

/// The transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum Protocol {
    /// TCP, the default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A port the application listens on.
///
/// ```
/// use deploy_core::model::Port;
/// let http = Port::tcp("http", 8080).unwrap();
/// assert_eq!(http.container_port, 8080);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Port {
    /// The port's name, which Services and probes can refer to.
    pub name: Name,
    /// The port number inside the container (1 to 65535).
    pub container_port: u16,
    /// The protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

impl Port {
    /// A TCP port; rejects port 0 and names that are not RFC 1123 labels.
    pub fn tcp(name: &str, container_port: u16) -> Result<Self, ValidationError> {
        if container_port == 0 {
            return Err(ValidationError::new("port", "0", "port must be between 1 and 65535"));
        }
        Ok(Self { name: Name::with_field(name, "port name")?, container_port, protocol: Protocol::Tcp })
    }
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EnvSource {
    /// A literal value. Never put secrets here: use [`EnvSource::Secret`].
    Value(String),
    /// A key of a platform secret (a Kubernetes Secret, a Docker secret file).
    Secret {
        /// The secret's name.
        name: Name,
        /// The key inside the secret.
        key: String,
    },
    /// A key of a platform config map.
    ConfigMap {
        /// The config map's name.
        name: Name,
        /// The key inside the config map.
        key: String,
    },
}

/// An environment variable of the application's container.
///
/// ```
/// use deploy_core::model::EnvVar;
/// let v = EnvVar::value("RUST_LOG", "info").unwrap();
/// assert_eq!(v.name, "RUST_LOG");
/// assert!(EnvVar::value("1BAD", "x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EnvVar {
    /// The variable's name: letters, digits, `_`, `-` and `.`, not starting with a digit.
    pub name: String,
    /// Where the value comes from.
    pub source: EnvSource,
}

impl EnvVar {
    /// A variable with a literal value.
    pub fn value(name: &str, value: impl Into<String>) -> Result<Self, ValidationError> {
        validate_env_name(name)?;
        Ok(Self { name: name.to_owned(), source: EnvSource::Value(value.into()) })
    }

    /// A variable read from a key of a platform secret.
    pub fn from_secret(name: &str, secret: Name, key: impl Into<String>) -> Result<Self, ValidationError> {
        validate_env_name(name)?;
        Ok(Self { name: name.to_owned(), source: EnvSource::Secret { name: secret, key: key.into() } })
    }
}

fn validate_env_name(name: &str) -> Result<(), ValidationError> {
    let mut chars = name.chars();
    let valid_first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid_first && valid_rest {
        Ok(())
    } else {
        Err(ValidationError::new(
            "environment variable name",
            name,
            "must start with a letter or '_' and contain only letters, digits, '_', '-' and '.'",
        ))
    }
}

/// CPU and memory amounts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceList {
    /// CPU, in cores (`100m` is a tenth of a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory, in bytes (`128Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

impl ResourceList {
    /// A list with both CPU and memory, parsed from Kubernetes quantity strings.
    ///
    /// ```
    /// use deploy_core::model::ResourceList;
    /// let r = ResourceList::new("100m", "128Mi").unwrap();
    /// assert_eq!(r.cpu.unwrap().to_string(), "100m");
    /// ```
    pub fn new(cpu: &str, memory: &str) -> Result<Self, ValidationError> {
        Ok(Self { cpu: Some(cpu.parse()?), memory: Some(memory.parse()?) })
    }
}

/// Resource requests (what the scheduler reserves) and limits (what the runtime enforces).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Resources {
    /// Reserved resources.
    #[serde(default)]
    pub requests: ResourceList,
    /// Enforced ceilings.
    #[serde(default)]
    pub limits: ResourceList,
}

impl Resources {
    /// Requests and limits together.
    pub fn new(requests: ResourceList, limits: ResourceList) -> Self {
        Self { requests, limits }
    }

    fn validate(&self, errors: &mut ValidationErrors) {
        let pairs =
            [("cpu", &self.requests.cpu, &self.limits.cpu), ("memory", &self.requests.memory, &self.limits.memory)];
        for (what, request, limit) in pairs {
            if let (Some(request), Some(limit)) = (request, limit)
                && request.cmp_value(limit).is_gt()
            {
                errors.push(ValidationError::new(
                    format!("resources.requests.{what}"),
                    request.to_string(),
                    format!("request is above the limit {limit}"),
                ));
            }
        }
    }
}

/// How a probe checks the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProbeAction {
    /// An HTTP GET that must answer 200 to 399.
    Http {
        /// The request path, starting with `/`.
        path: String,
        /// The port number.
        port: u16,
    },
    /// A TCP connection that must open.
    Tcp {
        /// The port number.
        port: u16,
    },
    /// A command run in the container that must exit 0.
    Exec {
        /// The command and its arguments.
        command: Vec<String>,
    },
}

/// A liveness, readiness or startup probe, with Kubernetes' semantics and defaults.
///
/// ```
/// use deploy_core::model::Probe;
/// let p = Probe::http("/healthz", 8080);
/// assert_eq!(p.failure_threshold, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Probe {
    /// What the probe does.
    pub action: ProbeAction,
    /// Wait before the first check.
    #[serde(default = "zero_duration")]
    pub initial_delay: HumanDuration,
    /// Time between checks.
    #[serde(default = "ten_seconds")]
    pub period: HumanDuration,
    /// Time a single check may take.
    #[serde(default = "one_second")]
    pub timeout: HumanDuration,
    /// Consecutive failures after which the probe fails.
    #[serde(default = "three")]
    pub failure_threshold: u32,
    /// Consecutive successes after which the probe passes again.
    #[serde(default = "one")]
    pub success_threshold: u32,
}

fn zero_duration() -> HumanDuration {
    HumanDuration::new(std::time::Duration::ZERO)
}
fn ten_seconds() -> HumanDuration {
    HumanDuration::new(std::time::Duration::from_secs(10))
}
fn one_second() -> HumanDuration {
    HumanDuration::new(std::time::Duration::from_secs(1))
}
fn three() -> u32 {
    3
}
fn one() -> u32 {
    1
}

impl Probe {
    /// An HTTP probe with Kubernetes' defaults (period 10 s, timeout 1 s, 3 failures).
    pub fn http(path: impl Into<String>, port: u16) -> Self {
        Self::with_action(ProbeAction::Http { path: path.into(), port })
    }

    /// A TCP probe with Kubernetes' defaults.
    pub fn tcp(port: u16) -> Self {
        Self::with_action(ProbeAction::Tcp { port })
    }

    fn with_action(action: ProbeAction) -> Self {
        Self {
            action,
            initial_delay: zero_duration(),
            period: ten_seconds(),
            timeout: one_second(),
            failure_threshold: three(),
            success_threshold: one(),
        }
    }

    /// Sets the delay before the first check.
    #[must_use]
    pub fn initial_delay(mut self, delay: HumanDuration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the time between checks.
    #[must_use]
    pub fn period(mut self, period: HumanDuration) -> Self {
        self.period = period;
        self
    }

    fn validate(&self, field: &str, errors: &mut ValidationErrors) {
        match &self.action {
            ProbeAction::Http { path, port } => {
                if !path.starts_with('/') {
                    errors.push(ValidationError::new(format!("{field}.path"), path, "must start with '/'"));
                }
                if *port == 0 {
                    errors.push(ValidationError::new(format!("{field}.port"), "0", "must be between 1 and 65535"));
                }
            }
            ProbeAction::Tcp { port } if *port == 0 => {
                errors.push(ValidationError::new(format!("{field}.port"), "0", "must be between 1 and 65535"));
            }
            ProbeAction::Exec { command } if command.is_empty() => {
                errors.push(ValidationError::new(format!("{field}.command"), "[]", "must not be empty"));
            }
            _ => {}
        }
        if self.period.is_zero() {
            errors.push(ValidationError::new(format!("{field}.period"), "0s", "must be positive"));
        }
        if self.timeout.is_zero() {
            errors.push(ValidationError::new(format!("{field}.timeout"), "0s", "must be positive"));
        }
        if self.failure_threshold == 0 || self.success_threshold == 0 {
            errors.push(ValidationError::new(format!("{field}.thresholds"), "0", "thresholds must be at least 1"));
        }
    }
}

/// Horizontal autoscaling bounds and targets.
///
/// ```
/// use deploy_core::model::{Autoscaling, Percent};
/// let a = Autoscaling::cpu(3, 10, Percent::new(70).unwrap());
/// assert_eq!(a.max_replicas, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Autoscaling {
    /// The fewest replicas the autoscaler keeps.
    pub min_replicas: u32,
    /// The most replicas the autoscaler starts.
    pub max_replicas: u32,
    /// Target average CPU utilisation, relative to the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<Percent>,
    /// Target average memory utilisation, relative to the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_memory: Option<Percent>,
}

impl Autoscaling {
    /// Autoscaling on CPU utilisation only.
    pub fn cpu(min_replicas: u32, max_replicas: u32, target_cpu: Percent) -> Self {
        Self { min_replicas, max_replicas, target_cpu: Some(target_cpu), target_memory: None }
    }

    fn validate(&self, errors: &mut ValidationErrors) {
        if self.min_replicas == 0 {
            errors.push(ValidationError::new("autoscaling.min_replicas", "0", "must be at least 1"));
        }
        if self.min_replicas > self.max_replicas {
            errors.push(ValidationError::new(
                "autoscaling.min_replicas",
                self.min_replicas.to_string(),
                format!("is above max_replicas {}", self.max_replicas),
            ));
        }
        if self.target_cpu.is_none() && self.target_memory.is_none() {
            errors.push(ValidationError::new("autoscaling", "no target", "needs a CPU or a memory target"));
        }
        for (field, target) in
            [("autoscaling.target_cpu", self.target_cpu), ("autoscaling.target_memory", self.target_memory)]
        {
            if target == Some(Percent::ZERO) {
                errors.push(ValidationError::new(field, "0%", "must be above 0%"));
            }
        }
    }
}

/// Pod-level security settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PodSecurityContext {
    /// Refuse to start containers whose user is root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// The user id processes run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// The group id processes run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// The group that owns mounted volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
}

impl PodSecurityContext {
    /// The secure default of the seed's production profile: non-root, user, group and
    /// volume group 1000.
    pub fn restricted() -> Self {
        Self { run_as_non_root: Some(true), run_as_user: Some(1000), run_as_group: Some(1000), fs_group: Some(1000) }
    }
}

/// Container-level security settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerSecurityContext {
    /// Whether a process may gain more privileges than its parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Mount the root filesystem read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// Run the container privileged. Never do this in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Linux capabilities to drop (`ALL` drops every one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_capabilities: Vec<String>,
}

impl ContainerSecurityContext {
    /// No privilege escalation, read-only root filesystem, not privileged, all
    /// capabilities dropped.
    pub fn restricted() -> Self {
        Self {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            drop_capabilities: vec!["ALL".to_owned()],
        }
    }
}

/// A count or a percentage, as Kubernetes' `IntOrString` for `maxSurge` and
/// `maxUnavailable`.
///
/// ```
/// use deploy_core::model::{IntOrPercent, Percent};
/// let surge = IntOrPercent::Percent(Percent::new(25).unwrap());
/// assert_eq!(surge.resolve(10, true), 3); // surge rounds up
/// assert_eq!(surge.resolve(10, false), 2); // unavailable rounds down
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum IntOrPercent {
    /// An absolute number of pods.
    Int(u32),
    /// A percentage of the desired replicas.
    Percent(Percent),
}

impl IntOrPercent {
    /// The absolute value for `total` replicas, with Kubernetes' rounding: `round_up`
    /// for `maxSurge`, down for `maxUnavailable`.
    pub fn resolve(self, total: u32, round_up: bool) -> u32 {
        match self {
            Self::Int(n) => n,
            Self::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p.value());
                let value = if round_up { scaled.div_ceil(100) } else { scaled / 100 };
                u32::try_from(value).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}"),
        }
    }
}

/// Parameters of a platform's native rolling update.
///
/// The default is Kubernetes' own: 25 % surge, 25 % unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RollingUpdateParams {
    /// How many pods may exist above the desired count during the update.
    pub max_surge: IntOrPercent,
    /// How many desired pods may be unavailable during the update.
    pub max_unavailable: IntOrPercent,
}

impl RollingUpdateParams {
    /// Surge and unavailability together.
    pub fn new(max_surge: IntOrPercent, max_unavailable: IntOrPercent) -> Self {
        Self { max_surge, max_unavailable }
    }

    /// The absolute surge and unavailability for `replicas` desired pods, with
    /// Kubernetes' rule that both cannot be zero (unavailability becomes 1).
    pub fn resolve(&self, replicas: u32) -> (u32, u32) {
        let surge = self.max_surge.resolve(replicas, true);
        let unavailable = self.max_unavailable.resolve(replicas, false);
        if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
    }
}

impl Default for RollingUpdateParams {
    fn default() -> Self {
        #[expect(clippy::expect_used, reason = "literal in range")]
        let quarter = IntOrPercent::Percent(Percent::new(25).expect("25 is a percentage"));
        Self { max_surge: quarter, max_unavailable: quarter }
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
