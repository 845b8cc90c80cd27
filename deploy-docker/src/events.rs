//! Where the engine's container events come from: [`ContainerEvents`], with
//! [`DockerEvents`] reading them from the engine itself.
//!
//! Why a trait: the Docker platform waits for readiness by following these
//! events and, when a stream fails or ends, subscribes again from the time of
//! the last event it saw. Behind a trait, that path can be driven by a source
//! that ends when a test says so, instead of only by a real network fault.

use std::collections::HashMap;
use std::pin::Pin;

use bollard::Docker;
use bollard::models::EventMessage;
use futures::{Stream, StreamExt};

use crate::error::DockerError;

/// A stream of the engine's events; an `Err` item is the stream failing.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<EventMessage, DockerError>> + Send>>;

/// A source of the engine's events.
///
/// Contract: [`ContainerEvents::subscribe`] returns the events matching
/// `filters` (the engine's `/events` filters, such as `label`, `type` and
/// `event`), first those since `since` when it is given (the engine's `since`
/// parameter, `<seconds>.<nanoseconds>` since the epoch; the engine keeps only
/// its most recent events), then live ones. A stream may end or fail at any
/// time; the caller decides whether to subscribe again.
pub trait ContainerEvents: Send + Sync {
    /// Subscribes to the events matching `filters`, from `since` when given.
    fn subscribe(&self, filters: &HashMap<String, Vec<String>>, since: Option<&str>) -> EventStream;
}

impl std::fmt::Debug for dyn ContainerEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContainerEvents")
    }
}

/// The engine's own event stream (`GET /events`).
#[derive(Debug, Clone)]
pub struct DockerEvents {
    docker: Docker,
}

impl DockerEvents {
    /// Events from `docker`.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }
}

impl ContainerEvents for DockerEvents {
    fn subscribe(&self, filters: &HashMap<String, Vec<String>>, since: Option<&str>) -> EventStream {
        let mut options = bollard::query_parameters::EventsOptionsBuilder::new().filters(filters);
        if let Some(since) = since {
            options = options.since(since);
        }
        let stream = self
            .docker
            .events(Some(options.build()))
            .map(|item| item.map_err(|e| DockerError::from_bollard("follow the engine's events", String::new, e)));
        Box::pin(stream)
    }
}

/// `time_nano` (nanoseconds since the epoch) as the engine's `since` parameter.
///
/// ```
/// assert_eq!(deploy_docker::events::since_parameter(1_700_000_000_000_000_042), "1700000000.000000042");
/// ```
pub fn since_parameter(time_nano: i64) -> String {
    format!("{}.{:09}", time_nano.div_euclid(1_000_000_000), time_nano.rem_euclid(1_000_000_000))
}
