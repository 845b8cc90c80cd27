//! Kubernetes resource quantities such as `100m`, `128Mi` or `1.5Gi`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::validation::ValidationError;

/// The field name used in this module's errors.
const FIELD: &str = "quantity";

/// Nano-units per base unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The largest quantity Kubernetes keeps (it silently caps larger ones at
/// 2^63-1), in nano-units.
const MAX_NANOS: i128 = (i64::MAX as i128) * NANOS_PER_UNIT;

/// What the suffixes mean; listed in error messages.
const SUFFIX_HELP: &str = "expected one of Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E, \
                           an exponent like e3, or no suffix";

/// A non-negative Kubernetes resource quantity (CPU, memory, storage, ...),
/// following apimachinery's `resource.Quantity` grammar: a decimal number
/// (`2`, `0.5`, `.5`, `1.`) followed by a binary SI suffix (`Ki Mi Gi Ti Pi Ei`),
/// a decimal SI suffix (`n u m k M G T P E`), a decimal exponent (`e3`,
/// `E-3`), or nothing.
///
/// The text is kept as written (minus a leading `+`), so it prints exactly as
/// the user wrote it and round-trips; `==` compares that text, so `1000m` and
/// `1` are *different* values under `==` while [`cmp_value`](Self::cmp_value)
/// says they are equal. For quota checks use [`cmp_value`](Self::cmp_value),
/// [`to_milli_units`](Self::to_milli_units) or
/// [`to_nano_units`](Self::to_nano_units), which are exact.
///
/// Inputs Kubernetes would silently change are rejected instead, so what you
/// write is what gets applied: negative quantities, values above 2^63-1
/// base units (Kubernetes caps them), and values with a fraction finer than
/// one nano-unit (Kubernetes rounds them up).
///
/// ```
/// use deploy_core::model::Quantity;
/// use std::cmp::Ordering;
///
/// let mem: Quantity = "128Mi".parse().unwrap();
/// assert_eq!(mem.as_f64(), 134217728.0);
/// assert_eq!(mem.to_string(), "128Mi");
///
/// let cpu: Quantity = "100m".parse().unwrap();
/// assert_eq!(cpu.to_milli_units(), Some(100));
/// assert_eq!(cpu.as_f64(), 0.1);
///
/// let one: Quantity = "1".parse().unwrap();
/// let thousand_milli: Quantity = "1000m".parse().unwrap();
/// assert_ne!(one, thousand_milli);
/// assert_eq!(one.cmp_value(&thousand_milli), Ordering::Equal);
///
/// assert!("-1".parse::<Quantity>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity {
    /// The validated text, as written except for a dropped leading `+`.
    text: String,
    /// The exact value in nano-units (base unit × 10^-9); `0..=MAX_NANOS`.
    nanos: i128,
}

/// The multiplier a suffix stands for.
#[derive(Debug, Clone, Copy)]
enum Suffix {
    /// × 10^n.
    Decimal(i64),
    /// × 2^n.
    Binary(u32),
}

impl Quantity {
    /// Parses a quantity such as `100m`, `0.5`, `128Mi`, `1.5Gi` or `1e3`; the
    /// same as [`str::parse`]. Errors name the field `"quantity"`.
    ///
    /// No whitespace is allowed anywhere, as in Kubernetes.
    pub fn parse(input: &str) -> Result<Quantity, ValidationError> {
        match parse_nanos(input) {
            Ok((text, nanos)) => Ok(Quantity { text: text.to_owned(), nanos }),
            Err(reason) => Err(ValidationError::new(FIELD, input, reason)),
        }
    }

    /// The quantity as written (e.g. `"1.5Gi"`), as sent to Kubernetes.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value in base units (bytes, cores, ...): `128Mi` → 134217728.0,
    /// `100m` → 0.1. May round for values beyond 2^53; use
    /// [`to_nano_units`](Self::to_nano_units) when exactness matters.
    pub fn as_f64(&self) -> f64 {
        let whole = self.nanos / NANOS_PER_UNIT;
        let frac = self.nanos % NANOS_PER_UNIT;
        whole as f64 + frac as f64 / NANOS_PER_UNIT as f64
    }

