//! Hooks as one-shot containers.

use std::time::Instant;

use deploy_core::hook::HookSpec;
use deploy_core::model::{AppId, ValidationErrors};
use deploy_core::platform::PlatformError;
use futures::StreamExt;

use super::apply::Pull;
use super::{DockerPlatform, platform_error};
use crate::containers::{ContainerSpec, LogOptions, RestartPolicy};
use crate::error::{DockerError, classify_bollard};
use crate::labels;

impl DockerPlatform {
    /// The hook's runs, each a fresh container (see [`Platform::run_hook`]).
    pub(super) async fn run_hook_containers(&self, app: &AppId, hook: &HookSpec) -> Result<(), PlatformError> {
        let hook_name = format!("{} of {app}", hook.name);
        let failed =
            |reason: String, logs: Option<String>| PlatformError::HookFailed { hook: hook_name.clone(), reason, logs };
        let mut errors = ValidationErrors::new();
        let env = self.resolve_env(&hook.env, "hook.env", &mut errors).await?;
        errors.into_result(()).map_err(|errors| PlatformError::Invalid { app: app.clone(), errors })?;
        let deadline = Instant::now() + hook.deadline.as_duration();
        match self.pull_if_missing(&hook.image).await {
            Ok(()) => {}
            Err(Pull::Missing(reason)) => return Err(failed(reason, None)),
            Err(Pull::Failed(e)) => return Err(e),
        }
        self.ensure_networks().await?;
        let mut spec = ContainerSpec::new(String::new(), hook.image.familiar())
            .network(self.config.network.clone(), Vec::<String>::new())
            .restart(RestartPolicy::No)
            .labels(self.config.labels.clone())
            .labels(labels::app_selector(app))
            .label(labels::HOOK, hook.name.as_str());
        if !hook.command.is_empty() {
            spec = spec.entrypoint(hook.command.clone());
        }
        for (name, value) in env {
            spec = spec.env(name, value);
        }
        let runs = hook.retries.saturating_add(1);
        for run in 1..=runs {
            spec.name = format!("{}-{}-hook-{}-{:08x}", app.namespace, app.name, hook.name, rand::random::<u32>());
            let id = match self.containers.run(&spec).await {
                Ok(id) => id,
                Err(DockerError::NotFound { what }) => return Err(failed(format!("{what} does not exist"), None)),
                Err(e) => return Err(platform_error("run hook container", e)),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let exit = tokio::time::timeout(remaining, self.exit_code(&id)).await;
            let logs = self
                .containers
                .logs(&id, &LogOptions::default().tail(Some(self.config.hook_log_lines)))
                .await
                .ok()
                .map(|lines| bounded_tail(&lines, self.config.hook_log_lines));
            self.remove_container(&id).await?;
            match exit {
                Err(_) => {
                    return Err(failed(
                        format!(
                            "container {} did not finish within the hook's deadline of {:?} (run {run} of {runs})",
                            spec.name,
                            hook.deadline.as_duration()
                        ),
                        logs,
                    ));
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(code)) if run == runs => {
                    return Err(failed(
                        format!("container {} exited with code {code} (run {run} of {runs})", spec.name),
                        logs,
                    ));
                }
                Ok(Ok(code)) => {
                    tracing::info!(hook = %hook.name, run, code, "hook run failed; retrying");
                }
            }
        }
        Err(failed("no run was made".to_owned(), None))
    }

    /// Waits for the container to stop and returns its exit code.
    pub(super) async fn exit_code(&self, id: &str) -> Result<i64, PlatformError> {
        let options = bollard::query_parameters::WaitContainerOptionsBuilder::new().condition("not-running").build();
        let mut wait = self.docker.wait_container(id, Some(options));
        match wait.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(PlatformError::backend("wait for hook container", classify_bollard(&e), e)),
            None => {
                // The stream ended without an answer: read the exit code from the container.
                let state = self.containers.state(id).await.map_err(|e| platform_error("inspect hook container", e))?;
                Ok(state.exit_code)
            }
        }
    }
}

/// The last `lines` lines of a log, at most 4 KiB of them.
pub(super) fn bounded_tail(lines: &[String], max_lines: u32) -> String {
    const MAX_BYTES: usize = 4096;
    let skip = lines.len().saturating_sub(usize::try_from(max_lines).unwrap_or(usize::MAX));
    let text = lines[skip..].join("\n");
    if text.len() <= MAX_BYTES {
        return text;
    }
    let mut start = text.len() - MAX_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[…]{}", &text[start..])
}
