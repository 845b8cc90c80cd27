//! Releases, tracks and traffic splits.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ImageRef, Percent, ValidationError};

/// A release version such as `1.4.2` or `2026.11.21-rc1`.
///
/// 1 to 128 characters of letters, digits, `.`, `_`, `-` and `+`, starting with a
/// letter or digit, so that it is safe as a Kubernetes label value and a tag.
///
/// ```
/// use deploy_core::model::Version;
/// assert_eq!(Version::new("1.4.2").unwrap().as_str(), "1.4.2");
/// assert!(Version::new("").is_err());
/// assert!(Version::new("1 .0").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version(String);

impl Version {
    /// A validated version.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        let mut chars = value.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
        if value.len() > 128 {
            return Err(ValidationError::new("version", value, "must be at most 128 characters"));
        }
        if !(first_ok && rest_ok) {
            return Err(ValidationError::new(
                "version",
                value,
                "must start with a letter or digit and contain only letters, digits, '.', '_', '-' and '+'",
            ));
        }
        Ok(Self(value))
    }

    /// The version as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Version {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Version {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Version> for String {
    fn from(value: Version) -> Self {
        value.0
    }
}

/// One version of an application: what gets rolled out.
///
/// ```
/// use deploy_core::model::{ImageRef, Release, Version};
/// let r = Release::new(Version::new("1.1.0").unwrap(), ImageRef::parse("shop/web:1.1.0").unwrap())
///     .change_cause("faster checkout");
/// assert_eq!(r.to_string(), "1.1.0 (docker.io/shop/web:1.1.0)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Release {
    /// The version label.
    pub version: Version,
    /// The image that runs this version.
    pub image: ImageRef,
    /// A checksum of the configuration this version runs with, so that a
    /// configuration change alone is a new release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_checksum: Option<String>,
    /// Why this release exists, as `kubectl rollout history` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
}

impl Release {
    /// A release of `image` labelled `version`.
    pub fn new(version: Version, image: ImageRef) -> Self {
        Self { version, image, config_checksum: None, change_cause: None }
    }

    /// Sets the configuration checksum.
    #[must_use]
    pub fn config_checksum(mut self, checksum: impl Into<String>) -> Self {
        self.config_checksum = Some(checksum.into());
        self
    }

    /// Sets the change cause.
    #[must_use]
    pub fn change_cause(mut self, cause: impl Into<String>) -> Self {
        self.change_cause = Some(cause.into());
        self
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.version, self.image)
    }
}

/// A named group of replicas running one release side by side with others.
///
/// Rolling updates use only `Stable`; canaries add `Canary`; blue-green alternates
/// `Blue` and `Green`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Track {
    /// The release that serves traffic today.
    Stable,
    /// The new release under test.
    Canary,
    /// One colour of a blue-green pair.
    Blue,
    /// The other colour of a blue-green pair.
    Green,
}

impl Track {
    /// Every track, in a stable order.
    pub const ALL: [Track; 4] = [Track::Stable, Track::Canary, Track::Blue, Track::Green];

    /// The label value of the track (`stable`, `canary`, `blue`, `green`).
    ///
    /// ```
    /// use deploy_core::model::Track;
    /// assert_eq!(Track::Blue.as_str(), "blue");
    /// assert_eq!(Track::Blue.opposite(), Track::Green);
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
            Self::Blue => "blue",
            Self::Green => "green",
        }
    }

    /// The other track of the pair: blue and green swap, stable and canary swap.
    pub fn opposite(self) -> Track {
        match self {
            Self::Stable => Self::Canary,
            Self::Canary => Self::Stable,
            Self::Blue => Self::Green,
            Self::Green => Self::Blue,
        }
    }
}

impl fmt::Display for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Track {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Track::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ValidationError::new("track", s, "must be one of stable, canary, blue, green"))
    }
}

/// How traffic is divided between tracks; the weights always sum to 100.
///
/// Tracks with weight 0 are not stored, so two splits that route the same traffic
/// compare equal.
///
/// ```
/// use deploy_core::model::{Percent, Track, TrafficSplit};
/// let split = TrafficSplit::canary(Percent::new(10).unwrap());
/// assert_eq!(split.weight(Track::Stable).value(), 90);
/// assert_eq!(split.to_string(), "stable=90% canary=10%");
/// assert!(TrafficSplit::new([(Track::Stable, Percent::new(50).unwrap())]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<Track, Percent>", into = "BTreeMap<Track, Percent>")]
pub struct TrafficSplit(BTreeMap<Track, Percent>);

