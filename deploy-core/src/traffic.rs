//! Who receives requests: the [`TrafficRouter`] trait.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{AppId, Percent, Track, TrafficSplit};

/// A set of tracks, such as the tracks a router can route.
///
/// ```
/// use deploy_core::model::Track;
/// use deploy_core::traffic::TrackSet;
/// let set = TrackSet::of([Track::Stable, Track::Canary]);
/// assert!(set.contains(Track::Canary) && !set.contains(Track::Blue));
/// assert_eq!(set.to_string(), "stable, canary");
/// assert!(TrackSet::ALL.contains(Track::Green));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TrackSet(u8);

impl TrackSet {
    /// Every track.
    pub const ALL: TrackSet = TrackSet(0b1111);
    /// No track.
    pub const EMPTY: TrackSet = TrackSet(0);

    const fn bit(track: Track) -> u8 {
        match track {
            Track::Stable => 1,
            Track::Canary => 2,
            Track::Blue => 4,
            Track::Green => 8,
        }
    }

    /// The set of `tracks`.
    pub fn of(tracks: impl IntoIterator<Item = Track>) -> Self {
        tracks.into_iter().fold(Self::EMPTY, Self::with)
    }

    /// This set and `track`.
    #[must_use]
    pub const fn with(self, track: Track) -> Self {
        Self(self.0 | Self::bit(track))
    }

