use super::*;
use crate::fixtures;
use deploy_core::model::{Environment, EnvironmentProfile, HumanDuration, PodSecurityContext as Psc};
use std::time::Duration;

#[test]
fn production_spec_becomes_a_secure_probed_deployment() {
    let spec = EnvironmentProfile::preset(Environment::Production).apply_to(fixtures::spec());
    let release = fixtures::release("1.4.2").change_cause("ship checkout v1.4.2").config_checksum("abc123");
    let options = DeploymentOptions::default()
        .track(Track::Canary)
        .release(release)
        .replicas(2)
        .node_selector("pool", "web")
        .env_from(EnvFrom::ConfigMap("web-config".into()))
        .env_from(EnvFrom::Secret("web-secrets".into()))
        .checksum("configmap-web-config", "deadbeef")
        .toleration(Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("web".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        });
    let d = deployment(&spec, &options);
    assert_eq!(d.metadata.name.as_deref(), Some("web-canary"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[labels::CHANGE_CAUSE], "ship checkout v1.4.2");
    let s = &d.spec;
    assert_eq!(s.replicas, Some(2), "explicit replicas win over autoscaling");
    let sel = s.selector.match_labels.as_ref().unwrap();
    assert_eq!(sel.len(), 2);
    assert_eq!(sel[labels::TRACK], "canary");
    let ru = s.strategy.as_ref().unwrap().rolling_update.as_ref().unwrap();
    assert_eq!(ru.max_surge, Some(IntOrString::String("25%".into())));
    assert_eq!(ru.max_unavailable, Some(IntOrString::String("25%".into())));
    let meta = s.template.metadata.as_ref().unwrap();
    assert_eq!(meta.labels.as_ref().unwrap()[labels::VERSION], "1.4.2");
    let ann = meta.annotations.as_ref().unwrap();
    assert_eq!(ann["checksum/configmap-web-config"], "deadbeef");
    assert_eq!(ann[labels::CONFIG_CHECKSUM], "abc123");
    let pod = s.template.spec.as_ref().unwrap();
    assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "web");
    assert_eq!(pod.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("dedicated"));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(1000));
    assert_eq!(psc.fs_group, Some(1000));
    assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example.com/shop/web:1.4.2"));
    let csc = c.security_context.as_ref().unwrap();
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    assert_eq!(csc.read_only_root_filesystem, Some(true));
    assert_eq!(csc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["cpu"], KubeQuantity("200m".into()));
    assert_eq!(res.requests.as_ref().unwrap()["memory"], KubeQuantity("256Mi".into()));
    let rp = c.readiness_probe.as_ref().unwrap();
    assert_eq!(rp.http_get.as_ref().unwrap().path.as_deref(), Some("/ready"));
    assert_eq!(rp.http_get.as_ref().unwrap().port, IntOrString::Int(8080));
    assert_eq!(rp.period_seconds, Some(10));
    assert_eq!(rp.failure_threshold, Some(3));
    let env = c.env.as_ref().unwrap();
    assert_eq!(env[0].name, "LOG_LEVEL");
    assert_eq!(env[0].value.as_deref(), Some("info"));
    let secret = env[1].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((secret.name.as_str(), secret.key.as_str()), ("db", "password"));
    let from = c.env_from.as_ref().unwrap();
    assert_eq!(from[0].config_map_ref.as_ref().unwrap().name, "web-config");
    assert_eq!(from[1].secret_ref.as_ref().unwrap().name, "web-secrets");
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
    assert_eq!(c.ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
}

#[test]
fn autoscaled_spec_leaves_replicas_to_the_hpa() {
    let spec = EnvironmentProfile::preset(Environment::Production).apply_to(fixtures::spec());
    assert!(spec.autoscaling.is_some());
    let d = deployment(&spec, &DeploymentOptions::default());
    assert_eq!(d.spec.replicas, None);
    let d = deployment(&fixtures::spec().replicas(4), &DeploymentOptions::default());
    assert_eq!(d.metadata.name.as_deref(), Some("web"));
    assert_eq!(d.spec.replicas, Some(4));
}

#[test]
fn pre_stop_sleeps_and_extends_the_grace_period() {
    let mut spec = fixtures::spec();
    spec.pre_stop_delay = Some(HumanDuration::new(Duration::from_secs(15)));
    let d = deployment(&spec, &DeploymentOptions::default());
    let pod = d.spec.template.spec.unwrap();
    let sleep = pod.containers[0].lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap().sleep.as_ref().unwrap();
    assert_eq!(sleep.seconds, 15);
    assert_eq!(pod.termination_grace_period_seconds, Some(45));
}

#[test]
fn explicit_security_values_win_and_defaults_can_be_switched_off() {
    let mut spec = fixtures::spec();
    spec.pod_security = Psc::default();
    spec.pod_security.run_as_user = Some(65532);
    let d = deployment(&spec, &DeploymentOptions::default());
    let psc = d.spec.template.spec.unwrap().security_context.unwrap();
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.run_as_group, Some(1000));
    let d = deployment(&fixtures::spec(), &DeploymentOptions::default().secure_defaults(false));
    let pod = d.spec.template.spec.unwrap();
    assert_eq!(pod.security_context.unwrap().run_as_non_root, None);
    assert_eq!(pod.containers[0].security_context.as_ref().unwrap().capabilities, None);
}

#[test]
fn a_pod_spec_patch_changes_what_it_sets_and_keeps_the_containers() {
    let patch = PodSpec { termination_grace_period_seconds: Some(45), ..PodSpec::default() };
    let d = deployment(&fixtures::spec(), &DeploymentOptions::default().pod_spec_patch(patch));
    let pod = d.spec.template.spec.unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(45));
    assert_eq!(pod.containers.len(), 1, "the patch's empty `containers` does not clear the app's");
    assert!(pod.security_context.is_some(), "what the patch does not set is kept");
}

#[test]
fn a_read_only_root_gets_a_writable_tmp_unless_something_is_mounted_there() {
    let pod = |o: DeploymentOptions| deployment(&fixtures::spec(), &o).spec.template.spec.unwrap();
    let default = pod(DeploymentOptions::default());
    let mounts = default.containers[0].volume_mounts.clone().unwrap();
    assert_eq!((mounts[0].name.as_str(), mounts[0].mount_path.as_str()), ("tmp", "/tmp"));
    assert!(default.volumes.unwrap()[0].empty_dir.is_some());
    let own = pod(DeploymentOptions::default().volume(PodVolume::new(
        "tmp",
        VolumeSource::PersistentVolumeClaim("scratch".into()),
        "/tmp",
    )));
    assert_eq!(own.volumes.unwrap().len(), 1, "the user's /tmp is kept, no second one");
    let off = pod(DeploymentOptions::default().writable_tmp(false));
    assert!(off.volumes.is_none() && off.containers[0].volume_mounts.is_none());
    let writable = pod(DeploymentOptions::default().secure_defaults(false));
    assert!(writable.volumes.is_none(), "a writable root needs no /tmp volume");
}
