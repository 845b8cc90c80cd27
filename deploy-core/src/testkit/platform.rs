//! The kit's [`Platform`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Fault, Method, Shared, SimTrack, fault_kind};
use crate::model::{AppId, AppSpec, Release, Track};
use crate::platform::{Platform, PlatformError, TrackState, TrackStatus};

/// Tracks that become ready after the kit's delay (or when marked), with injected
/// faults. Get it from [`TestKit::platform`](super::TestKit::platform).
#[derive(Debug)]
pub struct TestPlatform {
    shared: Arc<Shared>,
}

impl TestPlatform {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn enter(&self, method: Method, operation: &str, detail: String) -> Result<(), PlatformError> {
        match self.shared.enter(method, detail).await.1 {
            None => Ok(()),
            Some(Fault::Hang) => std::future::pending().await,
            Some(fault) => Err(PlatformError::backend(operation, fault_kind(fault), "injected by the test kit")),
        }
    }
}

#[async_trait]
impl Platform for TestPlatform {
    async fn apply(&self, spec: &AppSpec, track: Track, release: &Release, replicas: u32) -> Result<(), PlatformError> {
        self.enter(Method::Apply, "apply", format!("{track} {} x{replicas}", release.version)).await?;
        let now = Instant::now();
        let mut world = self.shared.lock();
        let key = (spec.id(), track);
        let unchanged = world
            .tracks
            .get(&key)
            .is_some_and(|t| t.release == *release && t.replicas == replicas && t.stuck.is_none());
        if !unchanged {
            let (ready_at, stuck) = world.converge(release, now);
            world.tracks.insert(key, SimTrack { release: release.clone(), replicas, ready_at, stuck });
        }
        drop(world);
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn scale(&self, app: &AppId, track: Track, replicas: u32) -> Result<(), PlatformError> {
        self.enter(Method::Scale, "scale", format!("{track} x{replicas}")).await?;
        let now = Instant::now();
        let mut world = self.shared.lock();
        let key = (app.clone(), track);
        let Some(current) = world.tracks.get(&key).cloned() else {
            return Err(PlatformError::NotFound { app: app.clone(), track });
        };
        let mut next = current.clone();
        next.replicas = replicas;
        if replicas > current.replicas {
            // New pods must start; fewer pods are ready as soon as the others stop.
            let (ready_at, stuck) = world.converge(&current.release, now);
            next.ready_at = ready_at;
            next.stuck = stuck;
        }
        world.tracks.insert(key, next);
        drop(world);
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn wait_ready(&self, app: &AppId, track: Track, deadline: Duration) -> Result<(), PlatformError> {
        self.enter(Method::WaitReady, "wait for readiness", format!("{track}")).await?;
        let until = Instant::now() + deadline;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let (state, ready_at) = {
                let world = self.shared.lock();
                let state = world.track_state(app, track, now);
                (state, world.tracks.get(&(app.clone(), track)).and_then(|t| t.ready_at))
            };
            match state {
                TrackState::Ready => return Ok(()),
                TrackState::Absent => return Err(PlatformError::NotFound { app: app.clone(), track }),
                TrackState::Failed(reason) => return Err(PlatformError::Doomed { app: app.clone(), track, reason }),
                _ => {}
            }
            if now >= until {
                return Err(PlatformError::Timeout {
                    app: app.clone(),
                    track,
                    after: deadline,
                    reason: "replicas not ready".to_owned(),
                });
            }
            let wake = ready_at.filter(|at| *at > now).map_or(until, |at| at.min(until));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = changed => {}
            }
        }
    }

    async fn status(&self, app: &AppId, track: Track) -> Result<TrackStatus, PlatformError> {
        self.enter(Method::Status, "read status", format!("{track}")).await?;
        let now = Instant::now();
        let world = self.shared.lock();
        let state = world.track_state(app, track, now);
        Ok(match world.tracks.get(&(app.clone(), track)) {
            None => TrackStatus::absent(),
            Some(t) => {
                let ready = if state == TrackState::Ready { t.replicas } else { 0 };
                TrackStatus::new(Some(t.release.version.clone()), t.replicas, t.replicas, ready, ready, state)
                    .with_image(t.release.image.clone())
            }
        })
    }

    async fn remove(&self, app: &AppId, track: Track) -> Result<(), PlatformError> {
        self.enter(Method::Remove, "remove", format!("{track}")).await?;
        self.shared.lock().tracks.remove(&(app.clone(), track));
        self.shared.changed.notify_waiters();
        Ok(())
    }
}
