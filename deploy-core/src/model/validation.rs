//! Errors for rejected input, shared by every parser in the model.
//!
//! Every value type in the model ([`Name`](super::name::Name),
//! [`ImageRef`](super::image::ImageRef), [`Quantity`](super::quantity::Quantity), ...)
//! rejects bad input with a [`ValidationError`] that names the field, the
//! offending value and the reason, so a user can fix their configuration
//! without reading source code. Whole documents (plans, configs) collect every
//! problem into [`ValidationErrors`] instead of stopping at the first one.

use std::fmt;

/// How many characters of an offending value an error message shows before
/// cutting it off with `…`.
const MAX_SHOWN_CHARS: usize = 80;

/// Shortens `value` for display: at most [`MAX_SHOWN_CHARS`] characters, then `…`.
fn shown(value: &str) -> String {
    match value.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// Why an input was rejected: the field, the offending value, and the reason.
///
/// The message reads `invalid <field> "<value>": <reason>`. The value is shown
/// in quotes with escapes (so control characters and empty strings stay
/// visible) and cut to its first 80 characters followed by `…`, so one huge
/// input cannot drown the message; the [`value`](Self::value) field still holds
/// the complete input.
///
/// ```
/// use deploy_core::model::ValidationError;
///
/// let err = ValidationError::new("name", "Web", "must be lowercase");
/// assert_eq!(err.to_string(), r#"invalid name "Web": must be lowercase"#);
/// assert_eq!(err.field, "name");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {shown:?}: {reason}", shown = shown(.value))]
#[non_exhaustive]
pub struct ValidationError {
    /// Which field or kind of value was rejected (e.g. `"name"`, `"image"`), so
    /// the user knows where to look.
    pub field: String,
    /// The complete offending input, exactly as given.
    pub value: String,
    /// What rule the value breaks, phrased so the user can fix it.
    pub reason: String,
}

impl ValidationError {
    /// Builds an error for `value` of `field`, rejected because of `reason`.
    ///
    /// `reason` should complete the sentence "invalid field "value": …", e.g.
    /// `"must be at most 63 characters long"`.
    ///
    /// ```
    /// use deploy_core::model::ValidationError;
    ///
    /// let err = ValidationError::new("percent", "101", "must be at most 100");
    /// assert!(err.to_string().contains("101"));
    /// ```
    pub fn new(field: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), value: value.into(), reason: reason.into() }
    }
}

/// Several problems at once, so a plan or config reports everything that is
/// wrong with it in one go instead of one error per attempt.
///
/// The message reads `N problems: a; b; c` (`1 problem: a` for one).
/// Use [`into_result`](Self::into_result) to turn the collection into
/// `Ok` when nothing was pushed.
///
/// ```
/// use deploy_core::model::{ValidationError, ValidationErrors};
///
/// let mut errors = ValidationErrors::new();
/// errors.push(ValidationError::new("name", "", "must not be empty"));
/// errors.push(ValidationError::new("percent", "101", "must be at most 100"));
/// assert_eq!(errors.len(), 2);
/// assert_eq!(
///     errors.to_string(),
///     r#"2 problems: invalid name "": must not be empty; invalid percent "101": must be at most 100"#
/// );
/// assert!(errors.into_result(()).is_err());
///
/// assert_eq!(ValidationErrors::new().into_result(7), Ok(7));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ValidationErrors {
    /// Every problem found, in the order they were found.
    pub errors: Vec<ValidationError>,
}

impl ValidationErrors {
    /// Starts an empty collection; push problems as they are found.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one more problem.
    pub fn push(&mut self, e: ValidationError) {
        self.errors.push(e);
    }

