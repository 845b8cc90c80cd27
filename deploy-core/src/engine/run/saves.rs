//! Saving progress (compare-and-swap), rolling back and finishing.

use std::sync::{Arc, PoisonError};

use super::*;

impl Run {
    /// Saves the progress (compare-and-swap). A save whose answer was lost and that
    /// then meets a conflict is recognised by its stamp; requests other processes
    /// stored meanwhile are merged in; a document deleted behind the engine's back
    /// is written again.
    pub(super) async fn save(&mut self) -> Result<(), StepError> {
        let Some(lease) = self.lease.lease() else {
            return Err(StepError::Fatal(RolloutError::LockLost {
                app: self.app.clone(),
                holder: "nobody".to_owned(),
                reason: "the lease was released".to_owned(),
            }));
        };
        self.sequence += 1;
        let stamp = WriteStamp::new(lease.token, self.sequence);
        self.state.written_by = Some(stamp.clone());
        let store = Arc::clone(&self.engine.state);
        let policy = self.engine.config.retry;
        let retryable = |e: &StateError| e.is_retryable() && !matches!(e, StateError::Conflict { .. });
        for _ in 0..policy.attempts.max(1) + 2 {
            self.book.lock().unwrap_or_else(PoisonError::into_inner).write_into(&mut self.state);
            let (app, state, revision) = (&self.app, &self.state, &self.revision);
            let result =
                retry_noted(&policy, &self.events, &mut self.notes, &|| "save progress".to_owned(), retryable, || {
                    store.save(app, state, revision.as_ref())
                })
                .await;
            match result {
                Ok(revision) => {
                    self.revision = Some(revision);
                    self.stamp = Some(stamp);
                    return Ok(());
                }
                Err(StateError::Deleted { .. }) => {
                    self.decide(LogLevel::Warn, DecisionKind::ProgressDeleted);
                    self.revision = None;
                }
                Err(e @ StateError::Conflict { .. }) => {
                    let stored = match store.load(&self.app).await {
                        Ok(stored) => stored,
                        Err(load) => {
                            return Err(self.failed(CauseKind::StateStore, format!("save progress: {e}; then {load}")));
                        }
                    };
                    let Some(stored) = stored else {
                        self.revision = None;
                        continue;
                    };
                    if stored.value.written_by.as_ref() == Some(&stamp) {
                        self.decide(
                            LogLevel::Info,
                            DecisionKind::from(
                                "the answer to a save was lost; the stored progress is this engine's own".to_owned(),
                            ),
                        );
                        self.revision = Some(stored.revision);
                        self.stamp = Some(stamp);
                        return Ok(());
                    }
                    let ours = stored.value.record.id == self.state.record.id
                        && stored.value.written_by.is_some()
                        && stored.value.written_by == self.stamp;
                    if !ours {
                        return Err(StepError::Fatal(RolloutError::State(e)));
                    }
                    // Another process stored a control request: keep it and write again.
                    let fresh = self.book.lock().unwrap_or_else(PoisonError::into_inner).merge(&stored.value.requests);
                    let step = self.step;
                    if let Some(reason) = act_on(&fresh, &self.book, step, &self.promote, &self.events) {
                        self.revision = Some(stored.revision);
                        self.book.lock().unwrap_or_else(PoisonError::into_inner).write_into(&mut self.state);
                        let _ = store
                            .save(&self.app, &self.state, self.revision.as_ref())
                            .await
                            .map(|r| self.revision = Some(r));
                        return Err(StepError::Aborted(reason));
                    }
                    self.revision = Some(stored.revision);
                }
                Err(e) => return Err(self.failed(CauseKind::StateStore, format!("save progress: {e}"))),
            }
        }
        Err(self.failed(CauseKind::StateStore, "save progress: the stored progress kept changing".to_owned()))
    }

