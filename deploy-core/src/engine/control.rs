//! Controlling a rollout from another process, through the state store.

use super::*;

impl RolloutEngine {
    /// Asks `app`'s rollout, wherever it runs, to do what `request` says, by
    /// storing the request with its progress (compare-and-swap). A running engine
    /// acts on it at its next check ([`EngineConfig::control_interval`]; at once
    /// when it runs in this engine); an engine that is not running acts on it when
    /// the rollout is resumed. For a CI job or a CLI that started the rollout in
    /// another invocation.
    ///
    /// Fails with [`RolloutError::NoRollout`] when nothing is in progress, and
    /// with [`RolloutError::PromoteRejected`] for a promotion while no pause waits
    /// for it (naming the current step), as Argo Rollouts does.
    #[tracing::instrument(skip_all, fields(deploy.app = %app, request = %request), err)]
    pub async fn control(&self, app: &AppId, request: ControlRequest) -> Result<(), RolloutError> {
        let store = &self.inner.state;
        let here = self.inner.running().get(app).map(|r| (r.controls.clone(), r.progress.clone()));
        let policy = self.inner.config.retry;
        for _ in 0..policy.attempts.max(1) + 4 {
            let Some(v) = store.load(app).await.map_err(RolloutError::State)? else {
                return Err(RolloutError::NoRollout { app: app.clone() });
            };
            let mut state = v.value;
            let request = match request {
                // The step to promote is the pause that runs now.
                ControlRequest::Promote { .. } => {
                    let step = match &here {
                        Some((_, progress)) => progress.borrow().promotable(app)?,
                        None => promotable_from_state(app, &state)?,
                    };
                    ControlRequest::Promote { step }
                }
                ref other => other.clone(),
            };
            if state.phase.is_backward() {
                if matches!(request, ControlRequest::Abort { .. }) {
                    return Ok(()); // it is rolling back already
                }
                if let ControlRequest::Promote { .. } = request {
                    return Err(RolloutError::PromoteRejected {
                        app: app.clone(),
                        step: None,
                        current: "rolling back".to_owned(),
                    });
                }
            }
            state.push_request(request.clone(), Timestamp::now());
            match store.save(app, &state, Some(&v.revision)).await {
                Ok(_) => {
                    if let Some((controls, _)) = &here {
                        let _ = controls.send(Control::Poll);
                    }
                    return Ok(());
                }
                Err(StateError::Conflict { .. }) => {}
                Err(StateError::Deleted { .. }) => return Err(RolloutError::NoRollout { app: app.clone() }),
                Err(e) if e.is_retryable() => tokio::time::sleep(policy.backoff(1)).await,
                Err(e) => return Err(RolloutError::State(e)),
            }
        }
        Err(RolloutError::State(StateError::backend(
            format!("store a control request for {app}"),
            ErrorKind::Conflict,
            "the saved progress kept changing",
        )))
    }

    /// Promotes the pause `app`'s rollout waits in now; see
    /// [`RolloutEngine::control`].
    pub async fn promote(&self, app: &AppId) -> Result<(), RolloutError> {
        self.control(app, ControlRequest::Promote { step: 0 }).await
    }

    /// Aborts `app`'s rollout: it rolls back; see [`RolloutEngine::control`].
    pub async fn abort(&self, app: &AppId, reason: impl Into<String>) -> Result<(), RolloutError> {
        self.control(app, ControlRequest::Abort { reason: reason.into() }).await
    }

    /// Holds `app`'s rollout before its next step until
    /// [`RolloutEngine::unpause`]; see [`RolloutEngine::control`].
    pub async fn pause(&self, app: &AppId) -> Result<(), RolloutError> {
        self.control(app, ControlRequest::Pause).await
    }

    /// Lets `app`'s rollout continue after [`RolloutEngine::pause`] (the resume
    /// of Argo Rollouts' pause; [`RolloutEngine::resume`] picks up a rollout whose
    /// process died); see [`RolloutEngine::control`].
    pub async fn unpause(&self, app: &AppId) -> Result<(), RolloutError> {
        self.control(app, ControlRequest::Resume).await
    }
}

/// The pause step a stored rollout waits in, or the error naming where it is.
fn promotable_from_state(app: &AppId, state: &RolloutState) -> Result<usize, RolloutError> {
    let step = state.next_step;
    let plan_step = state.plan.as_ref().and_then(|p| p.steps.get(step));
    // An analysis step waits for a decision when it was inconclusive under the
    // pause policy and nobody has decided yet.
    let undecided = |step: usize| {
        state.record.inconclusive_decisions.last().is_some_and(|d| {
            d.step == step && d.policy == crate::analysis::InconclusivePolicy::Pause && d.resolution.is_none()
        })
    };
    match plan_step {
        Some(Step::Pause(_)) if !state.phase.is_backward() => Ok(step),
        Some(Step::Analyze(_)) if !state.phase.is_backward() && undecided(step) => Ok(step),
        Some(other) if !state.phase.is_backward() => {
            Err(RolloutError::PromoteRejected { app: app.clone(), step: Some(step), current: other.to_string() })
        }
        _ => Err(RolloutError::PromoteRejected {
            app: app.clone(),
            step: None,
            current: if state.phase.is_backward() { "rolling back".to_owned() } else { "its end".to_owned() },
        }),
    }
}
