//! The Job that runs a plan's hook step.

use deploy_core::hook::HookSpec;
use deploy_core::model::AppId;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels;
use crate::manifest::deployment::{env_var, to_i32};

/// The label naming the hook a Job runs.
pub const HOOK: &str = "deploy-rs.io/hook";

/// A Job `name` that runs `hook` for `app`: one container, never restarted in
/// place (a failed run is a new pod, up to the hook's retries), bounded by the
/// hook's deadline, deleted by the TTL controller after `keep_for`, labelled as
/// deploy-rs's.
pub fn hook_job(app: &AppId, hook: &HookSpec, name: &str) -> Job {
    let mut job_labels = labels::pod_labels(app, None, None);
    job_labels.insert(HOOK.to_owned(), hook.name.to_string());
    let seconds = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let env: Vec<_> = hook.env.iter().map(env_var).collect();
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
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
