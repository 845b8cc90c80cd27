//! The steps of a plan, and the platform and router calls they make (each with the
//! engine's call-with-retry).

use std::sync::Arc;

use super::*;

impl Run {
    pub(super) async fn execute(&mut self, index: usize, step: &Step) -> Result<(), StepError> {
        match step {
            Step::DeployTrack { track, replicas } => {
                let (spec, to) = (self.spec.clone(), self.state.record.to.clone());
                Box::pin(self.apply(&spec, *track, &to, *replicas)).await
            }
            Step::RollingUpdate { replicas, max_surge, max_unavailable } => {
                let (mut spec, to) = (self.spec.clone(), self.state.record.to.clone());
                spec.rolling_update = RollingUpdateParams::new(*max_surge, *max_unavailable);
                let (surge, unavailable) = resolve_rolling(*replicas, *max_surge, *max_unavailable);
                self.note(format!(
                    "native rolling update: at most {} pods, at least {} available",
                    replicas.saturating_add(surge),
                    replicas.saturating_sub(unavailable)
                ));
                Box::pin(self.apply(&spec, Track::Stable, &to, *replicas)).await
            }
            Step::WaitReady { track } => Box::pin(self.wait_ready(*track)).await,
            Step::SetWeight(weight) => Box::pin(self.set_weight(*weight)).await,
            Step::SetCanaryScale(scale) => Box::pin(self.set_canary_scale(*scale)).await,
            Step::HeaderRoute(route) => Box::pin(self.header_route(route)).await,
            Step::Mirror(mirror) => Box::pin(self.mirror(mirror)).await,
            Step::Pause(kind) => {
                Box::pin(self.pause(index, *kind)).await;
                Ok(())
            }
            Step::Analyze(spec) => Box::pin(self.analyze(spec)).await,
            Step::Promote => Box::pin(self.promote_release()).await,
            Step::ScaleDownAfter(delay) => {
                if !delay.is_zero() {
                    self.note(format!("keeping the previous tracks for {delay}"));
                    tokio::time::sleep(delay.as_duration()).await;
                }
                Box::pin(self.scale_down()).await
            }
            Step::Hook { when: HookWhen::OnRollback, hook } => {
                self.note(format!("{hook} runs only if the rollout rolls back"));
                Ok(())
            }
            Step::Hook { hook, .. } => Box::pin(self.run_hook(hook)).await,
        }
    }

    /// Runs the engine's preflight, if it has one, before the first step: nothing
    /// has changed yet, so a no-go leaves the platform as it was.
    pub(super) async fn preflight(&mut self) -> Result<(), FailureCause> {
        let Some(preflight) = self.engine.preflight.clone() else { return Ok(()) };
        let (spec, release) = (self.spec.clone(), self.state.record.to.clone());
        let input = super::super::preflight::PreflightInput::new(&spec, &release, &self.plan);
        match super::super::preflight::run(preflight.as_ref(), input).await {
            Ok(summary) => {
                self.decide(LogLevel::Info, DecisionKind::PreflightPassed { summary });
                Ok(())
            }
            Err(summary) => Err(FailureCause::new(CauseKind::PreflightFailed, None, summary)),
        }
    }

    /// Runs `hook` on the platform, once: a hook is not idempotent, so a failed
    /// run is not retried here (the hook's own `retries` are the platform's).
    pub(super) async fn run_hook(&mut self, hook: &HookSpec) -> Result<(), StepError> {
        self.fenced()?;
        let started = std::time::Instant::now();
        let result = self.engine.platform.run_hook(&self.app, hook).await;
        self.fenced()?;
        match result {
            Ok(()) => {
                self.note(format!("{hook} succeeded in {:.1} s", started.elapsed().as_secs_f64()));
                Ok(())
            }
            Err(e) => Err(self.failed(CauseKind::HookFailed, format!("run {hook}: {e}"))),
        }
    }

