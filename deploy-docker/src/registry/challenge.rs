//! `WWW-Authenticate` challenges of the distribution API (RFC 7235 syntax): which
//! scheme the registry wants, and for bearer tokens where to get one.

use std::collections::BTreeMap;

/// What a registry asked for in its `401` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// HTTP basic auth.
    Basic,
    /// A bearer token from `realm`, for `service` and `scope`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass on.
        service: Option<String>,
        /// The `scope` parameter to pass on, such as `repository:app:pull`.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value; `None` for schemes we do not speak.
///
/// ```
/// use deploy_docker::registry::challenge::{Challenge, parse_challenge};
/// let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:app:pull""#);
/// assert_eq!(c, Some(Challenge::Bearer {
///     realm: "https://auth.example/token".into(),
///     service: Some("registry.example".into()),
///     scope: Some("repository:app:pull".into()),
/// }));
/// assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
/// ```
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = parse_params(rest);
    let realm = params.remove("realm")?;
    Some(Challenge::Bearer { realm, service: params.remove("service"), scope: params.remove("scope") })
}

/// `key="value", key2=value2` with quoted commas and escapes.
fn parse_params(input: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_owned();
        }
        params.insert(key, value);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_commas_and_unquoted_values() {
        let c =
            parse_challenge(r#"bearer realm=http://127.0.0.1:9/token, scope="repository:a/b:pull,push",service=reg"#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
    }

    #[test]
    fn unknown_schemes_and_bearer_without_realm_are_none() {
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }
}
