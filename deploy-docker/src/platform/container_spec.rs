//! The container of one replica: what of an `AppSpec` and a `Workload` maps onto
//! a Docker container, and what is refused.

use deploy_core::error::Classify;
use deploy_core::model::EnvSource;
use deploy_core::model::{AppSpec, EnvVar, Probe, ProbeAction, Release, Track, ValidationError, ValidationErrors};
use deploy_core::platform::PlatformError;
use deploy_core::secret::SecretError;

use super::{DockerPlatform, container_name};
use crate::config_files::Snapshot;
use crate::containers::{ContainerHealthcheck, ContainerSpec, Hardening, Limits, Mount, MountSource, PortMapping};
use crate::labels;
use crate::workload::Workload;

impl DockerPlatform {
    /// The container of one replica of `track`, with everything of `spec` and the
    /// app's [`Workload`] that maps onto a container; what does not map is refused
    /// here, by name, before anything is created.
    ///
    /// `env` is the release's environment: the one its configuration snapshot
    /// recorded, else the spec's; `snapshot` is the release's snapshot, when one exists.
    pub(super) async fn container_spec(
        &self,
        spec: &AppSpec,
        env: &[EnvVar],
        snapshot: Option<&Snapshot>,
        track: Track,
        release: &Release,
        revision: &str,
    ) -> Result<ContainerSpec, PlatformError> {
        let app = spec.id();
        let mut errors = ValidationErrors::new();
        let workload = self.config.workloads.get(&app).cloned().unwrap_or_default();
        refuse_unmappable(spec, &workload, &mut errors);
        let mut container = ContainerSpec::new(container_name(&app, track), release.image.familiar())
            .network(self.config.network.clone(), [Self::track_alias(&app, track)])
            .restart(self.config.restart)
            .labels(self.config.labels.clone())
            .labels(spec.labels.clone())
            .labels(labels::track_selector(&app, track))
            .label(labels::VERSION, release.version.as_str())
            .label(labels::REVISION, revision);
        // Published on loopback only: a proxy on the host (NginxRouter) reaches them.
        for port in &spec.ports {
            container = container.port(PortMapping::loopback(port.container_port));
        }
        if !spec.ports.is_empty() {
            let list: Vec<String> = spec.ports.iter().map(|p| p.container_port.to_string()).collect();
            container = container.label(labels::PORTS, list.join(","));
        }
        for (name, value) in self.resolve_env(env, "env", &mut errors).await? {
            container = container.env(name, value);
        }
        if let Some(probe) = spec.readiness.as_ref().or(spec.liveness.as_ref()).or(spec.startup.as_ref()) {
            let mut check = self.health_check(probe);
            // A startup probe holds the others back: its whole budget is the grace period.
            if let Some(startup) = &spec.startup {
                let budget = startup.initial_delay.as_duration()
                    + startup.period.as_duration().saturating_mul(startup.failure_threshold.max(1));
                check.start_period = check.start_period.max(budget);
            }
            container = container.health(check);
        }
        container = container.limits(limits(spec)).hardening(hardening(spec));
        if let Some(command) = &workload.command {
            container = container.entrypoint(command.clone());
        }
        if let Some(args) = &workload.args {
            container = container.command(args.clone());
        }
        for mount in &workload.mounts {
            container = container.mount(mount.clone());
        }
        if let Some(snapshot) = snapshot {
            // Marks the snapshot in use while a container of the release exists, so
            // that garbage collection keeps it for a rollback.
            container = container.label(labels::CONFIG_SNAPSHOT, snapshot.id.as_str());
        }
        match (&workload.config_mount, &release.config_checksum, snapshot) {
            (Some(target), Some(_), Some(snapshot)) => {
                let source = MountSource::Volume(snapshot.volume.clone());
                container = container.mount(Mount::new(source, target.clone()).read_only());
            }
            (Some(_), Some(id), None) => errors.push(ValidationError::new(
                "release.config_checksum",
                id.clone(),
                "no configuration snapshot of the app has this id; publish it with ConfigSnapshots first",
            )),
            _ => {}
        }
        if let Some(uid) = spec.pod_security.run_as_user {
            let user = match spec.pod_security.run_as_group {
                Some(gid) => format!("{uid}:{gid}"),
                None => uid.to_string(),
            };
            container = container.user(user);
        }
        errors.into_result(container).map_err(|errors| PlatformError::Invalid { app, errors })
    }