    /// Runs the plan's on-rollback hooks after a rollback restored the previous
    /// release; a failure is noted, it does not undo the rollback.
    pub(super) async fn run_rollback_hooks(&mut self) {
        let hooks: Vec<HookSpec> = self
            .plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Hook { when: HookWhen::OnRollback, hook } => Some(hook.clone()),
                _ => None,
            })
            .collect();
        for hook in hooks {
            if self.fenced().is_err() {
                self.note(format!("{hook} not run: the lease may have expired"));
                return;
            }
            match self.engine.platform.run_hook(&self.app, &hook).await {
                Ok(()) => self.note(format!("{hook} ran after the rollback")),
                Err(e) => {
                    let message = format!("{hook} failed after the rollback: {e}");
                    self.state.record.log(LogLevel::Warn, message.clone());
                    self.note(message);
                }
            }
        }
    }

    // ---- platform and router calls, with retries ----

    pub(super) fn platform_failure(&self, what: &str, e: &PlatformError) -> StepError {
        let kind = match e {
            PlatformError::Timeout { .. } => CauseKind::ReadinessDeadline,
            PlatformError::Doomed { .. } => CauseKind::Doomed,
            _ => CauseKind::Platform,
        };
        self.failed(kind, format!("{what}: {e}"))
    }

    pub(super) fn router_failure(&self, what: &str, e: &RouterError) -> StepError {
        self.failed(CauseKind::Router, format!("{what}: {e}"))
    }

    pub(super) async fn apply(
        &mut self,
        spec: &AppSpec,
        track: Track,
        release: &Release,
        replicas: u32,
    ) -> Result<(), StepError> {
        let platform = Arc::clone(&self.engine.platform);
        let what = || format!("apply {} to {track} with {replicas} replicas", release.version);
        let result =
            self.change_with_retry(&what, fence_error, || platform.apply(spec, track, release, replicas)).await;
        self.fenced()?;
        result.map_err(|e| self.platform_failure(&what(), &e))?;
        self.emit(RolloutEvent::Scaled { track, replicas });
        Ok(())
    }

    pub(super) async fn scale(&mut self, track: Track, replicas: u32) -> Result<(), StepError> {
        let (platform, app) = (Arc::clone(&self.engine.platform), self.app.clone());
        let what = || format!("scale {track} to {replicas}");
        let result = self.change_with_retry(&what, fence_error, || platform.scale(&app, track, replicas)).await;
        self.fenced()?;
        result.map_err(|e| self.platform_failure(&what(), &e))?;
        self.emit(RolloutEvent::Scaled { track, replicas });
        Ok(())
    }

    pub(super) async fn wait_ready(&mut self, track: Track) -> Result<(), StepError> {
        let platform = Arc::clone(&self.engine.platform);
        let (app, deadline) = (self.app.clone(), self.engine.config.readiness_deadline);
        let what = || format!("wait for {track} to be ready");
        // A passed deadline or a doomed track is final; only transient errors are retried.
        let retryable = |e: &PlatformError| e.is_retryable() && !matches!(e, PlatformError::Timeout { .. });
        let result = self.with_retry(&what, retryable, || platform.wait_ready(&app, track, deadline)).await;
        result.map_err(|e| self.platform_failure(&what(), &e))
    }

    pub(super) async fn status(&mut self, track: Track) -> Result<TrackStatus, StepError> {
        let (platform, app) = (Arc::clone(&self.engine.platform), self.app.clone());
        let what = || format!("read the status of {track}");
        let result =
            self.with_retry(&what, |e: &PlatformError| e.is_retryable(), || platform.status(&app, track)).await;
        result.map_err(|e| self.platform_failure(&what(), &e))
    }

    pub(super) async fn remove(&mut self, track: Track) -> Result<(), StepError> {
        let (platform, app) = (Arc::clone(&self.engine.platform), self.app.clone());
        let what = || format!("remove {track}");
        let result = self.change_with_retry(&what, fence_error, || platform.remove(&app, track)).await;
        self.fenced()?;
        result.map_err(|e| self.platform_failure(&what(), &e))?;
        self.note(format!("removed {track}"));
        Ok(())
    }

    /// Waits for `track` unless it is ready already; fails on a track that is
    /// absent or doomed.
    pub(super) async fn ensure_ready(&mut self, track: Track) -> Result<(), StepError> {
        let status = self.status(track).await?;
        match status.state {
            TrackState::Ready => Ok(()),
            TrackState::Absent => {
                Err(self.failed(CauseKind::Platform, format!("{track} does not exist; no traffic is sent to it")))
            }
            TrackState::Failed(reason) => {
                Err(self.failed(CauseKind::Doomed, format!("{track} cannot become ready: {reason}")))
            }
            _ => {
                self.note(format!("{track} is not ready yet; waiting before routing traffic to it"));
                self.wait_ready(track).await
            }
        }
    }

    /// Routes traffic as `split` says, only to ready tracks, and checks the weights
    /// the router reads back.
    pub(super) async fn route(&mut self, split: TrafficSplit) -> Result<(), StepError> {
        let Some(router) = self.engine.router.clone() else { return Ok(()) };
        for (track, _) in split.iter().collect::<Vec<_>>() {
            self.ensure_ready(track).await?;
        }
        let (policy, app) = (self.engine.config.retry, self.app.clone());
        // What the router can really produce (a replica ratio rounds); that is what
        // is read back and recorded, next to what was asked.
        let effective = router.effective_split(&split);
        if effective != split {
            self.note(format!("traffic {split} requested; the router can produce {effective}"));
        }
        for _ in 0..policy.attempts.max(1) {
            let what = || format!("set traffic {split}");
            let set = self.change_with_retry(&what, router_fence_error, || router.set_weights(&app, &split)).await;
            self.fenced()?;
            set.map_err(|e| self.router_failure(&what(), &e))?;
            let read = self
                .with_retry(
                    &|| "read traffic back".to_owned(),
                    |e: &RouterError| e.is_retryable(),
                    || router.weights(&app),
                )
                .await;
            let actual = read.map_err(|e| self.router_failure("read traffic back", &e))?;
            if actual == effective {
                self.note(DecisionKind::WeightsVerified { split: effective.clone() });
                self.state.traffic = effective.clone();
                self.emit(RolloutEvent::WeightChanged { split: effective });
                return Ok(());
            }
            self.note(DecisionKind::WeightsReapplied { requested: split.clone(), expected: effective.clone(), actual });
        }
        Err(self
            .failed(CauseKind::WeightMismatch, format!("the router never reported {effective} (requested {split})")))
    }

    pub(super) async fn clear_header_routes(&mut self) -> Result<(), StepError> {
        let Some(router) = self.engine.router.clone() else { return Ok(()) };
        let app = self.app.clone();
        let result = self
            .change_with_retry(&|| "clear header routes".to_owned(), router_fence_error, || {
                router.clear_header_routes(&app)
            })
            .await;
        self.fenced()?;
        result.map_err(|e| self.router_failure("clear header routes", &e))?;
        if !self.state.header_routes.is_empty() {
            self.note("header routes removed".to_owned());
            self.state.header_routes.clear();
        }
        // Mirroring ends where header routes do: at promotion and on rollback.
        if router.capabilities().mirroring && self.plan.steps.iter().any(|s| matches!(s, Step::Mirror(_))) {
            let result = self
                .change_with_retry(&|| "stop mirroring".to_owned(), router_fence_error, || router.clear_mirror(&app))
                .await;
            self.fenced()?;
            result.map_err(|e| self.router_failure("stop mirroring", &e))?;
        }
        Ok(())
    }

    // ---- steps ----

    pub(super) fn canary_target(&self, weight: Percent) -> u32 {
        let total = self.plan.replicas;
        let n = match self.state.canary_scale {
            Some(CanaryScale::Replicas(n)) => n,
            Some(CanaryScale::Weight(w)) => canary_replicas(total, w),
            _ => canary_replicas(total, weight),
        };
        if weight > Percent::ZERO { n.max(1) } else { n }
    }

    pub(super) async fn set_weight(&mut self, weight: Percent) -> Result<(), StepError> {
        let (old, new, total) = (self.plan.old_track, self.plan.new_track, self.plan.replicas);
        if self.weighted() {
            let n = self.canary_target(weight);
            self.scale(new, n).await?;
            if n > 0 {
                self.wait_ready(new).await?;
            }
            self.route(TrafficSplit::between(old, new, weight)).await?;
        } else {
            let n = canary_replicas(total, weight);
            let s = total - n.min(total);
            self.note(format!(
                "no weighted router: {weight} by replica ratio, {new} {n} and {old} {s} of {total} ({}% effective)",
                u64::from(n.min(total)) * 100 / u64::from(total.max(1))
            ));
            let current_old = self.status(old).await?.desired;
            if s > current_old {
                // Grow before shrinking, so capacity never drops.
                self.scale(old, s).await?;
                self.wait_ready(old).await?;
                self.scale(new, n).await?;
            } else {
                self.scale(new, n).await?;
                if n > 0 {
                    self.wait_ready(new).await?;
                }
                self.scale(old, s).await?;
            }
        }
        self.state.canary_weight = weight;
        Ok(())
    }

    pub(super) async fn set_canary_scale(&mut self, scale: CanaryScale) -> Result<(), StepError> {
        self.state.canary_scale = match scale {
            CanaryScale::MatchTrafficWeight => None,
            other => Some(other),
        };
        let n = self.canary_target(self.state.canary_weight);
        let new = self.plan.new_track;
        self.scale(new, n).await?;
        if n > 0 {
            self.wait_ready(new).await?;
        }
        Ok(())
    }

    pub(super) async fn header_route(&mut self, route: &HeaderRoute) -> Result<(), StepError> {
        self.ensure_ready(route.track).await?;
        let Some(router) = self.engine.router.clone() else {
            return Err(self.failed(CauseKind::Router, "header routes need a traffic router".to_owned()));
        };
        let app = self.app.clone();
        let what = || format!("route {route}");
        let result = self.change_with_retry(&what, router_fence_error, || router.set_header_route(&app, route)).await;
        self.fenced()?;
        result.map_err(|e| self.router_failure(&what(), &e))?;
        self.state.header_routes.push(route.clone());
        self.note(format!("header route {route} in force"));
        Ok(())
    }

    pub(super) async fn mirror(&mut self, mirror: &Mirror) -> Result<(), StepError> {
        let new = self.plan.new_track;
        self.ensure_ready(new).await?;
        let Some(router) = self.engine.router.clone() else {
            return Err(self.failed(CauseKind::Router, "mirroring needs a traffic router".to_owned()));
        };
        let app = self.app.clone();
        let what = || format!("mirror {mirror} to {new}");
        // A change of the router like any other: fenced by the lease (it was not).
        let result = self.change_with_retry(&what, router_fence_error, || router.set_mirror(&app, new, mirror)).await;
        self.fenced()?;
        result.map_err(|e| self.router_failure(&what(), &e))?;
        self.note(format!("mirroring {mirror} to {new}; their answers are discarded"));
        Ok(())
    }

    pub(super) async fn pause(&mut self, index: usize, kind: PauseKind) {
        self.emit(RolloutEvent::Paused { index, kind });
        let mut promoted_rx = self.promote.subscribe();
        let promoted = async move {
            // Only a promotion of this very step ends it: one sent earlier was refused.
            let _ = promoted_rx.wait_for(|asked| *asked == Some(index)).await;
        };
        let promoted = match kind {
            PauseKind::Duration(d) => {
                tokio::select! {
                    () = tokio::time::sleep(d.as_duration()) => false,
                    () = promoted => true,
                }
            }
            PauseKind::UntilPromoted => {
                promoted.await;
                true
            }
        };
        if promoted {
            self.emit(RolloutEvent::Promoted { index });
            self.note(DecisionKind::PauseEnded { promoted: true });
        } else {
            self.note(DecisionKind::PauseEnded { promoted: false });
        }
    }

    pub(super) async fn analyze(&mut self, spec: &AnalysisSpec) -> Result<(), StepError> {
        let target = AnalysisTarget::new(
            self.app.clone(),
            self.plan.new_track,
            self.plan.old_track,
            self.state.record.to.version.clone(),
        );
        let engine = Arc::clone(&self.engine);
        let runner = AnalysisRunner::new(spec.clone(), target, engine.metrics.clone(), &engine.judges, &engine.health)
            .map_err(|e| self.failed(CauseKind::AnalysisError, e.to_string()))?;
        let events = self.events.clone();
        let name = spec.name.clone();
        let report = runner
            .run(|m| {
                let _ = events.send(RolloutEvent::Measurement { analysis: name.clone(), measurement: m.clone() });
            })
            .await;
        for m in &report.measurements {
            self.telemetry.measurement(m.outcome);
            let value = m.value.map(|v| format!(" value {v}")).unwrap_or_default();
            self.notes.push(format!(
                "{} #{} {}: {}{value} ({})",
                report.name,
                m.round + 1,
                m.check,
                m.outcome,
                m.detail
            ));
        }
        self.emit(RolloutEvent::AnalysisFinished {
            analysis: report.name.clone(),
            outcome: report.outcome,
            reason: report.reason.clone(),
        });
        self.note(DecisionKind::AnalysisVerdict {
            analysis: report.name.clone(),
            outcome: report.outcome,
            reason: report.reason.clone(),
        });
        let step = self.step.unwrap_or_default();
        self.state.record.analyses.push(AnalysisRecord::new(step, spec.clone(), report.clone()));
        let kind = match report.outcome {
            AnalysisOutcome::Successful => return Ok(()),
            AnalysisOutcome::Failed if matches!(report.decided_by, Some((_, CheckKind::HealthCheck))) => {
                CauseKind::HealthCheckFailed
            }
            AnalysisOutcome::Failed => CauseKind::AnalysisFailed,
            AnalysisOutcome::Inconclusive if spec.on_inconclusive == InconclusivePolicy::Promote => {
                let decision =
                    DecisionKind::InconclusivePromoted { analysis: report.name.clone(), reason: report.reason.clone() };
                self.decide_in_step(LogLevel::Warn, decision);
                self.state.record.inconclusive_decisions.push(InconclusiveDecision::new(
                    step,
                    format!("{}: {}", report.name, report.reason),
                    InconclusivePolicy::Promote,
                ));
                return Ok(());
            }
            AnalysisOutcome::Inconclusive => CauseKind::AnalysisInconclusive,
            AnalysisOutcome::Error => CauseKind::AnalysisError,
        };
        Err(self.failed(kind, format!("{}: {}", report.name, report.reason)))
    }

    pub(super) async fn promote_release(&mut self) -> Result<(), StepError> {
        let (old, new, fin, total) =
            (self.plan.old_track, self.plan.new_track, self.plan.final_track, self.plan.replicas);
        let to = self.state.record.to.clone();
        let spec = self.spec.clone();
        if fin != new {
            self.note(format!("promotion: {fin} updated in place to {} with {total} replicas", to.version));
            self.apply(&spec, fin, &to, total).await?;
            self.wait_ready(fin).await?;
            if self.weighted() {
                self.route(TrafficSplit::all(fin)).await?;
            } else {
                self.note(format!("no weighted router: {new} scaled to 0 so {fin} serves alone"));
                self.scale(new, 0).await?;
            }
        } else if new != old {
            if self.status(new).await?.desired < total {
                self.apply(&spec, new, &to, total).await?;
            }
            self.route(TrafficSplit::all(new)).await?;
        }
        self.clear_header_routes().await
    }

    pub(super) async fn scale_down(&mut self) -> Result<(), StepError> {
        let fin = self.plan.final_track;
        for track in self.plan.tracks() {
            if track == fin {
                continue;
            }
            if self.state.traffic.routes_to(track) {
                self.note(format!("{track} still receives traffic; sending all of it to {fin} first"));
                self.route(TrafficSplit::all(fin)).await?;
            }
            self.remove(track).await?;
        }
        Ok(())
    }
}
