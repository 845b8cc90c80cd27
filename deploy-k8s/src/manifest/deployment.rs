//! The Deployment of an application (or of one of its tracks), built from its
//! [`AppSpec`].

use std::collections::BTreeMap;

use deploy_core::model::{AppSpec, EnvVar, ImageRef, IntOrPercent, Probe, ProbeAction, Release, ResourceList, Track};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar as KubeEnvVar, EnvVarSource, ExecAction, HTTPGetAction, Lifecycle,
    LifecycleHandler, LocalObjectReference, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe as KubeProbe, ResourceRequirements, SeccompProfile, SecretEnvSource, SecretKeySelector,
    SecretVolumeSource, SecurityContext, SleepAction, TCPSocketAction, Toleration, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;

mod patch;
use patch::merged;

/// A ConfigMap or Secret whose keys all become environment variables (`envFrom`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvFrom {
    /// Every key of this ConfigMap.
    ConfigMap(String),
    /// Every key of this Secret.
    Secret(String),
}

/// Where a pod volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VolumeSource {
    /// A scratch directory that lives as long as the pod (`emptyDir`), with an
    /// optional size limit such as `64Mi`.
    EmptyDir {
        /// The most it may hold.
        size_limit: Option<String>,
    },
    /// The keys of a ConfigMap, as files.
    ConfigMap(String),
    /// The keys of a Secret, as files.
    Secret(String),
    /// A PersistentVolumeClaim.
    PersistentVolumeClaim(String),
}

/// A volume of the pod and where the app's container mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodVolume {
    /// The volume's name in the pod.
    pub name: String,
    /// What it holds.
    pub source: VolumeSource,
    /// Where the app's container sees it.
    pub mount_path: String,
    /// Mounted read-only (ConfigMaps and Secrets are, whatever this says).
    pub read_only: bool,
}

impl PodVolume {
    /// `source`, named `name`, mounted at `mount_path`, writable where the source allows.
    pub fn new(name: impl Into<String>, source: VolumeSource, mount_path: impl Into<String>) -> Self {
        Self { name: name.into(), source, mount_path: mount_path.into(), read_only: false }
    }

    /// Mounts it read-only.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// Kubernetes-only settings of a Deployment that [`AppSpec`] does not carry.
///
/// The default is one Deployment named after the app, secure security contexts
/// filled in wherever the spec leaves them open, 10 revisions kept and a progress
/// deadline of 600 s (Kubernetes' own defaults, written out so they can be seen).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeploymentOptions {
    /// The track this Deployment runs; `None` names it after the app alone.
    pub track: Option<Track>,
    /// The release to run; `None` runs `spec.image` with no version label.
    pub release: Option<Release>,
    /// Replicas, overriding `spec.replicas`. Left out of the object when `spec`
    /// autoscales and this is `None`, so server-side apply never fights the HPA.
    pub replicas: Option<u32>,
    /// Keys and values a node must carry.
    pub node_selector: BTreeMap<String, String>,
    /// Node and pod (anti-)affinity.
    pub affinity: Option<Affinity>,
    /// Taints the pods tolerate.
    pub tolerations: Vec<Toleration>,
    /// ConfigMaps and Secrets loaded whole into the environment.
    pub env_from: Vec<EnvFrom>,
    /// `checksum/{name}` pod annotations: a change restarts the pods. Fill with
    /// [`crate::manifest::config::config_map_checksum`] and
    /// [`crate::manifest::config::secret_checksum`] (keyed) or
    /// [`crate::manifest::config::secret_revision_checksum`].
    pub checksums: BTreeMap<String, String>,
    /// The pods' service account.
    pub service_account: Option<String>,
    /// Fill unset security-context fields with restricted values (non-root user
    /// 1000, RuntimeDefault seccomp, no privilege escalation, read-only root, all
    /// capabilities dropped). On by default.
    pub secure_defaults: bool,
    /// `spec.progressDeadlineSeconds`.
    pub progress_deadline_seconds: i32,
    /// `spec.revisionHistoryLimit`.
    pub revision_history_limit: i32,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i32,
    /// Volumes of the pod, each mounted into the app's container.
    pub volumes: Vec<PodVolume>,
    /// Containers that run to completion before the app starts (a migration).
    pub init_containers: Vec<Container>,
    /// Containers that run beside the app's (a proxy, a log shipper).
    pub sidecars: Vec<Container>,
    /// The app container's entrypoint, replacing the image's.
    pub command: Option<Vec<String>>,
    /// The app container's arguments, replacing the image's.
    pub args: Option<Vec<String>>,
    /// Secrets with the credentials to pull the images.
    pub image_pull_secrets: Vec<String>,
    /// How the pods spread over zones and nodes.
    pub topology_spread: Vec<TopologySpreadConstraint>,
    /// Replaces the pod security context built from the spec and the defaults.
    pub pod_security: Option<PodSecurityContext>,
    /// Replaces the app container's security context built from the spec and the defaults.
    pub container_security: Option<SecurityContext>,
    /// Mount a writable `emptyDir` at `/tmp` when the app's root file system is
    /// read-only and nothing else is mounted there (on by default: most programs
    /// need a temporary directory).
    pub writable_tmp: bool,
    /// A pod spec merged over the built one last (JSON merge patch, RFC 7386: the
    /// fields it sets replace the built ones, non-empty lists whole; an empty list,
    /// such as the `containers` every `PodSpec` has, leaves the built one), for what
    /// these options do not express.
    pub pod_spec_patch: Option<PodSpec>,
}