    pub(crate) async fn roll_back(
        &mut self,
        cause: FailureCause,
        keeper: &mut LeaseKeeper,
    ) -> Result<RolloutReport, RolloutError> {
        self.step = None;
        self.notes.clear();
        tracing::warn!(%cause, "rolling back");
        self.emit(RolloutEvent::RollbackStarted { cause: cause.clone() });
        self.state.record.log(LogLevel::Warn, format!("rolling back: {cause}"));
        // The "rollback required" marker goes to the store before anything is
        // restored, so that nobody resumes this rollout forward.
        self.state.phase = RolloutPhase::RollingBack(cause.clone());
        match self.save().await {
            Ok(()) | Err(StepError::Aborted(_) | StepError::Emergency(_)) => {}
            Err(StepError::Fatal(e)) => return Err(self.stop(e).await),
            Err(StepError::Failed(e)) => {
                // The record is the second memory: marked failed until the rollback
                // completes, so a resume from the stale progress never runs forward.
                let mut marker = self.state.record.clone();
                marker.finish(DeploymentStatus::Failed, Some(cause.clone()));
                let recorded = self.engine.history.record(&marker).await;
                self.note(format!(
                    "could not save the rollback marker ({e}); rolling back anyway, with the deployment record \
                     marked failed until the rollback completes{}",
                    recorded.err().map(|h| format!(" (recording that failed too: {h})")).unwrap_or_default()
                ));
            }
        }
        let started = Timestamp::now();
        let config = &self.engine.config;
        let deadline = config.step_deadline * 2 + config.readiness_deadline;
        let (promote, events) = (Arc::clone(&self.promote), self.events.clone());
        let description = match &self.state.record.from {
            Some(from) => format!("roll back to {}", from.version),
            None => "roll back: remove the new release".to_owned(),
        };
        let result = {
            let fut = async {
                self.restore().await?;
                self.run_rollback_hooks().await;
                Ok(())
            }
            .instrument(tracing::info_span!("rollout.rollback"));
            guard(fut, Some(deadline), None, keeper, None, &promote, &events).await
        };
        let outcome = match &result {
            Ok(()) => StepOutcome::Succeeded,
            Err(StepError::Failed(c)) => StepOutcome::Failed(c.to_string()),
            Err(StepError::Fatal(e)) => StepOutcome::Failed(e.to_string()),
            Err(StepError::Aborted(_) | StepError::Emergency(_)) => StepOutcome::Aborted,
        };
        let mut record = StepRecord::new(self.plan.steps.len(), description, started, Timestamp::now(), outcome);
        record.details = std::mem::take(&mut self.notes);
        self.state.record.steps.push(record);
        match result {
            Ok(()) => self.finish_in_place(DeploymentStatus::RolledBack, Some(cause), keeper).await,
            Err(StepError::Fatal(e)) => Err(self.stop(e).await),
            Err(StepError::Failed(second)) => {
                let mut cause = cause;
                cause.message = format!("{}; the rollback failed too: {second}", cause.message);
                self.degraded(cause, keeper).await
            }
            Err(StepError::Aborted(_) | StepError::Emergency(_)) => self.degraded(cause, keeper).await,
        }
    }

    /// The rollback failed: the application is marked degraded in the store (the
    /// document stays, the lock goes), so `resume` retries the rollback and no new
    /// rollout starts on a half-restored application.
    pub(super) async fn degraded(
        &mut self,
        cause: FailureCause,
        keeper: &mut LeaseKeeper,
    ) -> Result<RolloutReport, RolloutError> {
        let status = DeploymentStatus::Failed;
        let kind = DecisionKind::Degraded { app: self.app.clone() };
        tracing::error!(decision = %kind);
        let message = kind.to_string();
        self.emit(RolloutEvent::Decision { kind });
        self.state.record.finish(status, Some(cause.clone()));
        self.state.record.log(LogLevel::Error, message);
        self.state.phase = RolloutPhase::Degraded(cause.clone());
        let saved = self.save().await;
        self.record_history().await?;
        match saved {
            Ok(()) | Err(StepError::Aborted(_) | StepError::Emergency(_)) => {}
            Err(StepError::Fatal(e)) => return Err(self.stop(e).await),
            Err(StepError::Failed(e)) => {
                tracing::error!(cause = %e, "could not save the degraded phase; the record says the deployment failed");
            }
        }
        keeper.release().await;
        self.emit(RolloutEvent::Finished { status, cause: Some(cause.clone()) });
        Ok(RolloutReport { status, cause: Some(cause), record: self.state.record.clone() })
    }

