//! [`NetworkName`]: the validated name of a Docker network.

use std::fmt;
use std::str::FromStr;

use deploy_core::model::{Name, ValidationError};
use serde::{Deserialize, Serialize};

/// The longest network name accepted here. Docker sets no limit of its own; this
/// one keeps names usable as labels and in logs.
const MAX_LEN: usize = 255;

/// The name of a Docker network, validated as the engine's object names are: a
/// letter or digit, then letters, digits, `_`, `.` and `-` (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`),
/// at most 255 characters.
///
/// Its own type so that a constructor taking one cannot be handed an app name, an
/// alias or any other string by mistake ([`NetworkAliasRouter::new`](crate::NetworkAliasRouter::new)).
/// Every [`Name`] is a valid network name. Serialized as a plain string, validated
/// when deserialized.
///
/// ```
/// use deploy_docker::NetworkName;
/// let edge: NetworkName = "shop-edge".parse().unwrap();
/// assert_eq!(edge.as_str(), "shop-edge");
/// assert!(NetworkName::new("my_net.v2").is_ok());
/// let err = NetworkName::new("-edge").unwrap_err();
/// assert_eq!(err.field, "network name");
/// assert!(NetworkName::new("a/b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetworkName(String);

impl NetworkName {
    /// Validates `value` as a network name; errors name the field `"network name"`.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        match check(&value) {
            Ok(()) => Ok(Self(value)),
            Err(reason) => Err(ValidationError::new("network name", value, reason)),
        }
    }

    /// The name as a string slice, as the engine's API takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let Some(first) = chars.next() else { return Err("must not be empty".to_owned()) };
    if !first.is_ascii_alphanumeric() {
        return Err(format!("must start with a letter or digit (found {first:?})"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("may contain only letters, digits, '_', '.' and '-' (found {c:?})"));
    }
    if value.len() > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters long (got {})", value.len()));
    }
    Ok(())
}

impl fmt::Display for NetworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NetworkName {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for NetworkName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NetworkName {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&str> for NetworkName {
    type Error = ValidationError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<NetworkName> for String {
    fn from(name: NetworkName) -> Self {
        name.0
    }
}

/// An RFC 1123 label is always a valid network name.
impl From<Name> for NetworkName {
    fn from(name: Name) -> Self {
        Self(name.into_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_engine_accepts_and_names_the_problem() {
        for ok in ["a", "shop-edge", "Edge_1.v2", "0net"] {
            assert_eq!(NetworkName::new(ok).unwrap().as_str(), ok);
        }
        for (bad, reason) in [
            ("", "must not be empty"),
            ("-a", "must start with"),
            (".a", "must start with"),
            ("a/b", "may contain only"),
            ("a b", "may contain only"),
        ] {
            let err = NetworkName::new(bad).unwrap_err();
            assert_eq!(err.field, "network name");
            assert!(err.reason.contains(reason), "{bad:?}: {err}");
        }
        assert!(NetworkName::new("a".repeat(256)).is_err());
        assert!(NetworkName::new("a".repeat(255)).is_ok());
    }

    #[test]
    fn serde_and_conversions() {
        let n: NetworkName = serde_json::from_str("\"edge\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"edge\"");
        assert!(serde_json::from_str::<NetworkName>("\"-edge\"").is_err());
        assert_eq!(NetworkName::from(Name::new("edge").unwrap()), n);
        assert_eq!(String::from(n), "edge");
    }
}
