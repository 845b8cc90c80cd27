//! Starting a rollout: validation, what the platform runs, the lock, the first save.

use super::*;

impl RolloutEngine {
    /// Validates `request`, reads what runs on the platform, takes the
    /// application's lock, saves the initial state, records the deployment as
    /// started and runs it in a new task.
    ///
    /// Fails at once, having changed nothing, with
    /// [`RolloutError::AlreadyRunning`] when this engine rolls the application out
    /// already, [`RolloutError::Locked`] when another holder has its lock,
    /// [`RolloutError::Unfinished`] when an interrupted rollout must be resumed
    /// first, [`RolloutError::Degraded`] when a rollback failed and must be
    /// completed first, [`RolloutError::FromMismatch`] /
    /// [`RolloutError::ServingReleaseUnknown`] when the request's `from` and the
    /// platform disagree, and [`RolloutError::LiveTrackMismatch`] when the plan
    /// would deploy onto the track that serves.
    #[tracing::instrument(skip_all, fields(deploy.app = %request.spec.id(), deploy.strategy = %request.plan.strategy, release.version = %request.to.version), err)]
    pub async fn start(&self, request: RolloutRequest) -> Result<RolloutHandle, RolloutError> {
        let app = request.spec.id();
        self.validate(&request).map_err(|errors| RolloutError::Invalid { app: app.clone(), errors })?;
        self.refuse_if_running(&app)?;
        let inner = &self.inner;
        let acquired = self.lock(&app).await?;
        let prepared = async {
            if let Some(existing) = inner.state.load(&app).await.map_err(RolloutError::State)? {
                let deployment = existing.value.record.id;
                return Err(match existing.value.phase {
                    RolloutPhase::Degraded(cause) => RolloutError::Degraded { app: app.clone(), deployment, cause },
                    _ => RolloutError::Unfinished { app: app.clone(), deployment },
                });
            }
            let inspection = self.inspect(&request).await?;
            let mut record = DeploymentRecord::new(
                app.clone(),
                request.environment,
                inspection.from.clone(),
                request.to.clone(),
                request.plan.strategy,
            );
            record.committed_at = request.committed_at;
            record.start();
            for note in &inspection.notes {
                record.log(LogLevel::Info, note.to_string());
            }
            let mut state = RolloutState::new(record, TrafficSplit::all(request.plan.old_track));
            state.plan = Some(request.plan.clone());
            state.spec = Some(request.spec.clone());
            state.existed_before = Some(inspection.existed);
            state.written_by = Some(WriteStamp::new(acquired.lease.token.clone(), 1));
            let revision = self.save_first(&app, &state).await?;
            inner.history.record(&state.record).await.map_err(RolloutError::History)?;
            Ok((state, revision, inspection.notes))
        }
        .await;
        let (state, revision, notes) = match prepared {
            Ok(ok) => ok,
            Err(e) => {
                let _ = inner.state.release_lock(&acquired.lease).await;
                return Err(e);
            }
        };
        Ok(self.spawn(state, request.plan, request.spec, Some(revision), acquired, Origin::Start, notes))
    }

    /// Saves a new rollout's first document; a lost answer is recognised by the
    /// document's stamp.
    pub(super) async fn save_first(&self, app: &AppId, state: &RolloutState) -> Result<Revision, RolloutError> {
        let store = &self.inner.state;
        let policy = self.inner.config.retry;
        let mut tries = 1;
        loop {
            match store.save(app, state, None).await {
                Ok(revision) => return Ok(revision),
                Err(e) => {
                    let stored = store.load(app).await.ok().flatten();
                    if let Some(stored) = &stored
                        && stored.value.written_by.is_some()
                        && stored.value.written_by == state.written_by
                    {
                        return Ok(stored.revision.clone());
                    }
                    match e {
                        StateError::Conflict { .. } => {
                            let deployment = stored.map_or_else(|| state.record.id.clone(), |s| s.value.record.id);
                            return Err(RolloutError::Unfinished { app: app.clone(), deployment });
                        }
                        e if e.is_retryable() && tries < policy.attempts => {
                            tokio::time::sleep(policy.backoff(tries)).await;
                            tries += 1;
                        }
                        e => return Err(RolloutError::State(e)),
                    }
                }
            }
        }
    }

