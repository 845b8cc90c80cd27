//! Who receives requests: the [`TrafficRouter`] trait.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{AppId, Track, TrafficSplit};

/// What a router can do; a plan that needs more is rejected when it is validated,
/// instead of having a header route silently ignored mid-rollout.
///
/// ```
/// use deploy_core::traffic::RouterCapabilities;
/// let caps = RouterCapabilities::weights_only();
/// assert!(caps.weights && !caps.header_routes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RouterCapabilities {
    /// Arbitrary percentages between tracks.
    pub weights: bool,
    /// Routing requests that match a header to one track.
    pub header_routes: bool,
    /// Copying requests to a track whose answers are discarded.
    pub mirroring: bool,
    /// Only whole switches (0 or 100 %), as a Service selector does.
    pub switch_only: bool,
}

impl RouterCapabilities {
    /// Weighted splits, nothing else.
    pub fn weights_only() -> Self {
        Self { weights: true, ..Self::default() }
    }

    /// Whole switches between tracks only.
    pub fn switch_only() -> Self {
        Self { switch_only: true, ..Self::default() }
    }

    /// Weights, header routes and mirroring, as a service mesh offers.
    pub fn full() -> Self {
        Self { weights: true, header_routes: true, mirroring: true, switch_only: false }
    }

    /// Adds header routes.
    #[must_use]
    pub fn with_header_routes(mut self) -> Self {
        self.header_routes = true;
        self
    }

    /// Adds mirroring.
    #[must_use]
    pub fn with_mirroring(mut self) -> Self {
        self.mirroring = true;
        self
    }

    /// Whether the router can realise `split`.
    pub fn supports_split(&self, split: &TrafficSplit) -> bool {
        self.weights || split.iter().count() <= 1
    }
}

/// How a header value is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HeaderMatch {
    /// The whole value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The value matches this regular expression (RE2 syntax, as Envoy uses).
    Regex(String),
}

/// Requests whose header matches go to `track`, whatever the weights say.
///
/// ```
/// use deploy_core::traffic::{HeaderMatch, HeaderRoute};
/// use deploy_core::model::Track;
/// let r = HeaderRoute::new("x-canary", HeaderMatch::Exact("always".into()), Track::Canary);
/// assert_eq!(r.to_string(), "x-canary=always -> canary");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeaderRoute {
    /// The header name, lower case.
    pub header: String,
    /// How its value must match.
    pub matches: HeaderMatch,
    /// Where matching requests go.
    pub track: Track,
}

impl HeaderRoute {
    /// A route for requests whose `header` matches.
    pub fn new(header: impl Into<String>, matches: HeaderMatch, track: Track) -> Self {
        Self { header: header.into().to_ascii_lowercase(), matches, track }
    }
}

impl fmt::Display for HeaderRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, value) = match &self.matches {
            HeaderMatch::Exact(v) => ("=", v),
            HeaderMatch::Prefix(v) => ("^=", v),
            HeaderMatch::Regex(v) => ("~=", v),
        };
        write!(f, "{}{op}{value} -> {}", self.header, self.track)
    }
}

/// A failure of a [`TrafficRouter`] operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The router cannot do what was asked.
    #[error("the traffic router cannot {capability}")]
    Unsupported {
        /// What was asked, such as `route by header`.
        capability: String,
    },
    /// The router's object (a Service, a VirtualService) does not exist.
    #[error("routing object {what} for {app} not found")]
    NotFound {
        /// The application.
        app: AppId,
        /// Which object.
        what: String,
    },
    /// The weights read back differ from the weights set.
    #[error("traffic of {app} is {actual}, expected {expected}")]
    Mismatch {
        /// The application.
        app: AppId,
        /// What was set.
        expected: TrafficSplit,
        /// What the router reports.
        actual: TrafficSplit,
    },
    /// The router's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(RouterError);

impl Classify for RouterError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Mismatch { .. } => ErrorKind::Conflict,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// Divides an application's traffic between its tracks: a Service selector, a mesh's
/// weights, an ingress controller's canary annotations, a network alias.
///
/// The router never checks readiness; the engine only routes to ready tracks.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// What this router can do, checked when a plan is validated.
    fn capabilities(&self) -> RouterCapabilities;

    /// Routes traffic as `split` says. Idempotent. Returns once the routing object
    /// is updated; the engine then reads the split back with
    /// [`TrafficRouter::weights`] and checks it.
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError>;

    /// The split as the routing object says now.
    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError>;

    /// Adds or replaces a header route. Routers without header routes answer
    /// [`RouterError::Unsupported`], never silently ignore the route.
    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        let _ = (app, route);
        Err(RouterError::Unsupported { capability: "route by header".to_owned() })
    }

    /// Removes every header route; succeeds when there are none.
    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        let _ = app;
        Ok(())
    }
}
