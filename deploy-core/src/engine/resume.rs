//! Resuming a rollout whose driver died, and the emergency rollback of one.

use super::*;

impl RolloutEngine {
    /// Picks up the saved rollout of `app` that no engine drives any more and
    /// continues from the saved step, or finishes the saved rollback. It ends in
    /// the same state as a rollout that was never interrupted.
    ///
    /// - A rollout this engine runs: [`RolloutError::AlreadyRunning`], nothing
    ///   changes.
    /// - A lease another driver holds: [`RolloutError::Locked`], unless this
    ///   engine has seen that lease unchanged for its whole ttl (call again after
    ///   it) or it is this engine's own lease whose task was killed: the crash
    ///   takeovers of [`RolloutEngine`]'s lock.
    /// - A rollout that was rolling back, whose rollback failed (degraded), or
    ///   whose deployment record already says it ended, is never run forward: its
    ///   rollback is (re)done, or its bookkeeping finished.
    /// - Control requests stored while no engine ran it (pause, abort, promote of
    ///   the step it stopped at) are acted on.
    #[tracing::instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn resume(&self, app: &AppId) -> Result<RolloutHandle, RolloutError> {
        let (state, plan, spec, revision, acquired, notes) = self.take_over(app).await?;
        Ok(self.spawn(state, plan, spec, Some(revision), acquired, Origin::Resume, notes))
    }

    /// Rolls `app`'s rollout back at once, on the caller's word, and returns its
    /// report: no further step, pause or analysis runs; the previous release
    /// serves 100 % again as soon as its track is ready (traffic still only goes
    /// to ready tracks) and the new release is removed (unless
    /// [`EngineConfig::keep_failed_release`]). The report, the deployment record
    /// and the events say `RolledBack` with the cause
    /// [`CauseKind::EmergencyRollback`] and `reason`.
    ///
    /// - A rollout running in this engine is told to stop, as
    ///   [`RolloutHandle::emergency_rollback`] does, and this waits for its end.
    ///   One that is already rolling back just finishes its rollback; one that
    ///   finished first keeps its report.
    /// - A rollout whose process died, or a degraded one, is taken over from its
    ///   saved state under the lock rules of [`RolloutEngine::resume`] and rolled
    ///   back instead of continued; a saved rollback is finished, with the
    ///   emergency noted.
    /// - With neither, it fails with [`RolloutError::NothingToResume`]: there is
    ///   no rollout in progress to roll back.
    #[tracing::instrument(skip_all, fields(deploy.app = %app), err)]
    pub async fn emergency_rollback(
        &self,
        app: &AppId,
        reason: impl Into<String>,
    ) -> Result<RolloutReport, RolloutError> {
        let reason = reason.into();
        tracing::warn!(%reason, "emergency rollback requested");
        let here = self.inner.running().get(app).map(|r| (r.controls.clone(), r.done.clone()));
        if let Some((controls, mut done)) = here {
            let _ = controls.send(Control::Emergency(reason.clone()));
            let outcome = done.wait_for(Option::is_some).await.ok().and_then(|o| o.clone());
            match outcome {
                Some(Ok(report)) => return Ok(report),
                Some(Err(reason)) => return Err(RolloutError::Stopped { reason }),
                // Its task was killed before it ended: roll back from the saved state.
                None => {}
            }
        }
        let (mut state, plan, spec, revision, acquired, notes) = self.take_over(app).await?;
        let (step, message) = match &state.phase {
            RolloutPhase::RollingBack(cause) | RolloutPhase::Degraded(cause) => {
                (None, format!("{reason} (it was already rolling back: {cause})"))
            }
            _ => (Some(state.next_step).filter(|s| *s < plan.steps.len()), reason.clone()),
        };
        state.phase = RolloutPhase::RollingBack(FailureCause::new(CauseKind::EmergencyRollback, step, message));
        self.spawn(state, plan, spec, Some(revision), acquired, Origin::Emergency(reason), notes).wait().await
    }

    /// Takes the lock of `app` and loads its saved rollout, turned backward when it
    /// must never run forward again.
    pub(super) async fn take_over(
        &self,
        app: &AppId,
    ) -> Result<(RolloutState, Plan, AppSpec, Revision, Acquired, Vec<DecisionKind>), RolloutError> {
        self.refuse_if_running(app)?;
        let inner = &self.inner;
        let acquired = self.lock(app).await?;
        let loaded = async {
            let v = inner.state.load(app).await.map_err(RolloutError::State)?;
            let Some(v) = v else { return Err(RolloutError::NothingToResume { app: app.clone() }) };
            let (Some(plan), Some(spec)) = (v.value.plan.clone(), v.value.spec.clone()) else {
                return Err(RolloutError::CorruptState { app: app.clone(), reason: "no plan or spec saved".into() });
            };
            let mut state = v.value;
            let mut notes = Vec::new();
            match state.phase.clone() {
                RolloutPhase::Degraded(cause) => {
                    notes.push(DecisionKind::RollbackRetried { cause: cause.clone() });
                    state.phase = RolloutPhase::RollingBack(cause);
                }
                RolloutPhase::RollingBack(_) => {}
                _ => {
                    // The record is the second memory: a rollout it says ended never runs forward.
                    let recorded = inner.history.get(&state.record.id).await.map_err(RolloutError::History)?;
                    if let Some(recorded) = recorded.filter(|r| r.status.is_terminal()) {
                        if recorded.status == DeploymentStatus::Succeeded {
                            notes.push(DecisionKind::RecordSaysEnded {
                                status: recorded.status,
                                cause: recorded.cause.clone(),
                            });
                            state.next_step = plan.steps.len();
                        } else {
                            let decision = DecisionKind::RecordSaysEnded {
                                status: recorded.status,
                                cause: recorded.cause.clone(),
                            };
                            let message = decision.to_string();
                            notes.push(decision);
                            state.phase =
                                RolloutPhase::RollingBack(FailureCause::new(CauseKind::StateStore, None, message));
                        }
                    }
                }
            }
            Ok((state, plan, spec, v.revision, notes))
        }
        .await;
        match loaded {
            Ok((state, plan, spec, revision, notes)) => Ok((state, plan, spec, revision, acquired, notes)),
            Err(e) => {
                let _ = inner.state.release_lock(&acquired.lease).await;
                Err(e)
            }
        }
    }

    // ---- control by application, through the state store ----
}
