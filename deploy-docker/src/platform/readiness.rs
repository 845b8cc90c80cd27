//! Readiness of a track: what a container's state says, the track's status, and
//! waiting by following the engine's events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deploy_core::model::{AppId, Track};
use deploy_core::platform::{PlatformError, TrackState, TrackStatus};
use futures::StreamExt;

use super::{DockerPlatform, Member, first_line};
use crate::containers::{ContainerState, Health};
use crate::events::EventStream;
use crate::labels;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one container's state says about its readiness.
pub(super) enum Readiness {
    Ready,
    Pending,
    Doomed(String),
}

impl DockerPlatform {
    pub(super) fn readiness(&self, state: &ContainerState) -> Readiness {
        if state.restart_count >= self.config.crash_loop_restarts {
            return Readiness::Doomed(format!(
                "container {} restarted {} times (crash loop, last exit code {})",
                state.name, state.restart_count, state.exit_code
            ));
        }
        if state.exited {
            let error = state.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
            return Readiness::Doomed(format!("container {} exited with code {}{error}", state.name, state.exit_code));
        }
        if !state.running {
            return Readiness::Pending;
        }
        match &state.health {
            Health::Healthy => Readiness::Ready,
            Health::None => {
                let ran_for = state.started_at.map(|t| jiff::Timestamp::now().duration_since(t));
                let min_ready =
                    jiff::SignedDuration::try_from(self.config.min_ready).unwrap_or(jiff::SignedDuration::MAX);
                if ran_for.is_some_and(|d| d >= min_ready) { Readiness::Ready } else { Readiness::Pending }
            }
            Health::Starting => Readiness::Pending,
            Health::Unhealthy { output } => {
                Readiness::Doomed(format!("container {} is unhealthy: {}", state.name, first_line(output)))
            }
        }
    }

    /// The status of a track from its members.
    pub(super) fn status_of(&self, app: &AppId, track: Track, members: &[Member]) -> TrackStatus {
        let Some(newest) = members.last() else { return TrackStatus::absent() };
        let current: Vec<&Member> = members.iter().filter(|m| m.revision == newest.revision).collect();
        let stopped_by_scale =
            |m: &&Member| !m.state.running && !m.state.restarting && matches!(m.state.exit_code, 0 | 137 | 143);
        let desired = self.known_desired(app, track).unwrap_or_else(|| {
            u32::try_from(current.iter().filter(|m| !stopped_by_scale(m)).count()).unwrap_or(u32::MAX)
        });
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let ready = count(members.iter().filter(|m| matches!(self.readiness(&m.state), Readiness::Ready)).count());
        let updated = count(current.len());
        let updated_ready =
            count(current.iter().filter(|m| matches!(self.readiness(&m.state), Readiness::Ready)).count());
        let state = if desired == 0 {
            TrackState::Ready
        } else if let Some(reason) = current.iter().find_map(|m| match self.readiness(&m.state) {
            Readiness::Doomed(reason) => Some(reason),
            _ => None,
        }) {
            TrackState::Failed(reason)
        } else if updated == desired && updated_ready == desired && count(members.len()) == desired {
            TrackState::Ready
        } else {
            TrackState::Progressing
        };
        TrackStatus::new(newest.version.clone(), desired, updated, ready, ready, state)
    }

    /// When a waiting track must be re-read without an event: once the youngest
    /// running container without a health check has run for
    /// [`PlatformConfig::min_ready`](super::PlatformConfig::min_ready); otherwise after a long safety interval.
    pub(super) fn recheck_after(&self, members: &[Member]) -> Duration {
        const SAFETY: Duration = Duration::from_secs(5);
        let now = jiff::Timestamp::now();
        members
            .iter()
            .filter(|m| m.state.running && m.state.health == Health::None)
            .filter_map(|m| m.state.started_at)
            .map(|t| Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO))
            // Only those still waiting on the clock: one that is ready already needs no wake-up.
            .filter(|ran| *ran < self.config.min_ready)
            .map(|ran| self.config.min_ready.saturating_sub(ran) + Duration::from_millis(20))
            .min()
            .unwrap_or(SAFETY)
            .min(SAFETY)
    }

    /// The engine's event filters for the track's containers: changes of state
    /// only, not the exec events of every health-check run.
    pub(super) fn track_filters(app: &AppId, track: Track) -> HashMap<String, Vec<String>> {
        let mut filters = labels::label_filters(&labels::track_selector(app, track));
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        let changes = ["health_status", "start", "restart", "die", "oom", "stop", "kill", "destroy", "create"];
        filters.insert("event".to_owned(), changes.iter().map(|e| (*e).to_owned()).collect());
        filters
    }

    /// Waits until the track is ready (see [`Platform::wait_ready`](deploy_core::platform::Platform::wait_ready)).
    pub(super) async fn wait_track_ready(
        &self,
        app: &AppId,
        track: Track,
        deadline: Duration,
    ) -> Result<(), PlatformError> {
        let started = Instant::now();
        // Subscribed before the first read, so that no change falls between the two.
        let mut follower = Follower::new(self, app, track);
        loop {
            let members = self.members(app, track).await?;
            let status = self.status_of(app, track, &members);
            match &status.state {
                TrackState::Ready => return self.join_serving(app, track, &members).await,
                TrackState::Failed(reason) => {
                    return Err(PlatformError::Doomed { app: app.clone(), track, reason: reason.clone() });
                }
                TrackState::Absent => return Err(PlatformError::NotFound { app: app.clone(), track }),
                _ => {}
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(PlatformError::Timeout {
                    app: app.clone(),
                    track,
                    after: deadline,
                    reason: format!("{} of {} ready", status.ready, status.desired),
                });
            }
            follower.next_change(self.recheck_after(&members), left).await;
        }
    }

    /// What the platform's readiness waits have done so far (see [`ReadinessCounts`]).
    pub fn readiness_counts(&self) -> ReadinessCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let c = &self.counters;
        ReadinessCounts {
            event_wakeups: read(&c.event_wakeups),
            timer_rechecks: read(&c.timer_rechecks),
            polls: read(&c.polls),
            resubscriptions: read(&c.resubscriptions),
            fallbacks: read(&c.fallbacks),
        }
    }
}

