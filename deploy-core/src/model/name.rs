//! Kubernetes-style object names and namespaces (RFC 1123 DNS labels).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::validation::ValidationError;

/// The longest name an RFC 1123 label allows.
const MAX_LEN: usize = 63;

/// A name that is a valid RFC 1123 DNS label: 1 to 63 characters of lowercase
/// `a-z`, digits `0-9` and `-`, starting and ending with a letter or digit.
///
/// This is what Kubernetes requires for most object names (deployments,
/// services, namespaces) and it is also safe as a DNS name and a container
/// name, so a `Name` can be handed to any backend without further checks.
/// The only way to get one is through validation ([`Name::new`], parsing,
/// `TryFrom`, deserializing), so holding a `Name` proves it is valid.
///
/// ```
/// use deploy_core::model::Name;
///
/// let name = Name::new("web-frontend").unwrap();
/// assert_eq!(name.as_str(), "web-frontend");
/// assert_eq!("a--b".parse::<Name>().unwrap().to_string(), "a--b");
///
/// let err = Name::new("Nginx").unwrap_err();
/// assert_eq!(err.field, "name");
/// assert!(Name::new("-a").is_err());
/// assert!(Name::new("x".repeat(64)).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Validates `value` as a name; errors name the field `"name"`.
    ///
    /// The input is taken as is: surrounding whitespace is an error, not
    /// trimmed.
    pub fn new(value: impl Into<String>) -> Result<Name, ValidationError> {
        Self::with_field(value, "name")
    }

    /// Validates `value` like [`Name::new`], but reports errors against
    /// `field`, so callers validating e.g. a namespace can say
    /// `invalid namespace "Prod": ...` instead of `invalid name ...`.
    ///
    /// ```
    /// use deploy_core::model::Name;
    ///
    /// let err = Name::with_field("Prod", "namespace").unwrap_err();
    /// assert_eq!(err.field, "namespace");
    /// assert!(err.to_string().starts_with("invalid namespace \"Prod\""));
    /// ```
    pub fn with_field(value: impl Into<String>, field: &str) -> Result<Name, ValidationError> {
        let value = value.into();
        match check(&value) {
            Ok(()) => Ok(Name(value)),
            Err(reason) => Err(ValidationError::new(field, value, reason)),
        }
    }

    /// The name as a string slice, e.g. to build a resource path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Gives back the owned string without copying.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Returns why `value` is not an RFC 1123 label, if it is not one.
fn check(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let len = value.chars().count();
    if len > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters long (got {len})"));
    }
    for (i, c) in value.chars().enumerate() {
        if c.is_ascii_uppercase() {
            return Err(format!("must be lowercase (found {c:?} at position {})", i + 1));
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(format!(
                "may contain only lowercase letters a-z, digits 0-9 and '-' (found {c:?} at position {})",
                i + 1
            ));
        }
    }
    if value.starts_with('-') {
        return Err("must start with a lowercase letter or digit, not '-'".to_owned());
    }
    if value.ends_with('-') {
        return Err("must end with a lowercase letter or digit, not '-'".to_owned());
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Name {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Name::new(value)
    }
}

impl TryFrom<&str> for Name {
    type Error = ValidationError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Name::new(value)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

/// A namespace: where an application, its workloads, its stores and its locks
/// live (a Kubernetes namespace; a name prefix on a Docker host).
///
/// Its own type, not a [`Name`], so that an argument list taking both cannot be
/// swapped without the compiler noticing: [`AppId::new`](super::AppId::new)
/// takes `(Namespace, Name)`. The rule is the one Kubernetes applies to
/// namespaces, an RFC 1123 DNS label, the same as [`Name`]'s; so conversions
/// between the two in either direction cannot fail. Serialized as a plain string,
/// validated when deserialized.
///
/// ```
/// use deploy_core::model::{Name, Namespace};
///
/// let ns: Namespace = "shop".parse().unwrap();
/// assert_eq!(ns.as_str(), "shop");
/// assert_eq!(serde_json::to_string(&ns).unwrap(), "\"shop\"");
///
/// let err = Namespace::new("Shop").unwrap_err();
/// assert_eq!(err.field, "namespace");
/// assert!(serde_json::from_str::<Namespace>("\"-shop\"").is_err());
///
/// // The same rule as a name: either converts into the other.
/// assert_eq!(Namespace::from(Name::new("shop").unwrap()), ns);
/// assert_eq!(Name::from(ns).as_str(), "shop");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

impl Namespace {
    /// Validates `value` as a namespace (an RFC 1123 label); errors name the
    /// field `"namespace"`. Surrounding whitespace is an error, not trimmed.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        match check(&value) {
            Ok(()) => Ok(Self(value)),
            Err(reason) => Err(ValidationError::new("namespace", value, reason)),
        }
    }

    /// The namespace as a string slice, e.g. for a resource path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Gives back the owned string without copying.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Namespace {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Namespace {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&str> for Namespace {
    type Error = ValidationError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Namespace> for String {
    fn from(namespace: Namespace) -> Self {
        namespace.0
    }
}

/// A name is a valid namespace: both are RFC 1123 labels.
impl From<Name> for Namespace {
    fn from(name: Name) -> Self {
        Self(name.0)
    }
}