impl Default for DeploymentOptions {
    fn default() -> Self {
        Self {
            track: None,
            release: None,
            replicas: None,
            node_selector: BTreeMap::new(),
            affinity: None,
            tolerations: Vec::new(),
            env_from: Vec::new(),
            checksums: BTreeMap::new(),
            service_account: None,
            secure_defaults: true,
            progress_deadline_seconds: 600,
            revision_history_limit: 10,
            min_ready_seconds: 0,
            volumes: Vec::new(),
            init_containers: Vec::new(),
            sidecars: Vec::new(),
            command: None,
            args: None,
            image_pull_secrets: Vec::new(),
            topology_spread: Vec::new(),
            pod_security: None,
            container_security: None,
            writable_tmp: true,
            pod_spec_patch: None,
        }
    }
}

impl DeploymentOptions {
    /// Runs `track`.
    #[must_use]
    pub fn track(mut self, track: Track) -> Self {
        self.track = Some(track);
        self
    }

    /// Runs `release`.
    #[must_use]
    pub fn release(mut self, release: Release) -> Self {
        self.release = Some(release);
        self
    }

    /// Sets the replica count.
    #[must_use]
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// Requires a node label.
    #[must_use]
    pub fn node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// Sets the affinity.
    #[must_use]
    pub fn affinity(mut self, affinity: Affinity) -> Self {
        self.affinity = Some(affinity);
        self
    }

    /// Adds a toleration.
    #[must_use]
    pub fn toleration(mut self, toleration: Toleration) -> Self {
        self.tolerations.push(toleration);
        self
    }

    /// Loads a ConfigMap or Secret whole into the environment.
    #[must_use]
    pub fn env_from(mut self, source: EnvFrom) -> Self {
        self.env_from.push(source);
        self
    }

    /// Adds a `checksum/{name}` annotation.
    #[must_use]
    pub fn checksum(mut self, name: impl Into<String>, checksum: impl Into<String>) -> Self {
        self.checksums.insert(name.into(), checksum.into());
        self
    }