    /// Reads the plan's tracks from the platform (and the router, for a switch):
    /// which exist, which release serves, whether the plan targets the live colour.
    pub(super) async fn inspect(&self, request: &RolloutRequest) -> Result<Inspection, RolloutError> {
        let app = request.spec.id();
        let plan = &request.plan;
        let (old, new) = (plan.old_track, plan.new_track);
        let mut existed = Vec::new();
        let mut statuses = HashMap::new();
        for track in plan.tracks() {
            let status = self.read_status(&app, track).await?;
            if status.state != TrackState::Absent {
                existed.push(track);
            }
            statuses.insert(track, status);
        }
        let mut notes = Vec::new();
        let old_status = statuses.get(&old).cloned().unwrap_or_else(crate::platform::TrackStatus::absent);
        let running = old_status.release.clone().filter(|_| old_status.state != TrackState::Absent);
        // Blue-green: the plan must not deploy onto the colour that serves.
        let switches = old != new && plan.final_track == new;
        if switches {
            let mut serving_new = false;
            if let Some(router) = &self.inner.router {
                match router.weights(&app).await {
                    Ok(split) => serving_new = split.routes_to(new),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(RolloutError::Router(e)),
                }
            }
            let new_status = statuses.get(&new);
            let new_runs = new_status.is_some_and(|s| s.state != TrackState::Absent && s.desired > 0);
            if serving_new || (new_runs && running.is_none()) {
                return Err(RolloutError::LiveTrackMismatch { app, declared: old, serving: new });
            }
        }
        let from = match (&request.from, running) {
            (None, None) => None,
            (None, Some(version)) => {
                let Some(release) = old_status.running_release() else {
                    return Err(RolloutError::ServingReleaseUnknown { app, track: old, version });
                };
                let note = DecisionKind::AdoptedServingRelease { version, track: old };
                tracing::info!(decision = %note);
                notes.push(note);
                Some(release)
            }
            (Some(from), Some(running)) if from.version == running => Some(from.clone()),
            (Some(from), running) => {
                return Err(RolloutError::FromMismatch { app, track: old, requested: from.version.clone(), running });
            }
        };
        Ok(Inspection { from, existed, notes })
    }

    pub(super) async fn read_status(
        &self,
        app: &AppId,
        track: Track,
    ) -> Result<crate::platform::TrackStatus, RolloutError> {
        let policy = self.inner.config.retry;
        let mut tries = 1;
        loop {
            match self.inner.platform.status(app, track).await {
                Ok(status) => return Ok(status),
                Err(e) if e.is_retryable() && tries < policy.attempts => {
                    tokio::time::sleep(policy.backoff(tries)).await;
                    tries += 1;
                }
                Err(e) => return Err(RolloutError::Platform(e)),
            }
        }
    }

    /// Fails with [`RolloutError::AlreadyRunning`] when this engine runs a rollout
    /// of `app`.
    pub(super) fn refuse_if_running(&self, app: &AppId) -> Result<(), RolloutError> {
        match self.inner.running().get(app) {
            Some(running) => {
                Err(RolloutError::AlreadyRunning { app: app.clone(), deployment: running.deployment.clone() })
            }
            None => Ok(()),
        }
    }

    /// Takes `app`'s lock with a new token. A held lease is taken over only in the
    /// documented crash takeovers: it is this engine's own lease whose task ended
    /// without releasing it, or this engine saw the same lease record unchanged
    /// for its whole ttl on its own monotonic clock (its holder stopped renewing;
    /// clocks are never compared). Otherwise [`RolloutError::Locked`]; the first
    /// such answer starts the watch, so a caller retrying after the ttl takes over
    /// a dead holder's lease.
    pub(super) async fn lock(&self, app: &AppId) -> Result<Acquired, RolloutError> {
        let inner = &self.inner;
        let request = LockRequest::new(&inner.config.holder, inner.config.lock_ttl);
        let sent = Instant::now();
        match inner.state.acquire_lock(app, &request).await {
            Ok(lease) => {
                inner.observed().remove(app);
                return Ok(Acquired { lease, sent, takeover: None });
            }
            Err(StateError::LockHeld { .. }) => {}
            Err(e) => {
                // The answer may have been lost: is the stored lease this request's?
                if e.is_retryable()
                    && let Ok(Some(stored)) = inner.state.read_lock(app).await
                    && stored.token == request.token
                {
                    return Ok(Acquired { lease: stored, sent, takeover: None });
                }
                return Err(RolloutError::from_lock(app, e));
            }
        }
        let current = inner.state.read_lock(app).await.map_err(RolloutError::State)?;
        let Some(current) = current else {
            // Released in between: try once more.
            let sent = Instant::now();
            let lease = inner.state.acquire_lock(app, &request).await.map_err(|e| RolloutError::from_lock(app, e))?;
            return Ok(Acquired { lease, sent, takeover: None });
        };
        let orphan = inner.orphans().remove(app).filter(|o| o.same_record(&current));
        let takeover = if orphan.is_some() {
            Some(format!("took over this engine's own lease of {app}: the rollout task that held it ended"))
        } else {
            let now = Instant::now();
            let mut observed = inner.observed();
            match observed.get(app) {
                Some((seen, since)) if seen.same_record(&current) && now.duration_since(*since) >= current.ttl => {
                    Some(format!(
                        "took over the lease of {app} from {}: unchanged for {:?}, longer than its ttl of {:?}",
                        current.holder,
                        now.duration_since(*since),
                        current.ttl
                    ))
                }
                Some((seen, _)) if seen.same_record(&current) => None,
                _ => {
                    observed.insert(app.clone(), (current.clone(), now));
                    None
                }
            }
        };
        let Some(takeover) = takeover else {
            return Err(RolloutError::Locked {
                app: app.clone(),
                holder: current.holder,
                expires_at: current.expires_at,
            });
        };
        let request = request.take_over(current);
        let sent = Instant::now();
        let lease = inner.state.acquire_lock(app, &request).await.map_err(|e| RolloutError::from_lock(app, e))?;
        inner.observed().remove(app);
        tracing::warn!(decision = %takeover);
        Ok(Acquired { lease, sent, takeover: Some(takeover) })
    }
}