    /// Literal values as they are, secret references read from the manager;
    /// config map references and secrets without a manager are refused into `errors`.
    pub(super) async fn resolve_env(
        &self,
        vars: &[EnvVar],
        field: &str,
        errors: &mut ValidationErrors,
    ) -> Result<Vec<(String, String)>, PlatformError> {
        let mut resolved = Vec::with_capacity(vars.len());
        for var in vars {
            match &var.source {
                EnvSource::Value(value) => resolved.push((var.name.clone(), value.clone())),
                EnvSource::Secret { name, key } => {
                    let Some(manager) = &self.secrets.0 else {
                        errors.push(ValidationError::new(
                            format!("{field}.{}", var.name),
                            "secret reference",
                            "the Docker platform has no SecretManager to read it from (DockerPlatform::secrets)",
                        ));
                        continue;
                    };
                    let path = format!("{name}/{key}");
                    match manager.get(&path).await {
                        Ok(secret) => match secret.value.expose_str() {
                            Ok(text) => resolved.push((var.name.clone(), text.to_owned())),
                            Err(_) => errors.push(ValidationError::new(
                                format!("{field}.{}", var.name),
                                path,
                                "the secret is not UTF-8 text",
                            )),
                        },
                        Err(SecretError::NotFound { .. }) => errors.push(ValidationError::new(
                            format!("{field}.{}", var.name),
                            path,
                            "no such secret in the secret manager",
                        )),
                        Err(e) => {
                            let kind = e.kind();
                            return Err(PlatformError::backend(format!("read secret {path}"), kind, e));
                        }
                    }
                }
                EnvSource::ConfigMap { .. } => errors.push(ValidationError::new(
                    format!("{field}.{}", var.name),
                    "config map reference",
                    "Docker has no config maps: use literal values, or configuration files (Workload::config_mount)",
                )),
                _ => errors.push(ValidationError::new(
                    format!("{field}.{}", var.name),
                    "unknown source",
                    "the Docker platform cannot read this kind of value",
                )),
            }
        }
        Ok(resolved)
    }

    pub(super) fn health_check(&self, probe: &Probe) -> ContainerHealthcheck {
        let fill = |template: &[String], port: u16, path: &str| -> Vec<String> {
            template.iter().map(|w| w.replace("{port}", &port.to_string()).replace("{path}", path)).collect()
        };
        let test = match &probe.action {
            ProbeAction::Http { path, port } => fill(&self.config.probe_commands.http, *port, path),
            ProbeAction::Tcp { port } => fill(&self.config.probe_commands.tcp, *port, ""),
            ProbeAction::Exec { command } => std::iter::once("CMD".to_owned()).chain(command.iter().cloned()).collect(),
            _ => Vec::new(),
        };
        let mut check =
            ContainerHealthcheck::new(test).interval(probe.period.as_duration()).retries(probe.failure_threshold);
        check.timeout = probe.timeout.as_duration();
        check.start_period = probe.initial_delay.as_duration();
        check
    }
}

