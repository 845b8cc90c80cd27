//! An audit of an application's environment variables.

use deploy_core::model::Environment;
use deploy_core::scan::Severity;

use deploy_core::scan::Finding;

/// The shortest JWT HMAC secret accepted: 32 bytes, as RFC 7518 §3.2 requires for HS256.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Values that are placeholders, not secrets.
const PLACEHOLDERS: &[&str] =
    &["changeme", "change-me", "secret", "password", "default", "example", "test", "admin", "12345678", "xxx"];

/// Audits environment variables for the seed's rules: a short JWT secret, CORS `*`, no
/// rate limiting, debug on in production, plain HTTP endpoints in production, and
/// placeholder secrets. Findings name variables, never their values.
///
/// ```
/// use deploy_core::model::Environment;
/// use deploy_security::audit::audit_environment;
/// let vars = [("JWT_SECRET", "s3cr3t"), ("CORS_ORIGINS", "*"), ("RATE_LIMIT_PER_MINUTE", "600")];
/// let findings = audit_environment(vars, Environment::Production);
/// let ids: Vec<_> = findings.iter().map(|f| f.id.as_str()).collect();
/// assert_eq!(ids, ["jwt-secret-too-short", "cors-wildcard"]);
/// assert!(findings.iter().all(|f| !f.to_string().contains("s3cr3t")));
/// ```
pub fn audit_environment<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    environment: Environment,
) -> Vec<Finding> {
    let production = environment.is_production_like();
    let vars: Vec<(&str, &str)> = vars.into_iter().collect();
    let mut findings = Vec::new();
    let upper = |name: &str| name.to_ascii_uppercase();

    for (name, value) in &vars {
        let key = upper(name);
        if (key.contains("JWT") && (key.contains("SECRET") || key.contains("KEY")))
            && !key.contains("PUBLIC")
            && value.len() < MIN_JWT_SECRET_BYTES
        {
            findings.push(Finding::new(
                "jwt-secret-too-short",
                if production { Severity::Critical } else { Severity::High },
                *name,
                format!("JWT secret is {} bytes, below the {MIN_JWT_SECRET_BYTES} bytes HS256 needs", value.len()),
                "generate one with SecureConfig::generate (64 random bytes)",
            ));
        } else if is_secret_name(&key) && PLACEHOLDERS.contains(&value.trim().to_ascii_lowercase().as_str()) {
            findings.push(Finding::new(
                "placeholder-secret",
                if production { Severity::Critical } else { Severity::Medium },
                *name,
                "secret is a well-known placeholder value",
                "replace it with a generated secret from a secret manager",
            ));
        }
        if (key.contains("CORS") || key == "ALLOWED_ORIGINS" || key == "ACCESS_CONTROL_ALLOW_ORIGIN")
            && value.split([',', ' ']).any(|origin| origin.trim() == "*")
        {
            {
                findings.push(Finding::new(
                    "cors-wildcard",
                    if production { Severity::High } else { Severity::Medium },
                    *name,
                    "CORS allows every origin (*)",
                    "list the origins that may call the service",
                ));
            }
        }
        if production {
            let debug_flag =
                matches!(key.as_str(), "DEBUG" | "APP_DEBUG" | "FLASK_DEBUG" | "DJANGO_DEBUG") && is_truthy(value);
            let debug_level = matches!(key.as_str(), "LOG_LEVEL" | "RUST_LOG")
                && value.split(',').any(|d| {
                    let level = d.rsplit('=').next().unwrap_or_default().trim().to_ascii_lowercase();
                    level == "debug" || level == "trace"
                });
            if debug_flag || debug_level {
                findings.push(Finding::new(
                    "debug-in-production",
                    if debug_flag { Severity::High } else { Severity::Medium },
                    *name,
                    "debug output is on in production",
                    "turn debug off; debug output leaks internals and slows the service",
                ));
            }
            if let Some(host) = plain_http_host(value)
                && !is_loopback(host)
            {
                findings.push(Finding::new(
                    "plain-http-endpoint",
                    Severity::Medium,
                    *name,
                    format!("points at a plain http:// endpoint on {host}"),
                    "use https:// (or a service mesh with mTLS) outside the host",
                ));
            }
        }
    }

    let rate_limited = vars.iter().any(|(name, value)| {
        let key = upper(name);
        (key.contains("RATE_LIMIT") || key.contains("RATELIMIT") || key.contains("THROTTL"))
            && !is_falsy(value)
            && value.trim() != "0"
    });
    if !rate_limited {
        findings.push(Finding::new(
            "no-rate-limit",
            if production { Severity::High } else { Severity::Low },
            "environment",
            "no rate limit is configured",
            "set RATE_LIMIT_PER_MINUTE (or the service's equivalent) to a positive value",
        ));
    }
    findings
}

fn is_secret_name(key: &str) -> bool {
    ["SECRET", "PASSWORD", "PASSWD", "TOKEN", "API_KEY", "PRIVATE_KEY"].iter().any(|s| key.contains(s))
}

fn is_truthy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

fn is_falsy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "" | "false" | "no" | "off" | "disabled" | "none")
}

/// The host of a plain `http://` URL anywhere in `value`, without any credentials.
fn plain_http_host(value: &str) -> Option<&str> {
    let start = value.find("http://")? + "http://".len();
    let rest = &value[start..];
    let authority = rest.split(['/', '?', '#', ' ', ',']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if host_port.starts_with('[') {
        host_port.split(']').next().map(|h| h.trim_start_matches('['))?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn a_good_production_environment_has_no_findings() {
        let secret = "x".repeat(64);
        let vars = [
            ("JWT_SECRET", secret.as_str()),
            ("CORS_ORIGINS", "https://shop.example.com"),
            ("RATE_LIMIT_PER_MINUTE", "600"),
            ("DATABASE_URL", "postgres://db:5432/shop"),
            ("METRICS_URL", "http://127.0.0.1:9090"),
            ("RUST_LOG", "info"),
        ];
        assert!(audit_environment(vars, Environment::Production).is_empty());
    }

    #[test]
    fn every_rule_fires_and_names_the_variable_not_the_value() {
        let vars = [
            ("JWT_SECRET", "tooshort-but-secret"),
            ("DB_PASSWORD", "changeme"),
            ("ALLOWED_ORIGINS", "https://a.example, *"),
            ("DEBUG", "true"),
            ("RUST_LOG", "info,hyper=trace"),
            ("PAYMENTS_URL", "http://user:hunter2@payments.internal:8080/api"),
            ("RATE_LIMIT_ENABLED", "false"),
        ];
        let findings = audit_environment(vars, Environment::Production);
        assert_eq!(
            ids(&findings),
            [
                "jwt-secret-too-short",
                "placeholder-secret",
                "cors-wildcard",
                "debug-in-production",
                "debug-in-production",
                "plain-http-endpoint",
                "no-rate-limit"
            ]
        );
        assert_eq!(findings[0].severity, Severity::Critical);
        assert!(findings[5].message.contains("payments.internal"));
        for f in &findings {
            let text = format!("{f} {}", f.remediation);
            assert!(!text.contains("hunter2") && !text.contains("tooshort") && !text.contains("changeme"), "{text}");
        }
    }

    #[test]
    fn development_is_judged_more_leniently() {
        let findings = audit_environment([("DEBUG", "1"), ("API_URL", "http://api.dev")], Environment::Development);
        assert_eq!(ids(&findings), ["no-rate-limit"]);
        assert_eq!(findings[0].severity, Severity::Low);
    }
}