    /// Sets the service account.
    #[must_use]
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = Some(name.into());
        self
    }

    /// Turns the restricted security-context defaults on or off.
    #[must_use]
    pub fn secure_defaults(mut self, on: bool) -> Self {
        self.secure_defaults = on;
        self
    }

    /// Sets the progress deadline in seconds.
    #[must_use]
    pub fn progress_deadline_seconds(mut self, seconds: i32) -> Self {
        self.progress_deadline_seconds = seconds;
        self
    }

    /// Adds a volume mounted into the app's container.
    #[must_use]
    pub fn volume(mut self, volume: PodVolume) -> Self {
        self.volumes.push(volume);
        self
    }

    /// Adds an init container.
    #[must_use]
    pub fn init_container(mut self, container: Container) -> Self {
        self.init_containers.push(container);
        self
    }

    /// Adds a sidecar container.
    #[must_use]
    pub fn sidecar(mut self, container: Container) -> Self {
        self.sidecars.push(container);
        self
    }

    /// Sets the app container's entrypoint.
    #[must_use]
    pub fn command(mut self, command: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.command = Some(command.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the app container's arguments.
    #[must_use]
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Adds an image pull Secret.
    #[must_use]
    pub fn image_pull_secret(mut self, name: impl Into<String>) -> Self {
        self.image_pull_secrets.push(name.into());
        self
    }

    /// Adds a topology spread constraint.
    #[must_use]
    pub fn topology_spread(mut self, constraint: TopologySpreadConstraint) -> Self {
        self.topology_spread.push(constraint);
        self
    }

    /// Replaces the pod security context.
    #[must_use]
    pub fn pod_security(mut self, context: PodSecurityContext) -> Self {
        self.pod_security = Some(context);
        self
    }

    /// Replaces the app container's security context.
    #[must_use]
    pub fn container_security(mut self, context: SecurityContext) -> Self {
        self.container_security = Some(context);
        self
    }

    /// Turns the writable `/tmp` on or off.
    #[must_use]
    pub fn writable_tmp(mut self, on: bool) -> Self {
        self.writable_tmp = on;
        self
    }

    /// Merges `patch` over the built pod spec, last.
    #[must_use]
    pub fn pod_spec_patch(mut self, patch: PodSpec) -> Self {
        self.pod_spec_patch = Some(patch);
        self
    }
}

/// Builds the Deployment of `spec` as `options` says.
///
/// The selector is the app (and track) label only, the version goes on the pods, so
/// that a new release updates the Deployment in place. Probes, resources, env,
/// security contexts, the pre-stop sleep (`spec.pre_stop_delay`) and the rolling
/// update parameters come from `spec`; the release's change cause becomes
/// `kubernetes.io/change-cause`, so `kubectl rollout history` shows it.
pub fn deployment(spec: &AppSpec, options: &DeploymentOptions) -> Deployment {
    let app = spec.id();
    let version = options.release.as_ref().map(|r| &r.version);
    let image = options.release.as_ref().map_or(&spec.image, |r| &r.image);
    let selector = match options.track {
        Some(track) => labels::track_selector(&app, track),
        None => labels::app_selector(&app),
    };
    let mut object_labels = spec.labels.clone();
    object_labels.extend(labels::pod_labels(&app, options.track, version));
    let name = match options.track {
        Some(track) => labels::workload_name(&app, track),
        None => app.name.to_string(),
    };

    let mut annotations = spec.annotations.clone();
    if let Some(cause) = options.release.as_ref().and_then(|r| r.change_cause.clone()) {
        annotations.insert(labels::CHANGE_CAUSE.to_owned(), cause);
    }
    let mut pod_annotations = spec.annotations.clone();
    for (name, sum) in &options.checksums {
        pod_annotations.insert(format!("checksum/{name}"), sum.clone());
    }
    if let Some(sum) = options.release.as_ref().and_then(|r| r.config_checksum.clone()) {
        pod_annotations.insert(labels::CONFIG_CHECKSUM.to_owned(), sum);
    }

    let replicas = match options.replicas {
        Some(n) => Some(to_i32(n)),
        None if spec.autoscaling.is_some() => None,
        None => Some(to_i32(spec.replicas)),
    };

    Deployment {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(app.namespace.to_string()),
            labels: Some(object_labels.clone()),
            annotations: non_empty(annotations),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas,
            selector: LabelSelector { match_labels: Some(selector), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(int_or_percent(spec.rolling_update.max_surge)),
                    max_unavailable: Some(int_or_percent(spec.rolling_update.max_unavailable)),
                }),
            }),
            progress_deadline_seconds: Some(options.progress_deadline_seconds),
            revision_history_limit: Some(options.revision_history_limit),
            min_ready_seconds: (options.min_ready_seconds > 0).then_some(options.min_ready_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(object_labels),
                    annotations: non_empty(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(spec, image, options)),
            },
            paused: None,
        },
        status: None,
    }
}

