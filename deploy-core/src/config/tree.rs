//! A loaded configuration: plain values and secrets.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ConfigError;
use crate::secret::SecretString;

/// A loaded configuration. Plain values form a JSON tree addressed by dotted keys
/// (`db.host`); secrets are kept apart and redacted everywhere they could be shown.
///
/// ```
/// use deploy_core::config::Config;
/// use deploy_core::secret::SecretString;
/// let c = Config::from_parts(serde_json::json!({"db": {"host": "x"}}), [("db.password", SecretString::from("p4ss"))]);
/// assert_eq!(c.get_secret("db.password").unwrap().expose_secret(), "p4ss");
/// assert!(!format!("{c} {c:?}").contains("p4ss"));
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Config {
    pub(super) values: Value,
    pub(super) secrets: BTreeMap<String, SecretString>,
}

/// The value at a dotted key.
pub(super) fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    if key.is_empty() {
        return Some(root);
    }
    key.split('.').try_fold(root, |v, part| v.as_object()?.get(part))
}

/// Sets the value at a dotted key, making objects on the way.
pub(super) fn insert(root: &mut Value, key: &str, value: Value) {
    let mut node = root;
    for part in key.split('.') {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        let Value::Object(map) = node else { return };
        node = map.entry(part.to_owned()).or_insert(Value::Null);
    }
    *node = value;
}

/// Removes the value at a dotted key.
pub(super) fn remove(root: &mut Value, key: &str) {
    let (parent, last) = match key.rsplit_once('.') {
        Some((p, l)) => (p, l),
        None => ("", key),
    };
    let mut node = root;
    if !parent.is_empty() {
        for part in parent.split('.') {
            match node.as_object_mut().and_then(|m| m.get_mut(part)) {
                Some(n) => node = n,
                None => return,
            }
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// Every leaf as (dotted key, value); empty objects count as leaves.
pub(super) fn leaves(root: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, child, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.as_object().is_some_and(|m| !m.is_empty()) {
        walk("", root, &mut out);
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Config {
    /// A configuration from a tree of plain values and a list of secrets.
    pub fn from_parts<K: Into<String>>(values: Value, secrets: impl IntoIterator<Item = (K, SecretString)>) -> Self {
        let mut config = Self { values, secrets: BTreeMap::new() };
        for (k, s) in secrets {
            let k = k.into();
            remove(&mut config.values, &k);
            config.secrets.insert(k, s);
        }
        config
    }

    /// The plain value at `key` (`db.host`); `None` for unset keys and secrets.
    pub fn get(&self, key: &str) -> Option<&Value> {
        lookup(&self.values, key)
    }

    /// The secret at `key`.
    pub fn get_secret(&self, key: &str) -> Option<&SecretString> {
        self.secrets.get(key)
    }

    /// Whether `key` holds a plain value or a secret.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some() || self.secrets.contains_key(key)
    }

    /// The plain value at `key` as a `T`.
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        let v = self.get(key).ok_or_else(|| ConfigError::Missing { key: key.to_owned() })?;
        T::deserialize(v).map_err(|e| ConfigError::Type { key: key.to_owned(), reason: e.to_string() })
    }

    /// The whole configuration, secrets included, as a `T`. The secrets pass through
    /// a temporary JSON tree on the way into `T`; an error message that would quote
    /// one is withheld.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let mut tree = self.values.clone();
        for (k, s) in &self.secrets {
            insert(&mut tree, k, Value::String(s.expose_secret().to_owned()));
        }
        T::deserialize(&tree).map_err(|e| {
            let reason = e.to_string();
            let quotes_secret = self.secrets.values().any(|s| !s.is_empty() && reason.contains(s.expose_secret()));
            let reason = if quotes_secret {
                "a value has the wrong type (message withheld: it quoted a secret)".into()
            } else {
                reason
            };
            ConfigError::Type { key: String::new(), reason }
        })
    }

    /// Replaces every `{{ key }}` in `template` with the key's value (strings as
    /// they are, other values as JSON). Every unset key is reported at once; a
    /// secret key is refused.
    pub fn render(&self, template: &str) -> Result<String, ConfigError> {
        self.render_inner(template, false)
    }

    /// As [`Config::render`], with secrets written in clear: for generating a file
    /// that must hold them, never for logs.
    pub fn render_exposing_secrets(&self, template: &str) -> Result<String, ConfigError> {
        self.render_inner(template, true)
    }

    fn render_inner(&self, template: &str, secrets: bool) -> Result<String, ConfigError> {
        let mut out = String::with_capacity(template.len());
        let mut missing = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start + 2..].find("}}") else { break };
            out.push_str(&rest[..start]);
            let key = rest[start + 2..start + 2 + len].trim();
            if let Some(s) = self.secrets.get(key) {
                if !secrets {
                    return Err(ConfigError::SecretInTemplate { key: key.to_owned() });
                }
                out.push_str(s.expose_secret());
            } else if let Some(v) = self.get(key) {
                out.push_str(&text(v));
            } else if !missing.iter().any(|m| m == key) {
                missing.push(key.to_owned());
            }
            rest = &rest[start + 2 + len + 2..];
        }
        out.push_str(rest);
        if missing.is_empty() { Ok(out) } else { Err(ConfigError::TemplateKeys { keys: missing }) }
    }

    /// Every plain key (leaves only) and every secret key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = leaves(&self.values).into_keys().chain(self.secrets.keys().cloned()).collect();
        keys.sort();
        keys
    }

    /// The plain tree, without secrets.
    pub fn values(&self) -> &Value {
        &self.values
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config").field("values", &self.values).field("secrets", &self.secrets).finish()
    }
}

