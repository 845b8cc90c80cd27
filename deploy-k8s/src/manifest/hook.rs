//! The Job that runs a plan's hook step.

use deploy_core::hook::HookSpec;
use deploy_core::model::AppId;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels;
use crate::manifest::deployment::{PodVolume, env_var, to_i32, volume, volume_mount};

/// The label naming the hook a Job runs.
pub const HOOK: &str = "deploy-rs.io/hook";

/// A Job `name` that runs `hook` for `app`: one container, never restarted in
/// place (a failed run is a new pod, up to the hook's retries), bounded by the
/// hook's deadline, deleted by the TTL controller after `keep_for`, labelled as
/// deploy-rs's.
pub fn hook_job(app: &AppId, hook: &HookSpec, name: &str) -> Job {
    hook_job_with_volumes(app, hook, name, &[])
}

/// [`hook_job`] whose container also mounts `volumes`: a backup hook that writes
/// its dump to a PersistentVolumeClaim
/// ([`VolumeSource::PersistentVolumeClaim`](crate::manifest::VolumeSource::PersistentVolumeClaim))
/// keeps it after the Job and its pod are deleted.
///
/// ```
/// use deploy_core::hook::HookSpec;
/// use deploy_core::model::{AppId, ImageRef, Name, Namespace};
/// use deploy_k8s::manifest::hook::hook_job_with_volumes;
/// use deploy_k8s::manifest::{PodVolume, VolumeSource};
///
/// let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("db").unwrap());
/// let hook = HookSpec::new(Name::new("pg-dump").unwrap(), ImageRef::parse("postgres:16").unwrap())
///     .command(["sh", "-c", "pg_dump -Fc -f /backups/db-$(date +%s).dump"]);
/// let claim = PodVolume::new("backups", VolumeSource::PersistentVolumeClaim("db-backups".into()), "/backups");
/// let job = hook_job_with_volumes(&app, &hook, "db-pg-dump-1", &[claim]);
/// let pod = job.spec.unwrap().template.spec.unwrap();
/// assert_eq!(pod.volumes.unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "db-backups");
/// assert_eq!(pod.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path, "/backups");
/// ```
pub fn hook_job_with_volumes(app: &AppId, hook: &HookSpec, name: &str, volumes: &[PodVolume]) -> Job {
    let mut job_labels = labels::pod_labels(app, None, None);
    job_labels.insert(HOOK.to_owned(), hook.name.to_string());
    let seconds = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let env: Vec<_> = hook.env.iter().map(env_var).collect();
    let mounts: Vec<VolumeMount> = volumes.iter().map(volume_mount).collect();
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(app.namespace.to_string()),
            labels: Some(job_labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(to_i32(hook.retries)),
            active_deadline_seconds: Some(seconds(hook.deadline.as_duration()).max(1)),
            ttl_seconds_after_finished: Some(i32::try_from(hook.keep_for.as_duration().as_secs()).unwrap_or(i32::MAX)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(job_labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    containers: vec![Container {
                        name: "hook".to_owned(),
                        image: Some(hook.image.to_string()),
                        command: (!hook.command.is_empty()).then(|| hook.command.clone()),
                        env: (!env.is_empty()).then_some(env),
                        volume_mounts: (!mounts.is_empty()).then_some(mounts),
                        ..Container::default()
                    }],
                    volumes: (!volumes.is_empty()).then(|| volumes.iter().map(volume).collect()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