fn pod_spec(spec: &AppSpec, image: &ImageRef, options: &DeploymentOptions) -> PodSpec {
    let mut app = container(spec, image, options);
    let mut volumes: Vec<Volume> = options.volumes.iter().map(volume).collect();
    let mut mounts: Vec<VolumeMount> = options.volumes.iter().map(volume_mount).collect();
    let read_only_root = app.security_context.as_ref().and_then(|c| c.read_only_root_filesystem) == Some(true);
    if options.writable_tmp && read_only_root && !mounts.iter().any(|m| m.mount_path == "/tmp") {
        let name = unique_name("tmp", &volumes);
        volumes.push(volume(&PodVolume::new(&name, VolumeSource::EmptyDir { size_limit: None }, "/tmp")));
        mounts.push(VolumeMount { name, mount_path: "/tmp".to_owned(), ..VolumeMount::default() });
    }
    app.volume_mounts = (!mounts.is_empty()).then_some(mounts);
    let mut containers = vec![app];
    containers.extend(options.sidecars.iter().cloned());
    let pull_secrets: Vec<LocalObjectReference> =
        options.image_pull_secrets.iter().map(|name| LocalObjectReference { name: name.clone() }).collect();
    let built = PodSpec {
        containers,
        init_containers: (!options.init_containers.is_empty()).then(|| options.init_containers.clone()),
        volumes: (!volumes.is_empty()).then_some(volumes),
        image_pull_secrets: (!pull_secrets.is_empty()).then_some(pull_secrets),
        security_context: Some(
            options.pod_security.clone().unwrap_or_else(|| pod_security(spec, options.secure_defaults)),
        ),
        node_selector: non_empty(options.node_selector.clone()),
        affinity: options.affinity.clone(),
        tolerations: (!options.tolerations.is_empty()).then(|| options.tolerations.clone()),
        topology_spread_constraints: (!options.topology_spread.is_empty()).then(|| options.topology_spread.clone()),
        service_account_name: options.service_account.clone(),
        termination_grace_period_seconds: spec
            .pre_stop_delay
            .map(|d| i64::try_from(d.as_duration().as_secs()).unwrap_or(i64::MAX).saturating_add(30)),
        ..PodSpec::default()
    };
    match &options.pod_spec_patch {
        Some(patch) => merged(built, patch),
        None => built,
    }
}

/// `base`, or `base-2`, `base-3` ... if a volume already has that name.
fn unique_name(base: &str, volumes: &[Volume]) -> String {
    let taken = |n: &str| volumes.iter().any(|v| v.name == n);
    if !taken(base) {
        return base.to_owned();
    }
    (2..).map(|i| format!("{base}-{i}")).find(|n| !taken(n)).unwrap_or_else(|| base.to_owned())
}

/// Where `v` is mounted in the container that uses it.
pub(crate) fn volume_mount(v: &PodVolume) -> VolumeMount {
    VolumeMount {
        name: v.name.clone(),
        mount_path: v.mount_path.clone(),
        read_only: v.read_only.then_some(true),
        ..VolumeMount::default()
    }
}

pub(crate) fn volume(v: &PodVolume) -> Volume {
    let mut out = Volume { name: v.name.clone(), ..Volume::default() };
    match &v.source {
        VolumeSource::EmptyDir { size_limit } => {
            out.empty_dir = Some(EmptyDirVolumeSource {
                size_limit: size_limit.clone().map(KubeQuantity),
                ..EmptyDirVolumeSource::default()
            });
        }
        VolumeSource::ConfigMap(name) => {
            out.config_map = Some(ConfigMapVolumeSource { name: name.clone(), ..ConfigMapVolumeSource::default() });
        }
        VolumeSource::Secret(name) => {
            out.secret = Some(SecretVolumeSource { secret_name: Some(name.clone()), ..SecretVolumeSource::default() });
        }
        VolumeSource::PersistentVolumeClaim(claim) => {
            out.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: v.read_only.then_some(true),
            });
        }
    }
    out
}

fn container(spec: &AppSpec, image: &ImageRef, options: &DeploymentOptions) -> Container {
    let ports: Vec<ContainerPort> = spec
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.to_string()),
            container_port: i32::from(p.container_port),
            protocol: Some(format!("{:?}", p.protocol).to_ascii_uppercase()),
            ..ContainerPort::default()
        })
        .collect();
    let env: Vec<KubeEnvVar> = spec.env.iter().map(env_var).collect();
    let env_from: Vec<EnvFromSource> = options
        .env_from
        .iter()
        .map(|source| match source {
            EnvFrom::ConfigMap(name) => EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: name.clone(), optional: None }),
                ..EnvFromSource::default()
            },
            EnvFrom::Secret(name) => EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: name.clone(), optional: None }),
                ..EnvFromSource::default()
            },
        })
        .collect();
    let lifecycle = spec.pre_stop_delay.filter(|d| !d.is_zero()).map(|delay| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction { seconds: i64::try_from(delay.as_duration().as_secs()).unwrap_or(i64::MAX) }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
    Container {
        name: spec.name.to_string(),
        image: Some(image.to_string()),
        ports: (!ports.is_empty()).then_some(ports),
        env: (!env.is_empty()).then_some(env),
        env_from: (!env_from.is_empty()).then_some(env_from),
        resources: resources(&spec.resources.requests, &spec.resources.limits),
        liveness_probe: spec.liveness.as_ref().map(probe),
        readiness_probe: spec.readiness.as_ref().map(probe),
        startup_probe: spec.startup.as_ref().map(probe),
        security_context: Some(
            options.container_security.clone().unwrap_or_else(|| container_security(spec, options.secure_defaults)),
        ),
        command: options.command.clone(),
        args: options.args.clone(),
        lifecycle,
        ..Container::default()
    }
}