/// A stable hash of what makes the release's containers: version, image, config
/// checksum, environment (references to secrets, not their values), probes, ports and user. FNV-1a, so it is the same in
/// every process and Rust version.
pub(super) fn revision(spec: &AppSpec, env: &[EnvVar], release: &Release, workload: Option<&Workload>) -> String {
    let mut material = serde_json::json!({
        "version": release.version,
        "image": release.image,
        "config": release.config_checksum,
        "env": env,
        "readiness": spec.readiness,
        "liveness": spec.liveness,
        "ports": spec.ports,
        "user": spec.pod_security.run_as_user,
        "group": spec.pod_security.run_as_group,
    });
    // Added only when set, so that containers made before these existed keep their revision.
    if spec.resources != Default::default() || spec.container_security != Default::default() || spec.startup.is_some() {
        material["resources"] = serde_json::json!(spec.resources);
        material["security"] = serde_json::json!(spec.container_security);
        material["startup"] = serde_json::json!(spec.startup);
    }
    if let Some(workload) = workload.filter(|w| **w != Workload::default()) {
        material["workload"] = serde_json::Value::String(format!("{workload:?}"));
    }
    let material = material.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in material.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Refuses, by field name, what the spec or the workload asks for that a Docker
/// container cannot do.
pub(super) fn refuse_unmappable(spec: &AppSpec, workload: &Workload, errors: &mut ValidationErrors) {
    for field in workload.kubernetes_only() {
        errors.push(ValidationError::new(
            format!("workload.{field}"),
            "set",
            "a Kubernetes pod-template feature with no Docker equivalent",
        ));
    }
    if spec.autoscaling.is_some() {
        errors.push(ValidationError::new("autoscaling", "set", "Docker has no autoscaler; set replicas instead"));
    }
    if spec.pod_security.fs_group.is_some() {
        errors.push(ValidationError::new(
            "pod_security.fs_group",
            "set",
            "Docker does not change the group of mounted volumes",
        ));
    }
    if spec.pod_security.run_as_non_root == Some(true) && spec.pod_security.run_as_user.is_none_or(|u| u == 0) {
        errors.push(ValidationError::new(
            "pod_security.run_as_non_root",
            "true",
            "Docker cannot enforce it: set pod_security.run_as_user to a non-zero user",
        ));
    }
    if spec.pre_stop_delay.is_some() {
        errors.push(ValidationError::new(
            "pre_stop_delay",
            "set",
            "Docker has no pre-stop hook; take leaving containers out of the proxy with an EndpointWatcher (NginxDrain)",
        ));
    }
    for mount in &workload.mounts {
        if !mount.target.starts_with('/') {
            errors.push(ValidationError::new(
                "workload.mounts",
                mount.target.clone(),
                "a mount target must be an absolute path",
            ));
        }
        if let MountSource::Bind(path) = &mount.source
            && !path.starts_with('/')
        {
            errors.push(ValidationError::new(
                "workload.mounts",
                path.clone(),
                "a bind source must be an absolute path on the engine's host",
            ));
        }
    }
}

/// CPU and memory limits (`NanoCpus`, `Memory`) and requests (`CpuShares` as the
/// kubelet maps them, `MemoryReservation`) from the spec's resources.
pub(super) fn limits(spec: &AppSpec) -> Limits {
    let bytes = |q: &deploy_core::model::Quantity| {
        let nano = q.to_nano_units();
        i64::try_from((nano + 999_999_999) / 1_000_000_000).unwrap_or(i64::MAX)
    };
    Limits {
        nano_cpus: spec.resources.limits.cpu.as_ref().map(|q| i64::try_from(q.to_nano_units()).unwrap_or(i64::MAX)),
        memory_bytes: spec.resources.limits.memory.as_ref().map(bytes),
        memory_reservation_bytes: spec.resources.requests.memory.as_ref().map(bytes),
        cpu_shares: spec.resources.requests.cpu.as_ref().map(|q| {
            let shares = q.to_nano_units().saturating_mul(1024) / 1_000_000_000;
            i64::try_from(shares).unwrap_or(i64::MAX).max(2)
        }),
    }
}

/// The container security settings that Docker has.
pub(super) fn hardening(spec: &AppSpec) -> Hardening {
    let security = &spec.container_security;
    Hardening {
        read_only_root: security.read_only_root_filesystem == Some(true),
        cap_drop: security.drop_capabilities.clone(),
        no_new_privileges: security.allow_privilege_escalation == Some(false),
        privileged: security.privileged == Some(true),
    }
}
