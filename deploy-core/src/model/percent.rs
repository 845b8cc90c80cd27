//! Whole percentages from 0 to 100, e.g. canary traffic weights.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::validation::ValidationError;

/// The field name used in this module's errors.
const FIELD: &str = "percent";

/// A whole percentage from 0 to 100 inclusive, such as a canary's share of
/// traffic or a rollout step.
///
/// Holding a `Percent` proves the value is in range, so arithmetic such as
/// [`complement`](Self::complement) never has to check again. It prints as
/// `25%`, parses from `25` or `25%`, serializes as the bare integer `25`, and
/// deserializes from either an integer or such a string.
///
/// ```
/// use deploy_core::model::Percent;
///
/// let p: Percent = "25%".parse().unwrap();
/// assert_eq!(p.value(), 25);
/// assert_eq!(p.to_string(), "25%");
/// assert_eq!(p.complement(), Percent::new(75).unwrap());
/// assert_eq!(p.as_fraction(), 0.25);
/// assert!("101%".parse::<Percent>().is_err());
/// assert!(Percent::new(101).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Percent(u8);

impl Percent {
    /// 0%: nothing (e.g. no traffic to the canary).
    pub const ZERO: Percent = Percent(0);
    /// 100%: everything (e.g. the rollout is complete).
    pub const HUNDRED: Percent = Percent(100);

    /// Accepts `value` if it is at most 100; errors name the field `"percent"`.
    pub fn new(value: u8) -> Result<Self, ValidationError> {
        if value <= 100 {
            Ok(Percent(value))
        } else {
            Err(ValidationError::new(FIELD, value.to_string(), "must be at most 100"))
        }
    }