    /// The exact value in thousandths of the base unit, when it is a whole
    /// number of them (`100m` → 100, `1Gi` → 1073741824000, `1n` → `None`).
    ///
    /// This is the unit Kubernetes uses for CPU; sum these for quota checks
    /// instead of floats.
    pub fn to_milli_units(&self) -> Option<i128> {
        const NANOS_PER_MILLI: i128 = 1_000_000;
        (self.nanos % NANOS_PER_MILLI == 0).then_some(self.nanos / NANOS_PER_MILLI)
    }

    /// The exact value in billionths of the base unit (`1` → 1000000000).
    ///
    /// Always exact: every accepted quantity is a whole number of nano-units
    /// no larger than (2^63-1) × 10^9.
    pub fn to_nano_units(&self) -> i128 {
        self.nanos
    }

    /// Whether the value is zero (however it is written: `0`, `0Mi`, `0.0`).
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Compares the values exactly, regardless of how they are written:
    /// `1Gi` = `1024Mi`, `1` = `1000m`, `1k` > `1000m`.
    ///
    /// ```
    /// use deploy_core::model::Quantity;
    /// use std::cmp::Ordering;
    ///
    /// let a: Quantity = "1Gi".parse().unwrap();
    /// let b: Quantity = "1024Mi".parse().unwrap();
    /// let c: Quantity = "1G".parse().unwrap();
    /// assert_eq!(a.cmp_value(&b), Ordering::Equal);
    /// assert_eq!(c.cmp_value(&a), Ordering::Less);
    /// ```
    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Validates `input`; returns the canonical text and the exact value in
/// nano-units, or the reason it is invalid.
fn parse_nanos(input: &str) -> Result<(&str, i128), String> {
    if input.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if input.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".to_owned());
    }
    if input.starts_with('-') {
        return Err("must not be negative (resource quantities cannot be below zero)".to_owned());
    }
    let text = input.strip_prefix('+').unwrap_or(input);

    // <digits> | <digits>. | <digits>.<digits> | .<digits>
    let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
    let (int_digits, rest) = text.split_at(int_len);
    let (frac_digits, suffix) = match rest.strip_prefix('.') {
        Some(after) => {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            after.split_at(n)
        }
        None => ("", rest),
    };
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(format!("must start with a number, e.g. 100m, 0.5, 128Mi ({SUFFIX_HELP})"));
    }
    let suffix = parse_suffix(suffix)?;

    // Value = digits × 10^(exp10) × 2^(exp2), in nano-units.
    let all_digits = int_digits.bytes().chain(frac_digits.bytes());
    let significant: Vec<u8> = all_digits.skip_while(|&b| b == b'0').collect();
    let trailing_zeros = significant.iter().rev().take_while(|&&b| b == b'0').count();
    let significant = &significant[..significant.len() - trailing_zeros];
    if significant.is_empty() {
        return Ok((text, 0));
    }
    let (exp10, exp2) = match suffix {
        Suffix::Decimal(e) => (e, 0),
        Suffix::Binary(e) => (0, e),
    };
    let frac_len = i64::try_from(frac_digits.len()).unwrap_or(i64::MAX);
    let trailing_zeros = i64::try_from(trailing_zeros).unwrap_or(i64::MAX);
    let exp10 = exp10.saturating_add(9).saturating_sub(frac_len).saturating_add(trailing_zeros);

    let too_large = || "is too large (Kubernetes allows at most 2^63-1 = 9223372036854775807 base units)".to_owned();
    let too_precise = || "is more precise than Kubernetes keeps (the smallest step is 1n, one billionth)".to_owned();
    // 38 significant digits always fit an i128; more can only be either
    // too large or not a whole number of nano-units.
    if significant.len() > 38 {
        return Err(if exp10 >= 0 { too_large() } else { too_precise() });
    }
    let mantissa = significant.iter().fold(0i128, |acc, &b| acc * 10 + i128::from(b - b'0'));

    let nanos = if exp10 >= 0 {
        let p10 = u32::try_from(exp10).ok().and_then(|e| 10i128.checked_pow(e)).ok_or_else(too_large)?;
        let p2 = 2i128.checked_pow(exp2).ok_or_else(too_large)?;
        mantissa.checked_mul(p10).and_then(|v| v.checked_mul(p2)).ok_or_else(too_large)?
    } else {
        // Divide by 10^k = 5^k × 2^k exactly, or fail: the mantissa has no
        // factor 10 left, so the 5s must all come from it.
        let k = u32::try_from(exp10.unsigned_abs()).map_err(|_| too_precise())?;
        let p5 = 5i128.checked_pow(k).ok_or_else(too_precise)?;
        if mantissa % p5 != 0 {
            return Err(too_precise());
        }
        let m = mantissa / p5;
        if exp2 >= k {
            let p2 = 2i128.checked_pow(exp2 - k).ok_or_else(too_large)?;
            m.checked_mul(p2).ok_or_else(too_large)?
        } else {
            let p2 = 2i128.checked_pow(k - exp2).ok_or_else(too_precise)?;
            if m % p2 != 0 {
                return Err(too_precise());
            }
            m / p2
        }
    };
    if nanos > MAX_NANOS {
        return Err(too_large());
    }
    Ok((text, nanos))
}