    /// Makes the previous release serve 100 % and takes the new release off the
    /// platform: tracks this rollout created are removed, tracks that existed
    /// before are kept (scaled to zero when they run the new release).
    pub(super) async fn restore(&mut self) -> Result<(), StepError> {
        let (old, total) = (self.plan.old_track, self.plan.replicas);
        let keep = self.engine.config.keep_failed_release;
        let from = self.state.record.from.clone();
        let existed = self.state.existed_before.clone();
        if let Some(from) = &from {
            let status = self.status(old).await?;
            let intact = status.release.as_ref() == Some(&from.version)
                && status.desired >= total
                && status.state == TrackState::Ready;
            if intact {
                self.note(format!("{old} still runs {} and is ready", from.version));
            } else {
                self.note(format!("restoring {} on {old} with {total} replicas", from.version));
                let spec = self.spec.clone();
                self.apply(&spec, old, from, total).await?;
                self.wait_ready(old).await?;
            }
            self.route(TrafficSplit::all(old)).await?;
        }
        self.clear_header_routes().await?;
        for track in self.plan.tracks() {
            if from.is_some() && track == old {
                continue;
            }
            let created = match &existed {
                Some(existed) => !existed.contains(&track),
                // Recorded before tracks were: never remove the old track.
                None => track != old,
            };
            if !created {
                let status = self.status(track).await?;
                let runs_new = status.release.as_ref() == Some(&self.state.record.to.version);
                if runs_new && status.desired > 0 {
                    self.note(format!("{track} existed before this rollout: scaled to 0 instead of removed"));
                    self.scale(track, 0).await?;
                } else {
                    self.note(format!("{track} existed before this rollout and is kept"));
                }
                continue;
            }
            if keep {
                if self.engine.router.is_none() || !self.weighted() {
                    // Without a router the platform sends traffic to every ready pod.
                    self.scale(track, 0).await?;
                }
                self.note(format!("keeping {track} without traffic, as asked"));
                continue;
            }
            self.remove(track).await?;
        }
        Ok(())
    }

    pub(super) async fn record_history(&mut self) -> Result<(), RolloutError> {
        let history = Arc::clone(&self.engine.history);
        let policy = self.engine.config.retry;
        let record = self.state.record.clone();
        let mut ignored = Vec::new();
        let recorded = retry_noted(
            &policy,
            &self.events,
            &mut ignored,
            &|| "record the deployment".to_owned(),
            |e: &crate::history::HistoryError| e.is_retryable(),
            || history.record(&record),
        )
        .await;
        recorded.map_err(|e| {
            tracing::error!(error = %e, "could not record the finished deployment");
            RolloutError::History(e)
        })
    }

    pub(crate) async fn finish_in_place(
        &mut self,
        status: DeploymentStatus,
        cause: Option<FailureCause>,
        keeper: &mut LeaseKeeper,
    ) -> Result<RolloutReport, RolloutError> {
        self.state.record.finish(status, cause.clone());
        let level = if status == DeploymentStatus::Succeeded { LogLevel::Info } else { LogLevel::Error };
        self.state.record.log(level, format!("finished: {status}"));
        self.record_history().await?;
        let record = self.state.record.clone();
        if let Some(revision) = self.revision.clone() {
            let store = Arc::clone(&self.engine.state);
            let (app, policy) = (self.app.clone(), self.engine.config.retry);
            let mut ignored = Vec::new();
            let cleared = retry_noted(
                &policy,
                &self.events,
                &mut ignored,
                &|| "clear progress".to_owned(),
                |e: &StateError| e.is_retryable() && !matches!(e, StateError::Conflict { .. }),
                || store.clear(&app, &revision),
            )
            .await;
            if let Err(e) = cleared {
                // The record says how it ended, so a resume only finishes the
                // bookkeeping and never runs the rollout forward again.
                let kind =
                    DecisionKind::from(format!("could not clear the saved progress ({e}); a resume will clear it"));
                tracing::warn!(decision = %kind);
                self.emit(RolloutEvent::Decision { kind });
            }
        }
        keeper.release().await;
        self.emit(RolloutEvent::Finished { status, cause: cause.clone() });
        Ok(RolloutReport { status, cause, record })
    }
}
