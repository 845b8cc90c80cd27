//! Human-written durations such as `30s`, `5m` or `1h30m`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::validation::ValidationError;

/// The field name used in this module's errors.
const FIELD: &str = "duration";

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;
const NANOS_PER_MIN: u128 = 60 * NANOS_PER_SEC;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MIN;
const NANOS_PER_DAY: u128 = 24 * NANOS_PER_HOUR;

/// The units accepted, for error messages.
const UNITS_HELP: &str = "ns, us, µs, ms, s, m, h, d";

/// A non-negative duration written the way Go and Kubernetes write them:
/// one or more `<number><unit>` pairs such as `30s`, `5m`, `1h30m`, `500ms`,
/// `1.5h` or `2d`.
///
/// Units are `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, and `d` (24 hours,
/// which Go does not have). Numbers may have a decimal fraction; anything
/// finer than a nanosecond is dropped, as Go does. A bare `0` is accepted,
/// as in Go; other numbers need a unit, so `5` is an error rather than a
/// guess between seconds and minutes.
///
/// It prints in a compact canonical form that Go's `time.ParseDuration`
/// also accepts (`1h30m`, `48h`, `1s500ms`, `0s`; no days), and parsing that
/// text gives back the same duration. It serializes as that string and
/// deserializes from such a string or from a whole number of seconds.
///
/// ```
/// use deploy_core::model::HumanDuration;
/// use std::time::Duration;
///
/// let d: HumanDuration = "1h30m".parse().unwrap();
/// assert_eq!(d.as_duration(), Duration::from_secs(5400));
/// assert_eq!(d.to_string(), "1h30m");
/// assert_eq!("1.5h".parse::<HumanDuration>().unwrap(), d);
/// assert_eq!("2d".parse::<HumanDuration>().unwrap().to_string(), "48h");
/// assert_eq!(HumanDuration::from(Duration::from_millis(500)).to_string(), "500ms");
/// assert!("5".parse::<HumanDuration>().is_err());
/// assert!("-5s".parse::<HumanDuration>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    /// No time at all; prints as `0s`.
    pub const ZERO: HumanDuration = HumanDuration(Duration::ZERO);

    /// Wraps an existing duration; every [`Duration`] is representable.
    pub const fn new(duration: Duration) -> Self {
        HumanDuration(duration)
    }

    /// Parses text such as `1h30m`; the same as [`str::parse`]. Errors name
    /// the field `"duration"`.
    ///
    /// No whitespace is allowed, and a leading `-` is rejected (durations
    /// here are timeouts and intervals, which cannot be negative); a leading
    /// `+` is accepted as in Go.
    pub fn parse(input: &str) -> Result<HumanDuration, ValidationError> {
        match parse_nanos(input) {
            Ok(nanos) => Ok(HumanDuration(duration_from_nanos(nanos))),
            Err(reason) => Err(ValidationError::new(FIELD, input, reason)),
        }
    }

    /// The wrapped [`Duration`], for timers and arithmetic.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// Whether this is no time at all (e.g. "no delay").
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

/// Splits `nanos` (at most `Duration::MAX`) into a [`Duration`].
fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // Always below 10^9, so it fits.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, sub)
}

/// Validates `input`; returns the total in nanoseconds or why it is invalid.
fn parse_nanos(input: &str) -> Result<u128, String> {
    if input.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if input.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".to_owned());
    }
    if input.starts_with('-') {
        return Err("must not be negative".to_owned());
    }
    let mut rest = input.strip_prefix('+').unwrap_or(input);
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("must have a number and a unit after '+'".to_owned());
    }
    let too_large = || "is too large".to_owned();
    let max = Duration::MAX.as_nanos();
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // <digits> | <digits>. | <digits>.<digits> | .<digits>
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_num) = match after_int.strip_prefix('.') {
            Some(after) => after.split_at(after.bytes().take_while(u8::is_ascii_digit).count()),
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(if after_num.starts_with('-') || after_num.starts_with('+') {
                format!("has a misplaced sign at {after_num:?}; write e.g. 1h30m")
            } else {
                format!("expected a number at {after_num:?}, e.g. 30s, 5m, 1h30m")
            });
        }
        let unit_len = after_num.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after_num.len());
        let (unit, after_unit) = after_num.split_at(unit_len);
        let unit_nanos = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => NANOS_PER_MICRO,
            "ms" => NANOS_PER_MILLI,
            "s" => NANOS_PER_SEC,
            "m" => NANOS_PER_MIN,
            "h" => NANOS_PER_HOUR,
            "d" => NANOS_PER_DAY,
            "" => {
                return Err(format!(
                    "is missing a unit after {:?} (one of {UNITS_HELP}), e.g. 30s",
                    &rest[..rest.len() - after_num.len()]
                ));
            }
            _ if unit.contains(['-', '+']) => {
                return Err(format!("has a sign inside ({unit:?}); only the whole duration may be signed, e.g. 1h30m"));
            }
            _ => {
                return Err(format!("has unknown unit {unit:?} (expected one of {UNITS_HELP})"));
            }
        };

        // Whole part, exactly; overflow means the total is too large anyway.
        let whole = int_digits
            .bytes()
            .try_fold(0u128, |acc, b| acc.checked_mul(10)?.checked_add(u128::from(b - b'0')))
            .and_then(|w| w.checked_mul(unit_nanos))
            .ok_or_else(too_large)?;
        // floor(0.<frac_digits> × unit_nanos), exactly: Horner from the last
        // digit, where each step stays below unit_nanos.
        let frac = frac_digits.bytes().rev().fold(0u128, |acc, b| (u128::from(b - b'0') * unit_nanos + acc) / 10);
        total =
            total.checked_add(whole).and_then(|t| t.checked_add(frac)).filter(|&t| t <= max).ok_or_else(too_large)?;
        rest = after_unit;
    }
    Ok(total)
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("h", NANOS_PER_HOUR),
            ("m", NANOS_PER_MIN),
            ("s", NANOS_PER_SEC),
            ("ms", NANOS_PER_MILLI),
            ("us", NANOS_PER_MICRO),
            ("ns", 1),
        ] {
            let count = nanos / size;
            if count > 0 {
                write!(f, "{count}{unit}")?;
                nanos %= size;
            }
        }
        Ok(())
    }
}