pub(crate) fn env_var(var: &EnvVar) -> KubeEnvVar {
    use deploy_core::model::EnvSource;
    match &var.source {
        EnvSource::Value(value) => KubeEnvVar { name: var.name.clone(), value: Some(value.clone()), value_from: None },
        EnvSource::Secret { name, key } => KubeEnvVar {
            name: var.name.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector { name: name.to_string(), key: key.clone(), optional: None }),
                ..EnvVarSource::default()
            }),
        },
        EnvSource::ConfigMap { name, key } => KubeEnvVar {
            name: var.name.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: name.to_string(),
                    key: key.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        },
        _ => KubeEnvVar { name: var.name.clone(), value: None, value_from: None },
    }
}

/// The Kubernetes form of requests and limits; `None` when both are empty.
pub(crate) fn resources(requests: &ResourceList, limits: &ResourceList) -> Option<ResourceRequirements> {
    fn list(list: &ResourceList) -> Option<BTreeMap<String, KubeQuantity>> {
        let mut map = BTreeMap::new();
        if let Some(cpu) = &list.cpu {
            map.insert("cpu".to_owned(), KubeQuantity(cpu.as_str().to_owned()));
        }
        if let Some(memory) = &list.memory {
            map.insert("memory".to_owned(), KubeQuantity(memory.as_str().to_owned()));
        }
        non_empty(map)
    }
    let (requests, limits) = (list(requests), list(limits));
    let any = requests.is_some() || limits.is_some();
    any.then_some(ResourceRequirements { requests, limits, claims: None })
}

fn probe(probe: &Probe) -> KubeProbe {
    let mut out = KubeProbe {
        initial_delay_seconds: Some(seconds(probe.initial_delay.as_duration())),
        period_seconds: Some(seconds(probe.period.as_duration())),
        timeout_seconds: Some(seconds(probe.timeout.as_duration())),
        failure_threshold: Some(to_i32(probe.failure_threshold)),
        success_threshold: Some(to_i32(probe.success_threshold)),
        ..KubeProbe::default()
    };
    match &probe.action {
        ProbeAction::Http { path, port } => {
            out.http_get = Some(HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::Int(i32::from(*port)),
                ..HTTPGetAction::default()
            });
        }
        ProbeAction::Tcp { port } => {
            out.tcp_socket = Some(TCPSocketAction { port: IntOrString::Int(i32::from(*port)), host: None });
        }
        ProbeAction::Exec { command } => out.exec = Some(ExecAction { command: Some(command.clone()) }),
        _ => {}
    }
    out
}

fn pod_security(spec: &AppSpec, secure: bool) -> PodSecurityContext {
    let s = &spec.pod_security;
    let pick = |value: Option<i64>| value.or(secure.then_some(1000));
    PodSecurityContext {
        run_as_non_root: s.run_as_non_root.or(secure.then_some(true)),
        run_as_user: pick(s.run_as_user),
        run_as_group: pick(s.run_as_group),
        fs_group: pick(s.fs_group),
        seccomp_profile: secure.then(|| SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
        ..PodSecurityContext::default()
    }
}

fn container_security(spec: &AppSpec, secure: bool) -> SecurityContext {
    let s = &spec.container_security;
    let drop =
        if s.drop_capabilities.is_empty() && secure { vec!["ALL".to_owned()] } else { s.drop_capabilities.clone() };
    SecurityContext {
        allow_privilege_escalation: s.allow_privilege_escalation.or(secure.then_some(false)),
        read_only_root_filesystem: s.read_only_root_filesystem.or(secure.then_some(true)),
        privileged: s.privileged.or(secure.then_some(false)),
        capabilities: (!drop.is_empty()).then_some(Capabilities { drop: Some(drop), add: None }),
        ..SecurityContext::default()
    }
}

fn int_or_percent(value: IntOrPercent) -> IntOrString {
    match value {
        IntOrPercent::Int(n) => IntOrString::Int(to_i32(n)),
        other => IntOrString::String(other.to_string()),
    }
}

fn seconds(duration: std::time::Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

/// `n` as the `i32` Kubernetes uses, saturating.
pub(crate) fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `None` for an empty map, as Kubernetes omits empty maps.
pub(crate) fn non_empty<V>(map: BTreeMap<String, V>) -> Option<BTreeMap<String, V>> {
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests;
