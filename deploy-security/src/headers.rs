//! HTTP security response headers as a typed set.

use std::time::Duration;

use deploy_core::scan::Severity;

use deploy_core::scan::Finding;

/// `X-Frame-Options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameOptions {
    /// No framing at all.
    Deny,
    /// Only by pages of the same origin.
    SameOrigin,
}

/// `Referrer-Policy` values (the W3C list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferrerPolicy {
    /// `no-referrer`.
    NoReferrer,
    /// `same-origin`.
    SameOrigin,
    /// `strict-origin`.
    StrictOrigin,
    /// `strict-origin-when-cross-origin`, browsers' default.
    StrictOriginWhenCrossOrigin,
}

impl ReferrerPolicy {
    fn as_str(self) -> &'static str {
        match self {
            Self::NoReferrer => "no-referrer",
            Self::SameOrigin => "same-origin",
            Self::StrictOrigin => "strict-origin",
            Self::StrictOriginWhenCrossOrigin => "strict-origin-when-cross-origin",
        }
    }
}

/// `Strict-Transport-Security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hsts {
    /// How long browsers remember to use HTTPS only.
    pub max_age: Duration,
    /// Covers every subdomain too.
    pub include_subdomains: bool,
    /// Asks to be in browsers' preload lists.
    pub preload: bool,
}

impl Hsts {
    /// HSTS for `max_age`, including subdomains, without preload.
    pub fn new(max_age: Duration) -> Self {
        Self { max_age, include_subdomains: true, preload: false }
    }
}

/// The security headers a service sends on every response. The default is the seed's
/// set: `nosniff`, frames denied, HSTS for a year with subdomains, a same-origin CSP,
/// `strict-origin-when-cross-origin`.
///
/// ```
/// use deploy_security::headers::SecurityHeaders;
/// let headers = SecurityHeaders::default().content_security_policy("default-src 'self'; img-src *");
/// let pairs = headers.to_pairs();
/// assert!(pairs.contains(&("X-Content-Type-Options", "nosniff".to_owned())));
/// assert!(pairs.contains(&("Strict-Transport-Security", "max-age=31536000; includeSubDomains".to_owned())));
/// assert!(headers.audit(pairs.iter().map(|(k, v)| (*k, v.as_str()))).is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecurityHeaders {
    /// Send `X-Content-Type-Options: nosniff`.
    pub nosniff: bool,
    /// `X-Frame-Options`, if any.
    pub frame_options: Option<FrameOptions>,
    /// `Strict-Transport-Security`, if any.
    pub hsts: Option<Hsts>,
    /// `Content-Security-Policy`, if any.
    pub content_security_policy: Option<String>,
    /// `Referrer-Policy`, if any.
    pub referrer_policy: Option<ReferrerPolicy>,
    /// `Permissions-Policy`, if any.
    pub permissions_policy: Option<String>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            nosniff: true,
            frame_options: Some(FrameOptions::Deny),
            hsts: Some(Hsts::new(Duration::from_secs(31_536_000))),
            content_security_policy: Some("default-src 'self'; frame-ancestors 'none'".to_owned()),
            referrer_policy: Some(ReferrerPolicy::StrictOriginWhenCrossOrigin),
            permissions_policy: Some("camera=(), microphone=(), geolocation=()".to_owned()),
        }
    }
}

impl SecurityHeaders {
    /// Sets the CSP.
    #[must_use]
    pub fn content_security_policy(mut self, policy: impl Into<String>) -> Self {
        self.content_security_policy = Some(policy.into());
        self
    }

    /// Sets HSTS.
    #[must_use]
    pub fn hsts(mut self, hsts: Option<Hsts>) -> Self {
        self.hsts = hsts;
        self
    }

    /// Sets `X-Frame-Options`.
    #[must_use]
    pub fn frame_options(mut self, options: Option<FrameOptions>) -> Self {
        self.frame_options = options;
        self
    }

    /// Sets `Referrer-Policy`.
    #[must_use]
    pub fn referrer_policy(mut self, policy: Option<ReferrerPolicy>) -> Self {
        self.referrer_policy = policy;
        self
    }