impl FromStr for HumanDuration {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HumanDuration::parse(s)
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Accepts a string like `"1h30m"` or a whole number of seconds.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\" or \"1h30m\", or a whole number of seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
        Ok(HumanDuration(Duration::from_secs(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(ValidationError::new(FIELD, v.to_string(), "must not be negative"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
        Err(E::custom(ValidationError::new(
            FIELD,
            v.to_string(),
            "as a number must be a whole number of seconds; write fractions with a unit, e.g. \"1500ms\"",
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
        HumanDuration::parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::super::validation::assert_names_field_and_value;
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Duration {
        s.parse::<HumanDuration>().unwrap().as_duration()
    }

    #[test]
    fn examples() {
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("5m"), Duration::from_secs(300));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("2d"), Duration::from_secs(2 * 86_400));
        assert_eq!(d("10us"), Duration::from_micros(10));
        assert_eq!(d("10µs"), Duration::from_micros(10));
        assert_eq!(d("10μs"), Duration::from_micros(10));
        assert_eq!(d("7ns"), Duration::from_nanos(7));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("+0"), Duration::ZERO);
        assert_eq!(d("0s"), Duration::ZERO);
        assert_eq!(d("+5s"), Duration::from_secs(5));
        assert_eq!(d(".5s"), Duration::from_millis(500));
        assert_eq!(d("1.s"), Duration::from_secs(1));
        assert_eq!(d("1s1s"), Duration::from_secs(2));
        assert_eq!(d("1m90s"), Duration::from_secs(150));
        assert_eq!(d("1.5ns"), Duration::from_nanos(1));
        assert_eq!(d("0.333333333333333333333333333s"), Duration::from_nanos(333_333_333));
        assert_eq!(d("0.9999999999999999999999999999999s"), Duration::from_nanos(999_999_999));
        assert_eq!(d("000001s"), Duration::from_secs(1));
    }

    #[test]
    fn display_is_compact() {
        let show = |dur: Duration| HumanDuration::from(dur).to_string();
        assert_eq!(show(Duration::ZERO), "0s");
        assert_eq!(show(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show(Duration::from_millis(500)), "500ms");
        assert_eq!(show(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(show(Duration::from_secs(3600)), "1h");
        assert_eq!(show(Duration::from_secs(3601)), "1h1s");
        assert_eq!(show(Duration::from_secs(2 * 86_400)), "48h");
        assert_eq!(show(Duration::new(1, 1)), "1s1ns");
        assert_eq!(show(Duration::from_micros(1001)), "1ms1us");
        let max = HumanDuration::new(Duration::MAX);
        assert_eq!(max.to_string().parse::<HumanDuration>().unwrap(), max);
    }

    #[test]
    fn rejects_bad_input() {
        let cases = [
            ("", "must not be empty"),
            ("5", "missing a unit"),
            ("1h5", "missing a unit"),
            ("-5s", "negative"),
            ("-0", "negative"),
            ("5x", "unknown unit \"x\""),
            ("5S", "unknown unit"),
            ("5sec", "unknown unit"),
            ("1h-30m", "sign inside (\"h-\")"),
            ("+-5s", "misplaced sign"),
            ("+", "after '+'"),
            ("s", "expected a number"),
            (".s", "expected a number"),
            ("1..5s", "missing a unit after \"1.\""),
            ("1h 30m", "whitespace"),
            (" 5s", "whitespace"),
            ("99999999999999999999999999999999999999999h", "too large"),
            ("18446744073709551616s", "too large"),
            ("213503982334602d", "too large"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<HumanDuration>().unwrap_err();
            assert_names_field_and_value(&err, "duration", input);
            assert!(err.reason.contains(reason), "{input:?}: {err}");
        }
        // Just inside the limit.
        assert_eq!(d("18446744073709551615s"), Duration::from_secs(u64::MAX));
    }

    #[test]
    fn conversions() {
        let hd = HumanDuration::new(Duration::from_secs(3));
        assert_eq!(Duration::from(hd), Duration::from_secs(3));
        let back: Duration = hd.into();
        assert_eq!(back, hd.as_duration());
        assert!(HumanDuration::ZERO.is_zero());
        assert!(HumanDuration::default().is_zero());
        assert!(!hd.is_zero());
        assert!(HumanDuration::ZERO < hd);
    }

    #[test]
    fn serde() {
        let hd: HumanDuration = "1h30m".parse().unwrap();
        assert_eq!(serde_json::to_string(&hd).unwrap(), "\"1h30m\"");
        assert_eq!(serde_json::from_str::<HumanDuration>("\"1h30m\"").unwrap(), hd);
        assert_eq!(serde_json::from_str::<HumanDuration>("5400").unwrap(), hd);
        assert_eq!(serde_json::from_str::<HumanDuration>("0").unwrap(), HumanDuration::ZERO);
        let err = serde_json::from_str::<HumanDuration>("-1").unwrap_err();
        assert!(err.to_string().contains("invalid duration \"-1\""), "{err}");
        let err = serde_json::from_str::<HumanDuration>("1.5").unwrap_err();
        assert!(err.to_string().contains("whole number of seconds"), "{err}");
        let err = serde_json::from_str::<HumanDuration>("\"5\"").unwrap_err();
        assert!(err.to_string().contains("missing a unit"), "{err}");
        assert!(serde_json::from_str::<HumanDuration>("null").is_err());
    }

    /// Durations written from the grammar.
    fn grammar() -> impl Strategy<Value = String> {
        "\\+?(([0-9]{1,5}(\\.[0-9]{0,12})?|\\.[0-9]{1,12})(ns|us|µs|ms|s|m|h|d)){1,4}"
    }

    proptest! {
        #[test]
        fn grammar_parses_and_round_trips(s in grammar()) {
            let hd = s.parse::<HumanDuration>();
            prop_assert!(hd.is_ok(), "{s}: {hd:?}");
            let hd = hd.unwrap();
            prop_assert_eq!(hd.to_string().parse::<HumanDuration>().unwrap(), hd);
            let json = serde_json::to_string(&hd).unwrap();
            prop_assert_eq!(serde_json::from_str::<HumanDuration>(&json).unwrap(), hd);
        }

        #[test]
        fn any_duration_round_trips(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let hd = HumanDuration::new(Duration::new(secs, nanos));
            prop_assert_eq!(hd.to_string().parse::<HumanDuration>().unwrap(), hd);
            let json = serde_json::to_string(&hd).unwrap();
            prop_assert_eq!(serde_json::from_str::<HumanDuration>(&json).unwrap(), hd);
        }

        #[test]
        fn single_units_scale_exactly(n in 0u64..1_000_000, unit in 0usize..7) {
            let (suffix, scale) = [
                ("ns", 1u128), ("us", 1_000), ("ms", 1_000_000), ("s", NANOS_PER_SEC),
                ("m", NANOS_PER_MIN), ("h", NANOS_PER_HOUR), ("d", NANOS_PER_DAY),
            ][unit];
            let hd: HumanDuration = format!("{n}{suffix}").parse().unwrap();
            prop_assert_eq!(hd.as_duration().as_nanos(), u128::from(n) * scale);
        }

        #[test]
        fn integer_seconds_deserialize(n in any::<u64>()) {
            let hd: HumanDuration = serde_json::from_str(&n.to_string()).unwrap();
            prop_assert_eq!(hd.as_duration(), Duration::from_secs(n));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            if let Err(e) = s.parse::<HumanDuration>() {
                assert_names_field_and_value(&e, "duration", &s);
            }
        }

        #[test]
        fn arbitrary_printable_strings_never_panic(s in "\\PC*") {
            if let Err(e) = s.parse::<HumanDuration>() {
                assert_names_field_and_value(&e, "duration", &s);
            }
        }

        #[test]
        fn arbitrary_duration_like_strings_never_panic(s in "[-+0-9.nuµμmshd]{0,30}") {
            match s.parse::<HumanDuration>() {
                Ok(hd) => prop_assert_eq!(hd.to_string().parse::<HumanDuration>().unwrap(), hd),
                Err(e) => assert_names_field_and_value(&e, "duration", &s),
            }
        }
    }
}