    /// Parses `25` or `25%` (surrounding whitespace is ignored); the same as
    /// [`str::parse`].
    ///
    /// Only whole numbers are accepted: `1.5`, `-1`, `+5`, `101%` and the
    /// empty string are rejected with a [`ValidationError`] for `"percent"`.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let err = |reason: &str| ValidationError::new(FIELD, input, reason);
        let trimmed = input.trim();
        let digits = trimmed.strip_suffix('%').unwrap_or(trimmed);
        if digits.is_empty() {
            return Err(err(if trimmed.is_empty() { "must not be empty" } else { "must have a number before '%'" }));
        }
        if digits.starts_with('-') {
            return Err(err("must not be negative"));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("must be a whole number from 0 to 100, optionally followed by '%'"));
        }
        // Saturate instead of overflowing on long inputs like "0000…0001" or "999…9".
        let n = digits.bytes().fold(0u32, |acc, b| acc.saturating_mul(10).saturating_add(u32::from(b - b'0')));
        match u8::try_from(n) {
            Ok(n) if n <= 100 => Ok(Percent(n)),
            _ => Err(err("must be at most 100")),
        }
    }

    /// The percentage as a whole number, 0 to 100.
    pub const fn value(self) -> u8 {
        self.0
    }

    /// The percentage as a fraction from 0.0 to 1.0 (25% → 0.25), for
    /// scaling counts or weights.
    pub fn as_fraction(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// What is left over: `100 - self` (25% → 75%), e.g. the stable share of
    /// traffic when `self` is the canary's.
    pub const fn complement(self) -> Percent {
        Percent(100u8.saturating_sub(self.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl FromStr for Percent {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Percent::parse(s)
    }
}

impl TryFrom<u8> for Percent {
    type Error = ValidationError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Percent::new(value)
    }
}

impl From<Percent> for u8 {
    fn from(p: Percent) -> Self {
        p.0
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PercentVisitor)
    }
}

/// Accepts an integer or a string such as `"25%"`.
struct PercentVisitor;

impl Visitor<'_> for PercentVisitor {
    type Value = Percent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole percentage from 0 to 100, as an integer or a string like \"25%\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percent, E> {
        match u8::try_from(v) {
            Ok(v) => Percent::new(v).map_err(E::custom),
            Err(_) => Err(E::custom(ValidationError::new(FIELD, v.to_string(), "must be at most 100"))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percent, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(ValidationError::new(FIELD, v.to_string(), "must not be negative"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Percent, E> {
        Err(E::custom(ValidationError::new(FIELD, v.to_string(), "must be a whole number from 0 to 100")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
        Percent::parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::super::validation::assert_names_field_and_value;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plain_and_percent_sign() {
        assert_eq!("25".parse::<Percent>().unwrap().value(), 25);
        assert_eq!("25%".parse::<Percent>().unwrap().value(), 25);
        assert_eq!(" 25% ".parse::<Percent>().unwrap().value(), 25);
        assert_eq!("0".parse::<Percent>().unwrap(), Percent::ZERO);
        assert_eq!("100%".parse::<Percent>().unwrap(), Percent::HUNDRED);
        assert_eq!("007".parse::<Percent>().unwrap().value(), 7);
    }

    #[test]
    fn rejects_bad_input() {
        let cases = [
            ("", "must not be empty"),
            ("   ", "must not be empty"),
            ("%", "number before"),
            ("-1", "negative"),
            ("-1%", "negative"),
            ("101%", "at most 100"),
            ("101", "at most 100"),
            ("256", "at most 100"),
            ("99999999999999999999999", "at most 100"),
            ("1.5", "whole number"),
            ("+5", "whole number"),
            ("25%%", "whole number"),
            ("2 5", "whole number"),
            ("abc", "whole number"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<Percent>().unwrap_err();
            assert_names_field_and_value(&err, "percent", input);
            assert!(err.reason.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn new_and_constants() {
        assert_eq!(Percent::new(0).unwrap(), Percent::ZERO);
        assert_eq!(Percent::new(100).unwrap(), Percent::HUNDRED);
        let err = Percent::new(101).unwrap_err();
        assert_eq!(err.to_string(), "invalid percent \"101\": must be at most 100");
        assert_eq!(Percent::default(), Percent::ZERO);
        assert!(Percent::try_from(200u8).is_err());
        assert_eq!(u8::from(Percent::HUNDRED), 100);
    }

    #[test]
    fn arithmetic() {
        let p = Percent::new(30).unwrap();
        assert_eq!(p.complement().value(), 70);
        assert_eq!(Percent::ZERO.complement(), Percent::HUNDRED);
        assert_eq!(Percent::HUNDRED.as_fraction(), 1.0);
        assert_eq!(Percent::ZERO.as_fraction(), 0.0);
        assert!(Percent::ZERO < Percent::HUNDRED);
    }

    #[test]
    fn serde() {
        let p = Percent::new(25).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "25");
        assert_eq!(serde_json::from_str::<Percent>("25").unwrap(), p);
        assert_eq!(serde_json::from_str::<Percent>("\"25%\"").unwrap(), p);
        assert_eq!(serde_json::from_str::<Percent>("\"25\"").unwrap(), p);
        for bad in ["101", "-1", "1.5", "\"101%\"", "\"-1\"", "null", "300", "99999999999999999999"] {
            let err = serde_json::from_str::<Percent>(bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("percent") || msg.contains("invalid type"), "{bad}: {msg}");
        }
        let err = serde_json::from_str::<Percent>("-1").unwrap_err();
        assert!(err.to_string().contains("invalid percent \"-1\": must not be negative"));
    }

    proptest! {
        #[test]
        fn valid_round_trips(n in 0u8..=100, sign in proptest::bool::ANY) {
            let text = if sign { format!("{n}%") } else { n.to_string() };
            let p: Percent = text.parse().unwrap();
            prop_assert_eq!(p.value(), n);
            prop_assert_eq!(p.to_string().parse::<Percent>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<Percent>(&json).unwrap(), p);
            let json_str = serde_json::to_string(&p.to_string()).unwrap();
            prop_assert_eq!(serde_json::from_str::<Percent>(&json_str).unwrap(), p);
            prop_assert_eq!(p.complement().complement(), p);
        }

        #[test]
        fn new_matches_range(n in any::<u8>()) {
            prop_assert_eq!(Percent::new(n).is_ok(), n <= 100);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            match s.parse::<Percent>() {
                Ok(p) => prop_assert!(p.value() <= 100),
                Err(e) => assert_names_field_and_value(&e, "percent", &s),
            }
        }

        #[test]
        fn arbitrary_printable_strings_never_panic(s in "\\PC*") {
            match s.parse::<Percent>() {
                Ok(p) => prop_assert!(p.value() <= 100),
                Err(e) => assert_names_field_and_value(&e, "percent", &s),
            }
        }

        #[test]
        fn numeric_strings_accepted_iff_in_range(n in 0u32..100_000, pct in proptest::bool::ANY) {
            let text = if pct { format!("{n}%") } else { n.to_string() };
            prop_assert_eq!(text.parse::<Percent>().is_ok(), n <= 100);
        }
    }
}