/// What the readiness waits of a [`DockerPlatform`] have done since it was made
/// ([`DockerPlatform::readiness_counts`]), for operators and tests: how often a
/// track was re-read because of an event, a timer or a poll, and how often the
/// event stream had to be re-subscribed or was given up for polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReadinessCounts {
    /// Re-reads woken by an engine event about the track's containers.
    pub event_wakeups: u64,
    /// Re-reads woken by a timer while following events: a container without a
    /// health check reaching [`PlatformConfig::min_ready`](super::PlatformConfig::min_ready), or the 5 s safety re-check.
    pub timer_rechecks: u64,
    /// Re-reads by polling every [`PlatformConfig::poll_interval`](super::PlatformConfig::poll_interval): after the
    /// event stream was given up, or with [`PlatformConfig::readiness_events`](super::PlatformConfig::readiness_events) off.
    pub polls: u64,
    /// Event streams that failed or ended and were subscribed again.
    pub resubscriptions: u64,
    /// Waits that gave up their event stream for polling after
    /// [`PlatformConfig::event_resubscribes`](super::PlatformConfig::event_resubscribes) failed re-subscriptions in a row.
    pub fallbacks: u64,
}

/// The counters behind [`ReadinessCounts`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    event_wakeups: AtomicU64,
    timer_rechecks: AtomicU64,
    polls: AtomicU64,
    resubscriptions: AtomicU64,
    fallbacks: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Follows the engine's events about one track for one wait: re-subscribes,
/// from the time of the last event seen, when the stream fails or ends, up to
/// [`PlatformConfig::event_resubscribes`](super::PlatformConfig::event_resubscribes) times in a row without a new event;
/// then polls.
pub(super) struct Follower<'a> {
    platform: &'a DockerPlatform,
    filters: HashMap<String, Vec<String>>,
    stream: Option<EventStream>,
    /// The time of the newest event seen (nanoseconds), else of the first subscription.
    since: i64,
    /// Re-subscriptions since the last new event.
    failures: u32,
}

impl<'a> Follower<'a> {
    /// Subscribes now (when the platform follows events at all).
    pub(super) fn new(platform: &'a DockerPlatform, app: &AppId, track: Track) -> Self {
        let filters = DockerPlatform::track_filters(app, track);
        let since = i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
        // From now, by the engine's clock: the request goes out when the stream is
        // first polled, after the caller's first read, and nothing in between is lost.
        let from = crate::events::since_parameter(since);
        let stream = platform.config.readiness_events.then(|| platform.events.subscribe(&filters, Some(&from)));
        Self { platform, filters, stream, since, failures: 0 }
    }

    /// Returns when something may have changed the track: an event about its
    /// containers, `recheck` passing without one (both while following events), a
    /// re-subscription after the stream dropped, or one poll interval once
    /// polling. Never waits longer than `left`.
    pub(super) async fn next_change(&mut self, recheck: Duration, left: Duration) {
        let platform = self.platform;
        let counters = &platform.counters;
        let Some(stream) = self.stream.as_mut() else {
            tokio::time::sleep(platform.config.poll_interval.min(left)).await;
            bump(&counters.polls);
            return;
        };
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(event)) => {
                    bump(&counters.event_wakeups);
                    if let Some(time) = event.time_nano.filter(|t| *t > self.since) {
                        self.since = time;
                        self.failures = 0;
                    }
                }
                Some(Err(e)) => self.dropped(&e.to_string()),
                None => self.dropped("the stream ended"),
            },
            () = tokio::time::sleep(recheck.min(left)) => bump(&counters.timer_rechecks),
        }
    }

    /// The stream failed or ended: subscribe again from the last event's time
    /// (events in between are replayed by the engine), or give up for polling.
    pub(super) fn dropped(&mut self, why: &str) {
        let config = &self.platform.config;
        if self.failures >= config.event_resubscribes {
            tracing::warn!(
                cause = why,
                attempts = self.failures,
                "the engine's event stream dropped again after re-subscribing; polling instead"
            );
            bump(&self.platform.counters.fallbacks);
            self.stream = None;
            return;
        }
        self.failures += 1;
        let since = crate::events::since_parameter(self.since);
        tracing::info!(cause = why, attempt = self.failures, since = %since, "the engine's event stream dropped; subscribing again");
        bump(&self.platform.counters.resubscriptions);
        self.stream = Some(self.platform.events.subscribe(&self.filters, Some(&since)));
    }
}