    /// The headers as name and value pairs, ready for any HTTP library.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if self.nosniff {
            pairs.push(("X-Content-Type-Options", "nosniff".to_owned()));
        }
        if let Some(frame) = self.frame_options {
            let value = match frame {
                FrameOptions::Deny => "DENY",
                FrameOptions::SameOrigin => "SAMEORIGIN",
            };
            pairs.push(("X-Frame-Options", value.to_owned()));
        }
        if let Some(hsts) = self.hsts {
            let mut value = format!("max-age={}", hsts.max_age.as_secs());
            if hsts.include_subdomains {
                value.push_str("; includeSubDomains");
            }
            if hsts.preload {
                value.push_str("; preload");
            }
            pairs.push(("Strict-Transport-Security", value));
        }
        if let Some(csp) = &self.content_security_policy {
            pairs.push(("Content-Security-Policy", csp.clone()));
        }
        if let Some(referrer) = self.referrer_policy {
            pairs.push(("Referrer-Policy", referrer.as_str().to_owned()));
        }
        if let Some(permissions) = &self.permissions_policy {
            pairs.push(("Permissions-Policy", permissions.clone()));
        }
        pairs
    }

    /// Checks a response's headers against this set: each header this set sends that
    /// is missing or different is a finding (`header-missing`, `header-mismatch`), and
    /// so is a CSP that allows `unsafe-inline` or `*` scripts (`csp-unsafe`). Header
    /// names are compared case-insensitively.
    pub fn audit<'a>(&self, response: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Finding> {
        let response: Vec<(String, &str)> =
            response.into_iter().map(|(name, value)| (name.to_ascii_lowercase(), value.trim())).collect();
        let mut findings = Vec::new();
        for (name, expected) in self.to_pairs() {
            match response.iter().find(|(n, _)| *n == name.to_ascii_lowercase()) {
                None => findings.push(Finding::new(
                    "header-missing",
                    missing_severity(name),
                    name,
                    "header is not sent",
                    format!("send {name}: {expected}"),
                )),
                Some((_, actual)) if !actual.eq_ignore_ascii_case(&expected) => findings.push(Finding::new(
                    "header-mismatch",
                    Severity::Low,
                    name,
                    format!("is {actual:?}, expected {expected:?}"),
                    format!("send {name}: {expected}"),
                )),
                Some(_) => {}
            }
        }
        if let Some((_, csp)) = response.iter().find(|(n, _)| n == "content-security-policy") {
            let unsafe_script = csp.split(';').any(|directive| {
                let mut parts = directive.split_whitespace();
                let name = parts.next().unwrap_or_default();
                (name == "script-src" || name == "default-src")
                    && parts.any(|source| source == "'unsafe-inline'" || source == "*" || source == "'unsafe-eval'")
            });
            if unsafe_script {
                findings.push(Finding::new(
                    "csp-unsafe",
                    Severity::Medium,
                    "Content-Security-Policy",
                    "allows inline, eval'd or any-origin scripts",
                    "remove 'unsafe-inline', 'unsafe-eval' and * from script-src",
                ));
            }
        }
        findings
    }
}

fn missing_severity(name: &str) -> Severity {
    match name {
        "Strict-Transport-Security" | "Content-Security-Policy" => Severity::Medium,
        _ => Severity::Low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_reports_missing_different_and_unsafe_headers() {
        let response = [
            ("x-content-type-options", "nosniff"),
            ("X-Frame-Options", "SAMEORIGIN"),
            ("Content-Security-Policy", "default-src 'self' 'unsafe-inline'"),
        ];
        let findings = SecurityHeaders::default().audit(response);
        let got: Vec<_> = findings.iter().map(|f| (f.id.as_str(), f.subject.as_str())).collect();
        assert_eq!(
            got,
            [
                ("header-mismatch", "X-Frame-Options"),
                ("header-missing", "Strict-Transport-Security"),
                ("header-mismatch", "Content-Security-Policy"),
                ("header-missing", "Referrer-Policy"),
                ("header-missing", "Permissions-Policy"),
                ("csp-unsafe", "Content-Security-Policy"),
            ]
        );
    }

    #[test]
    fn disabled_headers_are_not_sent() {
        let headers = SecurityHeaders::default().hsts(None).frame_options(Some(FrameOptions::SameOrigin));
        let names: Vec<_> = headers.to_pairs().into_iter().map(|(n, _)| n).collect();
        assert!(!names.contains(&"Strict-Transport-Security"));
        assert!(headers.to_pairs().contains(&("X-Frame-Options", "SAMEORIGIN".to_owned())));
    }
}