impl TrafficSplit {
    /// A split from weights that must sum to exactly 100.
    pub fn new(weights: impl IntoIterator<Item = (Track, Percent)>) -> Result<Self, ValidationError> {
        let mut map = BTreeMap::new();
        let mut total = 0u32;
        for (track, weight) in weights {
            total += u32::from(weight.value());
            if map.insert(track, weight).is_some() {
                return Err(ValidationError::new("traffic split", track.as_str(), "track is listed twice"));
            }
        }
        if total != 100 {
            let shown = map.iter().map(|(t, w)| format!("{t}={w}")).collect::<Vec<_>>().join(" ");
            return Err(ValidationError::new("traffic split", shown, format!("weights sum to {total}, not 100")));
        }
        map.retain(|_, w| *w != Percent::ZERO);
        Ok(Self(map))
    }

    /// All traffic to one track.
    pub fn all(track: Track) -> Self {
        Self(BTreeMap::from([(track, Percent::HUNDRED)]))
    }

    /// `weight` to the canary, the rest to stable.
    pub fn canary(weight: Percent) -> Self {
        Self::between(Track::Stable, Track::Canary, weight)
    }

    /// `weight` to `to`, the rest to `from`.
    pub fn between(from: Track, to: Track, weight: Percent) -> Self {
        let mut map = BTreeMap::new();
        if weight != Percent::HUNDRED {
            map.insert(from, weight.complement());
        }
        if weight != Percent::ZERO {
            map.insert(to, weight);
        }
        Self(map)
    }

    /// The weight of `track`; zero when it gets no traffic.
    pub fn weight(&self, track: Track) -> Percent {
        self.0.get(&track).copied().unwrap_or(Percent::ZERO)
    }

    /// Tracks that receive traffic, with their weights.
    pub fn iter(&self) -> impl Iterator<Item = (Track, Percent)> + '_ {
        self.0.iter().map(|(t, w)| (*t, *w))
    }

    /// Whether `track` receives any traffic.
    pub fn routes_to(&self, track: Track) -> bool {
        self.0.contains_key(&track)
    }
}

impl fmt::Display for TrafficSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (track, weight) in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{track}={weight}")?;
        }
        Ok(())
    }
}

impl TryFrom<BTreeMap<Track, Percent>> for TrafficSplit {
    type Error = ValidationError;
    fn try_from(value: BTreeMap<Track, Percent>) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TrafficSplit> for BTreeMap<Track, Percent> {
    fn from(value: TrafficSplit) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: u8) -> Percent {
        Percent::new(v).unwrap()
    }

    #[test]
    fn split_must_sum_to_100() {
        assert!(TrafficSplit::new([(Track::Stable, p(60)), (Track::Canary, p(40))]).is_ok());
        let err = TrafficSplit::new([(Track::Stable, p(60)), (Track::Canary, p(50))]).unwrap_err();
        assert!(err.reason.contains("110"), "{err}");
        assert!(TrafficSplit::new([(Track::Stable, p(50)), (Track::Stable, p(50))]).is_err());
    }

    #[test]
    fn zero_weights_are_dropped_so_equal_routing_compares_equal() {
        let a = TrafficSplit::new([(Track::Blue, p(100)), (Track::Green, p(0))]).unwrap();
        assert_eq!(a, TrafficSplit::all(Track::Blue));
        assert_eq!(TrafficSplit::canary(p(0)), TrafficSplit::all(Track::Stable));
        assert_eq!(TrafficSplit::canary(p(100)), TrafficSplit::all(Track::Canary));
        assert!(!a.routes_to(Track::Green));
    }

    #[test]
    fn split_serde_validates() {
        let s: TrafficSplit = serde_json::from_str(r#"{"stable":"75%","canary":25}"#).unwrap();
        assert_eq!(s.weight(Track::Canary), p(25));
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"stable":75,"canary":25}"#);
        assert!(serde_json::from_str::<TrafficSplit>(r#"{"stable":75}"#).is_err());
        assert!(serde_json::from_str::<TrafficSplit>(r#"{"purple":100}"#).is_err());
    }

    #[test]
    fn track_parses_its_own_display() {
        for t in Track::ALL {
            assert_eq!(t.to_string().parse::<Track>().unwrap(), t);
            assert_eq!(t.opposite().opposite(), t);
        }
        assert!("Stable".parse::<Track>().is_err());
    }
}
