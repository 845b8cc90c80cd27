//! Running a rollout in its own task, with its handle.

use super::*;

impl RolloutEngine {
    #[expect(clippy::too_many_arguments, reason = "the parts of a rollout, passed once")]
    pub(super) fn spawn(
        &self,
        mut state: RolloutState,
        plan: Plan,
        spec: AppSpec,
        revision: Option<Revision>,
        acquired: Acquired,
        origin: Origin,
        notes: Vec<DecisionKind>,
    ) -> RolloutHandle {
        let (event_tx, event_rx) = event_queue::event_queue(self.inner.config.event_capacity);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let deployment = state.record.id.clone();
        let app = state.record.app.clone();
        let span = tracing::info_span!(
            "rollout",
            deploy.app = %app,
            deploy.strategy = %state.record.strategy,
            release.version = %state.record.to.version,
            deploy.id = %deployment,
        );
        let first = if origin != Origin::Start {
            RolloutEvent::Resumed {
                deployment: deployment.clone(),
                next_step: state.next_step,
                rolling_back: state.phase.is_backward(),
            }
        } else {
            RolloutEvent::Started {
                deployment: deployment.clone(),
                app: app.clone(),
                strategy: plan.strategy,
                from: state.record.from.as_ref().map(|r| r.version.clone()),
                to: state.record.to.version.clone(),
                steps: plan.steps.len(),
            }
        };
        let first_seen = first.clone();
        let _ = event_tx.send(first);
        let mut decisions = Vec::new();
        if let Some(takeover) = &acquired.takeover {
            telemetry::lock_takeover();
            decisions.push(DecisionKind::from(takeover.clone()));
        }
        decisions.extend(notes);
        for kind in decisions {
            if origin != Origin::Start {
                state.record.log(LogLevel::Warn, kind.to_string());
            }
            let _ = event_tx.send(RolloutEvent::Decision { kind });
        }
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let lease = run::LeaseView::new(acquired.lease, acquired.sent, self.inner.config.lock_ttl);
        let book = Arc::new(Mutex::new(run::ControlBook::from_state(&state)));
        let started =
            (self.inner.notifier.is_some() && origin == Origin::Start).then(|| notify::started(&state.record));
        let mut run = run::Run::new(
            Arc::clone(&self.inner),
            state,
            plan,
            spec,
            revision,
            event_tx,
            progress_tx,
            Arc::clone(&lease),
            Arc::clone(&book),
        );
        run.observe(&first_seen);
        if let Origin::Emergency(reason) = origin {
            run.emergency_requested(&reason);
        }
        let keeper = run::LeaseKeeper::new(
            Arc::clone(&self.inner.state),
            Arc::clone(&lease),
            app.clone(),
            self.inner.config.lock_ttl,
        );
        let controls = run::Controls::new(
            control_rx,
            Arc::clone(&self.inner.state),
            app.clone(),
            deployment.clone(),
            book,
            self.inner.config.control_interval,
        );
        let (done_tx, done_rx) = watch::channel(None);
        let registration = Registration {
            inner: Arc::clone(&self.inner),
            app: app.clone(),
            deployment: deployment.clone(),
            done: done_tx,
            lease,
        };
        self.inner.running().insert(
            app.clone(),
            Running {
                deployment: deployment.clone(),
                controls: control_tx.clone(),
                progress: progress_rx.clone(),
                done: done_rx,
            },
        );
        let notifier = self.inner.notifier.clone();
        let task = tokio::spawn(
            async move {
                if let (Some(notifier), Some(started)) = (&notifier, &started) {
                    notify::deliver(notifier.as_ref(), started).await;
                }
                let result = run::drive(run, controls, keeper).await;
                if let (Some(notifier), Ok(report)) = (&notifier, &result) {
                    notify::deliver(notifier.as_ref(), &notify::finished(report)).await;
                }
                registration.publish(&result);
                result
            }
            .instrument(span),
        );
        RolloutHandle { deployment, app, events: event_rx, controls: control_tx, progress: progress_rx, task }
    }
}