    /// Whether `track` is in the set.
    pub const fn contains(self, track: Track) -> bool {
        self.0 & Self::bit(track) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The tracks, in [`Track::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Track> {
        Track::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl fmt::Debug for TrackSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for TrackSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no track");
        }
        let names: Vec<&str> = self.iter().map(Track::as_str).collect();
        f.write_str(&names.join(", "))
    }
}

impl Serialize for TrackSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for TrackSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::of(Vec::<Track>::deserialize(deserializer)?))
    }
}

/// The kinds of [`HeaderMatch`], without their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HeaderMatchKind {
    /// [`HeaderMatch::Exact`].
    Exact,
    /// [`HeaderMatch::Prefix`].
    Prefix,
    /// [`HeaderMatch::Regex`].
    Regex,
}

impl HeaderMatchKind {
    /// Every kind.
    pub const ALL: [HeaderMatchKind; 3] = [Self::Exact, Self::Prefix, Self::Regex];

    /// The kind's name (`exact`, `prefix`, `regex`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Prefix => "prefix",
            Self::Regex => "regex",
        }
    }
}

impl fmt::Display for HeaderMatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`HeaderMatchKind`]s: the ways a router can match a header value.
///
/// ```
/// use deploy_core::traffic::{HeaderMatchKind, HeaderMatchKinds};
/// let kinds = HeaderMatchKinds::of([HeaderMatchKind::Exact, HeaderMatchKind::Regex]);
/// assert!(kinds.contains(HeaderMatchKind::Regex) && !kinds.contains(HeaderMatchKind::Prefix));
/// assert_eq!(kinds.to_string(), "exact, regex");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HeaderMatchKinds(u8);

impl HeaderMatchKinds {
    /// Exact, prefix and regular-expression matches.
    pub const ALL: HeaderMatchKinds = HeaderMatchKinds(0b111);
    /// No header match at all.
    pub const NONE: HeaderMatchKinds = HeaderMatchKinds(0);

    const fn bit(kind: HeaderMatchKind) -> u8 {
        match kind {
            HeaderMatchKind::Exact => 1,
            HeaderMatchKind::Prefix => 2,
            HeaderMatchKind::Regex => 4,
        }
    }

    /// The set of `kinds`.
    pub fn of(kinds: impl IntoIterator<Item = HeaderMatchKind>) -> Self {
        Self(kinds.into_iter().fold(0, |bits, k| bits | Self::bit(k)))
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: HeaderMatchKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds, in [`HeaderMatchKind::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = HeaderMatchKind> {
        HeaderMatchKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl fmt::Debug for HeaderMatchKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for HeaderMatchKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(HeaderMatchKind::as_str).collect();
        f.write_str(&names.join(", "))
    }
}

impl Serialize for HeaderMatchKinds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for HeaderMatchKinds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::of(Vec::<HeaderMatchKind>::deserialize(deserializer)?))
    }
}

/// What a router can do; a plan that needs more is rejected when it is validated
/// (`Plan::validate` in the `plan` module), with every mismatch listed,
/// instead of failing or being silently ignored mid-rollout.
///
/// How a router reaches a canary weight:
/// - `weights` without `weight_replicas`: any whole percentage, exactly (a mesh, a
///   Gateway, an ingress controller);
/// - `weights` with `weight_replicas: Some(n)`: by dividing `n` replicas between
///   the tracks, so a split is rounded to what `n` replicas can give
///   ([`RouterCapabilities::effective_split`]);
/// - neither `weights` nor `switch_only`: the router serves every ready replica of
///   the tracks in `split_tracks` together, and the engine reaches a weight by
///   scaling the tracks (replica ratio of the plan's replicas), as with no router;
/// - `switch_only`: all traffic to one track at a time; a canary weight would send
///   the new track nothing, so plans with one are refused.
///
/// ```
/// use deploy_core::model::{Percent, Track, TrafficSplit};
/// use deploy_core::traffic::{HeaderMatchKind, RouterCapabilities};
/// let caps = RouterCapabilities::weights_only();
/// assert!(caps.weights && !caps.header_routes);
/// // A router that divides 10 replicas: 25 % becomes 3 of 10.
/// let ratio = RouterCapabilities::replica_ratio(10);
/// let effective = ratio.effective_split(&TrafficSplit::canary(Percent::new(25).unwrap()));
/// assert_eq!(effective.weight(Track::Canary).value(), 30);
/// let nginx = RouterCapabilities::weights_only().with_header_routes().with_max_header_routes(1);
/// assert!(nginx.header_matches.contains(HeaderMatchKind::Prefix));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RouterCapabilities {
    /// The router sets weights between tracks itself (exactly, or rounded to
    /// `weight_replicas`).
    pub weights: bool,
    /// Routing requests that match a header to one track.
    pub header_routes: bool,
    /// Copying requests to a track whose answers are discarded.
    pub mirroring: bool,
    /// Only whole switches (0 or 100 %), as a Service selector does.
    pub switch_only: bool,
    /// With `weights`: the router reaches a weight by dividing this many replicas
    /// between the tracks, so weights are rounded to replicas.
    pub weight_replicas: Option<u32>,
    /// The tracks the router can send traffic to at all.
    pub tracks: TrackSet,
    /// The tracks that can share traffic (a split between two of them).
    pub split_tracks: TrackSet,
    /// How header values can be matched (with `header_routes`).
    pub header_matches: HeaderMatchKinds,
    /// The tracks a header route can send to (with `header_routes`).
    pub header_route_tracks: TrackSet,
    /// How many header routes (distinct headers) the router holds at once; `None`
    /// is no limit. A further route would replace an earlier one.
    pub max_header_routes: Option<u32>,
}

impl Default for RouterCapabilities {
    /// A router without weights, header routes or mirroring that serves every
    /// ready replica of any track it is given: weights are reached by the engine's
    /// replica ratio.
    fn default() -> Self {
        Self {
            weights: false,
            header_routes: false,
            mirroring: false,
            switch_only: false,
            weight_replicas: None,
            tracks: TrackSet::ALL,
            split_tracks: TrackSet::ALL,
            header_matches: HeaderMatchKinds::NONE,
            header_route_tracks: TrackSet::EMPTY,
            max_header_routes: None,
        }
    }
}

impl RouterCapabilities {
    /// Exact weighted splits between any tracks, nothing else.
    pub fn weights_only() -> Self {
        Self { weights: true, ..Self::default() }
    }

    /// Weights reached by dividing `replicas` replicas between the tracks: a
    /// split is rounded to them ([`RouterCapabilities::effective_split`]).
    pub fn replica_ratio(replicas: u32) -> Self {
        Self { weights: true, weight_replicas: Some(replicas), ..Self::default() }
    }

    /// Whole switches between tracks only.
    pub fn switch_only() -> Self {
        Self { switch_only: true, split_tracks: TrackSet::EMPTY, ..Self::default() }
    }

    /// Weights, header routes of every kind to any track, and mirroring, as a
    /// service mesh offers.
    pub fn full() -> Self {
        Self::weights_only().with_header_routes().with_mirroring()
    }

    /// Adds header routes: every match kind, to any track it can route, without a
    /// limit; narrow them with the other `with_header_*` methods.
    #[must_use]
    pub fn with_header_routes(mut self) -> Self {
        self.header_routes = true;
        self.header_matches = HeaderMatchKinds::ALL;
        self.header_route_tracks = self.tracks;
        self
    }

    /// Header values can be matched only in these ways.
    #[must_use]
    pub fn with_header_matches(mut self, kinds: HeaderMatchKinds) -> Self {
        self.header_matches = kinds;
        self
    }

    /// Header routes can send only to these tracks.
    #[must_use]
    pub fn with_header_route_tracks(mut self, tracks: TrackSet) -> Self {
        self.header_route_tracks = tracks;
        self
    }

    /// At most `max` header routes at once.
    #[must_use]
    pub fn with_max_header_routes(mut self, max: u32) -> Self {
        self.max_header_routes = Some(max);
        self
    }

    /// The router can route only these tracks (switches, splits and header routes).
    #[must_use]
    pub fn with_tracks(mut self, tracks: TrackSet) -> Self {
        self.tracks = tracks;
        self.split_tracks = TrackSet(self.split_tracks.0 & tracks.0);
        self.header_route_tracks = TrackSet(self.header_route_tracks.0 & tracks.0);
        self
    }

    /// Only these tracks can share traffic; the others are only switched to.
    #[must_use]
    pub fn with_split_tracks(mut self, tracks: TrackSet) -> Self {
        self.split_tracks = TrackSet(tracks.0 & self.tracks.0);
        self
    }

    /// Adds mirroring.
    #[must_use]
    pub fn with_mirroring(mut self) -> Self {
        self.mirroring = true;
        self
    }

    /// Whether the router itself can realise `split` in [`TrafficRouter::set_weights`]:
    /// every track is routable, and a split across tracks needs weights between
    /// tracks that can share traffic.
    pub fn supports_split(&self, split: &TrafficSplit) -> bool {
        let routable = split.iter().all(|(t, _)| self.tracks.contains(t));
        let whole = split.iter().count() <= 1;
        routable
            && (whole
                || (self.weights && !self.switch_only && split.iter().all(|(t, _)| self.split_tracks.contains(t))))
    }

    /// Whether a header route matching `kind` to `track` is supported.
    pub fn supports_header_route(&self, kind: HeaderMatchKind, track: Track) -> bool {
        self.header_routes && self.header_matches.contains(kind) && self.header_route_tracks.contains(track)
    }

    /// The split the router produces when asked for `split`: `split` itself for
    /// exact weights, rounded to replicas with `weight_replicas`
    /// ([`replicas_for_split`], then [`split_of_replicas`]).
    pub fn effective_split(&self, split: &TrafficSplit) -> TrafficSplit {
        match self.weight_replicas {
            Some(total) if self.weights => {
                split_of_replicas(&replicas_for_split(total, split)).unwrap_or_else(|| split.clone())
            }
            _ => split.clone(),
        }
    }
}

/// How `total` replicas carry `split`: each weighted track but the heaviest gets
/// its share rounded to the nearest replica (at least one), the heaviest the rest
/// (at least one). With fewer replicas than weighted tracks, the heaviest track
/// gets them all.
///
/// ```
/// use deploy_core::model::{Percent, Track, TrafficSplit};
/// use deploy_core::traffic::replicas_for_split;
/// let ten = replicas_for_split(4, &TrafficSplit::canary(Percent::new(10).unwrap()));
/// assert_eq!((ten[&Track::Stable], ten[&Track::Canary]), (3, 1));
/// let one = replicas_for_split(1, &TrafficSplit::canary(Percent::new(10).unwrap()));
/// assert_eq!(one.get(&Track::Canary), None);
/// ```
pub fn replicas_for_split(total: u32, split: &TrafficSplit) -> BTreeMap<Track, u32> {
    let mut weighted: Vec<(Track, Percent)> = split.iter().collect();
    weighted.sort_by_key(|(_, w)| *w);
    let mut out = BTreeMap::new();
    let Some((heaviest, _)) = weighted.pop() else { return out };
    if usize::try_from(total).unwrap_or(usize::MAX) < weighted.len() + 1 {
        out.insert(heaviest, total);
        return out;
    }
    let mut left = total;
    let mut others = u32::try_from(weighted.len()).unwrap_or(u32::MAX);
    for (track, weight) in weighted {
        others -= 1;
        let share = (u64::from(total) * u64::from(weight.value()) + 50) / 100;
        // Leave one replica for each remaining track and the heaviest.
        let n = u32::try_from(share).unwrap_or(u32::MAX).clamp(1, left - others - 1);
        left -= n;
        out.insert(track, n);
    }
    out.insert(heaviest, left);
    out
}

/// Each track's share of the replicas in `counts`, in whole percent summing to
/// 100: floors first, then the largest remainders get the rest (ties in track
/// order). `None` when there are no replicas.
///
/// ```
/// use std::collections::BTreeMap;
/// use deploy_core::model::Track;
/// use deploy_core::traffic::split_of_replicas;
/// let split = split_of_replicas(&BTreeMap::from([(Track::Stable, 2), (Track::Canary, 1)])).unwrap();
/// assert_eq!(split.to_string(), "stable=67% canary=33%");
/// ```
pub fn split_of_replicas(counts: &BTreeMap<Track, u32>) -> Option<TrafficSplit> {
    let total: u64 = counts.values().map(|n| u64::from(*n)).sum();
    if total == 0 {
        return None;
    }
    let mut shares: Vec<(Track, u64, u64)> =
        counts.iter().map(|(t, c)| (*t, u64::from(*c) * 100 / total, u64::from(*c) * 100 % total)).collect();
    let mut missing = 100 - shares.iter().map(|s| s.1).sum::<u64>();
    shares.sort_by_key(|s| std::cmp::Reverse(s.2));
    for share in &mut shares {
        if missing == 0 {
            break;
        }
        share.1 += 1;
        missing -= 1;
    }
    let weights = shares
        .into_iter()
        .map(|(t, p, _)| Percent::new(u8::try_from(p).ok()?).ok().map(|p| (t, p)))
        .collect::<Option<Vec<_>>>()?;
    TrafficSplit::new(weights).ok()
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

impl HeaderMatch {
    /// The kind of match, without its value.
    pub fn kind(&self) -> HeaderMatchKind {
        match self {
            Self::Exact(_) => HeaderMatchKind::Exact,
            Self::Prefix(_) => HeaderMatchKind::Prefix,
            Self::Regex(_) => HeaderMatchKind::Regex,
        }
    }

    /// The value matched against.
    pub fn value(&self) -> &str {
        match self {
            Self::Exact(v) | Self::Prefix(v) | Self::Regex(v) => v,
        }
    }
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

/// The HTTP methods a [`Mirror`] may name (Gateway API's list).
pub const HTTP_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Copies of live requests sent to a track whose answers are discarded (shadow
/// traffic): `percent` of the requests whose method is in `methods`.
///
/// A mirrored request runs twice, so only methods the caller knows are safe to
/// duplicate may be listed; the default is `GET` and `HEAD`. A mirrored `POST`
/// writes twice.
///
/// ```
/// use deploy_core::model::Percent;
/// use deploy_core::traffic::Mirror;
/// let m = Mirror::new(Percent::new(20).unwrap());
/// assert_eq!(m.methods, ["GET", "HEAD"]);
/// assert_eq!(m.to_string(), "20% of GET, HEAD requests");
/// let m = m.methods(["get", "options"]);
/// assert_eq!(m.methods, ["GET", "OPTIONS"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Mirror {
    /// The share of the matching requests that is copied.
    pub percent: Percent,
    /// The methods whose requests may be copied, upper case.
    #[serde(default = "Mirror::safe_methods")]
    pub methods: Vec<String>,
}

impl Mirror {
    /// Copies `percent` of the `GET` and `HEAD` requests.
    pub fn new(percent: Percent) -> Self {
        Self { percent, methods: Self::safe_methods() }
    }

    /// Copies only requests with these methods (upper-cased), which the caller
    /// declares safe to duplicate.
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.methods = methods.into_iter().map(|m| m.into().to_ascii_uppercase()).collect();
        self
    }

    fn safe_methods() -> Vec<String> {
        vec!["GET".to_owned(), "HEAD".to_owned()]
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} requests", self.percent, self.methods.join(", "))
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

    /// The split this router produces when asked for `split`: `split` itself for
    /// routers with exact weights, rounded for one that divides replicas. The
    /// engine asks before [`TrafficRouter::set_weights`] and compares the read-back
    /// with this. The default asks [`RouterCapabilities::effective_split`].
    fn effective_split(&self, split: &TrafficSplit) -> TrafficSplit {
        self.capabilities().effective_split(split)
    }

    /// Routes traffic as `split` says (as closely as
    /// [`TrafficRouter::effective_split`] says it can). Idempotent. Changes only
    /// the part of the routing object the router owns. Returns once the routing
    /// object is updated; the engine then reads the split back with
    /// [`TrafficRouter::weights`] and checks it against the effective split.
    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError>;

    /// The split as the routing object says now.
    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError>;

    /// Adds a header route, replacing the router's own route for the same header.
    /// A route the capabilities do not declare (match kind, track, one too many)
    /// is answered with [`RouterError::Unsupported`], never silently ignored or
    /// allowed to replace another header's route.
    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        let _ = (app, route);
        Err(RouterError::Unsupported { capability: "route by header".to_owned() })
    }

    /// Removes every header route this router added (and none the user wrote);
    /// succeeds when there are none.
    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        let _ = app;
        Ok(())
    }

    /// Copies [`Mirror::percent`] of the requests whose method is in
    /// [`Mirror::methods`] (and no others) to `track`, on top of the split in
    /// force; their answers are discarded. Replaces the router's earlier mirror.
    /// Routers without mirroring answer [`RouterError::Unsupported`].
    async fn set_mirror(&self, app: &AppId, track: Track, mirror: &Mirror) -> Result<(), RouterError> {
        let _ = (app, track, mirror);
        Err(RouterError::Unsupported { capability: "mirror traffic".to_owned() })
    }

    /// Stops the mirroring this router added (and none the user configured);
    /// succeeds when there is none.
    async fn clear_mirror(&self, app: &AppId) -> Result<(), RouterError> {
        let _ = app;
        Ok(())
    }
}