/// One `key = value` line per key, secrets as `[redacted]`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: BTreeMap<String, String> =
            leaves(&self.values).into_iter().map(|(k, v)| (k, v.to_string())).collect();
        for k in self.secrets.keys() {
            lines.insert(k.clone(), "[redacted]".into());
        }
        for (k, v) in lines {
            writeln!(f, "{k} = {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config::from_parts(
            json!({"db": {"host": "db", "port": 5432, "password": "placeholder"}, "debug": false}),
            [("db.password", SecretString::from("s3cr3t-value"))],
        )
    }

    #[test]
    fn lookups_and_types() {
        let c = config();
        assert_eq!(c.get("db.port"), Some(&json!(5432)));
        assert!(c.get("db.password").is_none(), "the secret replaces the plain value");
        assert!(c.contains("db.password"));
        assert!(matches!(c.get_as::<u16>("db.host"), Err(ConfigError::Type { .. })));
        assert!(matches!(c.get_as::<u16>("nope"), Err(ConfigError::Missing { .. })));
        assert_eq!(c.keys(), ["db.host", "db.password", "db.port", "debug"]);
    }

    #[test]
    fn extraction_includes_secrets_but_errors_do_not_quote_them() {
        #[derive(serde::Deserialize)]
        struct Db {
            host: String,
            password: String,
        }
        #[derive(serde::Deserialize)]
        struct App {
            db: Db,
        }
        let app: App = config().extract().unwrap();
        assert_eq!((app.db.host.as_str(), app.db.password.as_str()), ("db", "s3cr3t-value"));

        #[derive(Debug, serde::Deserialize)]
        #[expect(dead_code, reason = "only the error matters")]
        struct Wrong {
            db: WrongDb,
        }
        #[derive(Debug, serde::Deserialize)]
        #[expect(dead_code, reason = "only the error matters")]
        struct WrongDb {
            password: u32,
        }
        let err = config().extract::<Wrong>().unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn templates_report_all_missing_keys_and_refuse_secrets() {
        let c = config();
        assert_eq!(
            c.render("postgres://{{ db.host }}:{{db.port}}/x {{ debug }}").unwrap(),
            "postgres://db:5432/x false"
        );
        match c.render("{{a}} {{b}} {{a}}") {
            Err(ConfigError::TemplateKeys { keys }) => assert_eq!(keys, ["a", "b"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.render("{{db.password}}"), Err(ConfigError::SecretInTemplate { .. })));
        assert_eq!(c.render_exposing_secrets("{{db.password}}").unwrap(), "s3cr3t-value");
        assert_eq!(c.render("no {{ end").unwrap(), "no {{ end");
    }

    #[test]
    fn secrets_never_print() {
        let c = config();
        for s in [format!("{c}"), format!("{c:?}"), format!("{c:#?}")] {
            assert!(!s.contains("s3cr3t"), "{s}");
        }
        assert!(format!("{c}").contains("db.password = [redacted]"));
    }
}