/// Interprets the suffix after the number.
fn parse_suffix(suffix: &str) -> Result<Suffix, String> {
    let s = match suffix {
        "" => Suffix::Decimal(0),
        "n" => Suffix::Decimal(-9),
        "u" => Suffix::Decimal(-6),
        "m" => Suffix::Decimal(-3),
        "k" => Suffix::Decimal(3),
        "M" => Suffix::Decimal(6),
        "G" => Suffix::Decimal(9),
        "T" => Suffix::Decimal(12),
        "P" => Suffix::Decimal(15),
        "E" => Suffix::Decimal(18),
        "Ki" => Suffix::Binary(10),
        "Mi" => Suffix::Binary(20),
        "Gi" => Suffix::Binary(30),
        "Ti" => Suffix::Binary(40),
        "Pi" => Suffix::Binary(50),
        "Ei" => Suffix::Binary(60),
        _ => {
            let exponent = suffix.strip_prefix('e').or_else(|| suffix.strip_prefix('E')).filter(|e| {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            });
            match exponent {
                Some(e) => Suffix::Decimal(
                    e.parse::<i64>().map_err(|_| format!("has an exponent {e:?} that is out of range"))?,
                ),
                None if suffix == "K" => {
                    return Err("has unknown suffix \"K\" (did you mean \"k\" for 1000 or \"Ki\" for 1024?)".to_owned());
                }
                None if suffix.starts_with('-') => {
                    return Err("must not contain '-' except in an exponent like e-3".to_owned());
                }
                None => return Err(format!("has unknown suffix {suffix:?} ({SUFFIX_HELP})")),
            }
        }
    };
    Ok(s)
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Quantity {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl TryFrom<String> for Quantity {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Quantity::parse(&value)
    }
}

impl TryFrom<&str> for Quantity {
    type Error = ValidationError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Quantity::parse(value)
    }
}