/// A namespace is a valid name (e.g. for an object named after its namespace):
/// both are RFC 1123 labels.
impl From<Namespace> for Name {
    fn from(namespace: Namespace) -> Self {
        Name(namespace.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::validation::assert_names_field_and_value;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn namespaces_follow_the_name_rule_and_say_namespace() {
        let ns = Namespace::new("shop").unwrap();
        assert_eq!(ns.to_string(), "shop");
        assert_eq!("shop".parse::<Namespace>().unwrap(), ns);
        assert_eq!(Namespace::try_from(String::from("shop")).unwrap(), ns);
        assert_eq!(ns.as_ref(), "shop");
        assert_eq!(String::from(ns.clone()), "shop");
        let err = Namespace::new("Prod").unwrap_err();
        assert_eq!(err.to_string(), "invalid namespace \"Prod\": must be lowercase (found 'P' at position 1)");
        for bad in ["", "-a", "a-", "a.b", "a_b", " a"] {
            assert_eq!(Namespace::new(bad).is_ok(), Name::new(bad).is_ok(), "{bad:?}");
            assert!(Namespace::new(bad).is_err(), "{bad:?}");
        }
        assert!(Namespace::new("a".repeat(64)).is_err());
    }

    #[test]
    fn namespaces_serialize_as_strings_and_validate() {
        let ns: Namespace = serde_json::from_str("\"prod\"").unwrap();
        assert_eq!(serde_json::to_string(&ns).unwrap(), "\"prod\"");
        let err = serde_json::from_str::<Namespace>("\"Prod\"").unwrap_err();
        assert!(err.to_string().contains("must be lowercase"), "{err}");
    }

    proptest! {
        #[test]
        fn namespace_and_name_accept_the_same_strings(s in "[a-zA-Z0-9._-]{0,70}") {
            prop_assert_eq!(Namespace::new(s.clone()).is_ok(), Name::new(s.clone()).is_ok());
            if let Ok(ns) = Namespace::new(s.clone()) {
                let name = Name::from(ns.clone());
                prop_assert_eq!(name.as_str(), s.as_str());
                prop_assert_eq!(Namespace::from(Name::from(ns.clone())), ns);
            }
        }
    }

    #[test]
    fn valid_names() {
        for ok in ["a", "0", "web", "a--b", "a-b-c", "123", "x1-y2"] {
            assert_eq!(Name::new(ok).unwrap().as_str(), ok);
        }
        let max = "a".repeat(63);
        assert_eq!(Name::new(max.clone()).unwrap().as_str(), max);
    }

    #[test]
    fn invalid_names() {
        let cases = [
            ("", "must not be empty"),
            ("Nginx", "must be lowercase"),
            ("-a", "must start with"),
            ("a-", "must end with"),
            ("a_b", "may contain only"),
            ("a.b", "may contain only"),
            (" a", "may contain only"),
            ("é", "may contain only"),
        ];
        for (input, reason) in cases {
            let err = Name::new(input).unwrap_err();
            assert_eq!(err.field, "name");
            assert_eq!(err.value, input);
            assert!(err.reason.contains(reason), "{input:?}: {err}");
        }
        let err = Name::new("a".repeat(64)).unwrap_err();
        assert!(err.reason.contains("at most 63"), "{err}");
    }

    #[test]
    fn with_field_names_the_field() {
        let err = Name::with_field("Prod", "namespace").unwrap_err();
        assert_eq!(err.field, "namespace");
        assert_eq!(err.to_string(), "invalid namespace \"Prod\": must be lowercase (found 'P' at position 1)");
        assert_eq!(Name::with_field("prod", "namespace").unwrap().as_str(), "prod");
    }

    #[test]
    fn conversions() {
        let n: Name = "web".parse().unwrap();
        assert_eq!(Name::try_from("web").unwrap(), n);
        assert_eq!(Name::try_from(String::from("web")).unwrap(), n);
        assert_eq!(n.as_ref(), "web");
        assert_eq!(n.to_string(), "web");
        assert_eq!(String::from(n.clone()), "web");
        assert_eq!(n.into_string(), "web");
        assert!(Name::try_from("Web").is_err());
    }

    #[test]
    fn serde_validates() {
        let n: Name = serde_json::from_str("\"web\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"web\"");
        let err = serde_json::from_str::<Name>("\"Web\"").unwrap_err();
        assert!(err.to_string().contains("must be lowercase"), "{err}");
        assert!(serde_json::from_str::<Name>("42").is_err());
    }

    proptest! {
        #[test]
        fn grammar_round_trips(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            let n = Name::new(s.clone()).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert_eq!(&n.to_string().parse::<Name>().unwrap(), &n);
            let json = serde_json::to_string(&n).unwrap();
            prop_assert_eq!(serde_json::from_str::<Name>(&json).unwrap(), n);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            match Name::new(s.clone()) {
                Ok(n) => prop_assert_eq!(n.as_str(), s.as_str()),
                Err(e) => assert_names_field_and_value(&e, "name", &s),
            }
        }

        #[test]
        fn arbitrary_printable_strings_never_panic(s in "\\PC*") {
            match Name::with_field(s.clone(), "namespace") {
                Ok(n) => prop_assert_eq!(n.as_str(), s.as_str()),
                Err(e) => assert_names_field_and_value(&e, "namespace", &s),
            }
        }

        #[test]
        fn accepted_names_follow_the_rules(s in "[a-zA-Z0-9._-]{0,70}") {
            let valid = !s.is_empty()
                && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-');
            prop_assert_eq!(Name::new(s).is_ok(), valid);
        }
    }
}