    /// Whether no problem was recorded (the input is valid).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems were recorded.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Iterates over the recorded problems in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, ValidationError> {
        self.errors.iter()
    }

    /// `Ok(ok)` when no problem was recorded, otherwise `Err(self)` with all of
    /// them; the usual last line of a validating constructor.
    pub fn into_result<T>(self, ok: T) -> Result<T, ValidationErrors> {
        if self.is_empty() { Ok(ok) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "{n} {}", if n == 1 { "problem" } else { "problems" })?;
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<ValidationError> for ValidationErrors {
    fn from(e: ValidationError) -> Self {
        Self { errors: vec![e] }
    }
}

impl IntoIterator for ValidationErrors {
    type Item = ValidationError;
    type IntoIter = std::vec::IntoIter<ValidationError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a ValidationError;
    type IntoIter = std::slice::Iter<'a, ValidationError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl Extend<ValidationError> for ValidationErrors {
    fn extend<I: IntoIterator<Item = ValidationError>>(&mut self, iter: I) {
        self.errors.extend(iter);
    }
}

impl FromIterator<ValidationError> for ValidationErrors {
    fn from_iter<I: IntoIterator<Item = ValidationError>>(iter: I) -> Self {
        Self { errors: iter.into_iter().collect() }
    }
}

/// Test helper for the parsers' property tests: asserts that `err` was raised
/// for `field` and `value` and that its message says so.
#[cfg(test)]
pub(crate) fn assert_names_field_and_value(err: &ValidationError, field: &str, value: &str) {
    assert_eq!(err.field, field);
    assert_eq!(err.value, value);
    assert!(!err.reason.is_empty(), "empty reason in {err:?}");
    let msg = err.to_string();
    let prefix = format!("invalid {field} {:?}: ", shown(value));
    assert!(msg.starts_with(&prefix), "message {msg:?} does not start with {prefix:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn message_names_field_value_and_reason() {
        let e = ValidationError::new("name", "Web", "must be lowercase");
        assert_eq!(e.to_string(), "invalid name \"Web\": must be lowercase");
    }

    #[test]
    fn long_values_are_truncated_in_message_only() {
        let long = "x".repeat(500);
        let e = ValidationError::new("image", long.clone(), "too long");
        let msg = e.to_string();
        assert_eq!(msg, format!("invalid image \"{}…\": too long", "x".repeat(80)));
        assert_eq!(e.value, long);
        // Exactly 80 characters are shown untouched.
        let e = ValidationError::new("image", "y".repeat(80), "r");
        assert!(!e.to_string().contains('…'));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let long = "é".repeat(100);
        let e = ValidationError::new("name", long, "bad");
        assert_eq!(e.to_string(), format!("invalid name \"{}…\": bad", "é".repeat(80)));
    }

    #[test]
    fn control_characters_are_escaped() {
        let e = ValidationError::new("name", "a\nb", "bad");
        assert_eq!(e.to_string(), "invalid name \"a\\nb\": bad");
    }

    #[test]
    fn errors_collection() {
        let mut errs = ValidationErrors::new();
        assert!(errs.is_empty());
        assert_eq!(errs.to_string(), "0 problems");
        errs.push(ValidationError::new("a", "1", "x"));
        assert_eq!(errs.to_string(), "1 problem: invalid a \"1\": x");
        errs.extend([ValidationError::new("b", "2", "y")]);
        assert_eq!(errs.len(), 2);
        assert_eq!(errs.to_string(), "2 problems: invalid a \"1\": x; invalid b \"2\": y");
        assert_eq!((&errs).into_iter().count(), 2);
        let fields: Vec<String> = errs.clone().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["a", "b"]);
        assert_eq!(errs.clone().into_result(1), Err(errs));
    }

    #[test]
    fn from_single_and_collect() {
        let e = ValidationError::new("a", "1", "x");
        let errs = ValidationErrors::from(e.clone());
        assert_eq!(errs.errors, vec![e.clone()]);
        let collected: ValidationErrors = vec![e.clone(), e].into_iter().collect();
        assert_eq!(collected.len(), 2);
        assert_eq!(ValidationErrors::new().into_result("ok"), Ok("ok"));
    }

    proptest! {
        #[test]
        fn message_always_names_field_and_value(field in "[a-z]{1,10}", value in "\\PC*", reason in "[a-z ]{1,20}") {
            let e = ValidationError::new(field.clone(), value.clone(), reason);
            assert_names_field_and_value(&e, &field, &value);
        }
    }
}