impl From<Quantity> for String {
    fn from(q: Quantity) -> Self {
        q.text
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

/// Accepts a string like `"128Mi"` or a plain number, as Kubernetes does.
struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource quantity such as \"100m\" or \"128Mi\", or a number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        Quantity::parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        Quantity::parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Quantity, E> {
        Quantity::parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Quantity, E> {
        Quantity::parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        if !v.is_finite() {
            return Err(E::custom(ValidationError::new(FIELD, v.to_string(), "must be a finite number")));
        }
        // Plain notation for everyday magnitudes, scientific otherwise so that
        // e.g. 1e300 does not turn into 301 digits; both are valid quantities.
        let text = if v == 0.0 || (1e-6..1e21).contains(&v.abs()) { v.to_string() } else { format!("{v:e}") };
        Quantity::parse(&text).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        Quantity::parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::super::validation::assert_names_field_and_value;
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    #[test]
    fn examples_parse() {
        let cases: [(&str, f64, Option<i128>); 14] = [
            ("100m", 0.1, Some(100)),
            ("0.5", 0.5, Some(500)),
            ("128Mi", 134_217_728.0, Some(134_217_728_000)),
            ("1Gi", 1_073_741_824.0, Some(1_073_741_824_000)),
            ("1.5Gi", 1_610_612_736.0, Some(1_610_612_736_000)),
            ("1e3", 1000.0, Some(1_000_000)),
            ("1E3", 1000.0, Some(1_000_000)),
            ("1e-3", 0.001, Some(1)),
            ("250", 250.0, Some(250_000)),
            ("2", 2.0, Some(2000)),
            ("1k", 1000.0, Some(1_000_000)),
            ("1E", 1e18, Some(1_000_000_000_000_000_000_000)),
            ("1n", 1e-9, None),
            ("2u", 2e-6, None),
        ];
        for (input, f, milli) in cases {
            let v = q(input);
            assert_eq!(v.as_f64(), f, "{input}");
            assert_eq!(v.to_milli_units(), milli, "{input}");
            assert_eq!(v.to_string(), input);
        }
    }

    #[test]
    fn number_forms() {
        assert_eq!(q(".5").to_milli_units(), Some(500));
        assert_eq!(q("1.").to_milli_units(), Some(1000));
        assert_eq!(q("1.G").to_milli_units(), Some(1_000_000_000_000));
        assert_eq!(q("+1").to_string(), "1");
        assert_eq!(q("+1"), q("1"));
        assert_eq!(q("007").to_milli_units(), Some(7000));
        assert_eq!(q("0.1Ki").to_nano_units(), 102_400_000_000);
        assert_eq!(q("1.00000000000000000000000000000000000000000000e10").to_milli_units(), Some(10_000_000_000_000));
        assert!(q("0").is_zero());
        assert!(q("0Mi").is_zero());
        assert!(q("0.000e-999999").is_zero());
        assert!(!q("1n").is_zero());
        assert_eq!(q("7Ei").to_nano_units(), 7 * (1i128 << 60) * NANOS_PER_UNIT);
        assert_eq!(q("9223372036854775807").to_nano_units(), MAX_NANOS);
    }

    #[test]
    fn value_comparison() {
        assert_eq!(q("1").cmp_value(&q("1000m")), Ordering::Equal);
        assert_eq!(q("1Gi").cmp_value(&q("1024Mi")), Ordering::Equal);
        assert_eq!(q("1G").cmp_value(&q("1Gi")), Ordering::Less);
        assert_eq!(q("1k").cmp_value(&q("999")), Ordering::Greater);
        assert_eq!(q("500m").cmp_value(&q("0.5")), Ordering::Equal);
        assert_ne!(q("1"), q("1000m"));
    }

    #[test]
    fn rejects_bad_input() {
        let cases = [
            ("", "must not be empty"),
            ("-1", "negative"),
            ("-0.5Gi", "negative"),
            ("Mi", "must start with a number"),
            (".", "must start with a number"),
            ("e3", "must start with a number"),
            ("1K", "did you mean"),
            ("1ki", "unknown suffix"),
            ("1Mb", "unknown suffix"),
            ("1 Gi", "whitespace"),
            (" 1", "whitespace"),
            ("1e", "unknown suffix"),
            ("1e1.5", "unknown suffix"),
            ("1e+", "unknown suffix"),
            ("1..5", "unknown suffix"),
            ("1-", "must not contain '-'"),
            ("++1", "must start with a number"),
            ("8Ei", "too large"),
            ("9223372036854775808", "too large"),
            ("1e19", "too large"),
            ("1.000000000000000000000000000000000000000000001e44", "too large"),
            ("1e99999999999999999999", "out of range"),
            ("1e999999", "too large"),
            ("0.1n", "more precise"),
            ("1e-10", "more precise"),
            ("1e-999999", "more precise"),
            ("0.0000000001", "more precise"),
            ("1.0000000000000000000000000000000000000001", "more precise"),
            ("0.123456789123Ki", "more precise"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<Quantity>().unwrap_err();
            assert_names_field_and_value(&err, "quantity", input);
            assert!(err.reason.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn serde() {
        let v = q("1.5Gi");
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"1.5Gi\"");
        assert_eq!(serde_json::from_str::<Quantity>("\"1.5Gi\"").unwrap(), v);
        assert_eq!(serde_json::from_str::<Quantity>("2").unwrap(), q("2"));
        assert_eq!(serde_json::from_str::<Quantity>("0.5").unwrap(), q("0.5"));
        assert_eq!(serde_json::from_str::<Quantity>("1e3").unwrap().to_milli_units(), Some(1_000_000));
        let err = serde_json::from_str::<Quantity>("-1").unwrap_err();
        assert!(err.to_string().contains("invalid quantity \"-1\""), "{err}");
        let err = serde_json::from_str::<Quantity>("1e300").unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        let err = serde_json::from_str::<Quantity>("1e-300").unwrap_err();
        assert!(err.to_string().contains("more precise"), "{err}");
        assert!(serde_json::from_str::<Quantity>("\"1K\"").is_err());
        assert!(serde_json::from_str::<Quantity>("true").is_err());
    }

    /// Quantities built from the grammar, mostly valid.
    fn grammar() -> impl Strategy<Value = String> {
        "[+]?([0-9]{1,7}(\\.[0-9]{0,4})?|\\.[0-9]{1,4})(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]{1,2})?"
    }

    proptest! {
        #[test]
        fn grammar_round_trips(s in grammar()) {
            let Ok(v) = s.parse::<Quantity>() else { return Ok(()) };
            prop_assert_eq!(&v.to_string().parse::<Quantity>().unwrap(), &v);
            let json = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Quantity>(&json).unwrap(), &v);
            prop_assert!(v.to_nano_units() >= 0 && v.to_nano_units() <= MAX_NANOS);
        }

        #[test]
        fn common_quantities_are_valid(
            int in 0u32..100_000,
            frac in proptest::option::of("[0-9]{1,3}"),
            suffix in "(Ki|Mi|Gi|Ti|m|k|M|G|T|)",
        ) {
            let s = match &frac {
                Some(f) => format!("{int}.{f}{suffix}"),
                None => format!("{int}{suffix}"),
            };
            let v = s.parse::<Quantity>();
            prop_assert!(v.is_ok(), "{s}: {v:?}");
            let v = v.unwrap();
            prop_assert_eq!(v.to_string(), s.clone());
            // as_f64 agrees with a float computation of the same value.
            let base: f64 = match &frac {
                Some(f) => format!("{int}.{f}").parse().unwrap(),
                None => f64::from(int),
            };
            let mult = match suffix.as_str() {
                "Ki" => 1024f64, "Mi" => 1024f64.powi(2), "Gi" => 1024f64.powi(3),
                "Ti" => 1024f64.powi(4), "m" => 1e-3, "k" => 1e3, "M" => 1e6,
                "G" => 1e9, "T" => 1e12, _ => 1.0,
            };
            let expected = base * mult;
            prop_assert!((v.as_f64() - expected).abs() <= expected.abs() * 1e-12 + 1e-12,
                "{s}: {} vs {expected}", v.as_f64());
        }

        #[test]
        fn cmp_value_matches_integer_order(a in 0u64..1_000_000, b in 0u64..1_000_000) {
            // a milli-units written three ways, against b.
            let qa = Quantity::parse(&format!("{a}m")).unwrap();
            let qa2 = Quantity::parse(&format!("{a}e-3")).unwrap();
            let qb = Quantity::parse(&format!("{}", b as f64 / 1000.0)).unwrap();
            prop_assert_eq!(qa.cmp_value(&qa2), Ordering::Equal);
            prop_assert_eq!(qa.to_milli_units(), Some(i128::from(a)));
            prop_assert_eq!(qa.cmp_value(&qb), a.cmp(&b));
        }

        #[test]
        fn json_numbers_accepted(n in 0u64..u64::from(u32::MAX), f in 0.0f64..1e6) {
            prop_assert_eq!(
                serde_json::from_str::<Quantity>(&n.to_string()).unwrap().to_milli_units(),
                Some(i128::from(n) * 1000)
            );
            // Floats may be finer than 1n; when accepted they keep their value.
            if let Ok(v) = serde_json::from_str::<Quantity>(&serde_json::to_string(&f).unwrap()) {
                prop_assert!((v.as_f64() - f).abs() <= f * 1e-12);
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            if let Err(e) = s.parse::<Quantity>() {
                assert_names_field_and_value(&e, "quantity", &s);
            }
        }

        #[test]
        fn arbitrary_printable_strings_never_panic(s in "\\PC*") {
            if let Err(e) = s.parse::<Quantity>() {
                assert_names_field_and_value(&e, "quantity", &s);
            }
        }

        #[test]
        fn arbitrary_quantity_like_strings_never_panic(s in "[-+0-9.eEKMGTPinumk]{0,30}") {
            match s.parse::<Quantity>() {
                Ok(v) => prop_assert_eq!(v.to_string().parse::<Quantity>().unwrap(), v),
                Err(e) => assert_names_field_and_value(&e, "quantity", &s),
            }
        }
    }
}
